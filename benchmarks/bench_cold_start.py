"""Cold start: wall time of a whole `adcli grad` process against `python -c "import numpy"`.

    python benchmarks/bench_cold_start.py [--repeat 30] [--warmup 3] [--top 15]

Both commands run in this run, interleaved, with stdout piped (as in a shell pipeline, so
adcli takes its plain-text path). Reported: the median and the minimum of each, and the
ratio of the medians. The target (issue 2, "Speed") is a ratio of at most 1.6.
`python -c pass` is timed too, as the floor every Python process pays.

Afterwards `python -X importtime -m adcli grad ...` shows where adcli's start-up goes: the
imports with the largest cumulative time (the minimum over a few runs, to damp noise).

The adcli measured is the console script next to sys.executable (the same environment).
Every process runs as an installed tool would: with compiled bytecode. PYTHONDONTWRITEBYTECODE
is dropped and PYTHONPYCACHEPREFIX points to a temporary folder, so the warm-up runs compile
once (numpy and the standard library alike) and nothing is written into the checkout
(`--as-is` keeps the environment unchanged instead). Nothing here asserts on times.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

from common import adcli_executable

EXPR, AT = "x*(x+y)", "x=2,y=3"


def wall(cmd, cwd, env):
    """Seconds one process takes from start to exit, its output piped and read."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n"
                 + proc.stderr.decode(errors="replace"))
    return dt


def importtime(cmd, cwd, env, runs):
    """module -> (self us, cumulative us, depth), the minimum over `runs` runs."""
    line = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
    best = {}
    for _ in range(runs):
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
        for m in line.finditer(proc.stderr.decode(errors="replace")):
            own, cum, depth, mod = int(m[1]), int(m[2]), len(m[3]) // 2, m[4]
            if mod not in best or cum < best[mod][1]:
                best[mod] = (own, cum, depth)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed runs of each command")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs of each command first")
    ap.add_argument("--top", type=int, default=15, help="imports shown in the breakdown")
    ap.add_argument("--importtime-runs", type=int, default=5)
    ap.add_argument("--as-is", action="store_true",
                    help="run with this environment unchanged (no bytecode-cache set-up)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="adcli-bench-pycache-") as pycache:
        env = dict(os.environ)
        if not args.as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = pycache
        run(args, env)


def run(args, env):

    exe = adcli_executable()
    cwd = os.path.dirname(os.path.abspath(__file__))   # not the checkout root, like a user
    commands = {
        "adcli grad": [exe, "grad", EXPR, "--at", AT],
        "import numpy": [sys.executable, "-c", "import numpy"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    out = subprocess.run(commands["adcli grad"], stdout=subprocess.PIPE, cwd=cwd, env=env, check=True)
    print(f"$ adcli grad {EXPR!r} --at {AT} | cat")
    print("  " + out.stdout.decode().strip().replace("\n", "\n  "))
    print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} CPUs")
    print("bytecode: " + ("environment as is" if args.as_is else
                          f"compiled once into PYTHONPYCACHEPREFIX={env['PYTHONPYCACHEPREFIX']}"))
    print(f"{args.warmup} warm-up and {args.repeat} timed runs of each command, interleaved "
          "(shuffled order in each round)\n")

    for _ in range(args.warmup):
        for cmd in commands.values():
            wall(cmd, cwd, env)
    times = {k: [] for k in commands}
    order = list(commands)
    for _ in range(args.repeat):
        random.shuffle(order)
        for k in order:
            times[k].append(wall(commands[k], cwd, env))

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'command':<16} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for k, v in times.items():
        print(f"{k:<16} {1e3 * med[k]:>10.1f} {1e3 * min(v):>8.1f} {1e3 * max(v):>8.1f}")
    ratio = med["adcli grad"] / med["import numpy"]
    floor = med["python -c pass"]
    print(f"\ncold-start ratio  adcli grad / import numpy = {ratio:.2f}x of medians  (target <= 1.6x: "
          f"{'met' if ratio <= 1.6 else 'MISSED'}); "
          f"{min(times['adcli grad']) / min(times['import numpy']):.2f}x of minima")
    print(f"time above the bare interpreter: adcli {1e3 * (med['adcli grad'] - floor):.1f} ms, "
          f"numpy {1e3 * (med['import numpy'] - floor):.1f} ms")
    budget = 1.6 * med["import numpy"] - med["adcli grad"]
    print(f"{'headroom' if budget >= 0 else 'over budget by'}: {1e3 * abs(budget):.1f} ms")

    # ---------------------------------------------------------------- where the time goes
    cmd = [sys.executable, "-X", "importtime", "-m", "adcli", "grad", EXPR, "--at", AT]
    best = importtime(cmd, cwd, dict(env, PYTHONPROFILEIMPORTTIME="1"), args.importtime_runs)
    total_top = sum(c for _, c, d in best.values() if d == 0)
    print(f"\nimports of `python -X importtime -m adcli grad ...` (min of {args.importtime_runs} runs)")
    print(f"all top-level imports together: {total_top / 1e3:.1f} ms "
          f"(the rest of the process is interpreter start-up and adcli's own work)")
    print(f"{'cumulative ms':>13} {'self ms':>8}  module (indented by import depth)")
    for mod, (own, cum, depth) in sorted(best.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"{cum / 1e3:>13.1f} {own / 1e3:>8.1f}  {'  ' * min(depth, 8)}{mod}")

    # the third-party packages adcli pulls in, as top-level groups
    groups = {}
    for mod, (own, cum, depth) in best.items():
        groups[mod.split(".")[0]] = groups.get(mod.split(".")[0], 0) + own
    print("\nself time by top-level package (ms): " + ", ".join(
        f"{p} {t / 1e3:.1f}" for p, t in sorted(groups.items(), key=lambda kv: -kv[1])[:10]))
    loaded = [p for p in ("rich", "typer", "click", "lark", "numpy", "json", "hashlib", "dataclasses")
              if p in groups or any(m.startswith(p + ".") for m in best)]
    print("packages loaded: " + ", ".join(loaded))


if __name__ == "__main__":
    main()
