"""Derivatives of every order and shape, as transforms of the recorded graph.

* `jacobian`: d out / d x for every chosen input, by forward mode (the JVP of each input
  element, the op table's `jvp` rules) or reverse mode (the VJP of each output element,
  its `vjp` rules), picked from the sizes unless asked for.
* `jvp`, `vjp`: one directional derivative, forward or reverse.
* `hessian`, `hvp`: forward-over-reverse. Reverse mode with `create_graph=True` records the
  gradient as new graph nodes; forward mode then pushes a tangent through the whole graph,
  gradient included, giving H v (one column of the Hessian per basis vector).
* `higher_grad`: d^k out / dx^k for each input alone: reverse once, then forward mode k-1
  times, each time over a graph that the previous transform recorded.

No derivative loops over the basis vectors: the JVP or VJP is recorded once as a program
along a placeholder tangent (or cotangent), and the evaluator runs that program at many
basis vectors at once, with its batch axis (_sweep_basis, _sweep), `chunk` of them per
sweep, by default as many as keep the sweep's largest array within BATCH_ELEMENTS.

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
def jacobian(traced, wrt=None, mode=None, *, chunk=None, hooks=(), sparse="off",
             pattern=False):
    """d out / d x for each chosen input: arrays of shape out.shape + x.shape.

    mode "fwd" pushes the basis tangents of each input through the JVP program (a column
    per input element), "rev" the basis cotangents through the VJP program (a row per
    output element); by default the cheaper of the two. Each is one batched evaluation
    (see _sweep_basis) of `chunk` vectors at a time, by default as many as BATCH_ELEMENTS
    allows. sparse "on" (or "auto", when it pays) finds the Jacobian's sparsity pattern
    and builds it from a few compressed sweeps (adcli.sparse): the result's `sparse`
    member holds it; pattern=True gives the pattern alone. hooks: evaluator hooks for the
    sweeps (adcli profile's timing hook), as for the functions below."""
    graph, out = traced.graph, traced.output
    if out.dtype.kind != "f":
        raise InputError("the value is a boolean and has no derivative")
    names, nodes = choose_inputs(traced, wrt)
    if mode not in (None, "fwd", "rev"):
        raise InputError(f"unknown mode '{mode}'", hint="use fwd or rev")
    _check_chunk(chunk)
    if sparse != "off" or pattern:
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
                if x.size:
                    _jacobian_columns(graph, out, k, x, jac, reached, chunk, hooks)
        elif out.size:
            _jacobian_rows(graph, out, nodes, jac, reached, chunk, hooks)
    res = evaluate(traced)
    res.rows = [(f"d/d{w}", f"∂/∂{w}", J.reshape(tuple(out.shape) + tuple(x.shape)))
                for w, x, J in zip(names, nodes, jac)]
    res.extra = {"jacobian": {w: row[2] for w, row in zip(names, res.rows)}, "mode": mode}
    res.notes += [_unused_note(w) for w, r in zip(names, reached) if not r]
    return res


def _jacobian_columns(graph, out, k, x, jac, reached, chunk, hooks=()):
    """Columns of d out / d x from the JVP program along a tangent placeholder, evaluated
    at the basis tangents with the batch axis (see _sweep_basis)."""
    def write(start, stop, vals, outs):
        if outs[0] is not None:
            reached[k] = True
            jac[k] = _put(jac[k], start, stop, _rows(graph, vals[outs[0].id], stop - start, out),
                          columns=True)
    _sweep_basis(graph, x.shape, "a tangent", [out],
                 lambda t: [autodiff.jvp(graph, out, [x], [t], create_graph=True)], write,
                 chunk, hooks)


def _jacobian_rows(graph, out, nodes, jac, reached, chunk, hooks=()):
    """Rows of d out / d x for every input from the VJP program of a cotangent
    placeholder, evaluated at the basis cotangents with the batch axis."""
    def write(start, stop, vals, outs):
        for k, (x, c) in enumerate(zip(nodes, outs)):
            if c is not None:
                reached[k] = True
                jac[k] = _put(jac[k], start, stop, _rows(graph, vals[c.id], stop - start, x))
    _sweep_basis(graph, out.shape, "a cotangent", [out],
                 lambda c: autodiff.vjp(graph, out, nodes, cotangent=c, create_graph=True),
                 write, chunk, hooks)


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
def hessian(traced, wrt=None, *, chunk=None, hooks=(), sparse="off", pattern=False):
    """Every block d2 out / dx dy (shape x.shape + y.shape), forward-over-reverse: the
    JVP program of the recorded gradient, evaluated at the basis tangents of each input
    with the batch axis, `chunk` of them at a time (see jacobian). sparse and pattern: as
    for jacobian (a star colouring, Hessian-vector products along its seeds)."""
    graph = traced.graph
    scalar_output(traced, "hessian")
    names, nodes = choose_inputs(traced, wrt)
    _check_chunk(chunk)
    if sparse != "off" or pattern:
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
            if not present or not y.size:
                continue
            _hessian_columns(graph, names, nodes, grads, b, y, blocks, chunk, hooks)
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


# The most elements the largest array of one batched sweep may hold: a sweep takes as
# many basis vectors as keep every array of its program (per vector: the array's size)
# within it, so that a large input goes in chunks and memory stays bounded. `chunk`
# (--chunk) sets the vectors per sweep instead.
BATCH_ELEMENTS = 1 << 22


def _check_chunk(chunk):
    if chunk is not None and chunk < 1:
        raise InputError(f"--chunk {chunk}: a sweep takes at least one vector")


def _hessian_columns(graph, names, nodes, grads, b, y, blocks, chunk, hooks=()):
    """The columns d grad / d y[i] for every i, from one program: the JVP transform of the
    gradient program along a tangent placeholder, evaluated at the basis tangents with
    the batch axis."""
    present = [g for g in grads if g is not None]

    def write(start, stop, vals, cols):
        col = iter(cols)
        for a, x, g in zip(names, nodes, grads):
            c = next(col) if g is not None else None
            if c is not None:
                blocks[a, b] = _put(blocks[a, b], start, stop,
                                    _rows(graph, vals[c.id], stop - start, x), columns=True)
    _sweep_basis(graph, y.shape, f"a tangent of {b}", present,
                 lambda t: autodiff.jvp(graph, present, [y], [t], create_graph=True),
                 write, chunk, hooks)


def _put(target, start, stop, rows, columns=False):
    """target with the chunk's rows (one per basis vector) written as its rows start:stop,
    or with columns=True as its columns (a JVP's tangent is a column of the Jacobian).
    A chunk that is the whole of a fresh array is taken as it is, not copied: with
    columns=True a transposed view, so a one-sweep Jacobian of vectors is laid out
    column-major, the order in which the sweep made it."""
    shape = target.shape[::-1] if columns else target.shape
    if (start == 0 and stop == shape[0] and rows.shape == shape and rows.flags.c_contiguous
            and rows.flags.writeable):
        return rows.T if columns else rows
    if columns:
        target[:, start:stop] = rows.T
    else:
        target[start:stop, :] = rows
    return target


def _rows(graph, v, n, like):
    """A value from an evaluation at n basis vectors as n rows of `like`'s size."""
    from .evaluate import at_points
    if getattr(v, "shape", None) == (n,) + tuple(like.shape):
        return v.reshape(n, -1)      # batched: itself (a fresh array _put may keep)
    return at_points(graph.xp, v, n, like.shape).reshape(n, -1)


def _basis_points(graph, placeholders, sizes, start, stop):
    """The placeholders' values at points start:stop of the basis combinations: point p
    is the multi-index (i_1, i_2, ...) of p over `sizes`, placeholder k's value e_(i_k)."""
    xp, n = graph.xp, stop - start
    inputs = {}
    for p, index in zip(placeholders, xp.unravel_index(xp.arange(start, stop), sizes)):
        basis = xp.zeros((n, p.size), dtype=graph.dtype)
        basis[xp.arange(n), index] = 1.0
        inputs[p] = basis.reshape((n,) + tuple(p.shape))
    return inputs


def _sweep_basis(graph, shape, name, needed, transform, write, chunk=None, hooks=()):
    """Evaluate a derivative program at every basis vector of `shape`, `chunk` at once
    (by default as many as BATCH_ELEMENTS allows): transform(placeholder) records the
    program (its output nodes, None where nothing depends on it), write(start, stop,
    values, outputs) takes each chunk's values. `needed`: nodes whose values every chunk
    reads, computed once first. Every op batches (its table entry's rule or its kind's);
    a derivative undefined here (a singular matrix) is an error naming the op. `hooks`:
    the evaluator's, for every chunk (adcli profile times the program's ops with them)."""
    t = graph.placeholder(name, shape, graph.dtype)
    outs = transform(t)
    present = [o for o in outs if o is not None]
    if not present:
        return
    _sweep(graph, [t], math.prod(shape), needed, present,
           lambda start, stop, vals: write(start, stop, vals, outs), chunk,
           lambda start, stop: _basis_points(graph, [t], [math.prod(shape)], start, stop),
           hooks=hooks)


def _sweep(graph, placeholders, total, needed, present, write, chunk, points,
           what="basis vectors", hooks=()):
    """Evaluate `present` at `total` points of the placeholders, in chunks of consecutive
    points: points(start, stop) gives the placeholders' values there (with a leading batch
    axis: the basis vectors of _basis_points, or a sparse derivative's seeds), and
    write(start, stop, values) takes each chunk's."""
    from .evaluate import evaluate as run
    if chunk is None:
        # the nodes that depend on a placeholder carry the batch axis
        ids = [p.id for p in placeholders]
        widest = max(1, max(graph.nodes[i].size for i in dependents(graph, ids)))
        step = max(1, min(total, BATCH_ELEMENTS // widest))
    else:
        step = min(total, chunk)
    for node in needed:
        graph.value(node)    # computed once for every chunk
    for start in range(0, total, step):
        stop = min(start + step, total)
        inputs = points(start, stop)
        try:
            vals = run(graph, present, inputs, batch=stop - start, batched=placeholders,
                       hooks=hooks, what=f"the derivative's sweeps along {stop - start} {what}")
        except ValueError_ as err:
            raise ValueError_(f"a derivative is undefined here: {err.message}", pos=err.pos,
                              source=err.source, filename=err.filename) from None
        except LimitError as err:
            if err.hint == "raise it with --max-memory" and step > 1:
                err.hint += f", or sweep fewer than {step} vectors at once with --chunk"
            raise
        write(start, stop, vals)


@_without_gc
def higher_grad(traced, wrt=None, order=1, *, chunk=None):
    """d^k out / dx^k for each chosen input on its own (shape x.shape repeated k times):
    reverse mode once (recorded), then forward mode k-1 times, each along a tangent
    placeholder of its own and recorded; the last program is then evaluated once at every
    combination of basis tangents (the batch axis runs over all k-1 of them together,
    `chunk` combinations at a time), so no order loops over columns."""
    graph, out = traced.graph, traced.output
    if order < 1:
        raise InputError(f"--order {order}: the order must be 1 or more")
    scalar_output(traced, "grad")
    names, nodes = choose_inputs(traced, wrt)
    _check_chunk(chunk)
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
        if order > 1 and d is not None:
            with _located(traced):
                d = _derivative_of_order(graph, d, x, name, order, sizes, chunk)
        if d is None:
            res.notes.append(_unused_note(name))
            d = xp.zeros(tuple(x.shape) * order, dtype=dtype)
        res.grad[name] = d
    res.order = order
    return res


def _derivative_of_order(graph, grad, x, name, order, sizes, chunk):
    """d^(order-1) grad / dx^(order-1) as an array of shape x.shape * order (None where it
    is zero): the JVP transforms of the gradient program along placeholders t_2 ... t_k,
    evaluated with t_l = e_(i_l) for every multi-index (i_2, ..., i_k); the entry
    [i_1, i_2, ..., i_k] is element i_1 of the value at point (i_2, ..., i_k)."""
    xp, dtype = graph.xp, graph.dtype
    d, tangents = grad, []
    for level in range(2, order + 1):
        _check_growth(graph, sizes, order - level + 1, order)
        t = graph.placeholder(f"a tangent of {name} (order {level})", x.shape, dtype)
        d = autodiff.jvp(graph, d, [x], [t], create_graph=True)
        tangents.append(t)
        sizes.append(len(graph.nodes))
        if d is None:
            return None
    points = x.size ** (order - 1)
    result = xp.zeros((x.size, points), dtype=dtype)

    def write(start, stop, vals):
        nonlocal result
        result = _put(result, start, stop, _rows(graph, vals[d.id], stop - start, x), columns=True)
    if x.size:
        sizes = [x.size] * (order - 1)
        _sweep(graph, tangents, math.prod(sizes), [grad], [d], write, chunk,
               lambda start, stop: _basis_points(graph, tangents, sizes, start, stop))
    return result.reshape(tuple(x.shape) * order)
