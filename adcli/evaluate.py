"""The evaluator: one loop that runs a program at any inputs.

A program is the list of nodes a trace recorded (adcli/graph.py): each has an op, its
arguments, static attributes, a shape and a dtype, and no value. `evaluate` computes the
nodes that the requested outputs need, in topological (id) order, on an array module
(numpy; cupy later), and frees every value after its last reader unless asked to keep it.
Inputs not given keep the values the trace recorded, and so do the nodes that depend on
no given input; literals (constants, zeros(...), randn(...)) are part of the program.

Batch axis. With `batch=B`, the given inputs listed in `batched` carry a leading axis of B
points (or B tangents), and every node computed from them does too: one sweep evaluates
the program at B points. Each op batches by its table entry's `batch` rule, or by the
default of its kind: elementwise ops broadcast (the per-point shapes are aligned behind
the batch axis), reductions shift their axes by one. An op with neither is a hard error,
never a silent loop over the points.

Hooks see every op as it runs: `hook(node, args, compute)` gets the node, its argument
values and `compute(args) -> value`, and returns the value; so a hook can time the op
(profile), watch for NaNs, probe a kink, or hand the op other arguments (the complex
step gives comparisons the real parts). Hooks turn fusion off (they need every op's value),
except those that say they take fused groups (`hook.groups = True`, profile's timing):
such a hook is called once per fused kernel with a fuse.Group as the node (its `nodes`
are the ops it computes), the kernel's inputs as args, and a compute that returns
{id: value}, or None when these inputs do not fit the kernel (its ops then run one by
one, each through the hooks). Guards,
the decisions the trace took on values, are checked as their nodes are computed: an
evaluation where one comes out differently raises GuardFailed, naming the node.
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels
from .errors import AdcliError
from .graph import BOOL, NODE_BYTES, OP_WORK, apply_rule, as_numbers, dependents, forward


class GuardFailed(AdcliError):
    """The program does not apply at these inputs: a decision the trace took on a value (a
    branch, a data-dependent shape) comes out differently here."""

    def __init__(self, node, points=None):
        what = {"truth": "a condition", "all": "an assertion",
                "equal": "a value the program depends on statically"}
        kind = node.graph.guards[node.id][0]
        super().__init__(f"{what.get(kind, 'a guard')} comes out differently here, so the traced "
                         "program does not apply (the script takes another path)", pos=node.pos)
        self.node, self.points = node, points


class NotBatchable(AdcliError):
    """An op without a batching rule met a batch axis."""


def force(graph, node):
    """The value of `node` at the traced point, computed with every unknown value it needs;
    all of them are kept beside the program (graph.values), as the trace's own."""
    known = graph.values
    order = _ancestors([node], lambda n: known[n.id] is not None)
    try:
        vals = _run(graph, order, {}, known.__getitem__, keep=None, hooks=graph.hooks,
                    held=graph.held)
    except AdcliError as e:
        raise e.located(graph.source, graph.filename) if graph.source is not None else e
    for i, v in vals.items():
        known[i] = v
        if not _a_view(v, [known[a.id] for a in graph.nodes[i].args]):
            graph.held += _nbytes(v)
    return known[node.id]


def evaluate(graph, outputs, inputs=None, *, batch=None, batched=(), hooks=(), keep=(),
             xp=None, charge=True, check_guards=True, what="this evaluation of the program"):
    """The values of `outputs` (nodes) with the inputs given in `inputs` ({node: value}),
    as {node id: value}; `keep` names more nodes whose values to return. The work of the
    nodes computed is charged to the run's budget before any runs (a limit names `what`). check_guards=False keeps the
    decisions of the trace without checking them (gradcheck, where running the script
    again would change it)."""
    inputs = inputs or {}
    given = {n.id: v for n, v in inputs.items()}
    plan = _plan(graph, outputs, given, check_guards)
    order = plan.order
    points = batch or 1
    if charge and order:
        # an op's fixed cost once, its elements' at every point
        graph.limits.spend(plan.fixed_work + plan.element_work * points,
                           what, outputs[0].pos if outputs else None)
    vals = dict(given)
    wanted = {o.id for o in outputs} | {k.id for k in keep}
    steps, readers = plan.steps, plan.readers
    if order and kernels.settings.enabled and plan.largest * (batch or 1) >= \
            kernels.settings.min_elements and all(getattr(h, "groups", False) for h in hooks):
        from . import fuse       # (imported when an evaluation may fuse: start-up stays small)
        if fuse.fusible_here(graph, xp, hooks):
            # elementwise chains as generated kernels (adcli/fuse.py), or None: none fuses
            fused = fuse.fused_steps(graph, plan, wanted, batch, [n.id for n in batched])
            if fused is not None:
                steps, readers = fused
    try:
        out = _run(graph, order, vals, graph.values.__getitem__, keep=wanted, hooks=hooks,
                   held=graph.held, batch=batch, batched={n.id for n in batched}, xp=xp,
                   guards=plan.guards, readers=dict(readers), steps=steps)
    except AdcliError as e:
        raise e.located(graph.source, graph.filename) if graph.source is not None else e
    known = graph.values
    return {i: out[i] if i in out else known[i] for i in wanted}


class _Plan:
    """What one kind of evaluation computes: the nodes in order, how many of them read
    each value, the guards to check and the work. Made once per outputs and given
    inputs, and kept: re-evaluating a program at new points repeats no search."""
    __slots__ = ("order", "readers", "guards", "fixed_work", "element_work", "steps", "fused",
                 "largest")


def _plan(graph, outputs, given, check_guards):
    key = (tuple(o.id for o in outputs), tuple(sorted(given)), check_guards, len(graph.guards))
    plans = graph.plans
    plan = plans.get(key)
    if plan is not None:
        return plan
    nodes, known = graph.nodes, graph.values
    hi = max((o.id for o in outputs), default=-1)
    # the nodes that depend on a given input: their recorded values do not hold here
    guards = graph.guards if check_guards else {}
    moved = dependents(graph, given, max(hi, max(guards, default=-1)))
    # the decisions the trace took on values that move here are checked, needed or not
    order = _ancestors(list(outputs) + [nodes[i] for i in guards if i in moved],
                       lambda n: n.id in given or (n.id not in moved and known[n.id] is not None))
    computed = set(order)
    plan = _Plan()
    plan.fused = None       # the fused steps, by what is batched (adcli/fuse.py)
    plan.largest = max((math.prod(nodes[i].shape) for i in order), default=0)
    plan.order, plan.guards = order, {i: g for i, g in guards.items() if i in computed}
    plan.readers = _readers(nodes, order)
    plan.steps = _steps(nodes, order)
    costs = [graph.node_cost(nodes[i])[0] - OP_WORK for i in order]
    plan.fixed_work, plan.element_work = OP_WORK * len(order), sum(costs)
    if len(plans) > 64:
        plans.clear()
    plans[key] = plan
    return plan


def _ancestors(roots, known):
    """Ids of the roots and of what they need, in topological order, without recursion:
    the walk back stops at the nodes `known(node)` says have a value already."""
    order, stack, seen = [], list(roots), set()
    while stack:
        n = stack.pop()
        if n.id in seen or known(n):
            continue
        seen.add(n.id)
        order.append(n.id)
        stack.extend(n.args)
    order.sort()
    return order


def _readers(nodes, order):
    readers = {}
    for i in order:
        for a in nodes[i].args:
            readers[a.id] = readers.get(a.id, 0) + 1
    return readers


def _steps(nodes, order):
    """What the loop needs of each node, looked up once: (id, node, op, argument ids,
    attributes, result bytes at one point, whether booleans enter its arithmetic)."""
    out = []
    for i in order:
        node = nodes[i]
        op = node.op
        out.append((i, node, op, [a.id for a in node.args], node.attrs,
                    math.prod(node.shape) * node.dtype.itemsize,
                    op.numeric and any(a.dtype == BOOL for a in node.args)))
    return out


def _run(graph, order, vals, recorded, *, keep, hooks, held, batch=None, batched=None, xp=None,
         guards=None, readers=None, steps=None):
    """The loop: compute the nodes `order` (ids, topological) into `vals`, reading other
    values from `vals` or `recorded`. keep=None keeps every value; otherwise a value is
    freed once its last reader in `order` has run, unless its id is in `keep`."""
    nodes, dtype, limits = graph.nodes, graph.dtype, graph.limits
    xp = xp or graph.xp
    if keep is not None and readers is None:
        readers = _readers(nodes, order)
    guards = graph.guards if guards is None else guards   # {} checks none
    live = 0                    # bytes of the values this loop holds
    points = batch or 1
    max_memory = limits.max_memory
    scalar, settle = graph._scalar_type, graph.settle
    for i, node, entry, arg_ids, attrs, nbytes, numbers in steps or _steps(nodes, order):
        args = [vals[j] if j in vals else recorded(j) for j in arg_ids]
        many = batched and any(j in batched for j in arg_ids)
        if many:                 # the result's bytes, B times over at B points
            nbytes *= points
        if held + live + nbytes > max_memory:
            limits.check_memory(held + live + nbytes + NODE_BYTES, entry.name,
                                node.pos if node is not None else None)
        if node is None:        # a fused group (adcli/fuse.py): one kernel, several values
            produced = entry.run(graph, args, batch) if not hooks else _hooked(
                hooks, entry, args, lambda a, e=entry: e.run(graph, a, batch))
            if produced is None:     # inputs the kernel does not take: op by op
                inner, sums = {}, [j for j, _ in entry.sums + entry.lses]
                _run(graph, entry.members + sums, inner,
                     lambda j: vals[j] if j in vals else recorded(j), keep=None, hooks=hooks,
                     held=held + live, batch=batch, batched=batched, xp=xp, guards={})
                produced = {j: inner[j] for j in entry.outputs + sums}
            for j, v in produced.items():
                vals[j] = v = settle(v, nodes[j])
                live += _nbytes(v)
            if entry.batched and batched is not None:
                batched.update(entry.members)
        elif many:
            flags = [j in batched for j in arg_ids]
            compute = (lambda a, e=entry, f=flags, n=node:
                       batched_forward(e, xp, batch, a, f, n, dtype))
            batched.add(i)
            v = compute(args) if not hooks else _hooked(hooks, node, args, compute)
        elif hooks:
            v = _hooked(hooks, node, args,
                        lambda a, e=entry, n=node: forward(e, xp, a, n.attrs, dtype, n.pos))
        elif numbers:
            v = forward(entry, xp, args, attrs, dtype, node.pos)
        else:
            try:
                v = entry.fwd(xp, *args, **attrs)
            except (ValueError, TypeError, IndexError, np.linalg.LinAlgError):
                v = forward(entry, xp, args, attrs, dtype, node.pos)   # its error, located
        if node is None:
            pass
        elif type(v) is not scalar:
            v = settle(v, node)
            if not _a_view(v, args):
                live += _nbytes(v)
            vals[i] = v
        else:
            vals[i] = v
        if i in guards:
            _check_guard(node, guards[i], v, batch if i in (batched or ()) else None)
        if keep is not None:
            for j in arg_ids:
                left = readers[j] = readers[j] - 1
                if left == 0 and j not in keep and j in vals:
                    live -= _nbytes(vals.pop(j))
    return vals


def first_nonfinite(graph, output):
    """The first node (in evaluation order) that the output depends on whose value is not
    finite although all its arguments are: where a NaN or an infinity was born. The values
    the trace holds are looked at; the others are computed again with a watching hook,
    which keeps nothing but what it finds."""
    from .graph import reachable
    known, nodes, born = graph.values, graph.nodes, []

    def finite(v):
        return getattr(v, "dtype", None) is None or v.dtype.kind != "f" or bool(np.isfinite(v).all())

    def watch(node, args, compute):
        v = compute(args)
        if not finite(v) and all(finite(a) for a in args):
            born.append(node.id)
        return v

    leaves = {}
    for i in reachable([output]):
        node = nodes[i]
        if not node.args:                 # an input, a literal: given as they are
            leaves[node] = known[i]
            if not finite(known[i]):
                born.append(i)
    if output.args:                       # every op again, watched
        evaluate(graph, [output], leaves, hooks=[watch], charge=False, check_guards=False)
    return nodes[min(born)] if born else None


def _a_view(v, args):
    """Is v an argument itself (detach) or a view of one (reshape, transpose, a slice)?
    Then it takes no memory of its own."""
    return any(v is a or (v.base is not None and getattr(a, "ndim", 0) and np.may_share_memory(v, a))
               for a in args)


def _hooked(hooks, node, args, compute):
    for hook in reversed(hooks):      # the first hook is the outermost
        compute = (lambda a, h=hook, c=compute: h(node, a, c))
    return compute(args)


def _nbytes(v):
    return getattr(v, "nbytes", 8) if getattr(v, "ndim", 0) else 8


# what a decision of each kind read from a value: `if`/`while` its truth, `assert` whether
# all of it holds, a static index or shape the value itself
DECISIONS = {"truth": lambda v: v.astype(bool), "all": lambda v: v.astype(bool).all(axis=1),
             "equal": lambda v: v}


def _check_guard(node, guard, v, batch):
    kind, expected = guard
    decided = DECISIONS[kind]
    per_point = np.asarray(v).reshape(batch or 1, -1)
    bad = (decided(per_point) != decided(np.asarray(expected).reshape(1, -1)))
    bad = bad.reshape(batch or 1, -1).any(axis=1)
    if batch is None:
        if bad.any():
            raise GuardFailed(node)
        return
    if bad.any():
        raise GuardFailed(node, points=np.flatnonzero(bad))


# ---------------------------------------------------------------- the batch axis

def at_points(xp, v, n, shape):
    """A node's value from an evaluation at n points, as an array of shape (n,) + shape:
    a value that did not depend on the points (a constant derivative) is broadcast."""
    return xp.broadcast_to(xp.asarray(v), (n,) + tuple(shape))


def batched_forward(entry, xp, batch, args, flags, node, dtype):
    """Op `entry` at B points at once: the arguments flagged carry a leading batch axis.
    Elementwise ops broadcast, with each point's arrays aligned behind the batch axis; every
    other op has a rule in its table entry (reductions by default move their axes), which
    gets all its arguments batched (the others broadcast along the batch axis)."""
    shapes = [a.shape for a in node.args]
    if entry.broadcasts:
        # align each point's array behind the batch axis; unbatched ones broadcast as they are
        r = len(node.shape)
        args = [xp.reshape(a, (batch,) + (1,) * (r - len(s)) + s) if f else a
                for a, f, s in zip(args, flags, shapes)]
        return forward(entry, xp, args, node.attrs, dtype, node.pos)
    if entry.batch is None:
        raise NotBatchable(f"{entry.name} has no batching rule: it cannot be evaluated at many "
                           "points at once", pos=node.pos)
    args = [a if f else xp.broadcast_to(a, (batch,) + s) for a, f, s in zip(args, flags, shapes)]
    if entry.numeric:
        args = as_numbers(args, dtype)
    try:
        return apply_rule(entry.batch, entry, node.pos, xp, *args, shapes=shapes, out=node.shape,
                          **node.attrs)
    except NotImplementedError as e:     # a case the rule cannot batch
        raise NotBatchable(f"{entry.name}: {e}", pos=node.pos) from None
