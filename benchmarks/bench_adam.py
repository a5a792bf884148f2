"""Training in a script: a hand-written Adam loop, evaluated and differentiated through.

    python benchmarks/bench_adam.py [--steps 100,250,500] [--repeat 1]

The script (written to a temporary folder as adam_N.ad) trains a 16-64-1 tanh network on
256 seeded random points for N Adam steps, each step taking the gradient of the loss with
respect to both weight matrices with the script's own grad(f, x):

    for t in range(1, N + 1):
        g1 = grad(loss_w1, W1, W2)
        g2 = grad(loss_w2, W2, W1)
        m1 = 0.9 * m1 + 0.1 * g1
        ...
        W1 = W1 - 0.01 * (m1 / (1 - 0.9 ** t)) / (sqrt(v1 / (1 - 0.999 ** t)) + 1e-8)

Whole processes, stdout discarded: `adcli eval adam_N.ad` (the loss after training: no
earlier step is needed once the next has read it, so the memory should not grow with N)
and `adcli grad adam_N.ad --wrt W2` (the derivative of the final loss with respect to the
initial W2, through all the training: the forward values the reverse walk reads stay
until it has read them, so the memory grows linearly with N). Printed: wall seconds and
peak RSS per run, `python -c "import numpy"` measured in the same run as the baseline,
and the memory per step (the slope between the smallest and largest N). Nothing here
asserts on times or sizes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import adcli_executable, measure

SCRIPT = """input X = randn(256, 16)
input W1 = 0.3 * randn(16, 64)
input W2 = 0.3 * randn(64, 1)
y = sin(sum(X, axis=1, keepdims=True))

def loss_w1(W1, W2):
    return mean((tanh(X @ W1) @ W2 - y) ** 2)

def loss_w2(W2, W1):
    return loss_w1(W1, W2)

m1 = zeros((16, 64))
v1 = zeros((16, 64))
m2 = zeros((64, 1))
v2 = zeros((64, 1))
for t in range(1, STEPS + 1):
    g1 = grad(loss_w1, W1, W2)
    g2 = grad(loss_w2, W2, W1)
    m1 = 0.9 * m1 + 0.1 * g1
    v1 = 0.999 * v1 + 0.001 * g1 * g1
    m2 = 0.9 * m2 + 0.1 * g2
    v2 = 0.999 * v2 + 0.001 * g2 * g2
    W1 = W1 - 0.01 * (m1 / (1 - 0.9 ** t)) / (sqrt(v1 / (1 - 0.999 ** t)) + 1e-8)
    W2 = W2 - 0.01 * (m2 / (1 - 0.9 ** t)) / (sqrt(v2 / (1 - 0.999 ** t)) + 1e-8)
return loss_w1(W1, W2)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="100,250,500")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    exe = adcli_executable()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        base = min((measure([sys.executable, "-c", "import numpy"], tmp, env)
                    for _ in range(3)), key=lambda m: m[0])
        print(f"baseline python -c 'import numpy': {base[0]:.3f} s, {base[1] / 2**20:.1f} MiB")
        print(f"{'command':28} {'steps':>6} {'seconds':>8} {'peak MiB':>9} {'above numpy':>12}")
        for cmd in (["eval"], ["grad", "--wrt", "W2"]):
            peaks = []
            for n in steps:
                path = Path(tmp) / f"adam_{n}.ad"
                path.write_text(SCRIPT.replace("STEPS", str(n)))
                runs = [measure([exe, cmd[0], str(path), *cmd[1:], "--max-nodes", "10000000"],
                                tmp, env) for _ in range(args.repeat)]
                dt, rss, code, err = min(runs, key=lambda m: m[0])
                if code:
                    print(f"adcli {' '.join(cmd)} failed ({code}): {err.strip()[-300:]}")
                    break
                peaks.append((n, rss))
                label = "adcli " + " ".join(cmd)
                print(f"{label:28} {n:6d} {dt:8.2f} {rss / 2**20:9.1f} {(rss - base[1]) / 2**20:12.1f}")
            if len(peaks) > 1:
                (n0, r0), (n1, r1) = peaks[0], peaks[-1]
                print(f"  memory per step ({' '.join(cmd)}): {(r1 - r0) / (n1 - n0) / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
