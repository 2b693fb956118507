"""The Munkres (Hungarian) assignment with the exact choices of the ``munkres`` package (1.1.x).

The official ImageNet-S ``match.py`` solves its co-occurrence costs with ``munkres.Munkres``. When
several assignments are optimal (frequent: clusters and classes that never meet all cost the
same), which one comes out depends on the solver's scan order, so reproducing the official
match means reproducing that order, step for step, on the same float64 values:

1. subtract each row's minimum; 2. star the first zero of each row (row by row, left to right)
   whose column has no star yet; 3. cover the starred columns, stop when all are covered;
4. find an uncovered zero starting from the last position: rows in cyclic order from the current
   row, and within the first row that has one, the *last* such zero in cyclic column order from
   the current column; prime it; if its row has a star, cover the row, uncover the star's column
   and continue from (row, star column); otherwise go to 5. With no uncovered zero left go to 6;
5. flip the alternating prime/star path that starts at that prime, erase primes, uncover all, go to 3;
6. add the smallest uncovered value to covered rows, then subtract it from uncovered columns
   (in that order, element by element, so float rounding matches), and restart 4 from (0, 0).

Vectorised with numpy; the per-element arithmetic is identical to the package's Python floats.
"""

from __future__ import annotations

import numpy as np


def _find_zero(zero: np.ndarray, row_cov: np.ndarray, col_cov: np.ndarray, i0: int, j0: int) -> tuple[int, int]:
    """The package's ``__find_a_zero``: first row (cyclic from i0) with an uncovered zero, and in it
    the last uncovered zero in cyclic column order from j0; (-1, -1) when there is none."""
    n = zero.shape[0]
    free = zero & ~col_cov[None, :]
    rows = np.flatnonzero(free.any(axis=1) & ~row_cov)
    if rows.size == 0:
        return -1, -1
    row = int(rows[np.argmin((rows - i0) % n)])
    cols = np.flatnonzero(free[row])
    return row, int(cols[np.argmax((cols - j0) % n)])


class _State:
    """Stars (one per row / column at most), primes (one per row at most) and covers."""

    def __init__(self, cost: np.ndarray) -> None:
        self.c = cost
        n = cost.shape[0]
        self.n = n
        self.star_col = np.full(n, -1, dtype=np.int64)  # column of the star in each row
        self.star_row = np.full(n, -1, dtype=np.int64)  # row of the star in each column
        self.prime_col = np.full(n, -1, dtype=np.int64)
        self.row_cov = np.zeros(n, dtype=bool)
        self.col_cov = np.zeros(n, dtype=bool)

    def star_initial(self) -> None:
        """Step 2: row by row, the first zero whose column holds no star yet."""
        for i in range(self.n):
            js = np.flatnonzero((self.c[i] == 0) & (self.star_row < 0))
            if js.size:
                self.star_col[i], self.star_row[js[0]] = js[0], i

    def flip_path(self, row: int, col: int) -> None:
        """Step 5: primes on the alternating path become stars, its stars are removed."""
        primes, stars = [(row, col)], []
        while self.star_row[col] >= 0:
            r = int(self.star_row[col])
            stars.append((r, col))
            col = int(self.prime_col[r])
            primes.append((r, col))
        for r, c in stars:
            self.star_col[r], self.star_row[c] = -1, -1
        for r, c in primes:
            self.star_col[r], self.star_row[c] = c, r
        self.prime_col[:] = -1
        self.row_cov[:] = False
        self.col_cov[:] = False

    def shift(self) -> None:
        """Step 6: the smallest uncovered value, added to covered rows, then taken from uncovered columns."""
        minval = self.c[np.ix_(~self.row_cov, ~self.col_cov)].min()
        self.c[self.row_cov, :] += minval
        self.c[:, ~self.col_cov] -= minval

    def cover_and_prime(self) -> tuple[int, int]:
        """Step 4 (with 6 whenever no uncovered zero is left): the prime that ends it, in a row with no star."""
        row, col = 0, 0
        zero = self.c == 0
        while True:
            row, col = _find_zero(zero, self.row_cov, self.col_cov, row, col)
            if row < 0:
                self.shift()
                zero = self.c == 0
                row, col = 0, 0
                continue
            self.prime_col[row] = col
            star = int(self.star_col[row])
            if star < 0:
                return row, col
            col = star
            self.row_cov[row] = True
            self.col_cov[star] = False


def munkres_assign(cost: np.ndarray) -> np.ndarray:
    """Column assigned to each row of a minimum-cost assignment, chosen as ``munkres.Munkres().compute``
    chooses it (-1 for rows left without a column). Non-square matrices are padded with 0, as the package."""
    cost = np.asarray(cost, dtype=np.float64)
    rows, cols = cost.shape
    n = max(rows, cols)
    c = np.zeros((n, n), dtype=np.float64)
    c[:rows, :cols] = cost
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    c -= c.min(axis=1, keepdims=True)
    state = _State(c)
    state.star_initial()
    while True:
        state.col_cov = state.star_row >= 0
        state.row_cov[:] = False
        if int(state.col_cov.sum()) >= n:
            break
        state.flip_path(*state.cover_and_prime())
    out = state.star_col[:rows].copy()
    out[out >= cols] = -1
    return out
