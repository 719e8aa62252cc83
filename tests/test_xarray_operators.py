"""The accessor's derived operators against compositions of xarray's own ``differentiate``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_field, stable_rng

xr = pytest.importorskip("xarray")
import cugrad  # noqa: E402
import cugrad.xarray  # noqa: E402, F401


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def field(name, dtype=np.float64, chunks=None):
    rng = stable_rng("xr op coords")
    coords = {
        "z": np.arange(6) * 0.5,
        "y": np.cumsum(rng.random(9)) + 1,  # non-uniform
        "x": np.arange(11) * 2,             # integer coordinates
    }
    data = random_field((6, 9, 11), dtype, "xr op", name)
    da = xr.DataArray(data, dims=("z", "y", "x"), coords=coords, name=name, attrs={"units": "K"})
    return da.chunk(chunks) if chunks else da


@pytest.mark.parametrize("chunks", [None, {"z": 1, "y": 4, "x": 5}])
@pytest.mark.parametrize("edge_order", [1, 2])
def test_gradient_magnitude_is_the_composition_of_differentiate(chunks, edge_order):
    da = field("T", chunks=chunks)
    # the oracle in memory: xarray's differentiate refuses dask chunks smaller than its stencil
    d = [field("T").differentiate(c, edge_order=edge_order) for c in ("z", "y", "x")]
    expected = np.sqrt((d[0] * d[0] + d[1] * d[1]) + d[2] * d[2])
    result = da.cugrad.gradient_magnitude(edge_order=edge_order)
    assert result.dims == da.dims and result.name == "T" and result.attrs == {}
    assert result.coords.equals(da.coords)
    same(result.values, expected.values)
    partial = da.cugrad.gradient_magnitude(["x", "y"], edge_order=edge_order)
    same(partial.values, np.sqrt(d[2] * d[2] + d[1] * d[1]).values)


@pytest.mark.parametrize("chunks", [None, {"z": 2, "y": 3, "x": 11}])
def test_divergence_and_curl_of_dataset_variables(chunks):
    lazy = xr.Dataset({"u": field("u", chunks=chunks), "v": field("v", chunks=chunks),
                       "w": field("w", chunks=chunks)})
    ds = lazy.compute()  # the oracle's input (xarray's differentiate refuses small dask chunks)
    div = lazy.cugrad.divergence({"x": "u", "y": "v", "z": "w"})
    expected = (ds.u.differentiate("x") + ds.v.differentiate("y")) + ds.w.differentiate("z")
    assert div.name == "divergence" and div.dims == ds.u.dims
    assert (div.chunks is not None) == (chunks is not None)  # dask stays lazy
    same(div.values, expected.values)
    vort = lazy.cugrad.curl({"x": "u", "y": "v"})
    same(vort.values, (ds.v.differentiate("x") - ds.u.differentiate("y")).values)
    curl3 = lazy.cugrad.curl({"x": "u", "y": "v", "z": "w"})
    assert list(curl3.data_vars) == ["curl_x", "curl_y", "curl_z"]
    same(curl3.curl_x.values, (ds.w.differentiate("y") - ds.v.differentiate("z")).values)
    same(curl3.curl_y.values, (ds.u.differentiate("z") - ds.w.differentiate("x")).values)
    same(curl3.curl_z.values, (ds.v.differentiate("x") - ds.u.differentiate("y")).values)


def test_components_in_another_dimension_order_are_aligned():
    ds = xr.Dataset({"u": field("u"), "v": field("v").transpose("x", "z", "y")})
    div = ds.cugrad.divergence({"x": "u", "y": "v"})
    same(div.values, (ds.u.differentiate("x") + ds.v.differentiate("y").transpose(*ds.u.dims))
         .values)


def test_laplacian_and_options_by_name():
    lon = np.arange(0.0, 360.0, 30.0)
    lat = np.linspace(-60, 60, 9)
    da = xr.DataArray(random_field((9, 12), np.float64, "lap"), dims=("lat", "lon"),
                      coords={"lat": lat, "lon": lon})
    lap = da.cugrad.laplacian(accuracy=4, boundary={"lon": "periodic"}, period={"lon": 360})
    expected = cugrad.laplacian(da.values, lat, lon, accuracy=4, boundary=("edge", "periodic"),
                                period=(None, 360))
    same(lap.values, expected)
    mag = da.cugrad.gradient_magnitude("lon", boundary="periodic", period=360)
    same(mag.values, np.abs(da.cugrad.differentiate("lon", boundary="periodic",
                                                    period=360)).values)


def test_bad_input():
    ds = xr.Dataset({"u": field("u"), "v": field("v")})
    with pytest.raises(TypeError, match="mapping from each coordinate"):
        ds.cugrad.divergence(["u", "v"])
    with pytest.raises(ValueError, match="not data variables"):
        ds.cugrad.divergence({"x": "u", "y": "q"})
    with pytest.raises(ValueError, match="not found"):
        ds.u.cugrad.gradient_magnitude("lon")
    with pytest.raises(ValueError, match="2 or 3 components"):
        ds.cugrad.curl({"x": "u"})
    ds2 = xr.Dataset({"u": field("u"), "v": field("v").rename(x="x2")})
    with pytest.raises(ValueError, match="share their dimensions"):
        ds2.cugrad.divergence({"x": "u", "y": "v"})
