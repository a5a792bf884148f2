"""Gradients of large elementwise sums in chunks: memory that does not grow with the input.

For f(x) = sum(h(x)) with h elementwise (every step from x to the sum maps element k to
element k), element k of the gradient depends on x[k] alone: df/dx[k] = h'(x[k]). So the
program of one element, h at a number, and its derivative program (a VJP transform) are
evaluated with the batch axis over chunks of x's elements; the value is the sum of the
chunks' sums. The reverse walk over the whole arrays would hold several arrays of x's size
at once (the forward values its rules read, cotangents); the chunked sweep holds the input,
the gradient and a few arrays of one chunk. With fused kernels (adcli/fuse.py) there are
no chunks: the region and its sum, replayed on the whole arrays, and their gradient program
are one loop that adds the value up as it goes and writes the gradients alone.
"""
from __future__ import annotations

import math

from .graph import Graph, dependents

CHUNK = 1 << 16            # elements per sweep: a few arrays of 512 KB
LARGE = 1 << 20            # arrays from this size are differentiated in chunks
FUSED = 1 << 15            # ... and from this size by the fused kernel, where there is one:
                           # it costs about 1 ms more to set up (the whole-array program and
                           # its gradient program), then 5 to 8 ns an element against the
                           # reverse walk's 50 (bench_vectorized.py: 5x at 10^6)


def elementwise_sum(graph, output, wrt):
    """The plan for a chunked gradient of `output` with respect to the `wrt` nodes, or None
    when the program is not an elementwise sum of a large array. The plan lists the region
    (the nodes between the arrays and the sum) and the region's leaves of the full shape."""
    op = output.op
    if op is None or not op.adds or output.attrs.get("keepdims") or not output.args:
        return None
    (q,) = output.args
    shape = q.shape
    if math.prod(shape) < FUSED or output.attrs.get("axis") not in (None, tuple(range(len(shape)))):
        return None
    if math.prod(shape) < LARGE:
        from .fuse import fusible_here
        if not fusible_here(graph, None, ()):
            return None
    targets = {w.id for w in wrt}
    moved = dependents(graph, targets, q.id)      # the nodes that depend on a target
    region, leaves, stack, seen = [], [], [q], set()
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen.add(n.id)
        if n.shape == () and n.id not in moved:
            continue                      # a number: the same for every element
        if n.shape != shape:
            return None                   # broadcasting a smaller array: not elementwise
        if n.id in targets or n.op is None or not n.args:
            leaves.append(n)              # an input, a literal
            continue
        if not n.op.broadcasts:
            return None                   # a reduction, a reshape, matmul...
        region.append(n)
        stack.extend(n.args)
    if not any(leaf.id in targets for leaf in leaves):
        return None
    region.sort(key=lambda n: n.id)
    leaves.sort(key=lambda n: n.id)
    return q, region, leaves


def gradient(graph, output, wrt, plan, hooks=()):
    """(value, gradients) of the elementwise sum by chunks, gradients in wrt's order.
    hooks: the evaluator's (adcli profile times the kernel, or each chunk's ops, with them)."""
    from . import autodiff
    from .evaluate import at_points, evaluate
    from .fuse import fusible_here
    q, region, leaves = plan
    size = math.prod(q.shape)
    if size and fusible_here(graph, None, ()):
        return _fused(graph, output, wrt, plan, hooks)
    # the program of one element: the region replayed on numbers
    one = Graph(xp=graph.xp, dtype=graph.dtype, limits=graph.limits, seed=graph.seed)
    copy = {}
    for leaf in leaves:
        copy[leaf.id] = one.placeholder(f"%{leaf.id}", (), leaf.dtype)
    for n in region:
        one.pos = n.pos
        args = [copy[a.id] if a.id in copy else one.const(graph.value(a)) for a in n.args]
        copy[n.id] = one.emit(n.op.name, *args, **n.attrs)
    element = copy[q.id]
    wanted = [copy[w.id] for w in wrt if w.id in copy]
    grads = autodiff.vjp(one, element, wanted, create_graph=True)
    outputs = [element] + [g for g in grads if g is not None]
    xp = graph.xp
    flat = {leaf.id: xp.reshape(graph.value(leaf), -1) for leaf in leaves}
    chunk = CHUNK
    result = {w.id: xp.zeros(size, graph.dtype) if w.id in copy and chunk < size else None
              for w in wrt}
    total = 0.0
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        inputs = {copy[i]: v[start:stop] for i, v in flat.items()}
        vals = evaluate(one, outputs, inputs, batch=stop - start, batched=list(inputs),
                        hooks=hooks)
        total = total + xp.sum(at_points(xp, vals[element.id], stop - start, ()))
        for w, g in zip([w for w in wrt if w.id in copy], grads):
            if g is None:
                continue
            v = vals[g.id]
            if chunk == size:     # the sweep's own array, or a copy of a constant's
                result[w.id] = v if getattr(v, "shape", None) == (size,) else \
                    xp.array(at_points(xp, v, size, ()))
            else:
                result[w.id][start:stop] = at_points(xp, v, stop - start, ())
    out = []
    for w in wrt:
        g = result[w.id]
        if g is None and w.id in copy:       # no derivative reaches it
            g = xp.zeros(size, graph.dtype)
        out.append(None if g is None else xp.reshape(g, w.shape))
    return graph.as_array(total), out


def _fused(graph, output, wrt, plan, hooks=()):
    """The chunked gradient's fused form: the region and the sum replayed on the whole
    arrays, and their gradient program, evaluated as one kernel (adcli/fuse.py) that adds
    up the value as it goes and writes only the gradients, which are returned."""
    from . import autodiff
    from .evaluate import evaluate
    q, region, leaves = plan
    whole = Graph(xp=graph.xp, dtype=graph.dtype, limits=graph.limits, seed=graph.seed)
    copy = {}
    for leaf in leaves:
        copy[leaf.id] = whole.placeholder(f"%{leaf.id}", leaf.shape, leaf.dtype)
    for n in region:
        whole.pos = n.pos
        args = [copy[a.id] if a.id in copy else whole.const(graph.value(a)) for a in n.args]
        copy[n.id] = whole.emit(n.op.name, *args, **n.attrs)
    whole.pos = output.pos
    total = whole.emit(output.op.name, copy[q.id], **output.attrs)
    targets = [w for w in wrt if w.id in copy]
    grads = autodiff.vjp(whole, total, [copy[w.id] for w in targets], create_graph=True)
    vals = evaluate(whole, [total] + [g for g in grads if g is not None],
                    {copy[leaf.id]: graph.value(leaf) for leaf in leaves}, hooks=hooks)
    xp, found = graph.xp, {}
    for w, g in zip(targets, grads):
        if g is not None:
            v = vals[g.id]
            # the kernel's own array, or a copy of a constant's broadcast
            found[w.id] = v if getattr(v, "shape", None) == w.shape and not _broadcast(v) \
                else xp.array(xp.broadcast_to(v, w.shape))
    out = [found.get(w.id, xp.zeros(w.shape, graph.dtype) if w.id in copy else None) for w in wrt]
    return graph.as_array(vals[total.id]), out


def _broadcast(v):
    return any(s == 0 for s in getattr(v, "strides", ())) and v.size > 1
