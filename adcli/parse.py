"""Text to syntax tree: the Lark grammars, the tree builder, and parse-error messages.

The LALR parser calls the builder's methods as it reduces, so no parse tree is built and
nothing recurses: a sum of 100,000 terms is a loop, not a stack of calls. The syntax tree
is made of tuples ``(kind, pos, ...)`` with ``pos = (line, column, width)``.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import LimitError, ParseError

# The parser takes about 5-15 microseconds a token: 200,000 tokens parse in a second or
# two, and the tokens of a source of 1,000,000 characters are counted in a tenth of one.
MAX_SOURCE = 1_000_000      # characters
MAX_TOKENS = 200_000        # names, numbers and symbols
MAX_NESTING = 200           # brackets inside brackets
MAX_LITERAL = 100           # characters in one number
MAX_NAME = 100              # characters in one name

_HERE = Path(__file__).resolve().parent


def grammar_dir():
    """The grammars ship inside the wheel (adcli/grammars); in a checkout they sit at the
    top level beside the package."""
    for d in (_HERE / "grammars", _HERE.parent / "grammars"):
        if (d / "expr.lark").is_file():
            return d
    raise FileNotFoundError("adcli's grammar files are missing from the installation")


def _short_name(tok):
    if len(tok) > MAX_NAME:
        raise LimitError(f"a name of {len(tok):,} characters; the limit is {MAX_NAME}",
                         pos=(tok.line, tok.column, 40))
    return tok


def _pos(tok):
    return (tok.line, tok.column, max(1, len(tok)))


class Builder:
    """Lark callbacks: each rule of the grammar becomes one syntax-tree tuple."""

    def number(self, c):
        tok = c[0]
        if len(tok) > MAX_LITERAL:
            raise LimitError(f"a number literal of {len(tok):,} characters; the limit is {MAX_LITERAL}",
                             pos=(tok.line, tok.column, min(len(tok), 40)))
        return ("num", _pos(tok), float(tok))

    def string(self, c):      # einsum's subscripts, print's and assert's messages
        return ("str", _pos(c[0]), str(c[0])[1:-1])

    def name(self, c):
        return ("name", _pos(_short_name(c[0])), str(c[0]))

    def binary(self, c):
        return ("binary", _pos(c[1]), str(c[1]), c[0], c[2])

    def unary(self, c):
        return ("unary", _pos(c[0]), str(c[0]), c[1])

    def call(self, c):
        name, _, arguments = c
        _short_name(name)
        args, kwargs = [], []
        for a in arguments or ():
            if a[0] == "keyword":
                kwargs.append((a[2], a[1], a[3]))   # (name, pos, value)
            elif kwargs:
                raise ParseError("a positional argument follows a keyword argument", pos=a[1])
            else:
                args.append(a)
        return ("call", _pos(name), str(name), args, kwargs)

    def arguments(self, c):
        return [a for a in c if a is not None]

    def keyword(self, c):
        return ("keyword", _pos(c[0]), str(c[0]), c[1])

    def list(self, c):
        return ("list", _pos(c[0]), [a for a in c[1:] if a is not None])

    def tuple(self, c):
        return ("tuple", _pos(c[0]), [a for a in c[1:] if a is not None])

    def index(self, c):
        return ("index", _pos(c[1]), c[0], c[2])

    def subscripts(self, c):
        return [a for a in c if a is not None] if c != [None] else []

    def slice(self, c):
        # children: [lo] COLON [hi] [step]
        i = next(k for k, x in enumerate(c) if getattr(x, "type", None) == "COLON")
        lo = c[0] if i == 1 else None
        rest = c[i + 1:] + [None, None]
        return ("slice", _pos(c[i]), lo, rest[0], rest[1])

    def attribute(self, c):
        return ("attr", _pos(c[1]), c[0], str(c[1]))

    def method(self, c):
        # x.sum(axis=0) is sum(x, axis=0), for the ops callable as methods
        receiver, name, lpar, arguments = c
        call = self.call([name, lpar, [receiver] + (arguments or [])])
        return ("method",) + call[1:]


class ScriptBuilder(Builder):
    """Statements of the script dialect, as tuples ``(kind, pos, ...)``; blocks are lists."""

    def start(self, c):
        return [x for x in c if x is not None]

    def suite(self, c):
        return [x for x in c if x is not None] if isinstance(c, list) else [c]

    def input_stmt(self, c):
        return ("input", _pos(c[1]), str(c[1]), c[2])

    def target(self, c):
        return ("target", _pos(c[0]), str(c[0]), c[2] if c[1] is not None else None)

    def assign(self, c):
        return ("assign", c[0][1], c[0], c[1])

    def aug_assign(self, c):
        return ("aug", _pos(c[1]), c[0], str(c[1])[0], c[2])

    def return_stmt(self, c):
        return ("return", _pos(c[0]), [x for x in c[1:] if x is not None])

    def pass_stmt(self, c):
        return ("pass", _pos(c[0]))

    def break_stmt(self, c):
        return ("break", _pos(c[0]))

    def continue_stmt(self, c):
        return ("continue", _pos(c[0]))

    def assert_stmt(self, c):
        return ("assert", _pos(c[0]), c[1], str(c[2])[1:-1] if c[2] is not None else None)

    def print_stmt(self, c):
        return ("print", _pos(c[0]), [a for a in c[2:] if a is not None])

    def if_stmt(self, c):
        branches = [(c[1], c[2])] + [x for x in c[3:-2] if x is not None]
        return ("if", _pos(c[0]), branches, c[-1])

    def elif_clause(self, c):
        return (c[1], c[2])

    def while_stmt(self, c):
        return ("while", _pos(c[0]), c[1], c[2])

    def for_stmt(self, c):
        return ("for", _pos(c[1]), str(c[1]), c[3], c[4])

    def funcdef(self, c):
        return ("def", _pos(c[1]), str(c[1]), c[3] or [], c[4])

    def backwarddef(self, c):
        return ("backward", _pos(c[1]), str(c[1]), c[3] or [], c[4])

    def params(self, c):
        return [x for x in c if x is not None]

    def param(self, c):
        return (str(c[0]), _pos(c[0]), c[1])


# Rules imported from expr.lark into script.lark carry the prefix "expr__".
for _name in [n for n in vars(Builder) if not n.startswith("_")]:
    setattr(ScriptBuilder, "expr__" + _name, getattr(Builder, _name))


# Friendly names for the terminals in "expected ..." messages.
_TERMINALS = {"NUMBER": "a number", "NAME": "a name", "STRING": "a string", "ADD_OP": "'+', '-'",
              "MUL_OP": "'*', '/', '//', '%', '@'",
              "MUL_FLOORDIV": "'*', '/', '//', '%', '@'", "POW_OP": "'**', '^'",
              "COMPARE": "a comparison",
              "$END": "the end of the input", "_NEWLINE": "a new line", "_INDENT": "an indented block",
              "_DEDENT": "the end of a block"}

_parsers = {}


def parser(grammar="expr"):
    """The LALR parser of a grammar file, from the tables that grammars/build.py wrote
    into adcli/_parser.py with Lark's stand-alone runtime (importing Lark and loading its
    cached tables took a tenth of a short command's time)."""
    if grammar not in _parsers:
        from . import _parser
        script = grammar == "script"
        _parsers[grammar] = _parser.Lark._load_from_dict(
            getattr(_parser, "DATA_" + grammar.upper()), getattr(_parser, "MEMO_" + grammar.upper()),
            transformer=ScriptBuilder() if script else Builder(),
            postlex=_indenter() if script else None)
    return _parsers[grammar]


def _indenter():
    """Python's indentation rules, with adcli's messages and a limit on block depth."""
    from ._parser import DedentError, PythonIndenter

    class ScriptIndenter(PythonIndenter):
        def handle_NL(self, token):
            try:
                yield from super().handle_NL(token)
            except DedentError:
                raise ParseError("this line's indentation matches no enclosing block",
                                 pos=(token.end_line, max(token.end_column, 1), 1),
                                 hint="dedent to the column of an enclosing block") from None
            if len(self.indent_level) > MAX_NESTING // 2:
                raise LimitError(f"blocks nested more than {MAX_NESTING // 2} deep",
                                 pos=(token.end_line, 1, 1))
    return ScriptIndenter()


def check_nesting(text):
    """Refuse absurdly deep brackets before parsing (fast, and a clear message)."""
    depth, line, col = 0, 1, 0
    for ch in text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif ch in "([":
            depth += 1
            if depth > MAX_NESTING:
                raise LimitError(f"brackets nested more than {MAX_NESTING} deep",
                                 pos=(line, col, 1), hint="simplify the expression")
        elif ch in ")]":
            depth -= 1


def check_utf8(text):
    """Bytes that are not UTF-8 reach adcli as lone surrogates (Python's surrogateescape,
    for arguments and standard input): refused like any character the grammar does not
    know, wherever they are, comments included, as Python refuses such a source file."""
    bad = re.search("[\ud800-\udfff]", text)
    if bad:
        i, code = bad.start(), ord(bad.group())
        what = f"byte 0x{code - 0xdc00:02x}" if 0xdc80 <= code <= 0xdcff else "a character"
        raise ParseError(f"{what} is not UTF-8 text",
                         pos=(text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i), 1),
                         hint="write the source in UTF-8")


_TREES = {}   # (grammar, text) -> tree: profile and gradcheck trace one source many times


def check_indentation(text):
    """Blocks are indented with spaces or with tabs, not both: a tab has no width that
    everyone agrees on (Python refuses the mixture too)."""
    first = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.split("#", 1)[0].strip():
            continue
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        kinds = set(indent)
        if not kinds:
            continue
        if len(kinds) > 1 or (first is not None and kinds != first):
            raise ParseError("indentation mixes tabs and spaces", pos=(number, 1, max(1, len(indent))),
                             hint="indent every block with spaces (or every block with tabs)")
        first = kinds


def _has_code(text):
    """Is there anything besides whitespace and comments?"""
    return any(ln.split("#", 1)[0].strip() for ln in text.splitlines())


def parse(text, grammar="expr"):
    """Parse source text into a syntax tree, or raise ParseError with a located message.
    Trees are immutable tuples, so a source parsed before is not parsed again."""
    tree = _TREES.get((grammar, text))
    if tree is None:
        tree = _parse(text, grammar)
        if len(_TREES) >= 64:
            _TREES.clear()
        _TREES[grammar, text] = tree
    return tree


def _parse(text, grammar):
    from ._parser import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
    if len(text) <= MAX_SOURCE:
        check_nesting(text)              # its message says more than a count of tokens
    check_source_size(text)
    check_utf8(text)
    if text.startswith("\ufeff"):      # a byte-order mark that an editor wrote
        text = " " + text[1:]            # (kept one column wide, so columns still match)
    if grammar == "script":
        check_indentation(text)
        if not text.endswith("\n"):
            text += "\n"                 # the last line may lack its line break
    if not _has_code(text):
        raise ParseError("there is nothing to evaluate: the source is empty or only comments",
                         hint="write an expression, or a script that ends with `return VALUE`")
    p = parser(grammar)
    try:
        return p.parse(text)
    except VisitError as e:   # an error raised by a Builder method
        raise e.orig_exc from None
    except UnexpectedCharacters as e:
        _check_brackets(text, e.pos_in_stream, e.line)
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        hint = ("numbers are written with the digits 0-9" if ch.isdigit()
                else _expected(p, e.allowed))
        raise ParseError(f"unexpected character {ch!r}", pos=(e.line, e.column, 1),
                         hint=hint) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            line, col = _end(text)
            what = "unexpected end of input"
            width = 1
            unclosed = _check_brackets(text, len(text), None)
            if unclosed:
                what += f": the {unclosed} was never closed"
        elif tok.type in ("_INDENT", "_DEDENT"):
            _check_brackets(text, tok.start_pos, tok.end_line)
            # the indenter dates these tokens from the line break before the offending line
            line, col, width = tok.end_line, tok.end_column, 1
            what = "unexpected indentation" if tok.type == "_INDENT" else "unexpected end of a block"
            raise ParseError(what, pos=(line, max(col, 1), width),
                             hint="indent only the bodies of if, elif, else, for, while, def and "
                                  "backward, each by the same amount") from None
        else:
            _check_brackets(text, tok.start_pos, tok.line)
            line, col, width = tok.line, tok.column, max(1, len(tok.strip()))
            what = f"unexpected {_describe_token(tok)}"
        raise ParseError(what, pos=(line, col, width), hint=_expected(p, e.expected)) from None
    except UnexpectedInput as e:
        raise ParseError("unexpected input", pos=(e.line, e.column, 1)) from None


_TOKEN = re.compile(r"#[^\n]*|\w+|\S")    # at least as many tokens as the parser's


def check_source_size(text, what="the source"):
    """Refuse a source that would take more than a few seconds to parse, before parsing."""
    if len(text) > MAX_SOURCE:
        raise LimitError(f"{what} has more than {MAX_SOURCE:,} characters; the limit is "
                         f"{MAX_SOURCE:,}", hint="read data from a file with --at NAME=@FILE")
    if len(text) > MAX_TOKENS:
        n = len(_TOKEN.findall(text))
        if n > MAX_TOKENS:
            raise LimitError(f"{what} has {n:,} tokens (names, numbers and symbols); the limit "
                             f"is {MAX_TOKENS:,} (a second or two of parsing)",
                             hint="read data from a file with --at NAME=@FILE")


_CLOSER = {"(": ")", "[": "]"}


def _check_brackets(text, offset, line):
    """Like Python, blame a bracket left open for a syntax error found past it: at the end
    of the input, or on a later line (where a statement runs into the open bracket), and
    a closing bracket that does not match the one open. `offset` is where the parser
    stopped, on `line` (None: the end of the input; then the open bracket, if any, is
    described for the caller's message: "'(' opened at line 1, column 3")."""
    stack, i, ln, start = [], 0, 1, 0        # stack: (bracket, line, column) still open
    quote = None
    while i < offset:
        ch = text[i]
        if ch == "\n":
            ln, start, quote = ln + 1, i + 1, None
        elif quote:
            quote = None if ch == quote else quote
        elif ch == "#":
            end = text.find("\n", i)
            i = (end if end >= 0 else len(text))
            continue
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            stack.append((ch, ln, i - start + 1))
        elif ch in ")]" and stack:
            stack.pop()
        i += 1
    if not stack:
        return None
    ch, open_line, open_col = stack[-1]
    where = f"line {open_line}, column {open_col}"
    closer = text[offset] if offset < len(text) else ""
    if closer in ")]" and closer and closer != _CLOSER[ch]:
        raise ParseError(f"'{closer}' does not match the '{ch}' opened at {where}",
                         pos=(ln, offset - start + 1, 1), hint=f"close the '{ch}' with "
                         f"'{_CLOSER[ch]}' first")
    if line is None:
        return f"'{ch}' opened at {where}"
    if line > open_line:
        raise ParseError(f"'{ch}' was never closed", pos=(open_line, open_col, 1),
                         hint=f"close it with '{_CLOSER[ch]}'")


def _describe_token(tok):
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type == "NUMBER":
        return f"number {tok}"
    if tok.type in ("_NEWLINE",):
        return "end of line"
    if tok.type in ("_INDENT", "_DEDENT"):
        return "indentation"
    return f"'{tok}'"


def _end(text):
    lines = text.rstrip("\n").split("\n") or [""]
    return len(lines), len(lines[-1]) + 1


def _expected(p, names):
    from ._parser import PatternStr
    seen = []
    for n in sorted(names or ()):
        if n in _TERMINALS:
            d = _TERMINALS[n]
        else:
            try:
                pat = p.get_terminal(n).pattern
            except KeyError:
                continue
            if not isinstance(pat, PatternStr):
                continue
            d = f"'{pat.value}'"
        if d not in seen:
            seen.append(d)
    if not seen:
        return None
    if len(seen) > 10:
        return "expected a statement (an assignment, return, if, for, while, def, ...)" if (
            "'return'" in seen) else "expected " + ", ".join(seen[:10]) + ", ..."
    return "expected " + (", ".join(seen[:-1]) + " or " + seen[-1] if len(seen) > 1 else seen[0])
