"""adcli's derivatives against the numeric ones: every entry of the Jacobian, or random
projections for large inputs, the kinks behind non-smooth points, and Hessian-vector
products.

Large inputs (more than 2,000 elements together, or `--fast`) compare random projections:
for a direction d per input and a random cotangent v of the output, v^T J d from adcli's
reverse mode against the derivative of t -> v . f(x + t d). A projection that disagrees is
split in halves, and the halves that disagree are split again (the difference is linear in
d), which locates the worst entries in about 2 log2(n) projections each.

Second derivatives (`--order 2`): the Hessian-vector product H d by forward mode over the
reverse-mode gradient (a program), against central differences of adcli's gradient along
d: that gradient program evaluated at the moved points.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from .. import autodiff
from ..errors import InputError
from ..evaluate import GuardFailed, evaluate
from .numeric import RETRIES, RETRY, SAFETY, _power_of_two, along
from .rows import (SHOWN, Row, index_of, judge, place, projection_row, quiet, rows_of,
                   text_index)

LOCATE_BUDGET = 400        # projections spent locating the worst entries of one input


# ---------------------------------------------------------------- analytic derivatives

def as_dtype(graph, a):
    return np.asarray(a, dtype=graph.dtype)


def analytic_jacobian(traced, names):
    """adcli's Jacobian, shape (input elements, output elements), in float64: the
    batched sweeps of `adcli jacobian`, forward mode when there are fewer inputs than
    outputs (reverse mode where a custom rule has no forward rule), else reverse."""
    from ..derivatives import jacobian
    out = traced.output
    nodes = [traced.inputs[n] for n in names]
    m, n = out.size, sum(x.size for x in nodes)
    mode = "fwd" if m > n else "rev"
    try:
        res = jacobian(traced, names, mode)
    except InputError:
        if mode == "rev":
            raise
        res = jacobian(traced, names, "rev")
    blocks = [np.asarray(res.extra["jacobian"][w], dtype=np.float64).reshape(m, x.size)
              for w, x in zip(names, nodes)]
    return np.concatenate(blocks, axis=1).T if blocks else np.zeros((0, m))


def flat_grads(graph, out, nodes, cotangent):
    cts = autodiff.vjp(graph, out, nodes, cotangent)
    return np.concatenate([np.zeros(n.size) if g is None else
                           np.asarray(g, dtype=np.float64).reshape(-1) for n, g in zip(nodes, cts)])


# ---------------------------------------------------------------- first order

@dataclass
class FirstOrder:
    rows: list
    status: dict          # input name -> array of statuses (elements or projections)
    stats: dict           # input name -> per-input maxima


def numeric_columns(ck):
    cols = [(j, k) for j, size in enumerate(ck.sizes) for k in range(size)]
    with quiet():
        est = ck.numeric.elements(cols)
    return cols, est


def first_order_full(ck, traced, numeric, rtol, atol):
    """Every entry of the Jacobian: adcli's against the numeric one."""
    cols, est = numeric
    jac = analytic_jacobian(traced, ck.names)
    status, tol = judge(jac, est, rtol, atol)
    out_shape = ck.ref.output.shape
    scalar = ck.m == 1

    def labels(e):
        c, i = divmod(e, ck.m)
        j, k = cols[c]
        check = "grad" if scalar else "jacobian" + text_index(index_of(out_shape, i))
        return ck.names[j], index_of(ck.shapes[j], k), check
    rows = rows_of("grad", status, jac, est, tol, labels)
    by_input, stats, start = {}, {}, 0
    for j, name in enumerate(ck.names):
        sl = slice(start, start + ck.sizes[j])
        start += ck.sizes[j]
        by_input[name] = status[sl]
        stats[name] = _stats(jac[sl], est.value[sl], status[sl])
    return FirstOrder(rows, by_input, stats), jac


def _stats(a, n, status):
    with np.errstate(all="ignore"):
        d = np.where(a == n, 0.0, np.abs(a - n))
        rel = np.where(d == 0, 0.0, d / np.abs(n))
    ok = status != "skipped"
    return {"max_abs_diff": float(np.max(d[ok], initial=0.0)),
            "max_rel_diff": float(np.max(rel[ok], initial=0.0)),
            "entries": int(status.size), "failed": int(np.sum(status == "FAIL"))}


def numeric_projections(ck):
    """One random projection per input: the cotangent v (1 for a scalar value) and the
    direction d, and the numeric derivative of v . f along d."""
    v = np.ones(1) if ck.m == 1 else ck.rng.standard_normal(ck.m)
    dirs, ests = [], []
    with quiet():
        for j in range(len(ck.names)):
            d = ck.direction(j)
            dirs.append(d)
            ests.append(ck.numeric.along(j, d, project=None if ck.m == 1 else v))
    return v, dirs, ests


def first_order_fast(ck, traced, numeric, rtol, atol, locate=True):
    """Random projections v^T J d per input; a failing one is located entry by entry."""
    v, dirs, ests = numeric
    graph, out = traced.graph, traced.output
    nodes = [traced.inputs[n] for n in ck.names]
    cot = None if ck.m == 1 and not out.ndim else as_dtype(graph, v.reshape(out.shape))
    grads = autodiff.vjp(graph, out, nodes, cot)
    grads = [np.zeros(s) if g is None else np.asarray(g, dtype=np.float64).reshape(-1)
             for g, s in zip(grads, ck.sizes)]
    rows, by_input, stats = [], {}, {}
    check = "grad" if ck.m == 1 else "vjp"
    vnorm = float(np.linalg.norm(v))
    for j, name in enumerate(ck.names):
        d, est = dirs[j].reshape(-1), ests[j]
        terms = grads[j] * d
        row = projection_row(check, name, float(terms.sum()), est, rtol, atol,
                             np.linalg.norm(terms), np.linalg.norm(d) * vnorm)
        rows.append(row)
        found = []
        if locate and row.status == "FAIL":
            with quiet():
                found = locate_entries(ck, j, d, grads[j], v if ck.m > 1 else None, rtol, atol,
                                       vnorm)
                if found and ck.m == 1:
                    _recheck_elements(ck, j, found, grads[j], rtol, atol)
            if found and all(r.status in ("ok", "nonsmooth") for r in found):
                # the projection only crossed kinks: a non-smooth point, not a wrong derivative
                kink = next((r for r in found if r.status == "nonsmooth"), None)
                row.status = "nonsmooth" if kink is not None else "ok"
                if kink is not None:
                    row.left, row.right = kink.left, kink.right
            rows += found
        entries = [row] + found
        by_input[name] = np.array([r.status for r in entries], dtype=object)
        stats[name] = {"max_abs_diff": max(r.abs_diff for r in entries),
                       "max_rel_diff": max(r.rel_diff for r in entries),
                       "entries": 1, "failed": int(row.status == "FAIL"),
                       "located": len(found)}
    return FirstOrder(rows, by_input, stats), grads


def _recheck_elements(ck, j, rows, g, rtol, atol):
    """Located entries of a scalar value, compared again one element at a time as the full
    check does, so that an entry on a kink is a non-smooth point, not a failure."""
    ks = [int(np.ravel_multi_index(r.index, ck.shapes[j])) if ck.shapes[j] else 0 for r in rows]
    est = ck.numeric.elements([(j, k) for k in ks])
    a = np.array([[g[k]] for k in ks], dtype=np.float64)
    status, tol = judge(a, est, rtol, atol)
    for i, r in enumerate(rows):
        r.numeric, r.tolerance, r.status = float(est.value[i, 0]), float(tol[i, 0]), status[i, 0]
        if est.nonsmooth[i, 0]:
            r.left, r.right = float(est.left[i, 0]), float(est.right[i, 0])


def locate_entries(ck, j, d, g, project, rtol, atol, vnorm):
    """Find the worst entries of input j behind a failing projection. The disagreement
    analytic - numeric along d restricted to a block of elements is linear in the block,
    so a block that disagrees holds a wrong entry: split it and follow the halves that
    disagree, the worst first."""
    heap, found, spent = [(-math.inf, 0, d.size, 0.0, 0.0, 0.0)], [], 0
    check = "grad" if project is None else "vjp"
    while heap and len(found) < SHOWN and spent < LOCATE_BUDGET:
        score, lo, hi, a, n, err = heapq.heappop(heap)
        if hi - lo == 1:
            k, dk = lo, d[lo]
            num, e = n / dk, err / abs(dk)
            row = Row(check, ck.names[j], index_of(ck.shapes[j], k), float(g[k]), float(num),
                      float(atol + rtol * abs(num) + SAFETY * e), "FAIL")
            if row.score > 1:
                found.append(row)
            continue
        mid = (lo + hi) // 2
        for a0, b0 in ((lo, mid), (mid, hi)):
            part = np.zeros_like(d)
            part[a0:b0] = d[a0:b0]
            est = ck.numeric.along(j, part.reshape(ck.shapes[j]), project)
            spent += 1
            terms = g[a0:b0] * d[a0:b0]
            an = float(terms.sum())
            nu, er = float(est.value[0, 0]), float(est.error[0, 0])
            tol = (atol * np.linalg.norm(d[a0:b0]) * vnorm
                   + rtol * max(abs(nu), float(np.linalg.norm(terms))) + SAFETY * er)
            if abs(an - nu) > tol:
                heapq.heappush(heap, (-abs(an - nu) / tol, a0, b0, an, nu, er))
    return found


# ---------------------------------------------------------------- non-smooth points

def name_kinks(ck, rows):
    """For each non-smooth row of an element, the ops whose kink lies within its step."""
    graph = ck.ref.graph
    for row in rows:
        element = row.check == "grad" or row.check.startswith("jacobian")
        if row.status != "nonsmooth" or row.index is None or not element:
            continue
        j = ck.names.index(row.input)
        d = np.zeros(ck.shapes[j])
        d[row.index] = ck.scale(j)[row.index]
        h = _power_of_two(ck.eps)
        with quiet():
            for _ in range(RETRIES + 1):
                nodes = ck.numeric.kinks_crossed(j, d, h, graph)
                if nodes:
                    break
                h *= RETRY
        row.kinks = [f"{n.op.name} ({place(n.pos, ck.ref)})" for n in nodes[:3]]


# ---------------------------------------------------------------- second order

def second_order(ck, traced):
    """Hessian-vector products H d: adcli's (forward mode over the reverse-mode gradient
    graph) against central differences of adcli's float64 gradient along d."""
    nodes = [traced.inputs[n] for n in ck.names]
    v = None if ck.m == 1 else ck.rng.standard_normal(ck.m)
    dirs = [ck.direction(j) for j in range(len(ck.names))]
    hv = analytic_hvp(traced, nodes, v, dirs)

    gradient = gradient_program(ck, v)
    with quiet():
        return hv, along(lambda t: gradient([b + t * d for b, d in zip(ck.base, dirs)]),
                         gradient(ck.base), ck.eps, ck.rtol, ck.atol)


def gradient_program(ck, v):
    """adcli's float64 gradient (of v . f) as a function of the input values: the reverse
    mode's program, recorded once over the float64 trace and evaluated at each point, so
    random draws and branches stay those of the point; where a branch changes, the script
    is run again there."""
    ref, function = ck.ref, ck.function
    graph, out = ref.graph, ref.output
    nodes = [ref.inputs[n] for n in ck.names]
    cot = None if v is None else graph.const(v.reshape(out.shape))
    grads = autodiff.vjp(graph, out, nodes, cot, create_graph=True)
    wanted = [g for g in grads if g is not None]

    def at(arrays):
        try:
            vals = function.evaluate(wanted, arrays)
        except GuardFailed:
            if function.retrace is not None and function.retrace(None) is not None:
                tr = ck.trace(ck.values_at(arrays), "float64", silent=True)
                again = None if v is None else v.reshape(tr.output.shape)
                return flat_grads(tr.graph, tr.output, [tr.inputs[n] for n in ck.names], again)
            vals = evaluate(graph, wanted, dict(zip(function.inputs, arrays)), charge=False,
                            check_guards=False)
        return np.concatenate([np.zeros(n.size) if g is None else
                               np.asarray(vals[g.id], dtype=np.float64).reshape(-1)
                               for n, g in zip(nodes, grads)])
    return at


def analytic_hvp(traced, nodes, v, dirs):
    graph, out = traced.graph, traced.output
    cot = None if v is None else graph.const(as_dtype(graph, v.reshape(out.shape)))
    grads = autodiff.vjp(graph, out, nodes, cot, create_graph=True)
    tangents = [as_dtype(graph, d) for d in dirs]
    parts = []
    try:
        for node, g in zip(nodes, grads):
            t = None if g is None else autodiff.jvp(graph, g, nodes, tangents)
            parts.append(np.zeros(node.size) if t is None else
                         np.asarray(t, dtype=np.float64).reshape(-1))
        return np.concatenate(parts)
    except InputError:
        # a custom rule without forward mode: reverse over reverse, H^T d (= H d when H is
        # symmetric, as a true Hessian is)
        s = None
        for g, t in zip(grads, tangents):
            if g is not None:
                term = graph.ns.sum(g * graph.const(t))
                s = term if s is None else s + term
        return flat_grads(graph, s, nodes, None) if s is not None else np.zeros(sum(n.size for n in nodes))


def second_order_rows(ck, hv, est, rtol, atol):
    a = hv.reshape(1, -1)
    status, tol = judge(a, est, rtol, atol)
    offsets = np.cumsum([0] + ck.sizes)

    def labels(e):
        j = int(np.searchsorted(offsets, e, side="right") - 1)
        return ck.names[j], index_of(ck.shapes[j], e - offsets[j]), None
    rows = rows_of("hvp", status, a, est, tol, labels)
    by_input = {name: status[0, offsets[j]:offsets[j + 1]] for j, name in enumerate(ck.names)}
    return rows, by_input


