"""A traced program evaluated at new points: no parsing, no tracing.

    python benchmarks/bench_reevaluate.py [--points 1000] [--repeat 3]

samples/two_layer_relu.ad (a 4-8-1 ReLU network with a mean squared error on 32 points) is
traced once. Then its loss, and its gradient with respect to W1, are computed at --points
new values of W1 (seeded normal draws; the other inputs keep the traced values) three ways:

* retrace   api.trace_script + api.output_value (or api.gradient) per point: what one
            `adcli eval` per point does, minus the process start;
* program   Traced.at per point: the recorded program (or its VJP program, made once by
            Traced.gradient_program) evaluated by the evaluator at the new inputs;
* batch     one Traced.at with batch=N: all points through one sweep with the batch axis.

Each figure is the best of --repeat runs, as seconds for all points and microseconds per
point, with ratios against retrace from the same run. The three ways must agree (the
largest difference is printed; the batch's is up to rounding, as its matmuls are batched).
Nothing here asserts on times.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from adcli import api

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "two_layer_relu.ad"


def best(f, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.points
    source = SAMPLE.read_text()
    traced = api.trace_script(source, {}, filename=str(SAMPLE))
    values = {name: traced.graph.value(node) for name, node in traced.inputs.items()}
    rng = np.random.default_rng(0)
    points = 0.5 * rng.standard_normal((n,) + values["W1"].shape)
    out = traced.output
    grad = traced.gradient_program(["W1"])[0]

    def retrace(gradient):
        res = []
        for w in points:
            t = api.trace_script(source, {**values, "W1": w}, filename=str(SAMPLE))
            res.append(api.gradient(t, ["W1"]).grad["W1"] if gradient else api.output_value(t))
        return np.array(res)

    def program(node):
        return np.array([traced.at({"W1": w}, outputs=[node])[node.id] for w in points])

    def batch(node):
        return traced.at({"W1": points}, outputs=[node], batch=n)[node.id]

    print(f"samples/two_layer_relu.ad at {n} values of W1 (best of {args.repeat})")
    print(f"{'':10} {'way':8} {'seconds':>9} {'µs/point':>10} {'vs retrace':>11} {'max diff':>10}")
    for what, node in (("value", out), ("gradient", grad)):
        t_re, ref = best(lambda: retrace(what == "gradient"), args.repeat)
        for way, f in (("retrace", None), ("program", program), ("batch", batch)):
            if f is None:
                t, got = t_re, ref
            else:
                t, got = best(lambda: f(node), args.repeat)
            diff = float(np.max(np.abs(np.asarray(got).reshape(ref.shape) - ref)))
            print(f"{what:10} {way:8} {t:9.4f} {t / n * 1e6:10.1f} {t_re / t:10.1f}x {diff:10.1e}")


if __name__ == "__main__":
    main()
