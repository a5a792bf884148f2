"""adcli gradcheck: analytic derivatives against numeric ones, verdicts and exit codes."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import check as gradcheck
from adcli.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, ["gradcheck", *[str(a) for a in args]], input=input)


def check(*args, code=0, input=None):
    r = run(*args, input=input)
    assert r.exit_code == code, r.output + r.stderr
    assert "Traceback" not in r.output + r.stderr
    return r


def verdict(r):
    """(verdict, message) from the last line of plain output."""
    last = r.stdout.strip().splitlines()[-1].split("\t")
    assert last[0] == "verdict", r.stdout
    return last[1], last[2]


def rows(r):
    """The table's rows as dicts, keyed by the header line."""
    lines = r.stdout.strip().splitlines()
    header = lines[0].split("\t")
    assert header == ["check", "input", "index", "analytic", "numeric", "abs_diff", "rel_diff",
                      "tolerance", "status"]
    return [dict(zip(header, ln.split("\t"))) for ln in lines[1:]
            if ln.split("\t")[0] not in ("kink", "verdict")]


def script(tmp_path, text, name="check.ad"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- custom backward rules

def test_a_right_backward_rule_passes():
    r = check(SAMPLES / "fancy.ad")
    assert verdict(r)[0] == "pass"
    got = {(x["check"], x["input"]): x["status"] for x in rows(r)}
    assert got == {("grad", "a"): "ok", ("grad", "b"): "ok",
                   ("rule", "fancy(a)"): "ok", ("rule", "fancy(b)"): "ok"}


def test_a_wrong_backward_rule_fails_naming_the_rule_its_parameter_and_the_input():
    r = check(SAMPLES / "fancy_wrong.ad", code=1)
    v, message = verdict(r)
    assert v == "fail"
    assert message.startswith("the backward rule of fancy (")
    assert "fancy_wrong.ad, line 9) is wrong for its parameter b;" in message
    assert message.endswith("it makes the gradient of b wrong")
    table = rows(r)
    assert table[0]["status"] == "FAIL"           # worst first
    by = {(x["check"], x["input"]): x for x in table}
    assert by["grad", "b"]["status"] == "FAIL" and by["grad", "a"]["status"] == "ok"
    assert float(by["grad", "b"]["analytic"]) == pytest.approx(-float(by["grad", "b"]["numeric"]))
    assert by["rule", "fancy(b)"]["status"] == "FAIL" and by["rule", "fancy(a)"]["status"] == "ok"


def test_the_sine_sample_passes_at_every_element():
    r = check(SAMPLES / "sine.ad")
    assert verdict(r)[0] == "pass"
    assert "5 gradient entries, the backward rule of mysin" in verdict(r)[1]


def test_order_2_checks_the_derivative_of_a_backward_rule():
    # g * detach(cos(x)): the gradient is right, the rule's own derivative is 0
    r = check(SAMPLES / "sine_detached.ad")
    assert verdict(r)[0] == "pass"
    r = check(SAMPLES / "sine_detached.ad", "--order", "2", code=1)
    v, message = verdict(r)
    assert "the backward rule of mysin" in message and "line 9) has a wrong derivative" in message
    assert "its parameter x" in message
    by = {(x["check"], x["input"]): x for x in rows(r)}
    assert by["hvp", "x"]["status"] == "FAIL" and float(by["hvp", "x"]["analytic"]) == 0
    assert by["rule2", "mysin(x)"]["status"] == "FAIL"
    assert by["grad", "x"]["status"] == "ok"


def test_order_2_passes_for_right_rules_and_plain_expressions():
    assert verdict(check(SAMPLES / "sine.ad", "--order", "2"))[0] == "pass"
    r = check("x**3*y + sin(x*y)", "--at", "x=0.7,y=-1.3", "--order", "2")
    assert {x["check"] for x in rows(r)} == {"grad", "hvp"}


def test_a_vector_valued_custom_rule_gets_its_whole_jacobian_checked(tmp_path):
    text = ("input x = [0.5, 1.0, 1.5]\n"
            "def f(x):\n    return x * x\n"
            "backward f(x, out, g):\n    return {}\n"
            "return f(x) * 3\n")
    r = check(script(tmp_path, text.format("2 * g * x")))
    assert verdict(r)[1].startswith("the derivatives agree with central differences: 9 Jacobian")
    r = check(script(tmp_path, text.format("2 * g * x + g * (x > 1)")), code=1)
    assert "the backward rule of f" in verdict(r)[1]
    failed = {(x["check"], x["index"]) for x in rows(r) if x["status"] == "FAIL"
              and x["check"] != "rule"}
    assert failed == {("jacobian[2]", "[2]")}       # only d out[2] / d x[2] is wrong


# ---------------------------------------------------------------- --expect

def test_expect_formulas_that_are_right_pass():
    r = check("x*(x+y)", "--at", "x=2,y=3", "--expect", "x=2*x+y", "--expect", "y=x")
    assert verdict(r)[0] == "pass"
    assert sum(x["check"] == "expect" for x in rows(r)) == 2


def test_a_wrong_expect_formula_is_named():
    r = check("x*(x+y)", "--at", "x=2,y=3", "--expect", "x=2*x", "--expect", "y=x", code=1)
    v, message = verdict(r)
    assert message == '--expect x="2*x" is wrong: it gives 4 where the numeric derivative is 7'
    # adcli's own gradient is right
    assert all(x["status"] == "ok" for x in rows(r) if x["check"] == "grad")


def test_expect_on_a_script_uses_its_inputs_and_arrays():
    r = check(SAMPLES / "sine.ad", "--expect", "x=sin(x) + x*cos(x)")
    assert verdict(r)[0] == "pass"
    r = check(SAMPLES / "sine.ad", "--expect", "x=x*cos(x)", code=1)
    assert verdict(r)[1].startswith('--expect x="x*cos(x)" is wrong')


# ---------------------------------------------------------------- non-smooth points

@pytest.mark.parametrize("expr, at, left, right, op", [
    ("abs(x)", "x=0", -1.0, 1.0, "abs"),
    ("relu(x)", "x=0", 0.0, 1.0, "relu"),
    ("clip(x, 0, 1) * 3", "x=1", 3.0, 0.0, "clip"),
    ("maximum(x, 2*x)", "x=0", 1.0, 2.0, "maximum"),    # the tie splits: 1.5
])
def test_a_kink_is_a_non_smooth_point_not_a_failure(expr, at, left, right, op):
    r = check(expr, "--at", at)
    v, message = verdict(r)
    assert v == "nonsmooth"
    kink = [ln.split("\t") for ln in r.stdout.splitlines() if ln.startswith("kink")]
    assert len(kink) == 1
    assert float(kink[0][3]) == left and float(kink[0][4]) == right
    assert f"on a kink of {op} (line 1" in message
    assert "non-smooth point" in r.stderr


def test_jumps_of_floor_and_sign_are_non_smooth_points():
    for expr, at in (("floor(x)", "x=1"), ("sign(x)", "x=0"), ("round(x)", "x=0.5")):
        r = check(expr, "--at", at)
        assert verdict(r)[0] == "nonsmooth" and "jumps" in verdict(r)[1], expr


def test_only_the_elements_on_a_kink_are_non_smooth():
    r = check("sum(abs(x))", "--at", "x=[0, 1e-6, -2]")
    status = {x["index"]: x["status"] for x in rows(r)}
    assert status == {"[0]": "nonsmooth", "[1]": "ok", "[2]": "ok"}


def test_a_wrong_value_at_a_kink_still_fails(tmp_path):
    # a subgradient must lie between the one-sided slopes: 5 is not in [-1, 1]
    text = ("input x = 0.0\n"
            "def f(x):\n    return abs(x)\n"
            "backward f(x, out, g):\n    return g * (sign(x) + 5 * (x == 0))\n"
            "return f(x)\n")
    r = check(script(tmp_path, text), code=1)
    assert verdict(r)[0] == "fail"


def test_ties_of_max_are_non_smooth():
    r = check("max(x)", "--at", "x=[1,3,3]")
    assert verdict(r)[0] == "nonsmooth"
    assert {x["index"]: x["status"] for x in rows(r)} == {"[0]": "ok", "[1]": "nonsmooth",
                                                           "[2]": "nonsmooth"}
    assert "on a kink of max (line 1, column 1)" in verdict(r)[1]


def test_ties_of_a_reduction_along_an_axis_name_the_op():
    r = check("sum(min(A, axis=1))", "--at", "A=[[1,1],[0,3]]")
    assert verdict(r)[0] == "nonsmooth" and "on a kink of min" in verdict(r)[1]
    assert {x["index"]: x["status"] for x in rows(r)} == {
        "[0, 0]": "nonsmooth", "[0, 1]": "nonsmooth", "[1, 0]": "ok", "[1, 1]": "ok"}


# ---------------------------------------------------------------- float32

def test_float32_rounding_is_not_blamed_on_the_derivative():
    # 1000.001 is 1000.0009765625 in float32: the derivative 2(x - 1000) is off by 2%
    r = check("(x - 1000)**2", "--at", "x=1000.001", "--dtype", "float32")
    v, message = verdict(r)
    assert v == "rounding"
    assert "float32 rounding, not a wrong derivative" in message
    assert rows(r)[0]["status"] == "rounding"
    assert r.stderr.startswith("warning: ")
    assert verdict(check("(x - 1000)**2", "--at", "x=1000.001"))[0] == "pass"


def test_a_wrong_rule_in_float32_is_still_wrong():
    r = check(SAMPLES / "fancy_wrong.ad", "--dtype", "float32", code=1)
    assert "parameter b" in verdict(r)[1]


def test_float32_has_looser_default_tolerances():
    obj = json.loads(check("sin(x)", "--at", "x=1", "--dtype", "float32", "--json").stdout)
    assert obj["tolerances"]["rtol"] == 1e-3 and obj["tolerances"]["atol"] == 1e-5
    assert obj["dtype"] == "float32"


# ---------------------------------------------------------------- large inputs, --fast

def test_fast_random_projections_pass_on_a_large_input():
    r = check("sum(sin(x) * exp(-x*x))", "--at", "x=linspace(-2, 2, 5000)")
    v, message = verdict(r)
    assert v == "pass" and "1 random projection of the gradient" in message
    assert rows(r)[0]["index"] == "*"


def test_fast_locates_a_planted_wrong_entry(tmp_path):
    text = ("input x = linspace(-1, 1, 5000)\n"
            "def f(x):\n    return sin(x)\n"
            "backward f(x, out, g):\n"
            "    e = zeros(5000)\n    e[1234] = 0.5\n"
            "    return g * (cos(x) + e)\n"
            "return sum(f(x))\n")
    r = check(script(tmp_path, text), code=1)
    located = [x for x in rows(r) if x["check"] == "grad" and x["index"] != "*"]
    assert [x["index"] for x in located] == ["[1234]"]
    assert float(located[0]["analytic"]) - float(located[0]["numeric"]) == pytest.approx(0.5, abs=1e-6)
    assert "the backward rule of f" in verdict(r)[1]


def test_fast_on_a_small_input_and_a_vector_value():
    r = check("x * y", "--at", "x=[1,2,3],y=[4,5,6]", "--fast", "--json")
    obj = json.loads(r.stdout)
    assert obj["verdict"] == "pass" and obj["mode"] == "projections"
    assert {w["check"] for w in obj["worst"]} == {"vjp"}


# ---------------------------------------------------------------- the complex step

def test_the_complex_step_agrees_for_an_analytic_expression():
    r = check("sum(sin(x) * exp(-x*x)) + prod(x)", "--at", "x=[0.5, -1, 2]", "--method", "complex",
              "--json")
    obj = json.loads(r.stdout)
    assert obj["verdict"] == "pass" and obj["method"] == "complex"
    assert all(w["abs_diff"] < 1e-14 for w in obj["worst"])


def test_the_complex_step_refuses_ops_with_kinks():
    r = check("2*abs(x)", "--at", "x=1", "--method", "complex", code=2)
    assert "abs is not real-analytic" in r.stderr and "--method central" in r.stderr
    assert "line 1, column 3" in r.stderr
    r = check("softplus(x)", "--at", "x=1", "--method", "complex", code=2)
    assert "softplus does not take complex numbers" in r.stderr
    check("sigmoid(x)", "--at", "x=[-30, 1, 30]", "--method", "complex")   # analytic each side


def test_the_complex_step_follows_where_and_checks_rules():
    check("where(x > 0, x**2, -x)", "--at", "x=[-1, 2]", "--method", "complex")
    r = check(SAMPLES / "fancy_wrong.ad", "--method", "complex", code=1)
    assert "parameter b" in verdict(r)[1]


# ---------------------------------------------------------------- other checks and output

def test_detach_is_pointed_out_when_it_makes_a_gradient_disagree():
    r = check("x * detach(x)", "--at", "x=3", code=1)
    assert "goes through detach at line 1, column 5" in verdict(r)[1]


def test_wrt_restricts_the_inputs():
    r = check("x*y", "--at", "x=2,y=3", "--wrt", "y")
    assert [x["input"] for x in rows(r)] == ["y"]


def test_json_output():
    r = check(SAMPLES / "fancy_wrong.ad", "--json", "--rtol", "1e-7", "--atol", "0", "--eps",
              "1e-3", code=1)
    obj = json.loads(r.stdout)
    assert set(obj) == {"expr", "verdict", "message", "method", "order", "mode", "tolerances",
                        "worst", "inputs", "rules", "expect", "nonsmooth", "dtype", "device"}
    assert obj["verdict"] == "fail" and obj["expr"].endswith("fancy_wrong.ad")
    assert obj["tolerances"] == {"rtol": 1e-7, "atol": 0.0, "eps": 1e-3, "safety": 10.0}
    worst = obj["worst"][0]
    assert set(worst) == {"check", "input", "index", "analytic", "numeric", "abs_diff",
                          "rel_diff", "tolerance", "status"}
    assert worst["status"] == "FAIL"
    assert obj["inputs"]["b"]["failed"] == 1 and obj["inputs"]["a"]["failed"] == 0
    assert obj["inputs"]["b"]["max_abs_diff"] == pytest.approx(2 * 0.0353686, rel=1e-5)
    (rule,) = obj["rules"]
    assert rule["name"] == "fancy" and rule["wrong"] == ["b"] and rule["inputs"] == ["b"]
    assert rule["line"] == 9 and rule["status"] == "fail"


def test_json_reports_non_smooth_points():
    obj = json.loads(check("abs(x)", "--at", "x=0", "--json").stdout)
    assert obj["verdict"] == "nonsmooth"
    (point,) = obj["nonsmooth"]
    assert (point["left"], point["right"], point["kinks"]) == (-1.0, 1.0, ["abs (line 1, column 1)"])


def test_scripts_from_stdin_and_print_statements_print_once():
    text = 'input x = 2\nprint("x is", x)\nreturn x ** 3\n'
    r = check("-", input=text)
    assert verdict(r)[0] == "pass"
    assert r.stderr.count("x is") == 1


@pytest.mark.parametrize("args, message", [
    (["x*y", "--at", "x=1"], "no value for 'y'"),
    (["x", "--at", "x=1", "--method", "forward"], "unknown --method"),
    (["x", "--at", "x=1", "--order", "3"], "--order 3"),
    (["x", "--at", "x=1", "--eps", "0"], "--eps"),
    (["x", "--at", "x=1", "--rtol", "-1"], "--rtol"),
    (["x", "--at", "x=1", "--expect", "y=1"], "--expect y: the expression has no input 'y'"),
    (["x", "--at", "x=1", "--expect", "x=z"], "the formula uses 'z'"),
    (["x", "--at", "x=1", "--expect", "x"], "--expect expects NAME=FORMULA"),
    (["[x, x]", "--at", "x=1", "--expect", "x=1"], "--expect needs a scalar value"),
    (["1 + 2"], "nothing to check"),
    (["x > 0", "--at", "x=1"], "boolean"),
    (["log(x)", "--at", "x=-1"], "not finite"),
    (["x", "--at", "x=1", "--wrt", "y"], "--wrt y"),
    (["x", "--at", "x=1", "--dtype", "float16"], "unknown dtype"),
])
def test_bad_input_is_exit_code_2(args, message):
    r = check(*args, code=2)
    assert message in r.stderr


def test_the_library_returns_a_report():
    rep = gradcheck.check("x*(x+y)", {"x": np.array(2.0), "y": np.array(3.0)})
    assert rep.verdict == "pass" and not rep.failed
    assert {r.input: r.analytic for r in rep.rows} == {"x": 7.0, "y": 2.0}
    assert gradcheck.to_plain(rep).splitlines()[-1].startswith("verdict\tpass\t")


def test_richardson_extrapolation_is_exact_for_polynomials_of_low_degree():
    # central differences of x**5: D(h) = 5x^4 + 10x^2 h^2 + h^4; two extrapolations remove both
    x, h = 1.3, np.array([0.1])
    hs = h[0] / 2.0 ** np.arange(3)
    fp = ((x + hs) ** 5)[None, :, None]
    fm = ((x - hs) ** 5)[None, :, None]
    est = gradcheck.estimate(fp, fm, np.array([[[x ** 5]]]), h, 1e-6, 1e-8)
    assert est.value[0, 0] == pytest.approx(5 * x ** 4, rel=1e-13)
    # the estimate is the error of the previous extrapolant, R1(h/2): 10 x^2 (h/2)^4 ... / 5
    assert 1e-7 < est.error[0, 0] < 1e-5 and not est.nonsmooth[0, 0]


def test_every_option_of_gradcheck_is_in_the_readme():
    import re

    import typer.main
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Checking derivatives: `adcli gradcheck`", 1)[1].split("\n## ", 1)[0]
    cmd = typer.main.get_command(app).commands["gradcheck"]
    options = {o for p in cmd.params for o in p.opts if o.startswith("--")}
    missing = [o for o in sorted(options) if not re.search(re.escape(o) + r"(?![\w-])", section)]
    assert not missing, f"the gradcheck section of README.md does not mention {missing}"


@pytest.mark.parametrize("expr, shapes", [
    ("sum(sin(x)*exp(-x*x))", {"x": (7,)}),
    ("x * sum(x)", {"x": (5,)}),
    ("logsumexp(x)*mean(x) + max(x) - prod(2*x)", {"x": (6,)}),
    ("sum(softmax(A, axis=0) * A, axis=1)", {"A": (3, 4)}),
    ("sum(A, axis=0) * sum(A*A, axis=1, keepdims=True)", {"A": (3, 4)}),
    ("where(x > 0, x**2, sin(x)) * c", {"x": (5,), "c": (2, 1)}),
    ("std(x) * var(x, ddof=1) + norm(x)", {"x": (6,)}),
])
def test_all_columns_at_once_is_one_column_at_a_time(expr, shapes):
    from adcli import api
    from adcli.check.function import Function
    rng = np.random.default_rng(7)
    traced = api.trace(expr, {k: rng.normal(size=s) for k, s in shapes.items()})
    names = list(traced.inputs)
    replay = Function(traced, names)
    base = [np.array(traced.inputs[n].value, dtype=float) for n in names]
    for j in range(len(names)):
        x = base[j].reshape(-1)
        t = 1e-3 * rng.normal(size=x.size)
        at_once = replay.columns(j, x, t, np.arange(x.size))
        assert at_once is not None
        for k in range(x.size):
            moved = [b.copy() for b in base]
            moved[j].reshape(-1)[k] += t[k]
            np.testing.assert_allclose(at_once[k], np.ravel(replay(moved)), rtol=1e-13, atol=1e-13)


def test_all_columns_at_once_leaves_the_columns_where_a_branch_changes():
    from adcli import api
    from adcli.check.function import Function
    traced = api.trace_script("input x = [1, 2, 3]\nif sum(x) > 6.0005:\n    y = x * x\n"
                              "else:\n    y = 2 * x\nreturn y\n", {})
    function = Function(traced, ["x"])
    x, t = np.array([1.0, 2.0, 3.0]), np.array([1e-3, -1e-3, 1e-4])
    at_once = function.columns(0, x, t, np.arange(3))
    assert list(function.flipped) == [True, False, False] and np.isnan(at_once[0]).all()
    for k in (1, 2):
        moved = x.copy()
        moved[k] += t[k]
        np.testing.assert_allclose(at_once[k], function([moved]), rtol=1e-14)


def test_detach_is_seen_through_by_both_methods():
    for method in ("central", "complex"):
        r = check("x * detach(x)", "--at", "x=3", "--method", method, code=1)
        assert "detach" in verdict(r)[1], method


def test_entries_that_cannot_be_checked_are_not_called_agreeing():
    r = run("log(x)", "--at", "x=1e-300")
    assert r.exit_code == 2
    assert verdict(r)[0] == "unchecked"
    r = check("log(x) + y", "--at", "x=1e-300,y=1")
    assert verdict(r)[0] == "pass" and "1 entry could not be checked" in verdict(r)[1]


@pytest.mark.parametrize("expr, at", [("abs(x)", "x=1e-10"), ("hypot(x, y)", "x=1e-10,y=1e-10")])
def test_fast_mode_calls_a_kink_a_non_smooth_point_too(expr, at):
    r = check(expr, "--at", at, "--fast")
    assert verdict(r)[0] == "nonsmooth"
