"""--points ... --scheduler: the same rows as the single process, evaluated on a real
dask.distributed cluster (two worker processes on localhost, started once for the module),
written as a folder of Parquet part files in the order of the input."""
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_cli import adcli, fails

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

BRANCH = str(Path(__file__).resolve().parent.parent / "samples" / "branch.ad")


@pytest.fixture(scope="module")
def scheduler():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    yield cluster.scheduler_address
    cluster.close()


def parquet_folder(folder, sizes, row_group_size=None, **columns):
    """The columns split into files of `sizes` rows (part-0.parquet, ...), in order."""
    folder.mkdir()
    start = 0
    for i, n in enumerate(sizes):
        part = {c: v[start:start + n] for c, v in columns.items()}
        pq.write_table(pa.table(part), folder / f"in-{i}.parquet",
                       row_group_size=row_group_size)
        start += n
    return str(folder)


def both(tmp_path, scheduler, *args):
    """(exit codes, single-process table, cluster table) of `adcli ARGS`, the single
    process writing --out one.parquet and the cluster --out parts/."""
    one = adcli(*args, "--out", str(tmp_path / "one.parquet"))
    many = adcli(*args, "--out", str(tmp_path / "parts"), "--scheduler", scheduler)
    assert "Traceback" not in one.output + many.output
    return ((one.exit_code, many.exit_code), pq.read_table(tmp_path / "one.parquet"),
            pq.read_table(tmp_path / "parts"))


def same_table(a, b):
    """Equal columns: the same names and texts, the numbers within a tolerance."""
    assert a.column_names == b.column_names
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if pa.types.is_floating(a.schema.field(name).type):
            np.testing.assert_allclose(np.array(x, float), np.array(y, float), rtol=1e-14)
        else:
            assert x == y, name


def test_grad_on_the_cluster_is_the_single_process_run_failed_rows_included(tmp_path,
                                                                               scheduler):
    # log of a negative x: the value is not finite; a missing x: the row cannot be read.
    # Three files of row groups of 2: six partitions.
    x = [1.0, 2.0, -1.0, 3.0, None, 0.5, -2.0, 4.0, 5.0, 0.25, 7.0]
    y = [float(i) for i in range(len(x))]
    ids = [f"p{i}" for i in range(len(x))]
    src = parquet_folder(tmp_path / "in", [4, 4, 3], row_group_size=2, id=ids, x=x, y=y)
    codes, one, many = both(tmp_path, scheduler, "grad", "log(x)*y", "--points", src,
                            "--keep", "id")
    assert codes == (1, 1)                     # failed rows: exit code 1 in both
    assert len(list((tmp_path / "parts").glob("part-*.parquet"))) == 6
    same_table(one, many)
    got = many.to_pydict()
    assert list(got) == ["id", "value", "d_x", "d_y", "error"]
    assert got["id"] == ids
    assert got["error"][2] == "the value is not finite"
    assert got["error"][4] == "row 5: no value for 'x'"     # the row's number in the input
    assert [e is None for e in got["error"]].count(True) == len(x) - 3
    assert got["d_x"][1] == pytest.approx(1 / 2.0 * 1.0) and got["d_y"][3] == pytest.approx(
        np.log(3.0))


def test_failed_count_on_stderr(tmp_path, scheduler):
    src = parquet_folder(tmp_path / "in", [2, 2], x=[4.0, -1.0, 9.0, -4.0])
    r = adcli("eval", "sqrt(x)", "--points", src, "--out", str(tmp_path / "o"),
              "--scheduler", scheduler)
    assert r.exit_code == 1
    assert "2 of 4 points failed" in r.stderr


def test_a_script_with_a_branch_on_the_cluster(tmp_path, scheduler):
    # both sides of the branch in every partition, and partitions of one side only
    x = [-2.0, 0.5, -0.5, 2.0, -3.0, 0.25, 1.0, 3.0, -1.0, -4.0, 6.0, -6.0]
    src = parquet_folder(tmp_path / "in", [3, 3, 2, 4], x=x)
    codes, one, many = both(tmp_path, scheduler, "grad", BRANCH, "--points", src)
    assert codes == (0, 0)
    same_table(one, many)
    d = many.column("d_x").to_pylist()
    for xi, di in zip(x, d):                  # each point the derivative of its own branch
        want = 3.0 if xi <= 0 else 2 * xi * np.sin(xi) + xi * xi * np.cos(xi)
        assert di == pytest.approx(want, rel=1e-12)


def test_rows_keep_their_order_across_many_partitions(tmp_path, scheduler):
    n = 500
    sizes = [37, 1, 120, 64, 99, 179]
    src = parquet_folder(tmp_path / "in", sizes, row_group_size=25,
                         x=np.arange(n, dtype=float), y=np.ones(n))
    out = tmp_path / "parts"
    r = adcli("grad", "x*(x+y)", "--points", str(tmp_path / "in" / "*.parquet"),
              "--chunk-rows", "16", "--out", str(out), "--scheduler", scheduler)
    assert r.exit_code == 0, r.output
    parts = sorted(p.name for p in out.glob("*.parquet"))
    assert parts[0] == "part-00000.parquet" and len(parts) == sum(-(-s // 25) for s in sizes)
    got = pq.read_table(out).to_pydict()
    x = np.arange(n, dtype=float)
    np.testing.assert_allclose(got["value"], x * (x + 1), rtol=1e-15)
    np.testing.assert_allclose(got["d_x"], 2 * x + 1, rtol=1e-15)


FANCY_WRONG = str(Path(__file__).resolve().parent.parent / "samples" / "fancy_wrong.ad")


@pytest.mark.parametrize("command, source", [("jacobian", "[x*y, sin(x)*y]"),
                                             ("hessian", "x*x*y + y**3"),
                                             ("gradcheck", "x*y + abs(y)")])
def test_derivative_commands_on_the_cluster_are_the_single_process_run(tmp_path, scheduler,
                                                                       command, source):
    x, y = np.linspace(0.1, 2.0, 40), np.linspace(-1.0, 1.0, 40)
    src = parquet_folder(tmp_path / "in", [15, 25], row_group_size=10, x=x, y=y)
    one = adcli(command, source, "--points", src, "--out", str(tmp_path / "one.parquet"))
    many = adcli(command, source, "--points", src, "--out", str(tmp_path / "parts"),
                 "--scheduler", scheduler)
    assert (one.exit_code, many.exit_code) == (0, 0), one.output + many.output
    same_table(pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "parts"))
    if command == "gradcheck":         # the pass rate and the worst points, the same rows
        assert many.stderr == one.stderr and "40 of 40 points pass" in many.stderr


def test_gradcheck_on_the_cluster_fails_as_the_single_process_does(tmp_path, scheduler):
    # fancy_wrong.ad's backward rule has the wrong sign of d/db: every row fails
    src = parquet_folder(tmp_path / "in", [3, 4], row_group_size=2,
                         a=np.linspace(0.2, 1.0, 7), b=np.linspace(0.5, 2.0, 7))
    one = adcli("gradcheck", FANCY_WRONG, "--points", src, "--out", str(tmp_path / "o.parquet"))
    many = adcli("gradcheck", FANCY_WRONG, "--points", src, "--out", str(tmp_path / "parts"),
                 "--scheduler", scheduler)
    assert (one.exit_code, many.exit_code) == (1, 1)
    assert many.stderr == one.stderr and "0 of 7 points pass" in many.stderr
    assert pq.read_table(tmp_path / "parts").column("verdict").to_pylist() == ["fail"] * 7


def test_what_scheduler_refuses(tmp_path):
    src = parquet_folder(tmp_path / "in", [2], x=[1.0, 2.0])
    csv = tmp_path / "p.csv"
    csv.write_text("x\n1\n")
    (tmp_path / "file.parquet").write_text("")
    addr = "tcp://127.0.0.1:1"
    assert "--scheduler goes with --points" in fails("grad", "x*x", "--at", "x=1",
                                                     "--scheduler", addr)
    assert "the points are Parquet" in fails("grad", "x*x", "--points", str(csv), "--out",
                                             str(tmp_path / "o"), "--scheduler", addr)
    assert "give it with --out FOLDER" in fails("grad", "x*x", "--points", src,
                                                "--scheduler", addr)
    assert "this is a file" in fails("grad", "x*x", "--points", src, "--out",
                                     str(tmp_path / "file.parquet"), "--scheduler", addr)
    assert "output is a folder of Parquet" in fails("grad", "x*x", "--points", src, "--json",
                                                    "--out", str(tmp_path / "o"),
                                                    "--scheduler", addr)
    assert "--jobs goes with --scheduler local" in fails(
        "grad", "x*x", "--points", src, "--out", str(tmp_path / "o"), "--scheduler", addr,
        "--jobs", "2")
    assert "neither an address" in fails("grad", "x*x", "--points", src, "--out",
                                         str(tmp_path / "o"), "--scheduler", "nowhere")


def test_a_folder_that_holds_part_files_is_not_overwritten(tmp_path, scheduler):
    src = parquet_folder(tmp_path / "in", [2], x=[1.0, 2.0])
    out = tmp_path / "o"
    args = ("eval", "x*x", "--points", src, "--out", str(out), "--scheduler", scheduler)
    assert adcli(*args).exit_code == 0
    assert "holds part files already" in fails(*args)
    assert pq.read_table(out).column("value").to_pylist() == [1.0, 4.0]


def test_without_dask_scheduler_names_the_extra(tmp_path):
    src = parquet_folder(tmp_path / "in", [1], x=[1.0])
    code = ("import sys; sys.modules['distributed'] = None; sys.argv = ['adcli', 'grad', "
            f"'x*x', '--points', {src!r}, '--out', {str(tmp_path / 'o')!r}, '--scheduler', "
            "'local']\nfrom adcli.cli import run\nrun()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "pip install 'adcli[dask]'" in r.stderr and "Traceback" not in r.stderr


def test_dask_is_imported_only_with_scheduler():
    code = ("import sys, adcli.cli, adcli.points\n"
            "print([m for m in ('dask', 'distributed', 'fsspec') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_url_reads_and_writes_through_fsspec(tmp_path, scheduler):
    pytest.importorskip("fsspec")
    src = parquet_folder(tmp_path / "in", [2, 1], x=[1.0, 2.0, 3.0])
    out = tmp_path / "o"
    r = adcli("grad", "x**3", "--points", "file://" + src, "--out", "file://" + str(out),
              "--scheduler", scheduler)
    assert r.exit_code == 0, r.output
    got = pq.read_table(out).to_pydict()
    assert got["value"] == [1.0, 8.0, 27.0] and got["d_x"] == [3.0, 12.0, 27.0]


def test_scheduler_local_starts_its_own_cluster(tmp_path):
    pytest.importorskip("distributed")
    src = parquet_folder(tmp_path / "in", [2, 2], x=[1.0, 2.0, 3.0, 4.0], y=[0.0, 1.0, 2.0, 3.0])
    exe = Path(sys.executable).parent / "adcli"
    r = subprocess.run([str(exe), "grad", "x*(x+y)", "--points", src, "--out",
                        str(tmp_path / "o"), "--scheduler", "local", "--jobs", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = pq.read_table(tmp_path / "o").to_pydict()
    assert got["value"] == [1.0, 6.0, 15.0, 28.0] and got["d_y"] == [1.0, 2.0, 3.0, 4.0]
