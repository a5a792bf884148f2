"""An unrolled scalar loop in a .ad script, differentiated end to end with `adcli grad`.

    python benchmarks/bench_script_loop.py [--sizes 10000,100000] [--repeat 7]
                                           [--repeat-large 2] [--no-cli] [--no-inprocess]

The script (written to a temporary folder as loop_N.ad) is

    input x = 0.5
    y = x
    for i in range(N):
        y = y - 0.01 * sin(y) * y + 0.001 * y * y
    return y

Whole process: `adcli grad loop_N.ad --max-nodes 5000000`, stdout piped, after one warm-up,
--repeat times for sizes up to 20,000 and --repeat-large times above. Reported: median and
minimum wall seconds and the child's peak resident memory (os.wait4), next to `python -c pass`
and `python -c "import numpy"` run interleaved in the same run (machines are noisy, so the
figures that matter are ratios), and, when PyTorch is installed, the same loop and its
derivative in PyTorch as a whole process (`python -c`; the issue's target: adcli at least 6x
faster). The target (issue: "Speed") is under 0.5 s for N = 10,000;
N = 100,000 must finish (no recursion error) in bounded memory. The printed value and
gradient are checked against a plain-Python float reference with a hand-written forward-mode
derivative (relative error at most 1e-9).

In process (adcli.api, min over the same repeats), per graph node:
  trace     api.trace_script: parse, run the script, record the program. Numbers are
            computed as they are recorded, so this includes evaluating every node;
  forward   the recorded program evaluated again by adcli's evaluator, alone;
  tracing overhead = trace - forward: the interpreter and the recording;
  backward  adcli.autodiff.vjp from the output to x.
Both per node (all graph nodes) and per op node (leaves excluded: the input, the literals and
the loop variable, which `for i in range(N)` records as one constant node per iteration).
adcli in-process (api.trace_script + api.gradient) is compared with the same recurrence in
plain Python floats with its derivative by hand (the cheapest possible), and, when installed,
PyTorch (CPU, float64 scalar tensor) and eager JAX (jax.grad of a Python loop, run for
N = 1,000 only and scaled up linearly, as it is slow). The GC is paused in every timed
region (the api functions do that themselves). Child processes run with compiled bytecode:
PYTHONDONTWRITEBYTECODE is dropped and PYTHONPYCACHEPREFIX points to a temporary folder.
Nothing here asserts on times; it prints figures.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import adcli_executable, best

TARGET_S, TARGET_N, LARGE = 0.5, 10_000, 20_000
SCRIPT = """input x = 0.5
y = x
for i in range(N):
    y = y - 0.01 * sin(y) * y + 0.001 * y * y
return y
"""


# the same loop and its derivative in PyTorch, as a whole process (python -c)
TORCH_PROCESS = """import torch
x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
y = x
for i in range(N):
    y = y - 0.01 * torch.sin(y) * y + 0.001 * y * y
y.backward()
print(y.item(), x.grad.item())
"""


def reference(n, x=0.5):
    """Value and derivative of the loop in plain floats, forward mode by hand."""
    y, dy = x, 1.0
    for _ in range(n):
        s = math.sin(y)
        dy = dy - 0.01 * (math.cos(y) * dy * y + s * dy) + 0.001 * 2 * y * dy
        y = y - 0.01 * s * y + 0.001 * y * y
    return y, dy


def run_cli(cmd, cwd, env):
    """(wall seconds, peak RSS in bytes, stdout) of one process; exits if it fails."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=cwd, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n"
                     + err.read().decode(errors="replace")[-3000:])
    kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return dt, kib * 1024, out.decode()


def check(label, value, grad, n):
    ref_y, ref_dy = reference(n)
    rel = max(abs(value - ref_y) / abs(ref_y), abs(grad - ref_dy) / abs(ref_dy))
    print(f"  check {label}: value {value!r}, d/dx {grad!r}; reference {ref_y!r}, {ref_dy!r}; "
          f"max rel err {rel:.1e} ({'ok' if rel <= 1e-9 else 'MISMATCH'})")


def cli_part(sizes, args, folder, env):
    """Returns N -> median wall seconds of `adcli grad`."""
    exe, cwd = adcli_executable(), str(folder)
    base = {"python -c pass": [sys.executable, "-c", "pass"],
            "import numpy": [sys.executable, "-c", "import numpy"]}
    print(f"== whole process: adcli grad loop_N.ad | cat  ({exe})")
    for cmd in base.values():                               # warm-up: compile bytecode once
        run_cli(cmd, cwd, env)
    medians = {}
    for n in sizes:
        commands = dict(base, **{"adcli grad": [exe, "grad", f"loop_{n}.ad", "--max-nodes", "5000000"]})
        if importlib.util.find_spec("torch") and n <= LARGE:
            commands["torch"] = [sys.executable, "-c", TORCH_PROCESS.replace("N", str(n))]
        out = run_cli(commands["adcli grad"], cwd, env)[2]   # warm-up, and the result
        fields = dict(line.split("\t", 1) for line in out.strip().splitlines())
        repeat = args.repeat if n <= LARGE else args.repeat_large
        times, rss = {k: [] for k in commands}, {k: 0 for k in commands}
        order = list(commands)
        for _ in range(repeat):
            random.shuffle(order)
            for k in order:
                dt, peak, _ = run_cli(commands[k], cwd, env)
                times[k].append(dt)
                rss[k] = max(rss[k], peak)
        print(f"N = {n:,}: {repeat} timed runs of each, interleaved (after 1 warm-up)")
        print(f"  {'command':<16} {'median s':>9} {'min s':>8} {'peak RSS MiB':>13}")
        for k in commands:
            print(f"  {k:<16} {statistics.median(times[k]):>9.3f} {min(times[k]):>8.3f} "
                  f"{rss[k] / 2**20:>13.1f}")
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"  ratio adcli / import numpy = {med['adcli grad'] / med['import numpy']:.1f}x, "
              f"adcli / python -c pass = {med['adcli grad'] / med['python -c pass']:.1f}x (medians); "
              f"adcli above import numpy: {med['adcli grad'] - med['import numpy']:.3f} s, "
              f"{(rss['adcli grad'] - rss['import numpy']) / 2**20:.1f} MiB")
        if "torch" in med:
            print(f"  PyTorch's whole process / adcli's = {med['torch'] / med['adcli grad']:.1f}x "
                  f"(medians; the issue's target: at least 6x)")
        if n == TARGET_N:
            print(f"  target: under {TARGET_S} s for N = {TARGET_N:,}: median {med['adcli grad']:.3f} s, "
                  f"{'met' if med['adcli grad'] < TARGET_S else 'MISSED'} "
                  f"(min {min(times['adcli grad']):.3f} s)")
        print("  finished with exit code 0 (no recursion error)")
        check("adcli grad", float(fields["value"]), float(fields["d/dx"]), n)
        medians[n] = med["adcli grad"]
    return medians


def replay(graph, output):
    """The recorded program evaluated again by adcli's evaluator at the input's value;
    returns the output's value."""
    from adcli.evaluate import evaluate
    (x,) = [n for n in graph.nodes[:output.id + 1] if n.is_input]
    return evaluate(graph, [output], {x: graph.value(x)}, charge=False)[output.id]


def torch_loop(n):
    import torch
    x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    y = x
    for _ in range(n):
        y = y - 0.01 * torch.sin(y) * y + 0.001 * y * y
    y.backward()
    return float(y), float(x.grad)


def jax_grad(n):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def f(x):
        y = x
        for _ in range(n):
            y = y - 0.01 * jnp.sin(y) * y + 0.001 * y * y
        return y
    return None, float(jax.grad(f)(0.5))


def inprocess_part(sizes, args, folder, cli):
    from adcli import api, autodiff
    from adcli.graph import Limits
    print("\n== in process (adcli.api), min over repeats")
    for n in sizes:
        repeat = args.repeat if n <= LARGE else args.repeat_large
        path = folder / f"loop_{n}.ad"
        src, limits = path.read_text(), Limits(max_nodes=5_000_000)
        trace = lambda: api.trace_script(src, {}, limits=limits, filename=str(path))  # noqa: E731
        api.gradient(trace())                                   # warm-up
        t_trace, traced = best(repeat, trace)
        graph, out = traced.graph, traced.output
        t_fwd, y = best(repeat, lambda: replay(graph, out))
        wrt = list(traced.inputs.values())
        t_bwd, (g,) = best(repeat, lambda: autodiff.vjp(graph, out, wrt))
        nodes = len(graph.nodes)
        ops = sum(node.op is not None for node in graph.nodes)
        del traced, graph, out, wrt
        t_all, res = best(repeat, lambda: api.gradient(trace()))
        gc.collect()
        us = lambda t: f"{1e6 * t / nodes:>6.2f} us/node {1e6 * t / ops:>6.2f} us/op"  # noqa: E731
        print(f"N = {n:,}: {nodes:,} nodes ({nodes / n:.1f} per iteration), of which {ops:,} ops "
              f"({ops / n:.1f} per iteration; the rest are inputs and constants), {repeat} repeats")
        print(f"  trace (incl. forward) {t_trace:>8.3f} s {us(t_trace)}")
        print(f"    forward alone       {t_fwd:>8.3f} s {us(t_fwd)}")
        print(f"    tracing overhead    {t_trace - t_fwd:>8.3f} s {us(t_trace - t_fwd)}")
        print(f"  backward (vjp)        {t_bwd:>8.3f} s {us(t_bwd)}")
        print(f"  trace_script + gradient {t_all:>6.3f} s {us(t_all)}")
        check("in process", float(res.value), float(res.grad["x"]), n)
        if n in cli:
            print(f"  whole process (median above) minus this: {cli[n] - t_all:.3f} s of start-up, "
                  "imports, output and interpreter shutdown")
        if float(y) != float(res.value):
            print(f"  note: the replayed forward gave {float(y)!r}, the trace {float(res.value)!r}")

        baselines = [("plain Python floats, derivative by hand", lambda: reference(n), repeat, 1)]
        if importlib.util.find_spec("torch"):
            baselines.append(("PyTorch, CPU float64 scalar tensor", lambda: torch_loop(n), repeat, 1))
        else:
            print("  (PyTorch not installed: skipped)")
        if importlib.util.find_spec("jax"):
            m = min(n, 1000)
            jax_grad(10)                                            # warm-up: import, x64
            baselines.append((f"eager JAX, run at N = {m:,}, scaled x{n / m:g}",
                              lambda: jax_grad(m), 1, n / m))
        else:
            print("  (JAX not installed: skipped)")
        for label, f, reps, scale in baselines:
            t = best(reps, f)[0] * scale
            print(f"  {label:<45} {t:>8.4f} s; adcli in process / this = {t_all / t:.1f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000",
                    type=lambda s: [int(float(v)) for v in s.split(",") if v.strip()])
    ap.add_argument("--repeat", type=int, default=7, help=f"timed runs for N <= {LARGE:,}")
    ap.add_argument("--repeat-large", type=int, default=2, help=f"timed runs for N > {LARGE:,}")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-process runs")
    ap.add_argument("--no-inprocess", action="store_true", help="skip the in-process breakdown")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="adcli-bench-loop-") as tmp:
        folder = Path(tmp)
        for n in args.sizes:
            (folder / f"loop_{n}.ad").write_text(SCRIPT.replace("range(N)", f"range({n})"))
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
        cli = {} if args.no_cli else cli_part(args.sizes, args, folder, env)
        if not args.no_inprocess:
            inprocess_part(args.sizes, args, folder, cli)


if __name__ == "__main__":
    main()
