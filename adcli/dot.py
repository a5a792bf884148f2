"""The graph as Graphviz DOT text, in the colours of PyTorch's torchviz.

Forward nodes: inputs light blue, constants white, ops grey, the output green. With the
backward graph (the gradient recorded as nodes by `vjp(..., create_graph=True)`), the
gradient's nodes sit in a cluster of their own, the ones that give an input's gradient are
labelled `grad x` (and green, being outputs), and a dashed orange edge links a forward
node to each backward node that reads its value: torchviz's "saved tensors", the values the
forward pass must keep for the backward pass.

Unrolled loops repeat the same nodes once per iteration. `collapse` finds stretches of the
node sequence made of one block repeated, and draws the block once, in a cluster labelled
with the count (see `repeated_runs`).
"""
from __future__ import annotations

from . import autodiff
from .errors import InputError, LimitError, note
from .graph import reachable
from .wengert import node_adjoints, op_text, shape_text, value_text

COLOR = {"input": "lightblue", "const": "white", "op": "lightgrey",
         "output": "darkolivegreen1", "saved": "orange"}
VALUE_ELEMENTS = 4           # longer arrays are summarised in labels
MIN_REPEATS = 3              # a block must repeat this often to be collapsed
MAX_PERIOD = 2000            # the longest block looked for, in nodes


def quote(text):
    """A DOT string: quotes and backslashes escaped, lines joined by DOT's \\n."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


def repeated_runs(sigs, min_repeats=MIN_REPEATS, max_period=MAX_PERIOD):
    """[(start, period, count)]: stretches of the list `sigs` that are one block of
    `period` items repeated `count` >= min_repeats times, left to right, not overlapping.

    At each position the shortest block that repeats is taken: for an unrolled loop that
    is one iteration (for nested loops, one iteration of the innermost). Candidate periods
    are the distances to the later occurrences of the same item, found through `nxt`."""
    n = len(sigs)
    nxt, last = [n] * n, {}
    for j in range(n - 1, -1, -1):
        nxt[j] = last.get(sigs[j], n)
        last[sigs[j]] = j
    runs, i = [], 0
    while i < n:
        j, found = nxt[i], None
        while j < n and j - i <= max_period:
            period = j - i
            block = sigs[i:j]
            if sigs[j:j + period] == block:
                count = 2
                while sigs[i + count * period:i + (count + 1) * period] == block:
                    count += 1
                if count >= min_repeats:
                    found = (i, period, count)
                    break
            j = nxt[j]
        if found:
            runs.append(found)
            i += found[1] * found[2]
        else:
            i += 1
    return runs


def _fold(ids, graph, skip):
    """Collapse repeated runs in the node ids `ids` (ascending). Returns (rep, clusters):
    rep maps each hidden node's id to the id of its counterpart in the run's first
    iteration; clusters is [(count, [ids of the first iteration])]. A node's signature is
    its op and its place in the source (and shape): the same statement run again. Nodes in
    `skip` (inputs, shared constants) belong to no iteration and are left out."""
    seq = [i for i in ids if i not in skip]
    sigs = []
    for i in seq:
        n = graph.nodes[i]
        sigs.append((n.op.name if n.op else "const", n.pos, n.shape))
    rep, clusters = {}, []
    for start, period, count in repeated_runs(sigs):
        first = seq[start:start + period]
        for k in range(period, period * count):
            rep[seq[start + k]] = first[k % period]
        clusters.append((count, first))
    return rep, clusters


def _short(v):
    """A number in a label: six significant digits are enough to read a drawing."""
    if isinstance(v, bool):
        return "true" if v else "false"
    text = f"{v:.6g}"
    return text if any(c in text for c in ".en") else text + ".0"   # 2 -> 2.0, like the rest


def _label(node, lines_before=(), value=None, grad=None):
    """The lines of a node's label: what it is and its shape, then value and gradient."""
    if node.op is None and not node.is_input:
        head = [value_text(node.value, VALUE_ELEMENTS, _short)] if node.size == 1 else ["const"]
    else:
        head = [node.name if node.is_input else op_text(node)]
    lines = list(lines_before) + head
    if not (node.op is None and not node.is_input and node.size == 1):
        lines.append(shape_text(node.shape))
    if value is not None and not (node.op is None and node.size == 1 and not node.is_input):
        lines.append("= " + value_text(value, VALUE_ELEMENTS, _short))
    if grad is not None:
        lines.append("grad " + value_text(grad, VALUE_ELEMENTS, _short))
    return lines


class _Drawing:
    """What is drawn: forward node ids, backward node ids (made by vjp, so numbered from
    `start`), which backward node gives which input's gradient, and the folding map."""

    def __init__(self, traced, backward, notes):
        graph, out = traced.graph, traced.output
        self.graph, self.out = graph, out
        self.forward = reachable([out])
        self.start = len(graph.nodes)
        self.backward, self.grads, self.rep, self.clusters = [], {}, {}, ([], [])
        if backward:
            self._add_backward(traced, notes)

    def _add_backward(self, traced, notes):
        graph, out = self.graph, self.out
        if out.dtype.kind != "f":
            raise InputError("the value is boolean and has no derivative: no backward graph")
        if out.size != 1:
            notes.append(note("sum-of-value", f"the value has shape {tuple(out.shape)}; the "
                              "backward graph is that of the gradient of sum(value)"))
        names = list(traced.inputs)
        cts = autodiff.vjp(graph, out, [traced.inputs[n] for n in names], create_graph=True)
        for name, g in zip(names, cts):
            if g is not None:
                self.grads.setdefault(g.id, []).append(name)
        self.backward = [i for i in reachable([graph.nodes[i] for i in self.grads])
                         if i >= self.start]
        # forward nodes that the backward graph reads although the output does not
        # (constants), and gradients that are forward nodes: drawn with the forward graph
        read = {a.id for i in self.backward for a in graph.nodes[i].args if a.id < self.start}
        read |= {i for i in self.grads if i < self.start}
        self.forward = sorted(set(self.forward) | read)

    def collapse(self, traced):
        # inputs and the shared (cached) scalar constants are used by every iteration
        skip = {n.id for n in self.graph._scalars.values()} | {n.id for n in traced.inputs.values()}
        r1, forward = _fold(self.forward, self.graph, skip)
        r2, backward = _fold(self.backward, self.graph, skip)
        self.rep, self.clusters = {**r1, **r2}, (forward, backward)

    @property
    def separate_grads(self):
        """{forward id: input names} for gradients that are forward nodes: each is drawn
        as a green `grad x` node of its own, linked from that node."""
        return {i: names for i, names in self.grads.items() if i < self.start}

    def size(self):
        shown = [i for i in self.forward + self.backward if i not in self.rep]
        return len(shown) + len(self.separate_grads)


def to_dot(traced, *, backward=False, values=False, collapse=False, max_nodes=500, notes=None):
    """DOT text for the graph of `traced` (see the module's doc). Notes for stderr are
    appended to `notes`."""
    notes = [] if notes is None else notes
    d = _Drawing(traced, backward, notes)
    adj = None
    if values:
        adj, note = node_adjoints(traced)
        if note:
            notes.append(note)
    if collapse:
        d.collapse(traced)
    if d.size() > max_nodes:
        raise LimitError(f"the drawing would have {d.size():,} nodes; the limit is {max_nodes:,}",
                         hint=("raise it with --max-nodes" if collapse else
                               "fold unrolled loops with --collapse, or raise --max-nodes"))
    title = " ".join((traced.label or traced.source).split())
    text = ["digraph adcli {",
            f"  graph [label={quote(title if len(title) <= 60 else title[:57] + '...')}, "
            "labelloc=t, fontname=monospace, fontsize=12];",
            f"  node [shape=box, style=filled, fillcolor={COLOR['op']}, fontname=monospace, "
            "fontsize=10, height=0.2];",
            "  edge [arrowsize=0.7];"]
    node = lambda i: _node_statement(d, i, values, adj)   # noqa: E731
    text += _nodes(d, d.forward, d.clusters[0], node, "  ", values)
    if d.backward:
        text.append("  subgraph cluster_backward {")
        text.append('    label="backward"; style=dashed; color=gray60;')
        text += _nodes(d, d.backward, d.clusters[1], node, "    ", values)
        text.append("  }")
    for i, names in d.separate_grads.items():
        label = quote("\n".join([", ".join(f"grad {x}" for x in names),
                                 shape_text(d.graph.nodes[i].shape)]))
        text.append(f"  g{i} [label={label}, fillcolor={COLOR['output']}];")
    text += _edges(d)
    text.append("}")
    return "\n".join(text) + "\n"


def _node_statement(d, i, values, adj):
    n = d.graph.nodes[i]
    is_bwd = i >= d.start
    before = [", ".join(f"grad {x}" for x in d.grads[i])] if is_bwd and i in d.grads else []
    grad = adj.get(i) if adj is not None and not is_bwd and n.dtype.kind == "f" else None
    lines = _label(n, before, n.value if values else None, grad)
    if i == d.out.id or (is_bwd and i in d.grads):
        color = COLOR["output"]
    elif n.is_input:
        color = COLOR["input"]
    elif n.op is None:
        color = COLOR["const"]
    else:
        color = None                          # the default: ops are grey
    fill = f", fillcolor={color}" if color else ""
    return f"n{i} [label={quote(chr(10).join(lines))}{fill}];"


def _nodes(d, ids, clusters, node, indent, values):
    """Node statements: those outside folded runs, then one cluster per run."""
    in_cluster = {i for _, first in clusters for i in first}
    out = [indent + node(i) for i in ids if i not in d.rep and i not in in_cluster]
    for k, (count, first) in enumerate(clusters):
        cid = f"{'b' if first[0] >= d.start else 'f'}{k}"
        label = f"× {count}" + (" (values: the first)" if values else "")
        out.append(f"{indent}subgraph cluster_{cid} {{")
        out.append(f"{indent}  label={quote(label)}; style=\"rounded,dashed\"; color=gray40;")
        out.extend(indent + "  " + node(i) for i in first)
        out.append(indent + "}")
    return out


def _edges(d):
    """Edges run from an argument to the node that reads it; dashed orange where a
    backward node reads a forward value. An edge of a hidden (folded) node is drawn
    between the representatives, once: the loop-carried edge from one iteration to the
    next becomes an edge back into the cluster."""
    out, seen, rep = [], set(), d.rep
    for i in d.forward + d.backward:
        hidden = i in rep
        for a in d.graph.nodes[i].args:
            saved = i >= d.start and a.id < d.start
            edge = (rep.get(a.id, a.id), rep.get(i, i), saved)
            if hidden and edge in seen:
                continue
            seen.add(edge)
            style = f" [style=dashed, color={COLOR['saved']}]" if saved else ""
            out.append(f"  n{edge[0]} -> n{edge[1]}{style};")
    out += [f"  n{rep.get(i, i)} -> g{i};" for i in d.separate_grads]
    return out


def drawing_format(path):
    """The file type -o names: dot, gv, svg, png or pdf."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext not in ("dot", "gv", "svg", "png", "pdf"):
        raise InputError(f"-o {path}: unknown file type", hint="use .dot, .gv, .svg, .png or .pdf")
    return ext


def write_drawing(text, path, seconds):
    """.dot/.gv: the text; .svg/.png/.pdf: rendered by Graphviz's `dot` program, given no
    more than `seconds` (some graphs take its layout minutes)."""
    import shutil
    import subprocess

    from .files import replacing, writing
    ext = drawing_format(path)
    if ext in ("dot", "gv"):
        try:
            with writing(path) as f:
                f.write(text)
        except OSError as e:
            raise InputError(f"-o {path}: {e.strerror}") from None
        return
    exe = shutil.which("dot")
    if exe is None:
        raise InputError(f"-o {path}: rendering needs Graphviz's `dot` program, which is not "
                         "installed", hint="install Graphviz (apt install graphviz, brew install "
                         "graphviz, conda install graphviz), or write DOT text with -o FILE.dot")
    try:
        with replacing(path) as tmp:
            try:
                proc = subprocess.run([exe, f"-T{ext}", "-o", tmp], input=text.encode("utf-8"),
                                      capture_output=True, timeout=seconds)
            except subprocess.TimeoutExpired:
                raise LimitError(f"-o {path}: Graphviz's dot took more than {seconds:.0f} s, "
                                 "the time the work budget leaves", hint="raise it with "
                                 "--max-work, draw fewer nodes with --max-nodes, or write DOT "
                                 "text with -o FILE.dot") from None
            if proc.returncode != 0:
                raise InputError(f"-o {path}: Graphviz's dot failed: "
                                 + proc.stderr.decode("utf-8", "replace").strip()[:500])
    except OSError as e:
        raise InputError(f"-o {path}: {e.strerror}") from None
