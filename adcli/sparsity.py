"""Sparsity patterns of Jacobians and Hessians, from the program's dependency structure.

No values are probed: a pattern says which entries can be nonzero anywhere, so it is right
at every point the program applies to. What each op's result elements read of its
arguments' elements comes from its op-table entry (`Op.depends`), and its second
derivative from `Op.curvature` (see adcli/ops.py's docstring for both, and for which
rules are conservative: they can give false nonzeros, never false zeros).

First order. Every node v gets its gradient pattern G_v, a boolean matrix (v's elements x
all input elements, the inputs numbered one after another in C order): which inputs each
element of v depends on through steps with a derivative. An input's is the identity on its
columns; a constant's, or an op's whose derivative is 0 everywhere (comparisons, floor,
detach, ...), is empty. An op's is the union, over the argument elements each result
element reads, of their rows: a boolean sparse product. The Jacobian's pattern is
G_output.

Second order (the Hessian of one number), as in SparseConnectivityTracer's global
Hessian tracer: H = sum over nodes v of adj_v . d2 v, where d2 v is v's own second
derivative composed with its arguments' first derivatives. So a reverse pass finds R_v,
the elements of v that reach the output through steps with a derivative (where adj_v can
be nonzero), and each nonlinear node adds, for each element e of v in R_v, the pairs
G_a[e'] x G_b[e''] of the argument elements e reads, for the argument pairs (a, b) in
which the op is nonlinear.

Both passes are loops over the nodes between the inputs and the output, forward in
creation (topological) order and backward in reverse; everything within a node is numpy
on index arrays.
"""
from __future__ import annotations

import math

import numpy as np

from .ops import kept_shape
from .pattern import Pattern

# A relation says which argument elements each result element reads: SAME (element e
# reads element e), (None, arg) (element e reads element arg[e] alone), or (out, arg)
# (pairs: result element out[k] reads argument element arg[k]).
SAME = "same"


def jacobian_pattern(graph, output, inputs):
    """The pattern of d output / d inputs: rows are the output's elements (C order),
    columns the inputs' elements, one input after another in the order given."""
    walk = _Walk(graph, output, inputs)
    walk.forward()
    g = walk.G.get(output.id)
    return g if g is not None else _empty(output.size, walk.n)


def hessian_pattern(graph, output, inputs):
    """The pattern of d2 output / d inputs2 (output: one number), n x n and symmetric, n
    the inputs' elements numbered as in jacobian_pattern."""
    if output.size != 1:
        raise ValueError(f"a Hessian needs one number, not an array of shape {output.shape}")
    walk = _Walk(graph, output, inputs)
    walk.forward()
    reach = walk.backward()
    rows, cols = [], []
    for node in walk.order:
        if node.id in reach and node.op is not None:
            for r, c in walk.second(node, reach[node.id]):
                rows.append(r)
                cols.append(c)
    if not rows:
        return _empty(walk.n, walk.n)
    # the pairs (i <= j) once, then the mirror of those off the diagonal
    r, c = np.concatenate(rows), np.concatenate(cols)
    upper = _from_pairs((walk.n, walk.n), np.minimum(r, c), np.maximum(r, c))
    r, c = _coo(upper)
    off = r != c
    if not off.any():
        return upper
    return _from_pairs((walk.n, walk.n), np.concatenate([r, c[off]]), np.concatenate([c, r[off]]))


# ---------------------------------------------------------------- boolean sparse helpers

def _empty(m, n):
    return Pattern((m, n), np.zeros(m + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))


def _from_pairs(shape, rows, cols):
    """A Pattern from (row, column) pairs with repeats. A stable sort, which finds the
    sorted runs that the pieces of a union mostly are, then the repeats dropped."""
    m, n = shape
    keys = np.sort(rows * max(n, 1) + cols, kind="stable")
    if keys.size:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    r = keys // max(n, 1)
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=m), out=indptr[1:])
    return Pattern((m, n), indptr, keys - r * max(n, 1))


def _expand(p, sel):
    """The entries of rows sel[k] of pattern p: (k for each entry, its column)."""
    starts = p.indptr[sel]
    counts = p.indptr[sel + 1] - starts
    if p.nnz == p.shape[0] and counts.size and counts.min() == 1 == counts.max():
        return np.arange(sel.size), p.indices[starts]     # one entry a row: no repeats
    owner = np.repeat(np.arange(sel.size), counts)
    first = np.cumsum(counts) - counts
    at = np.repeat(starts - first, counts) + np.arange(owner.size)
    return owner, p.indices[at]


def _coo(p):
    if p.nnz == p.shape[0] and np.array_equal(p.indptr, np.arange(p.nnz + 1)):
        return np.arange(p.nnz), p.indices
    return p.coo()


def _compose(rel, g):
    """(rows, cols) of Rel . G: result element out[k] reads argument element arg[k], whose
    row of G it gets."""
    if rel is SAME:
        return _coo(g)
    out, arg = rel
    owner, cols = _expand(g, arg)
    return (owner if out is None else out[owner]), cols


def _take_rows(g, arg):
    """The pattern whose row e is row arg[e] of g (sorted and unique already)."""
    counts = np.diff(g.indptr)[arg]
    indptr = np.zeros(arg.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Pattern((arg.size, g.shape[1]), indptr, _expand(g, arg)[1])


def _all_pairs(g, r):
    """Every pair of columns within each row of g that r selects: an element's union of
    what it reads is its row of G (so the pairs of a nonlinear op)."""
    sel = np.flatnonzero(r)
    owner, c1 = _expand(g, sel)
    owner2, c2 = _expand(g, sel[owner])
    return c1[owner2], c2


def _cross(ga, ia, gb, ib):
    """All pairs (G_a[ia[k]] x G_b[ib[k]]) over k."""
    owner, ca = _expand(ga, ia)
    owner2, cb = _expand(gb, ib[owner])
    return ca[owner2], cb


# ---------------------------------------------------------------- the walk

class _Walk:
    def __init__(self, graph, output, inputs):
        self.graph, self.output = graph, output
        self.inputs = list(inputs)
        self.n = sum(x.size for x in self.inputs)
        self.G = {}                     # node id -> Pattern, for nodes that depend on inputs
        self.rels = {}                  # node id -> per argument: None, SAME or (out, arg)
        offset = 0
        for x in self.inputs:
            if x.id not in self.G:
                idx = np.arange(x.size, dtype=np.int64)
                self.G[x.id] = Pattern((x.size, self.n), np.arange(x.size + 1, dtype=np.int64),
                                       idx + offset)
            offset += x.size
        # the nodes the output needs that may depend on an input, in topological order
        first = min((x.id for x in self.inputs), default=output.id + 1)
        needed = _ancestors(output, first)
        self.order = [graph.nodes[i] for i in sorted(needed)]

    def forward(self):
        G = self.G
        for node in self.order:
            if node.id in G or node.op is None or not node.op.differentiable:
                continue
            args = [(k, a) for k, a in enumerate(node.args) if a.id in G and G[a.id].nnz]
            if not args:
                continue
            rels = self.relations(node)
            pieces, same = [], set()
            for k, a in args:
                if rels[k] is SAME:    # sin(x) * x: the same rows (one pattern) once
                    if id(G[a.id]) in same:
                        continue
                    same.add(id(G[a.id]))
                if rels[k] is not None:
                    pieces.append((rels[k], G[a.id]))
            if not pieces:
                continue
            if len(pieces) == 1 and pieces[0][0] is SAME:
                G[node.id] = pieces[0][1]      # the same rows (patterns are never changed)
                continue
            if len(pieces) == 1 and pieces[0][0][0] is None:
                G[node.id] = _take_rows(pieces[0][1], pieces[0][0][1])
                continue
            parts = [_compose(rel, g) for rel, g in pieces]
            G[node.id] = _from_pairs((node.size, self.n), np.concatenate([p[0] for p in parts]),
                                     np.concatenate([p[1] for p in parts]))

    def backward(self):
        """R_v for every node v between the inputs and the output: its elements whose
        change can reach the output (a boolean array), through steps with a derivative."""
        G, reach = self.G, {}
        if self.output.id not in G:
            return reach
        reach[self.output.id] = np.ones(self.output.size, dtype=bool)
        for node in reversed(self.order):
            r = reach.get(node.id)
            if r is None or node.op is None or not node.op.differentiable:
                continue
            rels = self.relations(node)
            for k, a in enumerate(node.args):
                if a.id not in G or rels[k] is None or not r.any():
                    continue
                ra = reach.get(a.id)
                if ra is None:
                    ra = reach[a.id] = np.zeros(a.size, dtype=bool)
                if rels[k] is SAME:
                    ra |= r
                else:
                    out, arg = rels[k]
                    ra[arg[r if out is None else r[out]]] = True
        return reach

    def second(self, node, r):
        """(rows, cols) pieces of node's term of the Hessian, for its elements in r."""
        op, G = node.op, self.G
        curvature = op.curvature
        if curvature in ("linear", "piecewise") or not op.differentiable or node.id not in G:
            return []
        if curvature == "nonlinear":
            return [_all_pairs(G[node.id], r)]
        pairs = [(i, j) for i in range(len(node.args)) for j in range(i + 1, len(node.args))] \
            if curvature == "bilinear" else list(curvature)
        points = self.points(node)
        if points is None:        # no exact points for this rule: every pair it reads
            return [_all_pairs(G[node.id], r)]
        out, idx = points
        keep = r[out]
        found = []
        for i, j in pairs:
            a, b = node.args[i], node.args[j]
            if a.id in G and b.id in G and idx[i] is not None and idx[j] is not None:
                found.append(_cross(G[a.id], idx[i][keep], G[b.id], idx[j][keep]))
        return found

    # ------------------------------------------------------------ what an op reads

    def relations(self, node):
        rels = self.rels.get(node.id)
        if rels is None:
            rels = self.rels[node.id] = _relations(node)
        return rels

    def points(self, node):
        """The points of a product-like op: (out, [argument element per point]) with every
        term of the result a product of the arguments' elements at one point; None where
        the op's rule has none (then its second derivative is taken as nonlinear)."""
        op, attrs = node.op, {**node.op.attrs, **node.attrs}
        if op.depends == "elementwise":
            idx = [None if k in op.selects else _broadcast_ids(a.shape, node.shape)
                   for k, a in enumerate(node.args)]
            return np.arange(node.size), idx
        spec = _subscripts(node, attrs)
        if spec is None:
            return None
        terms, out_term, letters = spec
        coords = _letter_space(letters)
        idx = [_flat(t, a.shape, coords) for t, a in zip(terms, node.args)]
        return _flat(out_term, node.shape, coords), idx


def _ancestors(output, first):
    """Ids of the nodes the output depends on, from node `first` on (explicit stack)."""
    seen, stack = set(), [output]
    while stack:
        n = stack.pop()
        if n.id in seen or n.id < first:
            continue
        seen.add(n.id)
        stack.extend(n.args)
    return seen


def _broadcast_ids(shape, out_shape):
    """For each element of a result of out_shape, the element of an argument of `shape`
    that broadcasting pairs it with."""
    size = math.prod(shape)
    return np.broadcast_to(np.arange(size, dtype=np.int64).reshape(shape), out_shape).ravel()


def _relations(node):
    """For each argument: None (not differentiated), SAME, or (out, arg): the pairs of a
    result element and an argument element it reads."""
    op, attrs = node.op, {**node.op.attrs, **node.attrs}
    kind, args, size = op.depends, node.args, node.size
    rels = [None] * len(args)
    live = [k for k in range(len(args)) if k not in op.selects]
    if kind == "elementwise":
        for k in live:
            a = args[k]
            rels[k] = SAME if tuple(a.shape) == tuple(node.shape) else (
                None, _broadcast_ids(a.shape, node.shape))
    elif kind == "reduce":
        a = args[0]
        kept = kept_shape(a.shape, attrs["axis"]) if "axis" in op.attrs else \
            (1,) * (a.ndim - node.ndim) + tuple(node.shape)
        rels[0] = (_broadcast_ids(kept, a.shape), np.arange(a.size, dtype=np.int64))
    elif kind == "along":
        # result element e (of the argument's size) reads every element of its slice
        a = args[0]
        group = _broadcast_ids(kept_shape(a.shape, attrs.get("axis")), a.shape)
        members = np.argsort(group, kind="stable")
        indptr = np.zeros(group.max(initial=-1) + 2, dtype=np.int64)
        np.cumsum(np.bincount(group), out=indptr[1:])
        owner, arg = _expand(Pattern((indptr.size - 1, a.size), indptr, members), group)
        rels[0] = (owner, arg)
    elif kind == "moves":
        rels = _moves(node, attrs)
    elif kind == "dense":
        for k in live:
            a = args[k]
            rels[k] = (np.repeat(np.arange(size, dtype=np.int64), a.size),
                       np.tile(np.arange(a.size, dtype=np.int64), size))
    else:
        terms, out_term, letters = _subscripts(node, attrs)
        for k in live:
            t = terms[k]
            mine = {x: letters[x] for x in list(out_term) + list(t) if x is not None}
            coords = _letter_space(mine)
            rels[k] = (_flat(out_term, node.shape, coords), _flat(t, args[k].shape, coords))
    return rels


def _moves(node, attrs):
    """An op that copies elements, run on the arguments' element ids (1, 2, ... numbered
    across the arguments, as integers; 0 where the op writes a constant): which argument
    element each result element is a copy of."""
    sizes = [a.size for a in node.args]
    offsets = np.cumsum([0] + sizes)
    ids = [np.arange(1 + o, 1 + o + s, dtype=np.int64).reshape(a.shape)
           for s, o, a in zip(sizes, offsets, node.args)]
    src = np.asarray(node.op.fwd(np, *ids, **attrs)).astype(np.int64, copy=False).ravel() - 1
    if len(node.args) == 1 and src.size and src.min() >= 0:
        return [(None, src)]          # every result element a copy of one element
    out = np.flatnonzero(src >= 0)
    src = src[out]
    which = np.searchsorted(offsets[1:], src, side="right")
    rels = []
    for k in range(len(node.args)):
        mine = which == k
        rels.append((out[mine], src[mine] - offsets[k]))
    return rels


# ---------------------------------------------------------------- einsum-style rules

def _subscripts(node, attrs):
    """The op's rule as einsum subscripts, '...' resolved against the shapes: (a list of
    letters per argument, the result's letters, {letter: length}); a letter None is an
    axis of length 1 that broadcasting stretches (index 0). None for other rules."""
    spec = node.op.depends
    if callable(spec):
        spec = spec(*[tuple(a.shape) for a in node.args],
                    **{k: v for k, v in attrs.items() if k in node.op.attrs})
    if not isinstance(spec, str) or "->" not in spec:
        return None
    ins, out = spec.replace(" ", "").split("->")
    terms = [_tokens(t) for t in ins.split(",")]
    out_t = _tokens(out)
    shapes = [tuple(a.shape) for a in node.args]
    nbatch = len(node.shape) - (len(out_t) - ("..." in out_t))
    batch = [f"#{i}" for i in range(nbatch)]
    letters = {}

    def resolve(term, shape, broadcast_from=None):
        extra = len(shape) - (len(term) - ("..." in term))
        names = []
        for t in term:
            names += batch[nbatch - extra:] if t == "..." else [t]
        resolved = []
        for name, d in zip(names, shape):
            if name.startswith("#") and d == 1 and node.shape[batch.index(name)] != 1:
                resolved.append(None)             # stretched by broadcasting
                continue
            # a letter repeated within one argument (trace) runs over the shorter axis
            letters[name] = min(letters.get(name, d), d)
            resolved.append(name)
        return resolved

    out_term = resolve(out_t, tuple(node.shape))
    return [resolve(t, s) for t, s in zip(terms, shapes)], out_term, letters


def _tokens(term):
    pre, dots, post = term.partition("...")
    return list(pre) + (["..."] if dots else []) + list(post)


def _letter_space(letters):
    """Every point of the index space of these letters: {letter: coordinate array}."""
    total = math.prod(letters.values())
    p = np.arange(total, dtype=np.int64)
    coords, stride = {}, total
    for name, length in letters.items():
        stride //= max(length, 1)
        coords[name] = (p // max(stride, 1)) % max(length, 1) if length else p[:0]
    return coords


def _flat(term, shape, coords):
    """The C-order element number, in an array of `shape`, at every point."""
    total = next(iter(coords.values())).size if coords else 1
    flat = np.zeros(total, dtype=np.int64)
    stride = 1
    for name, d in zip(reversed(term), reversed(tuple(shape))):
        if name is not None:
            flat += coords[name] * stride
        stride *= d
    return flat
