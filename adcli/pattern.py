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
        rows, cols = self.coo()
        return Pattern.from_pairs(self.shape[::-1], cols, rows)

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
