"""CuPy's own kernel machinery, driven as far as it goes without a GPU (issue 9).

THIS IS THE ONE MODULE THAT TOUCHES CuPy INTERNALS (``cupy._core._kernel``, ``cupy._core._scalar``,
``cupy._core.core``, ``cupy.cuda.compiler``), pinned by the ``test`` extra's CuPy version. They are
what ``cupy.ElementwiseKernel.__call__`` and ``cupy.RawModule`` run before the first CUDA driver
call; when CuPy changes them these tests fail loudly (they never pass by skipping silently: a
missing CuPy, NVRTC or CUDA header set is a visible skip with its reason).

* General path: for the real operands of plans (every dtype the path takes, float16 as uint16
  bits, complex, the device flag, Fortran order, integer and bool input, both edge orders, every
  spacing form, accuracy 4-8, periodic), CuPy's parameter parsing and type decision accept the
  operands; scalars pack into the declared types; CuPy's code generator writes the kernel; and
  NVRTC compiles exactly that code with CuPy's option set (its include paths, its -ftz=true, its
  --device-as-default-execution-space), through CuPy's own NVRTC program class.
* Fast path: the RawModule source compiled through CuPy's NVRTC path with name expressions, and
  the mangled names CuPy finds in the result.
* The packed parameter block: every field offset and size of ``FAST_PARAMS_DTYPE`` (and of the
  record and axis dtypes) checked against the kernel's structs by ``static_assert`` lines that
  NVRTC compiles.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import stable_rng

from cugrad import _cupy_backend as cb
from cugrad import _kernels
from cugrad._plan import make_plan

pytestmark = [pytest.mark.cupy_contract, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

ARCH = "90"  # the architecture CuPy would pick on an H100/H200


@functools.cache
def cupy_internals() -> SimpleNamespace:
    """CuPy's modules, or a skip that says what is missing."""
    try:
        import cupy
        from cupy._core import _carray, _kernel, _scalar, core
        from cupy.cuda import compiler
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        pytest.skip(f"CuPy is not importable ({type(exc).__name__}: {exc})")
    try:
        compiler._get_nvrtc_version()
    except Exception as exc:
        pytest.skip(f"CuPy cannot load NVRTC ({type(exc).__name__}: {exc})")
    return SimpleNamespace(cupy=cupy, _kernel=_kernel, _scalar=_scalar, _carray=_carray,
                           core=core, compiler=compiler)


# cupy._core._kernel's _ArgKind values (probed below by test_arg_kinds_are_what_we_think: the
# generated parameter list must show an ndarray as CArray, a scalar as a plain C type).
ARG_NDARRAY, ARG_INDEXER, ARG_SCALAR = 1, 2, 3


def cupy_nvrtc(source: str, name_expressions: list[str] | None = None) -> tuple[Any, dict]:
    """Compile ``source`` as CuPy's compile_with_cache does for this process's options, up to the
    point where it would load the module into the driver: CuPy's header prefix, its compiler
    options (include paths, -ftz=true), CuPy's NVRTC program class. Returns (cubin, mapping).
    Call it under :func:`cupy_arch` (the one device query on CuPy's compile path)."""
    cp = cupy_internals()
    header = "".join(f"#include <{h}>\n" for h in cp.core._cupy_header_list)
    options = cp.core.assemble_cupy_compiler_options(tuple(_kernels.COMPILE_OPTIONS))
    options += ("-ftz=true",)  # what _compile_with_cache_cuda appends
    return cp.compiler._compile_using_nvrtc_no_warning(
        header + source, options, ARCH, "cugrad_contract.cu", name_expressions, io.StringIO(),
        True)


@contextlib.contextmanager
def cupy_arch():
    """CuPy asks the device which -arch to pass; answer as it would for the GPU named by ARCH."""
    compiler = cupy_internals().compiler
    original = compiler._get_arch_for_options_for_nvrtc
    compiler._get_arch_for_options_for_nvrtc = lambda arch=None: (f"-arch=sm_{arch}", "cubin")
    try:
        yield
    finally:
        compiler._get_arch_for_options_for_nvrtc = original


@pytest.fixture(scope="session")
def compiled(general_codes) -> dict[str, Any]:
    """Every NVRTC program of this module, compiled at once on threads (NVRTC releases the GIL);
    a failure is the job's value."""
    preamble = _kernels.general_preamble()
    parts = []
    distinct = {code: variant for variant, code in general_codes.values()}  # one per kernel text
    for k, (code, variant) in enumerate(distinct.items()):
        head, kernel = code.split(preamble)
        if not parts:
            parts.append(head + preamble)  # the preamble once; kernels renamed apart
        parts.append(kernel.replace(f"void {variant.name}(", f"void {variant.name}_{k}(", 1))
    fast = _kernels.fast_module_code()
    d = cb.FAST_PARAMS_DTYPE
    names = list(d.names)
    a, b = names.index("nsl"), names.index("nsr")
    names[a], names[b] = names[b], names[a]  # what a packer with two fields swapped would send
    swapped = np.dtype({"names": names, "formats": [d.fields[n][0] for n in d.names],
                        "offsets": [d.fields[n][1] for n in d.names]})
    wrong = layout_asserts({"cg_fast_params": swapped})
    jobs = {
        "general": ("\n".join(parts), None),
        "fast": (fast, [v.expression for v in FAST_SAMPLE]),
        "layout": (fast + "\n" + layout_asserts(), None),
        "layout-wrong": (fast + "\n" + wrong, None),
    }

    def run(job: tuple[str, list[str] | None]) -> Any:
        try:
            return cupy_nvrtc(*job)
        except Exception as exc:  # noqa: BLE001 - the tests look at it
            return exc

    with cupy_arch(), ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = dict(zip(jobs, pool.map(run, jobs.values()), strict=True))
    compiler = cupy_internals().compiler
    for key in ("general", "fast", "layout"):
        exc = results[key]
        if isinstance(exc, compiler.CompileException) and re.search(
                r"cannot open source file|could not open source file", str(exc)):
            pytest.skip("CuPy cannot find the CUDA headers it needs to compile (issue 9 item 2: "
                        f"install cupy-cuda12x[ctk]): {str(exc).splitlines()[0]}")
    return results


# ------------------------------------------------------------------------------------------------
# The general path: ElementwiseKernel
# ------------------------------------------------------------------------------------------------


def _data(shape, dtype, key):
    rng = stable_rng("contract", shape, np.dtype(dtype).name, key)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) > 0.5
    values = rng.standard_normal(shape) * 10
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


def _coords(n, key):
    return np.cumsum(0.25 + stable_rng("contract-x", n, key).random(n))


def general_cases() -> list[tuple[str, Any, np.ndarray, Any]]:
    """(id, plan, f, axis index): real plans of every kind the general path receives."""
    cases = []
    shape = (9, 10, 11)
    for dtype in (np.float16, np.float32, np.float64, np.complex64, np.complex128, np.int16):
        f = np.asfortranarray(_data(shape, dtype, "fortran"))
        for eo in (1, 2):
            cases.append((f"{np.dtype(dtype).name}-F-eo{eo}", make_plan(f, (), None, eo), f, 0))
        x = _coords(10, dtype)
        cases.append((f"{np.dtype(dtype).name}-coords", make_plan(f, (0.5, x, np.float32(2)),
                                                                   None, 2), f, 1))
        cases.append((f"{np.dtype(dtype).name}-acc8", make_plan(f, (), None, 1, accuracy=8), f, 2))
        cases.append((f"{np.dtype(dtype).name}-periodic-coords",
                      make_plan(f, (0.5, x, 1.0), None, 1, accuracy=6, boundary="periodic",
                                period=[None, float(x[-1] - x[0]) + 0.5, None]), f, 1))
    f = _data((7, 9), np.float32, "int8-spacing")
    cases.append(("f32-two-dtypes", make_plan(f, (np.int8(3),), 1, 1), f, 0))
    f = _data((7, 9), np.int64, "view")[::-1, ::2]
    cases.append(("i64-reversed-view", make_plan(f, (), None, 2), f, 0))
    # bool data on a device, coordinates and second-order edges, as make_plan sees a device array
    fb = _data((7, 9), np.bool_, "bool")
    device_like = SimpleNamespace(shape=fb.shape, ndim=2, dtype=fb.dtype)
    cases.append(("bool-device", make_plan(device_like, (_coords(7, "b"), _coords(9, "b")), None,
                                           2), fb, 0))
    return cases


def _reduced_out_ndim(out: np.ndarray) -> int:
    """ndim of ``out`` after CuPy's _reduced_view_core (the only non-raw array of the kernel)."""
    if out.flags.c_contiguous:
        return 1
    if out.ndim == 2:
        return 2
    axes, last = [], -1
    shape = list(out.shape)
    for ax in range(out.ndim):
        if shape[ax] == 1:
            continue
        if last < 0:
            last = ax
            continue
        if out.strides[ax] * shape[ax] != out.strides[last]:
            axes.append(last)
        else:
            shape[ax] *= shape[last]
        last = ax
    if last >= 0:
        axes.append(last)
    return len(axes)


def elementwise_code(case_id: str, plan, f: np.ndarray, index: int) -> tuple[Any, str]:
    """What ElementwiseKernel.__call__ does with the backend's operands, up to the code string."""
    cp = cupy_internals()
    k = cp._kernel
    ap = plan.axis_plans[index]
    out = np.zeros(plan.shape, plan.out_dtype, order="F" if f.flags.f_contiguous else "C")
    variant = cb.general_variant(f.dtype, plan.data_dtype, ap, out.dtype)
    args = cb.general_args(f, out, ap, 0, ap.length, 0, np)
    out_arg = cb._bits(out)
    in_params = k._get_param_info(variant.in_params(), True)
    out_params = k._get_param_info(variant.out_params(), False)
    assert len(in_params) == len(args), case_id
    params = in_params + out_params + k._get_param_info("CIndexer _ind", False)
    in_dtypes = tuple(a.dtype if isinstance(a, np.ndarray) else None for a in args)
    in_types, out_types, type_map = k._decide_params_type(in_params, out_params, in_dtypes,
                                                          (out_arg.dtype,))
    arginfos = []
    for a, t in zip(args, in_types, strict=True):
        if isinstance(a, np.ndarray):
            arginfos.append(k._ArgInfo(ARG_NDARRAY, cp.cupy.ndarray, a.dtype, a.ndim,
                                       bool(a.flags.c_contiguous), True))
        else:
            scalar = cp._scalar.CScalar(a)
            scalar.apply_dtype(t)  # the packing CuPy does before the launch
            assert np.dtype(scalar.dtype) == np.dtype(t) and scalar.value == a, (case_id, a, t)
            arginfos.append(k._ArgInfo(ARG_SCALAR, cp._scalar.CScalar, np.dtype(t), 0, True,
                                       True))
    ndim = _reduced_out_ndim(out_arg)
    arginfos.append(k._ArgInfo(ARG_NDARRAY, cp.cupy.ndarray, out_arg.dtype, ndim,
                               ndim == 1, True))
    arginfos.append(k._ArgInfo(ARG_INDEXER, cp._carray.Indexer, None, ndim, True, True))
    code = k._get_elementwise_kernel_code(tuple(arginfos), type_map, params, variant.operation(),
                                          variant.name, _kernels.general_preamble())
    return variant, code


@pytest.fixture(scope="session")
def general_codes() -> dict[str, tuple[Any, str]]:
    return {cid: elementwise_code(cid, plan, f, i) for cid, plan, f, i in general_cases()}


def test_arg_kinds_are_what_we_think(general_codes):
    _, code = next(iter(general_codes.values()))
    signature = code[code.index('extern "C"'):].splitlines()[0]
    assert re.search(r"const CArray<[^>]+> f,", signature), signature
    assert "const long long axis_len" in signature and "CIndexer<" in signature, signature


def test_every_general_variant_of_the_cases_is_representative(general_codes):
    """cugrad compile warms the representative variants; the cases' kernels are among them or
    differ only in dtypes the representative set also compiles."""
    names = {v.name for v, _ in general_codes.values()}
    assert len(names) >= 10


@pytest.mark.parametrize("case_id", [c[0] for c in general_cases()])
def test_general_operands_pass_cupys_type_decision(general_codes, case_id):
    variant, code = general_codes[case_id]
    signature = code[code.index('extern "C"'):].splitlines()[0]
    # float16 travels as its bits; complex as CuPy's complex<T>; the flag as bool
    if variant.in_dtype == np.float16:
        assert "CArray<unsigned short," in signature.split(" f,")[0]
    if variant.data_dtype.kind == "c":
        assert "complex<" in signature
    assert "const CArray<bool," in signature and "const CArray<long long," in signature
    assert f"cg_general_point<{variant.template_args}>" in code


def test_general_kernels_compile_with_cupys_options(compiled):
    result = compiled["general"]
    assert not isinstance(result, Exception), result
    cubin, _ = result
    assert isinstance(cubin, bytes) and len(cubin) > 1000


# ------------------------------------------------------------------------------------------------
# The fast path: RawModule with name expressions
# ------------------------------------------------------------------------------------------------

FAST_SAMPLE = [
    _kernels.FastVariant(np.dtype(np.float32), np.dtype(np.float32), 4, "i32"),
    _kernels.FastVariant(np.dtype(np.float32), np.dtype(np.float64), 4, "i64"),
    _kernels.FastVariant(np.dtype(np.float64), np.dtype(np.float64), 2, "i32"),
    _kernels.FastVariant(np.dtype(np.uint8), np.dtype(np.float64), 1, "i64"),
]


def test_fast_path_compiles_through_cupy_and_its_names_are_found(compiled):
    from test_kernel_budget import mangled_name

    result = compiled["fast"]
    assert not isinstance(result, Exception), result
    cubin, mapping = result
    assert isinstance(cubin, bytes) and len(cubin) > 1000
    for v in FAST_SAMPLE:
        assert mapping[v.expression] == mangled_name(v), (v.name, mapping)


# ------------------------------------------------------------------------------------------------
# The packed parameter block against the kernel's structs
# ------------------------------------------------------------------------------------------------


def _leaves(dtype: np.dtype, prefix: str = "", base: int = 0):
    """(C member expression, numpy dtype, byte offset) of every scalar field, in order."""
    for name, (fdtype, offset) in dtype.fields.items():
        member, at = f"{prefix}{name}", base + offset
        element = fdtype.base if fdtype.shape else fdtype
        count = int(np.prod(fdtype.shape)) if fdtype.shape else 1
        for i in range(count):
            expr = f"{member}[{i}]" if fdtype.shape else member
            at_i = at + i * element.itemsize
            if element.fields:
                yield from _leaves(element, f"{expr}.", at_i)
            else:
                yield expr, element, at_i


def _initializer(dtype: np.dtype, counter: list[int]) -> str:
    """A braced aggregate initializer giving every scalar field a distinct value, in order."""
    items = []
    for _, (fdtype, _) in dtype.fields.items():
        element = fdtype.base if fdtype.shape else fdtype
        count = int(np.prod(fdtype.shape)) if fdtype.shape else 1
        values = []
        for _ in range(count):
            if element.fields:
                values.append(_initializer(element, counter))
            else:
                counter[0] += 1
                values.append(str(counter[0]))
        items.append("{" + ", ".join(values) + "}" if fdtype.shape else values[0])
    return "{" + ", ".join(items) + "}"


def layout_asserts(dtypes: dict[str, np.dtype] | None = None) -> str:
    """static_assert lines that hold only if each kernel struct has the dtype's fields, in the
    dtype's order, with the dtype's sizes, kinds and signedness, and the dtype's total size.

    NVRTC has no constant offsetof (no __builtin_offsetof, and the pointer-arithmetic macro is not
    a constant expression there), so the check initialises a constexpr object field by field and
    reads the fields back by name. Equal order, sizes and total size give equal offsets because
    every field of the packed numpy dtype sits at its natural alignment
    (test_packed_dtypes_are_naturally_aligned).
    """
    dtypes = dtypes or {"cg_fast_params": cb.FAST_PARAMS_DTYPE,
                        "cg_fast_axis": cb.FAST_AXIS_DTYPE, "cg_fast_rec": cb.FAST_REC_DTYPE}
    lines = []
    for k, (ctype, dtype) in enumerate(dtypes.items()):
        obj = f"cg_layout_{k}"
        lines.append(f"constexpr {ctype} {obj} = {_initializer(dtype, [0])};")
        lines.append(f'static_assert(sizeof({ctype}) == {dtype.itemsize}, "sizeof {ctype}");')
        for value, (expr, leaf, _) in enumerate(_leaves(dtype), start=1):
            label = f"{ctype}.{expr}"
            t = f"decltype({obj}.{expr})"
            lines.append(f'static_assert({obj}.{expr} == {value}, "{label}: order");')
            lines.append(f'static_assert(sizeof({t}) == {leaf.itemsize}, "{label}: size");')
            lines.append(f'static_assert((({t})0.5 != 0) == {str(leaf.kind == "f").lower()}, '
                         f'"{label}: float or integer");')
            lines.append(f'static_assert((({t})-1 < 0) == {str(leaf.kind in "if").lower()}, '
                         f'"{label}: signedness");')
    return "\n".join(lines)


def test_packed_dtypes_are_naturally_aligned():
    for dtype in (cb.FAST_PARAMS_DTYPE, cb.FAST_AXIS_DTYPE, cb.FAST_REC_DTYPE):
        previous_end = 0
        for expr, leaf, at in _leaves(dtype):
            assert at % leaf.itemsize == 0, (expr, at)
            assert at == previous_end, (expr, "a gap the C compiler would not leave")
            previous_end = at + leaf.itemsize
        assert previous_end == dtype.itemsize and dtype.itemsize % 8 == 0


def test_parameter_block_matches_the_kernel_structs(compiled):
    """FAST_PARAMS_DTYPE is what CuPy copies into the kernel's parameter space byte for byte:
    NVRTC-compiled static_asserts generated from the dtypes (nested axes and records included)."""
    assert layout_asserts().count("static_assert") > 300
    result = compiled["layout"]
    assert not isinstance(result, Exception), result


def test_the_layout_check_catches_swapped_fields(compiled):
    error = compiled["layout-wrong"]
    assert isinstance(error, Exception) and "cg_fast_params.nsl: order" in str(error), error


# ------------------------------------------------------------------------------------------------
# The fused derived operators: ElementwiseKernel with several sources and outputs
# ------------------------------------------------------------------------------------------------


def operator_cases() -> list[tuple[str, Any, list[np.ndarray], bool]]:
    """(id, operator plan, sources, stacked outputs): the kinds of operands the fused kernel
    receives (float16 bits, integer input, complex, views, several outputs, two compute dtypes)."""
    from cugrad import _operators

    def plan(kind, sources, varargs=(), edge_order=1, **options):
        options = {"accuracy": 2, "boundary": "edge", "period": None, **options}
        return _operators._plan(kind, sources[0], len(sources), varargs, None, edge_order, options)

    S = (9, 10, 11)
    f32 = [_data(S, np.float32, f"op{i}") for i in range(3)]
    f16 = np.asfortranarray(_data(S, np.float16, "op-f16"))
    i16 = [_data((7, 9), np.float64, f"op-i{i}").astype(np.int16)[::-1, :] for i in range(2)]
    c128 = _data((7, 9), np.complex128, "op-c")
    f32_2d = _data((7, 9), np.float32, "op-int8")
    return [
        ("curl3-f32-stacked", plan("curl", f32, (0.5, _coords(10, "op"), 2.0), 2), f32, True),
        ("magnitude-f16-F", plan("magnitude", [f16]), [f16], False),
        ("divergence-i16-reversed", plan("divergence", i16, (), 2), i16, False),
        ("laplacian-c128-acc4-periodic", plan("laplacian", [c128], (0.5,), accuracy=4,
                                              boundary="periodic"), [c128], False),
        ("magnitude-f32-two-dtypes", plan("magnitude", [f32_2d], (np.int8(3),)), [f32_2d], False),
    ]


def operator_code(case_id: str, plan, sources: list[np.ndarray], stacked: bool) -> tuple[Any, str]:
    """What ElementwiseKernel.__call__ does with the fused kernel's operands, up to the code."""
    cp = cupy_internals()
    k = cp._kernel
    count = len(plan.outputs)
    if stacked:
        block = np.zeros((count,) + plan.shape, plan.out_dtype)
        outs = [block[i] for i in range(count)]
    else:
        order = "F" if sources[0].flags.f_contiguous and not sources[0].flags.c_contiguous else "C"
        outs = [np.zeros(plan.shape, plan.out_dtype, order=order) for _ in range(count)]
    variant = cb.operator_variant(plan, sources[0].dtype)
    args = cb.operator_args(plan, sources, np)
    out_args = [cb._bits(o) for o in outs]
    in_params = k._get_param_info(variant.in_params(), True)
    out_params = k._get_param_info(variant.out_params(), False)
    assert len(in_params) == len(args) and len(out_params) == len(out_args), case_id
    params = in_params + out_params + k._get_param_info("CIndexer _ind", False)
    in_dtypes = tuple(a.dtype if isinstance(a, np.ndarray) else None for a in args)
    in_types, _, type_map = k._decide_params_type(in_params, out_params, in_dtypes,
                                                  tuple(o.dtype for o in out_args))
    arginfos = []
    for a, t in zip(args, in_types, strict=True):
        if isinstance(a, np.ndarray):
            arginfos.append(k._ArgInfo(ARG_NDARRAY, cp.cupy.ndarray, a.dtype, a.ndim,
                                       bool(a.flags.c_contiguous), True))
        else:
            scalar = cp._scalar.CScalar(a)
            scalar.apply_dtype(t)
            assert np.dtype(scalar.dtype) == np.dtype(t) and scalar.value == a, (case_id, a, t)
            arginfos.append(k._ArgInfo(ARG_SCALAR, cp._scalar.CScalar, np.dtype(t), 0, True,
                                       True))
    ndim = _reduced_out_ndim(out_args[0])
    for o in out_args:
        arginfos.append(k._ArgInfo(ARG_NDARRAY, cp.cupy.ndarray, o.dtype, ndim, ndim == 1, True))
    arginfos.append(k._ArgInfo(ARG_INDEXER, cp._carray.Indexer, None, ndim, True, True))
    code = k._get_elementwise_kernel_code(tuple(arginfos), type_map, params, variant.operation(),
                                          variant.name, _kernels.operator_preamble())
    return variant, code


@pytest.fixture(scope="session")
def operator_codes() -> dict[str, tuple[Any, str]]:
    return {cid: operator_code(cid, plan, sources, stacked)
            for cid, plan, sources, stacked in operator_cases()}


@pytest.fixture(scope="session")
def operators_compiled_by_cupy(operator_codes) -> Any:
    """Every case's kernel in one program (the preamble once), through CuPy's NVRTC path."""
    preamble = _kernels.operator_preamble()
    parts = []
    for k, (variant, code) in enumerate(operator_codes.values()):
        head, kernel = code.split(preamble)
        if not parts:
            parts.append(head + preamble)
        parts.append(kernel.replace(f"void {variant.name}(", f"void {variant.name}_{k}(", 1))
    with cupy_arch():
        try:
            return cupy_nvrtc("\n".join(parts))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            if re.search(r"cannot open source file|could not open source file", str(exc)):
                pytest.skip("CuPy cannot find the CUDA headers it needs to compile: "
                            f"{str(exc).splitlines()[0]}")
            return exc


@pytest.mark.parametrize("case_id", [c[0] for c in operator_cases()])
def test_operator_operands_pass_cupys_type_decision(operator_codes, case_id):
    variant, code = operator_codes[case_id]
    signature = code[code.index('extern "C"'):].splitlines()[0]
    for s in range(variant.sources):
        assert re.search(rf"const CArray<.+?, \d+, \d, \d> f{s},", signature), signature
    for o in range(len(variant.outputs)):  # every output indexed with the element index
        assert re.search(rf"CArray<.+?, \d+, \d, \d> _raw_out{o},", signature), signature
        assert re.search(rf"&out{o} = _raw_out{o}\[_ind.get\(\)\]", code), code
    if variant.in_dtype == np.float16:
        assert "CArray<unsigned short," in signature.split(" f0,")[0]
    if variant.data_dtype.kind == "c":
        assert "complex<" in signature
    assert variant.operation() in code


def test_operator_kernels_compile_with_cupys_options(operators_compiled_by_cupy):
    result = operators_compiled_by_cupy
    assert not isinstance(result, Exception), result
    cubin, _ = result
    assert isinstance(cubin, bytes) and len(cubin) > 1000
