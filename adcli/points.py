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
ROW_POINTS = 1 << 16       # batch points an evaluation takes at most (rows x basis tangents)
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
        self.parts, self.newlines, self.eof = [], 0, False   # what is read, not yet taken

    def _read(self, wait):
        if self.eof:
            return False
        if self.fd is None:
            if not wait:
                return False
            read = getattr(self.stream, "read1", self.stream.read)
            data = read(1 << 20)
        elif not wait and not select.select([self.fd], [], [], 0)[0]:
            return False
        else:
            data = os.read(self.fd, 1 << 20)
        if not data:
            self.eof = True
            return False
        self.parts.append(data)
        self.newlines += data.count(b"\n")
        return True

    def chunk(self, most, wait=True):
        """Up to `most` whole lines, as bytes, each ending in a newline; b"" at the end of
        the input. wait=False takes only what has arrived (the caller has a row to answer
        already)."""
        while wait and not self.newlines and self._read(wait=True):
            pass
        while self.newlines < most and self._read(wait=False):
            pass
        buf, lines = b"".join(self.parts), self.newlines
        if self.eof and buf and not buf.endswith(b"\n"):
            buf += b"\n"                      # the last line, without its end
            lines += 1
        if lines > most:
            # the end of the most-th line, found in C
            cut = int(np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)[most - 1]) + 1
        else:
            cut = buf.rfind(b"\n") + 1
        data, rest = buf[:cut], buf[cut:]
        self.parts, self.newlines = ([rest], rest.count(b"\n")) if rest else ([], 0)
        return data

    def block(self, most, wait=True):
        """Up to `most` lines (without their ends), [] at the end of the input."""
        return _lines(self.chunk(most, wait))


def _lines(data):
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    lines.pop()                                # after the last line's end
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
            self.known = set(self.columns)
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
            head = "".join(ln + "\n" for ln in self.pending).encode("utf-8", "surrogateescape")
            data = head + self.lines.chunk(self.chunk - len(self.pending),
                                           wait=not self.pending)
            self.pending = []
            if not data:
                return
            if self.fmt == "ndjson":
                lines = _nonblank(_lines(data))
                if lines:
                    yield self._json_block(lines, shapes, keep, dtype)
                continue
            block = self._arrow_block(data, shapes, keep, dtype)
            if block is None:
                lines = _nonblank(_lines(data))
                if not lines:
                    continue
                block = self._text_block(lines, shapes, keep, dtype)
            if block.rows:                   # (blank lines only: no rows)
                self.start += block.rows
                yield block

    def _arrow_block(self, data, shapes, keep, dtype):
        """A block of well-formed CSV or TSV rows of numbers, parsed by pyarrow's C++ reader
        (about 20 times faster than Python); None where any row is not (a field that is not
        a number, a row of another width, an array cell: the rows are then read one by one
        for their errors)."""
        if any(shapes.values()):
            return None
        pa = _pyarrow_csv()
        from pyarrow import csv
        types = {c: pa.float64() for c in shapes}
        types.update({c: pa.string() for c in keep})
        try:
            table = csv.read_csv(
                pa.py_buffer(data),
                read_options=csv.ReadOptions(column_names=self.columns),
                parse_options=csv.ParseOptions(delimiter=self.sep),
                convert_options=csv.ConvertOptions(
                    column_types=types, include_columns=list(dict.fromkeys([*shapes, *keep])),
                    null_values=[], strings_can_be_null=False,
                    quoted_strings_can_be_null=False))
            values = {c: (table.column(c) if c not in keep else
                          table.column(c).cast(pa.float64())).to_numpy().astype(dtype, copy=False)
                      for c in shapes}
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        n = table.num_rows
        kept = {c: table.column(c).to_pylist() for c in keep}
        return Block(n, values, kept, [None] * n)

    def _text_block(self, lines, shapes, keep, dtype):
        n, cols = len(lines), self.columns
        values = {c: np.zeros((n,) + shapes[c], dtype=dtype) for c in shapes}
        errors, kept = [None] * n, {c: [""] * n for c in keep}
        use = [cols.index(c) for c in shapes]
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
        return Block(n, values, kept, errors)

    def _json_block(self, lines, shapes, keep, dtype):
        n = len(lines)
        values = {c: np.zeros((n,) + s, dtype=dtype) for c, s in shapes.items()}
        errors, kept = [None] * n, {c: [None] * n for c in keep}
        for r, line in enumerate(lines):
            try:
                row = _json_row(line, self.start + r + 1)
                # a key the first row did not have: neither an input nor kept, it would be
                # dropped (or, for an input, silently given by --at instead)
                new = [k for k in row if k not in self.known]
                if new:
                    raise ValueError(f"'{new[0]}' is not a column of the first row (the "
                                     f"columns are {', '.join(self.columns)})")
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


def _nonblank(lines):
    """Blank lines are no rows."""
    if all(map(str.strip, lines)):                 # (C-level: ~40 ns a line)
        return lines
    return [ln for ln in lines if ln.strip()]


def _pyarrow_csv():
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    return pa


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

@dataclass
class Part:
    """One result of a row: its column name (arrays flattened after it: d_W[0][1]), where it
    goes in the row's JSON object, its shape, and what a failed row's message calls it."""
    column: str
    path: tuple
    shape: tuple
    what: str
    text: bool = False        # strings (gradcheck's verdicts), not numbers
    finite: bool = True       # a row where this is not finite is a failed row


class Program:
    """A trace (at one point) and the programs that give its results at the others, by
    `kind`: eval the value; grad also the gradient (the VJP transform, recorded beside
    it); jacobian the value and d out / d x for each input (the JVP transform along a
    tangent placeholder per input, run at each row and each basis tangent at once: rows x
    basis vectors on the batch axis); hessian the value and each block d2 out / dx dy (the
    JVP of the recorded gradient, the same way). `hooks`: evaluator hooks of every batched
    evaluation (adcli plot's kink probe)."""

    hooks = ()

    def __init__(self, traced, kind, wrt):
        from . import autodiff
        from .api import choose_inputs, scalar_output
        self.traced, self.kind = traced, kind
        graph, out = traced.graph, traced.output
        self.parts = [Part("value", ("value",), tuple(out.shape), "the value")]
        self.nodes = [out]
        self.tangents, self.k, self.columns = [], 1, []
        if kind == "eval":
            return
        names, inputs = choose_inputs(traced, wrt)
        if kind == "grad":
            grads = traced.gradient_program(names)
            self.parts += [Part(f"d_{w}", ("grad", w), tuple(x.shape), f"the gradient of '{w}'")
                           for w, x in zip(names, inputs)]
            self.nodes += grads
            return
        if kind == "hessian":
            scalar_output(traced, "hessian")
            of = autodiff.vjp(graph, out, inputs, create_graph=True)
        else:
            of = [out]
        self.tangents = [graph.placeholder(f"a tangent of {w}", x.shape, graph.dtype)
                         for w, x in zip(names, inputs)]
        present = [o for o in of if o is not None]
        found = iter(autodiff.jvp(graph, present, inputs, self.tangents, create_graph=True)
                     if present else [])
        cols = [next(found) if o is not None else None for o in of]
        self.k = sum(x.size for x in inputs)       # basis tangents per row
        self.columns = cols                        # the JVP of each of `of`, or None
        self.of_shapes = [tuple(o.shape) if o is not None else tuple(x.shape)
                          for o, x in zip(of, inputs)]
        self.inputs = list(zip(names, inputs))
        if kind == "jacobian":
            self.parts += [Part(f"d_{w}", ("jacobian", w), tuple(out.shape) + tuple(x.shape),
                                f"the Jacobian of '{w}'") for w, x in self.inputs]
        else:
            self.parts += [Part(f"d2_{a}_{b}", ("hessian", a, b), tuple(x.shape) + tuple(y.shape),
                                f"the Hessian block d2/d{a}d{b}")
                           for a, x in self.inputs for b, y in self.inputs]

    def run(self, block_values, idx):
        """The results at rows idx: one array (len(idx),) + shape per part, evaluated
        ROW_POINTS batch points at a time where each row takes k > 1 of them (its basis
        tangents; a row alone is a block's row, which --chunk-rows bounds already).
        GuardFailed's points index idx."""
        from .evaluate import GuardFailed
        step = max(1, ROW_POINTS // self.k)
        if self.k == 1 or len(idx) <= step:
            return self._run(block_values, idx)
        pieces = []
        for start in range(0, len(idx), step):
            try:
                pieces.append(self._run(block_values, idx[start:start + step]))
            except GuardFailed as e:
                if e.points is not None:
                    e.points = [start + p for p in e.points]
                raise
        return [np.concatenate(p) for p in zip(*pieces)]

    def _run(self, block_values, idx):
        from .evaluate import GuardFailed, at_points
        from .evaluate import evaluate as run
        n, k, graph = len(idx), self.k, self.traced.graph
        given = {}
        # consecutive rows (a whole block, usually) as views, not copies
        rows = slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == n else idx
        for name, v in block_values.items():
            a = np.asarray(v[rows], dtype=graph.dtype)
            given[self.traced.inputs[name]] = np.repeat(a, k, axis=0) if k > 1 else a
        if self.tangents:
            # batch point p is row p // k along basis tangent p % k (the tangents of the
            # other inputs zero)
            start = 0
            for t in self.tangents:
                basis = np.zeros((k, t.size), dtype=graph.dtype)
                basis[start + np.arange(t.size), np.arange(t.size)] = 1.0
                start += t.size
                given[t] = np.tile(basis, (n, 1)).reshape((n * k,) + tuple(t.shape))
        outputs = [o for o in self.nodes + self.columns if o is not None]
        try:
            vals = run(graph, outputs, given, batch=n * k, batched=list(given), hooks=self.hooks)
        except GuardFailed as e:
            if e.points is not None and k > 1:
                e.points = sorted({int(p) // k for p in e.points})
            raise
        out = self.nodes[0]
        value = at_points(np, vals[out.id], n * k, out.shape)[::k]
        if not self.tangents:
            return [value] + [np.zeros((n,) + p.shape) if g is None else
                              at_points(np, vals[g.id], n, p.shape)
                              for p, g in zip(self.parts[1:], self.nodes[1:])]
        results = [value]
        sizes = [x.size for _, x in self.inputs]
        for c, shape in zip(self.columns, self.of_shapes):
            # (n * k,) + shape: the tangent of c along each basis tangent, split by input
            full = (np.zeros((n, k) + shape) if c is None else
                    at_points(np, vals[c.id], n * k, shape).reshape((n, k) + shape))
            start = 0
            for (_, x), size in zip(self.inputs, sizes):
                block = full[:, start:start + size].reshape((n,) + tuple(x.shape) + shape)
                start += size
                # d c / d x: c's axes first, then x's
                r, m = len(x.shape), len(shape)
                results.append(np.transpose(block, (0,) + tuple(range(1 + r, 1 + r + m))
                                            + tuple(range(1, 1 + r))))
        return results


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
    """The programs of a --points run: one per path through the source met so far (each a
    `program_class`, Program unless a subclass says otherwise)."""

    program_class = Program

    def __init__(self, trace_at, kind, wrt, fixed):
        self.trace_at, self.kind, self.wrt, self.fixed = trace_at, kind, wrt, fixed
        self.programs = []

    def trace(self, point):
        """The source traced at a point ({column: value}), --at giving the other inputs."""
        return self.trace_at({**self.fixed, **point})

    def program(self, point):
        return self.program_class(self.trace(point), self.kind, self.wrt)

    def start(self, point, wrt):
        """The first program, traced at a point, with the inputs `wrt` (names, or None for
        all) differentiated: its parts."""
        traced = self.trace(point)
        if self.kind != "eval":
            from .api import choose_inputs
            self.wrt = choose_inputs(traced, wrt)[0]
        self.programs.append(self.program_class(traced, self.kind, self.wrt))
        return self.programs[0].parts

    def summary(self, results, errors):
        return None

    def block(self, block, parts):
        """The results of one block, an array (rows,) + shape per part, and its errors:
        each program takes the rows its guards accept; the rows no program takes get a
        program traced at the first of them."""
        n = block.rows
        results = [np.full((n,) + p.shape, np.nan) for p in parts]
        errors = list(block.errors)

        def put(prog, idx):
            for target, got in zip(results, prog.run(block.values, idx)):
                target[idx] = got

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
        return results, errors

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


def _encode(text):
    return text.encode("utf-8", "backslashreplace")


def _kept_value(v):
    return v.as_py() if hasattr(v, "as_py") else v


def column_names(parts):
    """The result columns of the parts, arrays flattened."""
    return [name for p in parts for name in _flat_names(p.column, p.shape)]


class Writer:
    """Result rows as the text of CSV, TSV or NDJSON: the header, then a block at a time
    (made in a --jobs worker, or in the process that writes them). `extra`: members of
    each NDJSON object after the results (a Jacobian's mode)."""

    def __init__(self, fmt, keep, parts, expr, dtype, extra=None):
        self.fmt, self.keep, self.parts = fmt, keep, parts
        self.expr, self.dtype, self.extra = expr, dtype, extra or {}
        self.sep = "\t" if fmt == "tsv" else ","

    def header(self):
        if self.fmt == "ndjson":
            return b""
        names = list(self.keep) + column_names(self.parts)
        return _encode(self.sep.join(map(self._cell, names + ["error"])) + "\n")

    def _cell(self, text):
        if self.sep == "," and any(ch in text for ch in ',"\n\r'):
            return '"' + text.replace('"', '""') + '"'
        return text.replace("\t", " ").replace("\n", " ") if self.sep == "\t" else text

    def text(self, block, results, errors):
        """The bytes of a block's rows: the numbers formatted by pyarrow (in C++: the
        shortest text that reads back exactly, 2 for 2.0, nan, inf, -inf), the cells
        joined into lines by pyarrow too."""
        n = block.rows
        if self.fmt == "ndjson":
            return _encode(self._json(block, results, errors))
        pa = _pyarrow_csv()
        pc = pa.compute
        text = pa.large_string()          # (64-bit offsets: any --chunk-rows)
        cells = [pa.array([self._cell(_kept_text(v)) for v in block.kept[c]], text)
                 for c in self.keep]
        for part, res in zip(self.parts, results):
            if part.text:
                cells.append(pa.array([self._cell(v) for v in res], text))
                continue
            flat = res.reshape(n, -1)
            cells += [pc.cast(pa.array(np.ascontiguousarray(flat[:, k])), text)
                      for k in range(flat.shape[1])]
        # the error cell, then the line's end ("" + "\n" for a row that is fine)
        last = (pa.scalar("\n", text) if errors.count(None) == n else
                pa.array(["\n" if e is None else self._cell(e) + "\n" for e in errors], text))
        lines = pc.binary_join_element_wise(*cells, last, pa.scalar(self.sep, text))
        offsets = np.frombuffer(lines.buffers()[1], np.int64, n + 1, lines.offset * 8)
        return bytes(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])

    def _json(self, block, results, errors):
        """Each row as the JSON object of a single point (`adcli grad --json`)."""
        from .render import to_jsonable
        lines = []
        for r in range(block.rows):
            obj = {c: _kept_value(block.kept[c][r]) for c in self.keep}
            obj["expr"] = self.expr
            for p, res in zip(self.parts, results):
                into = obj
                for key in p.path[:-1]:
                    into = into.setdefault(key, {})
                into[p.path[-1]] = res[r] if p.text else to_jsonable(res[r])
            obj.update(self.extra, dtype=self.dtype, device="cpu")
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


MODES = {"jacobian": "fwd", "hessian": "fwd-over-rev"}   # (as the single point's JSON says)


@dataclass
class Setup:
    """What every --points run starts from, here or on a cluster: the table with its columns
    checked, and the source traced at the first row that could be read."""
    table: object            # Table or columnar.ArrowTable
    keep: list               # the columns passed through
    shapes: dict             # the input columns' shapes by name
    spec: tuple              # what _evaluation makes the run's Evaluation from
    first_point: dict        # {column: value} the source was traced at
    evaluation: object       # Evaluation (or gradcheck's BatchCheck) holding the program
    parts: list              # the results of a row (Part)
    label: str               # the source, as NDJSON's "expr"
    dtype: object            # numpy dtype
    head: list               # the blocks read up to the first readable row
    blocks: object           # the blocks after them (an iterator)

    @property
    def wrt(self):
        return self.evaluation.wrt

    @property
    def command(self):
        return self.spec[1]


def setup(expr, at, points, names, keep, chunk_rows, wrt, command, dtype, limits, seed,
          max_steps, max_depth, tolerances=None):
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
    spec = (tracer, command, fixed, dtype_np.name, tolerances)
    ev = _evaluation(spec)
    ok = [r for r in range(first_block.rows) if first_block.errors[r] is None]
    if not ok:
        raise InputError(f"--points {points}: no row could be read: " + head[0].errors[0])
    first_point = {c: first_block.values[c][ok[0]] for c in point_cols}
    parts = ev.start(first_point, wrt)
    return Setup(table, keep, shapes, spec, first_point, ev, parts,
                 source.filename or source.text, dtype_np, head, blocks)


def run(expr, at, points, names, keep, fmt, as_json, out, chunk_rows, wrt, command, dtype,
        limits, seed, max_steps, max_depth, detect_anomaly=False, jobs=None, tolerances=None,
        scheduler=None):
    """adcli eval/grad/jacobian/hessian/gradcheck --points: returns (rows that failed, rows,
    gradcheck's summary lines or None). tolerances: gradcheck's (rtol, atol, eps), None for
    its defaults. With `scheduler`, on a dask.distributed cluster (adcli.cluster), else in
    this process (or --jobs workers)."""
    if scheduler is not None:
        from . import cluster
        cluster.check_options(points, fmt, as_json, out, jobs, scheduler)
    s = setup(expr, at, points, names, keep, chunk_rows, wrt, command, dtype, limits, seed,
              max_steps, max_depth, tolerances)
    if scheduler is not None:
        failed, total, summary = cluster.run(s, scheduler, jobs, out, chunk_rows or CHUNK_ROWS,
                                             detect_anomaly)
    else:
        failed, total, summary = _run_here(s, fmt, as_json, out, jobs, detect_anomaly)
    if summary is not None:
        from .check.batch import report
        summary = report(summary, s.evaluation.rtol, s.evaluation.atol)
    return failed, total, summary


def _run_here(s, fmt, as_json, out, jobs, detect_anomaly):
    """The rows evaluated in this process, or by --jobs worker processes, written in order
    to --out or stdout: (rows that failed, rows, gradcheck's summary or None)."""
    from . import columnar
    from .files import writing
    failed = total = 0
    summary = None

    def all_blocks():
        yield from s.head
        yield from s.blocks

    kind = output_format(fmt, as_json, out)
    anomalies = [] if detect_anomaly else None

    columnar_out = kind in ("parquet", "arrow")
    # what a block's evaluation needs to make its output (sent to --jobs' workers): the
    # text formats' writer (None for Parquet and Arrow, written here from the arrays)
    writer = None if columnar_out else Writer(kind, s.keep, s.parts, s.label, s.dtype.name,
                                              {"mode": MODES[s.command]} if s.command in MODES
                                              else None)
    task = (writer, s.parts, detect_anomaly)

    def go(stream):
        nonlocal failed, total, summary
        if columnar_out:
            w = columnar.ArrowWriter(stream, kind, s.keep, s.parts, s.dtype)
        else:
            stream.write(writer.header())
        from .render import progress_bar
        with progress_bar("points", sys.stderr) as progress:
            results = (_in_workers(jobs, all_blocks(), task, (s.spec, s.wrt, s.first_point))
                       if jobs and jobs > 1 else
                       ((b, _run_block(s.evaluation, b, task, anomalies))
                        for b in all_blocks()))
            for b, (payload, bad, part) in results:
                if columnar_out:
                    w.write(b, *payload)
                else:
                    stream.write(payload)
                    stream.flush()
                failed += bad
                if part is not None:
                    from .check.batch import merge
                    summary = merge(summary, part, total)
                total += b.rows
                if progress is not None:   # on a terminal: rows done (of how many, if known)
                    progress(total, getattr(s.table, "rows", None))
        if columnar_out:
            w.close()
    if out:
        with writing(out, "wb") as f:
            go(f)
    else:
        sys.stdout.flush()
        go(sys.stdout.buffer)
    return failed, total, summary


def _evaluation(spec):
    """The Evaluation of a run (or of a --jobs worker): spec = (the Tracer, the command,
    the --at values, the dtype, gradcheck's tolerances)."""
    trace_at, command, fixed, dtype, tolerances = spec
    if command != "gradcheck":
        return Evaluation(trace_at, command, None, fixed)
    from dataclasses import replace

    from .check.batch import BatchCheck
    from .check.run import TOLERANCES
    rtol, atol, eps = tolerances or (None, None, None)
    rtol0, atol0 = TOLERANCES[dtype]
    # the numeric derivatives in float64, whatever adcli's own derivatives are computed in
    values = Evaluation(replace(trace_at, dtype="float64"), "eval", None, fixed)
    return BatchCheck(Evaluation(trace_at, "jacobian", None, fixed), values,
                      rtol0 if rtol is None else rtol, atol0 if atol is None else atol, eps)


def _run_block(ev, block, task, anomalies):
    """One block evaluated and made into output: (the text, or for Parquet and Arrow the
    arrays, and the number of rows that failed)."""
    writer, parts, _ = task
    results, errors = _evaluate(ev, block, parts, anomalies)
    bad = len(errors) - errors.count(None)
    summary = ev.summary(results, errors)
    if summary is not None:
        bad += summary[0]["fail"]
    if writer is None:
        return (results, errors), bad, summary
    return writer.text(block, results, errors), bad, summary


_WORKER = {}      # in a --jobs worker process: its Evaluation, traced once


def _start_worker(spec, wrt, first_point):
    ev = _evaluation(spec)
    ev.start(first_point, wrt)
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


def _evaluate(ev, block, parts, anomaly=None):
    """One block through the programs; a row whose result is not finite is a failed row
    (its numbers are still written). With `anomaly` (a list counting the rows explained so
    far), such a row is traced again alone and its message names the op that first made a
    NaN or an infinity, as --detect-anomaly does for one point."""
    results, errors = ev.block(block, parts)
    n = block.rows
    for part, arr in zip(parts, results):
        if not part.finite:
            continue
        for r in np.nonzero(~np.isfinite(arr.reshape(n, -1)).all(axis=1))[0]:
            if errors[r] is None:
                errors[r] = f"{part.what} is not finite"
                if anomaly is not None and len(anomaly) < ANOMALY_ROWS:
                    anomaly.append(r)
                    errors[r] += _origin(ev, {c: v[r] for c, v in block.values.items()},
                                         part.path == ("value",))
    return results, errors


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
