"""cugrad: numpy.gradient, exactly, on GPUs and faster on CPUs."""

from cugrad._api import gradient
from cugrad._compile import compile_kernels

__all__ = ["compile_kernels", "gradient"]
__version__ = "0.1.0"
