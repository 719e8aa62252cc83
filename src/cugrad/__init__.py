"""cugrad: numpy.gradient, exactly, on GPUs and faster on CPUs."""

from cugrad._api import gradient

__all__ = ["gradient"]
__version__ = "0.1.0"
