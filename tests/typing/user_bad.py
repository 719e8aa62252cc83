"""A user's file with mistakes ``mypy --strict`` must report, one on each line marked E.

Checked by tests/test_typing.py, never run.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

import cugrad

field: NDArray[np.float64] = np.load("field.npy")

cugrad.gradeint(field)  # E: a misspelt name is not Any
cugrad.gradient(field, accuracy=3)  # E: accuracy is 2, 4, 6 or 8
cugrad.gradient(field, boundary="wrap")  # E: boundary is "edge" or "periodic"
cugrad.gradient(field, backend="gpu")  # E: backend is auto, numpy, cupy or None
cugrad.gradient(field, edge_order=3)  # E: edge_order is 1 or 2 (as numpy's stubs say)
one: tuple[NDArray[np.float64], ...] = cugrad.gradient(field, axis=0)  # E: one axis, one array
stacked: tuple[NDArray[np.float64], ...] = cugrad.gradient(field, stack=True)  # E: one array
several: NDArray[np.float64] = cugrad.gradient(field, axis=(0, 1))  # E: several axes, a tuple
