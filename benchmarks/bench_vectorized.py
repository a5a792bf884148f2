"""Vectorised work: gradient time against value time, and against hand-written numpy.

    python benchmarks/bench_vectorized.py [--sizes 1e6,1e7] [--repeat 5] [--no-cli]

For each size n, x holds n float64 numbers (seeded standard normal) saved to a .npy file in
a temporary folder and loaded back with numpy. For each expression:

* adcli value     api.trace(...) then api.evaluate(...): tracing evaluates, so this is the
                  value's cost (parsing included, a few microseconds);
* adcli gradient  api.trace(...) then api.gradient(...): the value and the gradient;
* numpy value / numpy gradient: the same computed by hand with numpy, the gradient sharing
  the value's intermediates as a person would write it.

Each time is the best of --repeat runs (time.perf_counter), the four measurements of one
case interleaved round by round (--blocked: each one's runs back to back). The user and
system CPU time of those runs is printed too: on a machine where touching fresh memory is
expensive (a VM), system time spent in page faults on new arrays can dominate, and it grows
with how many full-size temporaries a computation allocates. Reported ratios, all from this
run: adcli gradient / adcli value (the cheap-gradient principle bounds it near 3; target at
most 3), adcli gradient / numpy gradient and adcli value / numpy value. The adcli gradient is
checked against the numpy one (rel err: the largest difference over the largest numpy
gradient element, or the value's relative difference if larger).

Then the whole CLI process `adcli grad EXPR --at x=@x.npy --out grad.npy` runs once per
size and expression, stdout piped to /dev/null, for the record (wall time and peak memory).

Nothing here asserts on times; it prints figures.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from adcli import api

from common import adcli_executable, measure

SMOOTH = "sum(sin(x)*exp(-x*x) + log1p(x*x))"
LSE = "logsumexp(x)"


# ---------------------------------------------------------------- hand-written numpy

def smooth_value(x):
    return np.sum(np.sin(x) * np.exp(-x * x) + np.log1p(x * x))


def smooth_gradient(x):
    # d/dx [sin x e^{-x^2} + log(1 + x^2)] = e^{-x^2} (cos x - 2x sin x) + 2x / (1 + x^2)
    s, xx = np.sin(x), x * x
    e = np.exp(-xx)
    value = np.sum(s * e + np.log1p(xx))
    grad = e * (np.cos(x) - 2.0 * x * s) + 2.0 * x / (1.0 + xx)
    return value, grad


def lse_value(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


def lse_gradient(x):
    # d/dx logsumexp(x) = softmax(x)
    m = np.max(x)
    e = np.exp(x - m)
    s = np.sum(e)
    return m + np.log(s), e / s


CASES = [(SMOOTH, smooth_value, smooth_gradient), (LSE, lse_value, lse_gradient)]


# ---------------------------------------------------------------- timing

def best_of(repeat, fns, blocked=False):
    """For each of `fns`: the shortest of `repeat` runs in seconds, the (user, system) CPU
    seconds of that run, and the last result.

    By default the functions run interleaved, one round after another, so that each meets
    the same state of the machine and of the memory allocator; `blocked` runs each one's
    repeats back to back instead (then a run can reuse pages its predecessor just freed)."""
    best, cpu, out = [float("inf")] * len(fns), [None] * len(fns), [None] * len(fns)
    order = ([i for i in range(len(fns)) for _ in range(repeat)] if blocked
             else [i for _ in range(repeat) for i in range(len(fns))])
    for i in order:
        out[i] = None           # free the previous result before running again
        gc.collect()
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out[i] = fns[i]()
        dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        if dt < best[i]:
            best[i], cpu[i] = dt, (r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime)
    return best, cpu, out


def adcli_value(expr, x):
    return api.evaluate(api.trace(expr, {"x": x}))


def adcli_gradient(expr, x):
    return api.gradient(api.trace(expr, {"x": x}))


def graph_bytes(expr, x):
    traced = api.trace(expr, {"x": x})
    return len(traced.graph.nodes), sum(n.value.nbytes for n in traced.graph.nodes)


def run_cli(cmd, cwd, env):
    """Wall seconds, exit code, peak resident memory (bytes) of one process, and its stderr.
    (Measured through common.measure, so the peak is the child's own, not this process's.)"""
    dt, rss, code, err = measure(cmd, cwd, env)
    return dt, code, rss, err


def parse_sizes(text):
    return [int(float(s)) for s in text.split(",") if s.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e6,1e7", type=parse_sizes,
                    help="comma-separated element counts (default 1e6,1e7)")
    ap.add_argument("--repeat", type=int, default=5, help="best of N runs (default 5)")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-process CLI runs")
    ap.add_argument("--blocked", action="store_true",
                    help="run each measurement's repeats back to back instead of interleaved")
    args = ap.parse_args()

    print(f"numpy {np.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"best of {args.repeat} runs, {'blocked' if args.blocked else 'interleaved'}; times in ms\n")
    header = (f"{'expression':<36} {'n':>9} {'adcli val':>10} {'adcli grad':>11} {'grad/val':>9} "
              f"{'np val':>9} {'np grad':>9} {'grad/np':>8} {'val/np':>7} {'rel err':>8}")
    rows, cli_rows, cpu_rows, notes = [], [], [], []
    exe = None if args.no_cli else adcli_executable()
    print(header)
    with tempfile.TemporaryDirectory(prefix="adcli-bench-") as tmp, np.errstate(all="ignore"):
        # the CLI runs as an installed tool would, with compiled bytecode (kept out of the checkout)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        if exe is not None:
            subprocess.run([exe, "grad", "x*x", "--at", "x=1"], stdout=subprocess.DEVNULL, env=env)
        for n in args.sizes:
            path = os.path.join(tmp, f"x{n}.npy")
            np.save(path, np.random.default_rng(0).standard_normal(n))
            t0 = time.perf_counter()
            x = np.load(path)
            load_s = time.perf_counter() - t0
            notes.append(f"n={n:,}: x is {x.nbytes / 2**20:.0f} MiB, np.load took {1e3 * load_s:.1f} ms")
            adcli_value(SMOOTH, x[:10])           # warm up: parser tables, op table, caches
            for expr, np_value, np_gradient in CASES:
                nodes, nbytes = graph_bytes(expr, x)
                gc.collect()
                notes.append(f"n={n:,} {expr}: the traced graph has {nodes} nodes holding "
                             f"{nbytes / 2**20:.0f} MiB")
                (t_val, t_grad, t_npval, t_npgrad), cpu, (_, res, _, (np_v, np_g)) = best_of(
                    args.repeat, [lambda: adcli_value(expr, x), lambda: adcli_gradient(expr, x),
                                  lambda: np_value(x), lambda: np_gradient(x)], args.blocked)
                cpu_rows.append((expr, n, cpu))
                g = np.asarray(res.grad["x"])
                err = float(np.max(np.abs(g - np_g)) / max(float(np.max(np.abs(np_g))), 1e-300))
                verr = abs(float(res.value) - float(np_v)) / max(abs(float(np_v)), 1e-300)
                rows.append((expr, n, t_val, t_grad, t_npval, t_npgrad, max(err, verr)))
                del res, g, np_g
                gc.collect()
                print(_row(rows[-1]), flush=True)

            if exe is not None:
                for expr, _, _ in CASES:
                    out = os.path.join(tmp, "grad.npy")
                    cmd = [exe, "grad", expr, "--at", f"x=@{path}", "--out", out]
                    dt, rc, rss, err = run_cli(cmd, tmp, env)
                    ok = rc == 0 and os.path.exists(out)
                    if ok:
                        saved = np.load(out)
                        ok = saved.shape == x.shape
                        os.remove(out)
                    cli_rows.append((expr, n, dt, rc, rss, ok, err.strip().splitlines()[-1:] if rc else []))
            del x
            gc.collect()

    print("\nratios: grad/val = adcli gradient / adcli value (target <= 3); grad/np = adcli "
          "gradient / numpy gradient; val/np = adcli value / numpy value")
    worst = max(r[3] / r[2] for r in rows)
    print(f"worst grad/val: {worst:.2f}x (target <= 3: {'met' if worst <= 3 else 'MISSED'}); "
          f"worst grad/np: {max(r[3] / r[5] for r in rows):.2f}x")
    for note in notes:
        print("  " + note)
    print("\nCPU time of the fastest runs, user + system ms (system time is mostly page faults "
          "on freshly allocated arrays)")
    print(f"{'expression':<36} {'n':>9} {'adcli val':>13} {'adcli grad':>13} {'np val':>13} {'np grad':>13}")
    for expr, n, cpu in cpu_rows:
        print(f"{expr:<36} {n:>9,} " + " ".join(f"{1e3 * u:>6.0f}+{1e3 * s_:<6.0f}" for u, s_ in cpu))

    if cli_rows:
        print(f"\nwhole CLI process, once each: adcli grad EXPR --at x=@x.npy --out grad.npy "
              f"(stdout to /dev/null)")
        print(f"{'expression':<36} {'n':>9} {'wall ms':>9} {'peak RSS MiB':>13} {'exit':>5}  out file")
        for expr, n, dt, rc, rss, ok, err in cli_rows:
            print(f"{expr:<36} {n:>9,} {1e3 * dt:>9.0f} {rss / 2**20:>13.0f} {rc:>5}  "
                  f"{'ok' if ok else 'MISSING/WRONG'} {' '.join(err)}")


def _row(r):
    expr, n, t_val, t_grad, t_npval, t_npgrad, err = r
    return (f"{expr:<36} {n:>9,} {1e3 * t_val:>10.1f} {1e3 * t_grad:>11.1f} {t_grad / t_val:>8.2f}x "
            f"{1e3 * t_npval:>9.1f} {1e3 * t_npgrad:>9.1f} {t_grad / t_npgrad:>7.2f}x "
            f"{t_val / t_npval:>6.2f}x {err:>8.0e}")


if __name__ == "__main__":
    main()
