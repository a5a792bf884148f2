"""logsumexp and softmax over every element of a large array, as two generated loops.

numpy's stable logsumexp (ops._lse) takes four passes over memory (the max, x - m, its exp,
the sum) and softmax five. Here one loop reads x once by blocks of BLOCK elements: each
block's max m_b (a NaN noted apart: `v > m ? v : m` never picks one) and, while the block
is in cache, s_b = sum of exp(x - m_b) in double (a block of -inf only has m_b = -inf and
s_b = 0). The blocks combine as a logsumexp of their own: with M = max m_b,
S = sum s_b exp(m_b - M) = sum exp(x - M), and logsumexp = log S + M. The second loop is
softmax times a number: c exp(x - M) / S, elementwise.

The special values follow numpy's rule exactly: a NaN anywhere gives NaN; else a +inf
gives +inf and all -inf gives -inf; softmax is NaN everywhere in those three cases (x - M
is NaN at the max), and otherwise exp(x - M) / S, 0 at -inf.

A gradient follows its value: the reverse walk's softmax of x comes right after the
logsumexp of the same x. So the last logsumexp keeps (M, S) for the array object it read
(held weakly, with its data address), and the next softmax of that very array takes them
instead of reading x once more; any other call computes its own.
"""
from __future__ import annotations

import ctypes
import math
import weakref

import numpy as np

from . import codegen, settings

BLOCK = 512
_last = None        # (weak reference to an array, its data address, (M, S)): see above

LSE = """typedef {T} T;
#define ADCLI_INF ((T)INFINITY)
#define ADCLI_NAN ((T)NAN)

void adcli_kernel(long start, long stop, const T *restrict x, T *restrict top,
                  double *restrict total)
{{
  for (long b = start; b < stop; b += {BLOCK}) {{
    long e = b + {BLOCK} < stop ? b + {BLOCK} : stop;
    T m = -ADCLI_INF;
    int nan = 0;
#pragma omp simd reduction(max:m) reduction(|:nan)
    for (long i = b; i < e; i++) {{
      const T v = x[i];
      m = v > m ? v : m;
      nan |= v != v;
    }}
    const T shift = (m == -ADCLI_INF || m == ADCLI_INF) ? (T)0 : m;
    double s = 0;
#pragma omp simd reduction(+:s)
    for (long i = b; i < e; i++)
      s += exp(x[i] - shift);
    top[b / {BLOCK}] = nan ? ADCLI_NAN : m;
    total[b / {BLOCK}] = s;
  }}
}}
"""

SOFTMAX = """typedef {T} T;

void adcli_kernel(long start, long stop, const T *restrict x, T m, T s, T c, T *restrict out)
{{
#pragma omp simd
  for (long i = start; i < stop; i++)
    out[i] = c * (exp(x[i] - m) / s);
}}
"""


def _fits(xp, x, axis):
    """x as a contiguous array when the kernels take it: numpy, float32 or float64, every
    axis reduced, large enough, and kernels on; else None."""
    if xp is not np or not isinstance(x, np.ndarray) or x.dtype.name not in codegen.CTYPES:
        return None
    if x.size < max(settings.min_elements, 1) or not settings.enabled:
        return None
    if axis is not None:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        if sorted(a % x.ndim for a in axes) != list(range(x.ndim)):
            return None
    from . import cpu
    if cpu.available() is not None:
        return None
    return np.ascontiguousarray(x)


def _source(template, dtype):
    ctype = codegen.CTYPES[dtype.name]
    return codegen.spell(template.format(T=ctype, BLOCK=BLOCK), ctype), ctype


def _max_and_total(x):
    """(M, S) of the flat array x: M its max (NaN if it has one), S = sum exp(x - M) in
    double for finite M."""
    from . import cpu
    source, _ = _source(LSE, x.dtype)
    fn = cpu.load(source, (ctypes.c_void_p,) * 3)
    blocks = -(-x.size // BLOCK)
    top, total = np.empty(blocks, x.dtype), np.empty(blocks)
    cpu.run(fn, x.size, [x.ctypes.data, top.ctypes.data, total.ctypes.data], align=BLOCK)
    return combine(top, total)


def combine(top, total):
    """(M, S) from the blocks' maxima `top` (NaN for a block with a NaN) and their sums
    `total` of exp(x - max) (exp(x) for a block whose max is infinite)."""
    if np.isnan(top).any():
        return math.nan, math.nan
    m = float(top.max())
    if not math.isfinite(m):
        return m, math.nan
    # blocks of -inf: total 0 times exp(-inf) = 0
    return m, float(np.sum(total * np.exp(top.astype(np.float64) - m)))


def value(m, s, dtype):
    """logsumexp from (M, S), numpy's rule at NaN and infinities (see above)."""
    return np.asarray(m if not math.isfinite(m) else math.log(s) + m, dtype=dtype)


def logsumexp(xp, x, axis=None):
    """logsumexp of every element of x (a number of x's dtype), or None when the kernels do
    not take x (then numpy's rule runs)."""
    a = _fits(xp, x, axis)
    if a is None:
        return None
    global _last
    try:
        m, s = _max_and_total(a)
    except OSError:
        return None
    _last = (weakref.ref(x), x.ctypes.data, (m, s))
    return value(m, s, x.dtype)


def softmax(xp, x, axis=None, scale=1.0):
    """scale * softmax(x) over every element, or None when the kernels do not take x (or
    scale is not a plain number)."""
    a = _fits(xp, x, axis)
    if a is None or np.ndim(scale) or isinstance(scale, complex) or \
            getattr(scale, "dtype", x.dtype).kind not in "fiub":
        return None
    global _last
    try:
        last, _last = _last, None
        if last is not None and last[0]() is x and last[1] == x.ctypes.data:
            m, s = last[2]
        else:
            m, s = _max_and_total(a)
        if not math.isfinite(m):
            return np.full(x.shape, np.nan, dtype=x.dtype)
        from . import cpu
        source, ctype = _source(SOFTMAX, x.dtype)
        number = ctypes.c_double if ctype == "double" else ctypes.c_float
        fn = cpu.load(source, (ctypes.c_void_p, number, number, number, ctypes.c_void_p))
        out = np.empty(x.shape, dtype=x.dtype)
        cpu.run(fn, a.size, [a.ctypes.data, m, s, float(scale), out.ctypes.data])
    except OSError:
        return None
    return out
