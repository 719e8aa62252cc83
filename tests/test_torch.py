"""torch tensors in, torch tensors out: parity with numpy.gradient on the tensor's values.

Expected values come from ``np.gradient`` on the NumPy view of the same tensor (and NumPy versions
of the spacing), never from cugrad.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import assert_same, stable_rng

import cugrad
from cugrad import _backend, _interop, _numpy_backend

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

TORCH_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
}


def tensor(shape, dtype=torch.float64, *key, device="cpu"):
    rng = stable_rng(shape, str(dtype), *key)
    if dtype.is_floating_point or dtype.is_complex:
        values = rng.standard_normal(shape) * 10
        if dtype.is_complex:
            values = values + 1j * rng.standard_normal(shape)
    else:
        info = torch.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, endpoint=True)
    return torch.tensor(values).to(dtype).to(device)


def as_numpy(x):
    """The NumPy version of a spacing argument (tensors through their own values)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def assert_torch_same(result, expected, device="cpu"):
    """``result`` holds torch tensors on ``device`` equal (bit for bit) to numpy's ``expected``."""
    arrays = result if isinstance(result, tuple) else (result,)
    for r in arrays:
        assert isinstance(r, torch.Tensor), type(r)
        assert r.device.type == torch.device(device).type
        assert not r.requires_grad
    host = tuple(r.cpu().numpy() for r in result) if isinstance(result, tuple) else (
        result.cpu().numpy()
    )
    assert_same(host, expected)


def expected_for(t, *varargs, **kwargs):
    return np.gradient(t.detach().cpu().numpy(), *map(as_numpy, varargs), **kwargs)


# --------------------------------------------------------------------------------------------------
# CPU tensors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
@pytest.mark.parametrize("edge_order", [1, 2])
def test_parity_dtypes(dtype, edge_order):
    t = tensor((6, 7), TORCH_DTYPES[dtype])
    assert_torch_same(cugrad.gradient(t, edge_order=edge_order),
                      expected_for(t, edge_order=edge_order))


@pytest.mark.parametrize("shape", [(9,), (4, 5), (3, 4, 5)], ids=str)
@pytest.mark.parametrize("axis", [None, 0, -1, (0,), "all-reversed"])
def test_parity_shapes_and_axes(shape, axis):
    t = tensor(shape, torch.float32)
    if axis == "all-reversed":
        axis = tuple(reversed(range(len(shape))))
    assert_torch_same(cugrad.gradient(t, axis=axis), expected_for(t, axis=axis))


def test_single_axis_gives_a_tensor_and_several_a_tuple():
    t = tensor((4, 5))
    assert isinstance(cugrad.gradient(t, axis=1), torch.Tensor)
    assert type(cugrad.gradient(t)) is tuple
    assert cugrad.gradient(t, axis=()) == ()
    assert cugrad.gradient(torch.tensor(3.0)) == ()


SPACINGS = {
    "python float": (0.5,),
    "python int": (2,),
    "0-d float32 tensor": (torch.tensor(0.5, dtype=torch.float32),),
    "0-d float64 tensor": (torch.tensor(0.25, dtype=torch.float64),),
    "numpy scalar": (np.float32(0.5),),
    "per-axis tensors": (torch.tensor(2.0), torch.tensor([0.0, 1.0, 3.0, 7.0, 8.0])),
    "float32 coordinates": (torch.tensor([0.0, 0.5, 2.0, 2.5]), 1.0),
    "int64 coordinates": (torch.tensor([0, 1, 3, 6]), torch.tensor([1, 2, 3, 4, 5])),
    "uniform coordinates": (torch.arange(4) * 0.5, np.arange(5) * 2.0),
    "numpy coordinates": (np.array([0.0, 1.0, 1.5, 4.0]), 3),
}


@pytest.mark.parametrize("spacing", list(SPACINGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("edge_order", [1, 2])
def test_spacing_forms(spacing, dtype, edge_order):
    t = tensor((4, 5), dtype)
    varargs = SPACINGS[spacing]
    assert_torch_same(cugrad.gradient(t, *varargs, edge_order=edge_order),
                      expected_for(t, *varargs, edge_order=edge_order))


def test_stack():
    t = tensor((4, 5, 3), torch.float32)
    result = cugrad.gradient(t, axis=(2, 0), stack=True)
    assert isinstance(result, torch.Tensor) and result.shape == (2, 4, 5, 3)
    assert_same(result.numpy(), np.stack(expected_for(t, axis=(2, 0))))


NON_CONTIGUOUS = {
    "transposed": lambda t: t.transpose(0, 2),
    "permuted": lambda t: t.permute(1, 2, 0),
    "step slices": lambda t: t[::2, 1::2, :],
    "offset slice": lambda t: t[1:, 2:, 1:],
    "expanded": lambda t: t[:1].expand(5, 6, 4),
}


@pytest.mark.parametrize("layout", list(NON_CONTIGUOUS))
@pytest.mark.parametrize("edge_order", [1, 2])
def test_non_contiguous_tensors(layout, edge_order):
    t = NON_CONTIGUOUS[layout](tensor((5, 6, 4)))
    assert not t.is_contiguous()
    assert_torch_same(cugrad.gradient(t, edge_order=edge_order),
                      expected_for(t, edge_order=edge_order))


@pytest.mark.parametrize("layout", ["contiguous", *NON_CONTIGUOUS])
def test_no_copy_of_the_input(monkeypatch, layout):
    t = tensor((5, 6, 4))
    if layout != "contiguous":
        t = NON_CONTIGUOUS[layout](t)
    seen = []
    real_execute = _numpy_backend.execute

    def spy(plan, f, outs):
        seen.append((f.__array_interface__["data"][0], f.strides))
        return real_execute(plan, f, outs)

    monkeypatch.setattr(_numpy_backend, "execute", spy)
    result = cugrad.gradient(t)
    # NumPy computed on the tensor's own memory, with the tensor's own strides.
    assert seen == [(t.data_ptr(), tuple(s * t.element_size() for s in t.stride()))]
    for r in result:
        assert not np.shares_memory(r.numpy(), t.numpy())
    assert_torch_same(result, expected_for(t))


def test_conjugate_view_is_resolved():
    t = tensor((6,), torch.complex64).conj()
    assert t.is_conj()
    assert_torch_same(cugrad.gradient(t), expected_for(t.resolve_conj()))


# --------------------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------------------


def test_out_single_tensor_is_written_and_returned():
    t = tensor((4, 5), torch.int64)
    out = torch.full((4, 5), -1.0, dtype=torch.float64)
    version = out._version
    result = cugrad.gradient(t, axis=0, out=out)
    assert result is out
    assert_same(out.numpy(), expected_for(t, axis=0))
    assert out._version > version  # autograd learns that out was modified in place


def test_out_tuple_and_stack():
    t = tensor((4, 5), torch.float32)
    outs = (torch.empty(4, 5), torch.empty(4, 5))
    result = cugrad.gradient(t, out=outs)
    assert type(result) is tuple and all(r is o for r, o in zip(result, outs, strict=True))
    assert_same(tuple(o.numpy() for o in outs), expected_for(t))
    stacked = torch.empty(2, 4, 5)
    assert cugrad.gradient(t, stack=True, out=stacked) is stacked
    assert_same(stacked.numpy(), np.stack(expected_for(t)))


def test_out_non_contiguous_view():
    t = tensor((4, 5))
    base = torch.zeros(5, 4, dtype=torch.float64)
    out = base.T
    cugrad.gradient(t, axis=1, out=out)
    assert_same(base.T.contiguous().numpy(), expected_for(t, axis=1))


def full(shape, dtype):
    return torch.full(shape, 7, dtype=dtype)


@pytest.mark.parametrize(
    ("out", "error"),
    [
        (lambda: full((4, 5), torch.float32), TypeError),  # the result is float64
        (lambda: full((5, 4), torch.float64), ValueError),
        (lambda: np.full((4, 5), 7.0), TypeError),
        (lambda: (full((4, 5), torch.float64), full((4, 5), torch.float64)), ValueError),
        (lambda: full((4, 5), torch.complex128).conj(), ValueError),
        (lambda: full((4, 5), torch.bfloat16), TypeError),
    ],
    ids=["dtype", "shape", "numpy", "count", "conj view", "bfloat16"],
)
def test_out_is_validated_before_anything_is_written(out, error):
    t = tensor((4, 5))
    given = out()
    with pytest.raises(error):
        cugrad.gradient(t, axis=0, out=given)
    for x in given if isinstance(given, tuple) else (given,):
        values = torch.as_tensor(x).resolve_conj()
        assert bool((values == 7).all()), "a user array was written before the error"


def test_out_that_requires_grad():
    t = tensor((4, 5))
    out = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        cugrad.gradient(t, axis=0, out=out)
    with torch.no_grad():
        assert cugrad.gradient(t, axis=0, out=out) is out
    assert_same(out.detach().numpy(), expected_for(t, axis=0))


# --------------------------------------------------------------------------------------------------
# autograd, dtypes without a NumPy equivalent, backends
# --------------------------------------------------------------------------------------------------


def test_requires_grad_raises_in_grad_mode():
    t = tensor((4, 5)).requires_grad_()
    with pytest.raises(RuntimeError, match="torch.gradient"):
        cugrad.gradient(t)
    with pytest.raises(RuntimeError, match="requires grad"):
        cugrad.gradient(tensor((4,)), torch.tensor([0.0, 1, 2, 4], requires_grad=True))


def test_requires_grad_without_grad_mode_gives_results_without_a_graph():
    t = tensor((4, 5)).requires_grad_()
    with torch.no_grad():
        result = cugrad.gradient(t, torch.tensor(0.5, requires_grad=True), 2.0)
    assert all(r.grad_fn is None for r in result)
    assert_torch_same(result, expected_for(t, np.float32(0.5), 2.0))
    assert_torch_same(cugrad.gradient(t.detach()), expected_for(t))


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.complex32, torch.float8_e4m3fn])
def test_dtypes_without_numpy_equivalent_raise(dtype):
    t = torch.ones(4, 5).to(dtype)
    with pytest.raises(TypeError, match="no NumPy equivalent"):
        cugrad.gradient(t)


def test_bool_tensor_raises_like_numpy():
    t = torch.tensor([True, False, True])
    with pytest.raises(TypeError):
        np.gradient(t.numpy())
    with pytest.raises(TypeError):
        cugrad.gradient(t)


def test_numpy_exceptions_for_bad_arguments():
    t = tensor((4, 5))
    for kwargs, varargs in [({"axis": 2}, ()), ({}, (1.0, 2.0, 3.0)), ({"edge_order": 3}, ())]:
        with pytest.raises(Exception) as numpy_error:
            np.gradient(t.numpy(), *varargs, **kwargs)
        with pytest.raises(type(numpy_error.value)):
            cugrad.gradient(t, *varargs, **kwargs)


def test_meta_tensors_are_refused():
    with pytest.raises(TypeError, match="meta"):
        cugrad.gradient(torch.empty(4, 5, device="meta"))


def test_backend_numpy_for_a_cpu_tensor():
    t = tensor((4, 5))
    assert_torch_same(cugrad.gradient(t, backend="numpy"), expected_for(t))


@pytest.mark.skipif(_backend.gpu_status()[0], reason="checks the message on a machine without GPU")
def test_backend_cupy_without_gpu_says_what_is_missing():
    with pytest.raises(RuntimeError, match="cugrad\\[cuda12\\]|CUDA"):
        cugrad.gradient(tensor((4, 5)), backend="cupy")


# --------------------------------------------------------------------------------------------------
# CUDA tensors
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        pytest.skip("this torch build has no CUDA (install a CUDA build of torch)")
    return torch.device("cuda", torch.cuda.current_device())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
@pytest.mark.parametrize("edge_order", [1, 2])
def test_cuda_parity(cuda, dtype, edge_order):
    t = tensor((33, 17, 5), dtype, device=cuda)
    coords = torch.cumsum(torch.rand(17, dtype=torch.float64), 0).to(cuda)
    result = cugrad.gradient(t, 0.5, coords, 2, edge_order=edge_order)
    assert all(r.device == cuda for r in result)
    assert_torch_same(result, expected_for(t, 0.5, coords, 2, edge_order=edge_order), device=cuda)


@pytest.mark.gpu
def test_cuda_non_contiguous_stack_and_out(cuda):
    t = tensor((16, 9, 7), device=cuda).transpose(0, 2)[:, ::2]
    expected = np.stack(expected_for(t))
    stacked = cugrad.gradient(t, stack=True)
    assert stacked.device == cuda
    assert_same(stacked.cpu().numpy(), expected)
    out = torch.empty((3,) + tuple(t.shape), dtype=torch.float64, device=cuda)
    assert cugrad.gradient(t, stack=True, out=out) is out
    assert_same(out.cpu().numpy(), expected)


@pytest.mark.gpu
def test_cuda_on_a_side_stream(cuda):
    t = tensor((64, 65), device=cuda)
    side = torch.cuda.Stream(cuda)
    with torch.cuda.stream(side):
        t2 = t * 2  # queued on the side stream: cugrad must run after it, on the same stream
        result = cugrad.gradient(t2)
    side.synchronize()
    assert_torch_same(result, expected_for(t * 2), device=cuda)


@pytest.mark.gpu
def test_cuda_backend_numpy_is_refused(cuda):
    with pytest.raises(TypeError, match="never moves"):
        cugrad.gradient(tensor((4, 5), device=cuda), backend="numpy")


@pytest.mark.gpu
def test_cuda_out_on_the_wrong_device_is_refused(cuda):
    with pytest.raises(ValueError, match="device|on cpu"):
        cugrad.gradient(tensor((4, 5), device=cuda), axis=0, out=torch.empty(4, 5,
                                                                               dtype=torch.float64))


# --------------------------------------------------------------------------------------------------
# Device arrays of other libraries (the protocol choice, with a stand-in for CuPy)
# --------------------------------------------------------------------------------------------------


class _FakeCupy:
    def __init__(self):
        self.calls = []

    def from_dlpack(self, obj):
        self.calls.append(("from_dlpack", obj))
        return obj

    def asarray(self, obj):
        self.calls.append(("asarray", obj))
        return obj


class _DLPackArray:
    def __init__(self, device_type):
        self.device_type = device_type

    def __dlpack__(self, stream=None):
        raise AssertionError("the stand-in CuPy does not call this")

    def __dlpack_device__(self):
        return self.device_type, 0


class _CAIArray(_DLPackArray):
    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f8", "data": (0, False), "version": 3}


@pytest.mark.parametrize(
    ("obj", "protocol"),
    [
        (_DLPackArray(2), "from_dlpack"),  # kDLCUDA
        (_DLPackArray(13), "from_dlpack"),  # kDLCUDAManaged
        (_CAIArray(1), "asarray"),  # a CPU DLPack device: the CUDA array interface decides
        (_CAIArray(2), "from_dlpack"),
    ],
)
def test_as_cupy_picks_the_protocol(monkeypatch, obj, protocol):
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_backend, "require_gpu", lambda: None)
    assert _interop.as_cupy(obj) is obj
    assert fake.calls == [(protocol, obj)]


# --------------------------------------------------------------------------------------------------
# torch's stream as a CuPy stream: Stream.from_external, not the deprecated ExternalStream
# --------------------------------------------------------------------------------------------------


class _TorchStreamStandIn:
    """What _torch_cuda reads of ``torch.cuda.current_stream()``: the raw handle."""

    cuda_stream = 0  # the legacy default stream: CuPy wraps it without touching a device


@pytest.mark.filterwarnings("error")
def test_torch_stream_becomes_a_cupy_stream_without_a_deprecation_warning():
    cupy = pytest.importorskip("cupy")
    if not hasattr(cupy.cuda.Stream, "from_external"):
        pytest.skip(f"CuPy {cupy.__version__} predates Stream.from_external (cugrad needs 14.2)")
    stream = _interop.cupy_stream_of(cupy, _TorchStreamStandIn())  # -W error: a warning fails
    assert isinstance(stream, cupy.cuda.Stream) and stream.ptr == 0


def test_the_torch_cuda_path_uses_the_stream_protocol(monkeypatch):
    import inspect

    source = inspect.getsource(_interop._torch_cuda)
    assert "cupy_stream_of(cupy, stream)" in source and "ExternalStream" not in source
    handle = _interop._StreamHandle(type("S", (), {"cuda_stream": 12345})())
    assert handle.__cuda_stream__() == (0, 12345)
