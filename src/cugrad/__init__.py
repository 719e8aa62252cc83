"""cugrad: numpy.gradient, exactly, on GPUs and faster on CPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cugrad._operators import curl, divergence, gradient_magnitude, laplacian

__all__ = ["compile_kernels", "curl", "divergence", "gradient", "gradient_magnitude", "laplacian"]
__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

if TYPE_CHECKING:
    # What type checkers see. The implementation (cugrad._api.gradient) takes any object at run
    # time; these overloads give user code precise results: the input's array type for one
    # integer axis or ``stack=True``, a tuple with one array per axis otherwise, exact tuple
    # lengths where numpy's stubs know the number of dimensions, and ``Any`` where the array type
    # cannot be known (torch tensors, CuPy and dask arrays). ``edge_order`` is typed as numpy's
    # stubs type it (1 or 2); the run time accepts numpy's other values too.
    from collections.abc import Sequence
    from typing import Literal, NoReturn, SupportsIndex, TypeAlias, TypeVar, overload

    import numpy as np
    from numpy.typing import NDArray

    from cugrad._compile import compile_kernels as compile_kernels

    _InexactT = TypeVar("_InexactT", bound=np.inexact[Any])
    _Axes: TypeAlias = Sequence[SupportsIndex] | None
    _SeveralAxes: TypeAlias = (
        tuple[SupportsIndex, SupportsIndex]
        | tuple[SupportsIndex, SupportsIndex, SupportsIndex]
        | tuple[SupportsIndex, SupportsIndex, SupportsIndex, SupportsIndex]
    )
    _EdgeOrder: TypeAlias = Literal[1, 2]
    _Accuracy: TypeAlias = Literal[2, 4, 6, 8]
    _BoundaryName: TypeAlias = Literal["edge", "periodic"]
    _Boundary: TypeAlias = _BoundaryName | Sequence[_BoundaryName]
    _Period: TypeAlias = float | Sequence[float | None] | None
    _Backend: TypeAlias = Literal["auto", "numpy", "cupy"] | None
    # numpy's own trick: only an array of unknown dimensions (shape tuple[Any, ...]) matches a
    # shape of four impossible types; one of known dimensions falls through to its own overload.
    _Unknown: TypeAlias = tuple[NoReturn, NoReturn, NoReturn, NoReturn]
    _UnknownNDim: TypeAlias = np.ndarray[_Unknown, np.dtype[_InexactT]]
    _1D: TypeAlias = np.ndarray[tuple[int], np.dtype[_InexactT]]
    _2D: TypeAlias = np.ndarray[tuple[int, int], np.dtype[_InexactT]]
    _3D: TypeAlias = np.ndarray[tuple[int, int, int], np.dtype[_InexactT]]
    _ArrayOrTuple: TypeAlias = NDArray[_InexactT] | tuple[NDArray[_InexactT], ...]

    # --- numpy arrays of float16/32/64 or complex: the result keeps the dtype ---------------

    @overload
    def gradient(
        f: NDArray[_InexactT],
        *varargs: Any,
        axis: SupportsIndex,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: NDArray[_InexactT] | None = None,
        stack: bool = False,
        backend: _Backend = None,
    ) -> NDArray[_InexactT]: ...
    @overload
    def gradient(
        f: NDArray[_InexactT],
        *varargs: Any,
        axis: _Axes = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: NDArray[_InexactT] | None = None,
        stack: Literal[True],
        backend: _Backend = None,
    ) -> NDArray[_InexactT]: ...
    @overload
    def gradient(
        f: NDArray[_InexactT],
        *varargs: Any,
        axis: _SeveralAxes,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: tuple[NDArray[_InexactT], ...] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> tuple[NDArray[_InexactT], ...]: ...
    @overload
    def gradient(
        f: _UnknownNDim[_InexactT],
        *varargs: Any,
        axis: _Axes = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: _ArrayOrTuple[_InexactT] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> _ArrayOrTuple[_InexactT]: ...
    @overload
    def gradient(
        f: _1D[_InexactT],
        *varargs: Any,
        axis: _Axes = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: NDArray[_InexactT] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> NDArray[_InexactT]: ...
    @overload
    def gradient(
        f: _2D[_InexactT],
        *varargs: Any,
        axis: None = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: tuple[NDArray[_InexactT], NDArray[_InexactT]] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> tuple[NDArray[_InexactT], NDArray[_InexactT]]: ...
    @overload
    def gradient(
        f: _3D[_InexactT],
        *varargs: Any,
        axis: None = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: tuple[NDArray[_InexactT], NDArray[_InexactT], NDArray[_InexactT]] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> tuple[NDArray[_InexactT], NDArray[_InexactT], NDArray[_InexactT]]: ...
    @overload
    def gradient(
        f: NDArray[_InexactT],
        *varargs: Any,
        axis: _Axes = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: _ArrayOrTuple[_InexactT] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> _ArrayOrTuple[_InexactT]: ...

    # --- other numpy arrays and nested sequences (integers compute in float64, ...) -----------

    @overload
    def gradient(
        f: NDArray[Any] | Sequence[Any],
        *varargs: Any,
        axis: SupportsIndex,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: NDArray[Any] | None = None,
        stack: bool = False,
        backend: _Backend = None,
    ) -> NDArray[Any]: ...
    @overload
    def gradient(
        f: NDArray[Any] | Sequence[Any],
        *varargs: Any,
        axis: _Axes = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: NDArray[Any] | None = None,
        stack: Literal[True],
        backend: _Backend = None,
    ) -> NDArray[Any]: ...
    @overload
    def gradient(
        f: NDArray[Any] | Sequence[Any],
        *varargs: Any,
        axis: _SeveralAxes,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: tuple[NDArray[Any], ...] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> tuple[NDArray[Any], ...]: ...
    @overload
    def gradient(
        f: NDArray[Any] | Sequence[Any],
        *varargs: Any,
        axis: _Axes = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: NDArray[Any] | tuple[NDArray[Any], ...] | None = None,
        stack: Literal[False] = False,
        backend: _Backend = None,
    ) -> NDArray[Any] | tuple[NDArray[Any], ...]: ...

    # --- anything else (torch tensors, CuPy and dask arrays, ...): the same kind comes back ----

    @overload
    def gradient(
        f: object,
        *varargs: Any,
        axis: SupportsIndex | _Axes = None,
        edge_order: _EdgeOrder = 1,
        accuracy: _Accuracy = 2,
        boundary: _Boundary = "edge",
        period: _Period = None,
        out: Any = None,
        stack: bool = False,
        backend: _Backend = None,
    ) -> Any: ...
    def gradient(f: object, *varargs: Any, **options: Any) -> Any:
        """Type checkers' view of cugrad._api.gradient (the function imported at run time)."""

else:
    from cugrad._api import gradient

    def __getattr__(name: str) -> Any:
        # compile_kernels drives NVRTC through ctypes: import it only when asked for, so that
        # ``import cugrad`` stays as light as numpy itself on machines that never compile a
        # kernel. Hidden from type checkers (they see the import above), so that a misspelt
        # name such as ``cugrad.gradeint`` is an error there, not ``Any``.
        if name == "compile_kernels":
            from cugrad._compile import compile_kernels

            return compile_kernels
        raise AttributeError(f"module 'cugrad' has no attribute {name!r}")
