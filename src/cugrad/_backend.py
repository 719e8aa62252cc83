"""Which backend runs a call: recognise array types without importing what is not needed.

Like array-api-compat, a CuPy array is recognised from ``sys.modules`` and its type: if CuPy was never
imported, no array can be a CuPy array, so a CPU-only process never pays for (or breaks on) importing
CuPy. Whether a GPU is usable is decided with ``cupy.is_available()``, not by a bare import: CuPy imports
fine on machines without a driver.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from typing import Any, Literal

BackendName = Literal["auto", "numpy", "cupy"]
BACKENDS: tuple[str, ...] = ("auto", "numpy", "cupy")
ENV_VAR = "CUGRAD_BACKEND"
# Offload of host arrays under backend="auto" is opt-in: only when the user sets this variable are
# host arrays at least that large streamed through a usable GPU. Sending a numpy array to a GPU
# unasked brings CUDA initialisation, kernel compilation, device memory use and fork hazards to a
# user who asked for none of them.
OFFLOAD_ENV_VAR = "CUGRAD_OFFLOAD_MIN_BYTES"

# CuPy before 14.2 never reloads kernels compiled with ``name_expressions`` (the fast path's
# RawModule) from its disk cache: every new process recompiles every fast-path variant it uses
# (0.2-0.4 s each). 14.2 stores the mangled names with the binary and reloads them.
MIN_CUPY_VERSION = (14, 2)

# cugrad is installed from a checkout (it is not on PyPI). The [ctk] extra of CuPy brings the CUDA
# headers and NVRTC that CuPy 14 needs at its first compile; the NVIDIA driver alone is not enough.
CUDA_INSTALL_HINT = (
    'install CuPy with the CUDA headers and NVRTC it compiles with: from a cugrad checkout, '
    'pip install ".[cuda12]" (CUDA 12.x) or pip install ".[cuda13]" (CUDA 13.x), which pull '
    'cupy-cuda12x[ctk] / cupy-cuda13x[ctk]'
)


def is_cupy_array(x: Any) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def is_device_array(x: Any) -> bool:
    """A CuPy array: the only device array type the backends execute on directly."""
    return is_cupy_array(x)


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_dask_array(x: Any) -> bool:
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


def is_foreign_cuda_array(x: Any) -> bool:
    """A device array of another library (Numba, PyTorch, JAX...) that CuPy can view without a copy."""
    if isinstance(x, type) or is_cupy_array(x):
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dlpack_device = getattr(x, "__dlpack_device__", None)
    if dlpack_device is None or not hasattr(x, "__dlpack__"):
        return False
    try:
        device_type, _ = dlpack_device()
    except Exception:  # noqa: BLE001 - a broken protocol means "not a CUDA array"
        return False
    return int(device_type) in (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): whether CuPy is installed and sees a usable CUDA device, and why not."""
    if importlib.util.find_spec("cupy") is None:
        return False, f"CuPy is not installed; {CUDA_INSTALL_HINT}"
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - any import failure means the GPU path is unusable
        return False, f"CuPy is installed but failed to import ({exc}); reinstall it: {CUDA_INSTALL_HINT}"
    too_old = cupy_version_problem(getattr(cupy, "__version__", ""))
    if too_old:
        return False, too_old
    try:
        available = cupy.is_available()
    except Exception as exc:  # noqa: BLE001
        return False, f"CuPy cannot reach a CUDA device ({exc})"
    if not available:
        return False, (
            "CuPy is installed but no usable CUDA device was found "
            "(no NVIDIA GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)"
        )
    return True, "CuPy sees a usable CUDA device"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):  # "2rc1", "0a1": a pre-release of this version
            break
    return tuple(parts)


def cupy_version_problem(version: str) -> str | None:
    """Why this CuPy version cannot run cugrad, or None when it can."""
    found = _version_tuple(version)
    if found and found >= MIN_CUPY_VERSION:
        return None
    need = ".".join(map(str, MIN_CUPY_VERSION))
    return (
        f"CuPy {version or '(unknown version)'} is older than {need}, which cugrad needs (older "
        "CuPy recompiles every fast-path kernel in every new process instead of reloading it from "
        f"its kernel cache); {CUDA_INSTALL_HINT}"
    )


def require_supported_cupy() -> None:
    """Raise RuntimeError when the imported CuPy is older than cugrad needs."""
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        problem = _cached_version_problem(str(getattr(cupy, "__version__", "")))
        if problem:
            raise RuntimeError(problem)


_cached_version_problem = functools.lru_cache(maxsize=4)(cupy_version_problem)


# Messages of CuPy (and NVRTC) when it cannot compile for lack of the CUDA headers or NVRTC.
_MISSING_TOOLKIT_SIGNS = (
    "cannot open source file",
    "could not open source file",
    "cuda_runtime.h",
    "cuda_fp16.h",
    "libnvrtc",
    "nvrtc64",
    "failed to load nvrtc",
    "nvrtc library",
)


def explain_compile_failure(exc: BaseException) -> str | None:
    """The fix, if ``exc`` says CuPy could not compile for lack of CUDA headers or NVRTC; else None."""
    text = f"{type(exc).__name__}: {exc}".lower()
    if not any(sign in text for sign in _MISSING_TOOLKIT_SIGNS):
        return None
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"CuPy could not compile cugrad's kernels ({type(exc).__name__}: {first}): CuPy 14 needs "
        f"the CUDA headers and the NVRTC library at its first compile, and the NVIDIA driver alone "
        f"does not have them. To fix it, {CUDA_INSTALL_HINT}; or install a CUDA toolkit and set "
        "CUDA_PATH. `cugrad info` shows whether the headers and NVRTC are found"
    )


def require_gpu() -> None:
    usable, reason = gpu_status()
    if not usable:
        raise RuntimeError(f'backend="cupy" needs CuPy and a usable CUDA GPU: {reason}')


# os.environ.get costs ~0.7 us (it encodes the key and decodes the value), a third of cugrad's whole
# overhead on a small array. os.environ keeps its encoded mapping in ``_data`` (CPython, all versions
# we support) and updates it on every assignment, so reading it directly sees what os.environ sees.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey(ENV_VAR) if hasattr(os.environ, "encodekey") else None


def _getenv_backend() -> str | None:
    if _ENV_DATA is None or _ENV_KEY is None:
        return os.environ.get(ENV_VAR)
    raw = _ENV_DATA.get(_ENV_KEY)
    return None if raw is None else os.environ.decodevalue(raw)


def requested_backend(backend: str | None) -> str:
    """The backend asked for: the argument, else the CUGRAD_BACKEND environment variable, else auto."""
    source = "backend"
    if backend is None:
        backend = _getenv_backend()
        if not backend:
            return "auto"
        source = f"the {ENV_VAR} environment variable"
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend.lower()


def offload_threshold_bytes() -> int | None:
    """Host arrays of at least this many bytes go to a usable GPU under ``backend="auto"``.

    None (the default, ``CUGRAD_OFFLOAD_MIN_BYTES`` unset or empty): ``"auto"`` follows the input
    and never sends a host array to a GPU; ``backend="cupy"`` does that on request.
    """
    env = os.environ.get(OFFLOAD_ENV_VAR)
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"{OFFLOAD_ENV_VAR} must be a whole, non-negative number of bytes, got {env!r} "
            "(unset it to keep host arrays on the CPU under backend=\"auto\")"
        )
    return value
