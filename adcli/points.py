"""Many points per process: `--points FILE|-` evaluates a traced program at every row of
a table, a block of rows at a time, and writes one result row per input row.

The source is traced once, at the first row; the value's program (and for `grad` the
gradient's, a VJP transform recorded beside it) is then evaluated on whole blocks with the
batch axis. A row whose control flow differs (a script that branches on a value) fails one
of the program's guards: those rows are taken by another program, traced at the first of
them, so that every row gets the result of its own path. A row that fails (a value that is
not a number, an array of the wrong shape, a result that is not finite) gets its message in
the `error` column, and the run goes on; the exit code is then 1.

Input: CSV or TSV with a header (or headerless with --names), or NDJSON (one JSON object a
line, whose values may be arrays). Output: CSV, TSV or NDJSON, chosen by --format, --json or
the extension of --out. Rows are read as they come (a block is what has arrived, up to
--chunk-rows), so output starts before the input ends, in the order of the input.
Parquet and Arrow tables are adcli.columnar's; setup() is what every run starts from, and
--scheduler runs the rest on a dask.distributed cluster (adcli.cluster).
"""
from __future__ import annotations

import json
import os
import select
import sys
from dataclasses import dataclass

import numpy as np

from .errors import AdcliError, InputError, LimitError

CHUNK_ROWS = 65_536        # rows a block holds at most (--chunk-rows)
MAX_PROGRAMS = 32          # paths through a script kept as programs; more are traced per row
FORMATS = ("csv", "tsv", "ndjson", "parquet", "arrow")


# ---------------------------------------------------------------- reading lines

class Lines:
    """The lines of a file or pipe, a block at a time: a block waits for one line, then
    takes what has arrived (at most `most` lines), so a slow pipe's rows are answered as
    they come."""

    def __init__(self, stream):
        try:
            self.fd = stream.fileno()
        except (AttributeError, OSError):   # io.UnsupportedOperation: an in-memory stream
            self.fd = None                  # (a test runner's stdin): read it, no select
        self.stream = stream
        self.buf, self.eof = b"", False

    def _read(self, wait):
        if self.eof:
            return False
        if self.fd is None:
            if not wait:
                return False
            read = getattr(self.stream, "read1", self.stream.read)
            data = read(1 << 20)
            if not data:
                self.eof = True
            self.buf += data
            return bool(data)
        if not wait and not select.select([self.fd], [], [], 0)[0]:
            return False
        data = os.read(self.fd, 1 << 20)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def block(self, most, wait=True):
        """Up to `most` lines (without their ends), [] at the end of the input; wait=False
        takes only what has arrived (the caller has a row to answer already)."""
        while wait and b"\n" not in self.buf and self._read(wait=True):
            pass
        while self.buf.count(b"\n") < most and self._read(wait=False):
            pass
        buf = self.buf
        if self.eof and buf and not buf.endswith(b"\n"):
            buf += b"\n"                      # the last line, without its end
        if buf.count(b"\n") > most:
            cut = len(buf) - len(buf.split(b"\n", most)[-1])
        else:
            cut = buf.rfind(b"\n") + 1
        text, self.buf = buf[:cut].decode("utf-8", "replace"), buf[cut:]
        lines = text.split("\n")
        lines.pop()                            # after the last line's end
        if "\r" in text:
            lines = [ln.rstrip("\r") for ln in lines]
        return lines


# ---------------------------------------------------------------- the input table

@dataclass
class Block:
    rows: int
    values: dict          # input name -> array (rows,) + shape, rows that failed hold zeros
    kept: dict            # kept column -> list of texts (CSV) or values (NDJSON)
    errors: list          # per row: None or the message of a row that could not be read


class Table:
    """A CSV, TSV or NDJSON input of points, read a block at a time."""

    def __init__(self, path, names, chunk_rows):
        self.stream = sys.stdin.buffer if path == "-" else _open(path)
        self.lines, self.chunk = Lines(self.stream), chunk_rows
        self.pending = []
        first = self.lines.block(1)
        if not first:
            raise InputError(f"--points {path}: no rows")
        head = first[0]
        self.fmt = _sniff(path, head)
        if self.fmt == "ndjson":
            self.columns = list(_json_row(head, 1))
            self.pending = [head]
            if names:
                raise InputError("--names is for CSV or TSV input without a header: NDJSON "
                                 "rows name their values")
        else:
            self.sep = "\t" if self.fmt == "tsv" else ","
            if names:
                self.columns = names
                self.pending = [head]
            else:
                self.columns = [c.strip().strip('"') for c in head.split(self.sep)]
        self.path, self.start = path, 0 if (names or self.fmt == "ndjson") else 1

    def blocks(self, shapes, keep, dtype):
        """Blocks of rows, each as a Block: `shapes` the input columns' shapes by name."""
        while True:
            lines = self.pending + self.lines.block(self.chunk - len(self.pending),
                                                    wait=not self.pending)
            self.pending = []
            if not lines:
                return
            if not all(map(str.strip, lines)):                 # (C-level: ~40 ns a line)
                lines = [ln for ln in lines if ln.strip()]     # blank lines are no rows
                if not lines:
                    continue
            if self.fmt == "ndjson":
                yield self._json_block(lines, shapes, keep, dtype)
            else:
                yield self._text_block(lines, shapes, keep, dtype)

    def _text_block(self, lines, shapes, keep, dtype):
        n, cols = len(lines), self.columns
        values = {c: np.zeros(n, dtype=dtype) for c in shapes}
        errors, kept = [None] * n, {c: [""] * n for c in keep}
        use = [cols.index(c) for c in shapes]
        try:     # the fast path: numpy's parser, every line well formed
            if keep or any(shapes[c] for c in shapes):
                raise ValueError
            table = np.loadtxt(lines, delimiter=self.sep, dtype=dtype, ndmin=2, usecols=use,
                               quotechar='"', comments=None)
            if table.shape != (n, len(use)):
                raise ValueError
            for k, c in enumerate(shapes):
                values[c] = table[:, k]
        except ValueError:
            import csv
            for r, fields in enumerate(csv.reader(lines, delimiter=self.sep)):
                if len(fields) != len(cols):
                    errors[r] = (f"line {self.start + r + 1}: {len(fields)} fields where the "
                                 f"header has {len(cols)}")
                    continue
                for c in keep:
                    kept[c][r] = fields[cols.index(c)]
                for c, j in zip(shapes, use):
                    text = fields[j].strip()
                    try:
                        if shapes[c]:
                            v = np.asarray(json.loads(text), dtype=dtype)
                            if v.shape != shapes[c]:
                                raise ValueError(f"shape {v.shape}, not {shapes[c]}")
                            values[c][r] = v
                        else:
                            values[c][r] = float(text)
                    except (ValueError, TypeError) as e:
                        errors[r] = errors[r] or f"column {c}: cannot read {text[:40]!r} ({e})"
        self.start += n
        return Block(n, values, kept, errors)

    def _json_block(self, lines, shapes, keep, dtype):
        n = len(lines)
        values = {c: np.zeros((n,) + s, dtype=dtype) for c, s in shapes.items()}
        errors, kept = [None] * n, {c: [None] * n for c in keep}
        for r, line in enumerate(lines):
            try:
                row = _json_row(line, self.start + r + 1)
                for c in keep:
                    kept[c][r] = row.get(c)
                for c, s in shapes.items():
                    if c not in row:
                        raise ValueError(f"no value for '{c}'")
                    v = np.asarray(row[c], dtype=dtype)
                    if v.shape != s:
                        raise ValueError(f"'{c}' has shape {v.shape}, not {s}")
                    values[c][r] = v
            except (ValueError, TypeError, InputError) as e:
                errors[r] = f"line {self.start + r + 1}: {getattr(e, 'message', e)}"
        self.start += n
        return Block(n, values, kept, errors)


def _open(path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise InputError(f"--points {path}: {e.strerror}") from None


def _sniff(path, head):
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if ext in ("ndjson", "jsonl"):
        return "ndjson"
    if ext == "tsv" or (ext != "csv" and "\t" in head):
        return "tsv"
    return "ndjson" if head.lstrip().startswith("{") else "csv"


def _json_row(line, number):
    try:
        row = json.loads(line)
    except ValueError as e:
        raise InputError(f"line {number}: not JSON ({e})") from None
    if not isinstance(row, dict):
        raise InputError(f"line {number}: a row of NDJSON is an object, {{\"x\": 1.5, ...}}")
    return row


# ---------------------------------------------------------------- programs

class Program:
    """A trace (at one point) and the outputs evaluated at the others: the value, and for
    `grad` the gradient program of each input differentiated (None: unreached)."""

    def __init__(self, traced, wrt):
        self.traced = traced
        self.grads = traced.gradient_program(wrt) if wrt is not None else []
        self.outputs = [traced.output] + [g for g in self.grads if g is not None]

    def run(self, block_values, idx):
        """{node id: value with the batch axis} at rows idx; GuardFailed.points index idx."""
        return self.traced.at({n: v[idx] for n, v in block_values.items()},
                              outputs=self.outputs, batch=len(idx))


@dataclass
class Tracer:
    """Traces the source at given values (a function that --jobs' workers can receive)."""
    text: str
    script: bool
    filename: str
    dtype: str
    limits: object
    seed: int
    max_steps: int
    max_depth: int

    def __call__(self, values):
        from . import api
        if self.script:
            return api.trace_script(self.text, values, dtype=self.dtype, limits=self.limits,
                                    filename=self.filename, seed=self.seed,
                                    max_steps=self.max_steps, max_depth=self.max_depth)
        return api.trace(self.text, values, dtype=self.dtype, limits=self.limits,
                         filename=self.filename, seed=self.seed)


class Evaluation:
    """The programs of a --points run: one per path through the source met so far."""

    def __init__(self, trace_at, wrt, fixed):
        self.trace_at, self.wrt, self.fixed = trace_at, wrt, fixed
        self.programs = []

    def trace(self, point):
        """The source traced at a point ({column: value}), --at giving the other inputs."""
        return self.trace_at({**self.fixed, **point})

    def program(self, point):
        return Program(self.trace(point), self.wrt)

    def block(self, block, out_shape, grad_shapes):
        """value (rows,) + shape, grads {name: (rows,) + shape} and errors of one block:
        each program takes the rows its guards accept; the rows no program takes get a
        program traced at the first of them."""
        from .evaluate import at_points
        n = block.rows
        value = np.full((n,) + out_shape, np.nan)
        grads = {w: np.full((n,) + s, np.nan) for w, s in grad_shapes.items()}
        errors = list(block.errors)

        def put(prog, idx):
            vals = prog.run(block.values, idx)
            k = len(idx)
            value[idx] = at_points(np, vals[prog.traced.output.id], k, out_shape)
            for (w, s), g in zip(grad_shapes.items(), prog.grads):
                grads[w][idx] = 0.0 if g is None else at_points(np, vals[g.id], k, s)

        todo = (np.arange(n) if errors.count(None) == n else
                np.array([r for r in range(n) if errors[r] is None], dtype=np.int64))
        for prog in self.programs:
            if not todo.size:
                break
            todo = self._take(prog, todo, put, errors)
        while todo.size:
            first = todo[0]
            try:
                prog = self.program({c: v[first] for c, v in block.values.items()})
            except LimitError:
                raise
            except AdcliError as e:             # this row cannot be traced: its error
                errors[first] = e.message
                todo = todo[1:]
                continue
            if len(self.programs) < MAX_PROGRAMS:
                self.programs.append(prog)
            left = self._take(prog, todo, put, errors)
            if left.size and left[0] == first:  # (a program always takes its own point)
                errors[first] = "the program traced at this point does not apply to it"
                left = left[1:]
            todo = left
        return value, grads, errors

    @staticmethod
    def _take(prog, idx, put, errors):
        """Evaluate prog at rows idx, all at once where its guards hold: returns the rows
        whose path differs. A row whose evaluation fails gets its error."""
        from .evaluate import GuardFailed
        other = []
        while idx.size:
            try:
                put(prog, idx)
                break
            except GuardFailed as e:
                bad = np.zeros(idx.size, dtype=bool)
                if e.points is None:
                    bad[:] = True
                else:
                    bad[np.asarray(e.points, dtype=np.int64)] = True
                other.extend(idx[bad].tolist())
                idx = idx[~bad]
            except LimitError:
                raise
            except AdcliError:                  # a row fails in the batch: each row alone
                for r in idx.tolist():
                    one = np.array([r])
                    try:
                        put(prog, one)
                    except GuardFailed:
                        other.append(r)
                    except LimitError:
                        raise
                    except AdcliError as e:
                        errors[r] = e.message
                break
        return np.array(sorted(other), dtype=np.int64)


# ---------------------------------------------------------------- writing

def _flat_names(prefix, shape):
    """Column names of an array result flattened in C order: value[0][1], d_W[2]."""
    if not shape:
        return [prefix]
    return [prefix + "".join(f"[{i}]" for i in idx) for idx in np.ndindex(*shape)]


def _kept_text(v):
    """A kept cell: CSV's text as it was; NDJSON's (or a Parquet table's) value as JSON (a
    missing one empty)."""
    v = _kept_value(v)                  # (a pyarrow scalar: its value)
    return v if isinstance(v, str) else "" if v is None else json.dumps(v)


def _kept_value(v):
    return v.as_py() if hasattr(v, "as_py") else v


class Writer:
    """Result rows as the text of CSV, TSV or NDJSON: the header, then a block at a time
    (made in a --jobs worker, or in the process that writes them)."""

    def __init__(self, fmt, keep, value_shape, grad_shapes, expr, dtype):
        self.fmt, self.keep = fmt, keep
        self.value_shape, self.grad_shapes = value_shape, grad_shapes
        self.expr, self.dtype = expr, dtype
        self.sep = "\t" if fmt == "tsv" else ","

    def header(self):
        if self.fmt == "ndjson":
            return ""
        names = list(self.keep) + _flat_names("value", self.value_shape)
        for w, s in self.grad_shapes.items():
            names += _flat_names(f"d_{w}", s)
        return self.sep.join(map(self._cell, names + ["error"])) + "\n"

    def _cell(self, text):
        if self.sep == "," and any(ch in text for ch in ',"\n'):
            return '"' + text.replace('"', '""') + '"'
        return text.replace("\t", " ").replace("\n", " ") if self.sep == "\t" else text

    def text(self, block, value, grads, errors):
        """The lines of a block's rows."""
        n = block.rows
        if self.fmt == "ndjson":
            return self._json(block, value, grads, errors)
        parts = [value.reshape(n, -1)] + [g.reshape(n, -1) for g in grads.values()]
        numbers = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
        width = numbers.shape[1]
        # repr: the shortest text that reads back exactly (nan, inf, -inf as in adcli's output)
        if not self.keep and errors.count(None) == n:
            # the common case, as one C-level format of the whole block
            row = self.sep.join(["%r"] * width) + self.sep + "\n"
            return (row * n) % tuple(numbers.ravel().tolist())
        texts = list(map(repr, numbers.ravel().tolist()))
        sep, lines = self.sep, []
        kept = [block.kept[c] for c in self.keep]
        for r in range(n):
            cells = [self._cell(_kept_text(k[r])) for k in kept]
            cells += texts[r * width:(r + 1) * width]
            cells.append("" if errors[r] is None else self._cell(errors[r]))
            lines.append(sep.join(cells))
        return "\n".join(lines) + "\n"

    def _json(self, block, value, grads, errors):
        from .render import to_jsonable
        lines = []
        for r in range(block.rows):
            obj = {c: _kept_value(block.kept[c][r]) for c in self.keep}
            obj.update(expr=self.expr, value=to_jsonable(value[r]))
            if self.grad_shapes:
                obj["grad"] = {w: to_jsonable(g[r]) for w, g in grads.items()}
            obj.update(dtype=self.dtype, device="cpu")
            if errors[r] is not None:
                obj["error"] = errors[r]
            lines.append(json.dumps(obj))
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the run

def output_format(fmt, as_json, out):
    from . import columnar
    if as_json:
        return "ndjson"
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"--format {fmt}: with --points the output is "
                             + ", ".join(FORMATS))
        if fmt in ("parquet", "arrow") and not out:
            raise InputError(f"--format {fmt} writes a file: give it with --out FILE")
        try:      # an extension that names another format contradicts --format
            implied = output_format(None, False, out) if out else None
        except InputError:
            implied = None                # (an extension of no format: --format decides)
        if implied is not None and implied != fmt:
            raise InputError(f"--format {fmt} and --out {out} disagree: the file's extension "
                             f"says {implied}", hint="give one of them")
        return fmt
    if out:
        ext = out.rsplit(".", 1)[-1].lower() if "." in os.path.basename(out) else ""
        if ext in ("ndjson", "jsonl"):
            return "ndjson"
        if ext in ("csv", "tsv"):
            return ext
        if columnar.kind(out) and not os.path.isdir(out):
            return columnar.kind(out)
        raise InputError(f"--out {out}: with --points the output file is .csv, .tsv, .ndjson, "
                         ".parquet or .arrow")
    return "csv"


@dataclass
class Setup:
    """What every --points run starts from, here or on a cluster: the table with its columns
    checked, and the source traced at the first row that could be read."""
    table: object            # Table or columnar.ArrowTable
    keep: list               # the columns passed through
    shapes: dict             # the input columns' shapes by name
    tracer: Tracer
    fixed: dict              # the inputs --at gives, the same at every point
    first_point: dict        # {column: value} the source was traced at
    evaluation: Evaluation   # holding the program traced there
    out_shape: tuple
    grad_shapes: dict        # {name: shape} of the inputs differentiated (grad)
    label: str               # the source, as NDJSON's "expr"
    dtype: object            # numpy dtype
    head: list               # the blocks read up to the first readable row
    blocks: object           # the blocks after them (an iterator)

    @property
    def wrt(self):
        return self.evaluation.wrt


def setup(expr, at, points, names, keep, chunk_rows, wrt, grad, dtype, limits, seed,
          max_steps, max_depth):
    """Read the source and the table's first rows, check the columns, trace at the first
    readable row: the Setup of a run."""
    from . import api, columnar, sources
    from .parse import parse
    if chunk_rows is not None and chunk_rows < 1:
        raise InputError("--chunk-rows must be 1 or more")
    dtype_np = np.dtype(api.check_dtype(dtype))
    source = sources.read(expr, at, dtype_np.type, limits, seed)
    if source.script:
        from .script import declared_inputs
        inputs = declared_inputs(parse(source.text, "script"))
    else:
        from .trace import CONSTANTS, free_names
        inputs = [n for n in free_names(parse(source.text)) if n not in CONSTANTS]
    names = [n.strip() for n in ",".join(names).split(",") if n.strip()] if names else None
    keep = [k.strip() for k in ",".join(keep).split(",") if k.strip()] if keep else []
    if columnar.kind(points) or columnar.is_url(points):
        if names:
            raise InputError("--names is for CSV or TSV input without a header: a Parquet or "
                             "Arrow table names its columns")
        table = columnar.ArrowTable(points, chunk_rows or CHUNK_ROWS)
    else:
        table = Table(points, names, chunk_rows or CHUNK_ROWS)
    for k in keep:
        if k not in table.columns:
            raise InputError(f"--keep {k}: the points have no column '{k}'",
                             hint="their columns are " + ", ".join(table.columns))
    unused = [c for c in table.columns if c not in inputs and c not in keep]
    if unused:
        raise InputError("the points have column" + ("s " if len(unused) > 1 else " ")
                         + ", ".join(f"'{c}'" for c in unused) + " that the source does not use",
                         hint="pass them through to the output with --keep "
                              + ",".join(unused))
    point_cols = [c for c in table.columns if c in inputs]    # (a kept input is also used)
    missing = [n for n in inputs if n not in point_cols and n not in source.values]
    if missing and not source.script:
        raise InputError("no value for " + ", ".join(f"'{n}'" for n in missing),
                         hint="add a column to the points, or give it with --at")

    tracer = Tracer(source.text, source.script, source.filename, dtype, limits, seed,
                    max_steps, max_depth)
    fixed = {k: v for k, v in source.values.items() if k not in point_cols}
    shapes = {c: () for c in point_cols}
    if table.fmt in ("parquet", "arrow"):
        shapes = table.shapes(point_cols)
    elif table.fmt == "ndjson":      # array inputs: their shape from the first row
        first = _json_row(table.pending[0], 1)
        try:
            shapes = {c: np.shape(first[c]) for c in point_cols}
        except ValueError:          # a ragged list: no array
            raise InputError("line 1: a value is a ragged list, not an array") from None
    blocks = table.blocks(shapes, keep, dtype_np)
    # the trace needs a readable row: the blocks before it wait (their rows are failed rows,
    # written once the trace gives the columns), so that the output does not depend on
    # --chunk-rows or on how the rows of a pipe arrive
    head = []
    for b in blocks:
        head.append(b)
        if any(e is None for e in b.errors):
            break
    if not head:
        raise InputError(f"--points {points}: no rows")
    first_block = head[-1]
    ev = Evaluation(tracer, None, fixed)
    ok = [r for r in range(first_block.rows) if first_block.errors[r] is None]
    if not ok:
        raise InputError(f"--points {points}: no row could be read: " + head[0].errors[0])
    first_point = {c: first_block.values[c][ok[0]] for c in point_cols}
    traced = ev.trace(first_point)
    if grad:
        ev.wrt = api.choose_inputs(traced, wrt)[0]
        api.scalar_output(traced, "grad")
    ev.programs.append(Program(traced, ev.wrt))
    return Setup(table, keep, shapes, tracer, fixed, first_point, ev, tuple(traced.output.shape),
                 {w: tuple(traced.inputs[w].shape) for w in (ev.wrt or [])},
                 source.filename or source.text, dtype_np, head, blocks)


def run(expr, at, points, names, keep, fmt, as_json, out, chunk_rows, wrt, grad, dtype,
        limits, seed, max_steps, max_depth, detect_anomaly=False, jobs=None, scheduler=None):
    """adcli eval/grad --points: returns (rows that failed, rows). With `scheduler`, on a
    dask.distributed cluster (adcli.cluster), else in this process (or --jobs workers)."""
    if scheduler is not None:
        from . import cluster
        cluster.check_options(points, fmt, as_json, out, jobs, scheduler)
    s = setup(expr, at, points, names, keep, chunk_rows, wrt, grad, dtype, limits, seed,
              max_steps, max_depth)
    if scheduler is not None:
        return cluster.run(s, scheduler, jobs, out, chunk_rows or CHUNK_ROWS, detect_anomaly)
    return _run_here(s, fmt, as_json, out, jobs, detect_anomaly)


def _run_here(s, fmt, as_json, out, jobs, detect_anomaly):
    """The rows evaluated in this process, or by --jobs worker processes, written in order
    to --out or stdout."""
    from . import columnar
    from .files import writing
    failed = total = 0

    def all_blocks():
        yield from s.head
        yield from s.blocks

    kind = output_format(fmt, as_json, out)
    anomalies = [] if detect_anomaly else None

    columnar_out = kind in ("parquet", "arrow")
    # what a block's evaluation needs to make its output (sent to --jobs' workers): the
    # text formats' writer (None for Parquet and Arrow, written here from the arrays)
    writer = None if columnar_out else Writer(kind, s.keep, s.out_shape, s.grad_shapes,
                                              s.label, s.dtype.name)
    task = (writer, s.out_shape, s.grad_shapes, detect_anomaly)

    def go(stream):
        nonlocal failed, total
        if columnar_out:
            w = columnar.ArrowWriter(stream, kind, s.keep, s.out_shape, s.grad_shapes, s.dtype)
        else:
            stream.write(writer.header())
        from .render import progress_bar
        with progress_bar("points", sys.stderr) as progress:
            results = (_in_workers(jobs, all_blocks(), task, (s.tracer, s.wrt, s.fixed,
                                                              s.first_point))
                       if jobs and jobs > 1 else
                       ((b, _run_block(s.evaluation, b, task, anomalies))
                        for b in all_blocks()))
            for b, (payload, bad) in results:
                if columnar_out:
                    w.write(b, *payload)
                else:
                    stream.write(payload)
                    stream.flush()
                failed += bad
                total += b.rows
                if progress is not None:   # on a terminal: rows done (of how many, if known)
                    progress(total, getattr(s.table, "rows", None))
        if columnar_out:
            w.close()
    if out:
        with writing(out, "wb" if columnar_out else "w") as f:
            go(f)
    else:
        go(sys.stdout)
    return failed, total


def _run_block(ev, block, task, anomalies):
    """One block evaluated and made into output: (the text, or for Parquet and Arrow the
    arrays, and the number of rows that failed)."""
    writer, out_shape, grad_shapes, _ = task
    value, grads, errors = _evaluate(ev, block, out_shape, grad_shapes, anomalies)
    bad = len(errors) - errors.count(None)
    if writer is None:
        return (value, grads, errors), bad
    return writer.text(block, value, grads, errors), bad


_WORKER = {}      # in a --jobs worker process: its Evaluation, traced once


def _start_worker(tracer, wrt, fixed, first_point):
    ev = Evaluation(tracer, wrt, fixed)
    ev.programs.append(ev.program(first_point))
    _WORKER["ev"] = ev


def _worker_block(block, task):
    anomalies = _WORKER.setdefault("anomalies", []) if task[-1] else None
    return _run_block(_WORKER["ev"], block, task, anomalies)


def _in_workers(jobs, blocks, task, setup):
    """(block, result) in the order of the blocks, each evaluated and formatted by one of
    `jobs` worker processes (started fresh, each tracing the source once, BLAS on one
    thread each); at most 2 blocks a worker are in flight, so memory stays bounded."""
    import collections
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    one = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    saved = {k: os.environ.get(k) for k in one}
    os.environ.update(one)             # the workers' environment: BLAS on one thread
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=setup) as pool:
            pending = collections.deque()
            for b in blocks:
                pending.append((b, pool.submit(_worker_block, b, task)))
                if len(pending) >= 2 * jobs:
                    b0, f = pending.popleft()
                    yield b0, f.result()
            while pending:
                b0, f = pending.popleft()
                yield b0, f.result()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


ANOMALY_ROWS = 1000    # --detect-anomaly: the failed rows traced again, at most, per run


def _evaluate(ev, block, out_shape, grad_shapes, anomaly=None):
    """One block through the programs; a row whose result is not finite is a failed row
    (its numbers are still written). With `anomaly` (a list counting the rows explained so
    far), such a row is traced again alone and its message names the op that first made a
    NaN or an infinity, as --detect-anomaly does for one point."""
    value, grads, errors = ev.block(block, out_shape, grad_shapes)
    n = block.rows
    for what, arr in [("the value", value)] + [(f"the gradient of '{w}'", g)
                                              for w, g in grads.items()]:
        for r in np.nonzero(~np.isfinite(arr.reshape(n, -1)).all(axis=1))[0]:
            if errors[r] is None:
                errors[r] = f"{what} is not finite"
                if anomaly is not None and len(anomaly) < ANOMALY_ROWS:
                    anomaly.append(r)
                    errors[r] += _origin(ev, {c: v[r] for c, v in block.values.items()},
                                         what == "the value")
    return value, grads, errors


def _origin(ev, point, forward):
    """': first produced by OP(ARGS) at line L, column C' for a point whose value
    (forward) or gradient is not finite, or '' where the trace does not say."""
    from . import autodiff
    from .api import call_text
    from .evaluate import first_nonfinite
    try:
        traced = ev.trace(point)
        if forward:
            node = first_nonfinite(traced.graph, traced.output)
            what = "first produced by"
        else:
            nodes = [traced.inputs[w] for w in ev.wrt or []]
            hit = autodiff.first_nonfinite_cotangent(traced.graph, traced.output, nodes,
                                                     safe=False)
            node, what = (hit[0] if hit else None), "first made by the derivative of"
    except AdcliError:
        return ""
    if node is None or node.op is None:
        return ""
    where = f" at line {node.pos[0]}, column {node.pos[1]}" if node.pos else ""
    return f": {what} {call_text(node)}{where}"
