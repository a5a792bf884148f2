"""CUDA kernels compiled to PTX with NVRTC (ctypes), without a GPU.

The CUDA backend launches codegen.cuda_source's kernels through CuPy's RawKernel; here
NVRTC, the runtime compiler (the nvidia-cuda-nvrtc-cu12 wheel, or a CUDA toolkit), checks
that each generated kernel compiles, so that one that would not fails in the tests and not
on a user's GPU.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os


@functools.lru_cache(maxsize=None)
def nvrtc():
    """The NVRTC library: the wheel's (nvidia/cuda_nvrtc/lib), else the system's.
    Raises OSError when there is none."""
    candidates = []
    try:
        import nvidia.cuda_nvrtc as wheel
        for folder in wheel.__path__:
            candidates += sorted(glob.glob(os.path.join(folder, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    candidates += ["libnvrtc.so.12", "libnvrtc.so"]
    errors = []
    for path in candidates:
        if ".alt." in path or "builtins" in path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        return lib
    raise OSError("no NVRTC library found (pip install nvidia-cuda-nvrtc-cu12): " + "; ".join(errors[-2:]))


def version():
    lib = nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


class CompileError(RuntimeError):
    pass


def compile_ptx(source, options=("--std=c++17",)):
    """PTX of a CUDA source; CompileError with NVRTC's log and the source otherwise."""
    lib = nvrtc()
    prog = ctypes.c_void_p()
    check = _checker(lib)
    check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"adcli_kernel.cu",
                                 0, None, None), "create")
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        status = lib.nvrtcCompileProgram(prog, len(options), opts)
        if status != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise CompileError(f"NVRTC: {lib.nvrtcGetErrorString(status).decode()}\n"
                               f"{log.value.decode(errors='replace')}\n--- source ---\n{source}")
        size = ctypes.c_size_t()
        check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "PTX size")
        ptx = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetPTX(prog, ptx), "PTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _checker(lib):
    def check(status, what):
        if status != 0:
            raise CompileError(f"NVRTC {what}: {lib.nvrtcGetErrorString(status).decode()}")
    return check
