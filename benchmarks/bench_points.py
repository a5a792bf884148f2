"""Many points per process (issue 13): `adcli grad ... --points` on a table of points.

    python benchmarks/bench_points.py [--rows 1000000] [--repeat 3] [--shell 20]

Cases:
* Whole process: `adcli grad "x*(x+y)" --points p.csv > out.csv` on --rows random points
  (CSV in, CSV out), median and min wall seconds, per point, and peak RSS, beside
  `python -c "import numpy"` and `adcli eval 1` (adcli's start-up); the same with Parquet
  in and out (when pyarrow is installed) and with NDJSON in and out.
* A script with a branch (samples/branch.ad) on points of both signs, against the
  branch-free expression of one branch (x*x*sin(x)) on the same points: the cost of the
  guards and of the second program.
* A shell loop calling `adcli grad "x*(x+y)" --at x=..,y=..` once per point (--shell points),
  per point, for the ratio.
* In process, the compute part alone: the traced program and its gradient program evaluated
  on all --rows points at once (adcli.points.Program.run), against
  jax.jit(jax.vmap(jax.value_and_grad(f))) on the same arrays (compile excluded), if installed.
Children run with compiled bytecode (PYTHONDONTWRITEBYTECODE dropped, a temporary
PYTHONPYCACHEPREFIX). Nothing here asserts on times; it prints figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import adcli_executable, best, measure

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def whole(label, cmd, cwd, env, repeat, rows, stdin=None):
    times, peak = [], 0
    for _ in range(repeat + 1):
        if stdin is None:
            dt, rss, code, err = measure(cmd, cwd, env)
        else:                                   # measure() gives no stdin: time it here
            with open(stdin, "rb") as f:
                t0 = time.perf_counter()
                r = subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, cwd=cwd, env=env)
                dt, rss, code, err = time.perf_counter() - t0, 0, r.returncode, r.stderr.decode()
        if code not in (0,):
            sys.exit(f"{' '.join(cmd)} failed ({code}): {err[-2000:]}")
        times.append(dt)
        peak = max(peak, rss)
    times = times[1:]
    med = statistics.median(times)
    rss = f"{peak / 2**20:7.1f} MiB" if peak else "       n/a"
    print(f"  {label:46s} median {med:7.3f} s  min {min(times):7.3f} s  "
          f"{med / rows * 1e6:8.3f} us/point  peak {rss}")
    return med


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--shell", type=int, default=20)
    a = p.parse_args()
    exe = adcli_executable()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    rng = np.random.default_rng(0)
    xy = rng.standard_normal((a.rows, 2))
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; {a.rows:,} points")
    with tempfile.TemporaryDirectory() as d:
        env["PYTHONPYCACHEPREFIX"] = os.path.join(d, "pycache")
        with open(os.path.join(d, "p.csv"), "w") as f:
            f.write("x,y\n")
            np.savetxt(f, xy, delimiter=",", fmt="%.17g")
        with open(os.path.join(d, "p.ndjson"), "w") as f:
            f.writelines(json.dumps({"x": x, "y": y}) + "\n" for x, y in xy.tolist())
        have_arrow = importlib.util.find_spec("pyarrow") is not None
        if have_arrow:
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.table({"x": xy[:, 0], "y": xy[:, 1]}), os.path.join(d, "p.parquet"))
        with open(os.path.join(d, "b.csv"), "w") as f:
            f.write("x\n")
            np.savetxt(f, xy[:, 0], fmt="%.17g")
        with open(os.path.join(d, "pos.csv"), "w") as f:
            f.write("x\n")
            np.savetxt(f, np.abs(xy[:, 0]) + 1e-3, fmt="%.17g")
        print("== whole process")
        floor = whole("python -c 'import numpy'", [sys.executable, "-c", "import numpy"], d, env,
                      a.repeat, a.rows)
        csv = whole('grad "x*(x+y)" --points p.csv (CSV out)',
                    [exe, "grad", "x*(x+y)", "--points", "p.csv", "--out", "o.csv"], d, env,
                    a.repeat, a.rows)
        start = whole("adcli eval 1 (start-up)", [exe, "eval", "1"], d, env, a.repeat, a.rows)
        if have_arrow:
            parquet = whole('grad "x*(x+y)" --points p.parquet --out o.parquet',
                            [exe, "grad", "x*(x+y)", "--points", "p.parquet", "--out",
                             "o.parquet"], d, env, a.repeat, a.rows)
            print(f"  Parquet in and out: {(parquet - start) / a.rows * 1e6:.3f} us/point above "
                  "adcli's start-up (issue: at most 0.2 us/point)")
        whole('grad "x*(x+y)" --points p.ndjson --json',
              [exe, "grad", "x*(x+y)", "--points", "p.ndjson", "--out", "o.ndjson"], d, env,
              a.repeat, a.rows)
        free = whole("grad x*x*sin(x) --points (no branch)",
                     [exe, "grad", "x*x*sin(x)", "--points", "pos.csv", "--out", "f.csv"], d, env,
                     a.repeat, a.rows)
        branch = whole("grad samples/branch.ad --points (both sides)",
                       [exe, "grad", str(SAMPLES / "branch.ad"), "--points", "b.csv", "--out",
                        "g.csv"], d, env, a.repeat, a.rows)
        print(f"  branch / branch-free: {branch / free:.2f}x (issue: at most 3x)")
        print(f"  CSV in and out: {(csv - floor) / a.rows * 1e6:.3f} us/point above "
              "`import numpy` (issue: at most 1 us/point)")
        print(f"== a shell loop, one process per point ({a.shell} points)")
        t0 = time.perf_counter()
        for x, y in xy[:a.shell].tolist():
            subprocess.run([exe, "grad", "x*(x+y)", "--at", f"x={x!r},y={y!r}"], env=env,
                           stdout=subprocess.DEVNULL, check=True, cwd=d)
        loop = (time.perf_counter() - t0) / a.shell
        print(f"  {loop * 1e3:.1f} ms/point: --points is {loop / (csv / a.rows):,.0f}x faster "
              "per point")
    print("== in process, the compute part (all points at once)")
    from adcli import api
    from adcli.points import Program
    traced = api.trace("x*(x+y)", {"x": 1.0, "y": 2.0})
    prog = Program(traced, "grad", ["x", "y"])
    # contiguous columns, as a block of the pipeline holds them (and as jax's arrays are)
    vals = {"x": np.ascontiguousarray(xy[:, 0]), "y": np.ascontiguousarray(xy[:, 1])}
    idx = np.arange(a.rows)
    t_adcli = best(5, lambda: prog.run(vals, idx))[0]
    print(f"  adcli program + gradient program       {t_adcli * 1e3:8.2f} ms  "
          f"{t_adcli / a.rows * 1e9:6.1f} ns/point")
    if importlib.util.find_spec("jax") is not None:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        jax.config.update("jax_enable_x64", True)
        f = jax.jit(jax.vmap(jax.value_and_grad(lambda x, y: x * (x + y), argnums=(0, 1))))
        jx, jy = jax.numpy.asarray(vals["x"]), jax.numpy.asarray(vals["y"])
        jax.block_until_ready(f(jx, jy))
        tj = best(5, lambda: jax.block_until_ready(f(jx, jy)))[0]
        print(f"  jax.jit(jax.vmap(jax.value_and_grad))  {tj * 1e3:8.2f} ms  "
              f"{tj / a.rows * 1e9:6.1f} ns/point; adcli / jax = {t_adcli / tj:.2f}x")


if __name__ == "__main__":
    main()
