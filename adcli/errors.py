"""Typed errors. The CLI turns each into one short message on stderr and an exit code."""
from __future__ import annotations

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
        head = f"{self.kind}: {self.message}"
        lines = [head]
        if self.pos and self.source is not None:
            line, col, width = self.pos
            where = f"{self.filename + ', ' if self.filename else ''}line {line}, column {col}"
            source_lines = self.source.splitlines()
            text = source_lines[line - 1] if 0 < line <= len(source_lines) else ""
            # keep very long lines readable: a window around the column
            start = max(0, col - 60)
            snippet = ("..." if start else "") + text[start:start + 120] + ("..." if len(text) > start + 120 else "")
            caret_col = col - 1 - start + (3 if start else 0)
            lines = [f"{head}", f"  --> {where}", "   | " + snippet,
                     "   | " + " " * caret_col + "^" * max(1, min(width, 120 - caret_col))]
        if self.hint and self.hint.strip():
            lines.append(f"hint: {self.hint}")
        # bytes that were not UTF-8 (kept by Python as lone surrogates) shown as \udcff,
        # so that the message can be printed anywhere
        return "\n".join(lines).encode("utf-8", "backslashreplace").decode("utf-8")


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
