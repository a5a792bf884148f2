"""gradcheck of a 1,000-element input: adcli against a plain loop of central differences
and against torch.autograd.gradcheck.

    python benchmarks/bench_gradcheck.py [--n 1000] [--repeat 5]

Cases, each a scalar function of x = linspace(-2, 2, n):

* `sum(sin(x)*exp(-x*x))`, an expression: adcli's full check (every entry, central
  differences at three steps with Richardson extrapolation, one-sided slopes, error
  estimates), the same with --method complex, and with --fast (random projections). The
  full check evaluates all 1,000 columns at once on the evaluator's batch axis (the
  elementwise part once, on the diagonal); "one column at a time" times the path taken
  without batching rules, one evaluation of the program per column and step;
* the same function in a script whose `mysin` has a `backward` rule (samples/sine.ad's
  MySineFunction): the rule is checked against its body as well.

Baselines, measured in the same run on the same function and point:

* numpy loop: a plain loop of central differences, f(x + h e_k) - f(x - h e_k) over 2h for
  every k (2n evaluations of the numpy function, h = 1e-6), compared with the gradient
  written by hand in numpy; the least any full finite-difference check can do;
* torch.autograd.gradcheck (float64, its defaults: eps 1e-6, atol 1e-5, rtol 1e-3, full
  Jacobian; and fast_mode=True), when PyTorch is installed; skipped otherwise.

adcli is timed in-process (gradcheck.check, as the CLI calls it, without the process start:
see bench_cold_start.py for that), the minimum and the median of --repeat runs after one
warm-up. Reported: the times, the function evaluations where known, and the ratios to the
baselines. Nothing here asserts on times.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adcli import check as gradcheck  # noqa: E402
from adcli.check.function import Function  # noqa: E402

EXPR = "sum(sin(x)*exp(-x*x))"
SCRIPT = """input x
def mysin(x):
    return sin(x)
backward mysin(x, out, g):
    return g * cos(x)
return sum(mysin(x)*exp(-x*x))
"""


def timed(f, repeat):
    f()                                   # warm-up (imports, parser tables, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def numpy_loop(x, h=1e-6):
    """Central differences in a plain loop, compared with the hand-written gradient."""
    def f(x):
        return np.sum(np.sin(x) * np.exp(-x * x))
    analytic = (np.cos(x) - 2 * x * np.sin(x)) * np.exp(-x * x)
    numeric = np.empty_like(x)
    xp = x.copy()
    for k in range(x.size):
        xp[k] = x[k] + h
        fp = f(xp)
        xp[k] = x[k] - h
        fm = f(xp)
        xp[k] = x[k]
        numeric[k] = (fp - fm) / (2 * h)
    return bool(np.allclose(analytic, numeric, rtol=1e-3, atol=1e-5))


def torch_cases(x):
    try:
        import torch
    except ImportError:
        return None
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)

    def f(t):
        return torch.sum(torch.sin(t) * torch.exp(-t * t))
    return {
        "torch.autograd.gradcheck": lambda: torch.autograd.gradcheck(f, (t,)),
        "torch.autograd.gradcheck fast_mode": lambda: torch.autograd.gradcheck(f, (t,), fast_mode=True),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="elements of the input")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each case")
    args = ap.parse_args()
    x = np.linspace(-2, 2, args.n)
    vals = {"x": x}
    evaluations = {}

    def adcli(source, script=False, **kw):
        def run():
            report = gradcheck.check(source, vals, script=script, filename="bench.ad" if script else None, **kw)
            assert report.verdict == "pass", report.message
            return report
        return run

    def one_at_a_time():
        columns = Function.columns
        Function.columns = lambda *a, **k: None
        try:
            return adcli(EXPR)()
        finally:
            Function.columns = columns

    cases = {
        "adcli gradcheck": adcli(EXPR),
        "adcli gradcheck, one column at a time": one_at_a_time,
        "adcli gradcheck --method complex": adcli(EXPR, method="complex"),
        "adcli gradcheck --fast": adcli(EXPR, fast=True),
        "adcli gradcheck, backward rule": adcli(SCRIPT, script=True),
        "numpy loop of central differences": lambda: numpy_loop(x),
    }
    evaluations["numpy loop of central differences"] = 2 * args.n
    theirs = torch_cases(x)
    if theirs is None:
        print("torch is not installed: torch.autograd.gradcheck skipped")
    else:
        import torch
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        cases.update(theirs)

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}; input of {args.n} elements; "
          f"{args.repeat} timed runs after a warm-up\n")
    results = {}
    for name, f in cases.items():
        best, med, out = timed(f, args.repeat)
        results[name] = (best, med)
        if isinstance(out, gradcheck.Report):
            evaluations[name] = out.evaluations
    evaluations.setdefault("torch.autograd.gradcheck", f"{2 * args.n} + 1 backward")
    print(f"{'case':<42} {'min ms':>8} {'median ms':>10}  evaluations of f")
    for name, (best, med) in results.items():
        print(f"{name:<42} {1e3 * best:>8.1f} {1e3 * med:>10.1f}  {evaluations.get(name, '')}")
    print("\n(an adcli evaluation with all columns at once counts once; the full check needs 6 "
          "per column: x +- h, h/2, h/4)")
    base = results["numpy loop of central differences"][1]
    print("\nratios of medians (lower is faster)")
    for name, (best, med) in results.items():
        if name.startswith("adcli"):
            line = f"  {name:<40} {med / base:>6.2f}x the numpy loop"
            if theirs is not None:
                line += f", {med / results['torch.autograd.gradcheck'][1]:.2f}x torch.autograd.gradcheck"
            print(line)
    if theirs is not None:
        t = results["torch.autograd.gradcheck"][1]
        print(f"  {'torch.autograd.gradcheck':<40} {t / base:>6.2f}x the numpy loop")


if __name__ == "__main__":
    main()
