"""The public ``gradient``: route the call, validate ``out=``/``stack=``, hand the plan to a backend."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cugrad import _backend, _numpy_backend
from cugrad._plan import Delegate, GradientPlan, make_plan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

BackendArg = Literal["auto", "numpy", "cupy"] | None

# Host arrays with fewer elements (and no out=/stack=) are handed to numpy.gradient as they are;
# see the comment at the use. The test suite sets this to 0 so that cugrad's own path is what it tests.
NUMPY_GRADIENT_BELOW = _numpy_backend.PARALLEL_MIN_ELEMENTS


def gradient(
    f: ArrayLike,
    *varargs: Any,
    axis: int | Sequence[int] | None = None,
    edge_order: int = 1,
    accuracy: int = 2,
    boundary: str | Sequence[str] = "edge",
    period: float | Sequence[float | None] | None = None,
    out: Any = None,
    stack: bool = False,
    backend: BackendArg = None,
) -> Any:
    """Return the gradient of an N-dimensional array, exactly as ``numpy.gradient`` does.

    Second-order accurate central differences in the interior and first- or second-order one-sided
    differences at the boundaries, on the CPU (NumPy) or on an NVIDIA GPU (CuPy). The result has the
    same shape and dtype as numpy.gradient's and the same bits. Options numpy lacks (``accuracy``,
    ``boundary``, ``period``) keep numpy's behaviour at their defaults.

    Parameters
    ----------
    f : array_like
        An N-dimensional array: a NumPy array or anything ``numpy.asanyarray`` accepts, a CuPy array,
        a torch tensor, a dask array, or any object with ``__cuda_array_interface__`` or a CUDA
        ``__dlpack__``.
    *varargs : scalar or array_like, optional
        Spacing between values of `f`, as numpy.gradient takes it: nothing (unit spacing), one scalar
        for all axes, or one entry per differentiated axis, each a scalar or a 1-D array of
        coordinates as long as that axis.
    axis : None or int or tuple of ints, optional
        Axes to differentiate, in the order given; negative values count from the end. None (the
        default) means every axis.
    edge_order : {1, 2}, optional
        Accuracy of the one-sided differences at the boundaries. numpy's rules apply: only values
        greater than 2 are rejected, and any value other than 1 gives second-order edges.
        Applies to ``accuracy=2``; leave it at its default with higher accuracies.
    accuracy : {2, 4, 6, 8}, optional
        Order of the finite differences. 2 (the default) is numpy.gradient. ``p >= 4`` uses central
        stencils of ``p+1`` points and, in the first and last ``p/2`` rows, off-centre stencils of
        the same width, so every row has order ``p``; coordinate arrays get the weights of the
        polynomial through the ``p+1`` points (Fornberg). Needs at least ``p+1`` points per axis.
    boundary : {"edge", "periodic"} or sequence of them, optional
        ``"edge"`` (the default): one-sided differences at the ends, as numpy. ``"periodic"``: every
        row uses the central stencil with indices wrapped around the axis. One string for every
        differentiated axis, or one per axis in ``axis`` order.
    period : float or sequence of (float or None), optional
        The domain length of periodic axes given by coordinate arrays (required there): the
        coordinate after the last one is the first plus ``period``, e.g. 360 for longitudes in
        degrees. One number for all such axes, or one entry per axis (None for the others).
        With scalar spacing the wrap distance is the spacing.
    out : ndarray or tuple of ndarray, optional
        Where to write the result: what the call would return (one array for one axis, a tuple of one
        array per axis), or with ``stack=True`` one array of shape ``(len(axes),) + f.shape``. Each
        must have exactly the result dtype and shape and live where the result would (host or the
        same GPU). Everything is validated before anything is written. The given arrays are returned.
    stack : bool, optional
        Return one array of shape ``(len(axes),) + f.shape`` (for example as ML channels) instead of
        a tuple; it is written in place, not stacked afterwards.
    backend : {None, "auto", "numpy", "cupy"}, optional
        ``None`` reads the ``CUGRAD_BACKEND`` environment variable and falls back to ``"auto"``,
        which follows the input: device arrays run on their GPU, host arrays with NumPy. ``"cupy"``
        computes host arrays on the GPU and returns host arrays. A device array is never moved to
        the host silently: ``backend="numpy"`` with a device array raises ``TypeError``.

    Returns
    -------
    gradient : ndarray or tuple of ndarray
        One array for one axis, a tuple of arrays for several, ``()`` for a 0-d input or
        ``axis=()``; with ``stack=True`` one array. Arrays are of the input's kind (NumPy, CuPy,
        torch, dask).

    Raises
    ------
    TypeError, ValueError, IndexError, numpy.exceptions.AxisError
        Whatever numpy.gradient raises for the same arguments, in numpy's order; ``ValueError`` or
        ``TypeError`` for a bad ``out=``/``stack=``/``backend=``; ``RuntimeError`` when
        ``backend="cupy"`` is asked for without CuPy or a usable GPU.

    See Also
    --------
    numpy.gradient : the reference this function reproduces.

    Notes
    -----
    Inputs that numpy handles through special code (datetime64, timedelta64, object, bool and string
    dtypes, masked arrays, ``np.matrix`` and other subclasses) are computed by numpy.gradient itself on
    the NumPy backend, so their results and exceptions are numpy's. The options numpy lacks need
    numeric data and real spacing (``TypeError`` otherwise).

    The operation order of every stencil (which differences, products and sums, in which order, in
    which dtype) is defined once (``cugrad._plan.Region``; README, "Accuracy orders and periodic
    boundaries"), and every backend gives the same bits.

    Examples
    --------
    >>> import numpy as np
    >>> import cugrad
    >>> cugrad.gradient(np.array([1, 2, 4, 7, 11, 16], dtype=float))
    array([1. , 1.5, 2.5, 3.5, 4.5, 5. ])
    >>> cugrad.gradient(np.array([5, 7, 4, 8]), 0.5)
    array([ 4., -1.,  1.,  8.])
    >>> dy, dx = cugrad.gradient(np.array([[1, 2, 6], [3, 4, 5]], dtype=float))
    >>> dx
    array([[1. , 2.5, 4. ],
           [1. , 1. , 1. ]])
    >>> cugrad.gradient(np.arange(12.0).reshape(3, 4), stack=True).shape
    (2, 3, 4)
    >>> cugrad.gradient(np.arange(6.0) ** 4, accuracy=4)   # exact for polynomials of degree <= 4
    array([  0.,   4.,  32., 108., 256., 500.])
    >>> cugrad.gradient(np.array([0.0, 1.0, 0.0, -1.0]), boundary="periodic")
    array([ 1.,  0., -1.,  0.])
    """
    name = _backend.requested_backend(backend)
    options = {}
    if accuracy != 2 or boundary != "edge" or period is not None:
        options = {"accuracy": accuracy, "boundary": boundary, "period": period}
    if (
        type(f) is np.ndarray
        and f.size < NUMPY_GRADIENT_BELOW
        and out is None
        and stack is False
        and name != "cupy"
        and not options
    ):
        # Small arrays: call overhead dominates, and numpy.gradient's own code is the shortest exact
        # path; slabs and threads only pay for themselves on larger arrays.
        return np.gradient(f, *varargs, axis=axis, edge_order=edge_order)
    if not isinstance(stack, (bool, np.bool_)):
        raise TypeError(f"stack must be True or False, got {stack!r}")
    stack = bool(stack)
    if type(f) is np.ndarray and f.size < NUMPY_GRADIENT_BELOW and name != "cupy" and not options:
        # ... and with out= or stack=: numpy.gradient, then a copy into the outputs (validated
        # first), costs about what numpy + a copy costs; building a plan would cost more.
        return _run_numpy_gradient(f, varargs, axis, edge_order, out, stack)

    # Containers of other libraries: each converts without copying and calls back in here.
    if type(f) is np.ndarray:
        pass  # the common case skips the probes below (small-input overhead matters)
    elif _backend.is_torch_tensor(f):
        return _extension("_interop").torch_gradient(
            f, varargs, axis=axis, edge_order=edge_order, out=out, stack=stack, backend=name,
            **options
        )
    elif _backend.is_dask_array(f):
        return _extension("_dask").dask_gradient(
            f, varargs, axis=axis, edge_order=edge_order, out=out, stack=stack, backend=name,
            **options
        )
    elif _backend.is_foreign_cuda_array(f):
        f = _extension("_interop").as_cupy(f)

    if _backend.is_device_array(f):
        if name == "numpy":
            raise TypeError(
                'backend="numpy" was asked for a GPU array; cugrad never moves device arrays to the '
                "host silently: use backend=\"cupy\" (or None), or copy it yourself with f.get()"
            )
        return _run_on_device(f, varargs, axis, edge_order, out, stack, options)

    f = like = np.asanyarray(f)
    if type(f) is np.memmap:
        # numpy.gradient returns memmap-class results for a memmap (empty_like keeps the class):
        # allocate them from the memmap, but read the data through a plain view.
        f = f.view(np.ndarray)
    elif type(f) is not np.ndarray:
        _refuse_options_for_numpy(options, f)
        return _run_numpy_gradient(f, varargs, axis, edge_order, out, stack)
    if (f.size < NUMPY_GRADIENT_BELOW and out is None and not stack and name != "cupy"
            and not options):
        return np.gradient(like, *varargs, axis=axis, edge_order=edge_order)  # as above
    try:
        plan = make_plan(f, varargs, axis, edge_order, **options)
    except Delegate:
        _refuse_options_for_numpy(options, f)
        return _run_numpy_gradient(like, varargs, axis, edge_order, out, stack)
    except (ValueError, TypeError, IndexError, ZeroDivisionError):
        if options or not f.size or not _numpy_backend.fp_events_raise():
            raise
        # numpy computes axis after axis and would meet a floating-point event (raised under
        # np.errstate or warnings-as-errors) before the error found in a later axis or coefficient;
        # numpy.gradient itself raises what numpy raises.
        return _run_numpy_gradient(like, varargs, axis, edge_order, out, stack)

    if name == "cupy" or (name == "auto" and _offload_wanted(plan, f)):
        _backend.require_gpu()
        result, outs = _prepare_outputs(plan, like, out, stack, np)
        _extension("_offload").offload_gradient(plan, f, outs)
        return result

    result, outs = _prepare_outputs(plan, like, out, stack, np)
    if out is not None and any(np.may_share_memory(o, f) for o in outs):
        # The user's out= overlaps f: compute into fresh arrays, then copy (cupyx does the same).
        fresh = [np.empty_like(o) for o in outs]
        _numpy_backend.execute(plan, f, fresh)
        for o, r in zip(outs, fresh, strict=True):
            np.copyto(o, r)
        return result
    _numpy_backend.execute(plan, f, outs)
    return result


def _refuse_options_for_numpy(options: dict[str, Any], f: Any) -> None:
    """The options numpy lacks cannot be handed to numpy.gradient's special code."""
    if options:
        raise TypeError(
            "accuracy, boundary and period need numeric data (integer, float or complex) and real "
            f"spacing; got an array of dtype {getattr(f, 'dtype', None)} or spacing numpy.gradient treats "
            "through special code (a masked, subclassed, complex or timedelta spacing)"
        )


def _extension(module: str) -> Any:
    return importlib.import_module(f"cugrad.{module}")


def _offload_wanted(plan: GradientPlan, f: np.ndarray) -> bool:
    """Whether backend="auto" streams this host array through a usable GPU.

    Only when the user has set ``CUGRAD_OFFLOAD_MIN_BYTES`` (opt-in) and the array is that large:
    otherwise "auto" follows the input and a host array never initialises CUDA.
    """
    threshold = _backend.offload_threshold_bytes()
    return (
        threshold is not None
        and f.nbytes >= threshold
        and _backend.gpu_status()[0]
        and _extension("_offload").supports(plan, f)
    )


def _run_on_device(f, varargs, axis, edge_order, out, stack, options=None):
    import cupy

    options = options or {}
    with f.device:
        try:
            plan = make_plan(f, varargs, axis, edge_order, **options)
        except Delegate:
            _refuse_options_for_numpy(options, f)
            # The host path hands these inputs to numpy.gradient; a device array has no numpy to
            # go to, so compute numpy's result here, or raise a TypeError that says what to do.
            return _run_delegated_on_device(f, varargs, axis, edge_order, out, stack, cupy)
        result, outs = _prepare_outputs(plan, f, out, stack, cupy)
        _execute_on_device(plan, f, outs, out is not None, cupy)
        return result


def _execute_on_device(plan: GradientPlan, f: Any, outs: list[Any], given: bool, cupy: Any) -> None:
    from cugrad import _cupy_backend

    _backend.require_supported_cupy()
    try:
        if given and any(cupy.may_share_memory(o, f) for o in outs):
            fresh = [cupy.empty_like(o) for o in outs]
            _cupy_backend.execute(plan, f, fresh)
            for o, r in zip(outs, fresh, strict=True):
                o[...] = r
            return
        _cupy_backend.execute(plan, f, outs)
    except Exception as exc:
        # The first call compiles: without the CUDA headers or NVRTC, CuPy's own error does not
        # say how to get them.
        fix = _backend.explain_compile_failure(exc)
        if fix is None:
            raise
        raise RuntimeError(fix) from exc


class _PlanShape:
    """What make_plan reads of a device array (shape, dtype), without allocating one."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.ndim, self.dtype = shape, len(shape), dtype


def _run_delegated_on_device(f, varargs, axis, edge_order, out, stack, cupy):
    """numpy's result for complex spacing on real device data, else a TypeError saying what to do.

    numpy.gradient computes an axis with complex spacing (a Python or numpy complex, a 0-d or 1-D
    complex array) in complex and assigns it into the real output it allocated: a ComplexWarning,
    and the real part kept. Casting ``f`` to complex first gives the same bits, because numpy
    promotes each real operand to complex (imaginary part +0) before its complex division or
    product, and a difference of two such values has the real difference as its real part. Axes
    with real spacing keep the real computation (``x / d`` is not ``Re((x + 0j) / d)`` bit for bit).
    The exceptions: float16 data, which numpy subtracts in float16 before promoting, and bool data,
    which numpy cannot subtract at all, where an axis with complex spacing uses a difference.
    Everything else numpy treats through special code (masked or subclassed coordinate arrays,
    spacing objects that are not numbers, timedelta spacing) has no device equivalent.
    """
    import dataclasses
    import warnings

    from cugrad._plan import data_and_out_dtypes

    data_dtype, out_dtype = data_and_out_dtypes(f.dtype, True)
    complex_dtype = np.result_type(data_dtype, np.complex64)
    if f.dtype.kind not in "biuf":
        raise TypeError(_delegated_on_device_message(varargs))
    try:  # validates every argument in numpy's order, as the complex computation sees them
        whole = make_plan(_PlanShape(tuple(f.shape), complex_dtype), varargs, axis, edge_order)
    except Delegate:
        raise TypeError(_delegated_on_device_message(varargs)) from None

    real_positions, complex_positions = [], []
    for i, ax in enumerate(whole.axes):
        try:
            make_plan(f, _spacing_of(varargs, [i], len(whole.axes)), (ax,), edge_order)
        except Delegate:
            ap = whole.axis_plans[i]
            stencils = [ap.interior, ap.left, ap.right]
            if ap.uniform_variant is not None:
                u = ap.uniform_variant
                stencils += [u.interior, u.left, u.right]
            if any(s.kind == "diff" for s in stencils) and (
                f.dtype.kind == "b" or f.dtype == np.float16
            ):
                raise TypeError(_delegated_difference_message(f.dtype, ax)) from None
            complex_positions.append(i)
        else:
            real_positions.append(i)

    result, outs = _prepare_outputs(
        dataclasses.replace(whole, data_dtype=data_dtype, out_dtype=out_dtype), f, out, stack, cupy
    )
    if complex_positions:
        warnings.warn(
            "Casting complex values to real discards the imaginary part (numpy.gradient computes "
            "with the complex spacing and stores the real part into the real result)",
            np.exceptions.ComplexWarning,
            stacklevel=4,
        )
    count = len(whole.axes)
    if real_positions:
        real_axes = tuple(whole.axes[i] for i in real_positions)
        plan = make_plan(f, _spacing_of(varargs, real_positions, count), real_axes, edge_order)
        _execute_on_device(plan, f, [outs[i] for i in real_positions], out is not None, cupy)
    if complex_positions:
        fc = f.astype(complex_dtype)
        complex_axes = tuple(whole.axes[i] for i in complex_positions)
        plan = make_plan(fc, _spacing_of(varargs, complex_positions, count), complex_axes,
                         edge_order)
        parts = [cupy.empty(plan.shape, plan.out_dtype) for _ in complex_axes]
        _execute_on_device(plan, fc, parts, False, cupy)
        for i, part in zip(complex_positions, parts, strict=True):
            outs[i][...] = part.real
    return result


def _spacing_of(varargs: tuple[Any, ...], positions: list[int], count: int) -> tuple[Any, ...]:
    """The spacing arguments of the axes at ``positions`` (of ``count``), in numpy's forms."""
    if not varargs or (len(varargs) == 1 and _ndim_of(varargs[0]) == 0):
        return tuple(varargs)  # no spacing, or one scalar for every axis
    assert len(varargs) == count  # make_plan validated the forms
    return tuple(varargs[i] for i in positions)


def _ndim_of(value: Any) -> int:
    ndim = getattr(value, "ndim", None)
    return ndim if isinstance(ndim, int) else np.ndim(value)


def _delegated_difference_message(dtype: np.dtype, ax: int) -> str:
    if dtype.kind == "b":
        from cugrad._plan import _BOOL_SUBTRACT

        return _BOOL_SUBTRACT
    return (
        f"complex spacing on float16 data (axis {ax}): numpy.gradient subtracts in float16 and "
        "then divides by the complex spacing, a mix cugrad's GPU kernels do not compute; convert "
        "the data with f.astype(cupy.float32), give real spacing (only the real part of the "
        "result is kept anyway), or compute on the host with numpy.gradient(f.get(), ...)"
    )


def _delegated_on_device_message(varargs: tuple[Any, ...]) -> str:
    what = "these spacing arguments"
    for i, v in enumerate(varargs):
        if isinstance(v, np.ndarray) and type(v) is not np.ndarray:
            what = f"spacing argument {i}, a {type(v).__module__}.{type(v).__qualname__}"
            break
        kind = getattr(getattr(v, "dtype", None), "kind", None)
        if kind is not None and kind not in "biufc":
            what = f"spacing argument {i}, of dtype {v.dtype}"
            break
        if kind is None and not isinstance(v, (bool, int, float, complex, list, tuple)):
            what = f"spacing argument {i}, a {type(v).__module__}.{type(v).__qualname__}"
            break
    return (
        f"cugrad cannot compute this call on the GPU: numpy.gradient treats {what} through "
        "special code (masked or subclassed arrays, objects that are not numbers, timedelta "
        "arithmetic) that has no GPU equivalent. Give plain numbers or plain 1-D coordinate "
        "arrays (np.asarray(x), or np.ma.getdata(x) for a masked array), or compute on the host "
        "with numpy.gradient(f.get(), ...)"
    )


def _run_numpy_gradient(f, varargs, axis, edge_order, out, stack):
    """numpy.gradient itself (special inputs, small arrays); then out=/stack=, validated first."""
    computed = np.gradient(f, *varargs, axis=axis, edge_order=edge_order)
    arrays = list(computed) if isinstance(computed, tuple) else [computed]
    if stack:
        shape = np.shape(f)
        dtype = arrays[0].dtype if arrays else _delegated_out_dtype(f)
        stacked = np.empty((len(arrays),) + shape, dtype) if out is None else out
        if out is not None:
            _check_stack_out(out, len(arrays), shape, dtype, np)
        for i, a in enumerate(arrays):
            stacked[i] = a
        return stacked
    if out is None:
        return computed
    outs = _check_tuple_out(out, len(arrays), [(a.shape, a.dtype) for a in arrays], np)
    _check_no_mutual_overlap(outs, np)
    for o, a in zip(outs, arrays, strict=True):
        np.copyto(o, a)
    return outs[0] if not isinstance(computed, tuple) else tuple(outs)


def _delegated_out_dtype(f) -> np.dtype:
    dtype = np.asarray(f).dtype
    if dtype.kind == "M":
        return np.dtype(dtype.name.replace("datetime", "timedelta"))
    if dtype.kind in "mfc":
        return dtype
    return np.dtype(np.float64)


def _prepare_outputs(plan: GradientPlan, f: Any, out: Any, stack: bool, xp: Any):
    """(what the call returns, one output array per axis), allocating or validating ``out``."""
    count = len(plan.axes)
    if stack:
        if out is None:
            stacked = xp.empty((count,) + plan.shape, plan.out_dtype)
        else:
            stacked = _check_stack_out(out, count, plan.shape, plan.out_dtype, xp)
        return stacked, [stacked[i] for i in range(count)]
    if out is None:
        outs = [xp.empty_like(f, dtype=plan.out_dtype) for _ in range(count)]
    else:
        outs = _check_tuple_out(out, count, [(plan.shape, plan.out_dtype)] * count, xp)
        _check_no_mutual_overlap(outs, xp)
    if count == 1:
        return outs[0], outs
    return tuple(outs), outs


def _check_array(o: Any, what: str, shape, dtype, xp) -> Any:
    if not isinstance(o, xp.ndarray):
        where = "NumPy" if xp is np else "CuPy"
        raise TypeError(
            f"{what} must be a {where} array (the result lives where the computation does), "
            f"got {type(o).__module__}.{type(o).__qualname__}"
        )
    if tuple(o.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(o.shape)}, expected {tuple(shape)}")
    if o.dtype != dtype:
        raise TypeError(
            f"{what} has dtype {o.dtype}, expected {np.dtype(dtype)} (numpy.gradient's result "
            "dtype for this input; cugrad does not cast results)"
        )
    if xp is np and not o.flags.writeable:
        raise ValueError(f"{what} is read-only")
    return o


def _check_stack_out(out, count, shape, dtype, xp):
    if xp is not np and hasattr(out, "device") and out.device != _current_device(xp):
        raise ValueError(f"out is on {out.device}, but the input is on {_current_device(xp)}")
    return _check_array(out, "out (with stack=True)", (count,) + tuple(shape), dtype, xp)


def _check_tuple_out(out, count, specs, xp):
    if isinstance(out, (tuple, list)):
        outs = list(out)
    elif count == 1:
        outs = [out]
    else:
        raise TypeError(
            f"out must be a tuple of {count} arrays, one per differentiated axis "
            "(or one array of shape (len(axes),) + f.shape with stack=True)"
        )
    if len(outs) != count:
        raise ValueError(f"out has {len(outs)} arrays but the call computes {count}, one per axis")
    for i, (o, (shape, dtype)) in enumerate(zip(outs, specs, strict=True)):
        _check_array(o, f"out[{i}]", shape, dtype, xp)
        if xp is not np and o.device != _current_device(xp):
            raise ValueError(f"out[{i}] is on {o.device}, but the input is on {_current_device(xp)}")
    return outs


def _check_no_mutual_overlap(outs, xp) -> None:
    for i in range(len(outs)):
        for j in range(i):
            if xp.may_share_memory(outs[i], outs[j]):
                raise ValueError(f"out[{j}] and out[{i}] share memory; give separate arrays")


def _current_device(xp):
    return xp.cuda.Device()
