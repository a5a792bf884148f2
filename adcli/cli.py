"""The command line: a thin layer over adcli.api. Data goes to stdout, messages to stderr.

Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input, 3 an internal error.
"""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from . import __version__
from .errors import BAD_INPUT, INTERNAL, AdcliError, InputError
from .sources import wrt_names

def _typer():
    return typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                       help="Differentiate and check math expressions from the command line.",
                       context_settings={"help_option_names": ["-h", "--help"]})


app = _typer()

AT = typer.Option(None, "--at", metavar="NAME=VALUE,...",
                  help="Input values: numbers, lists [1,2], constant expressions "
                       "(linspace(0,1,5), pi/4) or files (@x.npy, @x.csv, @x.txt, @x.json, "
                       "one array of several: @r.npz:grad_x, standard input: @-); @r.npz "
                       "alone: each array by its name. May repeat.")
DTYPE = typer.Option("float64", "--dtype", help="float64 or float32.")
JSON = typer.Option(False, "--json", help="Write one JSON object to stdout.")
PLAIN = typer.Option(False, "--plain", help="Plain text even on a terminal.")
OUT = typer.Option(None, "--out", metavar="FILE",
                   help="Save the results in full to .npy, .npz, .csv or .json (--at reads "
                        "them back); stdout gets a summary: names, shapes, dtypes.")
QUIET = typer.Option(False, "--quiet", "-q", help="With --out: print no summary.")
# Every count has a ceiling, so that no option can ask for unbounded work: arrays of
# 10^10 elements are 80 GB, and a graph of 10^8 nodes takes some 20 GB.
MAX_ELEMENTS = typer.Option(100_000_000, "--max-elements", min=1, max=10**10,
                            help="Largest array allowed, checked before allocating "
                                 "(at most 10^10).")
MAX_NODES = typer.Option(2_000_000, "--max-nodes", min=1, max=10**8,
                         help="Largest graph allowed (at most 10^8).")
SEED = typer.Option(0, "--seed", min=0,
                    help="Seed of randn, rand and randint in expressions and scripts.")
MAX_STEPS = typer.Option(1_000_000, "--max-steps", min=1, max=10**9,
                         help="Most statements a script may run (at most 10^9).")
MAX_DEPTH = typer.Option(64, "--max-depth", min=1, max=1000,
                         help="Deepest nesting of script function calls (at most 1000).")
MAX_MEMORY = typer.Option(None, "--max-memory", metavar="SIZE",
                          help="Most memory a run may hold at once, checked before allocating: "
                               "2GB, 512MB, ... (default: a quarter of the machine's memory).")
MAX_WORK = typer.Option(None, "--max-work", metavar="N",
                        help="Most element operations a run may do, linear algebra charged n^3 "
                             "(default 5e10, about a minute).")
SOURCE = typer.Argument(..., metavar="EXPR|FILE.ad",
                        help="An expression, a script file (.ad, or any file that exists), "
                             "or - to read either from stdin.")
DEBUG = typer.Option(False, "--debug", help="Show Python tracebacks.")


def _version(value: bool):
    if value:
        print(f"adcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", "-V", callback=_version,
                                      is_eager=True, help="Show the version and exit."),
         no_fuse: bool = typer.Option(False, "--no-fuse",
                                      help="Evaluate op by op with numpy: no fused kernels."),
         kernel_cache: Optional[str] = typer.Option(None, "--kernel-cache", metavar="DIR",
                                                    help="Folder of compiled fused kernels."),
         dump_kernels: Optional[str] = typer.Option(None, "--dump-kernels", metavar="DIR",
                                                    help="Write every fused kernel's C and "
                                                         "CUDA source to DIR.")):
    """adcli: gradients, checked, from the command line.

    Example: adcli grad "x*(x+y)" --at x=2,y=3
    """
    if no_fuse or kernel_cache or dump_kernels:
        from . import kernels
        _restore.append(kernels.configure(**{k: v for k, v in (
            ("enabled", False if no_fuse else None), ("cache_dir", kernel_cache),
            ("dump_dir", dump_kernels)) if v is not None}))


_restore = []    # the kernel settings before the global options (a test runs many commands)


def _global_options_done():
    from . import kernels
    while _restore:
        kernels.configure(**_restore.pop())


def _run(debug, work):
    """Run `work`, turning adcli's errors into one message and an exit code."""
    import numpy as np
    try:
        with np.errstate(all="ignore"):
            return work()
    except AdcliError as e:
        if debug:
            import traceback
            traceback.print_exc()
        print(e.render(), file=sys.stderr)
        raise typer.Exit(e.exit_code)
    except (typer.Exit, KeyboardInterrupt):
        raise
    except BrokenPipeError:
        # the reader of stdout went away (`adcli ... | head -1`): it has what it wanted
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0)
    except MemoryError:
        if debug:
            raise
        print("error: out of memory; lower --max-memory to fail earlier", file=sys.stderr)
        raise typer.Exit(BAD_INPUT)
    except Exception as e:  # a bug in adcli, not in the user's input
        if debug:
            raise
        print(f"internal error: {type(e).__name__}: {e}\n"
              "this is a bug in adcli; rerun with --debug for the traceback", file=sys.stderr)
        raise typer.Exit(INTERNAL)
    finally:
        _global_options_done()


def _show(result, as_json, plain, out, quiet=False):
    """The result on stdout; with --out, saved in full, and on stdout only a summary
    (name, shape, dtype, and the value of a scalar) or, with --quiet, nothing."""
    from . import render
    if out is not None and not out.strip():
        raise InputError("--out needs a file name")
    if quiet and not out:
        raise InputError("--quiet prints no result: give --out FILE to keep it")
    saved = render.save(result, out) if out else None
    render.write_notes(result.notes)
    fmt = render.choose(as_json, plain)
    if saved is not None and not quiet:
        summary = render.saved_summary(result)
        render.emit(fmt, json=lambda: render.summary_json(summary, out, saved, result),
                    plain=lambda: render.summary_plain(summary, out, saved, sys.stdout),
                    rich=lambda console: render.summary_rich(summary, out, saved, console))
    elif saved is None:
        render.emit(fmt, json=lambda: render.to_json(result),
                    plain=lambda: render.write_plain(result, sys.stdout),
                    rich=lambda console: render.to_rich(result, console))
    sys.stdout.flush()   # results before any later message on stderr, also in a pipe


def _limits(max_elements, max_nodes, max_memory, max_work):
    """The limits of one run from the command's options (None: the default)."""
    from .graph import Limits, parse_count, parse_size
    limits = Limits(max_elements=max_elements)
    if max_nodes is not None:
        limits.max_nodes = max_nodes
    if max_memory is not None:
        limits.max_memory = parse_size(max_memory)
    if max_work is not None:
        limits.max_work = parse_count(max_work)
    return limits


def _tracer(expr, at, dtype, max_elements, max_nodes, seed, max_steps, max_depth, max_memory,
            max_work, unset=False):
    """api.tracer of the source and the --at values: (trace(hooks=()), sources.Source)."""
    from . import api
    return api.tracer(expr, at, dtype=dtype, seed=seed, max_steps=max_steps,
                      max_depth=max_depth, unset=unset,
                      limits=_limits(max_elements, max_nodes, max_memory, max_work))


def _trace(*options):
    """Read the source and the --at values, and trace it once."""
    return _tracer(*options)[0]()


POINTS = typer.Option(None, "--points", metavar="FILE|-",
                      help="Evaluate at every row of a table (CSV or TSV with a header, "
                           "NDJSON, Parquet or Arrow; - reads stdin): one result row per point.")
NAMES = typer.Option(None, "--names", metavar="NAME,...",
                     help="With --points: the columns of CSV or TSV input without a header.")
KEEP = typer.Option(None, "--keep", metavar="COLUMN,...",
                    help="With --points: columns to pass through to the output (ids, labels).")
CHUNK_ROWS = typer.Option(None, "--chunk-rows", metavar="N",
                          help="With --points: rows evaluated at once at most (default 65,536).")
JOBS = typer.Option(None, "--jobs", metavar="N",
                    help="With --points: evaluate blocks in N worker processes (in order).")
SCHEDULER = typer.Option(None, "--scheduler", metavar="ADDRESS|FILE|local",
                         help="With --points (Parquet) and --out FOLDER: evaluate on a "
                              "dask.distributed cluster: its address (tcp://host:8786), a "
                              "scheduler file, or local (a LocalCluster of --jobs workers).")
FORMAT = typer.Option(None, "--format", metavar="csv|tsv|ndjson|parquet|arrow",
                      help="With --points: the output format (default: from --out's extension, "
                           "else csv; --json is ndjson).")


def _points(expr, at, points, names, keep, fmt, json, out, chunk_rows, wrt, command, dtype,
            max_elements, max_nodes, max_memory, max_work, seed, max_steps, max_depth,
            detect_anomaly=False, jobs=None, tolerances=None, scheduler=None):
    """COMMAND --points: a row of results per point; exit 1 if some rows failed."""
    from . import points as pts
    limits = _limits(max_elements, max_nodes, max_memory, max_work)
    if jobs is not None and jobs < 1:
        raise InputError("--jobs must be 1 or more")
    failed, total, summary = pts.run(expr, at, points, names, keep, fmt, json, out, chunk_rows,
                                     wrt, command, dtype, limits, seed, max_steps, max_depth,
                                     detect_anomaly, jobs, tolerances, scheduler)
    if summary is not None:              # gradcheck: the pass rate and the worst points
        print("\n".join(summary), file=sys.stderr)
        if failed:
            from .errors import CHECK_FAILED
            raise typer.Exit(CHECK_FAILED)
        return
    if failed:
        print(f"error: {failed:,} of {total:,} points failed: their rows say why in the "
              "`error` column", file=sys.stderr)
        raise typer.Exit(1)


@app.command("eval", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Values and gradients")
def eval_(expr: str = SOURCE,
          at: Optional[List[str]] = AT, points: Optional[str] = POINTS,
          names: Optional[List[str]] = NAMES, keep: Optional[List[str]] = KEEP,
          chunk_rows: Optional[int] = CHUNK_ROWS, format: Optional[str] = FORMAT,
          jobs: Optional[int] = JOBS, scheduler: Optional[str] = SCHEDULER,
          dtype: str = DTYPE, json: bool = JSON,
          plain: bool = PLAIN, out: Optional[str] = OUT, quiet: bool = QUIET, seed: int = SEED,
          max_elements: int = MAX_ELEMENTS, max_nodes: int = MAX_NODES,
          max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
          max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Evaluate EXPR at the given values.

    Example: adcli eval "sum(x**2)" --at x=[1,2,3]
    """
    from . import api

    def work():
        if points is not None:
            return _points(expr, at, points, names, keep, format, json, out, chunk_rows, None,
                           "eval", dtype, max_elements, max_nodes, max_memory, max_work, seed,
                           max_steps, max_depth, jobs=jobs, scheduler=scheduler)
        _no_points_options(names, keep, chunk_rows, format, jobs, scheduler)
        traced = _trace(expr, at, dtype, max_elements, max_nodes, seed, max_steps, max_depth,
                        max_memory, max_work)
        _show(api.evaluate(traced), json, plain, out, quiet)
    _run(debug, work)


def _no_points_options(names, keep, chunk_rows, fmt, jobs=None, scheduler=None):
    given = [o for o, v in (("--names", names), ("--keep", keep), ("--chunk-rows", chunk_rows),
                            ("--format", fmt), ("--jobs", jobs), ("--scheduler", scheduler))
             if v]
    if given:
        raise InputError(f"{given[0]} goes with --points", hint="give the points with --points FILE")


WRT = typer.Option(None, "--wrt", metavar="NAME,...",
                   help="Inputs to differentiate (default: all). May repeat.")


CHUNK = typer.Option(None, "--chunk", min=1, metavar="N",
                     help="tangents or cotangents per batched sweep (default: as many as fit "
                          "in 4M elements)")


@app.command(context_settings={"ignore_unknown_options": True},
             rich_help_panel="Values and gradients")
def grad(expr: str = SOURCE,
         at: Optional[List[str]] = AT, wrt: Optional[List[str]] = WRT,
         points: Optional[str] = POINTS, names: Optional[List[str]] = NAMES,
         keep: Optional[List[str]] = KEEP, chunk_rows: Optional[int] = CHUNK_ROWS,
         format: Optional[str] = FORMAT, jobs: Optional[int] = JOBS,
         scheduler: Optional[str] = SCHEDULER,
         order: int = typer.Option(1, "--order", min=1, max=12,
                                   help="Derivative order: 2 gives d2/dx2 for each input."),
         chunk: Optional[int] = CHUNK,
         detect_anomaly: bool = typer.Option(
             False, "--detect-anomaly",
             help="Name the first op whose value or derivative is NaN or infinite, even where "
                  "the results stay finite; exit 1 if a result is not finite."),
         dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
         out: Optional[str] = OUT, quiet: bool = QUIET,
         seed: int = SEED, max_elements: int = MAX_ELEMENTS,
         max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH,
         debug: bool = DEBUG,
         max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """The value of EXPR and its gradient with respect to every input (reverse mode).

    Example: adcli grad "x*(x+y)" --at x=2,y=3
    """
    from . import api

    def work():
        if points is not None:
            if order != 1:
                raise InputError("--points gives first derivatives (--order 1) for now")
            return _points(expr, at, points, names, keep, format, json, out, chunk_rows,
                           wrt_names(wrt), "grad", dtype, max_elements, max_nodes, max_memory,
                           max_work, seed, max_steps, max_depth, detect_anomaly, jobs,
                           scheduler=scheduler)
        _no_points_options(names, keep, chunk_rows, format, jobs, scheduler)
        traced = _trace(expr, at, dtype, max_elements, max_nodes, seed, max_steps, max_depth,
                        max_memory, max_work)
        if order == 1:
            result = api.gradient(traced, wrt_names(wrt))
        else:
            from . import derivatives
            result = derivatives.higher_grad(traced, wrt_names(wrt), order, chunk=chunk)
        if not detect_anomaly:
            _show(result, json, plain, out, quiet)
            return
        messages, bad = api.detect_anomaly(traced, api.choose_inputs(traced, wrt_names(wrt))[1],
                                           result)
        _show(result, json, plain, out, quiet)
        if bad:
            print(f"anomaly: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not finite",
                  file=sys.stderr)
            raise typer.Exit(1)
        if not messages:
            print("no anomaly: every value and derivative is finite", file=sys.stderr)
    _run(debug, work)


@app.command(rich_help_panel="Reference")
def ops(json: bool = typer.Option(False, "--json", help="Write a JSON list of the ops.")):
    """List the functions and operators, their arguments and derivative conventions."""
    from .ops import public_ops
    from .trace import signature
    rows = [(o.name, signature(o), " ".join(o.symbol), o.kind, o.note) for o in public_ops()]
    if json:
        import json as _json
        print(_json.dumps([dict(name=r[0], usage=r[1], operator=r[2], kind=r[3], derivative=r[4])
                           for r in rows]))
    elif sys.stdout.isatty():
        from rich.console import Console

        from .render import fit
        console = Console()
        columns = [(h, {"no_wrap": h == "name"})
                   for h in ("name", "usage", "operator", "kind", "derivative")]
        console.print(fit(console, columns, rows, title="adcli ops")[0])
    else:
        for r in rows:
            print("\t".join(r))


@app.command(rich_help_panel="Reference")
def doctor():
    """What adcli's fused kernels can use here: the C compiler, libmvec, the kernel cache,
    NVRTC, CuPy and the GPUs it sees; and, if kernels cannot run, why."""
    from .kernels import doctor as report
    for key, value in report():
        print(f"{key}\t{value}")


# ---------------------------------------------------------------- derivatives of every order
# (jacobian, hessian, jvp, vjp, hvp: adcli/derivatives.py)

def _derive(expr, at, dtype, json, plain, out, quiet, seed, max_elements, max_nodes, max_steps,
            max_depth, max_memory, max_work, debug, compute, points=None):
    """Trace EXPR, apply `compute(traced, dtype, limits)` and show the result; with
    points=(command, wrt, options given that --points cannot take, (--points and its own
    options)), a row of results per point instead."""
    def work():
        if points is not None and points[3][0] is not None:
            command, wrt, refused, (path, names, keep, chunk_rows, fmt, jobs, scheduler) = points
            for option, given in refused:
                if given:
                    raise InputError(f"{option} does not go with --points",
                                     hint="--points gives the dense derivative of each row")
            return _points(expr, at, path, names, keep, fmt, json, out, chunk_rows,
                           wrt_names(wrt), command, dtype, max_elements, max_nodes,
                           max_memory, max_work, seed, max_steps, max_depth, jobs=jobs,
                           scheduler=scheduler)
        if points is not None:
            _no_points_options(*points[3][1:])
        traced = _trace(expr, at, dtype, max_elements, max_nodes, seed, max_steps, max_depth,
                        max_memory, max_work)
        _show(compute(traced, traced.graph.dtype, traced.graph.limits), json, plain, out, quiet)
    _run(debug, work)


SPARSE = typer.Option("auto", "--sparse", metavar="auto|on|off",
                      help="Find the sparsity pattern from the program and build the matrix from "
                           "a few compressed sweeps (auto: for matrices of 10,000 entries or "
                           "more whose colouring saves 3/4 of the sweeps).")
PATTERN = typer.Option(False, "--pattern", help="Print the sparsity pattern alone.")


@app.command(context_settings={"ignore_unknown_options": True},
             rich_help_panel="Derivatives of every order and shape")
def jacobian(expr: str = SOURCE, at: Optional[List[str]] = AT, wrt: Optional[List[str]] = WRT,
             mode: Optional[str] = typer.Option(None, "--mode", metavar="fwd|rev",
                                                help="Forward or reverse mode (default: the "
                                                     "cheaper for the sizes)."),
             sparse: str = SPARSE, pattern: bool = PATTERN,
             chunk: Optional[int] = CHUNK,
             points: Optional[str] = POINTS, names: Optional[List[str]] = NAMES,
             keep: Optional[List[str]] = KEEP, chunk_rows: Optional[int] = CHUNK_ROWS,
             format: Optional[str] = FORMAT, jobs: Optional[int] = JOBS,
             scheduler: Optional[str] = SCHEDULER,
             dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
             out: Optional[str] = OUT, quiet: bool = QUIET,
             seed: int = SEED, max_elements: int = MAX_ELEMENTS,
             max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS,
             max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
             max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """The Jacobian of EXPR with respect to each input: shape (value shape) + (input shape).

    Example: adcli jacobian "softmax(x)" --at x=[1,2,3]
    """
    from . import derivatives
    _derive(expr, at, dtype, json, plain, out, quiet, seed, max_elements, max_nodes, max_steps,
            max_depth, max_memory, max_work, debug,
            lambda t, dt, lim: derivatives.jacobian(t, wrt_names(wrt), mode, sparse=sparse,
                                                    pattern=pattern, chunk=chunk),
            ("jacobian", wrt, [("--mode", mode), ("--sparse on", sparse == "on"),
                                          ("--pattern", pattern), ("--chunk", chunk)],
             (points, names, keep, chunk_rows, format, jobs, scheduler)))


@app.command(context_settings={"ignore_unknown_options": True},
             rich_help_panel="Derivatives of every order and shape")
def hessian(expr: str = SOURCE, at: Optional[List[str]] = AT, wrt: Optional[List[str]] = WRT,
            sparse: str = SPARSE, pattern: bool = PATTERN, chunk: Optional[int] = CHUNK,
            points: Optional[str] = POINTS, names: Optional[List[str]] = NAMES,
            keep: Optional[List[str]] = KEEP, chunk_rows: Optional[int] = CHUNK_ROWS,
            format: Optional[str] = FORMAT, jobs: Optional[int] = JOBS,
            scheduler: Optional[str] = SCHEDULER,
            dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
            out: Optional[str] = OUT, quiet: bool = QUIET,
            seed: int = SEED, max_elements: int = MAX_ELEMENTS,
            max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS,
            max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
            max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """The Hessian of a scalar EXPR: every block d2/dx,dy (forward over reverse mode).

    Example: adcli hessian "x^2*y + y^3" --at x=1,y=2
    """
    from . import derivatives
    _derive(expr, at, dtype, json, plain, out, quiet, seed, max_elements, max_nodes, max_steps,
            max_depth, max_memory, max_work, debug,
            lambda t, dt, lim: derivatives.hessian(t, wrt_names(wrt), sparse=sparse,
                                                   pattern=pattern, chunk=chunk),
            ("hessian", wrt, [("--sparse on", sparse == "on"),
                                         ("--pattern", pattern), ("--chunk", chunk)],
             (points, names, keep, chunk_rows, format, jobs, scheduler)))


@app.command("jvp", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Derivatives of every order and shape")
def jvp_(expr: str = SOURCE, at: Optional[List[str]] = AT,
         tangent: Optional[List[str]] = typer.Option(
             None, "--tangent", metavar="NAME=VALUE,...",
             help="The direction each input moves in (inputs not named stay). May repeat."),
         dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
         out: Optional[str] = OUT, quiet: bool = QUIET,
         seed: int = SEED, max_elements: int = MAX_ELEMENTS,
         max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS,
         max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
         max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Jacobian-vector product: how EXPR moves when the inputs move along --tangent
    (forward mode).

    Example: adcli jvp "A @ x" --at 'A=[[1,2],[3,4]],x=[1,1]' --tangent x=[1,0]
    """
    from . import derivatives, values

    def compute(traced, dt, limits):
        if not tangent:
            raise InputError("jvp needs --tangent NAME=VALUE for at least one input")
        tangents = values.resolve(tangent, dt, limits, "--tangent", stdin_free=expr != "-",
                                  seed=seed)
        return derivatives.jvp(traced, tangents)
    _derive(expr, at, dtype, json, plain, out, quiet, seed, max_elements, max_nodes, max_steps,
            max_depth, max_memory, max_work, debug, compute)


@app.command("vjp", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Derivatives of every order and shape")
def vjp_(expr: str = SOURCE, at: Optional[List[str]] = AT,
         cotangent: Optional[str] = typer.Option(
             None, "--cotangent", metavar="VALUE",
             help="A weight for each element of the value (its shape, or one that broadcasts)."),
         wrt: Optional[List[str]] = WRT, dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
         out: Optional[str] = OUT, quiet: bool = QUIET,
         seed: int = SEED, max_elements: int = MAX_ELEMENTS,
         max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS,
         max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
         max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Vector-Jacobian product: the gradient of sum(cotangent * EXPR) with respect to each
    input (reverse mode).

    Example: adcli vjp "A @ x" --at 'A=[[1,2],[3,4]],x=[1,1]' --cotangent [1,1]
    """
    from . import derivatives, values

    def compute(traced, dt, limits):
        if cotangent is None:
            raise InputError("vjp needs --cotangent VALUE (the shape of the value)")
        w = values.value(cotangent, dt, limits, "", "--cotangent", stdin_free=expr != "-",
                         seed=seed)
        return derivatives.vjp(traced, w, wrt_names(wrt))
    _derive(expr, at, dtype, json, plain, out, quiet, seed, max_elements, max_nodes, max_steps,
            max_depth, max_memory, max_work, debug, compute)


@app.command(context_settings={"ignore_unknown_options": True},
             rich_help_panel="Derivatives of every order and shape")
def hvp(expr: str = SOURCE, at: Optional[List[str]] = AT,
        vector: Optional[List[str]] = typer.Option(
            None, "--vector", metavar="NAME=VALUE,...",
            help="The vector v, by input (inputs not named: 0). May repeat."),
        dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
        out: Optional[str] = OUT, quiet: bool = QUIET,
        seed: int = SEED, max_elements: int = MAX_ELEMENTS,
        max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS,
        max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
        max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Hessian-vector product H v of a scalar EXPR, for every input (forward over reverse),
    without forming H.

    Example: adcli hvp "sum(x**3)" --at x=[1,2] --vector x=[1,0]
    """
    from . import derivatives, values

    def compute(traced, dt, limits):
        if not vector:
            raise InputError("hvp needs --vector NAME=VALUE for at least one input")
        return derivatives.hvp(traced, values.resolve(vector, dt, limits, "--vector",
                                                      stdin_free=expr != "-", seed=seed))
    _derive(expr, at, dtype, json, plain, out, quiet, seed, max_elements, max_nodes, max_steps,
            max_depth, max_memory, max_work, debug, compute)


# ---------------------------------------------------------------- minimize
# (adcli/minimize.py)

@app.command("minimize", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Values and gradients")
def minimize_(expr: str = SOURCE, at: Optional[List[str]] = AT,
              wrt: Optional[List[str]] = typer.Option(
                  None, "--wrt", metavar="NAME,...",
                  help="Inputs to minimise over (default: all; the others keep their --at "
                       "values). May repeat."),
              method: str = typer.Option("gd", "--method",
                                         metavar="gd|momentum|adam|newton|lbfgs|trust",
                                         help="gd, momentum, adam, newton (exact Hessian or "
                                              "Hessian-vector products), lbfgs or trust "
                                              "(scipy.optimize)."),
              lr: Optional[float] = typer.Option(None, "--lr",
                                                 help="The learning rate of gd, momentum and "
                                                      "adam (default 0.01, 0.01, 0.001)."),
              steps: int = typer.Option(1000, "--steps", min=0, max=10**9,
                                        help="Most steps (default 1000)."),
              tol: float = typer.Option(1e-6, "--tol",
                                        help="Stop once the gradient norm is at most this "
                                             "(default 1e-6)."),
              xtol: float = typer.Option(1e-10, "--xtol",
                                         help="Stop once a step is at most this times "
                                              "1 + |x| (default 1e-10)."),
              bounds: Optional[List[str]] = typer.Option(
                  None, "--bounds", metavar="NAME=LO:HI",
                  help="Keep an input's elements within [LO, HI] (gd, momentum, adam, "
                       "lbfgs); a side may be empty. May repeat."),
              history: Optional[str] = typer.Option(None, "--history", metavar="FILE.csv",
                                                    help="Write every step to a CSV file."),
              stream: bool = typer.Option(False, "--stream",
                                          help="With --json: one JSON object per step, then "
                                               "the result."),
              check: bool = typer.Option(False, "--check",
                                         help="Run gradcheck at the point found (exit 1 if it "
                                              "fails)."),
              plot: Optional[str] = typer.Option(
                  None, "--plot", metavar="-|FILE.png|FILE.svg",
                  help="Draw the path on the function (one or two scalar inputs): - in the "
                       "terminal, after the result; a .png or .svg file (adcli[plot])."),
              dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN, seed: int = SEED,
              max_elements: int = MAX_ELEMENTS, max_nodes: int = MAX_NODES,
              max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
              max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Follow the gradient downhill from the --at point to a minimum of a scalar EXPR
    (exit 1 if it does not converge).

    Example: adcli minimize "theta*cos(4*theta) + 2*abs(theta)" --at theta=0.5
    """
    def work():
        import numpy as np

        from . import minimize as minimizing, render, sources
        from .errors import CHECK_FAILED
        if stream and not json:
            raise InputError("--stream goes with --json")
        if history is not None and not history.strip():
            raise InputError("--history needs a file name")
        if plot not in (None, "-"):
            from .plot import file_format
            file_format(plot)                  # a bad extension, before any work
        limits = _limits(max_elements, max_nodes, max_memory, max_work)
        api_dtype = np.float32 if dtype == "float32" else np.float64
        from .api import check_dtype
        check_dtype(dtype)
        source = sources.read(expr, at, api_dtype, limits, seed)
        trace_at = minimizing.tracer_at(source, dtype=dtype, limits=limits, seed=seed,
                                        max_steps=max_steps, max_depth=max_depth)
        label = source.filename or source.text
        with render.status_line(sys.stderr) as status:
            def on_step(k, value, grad_norm, x):
                if stream:
                    print(minimizing.step_json(k, value, grad_norm, x), flush=True)
                if status is not None:
                    status(minimizing.progress_text(k, value, grad_norm))
            outcome = minimizing.minimize(
                trace_at, source.values, label=label, wrt=wrt_names(wrt), method=method,
                lr=lr, steps=steps, tol=tol, xtol=xtol, bounds=bounds,
                history=history is not None or plot is not None,
                on_step=on_step if (stream or status is not None) else None)
        drawn = None
        if plot is not None:
            drawn = minimizing.plot_path(outcome, trace_at, source.values, label,
                                         None if plot == "-" else plot,
                                         color=plot == "-" and sys.stdout.isatty())
        if check:
            outcome.check = minimizing.check_at(outcome, source, dtype=dtype, limits=limits,
                                                seed=seed, max_steps=max_steps,
                                                max_depth=max_depth)
            render.write_notes(outcome.check.notes)
        if history is not None:
            minimizing.write_history(outcome, history)
        render.emit(render.choose(json, plain), json=lambda: minimizing.to_json(outcome),
                    plain=lambda: minimizing.to_plain(outcome),
                    rich=lambda console: minimizing.to_rich(outcome, console))
        if drawn:
            (sys.stdout if plot == "-" else sys.stderr).write(drawn)
        sys.stdout.flush()
        if not outcome.converged:
            print(f"not converged: {outcome.message}", file=sys.stderr)
            raise typer.Exit(CHECK_FAILED)
        if outcome.check is not None and outcome.check.failed:
            print("gradcheck failed at the point found: " + outcome.check.message,
                  file=sys.stderr)
            raise typer.Exit(CHECK_FAILED)
    _run(debug, work)


# ---------------------------------------------------------------- profile
# (adcli/profile.py)

@app.command("profile", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Seeing inside")
def profile_(expr: str = SOURCE, at: Optional[List[str]] = AT, wrt: Optional[List[str]] = WRT,
             repeat: int = typer.Option(5, "--repeat", min=1, max=10_000, metavar="N",
                                        help="Timed runs of the value and the gradient, after "
                                             "one warm-up run (at most 10,000)."),
             sort: str = typer.Option("self", "--sort", metavar="self|calls|name",
                                      help="Order of the rows: self time, calls (most "
                                           "first) or op name."),
             fmt: str = typer.Option("table", "--format", metavar="table|csv|json",
                                     help="A table (plain text when piped), CSV or JSON "
                                          "(times in ns)."),
             trace: Optional[str] = typer.Option(None, "--trace", metavar="FILE.json",
                                                 help="Also write a Chrome trace-event file of "
                                                      "the first timed run (Perfetto, "
                                                      "chrome://tracing)."),
             as_jacobian: bool = typer.Option(False, "--jacobian",
                                              help="Time the work of `adcli jacobian` instead "
                                                   "of the gradient's."),
             mode: Optional[str] = typer.Option(None, "--mode", metavar="fwd|rev",
                                                help="With --jacobian: forward or reverse mode."),
             as_hessian: bool = typer.Option(False, "--hessian",
                                             help="Time the work of `adcli hessian`."),
             as_jvp: bool = typer.Option(False, "--jvp", help="Time the work of `adcli jvp` "
                                                              "along --tangent."),
             tangent: Optional[List[str]] = typer.Option(
                 None, "--tangent", metavar="NAME=VALUE,...",
                 help="With --jvp: the direction each input moves in. May repeat."),
             as_hvp: bool = typer.Option(False, "--hvp", help="Time the work of `adcli hvp` "
                                                              "with --vector."),
             vector: Optional[List[str]] = typer.Option(
                 None, "--vector", metavar="NAME=VALUE,...",
                 help="With --hvp: the vector v, by input. May repeat."),
             dtype: str = DTYPE, json: bool = typer.Option(False, "--json",
                                                           help="The same as --format json."),
             plain: bool = PLAIN, seed: int = SEED, max_elements: int = MAX_ELEMENTS,
             max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS,
             max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
             max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Time every op of the value and the gradient of EXPR, forward and backward, over
    --repeat runs after a warm-up; for a script, also by source line. With --jacobian,
    --hessian, --jvp or --hvp, time that command's work instead of the gradient's.

    Example: adcli profile samples/two_layer_relu.ad --repeat 20
    """
    def work():
        from . import profile as profiling
        from . import render
        fmt_ = "json" if json else fmt
        if sort not in profiling.SORT_KEYS:
            raise InputError(f"--sort {sort}: unknown sort key", hint="use self, calls or name")
        if fmt_ not in profiling.FORMATS:
            raise InputError(f"--format {fmt_}: unknown format", hint="use table, csv or json")
        derivative = profiling.derivative_of(
            {"jacobian": as_jacobian, "hessian": as_hessian, "jvp": as_jvp, "hvp": as_hvp},
            wrt, mode, tangent, vector, stdin_free=expr != "-", seed=seed)
        make, source = _tracer(expr, at, dtype, max_elements, max_nodes, seed, max_steps,
                               max_depth, max_memory, max_work)
        with render.progress_bar("timed runs", sys.stderr) as progress:
            p = profiling.profile(make, wrt_names(wrt), repeat, script=source.script,
                                  trace_events=trace is not None, progress=progress,
                                  derivative=derivative)
        if trace is not None:
            profiling.write_trace(p, trace)
        render.write_notes(p.notes)
        render.emit(render.choose(json, plain, fmt), json=lambda: profiling.to_json(p, sort),
                    csv=lambda: profiling.to_csv(p, sort),
                    plain=lambda: profiling.to_plain(p, sort),
                    rich=lambda console: profiling.to_rich(p, console, sort))
        sys.stdout.flush()
    _run(debug, work)


# ---------------------------------------------------------------- dot and trace
# (adcli/dot.py, adcli/wengert.py)

@app.command("dot", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Seeing inside")
def dot_(expr: str = SOURCE, at: Optional[List[str]] = AT,
         backward: bool = typer.Option(False, "--backward",
                                       help="Draw the gradient's graph too, with its saved "
                                            "values (orange edges)."),
         values: bool = typer.Option(False, "--values",
                                     help="Show each node's value and gradient (needs input values)."),
         collapse: bool = typer.Option(False, "--collapse",
                                       help="Draw a block repeated by an unrolled loop once, "
                                            "in a cluster with the count."),
         out: Optional[str] = typer.Option(None, "-o", "--out", metavar="FILE",
                                           help="Write to FILE: .dot or .gv (DOT text), .svg, "
                                                ".png or .pdf (rendered by Graphviz's dot)."),
         max_nodes: int = typer.Option(500, "--max-nodes", min=1, max=100_000,
                                       help="Most nodes drawn (at most 100,000)."),
         dtype: str = DTYPE, seed: int = SEED, max_elements: int = MAX_ELEMENTS,
         max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
         max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """The graph of EXPR as Graphviz DOT text: inputs, constants, ops and the output.

    Example: adcli dot "x*(x+y)" --at x=2,y=3 --backward | dot -Tsvg > graph.svg
    """
    def work():
        from . import render
        from .dot import drawing_format, to_dot, write_drawing
        if out:
            drawing_format(out)
        make, source = _tracer(expr, at, dtype, max_elements, None, seed, max_steps, max_depth,
                               max_memory, max_work, unset=True)
        traced, guessed = make(), source.guessed
        if guessed:
            if values:
                raise InputError("--values needs values: give " + ",".join(
                    f"{n}=..." for n in guessed) + " with --at")
            print("note: no --at value for " + ", ".join(guessed) + ": drawn at "
                  + ", ".join(f"{n}=1" for n in guessed)
                  + " (shapes assumed scalar; give --at for others)", file=sys.stderr)
        notes = []
        text = to_dot(traced, backward=backward, values=values, collapse=collapse,
                      max_nodes=max_nodes, notes=notes)
        render.write_notes(notes)
        if out:
            write_drawing(text, out, traced.graph.limits.seconds_left())
        else:
            sys.stdout.write(text)
    _run(debug, work)


@app.command("trace", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Seeing inside")
def trace_(expr: str = SOURCE, at: Optional[List[str]] = AT,
           full: bool = typer.Option(False, "--full",
                                     help="Write every array in full (tables summarise arrays "
                                          "of more than 10 elements, JSON of more than 1000)."),
           dtype: str = DTYPE,
           json: bool = typer.Option(False, "--json", help="Write a JSON list of the rows."),
           plain: bool = PLAIN, seed: int = SEED,
           max_elements: int = MAX_ELEMENTS, max_nodes: int = MAX_NODES,
           max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
           max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """The evaluation trace (Wengert list): one row per node with its value and adjoint.

    Example: adcli trace "x*(x+y)" --at x=2,y=3
    """
    def work():
        from . import render, wengert
        traced = _trace(expr, at, dtype, max_elements, max_nodes, seed, max_steps, max_depth,
                        max_memory, max_work)
        rows, note = wengert.wengert_list(traced)
        render.write_notes([note] if note else [])
        render.emit(render.choose(json, plain), json=lambda: wengert.to_json(rows, full),
                    plain=lambda: wengert.to_plain(rows, full),
                    rich=lambda console: wengert.to_rich(rows, console, traced.label
                                                         or traced.source, traced.source, full))
    _run(debug, work)


# ---------------------------------------------------------------- gradcheck
# (adcli/check/)

@app.command("gradcheck", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Checking derivatives")
def gradcheck_(
        expr: str = SOURCE,
        at: Optional[List[str]] = AT,
        wrt: Optional[List[str]] = typer.Option(None, "--wrt", metavar="NAME,...",
                                                help="Inputs to check (default: all). May repeat."),
        expect: Optional[List[str]] = typer.Option(
            None, "--expect", metavar="NAME=FORMULA",
            help="A formula claimed to be d/dNAME, checked against the numeric derivative. "
                 "May repeat."),
        method: str = typer.Option("central", "--method",
                                   help="central (differences with Richardson extrapolation) "
                                        "or complex (the complex step)."),
        eps: Optional[float] = typer.Option(None, "--eps",
                                            help="Relative step: h = eps*max(1,|x|) "
                                                 "(default 1e-4)."),
        atol: Optional[float] = typer.Option(None, "--atol",
                                             help="Absolute tolerance (default 1e-8; "
                                                  "float32: 1e-5)."),
        rtol: Optional[float] = typer.Option(None, "--rtol",
                                             help="Relative tolerance (default 1e-6; "
                                                  "float32: 1e-3)."),
        fast: bool = typer.Option(False, "--fast",
                                  help="Compare random projections, not every entry (the "
                                       "default above 2,000 input elements)."),
        order: int = typer.Option(1, "--order",
                                  help="2: also check second derivatives (Hessian-vector "
                                       "products)."),
        points: Optional[str] = POINTS, names: Optional[List[str]] = NAMES,
        keep: Optional[List[str]] = KEEP, chunk_rows: Optional[int] = CHUNK_ROWS,
        format: Optional[str] = FORMAT, jobs: Optional[int] = JOBS,
        scheduler: Optional[str] = SCHEDULER,
        out: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                          help="With --points: write the rows to FILE "
                                               "(.csv, .tsv, .ndjson, .parquet, .arrow)."),
        dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
        seed: int = typer.Option(0, "--seed", min=0,
                                 help="Seed of randn, rand and randint in expressions and "
                                      "scripts and of gradcheck's random directions."),
        max_elements: int = MAX_ELEMENTS, max_nodes: int = MAX_NODES,
        max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
        max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Check adcli's derivatives of EXPR against numeric ones (exit 1 if one is wrong).

    Example: adcli gradcheck samples/fancy.ad
    """
    def work():
        import numpy as np

        from . import check as gradcheck, render, sources
        from .errors import CHECK_FAILED
        if points is not None:
            for option, given in (("--expect", expect), ("--method complex", method != "central"),
                                  ("--fast", fast), ("--order 2", order != 1)):
                if given:
                    raise InputError(f"{option} does not go with --points",
                                     hint="--points checks every first derivative of each "
                                          "row by central differences")
            from .check.run import check_tolerances
            check_tolerances(eps, atol, rtol)
            return _points(expr, at, points, names, keep, format, json, out, chunk_rows,
                           wrt_names(wrt), "gradcheck", dtype, max_elements, max_nodes,
                           max_memory, max_work, seed, max_steps, max_depth, jobs=jobs,
                           tolerances=(rtol, atol, eps), scheduler=scheduler)
        _no_points_options(names, keep, chunk_rows, format, jobs, scheduler)
        if out is not None:
            raise InputError("--out goes with --points for gradcheck",
                             hint="gradcheck --json writes the report to stdout")
        limits = _limits(max_elements, max_nodes, max_memory, max_work)
        source = sources.read(expr, at, np.float64, limits, seed)
        with render.progress_bar("numeric derivatives", sys.stderr) as progress:
            report = gradcheck.check(
                source.text, source.values, script=source.script, filename=source.filename,
                dtype=dtype, wrt=wrt_names(wrt), expect=expect or [], method=method,
                eps=eps, atol=atol, rtol=rtol, fast=fast, order=order, seed=seed, limits=limits,
                max_steps=max_steps, max_depth=max_depth, progress=progress)
        render.write_notes(report.notes)
        render.emit(render.choose(json, plain), json=lambda: gradcheck.to_json(report),
                    plain=lambda: gradcheck.to_plain(report),
                    rich=lambda console: gradcheck.to_rich(report, console))
        if report.failed:
            raise typer.Exit(CHECK_FAILED)
        if report.verdict == "unchecked":
            raise typer.Exit(BAD_INPUT)
    _run(debug, work)


# ---------------------------------------------------------------- plot
# (adcli/plot.py)

@app.command("plot", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Seeing inside")
def plot_(expr: str = SOURCE,
          over: Optional[List[str]] = typer.Option(
              None, "--over", metavar="NAME=LO:HI,...",
              help="The input to plot and its range (x=-5:5; pi works: x=-pi:pi); two inputs "
                   "(x=-2:2,y=-1:3, or --over twice) give a contour map. May repeat."),
          points: Optional[int] = typer.Option(
              None, "--points", metavar="N",
              help="Grid points per input (default 201 for one input; for two, 60 x 24 on "
                   "the terminal and 101 x 101 in a file)."),
          grad: bool = typer.Option(False, "--grad", help="Plot the derivative too."),
          order: Optional[int] = typer.Option(
              None, "--order", min=1, max=2,
              help="Plot the derivatives up to this order (2: f' and f'')."),
          out: Optional[str] = typer.Option(None, "-o", "--out", metavar="FILE",
                                            help="Write a .png or .svg (needs matplotlib: "
                                                 "pip install 'adcli[plot]')."),
          width: int = typer.Option(60, "--width", min=10, max=1000,
                                    help="Width of a terminal plot, in characters."),
          height: int = typer.Option(17, "--height", min=3, max=1000,
                                     help="Height of a terminal plot of one input, in lines."),
          at: Optional[List[str]] = AT, dtype: str = DTYPE, seed: int = SEED,
          max_elements: int = MAX_ELEMENTS, max_nodes: int = MAX_NODES,
          max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
          max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Plot EXPR over a range of one input (with --grad its derivative), or of two (a
    contour map), marking kinks and points where it is not finite: in the terminal, or to
    PNG or SVG with -o.

    Example: adcli plot "sin(x)" --over x=-pi:pi --grad
    """
    def work():
        from . import plot as plotting
        text = plotting.run(expr, at, over, points=points,
                            order=max(order or 0, 1 if grad else 0), out=out, width=width,
                            height=height, color=out is None and sys.stdout.isatty(),
                            dtype=dtype, limits=_limits(max_elements, max_nodes, max_memory,
                                                        max_work),
                            seed=seed, max_steps=max_steps, max_depth=max_depth)
        sys.stdout.write(text)
        sys.stdout.flush()
    _run(debug, work)


# ---------------------------------------------------------------- diff
# (adcli/formula.py)

@app.command("diff", context_settings={"ignore_unknown_options": True},
             rich_help_panel="Derivatives of every order and shape")
def diff_(expr: str = SOURCE, wrt: Optional[List[str]] = WRT,
          order: int = typer.Option(1, "--order", metavar="N",
                                    help="The N-th derivative (1 to 12; inputs of one element "
                                         "above 1)."),
          format: str = typer.Option("adcli", "--format", metavar="adcli|latex|python",
                                     help="adcli's language (adcli eval reads it back), LaTeX, "
                                          "or a Python function on numpy arrays."),
          at: Optional[List[str]] = AT, dtype: str = DTYPE, seed: int = SEED,
          max_elements: int = MAX_ELEMENTS, max_nodes: int = MAX_NODES,
          max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
          max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """The derivative of EXPR as a formula, printed from the derivative program: shared
    subexpressions named once (t1, t2, ...), simplified.

    Example: adcli diff "x*(x+y)" --wrt x
    """
    def work():
        from . import formula
        from .errors import note
        from .render import write_notes
        run, source = _tracer(expr, at, dtype, max_elements, max_nodes, seed, max_steps,
                              max_depth, max_memory, max_work, unset=True)
        traced = run()
        text = formula.formula(traced, wrt_names(wrt), order, format)
        if traced.graph.guards:
            write_notes([note("diff-path", "the formula follows the path the program took at "
                                           "the traced point (its branches, loop counts and "
                                           "masks); elsewhere it may not apply")])
        sys.stdout.write(text)
    _run(debug, work)


@app.command(context_settings={"ignore_unknown_options": True},
             rich_help_panel="Derivatives of every order and shape")
def taylor(expr: str = SOURCE, at: Optional[List[str]] = AT,
           order: int = typer.Option(6, "--order", min=0, max=1000,
                                     help="The highest coefficient: c_0 ... c_K (at most 1000)."),
           direction: Optional[List[str]] = typer.Option(
               None, "--direction", metavar="NAME=VALUE,...",
               help="The line the inputs move along, x(t) = x + t*VALUE (inputs not named "
                    "stay; default: the only input, by 1). May repeat."),
           dtype: str = DTYPE, json: bool = JSON, plain: bool = PLAIN,
           seed: int = SEED, max_elements: int = MAX_ELEMENTS,
           max_nodes: int = MAX_NODES, max_steps: int = MAX_STEPS,
           max_depth: int = MAX_DEPTH, debug: bool = DEBUG,
           max_memory: Optional[str] = MAX_MEMORY, max_work: Optional[str] = MAX_WORK):
    """Taylor coefficients c_k = f^(k)/k! of EXPR along a line through the point, to order K
    (truncated power series through every op).

    Example: adcli taylor "exp(x)" --at x=0 --order 5
    """
    from . import render, taylor as series, values

    def work():
        traced = _trace(expr, at, dtype, max_elements, max_nodes, seed, max_steps, max_depth,
                        max_memory, max_work)
        given = None
        if direction:
            given = values.resolve(direction, traced.graph.dtype, traced.graph.limits,
                                   "--direction", stdin_free=expr != "-", seed=seed)
        result = series.coefficients(traced, order, given)
        render.write_notes(result.notes)
        render.emit(render.choose(json, plain), json=lambda: render.taylor_json(result),
                    plain=lambda: render.taylor_plain(result),
                    rich=lambda console: render.taylor_rich(result, console))
        sys.stdout.flush()
    _run(debug, work)


# `adcli --help` lists the commands by panel, in this order
PANELS = ["Values and gradients", "Derivatives of every order and shape", "Checking derivatives",
          "Seeing inside", "Reference"]
app.registered_commands.sort(key=lambda c: PANELS.index(c.rich_help_panel))


def _unwrapped(doc):
    """A docstring's paragraphs each on one line: help text reflows to the terminal, and
    the line breaks of the source would show as ragged lines in `adcli --help`."""
    import inspect
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


for _info in app.registered_commands:
    _info.help = _unwrapped(_info.callback.__doc__)


def run():
    """The console script. Once the command has finished and its output is flushed, the
    process ends without tearing down its objects: freeing a graph of a million nodes one
    by one takes longer than the rest of a large run's output."""
    import os
    for stream in (sys.stdout, sys.stderr):
        # a name that is not UTF-8 (a file's, as Python keeps it) must not stop the output
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        _app_for(sys.argv)()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:      # the reader went away (| head): nothing more to say
        pass
    os._exit(code)


GLOBAL_OPTIONS = {"--no-fuse": 0, "--kernel-cache": 1, "--dump-kernels": 1}   # -> values taken


def _app_for(argv):
    """The app with only the command that argv names (all of them for `adcli --help`, or
    for a name that is not a command, so that typer suggests one): typer builds every
    registered command's parameters at start-up, a few milliseconds of each run that
    would grow with every command added (click's "lazy subcommands" pattern)."""
    args = list(argv[1:])
    while args[:1] and args[0] in GLOBAL_OPTIONS:     # adcli --no-fuse grad ...
        del args[:1 + GLOBAL_OPTIONS[args[0]]]
    name = args[0] if args else None
    wanted = [c for c in app.registered_commands
              if (c.name or c.callback.__name__.replace("_", "-")) == name]
    if not wanted:
        return app
    lazy = _typer()
    lazy.registered_callback = app.registered_callback
    lazy.registered_commands = wanted
    if not any(_looks_negative(a) for a in args[1:]):
        # Unknown options pass as arguments only so that an expression such as -x**2 can
        # be given; without one, `--foo` is reported as an unknown option, with a suggestion.
        import copy
        info = copy.copy(wanted[0])
        info.context_settings = {**(info.context_settings or {}), "ignore_unknown_options": False}
        lazy.registered_commands = [info]
    return lazy


def _looks_negative(arg):
    """An argument that starts with a minus but is no option: an expression like -x**2."""
    return arg.startswith("-") and not arg.startswith("--") and arg not in ("-", "-h", "-o", "-q")
