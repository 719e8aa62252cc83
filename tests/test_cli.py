"""The ``cugrad`` command line: demo, compute, info, and the lazily loaded subcommands.

Commands run in-process through ``cugrad._cli.main(argv)`` (it returns the exit status), except
where the point is the process itself (``python -m cugrad``, which modules get imported).
Every compute result is compared with numpy.gradient run here on the same data.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import time
import types
import zipfile
from importlib.machinery import ModuleSpec
from pathlib import Path

import numpy as np
import pytest

import cugrad
from cugrad import _backend, _cli, _compute, _demo

# --- helpers ----------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = _cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_bits_equal(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    # strict=True checks shape and dtype too; the bytes catch -0.0 vs 0.0 and NaN payloads.
    np.testing.assert_array_equal(actual, expected, strict=True, err_msg=what)
    assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes(), what


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("cugrad: error: "), lines[0]
    assert "Traceback" not in err


def gpu_usable() -> bool:
    return _backend.gpu_status()[0]


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of inputs (and the working directory): a field, coordinates, broken files."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(20240611)
    shape = (5, 6, 7)
    np.save(tmp_path / "f.npy", rng.standard_normal(shape))
    np.save(tmp_path / "f32.npy", rng.standard_normal(shape).astype(np.float32))
    np.save(tmp_path / "i16.npy", rng.integers(-30000, 30000, size=(6, 4), dtype=np.int16))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(rng.standard_normal((4, 9))))
    np.save(tmp_path / "x.npy", np.cumsum(rng.uniform(0.1, 1.0, shape[0])))
    np.save(tmp_path / "y.npy", np.sort(rng.uniform(-3.0, 3.0, shape[1])))
    np.save(tmp_path / "z.npy", np.linspace(0.0, 1.0, shape[2]).astype(np.float32))
    np.save(tmp_path / "y_repeated.npy", np.array([0.0, 1.0, 1.0, 2.0, 3.0, 4.0]))
    np.save(tmp_path / "coords2d.npy", np.ones((2, 3)))
    np.save(tmp_path / "short.npy", rng.standard_normal((1, 5)))
    np.save(tmp_path / "flags.npy", np.array([True, False, True]))
    np.save(tmp_path / "objects.npy", np.array([1, None], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "one.npz", rng.standard_normal((4, 3)))
    np.savez(tmp_path / "multi.npz", temp=rng.standard_normal((3, 8)), mask=np.ones(4))
    np.savez(tmp_path / "empty.npz")
    (tmp_path / "junk.npy").write_text("not an array")
    (tmp_path / "nothing.npy").write_bytes(b"")
    whole = (tmp_path / "f.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(whole[: len(whole) // 2])
    whole = (tmp_path / "multi.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "2.5").mkdir()  # a directory named like a number
    return tmp_path


# --- the program ------------------------------------------------------------------------------


def test_python_dash_m_help_runs_in_a_fresh_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cugrad", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("demo", "compute", "info", "bench", "compile", "examples:"):
        assert word in proc.stdout
    assert proc.stderr == ""


OTHER_MODULES = ("cugrad._bench", "cugrad._compile", "cugrad._demo", "cugrad._compute", "cupy",
                 "matplotlib", "tqdm", "torch")  # fmt: skip


def _modules_imported_by(argv: list[str], cwd: Path) -> list[str]:
    code = (
        "import sys\n"
        "from cugrad._cli import main\n"
        f"assert main({argv!r}) == 0\n"
        f"print(sorted(m for m in {OTHER_MODULES!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_running_one_command_imports_no_other_command_and_not_cupy(tmp_path) -> None:
    # info reports CuPy (when installed) and finds NVRTC with cugrad._compile's loader.
    allowed = {"cugrad._compile"} | (
        {"cupy"} if importlib.util.find_spec("cupy") is not None else set()
    )
    assert set(_modules_imported_by(["info"], tmp_path)) <= allowed
    np.save(tmp_path / "f.npy", np.ones((4, 5)))
    argv = ["compute", str(tmp_path / "f.npy"), "-o", str(tmp_path / "g.npz")]
    assert _modules_imported_by(argv, tmp_path) == ["cugrad._compute"]


@pytest.mark.parametrize("command", ["demo", "compute", "info", "bench"])
def test_every_command_has_help_with_examples(capsys, command) -> None:
    if command == "bench" and importlib.util.find_spec("cugrad._bench") is None:
        pytest.skip("cugrad._bench is not part of this checkout yet")
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: cugrad {command}")
    if command != "bench":  # bench's help is its own module's
        assert "examples:" in out


def test_version(capsys) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"cugrad {cugrad.__version__}"


def test_no_command_is_a_usage_error(capsys) -> None:
    code, out, err = run_cli(capsys)
    assert code == 2
    assert out == ""
    assert_one_error_line(err)
    assert "command is required" in err


def test_unknown_command_is_a_usage_error(capsys) -> None:
    code, _, err = run_cli(capsys, "frobnicate")
    assert code == 2
    assert_one_error_line(err)


@pytest.mark.parametrize("argv", [["bench"], ["bench", "--quick", "--impls", "numpy"]])
def test_a_missing_command_module_is_one_line_not_a_crash(capsys, monkeypatch, argv) -> None:
    commands = tuple(
        dataclasses.replace(c, module="cugrad._not_installed_here") if c.name == "bench" else c
        for c in _cli.COMMANDS
    )
    monkeypatch.setattr(_cli, "COMMANDS", commands)
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    assert out == ""
    assert_one_error_line(err)
    assert "'cugrad bench' is not available" in err


def test_a_command_module_without_the_protocol_is_reported(capsys, monkeypatch) -> None:
    commands = tuple(
        dataclasses.replace(c, module="cugrad._backend") if c.name == "bench" else c
        for c in _cli.COMMANDS
    )
    monkeypatch.setattr(_cli, "COMMANDS", commands)
    code, _, err = run_cli(capsys, "bench")
    assert code == 1
    assert_one_error_line(err)
    assert "configure_parser" in err


def test_an_unexpected_exception_is_one_line(capsys, monkeypatch) -> None:
    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(_demo, "run", broken)
    code, _, err = run_cli(capsys, "demo")
    assert code == 1
    assert_one_error_line(err)
    assert "KeyError" in err


# --- demo -------------------------------------------------------------------------------------


def _orders(out: str) -> dict[tuple[int, str], float]:
    rows = re.findall(r"^\s+([12])\s+([xyz])\s+\S+\s+\S+\s+(-?[0-9.]+)$", out, re.MULTILINE)
    return {(int(e), axis): float(order) for e, axis, order in rows}


def test_demo_reports_backend_timings_exactness_and_convergence(capsys) -> None:
    code, out, err = run_cli(capsys, "demo", "--size", "12", "--repeat", "2")
    assert code == 0, err
    assert re.search(r"backend: (numpy \(CPU, \d+ threads?\)|cupy on .+)", out)
    assert re.search(r"^\s+min\s+median$", out, re.MULTILINE)
    assert re.search(r"^\s+cugrad\s+[0-9.]+ ms\s+[0-9.]+ ms$", out, re.MULTILINE)
    assert re.search(r"^\s+numpy\.gradient\s+[0-9.]+ ms\s+[0-9.]+ ms$", out, re.MULTILINE)
    assert re.search(
        r"cugrad is [0-9.]+x to [0-9.]+x (faster|slower) than numpy.gradient|about the same", out
    )
    # What was called, and which array axis is which coordinate.
    assert "cugrad.gradient(f, x, y, z, edge_order=e)" in out
    assert "array axis 0 is x, axis 1 is y, axis 2 is z" in out
    assert "same bits as numpy.gradient: yes" in out
    orders = _orders(out)
    assert len(orders) == 6, out
    # Measured on 12^3 and 24^3: the first-order edges dominate edge_order=1's maximum error,
    # edge_order=2 converges at second order.
    for axis in "xyz":
        assert 0.8 < orders[1, axis] < 1.25, out
        assert 1.7 < orders[2, axis] < 2.35, out


def test_demo_on_the_numpy_backend_says_so(capsys) -> None:
    code, out, _ = run_cli(capsys, "demo", "--size", "6", "--repeat", "1", "--backend", "numpy")
    assert code == 0
    assert re.search(r"backend: numpy \(CPU, \d+ threads?\)", out)


def test_demo_exits_1_when_cugrad_and_numpy_differ(capsys, monkeypatch) -> None:
    real = cugrad.gradient

    def off_by_one_ulp(*args, **kwargs):
        return tuple(np.nextafter(g, np.inf) for g in real(*args, **kwargs))

    monkeypatch.setattr(cugrad, "gradient", off_by_one_ulp)
    code, out, _ = run_cli(capsys, "demo", "--size", "6", "--repeat", "1", "--backend", "numpy")
    assert code == 1
    assert "same bits as numpy.gradient: NO" in out


def test_demo_plot_writes_a_png(capsys, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "demo.png"
    code, out, err = run_cli(capsys, "demo", "--size", "8", "--repeat", "1", "--plot", target)
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.png"]  # no temporary left
    assert str(target) in out


def test_demo_plot_without_matplotlib_is_one_clear_line(capsys, monkeypatch, tmp_path) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "matplotlib" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(_demo.importlib.util, "find_spec", find_spec)
    code, out, err = run_cli(capsys, "demo", "--size", "6", "--plot", tmp_path / "x.png")
    assert code == 1
    assert out == ""  # it fails before doing the work
    assert_one_error_line(err)
    assert 'pip install ".[plot]"' in err  # cugrad is installed from a checkout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], "about the same"),
        ([1.0, 1.0, 1.0], [1.08, 1.05, 1.09], "about the same"),  # the first demo's "1.1x"
        ([1.0, 1.0, 1.0], [2.0, 2.5, 3.0], "2.0x to 2.5x faster"),
        ([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], "2.0x to 2.0x slower"),
        # The fastest runs say faster, the typical ones slower: that is noise, not a result.
        ([1.0, 3.0, 3.0], [1.5, 2.0, 2.0], "about the same"),
    ],
)
def test_demo_timing_verdict_is_honest_about_noise(ours, theirs, expected) -> None:
    assert expected in _demo.verdict(ours, theirs)


def test_demo_interleaves_the_timed_calls() -> None:
    order: list[str] = []
    ours, theirs = _demo._interleaved_seconds(
        lambda: order.append("cugrad"), lambda: order.append("numpy"), 3
    )
    assert order == ["cugrad", "numpy"] * 4  # one warm-up each, then alternating
    assert len(ours) == len(theirs) == 3


@pytest.mark.parametrize(
    ("name", "message"),
    [("demo.xyz", "unknown image format 'xyz'"), ("missing/demo.png", "does not exist"),
     (".", "is a directory")],
)  # fmt: skip
def test_demo_plot_path_is_checked_before_any_work(capsys, monkeypatch, tmp_path, name, message):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(_demo, "_Grid", None)  # any work would fail differently
    code, out, err = run_cli(capsys, "demo", "--size", "6", "--plot", tmp_path / name)
    assert code == 1
    assert out == ""
    assert_one_error_line(err)
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_demo_plot_has_equal_aspect_labelled_colour_bars_and_a_log_error_scale(
    monkeypatch, tmp_path
) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    figures = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: figures.append(fig) or real_savefig(fig, *a, **k)
    )
    grid = _demo._Grid.build(8)
    gradient = np.gradient(grid.field, *grid.coords, edge_order=2)
    _demo._plot(grid, tuple(gradient), str(tmp_path / "demo.svg"))
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.get_title()]
    colorbars = [ax for ax in fig.axes if not ax.get_title()]
    assert len(panels) == 3 and len(colorbars) == 3
    assert all(ax.get_aspect() == 1.0 for ax in panels)
    assert all(cb.get_ylabel() for cb in colorbars)
    assert isinstance(panels[2].collections[0].norm, LogNorm)
    assert "axis 0" in panels[0].get_xlabel() and "axis 1" in panels[0].get_ylabel()
    assert (tmp_path / "demo.svg").read_bytes().lstrip().startswith(b"<?xml")


@pytest.mark.parametrize("argv", [["--size", "3"], ["--repeat", "0"], ["--backend", "gpu"]])
def test_demo_rejects_bad_arguments(capsys, argv) -> None:
    code, _, err = run_cli(capsys, "demo", *argv)
    assert code in (1, 2)
    assert_one_error_line(err)


def test_demo_backend_cupy_without_a_gpu_is_one_line(capsys) -> None:
    if gpu_usable():
        pytest.skip("a GPU is usable here")
    code, _, err = run_cli(capsys, "demo", "--size", "6", "--backend", "cupy")
    assert code == 1
    assert_one_error_line(err)
    assert _backend.gpu_status()[1] in err  # what is missing: CuPy, or a usable device


# --- compute: results -------------------------------------------------------------------------

# (case id, input, cugrad compute arguments, what numpy.gradient gets, expected npz names).
# Spacing values for numpy are the Python objects the command line must produce: "2" is the int 2
# and "0.5" the float 0.5, as a Python caller would write them.
COORDS = object()  # placeholder: replaced by the loaded coordinates file of that name


def _coords(name: str) -> tuple[object, str]:
    return (COORDS, name)


COMPUTE_CASES = [
    ("no-spacing", "f.npy", [], dict(), ["axis0", "axis1", "axis2"]),
    ("float-scalar", "f.npy", ["0.5"], dict(varargs=[0.5]), ["axis0", "axis1", "axis2"]),
    ("int-scalar", "f.npy", ["2"], dict(varargs=[2]), ["axis0", "axis1", "axis2"]),
    ("negative-scalar", "f.npy", ["-0.25"], dict(varargs=[-0.25]), ["axis0", "axis1", "axis2"]),
    ("exponent-scalar", "f32.npy", ["1e-3"], dict(varargs=[1e-3]), ["axis0", "axis1", "axis2"]),
    (
        "mixed-per-axis-edge2",
        "f.npy",
        ["0.5", "y.npy", "2", "--edge-order", "2"],
        dict(varargs=[0.5, _coords("y.npy"), 2], edge_order=2),
        ["axis0", "axis1", "axis2"],
    ),
    (
        "coords-option",
        "f.npy",
        ["--coords", "x.npy,y.npy,z.npy"],
        dict(varargs=[_coords("x.npy"), _coords("y.npy"), _coords("z.npy")]),
        ["axis0", "axis1", "axis2"],
    ),
    (
        "coords-option-repeated",
        "f.npy",
        ["--coords", "x.npy", "--coords", "y.npy", "--coords", "z.npy"],
        dict(varargs=[_coords("x.npy"), _coords("y.npy"), _coords("z.npy")]),
        ["axis0", "axis1", "axis2"],
    ),
    (
        "float32-coords-edge2",
        "f32.npy",
        ["x.npy", "y.npy", "z.npy", "--edge-order", "2"],
        dict(varargs=[_coords("x.npy"), _coords("y.npy"), _coords("z.npy")], edge_order=2),
        ["axis0", "axis1", "axis2"],
    ),
    (
        "axes-reordered-negative",
        "f.npy",
        ["z.npy", "1.5", "--axis", "-1", "--axis", "0"],
        dict(varargs=[_coords("z.npy"), 1.5], axis=(-1, 0)),
        ["axis2", "axis0"],
    ),
    (
        "axes-comma-list",
        "f.npy",
        ["z.npy", "1.5", "--axis=-1,0"],
        dict(varargs=[_coords("z.npy"), 1.5], axis=(-1, 0)),
        ["axis2", "axis0"],
    ),
    (
        "spacing-after-axis",
        "f.npy",
        ["--axis", "1", "y.npy"],
        dict(varargs=[_coords("y.npy")], axis=1),
        ["axis1"],
    ),
    ("single-axis", "f.npy", ["--axis", "1"], dict(axis=1), ["axis1"]),
    (
        "single-axis-coords",
        "f.npy",
        ["--coords", "y.npy", "--axis", "-2"],
        dict(varargs=[_coords("y.npy")], axis=-2),
        ["axis1"],
    ),
    ("stack", "f.npy", ["0.5", "--stack"], dict(varargs=[0.5], stack=True), ["gradient"]),
    (
        "stack-some-axes",
        "f.npy",
        ["--stack", "--axis", "2,0", "--edge-order", "2"],
        dict(axis=(2, 0), edge_order=2, stack=True),
        ["gradient"],
    ),
    ("npz-single-array", "one.npz", [], dict(), ["axis0", "axis1"]),
    ("npz-key", "multi.npz", ["--key", "temp", "3"], dict(varargs=[3]), ["axis0", "axis1"]),
    ("int16-input", "i16.npy", ["0.1"], dict(varargs=[0.1]), ["axis0", "axis1"]),
    ("fortran-order", "fortran.npy", ["--edge-order", "2"], dict(edge_order=2), ["axis0", "axis1"]),
    (
        "repeated-coordinates",
        "f.npy",
        ["1", "y_repeated.npy", "1"],
        dict(varargs=[1, _coords("y_repeated.npy"), 1]),
        ["axis0", "axis1", "axis2"],
    ),
]


def _expected(data: Path, source: str, numpy_args: dict) -> dict[str, np.ndarray] | np.ndarray:
    if source.endswith(".npz"):
        with np.load(data / source) as archive:
            key = "temp" if source == "multi.npz" else archive.files[0]
            f = archive[key]
    else:
        f = np.load(data / source)
    varargs = [
        np.load(data / v[1]) if isinstance(v, tuple) and v[0] is COORDS else v
        for v in numpy_args.get("varargs", [])
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.gradient(
            f, *varargs, axis=numpy_args.get("axis"), edge_order=numpy_args.get("edge_order", 1)
        )
    parts = list(result) if isinstance(result, tuple) else [result]
    if numpy_args.get("stack"):
        return np.stack(parts)
    return parts


@pytest.mark.parametrize(
    ("source", "argv", "numpy_args", "names"),
    [case[1:] for case in COMPUTE_CASES],
    ids=[case[0] for case in COMPUTE_CASES],
)
def test_compute_equals_numpy_gradient(capsys, data, source, argv, numpy_args, names) -> None:
    out_path = data / "result.npz"
    code, out, err = run_cli(capsys, "compute", source, *argv, "-o", out_path)
    assert code == 0, err
    assert f"wrote {out_path}" in out
    got = load_npz(out_path)
    assert list(got) == names
    expected = _expected(data, source, numpy_args)
    if numpy_args.get("stack"):
        assert_bits_equal(got["gradient"], expected, "gradient")
    else:
        for name, want in zip(names, expected, strict=True):
            assert_bits_equal(got[name], want, name)
    assert not list(data.glob(".result.npz.*")), "temporary file left behind"


def test_compute_appends_npz_like_numpy_savez(capsys, data) -> None:
    code, out, _ = run_cli(capsys, "compute", data / "f.npy", "-o", data / "grad")
    assert code == 0
    assert (data / "grad.npz").is_file() and not (data / "grad").exists()
    assert f"wrote {data / 'grad.npz'}" in out


def test_compute_replaces_an_existing_output_with_force(capsys, data) -> None:
    target = data / "result.npz"
    target.write_bytes(b"old")
    code, _, _ = run_cli(capsys, "compute", data / "f.npy", "-o", target, "--force")
    assert code == 0
    assert list(load_npz(target)) == ["axis0", "axis1", "axis2"]


def test_compute_output_has_ordinary_file_permissions(capsys, data) -> None:
    # The temporary file is private (0600); the result must not be.
    import os

    mask = os.umask(0o022)
    try:
        code, _, _ = run_cli(capsys, "compute", data / "f.npy", "-o", data / "perm.npz")
    finally:
        os.umask(mask)
    assert code == 0
    assert (data / "perm.npz").stat().st_mode & 0o777 == 0o644


def test_compute_reads_a_memory_mapped_input_without_copying(capsys, data, monkeypatch) -> None:
    seen = []
    real = cugrad.gradient

    def spy(f, *args, **kwargs):
        seen.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(cugrad, "gradient", spy)
    code, _, _ = run_cli(capsys, "compute", data / "f.npy", "-o", data / "r.npz")
    assert code == 0
    (f,) = seen
    # A plain ndarray (not np.memmap, which cugrad would hand to numpy.gradient) over the map.
    assert type(f) is np.ndarray
    assert isinstance(f.base, np.memmap) or isinstance(getattr(f.base, "base", None), np.memmap)


def test_compute_in_a_pipe_shows_no_progress_bar(capsys, data) -> None:
    code, _, err = run_cli(capsys, "compute", data / "f.npy", "-o", data / "r.npz")
    assert code == 0
    assert err == ""


def test_compute_on_a_terminal_shows_a_progress_bar(capsys, data, monkeypatch) -> None:
    pytest.importorskip("tqdm")
    monkeypatch.setattr(_compute, "_stderr_is_terminal", lambda: True)
    code, _, err = run_cli(capsys, "compute", data / "f.npy", "-o", data / "r.npz")
    assert code == 0
    assert "writing axis2" in err or "computing the gradient" in err


def test_compute_warnings_are_one_line_each(capsys, data) -> None:
    # Repeated coordinates divide by zero; numpy warns, the command says so briefly.
    code, _, err = run_cli(
        capsys, "compute", data / "f.npy", "1", data / "y_repeated.npy", "1", "-o", data / "r.npz"
    )
    assert code == 0
    assert err.splitlines()
    assert all(line.startswith("cugrad: warning: ") for line in err.splitlines())


def test_compute_options_before_the_input_take_one_value_each(capsys, data) -> None:
    # The trap, spelled the unambiguous way: every word after the options is positional.
    code, _, err = run_cli(
        capsys, "compute", "--coords", "x.npy", "--coords", "y.npy,z.npy", "--axis", "0,1,2",
        "f.npy", "-o", "g.npz",
    )  # fmt: skip
    assert code == 0, err
    coords = [np.load(data / n) for n in ("x.npy", "y.npy", "z.npy")]
    expected = np.gradient(np.load(data / "f.npy"), *coords)
    got = load_npz(data / "g.npz")
    for i, want in enumerate(expected):
        assert_bits_equal(got[f"axis{i}"], want, f"axis{i}")


def test_compute_help_says_which_coordinates_go_with_which_axis(capsys) -> None:
    code, out, _ = run_cli(capsys, "compute", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "numpy's axis order" in text
    assert "shape (nz, ny, nx)" in text and "--coords z.npy,y.npy,x.npy" in text
    assert "axis0 (d/dz), axis1 (d/dy) and axis2 (d/dx)" in text
    assert "--force" in text


# --- compute: never destroy a file ------------------------------------------------------------


def _fail_if_called(*args, **kwargs):
    raise AssertionError("cugrad.gradient was called: the refusal must come before any work")


@pytest.mark.parametrize(
    "output",
    ["multi.npz", "./multi.npz", "multi", "sub/../multi.npz", "{tmp}/multi.npz", "hard.npz",
     "link.npz"],
    ids=["same-name", "dot-slash", "suffix-added", "dot-dot", "absolute", "hard-link", "symlink"],
)  # fmt: skip
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_compute_never_writes_over_its_input(capsys, data, monkeypatch, output, force) -> None:
    (data / "sub").mkdir()
    (data / "hard.npz").hardlink_to(data / "multi.npz")
    (data / "link.npz").symlink_to(data / "multi.npz")
    original = (data / "multi.npz").read_bytes()
    before = sorted(p.name for p in data.iterdir())
    monkeypatch.setattr(cugrad, "gradient", _fail_if_called)
    argv = ["compute", "multi.npz", "--key", "temp", "-o", output.format(tmp=data)]
    code, out, err = run_cli(capsys, *argv, *(["--force"] if force else []))
    assert code == 1
    assert out == ""
    assert_one_error_line(err)
    assert "never writes over its input" in err and "choose another -o" in err
    assert (data / "multi.npz").read_bytes() == original
    assert sorted(p.name for p in data.iterdir()) == before


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_compute_never_writes_over_a_coordinates_file(capsys, data, monkeypatch, force) -> None:
    np.savez(data / "coords.npz", np.zeros(3))  # a .npz name: the output gets no suffix added
    (data / "ycoords.npz").hardlink_to(data / "y.npy")
    original = (data / "y.npy").read_bytes()
    monkeypatch.setattr(cugrad, "gradient", _fail_if_called)
    argv = ["compute", "f.npy", "1", "y.npy", "1", "-o", "ycoords.npz"]
    code, _, err = run_cli(capsys, *argv, *(["--force"] if force else []))
    assert code == 1
    assert_one_error_line(err)
    assert "never writes over its input" in err
    assert (data / "y.npy").read_bytes() == original


def test_compute_refuses_an_existing_output_without_force(capsys, data, monkeypatch) -> None:
    target = data / "result.npz"
    target.write_bytes(b"someone's results")
    monkeypatch.setattr(cugrad, "gradient", _fail_if_called)
    before = sorted(p.name for p in data.iterdir())
    code, out, err = run_cli(capsys, "compute", "f.npy", "-o", "result")
    assert code == 1
    assert out == ""
    assert_one_error_line(err)
    assert "exists: add --force to replace it" in err
    assert target.read_bytes() == b"someone's results"
    assert sorted(p.name for p in data.iterdir()) == before


def test_compute_keeps_an_output_that_appears_while_it_runs(capsys, data, monkeypatch) -> None:
    target = data / "result.npz"
    real = cugrad.gradient

    def racing(*args, **kwargs):
        target.write_bytes(b"written meanwhile")
        return real(*args, **kwargs)

    monkeypatch.setattr(cugrad, "gradient", racing)
    code, _, err = run_cli(capsys, "compute", "f.npy", "-o", target)
    assert code == 1
    assert_one_error_line(err)
    assert "appeared while this command ran" in err
    assert target.read_bytes() == b"written meanwhile"
    assert not list(data.glob(".result.npz.*"))


# --- compute: progress ------------------------------------------------------------------------


class _FakeBar:
    """Records what the command tells tqdm: phases (description, total) and the bytes counted."""

    bars: list[_FakeBar] = []

    def __init__(self, total=None, **kwargs) -> None:
        self.total, self.n, self.desc = total, 0, kwargs.get("desc")
        self.phases: list[list] = []
        self.descriptions: list[str] = []
        self.closed = False
        _FakeBar.bars.append(self)

    def reset(self, total=None) -> None:
        self.total, self.n = total, 0
        self.phases.append([self.descriptions[-1] if self.descriptions else None, total, 0])

    def set_description_str(self, text, refresh=True) -> None:
        self.descriptions.append(text)

    def update(self, n) -> None:
        self.n += n
        if self.phases:
            self.phases[-1][2] = self.n

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch):
    _FakeBar.bars = []
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeBar))
    monkeypatch.setattr(_compute, "_stderr_is_terminal", lambda: True)
    return _FakeBar


@pytest.mark.parametrize(
    ("source", "argv", "numpy_args", "names"),
    [case[1:] for case in COMPUTE_CASES],
    ids=[case[0] for case in COMPUTE_CASES],
)
def test_compute_in_slabs_under_a_progress_bar_equals_numpy_gradient(
    capsys, data, monkeypatch, fake_tqdm, source, argv, numpy_args, names
) -> None:
    # With a bar, the gradient is computed one axis at a time in slabs so that the bar moves;
    # the slabs are tiny here so that every case really is split.
    monkeypatch.setattr(_compute, "CHUNK_BYTES", 64)
    out_path = data / "result.npz"
    code, _, err = run_cli(capsys, "compute", source, *argv, "-o", out_path)
    assert code == 0, err
    got = load_npz(out_path)
    assert list(got) == names
    expected = _expected(data, source, numpy_args)
    if numpy_args.get("stack"):
        assert_bits_equal(got["gradient"], expected, "gradient")
    else:
        for name, want in zip(names, expected, strict=True):
            assert_bits_equal(got[name], want, name)


def test_compute_progress_moves_while_computing_and_counts_the_bytes_written(
    capsys, data, monkeypatch, fake_tqdm
) -> None:
    monkeypatch.setattr(_compute, "CHUNK_BYTES", 256)
    f = np.load(data / "f.npy")
    seen_during_compute = []
    real = cugrad.gradient

    def spy(*args, **kwargs):
        seen_during_compute.append(fake_tqdm.bars[0].n)
        return real(*args, **kwargs)

    monkeypatch.setattr(cugrad, "gradient", spy)
    code, _, err = run_cli(capsys, "compute", "f.npy", "-o", "r.npz")
    assert code == 0, err
    (bar,) = fake_tqdm.bars
    assert bar.closed
    (compute_phase, write_phase) = bar.phases
    assert compute_phase[0] == "computing the gradient" and write_phase[0] == "writing"
    # Computing: the bar moved between the calls, and ends at its total.
    assert len(set(seen_during_compute)) > 3
    assert compute_phase[1] == compute_phase[2] == 3 * f.nbytes
    # Writing: the total is the bytes of the .npy members written, not twice the file.
    with zipfile.ZipFile(data / "r.npz") as archive:
        member_bytes = sum(info.file_size for info in archive.infolist())
    assert write_phase[1] == write_phase[2] == member_bytes
    assert {"computing axis0", "computing axis2", "writing axis2"} <= set(bar.descriptions)


def test_compute_without_a_bar_makes_one_call(capsys, data, monkeypatch) -> None:
    calls = []
    real = cugrad.gradient

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(cugrad, "gradient", spy)
    monkeypatch.setattr(_compute, "CHUNK_BYTES", 64)
    code, _, _ = run_cli(capsys, "compute", "f.npy", "-o", "r.npz")
    assert code == 0
    assert len(calls) == 1


def test_a_long_run_without_tqdm_hints_at_the_progress_extra(capsys, data, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    monkeypatch.setattr(_compute, "_stderr_is_terminal", lambda: True)
    monkeypatch.setattr(_compute, "PROGRESS_HINT_AFTER_S", 0.01)
    real = cugrad.gradient

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(cugrad, "gradient", slow)
    code, _, err = run_cli(capsys, "compute", "f.npy", "-o", "r.npz")
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cugrad: hint: a progress bar needs tqdm")
    assert '".[progress]"' in lines[0]


def test_a_quick_run_without_tqdm_gives_no_hint(capsys, data, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(_compute, "_stderr_is_terminal", lambda: True)
    code, _, err = run_cli(capsys, "compute", "f.npy", "-o", "r.npz")
    assert code == 0
    assert err == ""


# --- compute: errors --------------------------------------------------------------------------

ERROR_CASES = [
    ("missing-input", ["nope.npy"], "not found"),
    ("input-is-directory", ["2.5"], "directory"),
    ("not-numpy-file", ["junk.npy"], "not a .npy or .npz file"),
    ("empty-file", ["nothing.npy"], "empty"),
    ("truncated-npy", ["truncated.npy"], "cannot read"),
    ("truncated-npz", ["truncated.npz"], "cannot read"),
    ("object-array", ["objects.npy"], "Python objects"),
    ("npz-needs-key", ["multi.npz"], "--key"),
    ("npz-bad-key", ["multi.npz", "--key", "pressure"], "no array named 'pressure'"),
    ("npz-empty", ["empty.npz"], "no arrays"),
    ("key-on-npy", ["f.npy", "--key", "temp"], "--key"),
    ("spacing-count", ["f.npy", "1", "2"], "2 spacings"),
    ("spacing-count-axis", ["f.npy", "1", "2", "--axis", "0"], "2 spacings"),
    ("one-coords-many-axes", ["f.npy", "y.npy"], "one coordinates file"),
    ("bad-spacing", ["f.npy", "fast", "1", "1"], "'fast' is neither a number"),
    ("coords-not-1d", ["f.npy", "1", "coords2d.npy", "1"], "1-D"),
    ("coords-wrong-length", ["f.npy", "y.npy", "1", "1"], "axis 0 has 5 points"),
    ("coords-npz", ["f.npy", "1", "one.npz", "1"], "must be a .npy file"),
    ("coords-missing", ["f.npy", "--coords", "x.npy,nope.npy,z.npy"], "not found"),
    ("coords-is-directory", ["f.npy", "--coords", "x.npy,2.5,z.npy"], "directory"),
    # The old trap: --coords took every following word, the input file included.
    ("coords-then-input", ["--coords", "z.npy", "y.npy", "x.npy", "f.npy"], "comma list"),
    ("spacing-and-coords", ["f.npy", "1", "--coords", "x.npy"], "not both"),
    ("axis-out-of-range", ["f.npy", "--axis", "3"], "out of bounds"),
    ("axis-negative-out-of-range", ["f.npy", "--axis", "-4"], "out of bounds"),
    ("axis-repeated", ["f.npy", "--axis", "0", "--axis", "-3"], "repeated"),
    ("axis-too-short", ["short.npy"], "too small"),
    ("bool-input", ["flags.npy"], "boolean"),
    ("zero-spacing-edge2", ["f.npy", "0", "--edge-order", "2"], "division by zero"),
]


@pytest.mark.parametrize(
    ("argv", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_compute_errors_are_one_line_and_leave_no_file(capsys, data, argv, message) -> None:
    before = sorted(p.name for p in data.iterdir())
    code, out, err = run_cli(capsys, "compute", *argv, "-o", "result.npz")
    assert code == 1
    assert out == ""
    assert_one_error_line(err)
    assert message in err
    assert sorted(p.name for p in data.iterdir()) == before, "a file was left behind"


@pytest.mark.parametrize(
    "argv",
    [
        ["f.npy"],  # no -o
        ["f.npy", "--edge-order", "3", "-o", "r.npz"],
        ["f.npy", "--backend", "gpu", "-o", "r.npz"],
        ["f.npy", "--axis", "x", "-o", "r.npz"],
        ["f.npy", "--axis", "1,y.npy", "-o", "r.npz"],
        ["f.npy", "--coords", ",", "-o", "r.npz"],
    ],
    ids=[
        "missing-output",
        "edge-order-3",
        "bad-backend",
        "axis-not-int",
        "axis-list-not-int",
        "coords-empty",
    ],
)
def test_compute_usage_errors_exit_2_with_one_line(capsys, data, argv) -> None:
    before = sorted(p.name for p in data.iterdir())
    code, out, err = run_cli(capsys, "compute", *argv)
    assert code == 2
    assert_one_error_line(err)
    assert "cugrad compute --help" in err
    assert sorted(p.name for p in data.iterdir()) == before


@pytest.mark.parametrize(
    ("output", "message"),
    [("missing-dir/r.npz", "does not exist"), (".", "is a directory"), ("2.5", "is a directory")],
)
def test_compute_bad_output_paths(capsys, data, output, message) -> None:
    before = sorted(p.name for p in data.iterdir())
    code, _, err = run_cli(capsys, "compute", data / "f.npy", "-o", data / output)
    assert code == 1
    assert_one_error_line(err)
    assert message in err
    assert sorted(p.name for p in data.iterdir()) == before


def test_compute_unwritable_directory(capsys, data) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = data / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = run_cli(capsys, "compute", data / "f.npy", "-o", locked / "r.npz")
    assert code == 1
    assert_one_error_line(err)
    assert list(locked.iterdir()) == []


def test_compute_backend_cupy_without_a_gpu_is_one_line(capsys, data) -> None:
    if gpu_usable():
        pytest.skip("a GPU is usable here")
    before = sorted(p.name for p in data.iterdir())
    code, _, err = run_cli(
        capsys, "compute", data / "f.npy", "--backend", "cupy", "-o", data / "r.npz"
    )
    assert code == 1
    assert_one_error_line(err)
    if importlib.util.find_spec("cupy") is None:
        assert "[cuda12]" in err  # how to install CuPy
    assert sorted(p.name for p in data.iterdir()) == before


def test_a_failed_write_keeps_the_old_output_and_leaves_no_temporary(
    capsys, data, monkeypatch
) -> None:
    target = data / "result.npz"
    target.write_bytes(b"previous result")
    real_write_array = np.lib.format.write_array
    calls = []

    def disk_full_on_second_array(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fp.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", disk_full_on_second_array)
    code, _, err = run_cli(capsys, "compute", data / "f.npy", "-o", target, "--force")
    assert code == 1
    assert_one_error_line(err)
    assert "No space left on device" in err
    assert target.read_bytes() == b"previous result"
    assert not list(data.glob(".result.npz.*"))


def test_an_interrupt_leaves_no_file_and_exits_130(capsys, data, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cugrad, "gradient", interrupted)
    before = sorted(p.name for p in data.iterdir())
    code, _, err = run_cli(capsys, "compute", data / "f.npy", "-o", data / "r.npz")
    assert code == 130
    assert_one_error_line(err)
    assert sorted(p.name for p in data.iterdir()) == before


# --- info -------------------------------------------------------------------------------------


def test_info_without_a_gpu(capsys) -> None:
    if gpu_usable():
        pytest.skip("a GPU is usable here")
    code, out, err = run_cli(capsys, "info")
    assert code == 0
    assert err == ""
    assert f"cugrad {cugrad.__version__}" in out
    assert f"numpy         {np.__version__}" in out
    assert "no GPU is usable" in out
    assert re.search(r"for a numpy array\s+numpy \(CPU, \d+ threads?\)", out)
    if importlib.util.find_spec("cupy") is None:
        assert "cupy          not installed" in out
        assert "kernel cache" not in out  # CuPy's cache means nothing without CuPy
    else:
        assert "kernel cache:" in out


def test_info_without_cupy_has_no_kernel_cache_line() -> None:
    from cugrad import _info

    facts = _info.collect()
    facts.update(cupy=None, cuda_runtime=None, cuda_driver=None, devices=[])
    report = _info.format_report(facts)
    assert "cupy          not installed" in report
    assert "kernel cache" not in report
    facts["cupy"] = "13.99.0"
    assert "kernel cache:" in _info.format_report(facts)


def test_info_reports_the_optional_packages_present(capsys, monkeypatch) -> None:
    from cugrad import _info

    installed = {"torch": "2.99.0", "xarray": "2099.1.0", "matplotlib": "9.9.9"}

    def version(name):
        if name in installed:
            return installed[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_info.importlib.metadata, "version", version)
    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    assert "  torch         2.99.0" in out
    assert "  xarray        2099.1.0" in out
    assert "  matplotlib    9.9.9" in out
    assert not re.search(r"^\s+(dask|tqdm)\s", out, re.MULTILINE)  # absent ones are not listed
    code, out, _ = run_cli(capsys, "info", "--json")
    assert json.loads(out)["optional"] == {
        "torch": "2.99.0", "dask": None, "xarray": "2099.1.0", "tqdm": None, "matplotlib": "9.9.9"
    }  # fmt: skip


def test_info_json(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))
    (tmp_path / "kernel.cubin").write_bytes(b"\0")
    code, out, _ = run_cli(capsys, "info", "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts["cugrad"] == cugrad.__version__
    assert facts["numpy"] == np.__version__
    assert facts["gpu_usable"] is gpu_usable()
    assert facts["kernel_cache_dir"] == str(tmp_path)
    assert facts["kernel_cache_from_env"] is True
    assert facts["kernel_cache_files"] == 1
    assert set(facts["auto"]) >= {"numpy array", "cupy array"}


def test_info_default_kernel_cache_dir(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CUPY_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out, _ = run_cli(capsys, "info", "--json")
    assert code == 0
    assert json.loads(out)["kernel_cache_dir"] == str(tmp_path / ".cupy" / "kernel_cache")


@pytest.mark.parametrize("value", ["numpy", "bogus"])
def test_info_explains_cugrad_backend(capsys, monkeypatch, value) -> None:
    monkeypatch.setenv("CUGRAD_BACKEND", value)
    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    assert "CUGRAD_BACKEND" in out


def _fake_cupy(available: bool) -> types.ModuleType:
    """A stand-in for CuPy on a machine with a driver: enough for ``cugrad info`` to query."""
    runtime = types.SimpleNamespace(
        runtimeGetVersion=lambda: 12060,
        driverGetVersion=lambda: 12080,
    )
    if available:
        runtime.getDeviceCount = lambda: 1
        runtime.getDeviceProperties = lambda i: {
            "name": b"NVIDIA Testing GPU",
            "totalGlobalMem": 80 * 2**30,
            "major": 9,
            "minor": 0,
        }
    else:

        def no_device():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

        runtime.getDeviceCount = no_device
    fake = types.ModuleType("cupy")
    fake.__spec__ = ModuleSpec("cupy", None)
    fake.__version__ = "13.99.0"
    fake.ndarray = type("ndarray", (), {})
    fake.is_available = lambda: available
    fake.cuda = types.SimpleNamespace(runtime=runtime)
    return fake


@pytest.mark.parametrize("available", [False, True], ids=["driver-no-device", "one-device"])
def test_info_with_cupy_installed(capsys, monkeypatch, available) -> None:
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("the real CuPy is installed; this test fakes one")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(available))
    _backend.gpu_status.cache_clear()
    try:
        code, out, err = run_cli(capsys, "info")
    finally:
        _backend.gpu_status.cache_clear()
    assert code == 0, err
    assert "cupy          13.99.0" in out
    assert "CUDA runtime  12.6" in out
    assert "CUDA driver   12.8" in out
    if available:
        assert "GPU: usable" in out
        assert "device 0: NVIDIA Testing GPU (80.0 GiB, compute capability 9.0)" in out
        assert re.search(r"for a cupy array\s+cupy \(the array's GPU\)", out)
    else:
        assert "no GPU is usable" in out
        assert "cudaErrorNoDevice" in out


# --- compile ----------------------------------------------------------------------------------


class _FakeNVRTC:
    def supported_archs(self) -> list[int]:
        return [70, 75, 80, 86, 89, 90]


@pytest.mark.parametrize("arch", ["80,9000", "80,990", "sm_80,compute_12", "80,volta"])
def test_compile_rejects_an_unknown_architecture_at_once(capsys, monkeypatch, arch) -> None:
    from cugrad import _compile

    monkeypatch.setattr(_compile, "NVRTC", _FakeNVRTC)
    monkeypatch.setattr(_compile, "compile_kernels", _fail_if_called)
    code, out, err = run_cli(capsys, "compile", "--arch", arch)
    assert code == 2
    assert out == ""
    assert_one_error_line(err)
    assert "--arch" in err


def test_compile_failure_is_one_error_line(capsys, monkeypatch) -> None:
    from cugrad import _compile

    def broken(archs):
        raise _compile.NVRTCError("fast kernels for sm_80: error: boom\nline 2\n\nline 3")

    monkeypatch.setattr(_compile, "NVRTC", _FakeNVRTC)
    monkeypatch.setattr(_compile, "compile_kernels", broken)
    code, out, err = run_cli(capsys, "compile", "--arch", "80")
    assert code == 1
    assert_one_error_line(err)
    assert "fast kernels for sm_80: error: boom" in err and "2 more lines" in err


# --- selftest ---------------------------------------------------------------------------------


def test_selftest_runs_cugrad_selftest_and_returns_its_status(capsys, monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("cugrad._selftest")
    fake.run = lambda json_path: calls.append(json_path) or 3
    monkeypatch.setitem(sys.modules, "cugrad._selftest", fake)
    assert run_cli(capsys, "selftest")[0] == 3
    assert run_cli(capsys, "selftest", "--json", tmp_path / "r.json")[0] == 3
    assert calls == [None, str(tmp_path / "r.json")]


@pytest.mark.parametrize("where", ["missing/r.json", "."], ids=["no-directory", "a-directory"])
def test_selftest_json_path_is_checked_first(capsys, monkeypatch, tmp_path, where):
    fake = types.ModuleType("cugrad._selftest")
    fake.run = _fail_if_called
    monkeypatch.setitem(sys.modules, "cugrad._selftest", fake)
    code, _, err = run_cli(capsys, "selftest", "--json", tmp_path / where)
    assert code == 1
    assert_one_error_line(err)
    assert not (tmp_path / "missing").exists()


def test_selftest_is_listed_and_imported_lazily(capsys) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "selftest" in out
    code, out, _ = run_cli(capsys, "selftest", "--help")
    assert code == 0 and "--json" in out


# --- on a GPU (skipped without one; REQUIRE_GPU=1 makes them fail instead) ---------------------


@pytest.mark.gpu
def test_demo_on_the_gpu(capsys) -> None:
    code, out, err = run_cli(capsys, "demo", "--size", "8", "--repeat", "1", "--backend", "cupy")
    assert code == 0, err
    assert re.search(r"backend: cupy on .+compute capability \d+\.\d+", out)
    assert "same bits as numpy.gradient: yes" in out


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cupy", "auto"])
def test_compute_on_the_gpu_equals_numpy_gradient(capsys, data, monkeypatch, backend) -> None:
    # With "auto", a threshold of one byte sends even this small input through the GPU offload.
    monkeypatch.setenv("CUGRAD_OFFLOAD_MIN_BYTES", "1")
    argv = ["f32.npy", "x.npy", "y.npy", "z.npy", "--edge-order", "2", "--backend", backend]
    code, _, err = run_cli(capsys, "compute", *argv, "-o", "r.npz")
    assert code == 0, err
    got = load_npz(data / "r.npz")
    coords = [np.load(data / name) for name in ("x.npy", "y.npy", "z.npy")]
    expected = np.gradient(np.load(data / "f32.npy"), *coords, edge_order=2)
    assert list(got) == ["axis0", "axis1", "axis2"]
    for i, want in enumerate(expected):
        assert_bits_equal(got[f"axis{i}"], want, f"axis{i}")


@pytest.mark.gpu
def test_info_with_a_gpu(capsys) -> None:
    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    assert "GPU: usable" in out
    assert re.search(r"device 0: .+ \([0-9.]+ GiB, compute capability \d+\.\d+\)", out)
    assert re.search(r"CUDA runtime  \d+\.\d+", out)


def test_demo_shows_the_accuracy_orders_converging_at_their_order(capsys) -> None:
    code, out, _ = run_cli(capsys, "demo", "--size", "24", "--repeat", "1")
    assert code == 0
    table = out[out.index("accuracy=p"):]
    orders = {}
    for line in table.splitlines()[2:5]:
        acc, _, _, order = line.split()
        orders[int(acc)] = float(order)
    # accuracy 2 is numpy's (first-order edges dominate); p >= 4 converge at about p
    assert orders[2] < 1.5 and orders[4] > 3.4 and orders[6] > 5.2, orders


def test_info_reports_the_cpu_engine(capsys) -> None:
    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("CPU engine:"))
    if importlib.util.find_spec("numba") is None:
        assert "numba not installed" in line
    else:
        assert "CUGRAD_CPU_ENGINE=" in line and "compiled code cached in" in line
