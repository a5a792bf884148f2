"""The evaluation trace as a table: the Wengert list of the autodiff textbooks.

One row per node the output depends on, in evaluation order (node ids are a topological
order), with its op, the rows it reads, its shape, its value and its adjoint: the
derivative of the output with respect to that node's value. Reading the table from the
bottom up is reverse-mode accumulation done by hand: a row's adjoint is the sum, over the
rows that read it, of their adjoint times their local derivative (the chain rule).
"""
from __future__ import annotations

import json

import numpy as np

from . import autodiff
from .errors import note
from .graph import reachable
from .render import nested, number_text, plain_array, to_jsonable

TABLE_ELEMENTS = 10      # arrays with more elements show as their first and last three
JSON_ELEMENTS = 1000     # ... and in JSON, arrays with more elements than this
COLUMNS = ("id", "op", "inputs", "shape", "value", "adjoint")


def shape_text(shape):
    return "scalar" if len(shape) == 0 else "×".join(map(str, shape))


def value_text(a, limit=TABLE_ELEMENTS, number=None):
    """A value on one line: a number, a nested list, or, beyond `limit` elements, the
    first and last elements (three, or fewer for a small limit) of the flattened array (the shape says the rest).
    Numbers are written exactly, or by `number` (a function of one float) if given."""
    a = np.asarray(a)
    if number is None and (limit is None or a.size <= limit):
        return plain_array(a)
    number = number or number_text
    if limit is None or a.size <= limit:
        return json.dumps(nested(a, number)).replace('"', "")
    flat, h = a.ravel(), max(1, min(3, limit // 2))
    head = ", ".join(number(v) for v in flat[:h].tolist())
    tail = ", ".join(number(v) for v in flat[-h:].tolist())
    return f"[{head}, ..., {tail}]"


def _static_text(key, v):
    """A static attribute as written in the language, or None for one not worth showing."""
    if key == "key":                     # an index: (1, slice(0, 2, None)) -> [1, 0:2]
        parts = []
        for k in v:
            if isinstance(k, slice):
                parts.append(":".join("" if x is None else str(x) for x in (k.start, k.stop))
                             + ("" if k.step is None else f":{k.step}"))
            else:
                parts.append(str(k))
        return "[" + ", ".join(parts) + "]"
    if v is None or isinstance(v, (bool, int, float, str)):
        return f"{key}={v}"
    if isinstance(v, tuple) and all(isinstance(x, int) for x in v):
        return f"{key}={v}"
    return None                         # rules, generators and the like


def _same(a, b):
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):
        return False


def op_text(node):
    """What a node is: `input x`, `const`, or the op's name with its static attributes
    (`sum axis=0`, `index [1:3]`)."""
    if node.op is None:
        return f"input {node.name}" if node.is_input else "const"
    defaults = node.op.attrs
    extra = [t for t in (_static_text(k, v) for k, v in node.attrs.items()
                         if not (k in defaults and _same(defaults[k], v))) if t]
    return " ".join([node.op.name] + extra)


def node_adjoints(traced):
    """({id: adjoint}, note): the adjoint of every float node that the output depends on
    and that depends on an input (0 where no differentiable path leads), or None and a
    note saying why the output has none (it is not one float number). Constants, and
    nodes computed from constants alone, have none: nobody differentiates with respect
    to them (the adjoint of the exponent in (x-3)**2 would be the NaN of log(x-3))."""
    graph, out = traced.graph, traced.output
    if out.dtype.kind != "f":
        return None, note("no-adjoints", "the value is boolean, so there are no adjoints")
    if out.size != 1:
        return None, note("no-adjoints", f"the value has shape {tuple(out.shape)}; adjoints "
                          "(gradients) need a value that is one number: use sum(...) of it")
    adj, active = autodiff.adjoints(graph, out), set()
    for i in reachable([out]):           # in topological order: arguments first
        n = graph.nodes[i]
        if n.is_input or any(a.id in active for a in n.args):
            active.add(i)
    return {i: adj[i] if i in adj else np.zeros(graph.nodes[i].shape, graph.nodes[i].dtype)
            for i in active if graph.nodes[i].dtype.kind == "f"}, None


def first_readers(graph, ids):
    """{constant id: the first node among `ids` that reads it}. Tracing makes one node
    per number (a loop's `2` is one constant, not one per iteration), dated where it
    first appeared, which may be a line that the output does not depend on."""
    out = {}
    for i in ids:
        for a in graph.nodes[i].args:
            if a.op is None and not a.is_input and a.id not in out:
                out[a.id] = graph.nodes[i]
    return out


def line_of(node, readers):
    """The source line of a node; a constant's is that of the first node that reads it."""
    node = readers.get(node.id, node)
    return node.pos[0] if node.pos else None


def wengert_list(traced):
    """(rows, note). A row is a dict: id, op, inputs (ids), shape, value, adjoint (arrays;
    adjoint None where there is none), attrs text, name (inputs), line (scripts)."""
    graph = traced.graph
    adj, note = node_adjoints(traced)
    script = traced.label is not None          # only scripts are traced with a label
    rows, ids = [], reachable([traced.output])
    readers = first_readers(graph, ids) if script else None
    for i in ids:
        n = graph.nodes[i]
        row = {"id": i, "op": "input" if n.is_input else (n.op.name if n.op else "const"),
               "text": op_text(n), "inputs": [a.id for a in n.args],
               "shape": tuple(n.shape), "value": n.value, "adjoint": None}
        if n.is_input:
            row["name"] = n.name
        if adj is not None:
            row["adjoint"] = adj.get(i)
        if script:
            row["line"] = line_of(n, readers)
        rows.append(row)
    return rows, note


# ---------------------------------------------------------------- reports

def _cells(row, full):
    limit = None if full else TABLE_ELEMENTS
    adjoint = "" if row["adjoint"] is None else value_text(row["adjoint"], limit)
    cells = [f"%{row['id']}", row["text"], " ".join(f"%{a}" for a in row["inputs"]),
             shape_text(row["shape"]), value_text(row["value"], limit), adjoint]
    if "line" in row:
        cells.append("" if row["line"] is None else str(row["line"]))
    return cells


def to_plain(rows, full=False):
    """A header line, then one tab-separated line per row."""
    header = list(COLUMNS) + (["line"] if rows and "line" in rows[0] else [])
    lines = ["\t".join(header)]
    lines += ["\t".join(_cells(r, full)) for r in rows]
    return "\n".join(lines)


def _json_array(a, full):
    a = np.asarray(a)
    if not full and a.size > JSON_ELEMENTS:
        return value_text(a)                 # a string: "[a, b, c, ..., x, y, z]"
    return to_jsonable(a)


def to_json(rows, full=False):
    """A JSON list of row objects."""
    out = []
    for r in rows:
        obj = {"id": r["id"], "op": r["op"]}
        if "name" in r:
            obj["name"] = r["name"]
        if r["text"] != r["op"] and not r["text"].startswith("input "):
            obj["attrs"] = r["text"].split(" ", 1)[1]
        obj["inputs"] = r["inputs"]
        obj["shape"] = list(r["shape"])
        obj["value"] = _json_array(r["value"], full)
        obj["adjoint"] = None if r["adjoint"] is None else _json_array(r["adjoint"], full)
        if "line" in r:
            obj["line"] = r["line"]
        out.append(obj)
    return json.dumps(out)


def to_rich(rows, console, title, source=None, full=False):
    """A rich table that fits the terminal; for scripts the line column also shows the
    source line's text. Numbers are never cut: arrays wrap between their elements, and on
    a narrow terminal the line, shape and inputs columns are left out, in that order."""
    from .render import fit, left_out_note
    script = bool(rows) and "line" in rows[0]
    lines = source.splitlines() if source else []
    columns = [(name, dict(style="bold cyan" if name == "id" else None, no_wrap=name in (
                "id", "shape"), justify="right" if name == "id" else "left", overflow="fold"))
               for name in COLUMNS]
    if script:
        columns.append(("line", dict(style="dim", max_width=30, overflow="fold")))
    body = []
    for r in rows:
        cells = _cells(r, full)
        if script and r["line"] is not None and 0 < r["line"] <= len(lines):
            cells[-1] = f"{r['line']}: {lines[r['line'] - 1].strip()}"
        body.append(cells)
    table, left_out = fit(console, columns, body, ("line", "shape", "inputs"),
                          styles={len(body) - 1: "bold"},
                          title=title if len(title) <= 80 else title[:77] + "...",
                          header_style="bold")
    console.print(table)
    left_out_note(console, left_out)
    return table

