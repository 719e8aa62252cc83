"""The same array type out as in: torch tensors, and CUDA arrays of other libraries.

Nothing here computes. Each function views the caller's memory as NumPy or CuPy arrays without
copying (``Tensor.numpy()``, DLPack, ``__cuda_array_interface__``), calls the public
:func:`cugrad.gradient` on those views, and wraps the results back into the caller's type.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from cugrad import _backend

if TYPE_CHECKING:
    import torch


def torch_gradient(
    f: torch.Tensor,
    varargs: tuple[Any, ...],
    *,
    axis: Any,
    edge_order: Any,
    out: Any,
    stack: bool,
    backend: str,
    **options: Any,
) -> Any:
    """``cugrad.gradient`` of a torch tensor, returning torch tensors on the tensor's device.

    CPU tensors are computed with NumPy on ``tensor.numpy()``, which shares the tensor's memory;
    the results are wrapped with ``torch.from_numpy`` (no copy). ``backend="cupy"`` computes a CPU
    tensor on the GPU and still returns CPU tensors. CUDA tensors are viewed as CuPy arrays through
    DLPack and computed on the tensor's device, on torch's current stream, so the work is ordered
    after whatever torch queued before and before whatever it queues next; results come back
    through DLPack as CUDA tensors on the same device.

    Spacing may be given as numbers, NumPy arrays, 0-d tensors or 1-D coordinate tensors (on the
    CPU, or on the input's CUDA device for a CUDA input). ``out=`` takes tensors of the result dtype
    and shape on the input's device; they are written in place and returned.

    Notes
    -----
    The result carries no autograd graph: cugrad is not differentiable. Rather than return tensors
    whose gradient would silently be missing, a call raises ``RuntimeError`` when grad mode is on
    and ``f`` (or a spacing tensor) requires grad; use ``torch.gradient`` for a differentiable
    result, or call with ``f.detach()`` or under ``torch.no_grad()``. Results never require grad.
    ``out=`` tensors that require grad are refused in grad mode, like torch's own in-place
    operations on them; their version counter is bumped after the write.

    ``bfloat16``, ``complex32`` and the float8 dtypes have no NumPy (or CuPy) equivalent, so
    numpy.gradient has no answer for them to match: they raise ``TypeError``; convert first, for
    example ``cugrad.gradient(f.float())``.
    """
    import torch

    _refuse_autograd(torch, f, varargs, out)
    _numpy_dtype(f.dtype)  # a dtype without an equivalent fails here, with a clear message
    kwargs = {"axis": axis, "edge_order": edge_order, "stack": stack, "backend": backend, **options}
    if f.device.type == "cpu":
        return _torch_cpu(torch, f, varargs, out, kwargs)
    if f.device.type == "cuda":
        return _torch_cuda(torch, f, varargs, out, kwargs)
    raise TypeError(
        f"cugrad computes torch tensors on the CPU or on CUDA devices, not on {f.device}; "
        "move the tensor with .cpu() or .cuda() first"
    )


def as_cupy(obj: Any) -> Any:
    """Return a CuPy view (no copy) of a device array of another library, on that array's device.

    DLPack is used when the object has a CUDA ``__dlpack__`` (it carries the device and the stream
    handshake), else ``__cuda_array_interface__`` (which CuPy honours, stream included).
    """
    _backend.require_gpu()
    import cupy

    if hasattr(obj, "__dlpack__") and _dlpack_on_cuda(obj):
        return cupy.from_dlpack(obj)
    return cupy.asarray(obj)


def _dlpack_on_cuda(obj: Any) -> bool:
    try:
        device_type, _ = obj.__dlpack_device__()
    except Exception:  # noqa: BLE001 - no usable device information: use the other protocol
        return False
    return int(device_type) in (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged


# --------------------------------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------------------------------


@functools.cache
def _numpy_dtype(torch_dtype: Any) -> np.dtype:
    """Return the NumPy dtype of a torch dtype (asking torch), or raise a TypeError that helps."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # complex32 tensors warn that they are experimental
            return torch.empty(0, dtype=torch_dtype).numpy().dtype
    except TypeError:
        pass
    if torch_dtype == torch.bfloat16:
        hint = "compute in float32 with f.float() (and cast the result back if you need bfloat16)"
    else:
        hint = "convert the tensor to a float32/float64/complex64/complex128 dtype first"
    raise TypeError(
        f"torch dtype {torch_dtype} has no NumPy equivalent, so numpy.gradient (which cugrad "
        f"reproduces bit for bit) is not defined for it: {hint}"
    )


def _refuse_autograd(torch: Any, f: Any, varargs: tuple[Any, ...], out: Any) -> None:
    if not torch.is_grad_enabled():
        return
    inputs = [("f", f)] + [(f"spacing argument {i}", v) for i, v in enumerate(varargs)]
    for what, t in inputs:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise RuntimeError(
                f"{what} requires grad, but cugrad.gradient is not differentiable and its result "
                "would carry no gradient. Use torch.gradient for a differentiable result, or pass "
                "f.detach() (or call under torch.no_grad()) to compute without a graph"
            )
    for i, t in enumerate(_out_list(out)):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise RuntimeError(
                f"out[{i}] requires grad; writing into it in place would bypass autograd. "
                "Give tensors that do not require grad, or call under torch.no_grad()"
            )


def _out_list(out: Any) -> list[Any]:
    if out is None:
        return []
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _torch_cpu(torch: Any, f: Any, varargs: tuple[Any, ...], out: Any, kwargs: dict) -> Any:
    from cugrad._api import gradient

    f_np = _tensor_as_numpy(f)
    spacing = tuple(_cpu_spacing(torch, v, i) for i, v in enumerate(varargs))
    out_tensors, out_arrays = _convert_out(torch, out, f.device, _tensor_as_numpy)
    result = gradient(f_np, *spacing, out=out_arrays, **kwargs)
    _bump_versions(torch, out_tensors)
    return _wrap(result, out_arrays, out_tensors, torch.from_numpy)


def _torch_cuda(torch: Any, f: Any, varargs: tuple[Any, ...], out: Any, kwargs: dict) -> Any:
    if kwargs["backend"] == "numpy":
        raise TypeError(
            'backend="numpy" was asked for a CUDA tensor; cugrad never moves device arrays to the '
            'host silently: use backend="cupy" (or None), or copy it yourself with f.cpu()'
        )
    _backend.require_gpu()
    import cupy

    from cugrad._api import gradient

    device = f.device
    stream = torch.cuda.current_stream(device)
    # The work goes on torch's current stream, so DLPack needs no synchronisation either way.
    with cupy.cuda.Device(device.index), cupy_stream_of(cupy, stream):

        def as_cupy_view(t: Any) -> Any:
            return cupy.from_dlpack(_resolved(t))

        f_cp = as_cupy_view(f)
        spacing = tuple(_cuda_spacing(torch, v, i, device, as_cupy_view) for i, v in
                        enumerate(varargs))
        out_tensors, out_arrays = _convert_out(torch, out, device, as_cupy_view)
        result = gradient(f_cp, *spacing, out=out_arrays, **kwargs)
        _bump_versions(torch, out_tensors)
        return _wrap(result, out_arrays, out_tensors, torch.from_dlpack)


class _StreamHandle:
    """A CUDA stream as the CUDA stream protocol presents it (``__cuda_stream__``).

    torch streams have the protocol only from torch 2.6 on; this adapter serves every torch the
    extra accepts. It keeps the torch stream alive as long as CuPy holds the adapter.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __cuda_stream__(self) -> tuple[int, int]:
        return 0, int(self.stream.cuda_stream)


def cupy_stream_of(cupy: Any, torch_stream: Any) -> Any:
    """A CuPy stream for torch's stream, without a copy or a synchronisation.

    ``cupy.cuda.Stream.from_external`` (CuPy >= 14), not ``cupy.cuda.ExternalStream``: CuPy 14
    deprecates the latter, so it warned on every torch-CUDA call and failed under ``-W error``.
    """
    return cupy.cuda.Stream.from_external(_StreamHandle(torch_stream))


def _resolved(t: Any) -> Any:
    """Return the tensor as exportable memory: lazy conjugate/negative views materialise."""
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return t


def _tensor_as_numpy(t: Any) -> np.ndarray:
    _numpy_dtype(t.dtype)
    return _resolved(t).numpy()  # shares the tensor's memory


def _cpu_spacing(torch: Any, v: Any, i: int) -> Any:
    if not isinstance(v, torch.Tensor):
        return v
    if v.device.type != "cpu":
        raise TypeError(
            f"spacing argument {i} is a tensor on {v.device} but f is on the CPU; "
            "give spacing on the input's device"
        )
    # 0-d tensors become 0-d arrays, typed like numpy scalars (NEP 50 "strong"), as numpy would
    # treat np.asarray(tensor).
    return _tensor_as_numpy(v)


def _cuda_spacing(torch: Any, v: Any, i: int, device: Any, as_cupy_view: Any) -> Any:
    if not isinstance(v, torch.Tensor):
        return v
    if v.device.type == "cpu":
        return _tensor_as_numpy(v)  # host coordinates are fine for device data (like numpy arrays)
    if v.device != device:
        raise ValueError(f"spacing argument {i} is on {v.device} but f is on {device}")
    _numpy_dtype(v.dtype)
    return as_cupy_view(v)


def _convert_out(torch: Any, out: Any, device: Any, view: Any) -> tuple[list[Any], Any]:
    """Return (the out tensors, the same structure of zero-copy views for the array API)."""
    if out is None:
        return [], None
    tensors = _out_list(out)
    views = []
    for i, t in enumerate(tensors):
        what = "out" if len(tensors) == 1 and not isinstance(out, (tuple, list)) else f"out[{i}]"
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{what} must be a torch tensor for a torch input, got "
                f"{type(t).__module__}.{type(t).__qualname__}"
            )
        if t.device != device:
            raise ValueError(f"{what} is on {t.device}, but the input is on {device}")
        if t.is_conj() or t.is_neg():
            raise ValueError(
                f"{what} is a lazily conjugated or negated view; writing into it would not change "
                "the tensor it views: give a plain tensor (resolve_conj() / resolve_neg())"
            )
        views.append(view(t))
    return tensors, (type(out)(views) if isinstance(out, (tuple, list)) else views[0])


def _bump_versions(torch: Any, tensors: list[Any]) -> None:
    # The write went through a NumPy/CuPy view, which autograd does not see.
    increment = getattr(getattr(torch.autograd, "graph", None), "increment_version", None)
    if increment is not None and tensors:
        increment(tensors)


def _wrap(result: Any, out_arrays: Any, out_tensors: list[Any], to_tensor: Any) -> Any:
    """Replace each array of the API's result by its tensor: the given ``out`` one, or a new one."""
    given = {id(a): t for a, t in zip(_out_list(out_arrays), out_tensors, strict=True)}

    def back(a: Any) -> Any:
        return given[id(a)] if id(a) in given else to_tensor(a)

    if isinstance(result, tuple):
        return tuple(back(a) for a in result)
    return back(result)
