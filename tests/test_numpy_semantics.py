"""adcli promises numpy's names with numpy's meanings: every op that has a numpy
counterpart gives numpy's result shape and values on random shapes, or refuses the shapes
that numpy refuses (with a shape error, never an internal one)."""
import warnings

import numpy as np
import pytest

from adcli.errors import AdcliError
from adcli.graph import Graph
from adcli.ops import OPS

RNG = np.random.default_rng(2024)

# op name -> the numpy function it must agree with (attributes passed through)
NUMPY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum, "hypot": np.hypot,
    "atan2": np.arctan2, "logaddexp": np.logaddexp,
    "sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "mean": np.mean,
    "var": np.var, "std": np.std,
    "norm": lambda x, axis=None, keepdims=False: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
    "matmul": np.matmul, "dot": np.dot, "outer": np.outer,
    "trace": lambda x: np.trace(x, axis1=-2, axis2=-1),   # documented: the last two axes
    "det": np.linalg.det, "inv": np.linalg.inv, "solve": np.linalg.solve,
    "transpose": np.transpose, "reshape": np.reshape, "broadcast_to": np.broadcast_to,
    "concat": lambda *xs, axis=0: np.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: np.stack(xs, axis=axis),
}


def random_shape(max_dims=4):
    return tuple(int(d) for d in RNG.integers(1, 4, size=RNG.integers(0, max_dims + 1)))


def broadcastable(shape):
    """A shape that may or may not broadcast with `shape`."""
    out = [d if RNG.random() < 0.6 else int(RNG.choice([1, d, 2, 3])) for d in shape]
    return tuple(out[int(RNG.integers(0, len(out) + 1)):]) if RNG.random() < 0.3 else tuple(out)


def both(name, arrays, attrs):
    """(adcli's result or its error, numpy's result or its error)."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # var with too few elements
            want = NUMPY[name](*arrays, **attrs)
    except (ValueError, np.linalg.LinAlgError, IndexError, TypeError) as e:
        want = e
    g = Graph()
    try:
        with np.errstate(all="ignore"):
            got = g.emit(name, *[g.input(f"a{i}", a) for i, a in enumerate(arrays)], **attrs).value
    except AdcliError as e:
        got = e
    return got, want


def agree(name, arrays, attrs):
    got, want = both(name, arrays, attrs)
    shapes = [a.shape for a in arrays]
    if isinstance(want, Exception):
        assert isinstance(got, AdcliError), (name, shapes, attrs, "numpy refuses:", want)
        return
    assert not isinstance(got, Exception), (name, shapes, attrs, got)
    assert np.shape(got) == np.shape(want), (name, shapes, attrs)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"{name} {shapes} {attrs}")


def arrays_for(name, n=200):
    op = OPS[name]
    for _ in range(n):
        if op.kind == "elementwise":
            s = random_shape()
            shapes = [s, broadcastable(s)]
            if RNG.random() < 0.5:
                shapes.reverse()
            yield [RNG.uniform(0.5, 2.0, sh) for sh in shapes], {}
        elif op.kind == "reduction":
            s = random_shape()
            axis = None if not s or RNG.random() < 0.3 else int(RNG.integers(-len(s), len(s)))
            attrs = {"axis": axis, "keepdims": bool(RNG.random() < 0.5)}
            if name in ("var", "std") and RNG.random() < 0.3:
                attrs["ddof"] = 1
            yield [RNG.uniform(0.5, 2.0, s)], attrs
        elif name in ("matmul", "dot", "outer"):
            a, b = random_shape(3), random_shape(3)
            if a and b and RNG.random() < 0.7:    # make the inner dimensions agree, mostly
                b = b[:-2] + (a[-1],) + b[-1:] if len(b) >= 2 else (a[-1],)
            yield [RNG.normal(size=a), RNG.normal(size=b)], {}
        elif name in ("det", "inv", "trace"):
            n_ = int(RNG.integers(1, 4))
            s = random_shape(2) + (n_, n_ if RNG.random() < 0.8 else n_ + 1)
            yield [RNG.normal(size=s) + 3 * np.eye(s[-2], s[-1])], {}
        elif name == "solve":
            n_ = int(RNG.integers(1, 4))
            a = random_shape(2) + (n_, n_)
            b = (n_,) if RNG.random() < 0.4 else random_shape(2) + (n_, int(RNG.integers(1, 3)))
            yield [RNG.normal(size=a) + 3 * np.eye(n_), RNG.normal(size=b)], {}
        elif name == "transpose":
            s = random_shape()
            yield [RNG.normal(size=s)], {"axes": None if RNG.random() < 0.3 else tuple(
                int(i) for i in RNG.permutation(len(s)))}
        elif name == "reshape":
            s = random_shape()
            size = int(np.prod(s))
            target = [d for d in (1, 2, 3, 6) if size % d == 0]
            first = int(RNG.choice(target))
            yield [RNG.normal(size=s)], {"shape": (first, -1) if RNG.random() < 0.5 else (size // first, first)}
        elif name == "broadcast_to":
            s = random_shape(3)
            yield [RNG.normal(size=s)], {"shape": random_shape(1) + tuple(
                d if RNG.random() < 0.7 else 2 for d in s)}
        elif name in ("concat", "stack"):
            s = random_shape(3) or (2,)
            k = int(RNG.integers(1, 4))
            axis = int(RNG.integers(-len(s), len(s)))
            shapes = [tuple(d if (i != axis % len(s) or name == "stack") else int(RNG.integers(1, 4))
                            for i, d in enumerate(s)) for _ in range(k)]
            yield [RNG.normal(size=sh) for sh in shapes], {"axis": axis}


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_shapes_and_values_follow_numpy(name):
    for arrays, attrs in arrays_for(name):
        agree(name, arrays, attrs)


def test_dot_of_nd_arrays_is_numpys():
    a, b = RNG.normal(size=(2, 2, 3)), RNG.normal(size=(2, 3, 4))
    got, want = both("dot", [a, b], {})
    assert got.shape == want.shape == (2, 2, 2, 4)
    np.testing.assert_allclose(got, want, rtol=1e-12)
