"""Rows, the report and its verdict: what a check found, as plain data.

An entry passes when |analytic - numeric| <= atol + rtol * |numeric| + safety * error; at a
non-smooth point adcli's value must lie between the one-sided slopes instead.
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import note, warning
from .numeric import EPS, SAFETY

SHOWN = 10                 # rows in the table and in --json "worst"
STATUS_RANK = {"FAIL": 0, "rounding": 1, "nonsmooth": 2, "skipped": 3, "ok": 4}


@dataclass
class Row:
    """One compared quantity: an entry of a derivative, or a projection of one."""
    check: str            # grad, jacobian[i], vjp, hvp, expect, rule, rule2
    input: str
    index: object         # a tuple for an element (() for a scalar); None for a projection
    analytic: float
    numeric: float
    tolerance: float
    status: str = "ok"    # ok, FAIL, nonsmooth, rounding, skipped
    left: float = None    # one-sided slopes at a non-smooth point
    right: float = None
    kinks: list = field(default_factory=list)   # ops with a kink within the step

    @property
    def abs_diff(self):
        a, n = self.analytic, self.numeric
        return 0.0 if a == n else abs(a - n)

    @property
    def rel_diff(self):
        d = self.abs_diff
        return 0.0 if d == 0 else d / abs(self.numeric) if self.numeric else math.inf

    @property
    def score(self):
        """How far past its tolerance: > 1 fails."""
        d = self.abs_diff
        if d == 0:
            return 0.0
        return d / self.tolerance if self.tolerance > 0 else math.inf

    def sort_key(self):
        s = self.score
        return (STATUS_RANK[self.status], -(s if s == s else math.inf))


@dataclass
class Report:
    expr: str
    verdict: str = "pass"        # pass, fail, nonsmooth, rounding, unchecked
    message: str = ""
    method: str = "central"
    order: int = 1
    dtype: str = "float64"
    mode: str = "full"           # full: every entry; projections: random projections
    rtol: float = 0.0
    atol: float = 0.0
    eps: float = EPS
    rows: list = field(default_factory=list)      # all rows, worst first
    inputs: dict = field(default_factory=dict)    # name -> per-input maxima
    rules: list = field(default_factory=list)
    expects: list = field(default_factory=list)
    notes: list = field(default_factory=list)     # messages for stderr
    device: str = "cpu"
    evaluations: int = 0         # of the function, by the first-order numeric side

    @property
    def shown(self):
        """The rows of the table: every rule and --expect row, the worst of the others."""
        keep = [r for r in self.rows if r.check in ("rule", "rule2", "expect")]
        rest = [r for r in self.rows if r.check not in ("rule", "rule2", "expect")]
        return sorted(keep + rest[:SHOWN], key=Row.sort_key)

    @property
    def failed(self):
        return self.verdict == "fail"


# ---------------------------------------------------------------- comparing

def judge(analytic, est, rtol, atol, tol=None):
    """Statuses (arrays) of analytic against numeric estimates, and the tolerances:
    atol + rtol * |numeric| + safety * error unless given."""
    a, n = analytic, est.value
    if tol is None:
        tol = atol + rtol * np.abs(n) + SAFETY * est.error
    with np.errstate(invalid="ignore"):
        same = (a == n) | (np.abs(a - n) <= tol)
        lo, hi = np.minimum(est.left, est.right), np.maximum(est.left, est.right)
        between = (a >= lo - tol) & (a <= hi + tol)
    status = np.where(same, "ok", "FAIL").astype(object)
    # at a non-smooth point adcli's value must lie between the one-sided slopes; at a jump
    # no slope exists on one side and any value is accepted
    accept = between | est.jump
    status[est.nonsmooth] = np.where(accept[est.nonsmooth], "nonsmooth", "FAIL")
    status[~np.isfinite(n) & ~same] = "skipped"
    return status, tol


def index_of(shape, k):
    return tuple(int(i) for i in np.unravel_index(k, shape)) if shape else ()


def rows_of(check, statuses, analytic, est, tol, labels, limit=100):
    """Rows for the worst entries (failures first, then by score)."""
    a, n = analytic.reshape(-1), est.value.reshape(-1)
    flat_status, flat_tol = statuses.reshape(-1), tol.reshape(-1)
    with np.errstate(all="ignore"):
        score = np.abs(a - n) / np.where(flat_tol > 0, flat_tol, np.inf)
    score = np.where(np.isnan(score), np.inf, score)
    rank = np.array([STATUS_RANK[s] for s in flat_status])
    order = np.lexsort((-score, rank))
    if limit is not None:
        order = order[:limit]
    left, right = est.left.reshape(-1), est.right.reshape(-1)
    nonsmooth = est.nonsmooth.reshape(-1)
    rows = []
    for e in order:
        name, index, chk = labels(int(e))
        row = Row(chk or check, name, index, float(a[e]), float(n[e]), float(flat_tol[e]),
                  flat_status[e])
        if nonsmooth[e]:
            row.left, row.right = float(left[e]), float(right[e])
        rows.append(row)
    return rows



def projection_row(check, name, analytic, est, rtol, atol, magnitude, atol_scale):
    """A row for a projection a = sum_k t_k. Its tolerance is relative to the larger of
    |numeric| and |t|_2 (the scale at which the terms' rounding adds up: a projection can
    be near 0 while its terms are not), and atol grows with the direction's length."""
    n = est.value
    tol = atol * atol_scale + rtol * np.maximum(np.abs(n), magnitude) + SAFETY * est.error
    a = np.array([[analytic]])
    status, _ = judge(a, est, rtol, atol, tol)
    row = Row(check, name, None, float(analytic), float(n[0, 0]), float(tol[0, 0]), status[0, 0])
    if est.nonsmooth[0, 0]:
        row.left, row.right = float(est.left[0, 0]), float(est.right[0, 0])
    return row




def _count(n, word, one, many):
    return f"{n} {word}{one if n == 1 else many}"


def _names(items):
    items = list(dict.fromkeys(items))
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def verdict(ck, report, fo_status, second_status, rounding):
    rows = report.rows
    fails = [r for r in rows if r.status == "FAIL"]
    wrong_first = [n for n, s in fo_status.items() if np.any(s == "FAIL")]
    wrong_second = [n for n, s in second_status.items() if np.any(s == "FAIL")]
    what = "gradient" if ck.m == 1 else "Jacobian"
    parts = []
    for r in report.rules:
        if r["status"] != "fail":
            continue
        params = "its parameter" + ("s " if len(r["wrong"]) > 1 else " ") + _names(r["wrong"])
        if r["kind"] == "rule":
            msg = f"the backward rule of {r['name']} ({r['place']}) is wrong for {params}"
            hit = [n for n in r["inputs"] if n in wrong_first]
            if hit:
                msg += f"; it makes the {what} of {_names(hit)} wrong"
        else:
            msg = (f"the backward rule of {r['name']} ({r['place']}) has a wrong derivative for "
                   f"{params} (second derivatives differentiate the rule itself)")
            hit = [n for n in r["inputs"] if n in wrong_second]
            if hit:
                msg += f"; it makes the second derivatives of {_names(hit)} wrong"
        parts.append(msg)
    for e in report.expects:
        if e["status"] == "fail":
            worst = max(e["rows"], key=lambda r: r.score)
            at = "" if worst.index in ((), None) else f" at {worst.input}{text_index(worst.index)}"
            along = " (along a random direction)" if worst.index is None else ""
            parts.append(f'--expect {e["name"]}="{e["formula"]}" is wrong: it gives '
                         f"{number(worst.analytic)} where the numeric derivative{along} is "
                         f"{number(worst.numeric)}{at}")
    explained = {n for r in report.rules if r["status"] == "fail" for n in r["inputs"]}
    unexplained = [n for n in wrong_first if n not in explained]
    if unexplained:
        parts.append(f"the {what} of {_names(unexplained)} disagrees with finite differences"
                     + _blocked_hint(ck))
    unexplained2 = [n for n in wrong_second if n not in explained]
    if unexplained2:
        parts.append(f"second derivatives (Hessian-vector products) of {_names(unexplained2)} "
                     "disagree with differences of the gradient")
    nonsmooth = kink_rows(report) or [r for r in rows if r.status == "nonsmooth"]
    nonsmooth.sort(key=lambda r: r.check == "hvp")   # first derivatives first
    how = ("complex step" if ck.method == "complex" else "central differences")
    if fails:
        report.verdict = "fail"
        report.message = "; ".join(parts) if parts else "a derivative is wrong"
    elif rounding:
        report.verdict = "rounding"
        report.message = (f"adcli's float32 derivatives differ from the numeric ones by more than "
                          f"rtol {number(ck.rtol)}, atol {number(ck.atol)}, but its float64 ones agree: "
                          "the difference is float32 rounding, not a wrong derivative")
        report.notes.append(warning("float32-rounding", report.message))
    elif nonsmooth:
        report.verdict = "nonsmooth"
        first = nonsmooth[0]
        where = (f"{first.input}{text_index(first.index)}" if first.index is not None
                 else f"{first.input} (along a random direction)")
        kink = f", on a kink of {first.kinks[0]}" if first.kinks else ""
        more = len(nonsmooth) - 1
        more = f" (and {more} more entr{'y' if more == 1 else 'ies'})" if more else ""
        jump = math.isinf(first.left) or math.isinf(first.right)
        report.message = (f"{where} is a non-smooth point{kink}{more}: the one-sided slopes are "
                          f"{number(first.left)} (left) and {number(first.right)} (right)"
                          + (("; the gradient jumps there" if first.check == "hvp"
                              else "; the function jumps there") if jump else
                             f", and adcli's {number(first.analytic)} lies between them")
                          + "; everything else agrees")
        report.notes.append(note("nonsmooth", report.message))
    else:
        statuses = list(fo_status.values()) + list(second_status.values())
        n_all = sum(s.size for s in statuses)
        n_skipped = sum(int(np.sum(s == "skipped")) for s in statuses)
        if n_all and n_skipped == n_all and not report.rules and not report.expects:
            report.verdict = "unchecked"
            report.message = ("nothing could be checked: the function is not finite within the "
                              "step around this point, so there is no numeric derivative to "
                              "compare with (try a smaller --eps, or another point)")
            report.notes.append(warning("unchecked", report.message))
            return
        report.verdict = "pass"
        n_first = sum(int(np.sum(s != "skipped")) for s in fo_status.values())
        if ck.full:
            counts = [_count(n_first, f"{what} entr", "y", "ies")]
        else:
            counts = [_count(n_first, "random projection", "", "s") + f" of the {what}"]
        if second_status:
            counts.append(_count(sum(int(np.sum(s != "skipped")) for s in second_status.values()),
                                 "Hessian-vector product entr", "y", "ies"))
        rules = list(dict.fromkeys(r["name"] for r in report.rules))
        if rules:
            counts.append(f"the backward rule{'s' * (len(rules) > 1)} of {_names(rules)}")
        if report.expects:
            counts.append(_count(len(report.expects), "--expect formula", "", "s"))
        report.message = (f"the derivatives agree with {how}: " + ", ".join(counts)
                          + f" (rtol {number(ck.rtol)}, atol {number(ck.atol)})")
        if n_skipped:
            report.message += (f"; {_count(n_skipped, 'entr', 'y', 'ies')} could not be checked "
                               "(the function is not finite within the step)")


def _blocked_hint(ck):
    """Finite differences see through ops whose derivative is 0 by definition (detach)."""
    from ..graph import reachable
    graph = ck.ref.graph
    for i in reachable([ck.ref.output]):
        node = graph.nodes[i]
        op = node.op
        if (op is not None and not op.differentiable and op.kink is None
                and op.kind not in ("comparison", "constant") and i in ck.function.depends):
            return (f" (the value goes through {op.name} at {place(node.pos, ck.ref)}, whose "
                    "derivative is 0 by definition; finite differences see through it)")
    return ""


def number(x):
    """Numbers in reports: 10 significant digits (the numeric side is an estimate);
    format's g gives nan, inf and -inf as they are."""
    return "-" if x is None else f"{float(x):.10g}"


def text_index(index):
    if index is None:
        return "*"
    if index == ():
        return ""
    return "[" + ", ".join(map(str, index)) + "]"




def place(pos, traced):
    if pos is None:
        return traced.filename or "the expression"
    at = f"line {pos[0]}, column {pos[1]}"
    return f"{traced.filename}, {at}" if traced.filename else at


def located(err, traced):
    return err.located(traced.source, traced.filename)


@contextlib.contextmanager
def quiet():
    """Scripts' print() output is shown once, when the script is first run."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def kink_rows(report):
    """The non-smooth points, once each (a gradient's row and an --expect row share one)."""
    points = {}
    for r in report.rows:
        if r.status == "nonsmooth" and r.left is not None and r.check not in ("expect", "rule", "rule2"):
            points.setdefault((r.check, r.input, r.index), r)
    found = list(points.values())
    elements = [r for r in found if r.index is not None]   # a projection's entries, if located
    return (elements or found)[:SHOWN]
