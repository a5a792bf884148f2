"""The program: a DAG of primitive nodes, recorded as a script runs (define-by-run).

A node holds its op, arguments, static attributes, shape, dtype and source position, and
no value: the values of the traced run sit beside the program (`Graph.values`), computed
when something needs them (adcli/evaluate.py), and the decisions the run took on values
are its guards. Nodes are numbered in creation order, which is a topological order:
every walk over a program is a loop over a range of ids, never a recursion.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .errors import InputError, LimitError, ShapeError, ValueError_
from .ops import OPS


def physical_memory():
    """The machine's memory in bytes (8 GB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 * 10**9


def default_max_memory():
    """A quarter of the machine's memory: a shared machine keeps the rest."""
    return physical_memory() // 4


MAX_WORK = 50_000_000_000   # element operations: about a minute of numpy's work
WORK_PER_SECOND = 1e9       # the rate that says so: what a budget allows another program
OP_WORK = 5_000             # the fixed cost of one op, in element operations: Python's overhead
                            # of about 5 µs an op (measured in script loops) at ~1e9 elements/s
EAGER_ELEMENTS = 64         # arrays up to this size are computed as they are recorded
NODE_BYTES = 200            # the memory of one node besides its value (measured: about 220)


@dataclass
class Limits:
    max_elements: int = 100_000_000   # per array, checked before allocating
    max_nodes: int = 2_000_000        # per graph
    max_memory: int = field(default_factory=default_max_memory)   # bytes one graph holds at once
    max_work: int = MAX_WORK          # element operations of the whole run, all graphs together
    work: int = 0                     # those spent so far, by every graph made with these limits

    def spend(self, work, what, pos=None):
        """Charge `work` element operations before doing them."""
        self.work += work
        if self.work > self.max_work:
            raise LimitError(f"{what} would bring the work of this run to {_count(self.work)} "
                             f"element operations; the limit is {_count(self.max_work)}", pos=pos,
                             hint="raise it with --max-work")

    def seconds_left(self):
        """The time the work budget leaves, for work adcli cannot count (Graphviz's)."""
        return max(1.0, (self.max_work - self.work) / WORK_PER_SECOND)

    def check_memory(self, held, what, pos=None):
        """Refuse before allocating when the memory held would pass the budget."""
        if held > self.max_memory:
            shown, limit = format_bytes(held), format_bytes(self.max_memory)
            if shown == limit:          # just over: the rounding would hide it
                shown, limit = f"{held:,} bytes", f"{self.max_memory:,} bytes"
            raise LimitError(f"{what} would bring the memory held to {shown}; "
                             f"the limit is {limit}", pos=pos, hint="raise it with --max-memory")


def _count(n):
    """1,000,000 or, from ten billion, 2.16e11."""
    if n < 10**10:
        return f"{n:,}"
    mantissa, exponent = f"{n:.3g}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_bytes(n):
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_size(text, option="--max-memory"):
    """'2GB', '512MB', '1.5GiB' or a number of bytes, as bytes."""
    import re
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?(?:[eE]\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = m and m.group(2).lower()
    size = float(m.group(1)) * _UNITS[unit] if m and unit in _UNITS else math.nan
    if not 1 <= size < math.inf:
        raise InputError(f"{option} '{text}': not a size",
                         hint="give bytes with a unit, for example 2GB, 512MB or 1GiB")
    if size > MAX_OPTION:
        raise InputError(f"{option} '{text}': at most 1e15 bytes (1 PB)")
    return int(size)


def parse_count(text, option="--max-work"):
    """'50000000000', '5e10' or '1_000_000' as a positive integer."""
    try:
        n = float(text.replace("_", ""))
    except (AttributeError, ValueError):
        n = math.nan
    if not (1 <= n < math.inf):
        raise InputError(f"{option} '{text}': not a positive number",
                         hint="for example 5e10 or 1000000000")
    if n > MAX_OPTION:
        raise InputError(f"{option} '{text}': at most 1e15 (about a week of work)")
    return int(n)


MAX_OPTION = 1e15   # the ceiling of --max-work and --max-memory


# Arrays have at most 32 dimensions: numpy's own limit is 64, but its broadcasting and
# iterators stop at 32, and a Jacobian or Hessian has the dimensions of two arrays.
MAX_NDIM = 32


def check_ndim(ndim, what, pos=None):
    """`what` names the array: "--at x: an array", "matmul would make an array"."""
    if ndim > MAX_NDIM:
        raise LimitError(f"{what} of {ndim} dimensions; the limit is {MAX_NDIM}", pos=pos)


def as_numbers(values, dtype):
    """Argument values for arithmetic: booleans (from comparisons) as 0 and 1 in the float
    type, as in sum(x > 0); numpy would compute exp(True) in float16 and True + True as
    True. The forward rules (Graph.emit), the derivative rules (autodiff) and gradcheck's
    replays all see them so."""
    return [v.astype(dtype) if getattr(v, "dtype", None) == bool else v for v in values]


_new_node = object.__new__
NO_ATTRS = MappingProxyType({})   # shared by the many nodes without static attributes


class Node:
    """One instruction of the program: an input, a literal, or an op applied to earlier
    nodes, with the shape and dtype its op's shape rule gave. A node holds no value: the
    values of the traced run sit beside the program, in `graph.values`, by node id."""

    __slots__ = ("graph", "id", "op", "args", "attrs", "pos", "name", "shape", "dtype")

    def __init__(self, graph, op, args, attrs, shape, dtype, pos, name=None):
        # (one assignment a line: about a third faster than unpacking a tuple of them)
        self.graph = graph
        self.op = op
        self.args = args
        self.attrs = attrs
        self.shape = shape
        self.dtype = dtype
        self.pos = pos
        self.name = name
        nodes = graph.nodes
        self.id = len(nodes)
        nodes.append(self)
        graph.booleans += dtype == BOOL     # (emit's number path counts its own)

    # the value at the traced point, computed on first use (see Graph.value)
    value = property(lambda self: self.graph.value(self))
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))

    @property
    def is_input(self):
        return self.op is None and self.name is not None

    @property
    def label(self):
        if self.op is not None:
            return self.op.label
        return self.name if self.name is not None else "const"

    def __repr__(self):
        return f"%{self.id}"

    # Arithmetic on nodes adds nodes: this is how one derivative rule serves numbers
    # and graphs alike.
    def _emit(self, name, *args):
        return self.graph.emit(name, *args)

    __add__ = lambda s, o: s._emit("add", s, o)
    __radd__ = lambda s, o: s._emit("add", o, s)
    __sub__ = lambda s, o: s._emit("sub", s, o)
    __rsub__ = lambda s, o: s._emit("sub", o, s)
    __mul__ = lambda s, o: s._emit("mul", s, o)
    __rmul__ = lambda s, o: s._emit("mul", o, s)
    __truediv__ = lambda s, o: s._emit("div", s, o)
    __rtruediv__ = lambda s, o: s._emit("div", o, s)
    __pow__ = lambda s, o: s._emit("pow", s, o)
    __rpow__ = lambda s, o: s._emit("pow", o, s)
    __matmul__ = lambda s, o: s._emit("matmul", s, o)
    __rmatmul__ = lambda s, o: s._emit("matmul", o, s)
    __neg__ = lambda s: s._emit("neg", s)
    __lt__ = lambda s, o: s._emit("lt", s, o)
    __le__ = lambda s, o: s._emit("le", s, o)
    __gt__ = lambda s, o: s._emit("gt", s, o)
    __ge__ = lambda s, o: s._emit("ge", s, o)
    __eq__ = lambda s, o: s._emit("eq", s, o)
    __ne__ = lambda s, o: s._emit("ne", s, o)
    __hash__ = object.__hash__


class ArrayNamespace:
    """The ops of the table as plain array functions on `xp` (numpy or cupy). It holds no
    state: one per array module and dtype serves every graph (`of`)."""

    @classmethod
    def of(cls, xp, dtype):
        key = (xp.__name__, np.dtype(dtype).name)
        ns = _NAMESPACES.get(key)
        if ns is None or ns.xp is not xp:
            ns = _NAMESPACES[key] = cls(xp, np.dtype(dtype))
        return ns

    def __init__(self, xp, dtype):
        self.xp, self.dtype = xp, dtype
        # partial objects, not lambdas: a derivative rule's call of ns.cos(x) costs one
        # Python call less, which counts in the reverse walk of a long scalar loop
        for name, entry in OPS.items():
            if entry.expand is not None:
                f = functools.partial(entry.expand, self)
            elif entry.kind == "constant":
                f = functools.partial(entry.fwd, xp, dtype=dtype)
            else:
                f = functools.partial(entry.fwd, xp)
            setattr(self, name, f)


_NAMESPACES = {}      # (array module, dtype) -> ArrayNamespace


class GraphNamespace:
    """The ops of the table as functions that add nodes to a graph."""

    def __init__(self, graph):
        self._graph = graph

    def __getattr__(self, name):
        if name not in OPS:
            raise AttributeError(name)
        f = lambda *a, **k: self._graph.emit(name, *a, **k)  # noqa: E731
        setattr(self, name, f)
        return f


def forward(entry, xp, values, attrs, dtype, pos=None):
    """Apply op `entry`'s forward rule to argument values: the one place an op runs, for
    the tracer and the evaluator alike. Booleans (from comparisons) enter arithmetic as 0
    and 1; linear-algebra and shape failures become adcli's errors at the node's place."""
    if entry.numeric and any(getattr(v, "dtype", None) == BOOL for v in values):
        values = as_numbers(values, dtype)
    return apply_rule(entry.fwd, entry, pos, xp, *values, **attrs)


def apply_rule(rule, entry, pos, /, *args, **kwargs):
    """rule(*args, **kwargs), a rule of op `entry` (its forward rule, its batching rule):
    a linear-algebra failure is a value error, and numpy's complaints about shapes and
    axes a shape error, at the node's place."""
    try:
        return rule(*args, **kwargs)
    except np.linalg.LinAlgError as e:
        raise ValueError_(f"{entry.name}: {e}", pos=pos) from None
    except (ValueError, TypeError, IndexError) as e:
        raise ShapeError(f"{entry.name}: {e}", pos=pos) from None


def result_dtype(entry, args, dtype):
    """The dtype of an op's result, before it runs: booleans from comparisons, the float
    type from arithmetic, and the arguments' own type from the ops that move elements
    (index, reshape, where's branches): boolean only if every one of them is."""
    if entry.kind == "comparison":
        return BOOL
    if entry.numeric or entry.kind == "constant":
        return dtype
    moved = [a for i, a in enumerate(args) if i not in entry.selects]
    return BOOL if moved and all(a.dtype == BOOL for a in moved) else dtype


BOOL = np.dtype(bool)


class Graph:
    """A program under construction, and the values of the run that records it.

    `emit` records a node with the shape and dtype its op's shape rule gives, without
    computing it: values are computed when something needs them (a branch of a script,
    a printed value, the result), by the evaluator, which frees what no later node reads.
    Scalars whose arguments are known are computed at once (the scalar loops of scripts),
    and so are the literals: constants and the ops without arguments (zeros, randn), whose
    values are part of the program. Decisions a run took on values are its guards."""

    def __init__(self, xp=np, dtype=np.float64, limits=None, seed=0):
        self.xp, self.dtype = xp, np.dtype(dtype)
        self.seed, self._rng = seed, None
        self._array_type = type(xp.empty(0))
        # the type of a 0-d value (see as_array): numpy scalars of the float type
        self._scalar_type = self.dtype.type if xp is np else None
        self.limits = limits or Limits()
        self._max_nodes = self.limits.max_nodes
        self._max_memory = self.limits.max_memory
        self.held = 0              # bytes: the values held beside the program, and its nodes
        self.nodes: list[Node] = []
        self.values = []           # by node id: the traced run's value, or None (not computed)
        self.booleans = 0          # how many nodes are booleans (comparisons' results)
        self.unknown = 0           # how many values were recorded as None (some may be known
                                   # since): 0 means every value is known (autodiff's fast walk)
        self.guards = {}           # node id -> (kind, value): what the run decided on it
        self.plans = {}            # the evaluator's plans, by what they compute (evaluate._plan)
        self.derived = {}          # what derivative commands work out once per program (the
                                   # sparsity patterns and colourings of adcli.sparse)
        self._scalars = {}         # float -> const node: loops reuse their literals
        self.linted = []           # nodes of ops with a lint, in creation order
        self.pos = None            # the source place attributed to nodes created now
        self.hooks = ()            # evaluator hooks for the values computed at the traced point
        self.source = self.filename = None   # the text traced: errors in values computed
                                             # later point into it
        self.ns = GraphNamespace(self)
        self.arrays = ArrayNamespace.of(xp, self.dtype)

    @property
    def rng(self):
        """The seeded generator of randn, rand and randint, made on first use (importing
        numpy.random costs start-up time that most runs do not need)."""
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    # -------------------------------------------------------------- leaves
    def input(self, name, value, pos=None):
        value = self.as_array(value)
        self.hold(NODE_BYTES + value.nbytes, f"the input '{name}'", pos)
        return self._leaf(value, pos, name)

    def placeholder(self, name, shape, dtype, pos=None):
        """An input without a value: the program is evaluated with one given for it."""
        self.held += NODE_BYTES
        node = Node(self, None, (), NO_ATTRS, tuple(shape), np.dtype(dtype), pos, name=name)
        self.values.append(None)
        self.unknown += 1
        return node

    def _leaf(self, value, pos, name=None):
        node = Node(self, None, (), NO_ATTRS, tuple(value.shape), value.dtype, pos, name=name)
        self.values.append(value)
        return node

    def const(self, value, pos=None):
        if type(value) is float:
            node = self._scalars.get(value)
            if node is None:
                node = self._scalars[value] = self._const(value, pos)
            return node
        return self._const(value, pos)

    def _const(self, value, pos):
        value = self.as_array(value)
        self.hold(NODE_BYTES + value.nbytes, "a constant", pos or self.pos)
        return self._leaf(value, pos or self.pos)

    def hold(self, nbytes, what, pos=None):
        """Add nbytes to the memory this graph holds, refused if that passes the budget.
        Arrays that derivatives keep beside the graph (a Jacobian) are held here too."""
        held = self.held + nbytes
        if held > self._max_memory:
            self.limits.check_memory(held, what, pos)
        self.held = held

    def as_array(self, value):
        """An array of the graph's backend and float type. With numpy, a 0-d value is held
        as a numpy scalar: arithmetic on those is about ten times faster than on 0-d
        arrays, which is most of the cost of unrolled scalar loops."""
        a = self.xp.asarray(value)
        if a.dtype.kind in "biuf" and a.dtype != self.dtype and a.dtype != bool:
            a = a.astype(self.dtype)   # integers are promoted, never truncated
        if a.ndim == 0 and self.xp is np:
            return a[()]
        check_ndim(a.ndim, "an array", self.pos)
        return a

    def lift(self, v):
        if isinstance(v, Node):
            return v
        return self.const(v)

    # -------------------------------------------------------------- values
    def value(self, node):
        """The node's value at the traced point, computed now if it is not yet (with what
        it needs that is not known either), and kept."""
        v = self.values[node.id]
        if v is None:
            from .evaluate import force
            v = force(self, node)
        return v

    def decide(self, node, kind="equal"):
        """The value of `node`, which the run is about to take a decision on (a branch, a
        static shape or index): recorded as a guard, so that an evaluation elsewhere can
        tell whether the program still applies there."""
        v = self.value(node)
        self.guards[node.id] = (kind, v)
        return v

    # -------------------------------------------------------------- ops
    def emit(self, name, *args, **attrs):
        """Record op `name` applied to nodes (or constants); its value comes when needed."""
        entry = OPS[name]
        if not entry.plain:                    # a rewrite or a composite's expansion first
            if entry.rewrite is not None:
                better = entry.rewrite(*args, **attrs)
                if better is not None:
                    name, args, attrs = better
                    return self.emit(name, *args, **attrs)
            if entry.expand is not None:
                try:
                    return entry.expand(self.ns, *[self.lift(a) for a in args], **attrs)
                except (ValueError, TypeError, IndexError) as e:   # the composite's own shape logic
                    raise ShapeError(f"{entry.name}: {e}", pos=self.pos) from None
        if len(self.nodes) >= self._max_nodes:
            raise LimitError(f"the graph has more than {self.limits.max_nodes:,} nodes",
                             pos=self.pos, hint="raise the limit with --max-nodes")
        values, limits = self.values, self.limits
        if entry.broadcasts and not self.hooks:
            # the hot path of tracing: an elementwise op of known numbers of the float type
            # (a known number's value is a numpy scalar of that type, see as_array and settle)
            number, argv = self._scalar_type, []
            for a in args:
                v = values[a.id] if type(a) is Node else None
                if type(v) is not number:
                    break
                argv.append(v)
            else:
                # a number from known numbers: computed now, as scripts branch on such
                # values and recording them for later costs more than computing them
                limits.work += OP_WORK + 1
                if limits.work > limits.max_work:
                    limits.spend(0, entry.name, self.pos)
                try:
                    v = entry.fwd(self.xp, *argv, **attrs) if attrs else entry.fwd(self.xp, *argv)
                except (ValueError, TypeError, IndexError, np.linalg.LinAlgError):
                    v = forward(entry, self.xp, argv, attrs, self.dtype, self.pos)   # its error
                if type(v) is not number:
                    v = self.as_array(v)
                    self.booleans += v.dtype == BOOL
                # Node(self, entry, args, attrs, (), v.dtype, self.pos), without the call:
                # the hot path of an unrolled scalar loop (a tenth of its tracing time)
                node = _new_node(Node)
                node.graph = self
                node.op = entry
                node.args = args
                node.attrs = attrs or NO_ATTRS
                node.shape = ()
                node.dtype = v.dtype
                node.pos = self.pos
                node.name = None
                node.id = len(values)
                self.nodes.append(node)
                values.append(v)
                self.held += NODE_BYTES
                if not entry.plain and entry.lint is not None:
                    self.linted.append(node)
                return node
        args = tuple(a if type(a) is Node else self.lift(a) for a in args)
        shape = self.check_shape(entry, args, attrs)
        work, _ = self.cost(entry, [a.shape for a in args], attrs, shape)
        limits.work += work
        # the work budget, checked before the op is recorded
        if limits.work > limits.max_work:
            limits.spend(0, entry.name, self.pos)
        if entry.kind == "constant":   # a literal: computed now, part of the program
            return self._literal(entry, attrs, shape)
        node = Node(self, entry, args, attrs or NO_ATTRS, shape,
                    result_dtype(entry, args, self.dtype), self.pos)
        values.append(None)
        self.unknown += 1
        if math.prod(shape) <= EAGER_ELEMENTS and not self.hooks:
            # a small array of known values: computed now, like a number (its memory is
            # about its node's, and a script branching on it needs no evaluation)
            argv = [values[a.id] for a in args]
            if all(v is not None for v in argv):
                v = self.settle(forward(entry, self.xp, argv, attrs, self.dtype, self.pos), node)
                values[-1] = v
                self.unknown -= 1
                self.held += getattr(v, "nbytes", 8)
        self.held += NODE_BYTES
        if entry.lint is not None:
            self.linted.append(node)     # the few nodes whose op has a lint (api.lints)
        return node

    def settle(self, v, node):
        """A value just computed for `node`, as the graph holds it: an array of the backend
        (a numpy scalar for a number) of the dtype the shape rules promised (bool or the
        float type; complex values, gradcheck's complex step, keep their imaginary part)."""
        if type(v) is not self._scalar_type:
            v = self.as_array(v)
            if v.dtype != node.dtype and v.dtype.kind != "c":
                v = v.astype(node.dtype)
        return v

    def _literal(self, entry, attrs, shape):
        what = f"{entry.name} would make an array"
        self.hold(NODE_BYTES + math.prod(shape) * self.dtype.itemsize, entry.name, self.pos)
        kw = {**attrs, "dtype": self.dtype}
        if entry.random:
            kw["rng"] = self.rng
        value = self.as_array(forward(entry, self.xp, [], kw, self.dtype, self.pos))
        check_ndim(value.ndim, what, self.pos)
        node = Node(self, entry, (), attrs or NO_ATTRS, tuple(value.shape), value.dtype, self.pos)
        self.values.append(value)
        return node

    def cost(self, entry, shapes, attrs, shape):
        """(work, bytes) of applying op `entry` to arrays of these shapes, before it runs:
        the element operations (the elements read and written, or the op's own cost for
        linear algebra, plus a fixed cost per op) and the memory of the result (every op's
        shape rule gives its shape)."""
        sizes = [math.prod(s) for s in shapes]
        n = math.prod(shape)
        if entry.cost is not None:
            work = entry.cost(*shapes, **attrs)
        elif entry.kind in ("shape", "constant"):
            work = n                   # copies or views: the result's elements at most
        else:
            work = n + sum(sizes)
        return OP_WORK + work, NODE_BYTES + n * self.dtype.itemsize

    def node_cost(self, node):
        """The (work, bytes) of applying a node's op again: what a derivative rule costs."""
        return self.cost(node.op, [a.shape for a in node.args], node.attrs, node.shape)

    def check_shape(self, entry, args, attrs):
        """Work out the result's shape before computing it: a mismatch is reported with
        the shapes, and an oversized result is refused before any memory is taken.
        Every op has a shape rule (tests/test_ops.py checks each against its forward)."""
        shapes = [a.shape for a in args]
        for key, v in attrs.items():
            # a shape, an index or axes longer than any array can be (x[None, None, ...]):
            # refused before numpy sees it, as numpy's errors for them vary
            if type(v) is tuple and len(v) > MAX_NDIM:
                raise LimitError(f"{entry.label}: {len(v)} dimensions or indices given; arrays "
                                 f"have at most {MAX_NDIM} dimensions", pos=self.pos)
        try:
            if entry.broadcasts:
                first = shapes[0]
                if all(s == first for s in shapes):
                    if not first:
                        return ()              # scalars: nothing to check
                    shape = first
                else:
                    shape = np.broadcast_shapes(*shapes)
            else:
                shape = tuple(entry.shape(*shapes, **attrs))
        except (ValueError, TypeError, IndexError) as e:
            what = " and ".join(str(tuple(s)) for s in shapes)
            if entry.broadcasts:
                message = f"{entry.label}: shapes {what} do not broadcast"
            elif isinstance(e, IndexError):   # a shape rule reading an axis the array lacks
                message = f"{entry.label}: cannot take an array of shape {what}" if len(
                    shapes) == 1 else f"{entry.label}: cannot take arrays of shapes {what}"
            else:
                message = f"{entry.label}: {e}" + (f" (shapes {what})" if len(shapes) > 1 else "")
            raise ShapeError(message, pos=self.pos) from None
        check_ndim(len(shape), f"{entry.name} would make an array", self.pos)
        n = math.prod(shape)
        if n > self.limits.max_elements:
            raise LimitError(
                f"{entry.name} would make an array of shape {tuple(shape)} ({n:,} elements); "
                f"the limit is {self.limits.max_elements:,}", pos=self.pos,
                hint="raise it with --max-elements")
        return shape


def substitute(graph, outputs, mapping):
    """The outputs with the nodes of `mapping` ({node: node}) replaced: every node between
    that depends on a replaced one is recorded again on the new arguments (a program
    transform: a sub-program applied to other inputs). Returns the new output nodes."""
    new = {old.id: n for old, n in mapping.items() if n is not old}
    if not new:
        return list(outputs)
    hi = max(o.id for o in outputs)
    for node in graph.nodes[min(new):hi + 1]:     # a copy of the list: emit appends to it
        if node.op is not None and node.id not in new and any(a.id in new for a in node.args):
            graph.pos = node.pos
            new[node.id] = graph.emit(node.op.name, *[new.get(a.id, a) for a in node.args],
                                      **node.attrs)
    return [new.get(o.id, o) for o in outputs]


def dependents(graph, ids, last=None):
    """Ids of the nodes that depend on the nodes `ids` (those included), up to node `last`
    (default: the last node): one forward sweep in creation order, a topological order."""
    dep = set(ids)
    if dep:
        stop = len(graph.nodes) if last is None else last + 1
        for node in graph.nodes[min(dep):stop]:
            if node.id not in dep and any(a.id in dep for a in node.args):
                dep.add(node.id)
    return dep


def reachable(outputs):
    """Ids of the nodes the outputs depend on, in topological (creation) order."""
    seen, stack = set(), [o for o in outputs]
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen.add(n.id)
        stack.extend(n.args)
    return sorted(seen)


def format_ir(graph, outputs):
    """The graph as a readable program, one primitive per line (like a JAX jaxpr)."""
    lines = []
    for i in reachable(outputs):
        n = graph.nodes[i]
        ty = f"{n.dtype.name}{list(n.shape)}"
        if n.op is None:
            desc = f"input {n.name}" if n.is_input else f"const {np.array2string(np.asarray(n.value), threshold=6)}"
        else:
            extra = "".join(f" {k}={v}" for k, v in n.attrs.items() if v is not None)
            desc = f"{n.op.name} " + " ".join(repr(a) for a in n.args) + extra
        lines.append(f"%{n.id}: {ty} = {desc}")
    lines.append("return " + ", ".join(repr(o) for o in outputs))
    return "\n".join(lines)


__all__ = ["Graph", "Node", "Limits", "MAX_NDIM", "check_ndim", "reachable", "format_ir"]
