"""The cases that outside oracles (SymPy with mpmath, JAX, the test suites of HIPS autograd
and JAX) showed wrong or imprecise, through the command line, with their true values."""
import json
import math

import numpy as np
import pytest

from test_cli import ok


def js(*args):
    return json.loads(ok(*args, "--json"))


@pytest.mark.parametrize("x, y", [(4.0, 0.0), (2.0, 0.0), (3.0, 0.0)])
def test_the_hessian_of_pow_at_exponent_zero_is_symmetric(x, y):
    # JAX's testPowSecondDerivative: d2/dxdy = x^(y-1) (1 + y ln x) = 1/x at y = 0
    h = js("hessian", "x**y", "--at", f"x={x},y={y}")["hessian"]
    assert h["x"]["y"] == pytest.approx(1 / x, rel=1e-15)
    assert h["y"]["x"] == pytest.approx(1 / x, rel=1e-15)
    assert h["x"]["x"] == 0 and h["y"]["y"] == pytest.approx(math.log(x) ** 2, rel=1e-15)


def test_hvp_of_pow_at_exponent_zero():
    out = js("hvp", "x**y", "--at", "x=3,y=0", "--vector", "y=1")
    assert out["hvp"]["x"] == pytest.approx(1 / 3, rel=1e-15)
    assert out["hvp"]["y"] == pytest.approx(math.log(3) ** 2, rel=1e-15)


def test_dot_of_nd_arrays_has_numpys_shape():
    a = json.dumps([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [1, 2, 3]]])
    b = json.dumps([[[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]]] * 2)
    value = js("eval", "dot(a, b)", "--at", f"a={a}", "--at", f"b={b}")["value"]
    assert [len(value), len(value[0]), len(value[0][0]), len(value[0][0][0])] == [2, 2, 2, 4]
    assert value[0][1][1] == [4.0, 5.0, 6.0, 15.0]


@pytest.mark.parametrize("expr, at, value, grad", [
    ("log(exp(x)+exp(y)+exp(z))", "x=1000,y=1000,z=1000", 1000 + math.log(3), [1 / 3] * 3),
    ("log(exp(x)+exp(y)+exp(z)+exp(w))", "x=1000,y=1000,z=1000,w=1000", 1000 + math.log(4),
     [0.25] * 4),
    ("log(sum(exp(v[1:3])))", "v=[1,1000,1000]", 1000 + math.log(2), [[0, 0.5, 0.5]]),
    ("log(1 + exp(x))", "x=1000", 1000.0, [1.0]),
    ("log(exp(x) * exp(y) / 2)", "x=1000,y=1000", 2000 - math.log(2), [1.0, 1.0]),
    ("log(mean(exp(v)))", "v=[1000,1000]", 1000.0, [[0.5, 0.5]]),
    ("sum(log(sum(exp(A), axis=1)))", "A=[[1000,1000],[-1000,-1000]]", 2 * math.log(2),
     [[[0.5, 0.5], [0.5, 0.5]]]),
])
def test_log_of_a_sum_of_exponentials_is_stable(expr, at, value, grad):
    out = js("grad", expr, "--at", at)
    assert out["value"] == pytest.approx(value, rel=1e-15)
    got = np.concatenate([np.ravel(g) for g in out["grad"].values()])
    np.testing.assert_allclose(got, np.concatenate([np.ravel(g) for g in grad]), rtol=1e-15)


@pytest.mark.parametrize("expr, x, order, true", [
    ("tanh(x)", 20, 1, 1.6993417021166355e-17),
    ("sigmoid(x)", 40, 1, 4.248354255291589e-18),
    ("softplus(x)", 40, 2, 4.248354255291589e-18),
    ("sigmoid(x)", -40, 1, 4.248354255291589e-18),
    ("tanh(x)", 300, 2, -2 * 4 * math.exp(-600)),
])
def test_derivatives_keep_their_digits_in_the_tails(expr, x, order, true):
    out = js("grad", expr, "--at", f"x={x}", "--order", str(order))
    assert out["grad"]["x"] == pytest.approx(true, rel=1e-14)


@pytest.mark.parametrize("s", [1e-300, 1e-170, 1e170, 1e300])
def test_atan2_is_scaled(s):
    g = js("grad", "atan2(y, x)", "--at", f"x={s},y={s}")["grad"]
    assert g["y"] == pytest.approx(0.5 / s, rel=1e-15)
    assert g["x"] == pytest.approx(-0.5 / s, rel=1e-15)


@pytest.mark.parametrize("s", [1e-200, 1e200])
def test_norm_is_scaled(s):
    out = js("grad", "norm(x)", "--at", f"x=[{s},{s}]")
    assert out["value"] == pytest.approx(math.sqrt(2) * s, rel=1e-15)
    assert out["grad"]["x"] == pytest.approx([math.sqrt(0.5)] * 2, rel=1e-15)


def test_documented_conventions_that_differ_from_jax():
    assert js("grad", "clip(x, 0, 6)", "--at", "x=6")["grad"]["x"] == 0
    sinc = "where(x != 0, sin(x)/x, 1)"
    assert js("grad", sinc, "--at", "x=0")["grad"]["x"] == 0
    assert js("grad", sinc, "--at", "x=0", "--order", "2")["grad"]["x"] == 0
