"""adcli minimize on Rosenbrock's function against scipy.optimize, in the same run.

    python benchmarks/bench_minimize.py [--dims 2,100] [--repeat 3]

    f(x) = sum(100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2),  from x = (-1.2, 1, -1.2, 1, ...)

For each dimension, every row minimises f to a gradient norm of 1e-6 (or its method's
own stop) and prints the iterations, the evaluations of f (with its gradient), the best
wall time of --repeat runs and its ratio to adcli's row of the same method:

* adcli newton, lbfgs, trust: `adcli.minimize.minimize` from the source text, the trace
  included (the same work as `adcli minimize`, without the process start);
* scipy with finite-difference gradients (forward differences, n+1 evaluations
  of f per gradient), f written in numpy;
* scipy with jax's gradients: jax.jit(jax.grad(f)), and for Newton-CG and trust-krylov
  the Hessian-vector product jax.jit(jvp of grad), in float64; their compile time is
  printed apart (warmed up before timing);
* scipy with scipy.optimize.rosen_der / rosen_hess_prod (hand-written numpy): the floor.

Needs scipy, and jax for its rows (skipped when it is missing). Nothing here asserts on
times.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

TOL = 1e-6
SOURCE = "sum(100*(x[1:]-x[:-1]**2)**2 + (1-x[:-1])**2)"
SCIPY = {"lbfgs": "L-BFGS-B", "trust": "trust-krylov", "newton": "Newton-CG"}


def start(n):
    x = np.empty(n)
    x[0::2], x[1::2] = -1.2, 1.0
    return x


def rosen(x):
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def best(repeat, f):
    """(min seconds, last result) of f() over `repeat` runs."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t0)
    return min(times), result


def adcli_run(n, method):
    from adcli import minimize as minimizing, sources
    source = sources.read(SOURCE, [f"x={start(n).tolist()}"], np.float64)
    out = minimizing.minimize(minimizing.tracer_at(source), source.values, label="rosenbrock",
                              method=method, steps=10_000, tol=TOL)
    return out.steps, out.evaluations, out.converged, np.asarray(out.x["x"])



def scipy_run(n, method, grad, hessp):
    """scipy.optimize.minimize with these gradient and Hessian-product functions:
    (iterations, calls of f, calls of the gradient, converged, x)."""
    from scipy import optimize
    calls = {"f": 0, "grad": 0}

    def f(x):
        calls["f"] += 1
        return rosen(x)

    def g(x):
        calls["grad"] += 1
        return grad(x, f)
    options = {"maxiter": 10_000}
    if method == "Newton-CG":
        options["xtol"] = 1e-10
    else:
        options["gtol"] = TOL
    if method == "L-BFGS-B":
        options["ftol"] = 0.0
    kwargs = {"hessp": (lambda x, v: hessp(x, v, f))} if method != "L-BFGS-B" else {}
    res = optimize.minimize(f, start(n), jac=g, method=method, options=options, **kwargs)
    return res.nit, calls["f"], calls["grad"], np.asarray(res.x)


def jax_functions():
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def f(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    grad = jax.jit(jax.grad(f))
    hvp = jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])
    return (lambda x: np.asarray(grad(x)), lambda x, v: np.asarray(hvp(x, v)), jax)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="2,100")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from scipy import optimize
    jx = jax_functions()
    sources = [("finite differences", _fd_grad, _fd_hessp)]
    if jx is not None:
        sources.append(("jax.jit(jax.grad)", lambda x, f: jx[0](x), lambda x, v, f: jx[1](x, v)))
    sources.append(("rosen_der (numpy)", lambda x, f: optimize.rosen_der(x),
                    lambda x, v, f: optimize.rosen_hess_prod(x, v)))
    t0 = time.perf_counter()
    adcli_run(2, "newton")
    print(f"adcli's first run (imports, the grammar's parser built): "
          f"{time.perf_counter() - t0:.3f} s, not counted below")
    for n in [int(d) for d in args.dims.split(",")]:
        print(f"\nRosenbrock, n = {n}, from (-1.2, 1, ...), gradient norm {TOL:g}")
        if jx is not None:
            t0 = time.perf_counter()
            jx[0](start(n)), jx[1](start(n), start(n))
            print(f"  (jax {jx[2].__version__}: jit compile of grad and hvp "
                  f"{time.perf_counter() - t0:.3f} s, not counted below)")
        print(f"  {'method':<7} {'gradients by':<38} {'iters':>6} {'f calls':>8} "
              f"{'grad calls':>10} {'|x - 1|max':>10} {'seconds':>9} {'vs adcli':>9}")
        for method, name in SCIPY.items():
            t_adcli, (it, ev, ok, x) = best(args.repeat, lambda: adcli_run(n, method))
            rows = [(f"adcli {method} (exact, 1 trace)", t_adcli, it, ev, "-", x)]
            for label, grad, hessp in sources:
                t, (it, fc, gc, x) = best(args.repeat,
                                          lambda: scipy_run(n, name, grad, hessp))
                rows.append((f"scipy {name}, {label}", t, it, fc, gc, x))
            for label, t, it, fc, gc, x in rows:
                print(f"  {method:<7} {label:<38} {it:>6} {fc:>8} {gc:>10} "
                      f"{np.max(np.abs(x - 1)):>10.1e} {t:>9.4f} {t / t_adcli:>8.2f}x")


def _fd_grad(x, f):
    """The gradient by forward differences (scipy's '2-point': n + 1 calls of f)."""
    from scipy import optimize
    return optimize.approx_fprime(x, f, 1.5e-8)


def _fd_hessp(x, v, f):
    """H v by central differences of the finite-difference gradient: what is left to a
    user with f alone (Newton-CG and trust-krylov need a Hessian product)."""
    h = 1e-4 / max(1.0, float(np.linalg.norm(v)))
    return (_fd_grad(x + h * v, f) - _fd_grad(x - h * v, f)) / (2 * h)


if __name__ == "__main__":
    main()
