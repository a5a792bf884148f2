"""`adcli profile`: where the time of a value and its derivatives goes, op by op.

One profile runs the work of `adcli grad` (or, with `derivative`, of `adcli jacobian`,
`hessian`, `jvp` or `hvp`) once untimed (the warm-up: caches, imports, and the checks that
give the usual errors and notes), then `repeat` times timed. Each timed run traces the
source again (parse, interpret, record the program), computes the value at the traced
point with the evaluator (adcli/evaluate.py), and then does the derivative's work: for
grad, the walk back from the value to the inputs (reverse mode, `autodiff.vjp`); for
jacobian and hessian, what those commands do (`adcli/derivatives.py`): their derivative
programs (a JVP or VJP transform, or the JVP of the recorded gradient) evaluated at all
the basis vectors at once, with the batch axis; for jvp and hvp, their one walk. A large
elementwise sum, which `adcli grad` differentiates in one fused kernel or in chunks
(adcli/chunks.py), is profiled that way too: its kernel (or the chunks' ops) timed by the
evaluator hook, in the backward phase, with the value in it, and no walk.

What is timed, and how it adds up:

* forward, per op: the op's forward rule alone, timed by an evaluator hook
  (`hook(node, args, compute)`, adcli/evaluate.py). The traced graph carries the hook
  from the start (`graph.hooks`), so every value computed at the traced point is timed:
  those a script decides on while it runs and the rest when the value is computed. For a
  derivative the value is computed keeping every forward value (graph.value), so the walk
  finds them all; unprofiled, the walk computes and keeps only those its rules read, so on
  large arrays a profiled run holds more memory and is a little slower (about 15% on the
  10^6-element case of benchmarks/bench_profile_overhead.py);
* forward, per fused kernel: the value is computed as grad computes it (for grad the
  values the walk reads, for the other commands every value, kept for the walks), so
  elementwise chains of large arrays run as generated kernels (adcli/fuse.py). The timing
  hook says it takes fused groups (`hook.groups`), so the evaluator times each kernel as
  a whole: one row per set of ops, `fused(sin, mul, ...)`; by source line, a kernel's
  time is split over its ops' lines in proportion to how many of its ops sit on each;
* derivative (jacobian, hessian), per op of the derivative program or per fused kernel:
  timed by the same evaluator hook in the batched sweeps, so a row is an op of the
  program that ran (its rule's ops: `cos` and `mul` for the tangent of `sin`), called once
  a sweep, with all the basis vectors on its batch axis;
* backward (grad) or derivative (jvp, hvp), per op: from the start of a node's
  derivative rule to the start of the next node's, marked by the walks' `mark` callback,
  so a node's time includes the walk's bookkeeping of adding up its arguments'
  cotangents (or tangents) and stepping over the nodes that have no rule to run. A value
  first needed by a rule (a node of the recorded gradient, for --hessian) is computed
  within that rule's time;
* `(tracing overhead)`: the trace and the value minus the ops' forward rules: parsing, the
  script interpreter, checking shapes, recording nodes, the evaluator's loop, and the
  literals (constants, zeros(...), randn(...): computed as they are recorded);
* `(backward overhead)` / `(derivative overhead)`: the rest of the derivative's work:
  finding the nodes on a differentiable path, the NaN check (and the NaN-safe walk, when
  one is needed); for the other commands also the basis vectors, filling in the result,
  recording the gradient graph (--hessian, --hvp) and the result's notes.

So the rows add up to the wall time of the timed runs: the total of the table is what the
same work costs unprofiled, plus the profiler's own bookkeeping (two clock readings per op
forward, one per node backward; `benchmarks/bench_profile_overhead.py` measures it).

Hooks. Nothing global: off, a graph's hooks are empty (the evaluator checks once per op)
and the walks' `mark` is None (checked once per node). While profiling, the timed graphs
are traced with `hooks=(timing hook,)` (api.trace's argument), so that Graph.emit leaves
even all-scalar nodes to the evaluator, which times them; the hooks are taken off the
graph before the derivative's work, which runs as it does unprofiled, with `mark` passed.

GPU backends. Array libraries for GPUs return from a call when the kernel is queued, not
when it has run, so a plain clock would time the launch. Every clock reading of the
profiler is preceded by the backend's synchronize hook, looked up by the array module's
name in `SYNC_HOOKS` (for CuPy: `register_sync("cupy", lambda:
cupy.cuda.get_current_stream().synchronize())`). numpy needs none: its work is done when a
call returns. A graph on another backend without a hook gets a note that its times may
measure launches only. (adcli has no GPU backend yet: this is the place one plugs in.)
"""
from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import errors

clock = time.perf_counter_ns          # integer nanoseconds: sums stay exact
PHASES = ("forward", "backward", "derivative")
OVERHEAD = {"forward": "(tracing overhead)", "backward": "(backward overhead)",
            "derivative": "(derivative overhead)"}
TRACING, BACKWARD_OVERHEAD = OVERHEAD["forward"], OVERHEAD["backward"]
DERIVATIVES = ("jacobian", "hessian", "jvp", "hvp")   # commands whose work profile can time
SORT_KEYS = ("self", "calls", "name")
FORMATS = ("table", "csv", "json")
MAX_TRACE_EVENTS = 100_000            # op events written by --trace (first timed run only)
SHAPES_SHOWN = 3                      # distinct input-shape signatures shown in a table cell
SHAPES_KEPT = 20                      # ... and listed in JSON


# ---------------------------------------------------------------- device synchronisation

SYNC_HOOKS = {}    # array module name (xp.__name__) -> function that waits for queued work


def register_sync(module_name, synchronize):
    """Make the profiler wait for the device of array module `module_name` before every
    clock reading, so that times measure the device's work, not kernel launches."""
    SYNC_HOOKS[module_name] = synchronize


def sync_hook(xp):
    """The synchronize function of a backend: None for numpy (a call returns when its
    work is done) and for a backend that registered none."""
    if xp is np:
        return None
    return SYNC_HOOKS.get(getattr(xp, "__name__", ""))


# ---------------------------------------------------------------- recording

class Profiler:
    """The raw records of one timed run. In the forward phase `hook` is the evaluator hook
    that times each op; in the backward or derivative phase `mark` is the walks' callback
    (None: not timing). Both are small functions made for the phase being timed, so that
    the timed path does no more than read the clock and append."""

    def __init__(self):
        self.sync = None
        self.notes = []
        self.phase = None          # "forward", "backward", "derivative" or None
        self.forward_records = []  # (node, start, end) of each forward rule, in ns
        self.after_records = []    # the same, of the derivative programs' ops (sweeps, and
                                   # grad's fused or chunked elementwise sums)
        self.marks = []            # node, ns, node, ns, ...: a rule starts; None, ns: a walk ends
        self.hook, self.mark = None, None

    def attach(self, xp):
        """Time work on array module `xp`: pick its backend's sync hook."""
        self.sync = sync_hook(xp)
        if self.sync is None and xp is not np:
            name = getattr(xp, "__name__", "this backend")
            note = errors.note("no-sync-hook", f"{name} has no synchronize hook "
                               "(adcli.profile.register_sync): times may measure kernel "
                               "launches, not the device's work")
            if note not in self.notes:
                self.notes.append(note)

    def begin(self, phase):
        """Time `phase` from now on; None stops timing."""
        self.phase = phase
        records = {"forward": self.forward_records, "backward": self.after_records,
                   "derivative": self.after_records}.get(phase)
        self.hook = None if records is None else _forward_timer(records.append, self.sync)
        self.mark = None if phase not in ("backward", "derivative") else _marker(
            self.marks.append, self.sync)

    def now(self):
        if self.sync is not None:
            self.sync()
        return clock()

    def clear(self):
        self.forward_records.clear()
        self.after_records.clear()
        self.marks.clear()


def _forward_timer(append, sync):
    """The evaluator hook hook(node, args, compute): run one op's forward rule, or one fused
    kernel (node: a fuse.Group; groups=True lets the evaluator fuse), timed. A kernel that
    does not take these inputs (compute gives None) leaves no record: its ops run one by
    one after it, each timed."""
    if sync is None:
        def hook(node, args, compute):
            start = clock()
            value = compute(args)
            if value is not None:
                append((node, start, clock()))
            return value
        hook.groups = True
        return hook

    def hook_synced(node, args, compute):
        sync()
        start = clock()
        value = compute(args)
        sync()
        if value is not None:
            append((node, start, clock()))
        return value
    hook_synced.groups = True
    return hook_synced


def _marker(append, sync):
    """mark(node): a rule starts now (None: the walk ends)."""
    if sync is None:
        def mark(node):
            append(node)
            append(clock())
        return mark

    def mark_synced(node):
        sync()
        append(node)
        append(clock())
    return mark_synced


# ---------------------------------------------------------------- results

@dataclass
class Row:
    """One op in one phase, summed over the timed runs (or an overhead row)."""
    op: str
    phase: str
    calls: int = 0
    self_ns: int = 0
    shapes: dict = field(default_factory=dict)   # input-shape signature -> None, first seen first

    @property
    def mean_ns(self):
        return self.self_ns / self.calls if self.calls else 0.0

    @property
    def overhead(self):
        return self.op.startswith("(")


@dataclass
class LineRow:
    """The op time of one source line in one phase (scripts)."""
    line: object          # the line number, or None for nodes without a place
    phase: str
    calls: int = 0
    self_ns: int = 0
    text: str = ""


@dataclass
class Profile:
    label: str
    repeat: int
    rows: list                   # Row: op rows, then the overhead rows
    lines: list = None           # LineRow, for scripts
    events: list = None          # Chrome trace events of the first timed run (--trace)
    dropped_events: int = 0
    notes: list = field(default_factory=list)
    derivative: str = "grad"     # the command whose work was timed after the value, or None
    #                              (the value is not a scalar: the value only)

    @property
    def backward(self):
        """Was a gradient profiled (a backward phase)?"""
        return self.derivative == "grad"

    @property
    def total_ns(self):
        return sum(r.self_ns for r in self.rows)

    @property
    def lines_total_ns(self):
        return sum(r.self_ns for r in self.lines or [])


def op_name(node):
    """A row's op: the node's op name, or fused(sin, mul, ...) for a fused kernel."""
    return node.op.name if node.op is not None else node.label


def _line_shares(node, ns):
    """[(line, ns)]: an op's time goes to its line; a fused kernel's is split over the
    lines of the ops it computes, in proportion to how many of them sit on each line
    (integer nanoseconds that add up to the kernel's time)."""
    if node.op is not None:
        return [(node.pos[0] if node.pos else None, ns)]
    counts = {}
    for n in node.nodes:
        line = n.pos[0] if n.pos else None
        counts[line] = counts.get(line, 0) + 1
    total, done, out = sum(counts.values()), 0, []
    for k, (line, c) in enumerate(counts.items()):
        share = ns - done if k == len(counts) - 1 else ns * c // total
        done += share
        out.append((line, share))
    return out


class _Totals:
    """Adds the records of each timed run into rows, by op and by source line."""

    def __init__(self, source_lines, after):
        self.rows = {}                # (op name, phase) -> Row
        self.lines = {} if source_lines is not None else None   # (line, phase) -> LineRow
        self.source_lines = source_lines
        self.after = after            # the phase after the forward one, or None
        self.overhead = [Row(OVERHEAD[p], p) for p in ("forward", after) if p]

    def add(self, node, phase, ns, first_run):
        name = op_name(node)
        row = self.rows.get((name, phase))
        if row is None:
            row = self.rows[(name, phase)] = Row(name, phase)
        row.calls += 1
        row.self_ns += ns
        if first_run:                 # every timed run traces the same graph again
            row.shapes[tuple([a.shape for a in node.args])] = None
        if self.lines is not None:
            for line, share in _line_shares(node, ns):
                lr = self.lines.get((line, phase))
                if lr is None:
                    lr = self.lines[(line, phase)] = LineRow(line, phase, text=self.text(line))
                lr.calls += 1
                lr.self_ns += share

    def text(self, line):
        if line is None or not 0 < line <= len(self.source_lines):
            return "(no source line)"
        return self.source_lines[line - 1].strip()

    def add_run(self, profiler, spans, first_run):
        """spans: (trace start, value end, derivative start, derivative end), or the
        derivative's None."""
        forward = 0
        for node, start, end in profiler.forward_records:
            forward += end - start
            self.add(node, "forward", end - start, first_run)
        after = 0
        for node, start, end in [*_rule_intervals(profiler.marks), *profiler.after_records]:
            after += end - start
            self.add(node, self.after, end - start, first_run)
        t0, t1, t2, t3 = spans
        self._overhead(0, (t1 - t0) - forward)
        if t2 is not None:
            self._overhead(1, (t3 - t2) - after)

    def _overhead(self, k, ns):
        row = self.overhead[k]
        row.calls += 1
        row.self_ns += ns


def _rule_intervals(marks):
    """(node, start, end) for each rule of the walks recorded in `marks`: from its mark to
    the next. A None mark ends a walk (vjp walks twice when the first walk gives a NaN; a
    Jacobian walks once per basis vector)."""
    for k in range(0, len(marks) - 2, 2):
        if marks[k] is not None:
            yield marks[k], marks[k + 1], marks[k + 3]


def profile(make_traced, wrt=None, repeat=5, *, script=False, trace_events=False,
            max_events=MAX_TRACE_EVENTS, progress=None, derivative=None):
    """Profile the value and the gradient of what `make_traced(hooks=())` traces (an
    api.Traced, its graph carrying the evaluator hooks given), `repeat` times after one
    warm-up. wrt: the input names to differentiate (default all). A value that is not a
    scalar is profiled without a gradient, with a note.
    derivative: instead of the gradient, (command name, run) where run(traced, profiler)
    does that command's work (a function of adcli/derivatives.py, passing the profiler's
    evaluator hook to its sweeps or its `mark` to its walks; profiler None: untimed) and
    returns its api.Result.
    progress(done, repeat) is called after each timed run, outside the timings."""
    from . import api, autodiff, chunks
    from .evaluate import evaluate
    from .graph import reachable
    traced = make_traced()                                  # warm-up, and the usual checks
    if derivative is not None:
        name, run_derivative = derivative
        result, after = run_derivative(traced, None), "derivative"
    elif traced.output.size == 1 and traced.output.dtype.kind == "f":
        name, after = "grad", "backward"
        result = api.gradient(traced, wrt)
        wrt = list(result.grad)
    else:
        name = after = None
        result = api.evaluate(traced)
        result.notes.insert(0, errors.note(
            "value-only", f"the value has shape {tuple(traced.output.shape)}: profiling the "
            "value only, without a gradient (profile sum(...) of it for the backward pass)"))

    def elementwise_sum(traced):
        """grad's plan for a large elementwise sum (adcli/chunks.py), or None: its value and
        gradient come from one fused kernel (or chunked sweeps), not from a walk."""
        if derivative is not None or after is None:
            return None
        return chunks.elementwise_sum(traced.graph, traced.output,
                                      [traced.inputs[w] for w in wrt])

    def forward_values(traced, plan):
        """The values the derivative's work reads, computed as grad computes them (fused
        kernels where they apply, timed as kernels) and kept: for grad the values its walk
        reads (none for an elementwise sum, `plan`, whose kernel computes its value), for
        the other commands every value."""
        graph, out = traced.graph, traced.output
        if plan is not None:
            return
        keep = autodiff.walk_reads(graph, out, [traced.inputs[w] for w in wrt]) \
            if derivative is None else [graph.nodes[i] for i in reachable([out])]
        _keep(graph, evaluate(graph, [out], hooks=graph.hooks, charge=False, keep=keep))

    if after is not None:           # its kernels compiled in the warm-up too
        with contextlib.redirect_stderr(io.StringIO()):     # (a script's print: shown once)
            warm = make_traced()
            forward_values(warm, elementwise_sum(warm))
            del warm
    notes = list(result.notes)
    label = traced.label or traced.source
    totals = _Totals(traced.source.splitlines() if script else None, after)
    profiler, events, dropped = Profiler(), None, 0
    profiler.attach(traced.graph.xp)
    del traced, result
    gc.collect()

    for run in range(repeat):
        traced = None
        was_enabled = gc.isenabled()
        gc.disable()                # as in api.trace and api.gradient
        try:
            # a script's print() would repeat once per run: the warm-up has shown it
            with contextlib.redirect_stderr(io.StringIO()):
                profiler.begin("forward")
                t0 = profiler.now()
                traced = make_traced(hooks=(profiler.hook,))
                graph, out = traced.graph, traced.output
                plan = elementwise_sum(traced)
                if after is not None:
                    forward_values(traced, plan)
                else:                     # as api.evaluate: freed after their last reader
                    graph.values[out.id] = evaluate(graph, [out], hooks=graph.hooks,
                                                    charge=False)[out.id]
                t1 = profiler.now()
            graph.hooks = ()            # the derivative's work runs as unprofiled, marked
            t2 = t3 = None
            if after is not None:
                profiler.begin(after)
                t2 = profiler.now()
                with np.errstate(all="ignore"):
                    if plan is not None:     # as api.gradient: the kernel, or the chunks
                        graph.values[out.id], _ = chunks.gradient(
                            graph, out, [traced.inputs[w] for w in wrt], plan,
                            hooks=(profiler.hook,))
                    elif derivative is None:
                        autodiff.vjp(graph, out, [traced.inputs[w] for w in wrt],
                                     mark=profiler.mark)
                    else:
                        run_derivative(traced, profiler)
                t3 = profiler.now()
        finally:
            profiler.begin(None)
            if was_enabled:
                gc.enable()
        spans = (t0, t1, t2, t3)
        totals.add_run(profiler, spans, first_run=run == 0)
        if run == 0 and trace_events:
            events, dropped = chrome_events(profiler, spans, max_events, name)
        profiler.clear()
        del traced, graph, out, plan
        gc.collect()                # the graph's nodes and graph refer to each other
        if progress is not None:
            progress(run + 1, repeat)
    rows = list(totals.rows.values()) + totals.overhead
    lines = list(totals.lines.values()) if totals.lines is not None else None
    return Profile(label, repeat, rows, lines, events, dropped, notes + profiler.notes, name)


def _keep(graph, values):
    """Keep an evaluation's values beside the program, as the trace's own."""
    from .evaluate import _a_view, _nbytes
    known = graph.values
    for i, v in values.items():
        if known[i] is None:
            known[i] = v
            args = [known[a.id] for a in graph.nodes[i].args if known[a.id] is not None]
            if not _a_view(v, args):
                graph.held += _nbytes(v)


# ---------------------------------------------------------------- Chrome trace events

def chrome_events(profiler, spans, max_events, derivative="grad"):
    """Trace events of one run (Chrome's trace-event format, which Perfetto and
    chrome://tracing open): a "trace" slice and a "gradient" one (or one named after the
    derivative command profiled), and inside them one complete event ("ph": "X") per op
    execution, at most max_events of them. Times in microseconds from the start of the
    run. Returns (events, number of op events left out)."""
    t0, t1, t2, t3 = spans
    us = lambda ns: round((ns - t0) / 1000.0, 3)                # noqa: E731
    base = {"pid": 1, "tid": 1}
    events = [dict(base, name="process_name", ph="M", args={"name": "adcli profile"}),
              dict(base, name="thread_name", ph="M", args={"name": "main"}),
              dict(base, name="trace", cat="run", ph="X", ts=0.0, dur=us(t1),
                   args={"what": "parse, interpret, record and evaluate the graph"})]
    phase = "backward" if derivative == "grad" else "derivative"
    if t2 is not None:
        span, what = ("gradient", "reverse-mode walk from the value to the inputs") if (
            phase == "backward") else (derivative, f"the work of adcli {derivative}")
        events.append(dict(base, name=span, cat="run", ph="X", ts=us(t2),
                           dur=round((t3 - t2) / 1000.0, 3), args={"what": what}))
    ops = [(node, "forward", start, end) for node, start, end in profiler.forward_records]
    ops += [(node, phase, start, end) for node, start, end in
            [*_rule_intervals(profiler.marks), *profiler.after_records]]
    for node, phase, start, end in ops[:max_events]:
        shapes = _signature_text(tuple([a.shape for a in node.args]))
        if node.op is None:           # a fused kernel: the nodes it computes
            args = {"nodes": " ".join(f"%{n.id}" for n in node.nodes), "phase": phase,
                    "shapes": shapes}
        else:
            args = {"node": f"%{node.id}", "phase": phase, "shapes": shapes}
        if node.pos:
            args["line"], args["column"] = node.pos[0], node.pos[1]
        events.append(dict(base, name=op_name(node), cat=phase, ph="X", ts=us(start),
                           dur=round((end - start) / 1000.0, 3), args=args))
    return events, max(0, len(ops) - max_events)


def derivative_of(flags, wrt, mode, tangent, vector, stdin_free, seed):
    """(command name, run(traced, profiler)) of the derivative command that `adcli profile`
    times instead of grad (flags: command name -> given), or None for grad."""
    from . import derivatives, values
    from .errors import InputError
    from .sources import wrt_names
    chosen = [name for name, given in flags.items() if given]
    if len(chosen) > 1:
        raise InputError("--" + " and --".join(chosen) + ": profile one derivative at a time")
    name = chosen[0] if chosen else None
    for option, given, owner in (("--mode", mode, "jacobian"), ("--tangent", tangent, "jvp"),
                                 ("--vector", vector, "hvp")):
        if given and name != owner:
            raise InputError(f"{option} is for profile --{owner}")
    if name is None:
        return None
    if name == "jvp" and not tangent:
        raise InputError("profile --jvp needs --tangent NAME=VALUE for at least one input")
    if name == "hvp" and not vector:
        raise InputError("profile --hvp needs --vector NAME=VALUE for at least one input")
    resolved = {}           # the vectors, read once (stdin can only be read once)

    def vectors(traced, option, given):
        if option not in resolved:
            resolved[option] = values.resolve(given, traced.graph.dtype, traced.graph.limits,
                                              option, stdin_free=stdin_free, seed=seed)
        return resolved[option]
    names = wrt_names(wrt)
    def swept(work):
        """jacobian and hessian evaluate derivative programs in batched sweeps: timed op by
        op (or kernel by kernel) by the evaluator hook, which the graph carries too while
        they run, so that the program's parts that no basis vector moves (the partials,
        computed once) are timed when they are computed, as the forward values are."""
        def run(t, profiler):
            hooks = (profiler.hook,) if profiler else ()
            t.graph.hooks = hooks
            try:
                return work(t, hooks)
            finally:
                t.graph.hooks = ()
        return run
    mark = lambda profiler: profiler.mark if profiler else None              # noqa: E731
    run = {"jacobian": swept(lambda t, hooks: derivatives.jacobian(t, names, mode, hooks=hooks)),
           "hessian": swept(lambda t, hooks: derivatives.hessian(t, names, hooks=hooks)),
           "jvp": lambda t, p: derivatives.jvp(t, vectors(t, "--tangent", tangent), mark=mark(p)),
           "hvp": lambda t, p: derivatives.hvp(t, vectors(t, "--vector", vector), mark=mark(p))}
    return name, run[name]


def write_trace(p, path):
    """Write the Chrome trace-event JSON file of --trace; a note says how many op events
    were left out, if any."""
    from .errors import InputError
    from . import __version__
    # (no "displayTimeUnit": some Perfetto versions read "ns" there as the unit of "ts")
    doc = {"traceEvents": p.events or [],
           "otherData": {"tool": f"adcli {__version__}", "source": p.label[:200],
                         "note": "the first timed run; op events after the first "
                                 f"{MAX_TRACE_EVENTS:,} are left out"}}
    from .files import writing
    try:
        with writing(path) as f:
            json.dump(doc, f)
    except OSError as e:
        raise InputError(f"--trace {path}: {e.strerror}") from None
    if p.dropped_events:
        p.notes.append(errors.note("trace-events-left-out", f"--trace {path}: the first "
                                   f"{MAX_TRACE_EVENTS:,} op events written, "
                                   f"{p.dropped_events:,} left out"))


# ---------------------------------------------------------------- ordering and units

def sorted_rows(rows, key):
    """Op rows by `key` (self: most time first; calls: most calls first; name: by op name,
    forward before backward), then the overhead rows."""
    ops = [r for r in rows if not r.overhead]
    by_name = lambda r: (r.op, PHASES.index(r.phase))          # noqa: E731
    if key == "self":
        ops.sort(key=lambda r: (-r.self_ns, by_name(r)))
    elif key == "calls":
        ops.sort(key=lambda r: (-r.calls, -r.self_ns, by_name(r)))
    else:
        ops.sort(key=by_name)
    return ops + [r for r in rows if r.overhead]


def sorted_lines(lines, key):
    """Line rows by `key`; for name, in source order."""
    where = lambda r: (math.inf if r.line is None else r.line, PHASES.index(r.phase))  # noqa: E731
    if key == "self":
        return sorted(lines, key=lambda r: (-r.self_ns, where(r)))
    if key == "calls":
        return sorted(lines, key=lambda r: (-r.calls, -r.self_ns, where(r)))
    return sorted(lines, key=where)


UNITS = (("s", 1e9), ("ms", 1e6), ("us", 1e3), ("ns", 1.0))


def choose_unit(means_ns):
    """The largest unit in which the median time per call is at least 1: the typical
    figure has a few digits before the point."""
    if not means_ns:
        return UNITS[-1]
    typical = sorted(means_ns)[len(means_ns) // 2]
    for name, scale in UNITS:
        if typical >= scale:
            return name, scale
    return UNITS[-1]


def _time_text(ns, scale):
    v = ns / scale
    if scale == 1.0:
        return f"{v:,.0f}"
    if 0 < abs(v) < 0.0005:
        return "<0.001"
    return f"{v:,.3f}"


def _signature_text(signature, compact=False):
    """The shapes of one call's arguments: "(3,), ()"; compact, "3, ()" (a table on a
    terminal wraps between shapes, never inside one)."""
    if compact:
        return ", ".join("×".join(map(str, s)) or "()" for s in signature)
    return ", ".join(str(tuple(s)) for s in signature)


def shapes_text(row, compact=False):
    """The distinct argument shapes of a row, the first SHAPES_SHOWN of them in full."""
    kinds = [_signature_text(s, compact) for s in row.shapes]
    text = " | ".join(kinds[:SHAPES_SHOWN])
    if len(kinds) > SHAPES_SHOWN:
        text += f" | ... ({len(kinds) - SHAPES_SHOWN} more)"
    return text


def _share(ns, total):
    return ns / total if total else 0.0


def _trim(text, width=60):
    return text if len(text) <= width else text[:width - 3] + "..."


# ---------------------------------------------------------------- text, CSV, JSON

def _heading(p, unit):
    runs = f"{p.repeat} run{'s' if p.repeat != 1 else ''}"
    what = ("" if p.backward else " (the value only)" if p.derivative is None
            else f" (the value and the work of adcli {p.derivative})")
    label = " ".join(p.label.split())           # an expression may span lines
    return f"{_trim(label, 80)}{what}: {runs} after a warm-up; times in {unit}"


def table_rows(p, key, compact=False):
    """(unit, header, [cells], total cells) of the op table: the cells as text."""
    unit, scale = choose_unit([r.mean_ns for r in p.rows if not r.overhead]
                              or [r.mean_ns for r in p.rows])   # no ops: by the overhead
    total = p.total_ns
    header = ["op", "phase", "calls", f"self ({unit})", f"mean ({unit})", "share", "input shapes"]
    cells = [[r.op, r.phase, f"{r.calls:,}", _time_text(r.self_ns, scale),
              _time_text(r.mean_ns, scale), f"{100 * _share(r.self_ns, total):.1f}%",
              shapes_text(r, compact)] for r in sorted_rows(p.rows, key)]
    return unit, header, cells, ["total", "", "", _time_text(total, scale), "", "100.0%", ""]


def line_rows(p, key, trim=True):
    unit, scale = choose_unit([r.self_ns / r.calls for r in p.lines if r.calls])
    total = p.lines_total_ns
    header = ["line", "phase", "calls", f"self ({unit})", "share", "source"]
    cells = [["-" if r.line is None else str(r.line), r.phase, f"{r.calls:,}",
              _time_text(r.self_ns, scale), f"{100 * _share(r.self_ns, total):.1f}%",
              _trim(r.text) if trim else r.text] for r in sorted_lines(p.lines, key)]
    return unit, header, cells, ["total", "", "", _time_text(total, scale), "100.0%", ""]


def _aligned(header, cells, total, numeric):
    """Plain columns, numbers right-aligned, the last column unpadded."""
    table = [header] + cells + [total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    out = []
    for k, row in enumerate(table):
        if k == len(table) - 1:
            out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        parts = [c.rjust(w) if i in numeric else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        parts[-1] = row[-1]
        out.append("  ".join(parts).rstrip())
    return out


def to_plain(p, key="self"):
    unit, header, cells, total = table_rows(p, key)
    out = [_heading(p, unit)] + _aligned(header, cells, total, {2, 3, 4, 5})
    if p.lines is not None:
        unit, header, cells, total = line_rows(p, key)
        out += ["", f"by source line (the ops' time, without the overhead rows); times in {unit}"]
        out += _aligned(header, cells, total, {0, 2, 3, 4})
    return "\n".join(out)


def to_rich(p, console, key="self"):
    """The op table and, for a script, the line table, fitted to the terminal: op names,
    phases and times are never cut; on a narrow terminal the mean column, then the input
    shapes, are left out."""
    from .render import SECTION, fit, left_out_note
    unit, header, cells, total = table_rows(p, key, compact=True)
    columns = [(name, dict(style="bold cyan" if i == 0 else None, no_wrap=i < 6,
                           justify="right" if i in (2, 3, 4, 5) else "left"))
               for i, name in enumerate(header)]
    table, left_out = fit(console, columns, cells + [SECTION, total], (header[4], header[6]),
                          styles={len(cells) + 1: "bold"}, title=_heading(p, unit),
                          header_style="bold", title_justify="left")
    console.print(table)
    left_out_note(console, left_out)
    if p.lines is not None:
        unit, header, cells, total = line_rows(p, key, trim=False)   # it folds instead
        columns = [(name, dict(no_wrap=i < 5, justify="right" if i in (0, 2, 3, 4) else "left"))
                   for i, name in enumerate(header)]
        table, _ = fit(console, columns, cells + [SECTION, total], styles={len(cells) + 1: "bold"},
                       title=f"by source line (the ops' time, without the overhead rows); "
                             f"times in {unit}", header_style="bold", title_justify="left")
        console.print(table)


def to_csv(p, key="self"):
    """CSV in integer nanoseconds: a header, one row per op and phase, the overhead rows,
    and a `total` row (the sum of the rows above it). For a script, a blank line and the
    per-line table follow, with its own header and total row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    total = p.total_ns
    w.writerow(["op", "phase", "calls", "self_ns", "mean_ns", "share", "shapes"])
    for r in sorted_rows(p.rows, key):
        w.writerow([r.op, r.phase, r.calls, r.self_ns, round(r.mean_ns, 1),
                    round(_share(r.self_ns, total), 4), shapes_text(r)])
    w.writerow(["total", "", "", total, "", 1.0, ""])
    if p.lines is not None:
        total = p.lines_total_ns
        buf.write("\n")
        w.writerow(["line", "phase", "calls", "self_ns", "share", "source"])
        for r in sorted_lines(p.lines, key):
            w.writerow(["" if r.line is None else r.line, r.phase, r.calls, r.self_ns,
                        round(_share(r.self_ns, total), 4), r.text])
        w.writerow(["total", "", "", total, 1.0, ""])
    return buf.getvalue()


def to_json(p, key="self"):
    """One JSON object; times in integer nanoseconds ("unit": "ns")."""
    total = p.total_ns
    obj = {"expr": p.label, "unit": "ns", "repeat": p.repeat, "warmup": 1,
           "gradient": p.backward, "derivative": p.derivative, "rows": [], "total": total}
    for r in sorted_rows(p.rows, key):
        shapes = [[list(s) for s in sig] for sig in list(r.shapes)[:SHAPES_KEPT]]
        obj["rows"].append({"op": r.op, "phase": r.phase, "calls": r.calls,
                            "self_total": r.self_ns, "mean": r.mean_ns,
                            "share": _share(r.self_ns, total), "shapes": shapes,
                            "shape_kinds": len(r.shapes), "overhead": r.overhead})
    if p.lines is not None:
        total = p.lines_total_ns
        obj["lines"] = [{"line": r.line, "phase": r.phase, "calls": r.calls,
                         "self_total": r.self_ns, "share": _share(r.self_ns, total),
                         "source": r.text} for r in sorted_lines(p.lines, key)]
        obj["lines_total"] = total
    return json.dumps(obj)


__all__ = ["Profiler", "Profile", "profile", "register_sync", "sync_hook", "DERIVATIVES",
           "write_trace", "to_plain", "to_rich", "to_csv", "to_json", "SORT_KEYS", "FORMATS"]
