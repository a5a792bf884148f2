"""`adcli profile`: where the time of a value and its gradient goes, op by op.

One profile runs the work of `adcli grad` once untimed (the warm-up: caches, imports, and
the checks that give the usual errors and notes), then `repeat` times timed. Each timed
run traces the source again (parse, interpret, record the graph: the graph is
define-by-run, so tracing is the forward pass) and walks the recorded graph back from the
value to the inputs (reverse mode, `autodiff.vjp`).

What is timed, and how it adds up:

* forward, per op: the op's forward rule alone, inside `Graph.emit`;
* backward, per op: from the start of the node's derivative rule to the start of the next
  node's, so a node's time includes the walk's bookkeeping of adding up its arguments'
  cotangents and stepping over the nodes that have no rule to run;
* `(tracing overhead)`: the whole trace minus its ops' forward rules: parsing, the script
  interpreter, checking shapes and recording nodes;
* `(backward overhead)`: the whole reverse walk minus its nodes' rules: finding the nodes
  on a differentiable path, the NaN check (and the NaN-safe walk, when one is needed).

So the rows add up to the wall time of the timed runs: the total of the table is what the
same work costs unprofiled, plus the profiler's own bookkeeping (two clock readings per op
forward, one per node backward: about 15% on an unrolled scalar loop, a few percent on
array work; `benchmarks/bench_profile_overhead.py` measures it).

Hooks. Off, profiling costs almost nothing: `Graph.emit` checks `graph.profiler` once per
op, and the reverse walk reads it once per walk and then checks a local once per node.
While `profile` runs, `Graph.profiler_for_new_graphs` is set, so the graphs it traces carry
the profiler; nothing else changes.

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

from .graph import Graph

clock = time.perf_counter_ns          # integer nanoseconds: sums stay exact
PHASES = ("forward", "backward")
SORT_KEYS = ("self", "calls", "name")
FORMATS = ("table", "csv", "json")
TRACING, BACKWARD_OVERHEAD = "(tracing overhead)", "(backward overhead)"
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
    """The raw records of one timed run. `Graph.emit` calls `forward` for every op and
    `autodiff._vjp` calls `mark` (None: not timing) as each node's rule starts. Both are
    small functions made for the phase being timed, so that the timed path does no more
    than read the clock and append."""

    def __init__(self):
        self.sync = None
        self.notes = []
        self.phase = None          # "forward" while tracing, "backward" during the walk
        self.forward_records = []  # (node id, start, end) of each forward rule, in ns
        self.marks = []            # node, ns, node, ns, ...: a backward rule starts;
        #                            None, ns: a walk ends
        self.forward, self.mark = _untimed, None

    def attach(self, graph):
        """Called by each graph made while profiling: pick its backend's sync hook."""
        self.sync = sync_hook(graph.xp)
        if self.sync is None and graph.xp is not np:
            name = getattr(graph.xp, "__name__", "this backend")
            note = (f"note: {name} has no synchronize hook (adcli.profile.register_sync): "
                    "times may measure kernel launches, not the device's work")
            if note not in self.notes:
                self.notes.append(note)
        self.begin(self.phase)

    def begin(self, phase):
        """Time `phase` ("forward", "backward") from now on; None stops timing. Forward
        rules run outside the forward phase (those a custom backward rule adds) are not
        timed on their own: they are part of that rule's backward time."""
        self.phase = phase
        self.forward = _untimed if phase != "forward" else _forward_timer(
            self.forward_records.append, self.sync)
        self.mark = None if phase != "backward" else _marker(self.marks.append, self.sync)

    def now(self):
        if self.sync is not None:
            self.sync()
        return clock()

    def clear(self):
        self.forward_records.clear()
        self.marks.clear()


def _untimed(fwd, xp, values, attrs, node_id):
    return fwd(xp, *values, **attrs)


def _forward_timer(append, sync):
    """forward(fwd, xp, values, attrs, node id): run one op's forward rule, timed."""
    if sync is None:
        def forward(fwd, xp, values, attrs, node_id):
            start = clock()
            value = fwd(xp, *values, **attrs)
            append((node_id, start, clock()))
            return value
        return forward

    def forward_synced(fwd, xp, values, attrs, node_id):
        sync()
        start = clock()
        value = fwd(xp, *values, **attrs)
        sync()
        append((node_id, start, clock()))
        return value
    return forward_synced


def _marker(append, sync):
    """mark(node): a backward rule starts now (None: the walk ends)."""
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


@contextlib.contextmanager
def profiling(profiler):
    """Graphs made inside this block carry `profiler`."""
    before = Graph.profiler_for_new_graphs
    Graph.profiler_for_new_graphs = profiler
    try:
        yield profiler
    finally:
        Graph.profiler_for_new_graphs = before


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
    backward: bool = True        # False when the value is not a scalar: no gradient

    @property
    def total_ns(self):
        return sum(r.self_ns for r in self.rows)

    @property
    def lines_total_ns(self):
        return sum(r.self_ns for r in self.lines or [])


class _Totals:
    """Adds the records of each timed run into rows, by op and by source line."""

    def __init__(self, source_lines):
        self.rows = {}                # (op name, phase) -> Row
        self.lines = {} if source_lines is not None else None   # (line, phase) -> LineRow
        self.source_lines = source_lines
        self.overhead = {TRACING: Row(TRACING, "forward"),
                         BACKWARD_OVERHEAD: Row(BACKWARD_OVERHEAD, "backward")}

    def add(self, node, phase, ns, first_run):
        row = self.rows.get((node.op.name, phase))
        if row is None:
            row = self.rows[(node.op.name, phase)] = Row(node.op.name, phase)
        row.calls += 1
        row.self_ns += ns
        if first_run:                 # every timed run traces the same graph again
            row.shapes[tuple([a.value.shape for a in node.args])] = None
        if self.lines is not None:
            line = node.pos[0] if node.pos else None
            lr = self.lines.get((line, phase))
            if lr is None:
                lr = self.lines[(line, phase)] = LineRow(line, phase, text=self.text(line))
            lr.calls += 1
            lr.self_ns += ns

    def text(self, line):
        if line is None or not 0 < line <= len(self.source_lines):
            return "(no source line)"
        return self.source_lines[line - 1].strip()

    def add_run(self, profiler, graph, spans, first_run):
        """spans: (trace start, trace end, walk start, walk end), or the walk's None."""
        nodes = graph.nodes
        forward = 0
        for node_id, start, end in profiler.forward_records:
            forward += end - start
            self.add(nodes[node_id], "forward", end - start, first_run)
        backward = 0
        for node, start, end in _backward_intervals(profiler.marks):
            backward += end - start
            self.add(node, "backward", end - start, first_run)
        t0, t1, t2, t3 = spans
        self._overhead(TRACING, (t1 - t0) - forward)
        if t2 is not None:
            self._overhead(BACKWARD_OVERHEAD, (t3 - t2) - backward)

    def _overhead(self, name, ns):
        row = self.overhead[name]
        row.calls += 1
        row.self_ns += ns


def _backward_intervals(marks):
    """(node, start, end) for each rule of the walks recorded in `marks`: from its mark to
    the next. A None mark ends a walk (vjp walks twice when the first walk gives a NaN)."""
    for k in range(0, len(marks) - 2, 2):
        if marks[k] is not None:
            yield marks[k], marks[k + 1], marks[k + 3]


def profile(make_traced, wrt=None, repeat=5, *, script=False, trace_events=False,
            max_events=MAX_TRACE_EVENTS, progress=None):
    """Profile the value and the gradient of what `make_traced()` traces (an api.Traced),
    `repeat` times after one warm-up. wrt: the input names to differentiate (default all).
    A value that is not a scalar is profiled without a gradient, with a note.
    progress(done, repeat) is called after each timed run, outside the timings."""
    from . import api, autodiff
    traced = make_traced()                                  # warm-up, and the usual checks
    backward = traced.output.size == 1 and traced.output.dtype.kind == "f"
    if backward:
        result = api.gradient(traced, wrt)
        wrt = list(result.grad)
    else:
        result = api.evaluate(traced)
        result.notes.insert(0, f"note: the value has shape {tuple(traced.output.shape)}: "
                               "profiling the value only, without a gradient "
                               "(profile sum(...) of it for the backward pass)")
    notes = list(result.notes)
    label = traced.label or traced.source
    totals = _Totals(traced.source.splitlines() if script else None)
    del traced, result
    gc.collect()

    profiler, events, dropped = Profiler(), None, 0
    for run in range(repeat):
        traced = None
        was_enabled = gc.isenabled()
        gc.disable()                # as in api.trace and api.gradient
        try:
            # a script's print() would repeat once per run: the warm-up has shown it
            with profiling(profiler), contextlib.redirect_stderr(io.StringIO()):
                profiler.begin("forward")
                t0 = profiler.now()
                traced = make_traced()
                t1 = profiler.now()
            t2 = t3 = None
            if backward:
                nodes = [traced.inputs[w] for w in wrt]
                profiler.begin("backward")
                t2 = profiler.now()
                with np.errstate(all="ignore"):
                    autodiff.vjp(traced.graph, traced.output, nodes)
                t3 = profiler.now()
        finally:
            profiler.begin(None)
            if was_enabled:
                gc.enable()
        spans = (t0, t1, t2, t3)
        totals.add_run(profiler, traced.graph, spans, first_run=run == 0)
        if run == 0 and trace_events:
            events, dropped = chrome_events(profiler, traced.graph, spans, max_events)
        profiler.clear()
        del traced
        nodes = None
        gc.collect()                # the graph's nodes and graph refer to each other
        if progress is not None:
            progress(run + 1, repeat)
    rows = list(totals.rows.values()) + [totals.overhead[TRACING]]
    if backward:
        rows.append(totals.overhead[BACKWARD_OVERHEAD])
    lines = list(totals.lines.values()) if totals.lines is not None else None
    return Profile(label, repeat, rows, lines, events, dropped, notes + profiler.notes, backward)


# ---------------------------------------------------------------- Chrome trace events

def chrome_events(profiler, graph, spans, max_events):
    """Trace events of one run (Chrome's trace-event format, which Perfetto and
    chrome://tracing open): a "trace" and a "gradient" slice, and inside them one complete
    event ("ph": "X") per op execution, at most max_events of them. Times in microseconds
    from the start of the run. Returns (events, number of op events left out)."""
    t0, t1, t2, t3 = spans
    us = lambda ns: round((ns - t0) / 1000.0, 3)                # noqa: E731
    base = {"pid": 1, "tid": 1}
    events = [dict(base, name="process_name", ph="M", args={"name": "adcli profile"}),
              dict(base, name="thread_name", ph="M", args={"name": "main"}),
              dict(base, name="trace", cat="run", ph="X", ts=0.0, dur=us(t1),
                   args={"what": "parse, interpret, record and evaluate the graph"})]
    if t2 is not None:
        events.append(dict(base, name="gradient", cat="run", ph="X", ts=us(t2),
                           dur=round((t3 - t2) / 1000.0, 3),
                           args={"what": "reverse-mode walk from the value to the inputs"}))
    ops = []
    for node_id, start, end in profiler.forward_records:
        ops.append((graph.nodes[node_id], "forward", start, end))
    for node, start, end in _backward_intervals(profiler.marks):
        ops.append((node, "backward", start, end))
    for node, phase, start, end in ops[:max_events]:
        args = {"node": f"%{node.id}", "phase": phase,
                "shapes": _signature_text(tuple([a.value.shape for a in node.args]))}
        if node.pos:
            args["line"], args["column"] = node.pos[0], node.pos[1]
        events.append(dict(base, name=node.op.name, cat=phase, ph="X", ts=us(start),
                           dur=round((end - start) / 1000.0, 3), args=args))
    return events, max(0, len(ops) - max_events)


def write_trace(p, path):
    """Write the Chrome trace-event JSON file of --trace."""
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
    what = "" if p.backward else " (the value only)"
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
           "gradient": p.backward, "rows": [], "total": total}
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


__all__ = ["Profiler", "Profile", "profile", "profiling", "register_sync", "sync_hook",
           "write_trace", "to_plain", "to_rich", "to_csv", "to_json", "SORT_KEYS", "FORMATS"]
