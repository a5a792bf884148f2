"""The checked function: the recorded float64 program at other values of its inputs.

Every evaluation goes through the evaluator (adcli/evaluate.py): the nodes that depend on
the checked inputs are computed again by their ops, everything else keeps its recorded
value (constants, random draws), and a custom rule's node takes its body's value, its last
argument. Two hooks adapt the evaluation: the complex step gives the arguments that choose a
branch (a comparison's, where's condition) their real parts, so branches are chosen as in the
real computation; kink probing records each kink function on the way.

A script's control flow was decided when it was traced, and the trace recorded those
decisions as guards (each if/while/assert, each value a shape or an index depends on). When
one comes out differently at a moved point the evaluator raises GuardFailed, and the script
is run again there (define-by-run) instead, if that gives the same function: giving an input
whose default draws random numbers shifts later draws, and then the branches of the point
are kept.

All columns at once. Moving input element k changes only element k of a node computed
elementwise from the input, and that element depends on x[k] alone: one evaluation at x + t
gives every column's element of such a node (its "diagonal"). The nodes that read the
diagonal part but mix elements (a reduction), and what follows them, are evaluated on the
evaluator's batch axis, one point per column: the diagonal nodes they read become batched
inputs, their recorded value with the column's own element put in. A program without the
batching rules for that raises NotBatchable, and its columns are done one at a time.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, ShapeError
from ..evaluate import GuardFailed, NotBatchable, evaluate
from ..graph import as_numbers, dependents

BATCH_LIMIT = 20_000_000   # elements of one array of the all-columns-at-once evaluation


def real(v):
    return v.real if np.iscomplexobj(v) else v


def _complex(v):
    if np.iscomplexobj(v) or np.asarray(v).dtype.kind != "f":
        return v
    return np.asarray(v, np.complex128)


def _selects(op, i):
    """Does argument i of op choose a branch (a comparison's, where's condition)?"""
    return op.kind == "comparison" or i in op.selects


def complex_hook(node, args, compute):
    """The evaluator hook of the complex step: a branch is chosen on real parts; values
    (detach's too) carry the imaginary part."""
    op = node.op
    args = [real(a) if _selects(op, i) else _complex(a) for i, a in enumerate(args)]
    try:
        return compute(args)
    except ShapeError:      # forward rules' TypeError on complex numbers, as adcli's error
        if not any(np.iscomplexobj(a) for a in args):
            raise
        raise InputError(f"--method complex: {op.name} does not take complex numbers",
                         pos=node.pos, hint="use --method central") from None


def kink_probe(kinks, dtype):
    """An evaluator hook that records the value of each kink function (node id -> array):
    its sign says on which side of the kink the node is."""
    def hook(node, args, compute):
        v = compute(args)
        kink = node.op.kink
        if kink is not None:
            kinks[node.id] = kink(np, *as_numbers([real(a) for a in args], dtype), **node.attrs)
        return v
    return hook


class Function:
    """The recorded float64 program as a function of the checked inputs.

    Called with one array per checked input, it returns the output's value; with
    complex_step=True the arrays may be complex. `retrace(arrays)` runs the script again
    there (None if that is not the same function; called with None it only answers whether
    it would be)."""

    def __init__(self, traced, names, retrace=None, complex_step=False):
        graph, out = traced.graph, traced.output
        self.graph, self.output, self.retrace = graph, out, retrace
        self.inputs = [traced.inputs[n] for n in names]
        self.complex = complex_step
        self.hooks = [complex_hook] if complex_step else []
        self.depends = self._depending([n.id for n in self.inputs])
        self.steps = [graph.nodes[i] for i in sorted(self.depends) if graph.nodes[i].op is not None]
        # every evaluation is charged to the run's work budget, like the ops it repeats
        self.limits = graph.limits
        self.step_work = {node.id: graph.node_cost(node)[0] for node in self.steps}
        self.run_work = sum(self.step_work.values())
        self._plans = {}
        if complex_step:
            self._refuse_kinks(traced)

    def _depending(self, ids):
        """Ids of the nodes (up to the output) that depend on nodes `ids`."""
        return dependents(self.graph, ids, self.output.id)

    def _refuse_kinks(self, traced):
        for node in self.steps:
            if node.op.kink is not None and node.op.differentiable:
                raise InputError(
                    f"--method complex: {node.op.name} is not real-analytic (it has a kink), so "
                    "the complex step does not apply", pos=node.pos,
                    hint="use --method central").located(traced.source, traced.filename)

    def evaluate(self, outputs, arrays, hooks=()):
        """The values of `outputs` (nodes) at these input arrays, {id: value}; a guard that
        comes out differently raises GuardFailed."""
        self.limits.spend(self.run_work, "gradcheck's evaluation")
        inputs = dict(zip(self.inputs, arrays))
        return evaluate(self.graph, outputs, inputs, hooks=[*self.hooks, *hooks], charge=False)

    def __call__(self, arrays, kinks=None):
        """The output at these input values. `kinks`, a dict, receives the value of each
        kink function on the way (node id -> array)."""
        hooks = [] if kinks is None else [kink_probe(kinks, self.graph.dtype)]
        out = self.output
        try:
            return self.evaluate([out], arrays, hooks)[out.id]
        except GuardFailed:
            if self.retrace is not None and self.retrace(None) is not None:
                return self.retrace(arrays)     # a script's branch goes the other way here
        # running the script again would change it: the branches of the point are kept
        inputs = dict(zip(self.inputs, arrays))
        return evaluate(self.graph, [out], inputs, hooks=[*self.hooks, *hooks], charge=False,
                        check_guards=False)[out.id]

    # -------------------------------------------------------------- all columns at once
    def _plan(self, j):
        """For input j: the diagonal nodes (computed elementwise from the input alone,
        without a guard), those of them that the rest of the program reads, whether a guard
        depends on the input, the work of the two parts, and the columns one batched
        evaluation may take."""
        if j in self._plans:
            return self._plans[j]
        x, graph = self.inputs[j], self.graph
        dep = self._depending([x.id])
        diag, read = {x.id}, []
        for i in sorted(dep - {x.id}):
            node = graph.nodes[i]
            op, args = node.op, node.args
            if node.shape != x.shape or i in graph.guards:
                elementwise = False
            elif op.value_of is not None:      # its value is an argument's (a custom rule's body)
                elementwise = args[op.value_of].id in diag
            else:
                elementwise = op.broadcasts and all(a.id in diag or a.id not in dep for a in args)
            if elementwise:
                diag.add(i)
            else:
                read += [a for a in node.args if a.id in diag]
        read = list({a.id: a for a in read}.values())
        batched = [i for i in dep if i not in diag]
        biggest = max([graph.nodes[i].size for i in dep] + [1])
        # the guards on this input's columns: checked on the batch axis, one per column
        guarded = any(i in graph.guards for i in dep)
        plan = self._plans[j] = (diag, read, guarded,
                                 sum(self.step_work.get(i, 0) for i in diag),
                                 sum(self.step_work.get(i, 0) for i in batched),
                                 max(1, BATCH_LIMIT // biggest))
        return plan

    def columns(self, j, x, t, ks):
        """f(x + t[k] e_k) for the elements k in `ks` of input j, shape (len(ks), outputs),
        where input j is x (flat) and the others are at their recorded values; None when the
        program has no batching rule for this (the caller then moves one element at a time).
        Columns where a guard comes out differently (a script's branch) are left as NaN and
        returned in `self.flipped` (bool, by position in ks) for the caller to redo."""
        diag, read, guarded, diag_work, batched_work, chunk = self._plan(j)
        node_x, out = self.inputs[j], self.output
        ks = np.asarray(ks, dtype=np.intp)
        self.limits.spend(diag_work, "gradcheck's evaluation", node_x.pos)
        moved = (x + t).reshape(node_x.shape)
        # the diagonal part: one evaluation at x + t. It has no guards; those of the rest,
        # which depend on one column each, are checked on the batch axis below
        d = evaluate(self.graph, read + ([out] if out.id in diag else []), {node_x: moved},
                     hooks=self.hooks, charge=False, check_guards=False)
        d[node_x.id] = moved
        m = out.size
        f = np.full((len(ks), m), np.nan, dtype=np.complex128 if self.complex else np.float64)
        self.flipped = np.zeros(len(ks), bool)
        if out.id in diag and not guarded:    # nothing else to evaluate
            f[:] = np.asarray(out.value).reshape(1, -1)
            f[np.arange(len(ks)), ks] = np.asarray(d[out.id]).reshape(-1)[ks]
            return f
        for lo in range(0, len(ks), chunk):
            part = np.arange(lo, min(lo + chunk, len(ks)))
            while len(part):
                try:
                    f[part] = self._batched(read, d, ks[part], batched_work)
                    break
                except GuardFailed as e:       # these columns take another branch
                    self.flipped[part[e.points]] = True
                    part = np.delete(part, e.points)
                except (NotBatchable, ShapeError):
                    return None
        return f

    def _batched(self, read, diag, ks, work):
        """The rest of the program with a leading axis of columns: each diagonal node it
        reads is its recorded value with column k's own element k put in."""
        n, out = len(ks), self.output
        self.limits.spend(n * work, "gradcheck's evaluation", out.pos)
        inputs = {}
        for a in read:
            d = np.asarray(diag[a.id]).reshape(-1)
            dense = np.empty((n, a.size), dtype=np.result_type(np.asarray(a.value), d))
            dense[...] = np.asarray(a.value).reshape(1, -1)
            dense[np.arange(n), ks] = d[ks]
            inputs[a] = dense.reshape((n,) + a.shape)
        v = np.asarray(evaluate(self.graph, [out], inputs, batch=n, batched=list(inputs),
                                hooks=self.hooks, charge=False)[out.id])
        if v.shape == tuple(out.shape):       # the output does not depend on these columns
            v = np.broadcast_to(v, (n,) + v.shape)
        if v.shape != (n,) + tuple(out.shape):
            raise NotBatchable("the batched evaluation gave the wrong shape")
        return v.reshape(n, -1)
