"""`adcli trace`: the evaluation trace (Wengert list), its adjoints, and its outputs."""
import json

import numpy as np
import pytest
from adcli import api, autodiff, wengert
from adcli.ops import public_ops

from test_cli import adcli, ok


def rows_of(*args):
    return json.loads(ok("trace", *args, "--json"))


def plain_rows(*args):
    lines = ok("trace", *args).splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, ln.split("\t"))) for ln in lines[1:]]


# ---------------------------------------------------------------- the worked example

def test_the_textbook_example_row_by_row():
    assert ok("trace", "x*(x+y)", "--at", "x=2,y=3") == (
        "id\top\tinputs\tshape\tvalue\tadjoint\n"
        "%0\tinput x\t\tscalar\t2.0\t7.0\n"
        "%1\tinput y\t\tscalar\t3.0\t2.0\n"
        "%2\tadd\t%0 %1\tscalar\t5.0\t2.0\n"
        "%3\tmul\t%0 %2\tscalar\t10.0\t1.0\n")


def test_json_rows():
    rows = rows_of("sum(A, axis=0)[1] * y", "--at", "A=[[1,2],[3,4]],y=3")
    # the index 1 is a static argument, not a node: its constant is not read by any row
    assert [r["op"] for r in rows] == ["input", "input", "sum", "index", "mul"]
    a, y, s, ix, out = rows
    assert a == {"id": 0, "op": "input", "name": "A", "inputs": [], "shape": [2, 2],
                 "value": [[1.0, 2.0], [3.0, 4.0]], "adjoint": [[0.0, 3.0], [0.0, 3.0]]}
    assert s["attrs"] == "axis=0" and s["inputs"] == [0] and s["shape"] == [2]
    assert s["value"] == [4.0, 6.0] and s["adjoint"] == [0.0, 3.0]
    assert ix["attrs"] == "[1]" and ix["value"] == 6.0 and ix["adjoint"] == 3.0
    assert out["inputs"] == [ix["id"], y["id"]] and out["adjoint"] == 1.0
    assert all("line" not in r for r in rows)          # an expression has no lines


# ---------------------------------------------------------------- every op by name

# A call for each op of the table that a generic rule cannot write.
CALLS = {
    "where": "where(x > 0.5, x, y)", "clip": "clip(x, 0.2, 0.4)",
    "sum": "sum(v, axis=0)", "prod": "prod(v)", "max": "max(v)", "min": "min(v)",
    "logsumexp": "logsumexp(v)", "softmax": "softmax(v)",
    "matmul": "M @ v", "trace": "trace(M)", "det": "det(M)", "inv": "inv(M)",
    "solve": "solve(M, v)", "transpose": "transpose(M)", "reshape": "reshape(M, (4,))",
    "broadcast_to": "broadcast_to(v, (3, 2))", "concat": "concat([v, v])",
    "stack": "stack([v, v])", "zeros": "zeros(2) + v", "ones": "ones(2) * v",
    "full": "full(2, 3.0) * v", "eye": "eye(2) @ v", "linspace": "linspace(0, 1, 2) * v",
    "arange": "arange(2) * v", "detach": "detach(x) * x",
    "cumsum": "cumsum(v)", "cumprod": "cumprod(v)", "tril": "tril(M)", "triu": "triu(M)",
    "diag": "diag(M)", "flip": "flip(v)", "cross": "cross(concat([v, v[:1]]), concat([v, v[1:]]))",
    "argmax": "argmax(v) * v", "argmin": "argmin(v) * v",
    "einsum": "einsum('ij,j->i', M, v)", "polygamma": "polygamma(x, n=2)",
}
# Composites: the table defines them by other ops, and the trace shows those.
COMPOSITES = {o.name for o in public_ops() if o.expand is not None}
RANDOM = {o.name for o in public_ops() if o.random}     # scripts only: see below
VALUES = {"x": "0.3", "y": "0.6", "z": "0.9", "v": "[1.5,2.5]", "M": "[[2,1],[1,3]]"}


def at(expr):
    """--at with a value for each of the names x, y, z, v, M that `expr` uses."""
    import re
    used = [k for k in VALUES if re.search(rf"\b{k}\b", expr)]
    return ["--at", ",".join(f"{k}={VALUES[k]}" for k in used)] if used else []


def call_for(op):
    if op.name in CALLS:
        return CALLS[op.name]
    assert op.kind in ("elementwise", "comparison") and not op.attrs, \
        f"tests/test_wengert.py: write a call of {op.name} in CALLS"
    return f"{op.name}({', '.join('xyz'[:len(op.args)])})"


@pytest.mark.parametrize("name", [o.name for o in public_ops()
                                  if o.name not in COMPOSITES | RANDOM])
def test_every_op_appears_by_name(name):
    from adcli.ops import OPS
    expr = call_for(OPS[name])
    names = {ln.split("\t")[1].split()[0]
             for ln in ok("trace", expr, *at(expr), "--plain").splitlines()[1:]}
    assert name in names, f"{expr}: {names}"


def test_composites_show_the_ops_they_are_made_of():
    for name in COMPOSITES:
        expr = f"{name}(v)" if name not in ("dot", "outer") else f"sum({name}(v, v))"
        rows = rows_of(expr, *at(expr))
        ops = {r["op"] for r in rows}
        assert ops - {"input", "const"}, name


def test_random_ops_appear_by_name_in_a_script(tmp_path):
    script = tmp_path / "r.ad"
    script.write_text("input x = 1\nreturn sum(x * randn(2) + rand(2) + randint(0, 3, 2))\n")
    ops = {r["op"] for r in rows_of(str(script))}
    assert RANDOM <= ops


def test_an_expression_of_many_ops_on_the_command_line():
    expr = ("sum(sin(x) * exp(y) - log(1 + x**2) / sqrt(y)) + max(tanh(x))"
            " + sum(A @ x) + det(A) + norm(x) + where(y > 1, y, -y)[0]")
    rows = plain_rows(expr, "--at", "x=[0.5,1.5],y=[2,0.5],A=[[1,2],[3,4]]")
    ops = {r["op"].split()[0] for r in rows}
    for name in ["input", "const", "sin", "exp", "log", "sqrt", "pow", "add", "sub", "mul",
                 "div", "sum", "max", "tanh", "matmul", "det", "gt", "neg", "where", "index"]:
        assert name in ops, name


# ---------------------------------------------------------------- adjoints are derivatives

GRADIENT_CASES = [
    ("x*(x+y)", {"x": 2.0, "y": 3.0}),
    ("c*sin(x)+x+c", {"x": 5.0, "c": 3.0}),
    ("mean(log(x**2+1)+5*x)", {"x": [0.0, 1, 2, 3, 4]}),
    ("sum(solve(A, b)) + det(A) * sum(softmax(b))", {"A": [[2.0, 1], [0.5, 4]], "b": [1.0, -1]}),
    ("sum(max(x, 0)) + prod(x) + logsumexp(x)", {"x": [-1.0, 0, 2]}),
    ("where(x > 0, sqrt(x), 0)", {"x": 0.0}),           # the NaN-safe convention
    ("sqrt(x**2 + y**2)", {"x": 0.0, "y": 0.0}),
    ("sum(x[::2] * x[1:3]) + x.T[0]", {"x": [1.0, 2, 3, 4]}),
    ("sum(detach(x) * x)", {"x": [1.0, 2]}),
]


@pytest.mark.parametrize("expr,values", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_the_adjoints_of_the_inputs_are_the_gradient(expr, values):
    at = ",".join(f"{k}={json.dumps(v)}" for k, v in values.items())
    rows = rows_of(expr, "--at", at)
    grad = json.loads(ok("grad", expr, "--at", at, "--json"))["grad"]
    adjoints = {r["name"]: r["adjoint"] for r in rows if r["op"] == "input"}
    assert adjoints.keys() == grad.keys()
    for name in grad:
        np.testing.assert_allclose(adjoints[name], grad[name], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("script,at", [
    ("samples/linnainmaa.ad", []),
    ("samples/gradient_descent.ad", []),
    ("samples/doubling.ad", []),
    ("samples/indexed_assignment.ad", []),
    ("samples/linear_regression.ad", ["--at", "theta=[1,-2,3,-4,5]"]),
])
def test_the_adjoints_of_a_scripts_inputs_are_the_gradient(script, at):
    traced = api.trace_script(open(script).read(), _values(at), filename=script)
    with np.errstate(all="ignore"):          # as the CLI: d(a**b)/db is NaN for a < 0
        rows, note = wengert.wengert_list(traced)
    assert note is None
    grad = api.gradient(traced)
    adjoints = {r["name"]: r["adjoint"] for r in rows if "name" in r}
    for name, g in grad.grad.items():
        np.testing.assert_allclose(adjoints[name], g, rtol=1e-12, atol=1e-14)


def _values(at):
    from adcli import values
    from adcli.graph import Limits
    return values.resolve(at[1:], np.float64, Limits())


def _replay(graph, output, changed):
    """The output's value when node `changed[0]` takes value `changed[1]`: the recorded
    ops run again forward (an independent check of what an adjoint means)."""
    vals = {changed[0]: changed[1]}
    for n in graph.nodes[changed[0] + 1:output.id + 1]:
        if n.op is not None and n.args:
            vals[n.id] = n.op.fwd(np, *[vals.get(a.id, a.value) for a in n.args], **n.attrs)
    return vals.get(output.id, output.value)


@pytest.mark.parametrize("expr", ["sin(x)*y + x**2/y - exp(-x*y)",
                                  "sum(tanh(v) * v) + max(v) * norm(v)",
                                  "log(sum(exp(v)))"])
def test_every_adjoint_is_the_derivative_of_the_output_by_its_node(expr):
    point = {"v": np.array([0.2, -0.5, 0.9])} if "(v)" in expr else {"x": np.array(0.7), "y": np.array(1.3)}
    traced = api.trace(expr, point)
    rows, _ = wengert.wengert_list(traced)
    graph, out = traced.graph, traced.output
    h = 1e-6
    for r in rows:
        node = graph.nodes[r["id"]]
        if node.dtype.kind != "f" or r["adjoint"] is None:
            assert r["adjoint"] is None and (node.dtype.kind != "f" or r["op"] == "const")
            continue
        rng = np.random.default_rng(r["id"])
        u = rng.normal(size=node.shape)
        numeric = (_replay(graph, out, (node.id, node.value + h * u))
                   - _replay(graph, out, (node.id, node.value - h * u))) / (2 * h)
        np.testing.assert_allclose(np.sum(r["adjoint"] * u), numeric, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{expr}: %{r['id']} {r['text']}")


def test_adjoints_agree_with_vjp_for_every_node():
    traced = api.trace("sum(A @ x) * sum(x)", {"A": np.array([[1.0, 2], [3, 4]]), "x": np.array([1.0, -1])})
    adj = autodiff.adjoints(traced.graph, traced.output)
    for i, g in adj.items():
        (expected,) = autodiff.vjp(traced.graph, traced.output, [traced.graph.nodes[i]])
        np.testing.assert_allclose(g, expected)


# ---------------------------------------------------------------- scripts name their lines

def test_a_scripts_rows_name_their_lines():
    rows = rows_of("samples/linnainmaa.ad")
    assert {r["name"]: r["line"] for r in rows if r["op"] == "input"} == {"x1": 3, "x2": 4}
    assert {r["line"] for r in rows if r["op"] not in ("input",)} == {5}
    text = ok("trace", "samples/linnainmaa.ad")
    assert text.splitlines()[0].endswith("\tline")
    assert all(ln.rsplit("\t", 1)[1] in ("3", "4", "5") for ln in text.splitlines()[1:])


def test_a_loops_rows_name_the_lines_of_its_body(tmp_path):
    script = tmp_path / "cube.ad"
    script.write_text("input x = 2\ny = x\nfor i in range(3):\n    y = y * x\n\nreturn y + 1\n")
    rows = rows_of(str(script))
    assert [(r["op"], r["line"]) for r in rows if r["op"] not in ("input", "const")] == \
        [("mul", 4), ("mul", 4), ("mul", 4), ("add", 6)]
    assert rows[-1]["adjoint"] == 1.0 and rows[0]["adjoint"] == 32.0


def test_the_terminal_table_shows_the_source_lines():
    from rich.console import Console
    traced = api.trace_script(open("samples/linnainmaa.ad").read(), {},
                              filename="samples/linnainmaa.ad")
    rows, _ = wengert.wengert_list(traced)
    console = Console(record=True, width=160, force_terminal=False)
    wengert.to_rich(rows, console, traced.label, traced.source)
    text = console.export_text()
    assert "samples/linnainmaa.ad" in text and "input x1" in text
    assert "5: return (1 + x2)" in text


# ---------------------------------------------------------------- sizes, notes, errors

def test_large_arrays_are_summarised_unless_full():
    rows = plain_rows("sum(x**2)", "--at", "x=linspace(0,1,11)")
    assert rows[0]["value"] == "[0.0, 0.1, 0.2, ..., 0.8, 0.9, 1.0]"
    assert rows[0]["shape"] == "11"
    full = ok("trace", "sum(x**2)", "--at", "x=linspace(0,1,11)", "--full").splitlines()[1]
    assert full.split("\t")[4].count(",") == 10
    rows = rows_of("sum(x**2)", "--at", "x=linspace(0,1,5)")
    assert rows[0]["value"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    rows = rows_of("sum(x)", "--at", "x=ones(1001)")
    assert rows[0]["value"] == "[1.0, 1.0, 1.0, ..., 1.0, 1.0, 1.0]"
    rows = json.loads(ok("trace", "sum(x)", "--at", "x=ones(1001)", "--json", "--full"))
    assert rows[0]["value"] == [1.0] * 1001 and rows[0]["adjoint"] == [1.0] * 1001


def test_a_value_that_is_not_one_number_has_no_adjoints():
    r = adcli("trace", "[x, 2*x]", "--at", "x=1", "--json")
    assert r.exit_code == 0
    assert all(row["adjoint"] is None for row in json.loads(r.stdout))
    assert "adjoints (gradients) need a value that is one number" in r.stderr
    rows = rows_of("x > 1", "--at", "x=2")
    assert rows[-1]["value"] is True and rows[-1]["adjoint"] is None


def test_comparisons_have_no_adjoint_and_unused_paths_have_zero():
    rows = rows_of("where(x > 1, x, 2*x) + detach(x)", "--at", "x=2")
    by_op = {r["op"]: r for r in rows}
    assert by_op["gt"]["adjoint"] is None
    assert by_op["detach"]["adjoint"] == 1.0
    assert by_op["input"]["adjoint"] == 1.0         # through where's chosen branch only


def test_nan_and_inf_in_the_table():
    rows = plain_rows("log(x)", "--at", "x=0")
    assert rows[-1]["value"] == "-inf" and rows[0]["adjoint"] == "inf"
    assert rows_of("log(x)", "--at", "x=0")[-1]["value"] == "-inf"


def test_trace_needs_values_and_reports_errors():
    r = adcli("trace", "x+y", "--at", "x=1")
    assert r.exit_code == 2 and "no value for 'y'" in r.stderr
    r = adcli("trace", "sin(x", "--at", "x=1")
    assert r.exit_code == 2 and "syntax error" in r.stderr and "Traceback" not in r.output


def test_stdin_and_dtype():
    rows = json.loads(ok("trace", "-", "--at", "x=3", "--dtype", "float32", "--json", input="x**2\n"))
    assert rows[-1]["value"] == 9.0 and rows[0]["adjoint"] == 6.0
