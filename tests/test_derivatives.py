"""Derivatives of every order and shape: jacobian, hessian, jvp, vjp, hvp, grad --order.

The hard cases of the issue, forward against reverse mode for every op of the table, the
commands' outputs and their errors."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import api, autodiff, derivatives
from adcli.cli import app
from adcli.ops import OPS

from test_ops import RNG, all_cases, diff_args, run as run_op

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
runner = CliRunner()


def traced(src, **values):
    vals = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    with np.errstate(all="ignore"):
        return api.trace(src, vals)


def nth(src, order, **values):
    with np.errstate(all="ignore"):
        return derivatives.higher_grad(traced(src, **values), order=order)


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    return r


# ---------------------------------------------------------------- the hard cases

@pytest.mark.parametrize("expr, at, order, expected", [
    ("x**2", {"x": 0}, 1, {"x": 0.0}),
    ("x**2", {"x": 0}, 2, {"x": 2.0}),
    ("x**0", {"x": 0}, 1, {"x": 0.0}),
    ("x**1.5", {"x": 0}, 1, {"x": 0.0}),
    ("x*x**0.5", {"x": 0}, 1, {"x": 0.0}),
    ("x**3", {"x": -2}, 1, {"x": 12.0}),
    ("x**3", {"x": -2}, 2, {"x": -12.0}),
    ("exp(-(x**2))", {"x": 0}, 1, {"x": 0.0}),
    ("exp(-(x**2))", {"x": 0}, 2, {"x": -2.0}),
    ("exp(-(x**2))", {"x": 0}, 3, {"x": 0.0}),
    ("exp(-(x**2))", {"x": 0}, 4, {"x": 12.0}),
    ("1/x", {"x": 4}, 6, {"x": 720 / 4 ** 7}),
    ("sqrt(x**2+y**2)", {"x": 0, "y": 0}, 1, {"x": 0.0, "y": 0.0}),
    ("where(x<1, x, sqrt(x))", {"x": 0}, 1, {"x": 1.0}),
    ("log(exp(x)+exp(y))", {"x": 1000, "y": 1000}, 1, {"x": 0.5, "y": 0.5}),
    ("log1p(x)", {"x": 1e-20}, 1, {"x": 1.0}),
    ("expm1(x)", {"x": -30}, 1, {"x": 9.357622968840175e-14}),
    ("tanh(x)", {"x": 1000}, 1, {"x": 0.0}),
    ("prod([x,y,z])", {"x": 0, "y": 2, "z": 3}, 1, {"x": 6.0, "y": 0.0, "z": 0.0}),
    ("max([x,y,z])", {"x": 2, "y": 2, "z": 1}, 1, {"x": 0.5, "y": 0.5, "z": 0.0}),
    ("sin(x)", {"x": 1}, 3, {"x": -math.cos(1)}),
    ("2*x", {"x": 3}, 2, {"x": 0.0}),
])
def test_hard_cases(expr, at, order, expected):
    res = nth(expr, order, **at)
    for name, want in expected.items():
        got = np.asarray(res.grad[name])
        assert np.all(np.isfinite(got)), (expr, name, got)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-300, err_msg=f"{expr} d{order}/d{name}")


def test_identically_zero_derivative_is_zero_not_an_error():
    res = nth("2*x + y", 2, x=3, y=1)
    assert res.grad["x"] == 0 and res.grad["y"] == 0


def test_unused_input_gets_zeros_and_a_note_at_every_order():
    t = api.trace_script("input x = 1\ninput unused = [1, 2]\nreturn sin(x)\n", {})
    for res in (derivatives.higher_grad(t, order=2), derivatives.hessian(t)):
        assert any("'unused'" in str(n) for n in res.notes)
    h = derivatives.hessian(t).extra["hessian"]
    assert h["unused"]["unused"].shape == (2, 2) and not h["unused"]["unused"].any()
    assert h["x"]["x"] == pytest.approx(-math.sin(1))


def test_higher_order_of_an_array_input_is_the_full_tensor():
    x = np.array([0.3, -0.7])
    res = nth("sum(x**3) + x[0]*x[1]**2", 3, x=x)
    t = np.zeros((2, 2, 2))
    t[0, 0, 0], t[1, 1, 1] = 6.0, 6.0
    for idx in [(0, 1, 1), (1, 0, 1), (1, 1, 0)]:
        t[idx] = 2.0          # d3/dx0 dx1 dx1 of x0 x1^2
    np.testing.assert_allclose(res.grad["x"], t, atol=1e-12)


# ---------------------------------------------------------------- forward against reverse

@pytest.mark.parametrize("name, args, attrs", list(all_cases()))
def test_forward_and_reverse_agree(name, args, attrs):
    """<u, J^T v> = <J u, v> for every op of the table."""
    op = OPS[name]
    g, ins, out = run_op(op, args, attrs)
    v = RNG.normal(size=out.shape)
    for i in diff_args(op, args):
        u = RNG.normal(size=args[i].shape)
        (jt_v,) = autodiff.vjp(g, out, [ins[i]], cotangent=v)
        j_u = autodiff.jvp(g, out, [ins[i]], [u])
        assert jt_v is not None and j_u is not None, name
        np.testing.assert_allclose(np.sum(u * jt_v), np.sum(np.broadcast_to(j_u, out.shape) * v),
                                   rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- jacobian, hessian, jvp, vjp, hvp

@pytest.mark.parametrize("expr, values", [
    ("softmax(x)", {"x": [1.0, 2.0, 3.0]}),
    ("A @ x + sin(x)", {"A": [[1.0, 2.0], [3.0, 4.0]], "x": [0.5, -1.0]}),
    ("outer(x, y)", {"x": [1.0, 2.0], "y": [3.0, 4.0, 5.0]}),
    ("sum(x**2)", {"x": [1.0, 2.0, 3.0]}),
])
def test_jacobian_forward_equals_reverse(expr, values):
    fwd = derivatives.jacobian(traced(expr, **values), mode="fwd")
    rev = derivatives.jacobian(traced(expr, **values), mode="rev")
    assert fwd.extra["mode"] == "fwd" and rev.extra["mode"] == "rev"
    for name in values:
        np.testing.assert_allclose(fwd.extra["jacobian"][name], rev.extra["jacobian"][name],
                                   rtol=1e-12, atol=1e-14)


def test_softmax_jacobian_closed_form():
    x = np.array([1.0, 2.0, 3.0])
    s = np.exp(x) / np.exp(x).sum()
    res = derivatives.jacobian(traced("softmax(x)", x=x))
    np.testing.assert_allclose(res.extra["jacobian"]["x"], np.diag(s) - np.outer(s, s), atol=1e-15)


def test_jacobian_mode_follows_the_sizes():
    assert derivatives.jacobian(traced("sum(x)", x=np.ones(5))).extra["mode"] == "rev"
    assert derivatives.jacobian(traced("x * ones(5)", x=2.0)).extra["mode"] == "fwd"


def test_hessian_closed_form_and_symmetry():
    res = derivatives.hessian(traced("x^2*y + y^3", x=1, y=2))
    h = res.extra["hessian"]
    assert (h["x"]["x"], h["x"]["y"], h["y"]["x"], h["y"]["y"]) == (4.0, 2.0, 2.0, 12.0)
    x = np.linspace(-1, 1, 7)
    big = derivatives.hessian(traced("sum(sin(x)*x)", x=x)).extra["hessian"]["x"]["x"]
    np.testing.assert_allclose(big, np.diag(2 * np.cos(x) - x * np.sin(x)), atol=1e-14)


def test_hvp_is_hessian_times_vector_and_jvp_vjp_are_jacobian_products():
    A = np.array([[1.0, 2.0], [3.0, -1.0]])
    x = np.array([0.3, 0.8])
    f = "sum(tanh(A @ x)**2)"
    H = derivatives.hessian(traced(f, A=A, x=x), wrt=["x"]).extra["hessian"]["x"]["x"]
    v = np.array([1.0, -2.0])
    hv = derivatives.hvp(traced(f, A=A, x=x), {"x": v}).extra["hvp"]["x"]
    np.testing.assert_allclose(hv, H @ v, rtol=1e-12)
    J = derivatives.jacobian(traced("tanh(A @ x)", A=A, x=x), wrt=["x"]).extra["jacobian"]["x"]
    jv = derivatives.jvp(traced("tanh(A @ x)", A=A, x=x), {"x": v}).extra["jvp"]
    np.testing.assert_allclose(jv, J @ v, rtol=1e-12)
    w = np.array([0.5, 2.0])
    wj = derivatives.vjp(traced("tanh(A @ x)", A=A, x=x), w, wrt=["x"]).extra["vjp"]["x"]
    np.testing.assert_allclose(wj, w @ J, rtol=1e-12)


def test_custom_rule_in_forward_mode_and_second_order():
    text = (SAMPLES / "fancy.ad").read_text()
    with np.errstate(all="ignore"):
        t = api.trace_script(text, {})
        res = derivatives.hessian(t)
    a, b = 0.5, 1.5
    h = res.extra["hessian"]
    # the rule's own derivative: d/db (a cos b) = -a sin b, d/da sin b = 0, mixed cos b
    np.testing.assert_allclose([h["a"]["a"], h["a"]["b"], h["b"]["b"]],
                               [0.0, math.cos(b), -a * math.sin(b)], atol=1e-14)
    with np.errstate(all="ignore"):
        fwd = derivatives.jacobian(api.trace_script(text, {}), mode="fwd").extra["jacobian"]
    np.testing.assert_allclose([fwd["a"], fwd["b"]], [math.sin(b), a * math.cos(b)])


# ---------------------------------------------------------------- the commands

def test_cli_grad_order():
    r = cli("grad", "sin(x)", "--at", "x=1", "--order", "3")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"value\t{math.sin(1)!r}\nd3/dx3\t{-math.cos(1)!r}\n"
    r = cli("grad", "sin(x)", "--at", "x=1", "--order", "2", "--json")
    obj = json.loads(r.stdout)
    assert obj["order"] == 2 and obj["grad"]["x"] == pytest.approx(-math.sin(1))


def test_cli_jacobian_plain_and_json():
    r = cli("jacobian", "softmax(x)", "--at", "x=[1,2,3]", "--json", "--mode", "rev")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["mode"] == "rev" and np.asarray(obj["jacobian"]["x"]).shape == (3, 3)
    r = cli("jacobian", "x*y", "--at", "x=[1,2],y=3")
    lines = r.stdout.splitlines()
    assert lines == ["value\t[3.0, 6.0]", "d/dx\t[[3.0, 0.0], [0.0, 3.0]]", "d/dy\t[1.0, 2.0]"]


def test_cli_hessian():
    r = cli("hessian", "x^2*y + y^3", "--at", "x=1,y=2")
    assert r.exit_code == 0, r.output
    assert r.stdout == "value\t10.0\nd2/dx,dx\t4.0\nd2/dx,dy\t2.0\nd2/dy,dx\t2.0\nd2/dy,dy\t12.0\n"
    obj = json.loads(cli("hessian", "x^2*y + y^3", "--at", "x=1,y=2", "--json").stdout)
    assert obj["hessian"] == {"x": {"x": 4.0, "y": 2.0}, "y": {"x": 2.0, "y": 12.0}}


def test_cli_jvp_vjp_hvp():
    at = ["--at", "A=[[1,2],[3,4]],x=[1,1]"]
    r = cli("jvp", "A @ x", *at, "--tangent", "x=[1,0]")
    assert r.stdout == "value\t[3.0, 7.0]\njvp\t[1.0, 3.0]\n", r.output
    r = cli("vjp", "A @ x", *at, "--cotangent", "[1,1]", "--wrt", "x")
    assert r.stdout == "value\t[3.0, 7.0]\nvjp/x\t[4.0, 6.0]\n", r.output
    r = cli("hvp", "sum(x**3)", "--at", "x=[1,2]", "--vector", "x=[1,0]")
    assert r.stdout == "value\t9.0\nhvp/x\t[6.0, 0.0]\n", r.output


def test_cli_commands_work_on_scripts():
    r = cli("hessian", SAMPLES / "linnainmaa.ad")
    assert r.exit_code == 0, r.output
    # d2/dx1^2 of (1 + x2) log x1 = -(1 + x2)/x1^2 at (2, 5)
    assert "d2/dx1,dx1\t-1.5\n" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["hessian", "x*y", "--at", "x=[1,2],y=1"], "hessian needs a scalar value"),
    (["jacobian", "sin(x)", "--at", "x=1", "--mode", "sideways"], "unknown mode 'sideways'"),
    (["jvp", "sin(x)", "--at", "x=1"], "jvp needs --tangent"),
    (["jvp", "sin(x)", "--at", "x=1", "--tangent", "x=[1,2]"], "does not match the input's shape"),
    (["jvp", "sin(x)", "--at", "x=1", "--tangent", "xx=1"], "did you mean 'x'"),
    (["vjp", "A @ x", "--at", "A=[[1,2],[3,4]],x=[1,1]", "--cotangent", "[1,2,3]"],
     "does not match the value's shape"),
    (["hvp", "sin(x)", "--at", "x=1"], "hvp needs --vector"),
    (["grad", "sin(x)", "--at", "x=1", "--order", "0"], "--order"),
    (["hessian", "sum(x)", "--at", "x=ones(20000)", "--sparse", "off"], "limit is"),
    (["hessian", "sum(x)", "--at", "x=1", "--sparse", "maybe"], "--sparse maybe"),
    (["jacobian", "x", "--at", "x=1", "--pattern", "--sparse", "off"], "--pattern"),
])
def test_cli_errors(args, message):
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("x, expected", [
    ([0.0, 2.0, 3.0], [[0, 3, 2], [3, 0, 0], [2, 0, 0]]),
    ([0.0, 0.0, 3.0], [[0, 3, 0], [3, 0, 0], [0, 0, 0]]),
    ([0.0, 0.0, 0.0], np.zeros((3, 3))),
    ([1.0, 2.0, 3.0], [[0, 3, 2], [3, 0, 1], [2, 1, 0]]),
])
def test_hessian_of_prod_is_exact_at_zeros(x, expected):
    # d2 prod / dx_i dx_j = the product of the elements other than i and j
    h = derivatives.hessian(traced("prod(x)", x=x)).extra["hessian"]["x"]["x"]
    np.testing.assert_array_equal(h, expected)


def test_third_derivative_of_prod_with_two_zeros():
    t = nth("prod(x)", 3, x=[0.0, 0.0, 3.0, 4.0]).grad["x"]
    expected = np.zeros((4, 4, 4))
    for i, j, k, v in [(0, 1, 2, 4.0), (0, 1, 3, 3.0)]:
        for p in {(i, j, k), (i, k, j), (j, i, k), (j, k, i), (k, i, j), (k, j, i)}:
            expected[p] = v
    np.testing.assert_array_equal(t, expected)


@pytest.mark.parametrize("A, cofactor", [
    ([[1.0, 2.0], [2.0, 4.0]], [[4.0, -2.0], [-2.0, 1.0]]),
    ([[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]),
    ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
     [[-3.0, 6.0, -3.0], [6.0, -12.0, 6.0], [-3.0, 6.0, -3.0]]),
])
def test_gradient_of_det_at_a_singular_matrix_is_the_cofactor_matrix(A, cofactor):
    # det is a polynomial: its gradient, the cofactor matrix, exists everywhere
    res = api.gradient(traced("det(A)", A=A))
    np.testing.assert_allclose(res.grad["A"], cofactor, atol=1e-12)
    fwd = derivatives.jvp(traced("det(A)", A=A), {"A": np.ones_like(np.asarray(A))})
    np.testing.assert_allclose(fwd.extra["jvp"], np.sum(cofactor), atol=1e-12)


# ---------------------------------------------------------------- batched sweeps, in chunks

MAP, MAP_AT = "tanh(A @ x) + x[0] * sum(x * x)", "A=reshape(linspace(-1,1,72),(9,8)),x=linspace(0.1,1,8)"
CHUNKED = [("jacobian", MAP, MAP_AT, ("--mode", "fwd")),
           ("jacobian", MAP, MAP_AT, ("--mode", "rev")),
           ("hessian", "sum(sin(x)*x) + prod(x) * y", "x=[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8],y=2",
            ()),
           ("grad", "sum(exp(x) * x[::-1])", "x=[0.1,0.2,0.3]", ("--order", "3"))]


@pytest.mark.parametrize("command, expr, at, more", CHUNKED)
def test_results_do_not_depend_on_the_chunk_size(command, expr, at, more):
    """Any number of vectors per sweep gives the same matrix (1: one at a time, 7: a last
    chunk shorter than the others, default: all at once)."""
    def run(*chunk):
        r = cli(command, expr, "--at", at, *more, *chunk, "--json")
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        found = doc.get("jacobian") or doc.get("hessian") or doc["grad"]
        # the Hessian's blocks by (a, b), the others' by input
        return {(k, j): v for k, row in found.items()
                for j, v in (row.items() if isinstance(row, dict) else [(None, row)])}
    default = run()
    for chunk in ("1", "7"):
        got = run("--chunk", chunk)
        for k, v in default.items():
            np.testing.assert_allclose(np.asarray(got[k], dtype=float),
                                       np.asarray(v, dtype=float), rtol=1e-13, atol=1e-15)


def test_third_derivative_sweep_is_the_closed_form_tensor():
    # d3/dx3 sum(x^3 * y) = 6 y on the diagonal i = j = k, 0 elsewhere; at order 3 the
    # batch runs over all pairs of tangents (j, k)
    x = np.array([0.5, -1.0, 2.0, 3.0])
    res = derivatives.higher_grad(traced("sum(x**3 * y)", x=x, y=1.5), wrt=["x"], order=3,
                                  chunk=5)
    expected = np.zeros((4, 4, 4))
    expected[np.arange(4), np.arange(4), np.arange(4)] = 9.0
    np.testing.assert_allclose(res.grad["x"], expected, atol=1e-12)


def test_chunk_bounds_the_memory_of_a_large_hessian():
    """Within --max-memory with 4 tangents per sweep; all 1000 at once are refused before
    allocating, and the hint names --chunk."""
    args = ["hessian", "sum(sin(x)*x)", "--at", "x=linspace(-1,1,1000)", "--sparse", "off",
            "--max-memory", "12MB"]
    r = cli(*args, "--chunk", "4", "--json")
    assert r.exit_code == 0, r.output
    h = np.asarray(json.loads(r.stdout)["hessian"]["x"]["x"], dtype=float)
    x = np.linspace(-1, 1, 1000)
    np.testing.assert_allclose(h, np.diag(2 * np.cos(x) - x * np.sin(x)), atol=1e-12)
    r = cli(*args)
    assert r.exit_code == 2
    assert "limit exceeded" in r.stderr and "--chunk" in r.stderr


def test_chunk_must_be_positive():
    assert cli("hessian", "x*x", "--at", "x=1", "--chunk", "0").exit_code == 2
    with pytest.raises(Exception, match="at least one vector"):
        derivatives.jacobian(traced("x*2", x=[1.0]), chunk=0)


def test_an_elementwise_chain_costs_one_batched_product():
    """Forward mode records the tangent of an elementwise chain as tangent * (partials
    multiplied and added first), so the Hessian sweep of a sum of elementwise terms
    multiplies the batch of basis tangents once, not once per step."""
    from adcli.graph import dependents, reachable
    t = traced("sum(sin(x) * x * exp(x) + x * x)", x=np.linspace(-1, 1, 5))
    g, x = t.graph, t.inputs["x"]
    grad = autodiff.vjp(g, t.output, [x], create_graph=True)[0]
    tangent = g.placeholder("t", x.shape, g.dtype)
    h = autodiff.jvp(g, grad, [x], [tangent], create_graph=True)
    batched = set(dependents(g, [tangent.id])) & set(reachable([h]))
    assert batched - {tangent.id} == {h.id}
    xs = np.linspace(-1, 1, 5)
    d2 = (2 * np.cos(xs) - xs * np.sin(xs)) * np.exp(xs) + 2 * (np.sin(xs) + xs * np.cos(xs)) \
        * np.exp(xs) + xs * np.sin(xs) * np.exp(xs) + 2
    np.testing.assert_allclose(derivatives.hessian(t).extra["hessian"]["x"]["x"], np.diag(d2),
                               rtol=1e-13, atol=1e-13)


def test_a_zero_tangent_still_wins_over_an_infinite_partial():
    # d2/dx2 sqrt(x) x = 0.75 / sqrt(x): infinite at 0, and the off-diagonal entries,
    # a zero tangent times an infinite partial, are 0, not NaN
    with np.errstate(all="ignore"):
        h = derivatives.hessian(traced("sum(sqrt(x) * x)", x=[0.0, 1.0])).extra["hessian"]
    assert h["x"]["x"].tolist() == [[np.inf, 0.0], [0.0, 0.75]]
