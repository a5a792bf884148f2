"""A fuzzer for every command: grammar-generated and mutated expressions, mutated scripts,
odd --at values and files, random options.

    python tests/fuzz.py --runs 10000 --jobs 2        # the full run (a few minutes)

Each run is one `adcli ...` command, forked from a process that has imported adcli once
(so a run costs milliseconds, not a whole interpreter start), in a scratch folder of its
own with a set of input files, under a 4 GB address-space limit and a 20 s kill. Every run
gets `--max-work 2e9 --max-memory 2GB` (a few seconds of work: the defaults allow about a
minute, which a hostile input may use by design, so the fuzzer checks that the budgets
stop it, not how long a minute is). It counts
the exit codes and reports every run that ended in an internal error (exit 3, or any
other code than 0, 1 and 2, or a Python traceback on stderr), took over 5 s, or held over
3 GB; those runs are written to fuzz-failures.json to replay. tests/test_fuzz.py runs a
few hundred of the same cases in the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # forked children: no BLAS thread pool
os.environ.setdefault("NO_COLOR", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SLOW_S, BIG_BYTES, KILL_S, ADDRESS_LIMIT = 5.0, 3 << 30, 20.0, 4 << 30

# ---------------------------------------------------------------- inputs

NAMES = ["x", "y", "A", "v", "theta"]
AT_VALUES = {   # good values for each name, and bad ones for any name
    "x": ["2", "0", "-1.5", "1e308", "1e-320", "inf", "nan", "pi/4", "@x.npy"],
    "y": ["3", "0.5", "-0", "@y.txt"],
    "A": ["[[1,2],[3,4]]", "[[2,0],[0,3]]", "@A.npy", "@A.csv", "eye(2)", "[[1,2],[2,4]]"],
    "v": ["[1,2,3]", "[0,0,0]", "linspace(0,1,3)", "@v.json", "[1e200,1e200,1]"],
    "theta": ["[1,-2,3,-4,5]", "[0.5,0.5,0.5,0.5,0.5]", "@theta.npy"],
}
BAD_VALUES = ["", "[", "[1,2", "[[1],[2,3]]", "@missing.npy", "@.", "@deep.json", "@bigint.json",
              "@huge_header.npy", "@passwd", "@bad.csv", "@empty.txt", "@nd40.npy", "x", "1+",
              "[1,2,3]" * 3, "1e999", "'a'", "@A.npy:z", "@out.npz", "randn(3)", "ones(10000000000)",
              "[" * 70 + "1" + "]" * 70, "@v.json@", "1,2", "=3", "\u0661\u0662"]


def make_files(folder: Path):
    """The files that --at values and sources may name, made once per worker."""
    np.save(folder / "x.npy", np.array(1.5))
    np.save(folder / "A.npy", np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.save(folder / "theta.npy", np.linspace(-1, 1, 5))
    np.save(folder / "nd40.npy", np.zeros((1,) * 40))
    np.savez(folder / "out.npz", value=np.array(1.0), grad_x=np.array(2.0))
    (folder / "y.txt").write_text("0.25\n")
    (folder / "A.csv").write_text("1,2\n3,4\n")
    (folder / "bad.csv").write_text("1,2\n3,four\n")
    (folder / "v.json").write_text("[1, 2, 3]")
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "bigint.json").write_text("1" * 4000)
    (folder / "empty.txt").write_text("")
    (folder / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    # a header that claims 4 GB of data in a file of a few bytes
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (500000000,), }"
    header += " " * (63 - len(header) % 64) + "\n"
    (folder / "huge_header.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                             + header.encode())
    for sample in (ROOT / "samples").glob("*.ad"):
        (folder / sample.name).write_text(sample.read_text())


# ---------------------------------------------------------------- sources

NUMBERS = ["0", "1", "2", "0.5", "3", "1e308", "1e-320", "1e400", "100", "2.5e-3", ".5", "10"]
ATTRS = {"axis": ["0", "1", "-1", "None", "(0, 1)", "5"], "keepdims": ["True", "False"],
         "shape": ["(2, 2)", "3", "(4,)", "(-1,)", "(2, -1)", "(0,)"], "n": ["2", "3", "0"],
         "m": ["2", "None"], "ddof": ["0", "1"], "num": ["3", "5"], "start": ["0", "1"],
         "stop": ["1", "5", "None"], "step": ["1", "0.5"], "fill_value": ["2.5", "0"],
         "axes": ["(1, 0)", "None", "(0,)"], "low": ["0", "2"], "high": ["5", "None"],
         "size": ["3", "(2, 2)"], "key": ["0"]}


def _ops():
    from adcli.ops import public_ops
    return public_ops()


def expression(rng: random.Random, depth: int) -> str:
    """A random expression from the language's grammar: the op table's functions with
    array and static arguments, operators, lists, indexing, names and numbers."""
    if depth <= 0 or rng.random() < 0.2:
        r = rng.random()
        if r < 0.55:
            return rng.choice(["x", "x", "x", "y", "y", "A", "v"])
        if r < 0.85:
            return rng.choice(NUMBERS)
        return rng.choice(["[1, 2, 3]", "[[1, 2], [3, 4]]", "pi", "inf", "nan", "e", "[]",
                           "[x, y]", "[[x, 1], [2, y]]"])
    r = rng.random()
    sub = lambda: expression(rng, depth - 1)  # noqa: E731
    if r < 0.35:
        op = rng.choice(["+", "-", "*", "/", "**", "^", "@", "<", ">", "==", "!=", "<=", ">="])
        return f"({sub()} {op} {sub()})"
    if r < 0.42:
        return f"-{sub()}"
    if r < 0.52:
        base = sub()
        key = rng.choice(["0", "-1", "1:", ":2", "::2", ":, 0", "0, 1", "None", "None, None",
                          "...", "x", "5", "1:0", ":, None"])
        return f"({base})[{key}]"
    if r < 0.56:
        return f"({sub()}).T"
    op = rng.choice(_ops())
    parts = []
    if op.arity is None:
        parts.append("[" + ", ".join(sub() for _ in range(rng.randint(1, 3))) + "]")
    elif not op.shape_args:
        parts += [sub() for _ in range(op.arity)]
    else:
        parts += [str(rng.randint(0, 3)) for _ in range(rng.randint(0, 2))]
    for name in op.attrs:
        if rng.random() < 0.4 and name in ATTRS:
            parts.append(f"{name}={rng.choice(ATTRS[name])}")
    if rng.random() < 0.05:
        parts.append(rng.choice(["bogus=1", "1", "axis=axis"]))
    return f"{op.name}({', '.join(parts)})"


SYNTAX = "()[],:+-*/@^<>=!.#0123456789eE xyzAv_\n\t\"'\\;{}$~|&"
ODD = ["\u0661", "\xff", "\u00e9", "\ufeff", "\x00", "\u202e", "π", "💥", "\udcff", "__class__",
       "import", "ones(10**9)", "eye(3000)", "**99", ".T", "x[None]", "'", '"', "==", "None"]


def mutate(rng: random.Random, text: str, edits: int = 3) -> str:
    """Byte-level edits of a source: deletions, insertions, repeats, truncations."""
    for _ in range(edits):
        r = rng.random()
        i = rng.randint(0, len(text))
        if r < 0.25 and text:
            text = text[:i] + text[i + 1:]
        elif r < 0.5:
            text = text[:i] + rng.choice(SYNTAX) + text[i:]
        elif r < 0.6:
            text = text[:i] + rng.choice(ODD) + text[i:]
        elif r < 0.7 and text:
            j = rng.randint(i, len(text))
            text = text[:j] + text[i:j] + text[j:]
        elif r < 0.75:
            text = text[:i] + rng.choice(["(", "[", "-", "x*", "sin("]) * rng.choice([50, 300, 2000]) + text[i:]
        elif r < 0.8:
            text = text[:i] + "9" * rng.choice([30, 400, 5000]) + text[i:]
        elif r < 0.9:
            text = text[:i]
        else:
            text = text[:i] + rng.choice(["**9999", "**-1", "/0", "*1e308", "[None]" * 70]) + text[i:]
    return text


def mutate_script(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        k = rng.randrange(len(lines)) if lines else 0
        if r < 0.3 and lines:
            del lines[k]
        elif r < 0.5 and lines:
            lines.insert(k, lines[rng.randrange(len(lines))])
        elif r < 0.6:
            lines.insert(k, rng.choice(["for i in range(100000000):", "    x = x * 2",
                                        "while True:", "return", "def f(x):", "import os",
                                        "x = open('passwd')", "    " * 40 + "x = 1",
                                        "if x > 0:", "else:", "print(x)"]))
        else:
            lines = mutate(rng, "\n".join(lines), rng.randint(1, 2)).split("\n")
    return "\n".join(lines)


def generated_script(rng: random.Random) -> str:
    """A script of the dialect: inputs, loops, branches, functions, asserts, assignments."""
    body = [f"y = {expression(rng, 2)}"]
    for _ in range(rng.randint(0, 3)):
        body.append(rng.choice([
            f"for i in range({rng.randint(0, 20)}):\n    y = y + {expression(rng, 1)}",
            f"if sum(y) > {rng.randint(-2, 2)}:\n    y = y * 2\nelse:\n    y = y - 1",
            f"def f(a):\n    return a * {expression(rng, 1)}\ny = f(y)",
            f"while sum(x) < {rng.randint(0, 50)}:\n    x = x + 1",
            'assert sum(y) > -1e9, "big"', "print(y)", "y[0] = x[0]",
            "def g(a):\n    return a\nbackward g(a, out, gr):\n    return gr * 2\ny = g(y)"]))
    return "input x\ninput y = 2\n" + "\n".join(body) + f"\nreturn sum({rng.choice(['y', 'x*y'])})\n"


def data_file(rng: random.Random, folder: Path) -> str:
    """A random, often damaged, data file for --at NAME=@FILE."""
    kind = rng.choice([".npy", ".csv", ".json", ".txt", ".npz"])
    path = folder / f"data{rng.randrange(100)}{kind}"
    if kind in (".npy", ".npz"):
        shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 3)))
        buffer = __import__("io").BytesIO()
        (np.save if kind == ".npy" else lambda f, a: np.savez(f, x=a))(buffer, np.ones(shape))
        raw = bytearray(buffer.getvalue())
        for _ in range(rng.choice([0, 0, 1, 3])):     # flip a few bytes
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        path.write_bytes(bytes(raw[:rng.choice([len(raw), len(raw), rng.randrange(len(raw) + 1)])]))
    else:
        base = rng.choice(["1,2,3\n4,5,6\n", "[1, 2, 3]", "1 2\n3 4\n", "[[1,2],[3,4]]", "# c\n1\n",
                           "", "[" * 50 + "]" * 50, "9" * 500, '{"x": [1, 2]}', "1,,2\n"])
        path.write_text(mutate(rng, base, rng.randint(0, 3)), errors="surrogatepass")
    return "@" + path.name


# ---------------------------------------------------------------- commands

COMMANDS = ["eval", "grad", "jacobian", "hessian", "jvp", "vjp", "hvp", "gradcheck",
            "profile", "dot", "trace"]
OPTIONS = {
    "*": [["--json"], ["--plain"], ["--dtype", "float32"], ["--seed", "3"], ["--json"], [],
          ["--max-nodes", "50"], ["--max-elements", "10"], [], [], [], [], [], [], [], [], []],
    "rare": [["--dtype", "float16"], ["--seed", "-1"], ["--debug"], ["--bogus"], ["--max-steps", "100"],
             ["--max-depth", "2"], ["--max-nodes", "-5"], ["--seed", "99999999999999999999"]],
    "eval": [["--out", "o.npy"], ["--out", "o.npz"], ["--out", "o.csv"], ["--out", "o.json"],
             ["--out", "o.txt"]],
    "grad": [["--wrt", "x"], ["--wrt", "q"], ["--order", "2"], ["--order", "3"], ["--order", "0"],
             ["--detect-anomaly"], ["--out", "g.npz"], ["--out", "g.npy"], ["--out", "sub/g.csv"]],
    "jacobian": [["--mode", "fwd"], ["--mode", "rev"], ["--mode", "sideways"], ["--wrt", "x"],
                 ["--out", "j.npz"]],
    "hessian": [["--wrt", "x"], ["--out", "h.json"]],
    "jvp": [["--tangent", "x=1"], ["--tangent", "v=[1,0,0]"], ["--tangent", "A=1"]],
    "vjp": [["--cotangent", "1"], ["--cotangent", "[1,2]"]],
    "hvp": [["--vector", "x=1"], ["--vector", "v=[1,0,0]"], ["--vector", "y=[1,2]"]],
    "gradcheck": [["--method", "complex"], ["--method", "central"], ["--order", "2"], ["--fast"],
                  ["--rtol", "1e-3"], ["--atol", "0"], ["--eps", "1e-2"], ["--eps", "0"],
                  ["--expect", "x=2*x"], ["--expect", "x=("]],
    "profile": [["--repeat", "1"], ["--repeat", "2"], ["--sort", "calls"], ["--format", "csv"],
                ["--format", "json"], ["--trace", "t.json"], ["--jacobian"], ["--hessian"],
                ["--jvp", "--tangent", "x=1"], ["--hvp", "--vector", "x=1"]],
    "dot": [["--backward"], ["--values"], ["--collapse"], ["-o", "g.dot"], ["-o", "g.svg"],
            ["--max-nodes", "5"]],
    "trace": [["--full"]],
}
SCRIPTS = sorted(p.name for p in (ROOT / "samples").glob("*.ad"))


def case(rng: random.Random, folder: Path):
    """One command line and its standard input: (argv after 'adcli', stdin bytes or None);
    a data file it names may be written into `folder`."""
    command = rng.choice(COMMANDS)
    stdin = None
    r = rng.random()
    if r < 0.45:
        source = expression(rng, rng.randint(1, 4))
    elif r < 0.7:
        source = mutate(rng, expression(rng, rng.randint(1, 3)), rng.randint(1, 4))
    elif r < 0.8:
        source = rng.choice(SCRIPTS)
    else:
        text = (generated_script(rng) if rng.random() < 0.4
                else (ROOT / "samples" / rng.choice(SCRIPTS)).read_text())
        text = mutate_script(rng, text) if rng.random() < 0.7 else text
        if rng.random() < 0.5:
            source, stdin = "-", text.encode("utf-8", "surrogatepass")
        else:
            source = "mutated.ad"
            stdin = ("FILE", text)
    args = [command, source]
    text = (stdin[1] if isinstance(stdin, tuple) else stdin.decode(errors="replace")
            if stdin else (ROOT / "samples" / source).read_text() if source in SCRIPTS else source)
    script = source in SCRIPTS or stdin is not None
    for name in NAMES:
        used = re.search(rf"^input {name}\b" if script else rf"\b{name}\b", text, re.M) is not None
        if rng.random() < (0.95 if used else 0.05):
            r = rng.random()
            value = (rng.choice(AT_VALUES[name]) if r < 0.8 else data_file(rng, folder)
                     if r < 0.9 else rng.choice(BAD_VALUES))
            args += ["--at", f"{name}={value}"]
    if rng.random() < 0.05:
        args += ["--at", rng.choice(["@out.npz", "=1", "x", "x=1,,y=2", "x==1"])]
    required = {"jvp": "--tangent", "vjp": "--cotangent", "hvp": "--vector"}.get(command)
    if required and rng.random() < 0.9:
        args += rng.choice(OPTIONS[command])
    for _ in range(rng.randint(0, 3)):
        args += rng.choice(OPTIONS["*"] + OPTIONS.get(command, []) * 2
                           + (OPTIONS["rare"] if rng.random() < 0.2 else []))
    return args + ["--max-work", "2e9", "--max-memory", "2GB"], stdin


# ---------------------------------------------------------------- running

def _child(args, stdin, folder: Path):
    os.chdir(folder)
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))
    if isinstance(stdin, tuple):
        (folder / "mutated.ad").write_text(stdin[1], errors="surrogatepass")
        stdin = None
    fd = os.open(folder / "stdin", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    os.write(fd, stdin or b"")
    os.lseek(fd, 0, 0)
    os.dup2(fd, 0)
    for k, name in ((1, "stdout"), (2, "stderr")):
        out = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, k)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.argv = ["adcli", *args]
    from adcli.cli import run
    try:
        run()
    except BaseException:     # run() ends the process itself; anything else is a crash
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(99)
    os._exit(98)


def run_case(args, stdin, folder: Path):
    """(exit code, seconds, peak RSS bytes, stderr tail) of one forked run."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(args, stdin, folder)
    killed = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - t0 > KILL_S:
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status) if not killed else -9
    err = (folder / "stderr").read_text(errors="replace")[-2000:]
    return code, dt, usage.ru_maxrss * 1024, err


def prepare():
    """Import and warm up what every command uses (modules, the parsers' tables), once,
    before forking: each forked run then costs milliseconds."""
    from typer.testing import CliRunner

    from adcli.cli import app
    runner = CliRunner()
    for command in COMMANDS:
        extra = {"jvp": ["--tangent", "x=1"], "vjp": ["--cotangent", "1"],
                 "hvp": ["--vector", "x=1"], "profile": ["--repeat", "1"]}.get(command, [])
        runner.invoke(app, [command, "x*x", "--at", "x=1", *extra])
        runner.invoke(app, [command, str(ROOT / "samples" / "fancy.ad"), *extra[:0]])


def fuzz(runs, seed=0, folder=None, progress=False):
    """Run `runs` cases; returns the summary dict."""
    prepare()
    rng = random.Random(seed)
    folder = Path(folder or tempfile.mkdtemp(prefix="adcli-fuzz-"))
    make_files(folder)
    codes, bad, slowest, biggest = {}, [], 0.0, 0
    for k in range(runs):
        args, stdin = case(rng, folder)
        code, dt, rss, err = run_case(args, stdin, folder)
        codes[code] = codes.get(code, 0) + 1
        slowest, biggest = max(slowest, dt), max(biggest, rss)
        crashed = code not in (0, 1, 2) or ("Traceback" in err and "--debug" not in args)
        if crashed or dt > SLOW_S or rss > BIG_BYTES:
            bad.append({"args": args, "stdin": stdin if not isinstance(stdin, (bytes, tuple))
                        else (stdin.decode(errors="replace") if isinstance(stdin, bytes) else stdin[1]),
                        "code": code, "seconds": round(dt, 2), "rss_mb": rss >> 20,
                        "why": "crash" if crashed else "slow" if dt > SLOW_S else "memory",
                        "stderr": err[-600:]})
        if progress and (k + 1) % 500 == 0:
            print(f"  {k + 1} runs, {len(bad)} flagged", file=sys.stderr)
    return {"runs": runs, "exit_codes": {str(c): n for c, n in sorted(codes.items())},
            "flagged": bad, "slowest_s": round(slowest, 2), "peak_rss_mb": biggest >> 20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", default="fuzz-failures.json")
    opts = parser.parse_args()
    t0 = time.time()
    if opts.jobs == 1:
        results = [fuzz(opts.runs, opts.seed, progress=True)]
    else:
        import multiprocessing as mp
        share = [opts.runs // opts.jobs + (k < opts.runs % opts.jobs) for k in range(opts.jobs)]
        with mp.get_context("fork").Pool(opts.jobs) as pool:
            results = pool.starmap(fuzz, [(n, opts.seed * 1000 + k) for k, n in enumerate(share)])
    codes = {}
    for r in results:
        for c, n in r["exit_codes"].items():
            codes[c] = codes.get(c, 0) + n
    flagged = [f for r in results for f in r["flagged"]]
    summary = {"runs": opts.runs, "seed": opts.seed, "exit_codes": codes,
               "internal_errors": sum(f["why"] == "crash" for f in flagged),
               "over_5s": sum(f["why"] == "slow" for f in flagged),
               "over_3GB": sum(f["why"] == "memory" for f in flagged),
               "slowest_s": max(r["slowest_s"] for r in results),
               "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
               "wall_s": round(time.time() - t0, 1)}
    print(json.dumps(summary, indent=1))
    Path(opts.out).write_text(json.dumps({"summary": summary, "flagged": flagged}, indent=1))
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
