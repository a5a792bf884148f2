"""Fusion: the elementwise chains of a program evaluated as single generated kernels.

numpy evaluates sin(x)*exp(-x*x) op by op, each a pass over memory with a temporary. The
fusion pass groups maximal runs of elementwise nodes of one shape (the value program, or
the derivative program autodiff recorded) into one step of the evaluator: a generated loop
that reads the group's inputs once, keeps every intermediate in registers and writes only
the values read outside the group (adcli/kernels). Numbers (arrays of one element, and
broadcast views of one) enter as scalars; the program's literals are printed into the
source exactly.

The pass works on the evaluator's plan (adcli/evaluate.py): the nodes to compute in
topological order. One group is open at a time; an elementwise node of the group's shape
joins it, any other node that does not read the group runs before it (its value is then
ready for the group), and one that reads the group closes it. A group is its own step,
run once its last member would have run. Guards, hooks (profile's timing, NaN watching)
and small arrays keep the op-by-op path; a group whose inputs turn out not to fit a
kernel (another dtype: the complex step; a broadcast the kernel does not do) runs op by op
too, with the same numbers.
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels
from .graph import BOOL, NO_ATTRS
from .kernels import codegen


class Group:
    """Fused nodes: `members` (ids, topological: its `own` and the values of other groups
    it computes again), `inputs` (ids of the values they read from outside), `outputs`
    (own members read outside or wanted), `shape` and `batched` (whether
    the values carry the batch axis), `literals` (inputs that are the program's literals)."""

    __slots__ = ("members", "own", "inputs", "outputs", "shape", "batched", "literals", "specs",
                 "sums", "lses", "nodes", "pos")

    def __init__(self, shape, batched):
        self.members, self.own, self.inputs, self.outputs = [], [], [], []
        self.shape, self.batched = shape, batched
        self.literals, self.specs = set(), {}
        self.sums = []          # (id of a sum of every element, id of the member it sums)
        self.lses = []          # (id of a logsumexp of every element, id of its member)
        self.nodes = []         # the nodes it computes, members then sums (adcli profile)
        self.pos = None

    @property
    def args(self):
        """Its inputs as nodes, as a node's args (profile shows their shapes)."""
        return [self.nodes[0].graph.nodes[i] for i in self.inputs] if self.nodes else []

    @property
    def label(self):
        """fused(sin, mul, exp): the ops the kernel computes, each once, in program order."""
        return "fused(" + ", ".join(dict.fromkeys(n.op.name for n in self.nodes)) + ")"

    name = "fused"
    op = None               # (not a node: profile tells a kernel from an op by this)

    def run(self, graph, args, batch):
        """The outputs' values ({id: array}) from the inputs' values, or None when these
        values do not fit the kernel (then the members run op by op)."""
        dtype = graph.dtype
        ctype = codegen.CTYPES.get(dtype.name)
        if ctype is None:
            return None
        shape = ((batch,) if self.batched else ()) + tuple(self.shape)
        n = math.prod(shape)
        spec, call, scalars = [], [], []
        for i, v in zip(self.inputs, args):
            a = v if isinstance(v, np.ndarray) else np.asarray(v)
            if a.dtype != dtype and a.dtype != BOOL:
                return None
            if a.size == 1 or (a.size == n and not any(a.strides)):   # a number, or one broadcast
                x = a.reshape(-1)[0] if a.size == 1 else a.flat[0]
                if i in self.literals:
                    spec.append(codegen.literal(x, ctype))
                else:
                    spec.append("scalar")
                    scalars.append(len(call))
                    call.append(float(x))
            elif a.shape == shape:
                a = np.ascontiguousarray(a)
                spec.append("bool" if a.dtype == BOOL else "array")
                call.append(a)
            else:
                return None
        spec = tuple(spec)
        made = self.specs.get(spec)
        if made is None:
            made = self.specs[spec] = self._source(graph, spec, ctype)
        source, argtypes = made
        from .kernels import cpu, reduce
        try:
            fn = cpu.load(source, argtypes)
        except OSError as e:       # an unwritable cache, a compiler that cannot run
            cpu.failed = f"a kernel could not be built or loaded ({e})"
            return None
        outs = [np.empty(shape, dtype=graph.nodes[o].dtype) for o in self.outputs]
        # a fused sum: one partial sum per block of elements, added up here (pairwise)
        partials = [np.empty(-(-n // codegen.BLOCK)) for _ in self.sums]
        # a fused logsumexp: each block's max and sum of exp(v - max), combined here
        blocks = [(np.empty(-(-n // codegen.BLOCK), dtype), np.empty(-(-n // codegen.BLOCK)))
                  for _ in self.lses]
        pointers = [c if k in scalars else c.ctypes.data for k, c in enumerate(call)]
        cpu.run(fn, n, pointers + [o.ctypes.data for o in outs + partials]
                + [a.ctypes.data for pair in blocks for a in pair],
                align=codegen.BLOCK if partials or blocks else 64)
        produced = dict(zip(self.outputs, outs))
        for (i, _), p in zip(self.sums, partials):
            produced[i] = np.asarray(np.sum(p), dtype=dtype)
        for (i, _), (top, total) in zip(self.lses, blocks):
            produced[i] = reduce.value(*reduce.combine(top, total), dtype)
        return produced

    def body(self, graph, spec, ctype):
        """The per-element program of the group for inputs of these kinds."""
        nodes = graph.nodes
        names, params, lets = {}, [], []
        for k, (i, kind) in enumerate(zip(self.inputs, spec)):
            names[i] = name = f"x{k}"
            if kind in ("array", "bool", "scalar"):
                params.append((kind, name))
            else:                       # a literal, printed exactly
                lets.append((name, kind))
        for k, i in enumerate(self.members):
            node = nodes[i]
            names[i] = name = f"v{k}"
            expr = codegen.apply(node.op.c, [names[a.id] for a in node.args])
            lets.append((name, codegen.spell(expr, ctype)))
        outputs = [("bool" if nodes[o].dtype == BOOL else "array", names[o]) for o in self.outputs]
        sums = tuple(names[m] for _, m in self.sums)
        lses = tuple(names[m] for _, m in self.lses)
        return codegen.Body(tuple(params), tuple(lets), tuple(outputs), sums, lses)

    def _source(self, graph, spec, ctype):
        import ctypes
        body = self.body(graph, spec, ctype)
        scalar = ctypes.c_double if ctype == "double" else ctypes.c_float
        argtypes = [scalar if kind == "scalar" else ctypes.c_void_p for kind, _ in body.params]
        argtypes += [ctypes.c_void_p] * (len(body.outputs) + len(body.sums) + 2 * len(body.lses))
        if kernels.settings.dump_dir:
            dump(codegen.cuda_source(body, ctype), "cu")
        return codegen.cpu_source(body, ctype), tuple(argtypes)


def dump(source, ext):
    import hashlib
    import os
    folder = kernels.settings.dump_dir
    os.makedirs(folder, exist_ok=True)
    key = hashlib.sha256(source.encode()).hexdigest()[:32]
    with open(os.path.join(folder, f"{key}.{ext}"), "w") as f:
        f.write(source)


def fusible_here(graph, xp, hooks):
    """Whether an evaluation may fuse: numpy arrays of float32 or float64, no hooks but
    those that take fused groups (`hook.groups`: profile's timing), and a compiler
    (kernels.cpu.available)."""
    if not all(getattr(h, "groups", False) for h in hooks):
        return False
    if (xp is not None and xp is not np) or graph.xp is not np:
        return False
    if graph.dtype.name not in codegen.CTYPES:
        return False
    from .kernels import cpu
    return cpu.available() is None


def fused_steps(graph, plan, wanted, batch, batched):
    """The plan's steps with elementwise chains as Group steps, and the readers of each
    value among them; None when nothing fuses. `batched`: ids of the given inputs with a
    leading axis of `batch` points."""
    key = (tuple(sorted(wanted)), batch, tuple(sorted(batched)), kernels.settings.min_elements)
    cache = plan.fused if plan.fused is not None else {}
    plan.fused = cache
    if key in cache:
        return cache[key]
    nodes, known = graph.nodes, graph.values
    minimum = kernels.settings.min_elements
    moving = set(batched)
    for i in plan.order:
        if any(a.id in moving for a in nodes[i].args):
            moving.add(i)

    def group_key(node):
        """The group a node may join, (shape, batched), or None when it is not fusible."""
        op = node.op
        if op is None or op.c is None or not op.broadcasts or node.attrs or node.id in plan.guards:
            return None
        if node.dtype != graph.dtype and node.dtype != BOOL:
            return None
        many = node.id in moving
        if math.prod(node.shape) * (batch if many else 1) < minimum:
            return None
        for a in node.args:
            full = a.shape == node.shape and (a.id in moving) == many
            if not full and (math.prod(a.shape) != 1 or a.id in moving):
                return None
        return node.shape, many

    steps, groups, group, members = [], [], None, set()

    def close():
        if group is not None:
            groups.append(group)
            steps.append(group)

    def sums_group(node):
        """The open group's list of sums (or of logsumexps) when node is a sum (or a
        logsumexp, op.fused_reduce) of all the elements of a member of the group (not at
        many points), which the group's loop can reduce as it goes; else None."""
        op, a = node.op, node.args[0] if len(node.args) == 1 else None
        into = group.sums if op.adds else group.lses if op.fused_reduce == "logsumexp" else None
        ok = (into is not None and a is not None and a.id in members and not group.batched
              and all(a.id != i for i, _ in into) and node.dtype == graph.dtype
              and not node.attrs.get("keepdims") and node.id not in plan.guards
              and node.attrs.get("axis") in (None, tuple(range(len(a.shape)))))
        return into if ok else None

    # (`members` also holds the open group's sums, which no member can read: a node that
    # reads one closes the group)
    for step in plan.steps:
        node = step[1]
        k = group_key(node)
        reads = group is not None and any(a.id in members for a in node.args)
        into = sums_group(node) if reads and k is None else None
        if into is not None:
            into.append((node.id, node.args[0].id))
            members.add(node.id)        # the group goes on: the gradient after the value
            continue
        if k is not None and group is not None and k == (group.shape, group.batched) \
                and not any(a.id == i for a in node.args for i, _ in group.sums + group.lses):
            group.members.append(node.id)
            members.add(node.id)
            continue
        if k is not None or reads:
            close()
            group, members = None, set()
        if k is not None:
            group = Group(*k)
            group.members.append(node.id)
            members = {node.id}
            continue
        steps.append(step)
    close()
    # Recompute rather than store: a group reads a value another group of its shape made
    # (a derivative program reading the forward values) by computing it again from that
    # group's inputs, in registers; the other group then writes fewer arrays, often none
    # but its results. Memory traffic, not arithmetic, bounds these loops.
    by_id = {s[0]: s for s in plan.steps}
    owner = {m: g for g in groups for m in g.members}
    for g in groups:
        inside = set(g.members)
        stack = [a.id for m in g.members for a in nodes[m].args]
        while stack:
            j = stack.pop()
            h = owner.get(j)
            if j in inside or h is None or (h.shape, h.batched) != (g.shape, g.batched):
                continue
            inside.add(j)
            stack.extend(a.id for a in nodes[j].args)
        g.own = list(g.members)
        g.members = sorted(inside)          # ids are a topological order
    needed = set(wanted)
    out, fused = [], False
    for s in steps:
        if type(s) is not Group or (len(s.members) < 2 and not s.sums and not s.lses):  # numpy's
            s = s if type(s) is not Group else by_id[s.members[0]]
            out.append(s)
            needed.update(s[3])
            continue
        fused = True
        inside = set(s.members)
        for m in s.members:
            for a in nodes[m].args:
                if a.id not in inside and a.id not in s.inputs:
                    s.inputs.append(a.id)
                    if a.op is None and not a.is_input and known[a.id] is not None \
                            and a.id not in moving:
                        s.literals.add(a.id)
        needed.update(s.inputs)
        out.append(s)
    for k, s in enumerate(out):
        if type(s) is Group:
            s.nodes = [nodes[m] for m in s.members] + [nodes[i] for i, _ in s.sums + s.lses]
            s.outputs = [m for m in s.own if m in needed]
            nbytes = sum(math.prod(nodes[o].shape) * nodes[o].dtype.itemsize for o in s.outputs)
            # (a group whose values others all compute again has nothing left to do)
            out[k] = (s.members[-1], None, s, list(s.inputs), NO_ATTRS, nbytes, False) \
                if s.outputs or s.sums or s.lses else None
    out = [s for s in out if s is not None]
    result = None
    if fused:
        readers = {}
        for s in out:
            for j in s[3]:
                readers[j] = readers.get(j, 0) + 1
        result = (out, readers)
    if len(cache) > 16:
        cache.clear()
    cache[key] = result
    return result
