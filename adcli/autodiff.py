"""Reverse and forward accumulation over a recorded graph.

`vjp` walks back from the output through the recorded nodes, in reverse creation order,
handing each node's cotangent to its arguments by the op's rule and adding up the
contributions that reach a node along different paths. `jvp` walks forward, pushing
tangents through the same table. Neither knows any op by name.

Both run in one of two modes. Numeric mode computes arrays (the fast path for first
derivatives), reading the forward values its rules need from the evaluator. Graph mode
(`create_graph=True`) evaluates the same rules on the graph namespace: the derivative is
itself a program (a VJP or JVP transform), which the evaluator runs at any inputs, with
the batch axis, and which can be differentiated again.
"""
from __future__ import annotations

import dis

import numpy as np

from .errors import ValueError_
from .graph import BOOL, OP_WORK, as_numbers
from .ops import IDENTITY, NEGATE, sum_to_shape


def _needed(graph, output, wrt_ids):
    """Ids of nodes on a differentiable path from an input in `wrt_ids` (forward sweep),
    the first id of the walk, and whether every one of those nodes is a number."""
    lo = min(wrt_ids, default=output.id + 1)
    need = set(wrt_ids)
    numbers = all(not graph.nodes[i].shape for i in wrt_ids)
    for node in graph.nodes[lo:output.id + 1]:
        if node.op is not None and node.op.differentiable:
            for a in node.args:
                if a.id in need:
                    need.add(node.id)
                    if node.shape:
                        numbers = False
                    break
    return need, lo, numbers


class _Budget:
    """A numeric walk's share of the run's budgets: each rule application is charged the
    work of its op before it runs, and the cotangents or tangents the walk holds count
    towards the memory held, with the graph's own."""

    def __init__(self, graph):
        self.graph, self.limits, self.live = graph, graph.limits, 0
        self.scalar = graph._scalar_type

    def charge(self, node):
        limits = self.limits
        if not node.shape and node.op.cost is None:
            limits.work += OP_WORK + 3
            nbytes = 8
        else:
            work, nbytes = self.graph.node_cost(node)
            limits.work += work
        held = self.graph.held + self.live + nbytes * len(node.args)
        if limits.work > limits.max_work or held > limits.max_memory:
            what = f"the derivative of {node.op.name}"
            limits.spend(0, what, node.pos)
            limits.check_memory(held, what, node.pos)


class _Mode:
    """What 'multiply', 'sum to shape' and 'value of a node' mean in one walk."""

    def __init__(self, graph, create_graph, safe):
        self.graph, self.graph_mode, self.safe = graph, create_graph, safe
        if create_graph:
            self.ns, self.val = graph.ns, (lambda n: n)
            # the chain rule's products are NaN-safe in graphs: a zero factor wins
            self.chain = graph.ns.mul0
            self.sum_to = lambda g, shape: graph.ns.sum_to(g, shape=shape)
        else:
            ns, xp = graph.arrays, graph.xp
            self.ns, self.val = ns, (lambda n: n.value)
            self.chain = ns.mul0 if safe else (lambda g, d: g * d)
            self.sum_to = lambda g, shape: sum_to_shape(xp, g, shape)

    def times(self, g, d):
        if d is IDENTITY:
            return g
        if d is NEGATE:
            return -g
        return self.chain(g, d)


def vjp(graph, output, wrt, cotangent=None, *, create_graph=False, mark=None):
    """Cotangents of `wrt` nodes for the cotangent of `output` (default: 1).

    Returns a list with None for a node the output does not depend on.
    mark: None, or a function the numeric walk calls with each node as its derivative rule
    starts and with None when the walk ends (adcli profile times the rules with it)."""
    if create_graph:
        pos = graph.pos                # (the walk gives each rule's nodes its op's place)
        try:
            return _vjp(graph, output, wrt, cotangent, create_graph=True, safe=True)
        finally:
            graph.pos = pos
    out = _vjp(graph, output, wrt, cotangent, create_graph=False, safe=False, mark=mark)
    # Fast path first; if a NaN appeared (typically 0 * inf in the chain rule), redo the
    # walk with NaN-safe products so that a zero never becomes NaN.
    xp = graph.xp
    if any(g is not None and g.dtype.kind == "f" and _has_nan(xp, g) for g in out):
        out = _vjp(graph, output, wrt, cotangent, create_graph=False, safe=True, mark=mark)
    return out


def _has_nan(xp, a):
    """Is there a NaN in `a`? A NaN makes the sum NaN: one pass without a mask, and the
    mask only when the sum is NaN (inf - inf is too, without a NaN in `a`)."""
    with np.errstate(all="ignore"):        # (the sum of large numbers may overflow)
        return bool(xp.isnan(xp.sum(a))) and bool(xp.isnan(a).any())


def first_nonfinite_cotangent(graph, output, wrt, safe=True):
    """The first rule application, walking back from the output, that turned a finite
    cotangent into a NaN or an infinity: returns (node, argument number) or None.
    With safe=False the chain rule's plain products are used, so a zero cotangent times an
    infinite local derivative shows up as the NaN it would be without adcli's convention."""
    found = []

    def watch(node, i, g, c):
        xp = graph.xp
        if not found and bool(xp.all(xp.isfinite(g))) and not bool(xp.all(xp.isfinite(c))):
            found.append((node, i))
    _vjp(graph, output, wrt, None, create_graph=False, safe=safe, watch=watch)
    return found[0] if found else None


def adjoints(graph, output, cotangent=None):
    """The adjoint of every node the output depends on, {id: cotangent}: the derivative of
    the output (weighted by `cotangent`, default 1) with respect to that node's value, the
    last column of a Wengert list. Nodes reached by no differentiable path are absent.
    It is the walk of `vjp`, started from every leaf, keeping each cotangent on the way.
    (A node of a non-differentiable op, detach(x) say, is a leaf here: it has an adjoint
    but hands none on. So is a float node computed from booleans alone, abs(x < 1): a
    comparison has no derivative, and its rules are not for booleans.)"""
    leaves = [n for n in graph.nodes[:output.id + 1] if n.dtype.kind == "f" and (
        not n.args or not n.op.differentiable or all(a.dtype.kind != "f" for a in n.args))]
    keep = {}
    _vjp(graph, output, leaves, cotangent, create_graph=False, safe=True, keep=keep)
    return keep


# ---------------------------------------------------------------- what the rules read

META = {"shape", "ndim", "size", "dtype"}   # a node tells these without its value
CO_VARARGS = 0x04                           # a code object's flag: the function takes *args


def _uses(fn):
    """How rule `fn` uses each parameter, read from its bytecode: {name: "value"} where the
    value is used, "meta" where only its shape, ndim, size or dtype is, absent if unused.
    (A parameter a nested function captures, or *args, counts as used.)"""
    uses = getattr(fn, "_adcli_uses", None)
    if uses is not None:
        return uses
    code = fn.__code__
    uses = {name: "value" for name in code.co_cellvars}
    ins = list(dis.get_instructions(code))
    for k, i in enumerate(ins):
        if i.opname.startswith("LOAD_FAST") or i.opname == "LOAD_DEREF":
            names = i.argval if isinstance(i.argval, tuple) else (i.argval,)
            after = ins[k + 1] if k + 1 < len(ins) else None
            meta = len(names) == 1 and after is not None and after.opname == "LOAD_ATTR" \
                and after.argval in META
            for name in names:
                if uses.get(name) != "value":
                    uses[name] = "meta" if meta else "value"
    if code.co_flags & CO_VARARGS:
        uses[code.co_varnames[code.co_argcount + code.co_kwonlyargcount]] = "value"
    try:
        fn._adcli_uses = uses
    except AttributeError:
        pass
    return uses


def rule_reads(op):
    """What the reverse rules of `op` read of a node: (y, args), each "value", "meta" or
    None: the forward values a reverse walk must keep (the output y, the arguments)."""
    reads = op._reads
    if reads is not None:
        return reads
    rules = [r for r in (op.partials or op.vjp or ()) if callable(r)]
    y = args = None
    rank = {None: 0, "meta": 1, "value": 2}
    for fn in rules:
        code = fn.__code__
        params = code.co_varnames[:code.co_argcount]
        first = 1 if op.partials is not None else 2     # after (ns) or (ns, g)
        uses = _uses(fn)
        if len(params) > first:
            y = max(y, uses.get(params[first]), key=rank.get)
        for name in params[first + 1:first + 1 + (op.arity or 0)]:   # not the static attributes
            args = max(args, uses.get(name), key=rank.get)
        if op.arity is None or code.co_flags & CO_VARARGS:
            args = "value"
    op._reads = reads = (y, args)
    return reads


def _reads(graph, output, need, lo):
    """{id of an unknown forward value a reverse walk reads: the smallest id of a rule that
    reads it}, for the rules the walk reaches."""
    nodes, known = graph.nodes, graph.values
    reads = []                       # (unknown value id, id of a rule reading it)
    for node in nodes[lo:output.id + 1]:
        op = node.op
        if op is None or not node.args or node.id not in need or not op.differentiable:
            continue
        y, args = rule_reads(op)
        if y == "value" and known[node.id] is None:
            reads.append((node.id, node.id))
        if args == "value":
            reads.extend((a.id, node.id) for a in node.args if known[a.id] is None)
    last = {}                        # value id -> the smallest id of a rule reading it
    if reads:
        # only the rules the walk reaches: a rule's sub-program (custom) may sit between
        from .graph import reachable
        reach = set(reachable([output]))
        for j, k in reads:
            if k in reach:
                last[j] = min(last.get(j, k), k)
    return last


def walk_reads(graph, output, wrt):
    """The nodes whose forward values the numeric reverse walk from `output` to `wrt` reads
    and the graph does not hold yet (adcli profile computes them before timing the walk)."""
    need, lo, _ = _needed(graph, output, [w.id for w in wrt])
    return [graph.nodes[j] for j in _reads(graph, output, need, lo)]


class ForwardValues:
    """The forward values a reverse walk reads. Those the trace has (a script's scalars) are
    read from it; the others are computed by the evaluator (which frees the rest as it
    goes), and dropped by the walk once the last rule reading them has run. A node read
    for its shape only is handed to the rule as itself: it knows its shape."""

    def __init__(self, graph, output, need, lo):
        nodes, known = graph.nodes, graph.values
        self.known, self.dtype = known, graph.dtype
        last = _reads(graph, output, need, lo)
        self.values, self.free_at = {}, {}
        if last:
            from .evaluate import evaluate
            # the output's value comes with them, for the result (not computed twice)
            self.values = evaluate(graph, [nodes[j] for j in last] + [output], charge=False)
            if known[output.id] is None:
                known[output.id] = self.values[output.id]
            if output.id not in last:
                del self.values[output.id]
            for j, k in last.items():
                self.free_at.setdefault(k, []).append(j)

    def of(self, node):
        """(y, args) for node's rules: values, or nodes where the shape is enough."""
        op = node.op
        y_kind, args_kind = op._reads or rule_reads(op)
        known = self.known
        y = node
        if y_kind == "value":
            y = known[node.id]
            if y is None:
                y = self.values[node.id]
        if args_kind != "value":
            return y, node.args
        args = [known[a.id] for a in node.args]
        if self.values:
            args = [self.values[a.id] if v is None else v for a, v in zip(node.args, args)]
        if op.numeric:
            for k, a in enumerate(node.args):
                if a.dtype is BOOL:      # a comparison's result, as a number (see Graph.emit)
                    args[k] = args[k].astype(self.dtype)
        return y, args

    def done(self, node):
        """The walk is past node: drop the values no rule still to run reads."""
        if self.free_at:
            for j in self.free_at.pop(node.id, ()):
                self.values.pop(j, None)


def _vjp(graph, output, wrt, cotangent, create_graph, safe, watch=None, keep=None, mark=None):
    # keep: a dict that receives every node's final cotangent (its adjoint), by id
    mode = _Mode(graph, create_graph, safe)
    wrt_ids = [w.id for w in wrt]
    need, lo, numbers = _needed(graph, output, wrt_ids)
    if output.id not in need:
        # no differentiable path from an input to the output (asin(x > 0)): nothing to
        # walk, and no forward value to read (the output's arguments may not be computed)
        return [None] * len(wrt_ids)
    wanted = set(wrt_ids)
    if cotangent is None:
        cotangent = graph.as_array(1.0)
        cotangent = graph.const(cotangent) if create_graph else cotangent
        if output.ndim:
            cotangent = mode.ns.broadcast_to(cotangent, shape=output.shape)
    if numbers and not graph.unknown and not create_graph and watch is keep is mark is None \
            and type(cotangent) is graph._scalar_type:
        found = _walk_numbers(graph, output, need, lo, wanted, cotangent, mode)
        return [found.get(i) for i in wrt_ids]
    cts = {output.id: cotangent}
    found = {}
    graph_mode, ns = create_graph, mode.ns
    # Numeric mode saves full-size array operations, which dominate large inputs:
    # * `owned` holds the ids of cotangents in `cts` that this walk allocated and nobody
    #   else sees, so a second path's contribution is added into them in place;
    # * a cotangent that is a broadcast 1 (what `sum` hands back) times a local derivative
    #   is the local derivative: no multiplication.
    owned = set()
    xp = graph.xp
    # arrays this walk may own: not numpy scalars (immutable) and not nodes (graph mode)
    array = graph._array_type if not graph_mode else None
    # mark (adcli profile): called as each node's rule starts; its time runs to the next
    # mark. (Numeric walks only: a graph-mode walk records nodes and computes nothing.)
    # graph mode: the rules' ops are charged as they are recorded
    budget = _Budget(graph) if not graph_mode else None
    if type(cotangent) is array:
        budget.live += cotangent.nbytes
    fv = None if graph_mode else ForwardValues(graph, output, need, lo)
    limits, scalar = graph.limits, graph._scalar_type
    for node in reversed(graph.nodes[lo:output.id + 1]):
        g = cts.pop(node.id, None)
        if g is None:
            continue
        big = type(g) is array
        if big:
            owned.discard(id(g))
            budget.live -= g.nbytes
        if keep is not None:                   # final: every path has added into it
            keep[node.id] = g
        if node.id in wanted:
            found[node.id] = g
        op = node.op
        if op is None or not op.differentiable:
            continue
        if budget is not None:
            if big or node.shape or op.cost is not None:
                budget.charge(node)
            else:                              # a number: the charge of budget.charge, inline
                limits.work += OP_WORK + 3
                if limits.work > limits.max_work:
                    budget.charge(node)
        if mark is not None:
            mark(node)
        if graph_mode:
            y, args = node, node.args
            graph.pos = node.pos       # the rule's nodes are the source's, at its op
        else:
            y, args = fv.of(node)
        partials = op.partials
        ones = big and _is_broadcast_one(g)
        for i, a in enumerate(node.args):
            if a.id not in need:
                continue
            fresh = False
            if partials is not None:           # elementwise: cotangent times local derivative
                d = partials[i]
                if d is IDENTITY:
                    c = g
                elif d is NEGATE:
                    c, fresh = -g, True
                else:
                    d = d(ns, y, *args)
                    if ones and getattr(d, "shape", None) == g.shape:
                        c = d
                    else:
                        c, fresh = mode.chain(g, d), True
            else:
                c = _rule_at(mode, node, i, g, y, args)
                if c is None:
                    continue
            if (a.shape or type(c) is not scalar) and tuple(c.shape) != a.shape:
                c, fresh = mode.sum_to(c, a.shape), True   # the adjoint of broadcasting
            if watch is not None:
                watch(node, i, g, c)
            prev = cts.get(a.id)
            if prev is None:                   # paths add up
                cts[a.id] = c
                if type(c) is array:
                    budget.live += c.nbytes
                    if fresh:
                        owned.add(id(c))
            elif type(prev) is array and id(prev) in owned and type(c) is array \
                    and prev.dtype == c.dtype and prev.shape == c.shape:
                xp.add(prev, c, out=prev)
            else:
                total = cts[a.id] = prev + c
                if type(total) is array:
                    owned.add(id(total))
                    budget.live += total.nbytes - (prev.nbytes if type(prev) is array else 0)
        if fv is not None:
            fv.done(node)
    if mark is not None:
        mark(None)                             # the end of the last rule
    return [found.get(i) for i in wrt_ids]


def _walk_numbers(graph, output, need, lo, wanted, cotangent, mode):
    """The walk of _vjp for a program of numbers whose values the trace has (a script's
    unrolled scalar loop): no arrays to own, no memory to count, no forward values to
    compute, and so about half the time per node. The same rules, the same order."""
    known, ns, scalar = graph.values, mode.ns, graph._scalar_type
    chain = mode.chain if mode.safe else None       # None: the plain product, inline
    limits, cost, budget = graph.limits, OP_WORK + 3, _Budget(graph)
    cts, found = {output.id: cotangent}, {}
    # comparisons' results (rare), which enter arithmetic rules as numbers
    bools = {n.id for n in graph.nodes[:output.id + 1] if n.dtype is BOOL} \
        if graph.booleans else ()
    # The charge of _Budget.charge for a number, made once for the whole walk when even a
    # rule at every node would fit in the budget; else node by node, so that the error
    # names the op where the budget ran out.
    ahead = limits.work + cost * (output.id + 1 - lo) <= limits.max_work
    walked = 0
    for node in reversed(graph.nodes[lo:output.id + 1]):
        g = cts.pop(node.id, None)
        if g is None:
            continue
        if node.id in wanted:
            found[node.id] = g
        op = node.op
        if op is None or not op.differentiable:
            continue
        if op.cost is not None:
            budget.charge(node)
        elif ahead:
            walked += 1
        else:
            limits.work += cost
            if limits.work > limits.max_work:
                budget.charge(node)
        y = known[node.id]
        nodes = node.args
        if len(nodes) == 2:                    # (most ops: without a comprehension's call)
            args = (known[nodes[0].id], known[nodes[1].id])
        elif len(nodes) == 1:
            args = (known[nodes[0].id],)
        else:
            args = [known[a.id] for a in nodes]
        if bools and op.numeric and any(a.id in bools for a in nodes):
            args = as_numbers(args, graph.dtype)   # a comparison's result, as a number
        partials = op.partials
        i = -1
        for a in nodes:
            i += 1
            if a.id not in need:
                continue
            if partials is None:
                c = _rule_at(mode, node, i, g, y, args)
                if c is None:
                    continue
            else:
                d = partials[i]
                if d is IDENTITY:
                    c = g
                elif d is NEGATE:
                    c = -g
                elif chain is None:
                    c = g * d(ns, y, *args)
                else:
                    c = chain(g, d(ns, y, *args))
            if type(c) is not scalar and c.shape:
                c = mode.sum_to(c, ())
            prev = cts.get(a.id)
            cts[a.id] = c if prev is None else prev + c
    limits.work += cost * walked
    return found


def _arguments(node):
    """The argument values a node's rules see: booleans as numbers for arithmetic ops, as
    the forward rule saw them (see Graph.emit)."""
    values = [a.value for a in node.args]
    return as_numbers(values, node.graph.dtype) if node.op.numeric else values


def _undefined(node, err):
    """The error for a derivative rule that cannot be evaluated (a singular matrix)."""
    op = node.op
    what = (f"the derivative of {op.name}" if not op.internal
            else f"a derivative (of the internal op {op.name}, which a rule made)")
    return ValueError_(f"{what} is undefined here: {err}", pos=node.pos)


def _scaled_tangent(graph, mode, forms, t, partials, y, args):
    """The recorded tangent sum_i t_i d_i of an elementwise step, kept as base * factor:
    `base` a tangent given or made by a rule that is not elementwise, `factor` a product
    and sum of partials (None: 1). A chain of elementwise steps then multiplies and adds
    its partials, arrays of one point's size, and the tangent once at the end: evaluated
    with a batch of tangents (a Jacobian's or Hessian's basis) one batched product, not
    one per step. (A zero factor still wins: mul0(mul0(t, a), b) = mul0(t, mul0(a, b)).)"""
    ns = mode.ns
    groups = {}                  # base id -> [base, factor]
    for ti, d in zip(t, partials):
        if ti is None:
            continue
        base, f = forms.get(ti.id, (ti, None))
        if d is NEGATE:
            f = -f if f is not None else graph.const(-1.0)
        elif d is not IDENTITY:
            d = d(ns, y, *args)
            f = d if f is None else ns.mul0(f, d)
        if base.id not in groups:
            groups[base.id] = [base, f]
            continue
        g = groups[base.id]      # base f1 + base f2 = base (f1 + f2)
        one = graph.const(1.0)
        g[1] = (g[1] if g[1] is not None else one) + (f if f is not None else one)
    out = None
    for base, f in groups.values():
        term = base if f is None else ns.mul0(base, f)
        out = term if out is None else out + term
    if len(groups) == 1:
        forms[out.id] = (base, f)
    return out


def _reason(err):
    """What failed in a ValueError_ of an op that a recorded rule ran ("inv: Singular
    matrix" -> "Singular matrix"; _undefined names the rule instead)."""
    return err.message.split(": ", 1)[-1]


def _is_broadcast_one(g):
    """Is the array g a broadcast view of the number 1 (all strides 0)?"""
    return g.size > 1 and not any(g.strides) and g.flat[0] == 1


def _rule_at(mode, node, i, g, y, args):
    """_rule for argument i of node, a failure (a singular matrix) an error naming it."""
    try:
        return _rule(mode, node.op, i, g, y, args, node.attrs)
    except np.linalg.LinAlgError as e:
        raise _undefined(node, e) from None
    except ValueError_ as e:
        raise _undefined(node, _reason(e)) from None


def _rule(mode, op, i, g, y, args, attrs):
    """The cotangent that node (op, args) -> y hands to argument i."""
    if op.partials is not None:
        d = op.partials[i]
        return mode.times(g, d if isinstance(d, str) else d(mode.ns, y, *args))
    if op.arity is None:
        return op.vjp[0](mode.ns, g, y, *args, argnum=i, **attrs)
    if op.vjp[i] is None:
        return None
    return op.vjp[i](mode.ns, g, y, *args, **attrs)


def jvp(graph, output, wrt, tangents, *, create_graph=False, mark=None):
    """The tangent of `output` when the `wrt` nodes move along `tangents` (forward mode).

    `output` may be a list of nodes: one sweep gives all their tangents, as a list.
    Returns None for an output that does not depend on the nodes moved.
    mark: as for `vjp`, called as each node's tangent rule starts (numeric sweeps only)."""
    many = isinstance(output, (list, tuple))
    outputs = list(output) if many else [output]
    if create_graph:
        pos = graph.pos                # (as for vjp)
        try:
            found = _jvp(graph, outputs, wrt, tangents, create_graph=True, safe=True)
        finally:
            graph.pos = pos
    else:
        # plain products first; NaN-safe ones (a zero factor wins) only if a NaN came out
        found = _jvp(graph, outputs, wrt, tangents, create_graph=False, safe=False, mark=mark)
        xp = graph.xp
        if any(t is not None and t.dtype.kind == "f" and _has_nan(xp, t) for t in found):
            found = _jvp(graph, outputs, wrt, tangents, create_graph=False, safe=True, mark=mark)
    return found if many else found[0]


def _jvp(graph, outputs, wrt, tangents, create_graph, safe, mark=None):
    mode = _Mode(graph, create_graph, safe=safe)
    tans = {w.id: t for w, t in zip(wrt, tangents)}
    lo = min(tans, default=graph.nodes and len(graph.nodes))
    hi = max((o.id for o in outputs), default=-1)
    budget = _Budget(graph) if not create_graph else None
    forms = {}      # recorded tangent id -> (base, factor): see _scaled_tangent
    from .graph import reachable
    reach = set(reachable(outputs))      # the nodes an output depends on: the sweep's
    for node in graph.nodes[lo:hi + 1]:
        if node.id not in reach:
            continue
        op = node.op
        if op is None or not op.differentiable:
            continue
        t = [tans.get(a.id) for a in node.args]
        if all(ti is None for ti in t):
            continue
        if budget is not None:
            budget.charge(node)
        if mark is not None:
            mark(node)
        if create_graph:
            graph.pos = node.pos       # the rule's nodes are the source's, at its op
        y, args = (node, node.args) if create_graph else (node.value, _arguments(node))
        if op.partials is not None and create_graph:
            out = _scaled_tangent(graph, mode, forms, t, op.partials, y, args)
        elif op.partials is not None:
            out = None
            for ti, d in zip(t, op.partials):
                if ti is None:
                    continue
                c = mode.times(ti, d if isinstance(d, str) else d(mode.ns, y, *args))
                out = c if out is None else out + c
        else:
            try:
                out = op.jvp(mode.ns, t, y, *args, **node.attrs)
            except np.linalg.LinAlgError as e:
                raise _undefined(node, e) from None
            except ValueError_ as e:   # recorded: an op of the rule computed at once, and failed
                raise _undefined(node, _reason(e)) from None
        if tuple(out.shape) != tuple(node.shape):   # the tangent of a broadcast input
            out = mode.ns.broadcast_to(out, shape=node.shape)
        tans[node.id] = out
        if budget is not None:
            budget.live += out.nbytes      # every tangent is kept to the end of the sweep
    if mark is not None:
        mark(None)                             # the end of the last rule
    return [tans.get(o.id) for o in outputs]
