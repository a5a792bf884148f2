"""Typed errors, and notes. The CLI turns each error into one short message on stderr and
an exit code; a note (a warning about the point at hand, or a remark) is data until it is
rendered, in the same form as an error's message."""
from __future__ import annotations

from dataclasses import dataclass

OK, CHECK_FAILED, BAD_INPUT, INTERNAL = 0, 1, 2, 3


class AdcliError(Exception):
    """An error a user caused and can fix. `pos` is (line, column, width), 1-based."""

    exit_code = BAD_INPUT
    kind = "error"

    def __init__(self, message, *, pos=None, source=None, filename=None, hint=None):
        super().__init__(message)
        self.message, self.pos, self.source, self.filename, self.hint = (
            message, pos, source, filename, hint)

    def located(self, source, filename=None):
        """Attach the source text once the caller knows it (keeps an existing one)."""
        if self.source is None:
            self.source, self.filename = source, filename
        return self

    def render(self):
        return render_message(f"{self.kind}: {self.message}", self.pos, self.source,
                              self.filename, self.hint)


def render_message(head, pos=None, source=None, filename=None, hint=None):
    """`head`, then where `pos` (line, column, width) is in `source`, with carets under it,
    and the hint: the text of an error or a note on stderr."""
    lines = [head]
    if pos and source is not None:
        line, col, width = pos
        where = f"{filename + ', ' if filename else ''}line {line}, column {col}"
        source_lines = source.splitlines()
        text = source_lines[line - 1] if 0 < line <= len(source_lines) else ""
        # keep very long lines readable: a window around the column
        start = max(0, col - 60)
        snippet = ("..." if start else "") + text[start:start + 120] + ("..." if len(text) > start + 120 else "")
        caret_col = col - 1 - start + (3 if start else 0)
        lines = [f"{head}", f"  --> {where}", "   | " + snippet,
                 "   | " + " " * caret_col + "^" * max(1, min(width, 120 - caret_col))]
    if hint and hint.strip():
        lines.append(f"hint: {hint}")
    # bytes that were not UTF-8 (kept by Python as lone surrogates) shown as \udcff,
    # so that the message can be printed anywhere
    return "\n".join(lines).encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Note:
    """A message about a result for stderr, as data: `code` is a short stable identifier
    that programs match on (never the text), `level` "warning" or "note", `pos` (line,
    column, width) its place in `source` (from `filename`), if it has one. `tag` is the
    word before the colon when it is not the level ("anomaly (forward)")."""
    code: str
    message: str
    level: str = "note"
    pos: tuple = None
    source: str = None
    filename: str = None
    tag: str = None

    def render(self):
        return render_message(f"{self.tag or self.level}: {self.message}", self.pos,
                              self.source, self.filename)

    __str__ = render


def warning(code, message, **where):
    return Note(code, message, "warning", **where)


def note(code, message, **where):
    return Note(code, message, "note", **where)


class ParseError(AdcliError):
    kind = "syntax error"


class UnknownNameError(AdcliError):
    kind = "name error"


class ShapeError(AdcliError):
    kind = "shape error"


class InputError(AdcliError):
    kind = "input error"


class LimitError(AdcliError):
    kind = "limit exceeded"


class ValueError_(AdcliError):
    kind = "value error"


def suggest(name, candidates):
    """'did you mean ...?' for the closest known name, or ''."""
    import difflib
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
