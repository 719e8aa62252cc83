# Package marker: kernels/ is shipped as cugrad.kernels (see pyproject.toml).
