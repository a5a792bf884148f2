"""Dense second-order and Jacobian work: time and peak memory of `hessian` and `jacobian`.

    python benchmarks/bench_derivatives.py [--sizes 100,1000] [--jac-size 1000] [--repeat 5]
                                           [--no-cli] [--profile]

Cases (issue: "The Hessian of sum(sin(x)*x) ... and jacobian of a 1,000 -> 1,000 map"):
* Hessian of sum(sin(x)*x), x = linspace(-1, 1, n), n in --sizes: forward over reverse, the
  JVP program of the recorded gradient at all the basis tangents (batched); exact: diag(2 cos x - x sin x).
* Jacobian of tanh(A @ x) + x in x, A seeded standard normal n x n / sqrt(n), x seeded
  standard normal, n = --jac-size, --mode fwd (a JVP per input element) and rev (a VJP per
  output element); exact: diag(1 - tanh(Ax)^2) @ A + I.

In process: min (and median) over --repeat runs, GC paused; for adcli, api.trace(...) plus
derivatives.hessian/jacobian(...), the trace included (the trace alone is printed too). One
more untimed run under tracemalloc gives the peak of Python and numpy allocations (x and A
are made beforehand and not counted; the n*n*8-byte result is; torch's and XLA's memory is
invisible to it: n/a). Baselines in the same run, as ratios adcli / baseline, each result's
max abs error against the exact one printed:
  closed form    the exact matrix in numpy: the floor;
  central diffs  a plain numpy loop, column i = (g(x + h e_i) - g(x - h e_i)) / 2h, g the
                 hand gradient sin x + x cos x (Hessian) or the map (Jacobian), h = 1e-5;
  torch / jax    torch.autograd.functional.hessian/jacobian and torch.func.hessian/jacfwd
                 (CPU, float64), jax.hessian /
                 jax.jacfwd (x64) eager and under jax.jit (compile excluded), if importable.
BLAS threads are as the environment sets them (OPENBLAS_NUM_THREADS...): on a small noisy
machine a threaded matrix-vector product can be several times slower; compare the minima.

Whole process (unless --no-cli): `adcli hessian EXPR --at x=@x.npy --wrt x --out h.npy` and
`adcli jacobian EXPR --at A=@A.npy,x=@xj.npy --wrt x --mode M --out j.npy`, stdout to
/dev/null (adcli still renders the full matrix as text), after one warm-up, --repeat runs
interleaved with `python -c "import numpy"`: median and min wall seconds and peak RSS, both
taken by a small helper process that spawns the child and calls os.wait4 (see RUNNER), and
the saved .npy checked. Children run with compiled bytecode:
PYTHONDONTWRITEBYTECODE is dropped, PYTHONPYCACHEPREFIX is a temporary folder. --profile
prints a cProfile of the slowest adcli in-process case. Nothing here asserts on times.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from adcli import api, derivatives

from common import adcli_executable, measure

HESS, JAC, H = "sum(sin(x)*x)", "tanh(A @ x) + x", 1e-5
SKIP = "(not installed: skipped)"



def run_cli(cmd, cwd, env):
    """(wall seconds, peak RSS in bytes) of one process, stdout to /dev/null; exits if it fails."""
    dt, rss, code, err = measure(cmd, cwd, env)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit code {code}:\n" + err[-3000:])
    return dt, rss


def best(repeat, f):
    """(min and median seconds over `repeat` runs with the GC paused, the result, and the
    tracemalloc peak in bytes of one more run)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        result = np.asarray(f())
        times.append(time.perf_counter() - t0)
        gc.enable()
    del result
    gc.collect()
    tracemalloc.start()
    result = np.asarray(f())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return min(times), statistics.median(times), result, peak


def central_diffs(g, x):
    """Column i = (g(x + h e_i) - g(x - h e_i)) / 2h: 2n evaluations of g."""
    cols = np.empty((g(x).size, x.size))
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[i] += H
        xm[i] -= H
        cols[:, i] = (g(xp) - g(xm)) / (2 * H)
    return cols


def framework_methods(kind, x, A):
    """[(label, f or None if not installed)] for torch and jax."""
    out = [(f"torch.autograd.functional.{kind}", None)]
    if importlib.util.find_spec("torch"):
        import torch
        tx, tA = torch.from_numpy(x), None if A is None else torch.from_numpy(A)
        tf = ((lambda t: (torch.sin(t) * t).sum()) if kind == "hessian"
              else (lambda t: torch.tanh(tA @ t) + t))
        td = getattr(torch.autograd.functional, kind)
        out = [(out[0][0], lambda: td(tf, tx).numpy())]   # (not `d`: jax's is below)
        # torch.func's transforms (vmap over the basis, as adcli's batched sweeps)
        tfd = torch.func.hessian(tf) if kind == "hessian" else torch.func.jacfwd(tf)
        out.append((f"torch.func.{'hessian' if kind == 'hessian' else 'jacfwd'}",
                    lambda: tfd(tx).numpy()))
    name = "jax.hessian" if kind == "hessian" else "jax.jacfwd"
    if not importlib.util.find_spec("jax"):
        return out + [(f"{name}, eager and jit", None)]
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    jx = jnp.asarray(x)
    jA = None if A is None else jnp.asarray(A)
    d = (jax.hessian(lambda t: jnp.sum(jnp.sin(t) * t)) if kind == "hessian"
         else jax.jacfwd(lambda t: jnp.tanh(jA @ t) + t))
    jitted = jax.jit(d)
    np.asarray(d(jx))
    np.asarray(jitted(jx))                          # compile once, outside the timing
    return out + [(f"{name} eager", lambda: np.asarray(d(jx))),
                  (f"{name} under jax.jit", lambda: np.asarray(jitted(jx)))]


def report(title, label, adcli_f, trace_f, exact, baselines, repeat, slowest):
    print(f"\n{title}")
    print(f"  {'method':<46} {'min s':>8} {'med s':>8} {'peak MiB':>9} {'max abs err':>12} "
          f"{'adcli/this':>10}")
    t_ad, m_ad, res, mem = best(repeat, adcli_f)

    def row(label, t, med, m, r, ratio=""):
        mib = "n/a" if label.startswith(("torch", "jax")) else f"{m / 2**20:.1f}"
        print(f"  {label:<46} {t:>8.4f} {med:>8.4f} {mib:>9} "
              f"{np.max(np.abs(r - exact)):>12.1e} {ratio:>10}")
    row(label, t_ad, m_ad, mem, res)
    t_tr = best(repeat, trace_f)[0]
    print(f"    of which api.trace alone: {t_tr:.4f} s ({100 * t_tr / t_ad:.1f}%)")
    for name, f in baselines:
        if f is None:
            print(f"  {name:<46} {SKIP}")
        else:
            t, med, r, m = best(repeat, f)
            row(name, t, med, m, r, f"{t_ad / t:.1f}x")
    if t_ad > slowest[0]:
        slowest[:] = [t_ad, title, adcli_f]


def hessian_case(n, repeat, slowest):
    x = np.linspace(-1.0, 1.0, n)
    exact = np.diag(2 * np.cos(x) - x * np.sin(x))
    baselines = [("closed form diag(2 cos x - x sin x), numpy",
                  lambda: np.diag(2 * np.cos(x) - x * np.sin(x))),
                 (f"central diffs of sin x + x cos x ({2 * n} evals)",
                  lambda: central_diffs(lambda t: np.sin(t) + t * np.cos(t), x))]
    report(f"== Hessian of {HESS}, x = linspace(-1, 1, {n}): {n}x{n}, {n * n * 8 / 2**20:.2f} MiB",
           "adcli trace + hessian",
           lambda: derivatives.hessian(api.trace(HESS, {"x": x})).extra["hessian"]["x"]["x"],
           lambda: api.trace(HESS, {"x": x}).output.value, exact,
           baselines + framework_methods("hessian", x, None), repeat, slowest)


def jacobian_case(n, repeat, slowest):
    rng = np.random.default_rng(0)
    A, x = rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal(n)
    exact = (1 - np.tanh(A @ x) ** 2)[:, None] * A + np.eye(n)
    baselines = [("closed form diag(1 - tanh(Ax)^2) A + I, numpy",
                  lambda: (1 - np.tanh(A @ x) ** 2)[:, None] * A + np.eye(n)),
                 (f"central diffs of the map ({2 * n} evals)",
                  lambda: central_diffs(lambda t: np.tanh(A @ t) + t, x))]
    baselines += framework_methods("jacobian", x, A)
    for mode in ("fwd", "rev"):                     # the baselines once, under fwd
        def adcli_f(mode=mode):
            r = derivatives.jacobian(api.trace(JAC, {"A": A, "x": x}), wrt=["x"], mode=mode)
            assert r.extra["mode"] == mode
            return r.extra["jacobian"]["x"]
        report(f"== jacobian --mode {mode} of {JAC}, A {n}x{n} (seeded, / sqrt(n)), x of {n}",
               f"adcli trace + jacobian --mode {mode}", adcli_f,
               lambda: api.trace(JAC, {"A": A, "x": x}).output.value, exact,
               baselines if mode == "fwd" else [], repeat, slowest)
    return A, x, exact


def cli_part(args, jac, folder, env):
    exe, cwd = adcli_executable(), str(folder)
    base = [sys.executable, "-c", "import numpy"]
    cases = []
    for n in args.sizes:
        x = np.linspace(-1.0, 1.0, n)
        np.save(folder / f"x{n}.npy", x)
        cases.append((f"adcli hessian, n = {n}", [exe, "hessian", HESS, "--at", f"x=@x{n}.npy",
                      "--wrt", "x", "--out", f"h{n}.npy"], f"h{n}.npy",
                      np.diag(2 * np.cos(x) - x * np.sin(x))))
    A, x, exact = jac
    np.save(folder / "A.npy", A)
    np.save(folder / "xj.npy", x)
    for mode in ("fwd", "rev"):
        cases.append((f"adcli jacobian --mode {mode}, n = {x.size}",
                      [exe, "jacobian", JAC, "--at", "A=@A.npy,x=@xj.npy", "--wrt", "x",
                       "--mode", mode, "--out", f"j{mode}.npy"], f"j{mode}.npy", exact))
    print(f"\n== whole process, stdout to /dev/null ({exe}); {args.repeat} timed runs each, "
          "interleaved with `python -c \"import numpy\"` (after 1 warm-up)")
    print(f"  {'command':<34} {'median s':>9} {'min s':>8} {'peak RSS MiB':>13} {'max abs err':>12}")
    run_cli(base, cwd, env)
    for label, cmd, out, ex in cases:
        run_cli(cmd, cwd, env)
        err = np.max(np.abs(np.load(folder / out) - ex))
        times, rss = {"a": [], "b": []}, {"a": 0, "b": 0}
        order = [("a", cmd), ("b", base)]
        for _ in range(args.repeat):
            random.shuffle(order)
            for k, c in order:
                dt, peak = run_cli(c, cwd, env)
                times[k].append(dt)
                rss[k] = max(rss[k], peak)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"  {label:<34} {med['a']:>9.3f} {min(times['a']):>8.3f} {rss['a'] / 2**20:>13.1f} "
              f"{err:>12.1e}")
        print(f"    import numpy {med['b']:.3f} s, {rss['b'] / 2**20:.1f} MiB; adcli above it: "
              f"{med['a'] - med['b']:.3f} s, {(rss['a'] - rss['b']) / 2**20:.1f} MiB "
              f"(ratio {med['a'] / med['b']:.1f}x)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000", help="Hessian sizes, comma-separated",
                    type=lambda s: [int(float(v)) for v in s.split(",") if v.strip()])
    ap.add_argument("--jac-size", type=int, default=1000, help="n of the n -> n Jacobian")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each method")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-process runs")
    ap.add_argument("--profile", action="store_true", help="cProfile the slowest adcli case")
    args = ap.parse_args()
    threads = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                 "MKL_NUM_THREADS") if k in os.environ]
    print(f"python {sys.version.split()[0]} at {sys.executable}; numpy {np.__version__}; "
          f"{os.cpu_count()} CPUs; BLAS threads: {', '.join(threads) or 'library default'}")
    slowest = [0.0, None, None]
    for n in args.sizes:
        hessian_case(n, args.repeat, slowest)
    jac = jacobian_case(args.jac_size, args.repeat, slowest)
    if not args.no_cli:
        with tempfile.TemporaryDirectory(prefix="adcli-bench-deriv-") as tmp:
            env = dict(os.environ)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            cli_part(args, jac, Path(tmp), env)
    if args.profile:
        print(f"\n== cProfile of one run of the slowest adcli case ({slowest[0]:.3f} s): "
              f"{slowest[1][3:]}")
        prof = cProfile.Profile()
        prof.runcall(slowest[2])
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
