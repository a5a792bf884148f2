"""Numeric derivatives of a function given as a Python callable (check/function.py).

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

The complex step (`--method complex`): for f real-analytic, f(x + i h) = f(x) + i h f'(x)
- h^2 f''(x)/2 + ..., so f'(x) = Im f(x + i h) / h with no subtraction at all: h = 1e-20
gives f' to rounding. Ops with kinks are not analytic and are refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-4                 # relative step: h = eps * max(1, |x|)
STEPS = 3                  # h, h/2, h/4
SAFETY = 10.0              # multiplies the numeric error estimate in the tolerance
COMPLEX_STEP = 1e-20
RETRY = 2.0 ** -7          # a doubtful column retries with its step times this ...
RETRIES = 2                # ... at most this many times
F64 = float(np.finfo(np.float64).eps)


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


class Numeric:
    """Derivatives of the function (a check.function.Function) by differences, along
    element directions (one input element at a time, or all of an input's at once on the
    evaluator's batch axis) or along dense directions."""

    def __init__(self, function, base, f0, eps, method, rtol, atol, progress=None):
        self.function, self.method, self.eps = function, method, eps
        # progress(done, total): once for the columns done all at once, then after each
        # column done one by one, the long part of a check
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
        v = np.asarray(self.function(self.work))
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
        fast = self._report_at_once(cols, slow)
        for done, c in enumerate(slow, fast + 1):
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
            self.progress(done, len(cols))
        return estimate(fp, fm, self.f0[None, None, :], h, self.rtol, self.atol)

    def _all_columns_at_once(self, cols, h, fp, fm):
        """Fill fp, fm by Function.columns, input by input; returns the columns it could not
        do (outside the batching rules, or where a script's branch changes), to be done one
        by one."""
        slow = []
        for j, cs in self._by_input(cols).items():
            ks = np.array([cols[c][1] for c in cs])
            x = self.base[j].reshape(-1)
            flipped = np.zeros(len(cs), bool)
            for s in range(STEPS):
                for sign, out in ((1.0, fp), (-1.0, fm)):
                    t = np.zeros(x.size)
                    t[ks] = sign * h[cs] / 2.0 ** s
                    # x + t, element by element, is exactly the point the loop would make
                    f = self.function.columns(j, x, t, ks)
                    if f is None:
                        break
                    self.evaluations += 1
                    out[cs, s] = f
                    flipped |= self.function.flipped
                if f is None:
                    break
            if f is None:
                slow += cs
            else:
                slow += [c for c, bad in zip(cs, flipped) if bad]
        return slow

    def _report_at_once(self, cols, slow):
        """Progress after the columns done all at once; the count of those columns."""
        fast = len(cols) - len(slow)
        if fast:
            self.progress(fast, len(cols))
        return fast

    @staticmethod
    def _by_input(cols):
        groups = {}
        for c, (j, k) in enumerate(cols):
            groups.setdefault(j, []).append(c)
        return groups

    def _complex_elements(self, cols):
        m = self.f0.size
        value = np.empty((len(cols), m))
        slow = []
        for j, cs in self._by_input(cols).items():   # all columns of an input at once if it can
            ks = [cols[c][1] for c in cs]
            t = np.zeros(self.base[j].size, dtype=np.complex128)
            t[ks] = 1j * COMPLEX_STEP
            f = self.function.columns(j, self.base[j].reshape(-1).astype(np.complex128), t, ks)
            if f is None:
                slow += cs
            else:
                self.evaluations += 1
                value[cs] = f.imag / COMPLEX_STEP
                slow += [c for c, bad in zip(cs, self.function.flipped) if bad]
        fast = self._report_at_once(cols, slow)
        for done, c in enumerate(slow, fast + 1):
            j, k = cols[c]
            flat = self.flat[j]
            x = flat[k]
            flat[k] = x + 1j * COMPLEX_STEP
            value[c] = np.asarray(self._f(None)).imag / COMPLEX_STEP
            flat[k] = x
            self.progress(done, len(cols))
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
            self.function(self.work, kinks=found)
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

