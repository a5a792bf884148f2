"""Total work is bounded: the memory a run holds, the element operations it does, the size
of the graph of higher derivatives, of sources and of data files; each limit fires before
the damage, with a message that names it and the option that raises it. The budgets here
are small, so that nothing large is ever allocated or computed."""
import json

import numpy as np
import pytest

from adcli import api, derivatives
from adcli.graph import Limits, parse_count, parse_size
from adcli.parse import MAX_SOURCE

from test_cli import fails, ok


def refused(*args, limit, input=None):
    """The message of a run stopped by a limit: exit 2, and the hint names the option."""
    err = fails(*args, input=input)
    assert err.startswith("limit exceeded: ")
    assert f"hint: raise it with {limit}" in err
    return err


# ---------------------------------------------------------------- --max-memory

def test_memory_is_refused_before_allocating():
    err = refused("eval", "sum(ones((1000,1000)))", "--max-memory", "1MB", limit="--max-memory")
    assert "ones would bring the memory held to 8.0 MB; the limit is 1.0 MB" in err
    assert ok("eval", "sum(ones((100,100)))", "--max-memory", "1MB") == "10000.0\n"


def test_a_memory_just_over_the_limit_does_not_read_as_equal_to_it():
    with pytest.raises(Exception) as e:
        Limits(max_memory=2000).check_memory(2032, "reshape")
    assert e.value.message == ("reshape would bring the memory held to 2,032 bytes; the limit "
                               "is 2,000 bytes")


def test_memory_counts_every_array_a_run_holds():
    # each array fits on its own; together they do not: the values a derivative reads stay
    # until the reverse walk has used them (x * sin(x * i) reads both factors)
    source = "input x\ns = x\nfor i in range(50):\n    s = s * sin(x * i)\nreturn sum(s)\n"
    at = "x=ones(1000)"      # 8 KB an array
    err = refused("grad", "-", "--at", at, "--max-memory", "100KB", input=source,
                  limit="--max-memory")
    assert "line 4" in err and "the limit is 100.0 KB" in err
    assert ok("grad", "-", "--at", at, "--max-memory", "10MB", input=source).startswith("value")


def test_evaluation_frees_what_no_later_step_reads():
    # eval keeps no step of the loop once the next has read it: 8 KB arrays, 50 steps,
    # within 100 KB (the program's nodes are counted too, about 200 bytes each)
    source = "input x\ns = x\nfor i in range(50):\n    s = s + x * i\nreturn sum(s)\n"
    at = "x=ones(1000)"
    assert ok("eval", "-", "--at", at, "--max-memory", "100KB", input=source) == "1226000.0\n"


def test_views_take_no_memory():
    # x holds 80 KB; its views, and detach(x), hold only their nodes once they are made
    # (before, each is counted as a copy: it might be one)
    args = ["--at", "x=ones(10000)", "--max-memory", "200KB"]
    assert ok("eval", "sum(detach(reshape(x, (100, 100)).T)[0])", *args) == "100.0\n"
    # (x * 1 + x * 2 would fit: fused, it makes no temporaries; cumsum's results are arrays)
    refused("eval", "sum(cumsum(x) + cumsum(x))", *args, limit="--max-memory")


def test_memory_counts_the_derivative_walk():
    # the value fits; the cotangents of the reverse walk beside it do not
    args = ["sum(x * x)", "--at", "x=ones(1000)", "--max-memory", "20KB"]
    assert ok("eval", *args) == "1000.0\n"
    err = refused("grad", *args, limit="--max-memory")
    assert "the derivative of" in err


@pytest.mark.parametrize("command,what", [("jacobian", "Jacobian"), ("hessian", "Hessian")])
def test_memory_counts_jacobians_and_hessians(command, what):
    expr = "sum(x**3)" if command == "hessian" else "x**3"
    err = refused(command, expr, "--at", "x=ones(100)", "--max-memory", "50KB",
                  "--sparse", "off", limit="--max-memory")
    assert f"the {what} would bring the memory held to" in err
    # its sparsity pattern (a diagonal) needs none of the dense matrix's 80 KB
    ok(command, expr, "--at", "x=ones(100)", "--max-memory", "50KB")


@pytest.mark.parametrize("text,size", [("2GB", 2 * 10**9), ("512MB", 512 * 10**6),
                                       ("1.5gb", 15 * 10**8), ("1GiB", 2**30),
                                       ("100000", 100000), ("64 KB", 64000)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["2XB", "-1MB", "MB", "0", "", "1e999GB"])
def test_bad_sizes(text):
    err = fails("eval", "1", "--max-memory", text)
    assert "--max-memory" in err and "not a size" in err


# ---------------------------------------------------------------- --max-work

def test_linear_algebra_is_charged_its_real_cost():
    # the same elements, but matmul does n multiply-adds for each
    args = ["--max-work", "500000"]
    assert ok("eval", "sum(ones((100,100)) * ones((100,100)))", *args) == "10000.0\n"
    err = refused("eval", "sum(ones((100,100)) @ ones((100,100)))", *args, limit="--max-work")
    # two ones((100,100)): 2 * (10,000 + 5,000); the product: 100**3 + 5,000
    assert "matmul would bring the work of this run to 1,035,000 element operations" in err


@pytest.mark.parametrize("op,expr", [("det", "det(eye(100))"), ("inv", "sum(inv(eye(100)))"),
                                     ("solve", "sum(solve(eye(100), ones(100)))")])
def test_matrix_functions_cost_n_cubed(op, expr):
    err = refused("eval", expr, "--max-work", "500000", limit="--max-work")
    assert f"{op} would bring the work of this run to 1,0" in err


def test_a_long_loop_stops_at_the_work_limit():
    # the loop of the issue, small: a sum of 1000 elements 100,000 times
    source = "input x\ns = 0\nfor i in range(100000):\n    s = s + sum(x)\nreturn s\n"
    err = refused("eval", "-", "--at", "x=ones(1000)", "--max-work", "1e6", input=source,
                  limit="--max-work")
    assert "sum would bring the work of this run to" in err and "the limit is 1,000,000" in err
    assert "line 4" in err


def test_work_counts_derivative_sweeps():
    # one forward sweep per input element (all of them at once, with the batch axis): the
    # value is cheap, its Jacobian is not
    args = ["sin(x)", "--at", "x=ones(100)", "--max-work", "50000"]
    ok("eval", *args)
    assert "the derivative's sweeps along 100 basis vectors" in refused(
        "jacobian", *args, "--mode", "fwd", "--sparse", "off", limit="--max-work")
    # a diagonal Jacobian from its sparsity pattern: one compressed sweep
    ok("jacobian", *args, "--mode", "fwd")


def test_work_counts_gradchecks_evaluations():
    # the numeric derivatives evaluate the function again and again
    args = ["sum(sin(x)*x)", "--at", "x=linspace(0,1,1000)", "--max-work", "1e6"]
    ok("eval", *args)
    assert "gradcheck's evaluation would bring the work" in refused("gradcheck", *args,
                                                                    limit="--max-work")


def test_the_default_budgets():
    from adcli.graph import physical_memory
    limits = Limits()
    assert limits.max_memory == physical_memory() // 4 > 0
    assert limits.max_work == 5 * 10**10


@pytest.mark.parametrize("text", ["-5", "0", "many", "inf", "nan"])
def test_bad_work_limits(text):
    err = fails("eval", "1", "--max-work", text)
    assert "--max-work" in err and "not a positive number" in err


def test_work_limits_are_numbers():
    assert parse_count("5e10") == 5 * 10**10 and parse_count("1_000") == 1000


COMMANDS = [("eval",), ("grad",), ("jacobian",), ("hessian",), ("jvp", "--tangent", "x=1"),
            ("vjp", "--cotangent", "1"), ("hvp", "--vector", "x=1"), ("profile",), ("dot",),
            ("trace",), ("gradcheck",)]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_that_evaluates_has_the_budgets(command):
    expr = ["sum(x * ones((1000,1000)))", "--at", "x=1"]
    refused(*command, *expr, "--max-memory", "1MB", limit="--max-memory")
    refused(*command, *expr, "--max-work", "1e5", limit="--max-work")


# ---------------------------------------------------------------- --max-nodes, early

def test_higher_orders_stop_before_building_the_graph():
    limits = Limits(max_nodes=20_000)
    traced = api.trace("sin(x)*exp(x)/(1+x*x)*log(2+x)", {"x": np.float64(1.0)}, limits=limits)
    with pytest.raises(Exception) as e:
        derivatives.higher_grad(traced, order=12)
    assert "the derivative of order 12 would need about" in e.value.message
    assert "--max-nodes" in e.value.hint
    # estimated from the first orders: far fewer nodes were built than the limit allows
    assert len(traced.graph.nodes) < 20_000 / 4


def test_higher_orders_within_the_node_limit_still_run():
    out = ok("grad", "sin(x)*exp(x)/(1+x*x)*log(2+x)", "--at", "x=1", "--order", "6", "--json")
    assert set(json.loads(out)["grad"]) == {"x"}
    err = refused("grad", "sin(x)*exp(x)/(1+x*x)*log(2+x)", "--at", "x=1", "--order", "12",
                  "--max-nodes", "20000", limit="--max-nodes, or ask for a lower --order")
    assert "the derivative of order 12 would need about" in err


# ---------------------------------------------------------------- data files

def test_a_text_file_is_refused_by_size_before_parsing(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("0," * 50_000 + "0\n")          # 100 KB: about 2.4 MB to parse
    err = refused("eval", "sum(x)", "--at", f"x=@{path}", "--max-memory", "1MB",
                  limit="--max-memory")
    assert "the file has 100,002 bytes; the limit for a .csv file is 41,666 bytes" in err
    assert ok("eval", "sum(x)", "--at", f"x=@{path}", "--max-memory", "10MB") == "0.0\n"


def test_a_json_file_is_refused_by_size_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "[]," * 10_000 + "[]]")
    err = refused("eval", "sum(x)", "--at", f"x=@{path}", "--max-memory", "1MB",
                  limit="--max-memory")
    assert "the limit for a .json file is 25,000 bytes" in err


def test_text_files_within_max_elements(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("1 2 3\n" * 1000)
    err = refused("eval", "sum(x)", "--at", f"x=@{path}", "--max-elements", "10",
                  limit="--max-elements")
    assert "the limit for a .txt file is 1,344 bytes" in err


def _npy_header(path, shape, dtype="<f8"):
    """A .npy file whose header claims `shape`, with no data after it."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": dtype, "fortran_order": False, "shape": shape})


def test_a_npy_header_that_claims_more_than_the_file_holds(tmp_path):
    path = tmp_path / "claims.npy"
    _npy_header(path, (10**7,))          # 80 MB claimed, none there
    err = fails("eval", "sum(x)", "--at", f"x=@{path}")
    assert "the file is shorter than its header says (shape (10000000,) of float64)" in err


def test_a_npy_file_is_refused_by_memory_from_its_header(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(1000))
    err = refused("eval", "sum(x)", "--at", f"x=@{path}", "--max-memory", "4KB",
                  limit="--max-memory")
    assert f"--at x=@{path} would bring the memory held to 8.0 KB" in err
    assert ok("eval", "sum(x)", "--at", f"x=@{path}") == "0.0\n"


def test_several_files_count_together(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(1000))
    refused("eval", "sum(x+y)", "--at", f"x=@{path},y=@{path}", "--max-memory", "12KB",
            limit="--max-memory")


# ---------------------------------------------------------------- sources

def test_standard_input_over_the_size_limit():
    err = fails("eval", "-", input=" " * (MAX_SOURCE + 10) + "x")
    assert "limit exceeded: standard input has more than 1,000,000 characters" in err


def test_a_source_with_too_many_tokens_is_refused_before_parsing():
    err = fails("eval", "-", "--at", "x=1", input="x+" * 100_001 + "x")
    assert "standard input has 200,003 tokens (names, numbers and symbols); the limit is " \
           "200,000" in err
    err = fails("eval", "x+" * 100_001 + "x", "--at", "x=1")
    assert "the source has 200,003 tokens" in err
    # long comments are cheap to parse: they count as one token each
    source = "input x\n" + ("# " + "c" * 78 + "\n") * 10_000 + "return x\n"
    assert ok("eval", "-", "--at", "x=2", input=source) == "2.0\n"


def test_a_script_file_over_the_size_limit(tmp_path):
    path = tmp_path / "big.ad"
    path.write_text("input x\n" + "#" * MAX_SOURCE + "\nreturn x\n")
    err = fails("eval", str(path), "--at", "x=1")
    assert f"limit exceeded: {path} has more than 1,000,000 characters" in err
