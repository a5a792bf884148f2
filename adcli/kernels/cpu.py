"""Fused kernels on the CPU: compiled by the system C compiler, cached on disk, run by ctypes.

glibc's vector maths library (libmvec) computes sin, exp, log1p... on 2 or 4 doubles at a
time. GCC calls it from a loop marked `#pragma omp simd` when the functions are declared
`#pragma omp declare simd notinbranch` (a header forced in with -include). -ffast-math,
which would declare them too, is not used: it assumes there are no NaNs and infinities and
would break adcli's semantics. -fno-math-errno and -fno-trapping-math only let GCC treat
the functions as pure and compute both sides of a ternary; -ffp-contract=off keeps every
product and sum rounded as numpy rounds it (no fused multiply-adds).

The issue's -fno-builtin-sin -fno-builtin-cos are not used: with GCC 12 a call to a
function it does not know as a builtin cannot be if-converted, so a ternary (MUL0, where)
reading sin's value would stop the vectorisation of the whole loop. The op table instead
writes cos(x + 0.0), which keeps GCC from merging sin(x) and cos(x) into a scalar sincos.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

from ..errors import AdcliError
from . import cache_folder, codegen, settings

FLAGS = ("-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-ffp-contract=off",
         "-shared", "-fPIC")
LIBS = ("-lmvec", "-lm")
PARALLEL_MIN = 1 << 17      # elements from which a call is split over threads


class KernelError(AdcliError):
    """A generated kernel did not compile: a bug in adcli, shown with its source."""
    exit_code = 3


@functools.lru_cache(maxsize=None)
def compiler():
    """The C compiler: $CC, else gcc, else cc; None when there is none."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc)
    return shutil.which("gcc") or shutil.which("cc")


@functools.lru_cache(maxsize=None)
def machine_flags():
    """-mavx2 where the CPU has AVX2: libmvec's 4-double entry points (_ZGVdN4v_...)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return ("-mavx2",) if " avx2" in line else ()
    except OSError:
        pass
    return ()


@functools.lru_cache(maxsize=None)
def vector_functions():
    """The maths functions libmvec has vector versions of, in double and float (both the
    SSE and AVX2 entry points, whichever GCC picks): names that the header declares simd.
    Empty without libmvec: the loop still runs, with scalar calls."""
    try:
        lib = ctypes.CDLL("libmvec.so.1")
    except OSError:
        return ()
    found = []
    for name, arity in codegen.MATH.items():
        v = "v" * arity
        names = (f"_ZGVbN2{v}_{name}", f"_ZGVdN4{v}_{name}", f"_ZGVbN4{v}_{name}f",
                 f"_ZGVdN8{v}_{name}f")
        if all(hasattr(lib, n) for n in names):
            found.append(name)
    return tuple(found)


def header():
    """The forced header: <math.h>, and the vector functions declared simd."""
    lines = ["#include <math.h>"]
    for name in vector_functions():
        arity = codegen.MATH[name]
        for ctype, suffix in (("double", ""), ("float", "f")):
            args = ", ".join([ctype] * arity)
            lines += ["#pragma omp declare simd notinbranch", f"{ctype} {name}{suffix}({args});"]
    return "\n".join(lines) + "\n"


def flags():
    return FLAGS + machine_flags()


failed = None      # why building or loading a kernel failed in this process (then numpy runs)


def available():
    """Why fused kernels cannot run here, or None when they can."""
    if not settings.enabled:
        return "fusion is switched off (--no-fuse or ADCLI_NO_FUSE)"
    if compiler() is None:
        return "no C compiler found (gcc or cc, or $CC)"
    return failed


_loaded = {}      # (cache folder, source) -> ctypes function


def load(source, argtypes):
    """The compiled kernel of a C source (cpu_source), from the memory or disk cache or
    compiled now, called with ctypes `argtypes` after its (start, stop). The cache key
    hashes the source, the header, the compiler and its flags."""
    folder = cache_folder()
    fn = _loaded.get((folder, source))
    if fn is not None:
        return fn
    head = header()
    cc = compiler()
    key = hashlib.sha256("\0".join((cc, " ".join(flags() + LIBS), head, source)).encode()).hexdigest()[:32]
    path = os.path.join(folder, f"{key}.so")
    if settings.dump_dir:
        os.makedirs(settings.dump_dir, exist_ok=True)
        with open(os.path.join(settings.dump_dir, f"{key}.c"), "w") as f:
            f.write(source)
    if not os.path.exists(path):
        _compile(cc, head, source, folder, path)
    lib = ctypes.CDLL(path)
    fn = lib.adcli_kernel
    fn.restype = None
    fn.argtypes = (ctypes.c_long, ctypes.c_long) + tuple(argtypes)
    _loaded[folder, source] = fn
    return fn


def _compile(cc, head, source, folder, path):
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        h, c, so = (os.path.join(tmp, n) for n in ("adcli_math.h", "kernel.c", "kernel.so"))
        with open(h, "w") as f:
            f.write(head)
        with open(c, "w") as f:
            f.write(source)
        cmd = [cc, *flags(), "-include", h, c, "-o", so, *LIBS]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelError("a generated kernel did not compile (a bug in adcli):\n"
                              f"$ {' '.join(cmd)}\n{done.stderr.strip()}\n--- source ---\n{source}",
                              hint="--no-fuse evaluates with numpy instead")
        os.replace(so, path)      # atomic: another process never loads half a library


def threads():
    if settings.threads:
        return settings.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_pool = None


def run(fn, n, args, align=64):
    """fn(start, stop, *args) over [0, n), split over threads for large n (ctypes releases
    the GIL during the call, so the threads run at once) at multiples of `align`."""
    workers = min(threads(), n // PARALLEL_MIN)
    if workers <= 1:
        fn(0, n, *args)
        return
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _pool = ThreadPoolExecutor(max_workers=threads(), thread_name_prefix="adcli-kernel")
    step = -(-n // workers)
    step += -step % max(align, 64)      # whole cache lines (and sum blocks) for every thread
    futures = [_pool.submit(fn, s, min(s + step, n), *args) for s in range(0, n, step)]
    for f in futures:
        f.result()
