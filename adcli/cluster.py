"""`--points ... --scheduler`: the evaluation of --points on a dask.distributed cluster.

The setup is the single process's (points.setup: the source read, the columns checked, the
source traced at the first readable row). What a worker needs to trace the same program,
the Tracer and that first point (a Shipped, a few hundred bytes), is sent to every worker
once (scattered); a worker thread traces it at its first partition and keeps the
Evaluation for the next ones, so each path through a script is traced once a worker thread,
not once a partition. A partition is one row group of one Parquet file: the worker reads it
with pyarrow a block (--chunk-rows) at a time, evaluates each block with the batch axis
(points._evaluate, the single process's) and writes part-NNNNN.parquet in the --out
folder, numbered in the order of the input, with the columns of the single process's
Parquet output. The client gets back only the numbers of rows and of failed rows.

dask and distributed (the extra `adcli[dask]`) are imported here only, and this module only
with --scheduler: the cold start of adcli does not see them.
"""
from __future__ import annotations

import os
import sys
import threading
import uuid
from dataclasses import dataclass

from .errors import InputError

PART = "part-{:05d}.parquet"


@dataclass
class Shipped:
    """What a worker needs for any partition of a run (sent to each worker once)."""
    key: str                 # this run (a worker keeps the Evaluation of the latest)
    version: str             # the client's adcli: the workers must run the same
    spec: tuple              # points._evaluation's: the Tracer, the command, --at's values...
    wrt: object
    first_point: dict
    shapes: dict
    keep: list
    parts: list              # the results of a row (points.Part)
    dtype: str
    chunk_rows: int
    source: str              # --points as given, for the messages
    detect_anomaly: bool


@dataclass
class Partition:
    file: str                # a local path (absolute) or a URL
    row_group: int
    start: int               # the rows before it in the whole input
    rows: int
    out: str                 # its part file


def check_options(points, fmt, as_json, out, jobs, scheduler):
    """The options --scheduler refuses, before anything is read."""
    from . import columnar
    if columnar.kind(points) != "parquet" and not columnar.is_url(points):
        raise InputError(f"--points {points}: with --scheduler the points are Parquet: a "
                         "file, a folder of .parquet files, or a glob ('folder/*.parquet')")
    if as_json or fmt not in (None, "parquet"):
        raise InputError("with --scheduler the output is a folder of Parquet files",
                         hint="drop --format/--json, and give the folder with --out FOLDER")
    if not out:
        raise InputError("--scheduler writes a folder of Parquet files: give it with "
                         "--out FOLDER")
    if not columnar.is_url(out):
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(f"--out {out}: with --scheduler --out is a folder, and this is a "
                             "file", hint="give a new or an existing folder")
        if os.path.isdir(out) and any(f.startswith("part-") and f.endswith(".parquet")
                                      for f in os.listdir(out)):
            raise InputError(f"--out {out}: the folder holds part files already",
                             hint="remove them, or give another folder")
    if jobs is not None and scheduler != "local":
        raise InputError("--jobs goes with --scheduler local (the workers of a LocalCluster); "
                         "a cluster has its own workers")


def partitions(files, out):
    """The row groups of the files in order, each a Partition (empty ones left out)."""
    from .columnar import is_url, open_parquet
    parts, start = [], 0
    for f in files:
        meta = open_parquet(f).metadata
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            if rows:
                where = f if is_url(f) else os.path.abspath(f)  # (a worker's cwd is its own)
                parts.append(Partition(where, g, start, rows,
                                       _join(out, PART.format(len(parts)))))
                start += rows
    return parts


def _join(folder, name):
    from .columnar import is_url
    return folder.rstrip("/") + "/" + name if is_url(folder) else os.path.join(folder, name)


def connect(scheduler, jobs):
    """(client, cluster or None) for --scheduler: an address (tcp://host:8786), a scheduler
    file (JSON, as `dask scheduler --scheduler-file` writes), or `local` (a LocalCluster of
    --jobs worker processes, default one a CPU, BLAS on one thread each)."""
    try:
        import distributed
    except ImportError:
        raise InputError("--scheduler needs dask.distributed",
                         hint="pip install 'adcli[dask]'") from None
    import logging
    if scheduler == "local":
        cluster = distributed.LocalCluster(n_workers=jobs or os.cpu_count() or 1,
                                           threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
        return distributed.Client(cluster), cluster
    try:
        if "://" in scheduler:
            return distributed.Client(scheduler), None
        if os.path.isfile(scheduler):
            return distributed.Client(scheduler_file=scheduler), None
    except (OSError, ValueError) as e:    # (TimeoutError is an OSError)
        raise InputError(f"--scheduler {scheduler}: cannot reach the scheduler ({e})") from None
    raise InputError(f"--scheduler {scheduler}: neither an address (tcp://host:8786), a "
                     "scheduler file, nor local")


def run(setup, scheduler, jobs, out, chunk_rows, detect_anomaly):
    """The rows of setup's table evaluated by the cluster's workers, written as --out's part
    files: returns (rows that failed, rows, gradcheck's summary or None)."""
    from . import __version__, columnar
    from .render import progress_bar
    if columnar.is_url(out):
        fs, where = columnar.filesystem(out)
        fs.makedirs(where, exist_ok=True)
    else:
        os.makedirs(out, exist_ok=True)
    parts = partitions(setup.table.files, out)
    shipped = Shipped(uuid.uuid4().hex, __version__, setup.spec, setup.wrt, setup.first_point,
                      setup.shapes, setup.keep, setup.parts, setup.dtype.name, chunk_rows,
                      setup.table.path, detect_anomaly)
    client, cluster = connect(scheduler, jobs)
    import distributed
    from .check.batch import merge
    failed = total = 0
    summary = None
    try:
        program = client.scatter(shipped, broadcast=True, hash=False)
        futures = {client.submit(evaluate_partition, program, p, pure=False): p for p in parts}
        with progress_bar("points", sys.stderr) as progress:
            for future in distributed.as_completed(list(futures)):
                try:
                    rows, bad, part = future.result()
                except ModuleNotFoundError as e:
                    raise InputError(f"a worker cannot import {e.name}",
                                     hint=f"install adcli {__version__} (and pyarrow) on "
                                          "every worker") from None
                failed += bad
                total += rows
                if part is not None:          # gradcheck: its rows' verdicts, in input order
                    summary = merge(summary, part, futures[future].start)
                if progress is not None:
                    progress(total, setup.table.rows)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return failed, total, summary


# ---------------------------------------------------------------- on a worker

_THREAD = threading.local()     # a worker thread's (run key, Evaluation, anomalies)


def _evaluation(shipped):
    """The Evaluation of this run in this worker thread, tracing the source at the run's
    first point the first time (a later run's replaces it)."""
    from . import __version__
    from .points import _evaluation as evaluation
    held = getattr(_THREAD, "run", None)
    if held is None or held[0] != shipped.key:
        if shipped.version != __version__:
            raise InputError(f"a worker runs adcli {__version__}, the client {shipped.version}",
                             hint="install the same adcli on the workers as on the client")
        ev = evaluation(shipped.spec)
        ev.start(shipped.first_point, shipped.wrt)
        held = _THREAD.run = (shipped.key, ev, [] if shipped.detect_anomaly else None)
    return held[1], held[2]


def evaluate_partition(shipped, part):
    """One partition read, evaluated and written to its part file: (rows, rows that failed,
    gradcheck's summary of them, rows counted from the partition's first, or None)."""
    import numpy as np

    from . import columnar
    from .files import writing
    from .check.batch import merge
    from .points import _evaluate
    with np.errstate(all="ignore"):
        ev, anomalies = _evaluation(shipped)
        dtype = np.dtype(shipped.dtype)
        pf = columnar.open_parquet(part.file, pre_buffer=False, buffer_size=1 << 20)
        failed, start, summary = 0, part.start, None

        def write(stream):
            nonlocal failed, start, summary
            w = columnar.ArrowWriter(stream, "parquet", shipped.keep, shipped.parts, dtype)
            for batch in pf.iter_batches(batch_size=shipped.chunk_rows,
                                         row_groups=[part.row_group]):
                block = columnar.batch_block(batch, shipped.shapes, shipped.keep, dtype, start,
                                             shipped.source)
                results, errors = _evaluate(ev, block, shipped.parts, anomalies)
                w.write(block, results, errors)
                failed += len(errors) - errors.count(None)
                checked = ev.summary(results, errors)     # gradcheck's verdicts, else None
                if checked is not None:
                    failed += checked[0]["fail"]
                    summary = merge(summary, checked, start - part.start)
                start += block.rows
            w.close()
        if columnar.is_url(part.out):
            fs, where = columnar.filesystem(part.out)
            with fs.open(where, "wb") as f:
                write(f)
        else:
            os.makedirs(os.path.dirname(part.out), exist_ok=True)
            with writing(part.out, "wb") as f:   # (whole or not at all)
                write(f)
    return part.rows, failed, summary
