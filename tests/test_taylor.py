"""`adcli taylor`: Taylor coefficients by truncated power series through the program.

Closed forms, high orders to a few ulps, every op of the table against `grad --order k`
(nested forward mode over reverse mode, a different road to the same numbers), the
directional case against JVPs and Hessian-vector products, and the errors.
"""
import json
import math
import subprocess
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from adcli import api, derivatives, taylor
from adcli.graph import Graph
from adcli.ops import OPS

from test_ops import TESTED_ELSEWHERE, cases

EPS = np.finfo(float).eps


def coefficients(expr, at, order, direction=None):
    return taylor.coefficients(api.load(expr, at), order, direction).extra["coefficients"]


def adcli(*args):
    return subprocess.run([sys.executable, "-m", "adcli", *args], capture_output=True, text=True)


# ---------------------------------------------------------------- closed forms

def test_exp_at_zero_is_one_over_k_factorial():
    c = coefficients("exp(x)", ["x=0"], 20)
    np.testing.assert_allclose(c, [1 / math.factorial(k) for k in range(21)], rtol=4 * EPS)


def test_sin_alternates_over_odd_factorials():
    c = coefficients("sin(x)", ["x=0"], 15)
    want = [0.0 if k % 2 == 0 else (-1) ** (k // 2) / math.factorial(k) for k in range(16)]
    np.testing.assert_allclose(c, want, rtol=4 * EPS, atol=0)


def test_log1p_and_the_geometric_series():
    c = coefficients("log(1+x)", ["x=0"], 12)
    assert c[0] == 0
    np.testing.assert_allclose(c[1:], [(-1) ** (k + 1) / k for k in range(1, 13)], rtol=4 * EPS)
    assert coefficients("1/(1-x)", ["x=0"], 12).tolist() == [1.0] * 13


def test_a_polynomial_is_exact_and_zero_beyond_its_degree():
    # (x^3 - 2x + 1) at x = 2, moving by t: 5 + 10 t + 6 t^2 + t^3
    c = coefficients("x**3 - 2*x + 1", ["x=2"], 8)
    assert c.tolist() == [5.0, 10.0, 6.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    proc = adcli("taylor", "x*x*x", "--at", "x=2", "--order", "5")
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [float(l[1]) for l in lines] == [8.0, 12.0, 6.0, 1.0, 0.0, 0.0]
    assert [float(l[2]) for l in lines] == [8.0, 12.0, 12.0, 6.0, 0.0, 0.0]


def test_order_50_of_exp_and_sin_to_a_few_ulps():
    mpmath.mp.dps = 50
    x0 = 0.7
    ref_exp = mpmath.exp(mpmath.mpf(x0)) / mpmath.factorial(50)
    ref_sin = -mpmath.sin(mpmath.mpf(x0)) / mpmath.factorial(50)   # sin^(50) = -sin
    c_exp = coefficients("exp(x)", [f"x={x0}"], 50)[50]
    c_sin = coefficients("sin(x)", [f"x={x0}"], 50)[50]
    assert abs(c_exp - float(ref_exp)) <= 8 * EPS * abs(float(ref_exp))
    assert abs(c_sin - float(ref_sin)) <= 8 * EPS * abs(float(ref_sin))


def test_array_values_give_arrays_per_order():
    c = coefficients("x**2", ["x=[1,2,3]"], 3)
    assert c.shape == (4, 3)
    assert c.tolist() == [[1, 4, 9], [2, 4, 6], [1, 1, 1], [0, 0, 0]]


def test_non_smooth_ops_take_the_side_of_the_point():
    assert coefficients("abs(x)", ["x=-2"], 3).tolist() == [2.0, -1.0, 0.0, 0.0]
    assert coefficients("relu(x)", ["x=0"], 3).tolist() == [0.0, 0.0, 0.0, 0.0]  # relu'(0) = 0
    assert coefficients("floor(x)*x", ["x=2.5"], 3).tolist() == [5.0, 2.0, 0.0, 0.0]
    # the unselected branch gives exactly 0, even where it is infinite
    assert coefficients("where(x > 0, sqrt(x), 0)", ["x=0"], 3).tolist() == [0.0] * 4


# ---------------------------------------------------------------- every op against grad --order k

RNG = np.random.default_rng(7)
ORDER = 6


def ops_with_series():
    """Ops of the table whose derivatives exist, and their test cases (tests/test_ops.py)."""
    for op in OPS.values():
        if not op.differentiable or op.kind == "constant" or op.name in TESTED_ELSEWHERE:
            continue
        if not has_series(op):
            continue
        for k, (args, attrs) in enumerate(cases(op)[:2]):
            yield pytest.param(op.name, args, attrs, id=f"{op.name}-{k}")


def has_series(op):
    """A rule of its own, one by its curvature, or a composite's (the ops it expands to)."""
    return (op.series is not None or op.expand is not None
            or op.curvature in ("linear", "bilinear", "piecewise"))


def test_every_op_a_user_can_write_has_a_series_rule():
    missing = [op.name for op in OPS.values() if op.differentiable and op.kind != "constant"
               and not has_series(op)]
    assert all(OPS[n].internal for n in missing), missing


def _line_program(op, args, attrs, seed=0):
    """sum(w * op(p + t d)) as a program of one scalar input t at 0: the op's arguments
    move along random directions d (where's condition stays), drawn from `seed`."""
    rng = np.random.default_rng(seed)
    g = Graph()
    t = g.input("t", 0.0)
    moved = []
    for i, a in enumerate(args):
        if a.dtype.kind != "f" or i in op.selects:
            moved.append(g.const(a))
            continue
        d = rng.uniform(-0.5, 0.5, size=a.shape)
        moved.append(g.emit("add", g.const(a), g.emit("mul", g.const(d), t)))
    y = g.emit(op.name, *moved, **attrs)
    w = rng.normal(size=y.shape)
    out = g.emit("sum", g.emit("mul", g.const(w), y))
    return api.Traced(op.name, g, out, {"t": t})


@pytest.mark.parametrize("name, args, attrs", list(ops_with_series()))
def test_every_op_agrees_with_grad_of_order_k(name, args, attrs):
    """taylor --order 6 against grad --order k / k! for k = 1..6, to 1e-12 of the largest
    coefficient (measured: within 6e-16; nested forward mode rounds differently)."""
    op = OPS[name]
    seed = int(RNG.integers(1 << 30))
    traced = _line_program(op, args, attrs, seed)
    c = taylor.coefficients(traced, ORDER).extra["coefficients"]
    assert c[0] == pytest.approx(float(traced.output.value), rel=1e-12, abs=1e-12)
    for k in range(1, ORDER + 1):
        traced = _line_program(op, args, attrs, seed)     # afresh: higher_grad adds nodes
        d = derivatives.higher_grad(traced, ["t"], k).grad["t"]
        want = float(np.asarray(d)) / math.factorial(k)
        scale = max(1.0, *(abs(v) for v in c))
        assert abs(c[k] - want) <= 1e-12 * scale, (k, c[k], want)


# ---------------------------------------------------------------- several inputs

def test_directional_coefficients_are_jvps_and_hessian_products():
    expr, at = "sin(x*y) + exp(x)*y**2", ["x=0.3,y=-0.7"]
    d = {"x": 1.0, "y": 0.5}
    c = coefficients(expr, at, 4, d)
    jvp = derivatives.jvp(api.load(expr, at), {k: np.float64(v) for k, v in d.items()})
    assert c[1] == pytest.approx(float(jvp.extra["jvp"]), rel=1e-13)
    hv = derivatives.hvp(api.load(expr, at), {k: np.float64(v) for k, v in d.items()})
    dhd = sum(d[k] * float(v) for k, v in hv.extra["hvp"].items())
    assert c[2] == pytest.approx(dhd / 2, rel=1e-12)
    # an input not named stays: the coefficients of x alone
    only_x = coefficients(expr, at, 4, {"x": 1.0})
    np.testing.assert_allclose(only_x, coefficients("sin(x*(-0.7)) + exp(x)*0.49", ["x=0.3"], 4),
                               rtol=1e-14)


def test_matrix_functions_along_a_direction():
    a = "[[2,1],[0.5,3]]"
    c = coefficients("sum(inv(A)) + det(A) + sum(solve(A, [1,2]))", [f"A={a}"], 5,
                     {"A": np.array([[0.3, -0.1], [0.2, 0.4]])})
    A0, D = np.array([[2, 1], [0.5, 3]]), np.array([[0.3, -0.1], [0.2, 0.4]])
    # the exact function along the line, sampled, against the series (a degree-5 fit)
    ts = np.linspace(-1e-2, 1e-2, 9)
    f = [np.sum(np.linalg.inv(A0 + t * D)) + np.linalg.det(A0 + t * D)
         + np.sum(np.linalg.solve(A0 + t * D, [1, 2])) for t in ts]
    series = [sum(c[k] * t ** k for k in range(6)) for t in ts]
    np.testing.assert_allclose(series, f, rtol=1e-13)


# ---------------------------------------------------------------- the command

def test_json_has_the_documented_members():
    proc = adcli("taylor", "x*y", "--at", "x=2,y=3", "--direction", "x=1,y=0.5", "--order",
                 "3", "--json")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert list(obj) == ["expr", "at", "direction", "order", "coefficients", "derivatives",
                         "dtype", "device"]
    assert obj["at"] == {"x": 2.0, "y": 3.0} and obj["direction"] == {"x": 1.0, "y": 0.5}
    assert obj["coefficients"] == [6.0, 4.0, 0.5, 0.0] and obj["derivatives"] == [6.0, 4.0, 1.0, 0.0]


def test_several_inputs_need_a_direction():
    proc = adcli("taylor", "x*y", "--at", "x=2,y=3")
    assert proc.returncode == 2
    assert "--direction" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["x", "--at", "x=1", "--direction", "z=1"], "no input 'z'"),
    (["x", "--at", "x=[1,2]", "--direction", "x=[1,2,3]"], "does not fit"),
    (["x > 1", "--at", "x=1"], "boolean"),
])
def test_errors_are_one_message(args, message):
    proc = adcli("taylor", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_op_without_a_series_rule_is_named(monkeypatch):
    op = OPS["sqrt"]
    monkeypatch.setattr(op, "series", None)
    with pytest.raises(Exception, match="sqrt has no series rule"):
        coefficients("sqrt(x) + 1", ["x=2"], 3)


def test_order_1000_gives_coefficients_and_no_overflow_error():
    """k! overflows a double above 170: the derivatives turn infinite, not an error."""
    import json as _json
    from typer.testing import CliRunner
    from adcli.cli import app
    r = CliRunner().invoke(app, ["taylor", "exp(x)", "--at", "x=0", "--order", "1000", "--json"])
    assert r.exit_code == 0, r.output
    out = _json.loads(r.stdout)
    assert out["coefficients"][170] == pytest.approx(1 / math.factorial(170), rel=1e-12)
    assert out["derivatives"][170] == pytest.approx(1.0, rel=1e-12)
    assert out["derivatives"][171] in ("inf", float("inf"))


def test_a_fractional_power_at_zero_matches_grad_order_k():
    """x**2.5 at 0: derivatives 0 below the power, infinite above it, as grad --order k."""
    traced = api.trace("x**2.5", {"x": 0.0})
    d = taylor.coefficients(traced, 4).extra["derivatives"]
    with np.errstate(divide="ignore"):       # (grad's own 0 ** -0.5 on the way)
        want = [float(np.asarray(derivatives.higher_grad(api.trace("x**2.5", {"x": 0.0}),
                                                         None, k).grad["x"]))
                for k in range(1, 5)]
    assert [float(v) for v in np.asarray(d)[1:]] == want == [0.0, 0.0, np.inf, -np.inf]
