"""Correctness tests of the benchmark harness (cugrad._bench), not timings.

Everything runs on tiny inputs (the hidden ``--size-override``), so the whole file takes seconds.
Expected values are numpy.gradient's or computed by hand, never the harness's own output.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cugrad import _bench

REPO = Path(__file__).resolve().parents[1]
TINY = ["--size-override", "8", "--repeat", "2"]


def _settings(impls, patterns=(), full=False, repeat=2):
    return _bench.Settings(
        full=full,
        patterns=list(patterns),
        impls=list(impls),
        repeat=repeat,
        out=None,
        size_override=8,
    )


def _rows(doc, impl=None, case=None):
    return [
        r
        for r in doc["cases"]
        if (impl is None or r["impl"] == impl) and (case is None or r["case"] == case)
    ]


def _gpu_present() -> bool:
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy

            if cupy.is_available():
                return True
        except Exception:
            pass
    if importlib.util.find_spec("torch") is not None:
        import torch

        return bool(torch.cuda.is_available())
    return False


def test_quick_run_writes_result_files_with_the_schema(tmp_path, capsys):
    rc = _bench.main(["--quick", "--impls", "numpy,cugrad-numpy", *TINY, "--out", str(tmp_path)])
    assert rc == 0
    jsons = list(tmp_path.glob("*.json"))
    assert len(jsons) == 1
    stem = jsons[0].stem
    assert re.fullmatch(r"cpu-[a-z0-9-]+-\d{4}-\d{2}-\d{2}", stem)
    assert stem.endswith(datetime.date.today().isoformat())
    doc = json.loads(jsons[0].read_text())
    assert {"device", "commit", "date", "copy_gbps", "cases"} <= doc.keys()
    assert isinstance(doc["device"], str) and doc["device"]
    assert doc["commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", doc["commit"])
    assert doc["date"] == datetime.date.today().isoformat()
    assert isinstance(doc["copy_gbps"], float) and doc["copy_gbps"] > 0
    assert doc["cases"]
    for row in doc["cases"]:
        assert {"case", "impl", "median_s", "bytes"} <= row.keys()
        assert row["impl"] in ("numpy", "cugrad-numpy")
        assert isinstance(row["median_s"], float) and row["median_s"] > 0, row
        assert isinstance(row["bytes"], int) and row["bytes"] > 0
        assert row["exact"] is True and row["max_abs_diff"] == 0.0
        if row["kind"] == "gradient":
            assert row["shape"] == [8] * len(row["shape"])
            assert row["gbps"] == pytest.approx(row["bytes"] / row["median_s"] / 1e9)
            assert row["copy_fraction"] == pytest.approx(row["gbps"] / doc["copy_gbps"])
    # ideal bytes by hand: input once, each output once (and the coordinates)
    by_case = {r["case"]: r for r in _rows(doc, impl="numpy")}
    assert by_case["2d-f32-1024-uniform-all"]["bytes"] == 8 * 8 * 4 + 2 * 8 * 8 * 4
    assert by_case["3d-f64-64-coords-all"]["bytes"] == 8**3 * 8 + 3 * 8 * 8 + 3 * 8**3 * 8
    # ratios are against cugrad-numpy on the same case
    for row in _rows(doc, impl="numpy"):
        ref = _rows(doc, impl="cugrad-numpy", case=row["case"])[0]
        assert row["time_vs_cugrad"] == pytest.approx(row["median_s"] / ref["median_s"])
    # the markdown beside it carries the same numbers
    md = jsons[0].with_suffix(".md").read_text()
    for row in doc["cases"]:
        line = next(
            ln for ln in md.splitlines() if ln.startswith(f"| {row['case']} | {row['impl']} |")
        )
        assert f"| {_bench._fmt_time(row['median_s'])} |" in line
    assert "median" in capsys.readouterr().out


def test_no_save_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = _bench.main(["--impls", "numpy", "--cases", "overhead-*", *TINY, "--no-save"])
    assert rc == 0
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    assert "overhead-f32-16x16" in out and "saved" not in out


def test_saving_never_overwrites(tmp_path):
    doc = _bench.run_benchmarks(_settings(["numpy"], ["overhead-*"]))
    first, second = _bench.save(doc, tmp_path), _bench.save(doc, tmp_path)
    assert first != second and first.exists() and second.exists()
    assert second.with_suffix(".md").exists()


def test_cugrad_bench_saves_nothing_without_out(tmp_path, monkeypatch, capsys):
    # Neither the working directory nor a checkout (run from inside one here) gets files.
    from cugrad import _cli

    results = REPO / "benchmarks" / "results"
    before = sorted(results.iterdir()) if results.is_dir() else []
    monkeypatch.chdir(tmp_path)
    rc = _cli.main(["bench", "--impls", "numpy", "--cases", "overhead-*", *TINY])
    assert rc == 0
    assert list(tmp_path.iterdir()) == []
    assert (sorted(results.iterdir()) if results.is_dir() else []) == before
    out = capsys.readouterr().out
    assert "not saved (add --out DIR or --out FILE.json" in out
    monkeypatch.chdir(REPO)
    assert _cli.main(["bench", "--impls", "numpy", "--cases", "overhead-*", *TINY]) == 0
    assert (sorted(results.iterdir()) if results.is_dir() else []) == before


def test_out_as_a_json_file_name(tmp_path, capsys):
    target = tmp_path / "run1.json"
    rc = _bench.main(["--impls", "numpy", "--cases", "overhead-*", *TINY, "--out", str(target)])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.json", "run1.md"]
    assert json.loads(target.read_text())["cases"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("existing.json", "exists"),
        ("existing.txt", "exists and is not a directory"),
        ("missing/run.json", "does not exist"),
        ("missing-dir", "no such directory"),
    ],
)
def test_bad_out_fails_at_once_and_creates_nothing(tmp_path, monkeypatch, capsys, where, message):
    (tmp_path / "existing.json").write_text("{}")
    (tmp_path / "existing.txt").write_text("keep me")
    monkeypatch.setattr(_bench, "run_benchmarks", None)  # measuring would fail differently
    rc = _bench.main(["--impls", "numpy", "--cases", "overhead-*", *TINY, "--out",
                      str(tmp_path / where)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("cugrad: error: --out ") and message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.json", "existing.txt"]
    assert (tmp_path / "existing.txt").read_text() == "keep me"


class _Perturbed(_bench.NumpyRunner):
    """A peer that adds ``delta`` to numpy's result and counts its calls."""

    delta = 0.0
    calls = 0

    def call(self, x, varargs, case):
        type(self).calls += 1
        result = np.gradient(x, *varargs, axis=case.axis, edge_order=case.edge_order)
        return [r + r.dtype.type(self.delta) for r in _bench._as_list(result)]


def test_wrong_peer_is_reported_and_not_timed(monkeypatch):
    wrong = type("Wrong", (_Perturbed,), {"name": "wrong", "delta": 0.5, "calls": 0})
    close = type("Close", (_Perturbed,), {"name": "close", "delta": 1e-6, "calls": 0})
    monkeypatch.setitem(_bench.IMPLS, "wrong", wrong)
    monkeypatch.setitem(_bench.IMPLS, "close", close)
    doc = _bench.run_benchmarks(
        _settings(["numpy", "wrong", "close"], ["2d-f32-1024-uniform-all"], repeat=3)
    )
    (bad,) = _rows(doc, impl="wrong")
    assert bad["median_s"] is None
    assert bad["exact"] is False
    assert bad["max_abs_diff"] == pytest.approx(0.5, abs=1e-5)
    assert "wrong result" in bad["error"] and "gbps" not in bad
    assert wrong.calls == 1  # the checking call only
    # a peer within tolerance is timed but marked inexact: check + 2 warm-ups + 3 timed calls
    (ok,) = _rows(doc, impl="close")
    assert ok["median_s"] > 0 and ok["exact"] is False and 0 < ok["max_abs_diff"] < 1e-5
    assert close.calls == 1 + 2 + 3
    assert _rows(doc, impl="numpy")[0]["median_s"] > 0


def test_inexact_cugrad_fails_the_run(monkeypatch, capsys):
    class OneUlpOff(_bench.NumpyRunner):
        name = "cugrad-numpy"
        exact_required = True

        def call(self, x, varargs, case):
            result = np.gradient(x, *varargs, axis=case.axis, edge_order=case.edge_order)
            return [np.nextafter(r, np.inf) for r in _bench._as_list(result)]

    monkeypatch.setitem(_bench.IMPLS, "cugrad-numpy", OneUlpOff)
    rc = _bench.main(
        ["--impls", "cugrad-numpy,numpy", "--cases", "3d-f32-64-uniform-all", *TINY, "--no-save"]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "cugrad: error: cugrad-numpy FAILED" in err and "not bit-identical" in err
    assert all(line.startswith("cugrad: error: ") for line in err.splitlines() if "FAILED" in line)


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present: GPU impls run instead of skipping")
def test_gpu_impls_are_skipped_with_a_reason_without_a_gpu():
    doc = _bench.run_benchmarks(
        _settings(
            ["cugrad", "cupy", "torch", "jax", "numpy"],
            ["3d-f32-64-uniform-all", "overhead-*"],
            repeat=1,
        )
    )
    for impl in ("cugrad", "cupy", "torch", "jax"):
        info = doc["impls"][impl]
        assert info["available"] is False and info["reason"]
        rows = _rows(doc, impl=impl)
        assert {r["case"] for r in rows} == {"3d-f32-64-uniform-all", "overhead-f32-16x16"}
        for row in rows:
            assert row["median_s"] is None and row["skipped_reason"] == info["reason"]
    assert all(r["median_s"] > 0 for r in _rows(doc, impl="numpy"))
    text = _bench.format_text(doc)
    # Which implementations were skipped and why, once per reason, naming what each measures.
    skipped = [line for line in text.splitlines() if line.startswith("skipped ")]
    reasons = {doc["impls"][n]["reason"] for n in ("cugrad", "cupy", "torch", "jax")}
    assert len(skipped) == len(reasons)
    assert any(line.startswith("skipped cugrad (cugrad on the GPU)") for line in skipped)
    assert sum(line.count("cupy (cupy.gradient)") for line in skipped) == 1


def test_case_lists_and_names():
    full = _bench._gpu_cases(True) + _bench._cpu_cases(True)
    names = {c.name for c in full}
    for wanted in (
        "3d-f32-512-uniform-all",
        "2d-f32-8192-coords-all",
        "3d-f64-256-uniform-ax0",
        "3d-f32-512-uniform-all-e2",
        "2d-f32-16384-uniform-all",
        "3d-f64-192-coords-all",
        "3d-f32-64-uniform-all",
    ):
        assert wanted in names
    for side_cases in (
        _bench._gpu_cases(True),
        _bench._cpu_cases(True),
        _bench._gpu_cases(False),
        _bench._cpu_cases(False),
    ):
        assert len({c.name for c in side_cases}) == len(side_cases)
    pattern = re.compile(r"(\d)d-(f32|f64)-(\d+)-(uniform|coords)-(all|ax\d)(-e2)?")
    for case in full:
        if case.kind != "gradient":
            continue
        nd, dt, n, spacing, axes, e2 = pattern.fullmatch(case.name).groups()
        assert case.shape == (int(n),) * int(nd)
        assert case.dtype == {"f32": "float32", "f64": "float64"}[dt]
        assert case.spacing == spacing
        assert case.axis == (None if axes == "all" else int(axes[2:]))
        assert case.edge_order == (2 if e2 else 1)


def test_case_patterns_select_from_the_full_list():
    doc = _bench.run_benchmarks(_settings(["numpy"], ["3d-f64-*"], full=True, repeat=1))
    assert {r["case"] for r in doc["cases"]} == {"3d-f64-192-coords-all", "3d-f64-192-uniform-all"}


def test_bad_options_are_usage_errors(capsys):
    assert _bench.main(["--impls", "numpy,nope", "--no-save"]) == 2
    assert _bench.main(["--cases", "no-such-case*", "--no-save"]) == 2
    assert _bench.main(["--repeat", "0", "--no-save"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("cugrad: error: ") for line in err)
    with pytest.raises(SystemExit) as exc:
        _bench.main(["--quick", "--full"])
    assert exc.value.code == 2


def test_configure_parser_works_as_a_subcommand():
    parser = argparse.ArgumentParser(prog="cugrad")
    sub = parser.add_subparsers(dest="command")
    _bench.configure_parser(sub.add_parser("bench"))
    args = parser.parse_args(["bench", "--quick", "--impls", "numpy", "--repeat", "3"])
    assert args.quick and not args.full and args.impls == "numpy" and args.repeat == 3
    assert args.out is None and not args.no_save and args.size_override is None


def test_compare_semantics():
    a = np.array([1.0, np.nan, -0.0], dtype=np.float32)
    assert _bench.compare([a], [a.copy()]) == (True, 0.0, None)
    assert _bench.compare([np.array([1.0, np.nan, 0.0], np.float32)], [a])[0] is True
    exact, diff, problem = _bench.compare([a.astype(np.float64)], [a])
    assert not exact and diff == 0.0 and problem is None  # dtype differs
    exact, diff, _ = _bench.compare([np.nextafter(a, np.float32(2))], [a])
    assert not exact and diff == pytest.approx(2.0**-23)
    exact, diff, _ = _bench.compare([np.array([1.0, 2.0, 0.0], np.float32)], [a])
    assert not exact and diff == np.inf  # a NaN against a number
    assert _bench._finite({"d": [diff, 1.0]}) == {"d": [None, 1.0]}  # strict JSON in files
    assert _bench.compare([a[:2]], [a])[2] is not None
    assert _bench.compare([a, a], [a])[2] is not None


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize(
    ("spacing", "axis", "edge_order"),
    [
        ("uniform", None, 1),
        ("coords", None, 1),
        ("uniform", 1, 2),
        ("coords", 0, 2),
        ("none", None, 1),
        ("coords", 2, 1),
    ],
)
def test_torch_argument_mapping_matches_numpy_on_cpu(spacing, axis, edge_order):
    runner = _bench.TorchRunner(device="cpu")
    case = _bench.Case("t", "gpu", "gradient", (5, 6, 7), "float64", spacing, axis, edge_order)
    bufs, varargs = _bench._host_inputs(case, 1, np.random.default_rng(3))
    got = runner.to_host(runner.call(runner.put(bufs[0]), runner.spacing(varargs), case))
    ref = _bench._as_list(np.gradient(bufs[0], *varargs, axis=axis, edge_order=edge_order))
    exact, diff, problem = _bench.compare(got, ref)
    assert problem is None and diff < 1e-12


def test_check_input_uses_a_corner_block_when_too_large():
    case = _bench._grad_case("cpu", 2, "float64", 300, "coords")
    bufs, varargs = _bench._host_inputs(case, 1, np.random.default_rng(0))
    f, v, label = _bench._check_input(case, bufs[0], varargs, limit_bytes=1024)
    assert f.shape == (160, 160) and label == "block 160x160"
    np.testing.assert_array_equal(f, bufs[0][:160, :160])
    assert [len(c) for c in v] == [160, 160]
    np.testing.assert_array_equal(v[0], varargs[0][:160])
    f, v, label = _bench._check_input(case, bufs[0], varargs, limit_bytes=bufs[0].nbytes)
    assert f is bufs[0] and label == "full"


def test_host_inputs_are_random_not_zeros():
    case = _bench._grad_case("cpu", 3, "float32", 8, "coords")
    bufs, varargs = _bench._host_inputs(case, 3, np.random.default_rng(0))
    assert len(bufs) == 3 and all(b.dtype == np.float32 and b.shape == (8, 8, 8) for b in bufs)
    assert all(np.count_nonzero(b) > 500 for b in bufs)
    assert not np.array_equal(bufs[0], bufs[1])
    assert all(np.all(np.diff(c) > 0) and c.dtype == np.float32 for c in varargs)


def test_run_py_wrapper_runs():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout and "--impls" in proc.stdout


def test_cpu_backend_memory_probe_sees_a_full_size_temporary(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "cpu_backend", REPO / "benchmarks" / "cpu_backend.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "cpu_backend", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    a = np.ones(100_000)

    def with_one_temporary():
        doubled = a * 2.0  # a named temporary: numpy cannot elide it into the sum
        return doubled + 1.0

    extra, out_bytes, one = module._peak_extra(with_one_temporary)
    assert out_bytes == one == a.nbytes
    assert a.nbytes <= extra < a.nbytes + 64 * 1024
    extra, _, _ = module._peak_extra(lambda: np.multiply(a, 2.0))  # none
    assert extra < 64 * 1024


# A NumPy-backed stand-in for the few CuPy calls the harness makes, so that the GPU code paths
# (events, device copy ceiling, device info, result file naming, the compile-time subprocesses)
# run on CPU-only machines. It checks the harness's plumbing, not CuPy and not any timing.
_FAKE_CUPY = """
import time
from types import SimpleNamespace

import numpy as np

ndarray = np.ndarray
float32 = np.float32
asarray = np.array
asnumpy = np.asarray
arange = np.arange
empty_like = np.empty_like
copyto = np.copyto
gradient = np.gradient
random = SimpleNamespace(
    random=lambda size, dtype: np.random.default_rng(0).random(size, dtype=dtype)
)


def is_available():
    return True


class _Pool:
    def free_all_blocks(self):
        pass


def get_default_memory_pool():
    return _Pool()


class _Stream:
    def synchronize(self):
        pass


class _Event:
    t = None

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


class _Device:
    id = 0

    def synchronize(self):
        pass


_props = {"name": b"Fake GPU 9000", "l2CacheSize": 1 << 20, "totalGlobalMem": 1 << 30,
          "major": 9, "minor": 0}
cuda = SimpleNamespace(
    Device=_Device, Event=_Event, get_current_stream=lambda: _Stream(),
    get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3,
    runtime=SimpleNamespace(getDeviceProperties=lambda i: dict(_props),
                            runtimeGetVersion=lambda: 12000, driverGetVersion=lambda: 12000),
)
"""


def test_gpu_code_paths_with_a_numpy_backed_fake_cupy(tmp_path, monkeypatch):
    (tmp_path / "fake").mkdir()
    fake_file = tmp_path / "fake" / "cupy.py"
    fake_file.write_text(_FAKE_CUPY)
    spec = importlib.util.spec_from_file_location("cupy", fake_file)
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "cupy", fake)  # restored (removed) after the test
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))  # for the compile-time subprocesses
    doc = _bench.run_benchmarks(
        _settings(
            ["cupy", "numpy"],
            ["3d-f32-64-uniform-all", "overhead-*", "compile-*"],
            full=True,
            repeat=1,
        )
    )
    assert doc["gpu"]["name"] == "Fake GPU 9000" and doc["gpu"]["l2_bytes"] == 1 << 20
    assert doc["device"] == "Fake GPU 9000"
    assert doc["copy_method"].startswith("cupy.copyto") and doc["copy_gbps"] > 0
    rows = {(r["case"], r["impl"]): r for r in doc["cases"]}
    grad = rows[("3d-f32-64-uniform-all", "cupy")]
    assert grad["median_s"] > 0 and grad["exact"] is True and grad["timer"].startswith("cupy")
    assert grad["copy_fraction"] == pytest.approx(grad["gbps"] / doc["copy_gbps"])
    assert rows[("overhead-f32-16x16", "cupy")]["median_s"] > 0
    for kind in ("cold", "cached"):
        row = rows[(f"compile-{kind}-3d-f32-64", "cupy")]
        assert row["median_s"] > 0 and row["reps"] == 1, row
    # the CPU side ran too, against the host copy
    assert rows[("3d-f32-64-uniform-all", "numpy")]["copy_fraction"] == pytest.approx(
        rows[("3d-f32-64-uniform-all", "numpy")]["gbps"] / doc["host_copy_gbps"]
    )
    (tmp_path / "out").mkdir()
    path = _bench.save(doc, tmp_path / "out")
    assert path.name.startswith("fake-gpu-9000-")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_argument_mapping_and_support_probe_on_cpu():
    runner = _bench.JaxRunner(platform="cpu")
    e2 = _bench.Case("t", "gpu", "gradient", (5, 6, 7), "float64", "uniform", None, 2)
    assert "edge_order" in runner.unsupported(e2)  # every JAX read so far rejects edge_order
    for spacing, axis in (("uniform", None), ("none", None), ("uniform", 1), ("coords", 2)):
        case = _bench.Case("t", "gpu", "gradient", (5, 6, 7), "float64", spacing, axis, 1)
        reason = runner.unsupported(case)
        if reason is not None:  # e.g. coordinate arrays in older JAX: a recorded skip
            assert spacing == "coords" and "jnp.gradient" in reason
            continue
        bufs, varargs = _bench._host_inputs(case, 1, np.random.default_rng(3))
        got = runner.to_host(runner.call(runner.put(bufs[0]), runner.spacing(varargs), case))
        ref = _bench._as_list(np.gradient(bufs[0], *varargs, axis=axis))
        exact, diff, problem = _bench.compare(got, ref)
        assert problem is None and diff < 1e-12, (spacing, axis, diff)
