"""The gradcheck report as a table: plain text for pipes, JSON, and a rich table that fits
the terminal."""
from __future__ import annotations

import json
import math

from .numeric import SAFETY
from .rows import SHOWN, kink_rows, number, text_index


def _index_cell(index):
    return "-" if index == () else text_index(index)


def _short(x):
    return f"{float(x):.2g}"


HEADER = ("check", "input", "index", "analytic", "numeric", "abs_diff", "rel_diff",
          "tolerance", "status")


def _cells(row):
    return (row.check, row.input, _index_cell(row.index), number(row.analytic), number(row.numeric),
            _short(row.abs_diff), _short(row.rel_diff), _short(row.tolerance), row.status)


def to_plain(report):
    lines = ["\t".join(HEADER)]
    lines += ["\t".join(_cells(r)) for r in report.shown]
    for r in kink_rows(report):
        lines.append("\t".join(("kink", r.input, _index_cell(r.index), number(r.left),
                                number(r.right), "; ".join(r.kinks) or "-")))
    lines.append(f"verdict\t{report.verdict}\t{report.message}")
    return "\n".join(lines)


def _row_json(r):
    obj = {"check": r.check, "input": r.input,
           "index": None if r.index is None else list(r.index),
           "analytic": _jnum(r.analytic), "numeric": _jnum(r.numeric),
           "abs_diff": _jnum(r.abs_diff), "rel_diff": _jnum(r.rel_diff),
           "tolerance": _jnum(r.tolerance), "status": r.status}
    if r.left is not None:
        obj["left"], obj["right"], obj["kinks"] = _jnum(r.left), _jnum(r.right), r.kinks
    return obj


def _jnum(x):
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def to_json(report):
    obj = {
        "expr": report.expr, "verdict": report.verdict, "message": report.message,
        "method": report.method, "order": report.order, "mode": report.mode,
        "tolerances": {"rtol": report.rtol, "atol": report.atol, "eps": report.eps,
                       "safety": SAFETY},
        "worst": [_row_json(r) for r in report.rows[:SHOWN]],
        "inputs": report.inputs,
        "rules": [{k: v for k, v in r.items() if k != "rows"} | {"rows": [_row_json(x) for x in r["rows"]]}
                  for r in report.rules],
        "expect": [{"name": e["name"], "formula": e["formula"], "status": e["status"],
                    "rows": [_row_json(x) for x in e["rows"][:SHOWN]]} for e in report.expects],
        "nonsmooth": [_row_json(r) for r in report.rows if r.status == "nonsmooth"][:SHOWN],
        "dtype": report.dtype, "device": report.device,
    }
    return json.dumps(obj)


def to_rich(report, console):
    """The report as a table that fits the terminal: an entry is its input and index
    (x[1]), numbers are never cut, and on a narrow terminal the tolerance, abs diff and
    check columns are left out, in that order."""
    from rich.text import Text

    from ..render import fit, left_out_note
    title = report.expr if len(report.expr) <= 80 else report.expr[:77] + "..."
    style = {"ok": "green", "FAIL": "bold red", "nonsmooth": "yellow", "rounding": "yellow",
             "skipped": "dim"}
    numbers = ("analytic", "numeric", "abs_diff", "rel_diff", "tolerance")
    columns = [(h.replace("_", " "), dict(no_wrap=True, justify="right" if h in numbers else
                                          "left"))
               for h in ("check", "input") + HEADER[3:]]
    rows = []
    for r in report.shown:
        cells = list(_cells(r))
        cells[1:3] = [r.input + ("" if r.index == () else text_index(r.index))]
        cells[-1] = Text(cells[-1], style=style.get(r.status, ""))
        rows.append(cells)
    table, left_out = fit(console, columns, rows, ("tolerance", "abs diff", "check", "rel diff"),
                          title=f"gradcheck {title}", header_style="bold")
    console.print(table)
    left_out_note(console, left_out)
    for r in kink_rows(report):
        console.print(Text("non-smooth ", style="yellow") + Text(
            f"{r.input}{text_index(r.index)}: left slope {number(r.left)}, right slope "
            f"{number(r.right)}" + (f"; kink of {', '.join(r.kinks)}" if r.kinks else "")))
    color = {"pass": "bold green", "fail": "bold red"}.get(report.verdict, "bold yellow")
    console.print(Text(f"{report.verdict}: ", style=color) + Text(report.message))
