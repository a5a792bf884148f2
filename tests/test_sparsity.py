"""Sparsity patterns found from the program against dense Jacobians and Hessians.

A pattern must never miss an entry that a dense derivative has (a false zero would drop
a derivative); it may have an entry the dense one lacks only where the op table's rule is
conservative (listed below, and in adcli/ops.py's docstring) or where the value at this
point is 0 by chance (a branch not taken, a kink's side).
"""
import random

import numpy as np
import pytest

from adcli import api, derivatives
from adcli.api import Traced
from adcli.graph import Graph
from adcli.ops import OPS
from adcli.pattern import Pattern
from adcli.sparsity import hessian_pattern, jacobian_pattern
from test_batch import examples   # (argument shapes, attributes) from each op's entry

RNG = np.random.default_rng(12)

# Rules that can give false nonzeros (see Op.depends and Op.curvature): first order ...
CONSERVATIVE = {"cross", "cofactor", "cumsum", "cumprod", "prod_others"}
# ... and second order: nonlinear ops other than elementwise take every pair of what an
# element reads (the diagonal of prod and det is 0; solve is linear in b)
CONSERVATIVE_2 = CONSERVATIVE | {"prod", "det", "cofactor", "solve"}
# Ops whose derivative at a point is 0 on one side of a kink or branch: the pattern holds
# both sides, the point only one
POINT_ZEROS = {o.name for o in OPS.values() if o.curvature == "piecewise" or o.selects}


def sample(op, i, shape):
    lo, hi = op.domain[min(i, len(op.domain) - 1)]
    x = RNG.uniform(lo, hi, size=shape)
    if len(shape) >= 2 and shape[-1] == shape[-2]:
        x = x + 3.0 * np.eye(shape[-1])      # det, inv, solve: well conditioned
    return x


def op_case(name, shapes, attrs, scalar=False):
    """The op applied to inputs (the selecting arguments are fixed booleans); with
    `scalar`, sum(w * op(...)) with random weights w: a number for the Hessian."""
    op = OPS[name]
    g = Graph()
    inputs, args = {}, []
    for i, s in enumerate(shapes):
        v = sample(op, i, s)
        if i in op.selects:
            args.append(g.const(v > 0))
        else:
            inputs[f"a{i}"] = g.input(f"a{i}", v)
            args.append(inputs[f"a{i}"])
    with np.errstate(all="ignore"):
        out = g.emit(name, *args, **attrs)
        if scalar:
            out = g.emit("sum", g.emit("mul", out, g.const(RNG.uniform(0.5, 2.0, out.shape))))
    return Traced("", g, out, inputs)


def dense_jacobian(t):
    names = list(t.inputs)
    jac = derivatives.jacobian(t, wrt=names).extra["jacobian"]
    return np.hstack([np.reshape(jac[w], (t.output.size, t.inputs[w].size)) for w in names])


def dense_hessian(t):
    names = list(t.inputs)
    h = derivatives.hessian(t, wrt=names).extra["hessian"]
    return np.vstack([np.hstack([np.reshape(h[a][b], (t.inputs[a].size, t.inputs[b].size))
                                 for b in names]) for a in names])


def check(pattern, dense, exact):
    """No false zeros; with `exact`, no false nonzeros either."""
    assert isinstance(pattern, Pattern) and pattern.shape == dense.shape
    mask = pattern.to_dense()
    nonzero = dense != 0
    missed = nonzero & ~mask
    assert not missed.any(), f"false zeros at {np.argwhere(missed)[:5].tolist()}"
    if exact:
        extra = mask & ~nonzero
        assert not extra.any(), f"false nonzeros at {np.argwhere(extra)[:5].tolist()}"


def op_cases():
    for op in OPS.values():
        if op.kind == "constant" or op.name == "custom":   # custom: test_a_custom_rule
            continue
        for k, (shapes, attrs) in enumerate(examples(op)):
            if not op.selects or len(shapes) > len(op.selects):
                yield pytest.param(op.name, shapes, attrs, id=f"{op.name}-{k}")


@pytest.mark.parametrize("name, shapes, attrs", list(op_cases()))
def test_every_op_first_order(name, shapes, attrs):
    t = op_case(name, shapes, attrs)
    if not t.inputs or t.output.dtype.kind != "f":
        pattern = jacobian_pattern(t.graph, t.output, list(t.inputs.values()))
        assert pattern.nnz == 0          # a boolean (comparisons) has no derivative
        return
    with np.errstate(all="ignore"):
        dense = dense_jacobian(t)
    pattern = jacobian_pattern(t.graph, t.output, list(t.inputs.values()))
    exact = name not in CONSERVATIVE | POINT_ZEROS
    check(pattern, dense, exact)


@pytest.mark.parametrize("name, shapes, attrs", [c for c in op_cases()
                                                  if OPS[c.values[0]].kind != "comparison"])
def test_every_op_second_order(name, shapes, attrs):
    t = op_case(name, shapes, attrs, scalar=True)
    with np.errstate(all="ignore"):
        dense = dense_hessian(t)
    pattern = hessian_pattern(t.graph, t.output, list(t.inputs.values()))
    assert np.array_equal(pattern.to_dense(), pattern.to_dense().T)
    check(pattern, dense, name not in CONSERVATIVE_2 | POINT_ZEROS)


def traced(expr, **values):
    """expr traced at the values of the names it has."""
    import re
    names = set(re.findall(r"[A-Za-z_]\w*", expr))
    return api.trace(expr, {k: np.asarray(v, dtype=float) for k, v in values.items()
                            if k in names})


def patterns(t, wrt=None):
    nodes = [t.inputs[w] for w in (wrt or t.inputs)]
    return jacobian_pattern(t.graph, t.output, nodes), nodes


def test_the_residuals_have_a_bidiagonal_jacobian():
    n = 7
    t = traced("x[1:] - x[:-1]**2", x=RNG.normal(size=n))
    p, _ = patterns(t)
    want = np.eye(n - 1, n, k=1, dtype=bool) | np.eye(n - 1, n, dtype=bool)
    assert np.array_equal(p.to_dense(), want)
    check(p, dense_jacobian(t), exact=True)


def test_sum_of_sin_times_x_has_a_diagonal_hessian():
    t = traced("sum(sin(x)*x)", x=RNG.normal(size=6))
    h = hessian_pattern(t.graph, t.output, [t.inputs["x"]])
    assert np.array_equal(h.to_dense(), np.eye(6, dtype=bool))


def test_a_matrix_times_a_vector_reads_its_row_of_the_matrix_and_all_of_the_vector():
    m, n = 3, 4
    t = traced("A@x", A=RNG.normal(size=(m, n)), x=RNG.normal(size=n))
    p, _ = patterns(t, ["A", "x"])
    want = np.zeros((m, m * n + n), dtype=bool)
    for i in range(m):
        want[i, i * n:(i + 1) * n] = True      # d (Ax)_i / d A[i, :]
        want[i, m * n:] = True                 # d (Ax)_i / d x
    assert np.array_equal(p.to_dense(), want)
    # the Hessian of sum(A@x): only the products A[i, j] x[j]
    t = traced("sum(A@x)", A=RNG.normal(size=(m, n)), x=RNG.normal(size=n))
    h = hessian_pattern(t.graph, t.output, [t.inputs["A"], t.inputs["x"]])
    check(h, dense_hessian(t), exact=True)
    assert h.nnz == 2 * m * n


def test_the_square_of_a_sum_has_a_dense_hessian():
    t = traced("sum(x)**2", x=RNG.normal(size=5))
    h = hessian_pattern(t.graph, t.output, [t.inputs["x"]])
    assert h.nnz == 25


def test_a_product_of_two_elements_couples_only_them():
    t = traced("x[0]*x[1] + x[2]**3 + 2*x[3]", x=RNG.normal(size=5))
    h = hessian_pattern(t.graph, t.output, [t.inputs["x"]])
    assert sorted(zip(*h.coo())) == [(0, 1), (1, 0), (2, 2)]
    j, _ = patterns(t)
    assert j.to_dense().tolist() == [[True, True, True, True, False]]


def test_steps_without_a_derivative_cut_the_pattern():
    t = traced("floor(x) * y + detach(x) + (x > 0) * y", x=[0.5, 1.5], y=[2.0, 3.0])
    p, _ = patterns(t, ["x", "y"])
    assert p.to_dense().tolist() == [[False, False, True, False], [False, False, False, True]]


def test_a_script_with_a_loop():
    source = ("input x = [0.5, 1.0, 1.5, 2.0, 2.5]\n"
              "s = 0\n"
              "for i in range(4):\n"
              "    s = s + x[i] * sin(x[i + 1])\n"
              "return s\n")
    t = api.trace_script(source, {})
    h = hessian_pattern(t.graph, t.output, [t.inputs["x"]])
    want = np.eye(5, dtype=bool)                     # sin(x[i+1]) and x[i] sin(x[i+1])
    want[0, 0] = False
    want |= np.eye(5, k=1, dtype=bool) | np.eye(5, k=-1, dtype=bool)
    assert np.array_equal(h.to_dense(), want)
    check(h, dense_hessian(t), exact=True)


@pytest.mark.parametrize("sample_file", ["gradient_descent.ad", "indexed_assignment.ad",
                                         "two_layer_relu.ad", "linear_regression.ad",
                                         "fancy.ad", "doubling.ad"])
def test_the_samples_scripts(sample_file):
    """Scripts whose programs hold derivative programs (grad(f, theta) inside the loop),
    value semantics of indexed assignment, a while loop and a user's backward rule."""
    values = {"theta": np.linspace(0.5, 1.5, 5)} if sample_file == "linear_regression.ad" else {}
    with open(f"samples/{sample_file}") as f:
        t = api.trace_script(f.read(), values)
    nodes = [n for n in t.inputs.values() if n.dtype.kind == "f"]
    t.inputs = {n.name: n for n in nodes}
    check(jacobian_pattern(t.graph, t.output, nodes), dense_jacobian(t), exact=False)
    if t.output.size == 1:
        check(hessian_pattern(t.graph, t.output, nodes), dense_hessian(t), exact=False)


def test_a_custom_rule():
    with open("samples/fancy.ad") as f:
        t = api.trace_script(f.read(), {})
    assert any(n.op is not None and n.op.name == "custom" for n in t.graph.nodes)
    nodes = list(t.inputs.values())
    check(jacobian_pattern(t.graph, t.output, nodes), dense_jacobian(t), exact=False)


def test_nodes_off_the_path_are_skipped_and_unused_inputs_are_empty():
    t = traced("sin(x) + 0 * exp(y).sum() - exp(y).sum() * 0", x=[1.0, 2.0], y=[1.0, 2.0])
    p, _ = patterns(t, ["x"])
    assert p.to_dense().tolist() == [[True, False], [False, True]]
    g = Graph()
    x = g.input("x", np.ones(2))
    out = g.emit("sin", x)
    y = g.input("y", np.ones(1))
    p = jacobian_pattern(g, out, [y, x])
    assert p.shape == (2, 3) and p.to_dense().tolist() == [[False, True, False],
                                                          [False, False, True]]


def test_a_hessian_needs_a_number():
    t = traced("sin(x)", x=[1.0, 2.0])
    with pytest.raises(ValueError, match="one number"):
        hessian_pattern(t.graph, t.output, [t.inputs["x"]])


# ---------------------------------------------------------------- random programs

def random_expression(rng, depth):
    """A random expression of x and y (vectors of 6) and A (6 x 6): elementwise functions,
    products, slices that shift, reductions broadcast back, matrix products."""
    if depth == 0 or rng.random() < 0.15:
        return rng.choice(["x", "y", "x", "y", "(0.5 * x)"])
    sub = lambda: random_expression(rng, depth - 1)  # noqa: E731
    r = rng.random()
    if r < 0.3:
        f = rng.choice(["sin", "exp", "tanh", "square", "abs", "relu", "cos", "sigmoid",
                        "cumsum", "flip", "softmax", "neg", "floor", "sqrt"])
        if f == "sqrt":
            return f"sqrt(1 + square({sub()}))"
        if f == "neg":
            return f"(-{sub()})"
        if f == "exp":
            return f"exp(tanh({sub()}))"
        return f"{f}({sub()})"
    if r < 0.6:
        op = rng.choice(["+", "-", "*", "/", "maximum", "hypot", "atan2"])
        a, b = sub(), sub()
        if op == "/":
            return f"({a} / (2 + square({b})))"
        if op in ("maximum", "hypot", "atan2"):
            return f"{op}({a}, {b})"
        return f"({a} {op} {b})"
    if r < 0.7:
        return rng.choice([f"concat([({sub()})[1:], ({sub()})[:1]])",
                           f"concat([({sub()})[:3], ({sub()})[3:] * 2])"])
    if r < 0.8:
        return f"(A @ {sub()})" if rng.random() < 0.5 else f"({sub()} @ A)"
    if r < 0.9:
        return rng.choice([f"(sum({sub()}) * {sub()})", f"(prod(1 + square({sub()})) + {sub()})",
                           f"(max({sub()}) + {sub()})", f"(logsumexp({sub()}) * {sub()})"])
    return f"where({sub()} > 0, {sub()}, {sub()})"


@pytest.mark.parametrize("seed", range(60))
def test_random_programs(seed):
    rng = random.Random(seed)
    expr = random_expression(rng, 4)
    t = traced(expr, x=RNG.normal(size=6), y=RNG.normal(size=6), A=RNG.normal(size=(6, 6)))
    if not t.inputs or t.output.size != 6:
        return
    with np.errstate(all="ignore"):
        dense = dense_jacobian(t)
    if not np.all(np.isfinite(dense)):
        return
    nodes = list(t.inputs.values())
    check(jacobian_pattern(t.graph, t.output, nodes), dense, exact=False)
    t.output = t.graph.emit("sum", t.graph.emit("mul", t.output, t.graph.const(RNG.normal(size=6))))
    with np.errstate(all="ignore"):
        dense = dense_hessian(t)
    if np.all(np.isfinite(dense)):
        check(hessian_pattern(t.graph, t.output, nodes), dense, exact=False)
