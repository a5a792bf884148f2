"""gradcheck --points: at every row, adcli's first derivatives against central differences.

A block of rows at a time, all on the evaluator's batch axis: the Jacobian program (the JVP
transform along each basis tangent, adcli.points.Program) gives adcli's derivatives at
every row; the value's program, traced in float64, is evaluated at every row moved by
+-h/2**s along every input element (rows x elements x 3 steps x 2 signs points at once),
and check.numeric.estimate extrapolates the differences, as the single point's check does
(the same steps, retries with smaller steps where an estimate is doubtful, tolerances and
judgement, kinks included: at a kink adcli's value must lie between the one-sided slopes).

Each row gets its verdict (pass, fail; unchecked where no numeric derivative is finite),
its largest differences and its worst entry; the run's summary lists the worst rows first.
"""
from __future__ import annotations

import heapq

import numpy as np

from .numeric import EPS, RETRIES, RETRY, STEPS, _power_of_two, estimate
from .rows import judge

WORST = 10          # rows the summary shows


def parts():
    from ..points import Part
    return [Part("verdict", ("verdict",), (), "the verdict", text=True, finite=False),
            Part("max_abs_diff", ("max_abs_diff",), (), "", finite=False),
            Part("max_rel_diff", ("max_rel_diff",), (), "", finite=False),
            Part("worst", ("worst", "entry"), (), "", text=True, finite=False),
            Part("analytic", ("worst", "analytic"), (), "", finite=False),
            Part("numeric", ("worst", "numeric"), (), "", finite=False)]


class BatchCheck:
    """The Evaluation of gradcheck --points: `analytic` (an Evaluation of kind jacobian, in
    the run's dtype) and `values` (of kind eval, traced in float64)."""

    def __init__(self, analytic, values, rtol, atol, eps):
        self.analytic, self.values = analytic, values
        self.rtol, self.atol, self.eps = rtol, atol, EPS if eps is None else eps
        self.wrt = None

    def start(self, point, wrt):
        self.jparts = self.analytic.start(point, wrt)
        self.wrt = self.analytic.wrt
        self.vparts = self.values.start(point, None)
        prog = self.analytic.programs[0]
        self.shapes = [tuple(x.shape) for _, x in prog.inputs]
        self.fixed = {w: np.asarray(prog.traced.inputs[w].value, dtype=np.float64)
                      for w in self.wrt}
        # the name of each entry of a row's Jacobian in the order the check takes them:
        # output element-major, then every input's elements (d_x[0][2] for d out[0]/d x[2])
        m = self.m = int(np.prod(prog.traced.output.shape, dtype=np.int64))
        per_input = [_flat(p.column, p.shape) for p in self.jparts[1:]]
        self.entries = [name for i in range(m) for names in per_input
                        for name in names[i * (len(names) // m):(i + 1) * (len(names) // m)]]
        return parts()

    def block(self, block, _parts):
        n, m = block.rows, self.m
        res, errors = self.analytic.block(block, self.jparts)
        out = [np.full(n, "", dtype=object), np.full(n, np.nan), np.full(n, np.nan),
               np.full(n, "", dtype=object), np.full(n, np.nan), np.full(n, np.nan)]
        for r in range(n):
            if errors[r] is None and not all(np.isfinite(a[r]).all() for a in res):
                errors[r] = "adcli's value or derivative is not finite here"
        rows = np.array([r for r in range(n) if errors[r] is None], dtype=np.int64)
        if not rows.size:
            return out, errors
        f0 = res[0].reshape(n, m)
        # adcli's Jacobian, (rows, outputs, input elements), the inputs one after another
        jac = np.concatenate([a.reshape(n, m, -1) for a in res[1:]], axis=2)
        k = jac.shape[2]
        base = np.concatenate([
            (np.asarray(block.values[w], dtype=np.float64) if w in block.values else
             np.broadcast_to(self.fixed[w], (n,) + s)).reshape(n, -1)
            for w, s in zip(self.wrt, self.shapes)], axis=1)
        # one direction per row and input element: r the row, c the element
        r, c = np.repeat(rows, k), np.tile(np.arange(k), rows.size)
        h = _power_of_two(self.eps * np.maximum(1.0, np.abs(base[r, c])))
        est = self._sample(block, base, f0, r, c, h, m)
        for _ in range(RETRIES):
            todo = np.flatnonzero(est.doubtful(self.rtol, self.atol))
            if not todo.size:
                break
            h[todo] *= RETRY
            new = self._sample(block, base, f0, r[todo], c[todo], h[todo], m)
            better = est.take(todo).better(new)
            est.put(todo[better], new.take(better))
        a = jac[r, :, c]                                     # (directions, outputs)
        status, tol = judge(a, est, self.rtol, self.atol)
        self._verdicts(rows, k, m, a, est.value, status, tol, out)
        return out, errors

    def _sample(self, block, base, f0, r, c, h, m):
        """The numeric estimates along directions (r, c): the value at row r with element c
        moved by +-h/2**s, s < STEPS, all at once."""
        from ..points import Block
        d = len(r)
        x = np.broadcast_to(base[r][:, None, None, :], (d, STEPS, 2) + base.shape[1:]).copy()
        x[np.arange(d), :, :, c] += (h[:, None, None] / 2.0 ** np.arange(STEPS)[None, :, None]
                                     * np.array([1.0, -1.0]))
        total = d * STEPS * 2
        values, start = {}, 0
        for w, s in zip(self.wrt, self.shapes):
            size = int(np.prod(s, dtype=np.int64))
            values[w] = x[..., start:start + size].reshape((total,) + s)
            start += size
        for col, v in block.values.items():
            if col not in values:
                values[col] = np.repeat(np.asarray(v)[r], STEPS * 2, axis=0)
        got, _ = self.values.block(Block(total, values, {}, [None] * total), self.vparts)
        f = got[0].reshape(d, STEPS, 2, m)       # (a point that failed: NaN, one-sided)
        return estimate(f[:, :, 0], f[:, :, 1], f0[r][:, None, :], h, self.rtol, self.atol)

    def _verdicts(self, rows, k, m, a, numeric, status, tol, out):
        """Each row's verdict, largest differences and worst entry, into `out`."""
        # entries in the order of the Jacobian's columns: output element, then input's
        a, numeric, status, tol = (np.swapaxes(v.reshape(rows.size, k, m), 1, 2)
                                   .reshape(rows.size, k * m) for v in (a, numeric, status, tol))
        checked = status != "skipped"
        failed = status == "FAIL"
        with np.errstate(all="ignore"):
            diff = np.where(a == numeric, 0.0, np.abs(a - numeric))
            rel = np.where(diff == 0, 0.0, diff / np.abs(numeric))
            score = np.where(np.isnan(diff), np.inf, diff / np.where(tol > 0, tol, np.inf))
        score = np.where(checked, score, -1.0) + np.where(failed, 1e300, 0.0)
        worst = np.argmax(score, axis=1)
        pick = np.arange(rows.size), worst
        out[0][rows] = np.where(failed.any(axis=1), "fail",
                                np.where(checked.any(axis=1), "pass", "unchecked"))
        out[1][rows] = np.max(np.where(checked, diff, 0.0), axis=1)
        out[2][rows] = np.max(np.where(checked, rel, 0.0), axis=1)
        out[3][rows] = [self.entries[j] for j in worst]
        out[4][rows] = a[pick]
        out[5][rows] = numeric[pick]

    def summary(self, results, errors):
        """This block's counts, and its worst rows (index in the block, verdict, entry,
        adcli's, numeric, rel diff): failures first, then by relative difference."""
        verdicts = results[0]
        counts = {v: int(np.sum(verdicts == v)) for v in ("pass", "fail", "unchecked")}
        counts["error"] = sum(e is not None for e in errors)
        order = heapq.nsmallest(WORST, (r for r in range(len(verdicts))
                                        if verdicts[r] in ("pass", "fail")),
                                key=lambda r: _rank(verdicts[r], results[2][r]))
        worst = [(r, verdicts[r], results[3][r], float(results[4][r]), float(results[5][r]),
                  float(results[2][r])) for r in order]
        return counts, worst


def merge(total, part, offset):
    """Add a block's summary (rows offset by the rows before it) to the run's."""
    counts, worst = part
    if total is None:
        total = ({}, [])
    for key, v in counts.items():
        total[0][key] = total[0].get(key, 0) + v
    rows = total[1] + [(offset + w[0],) + tuple(w[1:]) for w in worst]
    # (ties by row: the same rows whatever order the blocks or partitions come in)
    total[1][:] = heapq.nsmallest(WORST, rows, key=lambda w: (*_rank(w[1], w[5]), w[0]))
    return total


def _rank(verdict, rel):
    """The order of the worst rows: failures first, then the largest relative difference."""
    return verdict != "fail", -rel


def report(total, rtol, atol):
    """The summary's lines, for stderr: the pass rate, then the worst rows."""
    counts, worst = total
    checked = counts.get("pass", 0) + counts.get("fail", 0)
    rows = checked + counts.get("unchecked", 0) + counts.get("error", 0)
    rate = 100.0 * counts.get("pass", 0) / rows if rows else 0.0
    lines = [f"gradcheck: {counts.get('pass', 0):,} of {rows:,} points pass ({rate:.1f}%): "
             f"{counts.get('fail', 0):,} fail, {counts.get('unchecked', 0):,} unchecked, "
             f"{counts.get('error', 0):,} with an error (rtol {rtol:g}, atol {atol:g})"]
    if worst:
        lines.append("the worst points (row: verdict, entry, adcli's, numeric, rel diff):")
        for r, verdict, entry, a, num, rel in worst:
            lines.append(f"  row {r + 1}: {verdict}, {entry}, {a!r}, {num!r}, {rel:.3g}")
    return lines


def _flat(prefix, shape):
    from ..points import _flat_names
    return _flat_names(prefix, shape)
