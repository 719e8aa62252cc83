"""``cugrad compile``: what it does with and without --arch, and where the architectures come from.

No GPU and (except where marked ``nvrtc``) no compiler: NVRTC and CuPy are replaced by stand-ins
where the test is about the command's decisions, not the kernels (tests/test_kernels_nvrtc.py
compiles those).
"""

from __future__ import annotations

import pytest

from cugrad import _backend, _compile


class _FakeNVRTC:
    def __init__(self, archs):
        self.archs = archs

    def supported_archs(self):
        return list(self.archs)


def test_default_archs_are_the_targets_this_nvrtc_supports():
    cuda12_9 = [50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 120, 121]
    assert _compile.default_archs(_FakeNVRTC(cuda12_9)) == [70, 75, 80, 86, 89, 90, 100, 120]
    cuda13 = [75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121]  # no sm_70 any more
    assert _compile.default_archs(_FakeNVRTC(cuda13)) == [75, 80, 86, 89, 90, 100, 120]
    cuda12_0 = [35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90]
    assert _compile.default_archs(_FakeNVRTC(cuda12_0)) == [70, 75, 80, 86, 89, 90]


@pytest.mark.nvrtc
def test_default_archs_of_the_installed_nvrtc():
    try:
        nvrtc = _compile.NVRTC()
    except _compile.NVRTCError as exc:
        pytest.skip(f"the NVRTC library cannot be loaded: {exc}")
    archs = _compile.default_archs(nvrtc)
    assert archs and set(archs) <= set(nvrtc.supported_archs()) <= set(range(1000))
    assert 90 in archs  # every NVRTC cugrad supports (CUDA >= 12.0) targets Hopper


@pytest.mark.parametrize("argv", [["--arch"], ["--arch", "supported"], ["--arch", "SUPPORTED"]])
def test_arch_alone_compiles_for_the_supported_targets(monkeypatch, capsys, argv):
    seen = []
    monkeypatch.setattr(_compile, "NVRTC", lambda *a: _FakeNVRTC([75, 80, 90, 100, 103]))

    def compile_programs(archs, *a, **k):
        seen.append(list(archs))
        return [_compile.ProgramResult(p, _compile._arch_option(x)[1], "", None)
                for x in archs for p in ("fast", "general")]

    monkeypatch.setattr(_compile, "compile_programs", compile_programs)
    assert _compile.main(argv) == 0
    assert seen == [[75, 80, 90, 100]]
    out = capsys.readouterr().out
    assert "sm_75, sm_80, sm_90, sm_100" in out
    assert "CuPy's kernel cache is filled only by `cugrad compile` without --arch" in out


def test_without_arch_and_without_a_gpu_it_says_what_it_needs_and_what_arch_does(
    monkeypatch, capsys
):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (False, "no NVIDIA GPU here"))
    monkeypatch.setattr(_compile, "fill_cupy_cache",
                        lambda: pytest.fail("must not touch CuPy without a GPU"))
    assert _compile.main([]) == 1
    err = capsys.readouterr().err
    assert "fills CuPy's kernel cache for this machine's GPU" in err
    assert "no NVIDIA GPU here" in err and "needs CuPy and a usable GPU" in err
    assert "--arch" in err and "CuPy's cache is not filled" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(RuntimeError, match="needs CuPy and a usable GPU"):
        _compile.compile_kernels()


def test_without_arch_on_a_gpu_it_fills_cupys_cache(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (True, "a pretend GPU"))
    report = _compile.CompileReport(archs=["device 0 (sm_90)"], variants=["k1", "k2"],
                                    seconds=1.5)
    monkeypatch.setattr(_compile, "fill_cupy_cache", lambda: report)
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))
    assert _compile.main(["--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 kernels x 1 architecture(s) (device 0 (sm_90))" in out
    assert f"stored in CuPy's kernel cache ({tmp_path})" in out


def test_a_bad_arch_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        _compile.main(["--arch", "hopper"])
    assert info.value.code == 2
