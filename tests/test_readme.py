"""The README is a test: every example runs, and every command, option, function and exit
code of the CLI is documented.

Examples are the ```console blocks of README.md. A line starting with `$ ` is a command,
run with bash in a fresh directory holding a copy of samples/ (one per block, so a block
can create the files its later commands read); the lines after it, up to the next command or the end of the block,
are its expected standard output (trailing whitespace ignored). Each command must exit 0:
examples of errors end with `; echo "exit code $?"`. Numbers are compared with a relative
tolerance of 1e-12: their last digits depend on the BLAS kernel and the summation order
(an OpenBLAS that picks another kernel for the CPU prints -0.01753544385576321 where the
README says -0.017535443855763208), the rest of the text digit by digit.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")


def console_blocks(text):
    """[(line number, [(command, [expected lines])])] for each ```console block."""
    blocks = []
    for m in re.finditer(r"^```console[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
        first = text.count("\n", 0, m.start(1)) + 1
        examples = []
        for line in m.group(1).splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line.rstrip())
            else:
                raise AssertionError(f"README.md:{first}: a console block must start with '$ '")
        for _, expected in examples:
            while expected and not expected[-1]:
                expected.pop()
        blocks.append((first, examples))
    return blocks


BLOCKS = console_blocks(TEXT)

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def same_output(got, expected, rel=1e-12, abs_=1e-14):
    """Lines equal up to the last digits of their numbers: the text between numbers is
    the same, and each number is within `rel` of the expected one (or `abs_` of it, for
    results that should be 0 and come out as roundoff)."""
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected):
        if g == e:
            continue
        if NUMBER.split(g) != NUMBER.split(e):
            return False
        gn, en = NUMBER.findall(g), NUMBER.findall(e)
        if len(gn) != len(en) or not all(
                math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_) for a, b in zip(gn, en)):
            return False
    return True


def adcli_executable():
    """The adcli of the environment running the tests (its bin folder first)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("adcli", path=search)
    assert found, "the adcli command is not installed in this environment"
    return found


def example_env():
    env = dict(os.environ)
    bins = [str(Path(adcli_executable()).parent), str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join(bins + [env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    return env


def test_numbers_in_examples_compare_with_a_tolerance():
    assert same_output(["d/dtheta\t[0.012, -0.01753544385576321]"],
                       ["d/dtheta\t[0.012, -0.017535443855763208]"])
    assert same_output(["value\t1e-17"], ["value\t0.0"])
    assert not same_output(["value\t10.000001"], ["value\t10.0"])
    assert not same_output(["d/dx\t7.0"], ["d/dy\t7.0"])
    assert not same_output(["[1.0, 2.0]"], ["[1.0, 2.0, 3.0]"])
    assert not same_output(["1.0"], ["1.0", "2.0"])


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 10
    assert all(examples for _, examples in BLOCKS)


@pytest.mark.parametrize("line,examples", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_example(line, examples, tmp_path):
    env = example_env()
    # the examples run as if in a checkout: samples/ is there
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    for command, expected in examples:
        proc = subprocess.run(["bash", "-c", "set -o pipefail\n" + command], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        got = [s.rstrip() for s in proc.stdout.splitlines()]
        while got and not got[-1]:
            got.pop()
        context = (f"README.md:{line}: $ {command}\n--- stderr ---\n{proc.stderr}"
                   f"--- stdout ---\n{proc.stdout}")
        assert proc.returncode == 0, context
        assert same_output(got, expected), context


# ---------------------------------------------------------------- everything is documented

def documented(word):
    """Does README.md mention `word` as a whole word or option?"""
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", TEXT) is not None


def cli_help(*args):
    env = example_env()
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    proc = subprocess.run([adcli_executable(), *args, "--help"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def cli_commands():
    import typer.main

    from adcli.cli import app
    return typer.main.get_command(app)


def test_every_command_is_documented():
    group = cli_commands()
    assert {"eval", "grad", "ops"} <= set(group.commands)
    for name in group.commands:
        assert f"adcli {name}" in TEXT, f"README.md does not document `adcli {name}`"
    assert "python -m adcli" in TEXT


COMMANDS = [()] + [(name,) for name in sorted(cli_commands().commands)]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(("adcli",) + c) for c in COMMANDS])
def test_every_option_is_documented(command):
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cli_help(*command)))
    group = cli_commands()
    cmd = group.commands[command[0]] if command else group
    declared = {o for p in cmd.params for o in p.opts if o.startswith("--")}
    assert declared <= shown, f"options missing from --help: {declared - shown}"
    missing = sorted(o for o in shown | declared if not documented(o))
    assert not missing, f"README.md does not document {missing} of adcli {' '.join(command)}"


def test_every_function_is_documented():
    from adcli.ops import public_ops
    missing = [o.name for o in public_ops() if not documented(o.name)]
    assert not missing, f"README.md does not mention the functions {missing}"


def test_every_exit_code_is_documented():
    from adcli import errors
    section = TEXT.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = {int(c) for c in re.findall(r"^\|\s*(\d+)\s*\|", section, re.M)}
    assert {0, 1, 2, 3} <= codes
    assert {errors.OK, errors.CHECK_FAILED, errors.BAD_INPUT, errors.INTERNAL} <= codes


def test_the_quick_start_is_what_ci_runs():
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'"
    assert install + ' && adcli grad "x*(x+y)" --at x=2,y=3' in TEXT
    assert ". .venv/bin/activate && pytest -q" in TEXT
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]'" in ci
    assert re.search(r"^\s*pytest -q\s*$", ci, re.M)
    assert 'adcli grad "x*(x+y)" --at x=2,y=3' in ci


def test_the_quick_start_has_a_user_install_and_says_what_graphviz_is_for():
    quick = " ".join(TEXT.split("## Quick start", 1)[1].split("\n## ", 1)[0].split())
    assert "pip install . && adcli grad" in quick
    assert "Graphviz" in quick and "optional" in quick and "apt install graphviz" in quick
    assert "skip" in quick


def test_no_extra_promises_a_backend_that_is_not_there():
    """Every extra of pyproject.toml is one that works today: no `cuda` extra until adcli
    has a CuPy backend (adcli/backends/)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    names = re.findall(r"^(\w[\w-]*)\s*=", extras, re.M)
    assert "test" in names
    if not (ROOT / "adcli" / "backends").is_dir():
        assert "cuda" not in names and "cupy" not in extras

