"""Sparse Jacobians and Hessians from the command line and the library: every result equals
the dense one, the formats say what they hold, and a kept program answers at other points.
"""
import json

import numpy as np
import pytest

from adcli import api, derivatives, sparse

from test_cli import adcli as cli, fails, ok

CASES = [
    ("hessian", "sum(sin(x)*x)", {"x": np.linspace(-1, 2, 7)}),
    ("hessian", "sum(x[1:] * x[:-1]) + x[0]**3 * y", {"x": np.arange(1.0, 6.0), "y": 0.5}),
    ("hessian", "sum(exp(A @ x))", {"A": np.eye(4)[::-1] + np.eye(4), "x": np.ones(4) / 3}),
    ("hessian", "logsumexp(x) + sum(x**2)", {"x": np.array([0.1, 0.2, -0.3])}),
    ("jacobian", "x[1:] - x[:-1]**2", {"x": np.linspace(-1, 1, 9)}),
    ("jacobian", "[sin(x[0]) * y, x[2] + y**2, x[1]]", {"x": np.array([0.5, 1.5, 2.5]), "y": 2.0}),
    ("jacobian", "tanh(W) * x", {"W": np.arange(6.0).reshape(2, 3) / 7, "x": np.array([1., 2., 3.])}),
    ("jacobian", "cumsum(x) * x", {"x": np.array([1.0, -2.0, 3.0, 0.5])}),
]


def dense_matrix(res, kind, names):
    """The dense result as one matrix, rows and columns numbered as the sparse one's."""
    if kind == "jacobian":
        blocks = [np.asarray(res.extra["jacobian"][w]) for w in names]
        m = np.size(res.value)
        return np.concatenate([b.reshape(m, -1) for b in blocks], axis=1)
    h = res.extra["hessian"]
    sizes = [int(np.sqrt(np.size(h[w][w]))) for w in names]
    return np.block([[np.asarray(h[a][b]).reshape(sa, sb) for b, sb in zip(names, sizes)]
                     for a, sa in zip(names, sizes)])


@pytest.mark.parametrize("kind,expr,values", CASES)
@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_a_sparse_result_equals_the_dense_one(kind, expr, values, mode):
    if kind == "hessian" and mode == "rev":
        pytest.skip("a Hessian has one mode")
    traced = api.trace(expr, values)
    names = list(traced.inputs)
    run = getattr(derivatives, kind)
    kw = {"mode": mode} if kind == "jacobian" else {}
    dense = dense_matrix(run(traced, names, sparse="off", **kw), kind, names)
    res = run(api.trace(expr, values), names, sparse="on", **kw)
    got = res.sparse.to_dense()
    np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-14)
    # every nonzero of the dense matrix is in the pattern (no false zeros)
    assert not np.any((dense != 0) & ~res.sparse.pattern.to_dense())
    assert res.sparse.sweeps <= max(dense.shape)


def test_the_pattern_and_colouring_are_kept_and_answer_at_other_points():
    x = np.linspace(-1, 1, 50)
    traced = api.trace("sum(sin(x)*x) + sum(x[1:]*x[:-1])", {"x": x})
    node = traced.inputs["x"]
    comp = sparse.compressed(traced.graph, "hessian", None, traced.output, [node])
    assert sparse.compressed(traced.graph, "hessian", None, traced.output, [node]) is comp
    assert comp.sweeps == 3                           # tridiagonal: a star colouring of 3
    for x2 in (x * 0.5, np.cos(x)):
        again = api.trace("sum(sin(x)*x) + sum(x[1:]*x[:-1])", {"x": x2})
        expected = derivatives.hessian(again, ["x"], sparse="off").extra["hessian"]["x"]["x"]
        r, c = comp.pattern.coo()
        np.testing.assert_allclose(comp.values({node: x2}), expected[r, c], rtol=1e-12)
        np.testing.assert_allclose(comp.values({node: x2}, chunk=1), expected[r, c], rtol=1e-12)


def test_plain_output_lists_the_nonzeros():
    out = ok("jacobian", "x[1:] - x[:-1]**2", "--at", "x=[1,2,3]", "--sparse", "on")
    assert out.splitlines() == ["value\t[1.0, -1.0]",
                                "d/dx\t[0]\t[0]\t-2.0", "d/dx\t[0]\t[1]\t1.0",
                                "d/dx\t[1]\t[1]\t-4.0", "d/dx\t[1]\t[2]\t1.0"]


def test_blocks_are_named_as_in_the_dense_output():
    out = ok("hessian", "x^2*y + sum(z**3)", "--at", "x=1,y=2,z=[1,2]", "--sparse", "on")
    assert out.splitlines()[1:] == ["d2/dx,dx\t[]\t[]\t4.0", "d2/dx,dy\t[]\t[]\t2.0",
                                    "d2/dy,dx\t[]\t[]\t2.0", "d2/dz,dz\t[0]\t[0]\t6.0",
                                    "d2/dz,dz\t[1]\t[1]\t12.0"]


def test_json_lists_the_pattern_and_values():
    obj = json.loads(ok("jacobian", "x[1:] - x[:-1]**2", "--at", "x=[1,2,3]", "--sparse", "on",
                        "--json"))
    assert obj["sparse"] is True
    j = obj["jacobian"]
    assert j["format"] == "coo" and j["shape"] == [2, 3] and j["nnz"] == 4
    assert (j["rows"], j["cols"], j["values"]) == ([0, 0, 1, 1], [0, 1, 1, 2],
                                                   [-2.0, 1.0, -4.0, 1.0])
    assert j["col_blocks"] == [{"name": "x", "shape": [3]}]
    assert j["sweeps"] == 2


def test_the_pattern_alone():
    out = ok("jacobian", "x[1:] - x[:-1]**2", "--at", "x=[1,2,3]", "--pattern")
    assert out.splitlines()[1:] == ["d/dx\t[0]\t[0]", "d/dx\t[0]\t[1]", "d/dx\t[1]\t[1]",
                                    "d/dx\t[1]\t[2]"]
    obj = json.loads(ok("hessian", "sum(sin(x))", "--at", "x=[1,2]", "--pattern", "--json"))
    assert obj["hessian"]["rows"] == [0, 1] and "values" not in obj["hessian"]


def test_a_sparse_matrix_is_saved_in_scipy_sparse_format(tmp_path):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    path = tmp_path / "h.npz"
    ok("hessian", "sum(sin(x)*x)", "--at", "x=linspace(0,1,200)", "--sparse", "on",
       "--out", str(path))
    h = scipy_sparse.load_npz(path)
    x = np.linspace(0, 1, 200)
    assert h.shape == (200, 200) and h.nnz == 200
    np.testing.assert_allclose(h.toarray(), np.diag(2 * np.cos(x) - x * np.sin(x)), rtol=1e-12)
    csv = tmp_path / "j.csv"
    ok("jacobian", "x[1:] - x[:-1]**2", "--at", "x=[1,2,3]", "--sparse", "on", "--out", str(csv))
    assert csv.read_text().splitlines()[:2] == ["block,row,column,value", "d/dx,0,0,-2.0"]
    err = fails("hessian", "sum(x**3)", "--at", "x=[1,2]", "--sparse", "on", "--out",
                str(tmp_path / "h.npy"))
    assert "saved as .npz" in err


def test_auto_is_dense_for_small_matrices_and_sparse_where_it_pays():
    small = json.loads(ok("hessian", "sum(x**3)", "--at", "x=ones(10)", "--json"))
    assert "sparse" not in small and len(small["hessian"]["x"]["x"]) == 10
    big = json.loads(ok("hessian", "sum(x**3)", "--at", "x=ones(500)", "--json"))
    assert big["sparse"] is True and big["hessian"]["nnz"] == 500
    # a dense pattern does not pay: the dense result, as without --sparse
    full = json.loads(ok("hessian", "sum(x)**3", "--at", "x=ones(120)", "--json"))
    assert "sparse" not in full


def test_an_input_no_entry_reaches_gets_a_note():
    r = cli("hessian", "sum(x**3) + y", "--at", "x=[1,2],y=3", "--sparse", "on")
    assert r.exit_code == 0
    assert "no derivative reaches 'y'" in r.stderr


def test_a_script_with_a_loop():
    src = """input x = [1.0, 2.0, 3.0, 4.0]
y = x
for i in range(3):
    y = sin(y) * x
return sum(y)
"""
    traced = api.trace_script(src, {})
    dense = derivatives.hessian(traced, ["x"], sparse="off").extra["hessian"]["x"]["x"]
    res = derivatives.hessian(api.trace_script(src, {}), ["x"], sparse="on")
    assert res.sparse.pattern.nnz == 4                   # elementwise: diagonal
    np.testing.assert_allclose(res.sparse.to_dense(), dense, rtol=1e-12)
