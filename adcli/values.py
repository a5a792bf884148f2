"""Values given on the command line: `--at x=2,y=[1,2]` and `x=@data.npy`."""
from __future__ import annotations

import math
import os
import re

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


NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def evaluate_constant(text, dtype, limits, name, option="--at"):
    """A value written in the language: a number, a list, linspace(0,1,5), pi/4, ..."""
    if len(text) <= 100 and NUMBER.fullmatch(text):
        return np.asarray(float(text), dtype=dtype)   # a plain number: no parser needed
    from .graph import Graph
    from .parse import parse
    from .trace import Evaluator
    graph = Graph(dtype=dtype, limits=limits)
    try:
        tree = parse(text)
        node = Evaluator(graph, {}).array(Evaluator(graph, {}).run(tree))
    except AdcliError as e:
        e.message = f"in the value of '{name}': {e.message}"
        e.located(text, f"{option} {name}")
        e.filename = f"{option} {name}"
        raise
    return np.asarray(node.value)


# The memory a parser takes per byte of text, measured at its worst (a line of 5,000,000
# one-digit fields; a JSON list of empty lists): the size limit of text files follows.
PARSE_BYTES = {".json": 40}
PARSE_BYTES_TEXT = 24


def load_file(path, limits, name, option="--at", held=0):
    """Read an array from .npy, .csv, .txt or .json. Only the file named is read, and only
    when the memory it needs fits beside the `held` bytes of the values read before it."""
    if os.path.isdir(path):
        raise InputError(f"{option} {name}=@{path}: is a folder, not a file")
    if not os.path.isfile(path):
        raise InputError(f"{option} {name}=@{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(f))
                start = f.tell()
            n = math.prod(shape)
            _check_size(n, limits, name, option)
            if dtype.kind not in "biuf":
                raise InputError(f"{option} {name}=@{path}: holds {dtype}, not numbers")
            # refused from the header alone: the data is read only if it is all there and fits
            if os.path.getsize(path) < start + n * dtype.itemsize:
                raise InputError(f"{option} {name}=@{path}: the file is shorter than its header "
                                 f"says (shape {tuple(shape)} of {dtype})")
            limits.check_memory(held + n * max(dtype.itemsize, 8), f"{option} {name}=@{path}")
            return np.load(path, allow_pickle=False)
        if ext not in PARSE_BYTES and ext not in (".csv", ".txt", ".tsv", ".dat", ""):
            raise InputError(f"{option} {name}=@{path}: unknown file type '{ext}'",
                             hint="use .npy, .csv, .txt or .json")
        text = _read_text(path, ext, limits, name, option, held)
        if ext == ".json":
            import json
            arr = np.asarray(json.loads(text), dtype=np.float64)
        else:
            delim = "," if ext == ".csv" or ("," in text and ext != ".tsv") else None
            if not text.split("#", 1)[0].strip() and "\n" not in text.strip():
                arr = np.zeros(0)                             # an empty file: no numbers
            else:
                import io
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")           # "input contained no data"
                    arr = np.loadtxt(io.StringIO(text), delimiter=delim, ndmin=1, comments="#")
    except (ValueError, TypeError, OSError) as e:
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise InputError(f"{option} {name}=@{path}: cannot read it as numbers ({detail})") from None
    _check_size(arr.size, limits, name, option)
    return arr


def _read_text(path, ext, limits, name, option, held):
    """The text of a data file, refused before parsing when the parser would need more
    memory than the budget leaves beside the `held` bytes. Only so much is read, whatever
    size the file says it has."""
    factor = PARSE_BYTES.get(ext, PARSE_BYTES_TEXT)
    by_memory = max(0, limits.max_memory - held) // factor
    by_elements = 32 * limits.max_elements + 1024      # numbers of up to 31 characters
    limit = min(by_memory, by_elements)

    def too_large(size):
        why = (f"reading one takes up to {factor} bytes of memory per byte, and --max-memory "
               f"is {format_bytes(limits.max_memory)}" if limit == by_memory else
               f"32 bytes for each of --max-elements {limits.max_elements:,} numbers")
        return LimitError(f"{option} {name}=@{path}: the file has {size:,} bytes; the limit for "
                          f"a {ext or 'text'} file is {limit:,} bytes ({why})",
                          hint="raise it with " + ("--max-memory" if limit == by_memory
                                                   else "--max-elements"))
    size = os.path.getsize(path)
    if size > limit:
        raise too_large(size)
    with open(path, encoding="utf-8-sig") as f:     # (a spreadsheet's BOM)
        text = f.read(limit + 1)
    if len(text) > limit:
        raise too_large(len(text))
    return text


def _check_size(n, limits, name, option="--at"):
    if n > limits.max_elements:
        raise LimitError(f"{option} {name}: {n:,} elements; the limit is {limits.max_elements:,}",
                         hint="raise it with --max-elements")


def resolve(items, dtype, limits, option="--at"):
    """--at items (or --tangent, --vector ones) to arrays, by name, in the order given."""
    out, held = {}, 0
    for name, text in parse_assignments(items, option).items():
        arr = value(text, dtype, limits, name, option, held)
        out[name] = arr
        held += arr.nbytes
    return out


def value(text, dtype, limits, name, option="--at", held=0):
    """One value: a constant of the language or @FILE."""
    if text.startswith("@"):
        arr = load_file(text[1:], limits, name, option, held)
    else:
        arr = evaluate_constant(text, dtype, limits, name, option)
    return arr.astype(dtype) if arr.dtype == bool else arr
