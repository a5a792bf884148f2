"""gradcheck: adcli's derivatives against numeric ones, and a verdict.

The analytic side is what `adcli grad` computes: the derivative rules of the op table (and
a script's `backward` rules) applied over the recorded program, in the chosen dtype. The
numeric side never uses a derivative rule: it evaluates the function itself at points moved
a little along one input element (or along a random direction), always in float64, through
the evaluator (check/function.py). The numerics are in check/numeric.py, the comparisons in
check/compare.py and check/rules.py, the verdict in check/rows.py, the output in
check/render.py.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..errors import AdcliError, InputError, UnknownNameError, ValueError_, note, suggest
from .compare import (first_order_fast, first_order_full, name_kinks, numeric_columns,
                      numeric_projections, second_order, second_order_rows)
from .function import Function
from .numeric import EPS, STEPS, Numeric
from .rows import Report, Row, located, quiet, verdict
from .rules import check_expect, check_rules, check_rules_second_order, parse_expect

TOLERANCES = {"float64": (1e-6, 1e-8), "float32": (1e-3, 1e-5)}   # (rtol, atol)
FULL_LIMIT = 2000          # inputs with at most this many elements together: every entry
JACOBIAN_LIMIT = 1_000_000  # ... if the Jacobian has at most this many entries
WORK_LIMIT = 5_000_000     # node evaluations a full check may spend one column at a time


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
        self.ref = self.traced if dtype == "float64" else self.trace(values, "float64", silent=True)
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
        function = Function(self.ref, self.names, retrace, complex_step=method == "complex")
        self.function = function
        self.numeric = Numeric(function, self.base, self.f0, self.eps, method, self.rtol, self.atol,
                               progress)
        with quiet():
            try:   # surface a complex-step refusal (an op without complex numbers) at once
                if method == "complex":
                    self.numeric.along(0, np.zeros(self.shapes[0]))
                if self.full:
                    self._afford_every_entry()
            except AdcliError as e:
                raise located(e, self.ref)

    def _afford_every_entry(self):
        """Inputs outside the all-columns-at-once evaluation are checked one column at a
        time, an evaluation of the program per column and step: for a long unrolled script
        that can take very long, and random projections are compared instead."""
        one_by_one = sum(size for j, size in enumerate(self.sizes)
                         if self.function.columns(j, self.base[j].reshape(-1), np.zeros(size),
                                                  [0]) is None)
        work = len(self.function.steps) * one_by_one * 2 * STEPS
        if work > WORK_LIMIT:
            self.full = False
            self.notes.append(note(
                "projections", f"comparing random projections (as with --fast): checking the "
                f"{sum(self.sizes):,} entries one at a time would evaluate {work:,} nodes"))

    # -------------------------------------------------------------- tracing
    def trace(self, values, dtype, silent=False):
        from .. import api
        with (quiet() if silent else contextlib.nullcontext()):
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
            again = self.trace(self.values_at(self.base), "float64", silent=True).output.value
            self.retrace_ok = bool(np.array_equal(again, self.ref.output.value))
            if not self.retrace_ok:
                self.notes.append(note(
                    "branches-kept", "a comparison in the script comes out differently within "
                    "the step, but running the script again with its inputs given would change "
                    "its random draws, so the branches taken at the point were kept"))
        if not self.retrace_ok:
            return None
        if arrays is None:
            return True
        return self.trace(self.values_at(arrays), "float64", silent=True).output.value

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


# ---------------------------------------------------------------- the whole check

def check_tolerances(eps, atol, rtol):
    """Refuse a step or tolerance that cannot be one."""
    if eps is not None and not (0 < eps < 1):
        raise InputError(f"--eps {eps}: the relative step must be between 0 and 1",
                         hint="for example --eps 1e-4")
    for opt, val in (("--atol", atol), ("--rtol", rtol)):
        if val is not None and not val >= 0:
            raise InputError(f"{opt} {val}: a tolerance must be 0 or more")


def check(source, values, *, script=False, filename=None, dtype="float64", wrt=None, expect=(),
          method="central", eps=None, atol=None, rtol=None, fast=False, order=1, seed=0,
          limits=None, max_steps=1_000_000, max_depth=64, progress=None):
    """Check the derivatives of `source` at `values` (name -> float64 array); a Report.
    `progress(done, total)` is called as the numeric derivatives are computed."""
    from .. import api
    api.check_dtype(dtype)
    if method not in ("central", "complex"):
        raise InputError(f"unknown --method '{method}'", hint="use central or complex")
    if order not in (1, 2):
        raise InputError(f"--order {order}: gradcheck checks first (1) or second (2) derivatives")
    check_tolerances(eps, atol, rtol)
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
        raise located(e, ck.ref)
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
        report.notes.append(note("not-rounding", "adcli's float64 derivatives disagree as well, "
                                 "so this is not float32 rounding"))
        return False, rows, fo_status, second_status
    for r in rows:
        if r.status == "FAIL":
            r.status = "rounding"
    fo_status = {k: np.where(v == "FAIL", "rounding", v) for k, v in fo_status.items()}
    second_status = {k: np.where(v == "FAIL", "rounding", v) for k, v in second_status.items()}
    return True, rows, fo_status, second_status


