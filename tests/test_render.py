"""Plain text of arrays: written in chunks, the same text as all at once."""
import io

import numpy as np
import pytest

from adcli import render


@pytest.mark.parametrize("shape", [(20,), (3, 4, 5), (2, 30), (30, 2), (1, 1, 40), (2, 3, 0), (4, 1, 3, 2)])
def test_chunked_writing_gives_the_same_text(shape, monkeypatch):
    monkeypatch.setattr(render, "CHUNK", 7)
    a = np.arange(int(np.prod(shape)), dtype=float).reshape(shape) / 3
    a.reshape(-1)[:3] = [np.nan, np.inf, -np.inf][: a.size]
    out = io.StringIO()
    render.write_array(a, out)
    assert out.getvalue() == render.plain_array(a)
    # and it reads back as the nested lists of the array
    if a.size:
        import json
        back = np.array(json.loads(out.getvalue().replace("nan", "NaN").replace("-inf", "-Infinity")
                                   .replace("inf", "Infinity")))
        np.testing.assert_array_equal(back, a)


def test_plain_numbers_are_the_shortest_text_that_reads_back():
    assert render.plain_array(np.array([0.1, 1.16, 1e-20, 10.0])) == "[0.1, 1.16, 1e-20, 10.0]"
    assert render.plain_array(np.array([True, False])) == "[true, false]"
