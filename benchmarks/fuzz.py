"""Fuzz every command: grammar-generated and mutated expressions, scripts, --at values and
files, run in this process through typer's test runner. Reports the runs that exited 3
(an internal error), the runs over 5 s, and the process's peak memory (every run's peak is
below it).

    python benchmarks/fuzz.py [RUNS] [SEED]      # default 10000 runs, seed 0

Exit code 1 if any run exited 3 or took more than 5 s, or the peak passed 3 GB. Each run
has default limits except --max-memory 2GB; a run still going after 60 s is stopped and
counted as slow.
"""
from __future__ import annotations

import os
import random
import resource
import signal
import sys
import tempfile
import time

import numpy as np
from typer.testing import CliRunner

from adcli.cli import app
from adcli.ops import public_ops

OPS = [o for o in public_ops()]
HOSTILE = ["(", ")", "[", "]", ",", ":", "**", "^", "@", "-", "+", "*", "/", ".", ".T", "#",
           "\n", "  ", "\t", "None", "1e308", "9" * 120, "1e-320", "nan", "inf", "x", "y", "١",
           "\udcff", "'", '"', "=", "==", "<", "__class__", "import", "True", "0", "-1", "1.5",
           "[" * 40, ")" * 40, "x[None]", "ones(10**9)", "eye(3000)", "**99", "pi", "e"]
COMMANDS = ["eval", "grad", "jacobian", "hessian", "jvp", "vjp", "hvp", "gradcheck", "trace",
            "dot", "profile"]


def expression(rng, depth=0):
    """A random expression of the language: calls of ops from the table, operators,
    numbers, names, lists, indexing."""
    r = rng.random()
    if depth > 4 or r < 0.25:
        return rng.choice(["x", "y", "x", str(rng.choice([0, 1, 2, -1, 0.5, 3e5, 1e-8])),
                           "pi", "[1, 2, 3]", "[[1, 2], [3, 4]]"])
    if r < 0.45:
        op = rng.choice(["+", "-", "*", "/", "**", "@", ">", "<"])
        return f"({expression(rng, depth + 1)} {op} {expression(rng, depth + 1)})"
    if r < 0.55:
        sub = rng.choice(["0", "-1", "1:", "::-1", "None", "0, 0", ":, None"])
        return f"{expression(rng, depth + 1)}[{sub}]"
    if r < 0.6:
        return f"{expression(rng, depth + 1)}.T"
    op = rng.choice(OPS)
    n = op.arity if op.arity is not None else 1
    args = [expression(rng, depth + 1) for _ in range(n)]
    if op.arity is None:
        args = ["[" + ", ".join(expression(rng, depth + 1) for _ in range(rng.randint(1, 3))) + "]"]
    if op.arity == 0:
        args = [str(rng.choice([1, 2, 3, 0, -1]))] * rng.randint(1, 2)
    if rng.random() < 0.2:
        args.append(rng.choice(["axis=0", "axis=-1", "keepdims=True", "axis=None", "shape=(2,)"]))
    return f"{op.name}({', '.join(args)})"


def script(rng):
    body = [f"y = {expression(rng)}"]
    for _ in range(rng.randint(0, 3)):
        body.append(rng.choice([
            f"for i in range({rng.randint(0, 20)}):\n    y = y + {expression(rng)}",
            f"if sum(y) > {rng.randint(-2, 2)}:\n    y = y * 2\nelse:\n    y = y - 1",
            f"def f(a):\n    return a * {expression(rng)}\ny = f(y)",
            f"while sum(x) < {rng.randint(0, 50)}:\n    x = x + 1",
            f"assert sum(y) > -1e9, \"big\"", "print(y)", "y[0] = x[0]"]))
    return "input x\ninput y = 2\n" + "\n".join(body) + f"\nreturn sum({rng.choice(['y', 'x*y'])})\n"


def mutate(rng, text):
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(len(chars) + 1)
        what = rng.random()
        if what < 0.4 and chars:
            del chars[min(k, len(chars) - 1)]
        elif what < 0.8:
            chars.insert(k, rng.choice(HOSTILE))
        else:
            chars[k:k] = list(text[rng.randrange(len(text) + 1):][:20])
    return "".join(chars)


def value(rng, folder):
    r = rng.random()
    if r < 0.7:
        return rng.choice(["1", "0", "-2.5", "[1, 2, 3]", "[[1, 2], [3, 4]]", "[1, 2]", "1e308",
                           "nan", "linspace(0, 1, 5)", "randn(3)", "[" * 40 + "1" + "]" * 40,
                           "eye(3)", "[]", "[[1], [2, 3]]", "1e999"])
    path = os.path.join(folder, f"v{rng.randrange(10**6)}")
    kind = rng.choice([".npy", ".csv", ".json", ".txt", ".bin"])
    if kind == ".npy":
        shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 3)))
        if rng.random() < 0.05:
            shape = (1,) * rng.randint(30, 40)
        np.save(path + kind, rng.random() * np.ones(shape))
    else:
        base = rng.choice(["1,2,3\n4,5,6\n", "[1, 2, 3]", "1 2\n3 4\n", "[[1,2],[3,4]]",
                           "# c\n1\n", "", "[" * 50 + "]" * 50, "9" * 500])
        with open(path + kind, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(mutate(rng, base) if rng.random() < 0.6 else base)
    return "@" + path + kind


def arguments(rng, folder):
    command = rng.choice(COMMANDS)
    if rng.random() < 0.3:
        source = script(rng)
        source = mutate(rng, source) if rng.random() < 0.4 else source
        path = os.path.join(folder, f"s{rng.randrange(10**6)}.ad")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(source)
        args = [command, path]
    else:
        source = expression(rng)
        args = [command, mutate(rng, source) if rng.random() < 0.5 else source]
    for name in ("x", "y"):        # values for the names the source has (and at times not)
        if (name in source and rng.random() < 0.95) or rng.random() < 0.03:
            args += ["--at", f"{name}={value(rng, folder)}"]
    extra = {"grad": [["--order", str(rng.randint(1, 4))], ["--detect-anomaly"], ["--wrt", "x"]],
             "jvp": [["--tangent", "x=1"]], "vjp": [["--cotangent", "1"]], "hvp": [["--vector", "x=1"]],
             "gradcheck": [["--order", "2"], ["--fast"], ["--method", "complex"]],
             "profile": [["--repeat", "1"]], "dot": [["--backward"], ["--values"], ["--collapse"]],
             "trace": [["--full"]], "jacobian": [["--mode", "rev"]]}
    for option in extra.get(command, []):
        if rng.random() < 0.4:
            args += option
    if command == "profile" and "--repeat" not in args:
        args += ["--repeat", "1"]
    if rng.random() < 0.2:
        args += ["--dtype", "float32"]
    if rng.random() < 0.2 and command not in ("dot",):
        args += ["--json"]
    if command != "dot":
        args += ["--max-memory", "2GB"]
    return args


def _contents(args, folder):
    """The text of the files a run read (small ones), to reproduce it."""
    out = []
    for a in args:
        path = a.split("@", 1)[-1]
        if path.startswith(folder) and not path.endswith(".npy") and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                out.append(f"{os.path.basename(path)}: {f.read(2000)!r}")
        elif path.startswith(folder) and os.path.isfile(path):
            out.append(f"{os.path.basename(path)}: shape {np.load(path).shape}")
    return out


class Slow(BaseException):
    """Raised by the alarm in a run that takes too long: not an Exception, so that adcli
    does not report it as an internal error of its own."""


def main(runs=10_000, seed=0):
    rng = random.Random(seed)
    runner = CliRunner()
    crashes, slow, codes = [], [], {}

    def stop(*_):
        raise Slow

    signal.signal(signal.SIGALRM, stop)
    with tempfile.TemporaryDirectory() as folder:
        for k in range(runs):
            args = arguments(rng, folder)
            start = time.perf_counter()
            signal.alarm(60)
            try:
                r = runner.invoke(app, args)
                code, err = r.exit_code, r.stderr
            except Slow:
                code, err = "stopped", ""
            finally:
                signal.alarm(0)
            seconds = time.perf_counter() - start
            codes[code] = codes.get(code, 0) + 1
            if code == 3 or "internal error" in err or "Traceback" in err:
                crashes.append((args + _contents(args, folder), err.strip().splitlines()[-2:]))
            if seconds > 5 or code == "stopped":
                slow.append((args + _contents(args, folder), round(seconds, 1)))
            if os.environ.get("FUZZ_VERBOSE"):
                print(code, args[:2], err.strip().splitlines()[:1], file=sys.stderr)
            if (k + 1) % 1000 == 0:
                print(f"{k + 1} runs: exit codes {dict(sorted(codes.items(), key=str))}",
                      file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for args, err in crashes[:20]:
        print("exit 3:", args, err)
    for args, seconds in slow[:20]:
        print(f"{seconds} s:", args)
    print(f"{runs} runs (seed {seed}): {len(crashes)} exited 3, {len(slow)} over 5 s, "
          f"peak memory {peak / 1e9:.2f} GB; exit codes {dict(sorted(codes.items(), key=str))}")
    return 1 if crashes or slow or peak > 3e9 else 0


if __name__ == "__main__":
    sys.exit(main(*[int(a) for a in sys.argv[1:3]]))
