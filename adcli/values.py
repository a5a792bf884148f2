"""Values given on the command line: `--at x=2,y=[1,2]` and `x=@data.npy`."""
from __future__ import annotations

import math
import os
import re
import tokenize
import zlib

import numpy as np

from .errors import AdcliError, InputError, LimitError
from .graph import format_bytes

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789")


def split_top_level(text):
    """Split on commas that are not inside brackets or parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def parse_assignments(items, option="--at"):
    """['x=2,y=[1,2]', 'z=@f.npy'] -> {'x': '2', 'y': '[1,2]', 'z': '@f.npy'} (text values)."""
    out = {}
    for item in items:
        for part in split_top_level(item):
            if part.startswith("@"):     # @inputs.npz: its arrays, by their names
                out[part] = part
                continue
            name, eq, value = part.partition("=")
            name = name.strip()
            if not eq or not value.strip():
                raise InputError(f"{option} expects NAME=VALUE, got '{part}'",
                                 hint=f"for example {option} x=2,y=[1,2,3]")
            if not name or name[0].isdigit() or set(name) - NAME_CHARS:
                raise InputError(f"{option}: '{name}' is not a valid name")
            if name in out:
                raise InputError(f"{option} gives '{name}' twice")
            out[name] = value.strip()
    return out


DECIMAL = r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"   # ASCII digits only
NUMBER = re.compile(rf"\s*{DECIMAL}\s*")


def evaluate_constant(text, dtype, limits, name, option="--at", seed=0):
    """A value written in the language: a number, a list, linspace(0,1,5), pi/4, randn(3)
    (seeded by `seed`), ..."""
    if len(text) <= 100 and NUMBER.fullmatch(text):
        return np.asarray(float(text), dtype=dtype)   # a plain number: no parser needed
    from .graph import Graph
    from .parse import parse
    from .trace import Evaluator
    graph = Graph(dtype=dtype, limits=limits, seed=seed)
    try:
        tree = parse(text)
        node = Evaluator(graph, {}).array(Evaluator(graph, {}).run(tree))
    except AdcliError as e:
        e.message = f"in the value of '{name}': {e.message}"
        e.located(text, f"{option} {name}")
        e.filename = f"{option} {name}"
        raise
    return np.asarray(node.value)


FORMATS = ("npy", "npz", "json", "csv", "tsv", "txt")

# The memory a parser takes per byte of text, measured at its worst (a line of 5,000,000
# one-digit fields; a JSON list of empty lists): the size limit of text files follows.
PARSE_BYTES = {"json": 40}
PARSE_BYTES_TEXT = 24


def split_spec(spec):
    """'g.npz:grad_x' -> ('g.npz', None, 'grad_x'), '-:csv' -> ('-', 'csv', None): a file,
    then optionally a format (for a pipe, which has no file name) and the name of one array
    in a file of several. A path that exists is taken whole, colons and all."""
    path, fmt, member = spec, None, None
    for _ in range(2):
        if path == "-" or os.path.exists(path):
            break
        head, sep, tail = path.rpartition(":")
        if not sep or not head:
            break
        if tail.lower() in FORMATS and fmt is None:
            fmt = tail.lower()
        elif member is None and fmt is None:
            member = tail
        else:
            break
        path = head
    return path, fmt, member


def load_file(spec, limits, name, option="--at", stdin_free=True, held=0):
    """One array from @FILE: .npy, .npz, .csv, .txt or .json, a FIFO, or - for standard
    input; FILE:NAME picks one array of a file that holds several. Only the file named is
    read, and only when the memory it needs fits beside the `held` bytes of the values read
    before it."""
    path, fmt, member = split_spec(spec)
    arrays = load_arrays(path, fmt, limits, name, option, stdin_free, held)
    where = f"{option} {name}=@{spec}"
    if not isinstance(arrays, dict):
        if member is not None:
            raise InputError(f"{where}: the file holds one array, without names",
                             hint=f"write {name}=@{path}")
        return arrays
    if member is not None:
        if member not in arrays:
            raise InputError(f"{where}: the file has no array '{member}'",
                             hint=_holds(arrays))
        return arrays[member]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    first = next(iter(arrays), "NAME")
    raise InputError(f"{where}: the file holds {len(arrays)} arrays; name one",
                     hint=f"for example {name}=@{path}:{first} ({_holds(arrays)})")


def load_named(spec, limits, option="--at", stdin_free=True, held=0):
    """`--at @inputs.npz`: every array of a file of named arrays, by its name."""
    path, fmt, member = split_spec(spec)
    if member is not None:
        raise InputError(f"{option} @{spec}: name the input too",
                         hint=f"write {member}=@{spec}")
    arrays = load_arrays(path, fmt, limits, "", option, stdin_free, held)
    if not isinstance(arrays, dict):
        raise InputError(f"{option} @{spec}: the file holds one array, without a name",
                         hint=f"write NAME=@{spec}")
    for key in arrays:
        if not key or key[0].isdigit() or set(key) - NAME_CHARS:
            raise InputError(f"{option} @{spec}: its array '{key[:40]}' has no valid input name",
                             hint=f"pick arrays one by one: NAME=@{spec}:ARRAY")
    return arrays


def _holds(arrays):
    names = list(arrays)
    return "it holds " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")


def _format_of(path, head):
    """The format of a file from its extension, or, for a pipe or a file without one,
    from its first bytes."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in FORMATS or ext == "dat":
        return "txt" if ext == "dat" else ext
    if ext:
        return None
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK"):
        return "npz"
    text = head.lstrip()
    if text[:1] in (b"[", b"{"):
        return "json"
    return "csv" if text.startswith(b"name,index,value") else "txt"


def _text_limit(fmt, limits, held):
    """(the most bytes of a text file in `fmt` that fit the budgets, why)."""
    factor = PARSE_BYTES.get(fmt, PARSE_BYTES_TEXT)
    by_memory = max(0, limits.max_memory - held) // factor
    by_elements = 32 * limits.max_elements + 1024      # numbers of up to 31 characters
    if by_memory <= by_elements:
        return by_memory, (f"reading one takes up to {factor} bytes of memory per byte, and "
                           f"--max-memory is {format_bytes(limits.max_memory)}", "--max-memory")
    return by_elements, (f"32 bytes for each of --max-elements {limits.max_elements:,} numbers",
                         "--max-elements")


def _too_large(where, size, fmt, limits, held):
    """The error of a file over the size limit; `size` its bytes, or a text ("more than N")
    for a pipe, which is read no further than the limit."""
    limit, (why, option) = _text_limit(fmt, limits, held)
    size = f"{size:,}" if isinstance(size, int) else size
    return LimitError(f"{where}: the file has {size} bytes; the limit for a "
                      f"{'.' + fmt if fmt else 'text'} file is {limit:,} bytes ({why})",
                      hint=f"raise it with {option}")


def _read_bounded(f, limits, held, where):
    """A pipe's bytes, no more than a text file may have (the most generous limit)."""
    limit = _text_limit(None, limits, held)[0]
    data = f.read(limit + 1)
    if len(data) > limit:
        raise _too_large(where, f"more than {limit:,}", None, limits, held)
    return data


def load_arrays(path, fmt, limits, name, option="--at", stdin_free=True, held=0):
    """The contents of a file: an array, or a dict of named arrays (.npz, a JSON object,
    adcli's CSV). A pipe (standard input, a FIFO, <(...)) is read once, into memory,
    up to the size limit of text files."""
    import io
    where = f"{option} {name + '=' if name else ''}@{path}"
    if path == "-":
        if not stdin_free:
            raise InputError(f"{where}: standard input is already the source",
                             hint="give the expression or script as an argument, or the "
                                  "values from a file")
        import sys
        data = _read_bounded(sys.stdin.buffer, limits, held, where)
        if not data.strip():
            raise InputError(f"{where}: nothing on standard input")
    elif os.path.isdir(path):
        raise InputError(f"{where}: is a folder, not a file")
    elif not os.path.exists(path):
        raise InputError(f"{where}: no such file")
    elif not os.path.isfile(path):     # a FIFO, /dev/stdin, process substitution
        try:
            with open(path, "rb") as f:
                data = _read_bounded(f, limits, held, where)
        except OSError as e:
            raise InputError(f"{where}: {e.strerror}") from None
    else:
        data = None
    if data is None:
        with open(path, "rb") as f:
            head = f.read(64)
    else:
        head = data[:64]
    fmt = fmt or _format_of(path, head)
    if fmt is None:
        raise InputError(f"{where}: unknown file type '{os.path.splitext(path)[1]}'",
                         hint="use .npy, .npz, .csv, .txt or .json, or name the format: "
                              f"@{path}:csv")
    source = path if data is None else io.BytesIO(data)
    try:
        if fmt == "npy":
            return _load_npy(source, limits, name, where, held)
        if fmt == "npz":
            return _load_npz(source, limits, name, where, held)
        text = _read_text(source, fmt, limits, where, held)
        if fmt == "json":
            return _from_json(text, limits, name, where)
        if text.startswith("name,index,value"):
            return _from_adcli_csv(text, limits, name)
        return _from_text(text, fmt, limits, name, where)
    except READ_ERRORS as e:
        # numpy's and Python's messages may quote a whole line of the file: keep them short
        detail = _shorten(str(e).splitlines()[0], 80) if str(e) else type(e).__name__
        raise InputError(f"{where}: cannot read it as numbers ({detail})") from None


# what a broken file makes the readers raise: numpy's header parser a TokenError, zipfile
# a NotImplementedError for an unknown compression and a RuntimeError for a member marked
# encrypted, zlib its own error
READ_ERRORS = (ValueError, TypeError, OSError, EOFError, IndexError, OverflowError,
               NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError, zlib.error)


def _read_text(source, fmt, limits, where, held):
    """The text of a data file (a path, or a pipe's bytes), refused before parsing when the
    parser would need more memory than the budget leaves beside the `held` bytes. Only so
    much is read, whatever size the file says it has."""
    limit = _text_limit(fmt, limits, held)[0]
    size = os.path.getsize(source) if isinstance(source, str) else len(source.getvalue())
    if size > limit:
        raise _too_large(where, size, fmt, limits, held)
    if isinstance(source, str):
        with open(source, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise _too_large(where, f"more than {limit:,}", fmt, limits, held)
    else:
        data = source.getvalue()
    return _decode(data, where)


def _npy_header(f, where):
    """(shape, dtype) from a .npy header, which must be numpy's and of at most 32
    dimensions; a damaged one is not quoted (numpy's messages would)."""
    from .graph import check_ndim
    try:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(f))
    except READ_ERRORS:
        raise InputError(f"{where}: cannot read it as numbers: not a .npy file, or its header "
                         "is damaged", hint="write it with numpy.save") from None
    check_ndim(len(shape), f"{where}: an array")
    return shape, dtype


def _load_npy(source, limits, name, where, held):
    f = open(source, "rb") if isinstance(source, str) else source
    with f:
        shape, dtype = _npy_header(f, where)
        start = f.tell()
        n = math.prod(shape)
        _check_size(n, limits, name)
        if dtype.kind not in "biuf":
            raise InputError(f"{where}: holds {dtype}, not numbers")
        # refused from the header alone: the data is read only if it is all there and fits
        size = f.seek(0, os.SEEK_END)
        if size < start + n * dtype.itemsize:
            raise InputError(f"{where}: the file is shorter than its header says (shape "
                             f"{tuple(shape)} of {dtype})")
        limits.check_memory(held + n * max(dtype.itemsize, 8), where)
        f.seek(0)
        return np.load(f, allow_pickle=False)


def _load_npz(source, limits, name, where, held):
    """Every array of an .npz file, each checked from its header before it is read."""
    import zipfile
    out = {}
    try:
        with zipfile.ZipFile(source) as z:
            for entry in z.namelist():
                key = entry[:-4] if entry.endswith(".npy") else entry
                with z.open(entry) as f:
                    shape, dtype = _npy_header(f, f"{where}: its array '{key}'")
                n = math.prod(shape)
                _check_size(n, limits, name or key)
                if dtype.kind not in "biuf":
                    raise InputError(f"{where}: its array '{key}' holds {dtype}, not numbers")
                held += n * max(dtype.itemsize, 8)
                limits.check_memory(held, f"{where}: its array '{key}'")
                with z.open(entry) as f:
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
    except zipfile.BadZipFile as e:
        raise ValueError(str(e)) from None
    if not out:
        raise InputError(f"{where}: the file holds no arrays")
    return out


def _from_json(text, limits, name, where):
    """A JSON array, or an object of arrays by name; adcli's own output (`--out r.json`)
    gives value, grad_x, ...: the paths of its members joined by '_'. Brackets nested
    deeper than an array can have dimensions are refused before the JSON parser sees them
    (it recurses); integers are read as floats (Python would make a 4,000-digit int and
    fail to convert it)."""
    import json

    from .graph import MAX_NDIM
    code = np.frombuffer(text.encode("utf-8", "surrogateescape"), np.uint8)
    at = np.flatnonzero((code == ord("[")) | (code == ord("]")) | (code == ord("{"))
                        | (code == ord("}")))         # the brackets: few, beside the numbers
    depth = np.cumsum(np.where((code[at] == ord("[")) | (code[at] == ord("{")), 1, -1))
    if depth.size and depth.max() > MAX_NDIM:
        byte = int(at[np.argmax(depth > MAX_NDIM)])
        offset = len(code[:byte].tobytes().decode("utf-8", "surrogateescape"))
        raise _located_error(where, text, offset, f"lists nested more than {MAX_NDIM} deep; "
                             f"an array has at most {MAX_NDIM} dimensions")
    try:
        data = json.loads(text, parse_int=float)
    except json.JSONDecodeError as e:
        raise _located_error(where, text, e.pos, e.msg.lower()) from None
    if not isinstance(data, dict):
        try:
            return _json_array(data, limits, name)
        except (ValueError, TypeError):
            raise _json_problem(text, where) from None
    from .render import flat_members
    return flat_members(data, lambda path, v: _json_array(v, limits, path))


def _json_array(v, limits, name):
    # non-finite numbers are the strings "nan", "inf" and "-inf" in adcli's JSON
    arr = np.array(v, dtype=np.float64)
    _check_size(arr.size, limits, name)
    return arr


def _from_adcli_csv(text, limits, name):
    """adcli's CSV (`--out r.csv`): name,index,value rows, the index the element's
    position along each axis, separated by spaces."""
    cells = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        key, index, number = line.split(",")
        cells.setdefault(key, []).append((tuple(int(i) for i in index.split()), float(number)))
    out = {}
    for key, items in cells.items():
        shape = tuple(max(i[k] for i, _ in items) + 1 for k in range(len(items[0][0])))
        _check_size(math.prod(shape), limits, key)
        arr = np.zeros(shape)
        for i, v in items:
            arr[i] = v
        out[key] = arr
    return out


def _from_text(text, fmt, limits, name, where):
    """Numbers in rows and columns; `#` starts a comment. What is not a number is reported
    by its line and column."""
    import io
    import warnings
    delim = "," if fmt == "csv" or ("," in text and fmt != "tsv") else None
    if not text.split("#", 1)[0].strip() and "\n" not in text.strip():
        arr = np.zeros(0)                             # an empty file: no numbers
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")       # "input contained no data"
                arr = np.loadtxt(io.StringIO(text), delimiter=delim, ndmin=1, comments="#")
        except ValueError:
            raise _text_problem(text, where, delim) from None
    _check_size(arr.size, limits, name)
    return arr


def _decode(raw, where):
    """The text of a file, which must be UTF-8 (a spreadsheet's byte-order mark dropped)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, col = raw.count(b"\n", 0, e.start) + 1, e.start - raw.rfind(b"\n", 0, e.start)
        raise InputError(f"{where}, line {line}, column {col}: byte 0x{raw[e.start]:02x} is "
                         "not UTF-8 text", hint="give numbers as text, or a .npy file") from None


def _shorten(token, n=20):
    """At most n characters of a piece of a file, for a message: never a whole line."""
    return token if len(token) <= n else token[:n] + "..."


def _located_error(where, text, offset, what):
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return InputError(f"{where}, line {line}, column {col}: {what}")


JSON_TOKEN = re.compile(r'\s*(?:([\[\]{},:])|("(?:[^"\\]|\\.)*"?)|([^\s\[\]{},:"]+))')
STRICT_NUMBER = re.compile(rf"{DECIMAL}|[-+]?(nan|inf|infinity)", re.I)


def _numeric(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _json_problem(text, where):
    """Where valid JSON stops being an array of numbers: the first item that is not a
    number, or the first list whose length or depth differs from the lists before it.
    Called only once reading has failed, so its slowness costs nothing otherwise."""
    lengths, leaf_depth, stack = {}, None, []      # stack: item counts of the open lists
    for m in JSON_TOKEN.finditer(text):
        punct, string, word = m.groups()
        start = m.start(m.lastindex) if m.lastindex else m.end()
        if punct == "[":
            if stack:
                stack[-1] += 1
            stack.append(0)
        elif punct == "]":
            n, d = stack.pop(), len(stack)
            if lengths.setdefault(d, n) != n:
                return _located_error(where, text, start, f"a list of {n} item{'s' * (n != 1)} "
                                      f"where the lists before it at this depth have "
                                      f"{lengths[d]}")
        elif punct in ("{", ":") or (string is not None and not _numeric(string[1:-1])):
            token = string if string is not None else punct
            return _located_error(where, text, start, f"{_shorten(token)!r} is not a number")
        elif word is not None or string is not None:   # numpy reads "nan", null, true too
            if stack:
                stack[-1] += 1
            if leaf_depth is None:
                leaf_depth = len(stack)
            if len(stack) != leaf_depth:
                return _located_error(where, text, start, "a number where the items before it "
                                      "are lists (or a list where they are numbers)")
    return InputError(f"{where}: the lists do not make an array of numbers")


def _fields(line, delim):
    """(column, text) of each field of a line."""
    if delim is None:
        return [(m.start(), m.group()) for m in re.finditer(r"\S+", line)]
    out, start = [], 0
    for part in line.split(delim):
        out.append((start, part))
        start += len(part) + len(delim)
    return out


def _text_problem(text, where, delim):
    """The first field that is not a number, or the first row whose number of fields
    differs from the first row's, with its line and column."""
    first, offset = None, 0
    for line in text.splitlines(keepends=True):
        body = line.split("#", 1)[0].rstrip("\r\n")
        if body.strip():
            fields = _fields(body, delim)
            for col, field in fields:
                token = field.strip()
                if not STRICT_NUMBER.fullmatch(token):
                    col += len(field) - len(field.lstrip())
                    what = (f"{_shorten(token)!r} is not a number" if token
                            else "an empty field, where a number belongs")
                    return _located_error(where, text, offset + col, what)
            if first is None:
                first = len(fields)
            elif len(fields) != first:
                return _located_error(where, text, offset, f"{len(fields)} numbers in this row "
                                      f"and {first} in the first")
        offset += len(line)
    return InputError(f"{where}: cannot read it as rows of numbers")


def _check_size(n, limits, name, option="--at"):
    if n > limits.max_elements:
        raise LimitError(f"{option} {name}: {n:,} elements; the limit is {limits.max_elements:,}",
                         hint="raise it with --max-elements")


def resolve(items, dtype, limits, option="--at", stdin_free=True, seed=0):
    """--at items (or --tangent, --vector ones) to arrays, by name, in the order given.
    `stdin_free`: standard input is not the source, so `@-` may read it (once); `seed`
    seeds the randn, rand and randint of their expressions."""
    out = {}
    for name, text in parse_assignments(items, option).items():
        reads_stdin = text == "@-" or text.startswith("@-:")
        held = sum(a.nbytes for a in out.values())
        if name.startswith("@"):         # a file of named arrays: each is an input
            for key, arr in load_named(text[1:], limits, option, stdin_free, held).items():
                if key in out:
                    raise InputError(f"{option} gives '{key}' twice (also in {text})")
                out[key] = _as(arr, dtype)
        elif name in out:
            raise InputError(f"{option} gives '{name}' twice")
        else:
            out[name] = value(text, dtype, limits, name, option, stdin_free, held, seed)
        if reads_stdin:       # standard input can be read once
            stdin_free = False
    return out


def _as(arr, dtype):
    return arr.astype(dtype) if arr.dtype == bool else arr


def value(text, dtype, limits, name, option="--at", stdin_free=True, held=0, seed=0):
    """One value: a constant of the language or @FILE."""
    if text.startswith("@"):
        arr = load_file(text[1:], limits, name, option, stdin_free, held)
    else:
        arr = evaluate_constant(text, dtype, limits, name, option, seed)
    return _as(arr, dtype)
