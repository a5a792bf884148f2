"""Fused kernels against the numpy path, jax.jit and torch.compile, in process.

    python benchmarks/bench_fuse.py [--n 1e7] [--repeat 5]

(With the peer environment: PYTHONPATH=. /work/benchenv/bin/python benchmarks/bench_fuse.py.)

f(x) = sum(sin(x)*exp(-x*x) + log1p(x*x)) at n float64 numbers (seeded standard normal):

* adcli fused      the value and gradient programs (api.Traced.gradient_program) evaluated
                   by adcli's evaluator with fused kernels, traced once;
* adcli numpy      the same programs, op by op with numpy (--no-fuse);
* adcli grad       api.gradient, what `adcli grad` runs (the chunked elementwise-sum path);
* jax.jit          jax.jit(jax.value_and_grad(f)) in float64 (x64 on), after its first call;
* torch.compile    torch.compile of the value and autograd gradient, after its first call;
* batched points   the value and gradient programs of x*(x+y), traced at one point, at n
                   points at once (Traced.at with batch=n), fused.

logsumexp(x) at the same n (adcli/kernels/reduce.py): the value (api.evaluate) and the
gradient (api.gradient, value included) against jax.jit(logsumexp) and
jax.jit(jax.grad(logsumexp)), and against adcli's numpy path (--no-fuse); and the value of
logsumexp(sin(x)*3 + x*x), reduced in the chain's own loop, against jax.jit of the same.

Each time is the best of --repeat runs. Also: the first call of the fused programs with an
empty kernel cache (compilation included), the time a fresh process spends loading its
kernels from the disk cache, and the peers' compile times (their first call). Ratios are against the numbers of this same run. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import best

EXPR = "sum(sin(x)*exp(-x*x)+log1p(x*x))"


def adcli_programs(x):
    from adcli import api
    t = api.trace(EXPR, {"x": x})
    outs = [t.output] + t.gradient_program()
    node = t.inputs["x"]

    def run():
        vals = t.at({"x": x}, outputs=outs)
        return float(vals[outs[0].id]), vals[outs[1].id]
    return run, node


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e7)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = int(args.n)
    x = np.random.default_rng(0).standard_normal(n)
    from adcli import api, kernels
    from adcli.kernels import cpu
    rows = []

    with tempfile.TemporaryDirectory() as cache:
        kernels.configure(cache_dir=cache)
        fused, _ = adcli_programs(x)
        t0 = time.perf_counter()
        value, grad = fused()
        first = time.perf_counter() - t0
        t_fused, _ = best(args.repeat, fused)
        rows.append(("adcli fused", t_fused))
        compile_s = first - t_fused
        # a fresh process finding the kernels in the disk cache: the time its first call
        # spends in kernels.cpu.load (hashing the source, dlopen of the cached library)
        code = ("import sys, time, numpy as np; sys.path.insert(0, %r); from bench_fuse import "
                "adcli_programs; from adcli import kernels; from adcli.kernels import cpu; "
                "kernels.configure(cache_dir=%r); spent = [0.0]; load = cpu.load\n"
                "def timed(*a):\n t0 = time.perf_counter(); f = load(*a); "
                "spent[0] += time.perf_counter() - t0; return f\n"
                "cpu.load = timed; x = np.random.default_rng(0).standard_normal(%d); "
                "run, _ = adcli_programs(x); run(); print(spent[0])"
                % (os.path.dirname(os.path.abspath(__file__)), cache, n))
        cached = float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                      text=True, check=True, env=os.environ).stdout.split()[-1])

        def gradient():
            return api.gradient(api.trace(EXPR, {"x": x})).grad["x"]
        t_grad, g2 = best(args.repeat, gradient)
        rows.append(("adcli grad (api.gradient)", t_grad))
        kernels.configure(enabled=False)
        plain, _ = adcli_programs(x)
        t_plain, (v_plain, g_plain) = best(max(1, args.repeat // 2), plain)
        rows.insert(1, ("adcli numpy (--no-fuse)", t_plain))
        kernels.configure(enabled=True, cache_dir=None)
    # value and gradient of a small expression at n points, with the batch axis (the
    # programs traced at one point, evaluated at all of them)
    t = api.trace("x*(x+y)", {"x": 2.0, "y": 3.0})
    program = [t.output] + t.gradient_program()
    pts = {"x": x, "y": np.random.default_rng(1).standard_normal(n)}
    t_points, _ = best(args.repeat, lambda: t.at(pts, outputs=program, batch=n))
    err = float(np.max(np.abs(grad - g_plain)) / np.max(np.abs(g_plain)))
    print(f"f(x) = {EXPR}, n = {n:,} float64, {cpu.threads()} threads")
    print(f"fused vs numpy path: value {value!r} vs {v_plain!r}, gradient max rel diff {err:.1e}")

    peers = {}
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        vg = jax.jit(jax.value_and_grad(lambda v: jnp.sum(jnp.sin(v) * jnp.exp(-v * v)
                                                          + jnp.log1p(v * v))))
        xj = jnp.asarray(x)
        t0 = time.perf_counter()
        jax.block_until_ready(vg(xj))
        peers["jax.jit"] = time.perf_counter() - t0
        t_jax, _ = best(args.repeat, lambda: jax.block_until_ready(vg(xj)))
        rows.append(("jax.jit(value_and_grad)", t_jax))
    except ImportError:
        print("jax: not importable, skipped")
    try:
        import torch

        def f(v):
            v = v.detach().requires_grad_(True)
            y = torch.sum(torch.sin(v) * torch.exp(-v * v) + torch.log1p(v * v))
            (g,) = torch.autograd.grad(y, v)
            return y, g
        tf = torch.compile(f)
        xt = torch.from_numpy(x)
        t0 = time.perf_counter()
        tf(xt)
        peers["torch.compile"] = time.perf_counter() - t0
        t_torch, _ = best(args.repeat, lambda: tf(xt))
        rows.append(("torch.compile", t_torch))
    except Exception as e:       # not importable, or no C++ compiler for inductor
        print(f"torch.compile: skipped ({type(e).__name__}: {e})")

    lse_rows = logsumexp_rows(x, args.repeat)

    print(f"\n{'':28s} {'ms':>9s} {'ns/elem':>8s} {'vs fused':>9s}")
    for name, t in rows:
        print(f"{name:28s} {t * 1e3:9.1f} {t / n * 1e9:8.2f} {t / t_fused:8.2f}x")
    print(f"\nlogsumexp(x), n = {n:,} float64")
    print(f"{'':46s} {'ms':>9s} {'ns/elem':>8s} {'peer/adcli':>10s}")
    for name, t, ratio in lse_rows:
        print(f"{name:46s} {t * 1e3:9.1f} {t / n * 1e9:8.2f} "
              + (f"{ratio:9.2f}x" if ratio is not None else ""))
    print(f"\nvalue and gradient of x*(x+y) at {n:,} batched points (fused): "
          f"{t_points * 1e3:.1f} ms, {t_points / n * 1e9:.2f} ns per point")
    print(f"first call, empty kernel cache: {first * 1e3:.0f} ms "
          f"(compilation about {compile_s * 1e3:.0f} ms)")
    print(f"a new process loading its kernels from the disk cache: {cached * 1e3:.1f} ms")
    for name, t in peers.items():
        print(f"{name} first call (compilation): {t:.2f} s")


def logsumexp_rows(x, repeat):
    """(name, seconds, the peer's time over adcli's fused one, or None) of logsumexp(x)."""
    from adcli import api, kernels
    source = "logsumexp(x)"

    def value():
        return float(api.evaluate(api.trace(source, {"x": x})).value)

    def gradient():
        return api.gradient(api.trace(source, {"x": x})).grad["x"]
    chain = "logsumexp(sin(x)*3 + x*x)"

    def chain_value():
        return float(api.evaluate(api.trace(chain, {"x": x})).value)
    value(), gradient(), chain_value()        # kernels compiled (or found in the cache)
    t_chain, _ = best(repeat, chain_value)
    t_value, v = best(repeat, value)
    t_grad, g = best(repeat, gradient)
    kernels.configure(enabled=False)
    t_value_np, v_np = best(max(1, repeat // 2), value)
    t_grad_np, g_np = best(max(1, repeat // 2), gradient)
    t_chain_np, _ = best(max(1, repeat // 2), chain_value)
    kernels.configure(enabled=True)
    rows = [("adcli value (fused)", t_value, None), ("adcli value (numpy path)", t_value_np,
                                                     t_value_np / t_value),
            ("adcli value+gradient (fused)", t_grad, None),
            ("adcli value+gradient (numpy path)", t_grad_np, t_grad_np / t_grad),
            ("adcli " + chain + " (fused)", t_chain, None),
            ("adcli " + chain + " (numpy path)", t_chain_np, t_chain_np / t_chain)]
    print(f"logsumexp fused vs numpy: value {v!r} vs {v_np!r}, gradient max rel diff "
          f"{float(np.max(np.abs(g - g_np)) / np.max(np.abs(g_np))):.1e}")
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp
        xj = jnp.asarray(x)
        f, df = jax.jit(logsumexp), jax.jit(jax.grad(logsumexp))
        jax.block_until_ready(f(xj)), jax.block_until_ready(df(xj))
        t_f, _ = best(repeat, lambda: jax.block_until_ready(f(xj)))
        t_df, _ = best(repeat, lambda: jax.block_until_ready(df(xj)))
        fc = jax.jit(lambda v: logsumexp(jnp.sin(v) * 3 + v * v))
        jax.block_until_ready(fc(xj))
        t_fc, _ = best(repeat, lambda: jax.block_until_ready(fc(xj)))
        rows += [("jax.jit(logsumexp)", t_f, t_f / t_value),
                 ("jax.jit(jax.grad(logsumexp))", t_df, t_df / t_grad),
                 ("jax.jit(" + chain + ")", t_fc, t_fc / t_chain)]
    except ImportError:
        print("jax: not importable, skipped")
    return rows


if __name__ == "__main__":
    main()
