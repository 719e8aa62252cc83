"""The fused derived-operator kernel (kernels/operators.cuh), unmodified, run on the CPU.

Each operator on a GPU is ONE ElementwiseKernel launch (``cugrad._cupy_backend.execute_operator``)
whose operation ``cugrad._kernels.OperatorVariant.operation`` generates: one ``cg_op_term`` per
term (the general path's ``cg_general_point``, rounded into the output dtype) combined by
``cg_op_combine`` in the plan's order. Here that very preamble and operation are compiled for the
CPU with ``tests/emulation/cuda_shim.h`` and called with the operands the backend builds
(``operator_args`` with numpy standing in for CuPy); the results must equal the NumPy backend's
``execute_fused`` (the public operators with ``backend="numpy"``, which equal numpy's compositions
for the default options) bit for bit. A stand-in for CuPy whose ElementwiseKernel runs the
emulated kernel drives the public functions through ``_operators._run_device`` as well.

What this cannot prove: the inline PTX of the device build (the host build uses plain IEEE C in
its place), CuPy's own launch code and timing: compiled and emulated, not run on a GPU.
"""

from __future__ import annotations

import ctypes
import math
import re
import subprocess
import sys
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import random_field, stable_rng

import cugrad
from cugrad import _cupy_backend as cb
from cugrad import _kernels, _operators

pytestmark = [pytest.mark.emulated, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

F16, F32, F64 = np.float16, np.float32, np.float64
OPS = ("magnitude", "divergence", "curl", "laplacian")


def same(result: Any, expected: Any) -> None:
    """Equal bit for bit, container and dtype included (NaN payloads and -0.0 too)."""
    if isinstance(expected, tuple):
        assert isinstance(result, tuple) and len(result) == len(expected)
        for r, e in zip(result, expected, strict=True):
            same(r, e)
        return
    result, expected = np.asarray(result), np.asarray(expected)
    assert result.dtype == expected.dtype and result.shape == expected.shape
    bad = result.view(np.uint8).reshape(result.shape + (-1,)) != \
        expected.view(np.uint8).reshape(expected.shape + (-1,))
    assert not bad.any(), f"{int(bad.any(axis=-1).sum())} elements differ"


# ------------------------------------------------------------------------------------------------
# The cases: every operator, dtypes, spacing forms, edge orders, options, layouts
# ------------------------------------------------------------------------------------------------


def _coords(n: int, *key: Any) -> np.ndarray:
    return np.cumsum(0.25 + stable_rng("op-emu", n, *key).random(n))


LAYOUTS = {
    "C": lambda a: a,
    "fortran": np.asfortranarray,
    "reversed": lambda a: a[::-1, :, ::-1],
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
}


def _case(op: str, dtype: Any, shape: tuple[int, ...], varargs: tuple = (), *, axis: Any = None,
          edge_order: int = 1, layout: str = "C", stack: bool = False, k: int | None = None,
          special: bool = False, **options: Any) -> dict[str, Any]:
    return {"op": op, "dtype": np.dtype(dtype), "shape": shape, "varargs": varargs, "axis": axis,
            "edge_order": edge_order, "layout": layout, "stack": stack, "k": k,
            "special": special, "options": options}


def _cases() -> dict[str, dict[str, Any]]:
    S3, S2 = (7, 9, 8), (11, 10)
    c: dict[str, dict[str, Any]] = {}
    for op in OPS:
        for dtype in (F32, F64):
            for shape in (S2, S3):
                c[f"{op}-{np.dtype(dtype).name}-{len(shape)}d"] = _case(op, dtype, shape)
        eo = {} if op == "laplacian" else {"edge_order": 2}
        c[f"{op}-f64-scalar-eo2"] = _case(op, F64, S3, (0.5,), **eo)
        coords = (np.float64(0.25), _coords(9, op), 2.0)
        c[f"{op}-f64-coords-eo2"] = _case(op, F64, S3, coords, **eo)
        c[f"{op}-f32-coords-eo1"] = _case(op, F32, S3, coords)
        c[f"{op}-f32-acc4"] = _case(op, F32, S3, (0.5,), accuracy=4)
        c[f"{op}-f64-acc8"] = _case(op, F64, (11, 12, 10), (0.3,), accuracy=8)
        c[f"{op}-f64-periodic"] = _case(op, F64, S3, (0.5,), boundary="periodic")
        c[f"{op}-f64-periodic-acc4-coords"] = _case(
            op, F64, S3, (0.5, _coords(9, "p", op), 1.0), accuracy=4,
            boundary=["edge", "periodic", "periodic"],
            period=[None, float(_coords(9, "p", op)[-1] - _coords(9, "p", op)[0]) + 0.5, None])
        for layout in ("fortran", "reversed", "strided"):
            c[f"{op}-f32-{layout}"] = _case(op, F32, S3, (0.5,), layout=layout, **eo)
    # integer input (differenced in float64, float64 results)
    c["magnitude-i32"] = _case("magnitude", np.int32, S3)
    c["divergence-i16"] = _case("divergence", np.int16, S2, (0.5,), edge_order=2)
    c["curl-i64"] = _case("curl", np.int64, S3)
    c["laplacian-u8"] = _case("laplacian", np.uint8, S3, (0.5,))
    # float16 (every operation rounded to half, the square root too) and complex data
    c["magnitude-f16"] = _case("magnitude", F16, S2, (0.5,))
    c["laplacian-f16"] = _case("laplacian", F16, S2)
    c["divergence-c128"] = _case("divergence", np.complex128, S3, (0.5,))
    c["curl-c128-2d"] = _case("curl", np.complex128, S2)
    c["curl-c64-3d"] = _case("curl", np.complex64, S3, edge_order=2)
    c["laplacian-c128"] = _case("laplacian", np.complex128, S2, accuracy=4)
    # stack=True, axis subsets, components along chosen axes, special values, two compute dtypes
    c["curl-f32-stack"] = _case("curl", F32, S3, (0.5,), stack=True)
    c["curl-f64-stack-eo2"] = _case("curl", F64, S3, edge_order=2, stack=True)
    c["curl-vorticity-axis10"] = _case("curl", F64, S2, (0.5, 0.25), axis=(1, 0))
    c["curl-3d-axis201"] = _case("curl", F32, S3, axis=(2, 0, 1))
    c["magnitude-axis02"] = _case("magnitude", F32, S3, (0.5, 2.0), axis=(0, 2))
    c["divergence-4d-axis13"] = _case("divergence", F64, (4, 6, 3, 5), axis=(1, 3), k=2)
    c["laplacian-axis-last"] = _case("laplacian", F32, S3, (0.5,), axis=-1)
    c["magnitude-f32-special"] = _case("magnitude", F32, S3, special=True)
    c["curl-f64-special"] = _case("curl", F64, S3, special=True)
    c["magnitude-f32-int8-spacing"] = _case("magnitude", F32, S2, (np.int8(3),))
    return c


CASES = _cases()


def _support_cases() -> list[dict[str, Any]]:
    """The kernels the other tests below launch (built into the same emulation library)."""
    S = (6, 9, 8)
    cases = [_case(op, dtype, S, (0.5,)) for dtype in (F32, F64, np.int32)
             for op in ("magnitude", "divergence", "curl")]
    cases += [_case("divergence", F32, S, (0.5, _coords(9, "glue"), 2.0), edge_order=2),
              _case("curl", F32, S, accuracy=4, boundary="periodic"),
              _case("curl", F32, S), _case("laplacian", F32, S, (0.5,)),
              _case("divergence", F64, S), _case("curl", F64, S), _case("laplacian", F32, S)]
    return cases


def materialize(case: dict[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(sources, call arguments) of a case: fixed data, laid out as the case says."""
    op, dtype, shape = case["op"], case["dtype"], case["shape"]
    axes = case["axis"]
    k = case["k"] or (1 if op in ("magnitude", "laplacian") else
                      (len(axes) if axes is not None else len(shape)))
    sources = []
    for i in range(k):
        f = random_field(shape, dtype, "op-emu", op, i)
        if dtype.kind == "f":
            # values of many magnitudes, so that rounding differences cannot hide
            f = (f * 10.0 ** stable_rng("mag", op, i).integers(-2, 3, shape)).astype(dtype)
        elif dtype.kind in "iu":
            f = random_field(shape, dtype, "op-emu", op, i)
        if case["special"]:
            flat = f.reshape(-1)
            flat[: 5 * 7 : 7] = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], dtype)
        sources.append(LAYOUTS[case["layout"]](f))
    return sources, {"varargs": case["varargs"], "axis": axes, "edge_order": case["edge_order"],
                     "options": dict(case["options"]), "stack": case["stack"]}


def plan_of(op: str, sources: list[np.ndarray], call: dict[str, Any]):
    options = {"accuracy": 2, "boundary": "edge", "period": None, **call["options"]}
    return _operators._plan(op, sources[0], len(sources), call["varargs"], call["axis"],
                            call["edge_order"], options)


def reference(op: str, sources: list[np.ndarray], call: dict[str, Any]) -> Any:
    """The public operator on the NumPy backend (``execute_fused``)."""
    kw = {"axis": call["axis"], "backend": "numpy", **call["options"]}
    if op == "magnitude":
        return cugrad.gradient_magnitude(sources[0], *call["varargs"],
                                         edge_order=call["edge_order"], **kw)
    if op == "laplacian":
        return cugrad.laplacian(sources[0], *call["varargs"], **kw)
    if op == "divergence":
        return cugrad.divergence(sources, *call["varargs"], edge_order=call["edge_order"], **kw)
    return cugrad.curl(sources, *call["varargs"], edge_order=call["edge_order"],
                       stack=call["stack"], **kw)


# ------------------------------------------------------------------------------------------------
# The emulation library: the operator preamble and each variant's generated operation
# ------------------------------------------------------------------------------------------------


def _params(text: str) -> list[tuple[bool, str, str]]:
    """(raw, CuPy type name, name) of an ElementwiseKernel parameter list."""
    out = []
    for p in text.split(","):
        words = p.split()
        raw = words[0] == "raw"
        out.append((raw, *words[1 if raw else 0:]))
    return out


def operator_entry(v: _kernels.OperatorVariant, storage: dict[np.dtype, str]) -> str:
    """An ``extern "C"`` function running ``v.operation()`` for every output element, with the
    parameters named and typed as CuPy's ElementwiseKernel names them (raw arrays as strided
    arrays indexed with a flat C-order index, outputs as references to element i)."""
    lines = [f'extern "C" void {v.name}(void* const* ptrs, const long long* const* shapes, '
             "const long long* const* strides, const int* ndims, const long long* scalars) {"]
    at, scalar = 0, 0
    for raw, type_name, name in _params(v.in_params()):
        if raw:
            t = storage[np.dtype(type_name)]
            lines.append(f"    cg_emu_strided<{t}> {name}{{static_cast<{t}*>(ptrs[{at}]), "
                         f"shapes[{at}], strides[{at}], ndims[{at}]}};")
            at += 1
        else:
            lines.append(f"    const long long {name} = scalars[{scalar}];")
            scalar += 1
    outs = _params(v.out_params())
    for _, type_name, name in outs:
        t = storage[np.dtype(type_name)]
        lines.append(f"    cg_emu_strided<{t}> emu_{name}{{static_cast<{t}*>(ptrs[{at}]), "
                     f"shapes[{at}], strides[{at}], ndims[{at}]}};")
        at += 1
    lines.append(f"    long long size = 1;\n    for (int d = 0; d < ndims[{at - 1}]; ++d) "
                 f"size *= shapes[{at - 1}][d];")
    lines.append("    for (long long i = 0; i < size; ++i) {")
    for _, type_name, name in outs:
        lines.append(f"        {storage[np.dtype(type_name)]}& {name} = emu_{name}[i];")
    lines.append(v.operation())
    lines.append("    }\n}")
    return "\n".join(lines)


class OperatorEmulator:
    def __init__(self, lib: ctypes.CDLL, variants: list[_kernels.OperatorVariant]) -> None:
        self.lib = lib
        self.variants = set(variants)
        self.launches = 0
        self.lock = threading.Lock()

    def run(self, variant: _kernels.OperatorVariant, args: tuple[Any, ...],
            outs: list[np.ndarray]) -> None:
        """One launch: ``args`` in the order of ``variant.in_params()``, then the outputs."""
        assert variant in self.variants, f"add {variant.name} to the emulated cases"
        fn = getattr(self.lib, variant.name)
        fn.restype, fn.argtypes = None, [ctypes.c_void_p] * 5
        arrays = [np.asarray(a) for a in args if hasattr(a, "dtype")] + [np.asarray(o) for o in
                                                                          outs]
        scalars = np.array([int(a) for a in args if not hasattr(a, "dtype")] or [0], np.int64)
        shapes = [np.array(a.shape or (1,), np.int64) for a in arrays]
        strides = [np.array(a.strides or (0,), np.int64) for a in arrays]
        ptr = ctypes.c_void_p
        n = len(arrays)
        with self.lock:
            fn((ptr * n)(*[a.ctypes.data for a in arrays]),
               (ptr * n)(*[s.ctypes.data for s in shapes]),
               (ptr * n)(*[s.ctypes.data for s in strides]),
               (ctypes.c_int * n)(*[a.ndim for a in arrays]), scalars.ctypes.data)
            self.launches += 1


def all_variants() -> list[_kernels.OperatorVariant]:
    variants = []
    for case in [*CASES.values(), *_support_cases()]:
        sources, call = materialize(case)
        variants.append(cb.operator_variant(plan_of(case["op"], sources, call), sources[0].dtype))
    variants += cb.representative_operator_variants()
    return list(dict.fromkeys(variants))


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> OperatorEmulator:
    from emulation import harness

    compiler = harness.find_compiler()
    if compiler is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++, or $CXX) to build the emulated kernels")
    variants = all_variants()
    workdir = tmp_path_factory.mktemp("emulated_operators")
    (workdir / harness.SHIM.name).write_text(harness.SHIM.read_text())
    source = workdir / "cugrad_operators_emulated.cpp"
    source.write_text("\n".join([f'#include "{harness.SHIM.name}"', _kernels.operator_preamble(),
                                 *(operator_entry(v, harness.STORAGE) for v in variants)]))
    library = workdir / "cugrad_operators_emulated.so"
    result = subprocess.run([compiler, *harness.CXXFLAGS, "-I", str(workdir), str(source), "-o",
                             str(library)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"C++ build of the operator kernels failed:\n{result.stderr[-6000:]}")
    return OperatorEmulator(ctypes.CDLL(str(library)), variants)


def emulated(emu: OperatorEmulator, op: str, sources: list[np.ndarray], call: dict[str, Any]):
    """The operator computed by the emulated kernel exactly as ``execute_operator`` launches it
    (outputs NaN-filled first: an element the kernel forgets cannot pass for a result)."""
    plan = plan_of(op, sources, call)
    count = len(plan.outputs)
    if call["stack"] and count > 1:
        stacked = np.full((count,) + plan.shape, np.nan, plan.out_dtype)
        outs, result = [stacked[i] for i in range(count)], stacked
    else:
        outs = [np.full(plan.shape, np.nan, plan.out_dtype) for _ in range(count)]
        result = outs[0] if count == 1 else tuple(outs)
    variant = cb.operator_variant(plan, sources[0].dtype)
    emu.run(variant, cb.operator_args(plan, sources, np), [cb._bits(o) for o in outs])
    return result


# ------------------------------------------------------------------------------------------------
# Bit for bit against the NumPy backend
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_fused_kernel_equals_the_numpy_backend(emu, case_id):
    case = CASES[case_id]
    sources, call = materialize(case)
    same(emulated(emu, case["op"], sources, call), reference(case["op"], sources, call))


@pytest.mark.parametrize("dtype", [F32, F64, np.int32])
def test_fused_kernel_equals_numpys_compositions(emu, dtype):
    """Default options: the compositions the docs write down, over numpy.gradient."""
    f, g0, g1 = (random_field((6, 8, 7), dtype, "composition", i) for i in range(3))
    call = {"varargs": (0.5,), "axis": None, "edge_order": 1, "options": {}, "stack": False}
    g = np.gradient(f, 0.5)
    same(emulated(emu, "magnitude", [f], call), np.sqrt((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2]))
    F = [f, g0, g1]
    d = [np.gradient(c, 0.5) for c in F]
    same(emulated(emu, "divergence", F, call), (d[0][0] + d[1][1]) + d[2][2])
    same(emulated(emu, "curl", F, call),
         (d[2][1] - d[1][2], d[0][2] - d[2][0], d[1][0] - d[0][1]))


def test_the_cases_cover_the_brief():
    """Every operator with float32, float64 and integer input, 2-D and 3-D, scalar spacing and
    coordinates, both edge orders, accuracy 4, periodic ends, non-contiguous input, stacked curl."""
    for op in OPS:
        mine = [c for c in CASES.values() if c["op"] == op]
        assert {F32, F64} <= {c["dtype"].type for c in mine}
        assert {2, 3} <= {len(c["shape"]) for c in mine}
        assert any(c["options"].get("accuracy") == 4 for c in mine)
        assert any(c["options"].get("boundary") == "periodic" for c in mine)
        assert any(c["layout"] != "C" for c in mine)
        assert any(any(np.ndim(v) == 1 for v in c["varargs"]) for c in mine)
        assert any(c["dtype"].kind in "iu" for c in mine)
        if op != "laplacian":
            assert {1, 2} <= {c["edge_order"] for c in mine}
    assert any(c["stack"] for c in CASES.values())


# ------------------------------------------------------------------------------------------------
# The kernel's shape in Python: names, structure, generated operation
# ------------------------------------------------------------------------------------------------


def test_combine_codes_mirror_the_kernel():
    source = _kernels.kernel_source(_kernels.OPERATORS_FILE)
    for name, code in _kernels.COMBINE_CODES.items():
        assert re.search(rf"#define CG_OP_{name.upper()} {code}\b", source), name
    assert _kernels.OPERATORS_FILE in _kernels.KERNEL_FILES


def test_variant_spells_its_structure_and_one_statement_per_term():
    f = np.zeros((5, 6, 7), np.float32)
    call = {"varargs": (), "axis": None, "edge_order": 1, "options": {}, "stack": False}
    plan = plan_of("curl", [f, f, f], call)
    v = cb.operator_variant(plan, f.dtype)
    # three outputs, each a difference of two terms; the axes' tables are shared by the terms
    assert v.name == "cugrad_operator_f32_df32_of32_k3_af32_af32_af32_ds2a0s1a1_ds0a1s2a2_ds1a2s0a0"
    assert len(cb.operator_axes(plan)) == 3
    operation = v.operation()
    assert operation.count("cg_op_term<") == 6 and operation.count("cg_op_store<") == 3
    assert v.out_params() == "float32 out0, float32 out1, float32 out2"
    # the combine kind is a template argument: no table of terms is read at run time
    assert operation.count("cg_op_combine<1, float>") == 3
    magnitude = cb.operator_variant(plan_of("magnitude", [f], call), f.dtype)
    assert "cg_op_combine<2, float>" in magnitude.operation()
    # the kernel name is a C identifier (CuPy uses it as the function name)
    for variant in all_variants():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variant.name), variant.name


def test_variant_rejects_impossible_structures():
    f32 = np.dtype(np.float32)
    with pytest.raises(ValueError, match="two terms"):
        _kernels.OperatorVariant(f32, f32, f32, 1, ((f32,),), (("difference", ((0, 0),)),))
    with pytest.raises(ValueError, match="real"):
        c = np.dtype(np.complex64)
        _kernels.OperatorVariant(c, c, c, 1, ((c,),), (("magnitude", ((0, 0),)),))
    with pytest.raises(ValueError, match="names no source"):
        _kernels.OperatorVariant(f32, f32, f32, 1, ((f32,),), (("sum", ((1, 0),)),))


# ------------------------------------------------------------------------------------------------
# The public functions on a stand-in for CuPy whose ElementwiseKernel is the emulated kernel
# ------------------------------------------------------------------------------------------------


class _DeviceArray(np.ndarray):
    """A numpy array posing as a CuPy array (``.device`` is a context manager, as CuPy's)."""

    @property
    def device(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


def fake_cupy(emu: OperatorEmulator) -> Any:
    """Just the CuPy surface that _run_device, _cupy_backend and _kernels touch for operators."""
    variants = {v.name: v for v in emu.variants}
    log = {"kernels": 0, "launches": 0}

    def wrap(a: Any) -> Any:
        return np.asarray(a).view(_DeviceArray)

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name, preamble, options, no_return):
            self.variant = variants[name]
            assert in_params == self.variant.in_params() and no_return
            assert out_params == self.variant.out_params()
            assert operation == self.variant.operation()
            assert preamble == _kernels.operator_preamble()
            assert options == _kernels.COMPILE_OPTIONS
            self.count = len(_params(in_params))
            log["kernels"] += 1

        def __call__(self, *args: Any) -> None:
            inputs, outs = args[:self.count], args[self.count:]
            assert len(outs) == len(self.variant.outputs)
            assert all(o.shape == outs[0].shape for o in outs)
            emu.run(self.variant, tuple(inputs), list(outs))
            log["launches"] += 1

    def may_share_memory(a: Any, b: Any) -> bool:
        return bool(np.may_share_memory(np.asarray(a), np.asarray(b)))

    return SimpleNamespace(
        ndarray=_DeviceArray, log=log, wrap=wrap, ElementwiseKernel=ElementwiseKernel,
        cuda=SimpleNamespace(Device=lambda device_id=0: SimpleNamespace(id=device_id)),
        asarray=lambda a, dtype=None: wrap(np.array(a, dtype=dtype)),
        zeros=lambda *a, **k: wrap(np.zeros(*a, **k)),
        full=lambda *a, **k: wrap(np.full(*a, **k)),
        # NaN-filled: an element the kernel forgets cannot pass for a result
        empty=lambda shape, dtype=float: wrap(np.full(shape, np.nan, dtype)),
        concatenate=lambda parts: wrap(np.concatenate(parts)),
        may_share_memory=may_share_memory,
    )


@pytest.fixture
def cp(emu, monkeypatch):
    cupy = fake_cupy(emu)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(_kernels, "_cache", {})
    monkeypatch.setattr(_kernels, "_first_calls", set())
    return cupy


def test_public_operators_are_one_launch_each_on_the_device(cp):
    S = (6, 9, 8)
    F = [random_field(S, F32, "glue", i) for i in range(3)]
    D = [cp.wrap(c) for c in F]
    x = _coords(9, "glue")
    calls = [
        (lambda **k: cugrad.gradient_magnitude(*k.pop("F")[:1], 0.5, **k), {}),
        (lambda **k: cugrad.divergence(k.pop("F"), 0.5, x, 2.0, **k), {"edge_order": 2}),
        (lambda **k: cugrad.curl(k.pop("F"), **k), {"accuracy": 4, "boundary": "periodic"}),
        (lambda **k: cugrad.curl(k.pop("F"), **k), {"stack": True}),
        (lambda **k: cugrad.laplacian(*k.pop("F")[:1], 0.5, **k), {}),
    ]
    for call, kw in calls:
        expected = call(F=F, backend="numpy", **kw)
        before = cp.log["launches"]
        got = call(F=D, **kw)
        assert cp.log["launches"] == before + 1, "one fused launch per operator"
        if isinstance(got, tuple):
            assert all(isinstance(g, _DeviceArray) for g in got)
            got = tuple(np.asarray(g) for g in got)
        else:
            assert isinstance(got, _DeviceArray)
            got = np.asarray(got)
        same(got, expected)
    # the kernel is built once per variant and device (both curls have one variant: the stencils
    # and ends are operands, the structure and dtypes are the kernel)
    assert cp.log["kernels"] == 4 and cp.log["launches"] == 5
    cugrad.gradient_magnitude(D[0], 0.5)
    assert cp.log["kernels"] == 4 and cp.log["launches"] == 6


def test_out_is_validated_before_the_launch_and_written_by_it(cp):
    S = (5, 7, 6)
    F = [random_field(S, F64, "out", i) for i in range(3)]
    D = [cp.wrap(c) for c in F]
    # wrong dtype, wrong shape, a tuple where one array is wanted: nothing launched or written
    bad = [cp.wrap(np.full(S, 3.0, F32)), cp.wrap(np.full((5, 7), 3.0)),
           (cp.wrap(np.full(S, 3.0)),) * 3]
    for out in bad:
        with pytest.raises(TypeError):
            cugrad.divergence(D, out=out)
    with pytest.raises(TypeError, match="tuple of 3"):
        cugrad.curl(D, out=cp.wrap(np.full(S, 3.0)))
    shared = cp.wrap(np.full(S, 3.0))
    with pytest.raises(ValueError, match="share memory"):
        cugrad.curl(D, out=(shared, cp.wrap(np.full(S, 3.0)), shared))
    assert cp.log["launches"] == 0
    for out in bad[:2]:
        assert (np.asarray(out) == 3.0).all()
    assert (np.asarray(shared) == 3.0).all()

    out = cp.wrap(np.full(S, np.nan))
    assert cugrad.divergence(D, 0.5, out=out) is out
    same(np.asarray(out), cugrad.divergence(F, 0.5, backend="numpy"))
    outs = tuple(cp.wrap(np.full(S, np.nan)) for _ in range(3))
    got = cugrad.curl(D, out=outs)
    assert type(got) is tuple and all(g is o for g, o in zip(got, outs, strict=True))
    same(tuple(np.asarray(o) for o in outs), cugrad.curl(F, backend="numpy"))
    stacked = cp.wrap(np.full((3,) + S, np.nan))
    assert cugrad.curl(D, out=stacked, stack=True) is stacked
    same(np.asarray(stacked), cugrad.curl(F, backend="numpy", stack=True))


def test_out_overlapping_a_source_gets_the_fresh_result(cp):
    """Threads read neighbours other threads would overwrite: an out= that overlaps a source is
    computed into a fresh array and copied."""
    S = (6, 9, 8)
    F = [random_field(S, F32, "alias", i) for i in range(3)]
    expected = cugrad.divergence(F, 0.5, backend="numpy")
    D = [cp.wrap(c.copy()) for c in F]
    assert cugrad.divergence(D, 0.5, out=D[1]) is D[1]
    same(np.asarray(D[1]), expected)
    f = cp.wrap(F[0].copy())
    cugrad.laplacian(f, out=f)
    same(np.asarray(f), cugrad.laplacian(F[0], backend="numpy"))


def test_the_emulation_runs_every_output_element_once(emu):
    """A 3-D curl launch writes all three outputs: none keeps the NaN it was filled with."""
    F = [random_field((4, 5, 6), F64, "once", i) for i in range(3)]
    call = {"varargs": (), "axis": None, "edge_order": 1, "options": {}, "stack": True}
    result = emulated(emu, "curl", F, call)
    assert not np.isnan(result).any() and result.shape == (3, 4, 5, 6)
    assert math.prod(result.shape) == 360


def _tick_per_event(cp: Any) -> None:
    """CUDA events on the stand-in: each record() is one microsecond after the previous one."""
    clock = iter(range(1, 10**6))

    class Event:
        def record(self, stream: Any = None) -> None:
            self.at = next(clock)

        def synchronize(self) -> None:
            pass

    cp.cuda.Event = Event
    cp.cuda.get_elapsed_time = lambda start, stop: (stop.at - start.at) * 1e-3  # ms


def test_gpu_benchmark_operator_section_on_the_stand_in(cp, capsys):
    """benchmarks/gpu_tune.py's operator section, run on the stand-in (its arithmetic and its
    bytes: (k + 1) x n x itemsize for the one-output operators, 6 n x itemsize for 3-D curl)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_tune.py"
    if not path.exists():
        pytest.skip("benchmarks/ is not next to the tests (installed copy)")
    spec = importlib.util.spec_from_file_location("gpu_tune_operators", path)
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    _tick_per_event(cp)
    cp.cuda.get_current_stream = lambda: None
    cp.asnumpy = np.asarray
    cp.get_default_memory_pool = lambda: SimpleNamespace(free_all_blocks=lambda: None)
    real_asarray = cp.asarray
    cp.asarray = lambda a, dtype=None: real_asarray(a, dtype)
    rows, mismatches = tune.operator_costs(cp, side=6, reps=2, copy=1.0)
    assert mismatches == 0 and all(r["exact"] for r in rows)
    assert {r["operator"] for r in rows} == {"gradient_magnitude", "divergence", "curl",
                                             "laplacian"}
    n = 6**3
    for r in rows:
        itemsize = np.dtype(r["dtype"]).itemsize
        k = {"gradient_magnitude": 1, "laplacian": 1, "divergence": 3, "curl": 3}[r["operator"]]
        outputs = 3 if r["operator"] == "curl" else 1
        assert r["bytes"] == (k + outputs) * n * itemsize
        assert r["gbps"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)
        assert r["copy_fraction"] == pytest.approx(r["gbps"])  # copy = 1 GB/s here
    assert "of copy" in capsys.readouterr().out


def test_selftest_times_the_operators_on_the_stand_in(cp):
    """cugrad selftest's GPU benchmark rows for the operators: one per operator and dtype, with
    GB/s over (inputs + outputs) x n x itemsize."""
    from cugrad import _selftest

    _tick_per_event(cp)
    real_asarray = cp.asarray
    cp.asarray = lambda a, dtype=None: real_asarray(a, dtype)
    rows = _selftest.operator_benchmark(cp, copy_gbps=2.0, side=5, reps=3)
    assert [r["case"] for r in rows] == [f"{op}-{dt}-5" for dt in ("float32", "float64")
                                         for op in _selftest.OPERATOR_BENCH]
    arrays_moved = {"gradient_magnitude": 2, "divergence": 4, "curl": 6, "laplacian": 2}
    for r in rows:
        op = r["case"].split("-")[0]
        itemsize = 4 if "float32" in r["case"] else 8
        assert r["median_s"] == pytest.approx(1e-6)  # one clock tick per launch
        assert r["gbps"] == pytest.approx(arrays_moved[op] * 125 * itemsize / 1e-6 / 1e9)
        assert r["copy_fraction"] == pytest.approx(r["gbps"] / 2.0)
    assert any("curl" in line for line in _selftest.format_benchmark(
        {"copy_gbps": 2.0, "copy_method": "stand-in", "rows": rows}))
