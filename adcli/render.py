"""Results to text: a rich table for a terminal, plain lines for pipes, JSON, and files.

Plain output (the default when stdout is not a terminal) is one `key<TAB>value` line per
item, where a value is a number or a nested list written in full on one line:

    value   10.0
    d/dx    7.0
    d/dy    2.0

`adcli eval` prints only the value. Numbers are written with the shortest repr that reads
back exactly; non-finite ones as nan, inf, -inf.
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager

import numpy as np


def choose(as_json=False, plain=False, fmt="table"):
    """The format of a command's output: "json" with --json, `fmt` where one is named
    ("csv"), else a rich table on a terminal and plain text (--plain, or a pipe)."""
    if as_json:
        return "json"
    if fmt != "table":
        return fmt
    return "plain" if plain or not sys.stdout.isatty() else "rich"


def emit(fmt, **writers):
    """Write a result to stdout in format `fmt` with writers[fmt]: "rich" draws on a
    Console; the others return the text to print (CSV ends its own lines), or None where
    they wrote it themselves (a large array is written as it is made)."""
    if fmt == "rich":
        from rich.console import Console
        writers["rich"](Console())
        return
    text = writers[fmt]()
    if text is not None:
        print(text, end="" if fmt == "csv" else "\n")


def write_notes(notes):
    """Notes (errors.Note) on stderr, each in its rendered form."""
    for n in notes:
        print(n, file=sys.stderr)


def number_text(x):
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def nested(arr, leaf):
    """Nested lists of `leaf(element)` in the array's shape, built without recursion."""
    arr = np.asarray(arr)
    if arr.size == 0:
        return arr.tolist()
    items = [leaf(v) for v in arr.ravel().tolist()]
    if arr.ndim == 0:
        return items[0]
    for n in reversed(arr.shape[1:]):
        items = [items[i:i + n] for i in range(0, len(items), n)]
    return items


def _json_leaf(v):
    if isinstance(v, bool):
        return v
    v = float(v)
    return v if math.isfinite(v) else number_text(v)


def to_jsonable(arr):
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and arr.ndim and bool(np.isfinite(arr).all()):
        return arr.astype(float).tolist()   # the fast path: Python floats as they are
    return nested(arr, _json_leaf)


def _texts(arr):
    """The plain text of every element, in C order. Python's repr of a float is the
    shortest text that reads back exactly, and is already nan, inf or -inf."""
    flat = arr.ravel().tolist()
    if arr.dtype.kind == "b":
        return ["true" if v else "false" for v in flat]
    if arr.dtype.kind == "f":
        return list(map(repr, flat))
    return [number_text(v) for v in flat]


def plain_array(arr):
    """An array on one line as nested lists: [[1.0, 2.0], [3.0, 4.0]]."""
    arr = np.asarray(arr)
    if arr.ndim == 0:
        return number_text(arr.item())
    if arr.size == 0:
        return json.dumps(arr.tolist())
    parts = _texts(arr)
    for n in reversed(arr.shape):        # innermost axis first, joining strings
        parts = ["[" + ", ".join(parts[i:i + n]) + "]" for i in range(0, len(parts), n)]
    return parts[0]


def grad_key(name, order=1):
    """The plain-text key of a derivative: d/dx, or d3/dx3 for --order 3."""
    return f"d/d{name}" if order == 1 else f"d{order}/d{name}{order}"


def rows(result):
    """(plain key, terminal label, array) for every result after the value."""
    out = []
    for k, v in (result.grad or {}).items():
        label = f"∂/∂{k}" if result.order == 1 else f"∂{_sup(result.order)}/∂{k}{_sup(result.order)}"
        out.append((grad_key(k, result.order), label, v))
    return out + list(result.rows or [])


def _sup(n):
    return str(n).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _json_member(v):
    """Results as JSON: arrays and numbers as in "value", containers and text as they are.
    (Results nest a level or two: recursion is bounded by their fixed structure.)"""
    if isinstance(v, dict):
        return {k: _json_member(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_member(x) for x in v]
    if v is None or isinstance(v, (str, bool, int)):
        return v
    return to_jsonable(v)


def to_json(result):
    obj = {"expr": result.expr, "value": to_jsonable(result.value)}
    if result.grad is not None:
        obj["grad"] = {k: to_jsonable(v) for k, v in result.grad.items()}
        if result.order != 1:
            obj["order"] = result.order
    for k, v in (result.extra or {}).items():
        obj[k] = _json_member(v)
    if result.sparse is not None:
        obj[result.sparse.kind] = _json_member(result.sparse.as_json())
        obj["sparse"] = True
    obj["dtype"] = result.dtype
    obj["device"] = result.device
    return json.dumps(obj)


def to_plain(result):
    import io
    out = io.StringIO()
    write_plain(result, out)
    return out.getvalue()[:-1]


def write_plain(result, out):
    """The plain text of a result, written as it is made: a large array is written a chunk
    at a time instead of being built as one string (half the memory for 10^7 numbers)."""
    more = rows(result)
    if not more and result.grad is None and not result.extra:   # eval: the value alone
        write_array(result.value, out)
        out.write("\n")
        return
    out.write("value\t")
    write_array(result.value, out)
    out.write("\n")
    for key, _, v in more:
        out.write(f"{key}\t")
        write_array(v, out)
        out.write("\n")
    if result.sparse is not None:
        write_sparse(result.sparse, out)


def _index_text(index):
    return "[" + ", ".join(map(str, index)) + "]"


def write_sparse(matrix, out):
    """A sparse Jacobian or Hessian, one line per entry: KEY<TAB>[ROW]<TAB>[COLUMN]<TAB>VALUE
    (KEY as the dense output names the block: d/dx, d2/dx,dy; ROW and COLUMN the element's
    index within it). A pattern alone (--pattern) has no VALUE."""
    values = None if matrix.values is None else _texts(np.asarray(matrix.values))
    for k, (key, r, c) in enumerate(matrix.entries()):
        line = f"{key}\t{_index_text(r)}\t{_index_text(c)}"
        out.write(line + ("\n" if values is None else f"\t{values[k]}\n"))


CHUNK = 1 << 16   # elements formatted at a time


def write_array(arr, out):
    """plain_array(arr), written to `out` in pieces of about CHUNK elements."""
    arr = np.asarray(arr)
    if arr.ndim == 0 or arr.size <= CHUNK:
        out.write(plain_array(arr))
        return
    if arr.ndim == 1:
        out.write("[")
        for start in range(0, arr.size, CHUNK):
            out.write((", " if start else "") + ", ".join(_texts(arr[start:start + CHUNK])))
        out.write("]")
        return
    # Rows of the last axis, a block of rows at a time. Before a row come as many "[" as
    # its index (over the outer axes) has trailing zeros, plus one; after it as many "]"
    # as trailing last values, plus one: the brackets of the nested lists it opens/closes.
    outer, n = arr.shape[:-1], arr.shape[-1]
    flat = arr.reshape(-1, n)
    idx = [0] * len(outer)
    step = max(1, CHUNK // n)
    for start in range(0, flat.shape[0], step):
        block = flat[start:start + step]
        texts = _texts(block)
        pieces = []
        for r in range(block.shape[0]):
            opens = 1
            for k in range(len(outer) - 1, -1, -1):
                if idx[k] != 0:
                    break
                opens += 1
            closes = 1
            for k in range(len(outer) - 1, -1, -1):
                if idx[k] != outer[k] - 1:
                    break
                closes += 1
            sep = "" if start + r == 0 else ", "
            pieces.append(sep + "[" * opens + ", ".join(texts[r * n:(r + 1) * n]) + "]" * closes)
            for k in range(len(outer) - 1, -1, -1):   # the next index, an odometer
                idx[k] += 1
                if idx[k] < outer[k]:
                    break
                idx[k] = 0
        out.write("".join(pieces))


def to_rich(result, console):
    from rich.table import Table
    title = result.expr if len(result.expr) <= 80 else result.expr[:77] + "..."
    table = Table(title=literal(title, "table.title"), show_header=True, header_style="bold")
    table.add_column("", style="bold cyan", no_wrap=True)
    table.add_column("shape", style="dim")
    table.add_column("value")
    from rich.cells import cell_len
    items = [("value", result.value)] + [(label, v) for _, label, v in rows(result)]
    # arrays are laid out by numpy for the room the value column has: rich need not wrap
    # them again, and never cuts a number
    room = console.width - 10 - max(cell_len(k) for k, _ in items) \
        - max(len(_shape(v)) for _, v in items)
    with np.printoptions(threshold=1000, edgeitems=3, linewidth=max(30, room)):
        for label, v in items:
            table.add_row(label, _shape(v), literal(_pretty(v)))
    console.print(table)
    if result.sparse is not None:
        _rich_sparse(result.sparse, console)
    mode = (result.extra or {}).get("mode")
    if mode:
        console.print(f"[dim]mode: {mode}[/dim]")


SHOWN = 200    # the entries of a sparse result a terminal shows
SPY = 64       # a pattern alone of at most this many rows and columns is drawn


def _rich_sparse(matrix, console):
    from rich.table import Table
    m, n = matrix.pattern.shape
    title = (f"{matrix.kind}: {m}×{n}, {matrix.pattern.nnz:,} nonzero entries "
             f"({matrix.pattern.density:.2%}), from {matrix.sweeps} compressed sweeps")
    if matrix.values is None and m <= SPY and n <= SPY:
        # a pattern small enough to draw: one character per entry, a spy plot
        dense = matrix.pattern.to_dense()
        console.print(literal(title, "table.title"))
        for r in range(m):
            console.print("".join("●" if v else "·" for v in dense[r]), highlight=False)
        return
    table = Table(title=literal(title, "table.title"), header_style="bold")
    for h in ("block", "row", "column") + (("value",) if matrix.values is not None else ()):
        table.add_column(h, no_wrap=True)
    values = matrix.values
    for k, (key, r, c) in enumerate(matrix.entries()):
        if k == SHOWN:
            break
        table.add_row(key, _index_text(r), _index_text(c),
                      *(() if values is None else (number_text(values[k]),)))
    console.print(table)
    if matrix.pattern.nnz > SHOWN:
        console.print(f"[dim]... and {matrix.pattern.nnz - SHOWN:,} more: --plain, --json or "
                      "--out FILE.npz give them all[/dim]")


def _shape(a):
    return _shape_text(np.asarray(a).shape, "×")


def _pretty(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return number_text(a.item())
    return np.array2string(a, separator=", ")


SECTION = None   # in fit()'s rows: a line across the table


def fit(console, columns, rows, optional=(), styles=None, **table_args):
    """A rich Table that fits the console without cutting a number or a word.

    columns: (header, options) pairs, the options those of rich's add_column; a column
    with no_wrap (numbers) is as wide as its widest cell, the others fold at spaces, never
    narrower than their longest word. rows: sequences of cells, or SECTION; styles: row
    index -> style. While even the narrowest layout is wider than the console, columns are left
    out in the order of `optional` (the least needed first). Returns the table and the
    headers left out.

    The widths are computed here: rich shrinks the widest wrapping column first, below
    its longest word, and then cuts that word with an ellipsis."""
    from rich.table import Table
    styles = styles or {}
    texts = [[str(c) for c in r] for r in rows if r is not SECTION]
    left_out = []
    while True:
        keep = [i for i, (h, _) in enumerate(columns) if h not in left_out]
        widths = _widths(console.width - 3 * len(keep) - 1,
                         [columns[i] for i in keep], [[t[i] for t in texts] for i in keep])
        if widths is not None or len(left_out) == len(optional):
            break
        left_out.append(optional[len(left_out)])
    if isinstance(table_args.get("title"), str):
        table_args["title"] = literal(table_args["title"], "table.title")
    table = Table(**table_args)
    for k, i in enumerate(keep):
        header, opts = columns[i]
        table.add_column(header, **({**opts, "width": widths[k]} if widths else opts))
    for n, r in enumerate(rows):
        if r is SECTION:
            table.add_section()
        else:
            table.add_row(*[literal(r[i]) for i in keep], style=styles.get(n))
    return table, left_out


def literal(cell, style=""):
    """A cell as it is: rich would read "[nan, 1.0]" in a string as a markup tag and drop it."""
    from rich.text import Text
    return Text(cell, style=style) if isinstance(cell, str) else cell


def _widths(room, columns, cells):
    """Content widths for the columns within `room` (None: they cannot fit), or [] where
    their natural widths fit anyway."""
    from rich.cells import cell_len
    lo, hi = [], []
    for (header, opts), texts in zip(columns, cells):
        lines = [ln for t in [header] + texts for ln in t.splitlines()] or [""]
        longest = max(cell_len(ln) for ln in lines)
        word = max([cell_len(w) for ln in lines for w in ln.split()] + [1])
        if opts.get("no_wrap"):
            lo.append(longest)
            hi.append(longest)
        else:
            lo.append(word)
            hi.append(max(word, min(longest, opts.get("max_width") or longest)))
    if sum(hi) <= room:
        return []
    if sum(lo) > room:
        return None
    # the spare room shared out evenly, a column taking no more than it can use: short
    # cells come out on one line, and the longest share what is left
    widths, spare = list(lo), room - sum(lo)
    hungry = sorted(range(len(widths)), key=lambda j: hi[j] - lo[j])
    while hungry and spare > 0:
        share = spare // len(hungry)
        k = hungry[0]
        if hi[k] - widths[k] <= share or share == 0:
            give = min(hi[k] - widths[k], spare)
            widths[k] += give
            spare -= give
            hungry.pop(0)
            continue
        for j in hungry:
            widths[j] += share
        spare -= share * len(hungry)
    return widths


def left_out_note(console, left_out):
    if left_out:
        console.print(f"[dim]not shown at {console.width} columns: {', '.join(left_out)} "
                      "(--plain or --json shows them)[/dim]", highlight=False)


# the members of the JSON output that are not results
JSON_META = ("expr", "order", "mode", "dtype", "device")


def flat_members(obj, leaf):
    """{name: leaf(v)} for the results of a JSON-like object, named by their paths joined by
    '_': value, grad_x, jacobian_x, hessian_x_y, jvp, vjp_x. Files (.npz, .csv) name their
    arrays so, and `--at x=@r.json:grad_x` reads them back so. Depth first, in order,
    without recursion (a JSON file given to --at may nest deeply)."""
    out, stack = {}, [("", iter(obj.items()))]
    while stack:
        prefix, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        key, v = item
        if not prefix and key in JSON_META:
            continue
        path = f"{prefix}_{key}" if prefix else key
        if isinstance(v, dict):
            stack.append((path, iter(v.items())))
        else:
            out[path] = leaf(path, v)
    return out


def named_arrays(result):
    members = {"value": result.value, "grad": result.grad or {}, **(result.extra or {})}
    return {k: v for k, v in flat_members(members, lambda _, v: v).items()
            if not isinstance(v, str)}


def save(result, path):
    """Write the value and the results in full: .npy, .npz, .csv or .json. Returns the
    names of the arrays the file holds."""
    from .errors import InputError
    from .files import writing
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if result.sparse is not None:
        return _save_sparse(result, path, ext)
    arrays = {k: np.asarray(v) for k, v in named_arrays(result).items()}
    try:
        if ext == "npz":
            with writing(path, "wb") as f:        # a file object: numpy adds no extension
                np.savez(f, **arrays)
        elif ext == "npy":
            if len(arrays) > 1 and len(arrays) != 2:
                raise InputError(f"--out {path}: a .npy file holds one array; use .npz for "
                                 f"{len(arrays)} arrays")
            # with one gradient, the .npy file holds the gradient; otherwise the value
            arrays = dict([list(arrays.items())[-1]])
            with writing(path, "wb") as f:
                np.save(f, next(iter(arrays.values())))
        elif ext == "csv":
            with writing(path) as f:
                f.write("name,index,value\n")
                for k, a in arrays.items():
                    if a.ndim == 0:
                        f.write(f"{k},,{number_text(a)}\n")
                    for idx, v in zip(np.ndindex(a.shape) if a.ndim else (), a.ravel()):
                        f.write(f"{k},{' '.join(map(str, idx))},{number_text(v)}\n")
        elif ext == "json":
            with writing(path) as f:
                f.write(to_json(result) + "\n")
        else:
            raise InputError(f"--out {path}: unknown file type", hint="use .npy, .npz, .csv or .json")
    except OSError as e:
        raise InputError(f"--out {path}: {e.strerror}") from None
    return list(arrays)


def _save_sparse(result, path, ext):
    """A sparse result: .npz in scipy.sparse's format (scipy.sparse.load_npz reads it; the
    columns of several inputs follow one another), .csv one line per entry, or .json."""
    from .errors import InputError
    from .files import writing
    from .pattern import save_npz
    matrix = result.sparse
    values = matrix.values if matrix.values is not None else np.ones(matrix.pattern.nnz)
    try:
        if ext == "npz":
            with writing(path, "wb") as f:
                save_npz(f, matrix.pattern, np.asarray(values))
        elif ext == "csv":
            texts = _texts(np.asarray(values))
            with writing(path) as f:
                f.write("block,row,column,value\n")
                for k, (key, r, c) in enumerate(matrix.entries()):
                    f.write(f"{key},{' '.join(map(str, r))},{' '.join(map(str, c))},{texts[k]}\n")
        elif ext == "json":
            with writing(path) as f:
                f.write(to_json(result) + "\n")
        else:
            raise InputError(f"--out {path}: a sparse {matrix.kind} is saved as .npz "
                             "(scipy.sparse.load_npz reads it), .csv or .json",
                             hint="or give --sparse off for the dense matrix")
    except OSError as e:
        raise InputError(f"--out {path}: {e.strerror}") from None
    return [matrix.kind]


def saved_summary(result):
    """What --out prints instead of the arrays: (name, shape, dtype, the value if it is one
    number) for each result, named as in the file."""
    rows = [(k, a.shape, str(a.dtype), a.item() if a.ndim == 0 else None)
            for k, a in ((k, np.asarray(v)) for k, v in named_arrays(result).items())]
    m = result.sparse
    if m is not None:        # (the arrays above: the value alone)
        rows.append((m.kind, m.pattern.shape,
                     f"{result.dtype}, sparse: {m.pattern.nnz:,} entries", None))
    return rows


def summary_plain(summary, path, saved, out):
    """file<TAB>PATH<TAB>the names the file holds, then NAME<TAB>SHAPE<TAB>DTYPE[<TAB>VALUE]
    for each result."""
    out.write(f"file\t{path}\t{' '.join(saved)}\n")
    for name, shape, dtype, v in summary:
        out.write("\t".join([name, _shape_text(shape, "x"), dtype]
                             + ([] if v is None else [number_text(v)])) + "\n")


def summary_json(summary, path, saved, result):
    arrays = {name: dict(shape=list(shape), dtype=dtype,
                         **({} if v is None else {"value": _json_leaf(v)}))
              for name, shape, dtype, v in summary}
    return json.dumps({"expr": result.expr, "file": path, "saved": list(saved),
                       "arrays": arrays})


def summary_rich(summary, path, saved, console):
    from rich.table import Table
    every = len(saved) == len(summary)
    table = Table(title=literal(f"saved to {path}" + ("" if every else f": {', '.join(saved)}"),
                                "table.title"), header_style="bold")
    for h in ("name", "shape", "dtype", "value"):
        table.add_column(h, no_wrap=True)
    for name, shape, dtype, v in summary:
        table.add_row(name, _shape_text(shape, "×"), dtype,
                      "" if v is None else number_text(v))
    console.print(table)


def _shape_text(shape, times):
    return "scalar" if not shape else times.join(map(str, shape))


class ProgressBar:
    """A rich progress bar for work that turns out to be long: it appears once the work
    has taken DELAY seconds (a quick command never flickers), and is gone when it ends.
    It is drawn from the calls themselves, at most every REFRESH seconds, not by a thread
    of rich's: nothing runs beside the work (a profile's timings stay undisturbed)."""

    DELAY, REFRESH = 1.0, 0.1

    def __init__(self, console, description, clock=time.monotonic):
        self.console, self.description, self.clock = console, description, clock
        self.start, self.bar, self.task, self.drawn = clock(), None, None, None
        self.passes, self.last = 1, 0

    def __call__(self, done, total):
        if done < self.last:         # the work starts over (gradcheck's smaller steps)
            self.passes += 1
        self.last = done
        if self.bar is None:
            if self.clock() - self.start < self.DELAY:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
            self.bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=self.console, transient=True,
                                auto_refresh=False)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done, total=total, description=self.description
                        + (f" (pass {self.passes})" if self.passes > 1 else ""))
        now = self.clock()
        if self.drawn is None or now - self.drawn >= self.REFRESH or done == total:
            self.bar.refresh()
            self.drawn = now

    def close(self):
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def progress_bar(description, stream):
    """progress(done, total) for a long computation: a bar on `stream` (standard error)
    when it is a terminal, nothing otherwise (a pipe or a log file gets no bar)."""
    if not stream.isatty():
        yield None
        return
    from rich.console import Console
    bar = ProgressBar(Console(file=stream), description)
    try:
        yield bar
    finally:
        bar.close()


class StatusLine:
    """One line of live text for a long loop (minimize's step, value and gradient norm),
    drawn like ProgressBar: from the calls, once the work has taken DELAY seconds, at most
    every REFRESH seconds, and gone when the work ends."""

    DELAY, REFRESH = ProgressBar.DELAY, ProgressBar.REFRESH

    def __init__(self, console, clock=time.monotonic):
        self.console, self.clock = console, clock
        self.start, self.live, self.drawn = clock(), None, None

    def __call__(self, text):
        now = self.clock()
        if self.live is None:
            if now - self.start < self.DELAY:
                return
            from rich.live import Live
            self.live = Live(console=self.console, transient=True, auto_refresh=False)
            self.live.start()
        if self.drawn is None or now - self.drawn >= self.REFRESH:
            from rich.text import Text
            self.live.update(Text(text), refresh=True)
            self.drawn = now

    def close(self):
        if self.live is not None:
            self.live.stop()


@contextmanager
def status_line(stream):
    """status(text) for a long loop: a live line on `stream` (standard error) when it is
    a terminal, None otherwise."""
    if not stream.isatty():
        yield None
        return
    from rich.console import Console
    line = StatusLine(Console(file=stream))
    try:
        yield line
    finally:
        line.close()


# ---------------------------------------------------------------- adcli taylor

def taylor_plain(result):
    """One `k<TAB>c_k<TAB>f^(k)` line per order (arrays as nested lists)."""
    extra = result.extra
    return "\n".join(f"{k}\t{plain_array(c)}\t{plain_array(d)}" for k, (c, d) in
                     enumerate(zip(extra["coefficients"], extra["derivatives"])))


def taylor_json(result):
    extra = result.extra
    obj = {"expr": result.expr, "at": _json_member(extra["at"]),
           "direction": _json_member(extra["direction"]), "order": extra["order"],
           "coefficients": [to_jsonable(c) for c in extra["coefficients"]],
           "derivatives": [to_jsonable(d) for d in extra["derivatives"]],
           "dtype": result.dtype, "device": result.device}
    return json.dumps(obj)


def taylor_rich(result, console):
    extra = result.extra
    moving = ", ".join(f"{n} + {plain_array(d)}·t" for n, d in extra["direction"].items())
    rows = [(str(k), _pretty(c), _pretty(d)) for k, (c, d) in
            enumerate(zip(extra["coefficients"], extra["derivatives"]))]
    title = result.expr if len(result.expr) <= 80 else result.expr[:77] + "..."
    columns = [("k", {"no_wrap": True, "justify": "right", "style": "bold cyan"}),
               ("c_k", {}), ("f^(k) = k! c_k", {})]
    console.print(fit(console, columns, rows, title=title)[0])
    if moving:
        console.print("along " + moving, style="dim", markup=False, highlight=False)
