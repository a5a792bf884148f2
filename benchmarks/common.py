"""What the benchmarks share: finding the adcli under test, and measuring one process.

Each benchmark runs as `python benchmarks/bench_NAME.py`, so this folder is on sys.path."""
from __future__ import annotations

import gc
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def adcli_executable():
    """The adcli console script next to this Python (the same environment)."""
    here = Path(sys.executable).parent
    for name in ("adcli", "adcli.exe"):
        if (here / name).is_file():
            return str(here / name)
    found = shutil.which("adcli")
    if found is None:
        sys.exit("adcli is not installed next to this Python; run `pip install -e .` first")
    print(f"note: using {found}, not found next to {sys.executable}", file=sys.stderr)
    return found


# The child is started, timed and waited for by a small helper process, not by the benchmark:
# on Linux a child's ru_maxrss starts at the RSS of the process it was forked from (the
# high-water mark survives exec), so measured from a benchmark holding large arrays it would
# include them.
RUNNER = """import os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def measure(cmd, cwd, env):
    """(wall seconds, peak RSS in bytes, exit code, stderr) of one process, stdout discarded."""
    with tempfile.TemporaryFile() as err:
        out = subprocess.run([sys.executable, "-S", "-c", RUNNER, *cmd], stdout=subprocess.PIPE,
                             stderr=err, cwd=cwd, env=env, check=True).stdout.split()
        err.seek(0)
        text = err.read().decode(errors="replace")
    dt, maxrss, code = float(out[0]), int(out[1]), int(out[2])
    return dt, maxrss * (1 if sys.platform == "darwin" else 1024), code, text


def best(repeat, f):
    """Min wall seconds of f() over `repeat` runs with the GC paused, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        result = None
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            result = f()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return min(times), result
