"""Peak memory of a large gradient, against its input, next to numpy by hand and peers.

    python benchmarks/bench_memory.py [--n 1e7]

The gradient of sum(sin(x)*exp(-x*x) + log1p(x*x)) at n float64 numbers (seeded normal,
saved to a .npy file). Each way runs in its own process, which imports what it needs,
notes its peak resident memory (ru_maxrss), loads x, computes the gradient and notes the
peak again: the difference, over the 8n bytes of x, is what the computation held at its
peak, the input itself and the gradient included (so 2x is the least possible).

* adcli        api.trace + api.gradient (a large elementwise sum is differentiated by
               chunks through the evaluator's batch axis)
* adcli walk   the same with chunking switched off (adcli.chunks.LARGE raised): the
               reverse walk over whole arrays, keeping the forward values its rules read
* numpy        by hand, sharing the intermediates as a person would write it
* torch        torch.autograd (CPU), when installed
* jax.jit      jax.jit(jax.grad(f)) in float64, when installed

The gradients are compared with numpy's. Nothing here asserts on sizes; it prints them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

WAYS = {
    "adcli": """
from adcli import api
t = api.trace(EXPR, {"x": x})
g = api.gradient(t).grad["x"]
""",
    "adcli walk": """
from adcli import api, chunks
chunks.LARGE = 1 << 62
t = api.trace(EXPR, {"x": x})
g = api.gradient(t).grad["x"]
""",
    "numpy": """
xx = x * x
s, c, e = np.sin(x), np.cos(x), np.exp(-xx)
g = e * (c - 2 * x * s) + 2 * x / (1 + xx)
""",
    "torch": """
import torch
xt = torch.from_numpy(x).requires_grad_()
f = torch.sum(torch.sin(xt) * torch.exp(-xt * xt) + torch.log1p(xt * xt))
f.backward()
g = xt.grad.numpy()
""",
    "jax.jit": """
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
f = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x) * jnp.exp(-x * x) + jnp.log1p(x * x))))
xj = jnp.asarray(x)
del x
g = np.asarray(f(xj))
""",
}
IMPORTS = {"torch": "import torch", "jax.jit": "import jax, jax.numpy"}

CHILD = """
import resource, sys, numpy as np
IMPORTS
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = peak()
x = np.load(sys.argv[1])
nbytes = x.nbytes
EXPR = "sum(sin(x)*exp(-x*x)+log1p(x*x))"
WAY
after = peak()
np.save(sys.argv[2], g)
print((after - before) / nbytes)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e7)
    args = ap.parse_args()
    import numpy as np
    n = int(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        # The parent holds no large array while children run: a child's peak RSS starts
        # at its parent's high-water mark on Linux, so x is made in a child of its own.
        xpath = os.path.join(tmp, "x.npy")
        subprocess.run([sys.executable, "-c", "import numpy as np, sys; np.save(sys.argv[1], "
                        "np.random.default_rng(0).standard_normal(int(sys.argv[2])))", xpath,
                        str(n)], check=True)
        held = {}
        for way, code in WAYS.items():
            child = CHILD.replace("IMPORTS", IMPORTS.get(way, "")).replace("WAY", code)
            gpath = os.path.join(tmp, f"g {way}.npy")
            r = subprocess.run([sys.executable, "-c", child, xpath, gpath], capture_output=True,
                               text=True)
            if r.returncode:
                held[way] = (r.stderr.strip().splitlines() or ["?"])[-1]
            else:
                held[way] = float(r.stdout.split()[-1])
        x = np.load(xpath)
        xx = x * x
        ref = np.exp(-xx) * (np.cos(x) - 2 * x * np.sin(x)) + 2 * x / (1 + xx)
        print(f"gradient of sum(sin(x)*exp(-x*x)+log1p(x*x)) at n = {n:,} float64 "
              f"({8 * n / 1e6:.0f} MB)")
        print(f"{'way':12} {'peak held / input':>18} {'max rel diff':>13}")
        for way, h in held.items():
            if isinstance(h, str):
                print(f"{way:12} (skipped: {h[:70]})")
                continue
            g = np.load(os.path.join(tmp, f"g {way}.npy"))
            diff = float(np.max(np.abs(g - ref)) / np.max(np.abs(ref)))
            print(f"{way:12} {h:17.2f}x {diff:13.1e}")

if __name__ == "__main__":
    main()
