"""Reading what a command is given: the EXPR argument (an expression, a script file, or -
for standard input) and the --at values. api.load and api.tracer trace what this reads."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

from .errors import InputError


@dataclass
class Source:
    """The text to trace, where it came from, and the values of its inputs."""
    text: str
    filename: str = None        # the file, "<stdin>", or None for an expression argument
    script: bool = False
    values: dict = field(default_factory=dict)      # name -> array, from --at
    guessed: list = field(default_factory=list)     # names given 1.0 for lack of a value


def read(expr, at=(), dtype=None, limits=None, seed=0):
    """The Source for the EXPR argument and the --at values (`dtype` a numpy type); `@-`
    reads standard input unless it is the source; `seed` seeds the randn, rand and randint
    of their expressions. An expression read from a file or stdin is stripped."""
    from . import values
    text, filename, script = _text(expr)
    if filename and not script:
        text = text.strip()
    vals = values.resolve(at or [], dtype, limits, stdin_free=expr != "-", seed=seed)
    return Source(text, filename, script, vals)


def _text(expr):
    """(text, filename, is_script) for the EXPR argument."""
    from .parse import MAX_SOURCE, check_source_size
    if expr == "-":
        # bytes, so that text that is not UTF-8 gets a message from the parser with its
        # place; no more than the limit is read (a character has at most 4 bytes)
        stream = getattr(sys.stdin, "buffer", None)
        text = (stream.read(4 * (MAX_SOURCE + 1)).decode("utf-8", "surrogateescape")
                if stream is not None else sys.stdin.read(MAX_SOURCE + 1))
        check_source_size(text, "standard input")
        if not text.strip():
            raise InputError("nothing on standard input")
        return text, "<stdin>", looks_like_script(text)
    if expr.endswith(".ad") or names_a_file(expr):
        if os.path.isdir(expr):
            raise InputError(f"{expr} is a folder, not a script file")
        if not os.path.isfile(expr):
            from .trace import ATTRIBUTES
            attribute = "" if expr.endswith(".ad") else (
                f"; as an expression, .{expr.rsplit('.', 1)[1]} would be an attribute, and "
                "the only one" + (" is " if len(ATTRIBUTES) == 1 else "s are ")
                + ", ".join("." + a for a in ATTRIBUTES))
            raise InputError(f"no such script file: {expr}",
                             hint="a script is a file that exists, with any extension, or - "
                                  "for standard input" + attribute)
        with open(expr, encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_SOURCE + 1)
        check_source_size(text, expr)
        return text, expr, True
    return expr, None, False


def names_a_file(expr):
    """Is the EXPR argument a file name? Yes when such a file exists and the name looks
    like a path: it starts with ./, ../, / or ~, or its last part has an extension (so
    `x` and `x/y` stay expressions beside files of those names); and when it can be
    nothing else: name.ext, which as an expression would be an attribute other than .T
    (model.py, data/f.txt; not x.T, nor a number like 1.e5)."""
    from .trace import ATTRIBUTES
    base = os.path.basename(expr)
    pathlike = expr.startswith(("./", "../", "/", "~")) or (
        "." in base and re.search("[A-Za-z_]", base) is not None)
    if pathlike and os.path.exists(expr):
        return True                   # (a folder, too: _text says it is one)
    m = re.fullmatch(r"([\w./~-]*[A-Za-z_~][\w./~-]*)\.([A-Za-z]\w*)", expr)
    return m is not None and m.group(2) not in ATTRIBUTES


def looks_like_script(text):
    """Standard input holds a script when some line is a statement: one that starts
    with a keyword such as `return` or `input`, or an assignment. An expression may
    span lines and carry comments, so line count alone decides nothing."""
    statement = re.compile(r"\s*(input|return|def|backward|for|while|if|assert|print|pass)\b"
                           r"|\s*[A-Za-z_]\w*\s*(\[[^\n]*\])?\s*([-+*/]?=)(?!=)")
    return any(statement.match(ln) for ln in text.splitlines())


def guess_unset(source):
    """`adcli dot` without --at: an expression's names that have no value (and are no
    constant or function) get 1.0, since a graph needs values to be recorded; they are
    listed in source.guessed. A source that does not parse guesses nothing: tracing it
    reports the error properly."""
    from .errors import AdcliError
    from .parse import parse
    from .trace import CALLABLE, CONSTANTS, free_names
    if source.script:
        return
    try:
        names = free_names(parse(source.text))
    except AdcliError:
        return
    source.guessed = [n for n in names if n not in source.values and n not in CONSTANTS
                      and n not in CALLABLE]
    for name in source.guessed:
        source.values[name] = 1.0


def wrt_names(wrt):
    """--wrt x,y or --wrt x --wrt y: the names, each once, in order (None: not given)."""
    if not wrt:
        return None
    text = ",".join(wrt)
    names = [w.strip() for w in text.split(",") if w.strip()]
    if not names or len(set(names)) != len(names):
        raise InputError(f"--wrt '{text}': give each input once, separated by commas")
    return names
