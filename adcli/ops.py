"""The op table: everything about one primitive lives in one entry.

An entry holds the name users write, the array parameters and static attributes, the
forward rule, the derivative rules, the domain on which tests sample it and where its
kinks are. Nothing else in adcli names a specific op: the parser, the engine, the op
tests and `adcli ops` all read this table.

Rules are written against a namespace `ns` whose attributes are the ops of this table
and whose values support + - * / ** and comparisons. With the array namespace the rules
compute numbers; with the graph namespace they add nodes to the graph, so derivatives of
derivatives come from the same rules.

Derivative rules come in three shapes:

* ``partials`` (elementwise ops): one function per argument giving the local derivative
  d out / d arg as an array. The engine forms ``g * d`` for reverse mode and
  ``sum_i t_i * d_i`` for forward mode, so one rule serves both and no JVP can go
  missing. ``IDENTITY`` and ``NEGATE`` mark the derivatives 1 and -1, skipped cheaply.
* ``vjp`` + ``jvp`` (structural ops): ``vjp`` is one function per argument,
  ``(ns, g, y, *args, **attrs) -> cotangent``; ``jvp`` is one function
  ``(ns, tangents, y, *args, **attrs) -> tangent`` where absent tangents are None.
* ``expand`` (composites): the op is defined by other ops and differentiates through them.

Sparsity (adcli/sparsity.py) reads two more fields, both defaulted by kind:

* ``depends``: which argument elements each result element reads. "elementwise" (the
  broadcast-matching element of each argument), "reduce" (the elements of its slice along
  ``axis``, all when None; or, without an ``axis``, those that broadcast to it: sum_to),
  "along" (a result of the argument's shape whose element reads its whole slice along
  ``axis``: softmax, cumsum), "moves" (the op copies elements: found by running its own
  forward rule on an array of element ids), "dense" (every element of every argument), or
  einsum-style subscripts "...ij->..." (or a function of the shapes and attributes giving
  them): the result element reads the argument elements whose indices agree on the
  letters they share. Exact: "elementwise", "reduce", "moves", and the subscripts of
  matmul, einsum, trace, det, inv and solve. Conservative (can give false nonzeros, never
  false zeros): "dense" (custom), "along" for cumsum and cumprod (which read a prefix) and
  prod_others (which skips the element itself), and the subscripts of cross (which skip
  the element's own index) and cofactor (which skip its row and column).
* ``curvature``: the op's second derivative. "linear" (none: add, sum, the structural
  ops), "piecewise" (a piecewise constant first derivative, so none either: abs, relu,
  maximum, clip, max: adcli's rules give 0 at the kinks too), "bilinear" (only the pairs
  of two different arguments at one point of the product: mul, matmul, einsum), a tuple of
  argument pairs (div: (0, 1) and (1, 1)), or "nonlinear" (every pair of what a result
  element reads). Exact for elementwise ops, matmul, einsum, logsumexp, softmax and inv;
  conservative for prod and cumprod (whose d2/dx_i^2 is 0), prod_others, det and
  cofactor (linear in each entry), solve (linear in b), cross (which pairs a_i with b_j
  for i == j too) and custom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import series as ps
from .errors import AdcliError, ShapeError

IDENTITY = "identity"  # d out / d arg == 1
NEGATE = "negate"      # d out / d arg == -1
REQUIRED = object()    # a static attribute without default


@dataclass(eq=False)
class Op:
    name: str
    args: tuple = ("x",)          # array parameters; ("*xs",) takes a list of arrays
    fwd: object = None            # fwd(xp, *arrays, **attrs) -> array
    partials: tuple = None        # elementwise local derivatives, one per argument
    vjp: tuple = None             # reverse-mode rules, one per argument
    jvp: object = None            # forward-mode rule
    expand: object = None         # composite definition in terms of other ops
    attrs: dict = field(default_factory=dict)  # static parameters and their defaults
    kind: str = "elementwise"     # elementwise, comparison, reduction, linalg, shape, constant, internal
    differentiable: bool = True   # False: the derivative is zero everywhere it exists
    domain: tuple = ((-2.0, 2.0),)  # sampling interval per argument, for tests
    kink: object = None           # kink(xp, *arrays, **attrs) is zero exactly at the non-smooth points
    note: str = ""                # the derivative convention, shown by `adcli ops`
    doc: str = ""
    symbol: tuple = ()            # operator spellings that parse to this op
    shape: object = None          # shape(*shapes, **attrs): output shape, checked before allocating
    variadic_elementwise: str = None  # max(a, b, c) folds this elementwise op
    internal: bool = False        # produced by derivative rules, not written by users
    aliases: tuple = ()           # other names users may call it by
    shape_args: bool = False      # randn(2, 3), reshape(x, 2, 3): the positional arguments after
                                  # the arrays form the first attribute (a shape or axes)
    method: bool = False          # callable as x.name(...), x its first argument (numpy's and
                                  # PyTorch's habit: x.sum(), x.reshape(2, 3))
    string_attrs: tuple = ()      # static attributes that are strings, not numbers
    attrs_first: bool = False     # einsum("ij,jk->ik", a, b): static attributes before the arrays
    random: bool = False          # draws from the graph's seeded generator
    rewrite: object = None        # rewrite(*args, **attrs) -> (op name, args, attrs) or None:
                                  # an equivalent, numerically better form, used instead
    lint: object = None           # lint(xp, *arrays) -> a warning about this point, or None
    cost: object = None           # cost(*shapes, **attrs): element operations, where that is not
                                  # the elements read and written (linear algebra)
    selects: tuple = ()           # arguments that choose between the others (where's condition):
                                  # kept boolean, never differentiated, real in the complex step
    adds: bool = False            # a sum of its argument's elements: a program summing an
                                  # elementwise expression splits into chunks (adcli/chunks.py)
    attr_types: dict = None       # static attribute -> "ints" (axes, shapes), "int", "count"
                                  # (an int, 0 or more), "bool",
                                  # "float" or "str"; by default from the attribute's name
    batch: object = None          # batch(xp, *args, shapes, out, **attrs): the op at B points at
                                  # once, every argument with a leading batch axis (shapes: the
                                  # arguments' per-point shapes, out: the result's); None: the
                                  # default of the op's kind: elementwise ops broadcast
                                  # (adcli/evaluate.py), reductions move their axes
    examples: tuple = ()          # (argument shapes, attributes) the op tests use; one shape
                                  # stands for a single argument (elementwise ops: broadcasts)
    value_of: int = None          # the op's value is this argument's (custom: -1, the body):
                                  # gradcheck's all-columns evaluation sees through it
    series: object = None         # series(xp, y, *args, **attrs): the result's truncated power
                                  # series from the arguments' (adcli/taylor.py); None: by
                                  # curvature (linear, bilinear, piecewise) or none
    depends: object = None        # sparsity: which argument elements a result element reads
                                  # (see the module docstring); None: by kind (elementwise ops
                                  # "elementwise", reductions "reduce", shape ops "moves",
                                  # the others "dense", conservative)
    curvature: object = None      # sparsity: the op's second derivative (module docstring);
                                  # None: by kind ("linear" for shape ops, else "nonlinear")
    c: str = None                 # the fused kernels' C expression of the value (adcli/kernels):
                                  # {0}, {1}, ... its arguments, in <math.h>'s double spelling;
                                  # None: the op is not fusible
    c_partials: tuple = None      # C expressions of its local derivatives, one per argument,
                                  # {y} its result (IDENTITY, NEGATE, None as in partials)
    fused_reduce: str = None      # "logsumexp": the fused kernels reduce every element of a
                                  # fused value this way in their loop (adcli/kernels/codegen.py)
    # How `adcli diff` writes the op (adcli/formula.py); by default a call of its name:
    infix: tuple = None           # (precedence, associativity): written with symbol[0] between
                                  # its arguments (before its one argument), Python's rules
    spelled: object = None        # spelled(x_text, **attrs) -> text: written otherwise (x[1:3])
    assigns: bool = False         # written as an indexed assignment of a script (y[key] = v)
    linear: tuple = None          # the op is sum_i c_i arg_i: add (1, 1), sub (1, -1), neg (-1,)
    product: bool = False         # the elementwise product a*b: a zero factor gives 0, a factor
                                  # 1 the other, constant factors commute to the front
    homogeneous: tuple = ()       # arguments in which the op is linear: a constant factor or a
                                  # minus there moves out, (3*u)/v = 3*(u/v)
    units: tuple = None           # per argument, the constant with which the op is its other
                                  # argument (a/1 = a, a**1 = a), or None
    annihilators: tuple = None    # per argument, (constant, result) or None: 0/b = 0, a**0 = 1
    reshapes: bool = False        # its argument's elements at another shape (reshape,
                                  # broadcast_to): at the argument's own shape it is the
                                  # argument, and applied to itself it takes the inner argument
    printed: object = None        # printed(ns, *args, **attrs): an internal op in public ops,
                                  # equal at ordinary points (mul0 as a plain product); None
                                  # for an internal op: diff cannot write it
    latex: str = None             # LaTeX: an infix op's symbol, or a template of {0}, {1}
                                  # (a slot in braces is set alone, a bare one in parentheses
                                  # unless it is an atom); default \operatorname{name}(...)
    numpy: str = None             # --format python: numpy's function (np.NAME), or a template
                                  # of {0}, {1}; default np.<name>

    def __post_init__(self):
        self._reads = None            # what its reverse rules read (autodiff.rule_reads)
        # derived once: the engine reads these for every node it records or walks
        self.arity = None if self.args[:1] and self.args[0].startswith("*") else len(self.args)
        self.broadcasts = self.kind in ("elementwise", "comparison")
        # nothing to do before recording it: no rewrite, no expansion, no lint (Graph.emit)
        self.plain = self.rewrite is None and self.expand is None and self.lint is None
        # a call of it is its arguments, arrays, in order: sin(y) (the tracer's fast path)
        self.plain_call = self.kind == "elementwise" and not self.attrs \
            and not self.variadic_elementwise
        # arithmetic: boolean arguments are converted to numbers first (not an argument
        # that selects, nor what it selects between: where(c, a, b) moves a's elements)
        self.numeric = self.kind in ("elementwise", "reduction", "linalg") and not self.selects
        self.attr_types = {**{k: ATTR_TYPES.get(k, "float") for k in self.attrs},
                           **{k: "str" for k in self.string_attrs}, **(self.attr_types or {})}
        if self.batch is None and self.kind == "reduction":
            self.batch = axes_moved()
        if isinstance(self.batch, FromEntry):    # a rule made from the op's own forward rule
            self.batch = self.batch.make(self)
        if self.depends is None:
            self.depends = {"elementwise": "elementwise", "comparison": "elementwise",
                            "reduction": "reduce", "shape": "moves"}.get(self.kind, "dense")
        if self.curvature is None:
            self.curvature = "linear" if self.kind in ("shape", "comparison", "constant") \
                else "nonlinear"

    @property
    def label(self):
        return self.symbol[0] if self.symbol else self.name


OPS: dict[str, Op] = {}

# the type of a static attribute, by its name, where an entry does not say otherwise
ATTR_TYPES = {"axis": "ints", "axes": "ints", "shape": "ints", "size": "ints", "n": "int",
              "m": "int", "num": "int", "ddof": "int", "low": "int", "high": "int", "k": "int",
              "keepdims": "bool"}


def op(name, **kw):
    entry = Op(name, **kw)
    if entry.kind in ("elementwise", "comparison") and len(entry.domain) < len(entry.args):
        entry.domain = entry.domain * len(entry.args)
    OPS[name] = entry
    return entry


# ---------------------------------------------------------------- helpers for rules

def axes_of(axis, ndim):
    """Normalise numpy's axis argument to a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axis:
        if not -max(ndim, 1) <= a < max(ndim, 1):   # a 0-d array takes 0 and -1, as in numpy
            raise ValueError(f"axis {a} is out of range for an array of {ndim} dimensions")
        out.append(a % max(ndim, 1))
    return tuple(sorted(set(out)))


def same_shape(shape, checked):
    """The shape rule of an op whose result has its argument's shape, once `checked` (an
    expression that raises when the arguments do not fit) has run."""
    return tuple(shape)


def kept_shape(shape, axis):
    axes = axes_of(axis, len(shape))
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def reduced_shape(shape, axis=None, keepdims=False, **_):
    axes = axes_of(axis, len(shape))
    if keepdims:
        return kept_shape(shape, axis)
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def unreduce(ns, g, shape, axis, keepdims):
    """Spread the cotangent of a reduction back over the reduced axes."""
    if not keepdims:
        g = ns.reshape(g, shape=kept_shape(shape, axis))
    return ns.broadcast_to(g, shape=tuple(shape))


def sum_to_shape(xp, x, shape):
    """Sum a broadcast array back to `shape`: the adjoint of broadcasting."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and x.shape[i + lead] != 1)
    return xp.reshape(xp.sum(x, axis=axes), shape)


def swap_last(ns, x):
    """Matrix transpose of the last two axes (batched)."""
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return ns.transpose(x, axes=perm)


def matmul_shape(sa, sb):
    if not sa or not sb:
        raise ValueError("matmul needs arrays of at least one dimension; use * for scalars")
    a2 = (1,) + sa if len(sa) == 1 else sa
    b2 = sb + (1,) if len(sb) == 1 else sb
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dimensions differ ({a2[-1]} != {b2[-2]})")
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(sa) == 1:
        out = out[:-2] + out[-1:]
    if len(sb) == 1:
        out = out[:-1]
    return out


def matmul_cost(sa, sb, **_):
    """m*n*k multiply-adds for every product of the batch."""
    return math.prod(matmul_shape(sa, sb)) * (sa[-1] if sa else 1)


def cubic_cost(sa, *rest, **_):
    """n^3 for each n x n matrix (LU, inverse, SVD), and n for each element of a right-hand
    side (solve)."""
    n = sa[-1] if sa else 1
    return math.prod(sa[:-2]) * n ** 3 + sum(math.prod(s) for s in rest) * n


def max_weights(ns, x, y, axis, keepdims):
    """Weights of the maximal elements: ties split the derivative evenly."""
    hit = ns.where(x == unreduce(ns, y, x.shape, axis, keepdims), 1.0, 0.0)
    return hit / ns.sum(hit, axis=axis, keepdims=True)


def prod_others(xp, x, axis=None):
    """For every element, the product of the others along `axis`, without division,
    so zeros are handled exactly (prod([0, 2, 3]) has gradient [6, 0, 0])."""
    axes = axes_of(axis, x.ndim)
    if not axes or x.size == 0:
        return xp.ones_like(x)
    rest = [i for i in range(x.ndim) if i not in axes]
    perm = rest + list(axes)
    xt = xp.transpose(x, perm)
    flat = xp.reshape(xt, xt.shape[:len(rest)] + (-1,))
    ones = xp.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(xp.cumprod(xp.flip(xp.concatenate([flat[..., 1:], ones], axis=-1), -1), -1), -1)
    return xp.transpose(xp.reshape(left * right, xt.shape), np.argsort(perm))


def index_key(key, shape):
    """Check a static index (ints, slices, None) against a shape."""
    dims = [k for k in key if k is not None]
    if len(dims) > len(shape):
        raise ValueError(f"too many indices ({len(dims)}) for an array of shape {tuple(shape)}")
    for k, n in zip(dims, shape):
        if isinstance(k, int) and not -n <= k < n:
            raise ValueError(f"index {k} is out of range for an axis of length {n}")
    if any(isinstance(k, np.ndarray) for k in key):   # integer arrays: a mask, a diagonal
        return np.broadcast_to(False, tuple(shape))[key].shape
    return np.empty(shape, dtype=bool)[key].shape if math.prod(shape) < 1 << 20 else _index_shape(key, shape)


def _index_shape(key, shape):
    out, i = [], 0
    for k in key:
        if k is None:
            out.append(1)
            continue
        if isinstance(k, slice):
            out.append(len(range(*k.indices(shape[i]))))
        i += 1
    return tuple(out) + tuple(shape[i:])


def index_text(key):
    """A static index as written in the language: 1, 1:3, ::2, None (no integer arrays:
    the language writes those as boolean masks, whose values a program does not keep)."""
    parts = []
    for k in key:
        if isinstance(k, slice):
            parts.append(":".join("" if v is None else str(v) for v in (k.start, k.stop))
                         + ("" if k.step is None else f":{k.step}"))
        elif k is None:
            parts.append("None")
        elif isinstance(k, (int, np.integer)):
            parts.append(str(int(k)))
        else:
            raise ValueError("an index by an array of positions has no written form")
    return ", ".join(parts)


def unindex(xp, g, key=(), shape=()):
    out = xp.zeros(shape, dtype=g.dtype)
    out[key] = g
    return out


def _size_of(shape):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"a shape needs non-negative integers, got {shape}")
    return shape


def _reshape_shape(s, shape):
    shape = _size_of(shape) if not any(d == -1 for d in np.atleast_1d(shape)) else tuple(shape)
    n = math.prod(s)
    known = math.prod(d for d in shape if d != -1)
    if shape.count(-1) > 1 or (-1 in shape and (known == 0 or n % known)) or (-1 not in shape and known != n):
        raise ValueError(f"cannot reshape an array of shape {s} ({n} elements) into shape {shape}")
    return tuple(n // known if d == -1 else d for d in shape)


def _concat_shape(*shapes, axis=0):
    nd = len(shapes[0])
    ax = axes_of(axis, nd)[0]
    for s in shapes:
        if len(s) != nd or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != ax):
            raise ValueError(f"all shapes must agree except on axis {axis}: {list(shapes)}")
    return shapes[0][:ax] + (sum(s[ax] for s in shapes),) + shapes[0][ax + 1:]


def _stack_shape(*shapes, axis=0):
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"all shapes must be equal: {list(shapes)}")
    ax = axes_of(axis, len(shapes[0]) + 1)[0]
    return shapes[0][:ax] + (len(shapes),) + shapes[0][ax:]


def _fail(message):
    raise ValueError(message)


def _matrix_shape(s):
    return s[:-2] if len(s) >= 2 else _fail(f"needs a matrix, got shape {s}")


def _square_shape(s):
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"needs a square matrix, got shape {s}")
    return s


# ---------------------------------------------------------------- helpers for batching rules
# A batching rule computes the op at B points at once: every argument comes with a leading
# batch axis, and the result is (B,) + the per-point result shape `out`. Most rules are
# the op itself with its axes counted past the batch axis, or the op itself where it maps
# over leading axes already (the matrix functions). A case that cannot batch raises
# NotImplementedError, which the evaluator reports as NotBatchable.

class FromEntry:
    """A batching rule made from the entry it is given to (its forward rule, its defaults)."""

    def __init__(self, make):
        self.make = make


def leading_axes():
    """The rule of an op that maps over leading axes already (det, inv, trace, tril): itself."""
    return FromEntry(lambda e: lambda xp, *args, shapes, out, **attrs: e.fwd(xp, *args, **attrs))


def axes_moved(flat=False):
    """The rule of an op whose `axis` names axes of its argument (the reductions, softmax,
    flip): the op with those axes counted past the batch axis. axis=None names every axis
    of a point; with flat=True it means the flattened array (cumsum, argmax), so each
    point is flattened instead."""
    def make(e):
        def rule(xp, x, shapes, out, **attrs):
            axis, nd, b = attrs.get("axis", e.attrs.get("axis")), len(shapes[0]), x.shape[0]
            if axis is None and flat:
                attrs["axis"] = 1
                return xp.reshape(e.fwd(xp, xp.reshape(x, (b, -1)), **attrs), (b,) + tuple(out))
            attrs["axis"] = tuple(a + 1 for a in axes_of(axis, nd)) if nd else ()
            return e.fwd(xp, x, **attrs)
        return rule
    return FromEntry(make)


def aligned(xp, args, shapes, rank=None):
    """Batched arguments with each point's array aligned at the trailing axes of `rank`
    dimensions (as broadcasting aligns them), so that broadcasting pairs point b with point b."""
    rank = max(len(s) for s in shapes) if rank is None else rank
    return [xp.reshape(a, a.shape[:1] + (1,) * (rank - len(s)) + tuple(s)) for a, s in zip(args, shapes)]


def to_out(xp, x, shapes, out, **_):
    """The rule of an op that only relabels a point's elements (reshape): the result shape."""
    return xp.reshape(x, x.shape[:1] + tuple(out))


def batched_key(key):
    """A static index for arrays with a leading batch axis, and the axis of the result at
    which numpy puts the batch axis: 0, or, when the index arrays (and integers among them)
    are not next to each other, after their axes, which numpy then puts first."""
    key = (slice(None),) + tuple(key)
    fancy = [i for i, k in enumerate(key) if isinstance(k, np.ndarray)]
    if not fancy:
        return key, 0
    fancy = [i for i, k in enumerate(key) if isinstance(k, (np.ndarray, int, np.integer))]
    if fancy[-1] - fancy[0] == len(fancy) - 1:
        return key, 0
    return key, np.broadcast(*[key[i] for i in fancy]).ndim


def _index_batch(xp, x, shapes, out, key=()):
    bkey, at = batched_key(key)
    return xp.moveaxis(x[bkey], at, 0) if at else x[bkey]


def _put_batch(xp, y, bkey, at, v):
    """y[bkey] = v for v laid out batch axis first (y is changed)."""
    y[bkey] = xp.moveaxis(v, 0, at) if at else v
    return y


def _unindex_batch(xp, g, shapes, out, key=(), shape=()):
    bkey, at = batched_key(key)
    g = aligned(xp, [g], shapes, len(index_key(key, shape)))[0]
    return _put_batch(xp, xp.zeros(g.shape[:1] + tuple(shape), dtype=g.dtype), bkey, at, g)


def _setindex_batch(xp, x, v, shapes, out, key=()):
    bkey, at = batched_key(key)
    v = aligned(xp, [v], shapes[1:], len(index_key(key, shapes[0])))[0]
    return _put_batch(xp, xp.array(x, copy=True), bkey, at, v)


def _sum_to_batch(xp, x, shapes, out, shape=()):
    # the leading axes of each point and its broadcast axes of length 1, past the batch axis
    s, lead = shapes[0], len(shapes[0]) - len(out)
    axes = tuple(range(1, lead + 1)) + tuple(
        1 + lead + i for i, d in enumerate(out) if d == 1 and s[lead + i] != 1)
    if not axes:                 # nothing to sum (a copy of the whole batch saved)
        return xp.reshape(x, x.shape[:1] + tuple(out))
    return xp.reshape(xp.sum(x, axis=axes), x.shape[:1] + tuple(out))


def _transpose_batch(xp, x, shapes, out, axes=None):
    nd = len(shapes[0])
    axes = range(nd)[::-1] if axes is None else axes
    return xp.transpose(x, (0,) + tuple(a % nd + 1 for a in axes))


def _matmul_batch(xp, a, b, shapes, out):
    # a vector is a one-row (a) or one-column (b) matrix, so that the batch axis is never
    # taken for a matrix's rows
    sa, sb = shapes
    if len(sa) == 1:
        a, sa = a[:, None, :], (1,) + tuple(sa)
    if len(sb) == 1:
        b, sb = b[..., None], tuple(sb) + (1,)
    B = a.shape[0]
    # one matrix the same at every point (a batch axis of stride 0, as the evaluator
    # broadcasts an argument that does not move) times B others: one matrix product with
    # the points side by side, not B small ones (B matrix-vector products of a Jacobian's
    # tangents are one matrix-matrix product)
    if len(sa) == 2 and same_at_every_point(a) and len(sb) >= 2:
        # A (m, n) @ b[p] (n, k) for every p: b's columns of all points as rows, times A^T
        rows = xp.reshape(xp.swapaxes(b, -1, -2), (-1, sb[-2]))
        y = xp.matmul(rows, xp.swapaxes(a[0], 0, 1))
        y = xp.swapaxes(xp.reshape(y, b.shape[:-2] + (sb[-1], sa[0])), -1, -2)
        return xp.reshape(y, (B,) + tuple(out))
    if len(sb) == 2 and same_at_every_point(b) and len(sa) >= 2:
        # a[p] (m, n) @ B (n, k) for every p: all the points' rows in one product
        y = xp.matmul(xp.reshape(a, (-1, sa[-1])), b[0])
        return xp.reshape(y, (B,) + tuple(out))
    a, b = aligned(xp, [a, b], [sa, sb])
    return xp.reshape(xp.matmul(a, b), a.shape[:1] + tuple(out))


def same_at_every_point(a):
    """Is a batched argument one array repeated along its batch axis (a broadcast view, or
    a single point)? Then a rule may take a[0] for all points."""
    return a.shape[0] == 1 or a.strides[0] == 0


def _solve_batch(xp, a, b, shapes, out):
    # a vector right-hand side (one for every matrix) as a one-column matrix
    sa, sb = shapes
    if len(sb) == 1:
        b, sb = b[..., None], tuple(sb) + (1,)
    a, b = aligned(xp, [a, b], [sa, sb])
    return xp.reshape(xp.linalg.solve(a, b), a.shape[:1] + tuple(out))


def _einsum_batch(xp, a, b, shapes, out, subscripts=""):
    # one more index, free in every operand and in the result: the batch axis
    terms, result = _einsum_terms(subscripts, 2)
    free = [c for c in "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in subscripts]
    if not free:
        raise NotImplementedError(f"einsum '{subscripts}' uses every letter: none is left for "
                                  "the batch axis")
    z = free[0]
    text = ",".join(z + "".join(t) for t in terms) + "->" + z + "".join(result)
    return xp.einsum(text, a, b, optimize=True)


def _diag_batch(xp, x, shapes, out, k=0):
    if len(shapes[0]) == 1:    # vectors onto diagonal k of B matrices
        y = xp.zeros(x.shape[:1] + tuple(out), dtype=x.dtype)
        return _put_batch(xp, y, *batched_key(_diag_key(out, k)), x)
    return _index_batch(xp, x, shapes, out, key=_diag_key(shapes[0], k))



# ---------------------------------------------------------------- C forms of elementwise ops
# Each elementwise entry's `c` (value) and `c_partials` (local derivatives) are C expressions
# of its arguments {0}, {1}, ... and its result {y}, spelled for double (the float32 kernels
# call sinf for sin, and their literals are floats). The generated kernels (adcli/kernels)
# give each of them plain variables, never user text. They mirror the numpy rules step for
# step: the same stable forms, np.where as a ternary, and the zero-wins product MUL0(a, b)
# (0 where a factor is 0, even against inf or nan), defined by the kernel prelude.

def _c_one_minus_square(u):
    """_one_minus_square in C."""
    return f"(fabs({u}) < 0.5 ? 1.0 - ({u}) * ({u}) : (1.0 - ({u})) * (1.0 + ({u})))"


def _c_sigmoid(u):
    """_sigmoid in C: exp(-|u|) is numpy's exp(where(u < 0, u, -u))."""
    return f"((({u}) < 0 ? exp(-fabs({u})) : 1.0) / (1.0 + exp(-fabs({u}))))"


def _c_sech(u):
    return f"(1.0 / cosh({u}))"


def _c_ratio(a, b):
    """_ratio in C: a / hypot(a, b), 0 at the origin."""
    return f"(hypot({a}, {b}) == 0 ? 0.0 : ({a}) / hypot({a}, {b}))"


def _c_over_r2(u, a, b):
    """_over_r2 in C: u / r / r with r = hypot(a, b), 0 at the origin."""
    return f"(hypot({a}, {b}) == 0 ? 0.0 : ({u}) / hypot({a}, {b}) / hypot({a}, {b}))"


def _c_maximum(a, b):
    """numpy's maximum: a NaN on either side wins."""
    return f"((({a}) > ({b}) || ({a}) != ({a})) ? ({a}) : ({b}))"


def _c_minimum(a, b):
    return f"((({a}) < ({b}) || ({a}) != ({a})) ? ({a}) : ({b}))"


def _c_logaddexp(a, b):
    """numpy's npy_logaddexp: a + log 2 at a tie (so inf stays inf), else the larger plus
    log1p(exp(-|a - b|)), and a - b (a NaN) when that is neither positive nor not."""
    d, t = f"(({a}) - ({b}))", f"log1p(exp(-fabs(({a}) - ({b}))))"
    return (f"(({a}) == ({b}) ? ({a}) + {LN2.hex()} : ({d} > 0 ? ({a}) + {t} : "
            f"({d} <= 0 ? ({b}) + {t} : {d})))")


def _c_remainder(a, b):
    """numpy's npy_divmod, the modulus: fmod, moved by b where its sign differs from b's."""
    m = f"fmod({a}, {b})"
    return (f"(({b}) == 0 ? {m} : ({m} != 0 ? ((({b}) < 0) != ({m} < 0) ? {m} + ({b}) : {m})"
            f" : copysign(0.0, {b})))")


def _c_floor_divide(a, b):
    """numpy's npy_divmod, the quotient: (a - fmod) / b, less 1 where the modulus moves,
    floored and rounded up past a half; a / b when b is 0."""
    m = f"fmod({a}, {b})"
    div = f"((({a}) - {m}) / ({b}) - (({m} != 0 && ((({b}) < 0) != ({m} < 0))) ? 1.0 : 0.0))"
    floored = f"(floor({div}) + (({div} - floor({div})) > 0.5 ? 1.0 : 0.0))"
    return (f"(({b}) == 0 ? ({a}) / ({b}) : ({div} != 0 ? {floored} : "
            f"copysign(0.0, ({a}) / ({b}))))")


# ---------------------------------------------------------------- elementwise: arithmetic

LN2, LN10 = math.log(2.0), math.log(10.0)

op("add", args=("a", "b"), fwd=lambda xp, a, b: a + b, partials=(IDENTITY, IDENTITY),
   curvature="linear", symbol=("+",), infix=(2, "left"), linear=(1.0, 1.0), latex="+", doc="a + b",
   c="{0} + {1}", c_partials=(IDENTITY, IDENTITY))
op("sub", args=("a", "b"), fwd=lambda xp, a, b: a - b, partials=(IDENTITY, NEGATE),
   curvature="linear", symbol=("-",), infix=(2, "left"), linear=(1.0, -1.0), latex="-", doc="a - b",
   c="{0} - {1}", c_partials=(IDENTITY, NEGATE))
op("mul", args=("a", "b"), fwd=lambda xp, a, b: a * b,
   series=lambda xp, y, a, b: ps.mul(a, b),
   partials=(lambda ns, y, a, b: b, lambda ns, y, a, b: a), curvature="bilinear", symbol=("*",),
   infix=(3, "left"), latex="\\cdot", product=True, homogeneous=(0, 1), doc="a * b",
   c="{0} * {1}", c_partials=("{1}", "{0}"))
op("div", args=("a", "b"), fwd=lambda xp, a, b: a / b,
   series=lambda xp, y, a, b: ps.with_value(ps.div(a, b), y),
   # d(a/b) = da/b - (a/b) db/b
   partials=(lambda ns, y, a, b: 1.0 / b, lambda ns, y, a, b: -y / b),
   curvature=((0, 1), (1, 1)),    # linear in a: no d2/da2
   domain=((-2.0, 2.0), (0.5, 2.0)), symbol=("/",), infix=(3, "left"), homogeneous=(0,),
   units=(None, 1.0), annihilators=((0.0, 0.0), None),
   latex="\\frac{{0}}{{1}}", doc="a / b",
   c="{0} / {1}", c_partials=("1.0 / {1}", "-{y} / {1}"))
op("pow", args=("a", "b"), fwd=lambda xp, a, b: xp.power(a, b),
   series=lambda xp, y, a, b: ps.pow(a, b, y),
   # d a^b / da = b a^(b-1), a NaN-safe product so that x**0 has derivative 0 at 0 (the
   # zero b wins over 0^-1 = inf) while its derivative in b, a^(b-1), is kept for the
   # Hessian: d2/dadb = a^(b-1) (1 + b log a), 1/a at b = 0.
   # d a^b / db = a^b log a, taken as 0 where a^b is 0 (the zero wins over log 0 = -inf),
   # again a NaN-safe product, whose derivative in a stays right where a^b underflows.
   partials=(lambda ns, y, a, b: ns.mul0(b, a ** (b - 1.0)),
             lambda ns, y, a, b: ns.mul0(y, ns.log(a))),
   domain=((0.5, 2.0), (-2.0, 2.0)), symbol=("**", "^"), infix=(5, "right"),
   units=(None, 1.0), annihilators=(None, (0.0, 1.0)), latex="(0)^{{1}}",
   note="d/da is b*a**(b-1), 0 when b == 0 (also at a == 0); d/db is a**b*log(a), 0 where a**b == 0",
   doc="a ** b (also a ^ b)",
   c="pow({0}, {1})", c_partials=("MUL0({1}, pow({0}, {1} - 1.0))", "MUL0({y}, log({0}))"))
op("neg", args=("x",), fwd=lambda xp, x: -x, partials=(NEGATE,), curvature="linear", symbol=("-",),
   infix=(4, "prefix"), latex="-", linear=(-1.0,), doc="-x",
   c="-{0}", c_partials=(NEGATE,))
def _mul0(xp, a, b):
    y = a * b
    # only 0 * inf and 0 * nan differ from the plain product, and both are NaN: a finite
    # sum shows there is none (one pass, not the masks' four); otherwise the zeros win
    if not xp.isfinite(xp.sum(y)):
        y = xp.where((a == 0) | (b == 0), 0.0, y)
    return xp.asarray(y, dtype=np.result_type(a, b))


op("mul0", args=("a", "b"), internal=True,
   series=lambda xp, y, a, b: ps.mul(a, b),
   # The chain-rule product with "NaN-safe" semantics: a zero factor wins over an
   # infinite or NaN one, so 0 * (d sqrt/dx at 0) contributes 0, not NaN.
   fwd=lambda xp, a, b: _mul0(xp, a, b),
   partials=(lambda ns, y, a, b: b, lambda ns, y, a, b: a), curvature="bilinear",
   printed=lambda ns, a, b: a * b,    # the same product wherever no factor is inf or nan
   doc="a * b where a zero factor wins over inf and nan",
   c="MUL0({0}, {1})", c_partials=("{1}", "{0}"))

# ---------------------------------------------------------------- elementwise: functions

def unary(name, fwd, d, domain=(-2.0, 2.0), note="", doc="", kink=None, differentiable=True,
          **more):
    op(name, args=("x",), fwd=fwd, partials=(d,) if d else None, domain=(domain,), note=note,
       doc=doc or f"{name}(x)", kink=kink, differentiable=differentiable, **more)


# The local derivatives below are written so that they keep their relative accuracy in
# the tails, and so that their own derivatives (the second derivatives, made by the same
# rules in graph mode) are products rather than differences of nearly equal numbers:
# tanh' = sech^2 rather than 1 - tanh^2, which is 0 from |x| = 19 on.

def _one_minus_square(ns, x):
    """1 - x^2, without cancellation near |x| = 1 (where it is (1 - x)(1 + x), both factors
    exact or nearly so) and with the exact derivative -2x near 0 (where the product form
    would give (1 - x) - (1 + x), which is 0 for tiny x)."""
    return ns.where(ns.abs(x) < 0.5, 1.0 - x * x, (1.0 - x) * (1.0 + x))


def _sigmoid(xp, x):
    # 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below: e = e^-|x| never overflows,
    # and the left tail e^x (1 - e^x + ...) keeps every digit. (Branches on the real part,
    # so that the complex step sees one analytic function on each side.)
    neg = x.real < 0
    e = xp.exp(xp.where(neg, x, -x))
    return xp.where(neg, e, 1.0) / (1.0 + e)


unary("abs", lambda xp, x: xp.abs(x), lambda ns, y, x: ns.sign(x),
      kink=lambda xp, x: x, note="abs'(0) = 0", curvature="piecewise", latex="\\left|{0}\\right|",
      c="fabs({0})", c_partials=("({0} > 0 ? 1.0 : ({0} < 0 ? -1.0 : {0}))",))
unary("sign", lambda xp, x: xp.sign(x), None, kink=lambda xp, x: x,
      differentiable=False, note="derivative 0",
      c="({0} > 0 ? 1.0 : ({0} < 0 ? -1.0 : {0}))")
unary("sqrt", lambda xp, x: xp.sqrt(x), lambda ns, y, x: 0.5 / y, domain=(0.1, 4.0),
      note="infinite at 0; a zero cotangent still gives 0", latex="\\sqrt{{0}}",
      series=lambda xp, y, x: ps.sqrt(x, y),
      c="sqrt({0})", c_partials=("0.5 / {y}",))
unary("cbrt", lambda xp, x: xp.cbrt(x), lambda ns, y, x: 1.0 / (3.0 * y * y), domain=(0.2, 3.0), latex="\\sqrt[3]{{0}}",
      series=lambda xp, y, x: ps.power(x, 1.0 / 3.0, y),
      c="cbrt({0})", c_partials=("1.0 / (3.0 * {y} * {y})",))
unary("square", lambda xp, x: xp.square(x), lambda ns, y, x: 2.0 * x, latex="(0)^2",
      series=lambda xp, y, x: ps.square(x),
      c="{0} * {0}", c_partials=("2.0 * {0}",))
unary("exp", lambda xp, x: xp.exp(x), lambda ns, y, x: y, latex="e^{{0}}",
      series=lambda xp, y, x: ps.exp(x, y),
      c="exp({0})", c_partials=("{y}",))
# d expm1 / dx = exp(x), not y + 1, which loses every digit for large negative x
unary("expm1", lambda xp, x: xp.expm1(x), lambda ns, y, x: ns.exp(x), note="accurate near 0",
      series=lambda xp, y, x: ps.with_value(ps.exp(x, xp.exp(x[0])), y),
      c="expm1({0})", c_partials=("exp({0})",))
# log of a sum of exponentials, recognised where the sum is built: log(exp(a) + exp(b)) is
# logaddexp(a, b), log(exp(a) + exp(b) + exp(c)) a logsumexp of the three, and
# log(sum(exp(u)[1:3], axis=0)) is logsumexp(u[1:3], axis=0): forms that cannot overflow.
# An "exp form" is exp(u), a positive constant c (= exp(log c)), or a sum, product,
# quotient, reduction sum or structural op (index, reshape, stack, ...) of exp forms; its
# log is built with each exp(u) replaced by u, + by logaddexp, * by +, / by - and sum by
# logsumexp. So log(1 + exp(x)) is softplus, log(mean(exp(x))) is logsumexp(x) - log n.
# (The exp nodes stay in the graph, unused.)
_LOG_COMMUTES = ("index", "reshape", "transpose", "broadcast_to", "stack", "concat")
_LOG_OF = {"add": "logaddexp", "mul": "add", "div": "sub", "sum": "logsumexp"}


def _exp_form_parts(node):
    """The arguments of `node` that must be exp forms for it to be one, or None."""
    op = node.op
    if op is None:
        positive = not node.is_input and bool(np.all(np.asarray(node.value) > 0))
        return () if positive else None
    if op.name == "exp":
        return ()
    if op.name in _LOG_OF or op.name in _LOG_COMMUTES:
        return node.args
    return None


def _stable_log(x):
    if getattr(x, "op", None) is None or x.op.name == "exp":
        return None
    order, stack, seen = [], [x], set()
    while stack:                                   # the exp forms under x, checked first
        node = stack.pop()
        if node.id in seen:
            continue
        parts = _exp_form_parts(node)
        if parts is None:
            return None
        seen.add(node.id)
        order.append(node)
        stack.extend(parts)
    if not any(n.op is not None and n.op.name == "exp" for n in order):
        return None
    graph, logs, terms = x.graph, {}, {}
    for node in sorted(order, key=lambda n: n.id):  # arguments before their users
        if node.op is None:
            logs[node.id] = graph.emit("log", node)
        elif node.op.name == "exp":
            logs[node.id] = node.args[0]
        elif node.op.name == "add":  # a sum of many terms is one logsumexp: collect them
            terms[node.id] = [t for a in node.args for t in terms.get(a.id, [a])]
        elif node is not x:
            logs[node.id] = _emit(graph, _log_step(graph, node, logs, terms))
    return _log_step(graph, x, logs, terms)


def _log_step(graph, node, logs, terms):
    """log(node) as (op, args, attrs), given the logs of the exp forms it is made of."""
    def log_of(a):
        if a.id not in logs:                          # a sum of terms, needed alone
            logs[a.id] = _emit(graph, _log_step(graph, a, logs, terms))
        return logs[a.id]

    name = node.op.name
    if name == "add":
        parts = [log_of(t) for t in terms[node.id]]
        if len(parts) == 2:
            return "logaddexp", tuple(parts), {}
        # logsumexp over the terms, broadcast to one shape and stacked on a new axis
        shape = tuple(np.broadcast_shapes(*[tuple(p.shape) for p in parts]))
        parts = [p if tuple(p.shape) == shape else graph.emit("broadcast_to", p, shape=shape)
                 for p in parts]
        return "logsumexp", (graph.emit("stack", *parts, axis=0),), {"axis": 0}
    return _LOG_OF.get(name, name), tuple(log_of(a) for a in node.args), dict(node.attrs)


def _emit(graph, step):
    name, args, attrs = step
    return graph.emit(name, *args, **attrs)


unary("log", lambda xp, x: xp.log(x), lambda ns, y, x: 1.0 / x, domain=(0.1, 4.0),
      series=lambda xp, y, x: ps.log(x, y),
      rewrite=_stable_log, latex="\\log(0)",
      c="log({0})", c_partials=("1.0 / {0}",))


unary("log1p", lambda xp, x: xp.log1p(x), lambda ns, y, x: 1.0 / (1.0 + x), domain=(-0.9, 3.0),
      series=lambda xp, y, x: ps.log(ps.plus(x, 1.0), y),
      note="accurate near 0",
      c="log1p({0})", c_partials=("1.0 / (1.0 + {0})",))
unary("log2", lambda xp, x: xp.log2(x), lambda ns, y, x: 1.0 / (x * LN2), domain=(0.1, 4.0), latex="\\log_2(0)",
      series=lambda xp, y, x: ps.with_value(ps.log(x, 0.0) / LN2, y),
      c="log2({0})", c_partials=("1.0 / ({0} * " + LN2.hex() + ")",))
unary("log10", lambda xp, x: xp.log10(x), lambda ns, y, x: 1.0 / (x * LN10), domain=(0.1, 4.0), latex="\\log_{10}(0)",
      series=lambda xp, y, x: ps.with_value(ps.log(x, 0.0) / LN10, y),
      c="log10({0})", c_partials=("1.0 / ({0} * " + LN10.hex() + ")",))
unary("sin", lambda xp, x: xp.sin(x), lambda ns, y, x: ns.cos(x), latex="\\sin(0)",
      series=lambda xp, y, x: ps.sincos(x, y, xp.cos(x[0]))[0],
      c="sin({0})", c_partials=("cos({0} + 0.0)",))
unary("cos", lambda xp, x: xp.cos(x), lambda ns, y, x: -ns.sin(x), latex="\\cos(0)",
      series=lambda xp, y, x: ps.sincos(x, xp.sin(x[0]), y)[1],
      c="cos({0} + 0.0)", c_partials=("-sin({0})",))
unary("tan", lambda xp, x: xp.tan(x), lambda ns, y, x: 1.0 + y * y, domain=(-1.2, 1.2), latex="\\tan(0)",
      series=lambda xp, y, x: ps.riccati(x, y, 1.0, 0.0, 1.0),
      c="tan({0})", c_partials=("1.0 + {y} * {y}",))
unary("asin", lambda xp, x: xp.arcsin(x), lambda ns, y, x: 1.0 / ns.sqrt(_one_minus_square(ns, x)),
      domain=(-0.9, 0.9), latex="\\arcsin(0)", numpy="arcsin",
      series=lambda xp, y, x: ps.slope(x, ps.rsqrt(ps.one_minus(ps.square(x))), y),
      c="asin({0})", c_partials=("1.0 / sqrt(" + _c_one_minus_square("{0}") + ")",))
unary("acos", lambda xp, x: xp.arccos(x), lambda ns, y, x: -1.0 / ns.sqrt(_one_minus_square(ns, x)),
      domain=(-0.9, 0.9), latex="\\arccos(0)", numpy="arccos",
      series=lambda xp, y, x: ps.slope(x, -ps.rsqrt(ps.one_minus(ps.square(x))), y),
      c="acos({0})", c_partials=("-1.0 / sqrt(" + _c_one_minus_square("{0}") + ")",))
# 1 / (1 + x^2) as (1 / hypot(1, x))^2: no overflow of x^2 while the result is a normal number
unary("atan", lambda xp, x: xp.arctan(x), lambda ns, y, x: ns.square(1.0 / ns.hypot(1.0, x)), latex="\\arctan(0)", numpy="arctan",
      series=lambda xp, y, x: ps.slope(x, ps.recip(ps.plus(ps.square(x), 1.0)), y),
      c="atan({0})", c_partials=("(1.0 / hypot(1.0, {0})) * (1.0 / hypot(1.0, {0}))",))
unary("sinh", lambda xp, x: xp.sinh(x), lambda ns, y, x: ns.cosh(x), latex="\\sinh(0)",
      series=lambda xp, y, x: ps.sincos(x, y, xp.cosh(x[0]), sign=1.0)[0],
      c="sinh({0})", c_partials=("cosh({0})",))
unary("cosh", lambda xp, x: xp.cosh(x), lambda ns, y, x: ns.sinh(x), latex="\\cosh(0)",
      series=lambda xp, y, x: ps.sincos(x, xp.sinh(x[0]), y, sign=1.0)[1],
      c="cosh({0})", c_partials=("sinh({0})",))
unary("sech", lambda xp, x: 1.0 / xp.cosh(x), lambda ns, y, x: -y * ns.tanh(x), internal=True,
      printed=lambda ns, x: 1.0 / ns.cosh(x),
      doc="sech(x) = 1 / cosh(x), the derivatives of tanh and sigmoid",
      series=lambda xp, y, x: ps.with_value(ps.recip(ps.sincos(x, xp.sinh(x[0]), xp.cosh(x[0]), sign=1.0)[1]), y),
      c=_c_sech("{0}"), c_partials=("-{y} * tanh({0})",))
# tanh' = sech^2, so tanh'' = -2 sech^2 tanh: products, accurate in the tails
unary("tanh", lambda xp, x: xp.tanh(x), lambda ns, y, x: ns.square(ns.sech(x)), latex="\\tanh(0)",
      series=lambda xp, y, x: ps.riccati(x, y, 1.0, 0.0, -1.0),
      c="tanh({0})", c_partials=(_c_sech("{0}") + " * " + _c_sech("{0}"),))
unary("asinh", lambda xp, x: xp.arcsinh(x), lambda ns, y, x: 1.0 / ns.hypot(1.0, x), numpy="arcsinh",
      series=lambda xp, y, x: ps.slope(x, ps.rsqrt(ps.plus(ps.square(x), 1.0)), y),
      c="asinh({0})", c_partials=("1.0 / hypot(1.0, {0})",))
unary("acosh", lambda xp, x: xp.arccosh(x),
      lambda ns, y, x: 1.0 / (ns.sqrt(x - 1.0) * ns.sqrt(x + 1.0)), domain=(1.1, 4.0), numpy="arccosh",
      series=lambda xp, y, x: ps.slope(x, ps.rsqrt(ps.plus(ps.square(x), -1.0)), y),
      c="acosh({0})", c_partials=("1.0 / (sqrt({0} - 1.0) * sqrt({0} + 1.0))",))
unary("atanh", lambda xp, x: xp.arctanh(x), lambda ns, y, x: 1.0 / _one_minus_square(ns, x),
      domain=(-0.9, 0.9), numpy="arctanh",
      series=lambda xp, y, x: ps.slope(x, ps.recip(ps.one_minus(ps.square(x))), y),
      c="atanh({0})", c_partials=("1.0 / " + _c_one_minus_square("{0}"),))
# sigmoid' = s (1 - s) = sech^2(x/2) / 4, which keeps its digits where 1 - s cancels
unary("sigmoid", _sigmoid, lambda ns, y, x: 0.25 * ns.square(ns.sech(0.5 * x)),
      series=lambda xp, y, x: ps.sigmoid(x, y),
      domain=(-4.0, 4.0), note="computed stably", numpy="1.0 / (1.0 + np.exp(-(0)))",
      c=_c_sigmoid("{0}"), c_partials=("0.25 * " + _c_sech("0.5 * {0}") + " * " + _c_sech("0.5 * {0}"),))
unary("relu", lambda xp, x: xp.maximum(x, 0.0), lambda ns, y, x: x > 0.0,
      kink=lambda xp, x: x, note="relu'(0) = 0", curvature="piecewise", numpy="np.maximum({0}, 0.0)",
      c="(({0} > 0 || {0} != {0}) ? {0} : 0.0)", c_partials=("({0} > 0.0)",))
# softplus(x) = log(1 + exp(x)) = logaddexp(0, x), finite for every x
unary("softplus", lambda xp, x: xp.logaddexp(0.0, x), lambda ns, y, x: ns.sigmoid(x),
      series=lambda xp, y, x: ps.slope(x, ps.sigmoid(x, _sigmoid(xp, x[0])), y),
      domain=(-4.0, 4.0), note="computed stably", numpy="np.logaddexp(0.0, {0})",
      c=_c_logaddexp("0.0", "{0}"), c_partials=(_c_sigmoid("{0}"),))
unary("floor", lambda xp, x: xp.floor(x), None, differentiable=False,
      kink=lambda xp, x: x - xp.round(x), note="derivative 0", latex="\\lfloor {0} \\rfloor",
      c="floor({0})")
unary("ceil", lambda xp, x: xp.ceil(x), None, differentiable=False,
      kink=lambda xp, x: x - xp.round(x), note="derivative 0", latex="\\lceil {0} \\rceil",
      c="ceil({0})")
unary("round", lambda xp, x: xp.round(x), None, differentiable=False,
      kink=lambda xp, x: x - xp.floor(x) - 0.5,
      note="derivative 0; rounds half to even, as numpy does",
      c="rint({0})")

# ---------------------------------------------------------------- elementwise: special functions

def special(xp, name):
    """scipy.special (cupyx.scipy.special for CuPy arrays), imported when an op that needs
    it first runs: numpy has no erf, lgamma or digamma, and adcli's start-up must not pay
    for scipy."""
    try:
        if xp is np:
            import scipy.special as module
        else:
            import cupyx.scipy.special as module
    except ImportError:
        raise AdcliError(f"{name} needs scipy, which is not installed",
                         hint="install it with: pip install 'adcli[special]'") from None
    return module


SQRT_PI = math.sqrt(math.pi)


def _polygamma_series(x, y, n):
    """The series of lgamma (n = -1), digamma (n = 0) or polygamma(n, x): the m-th
    derivative is polygamma(n + m, x), composed with x's series."""
    pg = special(np, "polygamma").polygamma
    return ps.compose(x, [y] + [pg(n + m, x[0]) / math.factorial(m) for m in range(1, len(x))])

# erf' = 2/sqrt(pi) exp(-x^2); erfc' = -erf'; erfinv' = sqrt(pi)/2 exp(erfinv(x)^2)
unary("erf", lambda xp, x: special(xp, "erf").erf(x),
      lambda ns, y, x: (2.0 / SQRT_PI) * ns.exp(-(x * x)), doc="erf(x), the error function", latex="\\operatorname{erf}(0)", numpy="scipy.special.erf",
      series=lambda xp, y, x: ps.slope(x, (2.0 / SQRT_PI) * ps.exp(-ps.square(x), xp.exp(-x[0] * x[0])), y),
      c="erf({0})", c_partials=((2.0 / SQRT_PI).hex() + " * exp(-({0} * {0}))",))
unary("erfc", lambda xp, x: special(xp, "erfc").erfc(x),
      lambda ns, y, x: (-2.0 / SQRT_PI) * ns.exp(-(x * x)),
      note="accurate in the right tail", doc="erfc(x) = 1 - erf(x)", numpy="scipy.special.erfc",
      series=lambda xp, y, x: ps.slope(x, (-2.0 / SQRT_PI) * ps.exp(-ps.square(x), xp.exp(-x[0] * x[0])), y),
      c="erfc({0})", c_partials=((-2.0 / SQRT_PI).hex() + " * exp(-({0} * {0}))",))
unary("erfinv", lambda xp, x: special(xp, "erfinv").erfinv(x),
      lambda ns, y, x: (0.5 * SQRT_PI) * ns.exp(y * y), domain=(-0.9, 0.9),
      series=lambda xp, y, x: ps.erfinv(x, y),
      doc="erfinv(x), the inverse of erf on (-1, 1)", numpy="scipy.special.erfinv")
# lgamma' = digamma = polygamma(0, x), and polygamma(n, x)' = polygamma(n + 1, x): one
# internal op with the order as a static attribute serves every derivative of lgamma
op("polygamma", fwd=lambda xp, x, n=1: special(xp, "polygamma").polygamma(n, x),
   series=lambda xp, y, x, n=1: _polygamma_series(x, y, n),
   attrs={"n": 1}, attr_types={"n": "count"}, domain=((0.2, 4.0),),
   numpy="scipy.special.polygamma({n}, {0})",
   latex="\\psi^{({n})}\\left({0}\\right)",
   vjp=(lambda ns, g, y, x, n=1: g * ns.polygamma(x, n=n + 1),),
   jvp=lambda ns, t, y, x, n=1: t[0] * ns.polygamma(x, n=n + 1),
   doc="polygamma(x, n): the n-th derivative of digamma (n = 1: trigamma)")
unary("lgamma", lambda xp, x: special(xp, "lgamma").gammaln(x),
      lambda ns, y, x: ns.digamma(x), domain=(0.2, 4.0), aliases=("gammaln",),
      series=lambda xp, y, x: _polygamma_series(x, y, -1),
      note="log|gamma(x)|; its derivative is digamma(x)", doc="lgamma(x) = log|gamma(x)|", numpy="scipy.special.gammaln")
unary("digamma", lambda xp, x: special(xp, "digamma").psi(x),
      lambda ns, y, x: ns.polygamma(x, n=1), domain=(0.2, 4.0), aliases=("psi",),
      series=lambda xp, y, x: _polygamma_series(x, y, 0),
      note="its derivative is trigamma, polygamma(1, x)", doc="digamma(x) = lgamma'(x)", numpy="scipy.special.psi")


def _logit(xp, x):
    # log(x / (1 - x)) as 2 atanh(2x - 1) from 1/4 on, where 2x - 1 is exact: no cancellation
    # near x = 1/2 (where log of a rounded ratio near 1 loses every digit); below, the two
    # logarithms do not cancel
    small = x.real < 0.25              # (the real part: see _sigmoid)
    with np.errstate(divide="ignore", invalid="ignore"):
        return xp.where(small, xp.log(x) - xp.log1p(-x), 2.0 * xp.arctanh(2.0 * x - 1.0))


def _logit_slope(ns, y, x):
    """logit' = 1 / (x (1 - x)), as 1/x + 1/(1 - x) below 1/4 and as 4 / (1 - u^2) with
    u = 2x - 1 (exact) above: forms whose own derivatives (the second derivative) are sums
    of terms of one sign or products; the product form's derivative has (1 - x) - x, two
    infinite contributions near 0 that make a NaN."""
    return ns.where(x < 0.25, 1.0 / x + 1.0 / (1.0 - x),
                    4.0 / _one_minus_square(ns, 2.0 * x - 1.0))


unary("logit", _logit, _logit_slope, domain=(0.05, 0.95),
      series=lambda xp, y, x: ps.slope(x, ps.recip(x - ps.square(x)), y),
      doc="logit(x) = log(x / (1 - x)), the inverse of sigmoid", numpy="np.log({0}) - np.log1p(-(0))",
      c="({0} < 0.25 ? log({0}) - log1p(-{0}) : 2.0 * atanh(2.0 * {0} - 1.0))", c_partials=("({0} < 0.25 ? 1.0 / {0} + 1.0 / (1.0 - {0}) : 4.0 / " + _c_one_minus_square("2.0 * {0} - 1.0") + ")",))

# ---------------------------------------------------------------- elementwise: remainders


def _quotient_kink(xp, a, b):
    """Zero where a / b is an integer: there mod jumps by b and floor_divide by 1."""
    q = a / b
    return q - xp.round(q)


op("mod", args=("a", "b"), fwd=lambda xp, a, b: xp.mod(a, b),
   # mod(a, b) = a - b floor(a / b): derivative 1 in a, -floor(a / b) in b between the jumps
   partials=(IDENTITY, lambda ns, y, a, b: -ns.floor(a / b)), curvature="piecewise",
   domain=((-4.0, 4.0), (0.5, 2.0)), kink=_quotient_kink, symbol=("%",), infix=(3, "left"), latex="\\bmod",
   note="numpy's mod: the sign of b; d/da 1, d/db -floor(a/b); jumps where a/b is an integer",
   doc="a % b",
   c=_c_remainder("{0}", "{1}"), c_partials=(IDENTITY, "-floor({0} / {1})"))
op("floor_divide", args=("a", "b"), fwd=lambda xp, a, b: xp.floor_divide(a, b),
   differentiable=False, domain=((-4.0, 4.0), (0.5, 2.0)), kink=_quotient_kink, symbol=("//",), infix=(3, "left"),
   latex="\\left\\lfloor\\frac{{0}}{{1}}\\right\\rfloor",
   note="derivative 0", doc="a // b = floor(a / b)",
   c=_c_floor_divide("{0}", "{1}"))

op("maximum", args=("a", "b"), fwd=lambda xp, a, b: xp.maximum(a, b),
   # the larger argument gets the derivative; a tie splits it evenly
   partials=(lambda ns, y, a, b: (a > b) + 0.5 * (a == b),
             lambda ns, y, a, b: (b > a) + 0.5 * (a == b)),
   kink=lambda xp, a, b: a - b, note="ties split the derivative evenly", curvature="piecewise",
   c=_c_maximum("{0}", "{1}"), c_partials=("({0} > {1}) + 0.5 * ({0} == {1})", "({1} > {0}) + 0.5 * ({0} == {1})"))
op("minimum", args=("a", "b"), fwd=lambda xp, a, b: xp.minimum(a, b),
   partials=(lambda ns, y, a, b: (a < b) + 0.5 * (a == b),
             lambda ns, y, a, b: (b < a) + 0.5 * (a == b)),
   kink=lambda xp, a, b: a - b, note="ties split the derivative evenly", curvature="piecewise",
   c=_c_minimum("{0}", "{1}"), c_partials=("({0} < {1}) + 0.5 * ({0} == {1})", "({1} < {0}) + 0.5 * ({0} == {1})"))
op("clip", args=("x", "lo", "hi"), fwd=lambda xp, x, lo, hi: xp.minimum(xp.maximum(x, lo), hi),
   partials=(lambda ns, y, x, lo, hi: (x > lo) * (x < hi),
             lambda ns, y, x, lo, hi: (x < lo) * (lo <= hi),
             lambda ns, y, x, lo, hi: (x > hi)),
   domain=((-2.0, 2.0), (-3.0, -2.5), (2.5, 3.0)),
   kink=lambda xp, x, lo, hi: (x - lo) * (x - hi), note="at a bound the derivative is 0",
   curvature="piecewise",
   method=True,
   c=_c_minimum(_c_maximum("{0}", "{1}"), "{2}"), c_partials=("({0} > {1}) * ({0} < {2})", "({0} < {1}) * ({1} <= {2})", "({0} > {2})"))
def _ratio(xp, a, b):
    r = xp.hypot(a, b)
    return xp.where(r == 0, 0.0, a / xp.where(r == 0, 1.0, r))


op("hypot_ratio", args=("a", "b"), fwd=_ratio, internal=True,
   series=lambda xp, y, a, b: ps.hypot_ratio(a, b, y),
   printed=lambda ns, a, b: a / ns.hypot(a, b),     # away from the origin
   # u = a / r with r = hypot(a, b): du/da = b^2 / r^3 and du/db = -a b / r^3, written as
   # products of the ratios (no 1/r - a^2/r^3, which cancels where |b| << |a|)
   partials=(lambda ns, y, a, b: ns.square(ns.hypot_ratio(b, a)) / ns.hypot(a, b),
             lambda ns, y, a, b: -(y * ns.hypot_ratio(b, a)) / ns.hypot(a, b)),
   doc="a / hypot(a, b), 0 at the origin: the derivatives of hypot",
   c=_c_ratio("{0}", "{1}"), c_partials=(_c_ratio("{1}", "{0}") + " * " + _c_ratio("{1}", "{0}") + " / hypot({0}, {1})", "-({y} * " + _c_ratio("{1}", "{0}") + ") / hypot({0}, {1})"))
op("hypot", args=("a", "b"), fwd=lambda xp, a, b: xp.hypot(a, b),
   series=lambda xp, y, a, b: ps.hypot(a, b, y),
   # d hypot / da = a / hypot, taken as 0 at the origin (the minimum-norm subgradient)
   partials=(lambda ns, y, a, b: ns.hypot_ratio(a, b),
             lambda ns, y, a, b: ns.hypot_ratio(b, a)),
   kink=lambda xp, a, b: xp.hypot(a, b), note="gradient 0 at the origin",
   c="hypot({0}, {1})", c_partials=(_c_ratio("{0}", "{1}"), _c_ratio("{1}", "{0}")))
op("logaddexp", args=("a", "b"), fwd=lambda xp, a, b: xp.logaddexp(a, b),
   series=lambda xp, y, a, b: ps.logaddexp(a, b, y),
   # y = log(e^a + e^b): dy/da = e^a / (e^a + e^b) = sigmoid(a - b), which never
   # overflows and, unlike e^(a - y), does not carry the rounding of a large y
   partials=(lambda ns, y, a, b: ns.sigmoid(a - b), lambda ns, y, a, b: ns.sigmoid(b - a)),
   note="computed stably; log(exp(a) + exp(b)) is evaluated as logaddexp(a, b)",
   doc="logaddexp(a, b): log(exp(a) + exp(b))",
   c=_c_logaddexp("{0}", "{1}"), c_partials=(_c_sigmoid("{0} - {1}"), _c_sigmoid("{1} - {0}")))
def _over_r2(ns, u, a, b):
    """u / (a^2 + b^2) as u / r / r with r = hypot(a, b), which neither underflows nor
    overflows where the result is a normal number; 0 at the origin."""
    r = ns.hypot(a, b)
    return ns.where(r == 0, 0.0, u / r / r)


op("atan2", args=("a", "b"), fwd=lambda xp, a, b: xp.arctan2(a, b),
   series=lambda xp, y, a, b: ps.atan2(a, b, y),
   # atan2(a, b) is the angle of the point (b, a): d/da = b/r^2, d/db = -a/r^2
   partials=(lambda ns, y, a, b: _over_r2(ns, b, a, b),
             lambda ns, y, a, b: _over_r2(ns, -a, a, b)),
   domain=((0.5, 2.0), (0.5, 2.0)), note="gradient 0 at the origin",
   c="atan2({0}, {1})", c_partials=(_c_over_r2("{1}", "{0}", "{1}"), _c_over_r2("-{0}", "{0}", "{1}")))


def _where_jvp(ns, t, y, c, a, b):
    ta = t[1] if t[1] is not None else 0.0
    tb = t[2] if t[2] is not None else 0.0
    return ns.where(c, ta, tb)


def _where_lint(xp, c, a, b):
    """A branch that is not finite where it is not selected: the value masks it, and
    adcli's gradient stays finite too (the unselected branch gets exactly 0, and a zero
    times an infinite derivative counts as 0); in PyTorch and JAX the same expression has
    a NaN gradient, the well-known `where` pitfall."""
    shape = np.broadcast_shapes(np.shape(c), np.shape(a), np.shape(b))
    cond = xp.broadcast_to(xp.asarray(c, dtype=bool), shape)
    for which, v, selected in (("second", a, cond), ("third", b, ~cond)):
        branch = xp.broadcast_to(v, shape)
        if branch.dtype.kind != "f":
            continue
        hidden = ~selected & ~xp.isfinite(branch)
        if hidden.any():
            kinds = [k for k, m in (("nan", xp.isnan(branch)), ("inf", xp.isposinf(branch)),
                                    ("-inf", xp.isneginf(branch))) if (m & hidden).any()]
            return (f"the {which} argument of where is {', '.join(kinds)} at this point, where "
                    "it is not selected; the value masks it, and adcli's gradient stays finite "
                    "(the unselected branch gets exactly 0), whereas PyTorch and JAX give NaN "
                    "gradients here")
    return None


op("where", args=("cond", "a", "b"), fwd=lambda xp, c, a, b: xp.where(c, a, b), selects=(0,),
   # the unselected branch gets exactly zero, even where its own derivative is inf or nan
   vjp=(None, lambda ns, g, y, c, a, b: ns.where(c, g, 0.0),
        lambda ns, g, y, c, a, b: ns.where(c, 0.0, g)),
   jvp=_where_jvp, curvature="linear", domain=((-1.0, 1.0), (-2.0, 2.0), (-2.0, 2.0)), lint=_where_lint,
   note="the unselected branch gets exactly 0",
   c="({0} != 0 ? {1} : {2})", c_partials=(None, "({0} != 0 ? 1.0 : 0.0)", "({0} != 0 ? 0.0 : 1.0)"))

for _name, _sym, _f, _tex in (("lt", "<", "less", "<"), ("le", "<=", "less_equal", "\\le"),
                              ("gt", ">", "greater", ">"), ("ge", ">=", "greater_equal", "\\ge"),
                              ("eq", "==", "equal", "="), ("ne", "!=", "not_equal", "\\ne")):
    op(_name, args=("a", "b"), fwd=lambda xp, a, b, _f=_f: getattr(xp, _f)(a, b), kind="comparison",
       infix=(1, "none"), latex=_tex,
       differentiable=False, symbol=(_sym,), note="no derivative (a boolean)", doc=f"a {_sym} b",
      c="({0} " + _sym + " {1})")

# ---------------------------------------------------------------- reductions

R = dict(attrs={"axis": None, "keepdims": False}, kind="reduction", shape=reduced_shape, method=True)

op("sum", examples=[((3, 4), {}), ((3, 4), {"axis": 0}), ((2, 3, 4), {"axis": (0, 2), "keepdims": True}),
                     ((2, 3), {"keepdims": True})], adds=True, curvature="linear",
   fwd=lambda xp, x, axis=None, keepdims=False: xp.sum(x, axis=axis, keepdims=keepdims),
   vjp=(lambda ns, g, y, x, axis=None, keepdims=False: unreduce(ns, g, x.shape, axis, keepdims),),
   jvp=lambda ns, t, y, x, axis=None, keepdims=False: ns.sum(t[0], axis=axis, keepdims=keepdims),
   **R)
op("prod", examples=[((5,), {}), ((3, 4), {"axis": 1})],
   series=lambda xp, y, x, axis=None, keepdims=False: ps.prod(x, axis, y),
   fwd=lambda xp, x, axis=None, keepdims=False: xp.prod(x, axis=axis, keepdims=keepdims),
   # d prod / d x_i = product of the other elements (exact at zeros)
   vjp=(lambda ns, g, y, x, axis=None, keepdims=False:
        unreduce(ns, g, x.shape, axis, keepdims) * ns.prod_others(x, axis=axis),),
   jvp=lambda ns, t, y, x, axis=None, keepdims=False:
       ns.sum(t[0] * ns.prod_others(x, axis=axis), axis=axis, keepdims=keepdims),
   note="exact at zeros: the product of the other elements", **R)
PAIRS_MATRIX_MAX = 32   # longest slice for which the pair products are built as a matrix


def _prod_pairs(ns, v, x, axis):
    """(P v)_i = sum_{j != i} v_j prod_{k != i, j} x_k along `axis`, the derivative of
    prod_others; P is symmetric, so it serves both modes.

    Computed (numbers) it is exact with zeros (_prod_pairs_masked). Recorded to be
    differentiated again, it must also have the right derivatives, which a formula that
    branches on which elements are zero has not: then slices of up to PAIRS_MATRIX_MAX
    elements build P as a matrix of products (a polynomial in x, exact to every order), and
    longer ones use P_ij = y_i / x_j, exact away from zeros."""
    if getattr(ns, "_graph", None) is None:
        return _prod_pairs_masked(ns, v, x, axis)
    axes = axes_of(axis, x.ndim)
    n = math.prod(x.shape[a] for a in axes)
    if n <= PAIRS_MATRIX_MAX:
        return _prod_pairs_matrix(ns, v, x, axes, n)
    y = ns.prod_others(x, axis=axis)
    return y * (unreduce(ns, ns.sum(v / x, axis=axis, keepdims=True), x.shape, axis, True) - v / x)


def _prod_pairs_matrix(ns, v, x, axes, n):
    # the reduced axes last, flattened: x2 of shape rest + (n,)
    rest = [i for i in range(x.ndim) if i not in axes]
    perm = tuple(rest + list(axes))
    lead = tuple(x.shape[i] for i in rest)
    x2 = ns.reshape(ns.transpose(x, axes=perm), shape=lead + (1, n))
    v2 = ns.reshape(ns.transpose(v, axes=perm), shape=lead + (n,))
    eye = ns.eye(n=n)
    # row i of r is x with x_i replaced by 1; the product of its elements other than j
    # is prod_{k != i, j} x_k, and the diagonal (j = i) is not a pair: masked out
    r = x2 * (1.0 - eye) + eye
    pairs = ns.prod_others(r, axis=-1) * (1.0 - eye)
    pv = ns.sum(pairs * ns.reshape(v2, shape=lead + (1, n)), axis=-1)
    back = ns.reshape(pv, shape=lead + tuple(x.shape[a] for a in axes))
    return ns.transpose(back, axes=tuple(np.argsort(perm)))


def _prod_pairs_masked(ns, v, x, axis):
    """P v computed with no division by zero. With Q the product of the nonzero elements, Z the number of zeros and m_i = [x_i = 0],
    prod_{k != i, j} x_k = Q / (x_i x_j) over nonzero x_i, x_j, when no other zero remains.
    Summing over the j that are not zeros (A) and the j that are (B) gives
      (P v)_i = Q/x_i ([Z = m_i] (A - (1 - m_i) v_i/x_i) + [Z = m_i + 1] (B - m_i v_i)),
    with every division by a nonzero number."""
    def spread(a):
        return unreduce(ns, ns.sum(a, axis=axis, keepdims=True), x.shape, axis, True)
    zero = x == 0.0
    m = ns.where(zero, 1.0, 0.0)
    xs = ns.where(zero, 1.0, x)
    z = spread(m)
    q = unreduce(ns, ns.prod(xs, axis=axis, keepdims=True), x.shape, axis, True)
    a = spread(v / xs * (1.0 - m))
    b = spread(v * m)
    no_other = ns.where(z == m, 1.0, 0.0)
    one_other = ns.where(z == m + 1.0, 1.0, 0.0)
    return q / xs * (no_other * (a - (1.0 - m) * v / xs) + one_other * (b - m * v))


op("prod_others", batch=axes_moved(),
   series=lambda xp, y, x, axis=None: ps.prod_others(x, axis, y),
   examples=[((4,), {}), ((3, 4), {"axis": 1})],
   fwd=prod_others, attrs={"axis": None}, kind="internal", internal=True, depends="along",
   printed=lambda ns, x, axis=None: ns.prod(x, axis=axis, keepdims=True) / x,   # no zero in x
   shape=lambda s, axis=None: same_shape(s, axes_of(axis, len(s))),
   # y_i = prod_{k != i} x_k: dy_i/dx_j = prod_{k != i, j} x_k for j != i, 0 for j = i
   vjp=(lambda ns, g, y, x, axis=None: _prod_pairs(ns, g, x, axis),),
   jvp=lambda ns, t, y, x, axis=None: _prod_pairs(ns, t[0], x, axis),
   note="exact at zeros, to every order", domain=((0.5, 2.0),))
def _top_gap(xp, x, axis=None):
    """The kink of max and min: the gap between the two largest (for min, smallest: the
    gap is symmetric in sign flips) elements of each reduced slice, zero at a tie."""
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    if not isinstance(axis, int) or x.ndim == 0 or x.shape[axis] < 2:
        return xp.ones(1)         # one element (a number's axis 0 or -1): no tie
    s = xp.sort(x, axis=axis)
    top = xp.take(s, [-1], axis=axis) - xp.take(s, [-2], axis=axis)
    low = xp.take(s, [1], axis=axis) - xp.take(s, [0], axis=axis)
    return xp.minimum(top, low)


for _name in ("max", "min"):
    op(_name, examples=[((6,), {}), ((3, 4), {"axis": 0}), ((3, 4), {"axis": -1, "keepdims": True})],
       fwd=lambda xp, x, axis=None, keepdims=False, _n=_name:
       getattr(xp, _n)(x, axis=axis, keepdims=keepdims),
       vjp=(lambda ns, g, y, x, axis=None, keepdims=False:
            unreduce(ns, g, x.shape, axis, keepdims) * max_weights(ns, x, y, axis, keepdims),),
       jvp=lambda ns, t, y, x, axis=None, keepdims=False:
           ns.sum(t[0] * max_weights(ns, x, y, axis, keepdims), axis=axis, keepdims=keepdims),
       kink=lambda xp, x, axis=None, keepdims=False: _top_gap(xp, x, axis),
       variadic_elementwise=_name + "imum", curvature="piecewise",
       note="ties split the derivative evenly; with 2+ arguments elementwise", **R)


def _kernels_may_take(x):
    """Large enough for the fused logsumexp and softmax (adcli/kernels/reduce.py)?"""
    from . import kernels
    return type(x) is np.ndarray and x.size >= kernels.settings.min_elements


def _lse(xp, x, axis=None, keepdims=False):
    # log sum exp(x) = m + log sum exp(x - m) with m the max: no overflow
    if _kernels_may_take(x):          # every element of a large array: one fused loop
        from .kernels import reduce
        out = reduce.logsumexp(xp, x, axis)
        if out is not None:
            return xp.reshape(out, (1,) * x.ndim) if keepdims else out
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.reshape(out, reduced_shape(x.shape, axis))


def _lse_vjp(ns, g, y, x, axis=None, keepdims=False):
    # (softmax times the cotangent: for a large array and a number g, one fused loop)
    if _kernels_may_take(x) and not getattr(g, "ndim", 0):
        from .kernels import reduce
        out = reduce.softmax(np, x, axis, scale=g)
        if out is not None:
            return out
    return unreduce(ns, g, x.shape, axis, keepdims) * ns.softmax(x, axis=axis)


op("logsumexp", examples=[((5,), {}), ((3, 4), {"axis": 1})],
   series=lambda xp, y, x, axis=None, keepdims=False: ps.logsumexp(x, axis, y),
   fwd=_lse, numpy="scipy.special.logsumexp",
   # d lse / dx = softmax(x), computed as exp(x - max) / sum(exp(x - max)) rather than
   # exp(x - lse), which carries the rounding of a large lse into every weight
   vjp=(_lse_vjp,),
   jvp=lambda ns, t, y, x, axis=None, keepdims=False:
       ns.sum(t[0] * ns.softmax(x, axis=axis), axis=axis, keepdims=keepdims),
   note="computed stably", fused_reduce="logsumexp", **R)


def _softmax(xp, x, axis=-1):
    if _kernels_may_take(x):
        from .kernels import reduce
        out = reduce.softmax(xp, x, axis)
        if out is not None:
            return out
    z = x - xp.max(x, axis=axis, keepdims=True)
    e = xp.exp(z)
    return e / xp.sum(e, axis=axis, keepdims=True)


op("softmax", examples=[((5,), {}), ((3, 4), {"axis": 0})],
   series=lambda xp, y, x, axis=-1: ps.softmax(x, axis, y),
   fwd=_softmax, attrs={"axis": -1}, kind="reduction", method=True, depends="along",
   numpy="scipy.special.softmax",
   shape=lambda s, axis=-1: same_shape(s, axes_of(axis, len(s))),
   # J = diag(y) - y y^T, so J^T g = y * (g - <g, y>) and J t = y * (t - <t, y>)
   vjp=(lambda ns, g, y, x, axis=-1: y * (g - ns.sum(g * y, axis=axis, keepdims=True)),),
   jvp=lambda ns, t, y, x, axis=-1: y * (t[0] - ns.sum(t[0] * y, axis=axis, keepdims=True)),
   note="computed stably")


def _count(x, axis):
    return math.prod(x.shape[i] for i in axes_of(axis, x.ndim) if i < x.ndim)


op("mean", examples=[((3, 4), {}), ((3, 4), {"axis": 1})],
   expand=lambda ns, x, axis=None, keepdims=False:
   ns.sum(x, axis=axis, keepdims=keepdims) * (1.0 / _count(x, axis) if _count(x, axis) else math.nan),
   **R)
op("var", examples=[((6,), {}), ((3, 4), {"axis": 0, "ddof": 1})],
   expand=lambda ns, x, axis=None, keepdims=False, ddof=0:
   ns.sum(ns.square(x - ns.mean(x, axis=axis, keepdims=True)), axis=axis, keepdims=keepdims)
   * (1.0 / (_count(x, axis) - ddof) if _count(x, axis) > ddof else math.nan),
   **{**R, "attrs": {"axis": None, "keepdims": False, "ddof": 0}})
op("std", examples=[((6,), {}), ((3, 4), {"axis": 1})],
   expand=lambda ns, x, axis=None, keepdims=False, ddof=0:
   ns.sqrt(ns.var(x, axis=axis, keepdims=keepdims, ddof=ddof)),
   note="gradient 0 where all elements are equal",
   **{**R, "attrs": {"axis": None, "keepdims": False, "ddof": 0}})
def _norm_scale(xp, x, axis=None, keepdims=False):
    # max |x| over the axes (of the real part: the complex step's imaginary part is not a
    # size), and 1 where that is 0, inf or nan, for which no scaling is needed or helps
    m = xp.max(xp.abs(xp.real(x)), axis=axis, keepdims=keepdims)
    return xp.where((m > 0) & (m < math.inf), m, 1.0)


op("norm_scale", examples=[((5,), {}), ((3, 4), {"axis": 0, "keepdims": True})],
   fwd=_norm_scale, differentiable=False, internal=True,
   printed=lambda ns, x, axis=None, keepdims=False:   # where x is finite and not all 0
   ns.detach(ns.max(ns.abs(x), axis=axis, keepdims=keepdims)),
   note="a constant: norm's result does not depend on it", **R)


def _norm(ns, x, axis=None, keepdims=False):
    """sqrt(sum(x^2)) scaled as BLAS's nrm2 is: m sqrt(sum((x/m)^2)) with m = max |x|, so
    that neither the squares of tiny elements underflow nor those of huge ones overflow.
    m is a constant (norm_scale has no derivative): the function equals the norm for every
    m > 0, so its derivatives are the norm's, and they are scaled the same way."""
    inner = ns.sum(ns.square(x / ns.norm_scale(x, axis=axis, keepdims=True)), axis=axis,
                   keepdims=keepdims)
    return ns.sqrt(inner) * ns.norm_scale(x, axis=axis, keepdims=keepdims)


op("norm", examples=[((5,), {}), ((3, 4), {"axis": 0})],
   expand=_norm,
   note="Euclidean (Frobenius) norm, scaled against under- and overflow; gradient 0 at the "
        "origin", **R)

# ---------------------------------------------------------------- linear algebra


def _matmul_vjp(which):
    def rule(ns, g, y, a, b):
        a2 = ns.reshape(a, shape=(1,) + a.shape) if a.ndim == 1 else a
        b2 = ns.reshape(b, shape=b.shape + (1,)) if b.ndim == 1 else b
        g2 = ns.reshape(g, shape=matmul_shape(a2.shape, b2.shape))
        if which == 0:  # d/da <g, a b> = g b^T
            return ns.reshape(ns.sum_to(ns.matmul(g2, swap_last(ns, b2)), shape=a2.shape), shape=a.shape)
        return ns.reshape(ns.sum_to(ns.matmul(swap_last(ns, a2), g2), shape=b2.shape), shape=b.shape)
    return rule


def _matmul_subscripts(sa, sb):
    """matmul as einsum subscripts (a vector is a row of a, a column of b)."""
    a = "...ik" if len(sa) > 1 else "k"
    b = "...kj" if len(sb) > 1 else "k"
    out = "..." * (len(sa) > 1 or len(sb) > 1) + "i" * (len(sa) > 1) + "j" * (len(sb) > 1)
    return f"{a},{b}->{out}"


def _add_tangents(parts):
    """The tangent of a bilinear op: the sum of the parts that are there (None: that
    argument does not move)."""
    parts = [p for p in parts if p is not None]
    return parts[0] + parts[1] if len(parts) == 2 else parts[0]


def _matmul_jvp(ns, t, y, a, b):
    return _add_tangents([ns.matmul(t[0], b) if t[0] is not None else None,
                          ns.matmul(a, t[1]) if t[1] is not None else None])


op("matmul", batch=_matmul_batch,
   examples=[(((3, 4), (4, 2)), {}), (((4,), (4, 3)), {}), (((3, 4), (4,)), {}),
             (((4,), (4,)), {}), (((2, 3, 4), (4, 2)), {}), (((3, 4), (2, 4, 5)), {})],
   args=("a", "b"), fwd=lambda xp, a, b: xp.matmul(a, b),
   vjp=(_matmul_vjp(0), _matmul_vjp(1)), jvp=_matmul_jvp, kind="linalg",
   depends=_matmul_subscripts, curvature="bilinear",
   shape=matmul_shape, cost=matmul_cost, symbol=("@",), infix=(3, "left"), latex="\\,", doc="a @ b, numpy's matmul")
def _dot(ns, a, b):
    """numpy's dot: a product with a scalar; matmul for vectors and matrices; for N-d
    arrays the sum over the last axis of a and the second-to-last of b, so that
    dot(a, b)[i, j, k, m] = sum(a[i, j, :] * b[k, :, m]) (not matmul's broadcasting)."""
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim <= 2 and b.ndim <= 2:
        return ns.matmul(a, b)
    n, m = a.shape[-1], b.shape[max(b.ndim - 2, 0)]
    if n != m:
        raise ShapeError(f"dot: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned: "
                         f"the last axis of a ({n}) must match the second-to-last of b ({m})",
                         pos=getattr(getattr(a, "graph", None), "pos", None))
    a2 = ns.reshape(a, shape=(-1, n))
    if b.ndim == 1:
        return ns.reshape(ns.matmul(a2, b), shape=tuple(a.shape[:-1]))
    # b's contracted axis first, the others after it in order: (n, rest of b)
    perm = (b.ndim - 2,) + tuple(range(b.ndim - 2)) + (b.ndim - 1,)
    b2 = ns.reshape(ns.transpose(b, axes=perm), shape=(n, -1))
    out = tuple(a.shape[:-1]) + tuple(b.shape[:-2]) + tuple(b.shape[-1:])
    return ns.reshape(ns.matmul(a2, b2), shape=out)


op("dot", examples=[(((3,), (3,)), {}), (((2, 3), (3,)), {})],
   args=("a", "b"), kind="linalg", expand=_dot, method=True,
   doc="numpy's dot: scalars, vectors, matrices and N-d arrays")
op("outer", examples=[(((3,), (2,)), {})],
   args=("a", "b"), kind="linalg",
   expand=lambda ns, a, b: ns.reshape(a, shape=(-1, 1)) * ns.reshape(b, shape=(1, -1)))
op("trace", batch=leading_axes(),
   examples=[((3, 3), {})],
   fwd=lambda xp, x: xp.trace(x, axis1=-2, axis2=-1), kind="linalg",
   depends="...ii->...", curvature="linear",
   vjp=(lambda ns, g, y, x: ns.reshape(g, shape=g.shape + (1, 1))
        * ns.eye(n=x.shape[-2], m=x.shape[-1]),),
   jvp=lambda ns, t, y, x: ns.trace(t[0]),
   shape=_matrix_shape, doc="trace(A): the sum of the diagonal", method=True,
   numpy="np.trace({0}, axis1=-2, axis2=-1)",
   note="of the last two axes, like the other matrix functions (numpy's trace takes the "
        "first two)")


def _cofactor(xp, x):
    """The cofactor matrix: det(X) X^-T for a well-conditioned X; otherwise, from the SVD
    X = U S V^T, det(U) det(V^T) U diag(prod of the other singular values) V^T, with no
    inverse and no division, so it is right for singular matrices too."""
    d = xp.linalg.det(x)
    # Hadamard's bound |det X| <= prod of the row norms: a small ratio means ill-conditioned
    bound = xp.prod(xp.sqrt(xp.sum(x * x, axis=-1)), axis=-1)
    if bool(xp.all(xp.abs(d) > 1e-8 * bound)):
        return d[..., None, None] * xp.swapaxes(xp.linalg.inv(x), -1, -2)
    u, sv, vt = xp.linalg.svd(x)
    sign = xp.linalg.det(u) * xp.linalg.det(vt)
    return sign[..., None, None] * xp.matmul(u * prod_others(xp, sv, axis=-1)[..., None, :], vt)


op("det", batch=leading_axes(),
   series=lambda xp, y, x: ps.det(x, y),
   examples=[((3, 3), {})],
   fwd=lambda xp, x: xp.linalg.det(x), kind="linalg", depends="...ij->...", numpy="np.linalg.det",
   # Jacobi's formula: d det(X) = tr(adj(X) dX) = sum(cofactor(X) * dX)
   vjp=(lambda ns, g, y, x: ns.reshape(g, shape=y.shape + (1, 1)) * ns.cofactor(x),),
   jvp=lambda ns, t, y, x: ns.sum(ns.cofactor(x) * t[0], axis=(-2, -1)),
   shape=lambda s: _square_shape(s)[:-2], domain=((-2.0, 2.0),), cost=cubic_cost,
   note="exact also for singular matrices (their second derivatives need an inverse)")
op("cofactor", batch=leading_axes(),
   examples=[((3, 3), {}), ((2, 3, 3), {})],
   fwd=_cofactor, kind="internal", internal=True, depends="...ij->...kl",
   printed=lambda ns, x: ns.reshape(ns.det(x), shape=tuple(x.shape[:-2]) + (1, 1))
   * swap_last(ns, ns.inv(x)),                  # det(X) X^-T, for an invertible X
   # C = det(X) X^-T: dC = C tr(X^-1 dX) - C dX^T X^-T, which needs an invertible X
   vjp=(lambda ns, g, y, x: ns.reshape(ns.sum(g * y, axis=(-2, -1)), shape=y.shape[:-2] + (1, 1))
        * swap_last(ns, ns.inv(x))
        - ns.matmul(ns.matmul(swap_last(ns, ns.inv(x)), swap_last(ns, g)), y),),
   jvp=lambda ns, t, y, x: y * ns.reshape(ns.sum(swap_last(ns, ns.inv(x)) * t[0], axis=(-2, -1)),
                                          shape=y.shape[:-2] + (1, 1))
   - ns.matmul(ns.matmul(y, swap_last(ns, t[0])), swap_last(ns, ns.inv(x))),
   shape=_square_shape, domain=((-2.0, 2.0),), cost=cubic_cost)
op("inv", batch=leading_axes(),
   series=lambda xp, y, x: ps.inv(x, y),
   examples=[((3, 3), {})],
   fwd=lambda xp, x: xp.linalg.inv(x), kind="linalg", depends="...ij->...kl", numpy="np.linalg.inv",
   # d(X^-1) = -X^-1 dX X^-1
   vjp=(lambda ns, g, y, x: -ns.matmul(ns.matmul(swap_last(ns, y), g), swap_last(ns, y)),),
   jvp=lambda ns, t, y, x: -ns.matmul(ns.matmul(y, t[0]), y), shape=_square_shape,
   cost=cubic_cost)


def _col(ns, v):
    """A vector right-hand side (and its solution) as a one-column matrix: v[..., None]."""
    return ns.reshape(v, shape=tuple(v.shape) + (1,))


def _uncol(ns, m):
    return ns.reshape(m, shape=tuple(m.shape)[:-1])


def _solve_vjp_a(ns, g, y, a, b):
    # -(A^-T g) x^T, batched; a vector b is a one-column matrix
    if b.ndim == 1:
        g, y = _col(ns, g), _col(ns, y)
    return -ns.matmul(ns.solve(swap_last(ns, a), g), swap_last(ns, y))


def _solve_vjp_b(ns, g, y, a, b):
    if b.ndim == 1:
        return _uncol(ns, ns.solve(swap_last(ns, a), _col(ns, g)))   # summed over batches
    return ns.solve(swap_last(ns, a), g)


def _solve_jvp(ns, t, y, a, b):
    vec = b.ndim == 1
    ym = _col(ns, y) if vec else y
    rhs = (_col(ns, t[1]) if vec else t[1]) if t[1] is not None else 0.0 * ym
    if t[0] is not None:
        rhs = rhs - ns.matmul(t[0], ym)
    out = ns.solve(a, rhs)
    return _uncol(ns, out) if vec else out


def _solve_shape(sa, sb):
    n = _square_shape(sa)[-1]
    if len(sb) == 1 and sb[0] == n:          # one vector for every matrix
        return tuple(sa[:-1])
    if len(sb) >= 2 and sb[-2] == n:          # matrices, batched by broadcasting
        return tuple(np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))) + tuple(sb[-2:])
    return _fail(f"cannot solve with shapes {sa} and {sb}")


op("solve", batch=_solve_batch,
   series=lambda xp, y, a, b: ps.solve(a, b, y),
   examples=[(((3, 3), (3,)), {}), (((3, 3), (3, 2)), {}), (((2, 3, 3), (3,)), {}),
             (((2, 3, 3), (2, 3, 2)), {})],
   args=("a", "b"), fwd=lambda xp, a, b: xp.linalg.solve(a, b), kind="linalg", numpy="np.linalg.solve",
   # x[..., k] (x[..., k, l]) reads all of its matrix and b (b's column l)
   depends=lambda sa, sb: "...ij,j->...k" if len(sb) == 1 else "...ij,...ml->...kl",
   # x = A^-1 b: dx = A^-1 (db - dA x); so b's cotangent is A^-T g and A's is -(A^-T g) x^T
   vjp=(_solve_vjp_a, _solve_vjp_b),
   jvp=_solve_jvp, shape=_solve_shape, cost=cubic_cost,
   doc="solve(A, b): x with A x = b")

def _einsum_terms(subscripts, count):
    """numpy's einsum subscripts in explicit form: ([term per operand], output term), each
    a list of tokens (letters and '...'). Implicit output: the letters used once, sorted."""
    text = subscripts.replace(" ", "")
    ins, arrow, out = text.partition("->")
    terms = ins.split(",")
    if len(terms) != count:
        raise ValueError(f"'{subscripts}' names {len(terms)} operands; einsum takes {count}")
    if not arrow:
        letters = ins.replace("...", "").replace(",", "")
        out = ("..." if "..." in ins else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1))
    tokens = []
    for term in terms + [out]:
        pre, dots, post = term.partition("...")
        if not all(c.isascii() and c.isalpha() for c in pre + post) or "..." in post:
            raise ValueError(f"'{subscripts}': subscripts are letters, with at most one '...' "
                             "per operand")
        if len(set(pre + post)) != len(pre + post):
            raise ValueError(f"'{subscripts}': an index repeats within '{term}' (for a trace "
                             "or a diagonal use trace or diag)")
        tokens.append(list(pre) + (["..."] if dots else []) + list(post))
    return tokens[:-1], tokens[-1]


def _einsum_shape(*shapes, subscripts=""):
    terms, out = _einsum_terms(subscripts, len(shapes))
    sizes, batches = {}, []
    for term, s in zip(terms, shapes):
        extra = len(s) - (len(term) - ("..." in term))
        if extra < 0 or (extra and "..." not in term):
            raise ValueError(f"'{''.join(term)}' does not fit an operand of shape {tuple(s)}")
        dims = list(s)
        for t in term:
            if t == "...":
                batches.append(tuple(dims[:extra]))
                dims = dims[extra:]
                continue
            d = dims.pop(0)
            if sizes.setdefault(t, d) != d:
                raise ValueError(f"index {t} has lengths {sizes[t]} and {d}")
    batch = tuple(np.broadcast_shapes(*batches)) if batches else ()
    if batch and "..." not in out:
        raise ValueError(f"'{subscripts}': the output needs '...' for the operands' extra axes")
    missing = [t for t in out if t != "..." and t not in sizes]
    if missing:
        raise ValueError(f"'{subscripts}': the output index {missing[0]} is in no operand")
    return tuple(d for t in out for d in (batch if t == "..." else (sizes[t],)))


def _einsum_cost(*shapes, subscripts=""):
    """A multiply-add for every point of the index space: every letter's length times the
    broadcast axes (what einsum without a contraction order does, the most it does)."""
    terms, out = _einsum_terms(subscripts, len(shapes))
    lengths, batch = {}, 1
    for term, s in zip(terms, shapes):
        mine = _einsum_lengths(term, s)
        lengths.update(mine)
        if "..." in term:
            batch = max(batch, math.prod(s) // max(1, math.prod(mine.values())))
    return batch * math.prod(lengths.values())


def _einsum_lengths(term, shape):
    """The length of each letter of an einsum term on an operand of `shape`."""
    if "..." not in term:
        return dict(zip(term, shape))
    i = term.index("...")
    after = len(term) - i - 1
    return {**dict(zip(term[:i], shape[:i])), **dict(zip(term[i + 1:], shape[len(shape) - after:]))}


def _einsum_vjp(which):
    def rule(ns, g, y, a, b, subscripts=""):
        # <g, einsum(a, b)> is linear in each operand: the cotangent of one is the einsum
        # of g with the other, onto the operand's indices; an index that only that operand
        # has (summed in the forward pass) is broadcast back
        terms, out = _einsum_terms(subscripts, 2)
        mine, other = terms[which], terms[1 - which]
        x, rest = (a, b) if which == 0 else (b, a)
        if "..." not in mine and "..." in out:
            mine = ["..."] + mine             # the broadcast axes, summed away by the engine
        kept = [t for t in mine if t in out or t in other]
        if "..." in mine and "..." not in kept:
            raise ShapeError(f"einsum '{subscripts}': no derivative for '...' summed away")
        ct = ns.einsum(g, rest, subscripts=f"{''.join(out)},{''.join(other)}->{''.join(kept)}")
        if kept == mine:
            return ct
        lengths = _einsum_lengths(mine, x.shape)
        nbatch = ct.ndim - len(kept) + ("..." in kept)
        shape, full = [], []
        for t in mine:
            if t == "...":
                k = kept.index("...")         # letters before it are one axis each
                shape += ct.shape[k:k + nbatch]
                full += ct.shape[k:k + nbatch]
            else:
                shape.append(lengths[t] if t in kept else 1)
                full.append(lengths[t])
        return ns.broadcast_to(ns.reshape(ct, shape=tuple(shape)), shape=tuple(full))
    return rule


def _einsum_jvp(ns, t, y, a, b, subscripts=""):
    return _add_tangents([ns.einsum(t[0], b, subscripts=subscripts) if t[0] is not None else None,
                          ns.einsum(a, t[1], subscripts=subscripts) if t[1] is not None else None])


op("einsum", batch=_einsum_batch,
   examples=[(((3, 4), (4, 2)), {"subscripts": "ij,jk->ik"}),          # matmul
             (((4,), (4,)), {"subscripts": "i,i->"}),                    # dot
             (((3,), (2,)), {"subscripts": "i,j->ij"}),                  # outer
             (((3, 4), (4, 3)), {"subscripts": "ij,ji->"}),              # trace(a @ b)
             (((2, 3, 4), (2, 4, 2)), {"subscripts": "bij,bjk->bik"}),   # batched
             (((2, 3, 4), (4, 2)), {"subscripts": "...ij,...jk->...ik"}),
             (((3, 4), (4, 2)), {"subscripts": "ij,jk"}),                # implicit output
             (((3, 4), (4,)), {"subscripts": "ij,j->j"}),                # i summed in a alone
             (((2, 3), (3, 4)), {"subscripts": "ij,kl->"}),
             (((2, 3, 4), (4,)), {"subscripts": "...ij,j->...j"}),
             (((4, 2, 3), (3,)), {"subscripts": "k...j,j->...k"})],
   args=("a", "b"), attrs={"subscripts": REQUIRED}, string_attrs=("subscripts",),
   attrs_first=True, kind="linalg", curvature="bilinear",
   depends=lambda sa, sb, subscripts="": "{},{}->{}".format(
       *("".join(t) for t in _einsum_terms(subscripts, 2)[0]),
       "".join(_einsum_terms(subscripts, 2)[1])),
   fwd=lambda xp, a, b, subscripts="": xp.einsum(subscripts, a, b, optimize=True),
   vjp=(_einsum_vjp(0), _einsum_vjp(1)), jvp=_einsum_jvp, shape=_einsum_shape, cost=_einsum_cost,
   note="two operands, numpy's subscripts with '...'; no index repeated within an operand",
   doc="einsum('ij,jk->ik', a, b): numpy's Einstein summation of two arrays")

# ---------------------------------------------------------------- shapes

op("transpose", batch=_transpose_batch,
   examples=[((3, 4), {}), ((2, 3, 4), {"axes": (1, 2, 0)}), ((2, 3, 4), {"axes": (-1, 0, 1)})],
   fwd=lambda xp, x, axes=None: xp.transpose(x, axes), attrs={"axes": None},
   kind="shape", method=True, shape_args=True,
   vjp=(lambda ns, g, y, x, axes=None:
        ns.transpose(g, axes=None if axes is None
                     else tuple(int(i) for i in np.argsort([a % x.ndim for a in axes]))),),
   jvp=lambda ns, t, y, x, axes=None: ns.transpose(t[0], axes=axes),
   shape=lambda s, axes=None: tuple(s[i] for i in (axes if axes is not None else range(len(s))[::-1]))
   if axes is None or sorted(a % max(len(s), 1) for a in axes) == list(range(len(s)))
   else _fail(f"axes {tuple(axes)} is not a permutation of the {len(s)} axes of shape {tuple(s)}"),
   doc="transpose(x), also x.T")
op("reshape", batch=to_out,
   examples=[((3, 4), {"shape": (2, 6)}), ((6,), {"shape": (-1, 2)})],
   fwd=lambda xp, x, shape=(): xp.reshape(x, shape), attrs={"shape": REQUIRED},
   kind="shape", method=True, shape_args=True, reshapes=True,
   vjp=(lambda ns, g, y, x, shape=(): ns.reshape(g, shape=x.shape),),
   jvp=lambda ns, t, y, x, shape=(): ns.reshape(t[0], shape=shape),
   shape=_reshape_shape, doc="reshape(x, shape), also x.reshape(2, 3)")
op("flatten", examples=[((3, 4), {})],
   expand=lambda ns, x: ns.reshape(x, shape=(-1,)), kind="shape", method=True,
   doc="flatten(x): x as a vector, also x.flatten()")
op("broadcast_to", batch=lambda xp, x, shapes, out, shape=(): xp.broadcast_to(
       aligned(xp, [x], shapes, len(out))[0], x.shape[:1] + tuple(out)),
   examples=[((3, 1), {"shape": (2, 3, 4)})],
   fwd=lambda xp, x, shape=(): xp.broadcast_to(x, shape), attrs={"shape": REQUIRED},
   kind="shape", reshapes=True,
   vjp=(lambda ns, g, y, x, shape=(): ns.sum_to(g, shape=x.shape),),
   jvp=lambda ns, t, y, x, shape=(): ns.broadcast_to(t[0], shape=shape),
   shape=lambda s, shape=(): np.broadcast_shapes(s, _size_of(shape)) and _size_of(shape))
def _sum_to_public(ns, x, shape):
    """sum_to as sum and reshape: the leading axes and the broadcast ones summed."""
    shape, lead = tuple(shape), x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and x.shape[i + lead] != 1)
    y = ns.sum(x, axis=axes) if axes else x
    return ns.reshape(y, shape=shape) if tuple(y.shape) != shape else y


op("sum_to", batch=_sum_to_batch,
   examples=[((2, 3, 4), {"shape": (3, 1)})],
   fwd=lambda xp, x, shape=(): sum_to_shape(xp, x, shape), attrs={"shape": REQUIRED},
   kind="internal", internal=True, shape=lambda s, shape=(): tuple(shape),
   depends="reduce", curvature="linear", printed=lambda ns, x, shape=(): _sum_to_public(ns, x, shape),
   vjp=(lambda ns, g, y, x, shape=(): ns.broadcast_to(g, shape=x.shape),),
   jvp=lambda ns, t, y, x, shape=(): ns.sum_to(t[0], shape=shape))
op("index", batch=_index_batch,
   examples=[((5,), {"key": (slice(1, 4),)}), ((3, 4), {"key": (slice(None), 1)}),
             ((6,), {"key": (slice(None, None, 2),)}), ((6,), {"key": (-1,)}),
             ((6,), {"key": (np.array([0, 2, 3]),)}),                       # x[x > 0]
             ((3, 4), {"key": (np.array([0, 1, 1]), np.array([1, 0, 3]))}),   # A[A > 0]
             ((2, 3, 4), {"key": (np.array([0, 1]), slice(None), np.array([1, 3]))}),
             ((3, 4), {"key": (None, slice(None), 1)})],
   fwd=lambda xp, x, key=(): x[key], attrs={"key": REQUIRED}, kind="shape", internal=True,
   spelled=lambda x, key=(): f"{x}[{index_text(key)}]",
   vjp=(lambda ns, g, y, x, key=(): ns.unindex(g, key=key, shape=x.shape),),
   jvp=lambda ns, t, y, x, key=(): ns.index(t[0], key=key),
   shape=lambda s, key=(): index_key(key, s), doc="x[i], x[a:b:c], A[:, j]")
op("unindex", batch=_unindex_batch,
   examples=[((3,), {"key": (slice(1, 4),), "shape": (5,)}),
             ((3,), {"key": (np.array([0, 2, 3]),), "shape": (5,)})],
   fwd=unindex, attrs={"key": REQUIRED, "shape": REQUIRED}, kind="internal",
   printed=lambda ns, g, key=(), shape=(): _unindex_printed(ns, g, key, shape),
   depends="moves", curvature="linear",
   internal=True, shape=lambda s, key=(), shape=(): tuple(shape),
   vjp=(lambda ns, g, y, x, key=(), shape=(): ns.index(g, key=key),),
   jvp=lambda ns, t, y, x, key=(), shape=(): ns.unindex(t[0], key=key, shape=shape))


def _piece(x, i, offsets, axis):
    ax = axes_of(axis, x.ndim)[0]
    return (slice(None),) * ax + (slice(offsets[i], offsets[i + 1]),)


def _concat_vjp(ns, g, y, *xs, argnum, axis=0):
    ax = axes_of(axis, y.ndim)[0]
    offsets = np.cumsum([0] + [x.shape[ax] for x in xs]).tolist()
    return ns.index(g, key=_piece(y, argnum, offsets, axis))


def _fill(ns, t, xs):
    return [ti if ti is not None else ns.zeros(shape=x.shape) for ti, x in zip(t, xs)]


op("concat", batch=lambda xp, *xs, shapes, out, axis=0:
   xp.concatenate(xs, axis=axes_of(axis, len(out))[0] + 1),
   examples=[(((2,), (3,)), {}), (((2, 3), (1, 3)), {"axis": 0})],
   args=("*xs",), fwd=lambda xp, *xs, axis=0: xp.concatenate(xs, axis=axis), numpy="concatenate",
   attrs={"axis": 0}, kind="shape", vjp=(_concat_vjp,),
   jvp=lambda ns, t, y, *xs, axis=0: ns.concat(*_fill(ns, t, xs), axis=axis),
   shape=_concat_shape, doc="concat([a, b, ...], axis=0)")
op("stack", batch=lambda xp, *xs, shapes, out, axis=0: xp.stack(xs, axis=axes_of(axis, len(out))[0] + 1),
   examples=[(((3,), (3,)), {}), (((2,), (2,), (2,)), {"axis": 0})],
   args=("*xs",), fwd=lambda xp, *xs, axis=0: xp.stack(xs, axis=axis),
   attrs={"axis": 0}, kind="shape",
   vjp=(lambda ns, g, y, *xs, argnum, axis=0:
        ns.index(g, key=(slice(None),) * axes_of(axis, y.ndim)[0] + (argnum,)),),
   jvp=lambda ns, t, y, *xs, axis=0: ns.stack(*_fill(ns, t, xs), axis=axis),
   shape=_stack_shape, doc="stack([a, b, ...], axis=0); list literals stack too")

# ---------------------------------------------------------------- scans, triangles, flips


def _along_last(ns, x, axis):
    """x with `axis` moved last (flattened when axis is None, as numpy's cumsum does), and
    the permutation that moves it back (None: reshape to x's shape instead)."""
    if axis is None:
        return ns.reshape(x, shape=(-1,)), None
    ax = axes_of(axis, x.ndim)[0]
    perm = tuple(i for i in range(x.ndim) if i != ax) + (ax,)
    return ns.transpose(x, axes=perm), tuple(int(i) for i in np.argsort(perm))


def _back(ns, r, back, shape):
    return ns.reshape(r, shape=tuple(shape)) if back is None else ns.transpose(r, axes=back)


def _over_axes(f, xp, x, axis):
    """f(x, axis) for one axis or None, and for a tuple of axes, which gradcheck's batches
    ask of every reduction: one axis alone, or several flattened into one last axis."""
    if not isinstance(axis, tuple):
        return f(x, axis)
    if len(axis) == 1:
        return f(x, axis[0])
    axes = axes_of(axis, x.ndim)
    rest = [i for i in range(x.ndim) if i not in axes]
    x = xp.reshape(xp.transpose(x, rest + list(axes)), tuple(x.shape[i] for i in rest) + (-1,))
    return f(x, -1)


def _scan_shape(s, axis=None):
    if axis is None:
        return (math.prod(s),)
    if not isinstance(axis, int):
        raise ValueError("axis must be one integer or None")
    axes_of(axis, len(s))
    return tuple(s) or (1,)      # numpy makes a number's running sum an array of one


def _cumsum_vjp(ns, g, y, x, axis=None):
    # the adjoint of a running sum is the running sum from the other end
    ax = 0 if axis is None else axis
    r = ns.flip(ns.cumsum(ns.flip(g, axis=ax), axis=ax), axis=ax)
    return r if axis is not None else ns.reshape(r, shape=x.shape)


op("cumsum", batch=axes_moved(flat=True),
   examples=[((5,), {}), ((3, 4), {"axis": 1}), ((2, 3), {"axis": 0}), ((2, 3), {})],
   fwd=lambda xp, x, axis=None: _over_axes(xp.cumsum, xp, x, axis), attrs={"axis": None},
   kind="reduction", vjp=(_cumsum_vjp,), method=True, depends="along", curvature="linear",
   jvp=lambda ns, t, y, x, axis=None: ns.cumsum(t[0], axis=axis), shape=_scan_shape,
   doc="cumsum(x, axis=None): running sums (flattened when axis is None)")


def _cumprod_slopes(ns, x1):
    """d y_i / d x_k for y = cumprod(x1) along the last axis, indexed (..., i, k): the
    product of the x_m, m <= i, other than x_k, for k <= i, else 0. It is prod_others of
    the rows of m_ik = x_k (k <= i) or 1 (k > i): exact at zeros, to every order."""
    n = x1.shape[-1]
    low = ns.tril(ns.ones(shape=(n, n)))
    rows = ns.reshape(x1, shape=tuple(x1.shape[:-1]) + (1, n)) * low + (1.0 - low)
    return ns.prod_others(rows, axis=-1) * low


def _numbers_without_zeros(ns, x):
    """Numeric mode (not recording a graph) at a point with no zero in x."""
    return getattr(ns, "_graph", None) is None and bool(ns.xp.all(x != 0))


def _cumprod_vjp(ns, g, y, x, axis=None):
    if _numbers_without_zeros(ns, x):      # O(n): sum_{i >= k} g_i y_i / x_k
        return _cumsum_vjp(ns, g * y, y, x, axis) / x
    x1, back = _along_last(ns, x, axis)
    g1 = _along_last(ns, g, axis)[0]
    ct = ns.sum(ns.reshape(g1, shape=tuple(g1.shape) + (1,)) * _cumprod_slopes(ns, x1), axis=-2)
    return _back(ns, ct, back, x.shape)


def _cumprod_jvp(ns, t, y, x, axis=None):
    if _numbers_without_zeros(ns, x):      # y_i sum_{k <= i} t_k / x_k
        return ns.cumsum(t[0] / x, axis=axis) * y
    x1, back = _along_last(ns, x, axis)
    t1 = _along_last(ns, t[0], axis)[0]
    d = _cumprod_slopes(ns, x1)
    out = ns.sum(d * ns.reshape(t1, shape=tuple(t1.shape[:-1]) + (1, t1.shape[-1])), axis=-1)
    return out if back is None else ns.transpose(out, axes=back)


op("cumprod", batch=axes_moved(flat=True),
   series=lambda xp, y, x, axis=None: ps.cumprod(x, axis, y),
   examples=[((5,), {}), ((3, 4), {"axis": 1}), ((2, 3), {"axis": 0}), ((2, 3), {})],
   fwd=lambda xp, x, axis=None: _over_axes(xp.cumprod, xp, x, axis), attrs={"axis": None},
   kind="reduction", vjp=(_cumprod_vjp,), jvp=_cumprod_jvp, shape=_scan_shape, method=True,
   depends="along",
   note="exact at zeros (then, and for second derivatives, n^2 work per slice)",
   doc="cumprod(x, axis=None): running products (flattened when axis is None)")
op("log_softmax", examples=[((5,), {}), ((3, 4), {"axis": 0})],
   expand=lambda ns, x, axis=-1: x - ns.logsumexp(x, axis=axis, keepdims=True),
   attrs={"axis": -1}, kind="reduction", method=True, note="computed stably: x - logsumexp(x)",
   doc="log_softmax(x, axis=-1)")


def _matrix_of(s, k=0):
    if len(s) < 2:
        raise ValueError(f"needs a matrix, got shape {tuple(s)}")
    return tuple(s)


for _name, _f in (("tril", "tril"), ("triu", "triu")):
    op(_name, fwd=lambda xp, x, k=0, _f=_f: getattr(xp, _f)(x, k), attrs={"k": 0}, kind="shape",
       batch=leading_axes(),
       examples=[((3, 3), {}), ((3, 4), {"k": 1}), ((2, 3, 3), {"k": -1}), ((4, 3), {"k": -1})],
       vjp=(lambda ns, g, y, x, k=0, _n=_name: getattr(ns, _n)(g, k=k),),
       jvp=lambda ns, t, y, x, k=0, _n=_name: getattr(ns, _n)(t[0], k=k), shape=_matrix_of,
       doc=f"{_name}(A, k=0): the {'lower' if _name == 'tril' else 'upper'} triangle from "
           "diagonal k, the rest 0")


def _same_shape(s, axis=None):
    axes_of(axis, len(s))           # (checks the axes)
    return tuple(s)


def _flip_shape(s, axis=None):
    if not s and axis is not None:
        raise ValueError("a number has no axis to reverse")
    return _same_shape(s, axis)


def _diag_key(shape, k):
    """The (rows, columns) of diagonal k of a matrix of `shape`: a static integer index."""
    m, n = shape
    i = np.arange(max(0, -k), min(m, n - k))
    return (i, i + k)


def _unindex_printed(ns, g, key, shape):
    """unindex in public ops, for `adcli diff`: the k-th diagonal of an (m, n) matrix (diag's
    derivative) as diag of g (padded with zeros) cut to (m, n); otherwise g assigned into
    zeros (which adcli's language writes for slices and integers only)."""
    k = _diagonal_of(key, shape)
    if k is not None:
        # diag(h, k)[j + max(0, -k), j + max(0, k)] = h[j]: h is g and zeros, long enough
        # for the square to cover the matrix both ways
        m, n = shape
        pad = max(m, n) - abs(k) - key[0].size
        h = g if pad == 0 else ns.concat(g, ns.zeros(shape=(pad,)), axis=0)
        return ns.index(ns.diag(h, k=k), key=(slice(0, m), slice(0, n)))
    return ns.setindex(ns.zeros(shape=shape), g, key=key)


def _diagonal_of(key, shape):
    """k where `key` is _diag_key(shape, k), the k-th diagonal of a matrix; else None."""
    if len(shape) != 2 or len(key) != 2 or not all(isinstance(a, np.ndarray) for a in key):
        return None
    rows, cols = key
    if rows.ndim != 1 or not rows.size or rows.shape != cols.shape:
        return None
    k = int(cols[0] - rows[0])
    want = _diag_key(shape, k)
    if not (np.array_equal(rows, want[0]) and np.array_equal(cols, want[1])):
        return None
    return k


def _diag_shape(s, k=0):
    if len(s) == 1:
        return (s[0] + abs(k),) * 2
    if len(s) == 2:
        return (len(_diag_key(s, k)[0]),)
    raise ValueError(f"needs a vector or a matrix, got shape {tuple(s)}")


op("diag", batch=_diag_batch,
   examples=[((3,), {}), ((3,), {"k": 1}), ((3, 3), {}), ((3, 4), {"k": 1}), ((4, 3), {"k": -2})],
   fwd=lambda xp, x, k=0: xp.diag(x, k), attrs={"k": 0}, kind="shape",
   # a vector's cotangent is the diagonal of g; a matrix's is g put on its diagonal
   vjp=(lambda ns, g, y, x, k=0: ns.diag(g, k=k) if x.ndim == 1
        else ns.unindex(g, key=_diag_key(x.shape, k), shape=x.shape),),
   jvp=lambda ns, t, y, x, k=0: ns.diag(t[0], k=k), shape=_diag_shape,
   doc="diag(v, k=0): a matrix with v on diagonal k; diag(A, k=0): that diagonal of A")
op("flip", batch=axes_moved(),
   examples=[((5,), {}), ((3, 4), {"axis": 1}), ((2, 3, 4), {"axis": (0, 2)}), ((2, 3), {})],
   fwd=lambda xp, x, axis=None: xp.flip(x, axis), attrs={"axis": None}, kind="shape",
   vjp=(lambda ns, g, y, x, axis=None: ns.flip(g, axis=axis),),
   jvp=lambda ns, t, y, x, axis=None: ns.flip(t[0], axis=axis), method=True,
   shape=_flip_shape, doc="flip(x, axis=None): reverse the order along the axes (all when None)")


def _cross_shape(sa, sb):
    if not sa or not sb or sa[-1] != 3 or sb[-1] != 3:
        raise ValueError(f"needs vectors of 3 elements along the last axis, got {sa} and {sb}")
    return tuple(np.broadcast_shapes(sa, sb))


op("cross", batch=lambda xp, a, b, shapes, out: xp.cross(*aligned(xp, [a, b], shapes)),
   examples=[(((3,), (3,)), {}), (((2, 3), (3,)), {}), (((4, 3), (4, 3)), {})],
   args=("a", "b"), fwd=lambda xp, a, b: xp.cross(a, b), kind="linalg",
   depends="...i,...j->...k", curvature="bilinear",
   # <g, da x b> = <da, b x g> and <g, a x db> = <db, g x a>
   vjp=(lambda ns, g, y, a, b: ns.cross(b, g), lambda ns, g, y, a, b: ns.cross(g, a)),
   jvp=lambda ns, t, y, a, b: _add_tangents([ns.cross(t[0], b) if t[0] is not None else None,
                                             ns.cross(a, t[1]) if t[1] is not None else None]),
   shape=_cross_shape, doc="cross(a, b): the cross product of 3-vectors along the last axis")


def _arg_shape(s, axis=None, keepdims=False):
    if axis is not None and not isinstance(axis, int):
        raise ValueError("axis must be one integer or None")
    if not math.prod(s):
        raise ValueError("an empty array has no largest or smallest element")
    return reduced_shape(s, axis, keepdims)


for _name in ("argmax", "argmin"):
    op(_name, batch=axes_moved(flat=True),
       examples=[((6,), {}), ((3, 4), {"axis": 1}), ((2, 3), {"axis": 0, "keepdims": True}),
                 ((2, 3), {"keepdims": True})],
       fwd=lambda xp, x, axis=None, keepdims=False, _n=_name: _over_axes(
       lambda v, a: getattr(xp, _n)(v, axis=a, keepdims=keepdims), xp, x, axis),
       attrs={"axis": None, "keepdims": False}, kind="reduction", differentiable=False,
       shape=_arg_shape, method=True, note="no derivative (an index, as a float)",
       doc=f"{_name}(x, axis=None): the index of the {'largest' if _name == 'argmax' else 'smallest'} "
           "element (of the flattened array when axis is None); the first one at a tie")

# ---------------------------------------------------------------- constants (no gradient)

C = dict(args=(), kind="constant", differentiable=False)
op("zeros", fwd=lambda xp, shape=(), dtype=None: xp.zeros(shape, dtype), attrs={"shape": REQUIRED},
   shape=lambda shape=(): _size_of(shape), shape_args=True,
   doc="zeros(d0, d1, ...) or zeros(shape)", **C)
op("ones", fwd=lambda xp, shape=(), dtype=None: xp.ones(shape, dtype), attrs={"shape": REQUIRED},
   shape=lambda shape=(): _size_of(shape), shape_args=True,
   doc="ones(d0, d1, ...) or ones(shape)", **C)
op("full", fwd=lambda xp, shape=(), fill_value=0.0, dtype=None: xp.full(shape, fill_value, dtype),
   attrs={"shape": REQUIRED, "fill_value": REQUIRED}, shape=lambda shape=(), **_: _size_of(shape), **C)
op("eye", fwd=lambda xp, n=1, m=None, dtype=None: xp.eye(n, m, dtype=dtype),
   attrs={"n": REQUIRED, "m": None},
   shape=lambda n=1, m=None: _size_of((n, n if m is None else m)), **C)
op("linspace", fwd=lambda xp, start=0.0, stop=1.0, num=50, dtype=None:
   xp.linspace(start, stop, num, dtype=dtype),
   attrs={"start": REQUIRED, "stop": REQUIRED, "num": 50},
   shape=lambda start=0, stop=1, num=50: _size_of(num), **C)
op("arange", fwd=lambda xp, start=0.0, stop=None, step=1.0, dtype=None:
   xp.arange(start, stop, step, dtype=dtype) if stop is not None else xp.arange(start, dtype=dtype),
   attrs={"start": REQUIRED, "stop": None, "step": 1.0},
   shape=lambda start=0, stop=None, step=1.0: _fail("arange needs finite numbers")
   if not all(map(math.isfinite, (start, step) + (() if stop is None else (stop,))))
   else _size_of(max(0, math.ceil((stop - start) / step)) if stop is not None
                 else max(0, math.ceil(start)))
   if step else _fail("step must not be 0"), **C)


# ---------------------------------------------------------------- scripts

op("detach", fwd=lambda xp, x: x, differentiable=False, numpy="{0}", aliases=("stop_gradient",),
   note="blocks the gradient: derivative 0", doc="detach(x): x, as a constant",
   c="{0}")
op("randn", fwd=lambda xp, shape=(), rng=None, dtype=None: xp.asarray(rng.standard_normal(shape), dtype),
   attrs={"shape": ()}, shape=lambda shape=(): _size_of(shape), shape_args=True, random=True,
   doc="randn(d0, d1, ...): standard normal samples (seeded by --seed)", **C)
op("rand", fwd=lambda xp, shape=(), rng=None, dtype=None: xp.asarray(rng.random(shape), dtype),
   attrs={"shape": ()}, shape=lambda shape=(): _size_of(shape), shape_args=True, random=True,
   doc="rand(d0, d1, ...): uniform samples in [0, 1) (seeded by --seed)", **C)
op("randint", fwd=lambda xp, low=0, high=None, size=(), rng=None, dtype=None:
   xp.asarray(rng.integers(low, high, size) if high is not None else rng.integers(0, low, size), dtype),
   attrs={"low": REQUIRED, "high": None, "size": ()}, random=True,
   shape=lambda low=0, high=None, size=(): _size_of(size),
   doc="randint(low, high=None, size=()): integers in [low, high) as floats", **C)


def _setindex(xp, x, v, key=()):
    out = xp.array(x, copy=True)
    out[key] = v
    return out


op("setindex", batch=_setindex_batch,
   examples=[(((5,), (2,)), {"key": (slice(0, 2),)}), (((5,), ()), {"key": (3,)}),
             (((3, 4), (4,)), {"key": (slice(None), )}), (((3, 4), ()), {"key": (slice(None), 1)})],
   args=("x", "v"), fwd=_setindex, attrs={"key": REQUIRED}, kind="shape", internal=True,
   assigns=True, spelled=lambda x, key=(): f"{x}[{index_text(key)}]",
   # y = x with y[key] = v: the overwritten part of x gets no gradient, v gets g[key]
   vjp=(lambda ns, g, y, x, v, key=(): ns.setindex(g, 0.0, key=key),
        lambda ns, g, y, x, v, key=(): ns.index(g, key=key)),
   jvp=lambda ns, t, y, x, v, key=(): ns.setindex(
       t[0] if t[0] is not None else ns.zeros(shape=x.shape),
       t[1] if t[1] is not None else 0.0, key=key),
   shape=lambda sx, sv, key=(): same_shape(sx, np.broadcast_shapes(index_key(key, sx), sv)),
   doc="y[key] = v in scripts, with value semantics")
op("custom", value_of=-1, batch=lambda xp, *xs, shapes, out, rule=None: xs[-1],
   series=lambda xp, y, *xs, rule=None: xs[-1],
   args=("*xs",), fwd=lambda xp, *xs, rule=None: xs[-1], attrs={"rule": REQUIRED},
   kind="internal", internal=True, shape=lambda *shapes, rule=None: shapes[-1],
   printed=lambda ns, *xs, rule=None: xs[-1],   # the value of the body
   # a script function with a `backward` block: its arguments are the function's
   # parameters and, last, the value its body computed; the user's rule gives the
   # parameters' cotangents (and the body none: the rule stands for it)
   vjp=(lambda ns, g, y, *xs, argnum, rule=None:
        rule.vjp(ns, g, y, xs[:-1], argnum) if argnum < len(xs) - 1 else None,),
   jvp=lambda ns, t, y, *xs, rule=None: rule.jvp(ns, t[:-1], y, xs[:-1]),
   doc="a function with a custom derivative rule")


def public_ops():
    """The ops users can call, in table order."""
    return [o for o in OPS.values() if not o.internal]
