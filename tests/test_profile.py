"""adcli profile: every op by name, forward and backward; totals that add up; sort keys;
per-line tables for scripts; Chrome trace files. Times are never compared, only their sums."""
import csv
import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adcli import api, profile
from adcli.cli import app

runner = CliRunner()

MANY = ("sum(exp(x) * sin(x) + cos(x) / (1 + x**2) - tanh(x) + log1p(x*x) + sqrt(x*x + 1)"
        " + maximum(x, 1.5) + abs(x) + sigmoid(x))")
MANY_OPS = ["sum", "exp", "mul", "sin", "add", "cos", "div", "pow", "sub", "tanh", "log1p",
            "sqrt", "maximum", "abs", "sigmoid"]

SCRIPT = """input x = 2.0
y = sin(x)
z = y * x

return z + exp(x)
"""


def adcli(*args, input=None):
    return runner.invoke(app, ["profile", *args], input=input)


def ok(*args, input=None):
    r = adcli(*args, input=input)
    assert r.exit_code == 0, r.output + r.stderr
    return r.stdout


def profile_json(*args, input=None):
    return json.loads(ok(*args, "--format", "json", input=input))


def rows_by_key(obj):
    return {(r["op"], r["phase"]): r for r in obj["rows"]}


# ---------------------------------------------------------------- what is measured

def test_every_op_appears_by_name_forward_and_backward():
    obj = profile_json(MANY, "--at", "x=[1,2,3]", "--repeat", "2")
    rows = rows_by_key(obj)
    for name in MANY_OPS:
        assert (name, "forward") in rows, name
        assert (name, "backward") in rows, name
    assert ("(tracing overhead)", "forward") in rows
    assert ("(backward overhead)", "backward") in rows
    assert all(r["self_total"] >= 0 and r["calls"] > 0 for r in obj["rows"])


def test_every_op_appears_in_the_plain_table():
    out = ok(MANY, "--at", "x=[1,2,3]", "--repeat", "1")
    lines = out.splitlines()
    assert "times in" in lines[0]
    for name in MANY_OPS:
        assert any(line.split()[:2] == [name, "forward"] for line in lines), name
        assert any(line.split()[:2] == [name, "backward"] for line in lines), name
    assert lines[-1].startswith("total") and lines[-1].rstrip().endswith("100.0%")


def test_calls_are_repeat_times_occurrences():
    obj = profile_json("x*x*x + sin(x)", "--at", "x=0.5", "--repeat", "4")
    rows = rows_by_key(obj)
    assert rows[("mul", "forward")]["calls"] == 8
    assert rows[("mul", "backward")]["calls"] == 8
    assert rows[("sin", "forward")]["calls"] == 4
    assert rows[("add", "backward")]["calls"] == 4
    assert rows[("(tracing overhead)", "forward")]["calls"] == 4
    assert obj["repeat"] == 4 and obj["unit"] == "ns"


def test_input_shapes_are_listed():
    obj = profile_json("sum(A @ x) + sum(x * 2)", "--at", "A=[[1,2],[3,4]],x=[1,1]",
                       "--repeat", "1")
    rows = rows_by_key(obj)
    assert rows[("matmul", "forward")]["shapes"] == [[[2, 2], [2]]]
    assert rows[("mul", "forward")]["shapes"] == [[[2], []]]
    out = ok("sum(A @ x)", "--at", "A=[[1,2],[3,4]],x=[1,1]", "--repeat", "1")
    assert "(2, 2), (2,)" in out


def test_a_value_that_is_not_a_scalar_is_profiled_forward_only():
    r = adcli("sin(x)", "--at", "x=[1,2]", "--repeat", "2", "--json")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["gradient"] is False
    assert {r["phase"] for r in obj["rows"]} == {"forward"}
    assert "profiling the value only" in r.stderr


def test_the_gradient_follows_wrt():
    obj = profile_json("sin(x) * exp(y)", "--at", "x=1,y=2", "--wrt", "x", "--repeat", "1")
    rows = rows_by_key(obj)
    assert ("sin", "backward") in rows and ("exp", "backward") not in rows


# ---------------------------------------------------------------- formats add up

def test_json_total_is_the_sum_of_its_rows():
    obj = profile_json(MANY, "--at", "x=[1,2,3]", "--repeat", "3")
    assert obj["total"] == sum(r["self_total"] for r in obj["rows"])
    assert sum(r["share"] for r in obj["rows"]) == pytest.approx(1.0)
    for r in obj["rows"]:
        assert r["mean"] == pytest.approx(r["self_total"] / r["calls"])


def read_csv(text):
    """The tables of a profile CSV, split at blank lines: [[header, rows...], ...]."""
    tables = [[]]
    for row in csv.reader(io.StringIO(text)):
        if not row:
            tables.append([])
        else:
            tables[-1].append(row)
    return tables


def test_csv_total_row_is_the_sum_of_its_rows():
    (table,) = read_csv(ok(MANY, "--at", "x=[1,2,3]", "--repeat", "2", "--format", "csv"))
    header, rows, total = table[0], table[1:-1], table[-1]
    assert header == ["op", "phase", "calls", "self_ns", "mean_ns", "share", "shapes"]
    assert total[0] == "total"
    assert int(total[3]) == sum(int(r[3]) for r in rows)
    assert {r[0] for r in rows} >= set(MANY_OPS)
    assert all(int(r[2]) > 0 and int(r[3]) >= 0 for r in rows)


def test_script_csv_has_a_per_line_table_that_adds_up(tmp_path):
    path = tmp_path / "f.ad"
    path.write_text(SCRIPT)
    ops, lines = read_csv(ok(str(path), "--repeat", "2", "--format", "csv", "--sort", "name"))
    assert int(ops[-1][3]) == sum(int(r[3]) for r in ops[1:-1])
    assert lines[0] == ["line", "phase", "calls", "self_ns", "share", "source"]
    assert int(lines[-1][3]) == sum(int(r[3]) for r in lines[1:-1])
    # the lines table has the ops' time: the op table without its overhead rows
    op_time = sum(int(r[3]) for r in ops[1:-1] if not r[0].startswith("("))
    assert int(lines[-1][3]) == op_time


# ---------------------------------------------------------------- scripts: by source line

def test_scripts_get_their_time_by_source_line(tmp_path):
    path = tmp_path / "f.ad"
    path.write_text(SCRIPT)
    obj = profile_json(str(path), "--repeat", "2")
    by_line = {(r["line"], r["phase"]): r for r in obj["lines"]}
    assert {k for k in by_line} == {(2, "forward"), (3, "forward"), (5, "forward"),
                                   (2, "backward"), (3, "backward"), (5, "backward")}
    assert by_line[(2, "forward")]["source"] == "y = sin(x)"
    assert by_line[(5, "backward")]["source"] == "return z + exp(x)"
    assert by_line[(2, "forward")]["calls"] == 2          # sin, once per run
    assert by_line[(5, "forward")]["calls"] == 4          # exp and add
    assert obj["lines_total"] == sum(r["self_total"] for r in obj["lines"])
    out = ok(str(path), "--repeat", "1", "--sort", "name")
    assert "by source line" in out
    assert any(line.split()[:2] == ["3", "backward"] and line.endswith("z = y * x")
               for line in out.splitlines())


def test_an_expression_has_no_line_table():
    obj = profile_json("x*y", "--at", "x=1,y=2", "--repeat", "1")
    assert "lines" not in obj
    assert "by source line" not in ok("x*y", "--at", "x=1,y=2", "--repeat", "1")


def test_a_script_print_shows_once(tmp_path):
    path = tmp_path / "p.ad"
    path.write_text('input x = 1.0\nprint("hello", x)\nreturn x * x\n')
    r = adcli(str(path), "--repeat", "3")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("hello") == 1


def test_stdin_is_read_once():
    obj = json.loads(ok("-", "--at", "x=1,y=2", "--repeat", "3", "--json", input="x*y\n"))
    assert rows_by_key(obj)[("mul", "forward")]["calls"] == 3


# ---------------------------------------------------------------- sort keys

def op_rows(obj):
    return [r for r in obj["rows"] if not r["overhead"]]


def test_sort_keys():
    args = (MANY, "--at", "x=[1,2,3]", "--repeat", "2")
    by_self = profile_json(*args, "--sort", "self")
    times = [r["self_total"] for r in op_rows(by_self)]
    assert times == sorted(times, reverse=True)
    by_calls = profile_json(*args, "--sort", "calls")
    calls = [r["calls"] for r in op_rows(by_calls)]
    assert calls == sorted(calls, reverse=True)
    by_name = profile_json(*args, "--sort", "name")
    names = [(r["op"], ["forward", "backward"].index(r["phase"])) for r in op_rows(by_name)]
    assert names == sorted(names)
    for obj in (by_self, by_calls, by_name):       # the overhead rows come last
        assert [r["overhead"] for r in obj["rows"]][-2:] == [True, True]


def test_sort_name_is_deterministic_in_csv():
    out = ok("x*(x+y)", "--at", "x=2,y=3", "--repeat", "3", "--format", "csv", "--sort", "name")
    firsts = [line.split(",")[:3] for line in out.splitlines()]
    assert firsts == [["op", "phase", "calls"], ["add", "forward", "3"], ["add", "backward", "3"],
                      ["mul", "forward", "3"], ["mul", "backward", "3"],
                      ["(tracing overhead)", "forward", "3"],
                      ["(backward overhead)", "backward", "3"], ["total", "", ""]]


@pytest.mark.parametrize("args", [("--sort", "time"), ("--format", "xml"), ("--repeat", "0")])
def test_bad_options_exit_2(args):
    r = adcli("x*y", "--at", "x=1,y=2", *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output + r.stderr


def test_errors_of_the_source_exit_2_and_leave_profiling_off():
    r = adcli("x*", "--at", "x=1")
    assert r.exit_code == 2 and "syntax error" in r.stderr
    # nothing global: a graph traced without hooks has none
    assert api.trace("x*2", {"x": np.float64(1.0)}).graph.hooks == ()


# ---------------------------------------------------------------- --trace

def test_trace_writes_chrome_trace_events(tmp_path):
    out = tmp_path / "out.json"
    ok("sum(sin(x) * x)", "--at", "x=[1,2,3]", "--repeat", "2", "--trace", str(out))
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    for e in slices:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= set(e)
        assert e["ts"] >= 0 and e["dur"] >= 0
    spans = {e["name"]: e for e in slices if e["cat"] == "run"}
    assert set(spans) == {"trace", "gradient"}
    ops = [e for e in slices if e["cat"] in ("forward", "backward")]
    # the first timed run only: one event per op execution
    assert sorted((e["name"], e["cat"]) for e in ops) == sorted(
        [("sin", "forward"), ("mul", "forward"), ("sum", "forward"),
         ("sin", "backward"), ("mul", "backward"), ("sum", "backward")])
    for e in ops:      # each op sits inside its phase's span
        span = spans["trace" if e["cat"] == "forward" else "gradient"]
        assert span["ts"] <= e["ts"] and e["ts"] + e["dur"] <= span["ts"] + span["dur"] + 1e-3
        assert e["args"]["line"] == 1


def test_trace_to_an_unwritable_place_exits_2(tmp_path):
    r = adcli("x*y", "--at", "x=1,y=2", "--repeat", "1", "--trace", str(tmp_path / "no" / "t.json"))
    assert r.exit_code == 2 and "--trace" in r.stderr


# ---------------------------------------------------------------- the library and its hooks

def test_library_profile_and_the_device_sync_hook():
    calls = []
    prof = profile.Profiler()
    prof.sync = lambda: calls.append(1)      # what a GPU backend's hook would do
    prof.begin("forward")
    node = api.trace("x*3", {"x": np.float64(2.0)}).output
    # the evaluator's hook: hook(node, args, compute) -> value
    assert prof.hook(node, (2.0, 3.0), lambda args: args[0] * args[1]) == 6.0
    assert len(calls) == 2 and prof.forward_records[0][0] is node
    prof.begin("backward")
    prof.mark(None)
    assert len(calls) == 3 and prof.marks[0] is None
    prof.begin(None)
    assert prof.mark is None and prof.hook is None
    assert profile.sync_hook(np) is None


def test_the_timing_hook_is_an_evaluator_hook():
    from adcli.evaluate import evaluate
    prof = profile.Profiler()
    prof.begin("forward")
    x = np.linspace(0.0, 1.0, 100)    # larger than the arrays the tracer computes at once
    traced = api.trace("sum(sin(x) * x)", {"x": x})
    got = evaluate(traced.graph, [traced.output], hooks=(prof.hook,))[traced.output.id]
    assert got == pytest.approx(np.sum(np.sin(x) * x))
    assert [n.op.name for n, _, _ in prof.forward_records] == ["sin", "mul", "sum"]


def test_library_profile_rows_add_up():
    # make_traced(hooks) traces with the evaluator hooks on the graph (nothing global)
    made = []

    def make(hooks=()):
        made.append(api.trace("x*x + 1", {"x": np.float64(3.0)}, hooks=hooks))
        return made[-1]
    p = profile.profile(make, None, 3)
    assert p.total_ns == sum(r.self_ns for r in p.rows)
    assert {(r.op, r.phase) for r in p.rows} >= {("mul", "forward"), ("mul", "backward"),
                                                 ("add", "forward"), ("add", "backward")}
    assert made[0].graph.hooks == () and all(t.graph.hooks == () for t in made)


def test_unit_is_chosen_for_readability():
    assert profile.choose_unit([300.0, 900.0, 2000.0])[0] == "ns"
    assert profile.choose_unit([3e3, 9e3, 2e4])[0] == "us"
    assert profile.choose_unit([3e6, 9e6, 2e4])[0] == "ms"
    assert profile.choose_unit([3e9, 9e9, 2e10])[0] == "s"


def test_trace_events_are_capped():
    def make(hooks=()):
        return api.trace("sin(x) * x + x", {"x": np.float64(3.0)}, hooks=hooks)
    p = profile.profile(make, None, 2, trace_events=True, max_events=2)
    ops = [e for e in p.events if e.get("cat") in ("forward", "backward")]
    assert len(ops) == 2 and p.dropped_events == 4      # 3 ops forward, 3 backward, once


# ---------------------------------------------------------------- the derivative commands

TANH = ("tanh(A @ x) + x", "A=[[1,2],[3,4]],x=[1,1]", {"matmul", "tanh", "add"})
SIN = ("sum(sin(x) * x)", "x=[1,2,3]", {"sin", "mul", "sum"})


# ops: the expression's, each with a forward row; swept: ops of the derivative programs
# that the Jacobian's and Hessian's batched sweeps evaluate (tanh's derivative is written
# with sech; the Hessian's program recomputes sin(x) and cos(x), not the sum), and the
# ops whose rules the walks of jvp and hvp run
@pytest.mark.parametrize("flag, extra, expr, at, ops, swept", [
    ("--jacobian", (), *TANH, {"matmul", "sech", "add"}),
    ("--jacobian", ("--mode", "rev"), *TANH, {"matmul", "sech", "sum_to"}),
    ("--hessian", (), *SIN, {"sin", "cos", "mul0"}),
    ("--jvp", ("--tangent", "x=[1,0]"), *TANH, TANH[2]),
    ("--hvp", ("--vector", "x=[1,0,0]"), *SIN, {"sin"}),
])
def test_derivative_commands_are_profiled_op_by_op(flag, extra, expr, at, ops, swept):
    obj = profile_json(expr, "--at", at, flag, *extra, "--repeat", "2")
    assert obj["derivative"] == flag[2:] and obj["gradient"] is False
    rows = rows_by_key(obj)
    for name in ops:
        assert (name, "forward") in rows, name
    for name in swept:
        assert (name, "derivative") in rows, name
    assert {r["phase"] for r in obj["rows"]} == {"forward", "derivative"}
    assert rows[("(derivative overhead)", "derivative")]["calls"] == 2
    assert obj["total"] == sum(r["self_total"] for r in obj["rows"])
    out = ok(expr, "--at", at, flag, *extra, "--repeat", "1", "--sort", "name")
    assert f"the work of adcli {flag[2:]}" in out.splitlines()[0]
    for name in swept:
        assert any(line.split()[:2] == [name, "derivative"] for line in out.splitlines()), name


@pytest.mark.parametrize("flag", ["--jacobian", "--hessian"])
def test_a_jacobian_or_hessian_is_timed_as_its_batched_sweep(flag):
    # the command's own work: every basis vector in one evaluation of the derivative
    # program, so an op's calls do not grow with the input's size (one walk per basis
    # vector, which the command does not do, would make them grow)
    expr = "sum(sin(x) * 2)" if flag == "--hessian" else "sin(x) * 2"
    calls = []
    for x in ("[1,2,3]", "[1,2,3,4,5,6,7,8,9]"):
        obj = profile_json(expr, "--at", f"x={x}", flag, "--repeat", "2")
        rows = rows_by_key(obj)
        assert rows[("sin", "forward")]["calls"] == 2
        calls.append({k: r["calls"] for k, r in rows.items() if k[1] == "derivative"})
    assert calls[0] == calls[1] and ("mul0", "derivative") in calls[0]


def test_derivative_trace_events_and_script_lines(tmp_path):
    path = tmp_path / "f.ad"
    path.write_text(SCRIPT)
    out = tmp_path / "t.json"
    obj = profile_json(str(path), "--hessian", "--repeat", "1", "--trace", str(out))
    assert {(r["line"], r["phase"]) for r in obj["lines"]} >= {(2, "forward"), (2, "derivative")}
    events = json.loads(out.read_text())["traceEvents"]
    assert {e["name"] for e in events if e.get("cat") == "run"} == {"trace", "hessian"}
    assert "sin" in {e["name"] for e in events if e.get("cat") == "derivative"}


@pytest.mark.parametrize("args, message", [
    (("--jacobian", "--hessian"), "one derivative at a time"),
    (("--jvp",), "needs --tangent"),
    (("--hvp",), "needs --vector"),
    (("--tangent", "x=1"), "--tangent is for profile --jvp"),
    (("--mode", "fwd"), "--mode is for profile --jacobian"),
])
def test_derivative_options_that_do_not_fit_exit_2(args, message):
    r = adcli("x*y", "--at", "x=1,y=2", *args)
    assert r.exit_code == 2 and message in r.stderr, r.output + r.stderr


def test_a_hessian_needs_a_scalar_value():
    r = adcli("sin(x)", "--at", "x=[1,2]", "--hessian")
    assert r.exit_code == 2 and "hessian needs a scalar value" in r.stderr


# ---------------------------------------------------------------- fused kernels

from adcli import kernels                                    # noqa: E402
from adcli.kernels import cpu                                # noqa: E402

needs_compiler = pytest.mark.skipif(cpu.compiler() is None, reason="no C compiler")
FUSED_EXPR = "sum(sin(x)*exp(-x*x) + log1p(x*x))"
FUSED_SCRIPT = """input x = linspace(-2, 2, 8192)
y = sin(x) * exp(-x*x)
z = log1p(x*x)
return sum(y + z)
"""


@pytest.fixture
def fusing(tmp_path):
    old = kernels.configure(cache_dir=str(tmp_path / "kernels"), enabled=True)
    yield
    kernels.configure(**old)


def fused_rows(obj):
    return [r for r in obj["rows"] if r["op"].startswith("fused(")]


@needs_compiler
def test_a_fused_kernel_is_one_row_naming_its_ops(fusing):
    obj = profile_json(FUSED_EXPR, "--at", "x=linspace(-2,2,8192)", "--repeat", "3")
    (row,) = fused_rows(obj)
    assert row["op"] == "fused(sin, neg, mul, exp, log1p, add, sum)"
    assert row["phase"] == "forward" and row["calls"] == 3
    assert row["shapes"] == [[[8192]]]
    ops = {(r["op"], r["phase"]) for r in obj["rows"]}
    assert ("sin", "forward") not in ops and ("sin", "backward") in ops   # the walk: per op
    assert sum(r["self_total"] for r in obj["rows"]) == obj["total"]


@needs_compiler
def test_a_large_elementwise_sum_is_profiled_as_grad_runs_it(fusing):
    # from 2^15 elements adcli grad computes the value and the gradient in one kernel
    # (adcli/chunks.py): profile times that kernel, in the backward phase, and no walk
    obj = profile_json(FUSED_EXPR, "--at", "x=linspace(-2,2,40000)", "--repeat", "2")
    (row,) = fused_rows(obj)
    assert row["phase"] == "backward" and row["calls"] == 2
    assert {"sin", "cos", "sum"} <= set(row["op"][len("fused("):-1].split(", "))
    ops = {(r["op"], r["phase"]) for r in obj["rows"] if not r["overhead"]}
    assert not any(phase == "forward" for _, phase in ops)
    assert ("sin", "backward") not in ops
    assert sum(r["self_total"] for r in obj["rows"]) == obj["total"]


@needs_compiler
def test_no_fuse_keeps_the_per_op_table(fusing):
    r = runner.invoke(app, ["--no-fuse", "profile", FUSED_EXPR, "--at", "x=linspace(-2,2,8192)",
                            "--repeat", "1", "--format", "json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert not fused_rows(obj)
    assert {"sin", "exp", "log1p"} <= {r["op"] for r in obj["rows"] if r["phase"] == "forward"}


@needs_compiler
def test_small_arrays_are_profiled_op_by_op(fusing):
    obj = profile_json(FUSED_EXPR, "--at", "x=[1,2,3]", "--repeat", "1")
    assert not fused_rows(obj)


@needs_compiler
def test_a_kernel_is_split_over_the_lines_of_its_ops(fusing):
    obj = profile_json("-", "--repeat", "2", input=FUSED_SCRIPT)
    (row,) = fused_rows(obj)
    forward = {r["line"]: r for r in obj["lines"] if r["phase"] == "forward"}
    # the kernel's ops sit on lines 2 (5 ops), 3 (2) and 4 (2): its time, split 5:2:2
    assert {2, 3, 4} <= set(forward)
    assert sum(forward[k]["self_total"] for k in (2, 3, 4)) == row["self_total"]
    assert forward[2]["self_total"] >= forward[3]["self_total"] * 2
    assert all(forward[k]["calls"] == 2 for k in (2, 3, 4))
    assert sum(r["self_total"] for r in obj["lines"]) == obj["lines_total"]


@needs_compiler
def test_the_trace_file_has_one_event_per_kernel(fusing, tmp_path):
    path = tmp_path / "t.json"
    ok(FUSED_EXPR, "--at", "x=linspace(-2,2,8192)", "--repeat", "1", "--trace", str(path))
    events = json.loads(path.read_text())["traceEvents"]
    kernels_run = [e for e in events if e.get("cat") == "forward"]
    assert [e["name"] for e in kernels_run] == ["fused(sin, neg, mul, exp, log1p, add, sum)"]
    assert kernels_run[0]["args"]["nodes"].startswith("%")


@needs_compiler
def test_nan_watching_hooks_still_see_every_op(fusing):
    """A hook that does not take fused groups (the NaN watch of first_nonfinite, anomaly
    checks) keeps the op-by-op path: it sees every op's value."""
    from adcli.evaluate import evaluate
    t = api.trace("sin(x)*exp(-x*x) + log1p(x*x)", {"x": np.linspace(-2, 2, 8192)})
    seen = []

    def watch(node, args, compute):
        seen.append(node.op.name)
        return compute(args)
    v = evaluate(t.graph, [t.output], {t.inputs["x"]: np.linspace(-1, 1, 8192)}, hooks=[watch])
    assert {"sin", "exp", "log1p", "add"} <= set(seen)
    x = np.linspace(-1, 1, 8192)
    assert np.allclose(v[t.output.id], np.sin(x) * np.exp(-x * x) + np.log1p(x * x))


def test_a_value_no_input_reaches_differentiably_is_profiled():
    # asin of a comparison: no derivative path, and the comparison's value is never read
    # by a rule (the fuzzer's crash: the walk read it before seeing there was no path)
    obj = profile_json("sum(asin(x > 0))", "--at", "x=[1,-1]", "--repeat", "2")
    rows = rows_by_key(obj)
    assert ("asin", "forward") in rows and ("(backward overhead)", "backward") in rows
    assert not any(phase == "backward" and not op.startswith("(") for op, phase in rows)
