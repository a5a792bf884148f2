"""Sparsity patterns: which entries of a Jacobian or Hessian can be nonzero.

A pattern is a boolean matrix in compressed sparse row form (the layout of
scipy.sparse.csr_matrix, built with numpy alone): `indptr` (rows + 1 offsets) and
`indices` (column numbers, sorted within each row). Rows and columns number elements in C
order; several inputs are numbered one after another, in the order given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Pattern:
    shape: tuple          # (rows, columns)
    indptr: np.ndarray    # int64, rows + 1
    indices: np.ndarray   # int64, nnz: the columns of row i are indices[indptr[i]:indptr[i+1]]

    @classmethod
    def from_pairs(cls, shape, rows, cols):
        """The pattern with a True at each (rows[k], cols[k]); repeats are merged."""
        m, n = int(shape[0]), int(shape[1])
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        keys = np.unique(rows * max(n, 1) + cols)     # sorted by row, then column
        r, c = (keys // max(n, 1), keys % max(n, 1)) if n else (keys, keys)
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=m), out=indptr[1:])
        return cls((m, n), indptr, c.astype(np.int64))

    @classmethod
    def from_dense(cls, mask):
        """The pattern of the nonzeros of a matrix (2-d)."""
        mask = np.asarray(mask) != 0
        r, c = np.nonzero(mask)
        return cls.from_pairs(mask.shape, r, c)

    @property
    def nnz(self):
        return int(self.indices.size)

    @property
    def density(self):
        m, n = self.shape
        return self.nnz / (m * n) if m * n else 0.0

    def coo(self):
        """(rows, cols) of the entries, row by row."""
        rows = np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(self.indptr))
        return rows, self.indices

    def transpose(self):
        """The transposed pattern, in linear time: the entries in stable order of their
        column, so that each column's rows stay increasing (no sort by comparison)."""
        m, n = self.shape
        rows, cols = self.coo()
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(cols, minlength=n), out=indptr[1:])
        return Pattern((n, m), indptr, rows[stable_argsort(cols)])

    def to_dense(self):
        out = np.zeros(self.shape, dtype=bool)
        rows, cols = self.coo()
        out[rows, cols] = True
        return out

    def __eq__(self, other):
        return (isinstance(other, Pattern) and self.shape == other.shape
                and np.array_equal(self.indptr, other.indptr)
                and np.array_equal(self.indices, other.indices))

    __hash__ = None


def stable_argsort(keys):
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


def save_npz(file, pattern, values):
    """A sparse matrix (the pattern's entries, `values` in its order) in the file format of
    scipy.sparse.save_npz, which scipy.sparse.load_npz reads: CSR arrays in an npz.
    `file`: a binary file object (or a path, to which numpy adds .npz if it lacks it)."""
    values = np.asarray(values)
    if values.shape != (pattern.nnz,):
        raise ValueError(f"{values.shape} values for a pattern of {pattern.nnz} entries")
    index = np.int32 if max(pattern.shape[1], pattern.nnz) < 2**31 else np.int64
    # uncompressed (scipy's compressed=False): zlib would take longer than the derivative
    np.savez(file, indices=pattern.indices.astype(index), indptr=pattern.indptr.astype(index),
             format=np.array(b"csr"), shape=np.array(pattern.shape), data=values)
