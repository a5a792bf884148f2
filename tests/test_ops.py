"""Every op of the table against central finite differences in float64.

For each op and a few argument shapes (broadcast ones included), at random points of
its domain away from its kinks, the tests check:
  * reverse mode: the vector-Jacobian product <w, J u> against differences of <w, f>;
  * forward mode: the Jacobian-vector product J u against differences of f;
  * second order, both ways: the derivative of the gradient (built as a graph) in a
    direction, by reverse-over-reverse and by forward-over-reverse, against differences
    of the gradient.
The cases come from the table itself: a new op without a case here fails a test.
"""
import numpy as np
import pytest

from adcli import autodiff
from adcli.graph import Graph
from adcli.ops import OPS, public_ops

RNG = np.random.default_rng(1234)

# Shapes for non-elementwise ops: the table's examples, (argument shapes, attributes) per op.
STRUCTURAL = {op.name: op.examples for op in OPS.values() if op.examples}
# Ops tested elsewhere: `custom` carries a user's rule from a script (tests/test_scripts.py).
TESTED_ELSEWHERE = {"custom"}
BROADCAST = [((4,),), ((2, 3), (3,)), ((3, 1), (1, 4)), ((), (3,))]


def _sample(lo, hi, shape):
    return RNG.uniform(lo, hi, size=shape)


def _is_matrix_op(op):
    return op.name in ("det", "inv", "solve", "cofactor")


def cases(op):
    """(args, attrs) to test `op` at, sampled inside its domain and off its kinks."""
    if op.kind in ("elementwise", "comparison") or op.name in ("where", "mul0"):
        shapes_list = [s for s in BROADCAST if len(s) == 1] if len(op.args) == 1 else [
            tuple(s[i % len(s)] for i in range(len(op.args))) for s in BROADCAST]
        out = []
        for shapes in shapes_list:
            for _ in range(200):
                args = [_sample(*op.domain[i], shapes[i]) for i in range(len(op.args))]
                if op.name == "where":
                    args[0] = args[0] > 0
                if op.kink is None or np.all(np.abs(op.kink(np, *args)) > 0.05):
                    break
            out.append((args, {}))
        return out
    out = []
    for shapes, attrs in STRUCTURAL[op.name]:
        shapes = shapes if isinstance(shapes[0], tuple) else (shapes,)
        args = [_sample(0.5, 2.0, s) for s in shapes]
        if op.name in ("max", "min"):
            args = [RNG.permutation(np.arange(args[0].size, dtype=float)).reshape(shapes[0])]
        if _is_matrix_op(op):
            args[0] = args[0] + 3 * np.eye(shapes[0][-1])   # well conditioned
        if op.name == "prod_others":
            args = [_sample(0.5, 2.0, shapes[0])]
        out.append((args, attrs))
    return out


def run(op, args, attrs):
    g = Graph()
    ins = [g.input(f"a{i}", a) for i, a in enumerate(args)]
    return g, ins, g.emit(op.name, *ins, **attrs)


def value(op, args, attrs):
    return run(op, args, attrs)[2].value


def diff_args(op, args):
    return [i for i, a in enumerate(args) if a.dtype.kind == "f"
            and not (op.name == "where" and i == 0)]


def central(f, args, i, u, h=1e-6):
    plus = [a.copy() for a in args]
    minus = [a.copy() for a in args]
    plus[i] = plus[i] + h * u
    minus[i] = minus[i] - h * u
    return (f(plus) - f(minus)) / (2 * h)


def all_cases():
    for op in OPS.values():
        if not op.differentiable or op.kind == "constant" or op.name in TESTED_ELSEWHERE:
            continue
        for k, (args, attrs) in enumerate(cases(op)):
            yield pytest.param(op.name, args, attrs, id=f"{op.name}-{k}")


@pytest.mark.parametrize("name, args, attrs", list(all_cases()))
def test_first_order_both_modes(name, args, attrs):
    op = OPS[name]
    g, ins, out = run(op, args, attrs)
    w = RNG.normal(size=out.shape)
    for i in diff_args(op, args):
        u = RNG.normal(size=args[i].shape)
        numeric = central(lambda a: value(op, a, attrs), args, i, u)
        # reverse: <J^T w, u> equals <w, J u>
        (ct,) = autodiff.vjp(g, out, [ins[i]], cotangent=w)
        assert ct.shape == args[i].shape
        np.testing.assert_allclose(np.sum(ct * u), np.sum(w * numeric), rtol=1e-6, atol=1e-7)
        # forward: J u
        t = autodiff.jvp(g, out, [ins[i]], [u])
        np.testing.assert_allclose(t, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, args, attrs", list(all_cases()))
def test_second_order_both_modes(name, args, attrs):
    """d/dx <w, f> has derivative H u; compare reverse-over-reverse and
    forward-over-reverse with differences of the first derivative."""
    op = OPS[name]
    g, ins, out = run(op, args, attrs)
    w = RNG.normal(size=out.shape)
    for i in diff_args(op, args):
        u = RNG.normal(size=args[i].shape)
        v = RNG.normal(size=args[i].shape)

        def first(a):
            gg, ii, oo = run(op, a, attrs)
            return autodiff.vjp(gg, oo, [ii[i]], cotangent=w)[0]

        numeric = central(first, args, i, u, h=1e-5)            # H u
        (grad_node,) = autodiff.vjp(g, out, [ins[i]], cotangent=g.const(w), create_graph=True)
        if grad_node is None or grad_node.op is None:
            continue   # a linear op: the gradient does not depend on x
        # forward over reverse: H u
        fr = autodiff.jvp(g, grad_node, [ins[i]], [g.const(u)], create_graph=True)
        fr = np.zeros(args[i].shape) if fr is None else fr.value
        np.testing.assert_allclose(fr, numeric, rtol=1e-4, atol=1e-6)
        # reverse over reverse: <v, H u> from the gradient of <v, grad>
        (rr,) = autodiff.vjp(g, grad_node, [ins[i]], cotangent=g.const(v), create_graph=True)
        rr = np.zeros(args[i].shape) if rr is None else rr.value
        np.testing.assert_allclose(np.sum(rr * u), np.sum(v * numeric), rtol=1e-4, atol=1e-6)


def test_every_op_is_tested():
    """A new op needs sampling information here (elementwise ops get it from the table)."""
    for op in OPS.values():
        if not op.differentiable or op.kind == "constant" or op.name in TESTED_ELSEWHERE:
            continue
        assert cases(op), op.name


def test_every_op_has_rules_for_both_modes():
    for op in OPS.values():
        if op.expand is not None or not op.differentiable:
            continue
        if op.partials is None:
            assert op.vjp is not None and op.jvp is not None, op.name
            assert op.arity is None or len(op.vjp) == op.arity, op.name


def test_public_ops_cover_the_language():
    names = {o.name for o in public_ops()}
    for fn in ("abs sign sqrt cbrt square exp expm1 log log1p log2 log10 sin cos tan asin acos "
               "atan atan2 sinh cosh tanh asinh acosh atanh sigmoid relu softplus floor ceil "
               "round maximum minimum clip where hypot sum mean prod max min norm logsumexp var "
               "std softmax dot matmul outer transpose trace det inv solve reshape concat stack "
               "zeros ones eye full linspace arange "
               "erf erfc erfinv lgamma digamma logit log_softmax cumsum cumprod diag tril triu "
               "flip cross einsum argmax argmin mod floor_divide flatten").split():
        assert fn in names, fn
    symbols = {s for o in public_ops() for s in o.symbol}
    assert {"%", "//"} <= symbols
    methods = {o.name for o in public_ops() if o.method}
    assert set("sum mean prod max min std var reshape transpose flatten cumsum argmax".split()) <= methods


@pytest.mark.parametrize("name", [o.name for o in OPS.values()
                                  if not o.differentiable and o.kind != "constant"])
def test_step_functions_have_zero_derivative(name):
    op = OPS[name]
    args = [RNG.uniform(0.1, 2.0, 4) for _ in op.args]
    g, ins, out = run(op, args, {})
    assert autodiff.vjp(g, out, ins, cotangent=np.ones(out.shape)) == [None] * len(ins)


# Points where a rule takes a special case (an exponent of 0, a zero factor of a NaN-safe
# product, a zero in a product): the Hessian must keep every dependence there.
SPECIAL_POINTS = {
    "pow": [[4.0, 0.0], [2.0, 0.0], [3.0, 0.0], [3.0, 1.0], [0.5, 2.0]],
    "mul": [[0.0, 2.0], [0.0, 0.0]], "mul0": [[0.0, 2.0], [3.0, 0.0]],
    "div": [[0.0, 2.0]], "hypot": [[0.0, 2.0], [3.0, 0.0]], "atan2": [[0.0, 2.0], [3.0, 0.0]],
    "logaddexp": [[0.0, 0.0], [1000.0, 1000.0]], "prod": [[0.0, 2.0, 3.0, 4.0, 0.5]],
    "logsumexp": [[1000.0, 1001.0, 999.0, 0.0]], "cumprod": [[2.0, 0.0, 3.0, 0.5], [0.0, 1.5, 0.0, 2.0]], "norm": [[1e-200, 2e-200, 0.0], [1e200, 0.0, 3e200]],
}


def hessian(op, args, attrs, w):
    """The Hessian of <w, op(args)> in all its float arguments together, by
    forward-over-reverse (column j = d grad / d x_j), as a matrix."""
    g, ins, out = run(op, args, attrs)
    diff = diff_args(op, args)
    xs = [ins[i] for i in diff]
    grads = autodiff.vjp(g, out, xs, cotangent=g.const(w), create_graph=True)
    sizes = [args[i].size for i in diff]
    n = sum(sizes)
    h = np.zeros((n, n))
    col = 0
    for k, x in enumerate(xs):
        for j in range(sizes[k]):
            e = np.zeros(sizes[k])
            e[j] = 1.0
            ts = autodiff.jvp(g, [gr for gr in grads if gr is not None], [x],
                              [e.reshape(args[diff[k]].shape)])
            ts = iter(ts)
            h[:, col] = np.concatenate([
                np.zeros(s) if gr is None else
                (lambda t: np.zeros(s) if t is None else np.broadcast_to(t, gr.shape).reshape(-1))(next(ts))
                for gr, s in zip(grads, sizes)])
            col += 1
    return h


def symmetry_cases():
    yield from all_cases()
    for name, points in SPECIAL_POINTS.items():
        op = OPS[name]
        for k, point in enumerate(points):
            args = [np.array(v) for v in point] if op.kind == "elementwise" else [np.array(point)]
            yield pytest.param(op.name, args, {}, id=f"{op.name}-special-{k}")


@pytest.mark.parametrize("name, args, attrs", list(symmetry_cases()))
def test_every_hessian_is_symmetric(name, args, attrs):
    """Second derivatives commute: d2/dxdy = d2/dydx for every op, also at the points where
    a rule takes a special case; there they must also match differences of the gradient."""
    op = OPS[name]
    w = np.random.default_rng(5).normal(size=run(op, args, attrs)[2].shape)
    with np.errstate(all="ignore"):
        h = hessian(op, args, attrs, w)
    assert np.all(np.isfinite(h)), h
    scale = max(1.0, np.abs(h).max())
    np.testing.assert_allclose(h, h.T, rtol=1e-9, atol=1e-12 * scale)
    diff = diff_args(op, args)
    if name not in ("logsumexp", "norm"):   # (their special points are too large to difference)
        # against central differences of the gradient, one element at a time
        def grad_at(a):
            gg, ii, oo = run(op, a, attrs)
            return np.concatenate([np.reshape(c if c is not None else np.zeros(a[i].shape), -1)
                                   for c, i in zip(autodiff.vjp(gg, oo, [ii[i] for i in diff],
                                                                cotangent=w), diff)])
        col = 0
        for i in diff:
            for j in range(args[i].size):
                u = np.zeros(args[i].size)
                u[j] = 1.0
                step = 1e-5 * max(1.0, abs(args[i].reshape(-1)[j]))
                h_fd = central(grad_at, args, i, u.reshape(args[i].shape), h=step)
                np.testing.assert_allclose(h[:, col], h_fd, rtol=1e-4, atol=1e-5 * scale)
                col += 1
