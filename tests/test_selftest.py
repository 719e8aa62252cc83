"""``cugrad selftest`` without a GPU: the CPU part, the case list, the comparison, the report.

The GPU part is structured so that all but the device calls are plain Python: the case list and the
report are data, and the run loop takes an ``xp``. Here it runs with numpy (the NumPy backend) and
with a numpy-backed stand-in for CuPy (the device modes: out=, stack=, a non-default stream), whose
"kernels" are the NumPy backend executing the same plans. tests/test_gpu.py runs the real thing.
"""

from __future__ import annotations

import json
import sys
import types
from importlib.machinery import ModuleSpec

import numpy as np
import pytest

import cugrad
from cugrad import _backend, _compile, _cupy_backend, _info, _numpy_backend
from cugrad import _selftest as st

# ------------------------------------------------------------------------------------------------
# The case list
# ------------------------------------------------------------------------------------------------


def test_the_sample_covers_every_dtype_layout_spacing_and_edge_order():
    cases = st.parity_cases(device=False)
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    plain = {(c.dtype, c.layout, c.spacing, c.edge_order) for c in cases
             if c.mode == "plain" and c.shape == st.SMALL_SHAPE and c.axis is None}
    assert len(plain) == len(st.DTYPES) * len(st.LAYOUTS) * len(st.SPACINGS) * 2
    assert {c.mode for c in cases} == {"plain", "out", "stack"}
    assert [c.shape for c in cases].count(st.LARGE_SHAPE) == 1
    device = st.parity_cases(device=True)
    assert {c.mode for c in device} == set(st.DEVICE_MODES)
    assert set(cases) < set(device)


def test_inputs_are_reproducible_and_laid_out_as_named():
    case = st.ParityCase("float32", "negative-strides", "mixed", 2)
    a, b = st.base_data(case), st.base_data(case)
    assert np.array_equal(a, b) and a.flags.c_contiguous
    f = st.apply_layout(a, case.layout)
    assert f.strides[0] < 0 and f.strides[2] < 0
    varargs = st.host_spacing(case, f.shape)
    assert varargs[0] == 1.5 and varargs[1].shape == (f.shape[1],)
    assert type(varargs[2]) is np.float32
    assert st.apply_layout(a, "fortran").flags.f_contiguous
    with pytest.raises(ValueError, match="layout"):
        st.apply_layout(a, "diagonal")


# ------------------------------------------------------------------------------------------------
# The comparison
# ------------------------------------------------------------------------------------------------


def test_compare_is_bit_exact_but_ignores_nan_payloads():
    x = np.array([1.0, -0.0, np.nan, 3.0])
    assert st.compare(x.copy(), x) is None
    payload = x.copy()
    payload.view(np.uint64)[2] |= 1  # another NaN
    assert st.compare(payload, x) is None
    signed = x.copy()
    signed[1] = 0.0
    assert "differs" in st.compare(signed, x)
    assert "differs" in st.compare(np.nextafter(x, 9), x)
    assert "dtype" in st.compare(x.astype(np.float32), x)
    assert "shape" in st.compare(x[:3], x)
    assert "tuple" in st.compare(x, (x, x))
    c = np.array([1 + 0j, complex(2, -0.0)])
    flipped = c.copy()
    flipped.imag[1] = 0.0
    assert st.compare(flipped, c) is not None


@pytest.mark.parametrize("dtype", st.DTYPES)
def test_numpy_backend_parity_sample(dtype):
    cases = [c for c in st.parity_cases(device=False) if c.dtype == dtype
             and c.shape == st.SMALL_SHAPE]
    report = st.run_parity(cases, np)
    assert len(report.results) == len(cases)
    assert not report.mismatches, report.mismatches[:5]


def test_a_wrong_result_or_exception_is_a_mismatch(monkeypatch):
    real = cugrad.gradient

    def off_by_one_ulp(*args, **kwargs):
        result = real(*args, **kwargs)
        for r in result if isinstance(result, tuple) else (result,):
            r[(0,) * r.ndim] = np.nextafter(r[(0,) * r.ndim], np.inf)
        return result

    case = st.ParityCase("float64", "c", "coords", 2)
    assert st.run_case(case, np).ok
    monkeypatch.setattr(cugrad, "gradient", off_by_one_ulp)
    result = st.run_case(case, np)
    assert not result.ok and "differs from numpy.gradient in 1 of" in result.problem

    def raises(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(cugrad, "gradient", raises)
    result = st.run_case(case, np)
    assert not result.ok and "raised KeyError" in result.problem
    # numpy raises for bool data with a difference stencil: cugrad must raise the same type
    monkeypatch.setattr(cugrad, "gradient", real)
    assert st.run_case(st.ParityCase("bool", "c", "scalar", 1), np).ok
    monkeypatch.setattr(cugrad, "gradient", lambda *a, **k: np.zeros(3))
    result = st.run_case(st.ParityCase("bool", "c", "scalar", 1), np)
    assert not result.ok and "numpy raises TypeError" in result.problem


# ------------------------------------------------------------------------------------------------
# The device modes, on a numpy-backed stand-in for CuPy
# ------------------------------------------------------------------------------------------------


class _Device:
    id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def synchronize(self):
        pass


DEVICE = _Device()


class _DeviceArray(np.ndarray):
    @property
    def device(self):
        return DEVICE


def _dev(a):
    return np.asarray(a).view(_DeviceArray)


def _host(a):
    return np.asarray(a).view(np.ndarray)


class _Stream:
    entered = 0

    def __init__(self, non_blocking=False):
        pass

    def __enter__(self):
        _Stream.entered += 1
        return self

    def __exit__(self, *exc):
        return None

    def record(self):
        return types.SimpleNamespace(synchronize=lambda: None)


@pytest.fixture
def fake_xp(monkeypatch):
    xp = types.ModuleType("cupy")
    xp.__spec__ = ModuleSpec("cupy", None)
    xp.__version__ = "14.2.0"
    xp.ndarray = _DeviceArray
    xp.asarray = lambda a, dtype=None: _dev(np.array(a, dtype=dtype))
    xp.asnumpy = lambda a: np.array(_host(a))
    xp.full = lambda shape, value, dtype: _dev(np.full(shape, value, dtype))
    xp.empty = lambda shape, dtype=float: _dev(np.empty(shape, dtype))
    xp.empty_like = lambda a, dtype=None: _dev(np.empty_like(_host(a), dtype=dtype))
    xp.may_share_memory = lambda a, b: np.may_share_memory(_host(a), _host(b))
    xp.sqrt = lambda a: _dev(np.sqrt(_host(a)))
    xp.stack = lambda arrays: _dev(np.stack([_host(a) for a in arrays]))
    xp.cuda = types.SimpleNamespace(Device=lambda *a: DEVICE, Stream=_Stream)
    monkeypatch.setitem(sys.modules, "cupy", xp)
    monkeypatch.setattr(
        _cupy_backend, "execute",
        lambda plan, f, outs: _numpy_backend.execute(plan, _host(f), [_host(o) for o in outs]))
    # the derived operators' one fused launch, stood in for by the NumPy backend's fused path
    monkeypatch.setattr(
        _cupy_backend, "execute_operator",
        lambda plan, sources, outs: _numpy_backend.execute_fused(
            plan, [_host(s) for s in sources], [_host(o) for o in outs]))
    _Stream.entered = 0
    return xp


def test_the_device_modes_run_through_an_xp(fake_xp):
    cases = [c for c in st.parity_cases(device=True)
             if c.mode in ("plain", "out", "stack", "stream") and c.shape == st.SMALL_SHAPE
             and c.dtype in ("float32", "complex128", "int16") and c.layout in ("c", "transposed")]
    assert {c.mode for c in cases} == {"plain", "out", "stack", "stream"}
    report = st.run_parity(cases, fake_xp, torch=None)
    assert len(report.results) == len(cases)
    assert not report.mismatches, report.mismatches[:5]
    assert _Stream.entered == sum(c.mode == "stream" for c in cases)
    # both kernel paths are exercised, and the report says which case took which
    assert {"fast", "general"} <= set(report.summary()["kernel_paths"])
    assert next(r.path for r in report.results if r.case == "complex128-c-scalar-e1-plain") == (
        "general")
    torch_cases = [c for c in st.parity_cases(device=True) if c.mode == "torch"]
    assert st.run_parity(torch_cases, fake_xp, torch=None).results == []  # no torch CUDA: left out


def test_options_and_operators_run_through_an_xp_against_the_numpy_backend(fake_xp, monkeypatch):
    results, _ = st.run_options(fake_xp)
    names = [r.case for r in results]
    assert len(names) == len(set(names)) == len(st.option_cases()) + 16
    assert any("acc8-periodic-float16-fortran-coords" in n for n in names)
    assert not [r for r in results if not r.ok][:5]
    # a device result one ulp off is a mismatch
    real = _cupy_backend.execute

    def off_by_one_ulp(plan, f, outs):
        real(plan, f, outs)
        for o in outs:
            if o.dtype == np.float64:
                o.view(np.int64)[...] += 1

    monkeypatch.setattr(_cupy_backend, "execute", off_by_one_ulp)
    real_operator = _cupy_backend.execute_operator

    def operator_off_by_one_ulp(plan, sources, outs):
        real_operator(plan, sources, outs)
        for o in outs:
            if o.dtype == np.float64:
                o.view(np.int64)[...] += 1

    monkeypatch.setattr(_cupy_backend, "execute_operator", operator_off_by_one_ulp)
    results, _ = st.run_options(fake_xp)
    bad = {r.case for r in results if not r.ok}
    assert "gradient-acc4-edge-float64-c-scalar" in bad and "laplacian-float64-default" in bad
    assert "gradient-acc4-edge-float32-c-scalar" not in bad


# ------------------------------------------------------------------------------------------------
# The command: CPU part, skipped GPU part, JSON report, exit status
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def quick(monkeypatch):
    """A short sample and a stand-in NVRTC compile (test_kernels_nvrtc.py compiles for real)."""
    subset = [st.ParityCase("float32", "c", "coords", 2), st.ParityCase("int16", "fortran",
                                                                        "mixed", 1, "stack"),
              st.ParityCase("bool", "c", "scalar", 1)]
    monkeypatch.setattr(st, "parity_cases", lambda device: list(subset))
    compiled = []

    class FakeNVRTC:
        def supported_archs(self):
            return [75, 80, 90, 100, 120]

    def compile_with_nvrtc(archs, nvrtc=None, workers=None):
        compiled.append(list(archs))
        return _compile.CompileReport(archs=[f"sm_{a}" for a in archs], variants=["k"] * 3,
                                      seconds=0.25)

    monkeypatch.setattr(_compile, "NVRTC", FakeNVRTC)
    monkeypatch.setattr(_compile, "compile_with_nvrtc", compile_with_nvrtc)
    return compiled


def test_without_a_gpu_it_runs_the_cpu_part_and_says_why_the_gpu_part_was_skipped(
    monkeypatch, capsys, tmp_path, quick
):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (False, "no NVIDIA GPU in this test"))
    path = tmp_path / "selftest.json"
    assert st.run(str(path)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cugrad {cugrad.__version__}")  # cugrad info comes first
    assert "kernel compilation" in out and "NVRTC" in out
    assert "[ok] NumPy backend parity sample" in out and "3 cases, 0 mismatches" in out
    assert "[ok] NVRTC compile for the supported architectures" in out
    assert quick == [[75, 80, 90, 100, 120]]
    assert "GPU part SKIPPED: no NVIDIA GPU in this test" in out
    assert out.rstrip().splitlines()[-2] == "cugrad selftest: passed"
    doc = json.loads(path.read_text())
    assert doc["ok"] is True and doc["cugrad"] == cugrad.__version__
    assert doc["gpu"] == {"ran": False, "skipped_reason": "no NVIDIA GPU in this test"}
    assert [s["name"] for s in doc["sections"]] == [
        "NumPy backend parity sample", "NVRTC compile for the supported architectures"]
    assert doc["sections"][0]["data"]["cases"] == 3
    assert doc["info"]["gpu_usable"] is False and "toolkit" in doc["info"]


def test_without_nvrtc_the_compile_check_is_skipped_not_failed(monkeypatch, capsys, quick):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (False, "no GPU"))

    def no_nvrtc():
        raise _compile.NVRTCError("cannot load the NVRTC library")

    monkeypatch.setattr(_compile, "NVRTC", no_nvrtc)
    assert st.run(None) == 0
    assert "[skipped] NVRTC compile" in capsys.readouterr().out


def test_a_mismatch_makes_the_exit_status_non_zero(monkeypatch, capsys, tmp_path, quick):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (False, "no GPU"))
    real = cugrad.gradient
    monkeypatch.setattr(cugrad, "gradient",
                        lambda *a, **k: tuple(r + 1 for r in real(*a, **k)))
    path = tmp_path / "r.json"
    assert st.run(str(path)) == 1
    out = capsys.readouterr().out
    assert "MISMATCH float32-c-coords-e2-plain" in out
    assert "cugrad selftest: FAILED: NumPy backend parity sample" in out
    doc = json.loads(path.read_text())
    assert doc["ok"] is False and doc["sections"][0]["status"] == "FAIL"
    assert doc["sections"][0]["data"]["mismatches"][0]["case"] == "float32-c-coords-e2-plain"


def test_with_a_gpu_every_gpu_section_runs_and_reports(monkeypatch, capsys, tmp_path, quick,
                                                         fake_xp):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (True, "a pretend GPU"))
    monkeypatch.setattr(_info, "_cupy_facts", lambda: {"cupy": "14.2.0 (stand-in)"})
    monkeypatch.setattr(st, "_torch_cuda", lambda: None)
    report = _compile.CompileReport(archs=["device 0 (sm_90)"], variants=["k"] * 40, seconds=2.0)
    monkeypatch.setattr(_compile, "fill_cupy_cache", lambda: report)
    monkeypatch.setattr(st, "kernel_cache_reuse", lambda cache_dir: {"first": 12, "second": 0})
    bench = {"device": "Pretend GPU", "copy_gbps": 3000.0, "copy_method": "cupy copy",
             "rows": [{"case": "3d-f32-512-uniform-all", "impl": "cugrad", "median_s": 0.001,
                       "gbps": 2000.0, "copy_fraction": 0.67, "exact": True},
                      {"case": "3d-f32-512-uniform-all", "impl": "cupy", "median_s": 0.003,
                       "gbps": 700.0, "copy_fraction": 0.23}]}
    monkeypatch.setattr(st, "gpu_benchmark", lambda: bench)
    path = tmp_path / "gpu.json"
    assert st.run(str(path)) == 0
    out = capsys.readouterr().out
    assert "[ok] compile every kernel for this GPU" in out and "40 kernels" in out
    assert "[ok] device parity sample" in out
    assert "compiled 12 kernels into an empty cache; the next one compiled 0" in out
    assert "0.67 of copy" in out and "SKIPPED" not in out
    doc = json.loads(path.read_text())
    assert doc["gpu"]["ran"] is True and doc["ok"] is True
    assert [s["status"] for s in doc["sections"]] == ["ok"] * 6

    # a second process that compiles again fails the run
    monkeypatch.setattr(st, "kernel_cache_reuse", lambda cache_dir: {"first": 12, "second": 7})
    assert st.run(None) == 1
    assert "[FAIL] second process reuses the kernel cache" in capsys.readouterr().out


def test_a_crashing_section_is_a_failure_with_its_traceback(monkeypatch, capsys, tmp_path, quick):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (False, "no GPU"))

    def broken(*a, **k):
        raise AttributeError("'GeneralVariant' object has no attribute 'kinds'")

    monkeypatch.setattr(_compile, "compile_with_nvrtc", broken)
    path = tmp_path / "r.json"
    assert st.run(str(path)) == 1
    assert "[FAIL] NVRTC compile" in capsys.readouterr().out
    section = json.loads(path.read_text())["sections"][1]
    assert "Traceback" in section["data"] and "AttributeError" in section["detail"]


# ------------------------------------------------------------------------------------------------
# cugrad info: the CUDA headers and NVRTC (issue 9, item 2)
# ------------------------------------------------------------------------------------------------


def test_info_reports_missing_headers_and_nvrtc_with_the_fix():
    lines = _info.format_toolkit({
        "cuda_headers": {"path": None, "how": "cuda-pathfinder found none"},
        "nvrtc": {"path": None, "version": None, "archs": [], "error": "no libnvrtc"},
    })
    text = "\n".join(lines)
    assert "CUDA headers  NOT FOUND" in text and "NVRTC         NOT FOUND (no libnvrtc)" in text
    assert text.count('pip install ".[cuda12]"') == 2
    found = "\n".join(_info.format_toolkit({
        "cuda_headers": {"path": "/opt/cuda/include", "how": "cuda-pathfinder"},
        "nvrtc": {"path": "/x/libnvrtc.so.12", "version": "12.9", "archs": [80, 90]},
    }))
    assert "found: /opt/cuda/include" in found
    assert "12.9 found: /x/libnvrtc.so.12 (sm_80, sm_90)" in found


def test_info_finds_headers_without_cuda_pathfinder(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cuda.pathfinder", None)  # import fails
    (tmp_path / "include").mkdir()
    monkeypatch.setenv("CUDA_PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.setattr(_info, "CUDA_DEFAULT_ROOT", str(tmp_path / "nowhere"))
    assert _info._cuda_headers()["path"] is None  # no cuda_runtime.h there yet
    (tmp_path / "include" / "cuda_runtime.h").write_text("")
    assert _info._cuda_headers()["path"] == str(tmp_path / "include")


def test_info_facts_have_the_toolkit():
    facts = _info.collect()
    assert set(facts["toolkit"]) == {"cuda_headers", "nvrtc"}
    json.dumps(facts)


# ------------------------------------------------------------------------------------------------
# benchmarks/gpu_tune.py without a GPU
# ------------------------------------------------------------------------------------------------


def _gpu_tune():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_tune.py"
    spec = importlib.util.spec_from_file_location("gpu_tune", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_tune_without_a_gpu_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(_backend, "gpu_status", lambda: (False, "no GPU in this test"))
    assert _gpu_tune().main([]) == 0
    assert "needs a usable GPU" in capsys.readouterr().out


def test_gpu_tune_sweeps_every_valid_knob_combination():
    kernels = pytest.importorskip("cugrad._kernels")
    if not hasattr(kernels, "FastTuning"):
        pytest.skip("this cugrad has no FastTuning knobs")
    configs = _gpu_tune().configurations(kernels.FastTuning)
    assert kernels.DEFAULT_TUNING in configs
    assert len(configs) == len(set(configs)) >= 20


@pytest.mark.parametrize("row", [{"error": "wrong result, not timed: not bit-identical"},
                                 {"skipped_reason": "cugrad failed to load"}])
def test_the_benchmark_fails_when_cugrad_is_wrong_or_cannot_run(monkeypatch, capsys, row):
    bench = {"device": "Pretend GPU", "copy_gbps": 3000.0, "copy_method": "cupy copy",
             "rows": [{"case": "3d-f32-256-uniform-all", "impl": "cugrad", "median_s": None,
                       **row},
                      {"case": "3d-f32-256-uniform-all", "impl": "cupy", "median_s": 0.001,
                       "gbps": 500.0, "copy_fraction": 0.2}]}
    monkeypatch.setattr(st, "gpu_benchmark", lambda: bench)
    status, detail, data = st._benchmark_section()
    assert status == "FAIL" and data is bench
    assert next(iter(row.values())) in capsys.readouterr().out
