"""Gradients of scripts of numbers: the reverse walk that serves unrolled scalar loops.

A program of numbers whose values the trace has is walked back without arrays, memory
accounting or forward values to compute (autodiff._walk_numbers). What a user relies on:
it gives the derivatives the general walk gives, comparisons used as numbers included,
custom backward rules are applied, and it is charged against --max-work like the rest.
"""
import math

import pytest

from adcli import api, autodiff
from adcli.errors import LimitError
from adcli.graph import OP_WORK, Limits


@pytest.fixture
def walks(monkeypatch):
    """Counts the calls of the fast walk, so that a test knows it ran."""
    calls = []
    real = autodiff._walk_numbers

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(autodiff, "_walk_numbers", counted)
    return calls


def gradient(source, **values):
    traced = api.trace_script(source, values)
    res = api.gradient(traced)
    return float(res.value), {k: float(v) for k, v in res.grad.items()}


def general(source, **values):
    """The same derivatives from the general walk (adjoints keeps every cotangent)."""
    traced = api.trace_script(source, values)
    keep = autodiff.adjoints(traced.graph, traced.output)
    return {name: float(keep[node.id]) for name, node in traced.inputs.items()}


LOOP = """input x = 0.5
y = x
for i in range(200):
    y = y - 0.01 * sin(y) * y + 0.001 * y * y
return y
"""


def test_an_unrolled_loop_has_the_derivative_of_its_recurrence(walks):
    y, dy = 0.5, 1.0                 # the recurrence and its derivative, forward mode by hand
    for _ in range(200):
        s = math.sin(y)
        dy = dy - 0.01 * (math.cos(y) * dy * y + s * dy) + 0.001 * 2 * y * dy
        y = y - 0.01 * s * y + 0.001 * y * y
    value, grad = gradient(LOOP)
    assert walks, "the fast walk did not run"
    assert value == pytest.approx(y, rel=1e-13)
    assert grad["x"] == pytest.approx(dy, rel=1e-12)
    assert general(LOOP)["x"] == pytest.approx(grad["x"], rel=1e-14)


def test_comparisons_enter_arithmetic_as_numbers(walks):
    # x*(x > 0) + (x < 1)*x*x*y: the comparisons are steps (derivative 0), x and y are not
    src = "input x = 0.5\ninput y = 3.0\nreturn x * (x > 0) + (x < 1) * x * x * y + y / x\n"
    value, grad = gradient(src)
    assert walks
    assert value == pytest.approx(0.5 + 0.25 * 3 + 6.0)
    assert grad["x"] == pytest.approx(1 + 2 * 0.5 * 3 - 3 / 0.25)
    assert grad["y"] == pytest.approx(0.25 + 2.0)
    assert general(src) == pytest.approx(grad)


def test_a_custom_backward_rule_is_applied(walks):
    src = """input a = 0.5
input b = 1.5
def fancy(a, b):
    return a * sin(b)
backward fancy(a, b, out, g):
    return 2 * g * sin(b), g * a * cos(b)
return fancy(a, b) + a * b
"""
    _, grad = gradient(src)
    assert walks
    # the rule's d/da is twice the true one: the walk uses the rule, not the body
    assert grad["a"] == pytest.approx(2 * math.sin(1.5) + 1.5)
    assert grad["b"] == pytest.approx(0.5 * math.cos(1.5) + 0.5)


def test_the_walk_is_charged_against_the_work_budget():
    traced = api.trace_script(LOOP, {}, limits=Limits(max_work=2_000 * (OP_WORK + 1)))
    with pytest.raises(LimitError, match="derivative"):
        api.gradient(traced)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_zero_times_an_infinity_is_redone_nan_safe(walks):
    # d/dx of 0*log(x) at x = 0: the plain product gives 0*inf = nan; adcli's convention
    # (a zero factor wins) gives 0, through the NaN-safe second walk
    value, grad = gradient("input x = 0.0\nz = 0 * x\nreturn z * log(x) + x\n")
    assert len(walks) == 2               # the plain walk, then the NaN-safe one
    assert math.isnan(value)             # 0 * log(0) is 0 * -inf
    assert grad["x"] == 1.0
