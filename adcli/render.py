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

import numpy as np


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
    table = Table(title=result.expr if len(result.expr) <= 80 else result.expr[:77] + "...",
                  show_header=True, header_style="bold")
    table.add_column("", style="bold cyan", no_wrap=True)
    table.add_column("shape", style="dim")
    table.add_column("value")
    with np.printoptions(threshold=1000, edgeitems=3, linewidth=100):
        table.add_row("value", _shape(result.value), _pretty(result.value))
        for _, label, v in rows(result):
            table.add_row(label, _shape(v), _pretty(v))
    console.print(table)
    mode = (result.extra or {}).get("mode")
    if mode:
        console.print(f"[dim]mode: {mode}[/dim]")


def _shape(a):
    a = np.asarray(a)
    return "scalar" if a.ndim == 0 else "×".join(map(str, a.shape))


def _pretty(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return number_text(a.item())
    return np.array2string(a, separator=", ")


def save(result, path):
    """Write the value and the gradients in full: .npy, .npz, .csv or .json."""
    from .errors import InputError
    arrays = {"value": np.asarray(result.value)}
    for key, _, v in rows(result):
        # file-friendly names: d/dx -> grad_x, d2/dx,dy -> d2_dx_dy, vjp/x -> vjp_x
        name = "grad_" + key[3:] if key.startswith("d/d") else \
            key.replace("/", "_").replace(",", "_")
        arrays[name] = np.asarray(v)
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    try:
        if ext == "npz":
            with open(path, "wb") as f:        # a file object: numpy adds no extension
                np.savez(f, **arrays)
        elif ext == "npy":
            if len(arrays) > 1 and len(arrays) != 2:
                raise InputError(f"--out {path}: a .npy file holds one array; use .npz for "
                                 f"{len(arrays)} arrays")
            # with one gradient, the .npy file holds the gradient; otherwise the value
            with open(path, "wb") as f:
                np.save(f, list(arrays.values())[-1])
        elif ext == "csv":
            with open(path, "w") as f:
                f.write("name,index,value\n")
                for k, a in arrays.items():
                    if a.ndim == 0:
                        f.write(f"{k},,{number_text(a)}\n")
                    for idx, v in zip(np.ndindex(a.shape) if a.ndim else (), a.ravel()):
                        f.write(f"{k},{' '.join(map(str, idx))},{number_text(v)}\n")
        elif ext == "json":
            with open(path, "w") as f:
                f.write(to_json(result) + "\n")
        else:
            raise InputError(f"--out {path}: unknown file type", hint="use .npy, .npz, .csv or .json")
    except OSError as e:
        raise InputError(f"--out {path}: {e.strerror}") from None
