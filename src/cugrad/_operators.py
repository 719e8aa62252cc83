"""Derived operators in one pass: gradient magnitude, divergence, curl and Laplacian.

The public functions parse their inputs, get a plan from :mod:`cugrad._operator_plan` and hand it
to a backend: on the CPU, :func:`cugrad._numpy_backend.execute_fused` computes every output slab by
slab with no full-size derivative array; dask arrays stay lazy (one task per block, per term, the
terms combined blockwise); CuPy arrays are computed on their GPU in one fused launch per
operator (:func:`cugrad._cupy_backend.execute_operator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cugrad import _backend, _numpy_backend, _operator_plan
from cugrad._plan import GradientPlan, OperatorPlan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

_SHARED_DOC = """
    accuracy, boundary, period
        As for :func:`cugrad.gradient`: accuracy order 2 (numpy's), 4, 6 or 8; ``"edge"`` or
        ``"periodic"`` ends (one per axis or one for all); the domain length of periodic
        coordinate axes.
    out : ndarray, optional
        Where to write the result (its dtype and shape exactly); validated before anything is
        written, and returned.
    backend : {None, "auto", "numpy", "cupy"}, optional
        As for :func:`cugrad.gradient`.
"""


def gradient_magnitude(
    f: ArrayLike,
    *varargs: Any,
    axis: int | Sequence[int] | None = None,
    edge_order: int = 1,
    accuracy: int = 2,
    boundary: str | Sequence[str] = "edge",
    period: float | Sequence[float | None] | None = None,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Return ``sqrt((g0*g0 + g1*g1) + g2*g2 ...)`` of the gradient along ``axis``, in one pass.

    ``g`` are :func:`cugrad.gradient`'s results for the same arguments, in axis order; products,
    sums and the square root are numpy's, in the result dtype, so the result equals the numpy
    composition over ``numpy.gradient`` bit for bit (over ``cugrad.gradient`` with the options numpy
    lacks). No gradient array of full size is made.

    Parameters
    ----------
    f : array_like
        Real data (complex raises ``TypeError``): NumPy, dask, CuPy, or a torch tensor.
    *varargs, axis, edge_order
        As for :func:`cugrad.gradient`.
    {shared}

    Returns
    -------
    ndarray
        The magnitude, of ``f``'s shape and the gradient's dtype, of ``f``'s array type.

    Examples
    --------
    >>> import numpy as np, cugrad
    >>> f = np.array([[0.0, 3.0, 6.0], [4.0, 7.0, 10.0]])   # d/dy = 4, d/dx = 3
    >>> cugrad.gradient_magnitude(f)
    array([[5., 5., 5.],
           [5., 5., 5.]])
    """
    options = _options(accuracy, boundary, period)
    return _run("magnitude", [f], varargs, axis, edge_order, options, out, False, backend)


def divergence(
    F: Any,
    *varargs: Any,
    axis: int | Sequence[int] | None = None,
    edge_order: int = 1,
    accuracy: int = 2,
    boundary: str | Sequence[str] = "edge",
    period: float | Sequence[float | None] | None = None,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Return ``(dF0/da0 + dF1/da1) + dF2/da2 ...`` in one pass: component i along ``axis[i]``.

    Parameters
    ----------
    F : sequence of k arrays of one shape and dtype, or one array of shape ``(k,) + S``
        The vector field's components.
    *varargs
        Spacing as :func:`cugrad.gradient` takes it, relative to the axes in ``axis`` (one scalar
        for all, or one scalar or coordinate array per axis).
    axis : sequence of k ints, optional
        The axis each component is differentiated along; every axis of ``S`` by default (then
        ``S`` must have k dimensions).
    edge_order
        As for :func:`cugrad.gradient`.
    {shared}

    Returns
    -------
    ndarray
        The divergence, of shape ``S``; bit for bit the sum of ``numpy.gradient``'s derivatives
        in this order.

    Examples
    --------
    >>> import numpy as np, cugrad
    >>> y, x = np.mgrid[0:3, 0:4].astype(float)
    >>> cugrad.divergence([y * 2, x * 3])       # d(2y)/dy + d(3x)/dx
    array([[5., 5., 5., 5.],
           [5., 5., 5., 5.],
           [5., 5., 5., 5.]])
    """
    options = _options(accuracy, boundary, period)
    return _run("divergence", _components(F), varargs, axis, edge_order, options, out, False,
                backend)


def curl(
    F: Any,
    *varargs: Any,
    axis: int | Sequence[int] | None = None,
    edge_order: int = 1,
    accuracy: int = 2,
    boundary: str | Sequence[str] = "edge",
    period: float | Sequence[float | None] | None = None,
    out: Any = None,
    stack: bool = False,
    backend: str | None = None,
) -> Any:
    """Return the curl of a 2-D or 3-D vector field in one pass.

    With ``F = (Fa, Fb)`` and ``axis = (a, b)``: the scalar ``dFb/da - dFa/db``. For arrays
    indexed ``[y, x]``, ``curl([u, v], dx, dy, axis=(1, 0))`` is the vorticity ``dv/dx - du/dy``.
    With ``F = (Fa, Fb, Fc)`` and ``axis = (a, b, c)``: ``(dFc/db - dFb/dc, dFa/dc - dFc/da,
    dFb/da - dFa/db)``, right-handed when ``(a, b, c)`` are the axes of a right-handed ``(x, y, z)``.

    Parameters
    ----------
    F : sequence of 2 or 3 arrays of one shape and dtype, or one array of shape ``(k,) + S``
        The components, in the order of ``axis``.
    *varargs
        Spacing relative to the axes in ``axis``, as :func:`cugrad.gradient` takes it.
    axis : sequence of k ints, optional
        The axes the components refer to; every axis of ``S`` by default.
    edge_order
        As for :func:`cugrad.gradient`.
    {shared}
    stack : bool, optional
        For k = 3, return one array of shape ``(3,) + S`` instead of a tuple.

    Returns
    -------
    ndarray or tuple of 3 ndarrays
        Each component bit for bit the difference of ``numpy.gradient``'s derivatives.

    Examples
    --------
    >>> import numpy as np, cugrad
    >>> y, x = np.mgrid[0:3, 0:4].astype(float)
    >>> u, v = -y, x                      # solid rotation, counter-clockwise: vorticity 2
    >>> cugrad.curl([u, v], 1.0, 1.0, axis=(1, 0))
    array([[2., 2., 2., 2.],
           [2., 2., 2., 2.],
           [2., 2., 2., 2.]])
    """
    if not isinstance(stack, (bool, np.bool_)):
        raise TypeError(f"stack must be True or False, got {stack!r}")
    options = _options(accuracy, boundary, period)
    return _run("curl", _components(F), varargs, axis, edge_order, options, out, bool(stack),
                backend)


def laplacian(
    f: ArrayLike,
    *varargs: Any,
    axis: int | Sequence[int] | None = None,
    accuracy: int = 2,
    boundary: str | Sequence[str] = "edge",
    period: float | Sequence[float | None] | None = None,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Return the sum over ``axis`` of second derivatives, in axis order, in one pass.

    Accuracy 2: the central three-point second difference (uniform ``(f[i+1] - 2 f[i] +
    f[i-1]) / h**2``, coordinates the second derivative of the parabola through the three points),
    and the one-sided four-point stencil in the first and last rows (exact for cubics). Accuracy
    ``p >= 4``: central stencils of ``p+1`` points, off-centre ones of ``p+2`` points in the first
    and last ``p/2`` rows. Periodic boundaries wrap. Each row computes
    ``sum over o of w_o * (f[i+o] - f[i])`` (exactly 0 for a constant field); the operation order is
    README's "Accuracy orders and periodic boundaries", with second-derivative weights.

    Parameters
    ----------
    f : array_like
        NumPy, dask, CuPy, or a torch tensor.
    *varargs, axis
        As for :func:`cugrad.gradient` (spacing relative to the axes in ``axis``).
    {shared}

    Returns
    -------
    ndarray
        Of ``f``'s shape and the gradient's dtype.

    Examples
    --------
    >>> import numpy as np, cugrad
    >>> x = np.arange(5.0)
    >>> cugrad.laplacian(x**3)           # 6x, exact for cubics, the ends included
    array([ 0.,  6., 12., 18., 24.])
    """
    options = _options(accuracy, boundary, period)
    return _run("laplacian", [f], varargs, axis, 1, options, out, False, backend)


for _fn in (gradient_magnitude, divergence, curl, laplacian):
    _fn.__doc__ = _fn.__doc__.replace("{shared}", _SHARED_DOC.strip("\n").lstrip())


def _options(accuracy: Any, boundary: Any, period: Any) -> dict[str, Any]:
    return {"accuracy": accuracy, "boundary": boundary, "period": period}


def _components(F: Any) -> list[Any]:
    """A vector field's components: the items of a list or tuple, or the first axis of an array."""
    if isinstance(F, (list, tuple)):
        return list(F)
    if not hasattr(F, "shape"):
        F = np.asarray(F)
    if len(F.shape) < 1:
        raise ValueError("the vector field must be a sequence of arrays or one array of shape "
                         "(k,) + S")
    return [F[i] for i in range(F.shape[0])]


def _plan(kind: str, stand_in: Any, k: int, varargs, axis, edge_order, options) -> OperatorPlan:
    if kind == "magnitude":
        return _operator_plan.magnitude_plan(stand_in, varargs, axis, edge_order, options)
    if kind == "laplacian":
        return _operator_plan.laplacian_plan(stand_in, varargs, axis, options)
    if kind == "divergence":
        return _operator_plan.divergence_plan(stand_in, k, varargs, axis, edge_order, options)
    return _operator_plan.curl_plan(stand_in, k, varargs, axis, edge_order, options)


def _run(kind, sources, varargs, axis, edge_order, options, out, stack, backend) -> Any:
    name = _backend.requested_backend(backend)
    first = sources[0]
    if _backend.is_torch_tensor(first):
        return _run_torch(kind, sources, varargs, axis, edge_order, options, out, stack, name)
    if _backend.is_dask_array(first):
        return _run_dask(kind, sources, varargs, axis, edge_order, options, out, stack, name)
    if _backend.is_device_array(first) or _backend.is_foreign_cuda_array(first):
        return _run_device(kind, sources, varargs, axis, edge_order, options, out, stack, name)
    sources = [np.asarray(s) for s in sources]
    for s in sources:
        if s.dtype.kind not in "biufc" or s.dtype.kind == "b":
            raise TypeError(
                f"{kind} needs numeric data (integer, float or complex), got dtype {s.dtype}"
            )
    _operator_plan.check_components(sources)
    plan = _plan(kind, sources[0], len(sources), varargs, axis, edge_order, options)
    result, outs = _outputs(plan, out, stack)  # out= validated before any work
    if name == "cupy":
        import cupy

        _backend.require_gpu()
        device = [cupy.asarray(s) for s in sources]
        computed = _run_device(kind, device, varargs, axis, edge_order, options, None, stack, name)
        parts = list(computed) if isinstance(computed, tuple) else (
            [computed[i] for i in range(len(outs))] if stack else [computed])
        for o, r in zip(outs, parts, strict=True):
            np.copyto(o, r.get())
        return result
    native = [s if s.dtype.isnative else s.astype(s.dtype.newbyteorder("=")) for s in sources]
    if out is not None and any(np.may_share_memory(o, s) for o in outs for s in sources):
        fresh = [np.empty_like(o) for o in outs]
        _numpy_backend.execute_fused(plan, native, fresh)
        for o, r in zip(outs, fresh, strict=True):
            np.copyto(o, r)
        return result
    _numpy_backend.execute_fused(plan, native, outs)
    return result


def _outputs(plan: OperatorPlan, out: Any, stack: bool) -> tuple[Any, list[np.ndarray]]:
    """(what the call returns, one output array per plan output), allocated or validated."""
    from cugrad._api import _check_array

    count = len(plan.outputs)
    dtype = plan.out_dtype
    if count == 1:
        if out is None:
            o = np.empty(plan.shape, dtype)
        else:
            o = _check_array(out, "out", plan.shape, dtype, np)
        return o, [o]
    if stack:
        if out is None:
            o = np.empty((count,) + plan.shape, dtype)
        else:
            o = _check_array(out, "out (with stack=True)", (count,) + plan.shape, dtype, np)
        return o, [o[i] for i in range(count)]
    if out is None:
        outs = [np.empty(plan.shape, dtype) for _ in range(count)]
    else:
        if not isinstance(out, (tuple, list)) or len(out) != count:
            raise TypeError(f"out must be a tuple of {count} arrays, one per curl component "
                            "(or one array of shape (3,) + S with stack=True)")
        outs = [_check_array(o, f"out[{i}]", plan.shape, dtype, np) for i, o in enumerate(out)]
        for i in range(count):
            for j in range(i):
                if np.may_share_memory(outs[i], outs[j]):
                    raise ValueError(f"out[{j}] and out[{i}] share memory; give separate arrays")
    return tuple(outs), outs


def _combine(plan: OperatorPlan, terms_of: Any, xp: Any, stack: bool) -> Any:
    """The combination of each output's terms with array operations (dask, CuPy).

    ``terms_of(term)`` returns the term's derivative array (rounded into the output dtype); the
    operations are the numpy composition's, in its order.
    """
    results = []
    for output in plan.outputs:
        ts = [terms_of(t) for t in output.terms]
        if output.combine == "magnitude":
            acc = ts[0] * ts[0]
            for t in ts[1:]:
                acc = acc + t * t
            results.append(xp.sqrt(acc))
        elif output.combine == "difference":
            results.append(ts[0] - ts[1])
        else:
            acc = ts[0]
            for t in ts[1:]:
                acc = acc + t
            results.append(acc)
    if len(results) == 1:
        return results[0]
    return xp.stack(results) if stack else tuple(results)


def _run_dask(kind, sources, varargs, axis, edge_order, options, out, stack, name) -> Any:
    """Lazy: each term is a blockwise derivative (cugrad's dask gradient), combined blockwise."""
    import dask.array as da

    from cugrad import _dask

    if out is not None:
        raise TypeError("out= is not supported for dask arrays, which are immutable; store the "
                        "lazy result with dask.array.store")
    sources = [s if _backend.is_dask_array(s) else da.asarray(s) for s in sources]
    _operator_plan.check_components(sources)
    device_chunks = _backend.is_cupy_array(sources[0]._meta)
    stand_in = _dask._stand_in(sources[0].shape, sources[0].dtype, device_chunks)
    spacing = tuple(_dask._host_spacing(v, i) for i, v in enumerate(varargs))
    plan = _plan(kind, stand_in, len(sources), spacing, axis, edge_order, options)
    upload = name == "cupy" and not device_chunks

    def term(t):
        ap = t.axis_plan
        gp = GradientPlan(plan.shape, (ap.axis,), 1, plan.data_dtype, plan.out_dtype, (ap,))
        return _dask._axis_gradient(sources[t.source], gp, ap, upload)

    return _combine(plan, term, da, stack)


def _run_device(kind, sources, varargs, axis, edge_order, options, out, stack, name) -> Any:
    """Compute the operator on the sources' GPU in ONE fused launch (``kernels/operators.cuh``).

    The launch reads the sources and writes only the result (3-D curl: its three outputs), with no
    derivative array and no host synchronisation; it is queued on the current stream.

    ``out=`` is validated before anything is launched. An ``out=`` that may overlap a source is
    computed into a fresh result and copied (threads read neighbours that others would write).
    """
    import cupy

    from cugrad import _cupy_backend, _interop

    if name == "numpy":
        raise TypeError('backend="numpy" was asked for GPU arrays; cugrad never moves device '
                        'arrays to the host silently: use backend="cupy" (or None)')
    sources = [_interop.as_cupy(s) if _backend.is_foreign_cuda_array(s) else s for s in sources]
    _operator_plan.check_components(sources)
    with sources[0].device:
        plan = _plan(kind, sources[0], len(sources), varargs, axis, edge_order, options)
        result, outs = _device_outputs(plan, out, stack, cupy)
        overlaps = out is not None and any(cupy.may_share_memory(o, s)
                                           for o in outs for s in sources)
        targets = [cupy.empty(plan.shape, plan.out_dtype) for _ in outs] if overlaps else outs
        _cupy_backend.execute_operator(plan, sources, targets)
        if overlaps:
            for o, r in zip(outs, targets, strict=True):
                o[...] = r
        return result


def _device_outputs(plan: OperatorPlan, out: Any, stack: bool, cupy: Any) -> tuple[Any, list]:
    """Return (what the call returns, one CuPy output per plan output), allocated or validated.

    The host's :func:`_outputs` rules, for CuPy arrays on the current device.
    """
    count, dtype = len(plan.outputs), plan.out_dtype
    stacked = stack and count > 1
    if out is None:
        if stacked:
            result = cupy.empty((count,) + plan.shape, dtype)
            return result, [result[i] for i in range(count)]
        outs = [cupy.empty(plan.shape, dtype) for _ in range(count)]
        return (outs[0] if count == 1 else tuple(outs)), outs
    if count > 1 and not stacked and (not isinstance(out, (tuple, list)) or len(out) != count):
        raise TypeError(f"out must be a tuple of {count} arrays, one per curl component "
                        "(or one array of shape (3,) + S with stack=True)")
    given = list(out) if count > 1 and not stacked else [out]
    expected = (count,) + plan.shape if stacked else plan.shape
    for o in given:
        if not isinstance(o, cupy.ndarray) or o.shape != expected or o.dtype != dtype:
            raise TypeError(f"out must be CuPy arrays of shape {expected} and dtype {dtype}")
    outs = [out[i] for i in range(count)] if stacked else given
    for i in range(len(outs)):
        for j in range(i):
            if cupy.may_share_memory(outs[i], outs[j]):
                raise ValueError(f"out[{j}] and out[{i}] share memory; give separate arrays")
    return (tuple(given) if count > 1 and not stacked else out), outs


def _run_torch(kind, sources, varargs, axis, edge_order, options, out, stack, name) -> Any:
    """CPU tensors computed with NumPy on shared memory; CUDA tensors through CuPy (DLPack, on
    torch's current stream; not run on a GPU yet)."""
    import torch

    if any(t.requires_grad for t in sources) and torch.is_grad_enabled():
        raise RuntimeError("cugrad is not differentiable: call it under torch.no_grad() or on "
                           "detached tensors")
    if out is not None:
        raise TypeError("out= is not supported for torch tensors by the derived operators")
    device = sources[0].device
    if any(t.device != device for t in sources):
        raise ValueError("the components are on different devices: move them to one device")
    if device.type == "cpu":
        arrays, wrap = [t.numpy() for t in sources], torch.from_numpy
        result = _run(kind, arrays, varargs, axis, edge_order, options, None, stack, name)
    elif device.type == "cuda":
        import cupy

        from cugrad._interop import cupy_stream_of

        _backend.require_gpu()
        wrap = torch.from_dlpack
        # torch's current stream, as for cugrad.gradient: ordered after what torch queued before.
        with cupy.cuda.Device(device.index), cupy_stream_of(cupy, torch.cuda.current_stream(device)):
            arrays = [cupy.from_dlpack(t.detach()) for t in sources]
            result = _run(kind, arrays, varargs, axis, edge_order, options, None, stack, name)
    else:
        raise TypeError(f"cugrad computes torch tensors on the CPU or on CUDA devices, not on "
                        f"{device}")
    if isinstance(result, tuple):
        return tuple(wrap(r) for r in result)
    return wrap(result)
