"""adcli plot: the function and its derivatives on a grid (one batched evaluation), kinks and
non-finite points marked, in the terminal (uniplot, or a heat map) or in a PNG or SVG."""
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import plot
from adcli.cli import app
from adcli.points import Tracer

runner = CliRunner()
try:
    import uniplot  # noqa: F401
    HAVE_UNIPLOT = True
except ImportError:
    HAVE_UNIPLOT = False
try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
terminal = pytest.mark.skipif(not HAVE_UNIPLOT, reason="the plot extra (uniplot) is not installed")
files = pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="the plot extra (matplotlib) is not installed")


def adcli(*args):
    return runner.invoke(app, list(args))


def ok(*args):
    r = adcli(*args)
    assert r.exit_code == 0, r.output + r.stderr
    return r.stdout


def fails(*args, code=2):
    r = adcli(*args)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output + r.stderr
    return r.stderr


def sampled(expr, over, n=201, order=0, fixed=None, script=False):
    trace_at = Tracer(expr, script, None, "float64", None, 0, 10_000, 64)
    ranges = plot.parse_over([over])
    return plot.sample(trace_at, ranges, [n] * len(ranges), order=order, fixed=fixed, label=expr)


# ---------------------------------------------------------------- the numbers

def test_grad_of_sin_is_cos_and_order_2_is_minus_sin_at_every_grid_point():
    s = sampled("sin(x)", "x=-3:3", n=61, order=2)
    x = s.axes[0]
    assert np.allclose(x, np.linspace(-3, 3, 61))
    assert np.allclose(s.curves["f"], np.sin(x), atol=1e-14)
    assert np.allclose(s.curves["f'"], np.cos(x), atol=1e-14)
    assert np.allclose(s.curves["f''"], -np.sin(x), atol=1e-14)
    assert s.kinks == [] and not any(m.any() for m in s.nonfinite.values())


def test_the_grid_is_one_trace_and_one_batched_evaluation():
    traces = []

    def trace_at(values):
        traces.append(values)
        return Tracer("x**3", False, None, "float64", None, 0, 10_000, 64)(values)
    s = plot.sample(trace_at, plot.parse_over(["x=-1:1"]), [501], order=1)
    assert len(traces) == 1
    assert np.allclose(s.curves["f'"], 3 * s.axes[0] ** 2)


def test_abs_has_a_kink_at_zero_with_its_one_sided_slopes():
    s = sampled("abs(x)", "x=-1:1")
    assert [k.op for k in s.kinks] == ["abs"]
    k = s.kinks[0]
    assert k.at == (0.0,) and not k.jump
    assert k.slopes == pytest.approx((-1.0, 1.0))


def test_a_kink_between_grid_points_is_located_by_its_kink_function():
    s = sampled("relu(x - 0.123)", "x=-1:1", n=20)
    assert [k.op for k in s.kinks] == ["relu"]
    assert s.kinks[0].at[0] == pytest.approx(0.123, abs=1e-12)


def test_max_of_two_is_a_kink_where_they_tie_and_floor_jumps_at_integers():
    s = sampled("max(x, 1 - x)", "x=-2:2")
    assert [(k.op, round(k.at[0], 9)) for k in s.kinks] == [("maximum", 0.5)]
    f = sampled("floor(x)", "x=-2.5:2.5", n=101)
    # floor's kink function x - round(x) flips sign at the half integers too, by a jump of
    # its own: no kink there
    assert [round(k.at[0], 9) for k in f.kinks] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert all(k.jump for k in f.kinks)


def test_log_is_not_finite_left_of_zero():
    s = sampled("log(x)", "x=-1:1")
    bad = s.nonfinite["f"]
    x = s.axes[0]
    assert bad[x <= 0].all() and not bad[x > 0].any()
    assert "value not finite for x in [-1, 0] (101 of 201 points)" in s.notes()


def test_a_script_that_branches_gets_each_points_own_path(tmp_path):
    src = "input x\nif x > 0:\n    y = x * x\nelse:\n    y = -3 * x\nreturn y\n"
    s = sampled(src, "x=-1:1", n=21, order=1, script=True)
    x = s.axes[0]
    assert np.allclose(s.curves["f"], np.where(x > 0, x * x, -3 * x))
    assert np.allclose(s.curves["f'"], np.where(x > 0, 2 * x, -3.0))
    assert s.paths == 2
    assert s.branches == [((0.0,), (pytest.approx(0.1),))]
    assert any("another path between x = 0 and x = 0.1" in n for n in s.notes())


def test_two_inputs_give_a_map_with_its_kinks():
    s = sampled("abs(x) + y**2", "x=-2:2,y=-1:1", n=21)
    assert s.curves["f"].shape == (21, 21)
    gx, gy = np.meshgrid(*s.axes)
    assert np.allclose(s.curves["f"], np.abs(gx) + gy ** 2)
    assert {k.at[0] for k in s.kinks} == {0.0} and len(s.kinks) == 21


def test_the_path_plot_marks_a_minimizers_steps():
    trace_at = Tracer("(x - 1)**2 + (y + 0.5)**2", False, None, "float64", None, 0, 10, 64)
    path = [[-1.0, 1.0], [0.0, 0.2], [0.8, -0.4], [1.0, -0.5]]
    text = plot.path_plot(trace_at, ["x", "y"], path, label="bowl")   # a map: no uniplot
    cells = "".join(ln.split("│")[1] for ln in text.splitlines() if ln.count("│") == 2)
    assert cells.count("o") == 4 and "o path" in text


# ---------------------------------------------------------------- the command

@terminal
def test_terminal_plot_of_abs_marks_the_kink():
    out = ok("plot", "abs(x)", "--over", "x=-1:1", "--width", "40", "--height", "8")
    assert "abs(x) over x" in out and "┌" in out and "kink" in out
    assert "kink of abs (column 1) at x = 0 (slopes -1 | 1)" in out


@terminal
def test_terminal_plot_of_log_says_where_it_is_not_finite():
    out = ok("plot", "log(x)", "--over", "x=-1:1")
    assert "value not finite for x in [-1, 0]" in out


@terminal
def test_grad_and_order_2_add_the_derivatives_to_the_legend():
    out = ok("plot", "sin(x)", "--over", "x=-pi:pi", "--grad", "--order", "2")
    assert "sin(x)" in out and "f'" in out and "f''" in out


@terminal
def test_a_terminal_map_of_two_inputs(tmp_path):
    out = ok("plot", "x**2 + y**2", "--over", "x=-1:1", "--over", "y=-1:1")
    lines = out.splitlines()
    assert sum(1 for ln in lines if ln.count("│") == 2) == 24      # the default 60 x 24
    assert "levels:" in out and "@" in out


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@files
def test_png_has_the_expected_size(tmp_path):
    out = tmp_path / "plot.png"
    notes = ok("plot", "abs(x)", "--over", "x=-1:1", "--grad", "-o", str(out))
    assert png_size(out) == (640, 480)
    assert "kink of abs" in notes
    assert not list(tmp_path.glob(".*part"))


@files
def test_svg_parses_and_a_map_is_a_contour_with_a_colorbar(tmp_path):
    out = tmp_path / "map.svg"
    ok("plot", "sin(x) * cos(y)", "--over", "x=-2:2,y=-1:3", "-o", str(out))
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    png = tmp_path / "map.png"
    ok("plot", "sin(x) * cos(y)", "--over", "x=-2:2,y=-1:3", "--points", "30", "-o", str(png))
    assert png_size(png) == (640, 480)


# ---------------------------------------------------------------- errors

def test_bad_ranges():
    assert "NAME=LO:HI" in fails("plot", "x", "--over", "x=-1")
    assert "LO < HI" in fails("plot", "x", "--over", "x=1:-1")
    assert "needs --over" in fails("plot", "x")
    assert "one input (a curve) or two" in fails("plot", "x+y+z", "--over", "x=0:1,y=0:1,z=0:1")


def test_unknown_input_gets_a_suggestion():
    err = fails("plot", "sin(theta)", "--over", "thetaa=-1:1")
    assert "no input 'thetaa'" in err and "did you mean 'theta'" in err


def test_an_input_without_a_value_and_a_vector_value():
    assert "no value for 'y'" in fails("plot", "x*y", "--over", "x=0:1")
    assert "one number as its value" in fails("plot", "[x, 2*x]", "--over", "x=0:1")
    assert "along one input" in fails("plot", "x*y", "--over", "x=0:1,y=0:1", "--grad")
    assert ".png or .svg" in fails("plot", "x", "--over", "x=0:1", "-o", "p.jpg")


def test_a_missing_extra_names_it(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_plotting(name, *args, **kwargs):
        if name.split(".")[0] in ("matplotlib", "uniplot"):
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_plotting)
    err = fails("plot", "x", "--over", "x=0:1", "-o", str(tmp_path / "p.png"))
    assert "needs matplotlib" in err and "pip install 'adcli[plot]'" in err
    assert not (tmp_path / "p.png").exists()
    err = fails("plot", "x", "--over", "x=0:1")
    assert "needs uniplot" in err and "adcli[plot]" in err
