"""The library behind the CLI: trace a source at given values, evaluate, differentiate."""
from __future__ import annotations

import functools
import gc
from dataclasses import dataclass, field

import numpy as np

from . import autodiff
from .errors import AdcliError, InputError, Note, UnknownNameError, note, suggest, warning
from .graph import Graph, Limits, Node
from .parse import parse
from .trace import CALLABLE, CONSTANTS, Evaluator, check_calls, first_use, free_names

DTYPES = {"float64": np.float64, "float32": np.float32}


@dataclass
class Traced:
    """A source evaluated at a point: the graph, its output node and its input nodes."""
    source: str
    graph: Graph
    output: Node
    inputs: dict            # name -> input node, in order of first appearance
    filename: str = None
    label: str = None       # how results name the source: the expression, or the script file

    def at(self, values, *, outputs=None, batch=None):
        """The program evaluated with inputs at other values (name -> array; inputs not
        named keep theirs), without parsing or tracing again: {output node id: value}
        for `outputs` (default: the output). With batch=B, the values named carry a leading
        axis of B points. Raises GuardFailed where the script would take another path."""
        from .evaluate import evaluate as run
        given = {}
        for name, v in values.items():
            if name not in self.inputs:
                choose_inputs(self, [name], what="input")
            given[self.inputs[name]] = self.graph.xp.asarray(v, dtype=self.graph.dtype)
        # (the evaluator's errors point into the source: the graph knows it)
        return run(self.graph, outputs or [self.output], given, batch=batch,
                   batched=list(given) if batch else ())

    def gradient_program(self, wrt=None):
        """The gradient as a program: the output's VJP transform, recorded as nodes of the
        same graph (None for an input the output does not reach), for `at` to evaluate."""
        _, nodes = choose_inputs(self, wrt)
        scalar_output(self, "grad")
        try:
            return autodiff.vjp(self.graph, self.output, nodes, create_graph=True)
        except AdcliError as e:
            raise e.located(self.source, self.filename)


@dataclass
class Result:
    expr: str
    value: object
    grad: dict = None               # name -> array
    dtype: str = "float64"
    device: str = "cpu"
    notes: list = field(default_factory=list)      # errors.Note: messages for stderr
    order: int = 1                  # of the derivatives in `grad`
    rows: list = None               # other results: (plain key, terminal label, array)
    extra: dict = None              # their JSON members: key -> array, dict of arrays or text
    sparse: object = None           # a sparse Jacobian or Hessian (adcli.sparse.SparseMatrix)


def _without_gc(f):
    """Run f with Python's cyclic garbage collector paused. Recording a graph allocates
    millions of long-lived objects; each full collection would scan them all, which makes
    tracing a long unrolled loop about twice as slow. Nothing is lost: the collector runs
    again afterwards. Before it does, the objects made meanwhile are moved to its oldest
    generation (freeze, then unfreeze: a splice of lists, no scan), where they belong:
    otherwise the first young collection after the pause would scan every one of them
    (25 ms after a 10,000-iteration loop). A cycle among them that becomes garbage is
    still collected, by the next full collection."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return f(*args, **kwargs)
        finally:
            if was_enabled:
                gc.freeze()
                gc.unfreeze()
                gc.enable()
    return wrapper


def check_dtype(dtype):
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype '{dtype}'", hint="use float64 or float32")
    return DTYPES[dtype]


@_without_gc
def trace(source, values, *, dtype="float64", limits=None, filename=None, seed=0, hooks=()):
    """Parse `source` and evaluate it at `values` (name -> array), recording the graph;
    `seed` seeds its randn, rand and randint, as in a script. `hooks`: evaluator hooks for
    the values computed at the traced point (graph.hooks; adcli profile times them)."""
    limits = limits or Limits()
    try:
        tree = parse(source)
        check_calls(tree)
        names = free_names(tree)
        given = [n for n in names if n in values]
        missing = [n for n in names if n not in values and n not in CONSTANTS]
        for extra in values:
            if extra not in names and suggest(extra, missing):
                raise UnknownNameError(f"--at {extra}: the expression has no name '{extra}'",
                                       hint=suggest(extra, missing))
        for name in missing:
            if name in CALLABLE:
                raise UnknownNameError(f"'{name}' is a function; call it as {name}(...)",
                                       pos=first_use(tree, name))
        if missing:
            raise InputError("no value for " + ", ".join(f"'{n}'" for n in missing),
                             pos=first_use(tree, missing[0]),
                             hint="give " + ("it" if len(missing) == 1 else "them") + " with --at "
                             + ",".join(f"{n}=..." for n in missing))
        for extra in values:
            if extra not in names:
                close = suggest(extra, names)
                raise UnknownNameError(f"--at {extra}: the expression has no name '{extra}'",
                                       hint=close or ("its names are " + ", ".join(names)
                                                      if names else "it has no names"))
        graph = Graph(dtype=check_dtype(dtype), limits=limits, seed=seed)
        graph.source, graph.filename = source, filename   # for errors in values computed later
        graph.hooks = tuple(hooks)
        inputs = {n: graph.input(n, values[n], pos=first_use(tree, n)) for n in given}
        out = Evaluator(graph, inputs)
        output = out.array(out.run(tree), tree[1])
    except AdcliError as e:
        raise e.located(source, filename)
    return Traced(source, graph, output, inputs, filename)


@_without_gc
def trace_script(source, values, *, dtype="float64", limits=None, filename=None, seed=0,
                 max_steps=1_000_000, max_depth=64, hooks=()):
    """Run a .ad script at `values`, recording its graph; its inputs are its `input` names.
    `hooks`: as for `trace`."""
    from .script import Interpreter, check_structure, declared_inputs
    limits = limits or Limits()
    try:
        tree = parse(source, "script")
        check_structure(tree)
        declared = declared_inputs(tree)
        for extra in values:
            if extra not in declared:
                raise UnknownNameError(f"--at {extra}: the script has no input '{extra}'",
                                       hint=suggest(extra, declared) or (
                                           "its inputs are " + ", ".join(declared) if declared
                                           else "it declares no inputs: `input NAME`"))
        graph = Graph(dtype=check_dtype(dtype), limits=limits, seed=seed)
        graph.source, graph.filename = source, filename   # for errors in values computed later
        graph.hooks = tuple(hooks)
        interp = Interpreter(graph, source, filename, values, max_steps=max_steps, max_depth=max_depth)
        value = interp.run(tree)
        output = Evaluator(graph, {}).array(value, tree[-1][1])
    except AdcliError as e:
        raise e.located(source, filename)
    return Traced(source, graph, output, interp.inputs, filename, label=filename or "<script>")


def tracer(expr, at=(), *, dtype="float64", limits=None, seed=0, max_steps=1_000_000,
           max_depth=64, unset=False):
    """Read EXPR (an expression, a script file, or - for standard input; see
    adcli.sources) and the `at` values (--at specs) once, since standard input can only be
    read once, and return (trace, source): trace(hooks=()) traces it, as often as asked
    (adcli profile does so once per run, with its timing hooks in the graph). `seed` seeds
    randn, rand and randint. With `unset`, an expression's names without a value are
    traced at 1.0 (source.guessed lists them)."""
    from . import sources
    limits = limits or Limits()
    source = sources.read(expr, at, check_dtype(dtype), limits, seed)
    if unset:
        sources.guess_unset(source)
    text, vals, filename = source.text, source.values, source.filename

    def run(hooks=()):
        if source.script:
            return trace_script(text, vals, dtype=dtype, limits=limits, filename=filename,
                                seed=seed, max_steps=max_steps, max_depth=max_depth,
                                hooks=hooks)
        try:
            return trace(text, vals, dtype=dtype, limits=limits, filename=filename, seed=seed,
                         hooks=hooks)
        except AdcliError as e:
            guessed = source.guessed
            if guessed and not e.hint:
                e.hint = ("without --at, " + ", ".join(guessed) + " stood for the number 1; "
                          "give values of the right shape with --at "
                          + ",".join(f"{n}=..." for n in guessed))
            raise
    return run, source


def load(expr, at=(), **options):
    """EXPR and the `at` values read and traced once: a Traced (options: as for tracer)."""
    return tracer(expr, at, **options)[0]()


def output_value(traced):
    """The output's value at the traced point. Computed by the evaluator, which frees every
    value once no later node reads it: a script's earlier steps do not stay in memory."""
    graph, out = traced.graph, traced.output
    v = graph.values[out.id]
    if v is None:      # (the evaluator's errors point into the source: the graph knows it)
        from .evaluate import evaluate as run
        v = graph.values[out.id] = run(graph, [out], charge=False)[out.id]
    return v


def evaluate(traced):
    res = Result(traced.label or traced.source, output_value(traced), dtype=traced.graph.dtype.name)
    res.notes += nonfinite_notes(traced, traced.output, "value")
    res.notes += lints(traced)
    return res


def _at(traced, node):
    """Where a note about `node` points: its place in the source, a caret under it."""
    return dict(pos=node.pos, source=traced.source, filename=traced.filename)


def lints(traced):
    """The warnings of the ops that have a `lint` about the point at hand (`where` with a
    branch that is not finite), for the calls a person wrote: the same op inside a
    derivative rule is not the user's to fix."""
    from .graph import reachable
    graph, notes = traced.graph, []
    # ops with a lint are rare: the graph lists their nodes, and is walked only if any
    linted = [n for n in graph.linted if _written_at(traced, n.pos, n.op.name)]
    used = set(reachable([traced.output])) if linted else ()
    for node in linted:
        if node.id not in used:
            continue
        message = node.op.lint(graph.xp, *[a.value for a in node.args])
        if message:
            notes.append(warning(node.op.name + "-lint", message, **_at(traced, node)))
    return notes


def _written_at(traced, pos, word):
    """Does the source have `word` at position pos (line, column, width)?"""
    if pos is None or not traced.source:
        return False
    lines = traced.source.splitlines()
    line, col = pos[0], pos[1]
    return 0 < line <= len(lines) and lines[line - 1][col - 1:].startswith(word)


def detect_anomaly(traced, nodes, result):
    """--detect-anomaly: name the first node whose forward value, and the first derivative
    rule whose backward output, is a NaN or an infinity born from finite inputs, even where
    the final results stay finite. Returns (messages, bad): bad names the value or the
    derivatives in `result` that are not finite. The messages replace the notes of
    `result` that they say more about (that a value is not finite, and the ops' lints, which
    are about non-finite values they mask); the findings also go into
    result.extra["anomalies"] (for --json)."""
    graph, out, messages = traced.graph, traced.output, []
    from .render import grad_key
    finals = [("the value", out.value)] + [(grad_key(w, result.order), g)
                                           for w, g in (result.grad or {}).items()]
    bad = [name for name, v in finals if np.asarray(v).dtype.kind == "f"
           and not bool(np.all(np.isfinite(v)))]
    records = []

    def record(phase, node, reaches):
        records.append({"phase": phase, "op": node.op.name,
                        "line": node.pos[0] if node.pos else None,
                        "column": node.pos[1] if node.pos else None,
                        "inputs": [_short(a.value) for a in node.args], "reaches": reaches})

    from .evaluate import first_nonfinite
    born = first_nonfinite(graph, out)
    if born is not None and born.op is not None:
        reached = "the value" in bad
        reach = ("it reaches the value" if reached
                 else "it does not reach the value, which is finite (masked)")
        messages.append(Note("anomaly-forward", f"{call_text(born)} gives "
                             f"{_kinds(born.value)}; {reach}", "warning",
                             tag="anomaly (forward)", **_at(traced, born)))
        record("forward", born, ["value"] if reached else [])
    hit = autodiff.first_nonfinite_cotangent(graph, out, nodes, safe=False) if nodes else None
    if hit is not None:
        node, i = hit
        grads = [n for n in bad if n != "the value"]
        reach = ("it reaches " + ", ".join(grads) if grads else
                 "no gradient is affected: adcli's chain rule counts a zero cotangent times an "
                 "infinite derivative as 0, so every gradient is finite")
        messages.append(Note("anomaly-backward", f"the derivative of {call_text(node)} "
                             f"with respect to argument {i + 1} is not finite here; {reach}",
                             "warning", tag="anomaly (backward)", **_at(traced, node)))
        record("backward", node, grads)
    result.extra = {**(result.extra or {}), "anomalies": records}
    result.notes = [n for n in result.notes if n.code not in ANOMALY_REPLACES
                    and not n.code.endswith("-lint")] + messages
    return messages, bad


ANOMALY_REPLACES = ("nonfinite-value", "nonfinite-gradient")


def choose_inputs(traced, wrt, what="--wrt", required=True):
    """The names and input nodes that `wrt` picks (default: every input), checked; with
    `required`, an expression without inputs is an error."""
    names = list(traced.inputs)
    wrt = names if wrt is None else list(wrt)
    for w in wrt:
        if w not in traced.inputs:
            raise UnknownNameError(f"{what} {w}: the expression has no input '{w}'",
                                   hint=suggest(w, names) or (
                                       "its inputs are " + ", ".join(names) if names
                                       else "it has no inputs"))
    if required and not wrt:
        raise InputError("there is nothing to differentiate: the expression has no inputs")
    return wrt, [traced.inputs[w] for w in wrt]


def scalar_output(traced, command):
    """The output node, which `command` needs to be one number."""
    out = traced.output
    if out.size != 1:
        raise InputError(f"{command} needs a scalar value, but the value has shape "
                         f"{tuple(out.shape)}", hint="differentiate sum(...) or mean(...) of it")
    if out.dtype.kind != "f":
        raise InputError("the value is a boolean and has no derivative")
    return out


@_without_gc
def gradient(traced, wrt=None):
    """The gradient of a scalar output with respect to the chosen inputs (default: all)."""
    out = traced.output
    wrt, nodes = choose_inputs(traced, wrt, required=False)
    scalar_output(traced, "grad")
    from . import chunks
    try:
        plan = chunks.elementwise_sum(traced.graph, out, nodes)
        if plan is not None:      # a large elementwise sum: by chunks, in bounded memory
            traced.graph.values[out.id], cts = chunks.gradient(traced.graph, out, nodes, plan)
        else:
            cts = autodiff.vjp(traced.graph, out, nodes)
    except AdcliError as e:
        raise e.located(traced.source, traced.filename)
    res = evaluate(traced)
    res.grad = {}
    for w, n, g in zip(wrt, nodes, cts):
        if g is None:
            res.notes.append(note("no-derivative", f"no derivative reaches '{w}' (the value does "
                                  "not depend on it, or only through steps with derivative 0); "
                                  "its gradient is 0"))
            g = traced.graph.xp.zeros(n.shape, dtype=traced.graph.dtype)
        res.grad[w] = g
    # a finite sum has no inf or nan in it (one pass, no mask); else look element by element
    with np.errstate(all="ignore"):
        bad = [w for w, g in res.grad.items()
               if not (np.isfinite(np.sum(g)) or bool(np.all(np.isfinite(g))))]
    if bad and bool(np.all(np.isfinite(out.value))):
        res.notes.append(_gradient_origin(traced, nodes, bad))
    return res


def _gradient_origin(traced, nodes, bad):
    """Say which rule first made a gradient non-finite, and where it sits in the source."""
    msg = ("the gradient of " + ", ".join(f"'{w}'" for w in bad)
           + " is not finite although the value is")
    hit = autodiff.first_nonfinite_cotangent(traced.graph, traced.output, nodes)
    if hit is None:
        return warning("nonfinite-gradient", msg)
    node, i = hit
    return warning("nonfinite-gradient", f"{msg}: the derivative of {call_text(node)} with "
                   f"respect to argument {i + 1} is not finite there", **_at(traced, node))


def _kinds(a):
    a = np.asarray(a)
    parts = [w for w, m in (("nan", np.isnan(a)), ("inf", np.isposinf(a)), ("-inf", np.isneginf(a)))
             if m.any()]
    return ", ".join(parts)


def nonfinite_notes(traced, node, what):
    v = node.value
    if v.dtype.kind != "f" or bool(np.all(np.isfinite(v))):
        return []
    from .evaluate import first_nonfinite
    origin = first_nonfinite(traced.graph, node)
    msg, code = f"the {what} contains {_kinds(v)}", f"nonfinite-{what}"
    if origin is None:
        return [warning(code, msg)]
    if origin.op is None:
        return [warning(code, msg + (f"; it comes from the input '{origin.name}'"
                                     if origin.is_input else ""))]
    return [warning(code, f"{msg}: first produced by {call_text(origin)}",
                    **_at(traced, origin))]


def call_text(node):
    """A node's op applied to its arguments' values, as notes show it: log(-1.0)."""
    return f"{node.op.name}({', '.join(_short(a.value) for a in node.args)})"


def _short(v):
    v = np.asarray(v)
    if v.size == 1:
        return repr(float(v.reshape(())))
    return f"array of shape {v.shape}"
