"""gradcheck: adcli's derivatives against numeric ones, and a verdict.

The analytic side is what `adcli grad` computes: the derivative rules of the op table (and
a script's `backward` rules) applied over the recorded graph, in the chosen dtype. The
numeric side never uses a derivative rule: it evaluates the function itself at points moved
a little along one input element (or along a random direction), always in float64.

Central differences refined by Richardson extrapolation
-------------------------------------------------------
For a step h, D(h) = (f(x+h) - f(x-h)) / 2h = f'(x) + c2 h^2 + c4 h^4 + ... Taken at h,
h/2 and h/4, the h^2 term cancels in R1(h) = (4 D(h/2) - D(h)) / 3 and the h^4 term in
R2 = (16 R1(h/2) - R1(h)) / 15. R2 is the reference value. |R2 - R1(h/2)|, the change the
last extrapolation made, estimates its error; a bound on rounding is added (float64's
epsilon times |f|, over the step, through the weights of the extrapolation), so a function
with a large value and a small slope is not failed for noise. The step is
h = eps * max(1, |x|), eps = 1e-4 by default, rounded to a power of two so that x + h is
exact.

One-sided differences (f(x+h) - f(x)) / h = f'(x+) + c1 h + c2 h^2 + ... are extrapolated
the same way (terms h and h^2) and give the right and left slopes. On a smooth function
they agree. Where they differ the point is non-smooth (a kink of abs, relu, max, ... within
the step, or a branch of a script): no derivative exists there, only one-sided ones, and
the check asks that adcli's value lie between the two slopes, as its minimum-norm
subgradients do. Non-finite values or a kink within the step first make the column retry
with steps 128 and 16,384 times smaller (as does a column whose error estimate alone would
use up its tolerance), keeping the best estimate; a kink that stays within the smallest step
is the point's own. A jump (floor, sign, a branch) shows as a one-sided difference that does
not shrink with the step: its slope on that side is infinite, and any value adcli gives is
accepted there.

An entry passes when |analytic - numeric| <= atol + rtol * |numeric| + safety * error.

The complex step (`--method complex`): for f real-analytic, f(x + i h) = f(x) + i h f'(x)
- h^2 f''(x)/2 + ..., so f'(x) = Im f(x + i h) / h with no subtraction at all: h = 1e-20
gives f' to rounding. Ops with kinks are not analytic and are refused.

Large inputs (more than 2,000 elements together, or `--fast`) compare random projections:
for a direction d per input and a random cotangent v of the output, v^T J d from adcli's
reverse mode against the derivative of t -> v . f(x + t d). A projection that disagrees is
split in halves, and the halves that disagree are split again (the difference is linear in
d), which locates the worst entries in about 2 log2(n) projections each.

Second derivatives (`--order 2`): the Hessian-vector product H d by forward mode over the
reverse-mode gradient (a graph), against central differences of adcli's gradient along d.

The function is re-evaluated by replaying the recorded graph: the nodes that depend on the
inputs are recomputed by their ops' forward rules, everything else keeps its recorded value
(constants, random draws). A custom rule's node takes its body's value. A script's control
flow was decided when it was traced, so when a comparison comes out differently at a
perturbed point the script is run again there (define-by-run) instead, if that gives the
same function (giving an input whose default draws random numbers shifts later draws).

Moving one input element changes only that element of everything computed elementwise from
the input, so for graphs of elementwise ops and reductions all the columns of an input are
evaluated at once (Replay.columns): the elementwise part once, on a vector holding each
column's own element, the reductions and what follows them with a leading axis of columns.
Other graphs are replayed once per column and step; when that would be too much work, random
projections are compared instead.
"""
from __future__ import annotations

import contextlib
import heapq
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from . import autodiff
from .errors import AdcliError, InputError, UnknownNameError, ValueError_, suggest
from .graph import as_numbers
from .ops import axes_of
from .script import CustomRule

EPS = 1e-4                 # relative step: h = eps * max(1, |x|)
STEPS = 3                  # h, h/2, h/4
SAFETY = 10.0              # multiplies the numeric error estimate in the tolerance
TOLERANCES = {"float64": (1e-6, 1e-8), "float32": (1e-3, 1e-5)}   # (rtol, atol)
FULL_LIMIT = 2000          # inputs with at most this many elements together: every entry
JACOBIAN_LIMIT = 1_000_000  # ... if the Jacobian has at most this many entries
COMPLEX_STEP = 1e-20
RETRY = 2.0 ** -7          # a doubtful column retries with its step times this ...
RETRIES = 2                # ... at most this many times
SHOWN = 10                 # rows in the table and in --json "worst"
BATCH_LIMIT = 20_000_000   # elements of one array of the all-columns-at-once evaluation
WORK_LIMIT = 5_000_000     # node evaluations a full check may spend one column at a time
LOCATE_BUDGET = 400        # projections spent locating the worst entries of one input
RULE_CALLS = 20            # custom-rule call sites checked at most
F64 = float(np.finfo(np.float64).eps)
STATUS_RANK = {"FAIL": 0, "rounding": 1, "nonsmooth": 2, "skipped": 3, "ok": 4}


# ---------------------------------------------------------------- results

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


# ---------------------------------------------------------------- replaying the graph

def _rule_of(node):
    """The custom rule of a node for a function with a `backward` block, else None."""
    rule = node.attrs.get("rule") if node.attrs else None
    return rule if isinstance(rule, CustomRule) else None


def _real(v):
    return v.real if np.iscomplexobj(v) else v


def _complex(v):
    return v if np.iscomplexobj(v) or np.asarray(v).dtype.kind != "f" else np.asarray(v, np.complex128)


class Replay:
    """The recorded float64 graph as a function of the checked inputs (see the module doc).

    Called with one array per checked input, it returns the output's value. With
    complex=True it evaluates at complex points for the complex step: the arguments that
    choose a branch (a comparison's, where's condition) get their real part, so branches
    are chosen as in the real computation."""

    def __init__(self, traced, names, retrace=None, complex_step=False):
        graph, out = traced.graph, traced.output
        self.inputs = [traced.inputs[n] for n in names]
        self.output, self.retrace, self.complex = out, retrace, complex_step
        dep = {n.id for n in self.inputs}
        self.steps, self.plan = [], []
        for node in graph.nodes[min(dep):out.id + 1]:
            if node.op is None:
                continue
            rule = _rule_of(node)
            body = rule.body if rule is not None else None
            if (body is not None and body.id in dep) or any(a.id in dep for a in node.args):
                dep.add(node.id)
                self.steps.append(node)
                # what one step needs, looked up once: the loop below is the hot path
                self.plan.append((node.id, _forward(node), node.args, node.attrs, body,
                                  node.op.kind == "comparison" and retrace is not None, node))
        self.depends = dep
        self.flipped = None
        # every replay is charged to the run's work budget, like the ops it repeats
        self.limits = graph.limits
        self.step_work = {node.id: graph.node_cost(node)[0] for node in self.steps}
        self.run_work = sum(self.step_work.values())
        if complex_step:
            self._refuse_kinks(traced)

    def _refuse_kinks(self, traced):
        for node in self.steps:
            if node.op.kink is not None and node.op.differentiable:
                raise _located(InputError(
                    f"--method complex: {node.op.name} is not real-analytic (it has a kink), so "
                    "the complex step does not apply", pos=node.pos,
                    hint="use --method central"), traced)

    def _args(self, node, vals):
        return self._for_complex(node, [vals.get(a.id, a.value) for a in node.args])

    def _for_complex(self, node, args):
        if not self.complex:
            return args
        op = node.op
        out = []
        for i, a in enumerate(args):
            # a branch is chosen on real parts; values (detach's too) carry the imaginary part
            selects = op.kind == "comparison" or (op.vjp is not None and op.arity is not None
                                                  and op.vjp[i] is None)
            out.append(_real(a) if selects else _complex(a))
        return out

    def __call__(self, arrays, kinks=None):
        """The output at these input values. `kinks`, a dict, receives the value of each
        kink function on the way (node id -> array)."""
        if self.complex or kinks is not None:
            return self._careful(arrays, kinks)
        vals = self.values(arrays)
        if vals is None:     # a script's branch goes the other way here: run the script again
            return self.retrace(arrays)
        return vals.get(self.output.id, self.output.value)

    def values(self, arrays):
        """Every replayed node's value (id -> array), or None where a comparison comes out
        differently and the script should be run again instead."""
        self.limits.spend(self.run_work, "gradcheck's evaluation")
        vals = {n.id: a for n, a in zip(self.inputs, arrays)}
        get = vals.get
        for nid, fwd, args, attrs, body, compare, node in self.plan:
            if body is not None:
                vals[nid] = get(body.id, body.value)
                continue
            v = fwd(np, *[get(a.id, a.value) for a in args], **attrs)
            if compare and not np.array_equal(v, node.value) and self.retrace(None) is not None:
                return None
            vals[nid] = v
        return vals

    def columns(self, j, x, t):
        """f(x + t[k] e_k) for every element k of input j at once, shape (elements, outputs),
        where input j is x and the others are at their recorded values; None when the graph
        is outside what this handles (the caller then moves one element at a time).

        Moving element k changes only element k of a node computed elementwise from the
        input, and that element depends on x[k] alone: one evaluation on x + t gives every
        column's element of such a node (its "diagonal"). A node that mixes elements (a
        reduction) gets the whole array per column, a leading axis of columns, and so does
        what follows it; ops other than elementwise ones and reductions end the shortcut.
        Columns where a script's comparison comes out differently are returned in
        `self.flipped` for the caller to redo one by one."""
        node_x = self.inputs[j]
        shape, n = node_x.shape, node_x.size
        diag = {node_x.id: (x + t).reshape(shape)}
        batched = {}
        flipped = np.zeros(n, bool)
        for nid, fwd, args, attrs, body, compare, node in self.plan:
            if body is not None:                 # a custom rule's node: its body's value
                for values in (diag, batched):
                    if body.id in values:
                        values[nid] = values[body.id]
                continue
            if not any(a.id in diag or a.id in batched for a in args):
                continue
            op = node.op
            if op.broadcasts and node.shape == shape and not any(a.id in batched for a in args):
                self.limits.spend(self.step_work[nid], "gradcheck's evaluation", node.pos)
                v = self._apply(node, self._for_complex(node, [diag.get(a.id, a.value)
                                                               for a in args]))
                if v is None:
                    return None
                if compare:
                    flipped |= (v != node.value).reshape(-1)
                diag[nid] = np.asarray(v)
                continue
            if n * max(node.size, 1) > BATCH_LIMIT or any(n * a.size > BATCH_LIMIT for a in args):
                return None
            self.limits.spend(n * self.step_work[nid], "gradcheck's evaluation", node.pos)
            vals = self._for_complex(node, [self._batched(a, diag, batched, n) for a in args])
            if op.broadcasts:
                r = node.ndim
                vals = [v if a.id not in diag and a.id not in batched else
                        v.reshape((n,) + (1,) * (r - a.ndim) + a.shape) for a, v in zip(args, vals)]
                v = self._apply(node, vals)
            elif op.kind == "reduction" and op.arity == 1 and set(attrs) <= {"axis", "keepdims"}:
                axis = tuple(i + 1 for i in axes_of(attrs.get("axis"), args[0].ndim))
                v = self._apply(node, vals, axis=axis)
            else:
                return None
            v = np.asarray(v)
            if v.shape != (n,) + node.shape:
                return None
            if compare:
                flipped |= (v != node.value).reshape(n, -1).any(axis=1)
            batched[nid] = v
        self.flipped = flipped
        out = self.output
        if out.id in batched:
            return batched[out.id].reshape(n, -1)
        values = [out.value] + ([diag[out.id]] if out.id in diag else [])
        f = np.tile(np.asarray(out.value).reshape(1, -1), (n, 1)).astype(np.result_type(*values))
        if out.id in diag:
            f[np.arange(n), np.arange(n)] = diag[out.id].reshape(-1)
        return f

    def _apply(self, node, args, **attrs):
        """node's op on other arguments; None if it cannot take them (the caller falls back
        to one column at a time), except that an op refusing complex numbers is an error."""
        try:
            return _forward(node)(np, *args, **{**node.attrs, **attrs})
        except (TypeError, ValueError, IndexError):
            if self.complex and any(np.iscomplexobj(a) for a in args):
                raise InputError(f"--method complex: {node.op.name} does not take complex numbers",
                                 pos=node.pos, hint="use --method central") from None
            return None

    @staticmethod
    def _batched(a, diag, batched, n):
        """An argument of a batched node: its per-column arrays (leading axis of columns)."""
        if a.id in batched:
            return batched[a.id]
        if a.id not in diag:
            return a.value
        d = diag[a.id].reshape(-1)
        dense = np.empty((n, d.size), dtype=np.result_type(a.value, d))
        dense[...] = np.asarray(a.value).reshape(1, -1)
        dense[np.arange(n), np.arange(n)] = d
        return dense.reshape((n,) + a.shape)

    def _careful(self, arrays, kinks):
        self.limits.spend(self.run_work, "gradcheck's evaluation")
        vals = {n.id: a for n, a in zip(self.inputs, arrays)}
        for nid, fwd, _, attrs, body, compare, node in self.plan:
            if body is not None:
                vals[nid] = vals.get(body.id, body.value)
                continue
            op = node.op
            args = self._args(node, vals)
            try:
                v = fwd(np, *args, **attrs)
            except TypeError:
                if not self.complex:
                    raise
                raise InputError(f"--method complex: {op.name} does not take complex numbers",
                                 pos=node.pos, hint="use --method central") from None
            if compare and not np.array_equal(v, node.value):
                again = self.retrace(arrays)
                if again is not None:
                    return again
            if kinks is not None and op.kink is not None:
                kinks[nid] = op.kink(np, *[_real(a) for a in args], **attrs)
            vals[nid] = v
        return vals.get(self.output.id, self.output.value)


def _forward(node):
    """node's forward rule as the graph applied it: arithmetic on a boolean argument (a
    comparison's result) sees it as 0 and 1 in the float type (see Graph.emit)."""
    fwd = node.op.fwd
    if not node.op.numeric or not any(a.value.dtype == bool for a in node.args):
        return fwd
    dtype = node.graph.dtype
    return lambda xp, *args, **attrs: fwd(xp, *as_numbers(args, dtype), **attrs)


def _located(err, traced):
    return err.located(traced.source, traced.filename)


@contextlib.contextmanager
def _quiet():
    """Scripts' print() output is shown once, when the script is first run."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


# ---------------------------------------------------------------- finite differences

def _power_of_two(h):
    return 2.0 ** np.round(np.log2(h))


def richardson(d, powers, noise):
    """Extrapolate estimates d[..., s, :] made with steps h / 2**s, whose error has terms
    in h**p for p in `powers`, to step 0. `noise` bounds each estimate's rounding error;
    it is carried through the same weights (in absolute value). Returns the extrapolated
    value and its error estimate: the change the last extrapolation made, plus rounding."""
    prev = d
    for p in powers:
        w = 2.0 ** p
        prev = d
        d = (w * d[..., 1:, :] - d[..., :-1, :]) / (w - 1)
        noise = (w * noise[..., 1:, :] + noise[..., :-1, :]) / (w - 1)
    best = d[..., -1, :]
    with np.errstate(invalid="ignore"):
        err = np.abs(best - prev[..., -1, :]) + noise[..., -1, :]
    return best, err


FIELDS = ("value", "error", "left", "right", "nonsmooth", "jump", "onesided", "step")


@dataclass
class Estimate:
    """Numeric derivatives along some directions, arrays of shape (directions, outputs)."""
    value: np.ndarray          # the reference (central, or one-sided where one side fails)
    error: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nonsmooth: np.ndarray      # bool: the one-sided slopes differ
    jump: np.ndarray           # bool: the function jumps there (a one-sided slope is infinite)
    onesided: np.ndarray       # bool: f is not finite on one side; value is the other side's
    step: np.ndarray           # (directions,): the largest step used

    def take(self, sel):
        return Estimate(*(getattr(self, f)[sel] for f in FIELDS))

    def put(self, sel, other):
        for f in FIELDS:
            getattr(self, f)[sel] = getattr(other, f)

    def doubtful(self, rtol, atol):
        """Per direction: worth another try with a smaller step."""
        with np.errstate(invalid="ignore"):
            noisy = ~(SAFETY * self.error <= atol + rtol * np.abs(self.value))
        return (self.nonsmooth | noisy | self.onesided | ~np.isfinite(self.value)).any(axis=1)

    def better(self, other):
        """Per direction: is `other` (a smaller step) the better estimate? A smooth,
        finite one beats a non-smooth or non-finite one; among those, the smaller error
        wins; a point that stays non-smooth keeps the smallest step."""
        def bad(e):
            return (e.nonsmooth | e.onesided | ~np.isfinite(e.value)).any(axis=1)
        with np.errstate(invalid="ignore"):
            smaller = np.nan_to_num(other.error, nan=np.inf).max(axis=1) < \
                np.nan_to_num(self.error, nan=np.inf).max(axis=1)
        return np.where(bad(self), True, ~bad(other) & smaller)


def estimate(fp, fm, f0, h, rtol, atol):
    """Derivatives from f(x + h_s d) = fp[:, s], f(x - h_s d) = fm[:, s] and f(x) = f0, with
    h_s = h / 2**s for each direction (a row)."""
    hs = (h[:, None] / 2.0 ** np.arange(STEPS))[:, :, None]     # (directions, steps, 1)
    with np.errstate(all="ignore"):
        scale = np.fmax(np.fmax(np.abs(fp), np.abs(fm)), np.abs(f0))
        noise = F64 * scale / hs           # rounding of one difference quotient
        central, cerr = richardson((fp - fm) / (2 * hs), (2, 4), noise)
        right, rerr = richardson((fp - f0) / hs, (1, 2), 2 * noise)
        left, lerr = richardson((f0 - fm) / hs, (1, 2), 2 * noise)
        # a jump: the change over the smallest step is more than half the change over the
        # largest (a continuous function's shrinks with the step) and far above rounding
        floor = 1e3 * F64 * scale.max(axis=1)
        jumps = []
        for delta in (fp - f0, f0 - fm):
            small, large = np.abs(delta[:, -1]), np.abs(delta[:, 0])
            jumps.append((small > 0.5 * large) & (small > floor) & np.isfinite(small))
        right = np.where(jumps[0], np.sign((fp - f0)[:, -1]) * np.inf, right)
        left = np.where(jumps[1], np.sign((f0 - fm)[:, -1]) * np.inf, left)
        jump = jumps[0] | jumps[1]
        gap = np.abs(right - left)
        nonsmooth = jump | ((gap > atol + rtol * np.maximum(np.abs(right), np.abs(left))
                             + SAFETY * (rerr + lerr)) & np.isfinite(gap))
    value, error = central.copy(), cerr.copy()
    onesided = ~np.isfinite(value)
    for quotient, side, err in (((fp - f0) / hs, right, rerr), ((f0 - fm) / hs, left, lerr)):
        # f not finite on one side (a domain's edge): the other side's slope, and if its
        # difference quotients grow as the step shrinks (sqrt at 0), an infinite one
        use = ~np.isfinite(value) & np.isfinite(side) & ~jump
        with np.errstate(all="ignore"):
            q0, q2 = quotient[:, 0], quotient[:, -1]
            grows = (np.abs(q2) > 1.5 * np.abs(q0)) & (np.sign(q2) == np.sign(q0))
        value[use] = np.where(grows[use], np.sign(q2[use]) * np.inf, side[use])
        error[use] = err[use]
    return Estimate(value, error, left, right, nonsmooth, jump, onesided, h.copy())


class Numeric:
    """Derivatives of the replayed function by differences, along element directions
    (one input element at a time) or along dense directions."""

    def __init__(self, replay, base, f0, eps, method, rtol, atol, progress=None):
        self.replay, self.method, self.eps = replay, method, eps
        # progress(done, total) after each column done one by one, the long part of a check
        self.progress = progress or (lambda done, total: None)
        self.rtol, self.atol = rtol, atol
        self.base = [np.array(b, dtype=np.float64) for b in base]
        work_type = np.complex128 if method == "complex" else np.float64
        self.work = [np.array(b, dtype=work_type) for b in self.base]   # perturbed in place
        self.flat = [w.reshape(-1) for w in self.work]
        self.f0 = np.asarray(f0, dtype=np.float64).reshape(-1)
        self.evaluations = 0

    def _f(self, project):
        self.evaluations += 1
        v = np.asarray(self.replay(self.work))
        v = v.reshape(-1) if project is None else np.asarray([np.dot(project, v.reshape(-1))])
        return v

    # -------------------------------------------------------------- element directions
    def elements(self, cols):
        """Estimates for columns (j, k): input j, flat element k. Columns that look
        non-smooth or meet a non-finite value retry with smaller steps."""
        if self.method == "complex":
            return self._complex_elements(cols)
        x = np.array([self.base[j].reshape(-1)[k] for j, k in cols], dtype=np.float64)
        h = _power_of_two(self.eps * np.maximum(1.0, np.abs(x)))
        est = self._sample_elements(cols, h)
        todo = np.arange(len(cols))
        for _ in range(RETRIES):
            todo = todo[est.take(todo).doubtful(self.rtol, self.atol)]
            if not len(todo):
                break
            h[todo] *= RETRY
            old = est.take(todo)
            new = self._sample_elements([cols[i] for i in todo], h[todo])
            better = old.better(new)
            est.put(todo[better], new.take(better))
        return est

    def _sample_elements(self, cols, h):
        m = self.f0.size
        fp = np.empty((len(cols), STEPS, m))
        fm = np.empty((len(cols), STEPS, m))
        slow = self._all_columns_at_once(cols, h, fp, fm)
        for done, c in enumerate(slow, 1):
            j, k = cols[c]
            flat = self.flat[j]
            x = flat[k]
            for s in range(STEPS):
                t = h[c] / 2.0 ** s
                flat[k] = x + t
                fp[c, s] = self._f(None)
                flat[k] = x - t
                fm[c, s] = self._f(None)
            flat[k] = x
            self.progress(done, len(slow))
        return estimate(fp, fm, self.f0[None, None, :], h, self.rtol, self.atol)

    def _all_columns_at_once(self, cols, h, fp, fm):
        """Fill fp, fm by Replay.columns, input by input; returns the columns it could not
        do (outside its reach, or where a script's branch changes), to be done one by one."""
        slow = []
        groups = {}
        for c, (j, k) in enumerate(cols):
            groups.setdefault(j, []).append(c)
        for j, cs in groups.items():
            ks = np.array([cols[c][1] for c in cs])
            x = self.base[j].reshape(-1)
            flipped = np.zeros(len(cs), bool)
            for s in range(STEPS):
                for sign, out in ((1.0, fp), (-1.0, fm)):
                    t = np.zeros(x.size)
                    t[ks] = sign * h[cs] / 2.0 ** s
                    # x + t, element by element, is exactly the point the loop would make
                    f = self.replay.columns(j, x, t)
                    if f is None:
                        break
                    self.evaluations += 1
                    out[cs, s] = f[ks]
                    flipped |= self.replay.flipped[ks]
                if f is None:
                    break
            if f is None:
                slow += cs
            else:
                slow += [c for c, bad in zip(cs, flipped) if bad]
        return slow

    def _complex_elements(self, cols):
        m = self.f0.size
        value = np.empty((len(cols), m))
        slow, groups = [], {}
        for c, (j, k) in enumerate(cols):
            groups.setdefault(j, []).append(c)
        for j, cs in groups.items():      # all columns of an input at once where possible
            ks = [cols[c][1] for c in cs]
            t = np.zeros(self.base[j].size, dtype=np.complex128)
            t[ks] = 1j * COMPLEX_STEP
            f = self.replay.columns(j, self.base[j].reshape(-1).astype(np.complex128), t)
            if f is None:
                slow += cs
            else:
                self.evaluations += 1
                value[cs] = f[ks].imag / COMPLEX_STEP
        for done, c in enumerate(slow, 1):
            j, k = cols[c]
            flat = self.flat[j]
            x = flat[k]
            flat[k] = x + 1j * COMPLEX_STEP
            value[c] = np.asarray(self._f(None)).imag / COMPLEX_STEP
            flat[k] = x
            self.progress(done, len(slow))
        return self._complex_estimate(value)

    def _complex_estimate(self, value):
        # no subtraction: the error is rounding in computing f' itself
        error = 8 * F64 * np.abs(value) + 1e-300
        n = value.shape[0]
        no = np.zeros(value.shape, bool)
        return Estimate(value, error, value.copy(), value.copy(), no, no, no,
                        np.full(n, COMPLEX_STEP))

    # -------------------------------------------------------------- dense directions
    def along(self, j, d, project=None):
        """The derivative of f (or of project . f) at x moved along d in input j. The
        direction carries the scale: the step is eps (retrying smaller as above)."""
        d = np.asarray(d, dtype=np.float64)
        if self.method == "complex":
            self.work[j][...] = self.base[j] + 1j * COMPLEX_STEP * d
            value = np.asarray(self._f(project)).imag / COMPLEX_STEP
            self.work[j][...] = self.base[j]
            return self._complex_estimate(value[None, :])
        f0 = self.f0 if project is None else np.asarray([np.dot(project, self.f0)])

        def f(t):
            self.work[j][...] = self.base[j] + t * d
            return self._f(project)
        est = along(f, f0, self.eps, self.rtol, self.atol)
        self.work[j][...] = self.base[j]
        return est

    def kinks_crossed(self, j, d, h, graph):
        """The nodes of ops with a kink that the move x -> x +- h d (in input j) crosses."""
        signs = []
        for t in (-h, 0.0, h):
            self.work[j][...] = self.base[j] + t * d
            found = {}
            self.replay(self.work, kinks=found)
            signs.append({i: np.sign(v) for i, v in found.items()})
        self.work[j][...] = self.base[j]
        out = []
        for i, s0 in signs[1].items():
            sm, sp = signs[0].get(i), signs[2].get(i)
            if sm is None or sp is None:
                continue
            moved = (sm != sp) | ((s0 == 0) & ((sm != 0) | (sp != 0)))
            if np.any(moved):
                out.append(graph.nodes[i])
        return out


# ---------------------------------------------------------------- analytic derivatives

def _as_dtype(graph, a):
    return np.asarray(a, dtype=graph.dtype)


def analytic_jacobian(traced, names):
    """adcli's Jacobian, shape (input elements, output elements), in float64: one reverse
    pass per output element, or one forward pass per input element when there are fewer
    inputs (falling back to reverse mode where a custom rule has no forward rule)."""
    graph, out = traced.graph, traced.output
    nodes = [traced.inputs[n] for n in names]
    sizes = [n.size for n in nodes]
    m, n = out.size, sum(sizes)
    graph.hold(n * m * 8, "gradcheck's Jacobian")
    jac = np.zeros((n, m))
    if m > n:
        try:
            c = 0
            for j, node in enumerate(nodes):
                for k in range(node.size):
                    t = np.zeros(node.shape, dtype=graph.dtype)
                    t.reshape(-1)[k] = 1
                    tangents = [t if i == j else None for i in range(len(nodes))]
                    col = autodiff.jvp(graph, out, nodes, tangents)
                    if col is not None:
                        jac[c] = np.asarray(col, dtype=np.float64).reshape(-1)
                    c += 1
            return jac
        except InputError:
            jac[:] = 0
    for i in range(m):
        cot = None
        if m > 1 or out.ndim:
            cot = np.zeros(out.shape, dtype=graph.dtype)
            cot.reshape(-1)[i] = 1
        jac[:, i] = _flat_grads(graph, out, nodes, cot)
    return jac


def _flat_grads(graph, out, nodes, cotangent):
    cts = autodiff.vjp(graph, out, nodes, cotangent)
    return np.concatenate([np.zeros(n.size) if g is None else
                           np.asarray(g, dtype=np.float64).reshape(-1) for n, g in zip(nodes, cts)])


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


def _index_of(shape, k):
    return tuple(int(i) for i in np.unravel_index(k, shape)) if shape else ()


def _rows_of(check, statuses, analytic, est, tol, labels, limit=100):
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


class Check:
    """The state of one gradcheck run: the traces, the settings, the numeric engine."""

    def __init__(self, source, values, *, script, filename, dtype, wrt, method, eps, atol,
                 rtol, fast, order, seed, limits, max_steps, max_depth, progress=None):
        self.source, self.values, self.script, self.filename = source, values, script, filename
        self.dtype, self.method, self.order, self.fast = dtype, method, order, fast
        self.seed, self.limits = seed, limits
        self.max_steps, self.max_depth = max_steps, max_depth
        self.eps = EPS if eps is None else eps
        rtol0, atol0 = TOLERANCES[dtype]
        self.rtol = rtol0 if rtol is None else rtol
        self.atol = atol0 if atol is None else atol
        # backward rules, --expect formulas and the float32 recheck are about the math, not
        # the dtype: float64 tolerances
        r64, a64 = TOLERANCES["float64"]
        self.rtol64 = r64 if rtol is None else rtol
        self.atol64 = a64 if atol is None else atol
        self.rng = np.random.default_rng(seed)
        self.notes, self.retrace_ok = [], None
        self.traced = self.trace(values, dtype)
        self.ref = self.traced if dtype == "float64" else self.trace(values, "float64", quiet=True)
        self.names = _checked_names(self.traced, wrt)
        out = self.ref.output
        if out.dtype.kind != "f":
            raise InputError("the value is a boolean and has no derivative")
        if not bool(np.all(np.isfinite(out.value))):
            raise ValueError_("the value is not finite at this point, so its derivatives cannot "
                              "be checked", hint="choose another point with --at")
        self.base = [np.array(self.ref.inputs[n].value, dtype=np.float64) for n in self.names]
        self.shapes = [b.shape for b in self.base]
        self.sizes = [b.size for b in self.base]
        self.f0 = np.asarray(out.value, dtype=np.float64).reshape(-1)
        self.m = self.f0.size
        n = sum(self.sizes)
        self.full = not fast and n <= FULL_LIMIT and n * self.m <= JACOBIAN_LIMIT
        retrace = self.retrace_output if script else None
        replay = Replay(self.ref, self.names, retrace, complex_step=method == "complex")
        self.replay = replay
        self.numeric = Numeric(replay, self.base, self.f0, self.eps, method, self.rtol, self.atol,
                               progress)
        with _quiet():
            try:   # surface a complex-step refusal (an op without complex numbers) at once
                if method == "complex":
                    self.numeric.along(0, np.zeros(self.shapes[0]))
                if self.full:
                    self._afford_every_entry()
            except AdcliError as e:
                raise _located(e, self.ref)

    def _afford_every_entry(self):
        """Inputs outside the all-columns-at-once evaluation are checked one column at a
        time, a replay of the graph per column and step: for a long unrolled script that can
        take very long, and random projections are compared instead."""
        one_by_one = sum(size for j, size in enumerate(self.sizes)
                         if self.replay.columns(j, self.base[j].reshape(-1), np.zeros(size)) is None)
        work = len(self.replay.plan) * one_by_one * 2 * STEPS
        if work > WORK_LIMIT:
            self.full = False
            self.notes.append(
                f"note: comparing random projections (as with --fast): checking the "
                f"{sum(self.sizes):,} entries one at a time would evaluate {work:,} nodes")

    # -------------------------------------------------------------- tracing
    def trace(self, values, dtype, quiet=False):
        from . import api
        with (_quiet() if quiet else contextlib.nullcontext()):
            if self.script:
                return api.trace_script(self.source, values, dtype=dtype, limits=self.limits,
                                        filename=self.filename, seed=self.seed,
                                        max_steps=self.max_steps, max_depth=self.max_depth)
            return api.trace(self.source, values, dtype=dtype, limits=self.limits, seed=self.seed,
                             filename=self.filename)

    def values_at(self, arrays):
        vals = dict(self.values)
        for name, a in zip(self.names, arrays):
            vals[name] = np.array(np.real(a), dtype=np.float64)
        return vals

    def retrace_output(self, arrays):
        """The output with the script run again at `arrays`; None if that is not the same
        function: giving an input that has a default skips its default's random draws, so
        the draws after it change. Called with None, it only answers whether it would."""
        if self.retrace_ok is None:
            again = self.trace(self.values_at(self.base), "float64", quiet=True).output.value
            self.retrace_ok = bool(np.array_equal(again, self.ref.output.value))
            if not self.retrace_ok:
                self.notes.append(
                    "note: a comparison in the script comes out differently within the step, "
                    "but running the script again with its inputs given would change its random "
                    "draws, so the branches taken at the point were kept")
        if not self.retrace_ok:
            return None
        if arrays is None:
            return True
        return self.trace(self.values_at(arrays), "float64", quiet=True).output.value

    def scale(self, j):
        return np.maximum(1.0, np.abs(self.base[j]))

    def direction(self, j):
        """A random direction in input j, scaled like the steps: max(1, |x|) * N(0, 1)."""
        return self.scale(j) * self.rng.standard_normal(self.shapes[j])


def _checked_names(traced, wrt):
    names = list(traced.inputs)
    if not names:
        raise InputError("there is nothing to check: the expression has no inputs",
                         hint="give values for its names with --at")
    if wrt is not None:
        for w in wrt:
            if w not in traced.inputs:
                raise UnknownNameError(f"--wrt {w}: the expression has no input '{w}'",
                                       hint=suggest(w, names) or ("its inputs are " + ", ".join(names)))
        names = list(wrt)
    empty = [n for n in names if traced.inputs[n].size == 0]
    if empty:
        raise InputError("there is nothing to check in " + ", ".join(f"'{n}'" for n in empty)
                         + ": it has no elements", hint="leave it out with --wrt")
    return names


# ---------------------------------------------------------------- first order

@dataclass
class FirstOrder:
    rows: list
    status: dict          # input name -> array of statuses (elements or projections)
    stats: dict           # input name -> per-input maxima


def numeric_columns(ck):
    cols = [(j, k) for j, size in enumerate(ck.sizes) for k in range(size)]
    with _quiet():
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
        check = "grad" if scalar else "jacobian" + _text_index(_index_of(out_shape, i))
        return ck.names[j], _index_of(ck.shapes[j], k), check
    rows = _rows_of("grad", status, jac, est, tol, labels)
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
    with _quiet():
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
    cot = None if ck.m == 1 and not out.ndim else _as_dtype(graph, v.reshape(out.shape))
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
            with _quiet():
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
            row = Row(check, ck.names[j], _index_of(ck.shapes[j], k), float(g[k]), float(num),
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
        with _quiet():
            for _ in range(RETRIES + 1):
                nodes = ck.numeric.kinks_crossed(j, d, h, graph)
                if nodes:
                    break
                h *= RETRY
        row.kinks = [f"{n.op.name} ({_where(n.pos, ck.ref)})" for n in nodes[:3]]


def _where(pos, traced):
    if pos is None:
        return traced.filename or "the expression"
    place = f"line {pos[0]}, column {pos[1]}"
    return f"{traced.filename}, {place}" if traced.filename else place


# ---------------------------------------------------------------- custom rules

def custom_nodes(traced):
    out = traced.output
    nodes = [n for n in traced.graph.nodes[:out.id + 1] if n.op is not None and _rule_of(n)]
    seen, picked = {}, []
    for n in nodes:          # a few call sites per function: a loop may call it often
        key = id(_rule_of(n).fn)
        if seen.get(key, 0) < 3 and len(picked) < RULE_CALLS:
            seen[key] = seen.get(key, 0) + 1
            picked.append(n)
    return picked


def _rule_place(fn, traced):
    line = f"line {fn.backward.pos[0]}"
    return f"{traced.filename}, {line}" if traced.filename else line


def _scaled_direction(ck, x):
    return np.maximum(1.0, np.abs(x)) * ck.rng.standard_normal(np.shape(x))


def check_rules(ck):
    """Each backward rule against its function's body: for a random cotangent w of the
    output and a random direction d of one parameter, the rule's <vjp(w), d> against the
    derivative of t -> <w, body(x + t d)>, the body run again at each point."""
    results = []
    for node in custom_nodes(ck.ref):
        rule = _rule_of(node)
        fn, interp = rule.fn, rule.interp
        xs = [np.array(a.value, dtype=np.float64) for a in node.args]
        w = ck.rng.standard_normal(node.shape)
        with _quiet():
            cts = [np.broadcast_to(np.asarray(rule.vjp(interp.graph.arrays, w, node.value, xs, i),
                                              dtype=np.float64), x.shape) for i, x in enumerate(xs)]
        rows = []
        for p, x in enumerate(xs):
            d = _scaled_direction(ck, x)
            an = float(np.sum(cts[p] * d))

            def body(t, p=p, d=d):
                moved = [x + t * d if i == p else x for i, x in enumerate(xs)]
                return np.sum(w * np.asarray(interp.run_body(fn, moved).value, dtype=np.float64))
            est = _along(body, ck)
            rows.append(projection_row("rule", fn.params[p][0], an, est, ck.rtol64, ck.atol64,
                                       np.linalg.norm(cts[p] * d),
                                       np.linalg.norm(d) * np.linalg.norm(w)))
        results.append(_rule_result(fn, node, rows, ck, "rule"))
    return results


def check_rules_second_order(ck):
    """Each backward rule's own derivative (what second derivatives use): for random w and
    v, s(x) = <vjp(x, w), v> through the rule run as a graph, differentiated by adcli,
    against differences of s computed by the rule on numbers."""
    results = []
    for node in custom_nodes(ck.ref):
        rule = _rule_of(node)
        fn, interp = rule.fn, rule.interp
        graph = interp.graph
        xs = [np.array(a.value, dtype=np.float64) for a in node.args]
        w = ck.rng.standard_normal(node.shape)
        vs = [ck.rng.standard_normal(x.shape) for x in xs]

        def s_nodes(values):
            interp.steps = 0
            consts = [graph.const(x.copy()) for x in values]
            graph.pos = fn.pos
            y = interp.call(fn, consts, [], fn.pos)
            return consts, y

        with _quiet():
            consts, y = s_nodes(xs)
            cts = autodiff.vjp(graph, y, consts, graph.const(w), create_graph=True)
            s = None
            for c, v in zip(cts, vs):
                if c is not None:
                    term = graph.ns.sum(c * graph.const(v))
                    s = term if s is None else s + term
            grads = autodiff.vjp(graph, s, consts) if s is not None else [None] * len(xs)
        rows = []
        for p, x in enumerate(xs):
            d = _scaled_direction(ck, x)
            g = np.zeros(x.shape) if grads[p] is None else np.asarray(grads[p], dtype=np.float64)
            an = float(np.sum(g * d))

            def s_value(t, p=p, d=d):
                moved = [x + t * d if i == p else x for i, x in enumerate(xs)]
                consts, y = s_nodes(moved)
                c = autodiff.vjp(graph, y, consts, w)
                return sum(float(np.sum(ci * v)) for ci, v in zip(c, vs) if ci is not None)
            with _quiet():
                est = _along(s_value, ck)
            rows.append(projection_row("rule2", fn.params[p][0], an, est, ck.rtol64, ck.atol64,
                                       np.linalg.norm(g * d), np.linalg.norm(d)))
        results.append(_rule_result(fn, node, rows, ck, "rule2"))
    return results


def _along(fun, ck):
    """The derivative of a scalar function of t at 0 (rule bodies and rules)."""
    with _quiet():
        return along(lambda t: np.atleast_1d(fun(t)), np.atleast_1d(fun(0.0)), ck.eps,
                     ck.rtol64, ck.atol64)


def along(f, f0, eps, rtol, atol):
    """The derivative of t -> f(t) (an array) at t = 0, where f(0) = f0: steps eps, eps/2,
    eps/4 (powers of two), retried smaller while doubtful, the best estimate kept."""
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)
    h = np.array([_power_of_two(eps)])
    best = None
    for _ in range(RETRIES + 1):
        fp = np.empty((1, STEPS, f0.size))
        fm = np.empty((1, STEPS, f0.size))
        for s in range(STEPS):
            fp[0, s] = np.asarray(f(h[0] / 2.0 ** s), dtype=np.float64).reshape(-1)
            fm[0, s] = np.asarray(f(-h[0] / 2.0 ** s), dtype=np.float64).reshape(-1)
        est = estimate(fp, fm, f0[None, None, :], h, rtol, atol)
        if best is None or best.better(est)[0]:
            best = est
        if not best.doubtful(rtol, atol)[0]:
            break
        h = h * RETRY
    return best


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


def _rule_result(fn, node, rows, ck, kind):
    from .graph import reachable
    wrong = [r.input for r in rows if r.status == "FAIL"]
    for r in rows:
        r.input = f"{fn.name}({r.input})"
    upstream = set()
    for p, r in enumerate(rows):
        if r.status == "FAIL":
            upstream |= set(reachable([node.args[p]]))
    inputs = [name for name, n in ck.ref.inputs.items() if n.id in upstream]
    return {"name": fn.name, "kind": kind, "place": _rule_place(fn, ck.ref),
            "line": fn.backward.pos[0], "file": ck.ref.filename,
            "call": _where(node.pos, ck.ref), "status": "fail" if wrong else "pass",
            "wrong": wrong, "inputs": inputs, "rows": rows}


# ---------------------------------------------------------------- --expect formulas

def parse_expect(items, ck):
    """--expect NAME=FORMULA: the formula's value at the point, claimed to be d/dNAME."""
    from . import api
    from .parse import parse
    from .trace import CONSTANTS, free_names
    out = []
    inputs = {n: ck.ref.inputs[n].value for n in ck.ref.inputs}
    for item in items:
        name, eq, formula = item.partition("=")
        name = name.strip()
        if not eq or not formula.strip():
            raise InputError(f"--expect expects NAME=FORMULA, got '{item}'",
                             hint='for example --expect x="2*x+y"')
        if name not in inputs:
            raise UnknownNameError(f"--expect {name}: the expression has no input '{name}'",
                                   hint=suggest(name, list(inputs)) or
                                   "its inputs are " + ", ".join(inputs))
        if name not in ck.names:
            raise InputError(f"--expect {name}: '{name}' is not among the checked inputs (--wrt)")
        if ck.m != 1:
            raise InputError(f"--expect needs a scalar value, but the value has shape "
                             f"{tuple(ck.ref.output.shape)}",
                             hint="check sum(...) of it, or its Jacobian without --expect")
        try:
            tree = parse(formula)
            used = free_names(tree)
        except AdcliError as e:
            raise e.located(formula, f"--expect {name}")
        for u in used:
            if u not in inputs and u not in CONSTANTS:
                raise UnknownNameError(f"--expect {name}: the formula uses '{u}', which is not an "
                                       "input", hint=suggest(u, list(inputs)) or
                                       "its inputs are " + ", ".join(inputs))
        vals = {u: inputs[u] for u in used if u in inputs}
        t = api.trace(formula, vals, dtype="float64", limits=ck.limits, filename=f"--expect {name}",
                      seed=ck.seed)
        value = np.asarray(t.output.value, dtype=np.float64)
        shape = ck.shapes[ck.names.index(name)]
        try:
            value = np.broadcast_to(value, shape)
        except ValueError:
            raise InputError(f"--expect {name}: the formula has shape {value.shape}, but "
                             f"'{name}' has shape {shape}") from None
        out.append((name, formula.strip(), value))
    return out


def check_expect(ck, expects, numeric):
    results = []
    for name, formula, value in expects:
        j = ck.names.index(name)
        if ck.full:
            cols, est = numeric
            sel = [c for c, (jj, _) in enumerate(cols) if jj == j]
            sub = est.take(sel)
            a = value.reshape(-1, 1)
            status, tol = judge(a, sub, ck.rtol64, ck.atol64)
            rows = _rows_of("expect", status, a, sub, tol,
                            lambda e: (name, _index_of(ck.shapes[j], e), None))
        else:
            v, dirs, ests = numeric
            d = dirs[j].reshape(-1)
            terms = value.reshape(-1) * d
            rows = [projection_row("expect", name, float(terms.sum()), ests[j], ck.rtol64,
                                   ck.atol64, np.linalg.norm(terms), np.linalg.norm(d))]
        st = "fail" if any(r.status == "FAIL" for r in rows) else "pass"
        results.append({"name": name, "formula": formula, "status": st, "rows": rows})
    return results


# ---------------------------------------------------------------- second order

def second_order(ck, traced):
    """Hessian-vector products H d: adcli's (forward mode over the reverse-mode gradient
    graph) against central differences of adcli's float64 gradient along d."""
    graph, out = traced.graph, traced.output
    nodes = [traced.inputs[n] for n in ck.names]
    v = None if ck.m == 1 else ck.rng.standard_normal(ck.m)
    dirs = [ck.direction(j) for j in range(len(ck.names))]
    hv = analytic_hvp(traced, nodes, v, dirs)

    def gradient(t):
        return gradient_at(ck, [b + t * d for b, d in zip(ck.base, dirs)], v)
    with _quiet():
        return hv, along(gradient, gradient(0.0), ck.eps, ck.rtol, ck.atol)


def gradient_at(ck, arrays, v):
    """adcli's float64 gradient (of v . f) at other input values: the recorded graph's values
    are replayed there and reverse mode runs over them, so random draws and branches stay
    those of the point; where a branch changes, the script is run again."""
    ref = ck.ref
    nodes = [ref.inputs[n] for n in ck.names]
    vals = ck.replay.values(arrays)
    if vals is None:
        tr = ck.trace(ck.values_at(arrays), "float64", quiet=True)
        tn = [tr.inputs[n] for n in ck.names]
        cot = None if v is None else v.reshape(tr.output.shape)
        return _flat_grads(tr.graph, tr.output, tn, cot)
    graph = ref.graph
    saved = {i: graph.nodes[i].value for i in vals}
    try:
        for i, value in vals.items():
            graph.nodes[i].value = value
        cot = None if v is None else v.reshape(ref.output.shape)
        return _flat_grads(graph, ref.output, nodes, cot)
    finally:
        for i, value in saved.items():
            graph.nodes[i].value = value


def analytic_hvp(traced, nodes, v, dirs):
    graph, out = traced.graph, traced.output
    cot = None if v is None else graph.const(_as_dtype(graph, v.reshape(out.shape)))
    grads = autodiff.vjp(graph, out, nodes, cot, create_graph=True)
    tangents = [_as_dtype(graph, d) for d in dirs]
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
        return _flat_grads(graph, s, nodes, None) if s is not None else np.zeros(sum(n.size for n in nodes))


def second_order_rows(ck, hv, est, rtol, atol):
    a = hv.reshape(1, -1)
    status, tol = judge(a, est, rtol, atol)
    offsets = np.cumsum([0] + ck.sizes)

    def labels(e):
        j = int(np.searchsorted(offsets, e, side="right") - 1)
        return ck.names[j], _index_of(ck.shapes[j], e - offsets[j]), None
    rows = _rows_of("hvp", status, a, est, tol, labels)
    by_input = {name: status[0, offsets[j]:offsets[j + 1]] for j, name in enumerate(ck.names)}
    return rows, by_input


# ---------------------------------------------------------------- the whole check

def check(source, values, *, script=False, filename=None, dtype="float64", wrt=None, expect=(),
          method="central", eps=None, atol=None, rtol=None, fast=False, order=1, seed=0,
          limits=None, max_steps=1_000_000, max_depth=64, progress=None):
    """Check the derivatives of `source` at `values` (name -> float64 array); a Report.
    `progress(done, total)` is called as the numeric derivatives are computed."""
    from . import api
    api.check_dtype(dtype)
    if method not in ("central", "complex"):
        raise InputError(f"unknown --method '{method}'", hint="use central or complex")
    if order not in (1, 2):
        raise InputError(f"--order {order}: gradcheck checks first (1) or second (2) derivatives")
    if eps is not None and not (0 < eps < 1):
        raise InputError(f"--eps {eps}: the relative step must be between 0 and 1",
                         hint="for example --eps 1e-4")
    for opt, val in (("--atol", atol), ("--rtol", rtol)):
        if val is not None and not val >= 0:
            raise InputError(f"{opt} {val}: a tolerance must be 0 or more")
    ck = Check(source, values, script=script, filename=filename, dtype=dtype, wrt=wrt,
               method=method, eps=eps, atol=atol, rtol=rtol, fast=fast, order=order, seed=seed,
               limits=limits, max_steps=max_steps, max_depth=max_depth, progress=progress)
    expects = parse_expect(list(expect), ck)
    report = Report(traced_label(ck.traced), method=method, order=order, dtype=dtype,
                    mode="full" if ck.full else "projections", rtol=ck.rtol, atol=ck.atol,
                    eps=ck.eps, notes=ck.notes)
    try:
        run_checks(ck, report, expects)
    except AdcliError as e:
        raise _located(e, ck.ref)
    return report


def traced_label(traced):
    return traced.label or traced.source


def run_checks(ck, report, expects):
    if ck.full:
        numeric = numeric_columns(ck)
        first, _ = first_order_full(ck, ck.traced, numeric, ck.rtol, ck.atol)
    else:
        numeric = numeric_projections(ck)
        first, _ = first_order_fast(ck, ck.traced, numeric, ck.rtol, ck.atol)
    report.evaluations = ck.numeric.evaluations
    name_kinks(ck, first.rows)
    rows, fo_status = list(first.rows), dict(first.status)
    report.inputs = first.stats

    second_status = {}
    if ck.order == 2:
        hv, est = second_order(ck, ck.traced)
        hrows, second_status = second_order_rows(ck, hv, est, ck.rtol, ck.atol)
        rows += hrows

    rounding = False
    if ck.dtype != "float64" and any(r.status == "FAIL" for r in rows):
        rounding, rows, fo_status, second_status = recheck_in_float64(
            ck, report, numeric, rows, fo_status, second_status)

    if ck.script:
        report.rules = check_rules(ck)
        if ck.order == 2:
            report.rules += check_rules_second_order(ck)
    report.expects = check_expect(ck, expects, numeric)
    for r in report.rules:
        rows += r["rows"]
    for e in report.expects:
        rows += e["rows"]
    report.rows = sorted(rows, key=Row.sort_key)
    verdict(ck, report, fo_status, second_status, rounding)


def recheck_in_float64(ck, report, numeric, rows, fo_status, second_status):
    """A float32 run failed: is it the derivative or float32 rounding? Compare adcli's
    float64 derivatives with the same numeric ones, at float64 tolerances."""
    rtol = ck.rtol64
    atol = ck.atol64
    if ck.full:
        first, _ = first_order_full(ck, ck.ref, numeric, rtol, atol)
    else:
        first, _ = first_order_fast(ck, ck.ref, numeric, rtol, atol, locate=True)
    new_rows, new_status = list(first.rows), dict(first.status)
    new_second = {}
    if ck.order == 2:
        hv, est = second_order(ck, ck.ref)
        hrows, new_second = second_order_rows(ck, hv, est, rtol, atol)
        new_rows += hrows
    if any(r.status == "FAIL" for r in new_rows):
        report.notes.append("note: adcli's float64 derivatives disagree as well, so this is not "
                            "float32 rounding")
        return False, rows, fo_status, second_status
    for r in rows:
        if r.status == "FAIL":
            r.status = "rounding"
    fo_status = {k: np.where(v == "FAIL", "rounding", v) for k, v in fo_status.items()}
    second_status = {k: np.where(v == "FAIL", "rounding", v) for k, v in second_status.items()}
    return True, rows, fo_status, second_status


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
            at = "" if worst.index in ((), None) else f" at {worst.input}{_text_index(worst.index)}"
            along = " (along a random direction)" if worst.index is None else ""
            parts.append(f'--expect {e["name"]}="{e["formula"]}" is wrong: it gives '
                         f"{_num(worst.analytic)} where the numeric derivative{along} is "
                         f"{_num(worst.numeric)}{at}")
    explained = {n for r in report.rules if r["status"] == "fail" for n in r["inputs"]}
    unexplained = [n for n in wrong_first if n not in explained]
    if unexplained:
        parts.append(f"the {what} of {_names(unexplained)} disagrees with finite differences"
                     + _blocked_hint(ck))
    unexplained2 = [n for n in wrong_second if n not in explained]
    if unexplained2:
        parts.append(f"second derivatives (Hessian-vector products) of {_names(unexplained2)} "
                     "disagree with differences of the gradient")
    nonsmooth = _kink_rows(report) or [r for r in rows if r.status == "nonsmooth"]
    nonsmooth.sort(key=lambda r: r.check == "hvp")   # first derivatives first
    how = ("complex step" if ck.method == "complex" else "central differences")
    if fails:
        report.verdict = "fail"
        report.message = "; ".join(parts) if parts else "a derivative is wrong"
    elif rounding:
        report.verdict = "rounding"
        report.message = (f"adcli's float32 derivatives differ from the numeric ones by more than "
                          f"rtol {_num(ck.rtol)}, atol {_num(ck.atol)}, but its float64 ones agree: "
                          "the difference is float32 rounding, not a wrong derivative")
        report.notes.append("warning: " + report.message)
    elif nonsmooth:
        report.verdict = "nonsmooth"
        first = nonsmooth[0]
        where = (f"{first.input}{_text_index(first.index)}" if first.index is not None
                 else f"{first.input} (along a random direction)")
        kink = f", on a kink of {first.kinks[0]}" if first.kinks else ""
        more = len(nonsmooth) - 1
        more = f" (and {more} more entr{'y' if more == 1 else 'ies'})" if more else ""
        jump = math.isinf(first.left) or math.isinf(first.right)
        report.message = (f"{where} is a non-smooth point{kink}{more}: the one-sided slopes are "
                          f"{_num(first.left)} (left) and {_num(first.right)} (right)"
                          + (("; the gradient jumps there" if first.check == "hvp"
                              else "; the function jumps there") if jump else
                             f", and adcli's {_num(first.analytic)} lies between them")
                          + "; everything else agrees")
        report.notes.append("note: " + report.message)
    else:
        statuses = list(fo_status.values()) + list(second_status.values())
        n_all = sum(s.size for s in statuses)
        n_skipped = sum(int(np.sum(s == "skipped")) for s in statuses)
        if n_all and n_skipped == n_all and not report.rules and not report.expects:
            report.verdict = "unchecked"
            report.message = ("nothing could be checked: the function is not finite within the "
                              "step around this point, so there is no numeric derivative to "
                              "compare with (try a smaller --eps, or another point)")
            report.notes.append("warning: " + report.message)
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
                          + f" (rtol {_num(ck.rtol)}, atol {_num(ck.atol)})")
        if n_skipped:
            report.message += (f"; {_count(n_skipped, 'entr', 'y', 'ies')} could not be checked "
                               "(the function is not finite within the step)")


def _blocked_hint(ck):
    """Finite differences see through ops whose derivative is 0 by definition (detach)."""
    from .graph import reachable
    graph = ck.ref.graph
    for i in reachable([ck.ref.output]):
        node = graph.nodes[i]
        op = node.op
        if (op is not None and not op.differentiable and op.kink is None
                and op.kind not in ("comparison", "constant") and i in ck.replay.depends):
            return (f" (the value goes through {op.name} at {_where(node.pos, ck.ref)}, whose "
                    "derivative is 0 by definition; finite differences see through it)")
    return ""


# ---------------------------------------------------------------- output

def _num(x):
    """Numbers in reports: 10 significant digits (the numeric side is an estimate);
    format's g gives nan, inf and -inf as they are."""
    return "-" if x is None else f"{float(x):.10g}"


def _short(x):
    return f"{float(x):.2g}"


def _text_index(index):
    if index is None:
        return "*"
    if index == ():
        return ""
    return "[" + ", ".join(map(str, index)) + "]"


def _index_cell(index):
    return "-" if index == () else _text_index(index)


HEADER = ("check", "input", "index", "analytic", "numeric", "abs_diff", "rel_diff",
          "tolerance", "status")


def _cells(row):
    return (row.check, row.input, _index_cell(row.index), _num(row.analytic), _num(row.numeric),
            _short(row.abs_diff), _short(row.rel_diff), _short(row.tolerance), row.status)


def _kink_rows(report):
    """The non-smooth points, once each (a gradient's row and an --expect row share one)."""
    points = {}
    for r in report.rows:
        if r.status == "nonsmooth" and r.left is not None and r.check not in ("expect", "rule", "rule2"):
            points.setdefault((r.check, r.input, r.index), r)
    found = list(points.values())
    elements = [r for r in found if r.index is not None]   # a projection's entries, if located
    return (elements or found)[:SHOWN]


def to_plain(report):
    lines = ["\t".join(HEADER)]
    lines += ["\t".join(_cells(r)) for r in report.shown]
    for r in _kink_rows(report):
        lines.append("\t".join(("kink", r.input, _index_cell(r.index), _num(r.left),
                                _num(r.right), "; ".join(r.kinks) or "-")))
    lines.append(f"verdict\t{report.verdict}\t{report.message}")
    return "\n".join(lines)


def _row_json(r):
    obj = {"check": r.check, "input": r.input,
           "index": None if r.index is None else list(r.index),
           "analytic": _jnum(r.analytic), "numeric": _jnum(r.numeric),
           "abs_diff": _jnum(r.abs_diff), "rel_diff": _jnum(r.rel_diff),
           "tolerance": _jnum(r.tolerance), "status": r.status}
    if r.left is not None:
        obj["left"], obj["right"], obj["kinks"] = _jnum(r.left), _jnum(r.right), r.kinks
    return obj


def _jnum(x):
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def to_json(report):
    obj = {
        "expr": report.expr, "verdict": report.verdict, "message": report.message,
        "method": report.method, "order": report.order, "mode": report.mode,
        "tolerances": {"rtol": report.rtol, "atol": report.atol, "eps": report.eps,
                       "safety": SAFETY},
        "worst": [_row_json(r) for r in report.rows[:SHOWN]],
        "inputs": report.inputs,
        "rules": [{k: v for k, v in r.items() if k != "rows"} | {"rows": [_row_json(x) for x in r["rows"]]}
                  for r in report.rules],
        "expect": [{"name": e["name"], "formula": e["formula"], "status": e["status"],
                    "rows": [_row_json(x) for x in e["rows"][:SHOWN]]} for e in report.expects],
        "nonsmooth": [_row_json(r) for r in report.rows if r.status == "nonsmooth"][:SHOWN],
        "dtype": report.dtype, "device": report.device,
    }
    return json.dumps(obj)


def to_rich(report, console):
    """The report as a table that fits the terminal: an entry is its input and index
    (x[1]), numbers are never cut, and on a narrow terminal the tolerance, abs diff and
    check columns are left out, in that order."""
    from rich.text import Text

    from .render import fit, left_out_note
    title = report.expr if len(report.expr) <= 80 else report.expr[:77] + "..."
    style = {"ok": "green", "FAIL": "bold red", "nonsmooth": "yellow", "rounding": "yellow",
             "skipped": "dim"}
    numbers = ("analytic", "numeric", "abs_diff", "rel_diff", "tolerance")
    columns = [(h.replace("_", " "), dict(no_wrap=True, justify="right" if h in numbers else
                                          "left"))
               for h in ("check", "input") + HEADER[3:]]
    rows = []
    for r in report.shown:
        cells = list(_cells(r))
        cells[1:3] = [r.input + ("" if r.index == () else _text_index(r.index))]
        cells[-1] = Text(cells[-1], style=style.get(r.status, ""))
        rows.append(cells)
    table, left_out = fit(console, columns, rows, ("tolerance", "abs diff", "check", "rel diff"),
                          title=f"gradcheck {title}", header_style="bold")
    console.print(table)
    left_out_note(console, left_out)
    for r in _kink_rows(report):
        console.print(Text("non-smooth ", style="yellow") + Text(
            f"{r.input}{_text_index(r.index)}: left slope {_num(r.left)}, right slope "
            f"{_num(r.right)}" + (f"; kink of {', '.join(r.kinks)}" if r.kinks else "")))
    color = {"pass": "bold green", "fail": "bold red"}.get(report.verdict, "bold yellow")
    console.print(Text(f"{report.verdict}: ", style=color) + Text(report.message))
