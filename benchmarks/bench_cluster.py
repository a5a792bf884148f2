"""The Dask path of --points (issue 13): `adcli grad "x*(x+y)" --points FOLDER --out OUT/
--scheduler ...` on a local two-worker cluster, against the single process in the same run.

    python benchmarks/bench_cluster.py [--rows 10000000] [--files 10] [--repeat 2]

The input is --rows random points in a folder of --files Parquet files (one row group each).
Cases, each a whole process (start-up, reading, evaluating, writing), median of --repeat:
* single process, Parquet out: `--out one.parquet` (the baseline);
* an existing LocalCluster (2 worker processes, 1 thread each, started by this benchmark and
  warmed by a run of one point, neither timed): `--scheduler tcp://...`;
* `--scheduler local --jobs 2`: the LocalCluster's start included.
Each prints seconds, microseconds per point and the ratio to the baseline. Nothing here
asserts on times. On a machine whose cores are shared, the figures are noisy: compare the
ratios of one run, not runs.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile

import numpy as np

from common import adcli_executable, measure


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    import distributed
    import pyarrow as pa
    import pyarrow.parquet as pq
    exe = adcli_executable()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; {a.rows:,} points in "
          f"{a.files} Parquet files; dask.distributed {distributed.__version__}")
    with tempfile.TemporaryDirectory() as d:
        env["PYTHONPYCACHEPREFIX"] = os.path.join(d, "pycache")
        folder = os.path.join(d, "points")
        os.mkdir(folder)
        rng = np.random.default_rng(0)
        per = -(-a.rows // a.files)
        for i in range(a.files):
            n = min(per, a.rows - i * per)
            xy = rng.standard_normal((n, 2))
            pq.write_table(pa.table({"x": xy[:, 0], "y": xy[:, 1]}),
                           os.path.join(folder, f"in-{i:03d}.parquet"), row_group_size=n)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None,
                                           silence_logs=logging.CRITICAL)
        try:
            cmd = [exe, "grad", "x*(x+y)", "--points", folder, "--out"]
            # the workers' first task imports adcli, numpy and pyarrow: once, before timing
            warm = os.path.join(d, "warm.parquet")
            pq.write_table(pa.table({"x": [1.0], "y": [2.0]}), warm)
            measure([exe, "grad", "x*(x+y)", "--points", warm, "--out", os.path.join(d, "w"),
                     "--scheduler", cluster.scheduler_address], d, env)
            cases = [("single process, Parquet out", lambda out: cmd + [out + ".parquet"]),
                     ("cluster of 2 workers (running)",
                      lambda out: cmd + [out, "--scheduler", cluster.scheduler_address]),
                     ("--scheduler local --jobs 2 (started)",
                      lambda out: cmd + [out, "--scheduler", "local", "--jobs", "2"])]
            base = None
            for label, make in cases:
                times = []
                for r in range(a.repeat):
                    out = os.path.join(d, f"out-{r}")
                    dt, rss, code, err = measure(make(out), d, env)
                    if code != 0:
                        sys.exit(f"{label} failed ({code}): {err[-2000:]}")
                    times.append(dt)
                    shutil.rmtree(out, ignore_errors=True)
                    if os.path.exists(out + ".parquet"):
                        os.unlink(out + ".parquet")
                med = statistics.median(times)
                base = base or med
                print(f"  {label:40s} median {med:7.3f} s  min {min(times):7.3f} s  "
                      f"{med / a.rows * 1e6:7.3f} us/point  {med / base:5.2f}x the single "
                      f"process  (client peak {rss / 2**20:.0f} MiB)")
        finally:
            cluster.close()


if __name__ == "__main__":
    main()
