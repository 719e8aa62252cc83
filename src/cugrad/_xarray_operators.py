"""The derived operators by dimension name, behind the ``cugrad`` xarray accessor.

Names resolve to (dimension, spacing, datetime unit) exactly as ``differentiate`` resolves them
(:func:`cugrad._xarray_core._resolve`), and the work is one call of the array function
(:func:`cugrad.gradient_magnitude`, :func:`cugrad.laplacian`, :func:`cugrad.divergence`,
:func:`cugrad.curl`) on the variables' data, NumPy, dask or CuPy alike. Results carry the input's
dims and coordinates and, as ``differentiate``'s, no attributes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import xarray as xr

import cugrad
from cugrad._xarray_core import (
    _THIS_ARRAY,
    _assemble,
    _numeric_data,
    _one_or_each,
    _per_name,
    _resolve,
)


def _names(obj: xr.DataArray, dims: Any) -> list[Hashable]:
    if dims is None:
        return list(obj.dims)
    if isinstance(dims, str) or not isinstance(dims, Iterable):
        return [dims]
    names = list(dims)
    if len(set(names)) != len(names):
        raise ValueError(f"dims {names!r} names a coordinate twice; give each once")
    return names


def _axis_args(obj: Any, names: list[Hashable], variable: xr.Variable, datetime_unit: Any,
               accuracy: Any, boundary: Any, period: Any) -> tuple[Any, list[Any], dict, Any]:
    """(data, spacing per axis, keyword arguments, datetime unit) for an array function."""
    resolved = [_resolve(obj, n, datetime_unit) for n in names]
    dims = [r[0] for r in resolved]
    if len(set(dims)) != len(dims):
        raise ValueError(f"{names!r} name one dimension twice; give one coordinate per dimension")
    missing = [d for d in dims if d not in variable.dims]
    if missing:
        raise ValueError(f"dimensions {missing!r} are not dimensions of the data {variable.dims}")
    boundaries = _per_name(boundary, names, "edge", "boundary")
    periods = _per_name(period, names, None, "period")
    kwargs = {
        "axis": tuple(variable.get_axis_num(d) for d in dims),
        "accuracy": accuracy,
        "boundary": _one_or_each([boundaries[n] for n in names]),
        "period": _one_or_each([periods[n] for n in names]),
    }
    unit = resolved[0][2] if resolved else datetime_unit
    return _numeric_data(variable, unit), [r[1] for r in resolved], kwargs, unit


def magnitude_or_laplacian(obj: xr.DataArray, which: str, dims: Any, edge_order: Any,
                           datetime_unit: Any, accuracy: Any, boundary: Any, period: Any) -> Any:
    """``gradient_magnitude`` or ``laplacian`` of a DataArray over the named dimensions."""
    names = _names(obj, dims)
    data, spacing, kwargs, _ = _axis_args(obj, names, obj.variable, datetime_unit, accuracy,
                                          boundary, period)
    if which == "magnitude":
        result = cugrad.gradient_magnitude(data, *spacing, edge_order=edge_order, **kwargs)
    else:
        result = cugrad.laplacian(data, *spacing, **kwargs)
    return _assemble(obj, {_THIS_ARRAY: xr.Variable(obj.dims, result)}, {})


def vector_operator(ds: xr.Dataset, which: str, components: Any, edge_order: Any,
                    datetime_unit: Any, accuracy: Any, boundary: Any, period: Any) -> Any:
    """``divergence`` or ``curl`` of the Dataset variables named in ``components``.

    ``components`` maps a coordinate (or dimension) name to the variable holding the vector
    component along it, in the order of the axes (``{"x": "u", "y": "v"}``).
    """
    if not isinstance(components, Mapping) or not components:
        raise TypeError(
            f"{which} takes a mapping from each coordinate to the variable of the component along "
            "it, in axis order, e.g. {'x': 'u', 'y': 'v'}"
        )
    names = list(components)
    unknown = [v for v in components.values() if v not in ds.data_vars]
    if unknown:
        raise ValueError(f"components name {unknown!r}, which are not data variables of the "
                         f"Dataset {list(ds.data_vars)!r}")
    first = ds[components[names[0]]]
    variables = []
    for name in components.values():
        var = ds[name]
        if set(var.dims) != set(first.dims) or var.shape != first.transpose(*var.dims).shape:
            raise ValueError(
                f"component {name!r} has dims {dict(var.sizes)} but {components[names[0]]!r} has "
                f"{dict(first.sizes)}: the components must share their dimensions"
            )
        variables.append(var.transpose(*first.dims).variable)
    data, spacing, kwargs, unit = _axis_args(ds, names, variables[0], datetime_unit, accuracy,
                                             boundary, period)
    fields = [data] + [_numeric_data(v, unit) for v in variables[1:]]
    coords = first.coords
    if which == "divergence":
        result = cugrad.divergence(fields, *spacing, edge_order=edge_order, **kwargs)
        return xr.DataArray(result, coords=coords, dims=first.dims, name="divergence")
    result = cugrad.curl(fields, *spacing, edge_order=edge_order, **kwargs)
    if len(names) == 2:
        return xr.DataArray(result, coords=coords, dims=first.dims, name="curl")
    return xr.Dataset(
        {f"curl_{n}": xr.Variable(first.dims, r) for n, r in zip(names, result, strict=True)},
        coords=coords,
    )
