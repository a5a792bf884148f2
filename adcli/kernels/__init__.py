"""Fused kernels: elementwise chains of a program compiled into one loop.

The op table gives each elementwise op a C expression (`Op.c`) and C forms of its local
derivatives (`Op.c_partials`); adcli/fuse.py groups a program's elementwise chains; this
package turns a group into one per-element body (codegen), compiles it as a SIMD loop with
the system C compiler (cpu) and as a CUDA kernel checked by NVRTC (cuda).

`settings` say whether the evaluator fuses (the CLI's --no-fuse, the environment variable
ADCLI_NO_FUSE=1), where compiled kernels are cached (--kernel-cache, ADCLI_KERNEL_CACHE,
else $XDG_CACHE_HOME/adcli/kernels) and where to keep their sources (--dump-kernels).
"""
from __future__ import annotations

import os


class Settings:
    enabled = os.environ.get("ADCLI_NO_FUSE", "") in ("", "0")
    cache_dir = None          # None: the user's cache folder (cache_folder())
    dump_dir = None           # a folder to write every kernel's C and CUDA source to
    min_elements = 4096       # smaller arrays stay on numpy: a call costs about 2 µs
    threads = None            # None: the CPUs this process may use


settings = Settings()


def configure(**changes):
    """Change the settings (the CLI's global options); returns the old values."""
    old = {k: getattr(settings, k) for k in changes}
    for k, v in changes.items():
        setattr(settings, k, v)
    return old


def cache_folder():
    if settings.cache_dir:
        return settings.cache_dir
    if os.environ.get("ADCLI_KERNEL_CACHE"):
        return os.environ["ADCLI_KERNEL_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "adcli", "kernels")


def doctor():
    """(what, finding) pairs for `adcli doctor`: the compiler, libmvec, the kernel cache,
    NVRTC, CuPy and the GPUs, and whether the evaluator fuses."""
    import subprocess

    from . import cpu
    rows = []
    cc = cpu.compiler()
    if cc:
        try:
            version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            version = "(its version could not be read)"
        rows.append(("C compiler", f"{cc}: {version}"))
    else:
        rows.append(("C compiler", "none found (gcc, cc or $CC): adcli runs on numpy alone"))
    vector = cpu.vector_functions()
    rows.append(("libmvec", f"{len(vector)} vector maths functions ({', '.join(vector)})" if vector
                 else "not found: fused loops call the scalar maths functions"))
    rows.append(("compiler flags", " ".join(cpu.flags() + cpu.LIBS)))
    folder = cache_folder()
    count = len([f for f in os.listdir(folder) if f.endswith(".so")]) if os.path.isdir(folder) else 0
    rows.append(("kernel cache", f"{folder} ({count} kernels)"))
    why = cpu.available()
    rows.append(("fused kernels", "on, for arrays of at least "
                 f"{settings.min_elements} elements, {cpu.threads()} threads" if why is None
                 else f"off: {why}"))
    from . import cuda
    try:
        cuda.nvrtc()
        rows.append(("NVRTC", f"CUDA {cuda.version()}: CUDA kernels compile to PTX"))
    except OSError as e:
        rows.append(("NVRTC", f"not found ({e})"))
    try:
        import cupy
        rows.append(("CuPy", cupy.__version__))
        try:
            n = cupy.cuda.runtime.getDeviceCount()
            names = [cupy.cuda.runtime.getDeviceProperties(i)["name"].decode() for i in range(n)]
            rows.append(("GPUs", ", ".join(names) if names else "none"))
        except Exception as e:      # no driver, no device
            rows.append(("GPUs", f"none ({type(e).__name__}: {e})"))
    except ImportError:
        rows.append(("CuPy", "not installed (the GPU needs it)"))
        rows.append(("GPUs", _nvidia_smi()))
    return rows


def _nvidia_smi():
    """The GPUs nvidia-smi lists, where CuPy cannot be asked."""
    import shutil
    import subprocess
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return "none seen (no CuPy, no nvidia-smi)"
    try:
        found = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "nvidia-smi did not answer"
    return "; ".join(line.strip() for line in found.splitlines() if line.strip()) or "none"
