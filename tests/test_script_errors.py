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
