"""Files and pipes: what --out writes, --at reads back; values from standard input, FIFOs
and process substitution; --out prints a summary instead of the arrays."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from test_cli import adcli, fails, ok


# ---------------------------------------------------------------- --out: a summary, or --quiet

def test_out_prints_a_summary_not_the_arrays(tmp_path):
    out = ok("grad", "sum(x**2)", "--at", "x=arange(1000)", "--out", str(tmp_path / "g.npz"))
    assert out == f"file\t{tmp_path / 'g.npz'}\tvalue grad_x\n" \
                  "value\tscalar\tfloat64\t332833500.0\ngrad_x\t1000\tfloat64\n"
    with np.load(tmp_path / "g.npz") as z:
        assert z["grad_x"].tolist() == [2.0 * i for i in range(1000)]
    # a .npy file holds the gradient alone; the summary still gives the value
    out = ok("grad", "sum(x**2)", "--at", "x=[1,2]", "--out", str(tmp_path / "g.npy"))
    assert out == f"file\t{tmp_path / 'g.npy'}\tgrad_x\n" \
                  "value\tscalar\tfloat64\t5.0\ngrad_x\t2\tfloat64\n"


def test_out_summary_as_json_and_quiet(tmp_path):
    path = str(tmp_path / "j.npz")
    obj = json.loads(ok("jacobian", "A @ x", "--at", "A=[[1,2],[3,4]],x=[1,1]", "--wrt", "x",
                        "--out", path, "--json"))
    assert obj == {"expr": "A @ x", "file": path, "saved": ["value", "jacobian_x"],
                   "arrays": {"value": {"shape": [2], "dtype": "float64"},
                              "jacobian_x": {"shape": [2, 2], "dtype": "float64"}}}
    for cmd in (["eval", "x"], ["grad", "x*x"], ["hessian", "x*x"], ["jvp", "x*x", "--tangent", "x=1"],
                ["vjp", "x*x", "--cotangent", "1"], ["hvp", "x*x", "--vector", "x=1"]):
        r = adcli(*cmd, "--at", "x=3", "--out", path, "--quiet")
        assert r.exit_code == 0 and r.stdout == "", cmd
    assert "--quiet prints no result" in fails("grad", "x*x", "--at", "x=3", "--quiet")


def test_out_summary_of_a_non_finite_scalar(tmp_path):
    path = str(tmp_path / "v.json")
    assert ok("eval", "log(x)", "--at", "x=0", "--out", path).splitlines() == [
        f"file\t{path}\tvalue", "value\tscalar\tfloat64\t-inf"]
    assert json.loads(ok("eval", "log(x)", "--at", "x=0", "--out", path, "--json"))[
        "arrays"]["value"]["value"] == "-inf"


# ---------------------------------------------------------------- what --out writes, --at reads

@pytest.mark.parametrize("ext", ["npz", "json", "csv"])
def test_every_out_format_reads_back(tmp_path, ext):
    path = tmp_path / f"r.{ext}"
    args = ["grad", "sum(A @ x)", "--at", "A=[[1,2],[3,4]],x=[0.1,-2e-300]"]
    full = json.loads(ok(*args, "--json"))
    ok(*args, "--out", str(path))
    # exactly the numbers written, each by its name
    for name, want in [("grad_A", full["grad"]["A"]), ("grad_x", full["grad"]["x"]),
                       ("value", full["value"])]:
        assert json.loads(ok("eval", "v", "--at", f"v=@{path}:{name}", "--json"))["value"] == want
    # every array by its own name
    out = ok("eval", "value + sum(grad_x) + 0*sum(grad_A)", "--at", f"@{path}")
    assert float(out) == pytest.approx(full["value"] + 10, rel=1e-12)


@pytest.mark.parametrize("ext", ["npz", "json", "csv"])
def test_hessian_and_non_finite_values_read_back(tmp_path, ext):
    path = tmp_path / f"h.{ext}"
    ok("hessian", "x^2*y + log(y - 2)", "--at", "x=1,y=2", "--out", str(path))
    assert ok("eval", "[a, b, c]", "--at", f"a=@{path}:hessian_x_y,b=@{path}:hessian_y_y,"
              f"c=@{path}:value") == "[2.0, -inf, -inf]\n"


def test_one_array_needs_no_name_and_several_need_one(tmp_path):
    path = tmp_path / "v.npz"
    ok("eval", "[1, 2]", "--out", str(path))
    assert ok("eval", "x", "--at", f"x=@{path}") == "[1.0, 2.0]\n"
    ok("grad", "x*x", "--at", "x=3", "--out", str(tmp_path / "g.json"))
    err = fails("eval", "x", "--at", f"x=@{tmp_path / 'g.json'}")
    assert "holds 2 arrays; name one" in err and ":value" in err and "value, grad_x" in err
    err = fails("eval", "x", "--at", f"x=@{tmp_path / 'g.json'}:grad_y")
    assert "no array 'grad_y'" in err and "it holds value, grad_x" in err


def test_a_file_of_inputs_by_name(tmp_path):
    np.savez(tmp_path / "in.npz", x=np.arange(3.0), y=2.0)
    (tmp_path / "in.json").write_text('{"x": [0, 1, 2], "y": 2}')
    for f in ("in.npz", "in.json"):
        assert ok("grad", "sum(x*y)", "--at", f"@{tmp_path / f}") == \
            "value\t6.0\nd/dx\t[2.0, 2.0, 2.0]\nd/dy\t3.0\n"
    assert "gives 'y' twice" in fails("eval", "x*y", "--at", f"@{tmp_path / 'in.npz'}", "--at", "y=1")
    np.savez(tmp_path / "odd.npz", **{"2x": np.ones(2)})
    assert "no valid input name" in fails("eval", "x", "--at", f"@{tmp_path / 'odd.npz'}")
    np.save(tmp_path / "x.npy", np.ones(2))
    assert "without a name" in fails("eval", "x", "--at", f"@{tmp_path / 'x.npy'}")


def test_npz_members_are_checked_before_they_are_read(tmp_path):
    np.savez(tmp_path / "big.npz", x=np.zeros(1000))
    assert "limit" in fails("eval", "x", "--at", f"x=@{tmp_path / 'big.npz'}:x",
                            "--max-elements", "10")


# ---------------------------------------------------------------- pipes

def test_at_value_from_standard_input():
    assert ok("eval", "sum(x)", "--at", "x=@-", input="1\n2\n3.5\n") == "6.5\n"
    assert ok("eval", "x", "--at", "x=@-:csv", input="1,2\n3,4\n") == "[[1.0, 2.0], [3.0, 4.0]]\n"
    assert ok("eval", "x", "--at", "x=@-", input="[[1, 2]]") == "[[1.0, 2.0]]\n"


def test_at_value_from_standard_input_in_npy_and_npz():
    import io
    buf = io.BytesIO()
    np.save(buf, np.arange(4.0))
    assert ok("eval", "x", "--at", "x=@-", input=buf.getvalue()) == "[0.0, 1.0, 2.0, 3.0]\n"
    buf = io.BytesIO()
    np.savez(buf, a=np.ones(2), b=3.0)
    assert ok("eval", "a*b", "--at", "@-:npz", input=buf.getvalue()) == "[3.0, 3.0]\n"


def test_standard_input_is_read_once():
    err = fails("eval", "-", "--at", "x=@-", input="x+1")
    assert "standard input is already the source" in err
    err = fails("eval", "x+y", "--at", "x=@-,y=@-", input="1")
    assert "standard input is already the source" in err
    assert "nothing on standard input" in fails("eval", "x", "--at", "x=@-", input="")


def test_fifo(tmp_path):
    fifo = tmp_path / "values"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"printf '1 2\\n3 4\\n' > '{fifo}'"])
    try:
        assert ok("eval", "sum(x)", "--at", f"x=@{fifo}") == "10.0\n"
    finally:
        writer.wait(timeout=60)


@pytest.mark.skipif(shutil.which("bash") is None, reason="process substitution needs bash")
def test_process_substitution():
    cmd = f"'{sys.executable}' -m adcli eval 'sum(x)' --at x=@<(seq 10)"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, "55.0\n", "")


def test_a_broken_adcli_csv_is_bad_input(tmp_path):
    for i, body in enumerate(["x,-1,2\n", "x,0 1,2\nx,1,3\n", "x,0,two\n"]):
        (tmp_path / f"{i}.csv").write_text("name,index,value\n" + body)
        assert "cannot read it as numbers" in fails("eval", "x", "--at", f"x=@{tmp_path}/{i}.csv:x")


def test_tangents_vectors_and_cotangents_from_standard_input():
    assert ok("jvp", "x*x", "--at", "x=[1,2]", "--tangent", "x=@-", input="1 0") == \
        "value\t[1.0, 4.0]\njvp\t[2.0, 0.0]\n"
    assert ok("vjp", "x*x", "--at", "x=[1,2]", "--cotangent", "@-", input="[1, 1]") == \
        "value\t[1.0, 4.0]\nvjp/x\t[2.0, 4.0]\n"
    assert ok("hvp", "sum(x**3)", "--at", "x=[1,2]", "--vector", "x=@-:csv", input="1,0") == \
        "value\t9.0\nhvp/x\t[6.0, 0.0]\n"
    assert "already the source" in fails("jvp", "-", "--at", "x=1", "--tangent", "x=@-",
                                         input="x*x")


def test_short_quiet_option_keeps_unknown_options_reported(tmp_path):
    from test_readme import adcli_executable, example_env
    cmd = [adcli_executable(), "grad", "x*x", "--at", "x=3", "--out", str(tmp_path / "g.npz")]
    r = subprocess.run(cmd + ["-q"], capture_output=True, text=True, env=example_env(), timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = subprocess.run(cmd + ["-q", "--quite"], capture_output=True, text=True,
                       env=example_env(), timeout=60)
    assert r.returncode == 2 and "No such option: --quite" in r.stderr


def test_a_pipe_over_the_size_limit_is_read_no_further():
    err = fails("eval", "sum(x)", "--at", "x=@-", "--max-memory", "1KB", input="1\n" * 1000)
    assert "--at x=@-: the file has more than 41 bytes; the limit for a text file is 41" in err


def test_broken_npy_and_npz_files_are_bad_input(tmp_path):
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': ("   # never closed
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00" + header.ljust(117) + b"\n")
    np.savez(tmp_path / "odd.npz", x=np.ones(2))
    data = bytearray((tmp_path / "odd.npz").read_bytes())
    data[data.index(b"PK\x01\x02") + 8] |= 0x20      # "compressed patched data": zipfile refuses
    (tmp_path / "odd.npz").write_bytes(bytes(data))
    for f in ("cut.npy", "odd.npz"):
        assert "cannot read it as numbers" in fails("eval", "x", "--at", f"x=@{tmp_path / f}")
        data = (tmp_path / f).read_bytes()
        assert "cannot read it as numbers" in fails("eval", "x", "--at", "x=@-", input=data)


def test_mutated_files_and_pipes_never_crash(tmp_path):
    """A small fuzz of the readers: mutated files of every format, given by name, through
    standard input and with every kind of suffix, exit 0 or 2, never 3."""
    import io
    import random
    rng = random.Random(10)
    seeds = [b"1 2 3\n", b"1,2\n3,4\n", b"[1, [2]]", b'{"a": [1, 2], "b": {"c": 3}}',
             b"name,index,value\nx,0,1\nx,1,2\n", b'{"value": "nan", "grad": {"x": [1, "inf"]}}',
             b"", b"\xff\xfe", b"nan inf -inf"]
    for save in (lambda f: np.save(f, np.arange(3.0)),
                 lambda f: np.savez(f, x=np.arange(3.0), y=np.ones((2, 2)))):
        buf = io.BytesIO()
        save(buf)
        seeds.append(buf.getvalue())

    def mutated():
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 4)):
            op, at = rng.random(), rng.randrange(len(b) + 1)
            if op < 0.3 and b:
                b[min(at, len(b) - 1)] = rng.randrange(256)
            elif op < 0.6:
                b[at:at] = bytes([rng.randrange(256)])
            elif op < 0.8 and b:
                del b[min(at, len(b) - 1)]
            else:
                b += rng.choice(seeds)
        return bytes(b)
    for i in range(300):
        data = mutated()
        if i % 2:
            spec = rng.choice(["x=@-", "x=@-:csv", "x=@-:json", "x=@-:npy", "x=@-:npz", "@-",
                               "x=@-:npz:x", "x=@-:x"])
            r = adcli("eval", rng.choice(["x", "sum(x)", "x+y"]), "--at", spec, input=data)
        else:
            path = tmp_path / f"f{i}{rng.choice(['.npy', '.npz', '.json', '.csv', '.txt', ''])}"
            path.write_bytes(data)
            spec = rng.choice([f"x=@{path}", f"@{path}", f"x=@{path}:x", f"x=@{path}:json"])
            r = adcli("eval", rng.choice(["x", "sum(x)", "x+y"]), "--at", spec)
        assert r.exit_code in (0, 2), (spec, data[:80], r.stderr)
        assert "Traceback" not in r.output + r.stderr
