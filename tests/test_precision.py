"""Precision against a high-precision reference: every elementwise op of the table, its
value and its first and second derivatives (reverse, forward, reverse-over-reverse,
forward-over-reverse), at points across its domain, tails included (|x| up to the
overflow edge, tiny arguments, points near singularities), compared with closed forms
evaluated by mpmath at 60 digits.

Errors are counted in ulps of the true value, wherever that value is a normal float
(where it overflows, adcli must give an infinity of the right sign; where it underflows,
a zero or a subnormal number). ULP_BOUNDS states the bound per op; the README's precision
table lists the same numbers.
"""
import math

import numpy as np
import pytest

mp = pytest.importorskip("mpmath")
from adcli import autodiff  # noqa: E402
from adcli.graph import Graph  # noqa: E402
from adcli.ops import OPS  # noqa: E402

mp.mp.dps = 60
TINY, HUGE = np.finfo(float).tiny, np.finfo(float).max
LN2, LN10 = mp.log(2), mp.log(10)


def _sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def _psi(m):
    """mpmath's polygamma of order m, with its poles (the integers <= 0) refused at once
    (mpmath takes minutes to find the one at -1e10)."""
    def f(x):
        if x <= 0 and x == mp.floor(x):
            raise ValueError("a pole")
        return mp.psi(m, x)
    return f


# (f, f', f'') in mpmath, from the calculus, for each unary elementwise op
UNARY = {
    "abs": (abs, mp.sign, lambda x: 0),
    "sqrt": (mp.sqrt, lambda x: 1 / (2 * mp.sqrt(x)), lambda x: -1 / (4 * x * mp.sqrt(x))),
    "cbrt": (mp.cbrt, lambda x: 1 / (3 * mp.cbrt(x) ** 2), lambda x: -2 / (9 * mp.cbrt(x) ** 5)),
    "neg": (lambda x: -x, lambda x: -1, lambda x: 0),
    "square": (lambda x: x * x, lambda x: 2 * x, lambda x: 2),
    "exp": (mp.exp, mp.exp, mp.exp),
    "expm1": (mp.expm1, mp.exp, mp.exp),
    "log": (mp.log, lambda x: 1 / x, lambda x: -1 / x ** 2),
    "log1p": (mp.log1p, lambda x: 1 / (1 + x), lambda x: -1 / (1 + x) ** 2),
    "log2": (lambda x: mp.log(x) / LN2, lambda x: 1 / (x * LN2), lambda x: -1 / (x * x * LN2)),
    "log10": (mp.log10, lambda x: 1 / (x * LN10), lambda x: -1 / (x * x * LN10)),
    "sin": (mp.sin, mp.cos, lambda x: -mp.sin(x)),
    "cos": (mp.cos, lambda x: -mp.sin(x), lambda x: -mp.cos(x)),
    "tan": (mp.tan, lambda x: mp.sec(x) ** 2, lambda x: 2 * mp.sec(x) ** 2 * mp.tan(x)),
    "asin": (mp.asin, lambda x: 1 / mp.sqrt(1 - x * x), lambda x: x / (1 - x * x) ** 1.5),
    "acos": (mp.acos, lambda x: -1 / mp.sqrt(1 - x * x), lambda x: -x / (1 - x * x) ** 1.5),
    "atan": (mp.atan, lambda x: 1 / (1 + x * x), lambda x: -2 * x / (1 + x * x) ** 2),
    "sinh": (mp.sinh, mp.cosh, mp.sinh),
    "cosh": (mp.cosh, mp.sinh, mp.cosh),
    "sech": (mp.sech, lambda x: -mp.sech(x) * mp.tanh(x),
             lambda x: mp.sech(x) * (mp.tanh(x) ** 2 - mp.sech(x) ** 2)),
    "tanh": (mp.tanh, lambda x: mp.sech(x) ** 2, lambda x: -2 * mp.sech(x) ** 2 * mp.tanh(x)),
    "asinh": (mp.asinh, lambda x: 1 / mp.sqrt(x * x + 1), lambda x: -x / (x * x + 1) ** 1.5),
    "acosh": (mp.acosh, lambda x: 1 / mp.sqrt(x * x - 1), lambda x: -x / (x * x - 1) ** 1.5),
    "atanh": (mp.atanh, lambda x: 1 / (1 - x * x), lambda x: 2 * x / (1 - x * x) ** 2),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x),
                lambda x: -_sigmoid(x) * _sigmoid(-x) * mp.tanh(x / 2)),
    "relu": (lambda x: max(x, 0), lambda x: 1 if x > 0 else 0, lambda x: 0),
    "softplus": (lambda x: mp.log1p(mp.exp(x)), _sigmoid,
                 lambda x: _sigmoid(x) * _sigmoid(-x)),
    "erf": (mp.erf, lambda x: 2 / mp.sqrt(mp.pi) * mp.exp(-x * x),
            lambda x: -4 * x / mp.sqrt(mp.pi) * mp.exp(-x * x)),
    "erfc": (mp.erfc, lambda x: -2 / mp.sqrt(mp.pi) * mp.exp(-x * x),
             lambda x: 4 * x / mp.sqrt(mp.pi) * mp.exp(-x * x)),
    "erfinv": (mp.erfinv, lambda x: mp.sqrt(mp.pi) / 2 * mp.exp(mp.erfinv(x) ** 2),
               lambda x: mp.pi / 2 * mp.erfinv(x) * mp.exp(2 * mp.erfinv(x) ** 2)),
    "lgamma": (lambda x: mp.log(abs(mp.gamma(x))), _psi(0), _psi(1)),
    "digamma": (_psi(0), _psi(1), _psi(2)),
    "polygamma": (_psi(1), _psi(2), _psi(3)),   # trigamma, polygamma's default order
    "logit": (lambda x: mp.log(x / (1 - x)), lambda x: 1 / (x * (1 - x)),
              lambda x: (2 * x - 1) / (x * (1 - x)) ** 2),
}

# (f, (f_a, f_b), (f_aa, f_ab, f_bb)) for binary elementwise ops
def _r(a, b):
    return mp.sqrt(a * a + b * b)


def _s(a, b):   # e^a / (e^a + e^b), without overflow
    return 1 / (1 + mp.exp(b - a))


BINARY = {
    "hypot_ratio": (lambda a, b: a / _r(a, b), (lambda a, b: b * b / _r(a, b) ** 3,
                                                lambda a, b: -a * b / _r(a, b) ** 3),
                    (lambda a, b: -3 * a * b * b / _r(a, b) ** 5,
                     lambda a, b: b * (2 * a * a - b * b) / _r(a, b) ** 5,
                     lambda a, b: a * (2 * b * b - a * a) / _r(a, b) ** 5)),
    "add": (lambda a, b: a + b, (lambda a, b: 1, lambda a, b: 1), (0, 0, 0)),
    "sub": (lambda a, b: a - b, (lambda a, b: 1, lambda a, b: -1), (0, 0, 0)),
    "mul": (lambda a, b: a * b, (lambda a, b: b, lambda a, b: a), (0, 1, 0)),
    "mul0": (lambda a, b: a * b, (lambda a, b: b, lambda a, b: a), (0, 1, 0)),
    "div": (lambda a, b: a / b, (lambda a, b: 1 / b, lambda a, b: -a / b ** 2),
            (0, lambda a, b: -1 / b ** 2, lambda a, b: 2 * a / b ** 3)),
    "pow": (lambda a, b: a ** b, (lambda a, b: b * a ** (b - 1), lambda a, b: a ** b * mp.log(a)),
            (lambda a, b: b * (b - 1) * a ** (b - 2), lambda a, b: a ** (b - 1) * (1 + b * mp.log(a)),
             lambda a, b: a ** b * mp.log(a) ** 2)),
    "hypot": (_r, (lambda a, b: a / _r(a, b), lambda a, b: b / _r(a, b)),
              (lambda a, b: b * b / _r(a, b) ** 3, lambda a, b: -a * b / _r(a, b) ** 3,
               lambda a, b: a * a / _r(a, b) ** 3)),
    "atan2": (mp.atan2, (lambda a, b: b / _r(a, b) ** 2, lambda a, b: -a / _r(a, b) ** 2),
              (lambda a, b: -2 * a * b / _r(a, b) ** 4, lambda a, b: (a * a - b * b) / _r(a, b) ** 4,
               lambda a, b: 2 * a * b / _r(a, b) ** 4)),
    "logaddexp": (lambda a, b: mp.log(mp.exp(a) + mp.exp(b)), (_s, lambda a, b: _s(b, a)),
                  (lambda a, b: _s(a, b) * _s(b, a), lambda a, b: -_s(a, b) * _s(b, a),
                   lambda a, b: _s(a, b) * _s(b, a))),
    "maximum": (max, (lambda a, b: 1 if a > b else 0, lambda a, b: 1 if b > a else 0), (0, 0, 0)),
    "minimum": (min, (lambda a, b: 1 if a < b else 0, lambda a, b: 1 if b < a else 0), (0, 0, 0)),
    "mod": (lambda a, b: a - b * mp.floor(a / b), (lambda a, b: 1, lambda a, b: -mp.floor(a / b)),
            (0, 0, 0)),
}
# Elementwise ops of three arguments, checked elsewhere (tests/test_ops.py): where and clip
# are piecewise linear; steps (sign, floor, ...) have no derivative.
NOT_HERE = {"where", "clip"}

# The bound on the error, in ulps of the true value: (value, first derivatives, second
# derivatives), over every point below and every mode. Measured on x86-64 with glibc's
# libm and numpy's own loops, plus 2 ulps for other maths libraries (numpy's SIMD exp, log
# and sin differ by up to 2-4 ulps on some CPUs); exact operations keep a bound of 0.
ULP_BOUNDS = {
    "abs": (0, 0, 0), "neg": (0, 0, 0), "relu": (0, 0, 0), "square": (1, 0, 0), "maximum": (0, 0, 0),
    "minimum": (0, 0, 0), "add": (1, 0, 0), "sub": (1, 0, 0), "mul": (1, 0, 0),
    "mul0": (1, 0, 0), "div": (1, 1, 2),
    "sqrt": (1, 2, 3), "cbrt": (1, 3, 6), "exp": (3, 3, 3), "expm1": (3, 3, 3),
    "log": (3, 3, 3), "log1p": (3, 4, 5), "log2": (3, 3, 4), "log10": (3, 4, 4),
    "sin": (3, 3, 3), "cos": (3, 3, 3), "tan": (3, 3, 4), "asin": (3, 3, 6),
    "acos": (3, 3, 6), "atan": (3, 4, 6), "sinh": (3, 3, 3), "cosh": (3, 3, 3),
    "sech": (4, 3, 10), "tanh": (3, 5, 4), "asinh": (3, 4, 5), "acosh": (3, 4, 5),
    "atanh": (3, 3, 4), "sigmoid": (4, 5, 5), "softplus": (3, 4, 5),
    "hypot": (3, 3, 5), "hypot_ratio": (3, 5, 8), "atan2": (3, 4, 11),
    "pow": (3, 4, 12),   # d2/dadb = a^(b-1) (1 + b log a) cancels where b log a ~ -1
    "logaddexp": (3, 3, 4),
    "erf": (3, 3, 4), "erfc": (5, 3, 4), "logit": (3, 3, 4), "mod": (1, 0, 0),
    # erfinv' = exp(y^2) sqrt(pi)/2 carries y's rounding times 2 y^2 (11 at x = 0.999)
    "erfinv": (3, 14, 24),
    # scipy's gammaln near its zeros at 1 and 2, and polygamma(2, x) at negative x
    "lgamma": (25, 6, 6), "digamma": (6, 6, 59), "polygamma": (6, 33, 6),
}

MAGNITUDES = [1e-300, 1e-200, 1e-100, 1e-20, 1e-8, 1e-3, 0.1, 0.5, 0.9, 1.0, 1.5, 3.0, 10.0,
              19.0, 20.0, 40.0, 100.0, 300.0, 700.0, 1e10, 1e20, 1e100, 1e200, 1e300]
# near the ends of domains and at singular points
SPECIAL = {"asin": [1 - 1e-10, -1 + 1e-10, 1 - 2 ** -52], "acos": [1 - 1e-10, -1 + 1e-10],
           "atanh": [1 - 1e-10, -1 + 1e-10], "acosh": [1 + 1e-10, 1 + 2 ** -52, 1.0 + 1e-5],
           "log1p": [-1 + 1e-10, -0.5], "log": [1 + 1e-10, 1 - 1e-10], "tan": [1.5707963267948966],
           "expm1": [-1e-10, -40.0, -700.0], "sigmoid": [-40.0, -100.0, -700.0],
           "softplus": [-40.0, -700.0], "tanh": [-20.0, -40.0, -400.0],
           "erfinv": [1 - 1e-10, -1 + 1e-10, 0.999], "erfc": [5.0, 26.0, -6.0],
           "logit": [1 - 1e-10, 1 - 2 ** -52, 0.25, 0.75, 0.5 + 1e-9],
           "lgamma": [2.0 + 1e-9, 1.4616321449683622, -2.5, 171.5],
           "digamma": [1.4616321449683622, -0.5, -2.5]}


def unary_points(name):
    xs = sorted({s * m for m in MAGNITUDES for s in (1.0, -1.0)} | set(SPECIAL.get(name, [])))
    return [x for x in xs if all(_defined(f, x) for f in UNARY[name])
            and not (name in ("abs", "relu") and x == 0)]


def binary_points(name):
    grid = [1e-300, 1e-150, 1e-10, 0.3, 1.0, 2.5, 10.0, 1e10, 1e150, 1e300]
    pts = [(s * a, t * b) for a in grid for b in grid for s in (1, -1) for t in (1, -1)]
    if name == "pow":   # positive bases, exponents of moderate size and the special ones
        pts = [(a, b) for a in (1e-300, 1e-10, 0.3, 1.0, 2.5, 4.0, 10.0, 1e10, 1e300)
               for b in (-3.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 7.25)]
    if name == "logaddexp":
        pts = [(a, b) for a in (-1000.0, -40.0, -1.0, 0.0, 0.5, 20.0, 1000.0)
               for b in (-1000.0, -40.0, -1.0, 0.0, 0.5, 20.0, 700.0)]
    if name == "mod":   # quotients of moderate size, off the jumps at integer quotients
        pts = [(a, b) for a in (-7.25, -2.5, -0.3, 0.3, 1.0, 2.5, 10.0, 123.456, 1e10)
               for b in (-3.0, -0.7, 0.7, 1.5, 4.0) if a / b != math.floor(a / b)]
    if name in ("maximum", "minimum"):
        pts = [(a, b) for a, b in pts if a != b]
    if name in ("atan2", "hypot_ratio"):   # second derivatives ~ 1/r^2: they overflow for tiny r
        pts = [(a, b) for a, b in pts if max(abs(a), abs(b)) > 1e-200]
    # at points where the value is a normal float (1e300**2 is not, nor is 1e-300**2, and
    # derivatives computed from such a value cannot recover what its rounding lost)
    f, grad, hess = BINARY[name]
    return [(a, b) for a, b in pts if all(_defined(g, a, b) for g in (f,) + grad + hess)
            and (f(mp.mpf(a), mp.mpf(b)) == 0 or TINY <= abs(f(mp.mpf(a), mp.mpf(b))) <= HUGE)]


def _defined(f, *x):
    """Is f real and finite at x (in exact arithmetic: it may overflow a float)?"""
    if not callable(f):
        return True
    try:
        v = f(*[mp.mpf(t) for t in x])
    except (ValueError, ZeroDivisionError, OverflowError):   # (mpmath's erfc at 1e300)
        return False
    return isinstance(v, (mp.mpf, int, float)) and mp.isfinite(v)


def ulps(computed, true):
    """|computed - true| in ulps of true; 0 where true is not a normal float and computed
    has the right limit (an infinity of the right sign, a zero or subnormal number)."""
    true = mp.mpf(true)
    t = float(true) if abs(true) <= HUGE else math.copysign(math.inf, true)
    if math.isinf(t):
        return 0.0 if computed == t else math.inf
    if abs(true) < TINY:
        return 0.0 if abs(computed) < TINY * 2 else math.inf
    if not math.isfinite(computed):
        return math.inf
    return float(abs(mp.mpf(computed) - true) / np.spacing(abs(t)))


def adcli_unary(name, x):
    """Value, first derivative (reverse, forward) and second (reverse-over-reverse,
    forward-over-reverse, forward-over-forward) of op `name` at the points x."""
    g = Graph()
    xi = g.input("x", x)
    one = np.ones_like(x)
    with np.errstate(all="ignore"):
        y = g.emit(name, xi)
        d1r = autodiff.vjp(g, y, [xi], cotangent=one)[0]
        d1f = autodiff.jvp(g, y, [xi], [one])
        (gr,) = autodiff.vjp(g, y, [xi], cotangent=g.const(one), create_graph=True)
        d2rr = autodiff.vjp(g, gr, [xi], cotangent=g.const(one), create_graph=True)[0]
        d2fr = autodiff.jvp(g, gr, [xi], [g.const(one)], create_graph=True)
        tf = autodiff.jvp(g, y, [xi], [g.const(one)], create_graph=True)
        d2ff = autodiff.jvp(g, tf, [xi], [g.const(one)], create_graph=True)
    zero = np.zeros_like(x)
    val = lambda n: zero if n is None else np.broadcast_to(getattr(n, "value", n), x.shape)  # noqa: E731
    return val(y), val(d1r), val(d1f), val(d2rr), val(d2fr), val(d2ff)


def adcli_binary(name, a, b):
    """Value, gradient (both modes) and Hessian (reverse-over-reverse and
    forward-over-reverse) of op `name` at the points (a, b)."""
    g = Graph()
    ins = [g.input("a", a), g.input("b", b)]
    one = np.ones_like(a)
    zero = np.zeros_like(a)
    val = lambda n: zero if n is None else np.broadcast_to(getattr(n, "value", n), a.shape)  # noqa: E731
    with np.errstate(all="ignore"):
        y = g.emit(name, *ins)
        rev = autodiff.vjp(g, y, ins, cotangent=one)
        fwd = [autodiff.jvp(g, y, [x], [one]) for x in ins]
        grads = autodiff.vjp(g, y, ins, cotangent=g.const(one), create_graph=True)
        rr = [[val(h) for h in autodiff.vjp(g, gi, ins, cotangent=g.const(one), create_graph=True)]
              if gi is not None else [zero, zero] for gi in grads]
        fr = [[val(autodiff.jvp(g, gi, [x], [g.const(one)], create_graph=True)) for x in ins]
              if gi is not None else [zero, zero] for gi in grads]
    return val(y), [val(r) for r in rev], [val(f) for f in fwd], rr, fr


def _ref(v, *x):
    return v(*[mp.mpf(t) for t in x]) if callable(v) else mp.mpf(v)


def unary_errors(name):
    xs = unary_points(name)
    got = adcli_unary(name, np.array(xs))
    f, d1, d2 = UNARY[name]
    worst = [0.0, 0.0, 0.0]
    where = [None, None, None]
    for k, x in enumerate(xs):
        refs = (f, d1, d1, d2, d2, d2)
        for j, order in enumerate((0, 1, 1, 2, 2, 2)):
            e = ulps(float(got[j][k]), _ref(refs[j], x))
            if e > worst[order]:
                worst[order], where[order] = e, x
    return worst, where


def binary_errors(name):
    pts = binary_points(name)
    a, b = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    y, rev, fwd, rr, fr = adcli_binary(name, a, b)
    f, grad, hess = BINARY[name]
    h = [[hess[0], hess[1]], [hess[1], hess[2]]]
    worst = [0.0, 0.0, 0.0]
    where = [None, None, None]
    for k, p in enumerate(pts):
        checks = [(0, float(y[k]), f)]
        checks += [(1, float(m[i][k]), grad[i]) for m in (rev, fwd) for i in (0, 1)]
        checks += [(2, float(m[i][j][k]), h[i][j]) for m in (rr, fr) for i in (0, 1) for j in (0, 1)]
        scale = max(abs(_ref(r, *p)) for o, _, r in checks if o == 2)
        for order, c, ref in checks:
            true = _ref(ref, *p)
            # a Hessian entry that is exactly 0 (a cancellation, as atan2's mixed derivative
            # on the diagonal a = b) is judged against the Hessian's largest entry
            e = ulps(c, true) if true != 0 or order < 2 else ulps(c + float(scale), scale)
            if e > worst[order]:
                worst[order], where[order] = e, p
    return worst, where


def elementwise_ops():
    return [o.name for o in OPS.values()
            if o.kind == "elementwise" and o.differentiable and o.name not in NOT_HERE]


def test_every_elementwise_op_has_a_reference():
    for name in elementwise_ops():
        assert name in UNARY or name in BINARY, f"{name}: add its closed forms here"
        assert name in ULP_BOUNDS, name


@pytest.mark.parametrize("name", sorted(UNARY) + sorted(BINARY))
def test_precision(name):
    worst, where = unary_errors(name) if name in UNARY else binary_errors(name)
    for order, (e, bound) in enumerate(zip(worst, ULP_BOUNDS[name])):
        assert e <= bound + 0.5, (f"{name}: order {order} is off by {e:.3g} ulps at "
                                  f"{where[order]!r} (bound {bound})")


def test_the_references_are_the_derivatives():
    """The closed forms above against mpmath's own numerical differentiation."""
    for name, (f, d1, d2) in UNARY.items():
        if name in ("abs", "relu", "neg"):
            continue
        for x in (0.3, 0.7, 1.3):
            if not _defined(f, x):
                continue
            x = mp.mpf(x)
            assert mp.almosteq(mp.diff(f, x), _ref(d1, x), rel_eps=mp.mpf(10) ** -30), name
            assert mp.almosteq(mp.diff(f, x, 2), _ref(d2, x), rel_eps=mp.mpf(10) ** -25), name
