"""eval and grad --points: a table of points in, a row of results per point out, a block at a
time; every row equal to the single-point command, failed rows marked, the rest unharmed."""
import csv
import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from adcli import api, points
from test_cli import adcli, fails, ok

BRANCH = Path(__file__).resolve().parent.parent / "samples" / "branch.ad"


def table(text, sep=","):
    """The rows of CSV/TSV output as dicts of texts."""
    return list(csv.DictReader(io.StringIO(text), delimiter=sep))


def single(source, values, grad=True):
    """What the single-point `adcli grad` / `adcli eval` computes: (value, {name: d})."""
    values = {k: np.float64(v) for k, v in values.items()}
    if source.endswith(".ad"):
        traced = api.trace_script(Path(source).read_text(), values, filename=source)
    else:
        traced = api.trace(source, values)
    result = api.gradient(traced) if grad else api.evaluate(traced)
    return float(result.value), {k: float(d) for k, d in (result.grad or {}).items()}


# ---------------------------------------------------------------- the same as one point at a time

CASES = [
    ("x*(x+y)", {"x": [2, -1.5, 0, 3.25], "y": [3, 0.5, -2, 1e-3]}),
    ("sin(x)*exp(-y) + x/y", {"x": [0.1, 2, -3], "y": [1, 0.25, -4]}),
    ("abs(x)", {"x": [-1, 0, 1]}),                          # a kink: adcli's convention at 0
    (str(BRANCH), {"x": [-2, 0.5, -0.5, 2, -3, 0.25, 1]}),   # both sides of the branch, mixed
]


@pytest.mark.parametrize("command", ["grad", "eval"])
@pytest.mark.parametrize("source,columns", CASES, ids=["poly", "trig", "kink", "branch"])
def test_rows_equal_the_single_point_command(command, source, columns):
    names = list(columns)
    text = ",".join(names) + "\n" + "".join(
        ",".join(str(columns[n][i]) for n in names) + "\n" for i in range(len(columns[names[0]])))
    outs = {c: ok(command, source, "--points", "-", *(["--chunk-rows", c] if c else []),
                  input=text) for c in ("1", "3", None)}
    assert outs["1"] == outs["3"] == outs[None]             # blocks change nothing
    rows = table(outs[None])
    assert len(rows) == len(columns[names[0]])
    for i, row in enumerate(rows):
        value, grad = single(source, {n: columns[n][i] for n in names}, command == "grad")
        assert float(row["value"]) == pytest.approx(value, rel=1e-12, abs=1e-15)
        assert row["error"] == ""
        assert {k[2:] for k in row if k.startswith("d_")} == set(grad)
        for n, d in grad.items():
            assert float(row[f"d_{n}"]) == pytest.approx(d, rel=1e-12, abs=1e-15)


def test_kink_and_branch_derivatives_are_those_of_each_side():
    rows = table(ok("grad", "abs(x)", "--points", "-", input="x\n-1\n0\n1\n"))
    assert [float(r["d_x"]) for r in rows] == [-1.0, single("abs(x)", {"x": 0})[1]["x"], 1.0]
    rows = table(ok("grad", str(BRANCH), "--points", "-", input="x\n-2\n2\n"))
    assert float(rows[0]["d_x"]) == 3.0                     # else: y = 3*x
    assert float(rows[1]["d_x"]) == pytest.approx(4 * np.sin(2) + 4 * np.cos(2))


# ---------------------------------------------------------------- streaming through a pipe

def test_rows_come_out_before_the_input_ends():
    exe = shutil.which("adcli", path=str(Path(sys.executable).parent)) or shutil.which("adcli")
    assert exe, "the adcli command is not installed in this environment"
    proc = subprocess.Popen([exe, "grad", "x*x", "--points", "-", "--names", "x"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    try:
        got = []
        for batch in (["1"], ["2", "3"]):                   # a lone first row is answered too
            proc.stdin.write("".join(b + "\n" for b in batch))
            proc.stdin.flush()
            want = len(batch) + (1 if not got else 0)
            got += [lines.get(timeout=20).rstrip("\n") for _ in range(want)]
        assert got == ["value,d_x,error", "1,2,", "4,4,", "9,6,"]
        proc.stdin.write("".join(f"{x}\n" for x in range(4, 50)))
        proc.stdin.close()                                   # only now does the input end
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        rest = []
        while len(rest) < 46:
            rest.append(lines.get(timeout=20).rstrip("\n"))
        assert rest == [f"{x * x},{2 * x}," for x in range(4, 50)]   # in order
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- formats

def test_tsv_in_and_out_and_the_output_format_options(tmp_path):
    tsv = "x\ty\n2\t3\n1\t-1\n"
    assert ok("grad", "x*y", "--points", "-", input=tsv) == \
        "value,d_x,d_y,error\n6,3,2,\n-1,-1,1,\n"           # csv by default
    want_tsv = "value\td_x\td_y\terror\n6\t3\t2\t\n-1\t-1\t1\t\n"
    assert ok("grad", "x*y", "--points", "-", "--format", "tsv", input=tsv) == want_tsv
    (tmp_path / "p.tsv").write_text(tsv)
    for ext in ("tsv", "csv", "ndjson"):
        out = tmp_path / f"o.{ext}"
        ok("grad", "x*y", "--points", str(tmp_path / "p.tsv"), "--out", str(out))
        text = out.read_text()
        if ext == "tsv":
            assert text == want_tsv
        elif ext == "csv":
            assert text.startswith("value,d_x,d_y,error\n6,3,2,\n")
        else:
            assert json.loads(text.splitlines()[0])["grad"] == {"x": 3.0, "y": 2.0}
    assert ok("grad", "x*y", "--points", "-", "--json", input=tsv) == \
        ok("grad", "x*y", "--points", "-", "--format", "ndjson", input=tsv)


def test_ndjson_with_arrays_keeps_shapes_and_names_flat_columns():
    rows = ('{"id": "a", "A": [[1, 2], [3, 4]], "x": [1, 2]}\n'
            '{"id": "b", "A": [[1, 0], [0, 1]], "x": [0, 1]}\n')
    objs = [json.loads(ln) for ln in
            ok("grad", "sum(A@x)", "--points", "-", "--keep", "id", "--json", input=rows).splitlines()]
    single_json = json.loads(ok("grad", "sum(A@x)", "--at", "A=[[1,2],[3,4]]", "--at", "x=[1,2]",
                                "--json"))
    assert objs[0] == {"id": "a", **single_json}           # the single-point schema, plus id
    assert objs[1]["grad"] == {"A": [[0.0, 1.0], [0.0, 1.0]], "x": [1.0, 1.0]}
    out = table(ok("eval", "A@x", "--points", "-", "--keep", "id", input=rows))
    assert list(out[0]) == ["id", "value[0]", "value[1]", "error"]
    assert [(r["id"], float(r["value[0]"]), float(r["value[1]"])) for r in out] == \
        [("a", 5.0, 11.0), ("b", 0.0, 1.0)]
    head = ok("grad", "sum(A@x)", "--points", "-", "--keep", "id", input=rows).splitlines()[0]
    assert head == "id,value,d_A[0][0],d_A[0][1],d_A[1][0],d_A[1][1],d_x[0],d_x[1],error"


def test_headerless_quoted_crlf_and_blank_lines():
    assert ok("grad", "x*y", "--points", "-", "--names", "x,y", input="2,3\n\n1,-1\n") == \
        "value,d_x,d_y,error\n6,3,2,\n-1,-1,1,\n"
    assert ok("grad", "x*y", "--points", "-", "--names", "x", "--names", "y",
              input="2,3\r\n\r\n1,-1\r\n") == "value,d_x,d_y,error\n6,3,2,\n-1,-1,1,\n"
    text = 'id,x\r\n"a, b",2\r\n\r\n"say ""hi""",3\r\n'
    rows = table(ok("grad", "x*x", "--points", "-", "--keep", "id", input=text))
    assert [(r["id"], r["value"], r["d_x"]) for r in rows] == \
        [("a, b", "4", "4"), ('say "hi"', "9", "6")]


# ---------------------------------------------------------------- errors

def test_unused_column_is_named_and_keep_passes_ids_through_in_order():
    err = fails("grad", "x*x", "--points", "-", input="id,x,label\n7,1,p\n")
    assert "'id'" in err and "'label'" in err and "--keep id,label" in err
    text = "id,x,label\n" + "".join(f"r{i},{i},L{i}\n" for i in range(10))
    rows = table(ok("grad", "x*x", "--points", "-", "--keep", "label,id", "--chunk-rows", "3",
                    input=text))
    assert list(rows[0]) == ["label", "id", "value", "d_x", "error"]
    assert [(r["id"], r["label"], float(r["value"])) for r in rows] == \
        [(f"r{i}", f"L{i}", float(i * i)) for i in range(10)]
    rows = table(ok("grad", "x*x", "--points", "-", "--keep", "x", input="x\n3\n"))
    assert (rows[0]["x"], rows[0]["value"]) == ("3", "9")   # a kept input is still used


def test_missing_input_unless_at_gives_it():
    err = fails("grad", "x*y", "--points", "-", input="x\n1\n")
    assert "'y'" in err and "--at" in err
    assert table(ok("grad", "x*y", "--points", "-", "--at", "y=5", input="x\n1\n"))[0]["value"] == "5"


def test_failed_rows_carry_their_error_and_the_others_are_fine():
    r = adcli("grad", "x*x", "--points", "-", input="x\n1\nfoo\n3\n")
    assert r.exit_code == 1 and "1 of 3 points failed" in r.stderr
    rows = table(r.stdout)
    assert [r["value"] for r in rows] == ["1", "nan", "9"]
    assert "foo" in rows[1]["error"] and rows[0]["error"] == rows[2]["error"] == ""
    # an unreadable first row, even in a block of its own, is just a failed row
    for chunk in ("1", "2", "100"):
        r = adcli("grad", "x*x", "--points", "-", "--chunk-rows", chunk, input="x\nfoo\n2\n")
        assert r.exit_code == 1 and [row["value"] for row in table(r.stdout)] == ["nan", "4"]
    r = adcli("grad", "log(x)", "--points", "-", input="x\n1\n-1\n4\n")
    rows = table(r.stdout)
    assert r.exit_code == 1 and "not finite" in rows[1]["error"]
    assert float(rows[2]["d_x"]) == 0.25 and rows[2]["error"] == ""


def test_wrong_shaped_array_row():
    rows = '{"x": [1, 2]}\n{"x": [1, 2, 3]}\n{"x": [3, 4]}\n'
    r = adcli("grad", "sum(x*x)", "--points", "-", "--json", input=rows)
    assert r.exit_code == 1 and "1 of 3 points failed" in r.stderr
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert "error" not in objs[0] and objs[2]["grad"] == {"x": [6.0, 8.0]}
    assert "(3,)" in objs[1]["error"] and "(2,)" in objs[1]["error"]


def test_refused_runs():
    assert "no rows" in fails("grad", "x", "--points", "-", input="")
    assert "no rows" in fails("grad", "x", "--points", "-", "--names", "x", input="\n\n")
    assert "--names" in fails("grad", "x", "--points", "-", "--names", "x", input='{"x": 1}\n')
    assert "ragged" in fails("grad", "sum(x)", "--points", "-", input='{"x": [1, [2]]}\n')
    for command in ("grad", "eval"):
        for option in (["--keep", "id"], ["--names", "x"], ["--chunk-rows", "3"],
                       ["--format", "csv"]):
            assert "--points" in fails(command, "x", "--at", "x=1", *option)
    assert "--chunk-rows" in fails("grad", "x", "--points", "-", "--chunk-rows", "0",
                                   input="x\n1\n")


# ---------------------------------------------------------------- memory and blocks

def test_many_rows_in_bounded_blocks(monkeypatch):
    n = 200_000
    text = "x\n" + "".join(f"{i * 1e-5!r}\n" for i in range(n))
    sizes = []
    run = points.Program.run
    monkeypatch.setattr(points.Program, "run",
                        lambda self, values, idx: sizes.append(len(idx)) or run(self, values, idx))
    # the whole table at once does not fit in 1 MB of arrays; a thousand rows at a time do
    err = fails("grad", "sin(x)*x", "--points", "-", "--max-memory", "1MB", input=text)
    assert "--max-memory" in err
    sizes.clear()
    out = ok("grad", "sin(x)*x", "--points", "-", "--max-memory", "1MB", "--chunk-rows", "1000",
             input=text)
    assert max(sizes) <= 1000 and sum(sizes) == n
    lines = out.splitlines()
    assert len(lines) == n + 1
    x = (n - 1) * 1e-5
    value, d = map(float, lines[-1].split(",")[:2])
    assert value == pytest.approx(np.sin(x) * x) and d == pytest.approx(np.cos(x) * x + np.sin(x))


# ---------------------------------------------------------------- --wrt and --at

def test_wrt_and_constant_inputs():
    text = "x,z\n2,1\n-1,3\n"
    rows = table(ok("grad", "x*y + z*z", "--points", "-", "--at", "y=5", input=text))
    assert list(rows[0]) == ["value", "d_x", "d_y", "d_z", "error"]   # d_y too, as grad gives
    for row, (x, z) in zip(rows, [(2, 1), (-1, 3)]):
        value, grad = single("x*y + z*z", {"x": x, "y": 5, "z": z})
        assert float(row["value"]) == value
        assert {k: float(row[f"d_{k}"]) for k in grad} == grad
    rows = table(ok("grad", "x*y + z*z", "--points", "-", "--at", "y=5", "--wrt", "y,z",
                    input=text))
    assert [(r["d_y"], r["d_z"]) for r in rows] == [("2", "2"), ("-1", "6")]
    assert "d_x" not in rows[0]
    rows = table(ok("grad", "sum(W*x)", "--points", "-", "--at", "W=[1,2]", input="x\n3\n"))
    assert [rows[0][c] for c in ("value", "d_W[0]", "d_W[1]", "d_x")] == ["9", "3", "3", "3"]


def test_lines_of_spaces_are_blank_and_format_must_agree_with_the_out_file(tmp_path):
    assert ok("eval", "x", "--points", "-", input="x\n1\n   \n\t\n2\n").splitlines() == [
        "value,error", "1,", "2,"]
    err = fails("eval", "x", "--points", "-", "--format", "tsv", "--out",
                str(tmp_path / "a.csv"), input="x\n1\n")
    assert "--format tsv and --out" in err and "says csv" in err
    ok("eval", "x", "--points", "-", "--format", "csv", "--out", str(tmp_path / "a.txt"),
       input="x\n1\n")
    assert (tmp_path / "a.txt").read_text() == "value,error\n1,\n"


def test_detect_anomaly_names_the_op_of_each_failed_row():
    r = adcli("grad", "sqrt(x) + x", "--points", "-", "--detect-anomaly", input="x\n4\n-1\n0\n")
    assert r.exit_code == 1
    rows = r.stdout.splitlines()
    assert rows[1] == "6,1.25,"
    assert "the value is not finite: first produced by sqrt(-1.0) at line 1, column 1" in rows[2]
    assert "the gradient of 'x' is not finite: first made by the derivative of sqrt(0.0)" \
        in rows[3]
    # without it, the rows say what failed, not where
    plain = ok_or_1("grad", "sqrt(x) + x", "--points", "-", input="x\n-1\n")
    assert plain.splitlines()[1] == "nan,nan,the value is not finite"


def ok_or_1(*args, input=None):
    r = adcli(*args, input=input)
    assert r.exit_code == 1, r.output
    return r.stdout


def test_jobs_give_the_same_rows_in_the_same_order(tmp_path):
    # worker processes evaluate and format blocks; the output is the single process's
    rows = "x,y\n" + "".join(f"{i / 7!r},{(-1) ** i * 0.5!r}\n" for i in range(40)) + "oops,1\n"
    src = tmp_path / "p.csv"
    src.write_text(rows)
    args = ("grad", str(BRANCH), "--points", str(src), "--chunk-rows", "3")
    one = adcli(*args, "--keep", "y")
    two = adcli(*args, "--keep", "y", "--jobs", "2")
    assert one.exit_code == two.exit_code == 1          # the row 'oops' failed in both
    assert two.stdout == one.stdout and len(one.stdout.splitlines()) == 42
    assert "--jobs must be 1 or more" in fails(*args, "--keep", "y", "--jobs", "0")


# ---------------------------------------------------------------- jacobian, hessian, gradcheck

def _single_json(command, source, at):
    return json.loads(ok(command, source, "--at", at, "--json", "--sparse", "off"))


@pytest.mark.parametrize("command,source", [
    ("jacobian", "[x*y, sin(x) + y**2, exp(-x*y)]"),
    ("jacobian", "softmax(z) * y"),
    ("hessian", "x*x*y + sin(y)*sum(z**3)"),
    ("hessian", str(BRANCH)),
])
def test_jacobian_and_hessian_rows_equal_the_single_point_command(command, source):
    """Each row's Jacobian or Hessian (rows x basis tangents on the batch axis) is the single
    point's, in the NDJSON schema of `adcli jacobian/hessian --json`."""
    script = source.endswith(".ad")
    rows = ([{"x": x} for x in (-2.0, 0.5, -0.5, 2.0)] if script else
            [{"x": 0.5, "y": -1.25, "z": [0.1, -2.0, 3.0]},
             {"x": -2.0, "y": 0.75, "z": [1.0, 0.0, -0.5]}])
    if not script:      # the columns the expression uses
        rows = [{k: v for k, v in r.items() if re.search(rf"\b{k}\b", source)} for r in rows]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    got = [json.loads(line) for line in ok(command, source, "--points", "-", "--json",
                                           "--chunk-rows", "3", input=text).splitlines()]
    key = "jacobian" if command == "jacobian" else "hessian"
    for row, g in zip(rows, got):
        at = ",".join(f"{k}={json.dumps(v).replace(' ', '')}" for k, v in row.items())
        want = _single_json(command, source, at)
        assert np.allclose(g["value"], want["value"], rtol=1e-13, atol=1e-15)
        flat_got = json.dumps(g[key], sort_keys=True)
        assert set(g[key]) == set(want[key]), flat_got
        for a in want[key]:
            if command == "jacobian":
                assert np.allclose(g[key][a], want[key][a], rtol=1e-12, atol=1e-14)
            else:
                for b in want[key][a]:
                    assert np.allclose(g[key][a][b], want[key][a][b], rtol=1e-12, atol=1e-14)


def test_hessian_and_jacobian_csv_columns_are_named_and_flattened():
    out = ok("hessian", "x*x*y", "--points", "-", input="x,y\n1,2\n2,3\n")
    rows = table(out)
    assert list(rows[0]) == ["value", "d2_x_x", "d2_x_y", "d2_y_x", "d2_y_y", "error"]
    # d2/dx2 = 2y, d2/dxdy = 2x, d2/dy2 = 0
    assert [(float(r["d2_x_x"]), float(r["d2_x_y"]), float(r["d2_y_y"])) for r in rows] == \
        [(4.0, 2.0, 0.0), (6.0, 4.0, 0.0)]
    rows = table(ok("jacobian", "[x*y, x]", "--points", "-", input="x,y\n1,2\n"))
    assert list(rows[0]) == ["value[0]", "value[1]", "d_x[0]", "d_x[1]", "d_y[0]", "d_y[1]",
                             "error"]
    assert [float(rows[0][c]) for c in ("d_x[0]", "d_x[1]", "d_y[0]", "d_y[1]")] == [2, 1, 1, 0]
    assert "--mode" in fails("jacobian", "x*y", "--points", "-", "--mode", "rev",
                             input="x,y\n1,2\n")
    assert "scalar" in fails("hessian", "[x, y]", "--points", "-", input="x,y\n1,2\n")


def test_gradcheck_points_finds_the_wrong_rule_at_every_row_and_summarises():
    wrong = Path(__file__).resolve().parent.parent / "samples" / "fancy_wrong.ad"
    text = "a,b\n0.5,1.5\n1,0\n0,2\n2,1\n"
    r = adcli("gradcheck", str(wrong), "--points", "-", input=text)
    assert r.exit_code == 1
    rows = table(r.stdout)
    # the rule flips the sign of d/db = a cos(b): wrong wherever that is not zero
    assert [row["verdict"] for row in rows] == ["fail", "fail", "pass", "fail"]
    assert {row["worst"] for row in rows if row["verdict"] == "fail"} == {"d_b"}
    assert float(rows[1]["analytic"]) == pytest.approx(-1.0)
    assert float(rows[1]["numeric"]) == pytest.approx(1.0, rel=1e-8)
    err = r.stderr
    assert "1 of 4 points pass (25.0%): 3 fail" in err
    worst = [ln for ln in err.splitlines() if ln.startswith("  row ")]
    assert [ln.split(":")[1].split(",")[0].strip() for ln in worst] == \
        ["fail", "fail", "fail", "pass"]                      # failures first
    assert sorted(ln.split(":")[0] for ln in worst[:3]) == ["  row 1", "  row 2", "  row 4"]
    # only a: every row passes, exit 0
    r = adcli("gradcheck", str(wrong), "--points", "-", "--wrt", "a", input=text)
    assert r.exit_code == 0 and "4 of 4 points pass (100.0%)" in r.stderr


def test_gradcheck_points_kinks_branches_failed_rows_and_refusals():
    # abs at 0: adcli's 0 lies between the one-sided slopes -1 and 1; the branch: each side
    r = adcli("gradcheck", "abs(x) * y", "--points", "-", input="x,y\n0,1\n-2,3\nfoo,1\n")
    assert r.exit_code == 1                                   # the unreadable row
    rows = table(r.stdout)
    assert [row["verdict"] for row in rows] == ["pass", "pass", ""]
    assert "foo" in rows[2]["error"] and "1 with an error" in r.stderr
    r = adcli("gradcheck", str(BRANCH), "--points", "-", input="x\n-2\n0.5\n-0.5\n2\n")
    assert r.exit_code == 0 and [row["verdict"] for row in table(r.stdout)] == ["pass"] * 4
    # the same tolerances as one point: a tight --rtol fails the roundoff of differences
    r = adcli("gradcheck", "exp(x)", "--points", "-", "--rtol", "0", "--atol", "0",
              input="x\n1.3\n")
    assert table(r.stdout)[0]["verdict"] in ("pass", "fail")
    for option in (["--fast"], ["--order", "2"], ["--method", "complex"],
                   ["--expect", "x=1"]):
        assert "--points" in fails("gradcheck", "x*x", "--points", "-", *option, input="x\n1\n")
    assert "--points" in fails("gradcheck", "x*x", "--at", "x=1", "--out", "o.csv")


def test_an_ndjson_key_the_first_row_lacks_fails_its_row():
    """Not dropped, and for an input not silently replaced by the --at value."""
    r = adcli("grad", "x*y", "--points", "-", "--at", "y=10", "--json",
              input='{"x": 1}\n{"x": 2, "y": 3}\n{"x": 3}\n')
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["value"] for row in rows] == [10.0, "nan", 30.0]
    assert "'y' is not a column of the first row" in rows[1]["error"]


def test_jobs_give_gradcheck_and_hessian_the_same_rows_and_summary(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "ab.csv"
    path.write_text("a,b\n" + "".join(f"{a!r},{b!r}\n" for a, b in
                                      rng.normal(size=(120, 2)).tolist()))
    wrong = str(Path(__file__).resolve().parent.parent / "samples" / "fancy_wrong.ad")
    for args in (["gradcheck", wrong], ["hessian", "sin(a)*b**2"]):
        one = adcli(*args, "--points", str(path))
        two = adcli(*args, "--points", str(path), "--jobs", "2", "--chunk-rows", "25")
        assert one.exit_code == two.exit_code and one.stdout == two.stdout
        assert one.stderr == two.stderr          # gradcheck's summary: the same worst rows
        if args[0] == "gradcheck":               # the flipped sign is wrong at every row
            assert one.exit_code == 1 and "0 of 120 points pass" in one.stderr
