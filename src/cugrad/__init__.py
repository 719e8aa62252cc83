"""cugrad: numpy.gradient, exactly, on GPUs and faster on CPUs."""

from typing import Any

from cugrad._api import gradient

__all__ = ["compile_kernels", "gradient"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # compile_kernels drives NVRTC through ctypes: import it only when asked for, so that
    # ``import cugrad`` stays as light as numpy itself on machines that never compile a kernel.
    if name == "compile_kernels":
        from cugrad._compile import compile_kernels

        return compile_kernels
    raise AttributeError(f"module 'cugrad' has no attribute {name!r}")
