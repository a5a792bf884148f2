"""adcli/_parser.py, the generated parser tables (grammars/build.py), against the grammar
files: built from the grammars as they are now, and parsing as Lark parses them."""
import functools
import importlib.util
from pathlib import Path

import pytest

from adcli import _parser, parse
from adcli.errors import AdcliError

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("grammar_build", ROOT / "grammars" / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)

EXPRESSIONS = [
    "x*(x+y)", "-x**2", "2^-3", "a @ b.T", "sum(x[1:, ::2], axis=0)", "x[None, 0]",
    "max(a, b, c)", "einsum('ij,jk->ik', a, b)", "where(x > 0, x, 0.1*x)", "[[1, 2], [3, 4]]",
    "x.sum(1).max()", "log(1e-300) + 1.5e3", "a <= b", "f(x, axis=-1)", "((x))",
    "x*(x+", "x +* y", "1 2", "x[1:2:3:4]", "sin(x", "@", "x..y", "'abc", "x = 1",
]


@functools.lru_cache(maxsize=None)
def lark_parser(grammar):
    """Lark's own parser of the grammar file, with adcli's builder (as before the tables
    were generated), built once for all the tests."""
    return build.build(grammar, transformer=parse.parser(grammar).options.transformer,
                       postlex=parse._indenter() if grammar == "script" else None)


def outcome(p, text):
    try:
        return ("tree", p.parse(text))
    except AdcliError as e:
        return ("adcli error", str(e))
    except Exception as e:     # Lark's errors: the stand-alone copy's and Lark's own classes
        pos = (getattr(e, "line", None), getattr(e, "column", None))
        token = getattr(e, "token", None)
        return (type(e).__name__, pos, str(token) if token is not None else None,
                sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or ()))


def test_the_tables_are_built_from_the_grammar_files_as_they_are():
    assert _parser.GRAMMARS_SHA256 == build.grammars_sha256(), \
        "a grammar changed: run python grammars/build.py"


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_expressions_parse_as_lark_parses_the_grammar(text):
    assert outcome(parse.parser("expr"), text) == outcome(lark_parser("expr"), text)


SCRIPTS = sorted((ROOT / "samples").glob("*.ad"))
BAD_SCRIPTS = ["input x\nif x > 0:\nreturn x\n", "def f(a):\n  return a\n return 1\n",
               "for i in range(3)\n  y = i\n", "return (x\n", "x = = 1\n"]


@pytest.mark.parametrize("text", [p.read_text() + ("" if p.read_text().endswith("\n") else "\n")
                                  for p in SCRIPTS] + BAD_SCRIPTS,
                         ids=[p.name for p in SCRIPTS] + [f"bad{i}" for i in range(len(BAD_SCRIPTS))])
def test_scripts_parse_as_lark_parses_the_grammar(text):
    assert outcome(parse.parser("script"), text) == outcome(lark_parser("script"), text)


def test_a_run_does_not_import_lark():
    import subprocess
    import sys
    code = ("import sys; from adcli import parse; parse.parse('x*(x+y)'); "
            "parse.parse('input x\\nreturn x\\n', 'script'); "
            "print(any(m == 'lark' or m.startswith('lark.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
