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
OFFLOAD_ENV_VAR = "CUGRAD_OFFLOAD_MIN_BYTES"
# backend="auto" streams host arrays at least this large through a usable GPU: below it, the
# transfers over PCIe cost more than the multithreaded NumPy backend takes to compute.
DEFAULT_OFFLOAD_MIN_BYTES = 256 * 2**20

CUDA_INSTALL_HINT = (
    'install CuPy for your CUDA version with pip install "cugrad[cuda12]" (CUDA 12.x) or '
    'pip install "cugrad[cuda13]" (CUDA 13.x)'
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


def offload_threshold_bytes() -> int:
    """Host arrays of at least this many bytes go to a usable GPU under ``backend="auto"``."""
    env = os.environ.get(OFFLOAD_ENV_VAR)
    if not env:
        return DEFAULT_OFFLOAD_MIN_BYTES
    try:
        return int(env)
    except ValueError:
        raise ValueError(f"{OFFLOAD_ENV_VAR} must be a whole number of bytes, got {env!r}") from None
