"""Finite-difference weights: exact rationals for uniform grids, Fornberg's recurrence for coordinates.

Only arithmetic lives here; which rows use which weights is decided by :mod:`cugrad._plan`.

Uniform weights are rationals (for example ``2/3`` and ``-1/12`` for the fourth-order first
derivative): they are solved exactly with :class:`fractions.Fraction` and rounded once, together with
the spacing, to float64 (``float(Fraction(c) / Fraction(h))`` is correctly rounded). Solving in
floating point, as findiff does, gives ``0.08333333333333331`` for ``1/12``, and a centre weight of
``-2.4e-16`` instead of 0.

Coordinate weights come from Fornberg's recurrence (B. Fornberg, "Generation of finite difference
formulas on arbitrarily spaced grids", Math. Comp. 51, 1988), evaluated in float64 for many rows at
once, with the nodes taken relative to the row's own coordinate (which keeps the recurrence well
conditioned on grids far from the origin).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=256)
def rational_weights(offsets: tuple[int, ...], deriv: int = 1) -> tuple[Fraction, ...]:
    """Exact weights ``w`` with ``sum(w[j] * g(i + offsets[j])) = g^(deriv)(i) * h**deriv``.

    The weights differentiate every polynomial of degree ``< len(offsets)`` exactly (unit spacing).
    """
    size = len(offsets)
    if len(set(offsets)) != size or not 0 <= deriv < size:
        raise ValueError(f"no {deriv}-th derivative stencil on the offsets {offsets}")
    # Moment equations sum_j w_j o_j**k = k! * [k == deriv], k = 0 .. size-1, solved by Gauss-Jordan
    # elimination over the rationals (exact; the Vandermonde system is nonsingular for distinct offsets).
    factorial = 1
    for k in range(2, deriv + 1):
        factorial *= k
    rows = [
        [Fraction(o) ** k for o in offsets] + [Fraction(factorial if k == deriv else 0)]
        for k in range(size)
    ]
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(size):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [v - factor * p for v, p in zip(rows[r], rows[col], strict=True)]
    return tuple(row[size] for row in rows)


def scaled(weight: Fraction, spacing: float, power: int = 1) -> float:
    """``weight / spacing**power``, computed exactly and rounded once to float64."""
    return float(weight / Fraction(spacing) ** power)


def fornberg(nodes: np.ndarray, deriv: int = 1) -> np.ndarray:
    """Weights of the ``deriv``-th derivative at 0 from the values at ``nodes`` (one set per row).

    ``nodes`` has shape ``(rows, points)``: each row's node coordinates relative to the point where
    the derivative is taken. Returns float64 weights of the same shape. A row with two equal nodes
    gets non-finite weights; callers check.
    """
    x = np.asarray(nodes, dtype=np.float64)
    rows, points = x.shape
    # c[:, j, k]: weight of node j for the k-th derivative, over the nodes seen so far.
    c = np.zeros((rows, points, deriv + 1))
    c[:, 0, 0] = 1.0
    c1 = np.ones(rows)
    c4 = x[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(1, points):
            top = min(i, deriv)
            c2 = np.ones(rows)
            c5 = c4
            c4 = x[:, i].copy()
            for j in range(i):
                c3 = x[:, i] - x[:, j]
                c2 = c2 * c3
                if j == i - 1:
                    for k in range(top, 0, -1):
                        c[:, i, k] = c1 * (k * c[:, i - 1, k - 1] - c5 * c[:, i - 1, k]) / c2
                    c[:, i, 0] = -c1 * c5 * c[:, i - 1, 0] / c2
                for k in range(top, 0, -1):
                    c[:, j, k] = (c4 * c[:, j, k] - k * c[:, j, k - 1]) / c3
                c[:, j, 0] = c4 * c[:, j, 0] / c3
            c1 = c2
    return c[:, :, deriv]
