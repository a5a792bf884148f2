"""Colourings of sparsity patterns, and recovery of a sparse matrix from compressed sweeps.

Columns j and j' of a Jacobian J are structurally orthogonal when no row has an entry in
both; a group of such columns can share one tangent (the sum of their basis vectors), since
each row of J @ s then picks up at most one of them. A colouring of the columns into k such
groups gives the seed matrix S (n x k, S[j, colour(j)] = 1) and the compressed Jacobian
B = J @ S in k forward sweeps instead of n, from which J_ij = B[i, colour(j)]. Rows, for
reverse mode, are the same with J transposed: C = S.T @ J in k reverse sweeps.

A Hessian is symmetric, so fewer groups are needed (Coleman and More; Gebremedhin, Manne and
Pothen, "What color is your Jacobian?", SIAM Review 2005): in a star colouring (a proper
colouring of the adjacency graph in which every path on four vertices has at least three
colours) each off-diagonal H_ij can be read either from row i or from row j of B = H @ S.

The greedy colourings follow ColPack: vertices in largest-first order (most conflicts
first, ties by index), each taking the smallest colour its constraints allow.
"""
from __future__ import annotations

import numpy as np

from .pattern import Pattern

# a round of the batched greedy colouring smaller than this counts as thin; after more
# thin rounds in a row than _THIN_ROUNDS the rest is coloured one vertex at a time
_THIN_ROUND = 64
_THIN_ROUNDS = 8


# ---------------------------------------------------------------------------- seeds

def seed_matrix(colors, dtype=np.float64):
    """The (n, k) 0/1 seed matrix of a colouring: S[j, colors[j]] = 1."""
    colors = np.asarray(colors, dtype=np.int64)
    k = int(colors.max()) + 1 if colors.size else 0
    seed = np.zeros((colors.size, k), dtype=dtype)
    seed[np.arange(colors.size), colors] = 1
    return seed


def _count(colors):
    return int(colors.max()) + 1 if colors.size else 0


# ---------------------------------------------------------------------------- distance-1

def column_colors(pattern):
    """A colouring of the columns into structurally orthogonal groups (no row has two
    columns of one colour): a distance-1 colouring of the column intersection graph, for
    B = J @ seed_matrix(colors). Returns int64 colours 0..k-1, one per column."""
    m, n = pattern.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    row_len = np.diff(pattern.indptr)
    widest = int(row_len.max()) if m else 0
    if widest <= 1:                      # no two columns share a row
        return np.zeros(n, dtype=np.int64)
    if widest == n:                      # a full row: every pair of columns conflicts
        return np.arange(n, dtype=np.int64)
    # A band: if every row's columns lie within b + 1 consecutive ones, columns b + 1 apart
    # never meet, so j mod (b + 1) is a valid colouring. The widest row is a clique of the
    # conflict graph, so when it has b + 1 entries no colouring can do better.
    nonempty = row_len > 0
    span = (pattern.indices[pattern.indptr[1:][nonempty] - 1]
            - pattern.indices[pattern.indptr[:-1][nonempty]])
    if int(span.max()) + 1 == widest:
        return np.arange(n, dtype=np.int64) % widest
    return _greedy_columns(pattern)


def row_colors(pattern):
    """A colouring of the rows into structurally orthogonal groups, for C = seed.T @ J
    (reverse mode): the column colouring of the transposed pattern."""
    return column_colors(_transpose(pattern))


def _stable_argsort(keys):
    """A stable argsort of nonnegative integers, as a radix sort on 16-bit digits (numpy
    sorts 16-bit keys stably in linear time, which beats a comparison sort here)."""
    keys = np.asarray(keys, dtype=np.int64)
    perm = np.arange(keys.size)
    top = int(keys.max()) if keys.size else 0
    shift = 0
    while shift == 0 or top >> shift:
        digit = (keys if shift == 0 else keys[perm]) >> shift & 0xFFFF
        digit = digit.astype(np.uint8 if top >> shift < 256 else np.uint16)
        perm = perm[np.argsort(digit, kind="stable")]
        shift += 16
    return perm


def _sort_within_rows(pattern, key):
    """The pattern's column indices with each row's put in increasing order of key[column].
    Rows of one length are sorted together as the rows of a matrix, which is quick for the
    short rows of a sparse pattern (a global sort of (row, key) pairs is several times
    slower)."""
    row_len = np.diff(pattern.indptr)
    out = pattern.indices.copy()
    for length in np.unique(row_len[row_len > 1]).tolist():
        starts = pattern.indptr[:-1][row_len == length]
        at = starts[:, None] + np.arange(length)
        cols = pattern.indices[at]
        out[at] = np.take_along_axis(cols, np.argsort(key[cols], axis=1), axis=1)
    return out


def _transpose(pattern):
    """The transposed pattern (Pattern.transpose, without its sort by comparison)."""
    m, n = pattern.shape
    rows, cols = pattern.coo()
    perm = _stable_argsort(cols)          # stable: each column's rows stay increasing
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=n), out=indptr[1:])
    return Pattern((n, m), indptr, rows[perm])


def _ranges(ptr, vertices):
    """Indices of the concatenated slices ptr[v]:ptr[v+1] for v in vertices, and which of
    the vertices each belongs to."""
    lens = ptr[vertices + 1] - ptr[vertices]
    first = np.cumsum(lens) - lens
    owner = np.repeat(np.arange(vertices.size), lens)
    return np.repeat(ptr[vertices] - first, lens) + np.arange(int(lens.sum())), owner


def _distinct(values, slot):
    """The distinct values, in no particular order, without sorting: each value's slot
    keeps the position of its last occurrence."""
    place = np.arange(values.size)
    slot[values] = place
    return values[slot[values] == place]


def _lowest_clear_bit(words):
    """For each row of uint64 words (bit b of word w standing for colour 64 w + b), the
    smallest colour whose bit is clear."""
    full = words == np.uint64(0xFFFFFFFFFFFFFFFF)
    w = np.argmin(full, axis=1)                     # the first word with a clear bit
    word = words[np.arange(words.shape[0]), w]
    free = ~word
    low = free & (~free + np.uint64(1))             # the lowest set bit of the free bits
    bit = np.log2(np.maximum(low, np.uint64(1)).astype(np.float64)).astype(np.int64)
    # a row with every word full: the next word, not yet allocated
    return np.where(full.all(axis=1), 64 * words.shape[1], 64 * w + bit)


def _greedy_columns(pattern):
    """Greedy distance-1 colouring of the columns in largest-first order.

    Works on the rows rather than the column intersection graph (which has about
    sum(row length squared) edges): each row keeps a bit set of the colours used in it, and
    a column takes the smallest colour missing from the union of its rows' sets. The
    columns that come first, in the order, in every row they are in are coloured together,
    in one vectorised round (as in Jones and Plassmann's parallel colouring): each sees
    exactly the colours it would see in the one-at-a-time greedy, so the result is the
    same. A long chain of such dependencies (a band in natural order) makes rounds thin;
    the rest is then coloured one column at a time."""
    m, n = pattern.shape
    rows, cols = pattern.coo()
    row_len = np.diff(pattern.indptr)
    by_col = _transpose(pattern)
    col_ptr, col_rows = by_col.indptr, by_col.indices
    col_len = np.diff(col_ptr)
    # largest-first: the number of (row, other column) conflicts, repeats counted
    degree = np.bincount(cols, weights=row_len[rows] - 1, minlength=n).astype(np.int64)
    order = _stable_argsort(degree.max() - degree)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # each row's columns by rank; front[r] is the first not yet coloured
    queue = _sort_within_rows(pattern, rank)
    front = pattern.indptr[:-1].copy()
    end = pattern.indptr[1:]
    nonempty = row_len > 0
    waiting = col_len - np.bincount(queue[front[nonempty]], minlength=n)
    colors = np.full(n, -1, dtype=np.int64)
    used = np.zeros((m, 1), dtype=np.uint64)        # bit sets of the colours in each row
    ready = np.flatnonzero(waiting == 0)
    slot = np.empty(n, dtype=np.int64)              # scratch for _distinct
    thin = 0
    while ready.size:
        thin = thin + 1 if ready.size < _THIN_ROUND else 0
        if thin > _THIN_ROUNDS:
            break
        idx, who = _ranges(col_ptr, ready)
        r = col_rows[idx]                            # each row at most once: its front
        lens = col_len[ready]
        forbidden = np.zeros((ready.size, used.shape[1]), dtype=np.uint64)
        has = lens > 0
        if r.size:
            starts = (np.cumsum(lens) - lens)[has]
            forbidden[has] = np.bitwise_or.reduceat(used[r], starts, axis=0)
        c = _lowest_clear_bit(forbidden)
        colors[ready] = c
        words = int(c.max()) // 64 + 1
        if words > used.shape[1]:
            used = np.hstack([used, np.zeros((m, words - used.shape[1]), dtype=np.uint64)])
        cr = c[who]
        used[r, cr // 64] |= np.uint64(1) << (cr % 64).astype(np.uint64)
        at = front[r] + 1
        front[r] = at
        nxt = queue[at[at < end[r]]]
        np.subtract.at(waiting, nxt, 1)
        ready = _distinct(nxt[waiting[nxt] == 0], slot)
    if ready.size:
        _greedy_columns_tail(col_ptr, col_rows, colors, used, order)
    return colors


def _greedy_columns_tail(col_ptr, col_rows, colors, used, order):
    """The one-at-a-time greedy for the columns left uncoloured, in order, with each row's
    colour set as a Python integer."""
    rest = order[colors[order] < 0]
    sets = [0] * used.shape[0]
    for w in range(used.shape[1]):
        sets = [s | (int(x) << (64 * w)) for s, x in zip(sets, used[:, w].tolist())]
    rows_of = col_rows.tolist()
    col = colors.tolist()
    for v, a, b in zip(rest.tolist(), col_ptr[rest].tolist(), col_ptr[rest + 1].tolist()):
        mask = 0
        for r in rows_of[a:b]:
            mask |= sets[r]
        c = (~mask & (mask + 1)).bit_length() - 1  # the lowest clear bit
        col[v] = c
        bit = 1 << c
        for r in rows_of[a:b]:
            sets[r] |= bit
    colors[:] = col


# ---------------------------------------------------------------------------- star

def _adjacency(pattern):
    """The adjacency graph of a symmetric pattern as Python lists (the diagonal left out)."""
    m, n = pattern.shape
    if m != n:
        raise ValueError(f"a star colouring needs a square pattern, not {m}x{n}")
    if not pattern == _transpose(pattern):
        raise ValueError("a star colouring needs a symmetric pattern")
    rows, cols = pattern.coo()
    off = rows != cols
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[off], minlength=n), out=ptr[1:])
    return ptr, cols[off]


def star_colors(pattern):
    """A star colouring of a symmetric pattern (a Hessian's), for direct recovery from
    B = H @ seed_matrix(colors) with recover_star: a proper colouring of its adjacency graph
    (the diagonal ignored) in which every path on four vertices has three colours or more."""
    n = pattern.shape[0]
    ptr, nbr = _adjacency(pattern)
    if nbr.size == 0:
        return np.zeros(n, dtype=np.int64)
    rows = np.repeat(np.arange(n), np.diff(ptr))
    # A path graph (all edges join i and i + 1): i mod 3 puts three colours on any three
    # consecutive vertices, and any path on four vertices needs three colours.
    if np.all(np.abs(nbr - rows) == 1):
        linked = np.zeros(n + 2, dtype=bool)
        linked[rows[nbr == rows + 1]] = True
        if np.any(linked[:-2] & linked[1:-1] & linked[2:]):
            return np.arange(n, dtype=np.int64) % 3
    return _greedy_star(ptr, nbr)


def _greedy_star(ptr, nbr):
    """Greedy star colouring in largest-first order (Gebremedhin, Manne and Pothen 2005).

    Giving v the colour c creates a two-coloured path on four vertices exactly when
      (1) v - w - x - y with c(x) = c and c(y) = c(w): x, next to w, has a neighbour other
          than w of colour c(w); or
      (2) u - v - w - x with c(u) = c(w) and c(x) = c: two neighbours of v share a colour and
          x is a neighbour of one of them.
    Besides the colour of each vertex it keeps, to test these without walking the
    neighbours of neighbours (a hub would make that quadratic):
      seen[x]: colour -> how many coloured neighbours of x have it, and
      bad[w]:  colour -> how many coloured neighbours x of w have it while having another
               neighbour of colour c(w) (the colours (1) forbids next to w)."""
    n = ptr.size - 1
    degree = np.diff(ptr)
    order = np.argsort(-degree, kind="stable").tolist()
    nb = nbr.tolist()
    p = ptr.tolist()
    col = [-1] * n
    seen = [{} for _ in range(n)]
    bad = [None] * n
    for v in order:
        nv = nb[p[v]:p[v + 1]]
        sv = seen[v]
        forbidden = set(sv)                       # proper: the neighbours' colours
        for w in nv:
            if col[w] >= 0:
                forbidden.update(bad[w])          # (1)
        if len(sv) and any(k >= 2 for k in sv.values()):
            for w in nv:                          # (2)
                cw = col[w]
                if cw >= 0 and sv[cw] >= 2:
                    forbidden.update(seen[w])
        c = 0
        while c in forbidden:
            c += 1
        col[v] = c
        bv = bad[v] = {}
        for x in nv:
            sx = seen[x]
            k = sx.get(c, 0) + 1
            sx[c] = k
            cx = col[x]
            if cx < 0:
                continue
            if k == 2:                            # x now has two neighbours of colour c
                for w in nb[p[x]:p[x + 1]]:
                    if col[w] == c:
                        bw = bad[w]
                        bw[cx] = bw.get(cx, 0) + 1
            elif k > 2:
                bv[cx] = bv.get(cx, 0) + 1
            if sv.get(cx, 0) >= 2:                # v has another neighbour of colour c(x)
                bx = bad[x]
                bx[c] = bx.get(c, 0) + 1
    return np.array(col, dtype=np.int64)


# ---------------------------------------------------------------------------- recovery

def _check(compressed, shape, what):
    compressed = np.asarray(compressed)
    if compressed.shape != shape:
        raise ValueError(f"compressed {what} of shape {compressed.shape}, expected {shape}")
    return compressed


def recover_columns(pattern, colors, compressed):
    """The entries of J (in the pattern's CSR order) from compressed = J @ S, S the seed of
    a column colouring: each row meets a colour's group in at most one column."""
    colors = np.asarray(colors, dtype=np.int64)
    compressed = _check(compressed, (pattern.shape[0], _count(colors)), "Jacobian")
    rows, cols = pattern.coo()
    return compressed[rows, colors[cols]]


def recover_rows(pattern, colors, compressed):
    """The entries of J (CSR order) from compressed = S.T @ J, S the seed of a row
    colouring."""
    colors = np.asarray(colors, dtype=np.int64)
    compressed = _check(compressed, (_count(colors), pattern.shape[1]), "Jacobian")
    rows, cols = pattern.coo()
    return compressed[colors[rows], cols]


def recover_star(pattern, colors, compressed):
    """The entries of a symmetric H (CSR order of its full pattern) from compressed =
    H @ S, S the seed of a star colouring: B[i, c(j)] sums row i over the colour class of j,
    so it is H_ij when j is the only vertex of that colour in row i; otherwise the star
    property makes i the only one of colour c(i) in row j, and H_ij = H_ji = B[j, c(i)]."""
    colors = np.asarray(colors, dtype=np.int64)
    n = pattern.shape[0]
    k = _count(colors)
    compressed = _check(compressed, (n, k), "Hessian")
    rows, cols = pattern.coo()
    # how many entries of row i have colour c: the diagonal's colour differs from its
    # neighbours', so a diagonal entry is always alone
    key_row = rows * k + colors[cols]
    key_col = cols * k + colors[rows]
    if n * k <= 4 * rows.size + 1_000_000:
        tally = np.bincount(key_row, minlength=n * k)
        alone_row, alone_col = tally[key_row] == 1, tally[key_col] == 1
    else:
        keys, tally = np.unique(key_row, return_counts=True)
        alone_row = tally[np.searchsorted(keys, key_row)] == 1
        at = np.minimum(np.searchsorted(keys, key_col), keys.size - 1)
        alone_col = (keys[at] == key_col) & (tally[at] == 1)
    if not np.all(alone_row | alone_col):
        i = int(np.flatnonzero(~(alone_row | alone_col))[0])
        raise RuntimeError(f"recover_star: entry ({rows[i]}, {cols[i]}) is in neither row's "
                           "colour group alone; the colouring is not a star colouring")
    return np.where(alone_row, compressed[rows, colors[cols]], compressed[cols, colors[rows]])
