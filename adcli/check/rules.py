"""The backward rules of a script and --expect formulas, checked on their own.

A function with a `backward` block is one custom node whose arguments are its parameters
and, last, the value its body computed; its rule is checked against that body, evaluated
again at moved parameters. --expect NAME=FORMULA claims the formula's value is d/dNAME.
"""
from __future__ import annotations

import numpy as np

from .. import autodiff
from ..errors import AdcliError, InputError, UnknownNameError, suggest
from ..evaluate import GuardFailed, evaluate
from ..graph import reachable
from ..script import CustomRule
from .numeric import along
from .rows import index_of, judge, place, projection_row, quiet, rows_of

RULE_CALLS = 20            # custom-rule call sites checked at most


def _rule_of(node):
    """The custom rule of a node for a function with a `backward` block, else None."""
    rule = node.attrs.get("rule") if node.attrs else None
    return rule if isinstance(rule, CustomRule) else None


# ---------------------------------------------------------------- custom rules

def custom_nodes(traced):
    out = traced.output
    nodes = [n for n in traced.graph.nodes[:out.id + 1] if n.op is not None and _rule_of(n)]
    seen, picked = {}, []
    for n in nodes:          # a few call sites per function: a loop may call it often
        key = id(_rule_of(n).fn)
        if seen.get(key, 0) < 3 and len(picked) < RULE_CALLS:
            seen[key] = seen.get(key, 0) + 1
            picked.append(n)
    return picked


def _rule_place(fn, traced):
    line = f"line {fn.backward.pos[0]}"
    return f"{traced.filename}, {line}" if traced.filename else line


def _scaled_direction(ck, x):
    return np.maximum(1.0, np.abs(x)) * ck.rng.standard_normal(np.shape(x))


def check_rules(ck):
    """Each backward rule against its function's body: for a random cotangent w of the
    output and a random direction d of one parameter, the rule's <vjp(w), d> against the
    derivative of t -> <w, body(x + t d)>, the body (the custom node's last argument)
    evaluated again at each point, the other parameters held."""
    results = []
    graph = ck.ref.graph
    for node in custom_nodes(ck.ref):
        rule = _rule_of(node)
        fn, params, body = rule.fn, node.args[:-1], node.args[-1]
        xs = [np.array(a.value, dtype=np.float64) for a in params]
        w = ck.rng.standard_normal(node.shape)
        with quiet():
            cts = [np.broadcast_to(np.asarray(rule.vjp(graph.arrays, w, node.value, xs, i),
                                              dtype=np.float64), x.shape) for i, x in enumerate(xs)]
        rows = []
        for p, x in enumerate(xs):
            d = _scaled_direction(ck, x)
            # a node passed for several parameters moves for all of them
            an = float(sum(np.sum(cts[q] * d) for q in range(len(xs)) if params[q] is params[p]))

            def at(t, p=p, d=d):
                moved = [x + t * d if i == p else x for i, x in enumerate(xs)]
                return np.sum(w * np.asarray(_body_at(rule, params, body, p, moved),
                                             dtype=np.float64))
            est = _along(at, ck)
            rows.append(projection_row("rule", fn.params[p][0], an, est, ck.rtol64, ck.atol64,
                                       np.linalg.norm(cts[p] * d),
                                       np.linalg.norm(d) * np.linalg.norm(w)))
        results.append(_rule_result(fn, node, rows, ck, "rule"))
    return results


def _body_at(rule, params, body, p, moved):
    """The body's value at other parameter values. Where a branch of the body comes out
    differently there, the body is run again (define-by-run)."""
    inputs = {a: x for a, x in zip(params, moved)}
    inputs[params[p]] = moved[p]
    try:
        return evaluate(body.graph, [body], inputs)[body.id]
    except GuardFailed:
        return rule.interp.run_body(rule.fn, moved).value


def check_rules_second_order(ck):
    """Each backward rule's own derivative (what second derivatives use): for random w and
    v, s(x) = <vjp(x, w), v> through the rule run as a program, differentiated by adcli,
    against differences of s, that program evaluated at moved parameters. The function is
    called once on parameters of its own, so that they move independently."""
    results = []
    for node in custom_nodes(ck.ref):
        rule = _rule_of(node)
        fn, interp = rule.fn, rule.interp
        graph = interp.graph
        xs = [np.array(a.value, dtype=np.float64) for a in node.args[:-1]]
        w = ck.rng.standard_normal(node.shape)
        vs = [ck.rng.standard_normal(x.shape) for x in xs]

        def s_nodes(values):
            interp.steps = 0
            consts = [graph.const(x.copy()) for x in values]
            graph.pos = fn.pos
            y = interp.call(fn, consts, [], fn.pos)
            cts = autodiff.vjp(graph, y, consts, graph.const(w), create_graph=True)
            terms = [graph.ns.sum(c * graph.const(v)) for c, v in zip(cts, vs) if c is not None]
            return consts, (sum(terms[1:], terms[0]) if terms else None)

        with quiet():
            consts, s = s_nodes(xs)
            grads = autodiff.vjp(graph, s, consts) if s is not None else [None] * len(xs)
        rows = []
        for p, x in enumerate(xs):
            d = _scaled_direction(ck, x)
            g = np.zeros(x.shape) if grads[p] is None else np.asarray(grads[p], dtype=np.float64)
            an = float(np.sum(g * d))

            def s_value(t, p=p, d=d):
                moved = x + t * d
                if s is None:
                    return 0.0
                try:
                    return float(evaluate(graph, [s], {consts[p]: moved})[s.id])
                except GuardFailed:       # the rule takes another branch there: run it again
                    _, s2 = s_nodes([moved if i == p else x for i, x in enumerate(xs)])
                    return float(s2.value)
            with quiet():
                est = _along(s_value, ck)
            rows.append(projection_row("rule2", fn.params[p][0], an, est, ck.rtol64, ck.atol64,
                                       np.linalg.norm(g * d), np.linalg.norm(d)))
        results.append(_rule_result(fn, node, rows, ck, "rule2"))
    return results


def _along(fun, ck):
    """The derivative of a scalar function of t at 0 (rule bodies and rules)."""
    with quiet():
        return along(lambda t: np.atleast_1d(fun(t)), np.atleast_1d(fun(0.0)), ck.eps,
                     ck.rtol64, ck.atol64)


def _rule_result(fn, node, rows, ck, kind):
    wrong = [r.input for r in rows if r.status == "FAIL"]
    for r in rows:
        r.input = f"{fn.name}({r.input})"
    upstream = set()
    for p, r in enumerate(rows):
        if r.status == "FAIL":
            upstream |= set(reachable([node.args[p]]))
    inputs = [name for name, n in ck.ref.inputs.items() if n.id in upstream]
    return {"name": fn.name, "kind": kind, "place": _rule_place(fn, ck.ref),
            "line": fn.backward.pos[0], "file": ck.ref.filename,
            "call": place(node.pos, ck.ref), "status": "fail" if wrong else "pass",
            "wrong": wrong, "inputs": inputs, "rows": rows}


# ---------------------------------------------------------------- --expect formulas

def parse_expect(items, ck):
    """--expect NAME=FORMULA: the formula's value at the point, claimed to be d/dNAME."""
    from .. import api
    from ..parse import parse
    from ..trace import CONSTANTS, free_names
    out = []
    inputs = {n: ck.ref.inputs[n].value for n in ck.ref.inputs}
    for item in items:
        name, eq, formula = item.partition("=")
        name = name.strip()
        if not eq or not formula.strip():
            raise InputError(f"--expect expects NAME=FORMULA, got '{item}'",
                             hint='for example --expect x="2*x+y"')
        if name not in inputs:
            raise UnknownNameError(f"--expect {name}: the expression has no input '{name}'",
                                   hint=suggest(name, list(inputs)) or
                                   "its inputs are " + ", ".join(inputs))
        if name not in ck.names:
            raise InputError(f"--expect {name}: '{name}' is not among the checked inputs (--wrt)")
        if ck.m != 1:
            raise InputError(f"--expect needs a scalar value, but the value has shape "
                             f"{tuple(ck.ref.output.shape)}",
                             hint="check sum(...) of it, or its Jacobian without --expect")
        try:
            tree = parse(formula)
            used = free_names(tree)
        except AdcliError as e:
            raise e.located(formula, f"--expect {name}")
        for u in used:
            if u not in inputs and u not in CONSTANTS:
                raise UnknownNameError(f"--expect {name}: the formula uses '{u}', which is not an "
                                       "input", hint=suggest(u, list(inputs)) or
                                       "its inputs are " + ", ".join(inputs))
        vals = {u: inputs[u] for u in used if u in inputs}
        t = api.trace(formula, vals, dtype="float64", limits=ck.limits, filename=f"--expect {name}",
                      seed=ck.seed)
        value = np.asarray(t.output.value, dtype=np.float64)
        shape = ck.shapes[ck.names.index(name)]
        try:
            value = np.broadcast_to(value, shape)
        except ValueError:
            raise InputError(f"--expect {name}: the formula has shape {value.shape}, but "
                             f"'{name}' has shape {shape}") from None
        out.append((name, formula.strip(), value))
    return out


def check_expect(ck, expects, numeric):
    results = []
    for name, formula, value in expects:
        j = ck.names.index(name)
        if ck.full:
            cols, est = numeric
            sel = [c for c, (jj, _) in enumerate(cols) if jj == j]
            sub = est.take(sel)
            a = value.reshape(-1, 1)
            status, tol = judge(a, sub, ck.rtol64, ck.atol64)
            rows = rows_of("expect", status, a, sub, tol,
                            lambda e: (name, index_of(ck.shapes[j], e), None))
        else:
            v, dirs, ests = numeric
            d = dirs[j].reshape(-1)
            terms = value.reshape(-1) * d
            rows = [projection_row("expect", name, float(terms.sum()), ests[j], ck.rtol64,
                                   ck.atol64, np.linalg.norm(terms), np.linalg.norm(d))]
        st = "fail" if any(r.status == "FAIL" for r in rows) else "pass"
        results.append({"name": name, "formula": formula, "status": st, "rows": rows})
    return results


