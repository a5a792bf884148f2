"""The functions users reach for (issue 10, section 7), through the command line: special
functions, remainders, scans, triangles, einsum, argmax, mask indexing and method calls.
Their derivatives are checked against finite differences in tests/test_ops.py and, for the
elementwise ones, against mpmath in tests/test_precision.py."""
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli.cli import app

runner = CliRunner()


def ok(*args):
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output + r.stderr
    return r.stdout


def fails(*args, code=2):
    r = runner.invoke(app, list(args))
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output + r.stderr
    return r.stderr


def values(*args):
    """The value of `adcli eval ... --json`."""
    return json.loads(ok(*args, "--json"))["value"]


def close(got, want):
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float),
                               rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- special functions

def test_special_functions_and_their_derivatives():
    from math import erf, erfc, exp, lgamma, pi, sqrt
    assert float(ok("eval", "erf(x)", "--at", "x=0.5")) == pytest.approx(erf(0.5), rel=1e-15)
    assert float(ok("eval", "erfc(x)", "--at", "x=5")) == pytest.approx(erfc(5.0), rel=1e-14)
    assert float(ok("eval", "lgamma(x)", "--at", "x=4.5")) == pytest.approx(lgamma(4.5), rel=1e-14)
    assert float(ok("eval", "erf(erfinv(x))", "--at", "x=0.3")) == pytest.approx(0.3, rel=1e-15)
    out = ok("grad", "erf(x)", "--at", "x=0.5").split()
    assert float(out[-1]) == pytest.approx(2 / sqrt(pi) * exp(-0.25), rel=1e-15)
    # lgamma'' is trigamma: pi^2/6 at 1
    out = ok("grad", "lgamma(x)", "--at", "x=1", "--order", "2").split()
    assert float(out[-1]) == pytest.approx(pi ** 2 / 6, rel=1e-14)
    # digamma(1) = -Euler's gamma
    assert float(ok("eval", "digamma(x)", "--at", "x=1")) == pytest.approx(-0.5772156649015329,
                                                                         rel=1e-14)


def test_polygamma_takes_an_order_of_0_or_more():
    from math import pi
    # polygamma(x, 0) is digamma; polygamma(1, 1) = trigamma(1) = pi^2/6
    assert float(ok("eval", "polygamma(x, 0)", "--at", "x=1")) == pytest.approx(-0.5772156649015329,
                                                                              rel=1e-14)
    assert float(ok("eval", "polygamma(x, 1)", "--at", "x=1")) == pytest.approx(pi ** 2 / 6, rel=1e-14)
    assert "'n' must be 0 or more, got -1" in fails("eval", "polygamma(x, -1)", "--at", "x=1")
    assert "'n' must be an integer, got 1.5" in fails("eval", "polygamma(x, 1.5)", "--at", "x=1")


def test_logit_inverts_sigmoid_and_has_its_derivative():
    assert float(ok("eval", "logit(sigmoid(x))", "--at", "x=0.7")) == pytest.approx(0.7, rel=1e-14)
    out = ok("grad", "logit(p)", "--at", "p=0.25").split()
    assert float(out[-1]) == pytest.approx(1 / (0.25 * 0.75), rel=1e-15)


def test_scipy_is_imported_only_when_a_special_function_runs():
    code = "import sys, adcli.cli; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_scipy_a_special_function_names_the_extra():
    code = ("import sys; sys.modules['scipy'] = None; sys.argv = ['adcli', 'grad', 'erf(x)', "
            "'--at', 'x=1']\nfrom adcli.cli import run\nrun()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "erf needs scipy" in r.stderr and "pip install 'adcli[special]'" in r.stderr
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------- % and //

def test_mod_and_floor_divide_follow_numpy():
    a = [-4.0, 5.5, 7.0, -0.5]
    assert values("eval", "x % 3", "--at", "x=[-4,5.5,7,-0.5]") == list(np.mod(a, 3))
    assert values("eval", "x // 3", "--at", "x=[-4,5.5,7,-0.5]") == list(np.floor_divide(a, 3))
    assert values("eval", "x % -3", "--at", "x=[-4,5.5]") == list(np.mod([-4.0, 5.5], -3))
    # Python's precedence: % and // bind as * and /
    assert float(ok("eval", "7 // 2 * 2 / 4 % 3 + 2 ** 2")) == 7 // 2 * 2 / 4 % 3 + 2 ** 2


def test_mod_derivatives():
    assert ok("grad", "a % b", "--at", "a=7.5,b=2") == "value\t1.5\nd/da\t1.0\nd/db\t-3.0\n"
    assert ok("grad", "a // b", "--at", "a=7.5,b=2") == "value\t3.0\nd/da\t0.0\nd/db\t0.0\n"


def test_gradcheck_calls_a_jump_of_mod_a_non_smooth_point():
    out = ok("gradcheck", "x % 2", "--at", "x=4")
    assert "non-smooth point, on a kink of mod" in out and "the function jumps there" in out


# ---------------------------------------------------------------- scans, triangles, flips

def test_cumsum_and_cumprod():
    assert values("eval", "cumsum(x)", "--at", "x=[1,2,3]") == [1.0, 3.0, 6.0]
    assert values("eval", "cumsum(A, axis=0)", "--at", "A=[[1,2],[3,4]]") == [[1.0, 2.0], [4.0, 6.0]]
    assert values("eval", "cumsum(A)", "--at", "A=[[1,2],[3,4]]") == [1.0, 3.0, 6.0, 10.0]
    assert values("eval", "cumprod(x)", "--at", "x=[1,2,3]") == [1.0, 2.0, 6.0]
    # exact at zeros: d/dx sum(cumprod(x)) at [1, 0, 3] is [1, 1 + 3, 0]
    assert ok("grad", "sum(cumprod(x))", "--at", "x=[1,0,3]") == "value\t1.0\nd/dx\t[1.0, 4.0, 0.0]\n"
    assert ok("grad", "sum(cumprod(x))", "--at", "x=[2,3,4]") == "value\t32.0\nd/dx\t[16.0, 10.0, 6.0]\n"
    assert "axis must be one integer" in fails("eval", "cumsum(A, axis=(0, 1))", "--at",
                                               "A=[[1,2],[3,4]]")


def test_log_softmax_is_stable():
    got = values("eval", "log_softmax(x)", "--at", "x=[1000,1001]")
    close(got, [-np.log1p(np.e), -np.log1p(np.exp(-1))])
    out = ok("grad", "log_softmax(x)[0]", "--at", "x=[1000,1001]").splitlines()
    close(json.loads(out[1].split("\t")[1]), [1 - 1 / (1 + np.e), -np.e / (1 + np.e)])


def test_diag_tril_triu_flip_cross():
    A = "A=[[1,2,3],[4,5,6],[7,8,9]]"
    assert values("eval", "diag(A)", "--at", A) == [1.0, 5.0, 9.0]
    assert values("eval", "diag(A, k=1)", "--at", A) == [2.0, 6.0]
    assert values("eval", "diag(v)", "--at", "v=[1,2]") == [[1.0, 0.0], [0.0, 2.0]]
    assert values("eval", "tril(A)", "--at", A) == np.tril(np.arange(1.0, 10).reshape(3, 3)).tolist()
    assert values("eval", "triu(A, 1)", "--at", A) == np.triu(np.arange(1.0, 10).reshape(3, 3), 1).tolist()
    assert values("eval", "flip(x)", "--at", "x=[1,2,3]") == [3.0, 2.0, 1.0]
    assert values("eval", "cross(a, b)", "--at", "a=[1,0,0],b=[0,1,0]") == [0.0, 0.0, 1.0]
    assert ok("grad", "sum(diag(A, k=1))", "--at", "A=[[1,2,3],[3,4,5]]") == (
        "value\t7.0\nd/dA\t[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]\n")
    assert "needs vectors of 3 elements" in fails("eval", "cross(a, a)", "--at", "a=[1,2]")
    assert "needs a matrix" in fails("eval", "tril(a)", "--at", "a=[1,2]")


def test_argmax_and_argmin_give_indices_without_derivative():
    assert float(ok("eval", "argmax(x)", "--at", "x=[1,5,2]")) == 1.0
    assert values("eval", "argmin(A, axis=1)", "--at", "A=[[3,1],[0,2]]") == [1.0, 0.0]
    assert ok("grad", "argmax(x) * sum(x)", "--at", "x=[1,5,2]") == "value\t8.0\nd/dx\t[1.0, 1.0, 1.0]\n"


# ---------------------------------------------------------------- mask indexing

def test_a_boolean_mask_selects_and_its_gradient_scatters_back():
    assert values("eval", "x[x > 0]", "--at", "x=[-1,2,0,3]") == [2.0, 3.0]
    assert ok("grad", "sum(x[x > 0] ** 2)", "--at", "x=[-1,2,0,3]") == (
        "value\t13.0\nd/dx\t[0.0, 4.0, 0.0, 6.0]\n")
    assert values("eval", "A[A > 1]", "--at", "A=[[1,2],[3,0]]") == [2.0, 3.0]
    assert values("eval", "A[A[:, 0] > 1]", "--at", "A=[[1,2],[3,0]]") == [[3.0, 0.0]]
    assert values("eval", "A[:, A[0] > 1]", "--at", "A=[[1,2],[3,0]]") == [[2.0], [0.0]]
    # second derivatives flow through the static index
    assert ok("hessian", "sum(x[x > 0] ** 3)", "--at", "x=[-1,2]") == (
        "value\t8.0\nd2/dx,dx\t[[0.0, 0.0], [0.0, 12.0]]\n")


def test_a_mask_of_the_wrong_shape_is_a_shape_error():
    err = fails("eval", "x[y > 0]", "--at", "x=[1,2,3],y=[1,2]")
    assert "a mask of shape (2,) cannot index axes of shape (3,)" in err


# ---------------------------------------------------------------- methods and shapes

@pytest.mark.parametrize("expr, want", [
    ("A.sum()", 21.0), ("A.mean(axis=0)", [2.5, 3.5, 4.5]), ("A.max()", 6.0),
    ("A.min(1)", [1.0, 4.0]), ("A.sum(0, keepdims=True)", [[5.0, 7.0, 9.0]]),
    ("A.reshape(3, 2)", [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
    ("A.reshape((3, 2)).T", [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]),
    ("A.transpose()", [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]),
    ("A.flatten().cumsum()", [1.0, 3.0, 6.0, 10.0, 15.0, 21.0]),
    ("A.argmax()", 5.0), ("(A.T @ A).trace()", 91.0),
])
def test_methods_are_the_functions_with_the_receiver_first(expr, want):
    got = values("eval", expr, "--at", "A=[[1,2,3],[4,5,6]]")
    assert got == want


def test_method_gradients_and_unknown_methods():
    assert ok("grad", "x.sum() * x.max()", "--at", "x=[1,3]") == "value\t12.0\nd/dx\t[3.0, 7.0]\n"
    err = fails("eval", "x.sine()", "--at", "x=1")
    assert "unknown method '.sine()'" in err
    assert "write sin(x, ...)" in fails("eval", "x.sin()", "--at", "x=1")


def test_shapes_given_positionally():
    assert values("eval", "ones(2, 3)") == [[1.0] * 3] * 2
    assert values("eval", "ones((2, 3))") == [[1.0] * 3] * 2
    assert values("eval", "zeros(2)") == [0.0, 0.0]
    assert values("eval", "reshape(arange(4), 2, 2)") == [[0.0, 1.0], [2.0, 3.0]]
    assert values("eval", "transpose(reshape(arange(6), 1, 2, 3), 2, 0, 1)") == (
        np.arange(6.0).reshape(1, 2, 3).transpose(2, 0, 1).tolist())


# ---------------------------------------------------------------- einsum

@pytest.mark.parametrize("subscripts, numpy_form", [
    ("ij,jk->ik", lambda a, b: a @ b), ("ij,ij", lambda a, b: np.sum(a * b)),
    ("ij,kj->ik", lambda a, b: a @ b.T), ("ij,ji->", lambda a, b: np.trace(a @ b)),
    ("i j , j k -> k i", lambda a, b: (a @ b).T),
])
def test_einsum_agrees_with_numpy(subscripts, numpy_form):
    a, b = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.5, -1.0], [2.0, 1.5]])
    got = values("eval", f"einsum('{subscripts}', a, b)", "--at",
                 "a=[[1,2],[3,4]],b=[[0.5,-1],[2,1.5]]")
    close(got, numpy_form(a, b))


def test_einsum_gradient_is_an_einsum():
    # d/dA sum(A @ v) = outer(1, v); d/dv = column sums of A
    assert ok("grad", "sum(einsum(\"ij,j->i\", A, v))", "--at", "A=[[1,2],[3,4]],v=[1,2]") == (
        "value\t16.0\nd/dA\t[[1.0, 2.0], [1.0, 2.0]]\nd/dv\t[4.0, 6.0]\n")
    out = ok("grad", "einsum('bi,bi->', x, x)", "--at", "x=[[1,2],[3,4]]")
    assert out == "value\t30.0\nd/dx\t[[2.0, 4.0], [6.0, 8.0]]\n"


@pytest.mark.parametrize("expr, message", [
    ("einsum('ii', A, A)", "names 1 operands; einsum takes 2"),
    ("einsum('ii,ij', A, A)", "an index repeats within 'ii' (for a trace or a diagonal use trace"),
    ("einsum('ij,jkl->ik', A, A)", "'jkl' does not fit an operand of shape (2, 2)"),
    ("einsum('ij,jk->iq', A, A)", "the output index q is in no operand"),
    ("einsum('ij,jk->ik', A)", "einsum() is missing b"),
    ("einsum(A, A)", "usage: einsum(subscripts, a, b)"),
    ("einsum(1, A, A)", "einsum() needs 'subscripts' as a string"),
    ("einsum('i1,jk', A, A)", "subscripts are letters"),
])
def test_einsum_errors_are_clear(expr, message):
    assert message in fails("eval", expr, "--at", "A=[[1,2],[3,4]]")


def test_methods_and_strings_in_scripts(tmp_path):
    script = tmp_path / "m.ad"
    script.write_text('def total(v):\n    return sum(v)\nx = [1, 2, 3]\nprint("sum", x.sum())\n'
                      'assert x.sum() > 5, "too small"\nreturn x.max() + total(x)\n')
    r = runner.invoke(app, ["eval", str(script)])
    assert r.exit_code == 0, r.output
    assert r.stdout == "9.0\n" and "sum 6.0" in r.stderr


# ---------------------------------------------------------------- numpy's semantics

NUMPY_FORMS = [
    ("cumsum", (3, 4), {"axis": None}, np.cumsum), ("cumsum", (3, 4), {"axis": -1}, np.cumsum),
    ("cumprod", (2, 3, 2), {"axis": 1}, np.cumprod), ("cumprod", (5,), {}, np.cumprod),
    ("flip", (2, 3), {}, np.flip), ("flip", (2, 3, 4), {"axis": (0, 2)}, np.flip),
    ("diag", (4,), {"k": -1}, np.diag), ("diag", (3, 5), {"k": 2}, np.diag),
    ("diag", (5, 3), {"k": -3}, np.diag), ("tril", (2, 3, 4), {"k": 1}, np.tril),
    ("triu", (4, 3), {"k": -1}, np.triu), ("argmax", (3, 4), {"axis": 0}, np.argmax),
    ("argmin", (3, 4), {"keepdims": True}, np.argmin),
    ("log_softmax", (3, 4), {"axis": 0},
     lambda x, axis: x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))),
]


@pytest.mark.parametrize("name, shape, attrs, numpy_form", NUMPY_FORMS)
def test_structural_functions_follow_numpy(name, shape, attrs, numpy_form):
    from adcli.graph import Graph
    x = np.random.default_rng(7).normal(size=shape)
    g = Graph()
    got = g.emit(name, g.input("x", x), **attrs).value
    want = numpy_form(x, **attrs)
    assert np.shape(got) == np.shape(want)
    close(got, want)


@pytest.mark.parametrize("subscripts, sa, sb", [
    ("ij,jk->ik", (3, 4), (4, 2)), ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    ("...ij,...jk->...ik", (2, 1, 3, 4), (5, 4, 2)), ("ij,kl", (2, 3), (4, 5)),
    ("i,i", (4,), (4,)), ("ij,j->i", (3, 4), (4,)), ("k...j,j->...k", (4, 2, 3), (3,)),
])
def test_einsum_follows_numpy(subscripts, sa, sb):
    from adcli.graph import Graph
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    g = Graph()
    got = g.emit("einsum", g.input("a", a), g.input("b", b), subscripts=subscripts).value
    want = np.einsum(subscripts, a, b)
    assert np.shape(got) == np.shape(want)
    close(got, want)


def test_einsum_is_charged_its_index_space():
    # the same contraction as matmul: 100**3 multiply-adds, over a budget that the
    # elementwise product of the same arrays fits in
    args = ["--max-work", "500000"]
    assert ok("eval", "sum(ones(100, 100) * ones(100, 100))", *args) == "10000.0\n"
    err = fails("eval", "sum(einsum('ij,jk->ik', ones(100, 100), ones(100, 100)))", *args)
    assert "einsum would bring the work of this run to 1,0" in err


@pytest.mark.parametrize("expr", ["sum(cumprod(A)**2)", "sum(cumsum(A, axis=1)**2)",
                                  "argmax(A)*sum(A)", "argmin(A, axis=0) @ sum(A, axis=1)",
                                  "einsum('ij,ij->', A, A)", "sum(log_softmax(A) * A)",
                                  "erf(A[0, 0]) + logit(A[0, 1] / 5)", "sum(A[A > 1.5] ** 3)"])
@pytest.mark.parametrize("method", ["central", "complex"])
def test_gradcheck_agrees_on_the_new_functions(expr, method):
    out = ok("gradcheck", expr, "--at", "A=[[1,2],[3,4.5]]", "--method", method, "--order", "2"
             if method == "central" else "1")
    assert "verdict\tpass" in out


@pytest.mark.parametrize("expr, message", [
    ("sum(x, axis='a')", "'axis' must be a number, got a string"),
    ("x.sum(keepdims='a')", "'keepdims' must be a number, got a string"),
    ("ones('a') + x", "'shape' must be a number, got a string"),
    ("x['a':]", "a slice bound must be a number, got a string"),
    ("x['a']", "indices must be integers, slices, None or a boolean mask"),
    ("'abc' * x", "the string 'abc' is not a value"),
])
def test_a_string_where_a_number_belongs_is_bad_input(expr, message):
    assert message in fails("eval", expr, "--at", "x=[1,2]")
