"""dask arrays in, lazy dask arrays out, computing to numpy.gradient's values for any chunking.

Most cases run on the synchronous scheduler; a module-scoped ``distributed.LocalCluster`` (two
worker processes) checks that the graph travels to other processes and computes the same bits.
Expected values always come from ``np.gradient`` on the in-memory array.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same, numpy_outcome, public_exception_type, random_field, stable_rng

import cugrad

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def compute(result, scheduler="synchronous"):
    if isinstance(result, tuple):
        return tuple(dask.compute(*result, scheduler=scheduler))
    return result.compute(scheduler=scheduler)


data = random_field


def random_chunks(shape, seed):
    """Uneven chunks with many of one or two rows (smaller than the second-order stencil)."""
    rng = stable_rng("chunks", shape, seed)
    chunks = []
    for n in shape:
        sizes = []
        while sum(sizes) < n:
            sizes.append(int(min(rng.integers(1, 5), n - sum(sizes))))
        chunks.append(tuple(sizes))
    return tuple(chunks)


def assert_lazy_same(result, expected):
    arrays = result if isinstance(result, tuple) else (result,)
    assert all(isinstance(a, da.Array) for a in arrays)
    assert_same(compute(result), expected)


CHUNKINGS = ["ones", "whole", "seed0", "seed1", "seed2", "seed3"]


def chunks_for(shape, chunking):
    if chunking == "ones":
        return (1,) * len(shape)
    if chunking == "whole":
        return shape
    return random_chunks(shape, int(chunking[4:]))


@pytest.mark.parametrize("shape", [(11,), (7, 6), (5, 4, 6)], ids=str)
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_parity_any_chunking(shape, chunking, edge_order):
    x = data(shape)
    d = da.from_array(x, chunks=chunks_for(shape, chunking))
    assert_lazy_same(cugrad.gradient(d, edge_order=edge_order),
                     np.gradient(x, edge_order=edge_order))


def coordinates(n, kind):
    rng = stable_rng("coords", n, kind)
    if kind == "uniform":
        return np.arange(n) * 0.25  # numpy's shortcut makes this a scalar spacing
    if kind == "sorted":
        return np.sort(rng.uniform(0, 10, n))
    if kind == "unsorted":
        return rng.uniform(-5, 5, n)
    if kind == "int":
        return np.cumsum(rng.integers(1, 4, n))
    raise AssertionError(kind)


SPACINGS = {
    "python float": lambda: (0.5,),
    "numpy float32": lambda: (np.float32(0.5),),
    "0-d array": lambda: (np.array(2.0, np.float32),),
    "per-axis scalars": lambda: (2, 0.1),
    "uniform coordinates": lambda: (coordinates(9, "uniform"), 1.0),
    "sorted coordinates": lambda: (coordinates(9, "sorted"), coordinates(7, "sorted")),
    "unsorted coordinates": lambda: (coordinates(9, "unsorted"), 3),
    "int coordinates": lambda: (1.5, coordinates(7, "int")),
    "list coordinates": lambda: (list(coordinates(9, "sorted")), 2.0),
}


@pytest.mark.parametrize("spacing", list(SPACINGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("edge_order", [1, 2])
def test_parity_spacing(spacing, dtype, edge_order):
    x = data((9, 7), dtype)
    d = da.from_array(x, chunks=((1, 3, 2, 1, 2), (2, 1, 4)))
    varargs = SPACINGS[spacing]()
    assert_lazy_same(cugrad.gradient(d, *varargs, edge_order=edge_order),
                     np.gradient(x, *varargs, edge_order=edge_order))


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.complex64, np.complex128, np.int8, np.uint8,
              np.int64, np.uint64]
)
def test_parity_dtypes(dtype):
    x = data((8, 5), dtype)
    d = da.from_array(x, chunks=((3, 1, 4), (2, 3)))
    for edge_order in (1, 2):
        assert_lazy_same(cugrad.gradient(d, edge_order=edge_order),
                         np.gradient(x, edge_order=edge_order))


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">c8", ">i2"])
def test_parity_byte_swapped(dtype):
    x = data((7, 5), np.dtype(dtype).newbyteorder("=")).astype(dtype)
    d = da.from_array(x, chunks=((2, 1, 4), (5,)))
    spacing = (coordinates(7, "sorted"), 0.5)
    assert_lazy_same(cugrad.gradient(d, *spacing, edge_order=2),
                     np.gradient(x, *spacing, edge_order=2))


@pytest.mark.parametrize("axis", [0, -1, 2, (1,), (2, 0), [0, 1, 2], (1, -1)], ids=str)
def test_parity_axes(axis):
    x = data((5, 6, 4))
    d = da.from_array(x, chunks=random_chunks(x.shape, 7))
    assert_lazy_same(cugrad.gradient(d, axis=axis, edge_order=2),
                     np.gradient(x, axis=axis, edge_order=2))


def test_containers():
    x = data((4, 5))
    d = da.from_array(x, chunks=2)
    assert isinstance(cugrad.gradient(d, axis=0), da.Array)
    assert isinstance(cugrad.gradient(d, axis=(0,)), da.Array)
    assert type(cugrad.gradient(d)) is tuple
    assert cugrad.gradient(d, axis=()) == ()
    assert cugrad.gradient(da.from_array(np.float64(3.0))) == ()


def test_stack():
    x = data((6, 5, 4), np.float32)
    d = da.from_array(x, chunks=(4, 2, 3))
    stacked = cugrad.gradient(d, axis=(2, 0), stack=True, edge_order=2)
    assert isinstance(stacked, da.Array)
    assert stacked.shape == (2, 6, 5, 4) and stacked.dtype == np.float32
    assert_same(stacked.compute(scheduler="synchronous"),
                np.stack(np.gradient(x, axis=(2, 0), edge_order=2)))
    empty = cugrad.gradient(d, axis=(), stack=True)
    assert empty.shape == (0, 6, 5, 4)


def test_result_keeps_the_chunking():
    d = da.from_array(data((9, 7)), chunks=((1, 3, 5), (4, 3)))
    for r in cugrad.gradient(d):
        assert r.chunks == d.chunks


def test_zero_size_chunks():
    x = data((7, 3))
    d = da.from_array(x, chunks=((3, 0, 1, 0, 3), (3,)))
    assert 0 in d.chunks[0]
    assert_lazy_same(cugrad.gradient(d, edge_order=2), np.gradient(x, edge_order=2))


def test_zero_size_array():
    x = np.empty((0, 4))
    d = da.from_array(x, chunks=(1, 2))
    assert_lazy_same(cugrad.gradient(d, axis=1), np.gradient(x, axis=1))


def test_nothing_is_computed_at_call_time():
    calls = []

    def produce(block):
        calls.append(block.shape)
        return block

    d = da.from_array(data((6, 5)), chunks=2).map_blocks(produce)
    calls.clear()  # map_blocks probes the function on tiny arrays to learn its meta
    result = cugrad.gradient(d, coordinates(6, "sorted"), 0.5, edge_order=2)
    assert calls == []
    compute(result)
    assert calls


def test_gradients_of_different_coordinates_in_one_graph():
    # Distinct plans must get distinct keys, or one result would silently stand in for the other.
    x = data((8, 3))
    d = da.from_array(x, chunks=3)
    c1 = coordinates(8, "sorted")
    c2 = c1.copy()
    c2[4] += 1e-3
    r1, r2 = dask.compute(cugrad.gradient(d, c1, axis=0), cugrad.gradient(d, c2, axis=0),
                          scheduler="synchronous")
    assert_same(r1, np.gradient(x, c1, axis=0))
    assert_same(r2, np.gradient(x, c2, axis=0))


BAD_CALLS = {
    "axis out of range": ((), {"axis": 2}),
    "repeated axis": ((), {"axis": (0, 0)}),
    "too many spacings": ((1.0, 2.0, 3.0), {}),
    "2-d coordinates": ((np.ones((5, 4)), 1.0), {}),
    "coordinates of the wrong length": ((np.arange(3.0), 1.0), {}),
    "edge_order 3": ((), {"edge_order": 3}),
    "axis too short for edge_order 2": ((), {"axis": 1, "edge_order": 2}),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_numpy_exceptions_are_raised_at_call_time(case):
    x = data((5, 2))
    varargs, kwargs = BAD_CALLS[case]
    _, error = numpy_outcome(lambda: np.gradient(x, *varargs, **kwargs))
    assert error is not None
    with pytest.raises(public_exception_type(error)):
        cugrad.gradient(da.from_array(x, chunks=1), *varargs, **kwargs)


def test_out_is_refused():
    d = da.from_array(data((4, 5)), chunks=2)
    with pytest.raises(TypeError, match="immutable"):
        cugrad.gradient(d, axis=0, out=np.empty((4, 5)))


@pytest.mark.parametrize("dtype", [bool, object])
def test_special_dtypes_are_refused(dtype):
    # datetime64 and timedelta64 are computed (tests/test_numpy_corners.py)
    d = da.from_array(np.zeros((4, 5), dtype), chunks=2)
    with pytest.raises(TypeError):
        cugrad.gradient(d)


def test_dask_coordinates_are_refused():
    d = da.from_array(data((4, 5)), chunks=2)
    with pytest.raises(TypeError, match="compute"):
        cugrad.gradient(d, da.arange(4.0, chunks=2), 1.0)


def test_unknown_chunk_sizes_are_refused():
    d = da.from_array(data((6, 5)), chunks=2)
    d = d[d[:, 0] > -1e9]  # rows kept are unknown until computed
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        cugrad.gradient(d)


def test_backend_numpy_and_auto_follow_numpy_chunks():
    x = data((6, 5))
    d = da.from_array(x, chunks=2)
    assert_lazy_same(cugrad.gradient(d, backend="numpy"), np.gradient(x))
    assert_lazy_same(cugrad.gradient(d, backend="auto"), np.gradient(x))


# --------------------------------------------------------------------------------------------------
# A real cluster: two worker processes
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.mark.parametrize("edge_order", [1, 2])
def test_on_a_local_cluster(client, edge_order):
    x = data((13, 9, 4))
    d = da.from_array(x, chunks=((1, 1, 4, 2, 1, 4), (3, 1, 5), (4,)))
    spacing = (coordinates(13, "unsorted"), 0.5, np.float32(2.0))
    result = cugrad.gradient(d, *spacing, edge_order=edge_order)
    computed = tuple(client.compute(list(result), sync=True))
    assert_same(computed, np.gradient(x, *spacing, edge_order=edge_order))
    stacked = client.compute(cugrad.gradient(d.astype(np.int32), axis=(0, 2), stack=True),
                             sync=True)
    assert_same(stacked, np.stack(np.gradient(x.astype(np.int32), axis=(0, 2))))


# --------------------------------------------------------------------------------------------------
# CuPy chunks (on a GPU)
# --------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("edge_order", [1, 2])
def test_cupy_chunks(edge_order):
    import cupy

    x = data((12, 7), np.float32)
    d = da.from_array(x, chunks=((1, 2, 4, 5), (3, 4))).map_blocks(cupy.asarray)
    spacing = (coordinates(12, "sorted"), 0.5)
    result = compute(cugrad.gradient(d, *spacing, edge_order=edge_order))
    assert all(isinstance(r, cupy.ndarray) for r in result)
    assert_same(tuple(cupy.asnumpy(r) for r in result),
                np.gradient(x, *spacing, edge_order=edge_order))
    with pytest.raises(TypeError, match="never moves"):
        cugrad.gradient(d, backend="numpy")


@pytest.mark.gpu
def test_numpy_chunks_on_the_gpu():
    x = data((10, 6))
    d = da.from_array(x, chunks=((1, 4, 5), (6,)))
    result = compute(cugrad.gradient(d, edge_order=2, backend="cupy"))
    assert_same(result, np.gradient(x, edge_order=2))
