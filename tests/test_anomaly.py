"""NaN and infinity provenance: `grad --detect-anomaly` and the `where` lint."""
import json

from typer.testing import CliRunner

from adcli.cli import app

runner = CliRunner()


def grad(*args):
    return runner.invoke(app, ["grad", *[str(a) for a in args]])


def anomalies(*args):
    r = grad(*args, "--detect-anomaly", "--json")
    return r, json.loads(r.stdout)["anomalies"]


def test_log_at_its_pole_is_found_forward_and_backward():
    r, found = anomalies("log(x - 1)", "--at", "x=1")
    assert r.exit_code == 1          # the results are not finite: a failed check
    assert [(a["phase"], a["op"], a["column"]) for a in found] == [
        ("forward", "log", 1), ("backward", "log", 1)]
    assert found[0]["inputs"] == ["0.0"] and found[0]["reaches"] == ["value"]
    assert found[1]["reaches"] == ["d/dx"]
    assert "anomaly (forward): log(0.0) gives -inf; it reaches the value" in r.stderr
    assert "   | log(x - 1)\n   | ^^^" in r.stderr


def test_zero_times_infinite_derivative_is_found_but_harmless():
    r, found = anomalies("sqrt(x)*0", "--at", "x=0")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["grad"]["x"] == 0.0
    assert [(a["phase"], a["op"]) for a in found] == [("backward", "sqrt")]
    assert found[0]["reaches"] == []
    assert "no gradient is affected" in r.stderr


def test_the_right_node_among_several():
    # exp(1000) overflows to inf (column 12): the first non-finite value in evaluation
    # order; 1/inf = 0 is finite again and log(0) = -inf comes after it. (log(1/exp(x))
    # alone would be rewritten to the finite -x: the - 1 keeps the overflow.)
    r, found = anomalies("2 + log(1/(exp(x) - 1))", "--at", "x=1000")
    forward = [a for a in found if a["phase"] == "forward"]
    assert forward and forward[0]["op"] == "exp" and forward[0]["column"] == 12


def test_script_anomaly_names_the_line(tmp_path):
    p = tmp_path / "a.ad"
    p.write_text("input x = 1\ny = x - 1\nz = log(y) * 2\nreturn z\n")
    r, found = anomalies(p)
    assert found[0]["line"] == 3 and found[0]["op"] == "log"
    assert "a.ad, line 3, column 5" in r.stderr


def test_masked_branch_is_reported_not_failed():
    r, found = anomalies("where(x > 0, log(x), 0)", "--at", "x=0")
    assert r.exit_code == 0
    assert found[0]["phase"] == "forward" and found[0]["reaches"] == []
    assert "does not reach the value" in r.stderr


def test_clean_run_says_so():
    r, found = anomalies("sin(x)", "--at", "x=1")
    assert r.exit_code == 0 and found == []
    assert "no anomaly" in r.stderr


def test_where_lint_is_on_by_default_and_explains():
    r = grad("where(x > 0, log(x), 0)", "--at", "x=0")
    assert r.exit_code == 0
    assert r.stdout == "value\t0.0\nd/dx\t0.0\n"
    assert "second argument of where is -inf" in r.stderr
    assert "gradient stays finite" in r.stderr and "PyTorch and JAX" in r.stderr


def test_where_lint_is_quiet_when_branches_are_finite():
    r = grad("where(x > 0, sqrt(x), 0)", "--at", "x=0")
    assert r.exit_code == 0 and r.stderr == ""


def test_where_lint_ignores_where_inside_derivative_rules(tmp_path):
    # grad() inside a script records derivative rules, some of which use where internally
    p = tmp_path / "g.ad"
    p.write_text("input x = 0\ndef f(x):\n    return x ** 0\nreturn grad(f, x)\n")
    r = grad(p)
    assert r.exit_code == 0, r.output
    assert "where" not in r.stderr
