"""Differential testing against an oracle nobody on this project wrote: random
expressions over the elementwise ops of the table, written in adcli's language, parsed and
differentiated by adcli (gradient and Hessian, through the CLI's library), and evaluated
independently by mpmath at 50 digits, whose own numerical differentiation gives the
reference gradient and Hessian."""
import os

import numpy as np
import pytest

mp = pytest.importorskip("mpmath")
from adcli import api, derivatives  # noqa: E402
from adcli.parse import parse  # noqa: E402
from adcli.trace import free_names  # noqa: E402

mp.mp.dps = 50
NAMES = ("x", "y", "z")

# Each op as (adcli text, mpmath function) with its argument mapped into the op's domain
# by a smooth wrapper, so that every random expression is defined and analytic everywhere.
UNARY = {
    "sin": ("sin({})", mp.sin), "cos": ("cos({})", mp.cos), "tanh": ("tanh({})", mp.tanh),
    "atan": ("atan({})", mp.atan), "asinh": ("asinh({})", mp.asinh),
    "sigmoid": ("sigmoid({})", lambda u: 1 / (1 + mp.exp(-u))),
    "softplus": ("softplus({})", lambda u: mp.log(1 + mp.exp(u))),
    "square": ("square({})", lambda u: u * u),
    "exp": ("exp(2*sin({}))", lambda u: mp.exp(2 * mp.sin(u))),
    "sinh": ("sinh(tanh({}))", lambda u: mp.sinh(mp.tanh(u))),
    "cosh": ("cosh(tanh({}))", lambda u: mp.cosh(mp.tanh(u))),
    "expm1": ("expm1(sin({}))", lambda u: mp.expm1(mp.sin(u))),
    "sqrt": ("sqrt(1.5 + square({}))", lambda u: mp.sqrt(1.5 + u * u)),
    "cbrt": ("cbrt(1.5 + square({}))", lambda u: mp.cbrt(1.5 + u * u)),
    "log": ("log(0.5 + square({}))", lambda u: mp.log(0.5 + u * u)),
    "log2": ("log2(0.5 + square({}))", lambda u: mp.log(0.5 + u * u) / mp.log(2)),
    "log10": ("log10(0.5 + square({}))", lambda u: mp.log10(0.5 + u * u)),
    "log1p": ("log1p(square({}))", lambda u: mp.log1p(u * u)),
    "asin": ("asin(0.9*tanh({}))", lambda u: mp.asin(0.9 * mp.tanh(u))),
    "acos": ("acos(0.9*tanh({}))", lambda u: mp.acos(0.9 * mp.tanh(u))),
    "atanh": ("atanh(0.9*tanh({}))", lambda u: mp.atanh(0.9 * mp.tanh(u))),
    "acosh": ("acosh(1.5 + square({}))", lambda u: mp.acosh(1.5 + u * u)),
    "tan": ("tan(1.2*tanh({}))", lambda u: mp.tan(1.2 * mp.tanh(u))),
    "neg": ("-({})", lambda u: -u),
    "erf": ("erf({})", mp.erf), "erfc": ("erfc({})", mp.erfc),
    "erfinv": ("erfinv(0.9*tanh({}))", lambda u: mp.erfinv(0.9 * mp.tanh(u))),
    "lgamma": ("lgamma(0.5 + square({}))", lambda u: mp.loggamma(0.5 + u * u)),
    "digamma": ("digamma(0.5 + square({}))", lambda u: mp.digamma(0.5 + u * u)),
    "logit": ("logit(0.5 + 0.4*tanh({}))",
              lambda u: mp.log((0.5 + 0.4 * mp.tanh(u)) / (0.5 - 0.4 * mp.tanh(u)))),
}
BINARY = {
    "add": ("({}) + ({})", lambda a, b: a + b), "sub": ("({}) - ({})", lambda a, b: a - b),
    "mul": ("({}) * ({})", lambda a, b: a * b),
    "div": ("({}) / (1.5 + square({}))", lambda a, b: a / (1.5 + b * b)),
    "pow": ("(0.5 + square({})) ** tanh({})", lambda a, b: (0.5 + a * a) ** mp.tanh(b)),
    "hypot": ("hypot({}, 1 + square({}))", lambda a, b: mp.sqrt(a * a + (1 + b * b) ** 2)),
    "atan2": ("atan2({}, 1 + square({}))", lambda a, b: mp.atan2(a, 1 + b * b)),
    "logaddexp": ("logaddexp({}, {})", lambda a, b: mp.log(mp.exp(a) + mp.exp(b))),
}


def random_expression(rng, depth):
    """(adcli text, mpmath function of (x, y, z)) of a random expression, built level by
    level from its leaves (no recursion)."""
    def leaf():
        if rng.random() < 0.8:
            i = int(rng.integers(0, 3))
            return NAMES[i], (lambda i: lambda v: v[i])(i)
        c = float(rng.choice([0.5, 2.0, 3.0]))
        return repr(c), (lambda c: lambda v: mp.mpf(c))(c)

    level = [leaf() for _ in range(2 ** depth)]
    while len(level) > 1 or depth > 0:
        nxt = []
        for k in range(0, len(level), 2):
            pair = level[k:k + 2]
            if len(pair) == 2 and rng.random() < 0.6:
                text, f = BINARY[str(rng.choice(sorted(BINARY)))]
                (ta, fa), (tb, fb) = pair
                nxt.append((text.format(ta, tb), (lambda f, fa, fb: lambda v: f(fa(v), fb(v)))(f, fa, fb)))
            else:
                text, f = UNARY[str(rng.choice(sorted(UNARY)))]
                ta, fa = pair[int(rng.integers(0, len(pair)))]
                nxt.append((text.format(ta), (lambda f, fa: lambda v: f(fa(v)))(f, fa)))
        level, depth = nxt, depth - 1
    return level[0]


def reference(f, point):
    """Gradient and Hessian of f at point by mpmath's numerical differentiation."""
    p = [mp.mpf(v) for v in point]
    g = lambda *v: f(v)  # noqa: E731
    grad = [mp.diff(g, p, tuple(int(i == k) for i in range(3))) for k in range(3)]
    hess = [[mp.diff(g, p, tuple(int(i == j) + int(i == k) for i in range(3))) for k in range(3)]
            for j in range(3)]
    return np.array(grad, dtype=float), np.array(hess, dtype=float)


CASES = int(os.environ.get("ADCLI_ORACLE_CASES", 300))


@pytest.mark.parametrize("seed", range(CASES))
def test_random_expression_against_mpmath(seed):
    rng = np.random.default_rng(seed)
    used = ()
    while not used:                       # (an expression of constants only: draw again)
        text, f = random_expression(rng, int(rng.integers(2, 5)))
        used = free_names(parse(text))
    point = rng.uniform(-1.5, 1.5, size=3)
    traced = api.trace(text, {n: v for n, v in zip(NAMES, point) if n in used})
    value = float(traced.output.value)
    assert value == pytest.approx(float(f([mp.mpf(v) for v in point])), rel=1e-12, abs=1e-13), text
    grad, hess = reference(f, point)
    idx = [NAMES.index(n) for n in traced.inputs]
    got = api.gradient(traced)
    for n, i in zip(traced.inputs, idx):
        np.testing.assert_allclose(float(got.grad[n]), grad[i], rtol=1e-10, atol=1e-12,
                                   err_msg=f"d/d{n} of {text} at {point}")
    h = derivatives.hessian(traced).extra["hessian"]
    scale = max(1.0, np.abs(hess).max())
    for a, i in zip(traced.inputs, idx):
        for b, j in zip(traced.inputs, idx):
            np.testing.assert_allclose(float(h[a][b]), hess[i, j], rtol=1e-9, atol=1e-11 * scale,
                                       err_msg=f"d2/d{a}d{b} of {text} at {point}")
