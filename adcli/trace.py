"""Syntax tree to program: run an expression on concrete values, recording every op.

An expression is first flattened into postfix code (an explicit-stack walk, so deep
trees cannot overflow Python's stack) and then run by a small stack machine whose
values are graph nodes. Function calls are looked up in the op table.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import InputError, ShapeError, UnknownNameError, suggest
from .graph import Node
from .ops import OPS, REQUIRED

CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan, "True": 1.0, "False": 0.0}
BINARY = {s: o.name for o in OPS.values() if o.symbol and len(o.args) == 2 for s in o.symbol}
UNARY = {s: o.name for o in OPS.values() if o.symbol and len(o.args) == 1 for s in o.symbol}
ATTRIBUTES = {"T": "transpose"}
CALLABLE = {n: o for o in OPS.values() if not o.internal for n in (o.name,) + o.aliases}
METHODS = {n: o for n, o in CALLABLE.items() if o.method}


class Seq(list):
    """A list or tuple literal: a Python sequence until it is used as an array."""


def children(node):
    kind = node[0]
    if kind == "binary":
        return [node[3], node[4]]
    if kind == "unary":
        return [node[3]]
    if kind in ("call", "method"):
        return list(node[3]) + [kw[2] for kw in node[4]]
    if kind in ("list", "tuple"):
        return list(node[2])
    if kind == "index":
        out = [node[2]]
        for s in node[3]:
            out.extend(x for x in s[2:] if x is not None) if s[0] == "slice" else out.append(s)
        return out
    if kind == "attr":
        return [node[2]]
    return []


def _instruction(node):
    kind, pos = node[0], node[1]
    if kind in ("call", "method"):
        return (kind, pos, (node[2], len(node[3]), [kw[0] for kw in node[4]]))
    if kind in ("list", "tuple"):
        return ("seq", pos, len(node[2]))
    if kind == "index":
        spec = [tuple(x is not None for x in s[2:]) if s[0] == "slice" else None for s in node[3]]
        return ("index", pos, spec)
    if kind in ("binary", "unary", "attr"):
        return (kind, pos, node[2] if kind != "attr" else node[3])
    return (kind, pos, node[2])   # num, name


_CODE = {}   # id(tree) -> (tree, code): trees are nested tuples, too deep to hash


def compile_expr(tree):
    """Postfix code for a syntax tree, built once with an explicit stack."""
    hit = _CODE.get(id(tree))
    if hit is not None and hit[0] is tree:
        return hit[1]
    if len(_CODE) > 4096:
        _CODE.clear()
    code, stack = [], [(tree, False)]
    while stack:
        node, ready = stack.pop()
        if ready:
            code.append(_instruction(node))
            continue
        stack.append((node, True))
        stack.extend((k, False) for k in reversed(children(node)))
    _CODE[id(tree)] = (tree, code)
    return code


def free_names(tree):
    """Names read by an expression, in order of first appearance."""
    seen = []
    for kind, pos, arg in compile_expr(tree):
        if kind == "name" and arg not in seen and arg != "None":
            seen.append(arg)
    return seen


def check_calls(tree):
    """Report a call of an unknown function before anything else is looked at."""
    for kind, pos, arg in compile_expr(tree):
        if kind == "call" and arg[0] not in CALLABLE:
            raise UnknownNameError(f"unknown function '{arg[0]}'", pos=pos,
                                   hint=suggest(arg[0], CALLABLE) or "`adcli ops` lists the functions")
        if kind == "method" and arg[0] not in METHODS:
            raise _not_a_method(arg[0], pos)


def _not_a_method(name, pos):
    hint = (f"write {name}(x, ...)" if name in CALLABLE else suggest(name, METHODS)
            or "the methods are " + " ".join(f".{m}()" for m in METHODS))
    return UnknownNameError(f"unknown method '.{name}()'", pos=pos, hint=hint)


def first_use(tree, name):
    for kind, pos, arg in compile_expr(tree):
        if kind == "name" and arg == name:
            return pos
    return None


# ---------------------------------------------------------------- static arguments

def _scalar(v, what, pos):
    if isinstance(v, Node):
        if v.size != 1:
            raise InputError(f"{what} must be a number, got an array of shape {v.shape}", pos=pos)
        return v.graph.decide(v).reshape(()).item()
    if isinstance(v, (Seq, str)):
        raise InputError(f"{what} must be a number, got a {'list' if isinstance(v, Seq) else 'string'}",
                         pos=pos)
    return v


def _int(v, what, pos):
    x = _scalar(v, what, pos)
    if isinstance(x, bool) or not float(x).is_integer():
        raise InputError(f"{what} must be an integer, got {x!r}", pos=pos)
    return int(x)


def _ints(v, what, pos):
    if isinstance(v, Seq):
        return tuple(_int(i, what, pos) for i in v)
    if isinstance(v, Node) and v.ndim == 1:
        return tuple(_int(float(i), what, pos) for i in v.graph.decide(v))
    return _int(v, what, pos)


def static(name, v, pos, kind="float"):
    """Convert a static argument (axis, shape, sizes, bounds) to plain Python, as the op
    table's entry types it (Op.attr_types)."""
    what = f"'{name}'"
    if v is None:
        return None
    if kind == "ints":
        return _ints(v, what, pos)
    if kind == "int":
        return _int(v, what, pos)
    if kind == "count":           # an order or a number of things: 0, 1, 2, ...
        n = _int(v, what, pos)
        if n < 0:
            raise InputError(f"{what} must be 0 or more, got {n}", pos=pos)
        return n
    if kind == "bool":
        return bool(_scalar(v, what, pos))
    return float(_scalar(v, what, pos))


# ---------------------------------------------------------------- evaluation

class Evaluator:
    """Runs postfix code with graph nodes as values."""

    def __init__(self, graph, env):
        self.graph, self.env = graph, env

    def array(self, v, pos=None):
        """A value used as an array: lists become stacked arrays."""
        if isinstance(v, Node):
            return v
        if isinstance(v, Seq):
            # flatten nested lists iteratively: stack innermost first
            return self._stack_seq(v, pos)
        if not isinstance(v, (int, float, np.ndarray, np.generic)):
            what = (f"the function {v.name}" if hasattr(v, "params") else "None" if v is None
                    else f"the string '{v[:20]}'" if isinstance(v, str) else type(v).__name__)
            raise InputError(f"{what} is not a value", pos=pos,
                             hint="call it: name(...)" if hasattr(v, "params") else None)
        return self.graph.const(v, pos)

    def _stack_seq(self, seq, pos):
        g = self.graph
        if not seq:
            return g.const(np.zeros((0,)), pos)
        order, todo = [], [seq]
        while todo:    # post-order over nested lists without recursion
            s = todo.pop()
            order.append(s)
            todo.extend(x for x in s if isinstance(x, Seq))
        done = {}
        for s in reversed(order):
            items = [done[id(x)] if isinstance(x, Seq) else self.array(x, pos) for x in s]
            shapes = {tuple(i.shape) for i in items}
            if len(shapes) > 1:
                raise ShapeError("the items of a list have different shapes: "
                                 + ", ".join(str(tuple(i.shape)) for i in items), pos=pos)
            g.pos = pos
            if all(i.op is None and not i.is_input for i in items):
                done[id(s)] = g.const(np.stack([i.value for i in items]) if items else np.zeros(0), pos)
            else:
                done[id(s)] = g.emit("stack", *items)
        return done[id(seq)]

    def run(self, tree):
        stack = []
        g = self.graph
        env, literals = self.env, g._scalars
        push, pop = stack.append, stack.pop
        for kind, pos, arg in compile_expr(tree):
            # the most frequent instructions first, their common case inline
            if kind == "name":
                v = env.get(arg)
                push(v if v is not None else self.lookup(arg, pos))
            elif kind == "num":
                v = literals.get(arg)
                push(v if v is not None else g.const(arg, pos))
            elif kind == "binary":
                b, a = pop(), pop()
                if type(b) is not Node:
                    b = self.array(b, pos)
                if type(a) is not Node:
                    a = self.array(a, pos)
                g.pos = pos
                push(g.emit(BINARY[arg], a, b))
            elif kind == "unary":
                a = self.array(stack.pop(), pos)
                g.pos = pos
                stack.append(a if arg == "+" else g.emit(UNARY[arg], a))
            elif kind in ("call", "method"):
                fname, nargs, kwnames = arg
                kwargs = []
                if kwnames:
                    kwvals = stack[-len(kwnames):]
                    del stack[-len(kwnames):]
                    kwargs = list(zip(kwnames, kwvals))
                args = stack[len(stack) - nargs:]
                del stack[len(stack) - nargs:]
                if kind == "call":
                    stack.append(self.call(fname, args, kwargs, pos))
                elif fname in METHODS:     # the op table's, never a script's function
                    stack.append(Evaluator.call(self, fname, args, kwargs, pos, method=True))
                else:
                    raise _not_a_method(fname, pos)
            elif kind == "str":
                stack.append(arg)
            elif kind == "seq":
                items = [stack.pop() for _ in range(arg)][::-1]
                stack.append(Seq(items))
            elif kind == "index":
                parts = []
                for spec in reversed(arg):
                    if spec is None:
                        parts.append(stack.pop())
                    else:
                        vals = [stack.pop() if present else None for present in reversed(spec)][::-1]
                        parts.append(slice(*(None if v is None else _int(v, "a slice bound", pos)
                                             for v in vals)))
                parts.reverse()
                base = self.array(stack.pop(), pos)
                stack.append(self.index(base, parts, pos))
            elif kind == "attr":
                base = self.array(stack.pop(), pos)
                if arg not in ATTRIBUTES:
                    raise UnknownNameError(f"unknown attribute '.{arg}'", pos=pos,
                                           hint="the only attribute is .T (transpose)")
                g.pos = pos
                stack.append(g.emit(ATTRIBUTES[arg], base))
        return stack.pop()

    def lookup(self, name, pos):
        v = self.env.get(name)
        if v is not None:
            return v
        if name == "None":           # for static arguments (axis=None) and x[None]
            return None
        if name in CONSTANTS:
            return self.graph.const(CONSTANTS[name], pos)
        if name in CALLABLE:
            raise UnknownNameError(f"'{name}' is a function; call it as {name}(...)", pos=pos)
        known = list(self.env) + list(CONSTANTS)
        raise UnknownNameError(f"unknown name '{name}'", pos=pos, hint=suggest(name, known))

    def index(self, base, parts, pos):
        key = self.key(parts, pos, base.shape)
        self.graph.pos = pos
        return self.graph.emit("index", base, key=key)

    def key(self, parts, pos, shape=()):
        """A static numpy index from evaluated subscripts: integers, slices, None, and
        boolean masks (x[x > 0]), whose value is known now: a mask becomes the integer
        index of its true elements, static like the others."""
        key, axis = [], 0
        for p in parts:
            if isinstance(p, Node) and p.dtype == bool and p.ndim:
                covered = tuple(shape[axis:axis + p.ndim])
                if tuple(p.shape) != covered:
                    raise ShapeError(f"a mask of shape {tuple(p.shape)} cannot index axes of "
                                     f"shape {covered}", pos=pos)
                key.extend(np.nonzero(np.asarray(p.graph.decide(p))))   # static: host integers
                axis += p.ndim
                continue
            axis += p is not None
            if isinstance(p, slice):
                key.append(p)
            elif (isinstance(p, Node) and p.ndim == 0) or type(p) is float:
                key.append(_int(p, "an index", pos))
            elif p is None:
                key.append(None)     # a new axis of length 1, as numpy's x[None]
            else:
                raise InputError("indices must be integers, slices, None or a boolean mask",
                                 pos=pos)
        return tuple(key)

    def call(self, fname, args, kwargs, pos, method=False):
        entry = CALLABLE.get(fname)
        if entry is None:
            raise UnknownNameError(f"unknown function '{fname}'", pos=pos,
                                   hint=suggest(fname, CALLABLE) or "`adcli ops` lists the functions")
        g = self.graph
        if entry.plain_call and not kwargs and len(args) == entry.arity:
            # the common case, sin(y): every argument an array, nothing static
            for a in args:
                if type(a) is not Node:
                    args = [a if type(a) is Node else self.array(a, pos) for a in args]
                    break
            g.pos = pos
            return g.emit(entry.name, *args)
        if entry.variadic_elementwise and len(args) >= 2 and not kwargs and not method:
            # max(a, b, c) is elementwise: maximum(maximum(a, b), c); x.max(1) is numpy's
            out = self.array(args[0], pos)
            for a in args[1:]:
                g.pos = pos
                out = g.emit(entry.variadic_elementwise, out, self.array(a, pos))
            return out
        params = list(entry.args)
        first = []
        if entry.attrs_first:              # einsum("ij,jk->ik", a, b)
            first, args = args[:len(entry.attrs)], args[len(entry.attrs):]
        if entry.shape_args:               # randn(2, 3), reshape(x, 2, 3); ones((2, 3)) too
            rest = args[len(params):]
            if rest and not (len(rest) == 1 and isinstance(rest[0], Seq)):
                args = args[:len(params)] + [Seq(rest)]
        if entry.arity is None:            # concat([a, b], axis=0)
            if not args or not isinstance(args[0], Seq):
                raise InputError(f"{fname} takes a list of arrays: {fname}([a, b], ...)", pos=pos)
            arrays, rest = [self.array(a, pos) for a in args[0]], args[1:]
            if not arrays:
                raise InputError(f"{fname} needs at least one array", pos=pos)
        else:
            arrays, rest = list(args[:len(params)]), args[len(params):]
        names = list(entry.attrs)
        rest = first + rest
        if len(rest) > len(names):
            raise InputError(f"{fname}() takes at most {len(params) + len(names)} arguments, "
                             f"got {len(args)}", pos=pos, hint=f"usage: {signature(entry)}")
        given = dict(zip(names, rest))
        for key, v in kwargs:
            if key in given or (key in params and params.index(key) < len(arrays)):
                raise InputError(f"{fname}() got '{key}' twice", pos=pos)
            if key in params and entry.arity is not None:
                arrays.extend([None] * (params.index(key) + 1 - len(arrays)))
                arrays[params.index(key)] = v
            elif key in names:
                given[key] = v
            else:
                raise InputError(f"{fname}() has no parameter '{key}'", pos=pos,
                                 hint=suggest(key, names + params) or f"usage: {signature(entry)}")
        if entry.arity is not None and (len(arrays) < len(params) or any(a is None for a in arrays)):
            missing = [p for i, p in enumerate(params) if i >= len(arrays) or arrays[i] is None]
            raise InputError(f"{fname}() is missing {', '.join(missing)}", pos=pos,
                             hint=f"usage: {signature(entry)}")
        attrs = {}
        for key, default in entry.attrs.items():
            if key in entry.string_attrs:
                if not isinstance(given.get(key), str):
                    raise InputError(f"{fname}() needs '{key}' as a string, as in "
                                     f"{entry.doc.split(':')[0]}", pos=pos,
                                     hint=f"usage: {signature(entry)}")
                attrs[key] = given[key]
            elif key in given:
                attrs[key] = static(key, given[key], pos, entry.attr_types[key])
            elif default is REQUIRED:
                raise InputError(f"{fname}() is missing '{key}'", pos=pos,
                                 hint=f"usage: {signature(entry)}")
            elif default is not None:
                attrs[key] = default
        arrays = [self.array(a, pos) for a in arrays]
        g.pos = pos
        return g.emit(entry.name, *arrays, **attrs)


def signature(entry):
    parts = [("[" + a[1:] + ", ...]") if a.startswith("*") else a for a in entry.args]
    static = [k if v is REQUIRED else f"{k}={v}" for k, v in entry.attrs.items()]
    parts = static + parts if entry.attrs_first else parts + static
    return f"{entry.name}({', '.join(parts)})"


def to_array(graph, value, pos=None):
    """Any value of the language as a node (lists stacked)."""
    return Evaluator(graph, {}).array(value, pos)
