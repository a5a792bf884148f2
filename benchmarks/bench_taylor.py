"""`adcli taylor --order 20` of a 10-op expression against repeated forward mode
(`grad --order 20`: adcli.derivatives.higher_grad, reverse once then forward mode 19 times)
and against jax.experimental.jet (when jax is importable), in the same run.

    PYTHONPATH=. python benchmarks/bench_taylor.py [--order 20] [--repeat 5]

Prints the best time of each, the ratios against adcli taylor, and the largest difference
of the derivatives found (relative to the largest).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from adcli import api, derivatives, taylor

EXPR = "sin(x)*exp(x) + log(1 + x**2)/(1 + tanh(x)) - sqrt(x)*cos(x)"   # 13 ops
X0 = 0.7


def best(f, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def adcli_taylor(order):
    traced = api.load(EXPR, [f"x={X0}"])
    return taylor.coefficients(traced, order).extra["derivatives"]


def adcli_grad(order):
    """The order-th derivative alone, as `grad --order K` computes it (traced afresh: each
    call records its derivative programs in the graph)."""
    traced = api.load(EXPR, [f"x={X0}"])
    return float(np.asarray(derivatives.higher_grad(traced, ["x"], order).grad["x"]))


def jax_jet(order):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.experimental.jet import jet

    def f(x):
        return (jnp.sin(x) * jnp.exp(x) + jnp.log(1 + x ** 2) / (1 + jnp.tanh(x))
                - jnp.sqrt(x) * jnp.cos(x))

    # jet's series are derivatives: x(t) = x0 + t, so the first term is 1, the others 0
    terms = [jnp.asarray(1.0)] + [jnp.asarray(0.0)] * (order - 1)
    run = lambda: jet(f, (jnp.asarray(X0),), (terms,))  # noqa: E731
    jitted = jax.jit(lambda x0, *t: jet(f, (x0,), (list(t),)))
    compiled = lambda: jax.block_until_ready(jitted(jnp.asarray(X0), *terms))  # noqa: E731
    return run, compiled


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--order", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--grad-repeat", type=int, default=1)
    a = ap.parse_args()
    K = a.order
    print(f"expression: {EXPR} at x = {X0}, order {K}")
    t_taylor, d = best(lambda: adcli_taylor(K), a.repeat)
    print(f"adcli taylor --order {K}:            {t_taylor * 1e3:10.2f} ms   (all {K + 1} coefficients)")
    try:
        t_grad, g = best(lambda: adcli_grad(K), a.grad_repeat)
        print(f"adcli grad --order {K} (higher_grad): {t_grad * 1e3:10.2f} ms   "
              f"({t_grad / t_taylor:.1f}x taylor; the {K}-th derivative alone)")
        print(f"  relative difference of d{K}/dx{K}: {abs(g - d[K]) / abs(d[K]):.2e}")
    except Exception as e:      # a limit of nested forward mode: the graph grows per order
        print(f"adcli grad --order {K}: {type(e).__name__}: {e}")
        for k in (12, 10, 8):
            try:
                t_grad, g = best(lambda: adcli_grad(k), a.grad_repeat)
            except Exception:
                continue
            print(f"adcli grad --order {k} (the highest that fits): {t_grad * 1e3:10.2f} ms   "
                  f"({t_grad / t_taylor:.1f}x taylor --order {K}); relative difference of "
                  f"d{k}/dx{k}: {abs(g - d[k]) / abs(d[k]):.2e}")
            break
    try:
        run, compiled = jax_jet(K)
    except ImportError:
        print("jax is not installed: no jet comparison")
        return
    _, primal_series = run()
    t_jet, _ = best(run, a.repeat)
    t0 = time.perf_counter()
    compiled()
    t_compile = time.perf_counter() - t0
    t_jit, (p, s) = best(compiled, a.repeat)
    jd = np.array([float(p)] + [float(v) for v in s])
    print(f"jax jet (op by op):                {t_jet * 1e3:10.2f} ms   ({t_jet / t_taylor:.2f}x taylor)")
    print(f"jax jit(jet) (compiled once, {t_compile * 1e3:.0f} ms): {t_jit * 1e3:10.3f} ms   "
          f"({t_jit / t_taylor:.3f}x taylor)")
    scale = np.max(np.abs(jd))
    print(f"  largest difference of the derivatives, adcli vs jet: "
          f"{np.max(np.abs(jd - d)) / scale:.2e} of the largest ({scale:.3g})")
    for k in (1, 5, 10, K):
        if k <= K:
            print(f"  f^({k}) adcli {d[k]: .15e}  jet {jd[k]: .15e}  c_{k} = {d[k] / math.factorial(k):.6e}")


if __name__ == "__main__":
    main()
