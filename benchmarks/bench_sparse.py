"""Sparse and batched second-order work (issue 12): Hessians and Jacobians found from the
program's sparsity pattern with a few compressed sweeps, against dense peers.

    python benchmarks/bench_sparse.py [--small 1000] [--large 100000] [--repeat 7] [--no-cli]

Cases, each result checked against its closed form (max abs error printed):
* Hessian of sum(sin(x)*x), x = linspace(-1, 1, n): diagonal, 2 cos x - x sin x.
  n = --small: adcli --sparse on (first: trace, pattern, colouring, derivative program and
  sweep; again: the kept program at a new x, what a loop over points pays), adcli --sparse off
  (dense: the batched forward-over-reverse sweep of n tangents), jax.jit(jax.hessian)
  (compile excluded) and torch.func.hessian, in the same run.
  n = --large: adcli sparse only (the dense matrix would hold n^2 floats).
* Jacobian of the residuals x[1:] - x[:-1]**2 at n = --large: bidiagonal; adcli sparse.
* The GMM objective of ADBench/GradBench (benchmarks/gmm.ad, d = 2, K = 5, n = 1000 points):
  its 30 x 30 Hessian in (alphas, means, icf), dense (every parameter meets every other
  through the log-sum-exp): adcli (first and again), jax.jit(jax.hessian), torch.func.hessian.
In process: min over --repeat runs, the GC paused. Whole process (unless --no-cli):
`adcli hessian ... --sparse on --out h.npz` and `adcli jacobian ... --sparse on --out j.npz`
at n = --large, with `python -c "import numpy"` and `adcli eval 1` (adcli's start-up)
interleaved as floors, median and min.
Nothing here asserts on times; it prints figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from adcli import api, derivatives, sparse

from common import adcli_executable, best, measure

GMM = Path(__file__).resolve().parent / "gmm.ad"


def row(label, seconds, err=None, base=None):
    ratio = f"{seconds / base:8.2f}x" if base else " " * 9
    e = "" if err is None else f"   max abs err {err:.1e}"
    print(f"  {label:44s} {seconds * 1e3:10.3f} ms {ratio}{e}")


def peers():
    have = {m: importlib.util.find_spec(m) is not None for m in ("jax", "torch")}
    jax = torch = None
    if have["jax"]:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        jax.config.update("jax_enable_x64", True)
    if have["torch"]:
        import torch
    return jax, torch


def hessian_case(n, repeat, jax, torch, dense=True):
    print(f"== Hessian of sum(sin(x)*x), n = {n:,}")
    x = np.linspace(-1, 1, n)
    exact = 2 * np.cos(x) - x * np.sin(x)

    def first():
        traced = api.trace("sum(sin(x)*x)", {"x": x})
        return derivatives.hessian(traced, ["x"], sparse="on")
    t_first, res = best(repeat, first)
    m = res.sparse
    r, c = m.pattern.coo()
    err = max(np.abs(m.values - exact[r]).max(), float(np.any(r != c)))
    print(f"  pattern: {m.pattern.nnz:,} entries, {m.sweeps} compressed sweep(s)")
    traced = api.trace("sum(sin(x)*x)", {"x": x})
    comp = sparse.compressed(traced.graph, "hessian", None, traced.output, [traced.inputs["x"]])
    comp.values()
    x2 = np.linspace(-0.5, 1.5, n)
    t_again, v = best(repeat, lambda: comp.values({traced.inputs["x"]: x2}))
    err2 = np.abs(v - (2 * np.cos(x2) - x2 * np.sin(x2))[r]).max()
    results = {}
    if jax is not None and dense:
        import jax.numpy as jnp
        h = jax.jit(jax.hessian(lambda z: jnp.sum(jnp.sin(z) * z)))
        xj = jnp.asarray(x)
        h(xj).block_until_ready()
        t, H = best(repeat, lambda: h(xj).block_until_ready())
        results["jax.jit(jax.hessian)"] = (t, np.abs(np.asarray(H) - np.diag(exact)).max())
    base = results.get("jax.jit(jax.hessian)", (None,))[0]
    row("adcli --sparse on, first (trace, pattern, ...)", t_first, err, base)
    row("adcli --sparse on, again at a new x", t_again, err2, base)
    if dense:
        def dense_run():
            traced = api.trace("sum(sin(x)*x)", {"x": x})
            return derivatives.hessian(traced, ["x"], sparse="off")
        t, res = best(repeat, dense_run)
        row("adcli --sparse off (dense)", t,
            np.abs(res.extra["hessian"]["x"]["x"] - np.diag(exact)).max(), base)
        if torch is not None:
            from torch.func import hessian as th
            xt = torch.tensor(x)
            f = th(lambda z: torch.sum(torch.sin(z) * z))
            t, H = best(repeat, lambda: f(xt))
            results["torch.func.hessian"] = (t, np.abs(H.numpy() - np.diag(exact)).max())
        for name, (t, e) in results.items():
            row(name, t, e, base)
    if base:
        print(f"  adcli sparse again / jax.jit: {t_again / base:.2f}x "
              f"(issue: faster than jax.jit, i.e. below 1)")


def jacobian_case(n, repeat):
    print(f"== Jacobian of x[1:] - x[:-1]**2, n = {n:,}")
    x = np.linspace(-1, 1, n)

    def first():
        traced = api.trace("x[1:] - x[:-1]**2", {"x": x})
        return derivatives.jacobian(traced, ["x"], sparse="on")
    t, res = best(repeat, first)
    m = res.sparse
    r, c = m.pattern.coo()
    exact = np.where(c == r + 1, 1.0, -2 * x[np.minimum(c, n - 1)])
    print(f"  pattern: {m.pattern.nnz:,} entries, {m.sweeps} compressed sweeps "
          f"({res.extra['mode']})")
    row("adcli --sparse on, first", t, np.abs(m.values - exact).max())
    traced = api.trace("x[1:] - x[:-1]**2", {"x": x})
    comp = sparse.choose_mode(traced.graph, traced.output, [traced.inputs["x"]], "on", None)
    comp.values()
    t2, _ = best(repeat, lambda: comp.values({traced.inputs["x"]: x * 0.5}))
    row("adcli --sparse on, again at a new x", t2)


def gmm_case(repeat, jax, torch):
    print("== GMM objective (benchmarks/gmm.ad), d = 2, K = 5, n = 1000: Hessian, 30 x 30")
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((1000, 2))
    src = GMM.read_text()
    wrt = ["alphas", "means", "icf"]

    def first():
        traced = api.trace_script(src, {"x": pts})
        return derivatives.hessian(traced, wrt, sparse="off")
    t_first, res = best(repeat, first)
    sizes = {"alphas": 5, "means": 10, "icf": 15}
    H = np.block([[np.asarray(res.extra["hessian"][a][b]).reshape(sizes[a], sizes[b])
                   for b in wrt] for a in wrt])
    traced = api.trace_script(src, {"x": pts})
    nodes = [traced.inputs[w] for w in wrt]
    comp = sparse.compressed(traced.graph, "hessian", None, traced.output, nodes)
    comp.values()
    t_again, v = best(repeat, lambda: comp.values())
    print(f"  pattern: {comp.pattern.nnz} of {comp.pattern.shape[0] ** 2} entries, "
          f"{comp.sweeps} sweeps")
    results = {}
    theta0 = np.concatenate([np.asarray(traced.graph.value(n)).ravel() for n in nodes])
    if jax is not None:
        import jax.numpy as jnp

        def f(theta, x):
            alphas, means, icf = theta[:5], theta[5:15].reshape(5, 2), theta[15:].reshape(5, 3)
            z = x[:, None, :] - means[None, :, :]
            qz0 = jnp.exp(icf[:, 0]) * z[:, :, 0]
            qz1 = icf[:, 2] * z[:, :, 0] + jnp.exp(icf[:, 1]) * z[:, :, 1]
            inner = alphas + icf[:, 0] + icf[:, 1] - 0.5 * (qz0 * qz0 + qz1 * qz1)
            prior = 0.5 * jnp.sum(jnp.exp(2 * icf[:, 0]) + jnp.exp(2 * icf[:, 1]) + icf[:, 2] ** 2)
            return jnp.sum(jax.scipy.special.logsumexp(inner, axis=1)
                           - jax.scipy.special.logsumexp(alphas)) + prior
        h = jax.jit(jax.hessian(f))
        th, xj = jnp.asarray(theta0), jnp.asarray(pts)
        h(th, xj).block_until_ready()
        t, Hj = best(repeat, lambda: h(th, xj).block_until_ready())
        results["jax.jit(jax.hessian)"] = (t, np.abs(np.asarray(Hj) - H).max())
    if torch is not None:
        from torch.func import hessian as thess

        def g(theta, x):
            alphas, means, icf = theta[:5], theta[5:15].reshape(5, 2), theta[15:].reshape(5, 3)
            z = x[:, None, :] - means[None, :, :]
            qz0 = torch.exp(icf[:, 0]) * z[:, :, 0]
            qz1 = icf[:, 2] * z[:, :, 0] + torch.exp(icf[:, 1]) * z[:, :, 1]
            inner = alphas + icf[:, 0] + icf[:, 1] - 0.5 * (qz0 * qz0 + qz1 * qz1)
            prior = 0.5 * torch.sum(torch.exp(2 * icf[:, 0]) + torch.exp(2 * icf[:, 1])
                                    + icf[:, 2] ** 2)
            return torch.sum(torch.logsumexp(inner, 1) - torch.logsumexp(alphas, 0)) + prior
        tt, xt = torch.tensor(theta0), torch.tensor(pts)
        hf = thess(g)
        t, Ht = best(repeat, lambda: hf(tt, xt))
        results["torch.func.hessian"] = (t, np.abs(Ht.numpy() - H).max())
    base = results.get("jax.jit(jax.hessian)", (None,))[0]
    dense_again = np.zeros(comp.pattern.shape)
    r, c = comp.pattern.coo()
    dense_again[r, c] = v
    row("adcli, first (trace, gradient, 30 sweeps)", t_first, None, base)
    row("adcli, again (the kept program)", t_again, np.abs(dense_again - H).max(), base)
    for name, (t, e) in results.items():
        row(name, t, e, base)


def cli_case(n, repeat):
    exe = adcli_executable()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as d:
        env["PYTHONPYCACHEPREFIX"] = os.path.join(d, "pycache")
        np.save(os.path.join(d, "x.npy"), np.linspace(-1, 1, n))
        cmds = {"import numpy": [sys.executable, "-c", "import numpy"],
                "adcli eval 1 (start-up)": [exe, "eval", "1"],
                "adcli hessian --sparse on --out h.npz":
                    [exe, "hessian", "sum(sin(x)*x)", "--at", "x=@x.npy", "--sparse", "on",
                     "--out", "h.npz"],
                "adcli jacobian --sparse on --out j.npz":
                    [exe, "jacobian", "x[1:] - x[:-1]**2", "--at", "x=@x.npy", "--sparse", "on",
                     "--out", "j.npz"]}
        print(f"== whole process, n = {n:,} ({repeat} runs each, interleaved, after a warm-up)")
        times = {k: [] for k in cmds}
        for k in range(repeat + 1):
            for name, cmd in cmds.items():
                dt, rss, code, err = measure(cmd, d, env)
                if code:
                    sys.exit(f"{' '.join(cmd)} failed ({code}): {err[-2000:]}")
                if k:
                    times[name].append(dt)
        floor = statistics.median(times["import numpy"])
        start = statistics.median(times["adcli eval 1 (start-up)"])
        for name, ts in times.items():
            print(f"  {name:44s} median {statistics.median(ts):.3f} s  min {min(ts):.3f} s"
                  f"  ({statistics.median(ts) / floor:.1f}x import numpy, "
                  f"{statistics.median(ts) - start:+.3f} s over adcli's start-up)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--large", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--no-cli", action="store_true")
    a = p.parse_args()
    jax, torch = peers()
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; jax "
          f"{getattr(jax, '__version__', 'not installed')}, torch "
          f"{getattr(torch, '__version__', 'not installed')}")
    hessian_case(a.small, a.repeat, jax, torch)
    hessian_case(a.large, a.repeat, jax, torch, dense=False)
    jacobian_case(a.large, a.repeat)
    gmm_case(a.repeat, jax, torch)
    if not a.no_cli:
        cli_case(a.large, a.repeat)


if __name__ == "__main__":
    main()
