"""Values given on the command line: `--at x=2,y=[1,2]` and `x=@data.npy`."""
from __future__ import annotations

import math
import os
import re

import numpy as np

from .errors import AdcliError, InputError, LimitError

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


def load_file(path, limits, name, option="--at"):
    """Read an array from .npy, .csv, .txt or .json. Only the file named is read."""
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
            _check_size(math.prod(shape), limits, name)
            if dtype.kind not in "biuf":
                raise InputError(f"{option} {name}=@{path}: holds {dtype}, not numbers")
            return np.load(path, allow_pickle=False)
        size = os.path.getsize(path)
        if size > 32 * limits.max_elements + 1024:
            raise LimitError(f"{option} {name}=@{path}: the file is too large ({size:,} bytes)")
        if ext == ".json":
            with open(path) as f:
                import json
                data = json.load(f)
            arr = np.asarray(data, dtype=np.float64)
        elif ext in (".csv", ".txt", ".tsv", ".dat", ""):
            with open(path, encoding="utf-8-sig") as f:     # (a spreadsheet's BOM)
                text = f.read()
            delim = "," if ext == ".csv" or ("," in text and ext != ".tsv") else None
            if not text.split("#", 1)[0].strip() and "\n" not in text.strip():
                arr = np.zeros(0)                             # an empty file: no numbers
            else:
                import io
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")           # "input contained no data"
                    arr = np.loadtxt(io.StringIO(text), delimiter=delim, ndmin=1, comments="#")
        else:
            raise InputError(f"{option} {name}=@{path}: unknown file type '{ext}'",
                             hint="use .npy, .csv, .txt or .json")
    except (ValueError, TypeError, OSError) as e:
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise InputError(f"{option} {name}=@{path}: cannot read it as numbers ({detail})") from None
    _check_size(arr.size, limits, name, option)
    return arr


def _check_size(n, limits, name, option="--at"):
    if n > limits.max_elements:
        raise LimitError(f"{option} {name}: {n:,} elements; the limit is {limits.max_elements:,}",
                         hint="raise it with --max-elements")


def resolve(items, dtype, limits, option="--at"):
    """--at items (or --tangent, --vector ones) to arrays, by name, in the order given."""
    out = {}
    for name, text in parse_assignments(items, option).items():
        arr = value(text, dtype, limits, name, option)
        out[name] = arr
    return out


def value(text, dtype, limits, name, option="--at"):
    """One value: a constant of the language or @FILE."""
    if text.startswith("@"):
        arr = load_file(text[1:], limits, name, option)
    else:
        arr = evaluate_constant(text, dtype, limits, name, option)
    return arr.astype(dtype) if arr.dtype == bool else arr
