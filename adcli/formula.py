"""The derivative as a formula (`adcli diff`): the derivative program, printed.

The derivative is recorded as a program (the VJP transform with create_graph, repeated for
higher orders) and printed straight from that graph, never expanded into a tree: a node
that the result reads more than once is named once, `t1 = ...`, so the text grows like
the program, not like the expression tree (the "expression swell" of symbolic
differentiation). On the way it is cleaned up:

* internal ops are written in public ops (each entry's `printed` rule: the NaN-safe
  product mul0 as a plain product, sech(x) as 1/cosh(x)), equal at ordinary points;
* equal subexpressions are one (hash-consing), constants are folded, and x*1, x+0, 0*x,
  x/1, --x disappear;
* sums of single-use terms are collected into a linear combination (x + y + x is
  2*x + y), and constant factors are moved to the front (x*2 is 2*x).

Formats: adcli's own language (an expression, or a script of let-lines ending in
`return`, which `adcli eval` reads back), LaTeX, and a Python function on numpy arrays.
Everything about an op's spelling comes from its entry in the op table (infix, spelled,
assigns, latex, numpy).
"""
from __future__ import annotations

import math
import re

import numpy as np

from . import autodiff
from .errors import AdcliError, InputError
from .ops import OPS

MAX_ORDER = 12
FORMATS = ("adcli", "latex", "python", "c")
ATOM, POSTFIX = 7, 6          # precedences of names, numbers and calls; of x[...]


class Unprintable(AdcliError):
    """A derivative that uses an op with no written form."""


# ---------------------------------------------------------------- the derivative program

def derivative_program(traced, wrt=None, order=1):
    """(names, nodes): for each chosen input the node of d^order out / d x^order (None where
    it is 0), recorded in the traced graph. Order n > 1 repeats the VJP transform on the
    derivative, which needs inputs of one element (`adcli grad --order n` is the same
    derivative, taken along each input on its own)."""
    from .api import choose_inputs, scalar_output
    if not 1 <= order <= MAX_ORDER:
        raise InputError(f"--order {order}: the order must be from 1 to {MAX_ORDER}")
    scalar_output(traced, "diff")
    names, nodes = choose_inputs(traced, wrt)
    if order > 1:
        for name, x in zip(names, nodes):
            if x.size != 1:
                raise InputError(f"--order {order} needs inputs of one element, but '{name}' has "
                                 f"shape {tuple(x.shape)}",
                                 hint="for the second derivatives of an array, use adcli hessian")
    graph, out = traced.graph, traced.output
    try:
        derivs = autodiff.vjp(graph, out, nodes, create_graph=True)
        for k in range(1, order):
            derivs = [autodiff.vjp(graph, d, [x], create_graph=True)[0] if d is not None else None
                      for d, x in zip(derivs, nodes)]
    except AdcliError as e:
        raise e.located(traced.source, traced.filename)
    return names, derivs


def lowered(graph, outputs):
    """The outputs with every internal op replaced by its entry's `printed` form, in public
    ops (recorded in the same graph); one pass in creation (topological) order."""
    from .graph import reachable
    live = [o for o in outputs if o is not None]
    new = {}
    for i in reachable(live):
        node = graph.nodes[i]
        if node.op is None:
            continue
        args = [new.get(a.id, a) for a in node.args]
        graph.pos = node.pos
        if node.op.printed is not None:
            new[i] = graph.lift(node.op.printed(graph.ns, *args, **node.attrs))
        elif node.op.internal and not node.op.spelled:
            raise Unprintable(f"diff cannot write this derivative yet: it uses {node.op.name}, "
                              "an internal op of the derivative rules with no form in "
                              "adcli's language", hint="adcli grad gives its values")
        elif any(a is not b for a, b in zip(args, node.args)):
            new[i] = graph.emit(node.op.name, *args, **node.attrs)
    return [new.get(o.id, o) if o is not None else None for o in outputs]


# ---------------------------------------------------------------- terms: simplified, shared

class Term:
    """One subexpression of the printed formula: an op of public ops on terms, an input, or
    a constant (an array). Equal terms are one object (Terms.make looks them up)."""
    __slots__ = ("id", "op", "args", "attrs", "shape", "value", "name")

    def __init__(self, id, op, args, attrs, shape, value=None, name=None):
        self.id, self.op, self.args, self.attrs = id, op, args, attrs
        self.shape, self.value, self.name = tuple(shape), value, name

    @property
    def const(self):
        return self.op is None and self.name is None

    def is_scalar_const(self, c=None):
        """A constant with every element c (any one value when c is None)."""
        if not self.const or self.value.size == 0:
            return False
        v = self.value.reshape(-1)
        first = v[0]
        return bool(np.all(v == first)) and (c is None or first == c)


def _key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, (tuple, list)):
        return tuple(_key(x) for x in v)
    if isinstance(v, slice):
        return ("slice", v.start, v.stop, v.step)
    return v


FOLD_MAX = 64   # constants up to this many elements are folded (larger ones stay ops)


class Terms:
    def __init__(self):
        self.table, self.all = {}, []

    def _new(self, key, *args, **kw):
        t = self.table.get(key)
        if t is None:
            t = self.table[key] = Term(len(self.all), *args, **kw)
            self.all.append(t)
        return t

    def name(self, name, shape):
        return self._new(("name", name), None, (), {}, shape, name=name)

    def const(self, value):
        value = np.asarray(value)
        if value.dtype == bool:
            value = value.astype(np.float64)
        return self._new(("const", _key(value)), None, (), {}, value.shape, value=value)

    def make(self, op, args, attrs, shape):
        """op(*args) simplified: constants folded and the identities of + - * / ** applied,
        where the replacement has the result's shape."""
        shape = tuple(shape)
        if all(a.const for a in args) and (op.kind in ("elementwise", "comparison", "shape",
                                                        "reduction", "linalg")) \
                and math.prod(shape) <= FOLD_MAX and not op.random:
            with np.errstate(all="ignore"):
                return self.const(op.fwd(np, *[a.value for a in args], **attrs))
        simple = self._identity(op, args, shape)
        if simple is not None:
            return simple
        key = (op.name, tuple(a.id for a in args), _key(tuple(sorted(attrs.items()))))
        return self._new(key, op, tuple(args), dict(attrs), shape)

    def _identity(self, op, args, shape):
        """The algebra the op table states (linear, product, homogeneous, units,
        annihilators, reshapes), applied where the replacement has the result's shape."""
        def fits(t):
            return t if t.shape == shape else None
        if op.reshapes:
            (x,) = args
            if x.shape == shape:
                return x
            if x.op is op:                       # reshape(reshape(x, s1), s2)
                return self.make(op, [x.args[0]], {"shape": shape}, shape)
            return None
        if op is NEG and args[0].op is NEG:      # --x
            return args[0].args[0]
        for i, a in enumerate(args):
            if op.units and op.units[i] is not None and a.is_scalar_const(op.units[i]):
                return fits(args[1 - i])
            if op.annihilators and op.annihilators[i] and a.is_scalar_const(op.annihilators[i][0]):
                return self.const(np.full(shape, op.annihilators[i][1]))
        if op.linear and len(args) == 2:         # x + 0, 0 - x
            for i in (0, 1):
                other = args[1 - i]
                if args[i].is_scalar_const(0.0) and other.shape == shape:
                    return other if op.linear[1 - i] == 1.0 else self.make(NEG, [other], {}, shape)
        if op.product:
            a, b = args
            if a.is_scalar_const(0.0) or b.is_scalar_const(0.0):
                return self.const(np.zeros(shape))
            if b.is_scalar_const(1.0):
                return fits(a)
            if a.is_scalar_const(1.0):
                return fits(b)
            if _number(a) and b.op is op and _number(b.args[0]):     # 2*(3*x) is 6*x
                return self.make(op, [self.const(a.value * b.args[0].value), b.args[1]], {},
                                 shape)
            if _number(b) and not _number(a) or not _number(a) and not _number(b) and a.id > b.id:
                return self.make(op, [b, a], {}, shape)   # x*2 is 2*x; u*v and v*u are one
        if _number(args[0]) and op.product:
            return None
        for i in op.homogeneous:
            a = args[i]
            rest = list(args)
            if a.op is NEG and np.broadcast_shapes(*[t.shape for t in args]) == shape:
                # (-a)*b = -(a*b): the minus moves out, into the sum that reads the product
                rest[i] = a.args[0]
                return self.make(NEG, [self.make(op, rest, {}, shape)], {}, shape)
            if a.op is MUL and _number(a.args[0]) and not _number(a):
                # (3*u)*v is 3*(u*v): coefficients to the front
                rest[i] = a.args[1]
                return self.make(MUL, [a.args[0], self.make(op, rest, {}, shape)], {}, shape)
        return None


def _number(t):
    """A constant number (shape ()): a coefficient."""
    return t.const and t.shape == ()


def _the_op(test):
    """The one op of the table with the stated property (diff's arithmetic reads its ops by
    what the table says of them, not by name)."""
    (found,) = [o for o in OPS.values() if test(o)]
    return found


ADD = _the_op(lambda o: o.linear == (1.0, 1.0))
SUB = _the_op(lambda o: o.linear == (1.0, -1.0))
NEG = _the_op(lambda o: o.linear == (-1.0,))
MUL = _the_op(lambda o: o.product)


def to_terms(graph, outputs, terms):
    """The terms of the (lowered) output nodes: one pass in topological order."""
    from .graph import reachable
    live = [o for o in outputs if o is not None]
    of = {}
    for i in reachable(live):
        node = graph.nodes[i]
        if node.op is None:
            of[i] = (terms.name(node.name, node.shape) if node.is_input
                     else terms.const(np.asarray(graph.value(node))))
        elif node.op.kind == "constant":      # zeros, eye, randn: their values
            of[i] = terms.const(np.asarray(graph.value(node)))
        else:
            of[i] = terms.make(node.op, [of[a.id] for a in node.args], node.attrs, node.shape)
    return [of[o.id] if o is not None else None for o in outputs]


# ---------------------------------------------------------------- linear combinations

def _uses(roots):
    """How many times each term is read, from the roots."""
    count, seen, stack = {}, set(), [r for r in roots if r is not None]
    for r in stack:
        count[r.id] = count.get(r.id, 0) + 1
    while stack:
        t = stack.pop()
        if t.id in seen:
            continue
        seen.add(t.id)
        for a in t.args:
            count[a.id] = count.get(a.id, 0) + 1
            stack.append(a)
    return count


def _coefficient(t):
    """A constant number as a float (a coefficient), or None."""
    return float(t.value.reshape(())) if _number(t) else None


def _linear(t, uses):
    """t as a sum of (coefficient, term) over terms read once, with constant factors
    pulled out: [(c, term)], in order of first appearance (explicit stack, no recursion)."""
    out, stack = [], [(1.0, t, True)]
    while stack:
        c, u, top = stack.pop()
        inner = top or uses.get(u.id, 0) <= 1
        op = u.op
        if op is not None and op.linear and (inner or len(u.args) == 1) \
                and all(a.shape == u.shape for a in u.args):   # a minus is always folded in
            for ci, a in reversed(list(zip(op.linear, u.args))):
                stack.append((c * ci, a, False))
        elif inner and op is not None and op.product and _coefficient(u.args[0]) is not None \
                and u.args[1].shape == u.shape:
            stack.append((c * _coefficient(u.args[0]), u.args[1], False))
        else:
            out.append((c, u))
    combined = {}
    for c, u in out:
        combined[u.id] = (combined[u.id][0] + c, u) if u.id in combined else (c, u)
    return list(combined.values())


def canonical(roots, terms):
    """The roots with every sum rewritten as a linear combination of its single-use terms,
    equal terms collected (x + y + x: 2*x + y), constants last and added up."""
    uses = _uses(roots)
    out, new_uses = {}, {}
    for t in sorted(_walk(roots), key=lambda t: t.id):     # arguments before their users
        if t.op is None:
            u = t
        else:
            args = [out[a.id] for a in t.args]
            u = terms.make(t.op, args, t.attrs, t.shape) \
                if any(x is not y for x, y in zip(args, t.args)) else t
            if u.op is not None and (u.op.linear or u.op.product):
                parts = _linear(u, new_uses)
                if len(parts) > 1 or (parts and (parts[0][1] is not u or parts[0][0] != 1.0)):
                    v = _rebuild(parts, u.shape, terms)
                    u = v if v.shape == u.shape else u
        out[t.id] = u
        new_uses[u.id] = new_uses.get(u.id, 0) + uses.get(t.id, 0)
    return [out[r.id] if r is not None else None for r in roots]


def _walk(roots):
    seen, stack, found = set(), [r for r in roots if r is not None], []
    while stack:
        t = stack.pop()
        if t.id in seen:
            continue
        seen.add(t.id)
        found.append(t)
        stack.extend(t.args)
    return found


def _rebuild(parts, shape, terms):
    """sum of c*term, constant terms added into one number at the end."""
    const, rest = 0.0, []
    for c, u in parts:
        if c == 0.0:
            continue
        if _number(u):
            const += c * _coefficient(u)
        else:
            rest.append((c, u))
    total = None
    for c, u in rest:
        mag = abs(c)
        piece = u if mag == 1.0 else terms.make(MUL, [terms.const(mag), u], {}, u.shape)
        if total is None:
            total = piece if c > 0 else terms.make(NEG, [piece], {}, piece.shape)
        else:
            total = terms.make(ADD if c > 0 else SUB, [total, piece], {},
                               np.broadcast_shapes(total.shape, piece.shape))
    if total is None:
        return terms.const(np.full(shape, const))
    if const:
        total = terms.make(ADD if const > 0 else SUB, [total, terms.const(abs(const))], {},
                           total.shape)
    return total


# ---------------------------------------------------------------- printing

def number(v):
    """A float as the language reads it back exactly: 2, 0.5, 1e-05, inf."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == int(v) and abs(v) < 1e16:
        return str(int(v)) if v or math.copysign(1, v) > 0 else "-0.0"
    return repr(v)


def _shape_text(shape, python=False):
    if python:
        return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _nested(a):
    return "[" + ", ".join(_nested(x) if np.ndim(x) else number(x) for x in a) + "]"


class Printer:
    """Text of terms in one format. Each returns (text, precedence)."""

    def __init__(self, fmt):
        self.fmt = fmt
        self.needs_scipy = False

    # -- leaves
    def const(self, t):
        v = t.value
        py = self.fmt == "python"
        if self.fmt == "c":
            if v.size != 1:
                raise Unprintable("--format c writes derivatives of scalar inputs: this one "
                                  f"holds an array of shape {v.shape}",
                                  hint="use --format python for arrays")
            x = float(v.reshape(-1)[0])
            # repr is the shortest decimal that reads back as the same double, in C too
            text = ("NAN" if x != x else "INFINITY" if x == math.inf else
                    "-INFINITY" if x == -math.inf else repr(x))
            return text, (4 if text.startswith("-") else ATOM)
        if v.ndim == 0:
            x = float(v)
            text = number(x)
            if self.fmt == "latex":
                text = {"inf": r"\infty", "-inf": r"-\infty"}.get(text, text)
            elif py and text in ("inf", "-inf", "nan"):
                text = text.replace("inf", "np.inf").replace("nan", "np.nan")
            return text, (4 if x < 0 or text.startswith("-") else ATOM)
        if t.is_scalar_const():
            c = float(v.reshape(-1)[0])
            shape = _shape_text(v.shape, py)
            if py:
                return f"np.full({shape}, {number(c)})", ATOM
            if self.fmt == "latex":
                dims = r"\times".join(map(str, v.shape))
                return rf"{number(c)}\mathbf{{1}}_{{{dims}}}", ATOM
            return (f"zeros({shape})" if c == 0 else f"ones({shape})" if c == 1
                    else f"full({shape}, {number(c)})"), ATOM
        text = _nested(v)
        if py:
            return f"np.array({text})", ATOM
        if self.fmt == "latex" and v.ndim <= 2:
            rows = v.reshape((-1, v.shape[-1]) if v.ndim else (1, 1))
            body = r" \\ ".join(" & ".join(number(x) for x in r) for r in rows)
            return r"\begin{pmatrix}" + body + r"\end{pmatrix}", ATOM
        return text, ATOM

    def name(self, t):
        if self.fmt == "latex":
            return _latex_name(t.name), ATOM
        return t.name, ATOM

    # -- ops
    def op(self, t, args):
        """args: [(text, precedence)] of the arguments."""
        op, fmt = t.op, self.fmt
        if op.spelled is not None:
            return op.spelled(_wrap(args[0], POSTFIX), **t.attrs), POSTFIX
        if fmt == "latex":
            return self._latex(t, args)
        if fmt == "c":
            return self._c(t, args)
        if op.infix and not (fmt == "python" and op.numpy):
            return _infix(op, op.symbol[0], args)
        if fmt == "python":
            return self._python(t, args)
        return self._call(op, op.name, args, t.attrs), ATOM

    def _call(self, op, name, args, attrs, python=False):
        texts = [a[0] for a in args]
        if op.arity is None:
            texts = ["[" + ", ".join(texts) + "]"]
        shown = []
        for key, default in op.attrs.items():
            if key not in attrs or attrs[key] is None:
                continue
            v = attrs[key]
            if v == default and not isinstance(v, np.ndarray):
                continue
            shown.append((key, _attr_text(v, key in op.string_attrs, python)))
        if op.attrs_first:
            return f"{name}(" + ", ".join([v for _, v in shown] + texts) + ")"
        return f"{name}(" + ", ".join(texts + [f"{k}={v}" for k, v in shown]) + ")"

    def _python(self, t, args):
        op, spec = t.op, t.op.numpy or t.op.name
        self.needs_scipy |= "scipy." in spec
        if "{" in spec or "(" in spec and re.search(r"\(\d\)", spec):
            return (_template(spec, args, python=True, attrs={**op.attrs, **t.attrs}),
                    1 if " " in spec else ATOM)
        name = spec if "." in spec else "np." + spec
        return self._call(op, name, args, t.attrs, python=True), ATOM

    def _c(self, t, args):
        """The op's C expression from its table entry (the fused kernels' own), its
        arguments in parentheses; + - * / and unary minus written infix, as C reads them."""
        op = t.op
        if op.c is None:
            raise Unprintable(f"--format c: {op.name} has no C form (elementwise ops have "
                              "one)", hint="use --format python")
        if op.infix and op.symbol and op.symbol[0] in ("+", "-", "*", "/"):
            return _infix(op, op.symbol[0], args)
        if re.fullmatch(r"\w+\(\{\d\}(, \{\d\})*\)", op.c):     # a call: an atom
            return op.c.format(*(a[0] for a in args)), ATOM
        # anything else (a ternary, a sum) in parentheses, its arguments too
        return "(" + op.c.format(*(a[0] if a[1] == ATOM else "(" + a[0] + ")"
                                   for a in args)) + ")", ATOM

    def _latex(self, t, args):
        op = t.op
        spec = op.latex
        if op.infix and spec and not re.search(r"\{\d\}|\(\d\)", spec):
            return _infix(op, spec, args, latex=True)
        if spec:
            # \frac{a}{b}, \sqrt{x}, \left|x\right| delimit themselves
            prec = op.infix[0] if op.infix and not spec.startswith("\\") else ATOM
            return _template(spec, args, latex=True, attrs={**op.attrs, **t.attrs}), prec
        inner = ", ".join(a[0] for a in args)
        extras = [f"{k}={_attr_text(v, k in op.string_attrs)}" for k, v in t.attrs.items()
                  if v is not None and not (v == op.attrs.get(k) and not isinstance(v, np.ndarray))]
        body = ", ".join([inner] + extras) if extras else inner
        return rf"\operatorname{{{_latex_name(op.name)}}}\left({body}\right)", ATOM


def _latex_name(name):
    return name.replace("_", r"\_")


def _attr_text(v, string=False, python=False):
    if string:
        return repr(str(v))
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, (tuple, list)):
        return _shape_text(v, python)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return number(v)
    raise Unprintable(f"diff cannot write the attribute {v!r}")


def _wrap(arg, need):
    text, prec = arg
    return f"({text})" if prec < need else text


def _infix(op, sym, args, latex=False):
    prec, assoc = op.infix
    if assoc == "prefix":
        # -(a*b) is (-a)*b exactly: a product needs no parentheses after a minus
        return sym + _wrap(args[0], 3 if args[0][1] == 3 else 4), 4
    left = prec + 1 if assoc in ("right", "none") else prec
    right = prec + 1 if assoc in ("left", "none") else 4     # 2**-x: a minus after **
    if latex:
        return f"{_latex_parens(args[0], left)} {sym} {_latex_parens(args[1], right)}", prec
    l, r = _wrap(args[0], left), _wrap(args[1], right)
    spaced = prec <= 2
    return (f"{l} {sym} {r}" if spaced else f"{l}{sym}{r}"), prec


def _latex_parens(arg, need):
    text, prec = arg
    return rf"\left({text}\right)" if prec < need else text


def _template(spec, args, latex=False, python=False, attrs=None):
    """A template's slots: {i} set alone, (i) in parentheses unless an atom, {name} the
    op's static attribute `name` (set last: its text is not a slot)."""
    def alone(m):
        return args[int(m.group(1))][0]

    def wrapped(m):
        text, prec = args[int(m.group(1))]
        if prec >= POSTFIX:
            return " " + text if latex else text      # \\sin x
        return rf"\left({text}\right)" if latex else f"({text})"
    spec = re.sub(r"\((\d)\)", lambda m: "\0" + m.group(1) + "\1", spec)
    spec = re.sub(r"\{(\d)\}", alone, spec)
    spec = re.sub("\0(\\d)\1", wrapped, spec).strip()
    if attrs:
        spec = re.sub(r"\{([a-z_]\w*)\}", lambda m: str(attrs[m.group(1)]), spec)
    return spec


# ---------------------------------------------------------------- the program text

def cheap(t):
    """Not worth a name of its own: an input or a constant, or minus one of them."""
    return t.op is None or (t.op is NEG and t.args[0].op is None)


def program(roots, fmt="adcli"):
    """(lines, result texts): let-lines for the shared terms, in topological order with
    names t1, t2, ..., and the text of each root."""
    printer = Printer(fmt)
    uses = _uses(roots)
    names, lines, text = {}, [], {}
    for t in sorted(_walk(roots), key=lambda t: t.id):     # arguments before their users
        if t.op is None:
            text[t.id] = printer.const(t) if t.const else printer.name(t)
            continue
        args = [text[a.id] for a in t.args]
        try:
            if t.op.assigns:        # y = x; y[key] = v: a statement, always named
                name = f"t{len(names) + 1}"
                target = t.op.spelled(name, **t.attrs)
                names[t.id] = name
                lines.append(("copy", name, args[0][0]))
                lines.append(("set", name, target, args[1][0]))
                text[t.id] = (name, ATOM)
                continue
            text[t.id] = printer.op(t, args)
        except ValueError as e:     # an index with no written form
            raise Unprintable(f"diff cannot write this derivative yet: {e}") from None
        if uses.get(t.id, 0) > 1 and not cheap(t):
            name = f"t{len(names) + 1}"
            names[t.id] = name
            lines.append(("let", name, text[t.id][0]))
            text[t.id] = (_latex_t(name) if fmt == "latex" else name, ATOM)
    return lines, [text[r.id][0] if r is not None else None for r in roots], printer


def _latex_t(name):
    return f"t_{{{name[1:]}}}"


def formula(traced, wrt=None, order=1, fmt="adcli"):
    """The text of the derivative of a traced scalar program, in format `fmt`."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: unknown format",
                         hint="use adcli, latex, python or c")
    names, nodes = derivative_program(traced, wrt, order)
    graph = traced.graph
    try:
        nodes = lowered(graph, nodes)
    except AdcliError as e:
        raise e.located(traced.source, traced.filename)
    terms = Terms()
    roots = to_terms(graph, nodes, terms)
    shapes = {n: tuple(traced.inputs[n].shape) for n in names}
    roots = [r if r is not None else terms.const(np.zeros(shapes[n])) for n, r in zip(names, roots)]
    roots = canonical(roots, terms)
    lines, results, printer = program(roots, fmt)
    inputs = list(traced.inputs)
    if fmt == "latex":
        return _latex_text(lines, results, names, order)
    if fmt == "python":
        return _python_text(lines, results, inputs, printer)
    if fmt == "c":
        return _c_text(lines, results, names, inputs, order, traced)
    return _adcli_text(lines, results, names, inputs, order)


def _c_text(lines, results, names, inputs, order, traced):
    """A C function of the inputs (doubles): one derivative is returned, several written
    through pointers d_NAME."""
    for n in inputs:
        if traced.inputs[n].size != 1 or traced.inputs[n].shape:
            raise Unprintable(f"--format c writes derivatives of scalar inputs: '{n}' has "
                              f"shape {tuple(traced.inputs[n].shape)}",
                              hint="use --format python for arrays")
    body = []
    for kind, name, *rest in lines:
        if kind != "let":
            raise Unprintable("--format c cannot write an indexed assignment",
                              hint="use --format adcli or python")
        body.append(f"    const double {name} = {rest[0]};")
    params = ", ".join(f"double {n}" for n in inputs)
    label = ", ".join(_d(n, order) for n in names)
    head = ["#include <math.h>", "", f"/* {label} of {traced.label or traced.source} */"]
    if len(results) == 1:
        return "\n".join(head + [f"double d_f({params})", "{"] + body
                         + [f"    return {results[0]};", "}"]) + "\n"
    outs = ", ".join(f"double *d_{n}" for n in names)
    return "\n".join(head + [f"void d_f({params}, {outs})", "{"] + body
                     + [f"    *d_{n} = {r};" for n, r in zip(names, results)] + ["}"]) + "\n"


def _adcli_text(lines, results, names, inputs, order):
    if not lines and len(results) == 1:
        return results[0] + "\n"
    label = ", ".join(_d(n, order) for n in names)
    out = [f"# {label}"] + [f"input {n}" for n in inputs]
    for kind, name, *rest in lines:
        if kind in ("let", "copy"):         # (a copy is a plain assignment in a script)
            out.append(f"{name} = {rest[0]}")
        else:
            out.append(f"{rest[0]} = {rest[1]}")
    out.append("return " + ", ".join(results))
    return "\n".join(out) + "\n"


def _d(name, order):
    return f"d/d{name}" if order == 1 else f"d{order}/d{name}{order}"


def _latex_text(lines, results, names, order):
    out = []
    for kind, name, *rest in lines:
        if kind == "let":
            out.append(f"{_latex_t(name)} &= {rest[0]} \\\\")
        else:
            raise Unprintable("--format latex cannot write an indexed assignment",
                              hint="use --format adcli or python")
    for n, r in zip(names, results):
        d = (rf"\frac{{\partial}}{{\partial {_latex_name(n)}}}" if order == 1
             else rf"\frac{{\partial^{{{order}}}}}{{\partial {_latex_name(n)}^{{{order}}}}}")
        out.append(f"{d} &= {r} \\\\")
    out[-1] = out[-1][:-3]
    if len(out) == 1:
        return out[0].replace(" &= ", " = ") + "\n"
    return "\\begin{aligned}\n" + "\n".join(out) + "\n\\end{aligned}\n"


def _python_text(lines, results, inputs, printer):
    head = ["import numpy as np"] + (["import scipy.special"] if printer.needs_scipy else [])
    body = []
    for kind, name, *rest in lines:
        if kind == "let":
            body.append(f"    {name} = {rest[0]}")
        elif kind == "copy":
            body.append(f"    {name} = np.array({rest[0]}, dtype=float)")
        else:
            body.append(f"    {rest[0]} = {rest[1]}")
    ret = results[0] if len(results) == 1 else "(" + ", ".join(results) + ")"
    return "\n".join(head + ["", "", f"def d_f({', '.join(inputs)}):"] + body
                     + [f"    return {ret}"]) + "\n"
