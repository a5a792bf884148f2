"""Colourings of sparsity patterns, and a sparse matrix recovered from compressed sweeps.

A Jacobian with k colours of columns comes back exactly from k forward sweeps (J @ S), one
with k colours of rows from k reverse sweeps (S.T @ J), and a Hessian with a star colouring
from H @ S; the colourings are checked against their definitions and, on small graphs, the
star property by enumerating every path on four vertices."""
import itertools

import numpy as np
import pytest

from adcli import coloring
from adcli.coloring import (column_colors, recover_columns, recover_rows, recover_star,
                            row_colors, seed_matrix, star_colors)
from adcli.pattern import Pattern

RNG = np.random.default_rng(12)


def random_pattern(m, n, density, rng=RNG):
    return Pattern.from_dense(rng.random((m, n)) < density)


def symmetric(mask, diagonal=True):
    mask = np.asarray(mask, dtype=bool)
    mask = mask | mask.T
    if diagonal:
        mask = mask | np.eye(mask.shape[0], dtype=bool)
    return Pattern.from_dense(mask)


def band(m, n, lower, upper):
    i, j = np.indices((m, n))
    return Pattern.from_dense((j - i <= upper) & (i - j <= lower))


def arrowhead(n):
    mask = np.eye(n, dtype=bool)
    mask[0, :] = mask[:, 0] = True
    return Pattern.from_dense(mask)


def block_diagonal(sizes, rng=RNG):
    n = sum(sizes)
    mask = np.zeros((n, n), dtype=bool)
    at = 0
    for s in sizes:
        mask[at:at + s, at:at + s] = rng.random((s, s)) < 0.6
        at += s
    return Pattern.from_dense(mask)


def with_empty_lines(m, n):
    mask = RNG.random((m, n)) < 0.3
    mask[::3, :] = False
    mask[:, 1::4] = False
    return Pattern.from_dense(mask)


JACOBIANS = {
    "random 12x9": random_pattern(12, 9, 0.25),
    "random 30x40 sparse": random_pattern(30, 40, 0.06),
    "random 40x25 dense-ish": random_pattern(40, 25, 0.5),
    "random 200x150 (over 64 colours)": random_pattern(200, 150, 0.45),
    "tridiagonal": band(10, 10, 1, 1),
    "band 15x12 (2 below, 3 above)": band(15, 12, 2, 3),
    "arrowhead": arrowhead(9),
    "block diagonal": block_diagonal([3, 1, 4, 2]),
    "empty rows and columns": with_empty_lines(14, 11),
    "all empty": Pattern.from_dense(np.zeros((4, 5))),
    "0 x 6": Pattern.from_dense(np.zeros((0, 6))),
    "6 x 0": Pattern.from_dense(np.zeros((6, 0))),
    "single column": Pattern.from_dense(RNG.random((7, 1)) < 0.6),
    "single row": Pattern.from_dense(np.ones((1, 5))),
    "dense 6x6": Pattern.from_dense(np.ones((6, 6))),
}

HESSIANS = {
    "random symmetric 12": symmetric(RNG.random((12, 12)) < 0.15),
    "random symmetric 30": symmetric(RNG.random((30, 30)) < 0.05),
    "random symmetric 16, some diagonal missing": symmetric(RNG.random((16, 16)) < 0.12,
                                                            diagonal=False),
    "tridiagonal": band(12, 12, 1, 1),
    "pentadiagonal": band(12, 12, 2, 2),
    "arrowhead": arrowhead(10),
    "block diagonal": symmetric(block_diagonal([4, 2, 3, 1]).to_dense()),
    "diagonal": Pattern.from_dense(np.eye(5)),
    "empty 4x4": Pattern.from_dense(np.zeros((4, 4))),
    "0 x 0": Pattern.from_dense(np.zeros((0, 0))),
    "single entry": Pattern.from_dense(np.ones((1, 1))),
    "dense 5x5": Pattern.from_dense(np.ones((5, 5))),
    "path of 3 and a star": symmetric(np.array([[0, 1, 0, 0, 0, 0],
                                                [0, 0, 1, 0, 0, 0],
                                                [0, 0, 0, 0, 0, 0],
                                                [0, 0, 0, 0, 1, 1],
                                                [0, 0, 0, 0, 0, 0],
                                                [0, 0, 0, 0, 0, 0]])),
}


def matrix_with(pattern, rng=RNG, symmetric=False):
    """A random dense matrix whose nonzeros are exactly the pattern's entries."""
    values = rng.uniform(0.5, 2.0, pattern.shape) * rng.choice([-1.0, 1.0], pattern.shape)
    if symmetric:
        values = np.triu(values) + np.triu(values, 1).T
    return np.where(pattern.to_dense(), values, 0.0)


def assert_colours(colors, count):
    """Colours are 0..k-1, one per vertex, each used."""
    assert colors.dtype == np.int64 and colors.shape == (count,)
    if count:
        assert set(colors.tolist()) == set(range(int(colors.max()) + 1))


def structurally_orthogonal(dense_mask, colors):
    """No row of the mask has two of its columns in one colour."""
    return all(len(set(colors[np.flatnonzero(row)].tolist())) == np.count_nonzero(row)
               for row in dense_mask)


def is_star_colouring(pattern, colors):
    """Proper on the adjacency graph (diagonal ignored) and every path on four vertices
    uses three colours or more: checked by enumerating all such paths."""
    adj = pattern.to_dense() & ~np.eye(pattern.shape[0], dtype=bool)
    n = adj.shape[0]
    for i, j in zip(*np.nonzero(adj)):
        if colors[i] == colors[j]:
            return False
    nbrs = [np.flatnonzero(adj[v]).tolist() for v in range(n)]
    for a in range(n):
        for b in nbrs[a]:
            for c in nbrs[b]:
                if c == a:
                    continue
                for d in nbrs[c]:
                    if d in (a, b):
                        continue
                    if len({colors[a], colors[b], colors[c], colors[d]}) < 3:
                        return False
    return True


def has_two_coloured_path_on_four(pattern, colors):
    """Whether some path a - b - c - d has two colours: an edge b - c with another neighbour
    of b coloured like c and another neighbour of c coloured like b (counted, not
    enumerated, for large graphs)."""
    rows, cols = pattern.coo()
    off = rows != cols
    rows, cols = rows[off], cols[off]
    k = int(colors.max()) + 1
    count = np.bincount(rows * k + colors[cols], minlength=pattern.shape[0] * k)
    return bool(np.any((count[rows * k + colors[cols]] >= 2)
                       & (count[cols * k + colors[rows]] >= 2)))


@pytest.mark.parametrize("name", JACOBIANS)
def test_column_colours_are_structurally_orthogonal_and_recover_the_jacobian(name):
    pattern = JACOBIANS[name]
    m, n = pattern.shape
    colors = column_colors(pattern)
    assert_colours(colors, n)
    assert structurally_orthogonal(pattern.to_dense(), colors)
    jac = matrix_with(pattern)
    compressed = jac @ seed_matrix(colors)
    assert compressed.shape == (m, int(colors.max()) + 1 if n else 0)
    rows, cols = pattern.coo()
    np.testing.assert_allclose(recover_columns(pattern, colors, compressed), jac[rows, cols],
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", JACOBIANS)
def test_row_colours_are_structurally_orthogonal_and_recover_the_jacobian(name):
    pattern = JACOBIANS[name]
    m, n = pattern.shape
    colors = row_colors(pattern)
    assert_colours(colors, m)
    assert structurally_orthogonal(pattern.to_dense().T, colors)
    jac = matrix_with(pattern)
    compressed = seed_matrix(colors).T @ jac
    rows, cols = pattern.coo()
    np.testing.assert_allclose(recover_rows(pattern, colors, compressed), jac[rows, cols],
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", HESSIANS)
def test_star_colours_have_the_star_property_and_recover_the_hessian(name):
    pattern = HESSIANS[name]
    n = pattern.shape[0]
    colors = star_colors(pattern)
    assert_colours(colors, n)
    assert is_star_colouring(pattern, colors)
    hess = matrix_with(pattern, symmetric=True)
    rows, cols = pattern.coo()
    np.testing.assert_allclose(recover_star(pattern, colors, hess @ seed_matrix(colors)),
                               hess[rows, cols], rtol=1e-12, atol=0)


def test_many_random_patterns_colour_validly_and_recover_exactly():
    rng = np.random.default_rng(5)
    for trial in range(60):
        m, n = rng.integers(1, 25, size=2)
        pattern = random_pattern(m, n, rng.uniform(0.02, 0.6), rng)
        jac = matrix_with(pattern, rng)
        rows, cols = pattern.coo()
        colors = column_colors(pattern)
        assert structurally_orthogonal(pattern.to_dense(), colors)
        assert np.allclose(recover_columns(pattern, colors, jac @ seed_matrix(colors)),
                           jac[rows, cols], rtol=1e-12, atol=0)
        colors = row_colors(pattern)
        assert np.allclose(recover_rows(pattern, colors, seed_matrix(colors).T @ jac),
                           jac[rows, cols], rtol=1e-12, atol=0)
        sym = symmetric(rng.random((n, n)) < rng.uniform(0.02, 0.4), diagonal=trial % 2 == 0)
        colors = star_colors(sym)
        assert is_star_colouring(sym, colors), (trial, colors)
        hess = matrix_with(sym, rng, symmetric=True)
        r, c = sym.coo()
        assert np.allclose(recover_star(sym, colors, hess @ seed_matrix(colors)),
                           hess[r, c], rtol=1e-12, atol=0)


def test_star_colourings_of_graphs_with_hubs():
    """Hubs (a vertex next to many) are where a star colouring's two-coloured paths hide."""
    rng = np.random.default_rng(8)
    for trial in range(40):
        n = int(rng.integers(5, 40))
        mask = rng.random((n, n)) < rng.uniform(0.0, 0.1)
        for hub in rng.integers(0, n, size=int(rng.integers(1, 4))):
            mask[hub, rng.random(n) < 0.7] = True
        sym = symmetric(mask)
        colors = star_colors(sym)
        assert is_star_colouring(sym, colors), trial
        hess = matrix_with(sym, rng, symmetric=True)
        r, c = sym.coo()
        assert np.allclose(recover_star(sym, colors, hess @ seed_matrix(colors)),
                           hess[r, c], rtol=1e-12, atol=0)


def star_routines(pattern):
    """Both star colourings star_colors chooses from: in vectorised rounds, and one vertex
    at a time with the exact test of Gebremedhin, Manne and Pothen."""
    ptr, nbr = coloring._adjacency(pattern)
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(ptr))
    return {"rounds": coloring._greedy_star_rounds(ptr, nbr, rows),
            "one at a time": coloring._greedy_star(ptr, nbr)}


def test_both_star_colourings_have_the_star_property():
    rng = np.random.default_rng(21)
    for trial in range(80):
        n = int(rng.integers(2, 30))
        mask = rng.random((n, n)) < rng.uniform(0.02, 0.4)
        if trial % 3 == 0:                               # hubs
            mask[rng.integers(0, n), rng.random(n) < 0.8] = True
        sym = symmetric(mask, diagonal=trial % 2 == 0)
        if sym.nnz == sym.shape[0]:
            continue
        for name, colors in star_routines(sym).items():
            assert is_star_colouring(sym, colors), (trial, name)
            assert not has_two_coloured_path_on_four(sym, colors)


def test_a_large_star_colouring_recovers_the_hessian():
    """Beyond the size where the one-at-a-time greedy runs too."""
    rng = np.random.default_rng(4)
    n = 3000
    rows = np.repeat(np.arange(n), 4)
    cols = rng.integers(0, n, rows.size)
    hubs = np.repeat(rng.integers(0, n, 3), 200)
    rows, cols = np.r_[rows, hubs], np.r_[cols, rng.integers(0, n, hubs.size)]
    sym = Pattern.from_pairs((n, n), np.r_[rows, cols, np.arange(n)],
                             np.r_[cols, rows, np.arange(n)])
    assert sym.nnz - n > coloring._STAR_LOOP_LIMIT
    colors = star_colors(sym)
    assert not has_two_coloured_path_on_four(sym, colors)
    assert colors.max() + 1 < column_colors(sym).max() + 1   # symmetry saves colours
    r, c = sym.coo()
    vals = rng.uniform(1, 2, r.size)
    upper = r <= c                                           # a symmetric H from its upper half
    h = np.zeros((n, n))
    h[r[upper], c[upper]] = vals[upper]
    h = np.triu(h) + np.triu(h, 1).T
    np.testing.assert_allclose(recover_star(sym, colors, h @ seed_matrix(colors)), h[r, c],
                               rtol=1e-12, atol=0)


def test_colour_counts_on_known_patterns():
    n = 50
    assert column_colors(band(n, n, 0, 0)).max() + 1 == 1           # diagonal
    assert column_colors(band(n, n, 1, 1)).max() + 1 == 3           # tridiagonal
    assert column_colors(band(n - 1, n, 0, 1)).max() + 1 == 2       # bidiagonal
    assert row_colors(band(n, n, 1, 1)).max() + 1 == 3
    assert column_colors(Pattern.from_dense(np.ones((4, n)))).max() + 1 == n   # dense
    assert column_colors(arrowhead(n)).max() + 1 == n               # a full row
    assert star_colors(arrowhead(n)).max() + 1 == 2                 # symmetry pays
    assert star_colors(band(n, n, 0, 0)).max() + 1 == 1
    assert star_colors(band(n, n, 1, 1)).max() + 1 == 3             # a path needs 3
    for b in (1, 2, 3):                                             # full bands: 2b + 1
        colors = star_colors(band(n, n, b, b))
        assert colors.max() + 1 == 2 * b + 1
        assert is_star_colouring(band(n, n, b, b), colors)
    assert star_colors(Pattern.from_dense(np.ones((6, 6)))).max() + 1 == 6


def test_the_batched_rounds_give_the_one_at_a_time_greedy_colouring(monkeypatch):
    """Colouring many columns per round must not change the greedy's result: the same
    patterns coloured with every column on its own (the thin-round fallback from the
    start) give the same colours."""
    patterns = [random_pattern(300, 200, 0.02), random_pattern(200, 150, 0.45),
                JACOBIANS["empty rows and columns"], band(40, 40, 2, 1)]
    # a band with an extra entry is not caught by the band shortcut
    mask = band(40, 40, 2, 1).to_dense()
    mask[3, 30] = True
    patterns.append(Pattern.from_dense(mask))
    monkeypatch.setattr(coloring, "_THIN_ROUND", 0)            # never thin
    batched = [column_colors(p) for p in patterns]
    monkeypatch.setattr(coloring, "_THIN_ROUND", 10**9)        # always thin,
    monkeypatch.setattr(coloring, "_THIN_ROUNDS", -1)          # so one at a time
    single = [column_colors(p) for p in patterns]
    for a, b in zip(batched, single):
        np.testing.assert_array_equal(a, b)


def test_the_batched_star_rounds_give_the_one_at_a_time_result(monkeypatch):
    rng = np.random.default_rng(3)
    graphs = [symmetric(rng.random((60, 60)) < 0.08), arrowhead(30), band(40, 40, 2, 2),
              symmetric(rng.random((60, 60)) < 0.3)]
    def rounds(p):
        ptr, nbr = coloring._adjacency(p)
        return coloring._greedy_star_rounds(ptr, nbr, np.repeat(np.arange(p.shape[0]),
                                                                np.diff(ptr)))
    monkeypatch.setattr(coloring, "_THIN_ROUND", 0)
    batched = [rounds(p) for p in graphs]
    monkeypatch.setattr(coloring, "_THIN_ROUND", 10**9)
    monkeypatch.setattr(coloring, "_THIN_ROUNDS", -1)
    for p, colors in zip(graphs, batched):
        np.testing.assert_array_equal(rounds(p), colors)
        assert is_star_colouring(p, colors)


def test_recover_star_refuses_a_colouring_that_is_not_a_star_colouring():
    path = band(4, 4, 1, 1)              # 0 - 1 - 2 - 3, two colours: a two-coloured path
    colors = np.array([0, 1, 0, 1])
    hess = matrix_with(path, symmetric=True)
    with pytest.raises(RuntimeError, match="not a star colouring"):
        recover_star(path, colors, hess @ seed_matrix(colors))


def test_star_colouring_needs_a_symmetric_square_pattern():
    with pytest.raises(ValueError, match="symmetric"):
        star_colors(Pattern.from_dense(np.triu(np.ones((4, 4)))))
    with pytest.raises(ValueError, match="square"):
        star_colors(Pattern.from_dense(np.ones((3, 4))))


def test_recovery_checks_the_compressed_shape():
    pattern = band(5, 5, 1, 1)
    colors = column_colors(pattern)
    with pytest.raises(ValueError, match="shape"):
        recover_columns(pattern, colors, np.zeros((5, 5)))


def test_seed_matrix():
    np.testing.assert_array_equal(seed_matrix([0, 2, 1, 0]),
                                  [[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    assert seed_matrix([], dtype=np.float32).shape == (0, 0)


def test_large_banded_patterns_colour_at_once():
    n = 100_000
    i = np.arange(n)
    diagonal = Pattern.from_pairs((n, n), i, i)
    bidiagonal = Pattern.from_pairs((n - 1, n), np.r_[i[:-1], i[:-1]], np.r_[i[:-1], i[1:]])
    tridiagonal = Pattern.from_pairs((n, n), np.r_[i, i[1:], i[:-1]], np.r_[i, i[:-1], i[1:]])
    assert column_colors(diagonal).max() == 0
    assert star_colors(diagonal).max() == 0
    assert column_colors(bidiagonal).max() == 1
    assert row_colors(bidiagonal).max() == 1
    assert column_colors(tridiagonal).max() == 2
    assert star_colors(tridiagonal).max() == 2
