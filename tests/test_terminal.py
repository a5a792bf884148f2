"""Terminal output a person can read: tables that fit 80, 100 and 120 columns without
cutting a number or a word (checked in a real pseudo-terminal), a progress bar for long
checks on a terminal only, help text that reflows, -V, shell completion and NO_COLOR."""
import io
import json
import os
import re
import subprocess
from contextlib import contextmanager

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console

from adcli import __version__, check as gradcheck, render
from test_cli import adcli, ok
from test_readme import adcli_executable, example_env

pytest.importorskip("termios")   # a pseudo-terminal: Linux, macOS, BSD
import pty  # noqa: E402
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WIDTHS = (80, 100, 120)
SCRIPT = """input x = [1.5, 2.25, 3.125e-7]
input y = 0.7
h = sin(x) * exp(y) / (1 + x * x)   # a comment long enough to wrap in a narrow column of text
return sum(h * log(2 + x) * 1e-200) + sum(x * y)
"""


def on_terminal(args, columns, env=None):
    """adcli's stdout and stderr as a terminal of `columns` columns shows them (ANSI codes
    kept), and its exit code."""
    import fcntl
    import struct
    import termios
    # the terminal's own size, not a COLUMNS variable, decides the width
    env = {**{k: v for k, v in example_env().items()
              if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")},
           "TERM": "xterm-256color", **(env or {})}
    pid, fd = pty.fork()
    if pid == 0:     # the child: its stdout and stderr are the terminal
        try:
            os.execve(adcli_executable(), ["adcli", *args], env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    chunks = []
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except OSError:        # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n"), \
        os.waitstatus_to_exitcode(status)


def visible(text):
    return ANSI.sub("", text)


def assert_fits(text, columns):
    lines = visible(text).splitlines()
    assert lines and max(cell_len(ln) for ln in lines) <= columns, visible(text)
    assert "…" not in text, visible(text)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "model.ad"
    path.write_text(SCRIPT)
    return str(path)


# ---------------------------------------------------------------- tables fit the terminal

@pytest.mark.parametrize("columns", WIDTHS)
def test_gradcheck_table_fits_and_keeps_every_number(columns):
    args = ["gradcheck", "sum(sin(x)*exp(y)) + sum(A @ x)",
            "--at", "x=[1,2,3],y=[0.5,-0.25,1e-7],A=[[1e-100,2,3],[4,5,6]]"]
    out, code = on_terminal(args, columns)
    assert code == 0, visible(out)
    assert_fits(out, columns)
    text = visible(out)
    for r in json.loads(ok(*args, "--json"))["worst"]:
        index = r["index"] or []
        assert r["input"] + (f"[{', '.join(map(str, index))}]" if index else "") in text
        for key in ("analytic", "numeric"):
            assert f"{r[key]:.10g}" in text, (key, r[key])


@pytest.mark.parametrize("columns", WIDTHS)
def test_trace_table_fits_and_never_splits_a_number(script, columns):
    out, code = on_terminal(["trace", script], columns)
    assert code == 0, visible(out)
    assert_fits(out, columns)
    words = set(visible(out).split())
    for row in json.loads(ok("trace", script, "--json")):
        for key in ("value", "adjoint"):
            v = row.get(key)
            if v is None:
                continue
            for number in re.findall(r"[-+0-9.e]+|nan|inf", json.dumps(v)):
                if re.fullmatch(r"-?[0-9.]+(e[-+]?[0-9]+)?", number):
                    # a number is one word of the table: whole, with its separator
                    assert any(w.strip("[],") == render.number_text(float(number))
                               for w in words), (row["id"], key, number)


@pytest.mark.parametrize("columns", WIDTHS)
def test_profile_tables_fit_and_keep_their_words(script, columns):
    out, code = on_terminal(["profile", script, "--repeat", "1"], columns)
    assert code == 0, visible(out)
    assert_fits(out, columns)
    text = visible(out)
    assert re.search(r"\bbackward\b", text) and re.search(r"\bforward\b", text)
    assert not re.search(r"\b(backw|forwa|ard|rd)\b", text.replace("forward", "").replace(
        "backward", "")), text
    assert "(tracing overhead)" in text and "by source line" in text
    # the source line folds at its spaces: every word whole, none cut with "..."
    assert "..." not in text and {"enough", "narrow", "column", "text"} <= set(text.split())


@pytest.mark.parametrize("columns", WIDTHS)
def test_result_and_ops_tables_fit(columns):
    out, code = on_terminal(["jacobian", "softmax(x)", "--at", "x=linspace(0,1,9)"], columns)
    assert code == 0
    assert_fits(out, columns)
    out, code = on_terminal(["ops"], columns)
    assert code == 0
    assert_fits(out, columns)
    assert "logsumexp" in visible(out)


def test_columns_are_left_out_only_when_they_cannot_fit():
    """Rendered with a rich Console of a fixed width: the least needed columns go first,
    and the table says which."""
    report = gradcheck.check("sum(x**3)", {"x": [1e-7, -2.0, 3.5]})
    order = ["tolerance", "abs diff", "check", "rel diff"]
    gone = []
    for width in (120, 100, 80, 70, 60, 50):
        text = _rendered(report, width)
        assert max(cell_len(ln) for ln in text.splitlines()) <= width
        assert "…" not in text
        for r in report.shown:
            assert f"{r.analytic:.10g}" in text and f"{r.numeric:.10g}" in text
        note = re.search(r"not shown at (\d+) columns: (.*?) \(", " ".join(text.split()))
        now = note.group(2).split(", ") if note else []
        assert now == order[:len(now)] and len(now) >= len(gone), (width, now)
        header = next(ln for ln in text.splitlines() if "analytic" in ln)
        assert all(h not in header for h in now)
        gone = now
    assert gone and not re.search("not shown", _rendered(report, 120))


def _rendered(report, width):
    buf = io.StringIO()
    gradcheck.to_rich(report, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


# ---------------------------------------------------------------- progress bar

def test_progress_bar_appears_only_after_a_second():
    now = [0.0]
    buf = io.StringIO()
    bar = render.ProgressBar(Console(file=buf, force_terminal=True, width=80), "numeric",
                             clock=lambda: now[0])
    bar(1, 10)
    now[0] = 0.5
    bar(2, 10)
    assert bar.bar is None and buf.getvalue() == ""      # quick work: no bar at all
    now[0] = 1.5
    bar(3, 10)
    bar(10, 10)
    assert "numeric" in buf.getvalue() and "10/10" in buf.getvalue()
    bar(1, 4)                     # a second pass over some of the work
    bar(4, 4)
    bar.close()
    assert "numeric (pass 2)" in buf.getvalue() and "4/4" in buf.getvalue()


def test_gradcheck_reports_its_progress():
    calls = []
    gradcheck.check("sum(tanh(reshape(x, (6, 5)) @ ones(5)))", {"x": list(range(30))},
                    progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (30, 30)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(render.ProgressBar, "DELAY", 0.0)
    with render.progress_bar("numeric derivatives", io.StringIO()) as progress:
        assert progress is None                       # a pipe or a file: no bar
    stream = Terminal()
    with render.progress_bar("numeric derivatives", stream) as progress:
        gradcheck.check("sum(tanh(reshape(x, (6, 5)) @ ones(5)))", {"x": list(range(30))},
                        progress=progress)
    assert "numeric derivatives" in stream.getvalue()
    r = adcli("gradcheck", "sum(tanh(reshape(x, (6, 5)) @ ones(5)))", "--at", "x=linspace(0,1,30)")
    assert r.exit_code == 0 and r.stderr == ""        # stderr is not a terminal here


# ---------------------------------------------------------------- help, version, completion, colour

def test_help_reflows_without_the_docstrings_line_breaks():
    env = {**example_env(), "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run([adcli_executable(), "--help"], capture_output=True, text=True, env=env,
                         timeout=60).stdout
    assert "how EXPR moves when the inputs move along --tangent (forward mode)." in out
    assert "forward and backward, over --repeat runs after a warm-up; for a script" in out
    out = subprocess.run([adcli_executable(), "vjp", "--help"], capture_output=True, text=True,
                         env=env, timeout=60).stdout
    assert "with respect to each input (reverse mode)." in out


def test_short_version_option():
    assert ok("-V").strip() == ok("--version").strip() == f"adcli {__version__}"


def test_shell_completion():
    env = {**example_env(), "_ADCLI_COMPLETE": "complete_bash", "COMP_WORDS": "adcli gra",
           "COMP_CWORD": "1"}
    r = subprocess.run([adcli_executable()], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and set(r.stdout.split()) == {"grad", "gradcheck"}
    env.update(COMP_WORDS="adcli grad --max-n", COMP_CWORD="2")
    r = subprocess.run([adcli_executable()], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["--max-nodes"]
    assert "--install-completion" in ok("--help")


COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


@pytest.mark.parametrize("args", [["gradcheck", "x*x", "--at", "x=1"], ["grad", "x*x", "--at", "x=1"],
                                  ["trace", "x*x", "--at", "x=1"], ["--help"]])
def test_no_color_is_honoured(args):
    coloured, _ = on_terminal(args, 100)
    plain, code = on_terminal(args, 100, env={"NO_COLOR": "1"})
    assert code == 0
    assert COLOUR.search(coloured), "the check needs colour without NO_COLOR"
    assert not COLOUR.search(plain), plain
    assert visible(plain).split() == visible(coloured).split() or args[0] == "--help"


def test_out_summary_on_a_terminal(tmp_path):
    path = str(tmp_path / "g.npy")
    out, code = on_terminal(["grad", "sum(x**2)", "--at", "x=[1,2]", "--out", path], 80)
    text = visible(out)
    assert code == 0 and "saved to" in text and "grad_x" in text and "5.0" in text
    assert "4.0" not in text                        # the arrays themselves are in the file
    assert_fits(out, 80)


def test_profile_reports_its_progress_after_each_run():
    from adcli import api, profile
    calls = []
    make = lambda hooks=(): api.trace("sum(x*x)", {"x": [1.0, 2.0]}, hooks=hooks)  # noqa: E731
    profile.profile(make, repeat=3,
                    progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_a_nan_in_an_array_is_shown_not_read_as_markup():
    # rich reads "[nan, ...]" in a string as a markup tag: every cell is given as text
    out, code = on_terminal(["trace", "sum(log(x[0:2]))", "--at", "x=[-1,2]"], 100)
    assert code == 0 and "[nan, 0.6931471805599453]" in visible(out)
    assert "sum(log(x[0:2]))" in visible(out)
    out, code = on_terminal(["eval", "log(x)", "--at", "x=[-1,2]"], 100)
    assert code == 0 and re.search(r"\[\s*nan, 0\.69314718\]", visible(out))


def test_points_report_their_progress(tmp_path, monkeypatch):
    # the bar (on a terminal only, after a second) is told the rows done of the table's rows
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"x": np.linspace(0, 1, 3000)}), tmp_path / "p.parquet")
    calls = []

    @contextmanager
    def recording(description, stream):
        assert description == "points"
        yield lambda done, total: calls.append((done, total))
    monkeypatch.setattr(render, "progress_bar", recording)
    r = adcli("eval", "sin(x)", "--points", str(tmp_path / "p.parquet"),
                         "--out", str(tmp_path / "o.parquet"), "--chunk-rows", "1000")
    assert r.exit_code == 0, r.output
    assert calls == [(1000, 3000), (2000, 3000), (3000, 3000)]
