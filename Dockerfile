# cugrad's GPU test image: the package installed from this checkout (not editable) with CuPy for
# CUDA 12, its kernels pre-compiled, and a default command that reports the GPU and runs the whole
# test suite with REQUIRE_GPU=1, so GPU tests fail instead of skipping when no GPU reaches them.
#
#   docker build -t cugrad-gpu .
#   docker run --rm --gpus all -v cupy-cache:/var/cache/cupy cugrad-gpu
#
# Other CUDA releases: --build-arg CUDA_VER=12.8.1; another Ubuntu also needs its Python:
# --build-arg LINUX_VER=ubuntu22.04 --build-arg PYTHON_VER=3.10.
ARG CUDA_VER=12.6.3
ARG LINUX_VER=ubuntu24.04

# devel, not runtime: the runtime images lack the CUDA headers NVRTC needs when CuPy compiles
# kernels on CUDA >= 12.2.
FROM nvidia/cuda:${CUDA_VER}-devel-${LINUX_VER}

# The Python of the Ubuntu release (3.12 on 24.04, 3.10 on 22.04), pinned to its minor version.
ARG PYTHON_VER=3.12
# Where the image pre-compiles kernels for (compute capabilities, as `cugrad compile --arch` takes
# them): no GPU is needed at build time; the device-specific cache fills in at run time.
ARG CUDA_ARCHS=70,75,80,86,89,90

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    CUPY_CACHE_DIR=/var/cache/cupy

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        "python3=${PYTHON_VER}.*" \
        "python3-venv=${PYTHON_VER}.*" \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user runs everything below; the kernel cache and the checkout are its own so that
# CuPy and pytest (.pytest_cache, .hypothesis) can write there.
RUN useradd --create-home --uid 10001 --user-group --shell /bin/bash cugrad \
    && install -d -o cugrad -g cugrad /opt/cugrad "${CUPY_CACHE_DIR}"

WORKDIR /opt/cugrad
COPY --chown=10001:10001 . .

# Not editable: the tests import the installed wheel, as users get it. The build leftovers of the
# in-tree build are removed so the checkout stays what was copied.
RUN python3 -m venv "${VIRTUAL_ENV}" \
    && pip install --no-cache-dir "./[cuda12,test]" \
    && rm -rf build src/*.egg-info

# Numeric, so that the host and Kubernetes can check "not root" without the image's passwd file.
USER 10001:10001

# Compile every kernel for the listed architectures into CuPy's cache ahead of time, so that the
# first call in a container does not wait for NVRTC.
RUN cugrad compile --arch "${CUDA_ARCHS}"

# Declared after the compile step (a VOLUME discards later build changes to its path). Mount a
# named volume here (-v cupy-cache:/var/cache/cupy): Docker seeds a new one from the image's
# pre-compiled kernels, and kernels compiled at run time for the actual GPU persist across runs.
VOLUME ["/var/cache/cupy"]

CMD ["bash", "-c", "cugrad info && REQUIRE_GPU=1 exec python -m pytest -m 'not benchmark'"]
