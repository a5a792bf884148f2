"""adcli minimize: following the gradient downhill, as a user runs it."""
import csv
import io
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import minimize as minimizing, render, sources
from adcli.cli import app

runner = CliRunner()
TUTORIAL = "theta*cos(4*theta) + 2*abs(theta)"
ROSENBROCK = "(1-x)**2 + 100*(y-x**2)**2"
QUADRATIC = "sum((x - [1, -2, 3])**2) + 2*(y - 0.5)**2"


def adcli(*args):
    return runner.invoke(app, ["minimize", *args])


def result(*args, code=0):
    r = adcli(*args, "--json")
    assert r.exit_code == code, r.output + r.stderr
    return json.loads(r.stdout)


def test_the_tutorials_gradient_descent_finds_the_local_minimum():
    out = result(TUTORIAL, "--at", "theta=0.5", "--method", "gd", "--lr", "0.05")
    theta = out["x"]["theta"]
    # f'(theta) = cos(4 theta) - 4 theta sin(4 theta) + 2 = 0 on the right of the start
    assert 0.6 < theta < 0.75
    assert abs(np.cos(4 * theta) - 4 * theta * np.sin(4 * theta) + 2) < 1e-6
    assert out["converged"] and out["reason"] == "gradient" and out["grad_norm"] <= 1e-6
    assert out["value"] == pytest.approx(theta * np.cos(4 * theta) + 2 * theta, rel=1e-12)


@pytest.mark.parametrize("method", minimizing.METHODS)
def test_every_method_finds_the_minimum_of_a_quadratic(method):
    lr = ["--lr", "0.05" if method == "adam" else "0.1"] if method in minimizing.LR else []
    out = result(QUADRATIC, "--at", "x=[0,0,0],y=0", "--method", method, "--steps", "5000", *lr)
    assert out["converged"], out["message"]
    assert np.allclose(out["x"]["x"], [1, -2, 3], atol=1e-5)
    assert out["x"]["y"] == pytest.approx(0.5, abs=1e-5)
    assert out["value"] == pytest.approx(0, abs=1e-10)


def test_newton_takes_one_step_on_a_quadratic():
    out = result(QUADRATIC, "--at", "x=[0,0,0],y=0", "--method", "newton")
    assert out["steps"] == 1 and np.allclose(out["x"]["x"], [1, -2, 3], atol=1e-12)


@pytest.mark.parametrize("method", ["newton", "lbfgs", "trust"])
def test_second_order_methods_reach_the_rosenbrock_minimum(method):
    out = result(ROSENBROCK, "--at", "x=-1.2,y=1", "--method", method)
    assert out["converged"], out["message"]
    assert out["x"]["x"] == pytest.approx(1, abs=1e-6)
    assert out["x"]["y"] == pytest.approx(1, abs=1e-6)
    assert out["steps"] < 200


def test_newton_by_conjugate_gradients_on_a_large_input():
    n = minimizing.DENSE_NEWTON + 100        # above it: Hessian-vector products and CG
    out = result("sum(100*(x[1:]-x[:-1]**2)**2 + (1-x[:-1])**2)", "--at",
                 f"x=0.9 + 0.05*cos(linspace(0, 9, {n}))", "--method", "newton")
    assert out["converged"], out["message"]
    assert np.allclose(out["x"]["x"], 1, atol=1e-5)


def test_newton_does_not_climb_on_a_nonconvex_function():
    # at theta=0.5 the second derivative is negative: a plain Newton step goes uphill
    out = result(TUTORIAL, "--at", "theta=0.5", "--method", "newton")
    assert out["converged"] and out["value"] < 0.5 * np.cos(2) + 1


def test_only_the_inputs_chosen_move():
    out = result("(x - y)**2 + y**2", "--at", "x=3,y=1", "--wrt", "x", "--method", "newton")
    assert out["x"] == {"x": pytest.approx(1)} and out["value"] == pytest.approx(1)


def test_array_inputs_keep_their_shapes():
    out = result("sum((W @ v - [1, 2])**2)", "--at", "W=[[1,0],[0,1]],v=[1,1]", "--wrt", "W",
                 "--method", "lbfgs")
    W = np.array(out["x"]["W"])
    assert W.shape == (2, 2) and np.allclose(W @ [1, 1], [1, 2], atol=1e-6)


def test_a_script_is_minimised_and_retraced_where_its_branch_changes(tmp_path):
    script = tmp_path / "jump.ad"
    script.write_text("input x = 3.0\nif x > 1:\n    y = x**2\nelse:\n    y = (x + 1)**2\n"
                      "return y\n")
    for method in ("gd", "newton"):
        out = result(str(script), "--method", method)
        # x**2 leads left past 1, where the other branch has its minimum at -1
        assert out["x"]["x"] == pytest.approx(-1, abs=1e-5) and out["retraces"] >= 1


def test_the_sample_regression_script_is_fitted():
    out = result("samples/linear_regression.ad", "--at", "theta=[0,0,0,0,0]", "--wrt", "theta",
                 "--method", "newton")
    assert np.allclose(out["x"]["theta"], [1, -2, 3, -4, 5], atol=0.1)    # noisy data
    assert list(out["x"]) == ["theta"]


def test_the_program_is_traced_once_not_at_every_step(monkeypatch):
    from adcli import api
    calls = []
    trace = api.trace
    monkeypatch.setattr(api, "trace", lambda *a, **k: calls.append(1) or trace(*a, **k))
    out = result(QUADRATIC, "--at", "x=[0,0,0],y=0", "--lr", "0.1")
    assert out["steps"] > 20 and len(calls) == 1


# ---------------------------------------------------------------- bounds

@pytest.mark.parametrize("method", ["gd", "momentum", "adam", "lbfgs"])
def test_bounds_are_respected(method):
    lr = ["--lr", "0.1"] if method in minimizing.LR else []
    out = result("(x - 2)**2 + (y + 3)**2", "--at", "x=0.5,y=0", "--bounds", "x=0:1",
                 "--bounds", "y=-1:", "--method", method, *lr, "--steps", "5000")
    assert out["x"]["x"] == pytest.approx(1) and out["x"]["y"] == pytest.approx(-1)
    # at a bound the projected gradient is 0: converged
    assert out["converged"] and out["grad_norm"] == pytest.approx(0, abs=1e-6)


def test_every_step_stays_within_the_bounds(tmp_path):
    history = tmp_path / "h.csv"
    r = adcli("(x - 2)**2", "--at", "x=0.5", "--bounds", "x=0:1", "--lr", "0.9",
              "--history", str(history))
    assert r.exit_code == 0
    xs = [float(row["x"]) for row in csv.DictReader(history.open())]
    assert all(0 <= x <= 1 for x in xs) and xs[-1] == 1


@pytest.mark.parametrize("bounds,message", [
    ("x=1:0", "lower bound must not exceed the upper"),
    ("x=0", "write NAME=LOWER:UPPER"),
    ("x=a:1", "must be numbers"),
    ("z=0:1", "'z' is not an input minimised over"),
])
def test_bad_bounds_are_refused(bounds, message):
    r = adcli("(x - 2)**2", "--at", "x=0.5", "--bounds", bounds)
    assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_methods_without_bounds_refuse_them():
    for method in ("newton", "trust"):
        r = adcli("(x - 2)**2", "--at", "x=0.5", "--bounds", "x=0:1", "--method", method)
        assert r.exit_code == 2 and f"--method {method} does not take --bounds" in r.stderr


def test_a_start_outside_the_bounds_is_refused():
    r = adcli("(x - 2)**2", "--at", "x=5", "--bounds", "x=0:1")
    assert r.exit_code == 2 and "outside --bounds" in r.stderr


# ---------------------------------------------------------------- output

def test_history_has_every_step_with_the_points_column_names(tmp_path):
    history = tmp_path / "steps.csv"
    r = adcli("sum((W - [[1,2],[3,4]])**2) + b**2", "--at", "W=zeros(2,2),b=1", "--lr", "0.1",
              "--history", str(history), "--json")
    assert r.exit_code == 0
    out = json.loads(r.stdout)
    rows = list(csv.reader(history.open()))
    assert rows[0] == ["step", "value", "grad_norm", "W[0][0]", "W[0][1]", "W[1][0]", "W[1][1]",
                       "b"]
    assert [int(row[0]) for row in rows[1:]] == list(range(out["steps"] + 1))
    assert [float(v) for v in rows[1][1:]] == [31.0, 2 * np.sqrt(31), 0, 0, 0, 0, 1]
    last = [float(v) for v in rows[-1]]
    assert last[1] == pytest.approx(out["value"]) and last[2] == pytest.approx(out["grad_norm"])
    assert np.allclose(last[3:7], np.ravel(out["x"]["W"])) and last[7] == out["x"]["b"]
    values = [float(row[1]) for row in rows[1:]]
    assert values == sorted(values, reverse=True)        # gd on a convex quadratic


def test_json_result_schema():
    out = result("(x-1)**2", "--at", "x=0", "--lr", "0.25")
    assert set(out) == {"expr", "method", "converged", "reason", "message", "steps", "value",
                        "grad_norm", "x", "evaluations", "retraces"}
    assert out["expr"] == "(x-1)**2" and out["method"] == "gd" and out["reason"] == "gradient"
    assert isinstance(out["steps"], int) and out["evaluations"] >= out["steps"]


def test_json_stream_is_one_object_per_step_then_the_result():
    r = adcli("(x-1)**2", "--at", "x=0", "--lr", "0.25", "--json", "--stream")
    assert r.exit_code == 0
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    steps, final = lines[:-1], lines[-1]
    assert [s["step"] for s in steps] == list(range(final["steps"] + 1))
    assert steps[0] == {"step": 0, "value": 1.0, "grad_norm": 2.0, "x": {"x": 0.0}}
    assert steps[1]["x"]["x"] == 0.5 and final["converged"]
    assert adcli("(x-1)**2", "--at", "x=0", "--stream").exit_code == 2


def test_plain_output_names_the_point_and_why_it_stopped():
    r = adcli("(x-1)**2 + (y+2)**2", "--at", "x=0,y=0", "--method", "newton")
    assert r.exit_code == 0
    lines = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    assert list(lines) == ["x", "y", "value", "grad_norm", "steps", "method", "converged",
                           "stopped"]
    assert float(lines["x"]) == 1 and float(lines["y"]) == -2 and lines["steps"] == "1"
    assert lines["converged"] == "true" and "below --tol" in lines["stopped"]


def test_check_gradchecks_at_the_optimum():
    out = result(ROSENBROCK, "--at", "x=-1.2,y=1", "--method", "lbfgs", "--check")
    assert out["check"]["verdict"] == "pass"
    r = adcli(ROSENBROCK, "--at", "x=-1.2,y=1", "--method", "lbfgs", "--check")
    assert r.exit_code == 0 and "gradcheck\tpass" in r.stdout


def test_the_progress_line_is_only_on_a_terminal(monkeypatch):
    with render.status_line(io.StringIO()) as status:
        assert status is None
    stream = io.StringIO()
    stream.isatty = lambda: True
    clock = iter([0.0, 0.5, 2.0, 2.01, 3.0, 3.0, 3.0]).__next__
    from rich.console import Console
    line = render.StatusLine(Console(file=stream, force_terminal=True), clock=clock)
    line(minimizing.progress_text(1, 2.5, 0.1))        # before a second: nothing
    assert stream.getvalue() == ""
    line(minimizing.progress_text(20, 1.25, 0.01))
    line.close()
    assert "step 20  value 1.25  gradient norm 0.01" in stream.getvalue()


# ---------------------------------------------------------------- stopping and errors

def test_steps_reached_is_exit_1_with_the_reason():
    r = adcli(ROSENBROCK, "--at", "x=-1.2,y=1", "--lr", "0.001", "--steps", "10")
    assert r.exit_code == 1
    assert "not converged: --steps 10 reached" in r.stderr
    assert "converged\tfalse" in r.stdout and "steps\t10" in r.stdout


def test_a_value_that_stops_being_finite_stops_with_exit_1():
    r = adcli("x**4", "--at", "x=3", "--lr", "1", "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["reason"] == "nonfinite" and not out["converged"]
    assert np.isfinite(out["value"])        # the last point where it was finite
    assert "not finite" in r.stderr and "smaller --lr" in r.stderr


def test_a_start_that_is_not_finite_is_bad_input():
    r = adcli("log(x)", "--at", "x=-1")
    assert r.exit_code == 2 and "not finite at the starting point" in r.stderr


def test_unknown_method_suggests_the_nearest():
    r = adcli("x**2", "--at", "x=1", "--method", "lbgfs")
    assert r.exit_code == 2 and "unknown --method 'lbgfs'" in r.stderr
    assert "did you mean 'lbfgs'?" in r.stderr


def test_lr_is_for_the_first_order_methods():
    r = adcli("x**2", "--at", "x=1", "--method", "newton", "--lr", "0.1")
    assert r.exit_code == 2 and "--lr sets the step of gd, momentum and adam" in r.stderr


@pytest.mark.parametrize("method", ["lbfgs", "trust"])
def test_scipy_methods_without_scipy_say_how_to_install_it(monkeypatch, method):
    monkeypatch.setitem(sys.modules, "scipy", None)           # import scipy fails
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    r = adcli("x**2", "--at", "x=1", "--method", method)
    assert r.exit_code == 2 and "needs SciPy" in r.stderr
    assert "pip install 'adcli[special]'" in r.stderr and "Traceback" not in r.stderr
    assert adcli("x**2", "--at", "x=1", "--method", "newton").exit_code == 0   # built in


def test_a_value_that_is_not_a_scalar_is_refused():
    r = adcli("x**2", "--at", "x=[1,2]")
    assert r.exit_code == 2 and "minimize needs a scalar value" in r.stderr


def test_unknown_wrt_suggests_an_input():
    r = adcli("(x-1)**2 + y", "--at", "x=0,y=0", "--wrt", "xx")
    assert r.exit_code == 2 and "did you mean 'x'?" in r.stderr


def test_library_entry_point():
    source = sources.read("(a - 4)**2", ["a=0"], np.float64)
    out = minimizing.minimize(minimizing.tracer_at(source), source.values, label="f",
                              method="newton", history=True)
    assert out.converged and out.x["a"] == pytest.approx(4) and len(out.history) == 2


def test_plot_draws_the_path_on_the_function(tmp_path):
    pytest.importorskip("uniplot")
    r = adcli("(x-1)**2 + 10*(y-x**2)**2", "--at", "x=-1,y=1", "--method", "newton",
              "--plot", "-")
    assert r.exit_code == 0, r.stderr
    assert "over x (across), y (up)" in r.stdout and "o path" in r.stdout
    assert r.stdout.index("converged") < r.stdout.index("over x (across)")   # after the result
    r = adcli("theta*cos(4*theta) + 2*abs(theta)", "--at", "theta=0.5",
              "--plot", "-")
    assert r.exit_code == 0 and "xx path" in r.stdout
    pytest.importorskip("matplotlib")
    out = tmp_path / "path.png"
    r = adcli("(x-1)**2 + (y+2)**2", "--at", "x=0,y=0", "--plot", str(out))
    assert r.exit_code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = adcli("sum((w-1)**2)", "--at", "w=[0,0,0]", "--plot", "-")
    assert r.exit_code == 2 and "one or two inputs of one number each" in r.stderr
    r = adcli("x**2", "--at", "x=1", "--plot", str(tmp_path / "p.jpg"))
    assert r.exit_code == 2 and ".png" in r.stderr
