"""The command line, through typer's test runner: outputs, files, errors, exit codes."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import __version__
from adcli.cli import app

runner = CliRunner()


def adcli(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def ok(*args, input=None):
    r = adcli(*args, input=input)
    assert r.exit_code == 0, r.output + r.stderr
    return r.stdout


def fails(*args, code=2, input=None):
    r = adcli(*args, input=input)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output + r.stderr
    return r.stderr


# ---------------------------------------------------------------- outputs

def test_grad_plain_output():
    assert ok("grad", "x*(x+y)", "--at", "x=2,y=3") == "value\t10.0\nd/dx\t7.0\nd/dy\t2.0\n"


def test_eval_plain_output_is_the_value_alone():
    assert ok("eval", "x*(x+y)", "--at", "x=2,y=3") == "10.0\n"
    assert ok("eval", "linspace(0, 1, 5)") == "[0.0, 0.25, 0.5, 0.75, 1.0]\n"


def test_json_output():
    obj = json.loads(ok("grad", "x*(x+y)", "--at", "x=2,y=3", "--json"))
    assert obj == {"expr": "x*(x+y)", "value": 10.0, "grad": {"x": 7.0, "y": 2.0},
                   "dtype": "float64", "device": "cpu"}
    obj = json.loads(ok("eval", "[1, 2] / x", "--at", "x=0", "--json"))
    assert obj["value"] == ["inf", "inf"] and "grad" not in obj
    obj = json.loads(ok("grad", "sum(A @ x)", "--at", "A=[[1,2],[3,4]]", "--at", "x=[1,1]", "--json"))
    assert obj["grad"]["A"] == [[1.0, 1.0], [1.0, 1.0]] and obj["grad"]["x"] == [4.0, 6.0]


def test_nan_in_json_is_a_string():
    obj = json.loads(ok("eval", "log(x)", "--at", "x=[-1, 0]", "--json"))
    assert obj["value"] == ["nan", "-inf"]


def test_wrt_and_dtype():
    out = ok("grad", "x*y", "--at", "x=2,y=3", "--wrt", "y", "--dtype", "float32", "--json")
    obj = json.loads(out)
    assert obj["grad"] == {"y": 2.0} and obj["dtype"] == "float32"


def test_at_values_are_constant_expressions():
    out = ok("grad", "sum(x*y)", "--at", "x=[1,2,3],y=pi/4", "--json")
    obj = json.loads(out)
    assert obj["grad"]["y"] == 6.0
    assert obj["grad"]["x"] == [np.pi / 4] * 3
    out = ok("eval", "sum(x)", "--at", "x=linspace(0,1,5)")
    assert out == "2.5\n"
    assert ok("eval", "x", "--at", "x=-1.5e-3") == "-0.0015\n"


def test_stdin_expression():
    assert ok("grad", "-", "--at", "x=3", input="x**2\n") == "value\t9.0\nd/dx\t6.0\n"


def test_version_and_help():
    assert ok("--version").strip() == f"adcli {__version__}"
    assert "grad" in ok("--help") and "eval" in ok("--help")


def test_ops_lists_functions_with_conventions():
    out = ok("ops")
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert "sin" in rows and "logsumexp" in rows and "mul0" not in rows
    assert "abs'(0) = 0" in rows["abs"][-1]
    entries = json.loads(ok("ops", "--json"))
    assert {"name", "usage", "derivative"} <= set(entries[0])


# ---------------------------------------------------------------- files

def test_input_files(tmp_path):
    np.save(tmp_path / "x.npy", np.array([1.0, 2.0, 3.0]))
    (tmp_path / "x.csv").write_text("1,2,3\n")
    (tmp_path / "x.txt").write_text("1 2 3\n")
    (tmp_path / "x.json").write_text("[1, 2, 3]")
    for name in ("x.npy", "x.csv", "x.txt", "x.json"):
        out = ok("grad", "sum(x**2)", "--at", f"x=@{tmp_path / name}")
        assert out == "value\t14.0\nd/dx\t[2.0, 4.0, 6.0]\n", name


def test_bad_input_files(tmp_path):
    assert "no such file" in fails("eval", "x", "--at", f"x=@{tmp_path}/missing.npy")
    (tmp_path / "bad.json").write_text("{\"a\": [1, \"two\"]}")
    assert "cannot read" in fails("eval", "x", "--at", f"x=@{tmp_path}/bad.json")
    np.save(tmp_path / "big.npy", np.zeros(1000))
    assert "limit" in fails("eval", "x", "--at", f"x=@{tmp_path}/big.npy", "--max-elements", "10")


def test_out_files(tmp_path):
    ok("grad", "sum(x*y)", "--at", "x=[1,2],y=3", "--out", str(tmp_path / "r.npz"))
    with np.load(tmp_path / "r.npz") as z:
        assert z["value"] == 9 and list(z["grad_x"]) == [3, 3] and z["grad_y"] == 3
    ok("grad", "sum(x**2)", "--at", "x=[1,2]", "--out", str(tmp_path / "g.npy"))
    assert list(np.load(tmp_path / "g.npy")) == [2, 4]
    ok("grad", "sum(x**2)", "--at", "x=[1,2]", "--out", str(tmp_path / "r.csv"))
    assert (tmp_path / "r.csv").read_text().splitlines() == [
        "name,index,value", "value,,5.0", "grad_x,0,2.0", "grad_x,1,4.0"]
    ok("grad", "sum(x**2)", "--at", "x=[1,2]", "--out", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["grad"]["x"] == [2.0, 4.0]


def test_large_arrays_are_complete_in_pipes():
    out = ok("eval", "arange(2000)")
    assert len(json.loads(out)) == 2000


# ---------------------------------------------------------------- errors

def test_parse_error_shows_caret_and_expectation():
    err = fails("grad", "x*(x+", "--at", "x=1")
    assert "syntax error: unexpected end of input" in err
    assert "   | x*(x+\n   |      ^" in err
    assert "expected" in err and "a number" in err


def test_unknown_function_suggests():
    err = fails("grad", "sine(x)", "--at", "x=1")
    assert "unknown function 'sine'" in err and "did you mean 'sin'?" in err


def test_shape_mismatch_names_operator_shapes_and_place():
    err = fails("grad", "sum(x + y)", "--at", "x=[1,2,3],y=[1,2]")
    assert "+: shapes (3,) and (2,) do not broadcast" in err
    assert "column 7" in err


def test_grad_of_non_scalar_suggests_sum():
    err = fails("grad", "x*2", "--at", "x=[1,2]")
    assert "scalar" in err and "sum(" in err


def test_missing_and_extra_values():
    err = fails("grad", "x*y*z", "--at", "x=1")
    assert "no value for 'y', 'z'" in err
    err = fails("grad", "value*2", "--at", "valeu=1")
    assert "no name 'valeu'" in err and "did you mean 'value'?" in err
    err = fails("grad", "x + y", "--at", "x=1,yy=2")
    assert "no name 'yy'" in err and "did you mean 'y'?" in err
    err = fails("eval", "sin + x", "--at", "x=1")
    assert "'sin' is a function; call it as sin(...)" in err
    err = fails("grad", "value*2", "--at", "value=1,valeu=1")
    assert "no name 'valeu'" in err and "value" in err


def test_bad_at_syntax():
    assert "NAME=VALUE" in fails("grad", "x", "--at", "x")
    assert "twice" in fails("grad", "x", "--at", "x=1,x=2")
    assert "unknown dtype" in fails("grad", "x", "--at", "x=1", "--dtype", "float16")
    assert "no input 'z'" in fails("grad", "x", "--at", "x=1", "--wrt", "z")
    assert "give each input once" in fails("grad", "x", "--at", "x=1", "--wrt", "")
    assert "give each input once" in fails("grad", "x", "--at", "x=1", "--wrt", "x,x")


def test_expression_may_start_with_minus():
    assert ok("grad", "-x**2", "--at", "x=3") == "value\t-9.0\nd/dx\t-6.0\n"


def test_booleans_print_as_true_and_false():
    assert ok("eval", "x > [0, 2]", "--at", "x=1") == "[true, false]\n"
    assert json.loads(ok("eval", "x > 0", "--at", "x=1", "--json"))["value"] is True


def test_derivative_undefined_at_a_singular_matrix_is_an_input_error():
    err = fails("hessian", "det(A)", "--at", "A=[[1,1],[1,1]]")
    assert "is undefined here: Singular matrix" in err and "^^^" in err
    err = fails("grad", "sum(solve(A, b))", "--at", "A=[[1,1],[1,1]],b=[1,2]")
    assert "Singular matrix" in err


def test_debug_keeps_exit_codes():
    r = adcli("grad", "sine(x)", "--at", "x=1", "--debug")
    assert r.exit_code == 2 and "Traceback" in r.stderr


@pytest.mark.parametrize("expr, message", [
    ("(" * 100_000 + "x" + ")" * 100_000, "nested more than"),
    ("1" * 5000, "number literal of 5,000 characters"),
    ("ones(10**12)", "1,000,000,000,000 elements"),
    ("__import__('os')", "unknown function '__import__'"),
    ("'os' + x", "the string 'os' is not a value"),
    ("x.__class__()", "unknown method '.__class__()'"),
    ("__import__(os)", "unknown function '__import__'"),
    ("x.__class__", "unknown attribute '.__class__'"),
    ("open(x)", "unknown function 'open'"),
])
def test_hostile_inputs_fail_fast(expr, message):
    err = fails("eval", expr, "--at", "x=1") if "x" in expr else fails("eval", expr)
    assert message in err


def test_huge_power_overflows_to_inf_with_a_warning():
    r = adcli("eval", "9**9**9**9")
    assert r.exit_code == 0 and r.stdout == "inf\n"
    assert "first produced by pow" in r.stderr


def test_element_limit_is_an_option():
    assert "limit" in fails("eval", "sum(ones(1000))", "--max-elements", "100")
    assert ok("eval", "sum(ones(1000))", "--max-elements", "1000") == "1000.0\n"


def test_nan_provenance_is_reported():
    r = adcli("grad", "sum(log(x - 1))", "--at", "x=[1, 2]")
    assert r.exit_code == 0
    assert "first produced by log" in r.stderr and "^" in r.stderr


def test_infinite_gradient_is_traced_to_its_rule():
    r = adcli("grad", "x + sqrt(y)", "--at", "x=1,y=0")
    assert r.exit_code == 0 and r.stdout == "value\t1.0\nd/dx\t1.0\nd/dy\tinf\n"
    assert "derivative of sqrt(0.0)" in r.stderr and "column 5" in r.stderr


def test_static_arguments_must_be_integers():
    assert "must be an integer" in fails("eval", "sum(x, axis=0.5)", "--at", "x=[1,2]")
    assert "out of range" in fails("eval", "sum(x, axis=3)", "--at", "x=[1,2]")
    assert "missing" in fails("eval", "clip(x)", "--at", "x=1")
    assert "at most" in fails("eval", "sin(x, 1, 2)", "--at", "x=1")


# ---------------------------------------------------------------- found by QA

def test_grad_of_a_constant_keeps_the_plain_format():
    r = adcli("grad", "1+2")
    assert r.exit_code == 0 and r.stdout == "value\t3.0\n"


def test_out_writes_the_file_named(tmp_path):
    path = tmp_path / "g.NPZ"
    r = adcli("grad", "x*y", "--at", "x=1,y=2", "--out", str(path))
    assert r.exit_code == 0 and path.exists() and not (tmp_path / "g.NPZ.npz").exists()
    import numpy as np
    assert set(np.load(path)) == {"value", "grad_x", "grad_y"}
    assert adcli("grad", "x", "--at", "x=1", "--out", "").exit_code == 2


def test_value_files_edge_cases(tmp_path):
    (tmp_path / "e.csv").write_text("")
    r = adcli("eval", "x", "--at", f"x=@{tmp_path / 'e.csv'}")
    assert r.exit_code == 0 and r.stdout == "[]\n" and "Warning" not in r.stderr
    (tmp_path / "b.csv").write_text("\ufeff1,2\n", encoding="utf-8")
    assert adcli("eval", "x", "--at", f"x=@{tmp_path / 'b.csv'}").stdout == "[1.0, 2.0]\n"
    r = adcli("eval", "x", "--at", f"x=@{tmp_path}")
    assert r.exit_code == 2 and "is a folder" in r.stderr


def test_detect_anomaly_names_the_derivative_of_its_order():
    r = adcli("grad", "sqrt(x)", "--at", "x=0", "--order", "2", "--detect-anomaly")
    assert r.exit_code == 1 and "anomaly: d2/dx2 is not finite" in r.stderr


@pytest.mark.parametrize("expr, out", [
    ("sum(x, axis=None)", "3.0\n"), ("x[None]", "[[1.0, 2.0]]\n"), ("x[:, None]", "[[1.0], [2.0]]\n"),
])
def test_none_for_static_arguments_and_new_axes(expr, out):
    r = adcli("eval", expr, "--at", "x=[1,2]")
    assert r.exit_code == 0 and r.stdout == out
    r = adcli("eval", "None + 1")
    assert r.exit_code == 2 and "None is not a value" in r.stderr


def test_wrt_may_repeat():
    r = adcli("grad", "x*y", "--at", "x=1,y=2", "--wrt", "y", "--wrt", "x")
    assert r.exit_code == 0 and r.stdout == "value\t2.0\nd/dy\t1.0\nd/dx\t2.0\n"
    assert adcli("grad", "x*y", "--at", "x=1,y=2", "--wrt", "x", "--wrt", "x").exit_code == 2


def test_an_unknown_option_is_named_with_a_suggestion():
    # through the console entry point (python -m adcli), which builds only the command used
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "adcli", "grad", "x", "--at", "x=1", "--wtr", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "No such option: --wtr" in r.stderr and "--wrt" in r.stderr
    r = subprocess.run([sys.executable, "-m", "adcli", "eval", "-x**2", "--at", "x=3"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "-9.0\n"


@pytest.mark.parametrize("command", [["eval"], ["grad"], ["dot", "--values"], ["trace"],
                                     ["gradcheck"], ["jacobian"], ["hessian"]])
def test_an_error_in_a_value_computed_later_points_into_the_source(command):
    # a 10x10 matrix is computed when needed, not as it is recorded: the error still
    # names the place (the same as for small arrays, computed at once)
    err = fails(*command, "sum(inv(A))", "--at", "A=ones((10,10))")
    assert "inv: Singular matrix" in err and "line 1, column 5" in err and "^^^" in err
