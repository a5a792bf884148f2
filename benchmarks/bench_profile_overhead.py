"""The cost of profiling: `adcli profile`'s totals against the same work unprofiled.

    python benchmarks/bench_profile_overhead.py [--repeat 5] [--rounds 5]
                                                [--loop 2000] [--vector-loop 400]
                                                [--elements 1000000]

The work is what one timed run of `adcli profile` does: trace the source (parse,
interpret, record the graph), evaluate it, and walk it back from the value to the inputs
(`autodiff.vjp`, which computes the values it reads), with Python's GC paused as in
`adcli grad`. Profiled, the graph is traced with the timing hook (`hooks=`) and its value
computed by the evaluator before the walk. Three cases:

  scalar loop   the issue-3 loop `y = y - 0.01*sin(y)*y + 0.001*y*y`, --loop iterations
                in a .ad script (7 nodes an iteration: 14,000 nodes for 2,000);
  vector loop   `y = y - 0.01*sin(y)*y` on a vector of 10,000 elements, --vector-loop
                iterations (4 nodes an iteration: 1,600 for 400) plus a mean;
  vectorised    one expression on --elements elements (1e6): few nodes, big arrays.

Each round runs the work --repeat times unprofiled (timed around trace + vjp, the best
of the runs and their mean) and then `adcli.profile.profile(..., repeat)` once, whose
table total (the sum of its rows, overhead rows included) over --repeat is the profiled
time of one run. The rounds interleave the two, so machine noise hits both alike; the
figures reported are medians over rounds. The target (the issue) is a profiled total
within 20% of the unprofiled time on graphs of more than 1,000 nodes.

Reported too: the whole `profile()` call per run (the warm-up, the aggregation of the
records and dropping each graph included) — what a user waits for, not what the table
claims. Nothing here asserts on times; it prints figures and ratios measured in this run.
(The cost of the hooks when profiling is off is measured by running
benchmarks/bench_script_loop.py before and after: the evaluator checks its hooks once per
op, the walks their `mark` once per node.)
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

LOOP = """input x = 0.5
y = x
for i in range(N):
    y = y - 0.01 * sin(y) * y + 0.001 * y * y
return y
"""

VECTOR_LOOP = """input x = linspace(0.1, 2, 10000)
y = x
for i in range(N):
    y = y - 0.01 * sin(y) * y
return mean(y)
"""

VECTORISED = "sum(exp(-x * x) * sin(3 * x) + log1p(x * x) / (1 + x * x) - tanh(x) * x)"


def cases(args):
    import numpy as np

    from adcli import api
    from adcli.graph import Limits
    limits = Limits(max_nodes=5_000_000)
    loop = LOOP.replace("range(N)", f"range({args.loop})")
    vloop = VECTOR_LOOP.replace("range(N)", f"range({args.vector_loop})")
    x = np.linspace(-2.0, 2.0, args.elements)
    return [
        (f"scalar loop, {args.loop:,} iterations",
         lambda hooks=(): api.trace_script(loop, {}, limits=limits, filename="loop.ad",
                                           hooks=hooks)),
        (f"vector loop (10,000 elements), {args.vector_loop:,} iterations",
         lambda hooks=(): api.trace_script(vloop, {}, limits=limits, filename="vloop.ad",
                                           hooks=hooks)),
        (f"vectorised expression, {args.elements:,} elements",
         lambda hooks=(): api.trace(VECTORISED, {"x": x}, limits=limits, hooks=hooks)),
    ]


def unprofiled(make, repeat):
    """Nanoseconds of each of `repeat` runs of trace + vjp, GC paused while timed."""
    from adcli import autodiff
    times = []
    for _ in range(repeat):
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            traced = make()
            autodiff.vjp(traced.graph, traced.output, list(traced.inputs.values()))
            times.append(time.perf_counter_ns() - t0)
        finally:
            gc.enable()
        del traced
        gc.collect()
    return times


def profiled(make, repeat):
    """(the table's total per run, the profile() call's wall time per run), in ns."""
    from adcli import profile
    t0 = time.perf_counter_ns()
    p = profile.profile(make, None, repeat)
    wall = time.perf_counter_ns() - t0
    return p.total_ns / repeat, wall / repeat, p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of both")
    ap.add_argument("--loop", type=int, default=2000, help="scalar loop iterations")
    ap.add_argument("--vector-loop", type=int, default=400, help="vector loop iterations")
    ap.add_argument("--elements", type=int, default=1_000_000, help="vectorised case size")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} CPUs")
    print(f"{args.rounds} interleaved rounds; each: {args.repeat} unprofiled runs, then "
          f"profile(repeat={args.repeat}); medians over rounds\n")
    ms = lambda ns: f"{ns / 1e6:9.2f} ms"                         # noqa: E731
    for label, make in cases(args):
        traced = make()                                          # warm-up, and the size
        nodes = len(traced.graph.nodes)
        del traced
        gc.collect()
        unprofiled(make, 1)
        best, mean, total, wall = [], [], [], []
        for _ in range(args.rounds):
            times = unprofiled(make, args.repeat)
            best.append(min(times))
            mean.append(statistics.mean(times))
            per_run, per_run_wall, p = profiled(make, args.repeat)
            total.append(per_run)
            wall.append(per_run_wall)
        u_best, u_mean = statistics.median(best), statistics.median(mean)
        t, w = statistics.median(total), statistics.median(wall)
        over = {r.op: r.self_ns / p.total_ns for r in p.rows if r.overhead}
        ops = sum(r.self_ns for r in p.rows if not r.overhead) / p.total_ns
        print(f"== {label}: {nodes:,} nodes")
        print(f"  unprofiled trace + vjp, per run   best {ms(u_best)}   mean {ms(u_mean)}")
        print(f"  profiled: the table's total / run      {ms(t)}")
        print(f"  profiled: the profile() call / run     {ms(w)}  (warm-up, aggregation, "
              "freeing graphs included)")
        ratio = t / u_mean
        verdict = "met" if ratio <= 1.2 else "MISSED"
        if nodes <= 1000:
            verdict += "; this graph has 1,000 nodes or fewer, outside the target's scope"
        print(f"  ratio table total / unprofiled mean  = {ratio:.3f}  (target <= 1.20: {verdict})")
        print(f"  ratio table total / unprofiled best  = {t / u_best:.3f}")
        print(f"  shares of the last table: ops {100 * ops:.1f}%, "
              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in over.items()))
        print()


if __name__ == "__main__":
    main()
