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
    return set(re.findall(r"\b(?:add|sub|mul|div|fma|mad|cvt|neg|abs|setp|min|max)"
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
