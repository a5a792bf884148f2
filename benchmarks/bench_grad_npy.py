"""Whole process: `adcli grad EXPR --at x=@x.npy --out g.npy` at 10^7 against plain numpy.

    python benchmarks/bench_grad_npy.py [--n 1e7] [--repeat 9] [--expr EXPR]

The baseline is the least any such tool can do: `python -c` that imports numpy, loads x
with np.load and saves an array of the same size with np.save. The target (issue 14,
"Speed") is a ratio of at most 2 (the medians). Both commands run interleaved, in this
run, stdout to a pipe; x is seeded standard normal float64, the default expression
sum(sin(x)*exp(-x*x)+log1p(x*x)).

Every process runs as an installed tool would: with compiled bytecode (PYTHONDONTWRITEBYTECODE
dropped, PYTHONPYCACHEPREFIX a temporary folder, the warm-up runs compile once) and the
kernels in a kernel cache that the warm-up fills. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import adcli_executable

EXPR = "sum(sin(x)*exp(-x*x)+log1p(x*x))"
PLAIN = "import numpy as np; x = np.load('x.npy'); np.save('p.npy', np.empty_like(x))"


def wall(cmd, cwd, env):
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
    dt = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {done.stderr.decode()[-2000:]}")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e7)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--expr", default=EXPR)
    args = ap.parse_args()
    n = int(args.n)
    exe = adcli_executable()
    with tempfile.TemporaryDirectory(prefix="adcli-bench-npy-") as d:
        np.save(os.path.join(d, "x.npy"), np.random.default_rng(0).standard_normal(n))
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(d, "pycache")
        env["ADCLI_KERNEL_CACHE"] = os.path.join(d, "kernels")
        adcli = [exe, "grad", args.expr, "--at", "x=@x.npy", "--out", "g.npy"]
        plain = [sys.executable, "-c", PLAIN]
        for _ in range(2):                       # bytecode compiled, kernels built
            wall(adcli, d, env), wall(plain, d, env)
        times = {"adcli": [], "plain": []}
        for _ in range(args.repeat):
            times["adcli"].append(wall(adcli, d, env))
            times["plain"].append(wall(plain, d, env))
        g = np.load(os.path.join(d, "g.npy"))
        assert g.shape == (n,)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"adcli grad {args.expr!r} --at x=@x.npy --out g.npy, n = {n:,} float64")
    print(f"{'':8s} {'median ms':>10s} {'min ms':>8s}")
    for k, v in times.items():
        print(f"{k:8s} {med[k] * 1e3:10.1f} {min(v) * 1e3:8.1f}")
    print(f"ratio of the medians: {med['adcli'] / med['plain']:.2f} (target: at most 2); "
          f"of the minima: {min(times['adcli']) / min(times['plain']):.2f}")


if __name__ == "__main__":
    main()
