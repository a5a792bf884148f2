"""Every op of the table at B points in one sweep, against B evaluations one point at a time.

For each op (public and internal; constants take no arrays) and each of its examples, a
graph traced at one point is evaluated with a batch axis on each array argument in turn
and on all of them, and must give what evaluating it at every point alone gives. Its
derivative programs (a VJP and a JVP built as graphs) must batch the same way, with B
points and with B tangents. The cases come from the table: an op without a batching
rule fails here.
"""
import numpy as np
import pytest

from adcli import api, autodiff
from adcli.evaluate import GuardFailed, NotBatchable, evaluate
from adcli.graph import Graph, reachable
from adcli.ops import OPS, REQUIRED

B = 3
TESTED_ELSEWHERE = {"custom"}     # a user's rule, from a script: test_custom_rules_batch
RNG = np.random.default_rng(11)
# the elementwise ops' shapes: the same shape, a broadcast row, an outer broadcast, a scalar
ELEMENTWISE = [((4,),), ((2, 3),), ((2, 3), (3,)), ((3, 1), (1, 4)), ((), (3,))]


def examples(op):
    """(argument shapes, attributes) from the op's entry."""
    if op.kind in ("elementwise", "comparison"):
        n = len(op.args)
        return [(tuple(s[i % len(s)] for i in range(n)), {}) for s in ELEMENTWISE
                if len(s) == 1 or n > 1]
    return [(s if isinstance(s[0], tuple) else (s,), attrs) for s, attrs in op.examples]


def sample(op, i, shape, lead=()):
    """Values inside the op's sampling domain; square matrices diagonally dominant, so that
    det, inv and solve are well conditioned at every point."""
    lo, hi = op.domain[min(i, len(op.domain) - 1)]
    x = RNG.uniform(lo, hi, size=lead + tuple(shape))
    if len(shape) >= 2 and shape[-1] == shape[-2]:
        x = x + 3.0 * np.eye(shape[-1])
    return x


def cases():
    for op in OPS.values():
        if op.kind == "constant":
            continue
        for k, (shapes, attrs) in enumerate(examples(op)):
            n = len(shapes)
            for flags in [tuple(j == i for j in range(n)) for i in range(n)] + (
                    [(True,) * n] if n > 1 else []):
                tag = "".join("b" if f else "-" for f in flags)
                yield pytest.param(op.name, shapes, attrs, flags, id=f"{op.name}-{k}-{tag}")


def traced(op, shapes, attrs, flags):
    """A graph of the op traced at point 0, and each argument's values: B points for the
    batched ones, one value for the others."""
    values = [sample(op, i, s, (B,) if f else ()) for i, (s, f) in enumerate(zip(shapes, flags))]
    g = Graph()
    ins = [g.input(f"a{i}", v[0] if f else v) for i, (v, f) in enumerate(zip(values, flags))]
    with np.errstate(all="ignore"):
        out = g.emit(op.name, *ins, **attrs)
    return g, ins, out, values


def depends(node, inputs):
    ids = set(reachable([node]))
    return any(i.id in ids for i in inputs)


def check_batches(g, outputs, inputs, batched):
    """Evaluate `outputs` with the `batched` inputs carrying B points, and one point at a
    time; the two must agree (outputs that depend on no batched input are broadcast)."""
    many = {n.id for n in batched}         # (ids: == on nodes records a comparison)
    with np.errstate(all="ignore"):
        swept = evaluate(g, outputs, inputs, batch=B, batched=batched)
        alone = [evaluate(g, outputs, {n: v[b] if n.id in many else v for n, v in inputs.items()})
                 for b in range(B)]
    for o in outputs:
        want = np.stack([np.asarray(a[o.id]) for a in alone])
        got = np.asarray(swept[o.id])
        if not depends(o, batched):
            got = np.broadcast_to(got, want.shape)
        assert got.shape == want.shape, (o, got.shape, want.shape)
        np.testing.assert_allclose(got.astype(float), want.astype(float), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, shapes, attrs, flags", list(cases()))
def test_every_op_batches(name, shapes, attrs, flags):
    op = OPS[name]
    g, ins, out, values = traced(op, shapes, attrs, flags)
    check_batches(g, [out], dict(zip(ins, values)), [n for n, f in zip(ins, flags) if f])


@pytest.mark.parametrize("name, shapes, attrs, flags", [c for c in cases()
                                                         if OPS[c.values[0]].differentiable])
def test_derivative_programs_batch(name, shapes, attrs, flags):
    """The VJP and JVP of the op, recorded as programs, at B points; the JVP at B tangents
    (of the batched arguments), as a Jacobian's columns are; and the JVP of the VJP (a
    Hessian times B vectors)."""
    op = OPS[name]
    g, ins, out, values = traced(op, shapes, attrs, flags)
    inputs = dict(zip(ins, values))
    batched = [n for n, f in zip(ins, flags) if f]
    w = g.const(RNG.normal(size=out.shape))
    grads = autodiff.vjp(g, out, ins, cotangent=w, create_graph=True)
    tangents = [g.input(f"t{i}", RNG.normal(size=n.shape)) for i, n in enumerate(batched)]
    tangent = autodiff.jvp(g, out, batched, tangents, create_graph=True)
    outputs = [n for n in grads + [tangent] if n is not None]
    check_batches(g, outputs, inputs, batched)
    spread = {t: RNG.normal(size=(B,) + t.shape) for t in tangents}
    if tangent is not None:
        check_batches(g, [tangent], {**inputs, **spread}, batched + tangents)
    # forward over reverse: Hessian-vector products, B points with B tangents
    hv = [autodiff.jvp(g, gr, batched, tangents, create_graph=True) for gr in grads
          if gr is not None and depends(gr, batched)]
    hv = [h for h in hv if h is not None]
    check_batches(g, hv, {**inputs, **spread}, batched + tangents)


def test_custom_rules_batch():
    """A script function with a backward block: its value and its rule's derivative
    program at B points."""
    with open("samples/fancy.ad") as f:
        t = api.trace_script(f.read(), {})
    a, b = t.inputs["a"], t.inputs["b"]
    assert any(n.op is not None and n.op.name == "custom" for n in t.graph.nodes)
    grads = autodiff.vjp(t.graph, t.output, [a, b], create_graph=True)
    inputs = {a: RNG.uniform(0.1, 1.0, B), b: RNG.uniform(0.1, 1.0, B)}
    check_batches(t.graph, [t.output] + grads, inputs, [a, b])
    check_batches(t.graph, [t.output] + grads, {a: inputs[a]}, [a])


def test_a_guard_names_the_points_where_the_program_does_not_apply():
    """`if x > 0` was taken at the traced point: batched points on the other side are
    refused, by number, and the ones on the same side evaluate."""
    t = api.trace_script("input x = 1\nif x > 0:\n    y = x**2\nelse:\n    y = -x\nreturn y\n", {})
    (x,) = t.inputs.values()
    (guard,) = [t.graph.nodes[i] for i in t.graph.guards]
    assert guard.op.name == "gt"
    outputs = [t.output]          # the condition is checked though the value does not read it
    with pytest.raises(GuardFailed) as err:
        evaluate(t.graph, outputs, {x: np.array([2.0, -1.0, 0.5, -3.0])}, batch=4, batched=[x])
    assert list(err.value.points) == [1, 3]
    res = evaluate(t.graph, outputs, {x: np.array([2.0, 0.5, 3.0])}, batch=3, batched=[x])
    np.testing.assert_allclose(res[t.output.id], [4.0, 0.25, 9.0])


def test_a_batch_keeps_what_is_asked_and_frees_the_rest():
    g = Graph()
    x = g.input("x", np.ones(4))
    s = g.emit("sin", x)
    y = g.emit("sum", g.emit("mul", s, s))
    res = evaluate(g, [y], {x: RNG.normal(size=(B, 4))}, batch=B, batched=[x], keep=[s])
    assert set(res) == {y.id, s.id} and res[s.id].shape == (B, 4) and res[y.id].shape == (B,)


def test_a_batch_counts_its_memory_b_times():
    """A point's values fit in the memory limit, B points' do not: refused before the op."""
    from adcli.errors import LimitError
    g = Graph()
    x = g.input("x", np.ones(1000))
    y = g.emit("exp", x)
    g.limits.max_memory = g.held + 8 * 1000 * 50
    evaluate(g, [y], {x: np.ones(1000)})                       # one point fits
    with pytest.raises(LimitError, match="memory"):
        evaluate(g, [y], {x: np.ones((100, 1000))}, batch=100, batched=[x])


def test_an_op_without_a_rule_is_refused_not_looped(monkeypatch):
    g = Graph()
    x = g.input("x", np.ones((2, 2)))
    y = g.emit("det", x)
    monkeypatch.setattr(OPS["det"], "batch", None)
    with pytest.raises(NotBatchable, match="det"):
        evaluate(g, [y], {x: np.ones((B, 2, 2))}, batch=B, batched=[x])


def test_every_op_has_a_batching_rule_and_cases():
    for op in OPS.values():
        if op.kind != "constant" and op.expand is None:
            assert op.broadcasts or op.batch is not None, op.name
        if op.kind != "constant" and op.name not in TESTED_ELSEWHERE:
            assert examples(op), op.name


def shape_cases():
    for op in OPS.values():
        if op.kind == "constant" or op.name in TESTED_ELSEWHERE:
            continue
        found = examples(op)
        required = any(v is REQUIRED for v in op.attrs.values())
        if op.arity == 1 and op.kind in ("reduction", "shape", "linalg") and not required:
            # a number where the examples have arrays: numpy's rules for 0-d arrays differ
            found = found + [((), {}), ((), {"axis": 0})] * ("axis" in op.attrs) + [((), {})]
        for k, (shapes, attrs) in enumerate(found):
            shapes = shapes if shapes and isinstance(shapes[0], tuple) else (shapes,)
            yield pytest.param(op.name, shapes, attrs, id=f"{op.name}-{k}")


@pytest.mark.parametrize("name,shapes,attrs", list(shape_cases()))
def test_the_shape_rule_says_what_the_forward_rule_makes(name, shapes, attrs):
    """A node's shape and dtype come from its op's shape rule before anything runs; the
    evaluator's value must have them (or both must refuse the arguments)."""
    from adcli.errors import AdcliError
    from adcli.graph import forward
    op = OPS[name]
    values = [sample(op, i, s) for i, s in enumerate(shapes)]
    if op.selects:
        values[0] = values[0] > 0
    g = Graph()
    xs = [g.input(f"x{i}", v) for i, v in enumerate(values)]
    try:
        node = g.emit(name, *xs, **attrs)
    except AdcliError:
        with pytest.raises(AdcliError):
            forward(op, np, [g.values[x.id] for x in xs], attrs, g.dtype)
        return
    value = evaluate(g, [node])[node.id]
    assert np.shape(value) == node.shape
    assert np.asarray(value).dtype == node.dtype
