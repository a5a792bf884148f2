"""Columnar tables for --points: Parquet files (a file, a folder of them, a glob, or a URL
such as s3://bucket/folder through fsspec) and Arrow IPC files, read and written a record
batch at a time through pyarrow (imported only for --points).
Numbers stay binary: nothing is parsed or formatted.

A column of numbers is an input of one number per row; a column of lists (fixed-size, or
lists of one length) an input array of that length. Output columns are those of the CSV
output (kept columns as they were, `value`, `d_NAME`, arrays flattened as value[0]...),
float64 (or float32 with --dtype float32), and `error`, a string that is null for a row
that is fine.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from .errors import InputError

SUFFIXES = {"parquet": "parquet", "pq": "parquet", "arrow": "arrow", "feather": "arrow",
            "ipc": "arrow"}


def kind(path):
    """"parquet" or "arrow" for a path that names such a table (a folder of Parquet files
    too, or a glob of them: 'folder/*.parquet'), else None."""
    if path and path != "-" and os.path.isdir(path):
        return "parquet"
    ext = path.rsplit(".", 1)[-1].lower() if path and "." in os.path.basename(path) else ""
    return SUFFIXES.get(ext)


def is_url(path):
    """s3://bucket/key, file:///...: read through fsspec (Parquet only)."""
    return "://" in path


def filesystem(path):
    """The fsspec filesystem of a URL (s3://bucket/key, file:///...), None for a local path:
    URLs need fsspec, and the filesystem's package (s3fs for s3), imported only here."""
    if not is_url(path):
        return None
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{path}: reading a URL needs fsspec (and s3fs for s3://)",
                         hint="pip install fsspec s3fs") from None
    try:
        return fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as e:
        raise InputError(f"{path}: {e}") from None


def parquet_files(path):
    """The Parquet files of a path, in name order: the file itself, the *.parquet files of a
    folder, or the files a glob ('folder/*.parquet') matches; a URL's through fsspec."""
    remote = filesystem(path)
    if remote is None:
        if os.path.isdir(path):
            return sorted(glob.glob(os.path.join(glob.escape(path), "*.parquet")))
        if glob.has_magic(path):
            return sorted(f for f in glob.glob(path) if os.path.isfile(f))
        return [path] if os.path.isfile(path) else []
    fs, where = remote
    if fs.isdir(where):
        found = fs.glob(where.rstrip("/") + "/*.parquet")
    elif glob.has_magic(where):
        found = fs.glob(where)
    else:
        found = [where] if fs.isfile(where) else []
    return sorted(fs.unstrip_protocol(f) for f in found)


def open_parquet(path, **options):
    """pyarrow's ParquetFile of a local path or a URL (through fsspec)."""
    pa = pyarrow()
    remote = filesystem(path)
    return pa.parquet.ParquetFile(path if remote is None else remote[0].open(remote[1], "rb"),
                                  **options)


def pyarrow():
    import pyarrow as pa
    import pyarrow.ipc  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    return pa


class ArrowTable:
    """A Parquet or Arrow IPC input of points, a record batch at a time."""

    def __init__(self, path, chunk_rows):
        pa = pyarrow()
        # (a URL without a known extension: a folder of Parquet files, s3://bucket/folder)
        self.fmt, self.chunk, self.path = kind(path) or "parquet", chunk_rows, path
        if self.fmt == "parquet":
            self.files = parquet_files(path)
            if not self.files:
                raise InputError(f"--points {path}: " + (
                    "the folder holds no .parquet files" if os.path.isdir(path) else
                    "no file matches" if glob.has_magic(path) else "no such file"))
        elif not os.path.isfile(path):
            raise InputError(f"--points {path}: no such file")
        else:
            self.files = [path]
        try:
            schema = (open_parquet(self.files[0]).schema_arrow if self.fmt == "parquet"
                      else pa.ipc.open_file(self.files[0]).schema)
        except (OSError, pa.ArrowInvalid) as e:
            raise InputError(f"--points {path}: not a {self.fmt} table ({e})") from None
        self.columns = schema.names
        self.pending = []
        # the number of rows, for the progress bar (Parquet says it without reading them)
        self.rows = (sum(open_parquet(f).metadata.num_rows for f in self.files)
                     if self.fmt == "parquet" else None)

    def shapes(self, columns):
        """The shape of a row's value in each column (read from the first row)."""
        first = next(self._batches(1), None)
        out = {}
        for c in columns:
            v = first.column(c)[0].as_py() if first is not None and first.num_rows else 0.0
            out[c] = np.shape(v)
        return out

    def _batches(self, size):
        pa = pyarrow()
        for f in self.files:
            if self.fmt == "parquet":
                # without pre-buffering, which would read every row group of the file at
                # once: memory bounded by a block, not by the file
                yield from open_parquet(f, pre_buffer=False, buffer_size=1 << 20
                                        ).iter_batches(batch_size=size)
            else:
                reader = pa.ipc.open_file(f)
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    for start in range(0, batch.num_rows, size):
                        yield batch.slice(start, size)

    def blocks(self, shapes, keep, dtype):
        start = 0
        for batch in self._batches(self.chunk):
            yield batch_block(batch, shapes, keep, dtype, start, self.path)
            start += batch.num_rows


def batch_block(batch, shapes, keep, dtype, start, path):
    """A record batch as a points.Block: `start` is the number of rows before it (for the
    rows' numbers in their messages), `shapes` the input columns' shapes by name."""
    from .points import Block
    n = batch.num_rows
    values, errors = {}, [None] * n
    for c, shape in shapes.items():
        col = batch.column(c)
        nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False))
        if shape:
            rows = col.to_pylist()
            arr = np.zeros((n,) + shape, dtype=dtype)
            for r, v in enumerate(rows):
                if v is None:
                    continue
                v = np.asarray(v, dtype=dtype)
                if v.shape != shape:
                    errors[r] = errors[r] or (f"row {start + r + 1}: '{c}' has shape "
                                              f"{v.shape}, not {shape}")
                else:
                    arr[r] = v
        else:
            try:
                arr = col.to_numpy(zero_copy_only=False).astype(dtype)
            except (TypeError, ValueError) as e:
                raise InputError(f"--points {path}: column {c} is not numbers "
                                 f"({col.type}): {e}") from None
            arr = np.where(nulls, 0.0, arr).astype(dtype)
        for r in np.nonzero(nulls)[0]:
            errors[r] = errors[r] or f"row {start + r + 1}: no value for '{c}'"
        values[c] = arr
    kept = {c: batch.column(c) for c in keep}
    return Block(n, values, kept, errors)


class ArrowWriter:
    """Result rows as a Parquet or Arrow IPC file, a record batch per block."""

    def __init__(self, stream, fmt, keep, parts, dtype):
        from .points import column_names
        self.pa, self.stream, self.fmt, self.keep = pyarrow(), stream, fmt, keep
        self.parts, self.names = parts, column_names(parts)
        self.dtype, self.writer = dtype, None

    def write(self, block, results, errors):
        pa, n = self.pa, block.rows
        arrays = [block.kept[c] if hasattr(block.kept[c], "type") else pa.array(block.kept[c])
                  for c in self.keep]
        for part, res in zip(self.parts, results):
            if part.text:
                arrays.append(pa.array(list(res), type=pa.string()))
                continue
            flat = res.reshape(n, -1).astype(self.dtype)
            arrays += [pa.array(np.ascontiguousarray(flat[:, k])) for k in range(flat.shape[1])]
        arrays.append(pa.array(errors, type=pa.string()))
        batch = pa.RecordBatch.from_arrays(arrays, names=list(self.keep) + self.names + ["error"])
        if self.writer is None:
            # (dictionary encoding pays for repeated values, not for floats)
            self.writer = (pa.parquet.ParquetWriter(self.stream, batch.schema,
                                                    use_dictionary=list(self.keep) + ["error"])
                           if self.fmt == "parquet" else pa.ipc.new_file(self.stream, batch.schema))
        self.writer.write_batch(batch)

    def close(self):
        if self.writer is not None:
            self.writer.close()
