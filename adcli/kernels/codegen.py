"""Kernel source: one per-element body, wrapped as a SIMD C loop and as a CUDA kernel.

A body is a small straight-line program for element i: loads of the inputs, one
assignment per fused node (its op's C expression from the op table, `Op.c`, applied to
the variables of its arguments), and stores of the outputs. Every name in it is adcli's
own (x0, v3, out1); numbers are printed exactly, as C hexadecimal floats. No text a user
wrote reaches the source.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

CTYPES = {"float64": "double", "float32": "float"}

# The <math.h> functions the op table's C forms call, with their number of arguments;
# the float32 kernels call the float versions (sinf for sin).
MATH = {"sin": 1, "cos": 1, "tan": 1, "asin": 1, "acos": 1, "atan": 1, "atan2": 2,
        "sinh": 1, "cosh": 1, "tanh": 1, "asinh": 1, "acosh": 1, "atanh": 1, "exp": 1,
        "expm1": 1, "log": 1, "log2": 1, "log10": 1, "log1p": 1, "pow": 2, "cbrt": 1,
        "hypot": 2, "erf": 1, "erfc": 1, "sqrt": 1, "fabs": 1, "floor": 1, "ceil": 1,
        "rint": 1, "fmod": 2, "copysign": 2}
_CALL = re.compile(r"\b(" + "|".join(MATH) + r")\(")
# a decimal (1.0, 2.5e-3) or hexadecimal (0x1.8p+1) floating literal, not part of a name
_LITERAL = re.compile(r"(?<![\w.])(0[xX][0-9a-fA-F]*\.?[0-9a-fA-F]*[pP][-+]?\d+|\d+\.\d*(?:[eE][-+]?\d+)?)"
                      r"(?![\w.])")

# The zero-wins product: 0 where a factor is 0, even against inf or nan (the NaN-safe chain
# rule). For CUDA a ternary, as numpy's where. On the CPU the product's bits masked: GCC 12
# does not vectorise the select of booleans it makes of a chain of such ternaries (it
# rewrites MUL0(MUL0(a, b), c)'s test of MUL0(a, b) == 0 through the first ternary).
MUL0_CUDA = "#define MUL0(a, b) (((a) == 0 || (b) == 0) ? (T)0 : (a) * (b))\n"
MUL0_CPU = """typedef {bits} B;
static inline T MUL0(T a, T b)
{{
    T p = a * b;
    B bits, keep = -(B)((a != 0) & (b != 0));
    __builtin_memcpy(&bits, &p, sizeof bits);
    bits &= keep;
    __builtin_memcpy(&p, &bits, sizeof p);
    return p;
}}
"""


def spell(expr, ctype):
    """An op table C expression (written for double) for the kernel's float type."""
    if ctype == "float":
        expr = _CALL.sub(r"\1f(", expr)
        expr = _LITERAL.sub(r"\1f", expr)
    return expr


def literal(value, ctype):
    """A number as an exact C literal of the kernel's type."""
    v = float(value)
    if math.isnan(v):
        return "ADCLI_NAN"
    if math.isinf(v):
        return "ADCLI_INF" if v > 0 else "(-ADCLI_INF)"
    return f"({v.hex()}{'f' if ctype == 'float' else ''})"


@dataclass(frozen=True)
class Body:
    """The program of one element. `params`: the kernel's inputs in order, (kind, name)
    with kind "array" (a pointer to the float type), "bool" (a pointer to bytes: numpy's
    booleans) or "scalar" (a number passed by value); `lets`: (name, C expression) in
    order, each reading params and earlier lets; `outputs`: (kind, name of a let or
    param), kind "array" or "bool"; `sums`: names of lets whose sum over the elements is
    wanted (a sum reduction fused into the loop); `lses`: names of lets whose logsumexp
    over the elements is wanted (adcli/kernels/reduce.py: each block's max and sum of
    exp(v - max), combined by the caller)."""
    params: tuple
    lets: tuple
    outputs: tuple
    sums: tuple = ()
    lses: tuple = ()

    def lines(self):
        out = []
        for kind, name in self.params:
            source = f"{name}_in[i]" if kind != "scalar" else f"{name}_s"
            out.append(f"const T {name} = (T){source};")
        out.extend(f"const T {name} = {expr};" for name, expr in self.lets)
        for k, (kind, name) in enumerate(self.outputs):
            value = f"(unsigned char)({name} != 0)" if kind == "bool" else name
            out.append(f"out{k}[i] = {value};")
        return out

    def signature(self, restrict):
        args = []
        for kind, name in self.params:
            if kind == "scalar":
                args.append(f"T {name}_s")
            else:
                elem = "unsigned char" if kind == "bool" else "T"
                args.append(f"const {elem} *{restrict} {name}_in")
        for k, (kind, _) in enumerate(self.outputs):
            elem = "unsigned char" if kind == "bool" else "T"
            args.append(f"{elem} *{restrict} out{k}")
        return args


BLOCK = 128      # elements per partial sum of a fused reduction: 32 additions in each of
                 # 4 lanes, then the partial sums pairwise, about as accurate as numpy's sum


def cpu_source(body, ctype):
    """The body in a loop over [start, stop) that GCC vectorises (`omp simd`), the maths
    functions going to libmvec's vector entry points (declared by the forced header).
    A fused sum is accumulated in double over blocks of BLOCK elements, one partial sum
    per block (sumK[block]), which the caller adds up pairwise as numpy does: the error of
    a block's sum stays that of a few additions per vector lane, whatever the length.
    A fused logsumexp keeps the block's values in a buffer while it takes their max (a NaN
    noted apart), then adds up exp(v - max) from the buffer, in cache: lse_topK[block] and
    lse_totalK[block], which the caller combines (adcli/kernels/reduce.py)."""
    args = body.signature("restrict") + [f"double *restrict sum{k}" for k in range(len(body.sums))]
    for k in range(len(body.lses)):
        args += [f"T *restrict lse_top{k}", f"double *restrict lse_total{k}"]
    sig = ", ".join(["long start", "long stop"] + args)
    mul0 = MUL0_CPU.format(bits="long long" if ctype == "double" else "int")
    head = (f"typedef {ctype} T;\n{mul0}"
            "#define ADCLI_INF ((T)INFINITY)\n#define ADCLI_NAN ((T)NAN)\n\n"
            f"void adcli_kernel({sig})\n{{\n")
    if not body.sums and not body.lses:
        inner = "\n".join("    " + line for line in body.lines())
        return (head + "#pragma omp simd\n"
                f"  for (long i = start; i < stop; i++) {{\n{inner}\n  }}\n}}\n")
    accs = [f"acc{k}" for k in range(len(body.sums))]
    lines = body.lines() + [f"{a} += {name};" for a, name in zip(accs, body.sums)]
    for k, name in enumerate(body.lses):
        lines += [f"buf{k}[i - b] = {name};", f"top{k} = {name} > top{k} ? {name} : top{k};",
                  f"nan{k} |= {name} != {name};"]
    inner = "\n".join("      " + line for line in lines)
    zero = " ".join([f"double {a} = 0;" for a in accs]
                    + [f"T buf{k}[{BLOCK}]; T top{k} = -ADCLI_INF; int nan{k} = 0;"
                       for k in range(len(body.lses))])
    reductions = "".join([f" reduction(+:{','.join(accs)})" if accs else ""]
                         + [f" reduction(max:top{k}) reduction(|:nan{k})"
                            for k in range(len(body.lses))])
    store = " ".join(f"sum{k}[b / {BLOCK}] = {a};" for k, a in enumerate(accs))
    for k in range(len(body.lses)):
        term = spell(f"exp(buf{k}[j] - shift{k})", ctype)
        store += (f"\n    {{\n      const T shift{k} = "
                  f"(top{k} == -ADCLI_INF || top{k} == ADCLI_INF) ? (T)0 : top{k};\n"
                  f"      double total{k} = 0;\n"
                  f"#pragma omp simd reduction(+:total{k})\n"
                  f"      for (long j = 0; j < e - b; j++)\n        total{k} += {term};\n"
                  f"      lse_top{k}[b / {BLOCK}] = nan{k} ? ADCLI_NAN : top{k};\n"
                  f"      lse_total{k}[b / {BLOCK}] = total{k};\n    }}")
    return (head + f"  for (long b = start; b < stop; b += {BLOCK}) {{\n"
            f"    long e = b + {BLOCK} < stop ? b + {BLOCK} : stop;\n    {zero}\n"
            f"#pragma omp simd{reductions}\n"
            f"    for (long i = b; i < e; i++) {{\n{inner}\n    }}\n    {store}\n  }}\n}}\n")


def cuda_source(body, ctype):
    """The same body as a CUDA kernel (a grid-stride loop over n elements), for CuPy's
    RawKernel; NVRTC compiles it without any header."""
    # (a fused sum: its terms, one per element, for the launcher's reduction)
    # (a fused logsumexp likewise: its values, for the launcher's reduction)
    sig = ", ".join(["long long n"] + body.signature("__restrict__")
                    + [f"T *__restrict__ sum{k}" for k in range(len(body.sums))]
                    + [f"T *__restrict__ lse{k}" for k in range(len(body.lses))])
    inner = "\n".join("    " + line for line in body.lines()
                      + [f"sum{k}[i] = {name};" for k, name in enumerate(body.sums)]
                      + [f"lse{k}[i] = {name};" for k, name in enumerate(body.lses)])
    inf = ("__longlong_as_double(0x7ff0000000000000LL)" if ctype == "double"
           else "__int_as_float(0x7f800000)")
    nan = ("__longlong_as_double(0x7ff8000000000000LL)" if ctype == "double"
           else "__int_as_float(0x7fc00000)")
    return (f"typedef {ctype} T;\n{MUL0_CUDA}#define ADCLI_INF ({inf})\n#define ADCLI_NAN ({nan})\n\n"
            f'extern "C" __global__ void adcli_kernel({sig})\n{{\n'
            "  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;\n"
            "       i += (long long)blockDim.x * gridDim.x) {\n"
            f"{inner}\n  }}\n}}\n")


def apply(expr, args, y=None):
    """An op's C form with its arguments' (and result's) variable names filled in."""
    return expr.format(*args, y=y)
