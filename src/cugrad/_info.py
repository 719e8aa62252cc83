"""``cugrad info``: what this installation can run on, and what ``backend="auto"`` would pick.

Everything here must work on a machine without CuPy or without a GPU: CuPy is imported only when
``importlib.util.find_spec`` finds it, usability is decided by ``cupy.is_available()`` (through
``cugrad._backend.gpu_status``, the same answer the library acts on), and every CUDA query is
guarded, because a broken driver is precisely what a user runs ``cugrad info`` to diagnose.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

import cugrad
from cugrad import _backend, _numpy_backend

DEFAULT_CUPY_CACHE_DIR = "~/.cupy/kernel_cache"  # CuPy's default when CUPY_CACHE_DIR is unset
# Optional packages cugrad works with, by distribution name; their versions are read from the
# installed metadata, so that reporting them imports none of them (torch alone takes seconds).
OPTIONAL_PACKAGES = ("torch", "dask", "xarray", "tqdm", "matplotlib")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cugrad info`` to ``parser``."""
    parser.add_argument(
        "--json", action="store_true", help="print the facts as one JSON object (for scripts)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the report; always exit 0, since a missing GPU is a fact to report, not a failure."""
    facts = collect()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print(format_report(facts))
    return 0


def numpy_backend_description() -> str:
    """How the NumPy backend runs here, e.g. ``numpy (CPU, 2 threads)``."""
    try:
        threads = _numpy_backend.thread_count()
    except ValueError as exc:  # a bad CUGRAD_NUM_THREADS: say so rather than guess
        return f"numpy (CPU, {exc})"
    return f"numpy (CPU, {threads} thread{'s' if threads != 1 else ''})"


def gpu_description(device: dict[str, Any]) -> str:
    """One line for one CUDA device, e.g. ``NVIDIA H100 (79.1 GiB, compute capability 9.0)``."""
    return (
        f"{device['name']} ({device['memory_gib']:.1f} GiB, "
        f"compute capability {device['compute_capability']})"
    )


def kernel_cache_dir() -> tuple[str, bool]:
    """(CuPy's kernel cache directory, whether ``CUPY_CACHE_DIR`` set it)."""
    configured = os.environ.get("CUPY_CACHE_DIR")
    return os.path.expanduser(configured or DEFAULT_CUPY_CACHE_DIR), bool(configured)


def cpu_engine_description() -> str:
    """Whether the compiled CPU engine (numba) runs host calls here, and where it caches."""
    from cugrad import _numba_backend

    try:
        e = _numba_backend.info()  # imports numba when it is installed; compiles nothing
    except Exception as exc:  # noqa: BLE001 - a report line, never a crash of `cugrad info`
        return f"unknown ({type(exc).__name__}: {exc})"
    if not e["available"]:
        return ('numba not installed (pip install numba, or ".[cpu]" in a checkout): the NumPy '
                "backend computes every host call")
    if e["load_error"]:
        return (f"numba {e['numba']} cannot load its kernels ({e['load_error']}): set "
                "NUMBA_CACHE_DIR to a writable directory")
    cached = {True: "compiled code cached in", False: "nothing compiled yet (the first large "
              "call compiles, about 30-40 s per dtype; `cugrad bench` does it and times it); "
              "cache in", None: "compiled code cached in"}[e["cache_filled"]]
    return (f"numba {e['numba']}, CUGRAD_CPU_ENGINE={e['engine']} (auto from "
            f"{e['min_elements']:,} elements), {cached} {e['cache_dir']}")


def collect() -> dict[str, Any]:
    """Gather every fact the report shows, as plain JSON-able data."""
    usable, reason = _backend.gpu_status()
    facts: dict[str, Any] = {
        "cugrad": cugrad.__version__,
        "numpy": np.__version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(terse=True),
        "cupy": None,
        "cuda_runtime": None,
        "cuda_driver": None,
        "gpu_usable": usable,
        "gpu_reason": reason,
        "devices": [],
        "numpy_backend": numpy_backend_description(),
        "cpu_engine": cpu_engine_description(),
        "optional": optional_versions(),
    }
    if importlib.util.find_spec("cupy") is not None:
        facts.update(_cupy_facts())
    facts["toolkit"] = toolkit_facts()
    facts["auto"] = _auto_choices(usable)
    cache, from_env = kernel_cache_dir()
    facts["kernel_cache_dir"] = cache
    facts["kernel_cache_from_env"] = from_env
    facts["kernel_cache_files"] = _count_files(cache)
    backend_env = os.environ.get(_backend.ENV_VAR)
    facts["backend_env"] = backend_env
    return facts


def optional_versions() -> dict[str, str | None]:
    """The installed version of each optional package cugrad works with (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in OPTIONAL_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cupy_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - report any import failure, do not crash
        facts["cupy"] = f"installed but fails to import: {_first_line(exc)}"
        return facts
    facts["cupy"] = cupy.__version__
    runtime = cupy.cuda.runtime
    facts["cuda_runtime"] = _guarded(lambda: _cuda_version(runtime.runtimeGetVersion()))
    facts["cuda_driver"] = _guarded(lambda: _cuda_version(runtime.driverGetVersion()))
    try:
        count = runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - e.g. cudaErrorNoDevice, cudaErrorInsufficientDriver
        facts["device_error"] = _first_line(exc)
        return facts
    devices = []
    for index in range(count):
        try:
            devices.append(_device_facts(runtime, index))
        except Exception as exc:  # noqa: BLE001
            devices.append({"index": index, "error": _first_line(exc)})
    facts["devices"] = devices
    return facts


def toolkit_facts() -> dict[str, Any]:
    """Whether the CUDA headers and the NVRTC library that kernels compile with are found.

    CuPy 14 needs both at its first compile (the NVIDIA driver alone has neither); cugrad's
    ``compile --arch`` check needs NVRTC. Found without a GPU, and without importing CuPy.
    """
    return {"cuda_headers": _cuda_headers(), "nvrtc": _nvrtc()}


CUDA_DEFAULT_ROOT = "/usr/local/cuda"  # where a CUDA toolkit installs itself on Linux


def _cuda_headers() -> dict[str, Any]:
    try:
        from cuda.pathfinder import find_nvidia_header_directory  # what CuPy 14 asks
    except ImportError:
        pass
    else:
        try:
            found = find_nvidia_header_directory("cudart")
        except Exception as exc:  # noqa: BLE001 - a lookup failure is a fact to report
            return {"path": None, "how": f"cuda-pathfinder failed: {_first_line(exc)}"}
        if found:
            return {"path": str(found), "how": "cuda-pathfinder, as CuPy looks them up"}
        return {"path": None, "how": "cuda-pathfinder (as CuPy looks them up) found none"}
    for base in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), CUDA_DEFAULT_ROOT):
        if base and (Path(base) / "include" / "cuda_runtime.h").is_file():
            return {"path": str(Path(base) / "include"),
                    "how": "CUDA_PATH, CUDA_HOME or /usr/local/cuda"}
    return {"path": None, "how": "not in CUDA_PATH, CUDA_HOME or /usr/local/cuda"}


def _nvrtc() -> dict[str, Any]:
    from cugrad import _compile

    try:
        nvrtc = _compile.NVRTC()
        major, minor = nvrtc.version()
        archs = _compile.default_archs(nvrtc)
    except Exception as exc:  # noqa: BLE001 - NVRTCError, or a broken library
        return {"path": None, "version": None, "archs": [], "error": _first_line(exc)}
    return {"path": nvrtc.path, "version": f"{major}.{minor}", "archs": archs}


def format_toolkit(toolkit: dict[str, Any]) -> list[str]:
    """The report's lines on the CUDA headers and NVRTC."""
    headers, nvrtc = toolkit["cuda_headers"], toolkit["nvrtc"]
    missing = f"CuPy cannot compile kernels without them; {_backend.CUDA_INSTALL_HINT}"
    lines = ["", "kernel compilation (CuPy needs both at its first compile):"]
    if headers["path"]:
        lines.append(f"  CUDA headers  found: {headers['path']} ({headers['how']})")
    else:
        lines.append(f"  CUDA headers  NOT FOUND ({headers['how']}): {missing}")
    if nvrtc["path"]:
        archs = ", ".join(f"sm_{a}" for a in nvrtc["archs"]) or "none of cugrad's targets"
        lines.append(f"  NVRTC         {nvrtc['version']} found: {nvrtc['path']} ({archs})")
    else:
        lines.append(f"  NVRTC         NOT FOUND ({nvrtc.get('error')}): {missing}")
    return lines


def _device_facts(runtime: Any, index: int) -> dict[str, Any]:
    props = runtime.getDeviceProperties(index)
    name = props.get("name", b"?")
    return {
        "index": index,
        "name": name.decode(errors="replace") if isinstance(name, bytes) else str(name),
        "memory_gib": props.get("totalGlobalMem", 0) / 2**30,
        "compute_capability": f"{props.get('major', '?')}.{props.get('minor', '?')}",
    }


def device_description(index: int) -> str:
    """Describe CUDA device ``index`` in one line (CuPy must be importable and usable)."""
    import cupy

    return gpu_description(_device_facts(cupy.cuda.runtime, index))


def _auto_choices(gpu_usable: bool) -> dict[str, str]:
    # What backend=None/"auto" does with each array kind, as the library decides it.
    host = numpy_backend_description()
    try:
        threshold = _backend.offload_threshold_bytes()
    except ValueError as exc:  # a bad CUGRAD_OFFLOAD_MIN_BYTES: say so rather than crash
        offload_note = f"; {exc}"
    else:
        if threshold is None:  # offload is opt-in
            offload_note = (
                f"; never sent to a GPU (set {_backend.OFFLOAD_ENV_VAR} to stream large ones "
                'through it, or pass backend="cupy")'
            )
        elif gpu_usable:
            offload_note = f"; arrays of {_format_bytes(threshold)} or more go to the GPU"
        else:
            offload_note = (
                f"; it would send arrays of {_format_bytes(threshold)} or more to a usable GPU"
            )
    choices = {
        "numpy array": host + (offload_note or ""),
        "cupy array": "cupy (the array's GPU)" if gpu_usable else "cupy (needs a usable GPU)",
    }
    env = os.environ.get(_backend.ENV_VAR)
    if env:
        try:
            forced = _backend.requested_backend(None)
        except ValueError as exc:
            choices["note"] = str(exc)
        else:
            if forced != "auto":
                choices["note"] = (
                    f"{_backend.ENV_VAR}={env} makes backend=None mean backend={forced!r} for "
                    'every input; backend="auto" still follows the input'
                )
    return choices


def format_report(facts: dict[str, Any]) -> str:
    """Format :func:`collect`'s facts as the human-readable report."""
    lines = [
        f"cugrad {facts['cugrad']}",
        f"  python        {facts['python']} on {facts['platform']}",
        f"  numpy         {facts['numpy']}",
    ]
    if facts["cupy"] is None:
        lines.append("  cupy          not installed")
    else:
        lines.append(f"  cupy          {facts['cupy']}")
        lines.append(f"  CUDA runtime  {facts['cuda_runtime'] or 'unknown'}")
        lines.append(f"  CUDA driver   {facts['cuda_driver'] or 'unknown'}")
    for name, version in facts.get("optional", {}).items():
        if version is not None:
            lines.append(f"  {name:<13} {version}")

    lines.append("")
    if facts["gpu_usable"]:
        lines.append("GPU: usable")
    else:
        lines.append(f"GPU: no GPU is usable: {facts['gpu_reason']}")
    if facts.get("device_error"):
        lines.append(f"  CUDA says: {facts['device_error']}")
    for device in facts["devices"]:
        if "error" in device:
            lines.append(f"  device {device['index']}: cannot query ({device['error']})")
        else:
            lines.append(f"  device {device['index']}: {gpu_description(device)}")
    if "toolkit" in facts:
        lines.extend(format_toolkit(facts["toolkit"]))

    lines.append("")
    lines.append('backend="auto" chooses:')
    for kind in ("numpy array", "cupy array"):
        lines.append(f"  for a {kind:<12} {facts['auto'][kind]}")
    if "note" in facts["auto"]:
        lines.append(f"  note: {facts['auto']['note']}")

    lines.append("")
    if facts["cupy"] is not None:  # CuPy's kernel cache means nothing without CuPy
        how = "from CUPY_CACHE_DIR" if facts["kernel_cache_from_env"] else "CuPy's default"
        files = facts["kernel_cache_files"]
        state = "does not exist yet" if files is None else f"{files} files"
        lines.append(f"kernel cache:   {facts['kernel_cache_dir']} ({how}; {state})")
    lines.append(f"NumPy backend:  {facts['numpy_backend']}")
    lines.append(f"CPU engine:     {facts['cpu_engine']}")
    return "\n".join(lines)


def _cuda_version(encoded: int) -> str:
    # CUDA encodes versions as 1000 * major + 10 * minor (12060 is 12.6).
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def _guarded(query: Any) -> str | None:
    try:
        return query()
    except Exception as exc:  # noqa: BLE001 - an unusable driver is reported, not raised
        return f"unavailable ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _count_files(directory: str) -> int | None:
    path = Path(directory)
    if not path.is_dir():
        return None
    try:
        return sum(1 for p in path.rglob("*") if p.is_file())
    except OSError:
        return None


def _format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
