"""A user's file that must pass ``mypy --strict``; ``assert_type`` pins each result type.

Checked by tests/test_typing.py, never run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from typing_extensions import assert_type

import cugrad

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]

field: NDArray[np.float64] = np.load("field.npy")  # shape unknown to the type checker
plane = np.zeros((4, 5))  # numpy's stubs know: 2-D float64
cube = np.zeros((4, 5, 6), dtype=np.float32)
line = np.zeros(7)
x = np.linspace(0.0, 1.0, 5)

# One integer axis (int or numpy integer): one array of the input's dtype.
assert_type(cugrad.gradient(field, axis=0), F64)
assert_type(cugrad.gradient(field, 0.5, axis=np.int64(-1), edge_order=2), F64)
assert_type(cugrad.gradient(cube, x, axis=2, accuracy=4), F32)
# stack=True: one array.
assert_type(cugrad.gradient(field, stack=True), F64)
assert_type(cugrad.gradient(cube, 0.1, stack=True, boundary="periodic"), F32)
# Several axes: a tuple; with numpy's known dimensions, the exact tuple.
assert_type(cugrad.gradient(field, axis=(0, 1)), tuple[F64, ...])
dy, dx = cugrad.gradient(plane, 1.0, x)
assert_type(dy, F64)
assert_type(cugrad.gradient(plane), tuple[F64, F64])
assert_type(cugrad.gradient(cube, 1.0, period=[2.0, None, 1.0]), tuple[F32, F32, F32])
assert_type(cugrad.gradient(line), F64)  # 1-D: numpy returns one array
# Dimensions unknown: one array (1-D) or a tuple, as numpy decides at run time.
assert_type(cugrad.gradient(field), F64 | tuple[F64, ...])
# Integer data computes in float64 (numpy's rule); lists are array-likes.
counts = np.arange(12, dtype=np.int64).reshape(3, 4)
assert_type(cugrad.gradient(counts, axis=1), NDArray[Any])
assert_type(cugrad.gradient([1.0, 2.0, 4.0], axis=0), NDArray[Any])
# Options typed as numpy's stubs and cugrad's documentation say.
result = cugrad.gradient(
    field, 0.5, axis=0, edge_order=1, accuracy=8, boundary=["edge", "periodic"],
    period=None, backend="numpy",
)  # fmt: skip
# Lazily imported names are declared.
report = cugrad.compile_kernels(archs=(80, 90))
assert_type(cugrad.__version__, str)
