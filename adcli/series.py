"""Truncated power series: the arithmetic behind `adcli taylor` (adcli/taylor.py).

A series is an array x of shape (K+1,) + shape: x[k] is the coefficient of t^k of
x(t) = sum_k x[k] t^k, elementwise over `shape`. Every function here returns the series
of its result to the same order K, from the standard recurrences (Griewank & Walther,
"Evaluating Derivatives", ch. 13): each coefficient is a short sum over the ones before
it, so order K costs O(K^2) element operations and no coefficient is computed twice.

Two tools carry most functions. `integrate` turns the series of y' into y's: for f with
an algebraic derivative (log, atan, asin, erf, ...) y' = f'(x) x' is a product and a
quotient of series, known in full before y. `riccati` solves y' = (a + b y + c y^2) x',
whose right side needs y itself (tan, tanh, sigmoid), one coefficient at a time.

Arguments `y0` are the function's value at the point, computed by the op's own forward
rule (its stable form), so that c_0 is exactly the value adcli reports.
"""
from __future__ import annotations

import numpy as np


def constant(v, order, dtype):
    """The series of a value that does not move: v, then zeros."""
    v = np.asarray(v, dtype=dtype)
    out = np.zeros((order + 1,) + v.shape, dtype=dtype)
    out[0] = v
    return out


def _sum_products(a, b):
    """sum_j a[j] * b[j] over the leading axis."""
    return np.einsum("j...,j...->...", a, b) if a.ndim > 1 or b.ndim > 1 else a @ b


def mul(a, b):
    """The Cauchy product c_k = sum_j a_j b_(k-j), a zero factor winning over an infinite
    or NaN one (adcli's convention: 0 * sqrt(x) at 0 has derivatives 0)."""
    a, b = np.broadcast_arrays(a, b)
    c = np.empty(a.shape, dtype=np.result_type(a, b))
    for k in range(len(a)):
        c[k] = _sum_products(a[:k + 1], b[k::-1])
    if not np.isfinite(c).all():
        # redo the products with zeros winning: only 0 * inf and 0 * nan differ
        for k in range(len(a)):
            p = a[:k + 1] * b[k::-1]
            p = np.where((a[:k + 1] == 0) | (b[k::-1] == 0), 0.0, p)
            c[k] = p.sum(axis=0)
    return c


def power_int(x, n):
    """x^n for an integer n >= 0 by repeated squaring: products only, so a polynomial's
    coefficients are exact, and exactly 0 beyond its degree."""
    result = constant(np.ones(x.shape[1:]), len(x) - 1, x.dtype)
    base = x
    while n:
        if n & 1:
            result = mul(result, base)
        n >>= 1
        if n:
            base = mul(base, base)
    return result


def div(a, b):
    """a / b: from a = b y, y_k = (a_k - sum_(j=1..k) b_j y_(k-j)) / b_0."""
    a, b = np.broadcast_arrays(a, b)
    y = np.empty(a.shape, dtype=np.result_type(a, b, 1.0))
    for k in range(len(a)):
        y[k] = (a[k] - _sum_products(b[1:k + 1], y[k - 1::-1][:k])) / b[0]
    return y


def derivative(x):
    """The series of dx/dt, one order shorter: (k+1) x_(k+1)."""
    k = np.arange(1, len(x)).reshape((-1,) + (1,) * (x.ndim - 1))
    return x[1:] * k


def integrate(w, y0):
    """y with y' = w and y(0) = y0: y_k = w_(k-1) / k, one order longer than w."""
    w = np.asarray(w)
    y = np.empty((len(w) + 1,) + np.broadcast_shapes(w.shape[1:], np.shape(y0)),
                 dtype=w.dtype)
    y[0] = y0
    k = np.arange(1, len(w) + 1).reshape((-1,) + (1,) * (w.ndim - 1))
    y[1:] = w / k
    return y


def slope(x, d, y0):
    """The series of f(x) from y0 = f(x_0) and the series d of f'(x) (one order shorter
    is enough): f'(x) x' integrated."""
    return integrate(mul(derivative(x), d[:len(x) - 1]), y0)


def growth(w, y0):
    """y with y' = y w and y(0) = y0 (w one order shorter than y):
    y_k = (1/k) sum_(j=1..k) w_(j-1) y_(k-j)."""
    y = np.empty((len(w) + 1,) + np.broadcast_shapes(w.shape[1:], np.shape(y0)), dtype=w.dtype)
    y[0] = y0
    for k in range(1, len(y)):
        y[k] = _sum_products(w[:k], y[k - 1::-1]) / k
    return y


def exp(x, y0):
    """y' = y x': y_k = (1/k) sum_(j=1..k) j x_j y_(k-j)."""
    return growth(derivative(x), y0)


def plus(x, c):
    """The series of x + c for a constant c."""
    out = np.array(x, copy=True, dtype=np.result_type(x, 1.0))
    out[0] = out[0] + c
    return out


def recip(u):
    """1 / u."""
    return div(constant(np.ones(u.shape[1:]), len(u) - 1, u.dtype), u)


def rsqrt(u):
    """u^(-1/2)."""
    return power(u, -0.5, 1.0 / np.sqrt(u[0]))


def square(x):
    return mul(x, x)


def pow(a, b, y0):
    """a^b: a constant integer b by products (exact for polynomials, and right at a = 0),
    another constant b by the power recurrence, a moving b as exp(b log a)."""
    if not b[1:].any():
        r = np.unique(b[0])
        if r.size == 1 and float(r[0]).is_integer() and abs(r[0]) <= 64:
            n = int(r[0])
            y = power_int(a, abs(n))
            return with_value(y if n >= 0 else recip(y), y0)
        return power(a, b[0], y0)
    return exp(mul(b, log(a, np.log(a[0]))), y0)


def hypot_ratio(a, b, y0):
    """a / hypot(a, b), its derivatives 0 at the origin (as hypot's)."""
    h0 = np.hypot(a[0], b[0])
    zero = h0 == 0
    y = div(a, hypot(a, b, h0) + zero)
    return with_value(np.where(zero, 0.0, y), y0)


def _axes(axis, nd):
    if axis is None:
        return tuple(range(nd))
    return tuple(sorted(a % max(nd, 1) for a in ((axis,) if isinstance(axis, int) else axis)))


def _shifted_exp(x, axis):
    """exp(x - m) with m the largest c_0 along the axes (a constant shift: no overflow),
    and m."""
    axes = tuple(a + 1 for a in _axes(axis, x.ndim - 1))
    m = np.max(x[0:1], axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    z = np.array(x, copy=True)
    z[0:1] = z[0:1] - m
    return exp(z, np.exp(z[0])), m, axes


def logsumexp(x, axis, y0):
    """log sum exp(x): the sum of the shifted exponentials' series, and its log."""
    e, m, axes = _shifted_exp(x, axis)
    s = np.sum(e, axis=axes, keepdims=True)
    y = log(s, np.log(s[0]))
    return with_value(y.reshape((len(x),) + np.shape(y0)), y0)


def softmax(x, axis, y0):
    e, _, axes = _shifted_exp(x, axis)
    return with_value(div(e, np.sum(e, axis=axes, keepdims=True)), y0)


def _last(x, axis):
    """x with the series axis first and the axes of each coefficient named by `axis`
    flattened last (all of them when None), and the permutation used."""
    nd = x.ndim - 1
    axes = _axes(axis, nd)
    rest = [i for i in range(nd) if i not in axes]
    perm = [0] + [i + 1 for i in rest] + [i + 1 for i in axes]
    xt = np.transpose(x, perm)
    return xt.reshape(xt.shape[:1 + len(rest)] + (-1,)), xt.shape, perm


def prod(x, axis, y0):
    """The product along the axes, as products of series."""
    flat, _, _ = _last(x, axis)
    out = constant(np.ones(flat.shape[1:-1]), len(x) - 1, x.dtype)
    for i in range(flat.shape[-1]):
        out = mul(out, flat[..., i])
    return with_value(out.reshape((len(x),) + np.shape(y0)), y0)


def prod_others(x, axis, y0):
    """For every element the product of the others along the axes: the products before
    it times those after it, no division."""
    flat, shape, perm = _last(x, axis)
    n = flat.shape[-1]
    one = constant(np.ones(flat.shape[1:-1]), len(x) - 1, x.dtype)
    before, after = [one] * n, [one] * n
    for i in range(1, n):
        before[i] = mul(before[i - 1], flat[..., i - 1])
        after[n - 1 - i] = mul(after[n - i], flat[..., n - i])
    out = np.stack([mul(b, a) for b, a in zip(before, after)], axis=-1) if n else flat
    return with_value(np.transpose(out.reshape(shape), np.argsort(perm)), y0)


def cumprod(x, axis, y0):
    """Running products along `axis` (of the flattened coefficients when None)."""
    if axis is None:
        return with_value(cumprod_last(x.reshape(len(x), -1)), y0)
    ax = axis % max(x.ndim - 1, 1) + 1
    moved = np.moveaxis(x, ax, -1)
    return with_value(np.moveaxis(cumprod_last(moved), -1, ax), y0)


def _matrix_product(a, b):
    """sum_j a_j @ b_(k-j) for every k: the Cauchy product of matrix series."""
    return np.stack([np.sum(np.matmul(a[:k + 1], b[k::-1]), axis=0) for k in range(len(a))])


def inv(x, y0):
    """Y = X^-1 from X Y = I: Y_k = -Y_0 sum_(j=1..k) X_j Y_(k-j)."""
    y = np.empty(x.shape, dtype=x.dtype)
    y[0] = y0
    for k in range(1, len(x)):
        y[k] = -np.matmul(y0, np.sum(np.matmul(x[1:k + 1], y[k - 1::-1]), axis=0))
    return y


def solve(a, b, y0):
    """y = A^-1 b from A y = b: y_k = A_0^-1 (b_k - sum_(j=1..k) A_j y_(k-j)); a vector b
    (one for every matrix) as a column."""
    vector = b.ndim == 2
    bm = b[..., None] if vector else b
    y = np.empty((len(a),) + np.shape(y0) + ((1,) if vector else ()), dtype=a.dtype)
    y[0] = y0[..., None] if vector else y0
    for k in range(1, len(a)):
        rhs = bm[k] - np.sum(np.matmul(a[1:k + 1], y[k - 1::-1]), axis=0)
        y[k] = np.linalg.solve(a[0], rhs)
    return y[..., 0] if vector else y


def det(x, y0):
    """Jacobi's formula d' = d tr(X^-1 X'): the series of tr(X^-1 X') from the inverse's,
    then d grows along it."""
    xi = inv(x, np.linalg.inv(x[0]))
    w = np.trace(_matrix_product(xi[:-1], derivative(x)), axis1=-2, axis2=-1)
    return growth(w, y0)


def log(x, y0):
    """y' = x' / x."""
    y = integrate(div(derivative(x), x[:-1]), 0.0) if len(x) > 1 else np.empty(x.shape)
    y[0] = y0
    return y


def power(x, r, y0):
    """x^r for a real r, x_0 != 0: from x y' = r y x',
    y_k = (1 / (k x_0)) sum_(j=0..k-1) (r (k-j) - j) x_(k-j) y_j."""
    y = np.empty(np.broadcast_shapes(x.shape, (1,) + np.shape(r)), dtype=x.dtype)
    y[0] = y0
    with np.errstate(all="ignore"):
        for k in range(1, len(x)):
            j = np.arange(k).reshape((-1,) + (1,) * (x.ndim - 1))
            y[k] = np.sum((r * (k - j) - j) * x[k:0:-1] * y[:k], axis=0) / (k * x[0])
        # at x_0 = 0 (r > 0 not an integer) the recurrence divides by 0; there x^r moves as
        # (x_1 t)^r: the k-th derivative is 0 below r and infinite above it, as grad --order
        # k gives (r (r-1) ... (r-k+1) x^(r-k) at x = 0), its sign r's falling factorial's
        # times x_1's to the k
        r_ = np.broadcast_to(np.asarray(r, dtype=float), y.shape[1:])
        at0 = (x[0] == 0) & (r_ > 0) & (r_ != np.round(r_)) & (x[1] != 0 if len(x) > 1 else True)
        if np.any(at0):
            falling = np.ones(y.shape[1:])
            for k in range(1, len(x)):
                falling = falling * (r_ - (k - 1))
                y[k] = np.where(at0, np.where(k < r_, 0.0, np.sign(falling)
                                              * np.sign(x[1]) ** k * np.inf), y[k])
    return y


def sqrt(x, y0):
    """y^2 = x: y_k = (x_k - sum_(j=1..k-1) y_j y_(k-j)) / (2 y_0)."""
    y = np.empty(x.shape, dtype=x.dtype)
    y[0] = y0
    for k in range(1, len(x)):
        y[k] = (x[k] - _sum_products(y[1:k], y[k - 1:0:-1])) / (2.0 * y[0])
    return y


def sincos(x, s0, c0, sign=-1.0):
    """sin and cos together: s' = c x', c' = -s x' (sign=+1: sinh and cosh)."""
    s = np.empty(x.shape, dtype=x.dtype)
    c = np.empty(x.shape, dtype=x.dtype)
    s[0], c[0] = s0, c0
    jx = derivative(x)
    for k in range(1, len(x)):
        s[k] = _sum_products(jx[:k], c[k - 1::-1]) / k
        c[k] = sign * _sum_products(jx[:k], s[k - 1::-1]) / k
    return s, c


def riccati(x, y0, a, b, c):
    """y' = (a + b y + c y^2) x': z = a + b y + c y^2 is known up to order k-1 when y_k is
    computed, y_k = (1/k) sum_(j=1..k) j x_j z_(k-j)."""
    y = np.empty(x.shape, dtype=x.dtype)
    z = np.empty(x.shape, dtype=x.dtype)
    y[0] = y0
    jx = derivative(x)
    for k in range(len(x)):
        if k:
            y[k] = _sum_products(jx[:k], z[k - 1::-1]) / k
        z[k] = b * y[k] + c * _sum_products(y[:k + 1], y[k::-1]) + (a if k == 0 else 0.0)
    return y


def erfinv(x, y0):
    """y' = (sqrt(pi)/2) e x' with e = exp(y^2), whose own e' = (y^2)' e: both a
    coefficient at a time."""
    y = np.empty(x.shape, dtype=x.dtype)
    e = np.empty(x.shape, dtype=x.dtype)
    u = np.empty(x.shape, dtype=x.dtype)            # y^2
    y[0] = y0
    jx = derivative(x)
    half_root_pi = 0.5 * np.sqrt(np.pi)
    for k in range(len(x)):
        if k:
            y[k] = half_root_pi * _sum_products(jx[:k], e[k - 1::-1]) / k
        u[k] = _sum_products(y[:k + 1], y[k::-1])
        if k == 0:
            e[0] = np.exp(u[0])
        else:
            ju = u[1:k + 1] * np.arange(1, k + 1).reshape((-1,) + (1,) * (x.ndim - 1))
            e[k] = _sum_products(ju, e[k - 1::-1]) / k
    return y


def compose(x, coefficients):
    """f(x) from f's own Taylor coefficients at x_0, coefficients[m] = f^(m)(x_0) / m!:
    sum_m coefficients[m] (x - x_0)^m, by Horner's rule (the shift has no constant term,
    so orders above K never matter)."""
    d = np.array(x, copy=True)
    d[0] = 0.0
    y = constant(coefficients[-1], len(x) - 1, x.dtype)
    for m in range(len(coefficients) - 2, -1, -1):
        y = mul(y, d)
        y[0] = y[0] + coefficients[m]
    return y


def with_value(y, y0):
    """y with its constant term set to the op's own value at the point."""
    y = np.array(y, copy=True)
    y[0] = y0
    return y


def sigmoid(x, y0):
    """y' = y (1 - y) x'."""
    return riccati(x, y0, 0.0, 1.0, -1.0)


def logaddexp(a, b, y0):
    """y' = sigmoid(a - b) a' + sigmoid(b - a) b', the weights computed stably."""
    d = a - b
    s = sigmoid(d, _sigmoid0(d[0]))
    w = mul(derivative(a), s[:-1]) + mul(derivative(b), one_minus(s[:-1]))
    return integrate(w, y0)


def one_minus(s):
    """The series of 1 - s."""
    out = -s
    out[0] = out[0] + 1.0
    return out


def _sigmoid0(v):
    e = np.exp(-np.abs(v))
    return np.where(v < 0, e, 1.0) / (1.0 + e)


def over_square_sum(u, a, b):
    """u / (a^2 + b^2), the series of atan2's and hypot's slopes."""
    return div(u, mul(a, a) + mul(b, b))


def hypot(a, b, y0):
    """sqrt(a^2 + b^2); at the origin (y0 = 0) the derivatives are taken as 0, the
    minimum-norm convention of the gradient."""
    r = mul(a, a) + mul(b, b)
    zero = np.asarray(y0) == 0
    y = sqrt(np.where(zero, 1.0, r), np.where(zero, 1.0, y0))
    return np.where(zero, 0.0, y)


def atan2(a, b, y0):
    """y' = (b a' - a b') / (a^2 + b^2)."""
    w = over_square_sum(mul(b[:-1], derivative(a)) - mul(a[:-1], derivative(b)), a[:-1], b[:-1])
    return integrate(w, y0)


def cumprod_last(x):
    """Running products along the last axis: each a product of series."""
    out = np.empty(x.shape, dtype=x.dtype)
    if x.shape[-1] == 0:
        return out
    out[..., 0] = x[..., 0]
    for i in range(1, x.shape[-1]):
        out[..., i] = mul(out[..., i - 1], x[..., i])
    return out
