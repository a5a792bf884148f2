"""The .ad script dialect: the samples, the language, custom rules and errors."""
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import api, autodiff
from adcli.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def script(text, **values):
    vals = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    with np.errstate(all="ignore"):
        return api.gradient(api.trace_script(text, vals, filename="test.ad"))


def error(text, code=2, **values):
    path = Path("/tmp") / f"adcli-test-{abs(hash(text))}.ad"
    path.write_text(text)
    r = run("grad", path, *[f"--at={k}={v}" for k, v in values.items()])
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.stderr
    return r.stderr


# ---------------------------------------------------------------- the samples

@pytest.mark.parametrize("sample, args, expected", [
    ("c_sin.ad", [], "value\t5.123227176010585\nd/dx\t1.8509865563896788\nd/dc\t0.041075725336861546\n"),
    ("linnainmaa.ad", [], "value\t4.442545268822898\nd/dx1\t3.0\nd/dx2\t1.6520714552230837\n"),
    ("nonconvex.ad", [], "value\t0.7919265817264288\nd/dtheta\t-0.23474169019850577\n"),
    ("fancy.ad", [], "value\t0.4987474933020272\nd/da\t0.9974949866040544\nd/db\t0.03536860083385145\n"),
    ("fancy_wrong.ad", [], "value\t0.4987474933020272\nd/da\t0.9974949866040544\nd/db\t-0.03536860083385145\n"),
    ("doubling.ad", [], "value\t-1177.56928\nd/dx\t[102.4, 1024.0, 0.1024]\n"),
    ("indexed_assignment.ad", [], "value\t2.0\nd/dx\t[3.0, 0.0]\n"),
    ("sine.ad", [], "value\t5.320131676918519\nd/dx\t[-0.0770037537313969, -1.3817732906760363, "
                    "0.0, 1.3817732906760363, 0.0770037537313969]\n"),
    ("sine_detached.ad", [], "value\t0.479425538604203\nd/dx\t0.8775825618903728\n"),
])
def test_sample_output(sample, args, expected):
    """sin, cos and sums may differ in the last digit with the CPU's vector unit: numbers
    are compared with a relative tolerance of 1e-12 (as the README's examples are)."""
    from test_readme import same_output
    r = run("grad", SAMPLES / sample, *args)
    assert r.exit_code == 0, r.output
    assert same_output(r.stdout.splitlines(), expected.splitlines()), (r.stdout, expected)


def test_every_sample_is_tested_and_runs():
    tested = {"c_sin.ad", "linnainmaa.ad", "nonconvex.ad", "fancy.ad", "fancy_wrong.ad",
              "doubling.ad", "indexed_assignment.ad", "linear_regression.ad",
              "gradient_descent.ad", "two_layer_relu.ad", "sine.ad", "sine_detached.ad",
              "branch.ad"}   # branch.ad: tests/test_points.py
    assert {p.name for p in SAMPLES.glob("*.ad")} == tested


def test_linear_regression_gradient_is_the_normal_equations():
    text = (SAMPLES / "linear_regression.ad").read_text()
    theta = np.array([0.1, -0.2, 0.3, 0.4, 0.5])
    res = api.gradient(api.trace_script(text, {"theta": theta}), ["theta", "X"])
    traced = api.trace_script(text, {"theta": theta})
    X = traced.inputs["X"].value
    # mse = mean((y - X theta)^2): d/dtheta = -2/n X^T (y - X theta)
    y = X @ np.array([1, -2, 3, -4, 5.0]) + 0.1 * np.random.default_rng(0).standard_normal((100, 5))[:0].sum()
    r = run("grad", SAMPLES / "linear_regression.ad", "--at", "theta=[0.1,-0.2,0.3,0.4,0.5]",
            "--wrt", "theta", "--json")
    assert r.exit_code == 0
    assert res.grad["X"].shape == (100, 5)
    # the same seed gives the same data; another seed gives other data
    other = api.trace_script(text, {"theta": theta}, seed=1)
    assert not np.allclose(other.inputs["X"].value, X)
    again = api.trace_script(text, {"theta": theta}, seed=0)
    assert np.array_equal(again.inputs["X"].value, X)
    del y


def test_linear_regression_matches_closed_form():
    X = np.random.default_rng(3).normal(size=(20, 3))
    y = np.random.default_rng(4).normal(size=20)
    theta = np.array([0.5, -1.0, 2.0])
    text = "input X\ninput y\ninput theta\nreturn mean((y - X @ theta)**2)\n"
    res = script(text, X=X, y=y, theta=theta)
    np.testing.assert_allclose(res.grad["theta"], -2 / 20 * X.T @ (y - X @ theta), rtol=1e-12)


def test_gradient_descent_differentiates_through_the_unrolled_loop():
    res = script((SAMPLES / "gradient_descent.ad").read_text())
    # compare with central differences of the whole descent in theta and lr

    def loss(theta, lr):
        return script((SAMPLES / "gradient_descent.ad").read_text(), theta=theta, lr=lr).value

    h = 1e-6
    fd = (loss(0.5 + h, 0.05) - loss(0.5 - h, 0.05)) / (2 * h)
    assert res.grad["theta"] == pytest.approx(fd, rel=1e-5, abs=1e-8)
    fd = (loss(0.5, 0.05 + h) - loss(0.5, 0.05 - h)) / (2 * h)
    assert res.grad["lr"] == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_two_layer_network_against_finite_differences():
    text = (SAMPLES / "two_layer_relu.ad").read_text()
    res = script(text)
    base = api.trace_script(text, {})
    W2 = base.inputs["W2"].value
    u = np.random.default_rng(5).normal(size=W2.shape)

    def loss(w):
        return float(api.trace_script(text, {"W2": w}).output.value)

    h = 1e-6
    fd = (loss(W2 + h * u) - loss(W2 - h * u)) / (2 * h)
    assert np.sum(res.grad["W2"] * u) == pytest.approx(fd, rel=1e-6)


# ---------------------------------------------------------------- the language

def test_functions_defaults_and_outer_names():
    res = script("input x\nk = 3\ndef f(a, b=2):\n    return a * b + k\nreturn f(x) + f(x, b=10)\n", x=1)
    assert res.value == 1 * 2 + 3 + 1 * 10 + 3 and res.grad["x"] == 12


def test_branches_pick_on_values():
    text = "input x\nif x > 0:\n    y = x**2\nelif x > -1:\n    y = 3*x\nelse:\n    y = -x\nreturn y\n"
    assert script(text, x=2).grad["x"] == 4
    assert script(text, x=-0.5).grad["x"] == 3
    assert script(text, x=-3).grad["x"] == -1


def test_loops_break_continue():
    text = ("input x\ny = 0\nfor i in range(10):\n    if i == 2:\n        continue\n"
            "    if i > 4:\n        break\n    y += x * i\nreturn y\n")
    res = script(text, x=1)
    assert res.value == 0 + 1 + 3 + 4 and res.grad["x"] == 8
    res = script("input x\ny = 0\nfor v in [1, 2, x]:\n    y = y + v * v\nreturn y\n", x=3)
    assert res.value == 14 and res.grad["x"] == 6
    res = script("input A\ns = 0\nfor row in A:\n    s = s + row[0] * row[1]\nreturn s\n",
                 A=[[1, 2], [3, 4]])
    np.testing.assert_array_equal(res.grad["A"], [[2, 1], [4, 3]])


def test_augmented_and_indexed_assignment_have_value_semantics():
    text = "input x\ny = x\ny *= 3\nz = zeros(3)\nz[1:] = [x, y]\nz[0] += x\nreturn sum(z * [1, 10, 100])\n"
    res = script(text, x=2)
    assert res.value == 2 + 20 + 600 and res.grad["x"] == 1 + 10 + 300


def test_grad_inside_a_script_is_differentiable():
    # one Newton step for f(t) = t^4 - 2 t: t1 = t - f'(t)/f''(t), and its derivative in t
    text = ("input t\ndef f(t):\n    return t**4 - 2*t\ndef fp(t):\n    return grad(f, t)\n"
            "return t - grad(f, t) / grad(fp, t)\n")
    t = 1.5
    res = script(text, t=t)
    fp, fpp, fppp = 4 * t**3 - 2, 12 * t**2, 24 * t
    assert res.value == pytest.approx(t - fp / fpp)
    assert res.grad["t"] == pytest.approx(1 - (fpp * fpp - fp * fppp) / fpp**2)


def test_detach_blocks_the_gradient():
    res = script("input x\nreturn x * detach(x) + stop_gradient(x**2)\n", x=3)
    assert res.grad["x"] == 3


def test_custom_backward_is_used_and_its_derivative_too():
    text = (SAMPLES / "fancy_wrong.ad").read_text()
    res = script(text, a=0.5, b=1.5)
    assert res.grad["b"] == pytest.approx(-0.5 * math.cos(1.5))   # what the rule says
    # forward mode through a reverse-only rule goes through reverse mode
    traced = api.trace_script((SAMPLES / "fancy.ad").read_text(), {})
    a, b = traced.inputs["a"], traced.inputs["b"]
    t = autodiff.jvp(traced.graph, traced.output, [a, b], [np.array(1.0), np.array(2.0)])
    assert float(t) == pytest.approx(math.sin(1.5) + 2 * 0.5 * math.cos(1.5))
    # second derivative through the rule (the rule is script code, hence a graph)
    out = traced.output
    (gb,) = autodiff.vjp(traced.graph, out, [b], create_graph=True)
    (gbb,) = autodiff.vjp(traced.graph, gb, [b], create_graph=True)
    assert float(gbb.value) == pytest.approx(-0.5 * math.sin(1.5))


def test_print_writes_to_stderr_with_the_line():
    path = Path("/tmp/adcli-print.ad")
    path.write_text("input x = 2\nprint(\"x is\", x, [1, 2])\nreturn x\n")
    r = run("eval", path)
    assert r.stdout == "2.0\n"
    assert f"{path}:2: x is 2.0 [1.0, 2.0]" in r.stderr


def test_scripts_from_stdin_and_seed():
    r = run("eval", "-", input="input x = 2\nreturn x * 3\n")
    assert r.exit_code == 0 and r.stdout == "6.0\n"
    a = run("eval", "-", "--seed", "1", input="return randn(2)\n").stdout
    b = run("eval", "-", "--seed", "1", input="return randn(2)\n").stdout
    c = run("eval", "-", "--seed", "2", input="return randn(2)\n").stdout
    assert a == b != c


def test_json_names_the_script_file():
    r = run("grad", SAMPLES / "c_sin.ad", "--json")
    assert '"expr": "' + str(SAMPLES / "c_sin.ad") + '"' in r.stdout


# ---------------------------------------------------------------- errors

def test_syntax_errors_point_at_the_line():
    err = error("input x = 1\nif x > 0:\n  y = 1\n    z = 2\nreturn y\n")
    assert "unexpected indentation" in err and "line 4, column 5" in err
    err = error("input x = 1\nif x > 0:\n    y = 1\n  z = 2\nreturn y\n")
    assert "matches no enclosing block" in err and "line 4" in err
    err = error("input x = 1\ny = x +\nreturn y\n")
    assert "line 2, column 8" in err and "   | y = x +" in err


def test_unknown_name_suggests_the_closest():
    err = error("input x = 1\nvalue = x * 2\nreturn valeu\n")
    assert "unknown name 'valeu'" in err and "did you mean 'value'?" in err
    err = error("input x = 1\ndef square_it(a):\n    return a*a\nreturn square_itt(x)\n")
    assert "did you mean 'square_it'?" in err


def test_shape_mismatch_names_both_shapes():
    err = error("input x = [1, 2, 3]\ny = x + [1, 2]\nreturn sum(y)\n")
    assert "shapes (3,) and (2,)" in err and "line 2, column 7" in err


def test_missing_input_and_return():
    assert "no value for input 'theta'" in error("input theta\nreturn theta\n")
    assert "ends without `return`" in error("input x = 1\ny = x\n")
    assert "f() ends without `return`" in error("input x = 1\ndef f(a):\n    y = a\nreturn f(x)\n")
    assert "no input 'z'" in error("input x = 1\nreturn x\n", z=1)


def test_wrong_number_of_arguments():
    err = error("input x = 1\ndef f(a):\n    return a\nreturn f(x, 2)\n")
    assert "f() takes 1 argument, got 2" in err and "line 4" in err
    assert "missing its argument 'b'" in error("input x = 1\ndef f(a, b):\n    return a\nreturn f(x)\n")


def test_failed_assert_exits_1():
    err = error("input x = [1, 2]\nassert sum(x) > 5, \"too small\"\nreturn sum(x)\n", code=1)
    assert "assertion failed: too small" in err and "line 2" in err


def test_runaway_scripts_are_stopped():
    path = Path("/tmp/adcli-loop.ad")
    path.write_text("input x = 1\nwhile x > 0:\n    x = x + 1\nreturn x\n")
    r = run("eval", path, "--max-steps", "1000")
    assert r.exit_code == 2 and "more than 1,000 steps" in r.stderr
    r = run("eval", path, "--max-nodes", "500")
    assert r.exit_code == 2 and "more than 500 nodes" in r.stderr
    assert "calls nested more than 64 deep" in error("def f(a):\n    return f(a)\nreturn f(1)\n")


def test_scripts_cannot_reach_python_or_files():
    assert "unknown function 'open'" in error("return open(1)\n")
    assert "unknown function '__import__'" in error("return __import__(1)\n")
    assert "unknown attribute" in error("input x = 1\nreturn x.__class__\n")
    assert "syntax error" in error("import os\nreturn 1\n")
