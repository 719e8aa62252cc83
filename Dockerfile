# cugrad's GPU test image: the package installed from this checkout (not editable) with CuPy for
# CUDA 12 and the CUDA headers and NVRTC it compiles with, every kernel checked to compile at build
# time, and a default command that, on the GPU it is given, fills CuPy's kernel cache
# (cugrad compile), runs cugrad selftest (which prints cugrad info first), then the whole test suite
# with REQUIRE_GPU=1, so GPU tests fail instead of skipping when no GPU reaches them.
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
# The architectures the build checks the kernels for (compute capabilities as `cugrad compile --arch`
# takes them, e.g. 80,90): "supported" is every architecture cugrad targets that the installed
# NVRTC supports (nvrtcGetSupportedArchs; CUDA 13 has no sm_70). The check needs no GPU.
ARG CUDA_ARCHS=supported

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    CUPY_CACHE_DIR=/var/cache/cupy \
    NUMBA_CACHE_DIR=/var/cache/cupy/numba

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

# A build-time check that every kernel compiles for CUDA_ARCHS, with NVRTC alone. It does not fill
# CuPy's kernel cache (CuPy keys it on its own code strings and options and compiles for the device
# it runs on, which a build has none of): the default command does that where the GPU is.
RUN cugrad compile --arch "${CUDA_ARCHS}" --quiet

# Mount a named volume here (-v cupy-cache:/var/cache/cupy): the kernels `cugrad compile` puts into
# CuPy's cache at the first container start for a GPU persist, and later starts reuse them
# (CuPy >= 14.2 reloads every kernel from it) instead of compiling again.
VOLUME ["/var/cache/cupy"]

# At container start, where the GPU is: fill CuPy's cache for this GPU, prove the installation
# (cugrad selftest: cugrad info, parity on the device, cache reuse, a quick benchmark), then run
# the suite. Each step must pass for the next to run.
CMD ["bash", "-c", "cugrad compile --quiet && cugrad selftest && REQUIRE_GPU=1 exec python -m pytest -m 'not benchmark'"]
