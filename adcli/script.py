"""The .ad script dialect: statements run at trace time, recording one graph.

Like PyTorch's define-by-run, a script is executed once on concrete values: loops unroll,
`if` picks a branch on the values it sees, functions are inlined. What comes out is the
same kind of graph an expression gives, so every command works on scripts unchanged.
Scripts cannot touch files, the network or Python: the only values come from `--at`,
and a step budget, the graph-size limit and a call-depth limit stop runaway scripts.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from . import autodiff
from .errors import AdcliError, InputError, LimitError, ShapeError, UnknownNameError, suggest
from .graph import Node, substitute
from .trace import CALLABLE, CONSTANTS, Evaluator, Seq, static

BREAK, CONTINUE = "break", "continue"


class AssertionFailed(AdcliError):
    kind = "assertion failed"
    exit_code = 1          # a check written in the script did not hold


@dataclass
class Function:
    name: str
    params: list            # [(name, pos, default tree or None)]
    body: list
    pos: tuple
    backward: "Function" = None


class Return(Exception):
    """Unwinds a function or the script body to its caller with a value."""

    def __init__(self, value, pos):
        self.value, self.pos = value, pos


class ScriptEvaluator(Evaluator):
    """Expressions inside a script: names come from scopes, calls may be script functions."""

    def __init__(self, interp, scope):
        super().__init__(interp.graph, scope)
        self.interp, self.scope = interp, scope

    def lookup(self, name, pos):
        v = self.scope.get(name)
        if v is None:
            v = self.interp.globals.get(name)
        if v is not None:
            return v
        if name == "None":
            return None
        if name in CONSTANTS:
            return self.graph.const(CONSTANTS[name], pos)
        if name in CALLABLE or name == "grad":
            raise UnknownNameError(f"'{name}' is a function; call it as {name}(...)", pos=pos)
        known = list(self.scope) + list(self.interp.globals) + list(CONSTANTS)
        raise UnknownNameError(f"unknown name '{name}'", pos=pos, hint=suggest(name, known))

    def call(self, fname, args, kwargs, pos):
        fn = self.scope.get(fname, _MISSING)
        if fn is _MISSING:
            fn = self.interp.globals.get(fname)
        if fn is None and fname in CALLABLE:    # the op table's function (the common case)
            return Evaluator.call(self, fname, args, kwargs, pos)
        if isinstance(fn, Function):
            return self.interp.call(fn, args, kwargs, pos)
        if fname == "grad":
            return self.interp.grad(args, kwargs, pos, self)
        if fname == "range":
            raise InputError("range(...) can only be looped over: for i in range(n)", pos=pos)
        if fname not in CALLABLE:
            names = list(CALLABLE) + [k for k, v in {**self.interp.globals, **self.scope}.items()
                                      if isinstance(v, Function)] + ["grad"]
            raise UnknownNameError(f"unknown function '{fname}'", pos=pos, hint=suggest(fname, names))
        return super().call(fname, args, kwargs, pos)


class CustomRule:
    """The derivative of a function with a `backward` block. The user's rule is recorded
    once, on first use, as a sub-program of the graph: its inputs are the function's
    parameters, its output `out` and a placeholder for the cotangent `g`; its outputs are
    the parameters' cotangents. Reverse mode evaluates it (numbers) or records it again on
    the cotangent node (graphs, so that it can be differentiated again)."""

    def __init__(self, interp, fn, xs, body):
        self.interp, self.fn, self.xs, self.body = interp, fn, list(xs), body
        self.cotangent = self.cts = None
        self._last = None

    def record(self):
        if self.cts is not None:
            return
        graph, bw = self.interp.graph, self.fn.backward
        names = [p[0] for p in bw.params]
        if len(names) != len(self.xs) + 2:
            raise InputError(f"backward {self.fn.name} must take the parameters of {self.fn.name}, "
                             "then the output and its cotangent", pos=bw.pos)
        g = graph.placeholder(f"the cotangent of {self.fn.name}", self.body.shape, graph.dtype,
                              pos=bw.pos)
        scope = dict(zip(names, self.xs + [self.body, g]))
        out = self.interp.run_function_body(bw, scope, bw.pos)
        out = list(out) if isinstance(out, Seq) else [out]
        if len(out) != len(self.xs):
            raise InputError(f"backward {self.fn.name} returns {len(out)} value(s); {self.fn.name} "
                             f"has {len(self.xs)} parameter(s)", pos=bw.pos)
        ev = ScriptEvaluator(self.interp, {})
        out = [ev.array(o, bw.pos) for o in out]
        for k, (o, x) in enumerate(zip(out, self.xs)):
            if tuple(o.shape) != tuple(x.shape):
                try:
                    if np.broadcast_shapes(o.shape, x.shape) != tuple(x.shape):
                        raise ValueError
                except ValueError:
                    raise ShapeError(f"backward {self.fn.name} returns a cotangent of shape "
                                     f"{o.shape} for a parameter of shape {x.shape}",
                                     pos=bw.pos) from None
                # a number (or a broadcastable array) stands for the whole parameter's shape
                graph.pos = bw.pos
                out[k] = graph.emit("broadcast_to", o, shape=tuple(x.shape))
        self.cotangent, self.cts = g, out

    def vjp(self, ns, g, y, xs, argnum):
        # one evaluation of the rule serves every argument of one node; the cache holds g
        # and y themselves, so a later cotangent allocated at a freed one's address cannot hit it
        last = self._last
        if last is None or last[0] is not g or last[1] is not y:
            last = self._last = (g, y, self._run(g, y, xs))
        return last[2][argnum]

    def _run(self, g, y, xs):
        self.record()
        graph = self.interp.graph
        if isinstance(g, Node):          # graph mode: the rule recorded on these nodes
            return substitute(graph, self.cts, dict(zip(self._sources(), [g, y] + list(xs))))
        from .evaluate import evaluate
        inputs = dict(zip(self._sources(), [g, y] + list(xs)))
        vals = evaluate(graph, self.cts, inputs)
        return [vals[c.id] for c in self.cts]

    def _sources(self):
        return [self.cotangent, self.body] + self.xs

    def jvp(self, ns, t, y, xs):
        # Forward mode through a reverse-only rule: J t = sum_k e_k <J^T e_k, t>, one
        # evaluation of the rule per output element (all at once, with the batch axis,
        # for numbers).
        if y.size > 1000:
            raise InputError(f"{self.fn.name} has only a backward rule; forward mode would need "
                             f"{y.size} backward runs", pos=self.fn.pos)
        if not isinstance(y, Node):
            return self._jvp_numbers(t, y, xs)
        out = None
        for k in range(y.size):
            e = np.zeros(y.size)
            e[k] = 1.0
            e = self.interp.graph.const(e.reshape(y.shape))
            self._last = None
            cts = self._run(e, y, xs)
            for c, ti in zip(cts, t):
                if ti is not None:
                    term = ns.sum(c * ti) * e
                    out = term if out is None else out + term
        return out

    def _jvp_numbers(self, t, y, xs):
        from .evaluate import evaluate
        self.record()
        n = max(y.size, 1)
        basis = np.eye(n).reshape((n,) + tuple(np.shape(y)))
        inputs = dict(zip(self._sources(), [basis, y] + list(xs)))
        vals = evaluate(self.interp.graph, self.cts, inputs, batch=n, batched=[self.cotangent])
        out = 0.0
        for c, ti in zip(self.cts, t):
            if ti is not None:
                rows = np.broadcast_to(vals[c.id], (n,) + tuple(c.shape)).reshape(n, -1)
                out = out + rows @ np.reshape(ti, -1)
        return np.reshape(out, np.shape(y))


class Interpreter:
    def __init__(self, graph, source, filename, values, max_steps=1_000_000, max_depth=64):
        self.graph, self.source, self.filename = graph, source, filename
        self.values, self.inputs, self.globals = values, {}, {}
        self.steps, self.max_steps, self.depth, self.max_depth = 0, max_steps, 0, max_depth
        self._evaluator = None     # the last scope's expression evaluator (see eval)

    # ------------------------------------------------------------ running
    def run(self, tree):
        # A script call nests about 20 Python calls of this interpreter: make room for
        # max_depth of them (the interpreter is a recursion over the script's calls only;
        # graphs are never walked recursively).
        needed = 2000 + 40 * self.max_depth
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)
        try:
            self.exec_block(tree, self.globals)
        except Return as r:
            return r.value
        last = tree[-1][1] if tree else (1, 1, 1)
        raise InputError("the script ends without `return`", pos=last,
                         hint="end it with `return VALUE`: the value to evaluate and differentiate")

    def tick(self, pos):
        self.steps += 1
        if self.steps > self.max_steps:
            raise LimitError(f"the script ran more than {self.max_steps:,} steps", pos=pos,
                             hint="raise the limit with --max-steps")

    def evaluator(self, scope):
        """The expression evaluator of a scope. It keeps no state between expressions, so
        the last one is reused while the scope stays the same (a loop's body evaluates
        the same scope's expressions thousands of times)."""
        ev = self._evaluator
        if ev is None or ev.scope is not scope:
            ev = self._evaluator = ScriptEvaluator(self, scope)
        return ev

    def eval(self, tree, scope):
        return self.evaluator(scope).run(tree)

    def array(self, tree, scope):
        ev = self.evaluator(scope)
        return ev.array(ev.run(tree), tree[1])

    def truth(self, tree, scope, what):
        v = self.array(tree, scope)
        if v.size != 1:
            raise ShapeError(f"the condition of `{what}` has shape {v.shape}; it needs one value",
                             pos=tree[1], hint="reduce it, for example with max(...) or sum(...)")
        return bool(self.graph.decide(v, "truth").reshape(()))

    def exec_block(self, block, scope):
        for stmt in block:
            self.steps += 1                     # (tick, inline: the loop of every statement)
            if self.steps > self.max_steps:
                self.tick(stmt[1])
            signal = STATEMENTS[stmt[0]](self, stmt, scope)
            if signal is not None:
                return signal
        return None

    # ------------------------------------------------------------ statements
    def do_input(self, stmt, scope):
        _, pos, name, default = stmt
        if scope is not self.globals:
            raise InputError("`input` belongs at the top level of a script", pos=pos)
        if name in self.inputs:
            raise InputError(f"input '{name}' is declared twice", pos=pos)
        if name in self.values:
            value = self.values[name]
        elif default is not None:
            value = self.array(default, scope).value
        else:
            raise InputError(f"no value for input '{name}'", pos=pos,
                             hint=f"give it with --at {name}=...")
        node = self.graph.input(name, value, pos=pos)
        self.inputs[name] = node
        scope[name] = node

    def do_assign(self, stmt, scope):
        _, pos, target, value = stmt
        value = self.evaluator(scope).run(value)
        if target[3] is None:                   # name = value (store's first case, inline)
            scope[target[2]] = value
        else:
            self.store(target, value, scope)

    def do_aug(self, stmt, scope):
        _, pos, target, op, value = stmt
        _, tpos, name, subs = target
        ev = self.evaluator(scope)
        current = ev.array(ev.lookup(name, tpos), tpos)
        if subs is not None:
            current = ev.index(current, self.subscripts(subs, scope), tpos)
        rhs = ev.array(self.eval(value, scope), pos)
        self.graph.pos = pos
        self.store(target, self.graph.emit({"+": "add", "-": "sub", "*": "mul", "/": "div"}[op],
                                           current, rhs), scope)

    def store(self, target, value, scope):
        _, pos, name, subs = target
        if subs is None:
            scope[name] = value
            return
        # y[key] = v makes a new value: the gradient reaches what survives of y and v
        ev = self.evaluator(scope)
        base = ev.array(ev.lookup(name, pos), pos)
        key = ev.key(self.subscripts(subs, scope), pos)
        self.graph.pos = pos
        scope[name] = self.graph.emit("setindex", base, ev.array(value, pos), key=key)

    def subscripts(self, subs, scope):
        parts = []
        for s in subs:
            if s[0] == "slice":
                vals = [None if x is None else self.eval(x, scope) for x in s[2:]]
                parts.append(slice(*(None if v is None else static("n", v, s[1], "int") for v in vals)))
            else:
                parts.append(self.eval(s, scope))
        return parts

    def do_return(self, stmt, scope):
        _, pos, values = stmt
        if not values:
            raise InputError("`return` needs a value", pos=pos)
        vals = [self.eval(v, scope) for v in values]
        raise Return(vals[0] if len(vals) == 1 else Seq(vals), pos)

    def do_pass(self, stmt, scope):
        return None

    def do_break(self, stmt, scope):
        return BREAK

    def do_continue(self, stmt, scope):
        return CONTINUE

    def do_assert(self, stmt, scope):
        _, pos, cond, message = stmt
        v = self.array(cond, scope)
        if not bool(np.all(self.graph.decide(v, "all"))):
            raise AssertionFailed(message or "the assertion does not hold", pos=cond[1])

    def do_print(self, stmt, scope):
        from .render import plain_array
        _, pos, args = stmt
        parts = [a[2] if a[0] == "str" else plain_array(self.array(a, scope).value) for a in args]
        where = f"{self.filename or '<script>'}:{pos[0]}"
        print(f"{where}: " + " ".join(parts), file=sys.stderr)

    def do_if(self, stmt, scope):
        _, pos, branches, orelse = stmt
        for cond, body in branches:
            if self.truth(cond, scope, "if"):
                return self.exec_block(body, scope)
        return self.exec_block(orelse, scope) if orelse else None

    def do_while(self, stmt, scope):
        _, pos, cond, body = stmt
        while self.truth(cond, scope, "while"):
            self.tick(pos)
            signal = self.exec_block(body, scope)
            if signal == BREAK:
                break
        return None

    def do_for(self, stmt, scope):
        _, pos, name, iterable, body = stmt
        for item in self.iterate(iterable, scope):
            self.steps += 1                     # (tick, inline)
            if self.steps > self.max_steps:
                self.tick(pos)
            scope[name] = item
            signal = self.exec_block(body, scope)
            if signal == BREAK:
                break
        return None

    def iterate(self, tree, scope):
        g = self.graph
        if tree[0] == "call" and tree[2] == "range":
            if tree[4] or not 1 <= len(tree[3]) <= 3:
                raise InputError("range takes 1 to 3 integers: range(stop), range(start, stop[, step])",
                                 pos=tree[1])
            bounds = [static("n", self.eval(a, scope), a[1], "int") for a in tree[3]]
            if len(bounds) == 3 and bounds[2] == 0:
                raise InputError("range's step must not be 0", pos=tree[1])
            # plain numbers: a loop counter becomes a graph constant only where it is used
            return (float(i) for i in range(*bounds))
        value = self.eval(tree, scope)
        if isinstance(value, Seq):
            return list(value)
        ev = self.evaluator(scope)
        node = ev.array(value, tree[1])
        if node.ndim == 0:
            raise InputError("cannot loop over a number", pos=tree[1])
        return (ev.index(node, [g.const(float(i))], tree[1]) for i in range(node.shape[0]))

    def do_def(self, stmt, scope):
        _, pos, name, params, body = stmt
        if name in CALLABLE or name in ("grad", "range"):
            raise InputError(f"'{name}' is a built-in function; choose another name", pos=pos)
        old = scope.get(name)
        scope[name] = Function(name, params, body, pos, old.backward if isinstance(old, Function) else None)

    def do_backward(self, stmt, scope):
        _, pos, name, params, body = stmt
        fn = scope.get(name, self.globals.get(name))
        if not isinstance(fn, Function):
            raise UnknownNameError(f"backward {name}: no function '{name}' is defined before it",
                                   pos=pos, hint=suggest(name, [k for k, v in scope.items()
                                                                if isinstance(v, Function)]))
        fn.backward = Function(name, params, body, pos)

    # ------------------------------------------------------------ functions
    def bind(self, fn, args, kwargs, pos):
        names = [p[0] for p in fn.params]
        sig = f"def {fn.name}({', '.join(n if d is None else n + '=...' for n, _, d in fn.params)})"
        if len(args) > len(names):
            least = sum(d is None for _, _, d in fn.params)
            takes = f"{least} to {len(names)}" if least < len(names) else str(len(names))
            raise InputError(f"{fn.name}() takes {takes} argument{'s' * (takes != '1')}, "
                             f"got {len(args)}", pos=pos, hint=sig)
        scope = dict(zip(names, args))
        for key, v in kwargs:
            if key not in names:
                raise InputError(f"{fn.name}() has no parameter '{key}'", pos=pos,
                                 hint=suggest(key, names) or sig)
            if key in scope:
                raise InputError(f"{fn.name}() got '{key}' twice", pos=pos)
            scope[key] = v
        for name, ppos, default in fn.params:
            if name not in scope:
                if default is None:
                    raise InputError(f"{fn.name}() is missing its argument '{name}'", pos=pos,
                                     hint=sig)
                scope[name] = self.eval(default, self.globals)
        return scope

    def run_function_body(self, fn, scope, pos):
        self.depth += 1
        if self.depth > self.max_depth:
            raise LimitError(f"calls nested more than {self.max_depth} deep", pos=pos,
                             hint="raise the limit with --max-depth")
        try:
            self.exec_block(fn.body, scope)
        except Return as r:
            return r.value
        finally:
            self.depth -= 1
        raise InputError(f"{fn.name}() ends without `return`", pos=fn.pos)

    def call(self, fn, args, kwargs, pos):
        scope = self.bind(fn, args, kwargs, pos)
        out = self.run_function_body(fn, scope, pos)
        if fn.backward is None:
            return out
        # a custom rule: one node whose derivative is the user's backward block
        ev = self.evaluator(scope)
        xs = [ev.array(scope[p[0]], pos) for p in fn.params]
        out = ev.array(out, pos)
        self.graph.pos = pos
        return self.graph.emit("custom", *xs, out, rule=CustomRule(self, fn, xs, out))

    def run_body(self, fn, values):
        """The value node of fn's body at plain values of its parameters, with a fresh step
        budget (gradcheck evaluates bodies of custom rules at perturbed points)."""
        self.steps = 0
        scope = {p[0]: self.graph.const(v) for p, v in zip(fn.params, values)}
        out = self.run_function_body(fn, scope, fn.pos)
        return ScriptEvaluator(self, {}).array(out, fn.pos)

    def grad(self, args, kwargs, pos, ev):
        """grad(f, x, ...): the derivative of scalar f at x in its first argument, as graph
        nodes, so it can be differentiated again (Newton steps, unrolled descent)."""
        if len(args) < 2 or not isinstance(args[0], Function) or kwargs:
            raise InputError("grad takes a script function and its arguments: grad(f, x, ...)",
                             pos=pos)
        fn, x = args[0], ev.array(args[1], pos)
        out = ev.array(self.call(fn, [x] + list(args[2:]), [], pos), pos)
        if out.size != 1:
            raise ShapeError(f"grad needs a scalar function; {fn.name} returns shape {out.shape}",
                             pos=pos, hint="return sum(...) or mean(...)")
        self.graph.pos = pos
        (g,) = autodiff.vjp(self.graph, out, [x], create_graph=True)
        return g if g is not None else self.graph.const(np.zeros(x.shape))


# statement kind -> the interpreter's method that runs it (exec_block's dispatch)
STATEMENTS = {name[3:]: f for name, f in vars(Interpreter).items() if name.startswith("do_")}
_MISSING = object()


def check_structure(tree):
    """`break` and `continue` belong in a loop of the same function: checked before the
    script runs (a loop over statements, not a recursion)."""
    todo = [(tree, False)]
    while todo:
        block, in_loop = todo.pop()
        for stmt in block:
            kind = stmt[0]
            if kind in ("break", "continue") and not in_loop:
                raise InputError(f"`{kind}` outside a loop", pos=stmt[1],
                                 hint="use it inside the body of a for or while loop")
            if kind == "if":
                todo.extend((body, in_loop) for _, body in stmt[2])
                if stmt[3]:
                    todo.append((stmt[3], in_loop))
            elif kind in ("while", "for"):
                todo.append((stmt[-1], True))
            elif kind in ("def", "backward"):
                todo.append((stmt[-1], False))


def declared_inputs(tree):
    """The names declared with `input` at the top level, in order."""
    return [s[2] for s in tree if s[0] == "input"]
