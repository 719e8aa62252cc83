"""Every kernel variant compiles with NVRTC for the GPU generations cugrad supports, without a GPU.

NVRTC comes from the ``nvidia-cuda-nvrtc-cu12`` wheel (the ``nvrtc`` and ``test`` extras) and is
driven through ctypes by ``cugrad._compile``: no driver, no CuPy. The programs are the backend's
own code strings with every fast-path instantiation made explicit and the general path's device
code instantiated for every kind combination.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from cugrad import _compile, _kernels

pytestmark = pytest.mark.nvrtc


def _archs() -> tuple[int, ...]:
    # cugrad's target architectures that the installed NVRTC supports (nvrtcGetSupportedArchs):
    # CUDA 13's NVRTC has no sm_70; without NVRTC every test here skips anyway.
    try:
        return tuple(_compile.default_archs())
    except _compile.NVRTCError:
        return _compile.TARGET_ARCHS


ARCHS = _archs()
PROGRAMS = ("fast", "general")


@pytest.fixture(scope="session")
def nvrtc() -> _compile.NVRTC:
    try:
        return _compile.NVRTC()
    except _compile.NVRTCError as exc:
        pytest.skip(f"the NVRTC library cannot be loaded: {exc}")


@pytest.fixture(scope="session")
def compiled(nvrtc: _compile.NVRTC) -> dict[tuple[str, str], _compile.ProgramResult]:
    # Both programs for all architectures at once, on every core: NVRTC releases the GIL.
    results = _compile.compile_programs(ARCHS, nvrtc)
    return {(r.program, r.arch): r for r in results}


def test_nvrtc_knows_the_architectures(nvrtc):
    assert nvrtc.version() >= (12, 0)
    missing = set(ARCHS) - set(nvrtc.supported_archs())
    assert not missing, f"this NVRTC cannot target sm_{sorted(missing)}"


@pytest.mark.slow
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_variant_compiles(compiled, program, arch):
    result = compiled[(program, f"sm_{arch}")]
    assert result.error is None, result.error


def test_the_programs_instantiate_every_variant():
    fast = _compile.fast_harness()
    for v in _kernels.all_fast_variants():
        assert f"template __global__ void {v.expression}(const cg_fast_params);" in fast
    general = _compile.general_harness()
    for v in _kernels.representative_general_variants():
        assert f"__global__ void {v.name}(" in general
    # every combination of input dtype, compute dtype, access width and index width
    names = [v.name for v in _kernels.all_fast_variants()]
    assert len(names) == len(set(names))
    assert {v.index for v in _kernels.all_fast_variants()} == {"i32", "i64"}


def _float_instructions(ptx: str) -> set[str]:
    return set(re.findall(r"\b(?:add|sub|mul|div|fma|mad|cvt|neg|abs|setp|min|max|sqrt)"
                          r"(?:\.[a-z0-9]+)*\.f(?:16|32|64)\b[a-z0-9.]*", ptx))


def test_arithmetic_is_ieee_under_cupys_flush_to_zero(nvrtc):
    """CuPy appends -ftz=true to every compile; the kernels' float arithmetic must not flush.

    Every float instruction in the PTX is an explicit round-to-nearest one without .ftz, and
    none is fused (no fma/mad) unless numpy's own complex multiply is fused on this host.
    """
    v = _kernels.FastVariant(np.dtype(np.float32), np.dtype(np.float32), 4, "i32")
    source = (_kernels.fast_module_code()
              + f"\ntemplate __global__ void {v.expression}(const cg_fast_params);\n")
    options = ("-arch=compute_90", *_kernels.COMPILE_OPTIONS, "-ftz=true")
    fast = _float_instructions(nvrtc.ptx(source, options))
    assert fast, "no float instruction found: the PTX parse is broken"
    assert not [i for i in fast if ".ftz" in i], fast
    assert not [i for i in fast if i.startswith(("fma", "mad"))], fast
    assert {"sub.rn.f32", "div.rn.f32"} <= fast
    general = _float_instructions(nvrtc.ptx(_compile.general_harness(), options))
    assert not [i for i in general if ".ftz" in i], general
    fused = {i for i in general if i.startswith(("fma", "mad"))}
    if _kernels.numpy_cmul_is_fused():
        assert fused <= {"fma.rn.f32", "fma.rn.f64"}
    else:
        assert not fused


def test_a_broken_kernel_reports_nvrtcs_log(nvrtc):
    with pytest.raises(_compile.NVRTCError, match="undefined_function"):
        nvrtc.compile("__global__ void k() { undefined_function(); }", ("-arch=sm_90",))


def test_cli_prints_variants_times_archs(compiled, monkeypatch, capsys):
    monkeypatch.setattr(
        _compile, "compile_programs",
        lambda archs, *a, **k: [compiled[(p, _compile._arch_option(x)[1])]
                                for x in archs for p in PROGRAMS],
    )
    assert _compile.main(["--arch", "80,sm_90"]) == 0
    out = capsys.readouterr().out
    for v in _kernels.all_fast_variants():
        assert f"{v.name}: sm_80, sm_90" in out
    # the summary line (`cugrad compile` may add a note about CuPy's cache after it)
    assert any(line.startswith("cugrad compile:") and "compiled in" in line
               for line in out.splitlines())


def test_cli_fails_on_a_compile_error(monkeypatch, capsys):
    broken = _compile.ProgramResult("fast", "sm_90", "", "error: something broke")
    monkeypatch.setattr(_compile, "compile_programs", lambda archs, *a, **k: [broken])
    assert _compile.main(["--arch", "90"]) == 1
    assert "something broke" in capsys.readouterr().err


def test_cli_rejects_a_bad_arch_list():
    with pytest.raises(SystemExit) as info:
        _compile.main(["--arch", "ampere"])
    assert info.value.code == 2


# ------------------------------------------------------------------------------------------------
# The fused derived operators (kernels/operators.cuh): a representative set of variants
# ------------------------------------------------------------------------------------------------


# Raw arrays as CuPy's CArray<T, ndim> has them for ElementwiseKernel: the ndim is a template
# argument, so the index loop unrolls and the shape and strides stay in registers (a run-time ndim,
# as _compile's general-path stand-in has, would put them in local memory).
_FIXED_NDIM_ARRAY = """
template <class T, int ND>
struct cg_check_carray {
    T* data;
    long long shape[ND];
    long long strides[ND];
    __device__ T& operator[](long long i) const {
        long long off = 0;
#pragma unroll
        for (int d = ND - 1; d > 0; --d) {
            off += strides[d] * (i % shape[d]);
            i /= shape[d];
        }
        off += strides[0] * i;
        return *reinterpret_cast<T*>(reinterpret_cast<char*>(data) + off);
    }
};
"""
OPERATOR_NDIM = 3  # 2-D cases run as 3-D ones with a leading axis of length 1


def operator_harness(variants=None) -> str:
    """The operator preamble and one ``extern "C"`` kernel per variant running its generated
    operation over a grid-stride loop, with CuPy's parameter names (sources and outputs as raw
    strided arrays of a compile-time ndim, the tables as pointers, as the general path's harness
    has them)."""
    from cugrad import _cupy_backend

    storage = _compile._CHECK_STORAGE
    lines = [_kernels.operator_preamble(), _compile._GENERAL_SUPPORT, _FIXED_NDIM_ARRAY]
    for v in variants if variants is not None else _cupy_backend.representative_operator_variants():
        params, body = [], []
        for p in v.in_params().split(", "):
            words = p.split()
            if words[0] != "raw":
                params.append(f"long long {words[1]}")
            elif re.fullmatch(r"f\d+", words[2]):
                params.append(f"cg_check_carray<{storage[np.dtype(words[1])]}, {OPERATOR_NDIM}> "
                              f"{words[2]}")
            else:
                params.append(f"const {storage[np.dtype(words[1])]}* {words[2]}")
        for p in v.out_params().split(", "):
            type_name, name = p.split()
            t = storage[np.dtype(type_name)]
            params.append(f"cg_check_carray<{t}, {OPERATOR_NDIM}> emu_{name}")
            body.append(f"        {t}& {name} = emu_{name}[i];")
        lines.append(
            f'extern "C" __global__ void {v.name}({", ".join(params)}, long long size) {{\n'
            "    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;\n"
            "         i += (long long)gridDim.x * blockDim.x) {\n"
            + "\n".join(body) + "\n" + v.operation() + "\n    }\n}"
        )
    return "\n".join(lines)


def operator_jobs() -> dict[int, list]:
    """Which representative operator variants each architecture compiles: every variant for one
    architecture, every architecture at least one variant (each fused kernel inlines the general
    path's element function once per term, so a 3-D curl costs NVRTC several seconds; all of them
    for all architectures would add minutes to this module)."""
    from cugrad import _cupy_backend

    jobs: dict[int, list] = {arch: [] for arch in ARCHS}
    for j, v in enumerate(_cupy_backend.representative_operator_variants()):
        jobs[ARCHS[j % len(ARCHS)]].append(v)
    return jobs


@pytest.fixture(scope="session")
def operators_compiled(nvrtc: _compile.NVRTC) -> dict[str, str | None]:
    """The operator harness of each architecture's variants, on threads; None or NVRTC's error."""
    from concurrent.futures import ThreadPoolExecutor

    def one(job: tuple[int, list]) -> tuple[str, str | None]:
        arch, variants = job
        try:
            nvrtc.compile(operator_harness(variants), (f"-arch=sm_{arch}",
                                                       *_kernels.COMPILE_OPTIONS),
                          name=f"cugrad_operators_sm{arch}.cu")
        except _compile.NVRTCError as exc:
            return f"sm_{arch}", str(exc)
        return f"sm_{arch}", None

    with ThreadPoolExecutor(max_workers=len(ARCHS)) as pool:
        return dict(pool.map(one, operator_jobs().items()))


@pytest.mark.parametrize("arch", ARCHS)
def test_operator_variants_compile(operators_compiled, arch):
    assert operators_compiled[f"sm_{arch}"] is None, operators_compiled[f"sm_{arch}"]


def test_every_operator_variant_compiles_for_some_architecture():
    from cugrad import _cupy_backend

    jobs = operator_jobs()
    assert all(jobs.values())
    assert sorted(v.name for vs in jobs.values() for v in vs) == sorted(
        v.name for v in _cupy_backend.representative_operator_variants())


def test_operator_harness_has_each_operator_kind_per_dtype():
    from cugrad import _cupy_backend

    variants = _cupy_backend.representative_operator_variants()
    harness = operator_harness(variants)
    for v in variants:
        assert f"__global__ void {v.name}(" in harness
    kinds = {(v.out_dtype.name, tuple(c for c, _ in v.outputs)) for v in variants}
    for dtype in ("float32", "float64"):
        for structure in (("magnitude",), ("sum",), ("difference",) * 3, ("difference",)):
            assert (dtype, structure) in kinds, (dtype, structure)


def test_operator_arithmetic_is_ieee_under_cupys_flush_to_zero(nvrtc):
    """The operators' own operations (the products, sums and the square root) are explicit .rn
    instructions without .ftz, never fused."""
    from cugrad import _cupy_backend

    variants = [v for v in _cupy_backend.representative_operator_variants()
                if any(c == "magnitude" for c, _ in v.outputs) and v.out_dtype.kind == "f"]
    options = ("-arch=compute_90", *_kernels.COMPILE_OPTIONS, "-ftz=true")
    ops = _float_instructions(nvrtc.ptx(operator_harness(variants), options))
    assert {"sqrt.rn.f32", "sqrt.rn.f64"} <= ops, ops
    assert not [i for i in ops if ".ftz" in i or ".approx" in i], ops
    assert not [i for i in ops if i.startswith(("fma", "mad"))], ops
