"""Taylor coefficients to any order: truncated power series pushed through the program.

The inputs move along a line, x(t) = x_0 + t d, and every node's value becomes the
series of its value along it: an array of K+1 coefficients, shape (K+1,) + node.shape,
c_k = f^(k)(0) / k!. One forward sweep over the program in topological order computes
each node's series from its arguments' with its op-table entry:

* `series` (the entry's rule): series(xp, y, *args, **attrs), y the op's value at the
  point, args the arguments' series (elementwise ops: aligned behind the series axis, so
  that they broadcast) -> the result's series. The recurrences are in adcli/series.py.
* by the entry's `curvature`, where it has no rule of its own: a "linear" op (add, sum,
  reshape, index, concat, where's branches, ...) is applied to every coefficient at once
  (its batching rule, the series axis as the batch axis); a "bilinear" one (matmul,
  einsum, cross) gives the Cauchy product sum_j f(a_j, b_(k-j)), all pairs in one batched
  call; a "piecewise" one (abs, relu, maximum, clip, max, mod) is linear on the side of
  the point: c_k = its local derivative applied to the arguments' c_k, for k >= 1 (the
  kink conventions of the gradient, so a derivative that is zero above order 1 is 0).
* an op without a derivative (floor, comparisons, argmax, constants) is constant.

An op with none of these is an error naming it. Nothing here names an op.
"""
from __future__ import annotations

import math

import numpy as np

from . import series as ps
from .errors import AdcliError, InputError, ShapeError, ValueError_
from .graph import OP_WORK, as_numbers, forward, reachable

MAX_ORDER = 1000


def series(graph, output, directions, order):
    """The series of `output` to `order` when the input nodes of `directions` (node ->
    direction array) move along them and every other input stays: (order+1,) + shape."""
    dtype, limits = graph.dtype, graph.limits
    known = {}                            # node id -> series (nodes that move)
    for x, d in directions.items():
        s = ps.constant(x.value, order, dtype)
        if order:
            s[1] = d
        known[x.id] = s
    ids = reachable([output])
    readers = {}
    for i in ids:
        for a in graph.nodes[i].args:
            readers[a.id] = readers.get(a.id, 0) + 1
    held = sum(s.nbytes for s in known.values())
    starts = set(known)                   # (node ids: == on nodes records an op)
    for i in ids:
        node = graph.nodes[i]
        op = node.op
        if i in known or op is None:
            continue
        moving = [a.id in known and j not in op.selects for j, a in enumerate(node.args)]
        if any(moving) and op.differentiable:
            nbytes = (order + 1) * node.size * dtype.itemsize
            limits.spend((order + 1) ** 2 * max(node.size, 1) + OP_WORK,
                         f"the Taylor series of {op.name}", node.pos)
            limits.check_memory(graph.held + held + nbytes,
                                f"the Taylor series of {op.name}", node.pos)
            known[i] = _step(graph, node, [known.get(a.id) for a in node.args], order)
            held += known[i].nbytes
        for a in node.args:                     # free what no later node reads
            readers[a.id] -= 1
            if readers[a.id] == 0 and a.id in known and a.id != output.id \
                    and a.id not in starts:
                held -= known.pop(a.id).nbytes
    if output.id in known:
        return known[output.id]
    return ps.constant(_numbers(graph, output.value), order, dtype)


def _numbers(graph, v):
    return as_numbers([v], graph.dtype)[0]


def _step(graph, node, arg_series, order):
    """The series of one node from its arguments' (None: an argument that does not move)."""
    op, dtype = node.op, graph.dtype
    values = [s[0] if s is not None else a.value for s, a in zip(arg_series, node.args)]
    y = forward(op, np, values, node.attrs, dtype, node.pos)

    def full(j):
        """Argument j as a series (one that does not move: its value, then zeros)."""
        if arg_series[j] is not None:
            return arg_series[j]
        return ps.constant(_numbers(graph, values[j]), order, dtype)

    try:
        with np.errstate(all="ignore"):
            if op.series is not None:
                args = [values[j] if j in op.selects else full(j) for j in range(len(values))]
                if op.broadcasts:
                    args = _aligned(args, node, op)
                out = op.series(np, y, *args, **node.attrs)
            elif op.curvature == "linear":
                flags = [j not in op.selects for j in range(len(values))]
                args = [full(j) if f else values[j] for j, f in enumerate(flags)]
                out = _batched(op, node, order + 1, args, flags, dtype)
            elif op.curvature == "bilinear":
                out = _cauchy(op, node, [full(j) for j in range(len(values))], order, dtype)
            elif op.curvature == "piecewise":
                out = _piecewise(graph, op, node, y, values, arg_series, order)
            else:
                raise InputError(f"taylor: {op.name} has no series rule, so its Taylor "
                                 "coefficients cannot be computed", pos=node.pos)
    except np.linalg.LinAlgError as e:
        raise ValueError_(f"the Taylor series of {op.name} is undefined here: {e}",
                          pos=node.pos) from None
    out = np.asarray(out, dtype=dtype)
    shape = (order + 1,) + tuple(node.shape)
    if out.shape != shape:
        out = np.broadcast_to(out, shape)
    return out


def _aligned(args, node, op):
    """Elementwise arguments' series aligned behind the series axis: (K+1, 1, ..., *shape)."""
    r = len(node.shape)
    out = []
    for j, a in enumerate(args):
        if j in op.selects:
            out.append(a)
        else:
            s = a.shape[1:]
            out.append(a.reshape(a.shape[:1] + (1,) * (r - len(s)) + tuple(s)))
    return out


def _batched(op, node, n, args, flags, dtype):
    """The op applied to n coefficients at once: the series axis as the batch axis."""
    from .evaluate import batched_forward
    return batched_forward(op, np, n, args, flags, node, dtype)


def _cauchy(op, node, args, order, dtype):
    """A bilinear op's series: c_k = sum_(i+j=k) f(a_i, b_j), every pair in one batched
    call. An argument that does not move (only its c_0) makes it linear in the other."""
    a, b = args
    if not b[1:].any():
        return _batched(op, node, order + 1, [a, b[0]], [True, False], dtype)
    if not a[1:].any():
        return _batched(op, node, order + 1, [a[0], b], [False, True], dtype)
    i, j = np.triu_indices(order + 1)           # i <= j: pairs (i, j - i) of sum j
    first, second = i, j - i
    pairs = _batched(op, node, len(first), [a[first], b[second]], [True, True], dtype)
    out = np.zeros((order + 1,) + tuple(node.shape), dtype=dtype)
    np.add.at(out, j, pairs)
    return out


def _piecewise(graph, op, node, y, values, arg_series, order):
    """A piecewise linear op on the side of the point: c_0 its value, c_k for k >= 1 its
    derivative at the point (the gradient's conventions at a kink) applied to the
    arguments' c_k."""
    dtype = graph.dtype
    out = np.zeros((order + 1,) + tuple(node.shape), dtype=dtype)
    out[0] = y
    if not order:
        return out
    args = as_numbers(values, dtype) if op.numeric else values
    if op.partials is not None:
        r = len(node.shape)
        for j, (d, s) in enumerate(zip(op.partials, arg_series)):
            if s is None:
                continue
            s = s[1:].reshape((order,) + (1,) * (r - (s.ndim - 1)) + s.shape[1:])
            if d == "identity":
                out[1:] += s
            elif d == "negate":
                out[1:] -= s
            else:
                out[1:] += s * d(graph.arrays, y, *args)
        return out
    for k in range(1, order + 1):
        t = [s[k] if s is not None else None for s in arg_series]
        out[k] = op.jvp(graph.arrays, t, y, *args, **node.attrs)
    return out


# ---------------------------------------------------------------- the command's result

def coefficients(traced, order, direction=None):
    """`adcli taylor`: the Taylor coefficients of the output along a line through the
    traced point. direction: input name -> array (broadcast to the input's shape; inputs
    not named stay); None: the only input, every element moving by 1. Returns an
    api.Result whose extra holds "at", "direction", "order", "coefficients" (c_k, shape
    (order+1,) + the value's shape) and "derivatives" (k! c_k)."""
    from .api import evaluate
    graph, out = traced.graph, traced.output
    if not 0 <= order <= MAX_ORDER:
        raise InputError(f"--order {order}: the order must be between 0 and {MAX_ORDER}")
    if out.dtype.kind != "f":
        raise InputError("the value is a boolean and has no Taylor series")
    if graph.xp is not np:
        raise InputError("taylor computes on the CPU (numpy) only")
    names = list(traced.inputs)
    if direction is None:
        if len(names) > 1:
            raise InputError(f"the expression has {len(names)} inputs ({', '.join(names)}): "
                             "say along which direction they move",
                             hint="for example --direction " + ",".join(
                                 f"{n}={1 if k == 0 else 0}" for k, n in enumerate(names)))
        direction = {n: 1.0 for n in names}
    from .api import choose_inputs
    chosen, nodes = choose_inputs(traced, list(direction), what="--direction", required=False)
    directions = {}
    for name, x in zip(chosen, nodes):
        d = np.asarray(direction[name], dtype=graph.dtype)
        try:
            d = np.broadcast_to(d, x.shape)
        except ValueError:
            raise ShapeError(f"--direction {name}: shape {d.shape} does not fit the input's "
                             f"shape {tuple(x.shape)}") from None
        directions[x] = d
    try:
        c = series(graph, out, directions, order)
    except AdcliError as e:
        raise e.located(traced.source, traced.filename)
    res = evaluate(traced)
    c = np.array(c)
    # k! as a double: exact to 22!, correctly rounded to 170!, infinite beyond
    factorials = np.array([float(math.factorial(k)) if k <= 170 else math.inf
                           for k in range(order + 1)])
    with np.errstate(all="ignore"):
        d = c * factorials.reshape((-1,) + (1,) * (c.ndim - 1))
    res.extra = {"at": {n: traced.inputs[n].value for n in names},
                 "direction": {n: np.asarray(v) for n, v in
                               zip(chosen, directions.values())},
                 "order": order, "coefficients": c, "derivatives": d}
    return res
