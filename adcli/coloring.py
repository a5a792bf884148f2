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
first, ties by index), each taking the smallest colour its constraints allow. They run
in vectorised rounds of vertices that wait for no uncoloured one, which gives the same
colours as one vertex at a time. Diagonal, full-row and banded patterns are coloured by
formula, with a number of colours no colouring can beat.
"""
from __future__ import annotations

import numpy as np

from .pattern import Pattern, stable_argsort

# a round of the batched greedy colouring smaller than this counts as thin; after more
# thin rounds in a row than _THIN_ROUNDS the rest is coloured one vertex at a time
_THIN_ROUND = 64
_THIN_ROUNDS = 8
# star colouring: the most adjacency entries for which the one-at-a-time greedy also runs
_STAR_LOOP_LIMIT = 20_000


# ---------------------------------------------------------------------------- seeds

def seed_matrix(colors, dtype=np.float64):
    """The (n, k) 0/1 seed matrix of a colouring: S[j, colors[j]] = 1."""
    colors = np.asarray(colors, dtype=np.int64)
    seed = np.zeros((colors.size, _count(colors)), dtype=dtype)
    seed[np.arange(colors.size), colors] = 1
    return seed


def _count(colors):
    """The number of colours."""
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
    return column_colors(pattern.transpose())


def _sort_within_rows(pattern, key):
    """The permutation of the pattern's entries that puts each row's in increasing order of
    key[column]. Rows of one length are sorted together as the rows of a matrix, which is
    quick for the short rows of a sparse pattern (a global sort of (row, key) pairs is
    several times slower)."""
    row_len = np.diff(pattern.indptr)
    perm = np.arange(pattern.nnz)
    for length in np.unique(row_len[row_len > 1]).tolist():
        starts = pattern.indptr[:-1][row_len == length]
        at = starts[:, None] + np.arange(length)
        by_key = np.argsort(key[pattern.indices[at]], axis=1)
        perm[at] = np.take_along_axis(at, by_key, axis=1)
    return perm


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
    """Greedy distance-1 colouring of the columns, largest-first: the columns with the most
    (row, other column) conflicts first, ties by index."""
    n = pattern.shape[1]
    rows, cols = pattern.coo()
    conflicts = np.bincount(cols, weights=np.diff(pattern.indptr)[rows] - 1,
                            minlength=n).astype(np.int64)
    return _greedy_rows(pattern, stable_argsort(conflicts.max() - conflicts))


def _greedy_rows(pattern, order, leading=None):
    """Greedy colouring of the columns of `pattern` in `order`, where two columns conflict
    when they share a row in which at least one of them is leading (leading[e] for entry
    e of the CSR order; all entries when None, which makes this the distance-1 colouring
    of the column intersection graph).

    It works on the rows rather than on the conflict graph (which can have about
    sum(row length squared) edges): each row keeps bit sets of the colours of its coloured
    columns, all of them and the leading ones, and a column takes the smallest colour
    missing from the first set of the rows it leads in and the second of the others.
    The columns whose earlier conflicting columns (in `order`) are all coloured are coloured
    together, in one vectorised round, as in Jones and Plassmann's parallel colouring: each
    sees the colours it would see in the one-at-a-time greedy, so the result is the same.
    Within a row, sorted by order, a column waits for the previous leading column, and a
    leading column for all since that one: at most two waits per entry. A long chain of
    waits (a band in natural order) makes the rounds thin; the rest is then coloured one
    column at a time."""
    m, n = pattern.shape
    nnz = pattern.nnz
    rows = pattern.coo()[0]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    everywhere = leading is None
    if everywhere:
        leading = np.ones(nnz, dtype=bool)
    # The waits, from each row's entries sorted by rank (positions p of `member`): a leading
    # entry waits for those since the previous leading one (or the row's start), any other
    # for the previous leading one. So the entries that wait for a leading entry q are the
    # ones after it up to the next leading one, included; a non-leading entry has only the
    # next leading one waiting for it.
    sorted_ = _sort_within_rows(pattern, rank)
    member, leads = pattern.indices[sorted_], leading[sorted_]
    pos = np.arange(nnz)
    first, last = pattern.indptr[:-1][rows], pattern.indptr[1:][rows]
    if everywhere:
        before, after = pos - 1, pos + 1
        waiting = np.bincount(member[pos > first], minlength=n)
    else:
        before = np.maximum.accumulate(np.where(leads, pos, -1))
        before = np.concatenate([[-1], before[:-1]])        # the previous leading entry
        after = np.minimum.accumulate(np.where(leads, pos, nnz)[::-1])[::-1]
        after = np.concatenate([after[1:], [nnz]])          # the next leading entry
        waits = np.where(leads, pos - np.maximum(before, first), before >= first)
        waiting = np.bincount(member, weights=waits, minlength=n).astype(np.int64)
    next_lo = np.where(leads, pos + 1, after)               # who waits for p: next_lo[p]
    next_hi = np.minimum(after + 1, last)                   # up to next_hi[p], excluded
    # each column's entries, by their sorted positions
    at_sorted = np.empty(nnz, dtype=np.int64)
    at_sorted[sorted_] = pos
    by_col = stable_argsort(pattern.indices)
    col_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(pattern.indices, minlength=n), out=col_ptr[1:])
    # (32-bit indices where they fit: the rounds are gathers, and half the bytes help)
    small = np.int32 if max(nnz, m, n) < 2**31 - 1 else np.int64
    col_pos = at_sorted[by_col]
    col_lo, col_hi = next_lo[col_pos].astype(small), next_hi[col_pos].astype(small)
    col_row, col_leads = rows[by_col].astype(small), leading[by_col]
    member = member.astype(small)
    col_len = np.diff(col_ptr)

    colors = np.full(n, -1, dtype=np.int64)
    seen = np.zeros((m, 1), dtype=np.uint64)        # bit sets of the colours in each row
    seen_leading = seen if everywhere else np.zeros((m, 1), dtype=np.uint64)
    ready = np.flatnonzero(waiting == 0)
    slot = np.empty(n, dtype=np.int64)              # scratch for _distinct
    thin = 0
    while ready.size:
        thin = thin + 1 if ready.size < _THIN_ROUND else 0
        if thin > _THIN_ROUNDS:
            break
        idx, who = _ranges(col_ptr, ready)
        r = col_row[idx]
        lead = None if everywhere else col_leads[idx]
        lens = col_len[ready]
        forbidden = np.zeros((ready.size, seen.shape[1]), dtype=np.uint64)
        has = lens > 0
        if r.size:
            sets = seen[r] if everywhere else np.where(lead[:, None], seen[r], seen_leading[r])
            forbidden[has] = np.bitwise_or.reduceat(sets, (np.cumsum(lens) - lens)[has], axis=0)
        c = _lowest_clear_bit(forbidden)
        colors[ready] = c
        words = int(c.max()) // 64 + 1
        if words > seen.shape[1]:
            grow = np.zeros((m, words - seen.shape[1]), dtype=np.uint64)
            seen = np.hstack([seen, grow])
            seen_leading = seen if everywhere else np.hstack([seen_leading, grow])
        cr = c[who]
        word, bit = cr // 64, np.uint64(1) << (cr % 64).astype(np.uint64)
        if everywhere:                  # one column per row and round: its first
            seen[r, word] |= bit
        else:
            np.bitwise_or.at(seen, (r, word), bit)
            np.bitwise_or.at(seen_leading, (r[lead], word[lead]), bit[lead])
        lo, hi = col_lo[idx], col_hi[idx]
        span = np.maximum(hi - lo, 0)
        nxt = member[np.repeat(lo - (np.cumsum(span) - span), span) + np.arange(int(span.sum()))]
        np.subtract.at(waiting, nxt, 1)
        ready = _distinct(nxt[waiting[nxt] == 0], slot)
    if ready.size:
        _greedy_rows_tail(col_ptr, col_row, col_leads, colors, seen, seen_leading, order)
    return colors


def _python_sets(words):
    """Rows of uint64 words as Python integers (word w holding bits 64 w to 64 w + 63)."""
    sets = [0] * words.shape[0]
    for w in range(words.shape[1]):
        sets = [s | (int(x) << (64 * w)) for s, x in zip(sets, words[:, w].tolist())]
    return sets


def _greedy_rows_tail(col_ptr, col_row, col_leads, colors, seen, seen_leading, order):
    """The one-at-a-time greedy of _greedy_rows for the columns left uncoloured, in order,
    with each row's colour sets as Python integers."""
    rest = order[colors[order] < 0]
    every = _python_sets(seen)
    lead_sets = every if seen_leading is seen else _python_sets(seen_leading)
    row_of, leads = col_row.tolist(), col_leads.tolist()
    col = colors.tolist()
    spans = zip(rest.tolist(), col_ptr[rest].tolist(), col_ptr[rest + 1].tolist())
    if lead_sets is every:              # every entry leads: one set per row
        for v, a, b in spans:
            mask = 0
            for r in row_of[a:b]:
                mask |= every[r]
            c = (~mask & (mask + 1)).bit_length() - 1
            col[v] = c
            bit = 1 << c
            for r in row_of[a:b]:
                every[r] |= bit
        colors[:] = col
        return
    for v, a, b in spans:
        mask = 0
        for r, lead in zip(row_of[a:b], leads[a:b]):
            mask |= every[r] if lead else lead_sets[r]
        c = (~mask & (mask + 1)).bit_length() - 1  # the lowest clear bit
        col[v] = c
        bit = 1 << c
        for r, lead in zip(row_of[a:b], leads[a:b]):
            every[r] |= bit
            if lead:
                lead_sets[r] |= bit
    colors[:] = col


# ---------------------------------------------------------------------------- star

def _adjacency(pattern):
    """The adjacency graph of a symmetric pattern as Python lists (the diagonal left out)."""
    m, n = pattern.shape
    if m != n:
        raise ValueError(f"a star colouring needs a square pattern, not {m}x{n}")
    if not pattern == pattern.transpose():
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
    # A full band (i and j adjacent exactly when 0 < |i - j| <= b): i mod (2b + 1) gives
    # the vertices within b of any vertex distinct colours, so no path on three vertices
    # has two, a star colouring. For b <= 3 an exhaustive search found none with fewer
    # colours at n = 14 (so none at any larger n either); the greedy finds no fewer.
    b = int(np.abs(nbr - rows).max())
    if b <= 3 and n >= 14 and nbr.size == 2 * (b * n - b * (b + 1) // 2):
        return np.arange(n, dtype=np.int64) % (2 * b + 1)
    colors = _greedy_star_rounds(ptr, nbr, rows)
    if nbr.size <= _STAR_LOOP_LIMIT:
        # small enough for the one-at-a-time greedy, whose exact test of each path often
        # saves a colour or two (and costs under about 50 ms here)
        exact = _greedy_star(ptr, nbr)
        if exact.max() < colors.max():
            colors = exact
    return colors


def _greedy_star_rounds(ptr, nbr, rows):
    """Greedy star colouring, largest-first (the vertices with most neighbours first).

    Two vertices conflict when they are adjacent, or share a neighbour v and one of them
    comes before v in the order; each vertex takes the smallest colour of no earlier
    conflicting one. Then in any path u - v - w with c(u) = c(w), v comes before both u
    and w; a two-coloured path on four vertices a - b - c - d would need b before c (from
    a - b - c) and c before b (from b - c - d), so none exists and the colouring is a star
    colouring (this is the orientation argument of Albertson et al., "Coloring with no
    2-colored P4's", 2004). These conflicts are those of _greedy_rows on the rows of H
    with its diagonal, in which the diagonal and the neighbours coming before the row's
    vertex lead, so the colouring runs in vectorised rounds. It is more cautious than the
    one-at-a-time greedy of _greedy_star, which forbids a colour only for an actual
    two-coloured path, and so sometimes needs more colours.
    """
    n = ptr.size - 1
    degree = np.diff(ptr)
    order = stable_argsort(degree.max() - degree)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # the adjacency with the diagonal put back in place: row v gains one entry, after its
    # neighbours below v
    below = np.bincount(rows[nbr < rows], minlength=n)
    indptr = ptr + np.arange(n + 1)
    indices = np.empty(nbr.size + n, dtype=np.int64)
    indices[np.arange(nbr.size) + rows + (nbr > rows)] = nbr
    indices[indptr[:-1] + below] = np.arange(n)
    full = Pattern((n, n), indptr, indices)
    r, c = full.coo()
    return _greedy_rows(full, order, leading=rank[c] <= rank[r])


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
