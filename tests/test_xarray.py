"""The ``cugrad`` xarray accessor against xarray's own ``differentiate`` (the oracle).

Every expected value comes from xarray's ``differentiate`` on in-memory data (which runs
numpy.gradient), never from cugrad: the accessor must give the same values bit for bit, the same
dims, coordinates, name, attributes and variable order, and raise the exception type xarray raises.
Options xarray does not have (accuracy, periodic boundaries) are compared with ``cugrad.gradient``
on the bare array, and skip until ``cugrad.gradient`` takes them.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import cugrad  # noqa: E402
import cugrad.xarray  # noqa: E402, F401  (registers the accessor)

try:
    import cftime
except ImportError:  # the cftime cases skip, with a reason, without it
    cftime = None

try:
    import dask
    import dask.array as dsa
except ImportError:
    dask = dsa = None

needs_cftime = pytest.mark.skipif(cftime is None, reason="cftime is not installed")
needs_dask = pytest.mark.skipif(dsa is None, reason="dask is not installed")

_OPTIONS_MISSING = "accuracy" not in inspect.signature(cugrad.gradient).parameters
needs_gradient_options = pytest.mark.skipif(
    _OPTIONS_MISSING,
    reason="cugrad.gradient does not take accuracy=/boundary=/period= yet (being added in "
    "another change); these tests run once it does",
)

DATETIME_UNITS = ["W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as"]
README = Path(__file__).resolve().parents[1] / "README.md"


# ---------------------------------------------------------------------------
# Exact comparison
# ---------------------------------------------------------------------------


def _variables(obj: Any) -> dict[Any, Any]:
    if isinstance(obj, xr.DataArray):
        return {"<data>": obj.variable, **{k: v.variable for k, v in obj.coords.items()}}
    return dict(obj.variables)


def _host(values: Any) -> np.ndarray:
    if hasattr(values, "compute"):
        values = values.compute()
    return np.asarray(values)


def assert_exact(actual: Any, expected: Any) -> None:
    """``identical`` plus what it does not check: bits (signed zeros), dtypes, variable order."""
    assert type(actual) is type(expected)
    xr.testing.assert_identical(actual, expected)
    a_vars, e_vars = _variables(actual), _variables(expected)
    assert list(a_vars) == list(e_vars), "variables in a different order"
    for name, e in e_vars.items():
        a = a_vars[name]
        assert a.dims == e.dims and a.attrs == e.attrs, name
        av, ev = _host(a.values), _host(e.values)
        np.testing.assert_array_equal(av, ev, strict=True, err_msg=str(name))
        if ev.dtype.kind in "fc":
            for part in (np.real, np.imag) if ev.dtype.kind == "c" else (np.asarray,):
                pa, pe = part(av), part(ev)
                bad = (np.signbit(pa) != np.signbit(pe)) & ~np.isnan(pe)
                assert not bad.any(), f"{name}: sign of zero differs at {np.argwhere(bad)[:3]}"


def outcome(fn: Any) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


def check_against_xarray(obj: Any, coord: Any, **kwargs: Any) -> Any:
    """Accessor vs xarray's differentiate on the in-memory object; dask results stay lazy."""
    memory = obj.compute() if _is_lazy(obj) else obj
    expected, error = outcome(lambda: memory.differentiate(coord, **kwargs))
    if error is not None:
        with pytest.raises(type(error)):
            obj.cugrad.differentiate(coord, **kwargs).compute()
        return None
    actual = obj.cugrad.differentiate(coord, **kwargs)
    for name, v in _variables(obj).items():
        if _is_lazy_array(v._data) and name in _variables(expected):
            # a differentiated or kept dask variable must still be lazy in the result
            assert _is_lazy_array(_variables(actual)[name]._data), f"{name} was computed"
    assert_exact(actual, expected)
    return actual


def _is_lazy_array(x: Any) -> bool:
    return dsa is not None and isinstance(x, dsa.Array)


def _is_lazy(obj: Any) -> bool:
    return any(_is_lazy_array(v._data) for v in _variables(obj).values())


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

COORD_KINDS = [
    "none",
    "uniform",
    "nonuniform",
    "int",
    "int-nonuniform",
    "float32",
    "datetime64[ns]",
    "datetime64[s]",
    "timedelta64[ms]",
    "cftime-noleap",
    "cftime-360_day",
]


def make_coord(kind: str, n: int, rng: np.random.Generator) -> Any:
    steps = rng.uniform(0.2, 3.0, n)
    if kind == "uniform":
        return np.linspace(-1.5, 2.0, n)
    if kind == "nonuniform":
        return np.cumsum(steps) - 4.0
    if kind == "int":
        return np.arange(n, dtype=np.int64) * 3 - 2
    if kind == "int-nonuniform":
        return np.cumsum(rng.integers(1, 5, n)).astype(np.int64)
    if kind == "float32":
        return (np.cumsum(steps) * 0.7).astype(np.float32)
    if kind.startswith("datetime64"):
        start = np.datetime64("2001-03-04T05:00:00", "s")
        offsets = np.cumsum(rng.integers(1, 30, n)) * np.timedelta64(37, "m")
        return (start + offsets).astype(kind)
    if kind.startswith("timedelta64"):
        return (np.cumsum(rng.integers(1, 9, n)) * np.timedelta64(250, "ms")).astype(kind)
    if kind.startswith("cftime"):
        calendar = kind.split("-", 1)[1]
        hours = np.cumsum(rng.integers(1, 48, n))
        return np.array([cftime.datetime(1999, 2, 27, calendar=calendar) for _ in range(n)]) + (
            np.array([np.timedelta64(int(h), "h").astype(object) for h in hours])
        )
    raise AssertionError(kind)


def make_data(shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    values = rng.standard_normal(shape) * 10
    values[rng.random(shape) < 0.05] = 0.0  # zeros whose sign the formulas must get right
    return values.astype(dtype)


def make_dataarray(
    shape: tuple[int, ...], dtype: Any, kinds: list[str], seed: int, *, name: Any = "field"
) -> Any:
    rng = np.random.default_rng(seed)
    dims = [f"d{i}" for i in range(len(shape))]
    coords: dict[Any, Any] = {}
    for dim, n, kind in zip(dims, shape, kinds, strict=True):
        if kind != "none":
            coords[dim] = (dim, make_coord(kind, n, rng), {"units": f"{dim}-units"})
    # non-dimension coordinates: one along the first dim, a 2-D one, a scalar one
    coords["alt"] = (dims[0], np.cumsum(rng.uniform(0.5, 2.0, shape[0])), {"long_name": "alt"})
    if len(shape) >= 2:
        coords["grid"] = (dims[:2], rng.standard_normal(shape[:2]))
    coords["level"] = 850
    return xr.DataArray(
        make_data(shape, dtype, rng),
        dims=dims,
        coords=coords,
        name=name,
        attrs={"units": "K", "history": "made by a test"},
    )


def make_dataset(seed: int) -> Any:
    rng = np.random.default_rng(seed)
    t = make_coord("datetime64[ns]", 5, rng)
    ds = xr.Dataset(
        {
            "temp": (("time", "lat", "lon"), make_data((5, 4, 6), np.float32, rng), {"u": "K"}),
            "count": (("lat", "lon"), make_data((4, 6), np.int32, rng)),
            "series": (("time",), make_data((5,), np.float64, rng), {"u": "m"}),
            "stamp": (("time",), t + np.timedelta64(5, "m")),
            "label": ((), "constant"),
        },
        coords={
            "time": ("time", t, {"axis": "T"}),
            "lat": ("lat", make_coord("nonuniform", 4, rng), {"units": "degrees_north"}),
            "lon": ("lon", np.arange(6) * 60.0, {"units": "degrees_east"}),
            "area": (("lat", "lon"), rng.random((4, 6))),
            "lat_alt": ("lat", make_coord("uniform", 4, rng)),
        },
        attrs={"title": "test"},
    )
    return ds


# ---------------------------------------------------------------------------
# Import hygiene
# ---------------------------------------------------------------------------


def test_import_cugrad_does_not_import_xarray() -> None:
    code = "import sys, cugrad; print('xarray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_import_cugrad_xarray_registers_the_accessor() -> None:
    code = (
        "import xarray as xr; assert not hasattr(xr.DataArray, 'cugrad'); import cugrad.xarray; "
        "print(xr.DataArray.cugrad.__name__, xr.Dataset.cugrad.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["CugradDataArrayAccessor", "CugradDatasetAccessor"]


# ---------------------------------------------------------------------------
# DataArray.differentiate, case by case
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int16, np.complex128])
@pytest.mark.parametrize("kind", COORD_KINDS)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_dataarray_every_coordinate_kind(dtype: Any, kind: str, edge_order: int) -> None:
    if kind.startswith("cftime") and cftime is None:
        pytest.skip("cftime is not installed")
    da = make_dataarray((7, 5), dtype, [kind, "nonuniform"], seed=len(kind))
    for coord in ("d0", "d1", "alt"):
        check_against_xarray(da, coord, edge_order=edge_order)


@pytest.mark.parametrize("kind", ["datetime64[ns]", "datetime64[s]", "timedelta64[ms]"])
@pytest.mark.parametrize("unit", DATETIME_UNITS)
def test_every_datetime_unit(kind: str, unit: str) -> None:
    da = make_dataarray((6, 3), np.float64, [kind, "none"], seed=3)
    check_against_xarray(da, "d0", datetime_unit=unit)
    check_against_xarray(da, "d0", datetime_unit=unit, edge_order=2)


@needs_cftime
@pytest.mark.parametrize("unit", ["W", "D", "h", "m", "s", "ms", "us"])
def test_cftime_every_unit(unit: str) -> None:
    da = make_dataarray((6, 3), np.float32, ["cftime-noleap", "none"], seed=4)
    check_against_xarray(da, "d0", datetime_unit=unit)


def test_nat_in_a_datetime_coordinate() -> None:
    # xarray turns NaT into NaN; numpy.gradient then differentiates with a NaN coordinate
    t = np.array(["2000-01-01", "2000-01-03", "NaT", "2000-01-09", "2000-01-10"], "datetime64[ns]")
    da = xr.DataArray(np.arange(10.0).reshape(5, 2) ** 2, dims=["t", "x"], coords={"t2": ("t", t)})
    check_against_xarray(da, "t2")


def test_name_none_and_datetime_data() -> None:
    da = make_dataarray((5, 4), np.float64, ["uniform", "int"], seed=5, name=None)
    check_against_xarray(da, "d1")
    stamps = xr.DataArray(
        np.datetime64("2020-01-01", "ns") + np.array([0, 5, 7, 30], "timedelta64[h]"),
        dims=["x"],
        coords={"x": [0.0, 1.0, 1.5, 4.0]},
    )
    check_against_xarray(stamps, "x")
    check_against_xarray(stamps, "x", datetime_unit="h")


def test_result_is_a_new_object() -> None:
    da = make_dataarray((5, 4), np.float64, ["uniform", "int"], seed=6)
    before = da.copy(deep=True)
    da.cugrad.differentiate("d0")
    assert_exact(da, before)


# ---------------------------------------------------------------------------
# Dataset.differentiate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("coord", ["time", "lat", "lon", "lat_alt"])
@pytest.mark.parametrize("edge_order", [1, 2])
@pytest.mark.parametrize("unit", [None, "h", "s"])
def test_dataset(coord: str, edge_order: int, unit: Any) -> None:
    check_against_xarray(make_dataset(1), coord, edge_order=edge_order, datetime_unit=unit)


def test_dataset_differentiates_along_a_data_variable_and_a_bare_dim() -> None:
    ds = make_dataset(2).drop_vars("lon")  # lon becomes a dimension without coordinate
    check_against_xarray(ds, "lon")
    check_against_xarray(ds, "series")  # a 1-D data variable as the coordinate (and itself)


def test_dataset_without_a_variable_on_the_dim() -> None:
    ds = make_dataset(3)[["count"]].assign_coords(t=("time", np.arange(5.0)))
    check_against_xarray(ds, "t")  # nothing has "time": kept as it is, edge_order not checked
    check_against_xarray(ds, "t", edge_order=3)


# ---------------------------------------------------------------------------
# Random DataArrays and Datasets of 1-4 dims, every coordinate kind, several chunkings
# ---------------------------------------------------------------------------

_KINDS = [k for k in COORD_KINDS if cftime is not None or not k.startswith("cftime")]


@st.composite
def labelled_fields(draw: Any) -> tuple[Any, Any, dict[str, Any]]:
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    kinds = draw(st.lists(st.sampled_from(_KINDS), min_size=ndim, max_size=ndim))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.uint8]))
    da = make_dataarray(shape, dtype, kinds, seed=draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        obj = da
    else:  # a Dataset: the field, a second variable on fewer dims, a variable without dims
        obj = da.to_dataset().assign(
            second=da.isel({da.dims[-1]: 0}, drop=True).astype(np.float64) * 2,
            flag=xr.DataArray(True),
        )
        obj.attrs["source"] = "hypothesis"
    if dsa is not None and draw(st.booleans()):
        obj = obj.chunk({d: draw(st.integers(1, n)) for d, n in obj.sizes.items()})
    coord = draw(st.sampled_from([*da.dims, "alt"]))
    kwargs: dict[str, Any] = {"edge_order": draw(st.sampled_from([1, 2]))}
    if draw(st.booleans()):
        kwargs["datetime_unit"] = draw(st.sampled_from(["D", "h", "s", "ms", "us"]))
    return obj, coord, kwargs


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled_fields())
def test_random_fields_against_xarray(case: tuple[Any, Any, dict[str, Any]]) -> None:
    obj, coord, kwargs = case
    check_against_xarray(obj, coord, **kwargs)


# ---------------------------------------------------------------------------
# dask: lazy, any chunking (1-row chunks too), identical to the in-memory result
# ---------------------------------------------------------------------------


def _forbid_compute(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the accessor computed a dask graph; it must stay lazy")


@needs_dask
@pytest.mark.parametrize(
    "chunks", [{"d0": 1}, {"d0": 1, "d1": 1, "d2": 2}, {"d0": 3, "d2": 1}, {"d0": 5, "d1": 4}]
)
@pytest.mark.parametrize("edge_order", [1, 2])
def test_dask_any_chunking(chunks: dict[str, int], edge_order: int) -> None:
    da = make_dataarray((9, 4, 5), np.float32, ["nonuniform", "datetime64[ns]", "int"], seed=7)
    lazy = da.chunk(chunks)
    with dask.config.set(scheduler=_forbid_compute):
        results = {c: lazy.cugrad.differentiate(c, edge_order=edge_order) for c in da.dims}
    for coord, result in results.items():
        assert isinstance(result.data, dsa.Array)
        assert result.chunks == lazy.chunks
        assert_exact(result, da.differentiate(coord, edge_order=edge_order))


@needs_dask
def test_dask_one_row_chunks_where_xarray_refuses() -> None:
    da = make_dataarray((6, 3), np.float64, ["nonuniform", "uniform"], seed=8).chunk({"d0": 1})
    with pytest.raises(ValueError, match="Chunk size"):
        da.differentiate("d0")  # dask.array.gradient refuses chunks shorter than the stencil
    assert_exact(da.cugrad.differentiate("d0"), da.compute().differentiate("d0"))


@needs_dask
def test_dask_dataset_keeps_lazy_variables_lazy() -> None:
    ds = make_dataset(9).chunk({"time": 2, "lat": 1})
    with dask.config.set(scheduler=_forbid_compute):
        result = ds.cugrad.differentiate("lat")
    for name in ("temp", "count", "series", "stamp"):
        assert isinstance(result[name].data, dsa.Array), name
    assert_exact(result, ds.compute().differentiate("lat"))
    # along a datetime coordinate, with a datetime data variable ("stamp"), still lazy
    ds = ds.chunk({"time": 3})
    with dask.config.set(scheduler=_forbid_compute):
        result = ds.cugrad.differentiate("time", datetime_unit="m")
    assert isinstance(result["stamp"].data, dsa.Array)
    assert_exact(result, ds.compute().differentiate("time", datetime_unit="m"))


# ---------------------------------------------------------------------------
# Bad input: xarray's exception types, messages that say what to fix
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["dataarray", "dataset"])
@pytest.mark.parametrize(
    ("coord", "kwargs", "hint"),
    [
        ("nope", {}, "not found in variables or dimensions.*pass the name of a 1-D coordinate"),
        # a DataArray's own name is not one of its coordinates (in the Dataset it is a 3-D variable)
        ("field", {}, "not found|must be 1 dimensional but is 3"),
        ("<this-array>", {}, "not found"),  # nor is the key xarray files it under internally
        ("grid", {}, "must be 1 dimensional but is 2 dimensional: differentiate along"),
        ("level", {}, "must be 1 dimensional but is 0 dimensional"),
        ("d0", {"edge_order": 3}, "greater than 2 not supported; use edge_order=1 or 2"),
        # d1 has 2 points: too short for edge_order=2
        ("d1", {"edge_order": 2}, "'d1' has 2 point.*edge_order=2 needs 3: use edge_order=1"),
        # d2 has 1 point: numpy (so xarray) raises IndexError for a one-point coordinate array
        ("d2", {}, "'d2' has 1 point.*needs at least 2 points"),
    ],
)
def test_bad_input_raises_what_xarray_raises(
    container: str, coord: str, kwargs: dict[str, Any], hint: str
) -> None:
    obj = make_dataarray((5, 2, 1), np.float64, ["uniform", "uniform", "int"], seed=10)
    if container == "dataset":
        obj = obj.to_dataset()
    _, error = outcome(lambda: obj.differentiate(coord, **kwargs))
    assert error is not None
    with pytest.raises(type(error), match=hint):
        obj.cugrad.differentiate(coord, **kwargs)


# ---------------------------------------------------------------------------
# gradient(): every partial derivative along a new leading dimension
# ---------------------------------------------------------------------------


def test_gradient_dataarray_components_are_xarray_differentiate() -> None:
    da = make_dataarray((5, 4, 6), np.float32, ["datetime64[ns]", "nonuniform", "int"], seed=11)
    g = da.cugrad.gradient(edge_order=2, datetime_unit="h")
    assert g.dims == ("gradient", "d0", "d1", "d2")
    assert g["gradient"].values.tolist() == ["d0", "d1", "d2"]
    assert g.name == da.name and g.attrs == {}
    for dim in da.dims:
        expected = da.differentiate(dim, edge_order=2, datetime_unit="h")
        assert_exact(g.sel(gradient=dim, drop=True), expected)


def test_gradient_names_order_and_new_dim() -> None:
    da = make_dataarray((5, 4), np.float64, ["uniform", "cftime-noleap"], seed=12)
    g = da.cugrad.gradient(["d1", "alt"], new_dim="partial")
    assert g.dims == ("partial", "d0", "d1")
    assert g["partial"].values.tolist() == ["d1", "alt"]
    for name in ("d1", "alt"):
        assert_exact(g.sel(partial=name, drop=True), da.differentiate(name))
    one = da.cugrad.gradient("d1")
    assert one.sizes["gradient"] == 1
    assert_exact(one.isel(gradient=0, drop=True), da.differentiate("d1"))


@needs_dask
def test_gradient_dataset_zero_along_missing_dims_and_lazy() -> None:
    ds = make_dataset(13)
    for obj in (ds, ds.chunk({"time": 1, "lon": 4})):
        g = obj.cugrad.gradient(["lat", "lon"])
        assert g["gradient"].values.tolist() == ["lat", "lon"]
        for name in ("lat", "lon"):
            assert_exact(
                g[["temp", "count"]].sel(gradient=name, drop=True),
                ds[["temp", "count"]].differentiate(name),
            )
        # "series" and "stamp" have neither dim: kept as they are; "label" too
        for name in ("series", "stamp", "label"):
            xr.testing.assert_identical(g[name], ds[name])
    # "series" has "time" but not "lat": its partial along lat is 0 (constant along lat)
    g = ds.cugrad.gradient(["time", "lat"])
    np.testing.assert_array_equal(g["series"].sel(gradient="lat"), np.zeros(5))
    assert_exact(g["series"].sel(gradient="time", drop=True), ds.differentiate("time")["series"])


def test_gradient_dataset_every_dim_by_default() -> None:
    ds = make_dataset(21)
    g = ds.cugrad.gradient(edge_order=2)
    assert g["gradient"].values.tolist() == list(ds.sizes)
    for name in ds.sizes:
        expected = ds.differentiate(name, edge_order=2)
        for var in ("temp", "count", "series", "stamp"):
            if name in ds[var].dims:
                assert_exact(g[var].sel(gradient=name, drop=True), expected[var])
    assert g.attrs == ds.attrs
    assert list(g.variables)[: len(ds.variables)] == list(ds.variables)


def test_gradient_bad_input() -> None:
    da = make_dataarray((5, 4), np.float64, ["uniform", "int"], seed=14)
    with pytest.raises(ValueError, match="not found in variables or dimensions"):
        da.cugrad.gradient(["d0", "nope"])
    with pytest.raises(ValueError, match="both along dimension 'd0'"):
        da.cugrad.gradient(["d0", "alt"])
    with pytest.raises(ValueError, match="twice"):
        da.cugrad.gradient(["d0", "d0"])
    with pytest.raises(ValueError, match="new_dim='d0' is already"):
        da.cugrad.gradient(new_dim="d0")
    with pytest.raises(ValueError, match="not among the differentiated dims"):
        da.cugrad.gradient(["d0"], boundary={"d1": "periodic"})


# ---------------------------------------------------------------------------
# accuracy / boundary / period: passed to cugrad.gradient only when not the defaults
# ---------------------------------------------------------------------------


_NOT_GIVEN: Any = object()


class GradientSpy:
    """Stands in for cugrad.gradient: records what each call was given, answers with numpy.gradient.

    Its signature has cugrad.gradient's options (the accessor checks that they are accepted), with
    a sentinel default so that a recorded call shows exactly which ones were passed.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, f, *varargs, axis=None, edge_order=1, accuracy=_NOT_GIVEN,
                 boundary=_NOT_GIVEN, period=_NOT_GIVEN, out=None, stack=False,
                 backend=None):  # fmt: skip
        given = {"accuracy": accuracy, "boundary": boundary, "period": period}
        self.calls.append({
            "f": f, "varargs": varargs, "axis": axis, "stack": stack,
            **{k: v for k, v in given.items() if v is not _NOT_GIVEN},
        })  # fmt: skip
        result = np.gradient(f, *varargs, axis=axis, edge_order=edge_order)
        if stack:
            return np.stack(result if isinstance(result, tuple) else [result])
        return result


def test_default_options_are_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GradientSpy()
    monkeypatch.setattr(cugrad, "gradient", spy)
    da = make_dataarray((5, 4), np.float64, ["uniform", "int"], seed=15)
    da.cugrad.differentiate("d0")
    da.cugrad.differentiate("d0", accuracy=2, boundary="edge", period=None)
    da.cugrad.gradient()
    da.cugrad.gradient(boundary={"d0": "edge"}, period={"d1": None})
    assert len(spy.calls) == 4
    for call in spy.calls:
        assert not {"accuracy", "boundary", "period"} & set(call)


def test_options_are_passed_and_grouped(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GradientSpy()
    monkeypatch.setattr(cugrad, "gradient", spy)
    da = make_dataarray((5, 4, 6), np.float64, ["uniform", "int", "uniform"], seed=16)
    da.cugrad.differentiate("d1", accuracy=4, boundary="periodic", period=12)
    assert spy.calls[-1]["accuracy"] == 4 and spy.calls[-1]["boundary"] == "periodic"
    assert spy.calls[-1]["period"] == 12 and spy.calls[-1]["axis"] == 1
    spy.calls.clear()
    g = da.cugrad.gradient(["d2", "d0", "d1"], accuracy=6, boundary={"d1": "periodic"},
                           period={"d1": 12})  # fmt: skip
    # one call for all axes, with per-axis options in axis order; the result in the order asked
    assert [(c["axis"], c["boundary"], c["period"], c["stack"]) for c in spy.calls] == [
        ((2, 0, 1), ("edge", "edge", "periodic"), (None, None, 12), True)
    ]
    assert spy.calls[0]["accuracy"] == 6
    spy.calls.clear()
    da.cugrad.gradient(["d0", "d1"], boundary="periodic", period=12)
    assert [(c["axis"], c["boundary"], c["period"]) for c in spy.calls] == [
        ((0, 1), "periodic", 12)
    ]
    assert "accuracy" not in spy.calls[0]
    assert g["gradient"].values.tolist() == ["d2", "d0", "d1"]
    np.testing.assert_array_equal(
        g.sel(gradient="d0"), np.gradient(da.values, da.d0.values, axis=0)
    )


def test_options_without_support_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def numpy_signature_only(f, *varargs, axis=None, edge_order=1, out=None, stack=False,
                             backend=None):  # fmt: skip
        raise AssertionError("called with options it does not take")

    monkeypatch.setattr(cugrad, "gradient", numpy_signature_only)  # a cugrad before the options
    da = make_dataarray((5, 4), np.float64, ["uniform", "int"], seed=17)
    with pytest.raises(TypeError, match="does not take accuracy= yet"):
        da.cugrad.differentiate("d0", accuracy=4)
    with pytest.raises(TypeError, match="does not take boundary=, period= yet"):
        da.cugrad.gradient(boundary={"d0": "periodic"}, period={"d0": 5.0})


@needs_gradient_options
@pytest.mark.parametrize("accuracy", [2, 4, 6, 8])
@pytest.mark.parametrize("boundary", ["edge", "periodic"])
@pytest.mark.parametrize("kind", ["uniform", "nonuniform", "none"])
def test_options_against_cugrad_gradient(accuracy: int, boundary: str, kind: str) -> None:
    da = make_dataarray((24, 13), np.float64, [kind, "int"], seed=18)
    coord = da["d0"].values
    period = None
    if boundary == "periodic" and kind != "none":
        period = float(coord[-1] - coord[0]) + 0.5  # the wrap spacing is 0.5
    kwargs = {"accuracy": accuracy, "boundary": boundary, "period": period}
    # a dimension without a coordinate is differentiated against xarray's 0, 1, 2, ... (as
    # xarray's differentiate does), so the bare-array call gets the same coordinate array
    expected, error = outcome(lambda: cugrad.gradient(da.values, coord, axis=0, **kwargs))
    if error is not None:
        with pytest.raises(type(error)):
            da.cugrad.differentiate("d0", **kwargs)
        return
    actual = da.cugrad.differentiate("d0", **kwargs)
    np.testing.assert_array_equal(actual.values, expected, strict=True)
    assert actual.dims == da.dims and actual.name == da.name
    if dsa is not None:
        lazy = da.chunk({"d0": 1}).cugrad.differentiate("d0", **kwargs)
        np.testing.assert_array_equal(lazy.values, expected, strict=True)


@needs_gradient_options
def test_gradient_options_per_dim_against_cugrad_gradient() -> None:
    lat = np.linspace(-60, 60, 9)
    lon = np.arange(0, 360, 20.0)
    da = xr.DataArray(np.cos(np.deg2rad(lon)) * np.sin(np.deg2rad(lat))[:, None],
                      dims=["lat", "lon"], coords={"lat": lat, "lon": lon})  # fmt: skip
    g = da.cugrad.gradient(accuracy=4, boundary={"lon": "periodic"}, period={"lon": 360})
    np.testing.assert_array_equal(
        g.sel(gradient="lon").values,
        cugrad.gradient(da.values, lon, axis=1, accuracy=4, boundary="periodic", period=360),
    )
    np.testing.assert_array_equal(
        g.sel(gradient="lat").values, cugrad.gradient(da.values, lat, axis=0, accuracy=4)
    )


# ---------------------------------------------------------------------------
# Array types: the data object goes to cugrad.gradient as it is, the result is kept as it is
# ---------------------------------------------------------------------------


class DeviceLikeArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A stand-in for a CuPy array: a duck array that refuses implicit host conversion."""

    def __init__(self, a: Any) -> None:
        self.a = np.asarray(a)

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError("implicit conversion to a NumPy array is not allowed (as in CuPy)")

    def __getitem__(self, key: Any) -> DeviceLikeArray:
        return DeviceLikeArray(self.a[key])

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        unwrap = lambda x: x.a if isinstance(x, DeviceLikeArray) else x  # noqa: E731
        return func(*[unwrap(a) for a in args], **{k: unwrap(v) for k, v in kwargs.items()})

    def __array_ufunc__(self, ufunc: Any, method: Any, *inputs: Any, **kwargs: Any) -> Any:
        args = [x.a if isinstance(x, DeviceLikeArray) else x for x in inputs]
        return DeviceLikeArray(getattr(ufunc, method)(*args, **kwargs))


def test_device_like_data_is_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_dataarray((5, 4), np.float32, ["nonuniform", "int"], seed=19)
    device = host.copy(data=DeviceLikeArray(host.values))
    returned: list[Any] = []

    def fake_gradient(f: Any, *varargs: Any, stack: bool = False, **kwargs: Any) -> Any:
        assert f is device.data, "the data was converted before reaching cugrad.gradient"
        g = np.gradient(f.a, *varargs, **kwargs)
        returned.append(DeviceLikeArray(np.stack([g]) if stack else g))
        return returned[-1]

    monkeypatch.setattr(cugrad, "gradient", fake_gradient)
    result = device.cugrad.differentiate("d0")
    assert result.variable._data is returned[-1], "the result left the device"
    np.testing.assert_array_equal(result.variable._data.a, host.differentiate("d0").values)
    g = device.cugrad.gradient("d0")
    assert g.variable._data is returned[-1]


@pytest.mark.gpu
@pytest.mark.parametrize("edge_order", [1, 2])
def test_cupy_backed_result_stays_on_the_gpu(edge_order: int) -> None:
    import cupy

    host = make_dataarray((33, 17, 9), np.float32, ["nonuniform", "uniform", "int"], seed=20)
    device = host.copy(data=cupy.asarray(host.values))
    for coord in host.dims:
        result = device.cugrad.differentiate(coord, edge_order=edge_order)
        assert isinstance(result.data, cupy.ndarray)
        expected = host.differentiate(coord, edge_order=edge_order)
        assert_exact(result.copy(data=result.data.get()), expected)
    g = device.cugrad.gradient(edge_order=edge_order)
    assert isinstance(g.data, cupy.ndarray)
    for coord in host.dims:
        np.testing.assert_array_equal(
            g.sel(gradient=coord).data.get(), host.differentiate(coord, edge_order=edge_order)
        )


# ---------------------------------------------------------------------------
# The README example runs
# ---------------------------------------------------------------------------


def _readme_xarray_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("\n## xarray\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


needs_readme = pytest.mark.skipif(not README.exists(), reason="README.md is not next to the tests")


@needs_readme
@needs_dask
def test_readme_xarray_example_runs() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_readme_xarray_blocks()[0], "README.md (xarray)", "exec"), namespace)
    temp = namespace["temp"]
    assert_exact(namespace["dT_dlat"], temp.differentiate("lat"))
    assert_exact(namespace["dT_dt"], temp.differentiate("time", datetime_unit="h"))
    assert isinstance(namespace["lazy"].data, dsa.Array)
    assert_exact(namespace["lazy"], temp.differentiate("lat"))


@needs_readme
@needs_gradient_options
def test_readme_xarray_periodic_example_runs() -> None:
    blocks = _readme_xarray_blocks()
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0] + blocks[1], "README.md (xarray)", "exec"), namespace)
    temp, dT_dlon, grad = namespace["temp"], namespace["dT_dlon"], namespace["grad"]
    expected = cugrad.gradient(temp.values, temp["lon"].values, axis=2,
                               boundary="periodic", period=360)  # fmt: skip
    np.testing.assert_array_equal(dT_dlon.values, expected, strict=True)
    assert grad.dims == ("gradient", "time", "lat", "lon")
    np.testing.assert_array_equal(grad.sel(gradient="lon").values, expected, strict=True)
    np.testing.assert_array_equal(
        grad.sel(gradient="lat").values, temp.differentiate("lat").values, strict=True
    )


def test_accessor_docstring_examples_run() -> None:
    import doctest

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = [t for t in finder.find(cugrad.xarray, "cugrad.xarray") if t.examples]
    assert {t.name.rsplit(".", 1)[-1] for t in tests} >= {"differentiate", "gradient"}
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
