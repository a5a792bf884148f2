"""Derivatives of every order and shape, as transforms of the recorded graph.

* `jacobian`: d out / d x for every chosen input, by forward mode (one JVP per input
  element, the op table's `jvp` rules) or reverse mode (one VJP per output element, its
  `vjp` rules), picked from the sizes unless asked for.
* `jvp`, `vjp`: one directional derivative, forward or reverse.
* `hessian`, `hvp`: forward-over-reverse. Reverse mode with `create_graph=True` records the
  gradient as new graph nodes; forward mode then pushes a tangent through the whole graph,
  gradient included, giving H v (one column of the Hessian per basis vector).
* `higher_grad`: d^k out / dx^k for each input alone: reverse once, then forward mode k-1
  times, each time over a graph that the previous transform recorded.

A derivative that is identically zero (the output does not depend on the input, or only
through steps with derivative 0) comes out as zeros, with a note, like PyTorch's
`allow_unused=True`; it is never an error.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from . import autodiff
from .api import _without_gc, choose_inputs, evaluate, scalar_output
from .errors import AdcliError, InputError, LimitError, ShapeError, ValueError_, note
from .graph import dependents


def _reserve(traced, shapes, what):
    """Check the arrays of a result before allocating them, and count them as held."""
    graph = traced.graph
    limit = graph.limits.max_elements
    for shape in shapes:
        n = math.prod(shape)
        if n > limit:
            raise LimitError(f"the {what} would have shape {tuple(shape)} ({n:,} elements); "
                             f"the limit is {limit:,}", hint="raise it with --max-elements")
    graph.hold(sum(math.prod(s) for s in shapes) * graph.dtype.itemsize, f"the {what}")


def _check_growth(graph, sizes, levels, order):
    """Before recording the next order: each order's graph is about r times the one
    before it (r measured on the last two), so the `levels` still to be recorded would
    make the graph about this large. Refused now, not after minutes of building.
    (sizes: the graph's size before the gradient and after it and each order since; the
    ratio is measured on two forward-mode orders.)"""
    if len(sizes) < 4 or sizes[-2] == sizes[-3]:
        return
    added = sizes[-1] - sizes[-2]
    r = added / (sizes[-2] - sizes[-3])
    total = sizes[-1]
    for _ in range(levels):
        added *= r
        total += added
        if total > graph.limits.max_nodes:
            raise LimitError(f"the derivative of order {order} would need about {total:,.0f} "
                             f"graph nodes (each order has about {r:.1f} times the nodes of the "
                             f"one before); the limit is {graph.limits.max_nodes:,}",
                             hint="raise it with --max-nodes, or ask for a lower --order")


def _unused_note(name):
    return note("no-derivative", f"no derivative reaches '{name}' (the value does not depend "
                "on it, or only through steps with derivative 0); its derivatives are 0")


def _basis(xp, shape, dtype):
    """The unit vectors of an array shape, one at a time, in C order."""
    n = math.prod(shape)
    for i in range(n):
        e = xp.zeros(n, dtype=dtype)
        e[i] = 1.0
        yield i, e.reshape(shape)


@contextmanager
def _located(traced):
    """Attach the source to errors raised while a derivative rule runs."""
    try:
        yield
    except AdcliError as err:
        raise err.located(traced.source, traced.filename)


# ---------------------------------------------------------------- first order

def _sparse(traced, kind, names, nodes, mode, sparse, pattern, chunk):
    """The sparse result for --sparse on|auto or --pattern, or None for a dense one."""
    from . import sparse as sp
    if pattern and sparse == "off":
        raise InputError("--pattern shows the sparsity pattern: it cannot be combined with "
                         "--sparse off")
    choice = "on" if pattern else sparse
    with _located(traced):
        if kind == "jacobian":
            comp = sp.choose_mode(traced.graph, traced.output, nodes, choice, mode)
        else:
            comp = sp.choose(traced.graph, "hessian", None, traced.output, nodes, choice)
        return None if comp is None else sp.result(traced, comp, names, nodes, chunk,
                                                    values=not pattern)


@_without_gc
def jacobian(traced, wrt=None, mode=None, *, mark=None, sparse="off", pattern=False,
             chunk=None):
    """d out / d x for each chosen input: arrays of shape out.shape + x.shape.

    mode "fwd" builds the Jacobian a column at a time (one JVP per input element), "rev" a
    row at a time (one VJP per output element); by default the cheaper of the two.
    sparse "on" (or "auto", when it pays) finds the Jacobian's sparsity pattern and builds
    it from a few compressed sweeps (adcli.sparse): the result's `sparse` member holds it;
    pattern=True gives the pattern alone.
    mark: passed to every walk (autodiff.vjp), for adcli profile; so in the functions below."""
    graph, out = traced.graph, traced.output
    if out.dtype.kind != "f":
        raise InputError("the value is a boolean and has no derivative")
    names, nodes = choose_inputs(traced, wrt)
    if mode not in (None, "fwd", "rev"):
        raise InputError(f"unknown mode '{mode}'", hint="use fwd or rev")
    if mark is None and (sparse != "off" or pattern):
        res = _sparse(traced, "jacobian", names, nodes, mode, sparse, pattern, chunk)
        if res is not None:
            return res
    n_in, n_out = sum(x.size for x in nodes), out.size
    if mode is None:
        mode = "fwd" if n_in <= n_out else "rev"
    _reserve(traced, [tuple(out.shape) + tuple(x.shape) for x in nodes], "Jacobian")
    xp, dtype = graph.xp, graph.dtype
    jac = [xp.zeros((n_out, x.size), dtype=dtype) for x in nodes]
    reached = [False] * len(nodes)
    with _located(traced):
        if mode == "fwd":
            for k, x in enumerate(nodes):
                if mark is None and x.size and _jacobian_columns(graph, out, k, x, jac, reached):
                    continue
                for i, e in _basis(xp, x.shape, dtype):
                    t = autodiff.jvp(graph, out, [x], [e], mark=mark)
                    if t is not None:
                        reached[k] = True
                        jac[k][:, i] = xp.broadcast_to(t, out.shape).reshape(-1)
        elif mark is None and out.size and _jacobian_rows(graph, out, nodes, jac, reached):
            pass
        else:
            graph.value(out)      # the forward values, kept for the many walks that read them
            for j, e in _basis(xp, out.shape, dtype):
                for k, c in enumerate(autodiff.vjp(graph, out, nodes, cotangent=e, mark=mark)):
                    if c is not None:
                        reached[k] = True
                        jac[k][j, :] = c.reshape(-1)
    res = evaluate(traced)
    res.rows = [(f"d/d{w}", f"∂/∂{w}", J.reshape(tuple(out.shape) + tuple(x.shape)))
                for w, x, J in zip(names, nodes, jac)]
    res.extra = {"jacobian": {w: row[2] for w, row in zip(names, res.rows)}, "mode": mode}
    res.notes += [_unused_note(w) for w, r in zip(names, reached) if not r]
    return res


def _jacobian_columns(graph, out, k, x, jac, reached):
    """Columns of d out / d x from the JVP program along a tangent placeholder, evaluated
    at the basis tangents with the batch axis (see _sweep_basis)."""
    def write(start, stop, vals, outs):
        if outs[0] is not None:
            reached[k] = True
            jac[k][:, start:stop] = _rows(graph, vals[outs[0].id], stop - start, out).T
    return _sweep_basis(graph, x.shape, "a tangent", [out],
                        lambda t: [autodiff.jvp(graph, out, [x], [t], create_graph=True)], write)


def _jacobian_rows(graph, out, nodes, jac, reached):
    """Rows of d out / d x for every input from the VJP program of a cotangent
    placeholder, evaluated at the basis cotangents with the batch axis."""
    def write(start, stop, vals, outs):
        for k, (x, c) in enumerate(zip(nodes, outs)):
            if c is not None:
                reached[k] = True
                jac[k][start:stop, :] = _rows(graph, vals[c.id], stop - start, x)
    return _sweep_basis(graph, out.shape, "a cotangent", [out],
                        lambda c: autodiff.vjp(graph, out, nodes, cotangent=c, create_graph=True),
                        write)


@_without_gc
def jvp(traced, tangents, *, mark=None):
    """The forward-mode derivative of the output along `tangents` (name -> array; inputs
    not named move by 0)."""
    graph, out = traced.graph, traced.output
    if out.dtype.kind != "f":
        raise InputError("the value is a boolean and has no derivative")
    names, nodes = choose_inputs(traced, list(tangents), what="--tangent")
    ts = []
    for w, x in zip(names, nodes):
        t = np.asarray(tangents[w], dtype=graph.dtype)
        if t.shape != tuple(x.shape):
            raise ShapeError(f"--tangent {w}: shape {t.shape} does not match the input's "
                             f"shape {tuple(x.shape)}")
        ts.append(graph.xp.asarray(t))
    with _located(traced):
        t = autodiff.jvp(graph, out, nodes, ts, mark=mark)
    res = evaluate(traced)
    if t is None:
        res.notes.append(note("no-derivative", "the value does not depend on the inputs moved; "
                              "the JVP is 0"))
        t = graph.xp.zeros(out.shape, dtype=graph.dtype)
    t = graph.xp.broadcast_to(t, out.shape)
    res.rows = [("jvp", "JVP", t)]
    res.extra = {"jvp": t, "mode": "fwd"}
    return res


@_without_gc
def vjp(traced, cotangent, wrt=None):
    """The reverse-mode derivative: cotangent^T (d out / d x) for each chosen input."""
    graph, out = traced.graph, traced.output
    if out.dtype.kind != "f":
        raise InputError("the value is a boolean and has no derivative")
    names, nodes = choose_inputs(traced, wrt)
    w = np.asarray(cotangent, dtype=graph.dtype)
    if w.shape != tuple(out.shape):
        try:
            w = np.broadcast_to(w, out.shape)
        except ValueError:
            raise ShapeError(f"--cotangent: shape {w.shape} does not match the value's shape "
                             f"{tuple(out.shape)}") from None
    with _located(traced):
        cts = autodiff.vjp(graph, out, nodes, cotangent=graph.xp.asarray(w))
    res = evaluate(traced)
    res.rows, res.extra = [], {"vjp": {}, "mode": "rev"}
    for name, x, c in zip(names, nodes, cts):
        if c is None:
            res.notes.append(_unused_note(name))
            c = graph.xp.zeros(x.shape, dtype=graph.dtype)
        res.rows.append((f"vjp/{name}", f"VJP ∂/∂{name}", c))
        res.extra["vjp"][name] = c
    return res


# ---------------------------------------------------------------- second order and up

def _gradient_nodes(traced, nodes):
    """The gradient as graph nodes (reverse mode, recorded), None where it is zero."""
    with _located(traced):
        return autodiff.vjp(traced.graph, traced.output, nodes, create_graph=True)


@_without_gc
def hvp(traced, vector, *, mark=None):
    """H v, forward-over-reverse: the directional derivative of the gradient graph along
    `vector` (name -> array; inputs not named move by 0), for every input."""
    graph = traced.graph
    scalar_output(traced, "hvp")
    names, nodes = choose_inputs(traced, None)
    moved, vs = [], []
    for w, v in vector.items():
        if w not in traced.inputs:
            choose_inputs(traced, [w], what="--vector")
        x = traced.inputs[w]
        v = np.asarray(v, dtype=graph.dtype)
        if v.shape != tuple(x.shape):
            raise ShapeError(f"--vector {w}: shape {v.shape} does not match the input's "
                             f"shape {tuple(x.shape)}")
        moved.append(x)
        vs.append(graph.xp.asarray(v))
    grads = _gradient_nodes(traced, nodes)
    present = [g for g in grads if g is not None]
    with _located(traced):
        hv = autodiff.jvp(graph, present, moved, vs, mark=mark) if present else []
    hv = iter(hv)
    res = evaluate(traced)
    res.rows, res.extra = [], {"hvp": {}, "mode": "fwd-over-rev"}
    for name, x, g in zip(names, nodes, grads):
        h = next(hv) if g is not None else None
        if h is None:
            h = graph.xp.zeros(x.shape, dtype=graph.dtype)
        h = graph.xp.broadcast_to(h, x.shape)
        res.rows.append((f"hvp/{name}", f"(Hv) ∂/∂{name}", h))
        res.extra["hvp"][name] = h
    return res


@_without_gc
def hessian(traced, wrt=None, *, mark=None, sparse="off", pattern=False, chunk=None):
    """Every block d2 out / dx dy (shape x.shape + y.shape), forward-over-reverse: one
    forward sweep over the recorded gradient per input element. sparse and pattern: as
    for jacobian (a star colouring, Hessian-vector products along its seeds)."""
    graph, out = traced.graph, traced.output
    scalar_output(traced, "hessian")
    names, nodes = choose_inputs(traced, wrt)
    if mark is None and (sparse != "off" or pattern):
        res = _sparse(traced, "hessian", names, nodes, None, sparse, pattern, chunk)
        if res is not None:
            return res
    _reserve(traced, [tuple(x.shape) + tuple(y.shape) for x in nodes for y in nodes], "Hessian")
    xp, dtype = graph.xp, graph.dtype
    grads = _gradient_nodes(traced, nodes)
    present = [g for g in grads if g is not None]
    blocks = {(a, b): xp.zeros((x.size, y.size), dtype=dtype)
              for a, x in zip(names, nodes) for b, y in zip(names, nodes)}
    with _located(traced):
        for b, y in zip(names, nodes):
            if mark is None and present and _hessian_columns(graph, names, nodes, grads, b, y,
                                                             blocks):
                continue
            for i, e in _basis(xp, y.shape, dtype):
                cols = iter(autodiff.jvp(graph, present, [y], [e], mark=mark) if present else [])
                for a, x, g in zip(names, nodes, grads):
                    col = next(cols) if g is not None else None
                    if col is not None:
                        blocks[a, b][:, i] = xp.broadcast_to(col, x.shape).reshape(-1)
    res = evaluate(traced)
    res.rows, hess = [], {}
    for a, x in zip(names, nodes):
        hess[a] = {}
        for b, y in zip(names, nodes):
            block = blocks[a, b].reshape(tuple(x.shape) + tuple(y.shape))
            hess[a][b] = block
            res.rows.append((f"d2/d{a},d{b}", f"∂²/∂{a}∂{b}", block))
    res.extra = {"hessian": hess, "mode": "fwd-over-rev"}
    res.notes += [_unused_note(w) for w, g in zip(names, grads) if g is None]
    return res


BATCH_ELEMENTS = 1 << 22    # the most elements one batched sweep's largest array may hold


def _hessian_columns(graph, names, nodes, grads, b, y, blocks):
    """The columns d grad / d y[i] for every i, from one program: the JVP transform of the
    gradient program along a tangent placeholder, evaluated at the basis tangents with
    the batch axis. False (nothing written) where that cannot be done: the caller goes one
    column at a time."""
    present = [g for g in grads if g is not None]

    def write(start, stop, vals, cols):
        col = iter(cols)
        for a, x, g in zip(names, nodes, grads):
            c = next(col) if g is not None else None
            if c is not None:
                blocks[a, b][:, start:stop] = _rows(graph, vals[c.id], stop - start, x).T
    return _sweep_basis(graph, y.shape, f"a tangent of {b}", present,
                        lambda t: autodiff.jvp(graph, present, [y], [t], create_graph=True),
                        write)


def _rows(graph, v, n, like):
    """A value from an evaluation at n basis vectors as n rows of `like`'s size."""
    from .evaluate import at_points
    return at_points(graph.xp, v, n, like.shape).reshape(n, -1)


def _sweep_basis(graph, shape, name, needed, transform, write):
    """Evaluate a derivative program at every basis vector of `shape`, as many at once as
    BATCH_ELEMENTS allows: transform(placeholder) records the program (its output nodes,
    None where nothing depends on it), write(start, stop, values, outputs) takes each
    chunk's values. `needed`: nodes whose values every chunk reads, computed once first.
    False where an op cannot batch or a derivative is undefined here (a singular matrix):
    the caller's one-vector-at-a-time sweeps then say which rule fails."""
    from .evaluate import NotBatchable
    from .evaluate import evaluate as run
    xp, dtype = graph.xp, graph.dtype
    n = math.prod(shape)
    t = graph.placeholder(name, shape, dtype)
    try:
        outs = transform(t)
        present = [o for o in outs if o is not None]
        if not present:
            return True
        # the nodes that depend on the placeholder carry the batch axis
        widest = max(1, max(graph.nodes[i].size for i in dependents(graph, [t.id])))
        step = max(1, min(n, BATCH_ELEMENTS // widest))
        for node in needed:
            graph.value(node)    # computed once for every chunk
        for start in range(0, n, step):
            stop = min(start + step, n)
            basis = xp.zeros((stop - start, n), dtype=dtype)
            basis[xp.arange(stop - start), xp.arange(start, stop)] = 1.0
            vals = run(graph, present, {t: basis.reshape((stop - start,) + tuple(shape))},
                       batch=stop - start, batched=[t],
                       what=f"the derivative's sweeps along {stop - start} basis vectors")
            write(start, stop, vals, outs)
    except (NotBatchable, ValueError_):
        return False
    return True


@_without_gc
def higher_grad(traced, wrt=None, order=1):
    """d^k out / dx^k for each chosen input on its own (shape x.shape repeated k times):
    reverse mode once (recorded), then forward mode k-1 times, each recorded but the last."""
    graph, out = traced.graph, traced.output
    if order < 1:
        raise InputError(f"--order {order}: the order must be 1 or more")
    scalar_output(traced, "grad")
    names, nodes = choose_inputs(traced, wrt)
    _reserve(traced, [tuple(x.shape) * order for x in nodes], f"derivative of order {order}")
    xp, dtype = graph.xp, graph.dtype
    res = evaluate(traced)
    res.grad = {}
    before = len(graph.nodes)
    with _located(traced):
        if order == 1:
            cts = autodiff.vjp(graph, out, nodes)
        else:
            cts = autodiff.vjp(graph, out, nodes, create_graph=True)
    gradient_nodes = len(graph.nodes) - before
    for name, x, d in zip(names, nodes, cts):
        sizes = [len(graph.nodes) - gradient_nodes, len(graph.nodes)]  # after each order
        for level in range(2, order + 1):
            if d is None:
                break
            if level < order:
                _check_growth(graph, sizes, order - level, order)
            d = _forward_jacobian(graph, d, x, record=level < order, traced=traced)
            sizes.append(len(graph.nodes))
        if d is None:
            res.notes.append(_unused_note(name))
            d = xp.zeros(tuple(x.shape) * order, dtype=dtype)
        res.grad[name] = d
    res.order = order
    return res


def _forward_jacobian(graph, node, x, record, traced):
    """d node / d x as a node (record=True) or an array, of shape node.shape + x.shape:
    one forward sweep per element of x, the columns stacked on a new last axis."""
    xp, dtype = graph.xp, graph.dtype
    if x.size == 0:     # no columns: an empty derivative
        zeros = xp.zeros(tuple(node.shape) + tuple(x.shape), dtype=dtype)
        return graph.const(zeros) if record else zeros
    cols = []
    with _located(traced):
        for i, e in _basis(xp, x.shape, dtype):
            tangent = graph.const(e) if record else e
            t = autodiff.jvp(graph, node, [x], [tangent], create_graph=record)
            if t is None:
                t = graph.const(xp.zeros(node.shape, dtype=dtype)) if record else \
                    xp.zeros(node.shape, dtype=dtype)
            elif tuple(t.shape) != tuple(node.shape):
                t = graph.ns.broadcast_to(t, shape=node.shape) if record else \
                    xp.broadcast_to(t, node.shape)
            cols.append(t)
    if x.ndim == 0:
        return cols[0]
    if record:
        stacked = graph.ns.stack(*cols, axis=-1)
        return graph.ns.reshape(stacked, shape=tuple(node.shape) + tuple(x.shape))
    return xp.stack(cols, axis=-1).reshape(tuple(node.shape) + tuple(x.shape))
