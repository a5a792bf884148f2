"""The traced program evaluated again: other points, batches, guards, freed values.

What a user of the library relies on: a program traced once gives at other inputs what
tracing there gives, a batch of points what the points one by one give, a script whose
branches go another way says so instead of answering for the wrong path, and evaluating
does not keep what no later step reads.
"""
from pathlib import Path

import numpy as np
import pytest

from adcli import api
from adcli.evaluate import GuardFailed, evaluate
from adcli.graph import Limits

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def trace_sample(name):
    path = SAMPLES / name
    return api.trace_script(path.read_text(), {}, filename=str(path)), str(path)


def recorded(traced):
    return {name: traced.graph.value(node) for name, node in traced.inputs.items()}


def test_a_program_at_other_inputs_gives_what_tracing_there_gives():
    traced, path = trace_sample("two_layer_relu.ad")
    values = recorded(traced)
    grad = traced.gradient_program(["W1", "b2"])
    rng = np.random.default_rng(3)
    for _ in range(5):
        moved = {**values, "W1": rng.standard_normal(values["W1"].shape),
                 "b2": rng.standard_normal(values["b2"].shape)}
        again = api.trace_script(open(path).read(), moved, filename=path)
        expected = api.gradient(again, ["W1", "b2"])
        got = traced.at({"W1": moved["W1"], "b2": moved["b2"]}, outputs=[traced.output] + grad)
        assert got[traced.output.id] == pytest.approx(expected.value, rel=1e-12)
        np.testing.assert_allclose(got[grad[0].id], expected.grad["W1"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got[grad[1].id], expected.grad["b2"], rtol=1e-12, atol=1e-15)


def test_a_batch_of_points_gives_what_the_points_give_one_by_one():
    traced = api.trace("sum(log1p(x * x) * y) + max(x)", {"x": np.ones(5), "y": 2.0})
    grad = traced.gradient_program()
    xs = np.random.default_rng(4).standard_normal((7, 5))
    ys = np.linspace(-1.0, 1.0, 7)
    batch = traced.at({"x": xs, "y": ys}, outputs=[traced.output] + grad, batch=7)
    for b in range(7):
        one = traced.at({"x": xs[b], "y": ys[b]}, outputs=[traced.output] + grad)
        for node in [traced.output] + grad:
            np.testing.assert_allclose(batch[node.id][b], one[node.id], rtol=1e-13)


def test_a_script_taking_another_branch_is_refused_not_answered():
    source = "input x = 1\nif x > 0:\n    y = x * x\nelse:\n    y = -x\nreturn y\n"
    traced = api.trace_script(source, {})
    assert traced.at({"x": 3.0})[traced.output.id] == 9.0
    with pytest.raises(GuardFailed) as err:
        traced.at({"x": -2.0})
    assert err.value.pos[0] == 2               # the condition's line
    with pytest.raises(GuardFailed) as err:
        traced.at({"x": np.array([2.0, -1.0, 4.0])}, batch=3)
    assert list(err.value.points) == [1]


def test_a_loop_whose_length_depends_on_the_value_is_guarded():
    traced, _ = trace_sample("doubling.ad")
    x = recorded(traced)["x"]
    same = traced.at({"x": x * 1.01})            # the same number of doublings
    assert np.isfinite(same[traced.output.id])
    with pytest.raises(GuardFailed):
        traced.at({"x": x * 100.0})              # fewer doublings: another program


def test_evaluating_frees_the_values_no_later_step_reads():
    # 200 steps of 80 KB arrays: together 16 MB, one at a time well under 2 MB
    source = "input x\ns = x\nfor i in range(200):\n    s = sin(s) + x\nreturn sum(s)\n"
    limits = Limits(max_memory=2 * 10**6)
    traced = api.trace_script(source, {"x": np.linspace(0.0, 1.0, 10_000)}, limits=limits)
    value = api.output_value(traced)
    s = np.linspace(0.0, 1.0, 10_000)
    x = s.copy()
    for _ in range(200):
        s = np.sin(s) + x
    assert value == pytest.approx(s.sum(), rel=1e-12)
    again = evaluate(traced.graph, [traced.output], {traced.inputs["x"]: x / 2})
    assert np.isfinite(again[traced.output.id])


def test_a_custom_rule_is_recorded_once():
    traced, _ = trace_sample("fancy.ad")
    api.gradient(traced)
    size = len(traced.graph.nodes)
    for _ in range(3):
        api.gradient(traced)
    assert len(traced.graph.nodes) == size


def test_a_large_elementwise_sum_is_differentiated_by_chunks_to_the_same_numbers():
    # above chunks.LARGE elements the gradient goes 65,536 elements at a time through the
    # one-element program and its derivative program; it must still be the derivative
    from adcli import chunks
    x = np.random.default_rng(5).standard_normal(chunks.LARGE + 3)
    expr = "sum(sin(x) * exp(-x * x) + 3 * x + log1p(x * x))"
    traced = api.trace(expr, {"x": x})
    assert chunks.elementwise_sum(traced.graph, traced.output, [traced.inputs["x"]]) is not None
    res = api.gradient(traced)
    closed = (np.cos(x) - 2 * x * np.sin(x)) * np.exp(-x * x) + 3 + 2 * x / (1 + x * x)
    np.testing.assert_allclose(res.grad["x"], closed, rtol=1e-12, atol=1e-14)
    assert float(res.value) == pytest.approx(
        np.sum(np.sin(x) * np.exp(-x * x) + 3 * x + np.log1p(x * x)), rel=1e-12)
