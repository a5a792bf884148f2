"""--points with Parquet and Arrow tables: the same rows as CSV, a folder of Parquet files
read in order, array columns, kept columns with their types, failed rows, and the output
files readable by pyarrow."""
import numpy as np
import pytest

from test_cli import adcli, fails, ok

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def table(path, **columns):
    pq.write_table(pa.table(columns), path)
    return str(path)


def test_parquet_in_gives_the_rows_csv_gives(tmp_path):
    x, y = [1.0, 2.0, -0.5], [3.0, 4.0, 0.25]
    src = table(tmp_path / "p.parquet", x=x, y=y)
    csv = tmp_path / "p.csv"
    csv.write_text("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x, y)))
    assert ok("grad", "x*(x+y)", "--points", src) == ok("grad", "x*(x+y)", "--points", str(csv))


def test_parquet_out_holds_the_results_as_numbers(tmp_path):
    src = table(tmp_path / "p.parquet", id=["a", "b", "c"], x=[1.0, 2.0, None],
                y=[3.0, 4.0, 5.0])
    out = tmp_path / "o.parquet"
    r = adcli("grad", "x*y", "--points", src, "--keep", "id", "--out", str(out))
    assert r.exit_code == 1                  # the row without x failed; the others did not
    got = pq.read_table(out).to_pydict()
    assert list(got) == ["id", "value", "d_x", "d_y", "error"]
    assert got["id"] == ["a", "b", "c"]
    assert got["value"][:2] == [3.0, 8.0] and got["d_x"][:2] == [3.0, 4.0]
    assert got["d_y"][:2] == [1.0, 2.0]
    assert got["error"][:2] == [None, None] and "no value for 'x'" in got["error"][2]
    assert np.isnan(got["value"][2])


def test_a_folder_of_parquet_files_is_read_in_order(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    table(folder / "part-0.parquet", x=[1.0, 2.0])
    table(folder / "part-1.parquet", x=[3.0])
    out = ok("eval", "x**2", "--points", str(folder), "--chunk-rows", "1")
    assert out.splitlines() == ["value,error", "1,", "4,", "9,"]
    table(folder / "other-2.parquet", x=[4.0])          # a glob takes the files it matches
    out = ok("eval", "x**2", "--points", str(folder / "part-*.parquet"))
    assert out.splitlines() == ["value,error", "1,", "4,", "9,"]
    assert "no file matches" in fails("eval", "x", "--points", str(folder / "none-*.parquet"))


def test_array_columns_and_arrow_ipc_out(tmp_path):
    W = pa.array([[1.0, 2.0], [3.0, 4.0]], type=pa.list_(pa.float64(), 2))
    src = table(tmp_path / "w.parquet", W=W)
    out = tmp_path / "o.arrow"
    ok("grad", "sum(W**2)", "--points", src, "--out", str(out))
    got = pa.ipc.open_file(str(out)).read_all().to_pydict()
    assert got == {"value": [5.0, 25.0], "d_W[0]": [2.0, 6.0], "d_W[1]": [4.0, 8.0],
                   "error": [None, None]}


def test_what_a_table_cannot_be(tmp_path):
    src = table(tmp_path / "p.parquet", x=[1.0], z=[2.0])
    assert "'z' that the source does not use" in fails("grad", "x", "--points", src)
    assert "a Parquet or Arrow table names its columns" in fails(
        "grad", "x", "--points", src, "--names", "x,z")
    assert "--out FILE" in fails("grad", "x", "--points", src, "--keep", "z",
                                 "--format", "parquet")
    assert "no such file" in fails("grad", "x", "--points", str(tmp_path / "none.parquet"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert "not a parquet table" in fails("grad", "x", "--points", str(tmp_path / "bad.parquet"))
