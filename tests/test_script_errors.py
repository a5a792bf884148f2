"""Script errors that are found before a script runs: misplaced break and continue,
and where a syntax error's caret goes."""
import pytest
from typer.testing import CliRunner

from adcli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("text, message, where", [
    ("input x = 1\nbreak\nreturn x\n", "`break` outside a loop", "line 2, column 1"),
    ("input x = 1\nfor i in range(3):\n    def f(y):\n        continue\n    x = x + 1\nreturn x\n",
     "`continue` outside a loop", "line 4, column 9"),
])
def test_break_and_continue_belong_in_a_loop(text, message, where):
    r = runner.invoke(app, ["eval", "-"], input=text)
    assert r.exit_code == 2
    assert message in r.stderr and where in r.stderr


def test_break_inside_if_inside_loop_is_fine():
    text = "input x = 1\nfor i in range(5):\n    if i > 1:\n        break\n    x = x * 2\nreturn x\n"
    r = runner.invoke(app, ["eval", "-"], input=text)
    assert r.exit_code == 0 and r.stdout == "4.0\n"


def test_missing_colon_caret_is_one_column_at_the_end_of_the_line():
    r = runner.invoke(app, ["eval", "-"], input="input x = 1\nfor i in range(3)\n    x = x\nreturn x\n")
    assert r.exit_code == 2
    assert "   | for i in range(3)\n   |                  ^\nhint: expected ':'" in r.stderr


# ---------------------------------------------------------------- found by QA

@pytest.mark.parametrize("text, stdout", [
    ("input x = 1\nreturn x * 2", "2.0\n"),                  # no line break at the end
    ("input x = 1\nreturn x * 2\n# done", "2.0\n"),         # a last comment without one
    ("\ufeffinput x = 1\nreturn x\n", "1.0\n"),              # a byte-order mark
])
def test_scripts_as_editors_write_them(text, stdout):
    r = runner.invoke(app, ["eval", "-"], input=text)
    assert r.exit_code == 0, r.output
    assert r.stdout == stdout


@pytest.mark.parametrize("args, message", [
    (["eval", "#"], "nothing to evaluate"),
    (["eval", "transpose(x, axes=(1, 0, 2))", "--at", "x=[[1,2]]"], "not a permutation"),
    (["eval", "arange(0, inf)"], "finite"),
    (["eval", "x", "--at", "x=1", "--seed", "-1"], "--seed"),
    (["gradcheck", "sum(x**2)", "--at", "x=[]"], "no elements"),
])
def test_bad_input_is_an_error_not_a_crash(args, message):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_a_function_is_not_a_value():
    r = runner.invoke(app, ["eval", "-"], input="input x = 2.0\ndef f(a):\n    return a\nreturn f\n")
    assert r.exit_code == 2 and "the function f is not a value" in r.stderr


def test_a_number_from_a_backward_rule_stands_for_the_whole_parameter():
    text = ("input a = [0.5, 1.0]\ndef f(a):\n    return a * 2\nbackward f(a, out, g):\n"
            "    return g * 2.0\nreturn sum(f(a))\n")
    r = runner.invoke(app, ["grad", "-"], input=text)
    assert r.exit_code == 0 and r.stdout == "value\t3.0\nd/da\t[2.0, 2.0]\n"
    text = text.replace("return g * 2.0", "return 2.0")    # not linear in g, but a number
    r = runner.invoke(app, ["grad", "-"], input=text)
    assert r.exit_code == 0 and r.stdout.endswith("d/da\t[2.0, 2.0]\n")


def test_deep_recursion_up_to_the_depth_limit():
    text = ("input x = 1.0\ndef f(n, x):\n    if n > 0:\n        return f(n - 1, x) * 1.001\n"
            "    return x\nreturn f(900, x)\n")
    r = runner.invoke(app, ["grad", "-", "--max-depth", "1000"], input=text)
    assert r.exit_code == 0, r.output
    key, value = r.stdout.splitlines()[1].split("\t")
    assert key == "d/dx" and float(value) == pytest.approx(1.001 ** 900, rel=1e-12)


@pytest.mark.parametrize("expr, value", [
    ("exp(x > 0)", "2.718281828459045"), ("(x>0)+(x>0)", "2.0"), ("(x>0)-(x>0)", "0.0"),
    ("[x>0, x<0]", "[true, false]"),
])
def test_booleans_in_arithmetic_are_0_and_1(expr, value):
    r = runner.invoke(app, ["eval", expr, "--at", "x=1"])
    assert r.exit_code == 0 and r.stdout == value + "\n"


@pytest.mark.parametrize("args, stdout", [
    (["grad", "prod(x)", "--at", "x=[]"], "value\t1.0\nd/dx\t[]\n"),
    (["grad", "sum(x**2)", "--at", "x=[]", "--order", "2"], "value\t0.0\nd2/dx2\t[]\n"),
])
def test_empty_inputs(args, stdout):
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and r.stdout == stdout


def test_tabs_and_spaces_are_not_mixed():
    text = "input x = 1\nif x > 0:\n\ty = x\n        y = y + 1\nreturn y\n"
    r = runner.invoke(app, ["eval", "-"], input=text)
    assert r.exit_code == 2 and "mixes tabs and spaces" in r.stderr and "line 4" in r.stderr
    r = runner.invoke(app, ["eval", "-"], input=text.replace("        y", "\ty"))
    assert r.exit_code == 0 and r.stdout == "2.0\n"
