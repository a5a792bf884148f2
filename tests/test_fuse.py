"""Fused kernels (adcli/fuse.py, adcli/kernels): the same numbers as the numpy path.

Every op of the table with a C form is evaluated both ways, in float64 and float32, at
random points of its domain and at special values (0, -0, inf, -inf, nan, subnormals,
huge numbers). The bound: NaN where numpy gives NaN, the same infinities, and finite
values within ULPS units in the last place of the larger of the two (libmvec's functions
are accurate to 4 ulps, numpy's to 1), or ABS_ULPS ulps of 1 for results that are
roundoff around 0 (sin(pi)). The samples and the benchmark's gradient agree likewise.
CUDA sources of the kernels are compiled to PTX with NVRTC where the nvidia-cuda-nvrtc
wheel (the [test] extra) can be loaded.
"""
import contextlib
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import api, kernels
from adcli.cli import app
from adcli.evaluate import evaluate
from adcli.graph import Graph
from adcli.kernels import codegen, cpu
from adcli.ops import IDENTITY, NEGATE, OPS

ULPS = 8
ABS_ULPS = 4
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
FUSIBLE = [op for op in OPS.values() if op.c is not None]
DTYPES = [np.float64, np.float32]
RNG = np.random.default_rng(14)

needs_compiler = pytest.mark.skipif(cpu.compiler() is None, reason="no C compiler")
pytestmark = needs_compiler


@pytest.fixture(autouse=True, scope="module")
def kernel_cache(tmp_path_factory):
    old = kernels.configure(cache_dir=str(tmp_path_factory.mktemp("kernels")), enabled=True)
    yield
    kernels.configure(**old)


def special(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    big = np.finfo(dtype).max
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, 1e-310 if dtype == np.float64
                     else 1e-40, big, -big, 1.0, -1.0, 0.5, 2.0, 0.25], dtype=dtype)


def points(op, dtype, n=4096):
    """Columns of arguments: random points of the op's domain, then every combination of
    special values (all pairs for two arguments)."""
    k = len(op.args)
    cols = [RNG.uniform(lo, hi, n).astype(dtype) for lo, hi in op.domain[:k]]
    s = special(dtype)
    grid = np.meshgrid(*([s] * k), indexing="ij")
    return [np.concatenate([c, g.ravel()]) for c, g in zip(cols, grid)]


@contextlib.contextmanager
def unfused():
    """The numpy path (fused kernels off) inside the block, the settings restored after."""
    old = kernels.configure(enabled=False)
    try:
        yield
    finally:
        kernels.configure(**old)


def both_ways(graph, outputs, inputs):
    """{id: value} fused and op by op."""
    with np.errstate(all="ignore"):
        fused = evaluate(graph, outputs, inputs, charge=False)
        with unfused():
            plain = evaluate(graph, outputs, inputs, charge=False)
    return fused, plain


def assert_close(got, want, dtype, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, what
    if got.dtype == bool:
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), (what, got[np.isnan(got) != nan], want[np.isnan(got) != nan])
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), what
    assert not np.isinf(got[~inf & ~nan]).any(), what
    fin = ~nan & ~inf
    g, w = got[fin].astype(np.float64), want[fin].astype(np.float64)
    eps = np.finfo(dtype).eps
    with np.errstate(over="ignore"):
        ulp = np.spacing(np.maximum(np.abs(g), np.abs(w)).astype(dtype)).astype(np.float64)
    err = np.abs(g - w)
    bad = err > np.maximum(ULPS * ulp, ABS_ULPS * eps)
    assert not bad.any(), (what, g[bad][:5], w[bad][:5])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("op", FUSIBLE, ids=[op.name for op in FUSIBLE])
def test_every_fusible_op_agrees_with_numpy(op, dtype):
    """An op with a C form, alone and chained after a negation (so that the group has two
    nodes and is fused), gives numpy's numbers at random and special points."""
    cols = points(op, dtype)
    g = Graph(dtype=dtype)
    xs = [g.placeholder(f"x{i}", cols[0].shape, dtype) for i in range(len(op.args))]
    y = g.emit(op.name, *xs)
    z = g.emit(op.name, *[g.emit("neg", x) for x in xs])
    fused, plain = both_ways(g, [y, z], dict(zip(xs, cols)))
    for node in (y, z):
        assert_close(fused[node.id], plain[node.id], dtype, op.name)


def _partials_kernel(op, ctype):
    params = tuple(("array", f"x{i}") for i in range(len(op.args)))
    names = [p[1] for p in params]
    lets = [("y", codegen.spell(codegen.apply(op.c, names), ctype))]
    outs = [("array", "y")]
    for i, d in enumerate(op.c_partials):
        if isinstance(d, str) and d not in (IDENTITY, NEGATE):
            lets.append((f"d{i}", codegen.spell(codegen.apply(d, names, y="y"), ctype)))
            outs.append(("array", f"d{i}"))
    return codegen.Body(params, tuple(lets), tuple(outs))


WITH_PARTIALS = [op for op in FUSIBLE if op.c_partials]


def test_c_partials_match_the_numpy_partials_in_kind():
    """Every fusible op with local derivatives has their C forms, one per argument, with
    the same IDENTITY and NEGATE marks."""
    for op in FUSIBLE:
        if op.partials is None:
            continue
        assert op.c_partials is not None and len(op.c_partials) == len(op.partials), op.name
        for d, c in zip(op.partials, op.c_partials):
            assert (d is IDENTITY) == (c is IDENTITY) and (d is NEGATE) == (c is NEGATE), op.name


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("op", WITH_PARTIALS, ids=[op.name for op in WITH_PARTIALS])
def test_c_partials_agree_with_numpy(op, dtype):
    """The C local derivatives give the numpy rules' numbers, kinks and zero-wins
    products included (where's unselected branch: exactly 0)."""
    ctype = codegen.CTYPES[np.dtype(dtype).name]
    body = _partials_kernel(op, ctype)
    cols = [np.ascontiguousarray(c) for c in points(op, dtype)]
    import ctypes
    fn = cpu.load(codegen.cpu_source(body, ctype), [ctypes.c_void_p] * (len(cols) + len(body.outputs)))
    outs = [np.empty_like(cols[0]) for _ in body.outputs]
    cpu.run(fn, cols[0].size, [c.ctypes.data for c in cols] + [o.ctypes.data for o in outs])
    ns = Graph(dtype=dtype).arrays
    with np.errstate(all="ignore"):
        y = op.fwd(np, *cols)
        k = 1
        for i, (d, c) in enumerate(zip(op.partials or [None] * len(op.args), op.c_partials)):
            if isinstance(c, str) and c not in (IDENTITY, NEGATE):
                want = d(ns, y, *cols) if d is not None else op.vjp[i](ns, np.ones_like(y), y, *cols)
                want = np.broadcast_to(np.asarray(want, dtype=dtype), y.shape)
                assert_close(outs[k], want, dtype, f"{op.name} d/d{op.args[i]}")
                k += 1


BENCH = "sum(sin(x)*exp(-x*x)+log1p(x*x))"


def _bench(n=1 << 14, dtype="float64"):
    x = np.linspace(-3, 3, n)
    t = api.trace(BENCH, {"x": x}, dtype=dtype)
    return t, x, [t.output] + t.gradient_program()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradient_program_fused_agrees(dtype):
    t, x, outs = _bench(dtype=dtype)
    fused, plain = both_ways(t.graph, outs, {t.inputs["x"]: x.astype(dtype)})
    for o in outs:
        assert_close(np.asarray(fused[o.id]), np.asarray(plain[o.id]), np.dtype(dtype), str(o))


def test_kernels_call_libmvec_vector_entry_points(tmp_path):
    """The fused value and gradient of the benchmark call glibc's vector sin, exp, log1p,
    cos (_ZGV... symbols), not the scalar functions alone."""
    tool = shutil.which("nm") or shutil.which("objdump")
    if tool is None or not cpu.vector_functions():
        pytest.skip("no nm/objdump, or no libmvec")
    old = kernels.configure(cache_dir=str(tmp_path))
    try:
        t, x, outs = _bench()
        evaluate(t.graph, outs, {t.inputs["x"]: x})
    finally:
        kernels.configure(**old)
    symbols = ""
    libs = list(tmp_path.glob("*.so"))
    assert libs
    for lib in libs:
        args = ["-D"] if tool.endswith("nm") else ["-T"]
        symbols += subprocess.run([tool, *args, str(lib)], capture_output=True, text=True).stdout
    for name in ("sin", "exp", "log1p", "cos"):
        assert f"_ZGV" in symbols and f"v_{name}" in symbols, (name, symbols)


def test_samples_fused_agree(monkeypatch):
    """Every sample's value and gradient program, with every elementwise chain fused (no
    size threshold), gives the numpy path's numbers."""
    monkeypatch.setattr(kernels.settings, "min_elements", 1)
    given = {"linear_regression.ad": {"theta": np.array([0.1, -0.2, 0.3, 0.4, 0.5])}}
    checked = 0
    for path in sorted(SAMPLES.glob("*.ad")):
        with np.errstate(all="ignore"):
            t = api.trace_script(path.read_text(), given.get(path.name, {}), filename=path.name)
        if t.output.shape != ():
            continue
        checked += 1
        grads = [g for g in t.gradient_program() if g is not None]
        outs = [t.output] + grads
        fused, plain = both_ways(t.graph, outs, {})
        for o in outs:
            assert_close(np.asarray(fused[o.id]), np.asarray(plain[o.id]), np.float64, path.name)
    assert checked >= 10


def test_nan_and_inf_semantics_survive_fusion():
    """where(x > 0, sqrt(x), 0) has gradient 0 at 0, not NaN, fused or not; a NaN input
    stays NaN; 0 * inf in a derivative is 0 (the zero wins)."""
    x = np.concatenate([np.zeros(4096), [np.nan, np.inf, -1.0, 4.0]])
    t = api.trace("sum(where(x > 0, sqrt(x), 0))", {"x": x})
    outs = [t.output] + t.gradient_program()
    fused, plain = both_ways(t.graph, outs, {t.inputs["x"]: x})
    g = np.asarray(fused[outs[1].id])
    assert (g[:-1] == 0).all() and g[-1] == 0.25      # nan, inf, -1: 0 from the branch not taken
    assert_close(g, np.asarray(plain[outs[1].id]), np.float64)
    t = api.trace("sum(x * sin(x))", {"x": x})
    outs = [t.output] + t.gradient_program()
    fused, plain = both_ways(t.graph, outs, {t.inputs["x"]: x})
    g = np.asarray(fused[outs[1].id])
    assert np.isnan(g[-4]) and np.isnan(g[-3]) and (g[:4096] == 0).all()
    assert_close(g, np.asarray(plain[outs[1].id]), np.float64)


@pytest.mark.parametrize("n", [(1 << 15) + 7, 1 << 20])
def test_chunked_gradient_fused_agrees(n):
    """api.gradient of a large elementwise sum fused and not: from 2^15 elements the fused
    kernel, against the reverse walk below 2^20 and the chunked path above."""
    x = np.linspace(-2, 2, n)
    with np.errstate(all="ignore"):
        a = api.gradient(api.trace(BENCH, {"x": x}))
        with unfused():
            b = api.gradient(api.trace(BENCH, {"x": x}))
    np.testing.assert_allclose(a.value, b.value, rtol=1e-12)
    assert_close(a.grad["x"], b.grad["x"], np.float64)


def test_without_a_compiler_the_numpy_path_runs(monkeypatch):
    monkeypatch.setattr(cpu, "available", lambda: "no C compiler found")
    t, x, outs = _bench()
    vals = evaluate(t.graph, outs, {t.inputs["x"]: x})
    assert np.isfinite(vals[outs[1].id]).all()


def test_compile_error_shows_source_and_message(tmp_path):
    old = kernels.configure(cache_dir=str(tmp_path))
    try:
        with pytest.raises(cpu.KernelError) as e:
            cpu.load("void adcli_kernel(long a, long b) { this is not C; }", ())
    finally:
        kernels.configure(**old)
    text = e.value.render()
    assert "this is not C" in text and "error" in text and "--no-fuse" in text


def test_kernel_cache_and_dump_options(tmp_path):
    """--kernel-cache keeps the compiled kernels, --dump-kernels their C and CUDA sources;
    --no-fuse gives the same gradient."""
    x = np.linspace(-1, 1, 1 << 20)
    np.save(tmp_path / "x.npy", x)
    runner = CliRunner()
    base = ["grad", BENCH, "--at", f"x=@{tmp_path / 'x.npy'}", "--plain"]
    fused = runner.invoke(app, ["--kernel-cache", str(tmp_path / "cache"), "--dump-kernels",
                                str(tmp_path / "src"), *base, "--out", str(tmp_path / "g.npz")])
    assert fused.exit_code == 0, fused.output
    assert list((tmp_path / "cache").glob("*.so"))
    assert list((tmp_path / "src").glob("*.c")) and list((tmp_path / "src").glob("*.cu"))
    plain = runner.invoke(app, ["--no-fuse", *base, "--out", str(tmp_path / "h.npz")])
    assert plain.exit_code == 0, plain.output
    a, b = np.load(tmp_path / "g.npz"), np.load(tmp_path / "h.npz")
    for k in a.files:
        assert_close(a[k], b[k], np.float64, k)
    assert not kernels.settings.dump_dir and kernels.settings.enabled


def test_doctor_lists_compiler_libmvec_cache_and_gpus():
    r = CliRunner().invoke(app, ["doctor"])
    assert r.exit_code == 0, r.output
    for word in ("compiler", "libmvec", "kernel cache", "cupy", "gpu"):
        assert word in r.stdout.lower(), r.stdout


# ---------------------------------------------------------------- CUDA: NVRTC to PTX

def _nvrtc():
    from adcli.kernels import cuda
    try:
        return cuda.nvrtc()
    except OSError as e:
        pytest.skip(f"NVRTC cannot be loaded: {e}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_cuda_kernel_compiles_to_ptx(dtype):
    """The CUDA form of every op's kernel (value and local derivatives) and of the
    benchmark's fused gradient compiles with NVRTC: a kernel that would not compile on a
    user's GPU fails here."""
    from adcli.kernels import cuda
    _nvrtc()
    ctype = codegen.CTYPES[dtype]
    sources = [codegen.cuda_source(_partials_kernel(op, ctype), ctype) for op in WITH_PARTIALS]
    for op in FUSIBLE:
        if not op.c_partials:
            names = [f"x{i}" for i in range(len(op.args))]
            body = codegen.Body(tuple(("array", n) for n in names),
                                (("y", codegen.spell(codegen.apply(op.c, names), ctype)),),
                                (("array", "y"),))
            sources.append(codegen.cuda_source(body, ctype))
    t, x, outs = _bench(dtype=dtype)
    from adcli import fuse
    from adcli.evaluate import _plan
    plan = _plan(t.graph, outs, {t.inputs["x"].id: x}, True)
    steps, _ = fuse.fused_steps(t.graph, plan, {o.id for o in outs}, None, [])
    groups = [s[2] for s in steps if s[1] is None]
    assert groups
    for grp in groups:
        spec = tuple("array" for _ in grp.inputs)
        sources.append(codegen.cuda_source(grp.body(t.graph, spec, ctype), ctype))
    lse = codegen.Body((("array", "x0"),), (("v0", codegen.spell("sin(x0)", ctype)),),
                       (("array", "v0"),), ("v0",), ("v0",))      # a fused sum and logsumexp
    sources.append(codegen.cuda_source(lse, ctype))
    for src in sources:
        ptx = cuda.compile_ptx(src)
        assert ".entry adcli_kernel" in ptx


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-13), ("float32", 1e-6)])
def test_a_final_sum_is_fused_and_agrees(dtype, rtol):
    """sum(exp(x)*x) is one kernel that adds up its terms in double, by blocks of 128
    (numpy sums pairwise in the array's type: the two differ by summation order alone,
    rtol 1e-13 in float64 and 1e-6 in float32)."""
    from adcli import fuse
    from adcli.evaluate import _plan
    x = np.random.default_rng(3).standard_normal(100_003).astype(dtype)
    t = api.trace("sum(exp(x)*x)", {"x": x}, dtype=dtype)
    plan = _plan(t.graph, [t.output], {t.inputs["x"].id: x}, True)
    steps, _ = fuse.fused_steps(t.graph, plan, {t.output.id}, None, [])
    groups = [s[2] for s in steps if s[1] is None]
    assert len(groups) == 1 and groups[0].sums and not groups[0].outputs
    fused, plain = both_ways(t.graph, [t.output], {t.inputs["x"]: x})
    exact = math.fsum(float(v) for v in np.exp(x.astype(np.float64)) * x.astype(np.float64))
    assert abs(float(fused[t.output.id]) - exact) <= rtol * abs(exact) * 10
    np.testing.assert_allclose(float(fused[t.output.id]), float(plain[t.output.id]), rtol=rtol)


def test_an_unwritable_kernel_cache_falls_back_to_numpy(tmp_path, monkeypatch):
    """A cache folder that cannot be made: the numpy path runs, with the same numbers, and
    doctor would say why."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(cpu, "failed", None)
    old = kernels.configure(cache_dir=str(blocker / "kernels"))
    try:
        t, x, outs = _bench(n=5000)
        fused, plain = both_ways(t.graph, outs, {t.inputs["x"]: x})
    finally:
        kernels.configure(**old)
    assert cpu.available() and "could not be built" in cpu.available()
    for o in outs:
        np.testing.assert_array_equal(np.asarray(fused[o.id]), np.asarray(plain[o.id]))


# ---------------------------------------------------------------- logsumexp

def lse_cases(dtype):
    """Inputs of logsumexp of 10^5 elements: random ones, huge ones (exp would overflow),
    one nan, inf or -inf among them, all -inf, half -inf, inf and nan together."""
    x = (RNG.standard_normal(100_003) * 30).astype(dtype)
    cases = {"random": x, "huge": (x + 1000).astype(dtype),
             "all -inf": np.full(x.size, -np.inf, dtype)}
    for name, v in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        y = x.copy()
        y[777] = v
        cases[name] = y
    y = x.copy()
    y[: x.size // 2] = -np.inf
    cases["half -inf"] = y
    y = x.copy()
    y[5], y[9] = np.inf, np.nan
    cases["inf and nan"] = y
    return cases


LSE_RTOL = {"float64": 1e-13, "float32": 1e-5}    # summation order, as for a fused sum


def assert_lse_close(got, want, dtype, what):
    """Infinities and NaNs exactly where numpy has them; finite values within the bound of
    a fused sum (the kernels add exp(x - max) up in double by blocks, numpy pairwise in
    the array's type), relative to max(1, |value|)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert np.array_equal(np.isnan(got), np.isnan(want)), what
    fin = np.isfinite(want)
    assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)]), what
    assert np.isfinite(got[fin]).all(), what
    g, w = got[fin].astype(np.float64), want[fin].astype(np.float64)
    assert np.all(np.abs(g - w) <= LSE_RTOL[np.dtype(dtype).name] * np.maximum(1.0, np.abs(w))), \
        (what, g[:3], w[:3])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logsumexp_and_its_gradient_fused_agree(dtype):
    """logsumexp(x) of a large array (a max pass and a sum of exp(x - max) in one loop) and
    its gradient (softmax, one more loop) agree with numpy's rule, special values too."""
    from adcli.kernels import reduce
    for name, x in lse_cases(dtype).items():
        assert reduce.logsumexp(np, x) is not None          # the kernel takes it
        t = api.trace("logsumexp(x)", {"x": x}, dtype=dtype)
        grad = t.gradient_program()
        fused, plain = both_ways(t.graph, [t.output] + grad, {t.inputs["x"]: x})
        for node in [t.output] + grad:
            assert_lse_close(fused[node.id], plain[node.id], dtype, name)
        with np.errstate(all="ignore"):
            got = api.gradient(api.trace("logsumexp(x)", {"x": x}, dtype=dtype))
            with unfused():
                want = api.gradient(api.trace("logsumexp(x)", {"x": x}, dtype=dtype))
        assert_lse_close(got.value, want.value, dtype, name)
        assert_lse_close(got.grad["x"], want.grad["x"], dtype, name)


def test_logsumexp_of_a_fused_chain_agrees():
    """logsumexp of an elementwise chain (its value one kernel, the logsumexp another) and
    the gradient through it, against the numpy path."""
    x = RNG.standard_normal(50_000)
    src = "logsumexp(sin(x)*3 + x*x) * 2"
    got = api.gradient(api.trace(src, {"x": x}))
    with unfused():
        want = api.gradient(api.trace(src, {"x": x}))
    assert_lse_close(got.value, want.value, "float64", src)
    assert_lse_close(got.grad["x"], want.grad["x"], "float64", src)
    assert abs(float(got.value) - 2 * float(np.log(np.sum(np.exp(np.sin(x) * 3 + x * x))))) < 1e-9


def test_logsumexp_small_or_along_an_axis_stays_on_numpy():
    from adcli.kernels import reduce
    assert reduce.logsumexp(np, np.ones(10)) is None
    assert reduce.logsumexp(np, np.ones((100, 100)), axis=1) is None
    assert reduce.logsumexp(np, np.ones((100, 100)), axis=(0, 1)) is not None


def test_chunked_gradient_is_one_kernel_writing_only_the_gradients(tmp_path):
    """`adcli grad` of a large elementwise sum: one loop adds up the value as it goes and
    writes the gradients alone (no array of the terms), with the numpy path's numbers."""
    x, y = np.linspace(-2, 2, 1 << 20), np.linspace(0, 1, 1 << 20)
    src = "sum(sin(x)*exp(-x*x) + log1p(x*x) + 3*y)"
    old = kernels.configure(dump_dir=str(tmp_path))
    try:
        a = api.gradient(api.trace(src, {"x": x, "y": y}))
    finally:
        kernels.configure(**old)
    (c,) = tmp_path.glob("*.c")
    source = c.read_text()
    # two arrays written, the gradients of x and y, and the value's partial sums
    assert "out1" in source and "out2" not in source and "sum0" in source
    with unfused():
        b = api.gradient(api.trace(src, {"x": x, "y": y}))
    np.testing.assert_allclose(a.value, b.value, rtol=1e-12)
    assert_close(a.grad["x"], b.grad["x"], np.float64)
    assert a.grad["y"].shape == y.shape and np.all(a.grad["y"] == 3.0)


def test_a_softmax_reuses_only_the_logsumexp_of_the_same_array():
    """The gradient's softmax takes the max and the sum of the logsumexp just computed of
    the same array; of any other array it computes its own."""
    from adcli.kernels import reduce
    from adcli.ops import _softmax
    x = RNG.standard_normal(50_000)
    y = x * 2
    with unfused():
        want_x, want_y = _softmax(np, x, axis=None), _softmax(np, y, axis=None)
    reduce.logsumexp(np, x)
    assert_lse_close(reduce.softmax(np, y), want_y, "float64", "another array")
    reduce.logsumexp(np, x)
    assert_lse_close(reduce.softmax(np, x), want_x, "float64", "the same array")
    assert_lse_close(reduce.softmax(np, x), want_x, "float64", "again, computed anew")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logsumexp_of_a_chain_is_reduced_in_the_chains_loop(dtype):
    """logsumexp(sin(x)*3 + x*x): one kernel computes the chain and reduces it as it goes
    (each block's max, then the sum of exp(v - max) from the block in cache), writing no
    array; the value agrees with the numpy path, special values too."""
    from adcli import fuse
    from adcli.evaluate import _plan
    src = "logsumexp(sin(x)*3 + x*x)"
    for name, x in lse_cases(dtype).items():
        t = api.trace(src, {"x": x}, dtype=dtype)
        plan = _plan(t.graph, [t.output], {t.inputs["x"].id: x}, True)
        steps, _ = fuse.fused_steps(t.graph, plan, {t.output.id}, None, [])
        (grp,) = [s[2] for s in steps if s[1] is None]
        assert grp.lses and not grp.outputs and grp.label.endswith("logsumexp)")
        fused, plain = both_ways(t.graph, [t.output], {t.inputs["x"]: x})
        assert_lse_close(fused[t.output.id], plain[t.output.id], dtype, name)
