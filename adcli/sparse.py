"""Sparse Jacobians and Hessians: the pattern from the program, a colouring, and a few
compressed sweeps.

If columns j and k of a Jacobian never have a nonzero in the same row, one forward sweep
along e_j + e_k gives both: each row of J (e_j + e_k) holds J[i, j] or J[i, k], never their
sum. Colouring the columns so that the columns of one colour are structurally orthogonal
gives a seed matrix S (n x colours, S[j, colour(j)] = 1); B = J S is one batched sweep of
`colours` tangents, and J is read back from B entry by entry (coloring.recover_columns).
Reverse mode colours the rows (C = S^T J, a VJP per colour). A Hessian uses a star colouring
and its symmetry (B = H S, a Hessian-vector product per colour, coloring.recover_star).

The pattern (adcli.sparsity) is structural, so it holds at every point: the pattern, the
colouring and the compressed derivative program are worked out once per program and kept
(graph.derived); evaluating again at other inputs costs the sweeps alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import autodiff

AUTO_ENTRIES = 10_000   # --sparse auto: only matrices with at least this many entries ...
AUTO_SAVING = 4         # ... whose colouring needs at most 1/4 of the dense sweeps


@dataclass
class SparseMatrix:
    """A sparse derivative: `values` (one per entry of `pattern`, in its CSR order) of the
    matrix whose rows number the elements of the `rows` blocks and whose columns number
    those of the `cols` blocks (each a list of (name, shape), numbered one after another
    in C order), found in `sweeps` compressed sweeps."""
    kind: str             # "jacobian" or "hessian"
    pattern: object       # adcli.pattern.Pattern
    values: np.ndarray
    rows: list
    cols: list
    sweeps: int

    def to_dense(self):
        out = np.zeros(self.pattern.shape, dtype=self.values.dtype)
        r, c = self.pattern.coo()
        out[r, c] = self.values
        return out

    def entries(self):
        """(key, row index, column index) of each entry, in pattern order: the key names
        the blocks as the dense output does (d/dx, d2/dx,dy), the indices are the elements'
        within their blocks (tuples, () for a number)."""
        rows, cols = self.pattern.coo()
        rb, ri = _locate(self.rows, rows)
        cb, ci = _locate(self.cols, cols)
        for r_block, r, c_block, c in zip(rb, ri, cb, ci):
            name = self.cols[c_block][0]
            key = (f"d/d{name}" if self.kind == "jacobian"
                   else f"d2/d{self.rows[r_block][0]},d{name}")
            yield key, r, c

    def as_json(self):
        rows, cols = self.pattern.coo()
        obj = {"format": "coo", "shape": list(self.pattern.shape), "nnz": self.pattern.nnz,
               "rows": rows.tolist(), "cols": cols.tolist()}
        if self.values is not None:
            obj["values"] = self.values
        obj["row_blocks"] = [{"name": n, "shape": list(s)} for n, s in self.rows]
        obj["col_blocks"] = [{"name": n, "shape": list(s)} for n, s in self.cols]
        obj["sweeps"] = self.sweeps
        return obj


def _locate(blocks, flat):
    """For flat element numbers over blocks [(name, shape), ...] numbered one after
    another: each one's block number and its index within the block (a tuple)."""
    starts = np.cumsum([0] + [math.prod(shape) for _, shape in blocks])
    which = np.searchsorted(starts[1:], flat, side="right")
    index = [()] * len(flat)
    for b, (_, shape) in enumerate(blocks):
        sel = np.nonzero(which == b)[0]
        if shape and sel.size:
            coords = np.unravel_index(flat[sel] - starts[b], shape)
            for k, t in zip(sel.tolist(), zip(*(c.tolist() for c in coords))):
                index[k] = t
    return which.tolist(), index


class Compressed:
    """A sparse derivative as a program: its pattern, colouring and compressed derivative
    program, evaluated at the traced point or at other inputs."""

    def __init__(self, graph, kind, mode, out, nodes):
        from . import coloring, sparsity
        self.graph, self.kind, self.mode, self.out, self.nodes = graph, kind, mode, out, nodes
        if kind == "hessian":
            self.pattern = sparsity.hessian_pattern(graph, out, nodes)
            self.colors = coloring.star_colors(self.pattern)
        else:
            self.pattern = sparsity.jacobian_pattern(graph, out, nodes)
            self.colors = (coloring.column_colors(self.pattern) if mode == "fwd"
                           else coloring.row_colors(self.pattern))
        self.sweeps = int(self.colors.max()) + 1 if self.colors.size else 0
        self._program = None

    def dense_sweeps(self):
        m, n = self.pattern.shape
        return m if self.kind == "jacobian" and self.mode == "rev" else n

    def pays(self):
        """--sparse auto: few enough colours to gain over the dense sweeps."""
        return self.sweeps * AUTO_SAVING <= self.dense_sweeps()

    def program(self):
        """(seed placeholders, their shapes, output nodes, their shapes) of the compressed
        sweep: the JVP (fwd; a Hessian's over the recorded gradient) or VJP (rev) transform
        along placeholder seeds, recorded once."""
        if self._program is None:
            graph, out, nodes = self.graph, self.out, self.nodes
            shapes = [tuple(x.shape) for x in nodes]
            if self.kind == "jacobian" and self.mode == "rev":
                c = graph.placeholder("a cotangent", out.shape, graph.dtype)
                outs = autodiff.vjp(graph, out, nodes, cotangent=c, create_graph=True)
                self._program = ([c], [tuple(out.shape)], outs, shapes)
            else:
                ts = [graph.placeholder(f"a tangent of input {k}", x.shape, graph.dtype)
                      for k, x in enumerate(nodes)]
                if self.kind == "hessian":
                    grads = autodiff.vjp(graph, out, nodes, create_graph=True)
                    present = [g for g in grads if g is not None]
                    hv = iter(autodiff.jvp(graph, present, nodes, ts, create_graph=True)
                              if present else [])
                    outs = [next(hv) if g is not None else None for g in grads]
                    self._program = (ts, shapes, outs, shapes)
                else:
                    outs = [autodiff.jvp(graph, out, nodes, ts, create_graph=True)]
                    self._program = (ts, shapes, outs, [tuple(out.shape)])
        return self._program

    def values(self, inputs=None, chunk=None):
        """The entries of the matrix (pattern order), from the compressed sweeps at the
        traced point, or with `inputs` ({input node: value}) at another; `chunk` seeds a
        sweep at most (default: as many as the batched sweeps' memory bound allows)."""
        from . import coloring
        from .derivatives import _sweep
        from .evaluate import at_points
        graph, xp, dtype = self.graph, self.graph.xp, self.graph.dtype
        k = self.sweeps
        seeds, seed_shapes, outs, out_shapes = self.program()
        present = [o for o in outs if o is not None]
        compressed = np.zeros((k, sum(math.prod(s) for s in out_shapes)), dtype=dtype)
        S = coloring.seed_matrix(self.colors, dtype)          # (seed elements, k)
        offsets = np.cumsum([0] + [math.prod(s) for s in seed_shapes])

        def points(start, stop):      # the seeds start:stop, as each placeholder's values
            given = dict(inputs or {})
            for t, shape, lo, hi in zip(seeds, seed_shapes, offsets[:-1], offsets[1:]):
                given[t] = xp.asarray(np.ascontiguousarray(S[lo:hi, start:stop].T)
                                      .reshape((stop - start,) + shape))
            return given

        def write(start, stop, vals):  # each output's values at those seeds, flattened
            col = 0
            for o, shape in zip(outs, out_shapes):
                size = math.prod(shape)
                if o is not None:
                    compressed[start:stop, col:col + size] = np.asarray(
                        at_points(xp, vals[o.id], stop - start, shape)).reshape(stop - start, -1)
                col += size
        if k and present:
            _sweep(graph, seeds, k, (), present, write, chunk, points,
                   what=f"seeds of a sparse {self.kind}")
        if self.kind == "hessian":
            return coloring.recover_star(self.pattern, self.colors, compressed.T)
        if self.mode == "rev":
            return coloring.recover_rows(self.pattern, self.colors, compressed)
        return coloring.recover_columns(self.pattern, self.colors, compressed.T)


def compressed(graph, kind, mode, out, nodes):
    """The Compressed derivative of out in nodes, made once per program and kept."""
    key = ("sparse", kind, mode, out.id, tuple(x.id for x in nodes))
    hit = graph.derived.get(key)
    if hit is None:
        hit = graph.derived[key] = Compressed(graph, kind, mode, out, nodes)
    return hit


def choose(graph, kind, mode, out, nodes, sparse):
    """The Compressed derivative to use for --sparse on|auto, or None for a dense one."""
    from .errors import InputError
    if sparse not in ("auto", "on", "off"):
        raise InputError(f"--sparse {sparse}: unknown choice", hint="use auto, on or off")
    if sparse == "off":
        return None
    n = sum(x.size for x in nodes)
    if sparse == "auto" and (out.size if kind == "jacobian" else n) * n < AUTO_ENTRIES:
        return None            # small: the dense matrix costs less than finding a pattern
    comp = compressed(graph, kind, mode, out, nodes)
    return comp if sparse == "on" or comp.pays() else None


def choose_mode(graph, out, nodes, sparse, mode):
    """The Compressed Jacobian for --sparse on|auto (None: dense), in `mode`, or without
    one in the mode whose colouring needs fewer sweeps (forward on a tie)."""
    modes = [mode] if mode else ["fwd", "rev"]
    best = None
    for m in modes:
        comp = choose(graph, "jacobian", m, out, nodes, sparse)
        if comp is not None and (best is None or comp.sweeps < best.sweeps):
            best = comp
    return best


def result(traced, comp, names, nodes, chunk=None, values=True):
    """The Result of a sparse Jacobian or Hessian (values=False: its pattern alone)."""
    from .api import evaluate
    from .derivatives import _unused_note
    res = evaluate(traced)
    cols = [(n, tuple(x.shape)) for n, x in zip(names, nodes)]
    rows = [("value", tuple(traced.output.shape))] if comp.kind == "jacobian" else cols
    res.sparse = SparseMatrix(comp.kind, comp.pattern,
                              comp.values(chunk=chunk) if values else None, rows, cols,
                              comp.sweeps)
    res.extra = {"mode": comp.mode if comp.kind == "jacobian" else "fwd-over-rev"}
    # an input that no entry's column belongs to: its derivatives are all zero
    _, c = comp.pattern.coo()
    starts = np.cumsum([0] + [x.size for x in nodes])
    for name, x, lo, hi in zip(names, nodes, starts[:-1], starts[1:]):
        if x.size and not ((c >= lo) & (c < hi)).any():
            res.notes.append(_unused_note(name))
    return res
