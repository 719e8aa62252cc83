"""xarray support: ``import cugrad.xarray`` adds a ``cugrad`` accessor to DataArray and Dataset.

``obj.cugrad.differentiate(coord, edge_order, datetime_unit)`` is xarray's
``obj.differentiate(coord, edge_order, datetime_unit)`` computed by :func:`cugrad.gradient`: the
same values bit for bit, the same dims, coordinates, name and attributes, the same exceptions. Data
held in NumPy, dask (lazy, any chunking) or CuPy arrays (the result stays on the GPU) all work.
``obj.cugrad.gradient(dims)`` returns every partial derivative at once, stacked along a new leading
dimension labelled by the dimension names.

xarray is an optional dependency (``pip install ".[xarray]"`` in a cugrad checkout); ``import
cugrad`` does not import it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import xarray as xr

from cugrad import _xarray_core, _xarray_operators

__all__ = ["CugradDataArrayAccessor", "CugradDatasetAccessor"]

Boundary = Literal["edge", "periodic"]


class _Accessor:
    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def differentiate(
        self,
        coord: Hashable,
        edge_order: Literal[1, 2] = 1,
        datetime_unit: str | None = None,
        *,
        accuracy: int = 2,
        boundary: Boundary = "edge",
        period: float | None = None,
    ) -> Any:
        """Differentiate along a coordinate, exactly as xarray's ``differentiate`` does.

        Second-order central differences in the interior, first- or second-order one-sided
        differences at the ends (numpy.gradient's scheme), computed by :func:`cugrad.gradient`.

        Parameters
        ----------
        coord : hashable
            A 1-D coordinate, or a dimension (a dimension without a coordinate means unit
            spacing). Its values are the spacing; datetime64, timedelta64 and cftime coordinates
            are converted to numbers as xarray converts them.
        edge_order : {1, 2}, optional
            Accuracy of the one-sided differences at the ends.
        datetime_unit : {"W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as"}, optional
            Time unit of the denominator for a datetime coordinate. By default the coordinate's
            own unit for datetime64/timedelta64, seconds for cftime (xarray's defaults).
        accuracy : {2, 4, 6, 8}, optional
            Order of accuracy of the interior stencil (cugrad.gradient's option); 2 is xarray's.
        boundary : {"edge", "periodic"}, optional
            ``"periodic"`` wraps the stencil around the ends (e.g. longitude); ``"edge"`` is
            xarray's one-sided ends.
        period : float, optional
            Length of the periodic domain in coordinate units (360 for longitude in degrees),
            with ``boundary="periodic"`` on a coordinate.

        Returns
        -------
        DataArray or Dataset
            Like ``obj.differentiate(coord, edge_order, datetime_unit)``: every data variable
            that has the coordinate's dimension is differentiated (and, as in xarray, loses its
            attributes); everything else, coordinates and the Dataset's attributes included, is
            kept. Lazy for dask data, on the GPU for CuPy data.

        Raises
        ------
        ValueError
            As xarray: the coordinate is neither a variable nor a dimension, it is not 1-D,
            ``edge_order`` is above 2, or the dimension is too short for ``edge_order``.
        TypeError
            ``accuracy``/``boundary``/``period`` given to a cugrad.gradient that lacks them.

        See Also
        --------
        xarray.DataArray.differentiate : the reference this method reproduces.
        cugrad.gradient : the computation.

        Notes
        -----
        With the defaults ``accuracy=2, boundary="edge", period=None`` the result is xarray's, bit
        for bit; for dask data it equals the in-memory result for every chunking (xarray's own
        refuses chunks shorter than the stencil). The other options are passed to
        :func:`cugrad.gradient` only when they differ from these defaults.

        The coordinate's values decide the stencil weights when the work is planned, so a
        dask-backed (non-index) coordinate is computed at call time; it is 1-D, and the data
        stays lazy. With CuPy data the GPU computes, as cupy-xarray users expect; NumPy data is
        computed on the host (``cugrad.gradient``'s ``backend="auto"``).

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import cugrad.xarray
        >>> da = xr.DataArray(
        ...     np.arange(12).reshape(4, 3), dims=["x", "y"], coords={"x": [0, 0.1, 1.1, 1.2]}
        ... )
        >>> d = da.cugrad.differentiate("x")
        >>> d.values
        array([[30.        , 30.        , 30.        ],
               [27.54545455, 27.54545455, 27.54545455],
               [27.54545455, 27.54545455, 27.54545455],
               [30.        , 30.        , 30.        ]])
        >>> d.dims, d["x"].values.tolist()
        (('x', 'y'), [0.0, 0.1, 1.1, 1.2])
        >>> d.identical(da.differentiate("x"))
        True
        """
        return _xarray_core.differentiate(
            self._obj, coord, edge_order, datetime_unit, accuracy, boundary, period
        )

    def gradient(
        self,
        dims: Hashable | Sequence[Hashable] | None = None,
        edge_order: Literal[1, 2] = 1,
        datetime_unit: str | None = None,
        *,
        accuracy: int = 2,
        boundary: Boundary | Mapping[Hashable, Boundary] = "edge",
        period: float | Mapping[Hashable, float] | None = None,
        new_dim: Hashable = "gradient",
    ) -> Any:
        """Every partial derivative, stacked along a new leading dimension named ``new_dim``.

        ``result.sel({new_dim: name})`` is ``differentiate(name)`` of each variable that has
        ``name``'s dimension (the same values, bit for bit).

        Parameters
        ----------
        dims : hashable or sequence of hashable, optional
            Dimensions (or 1-D coordinates, one per dimension) to differentiate along, in the
            order of the result. Default: every dimension of the DataArray, or of the Dataset in
            the order of ``Dataset.sizes``.
        edge_order, datetime_unit, accuracy
            As in :meth:`differentiate`, for every dimension.
        boundary : {"edge", "periodic"} or mapping, optional
            One for all dims, or a mapping from names in ``dims`` to a boundary (the others
            ``"edge"``), e.g. ``{"lon": "periodic"}``.
        period : float or mapping, optional
            One for all dims, or a mapping from names in ``dims`` to a period, e.g.
            ``{"lon": 360}``.
        new_dim : hashable, optional
            Name of the new leading dimension; its coordinate holds the names in ``dims``.

        Returns
        -------
        DataArray or Dataset
            For a DataArray: a DataArray of dims ``(new_dim, *da.dims)``, with the name and the
            coordinates of the input plus the ``new_dim`` coordinate, without attributes (as
            ``differentiate`` drops them). For a Dataset: every data variable that has at least one
            of the dimensions becomes such an array (its partial along a dimension it lacks is 0:
            it is constant along it); the other variables and the attributes are kept.

        Raises
        ------
        ValueError
            What :meth:`differentiate` raises for a name; also two names on one dimension, a
            ``new_dim`` already in use, or a mapping naming something not in ``dims``.

        See Also
        --------
        differentiate : one partial derivative.
        cugrad.gradient : the computation (``stack=True``).

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import cugrad.xarray
        >>> da = xr.DataArray(
        ...     np.array([[1.0, 2.0, 6.0], [3.0, 4.0, 5.0]]),
        ...     dims=["y", "x"], coords={"x": [0.0, 1.0, 3.0]}, name="h",
        ... )
        >>> g = da.cugrad.gradient()
        >>> g.dims, g["gradient"].values.tolist()
        (('gradient', 'y', 'x'), ['y', 'x'])
        >>> g.sel(gradient="x").values
        array([[1.        , 1.33333333, 2.        ],
               [1.        , 0.83333333, 0.5       ]])
        >>> g.sel(gradient="x", drop=True).identical(da.differentiate("x"))
        True
        """
        return _xarray_core.gradient(
            self._obj, dims, edge_order, datetime_unit, accuracy, boundary, period, new_dim
        )


@xr.register_dataarray_accessor("cugrad")
class CugradDataArrayAccessor(_Accessor):
    """``DataArray.cugrad``: :meth:`differentiate`, :meth:`gradient`, :meth:`gradient_magnitude`
    and :meth:`laplacian` computed by cugrad."""

    def gradient_magnitude(
        self,
        dims: Hashable | Sequence[Hashable] | None = None,
        edge_order: Literal[1, 2] = 1,
        datetime_unit: str | None = None,
        *,
        accuracy: int = 2,
        boundary: Boundary | Mapping[Hashable, Boundary] = "edge",
        period: float | Mapping[Hashable, float] | None = None,
    ) -> xr.DataArray:
        """``sqrt((d0*d0 + d1*d1) + ...)`` of the partials along ``dims``, in one pass.

        ``d_k`` is ``differentiate(dims[k])``: the result equals that composition bit for bit (see
        :func:`cugrad.gradient_magnitude`). Names, ``boundary`` and ``period`` (one value, or a
        mapping by name) as in :meth:`gradient`. Dims, coordinates and name of the input, no
        attributes.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import cugrad.xarray
        >>> da = xr.DataArray(np.array([[0.0, 3.0, 6.0], [4.0, 7.0, 10.0]]), dims=["y", "x"])
        >>> da.cugrad.gradient_magnitude().values
        array([[5., 5., 5.],
               [5., 5., 5.]])
        """
        return _xarray_operators.magnitude_or_laplacian(
            self._obj, "magnitude", dims, edge_order, datetime_unit, accuracy, boundary, period
        )

    def laplacian(
        self,
        dims: Hashable | Sequence[Hashable] | None = None,
        datetime_unit: str | None = None,
        *,
        accuracy: int = 2,
        boundary: Boundary | Mapping[Hashable, Boundary] = "edge",
        period: float | Mapping[Hashable, float] | None = None,
    ) -> xr.DataArray:
        """The sum of second derivatives along ``dims`` (:func:`cugrad.laplacian`), by name.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import cugrad.xarray
        >>> x = np.arange(5.0)
        >>> xr.DataArray(x**3, dims="x", coords={"x": x}).cugrad.laplacian().values
        array([ 0.,  6., 12., 18., 24.])
        """
        return _xarray_operators.magnitude_or_laplacian(
            self._obj, "laplacian", dims, 1, datetime_unit, accuracy, boundary, period
        )


@xr.register_dataset_accessor("cugrad")
class CugradDatasetAccessor(_Accessor):
    """``Dataset.cugrad``: :meth:`differentiate`, :meth:`gradient`, :meth:`divergence` and
    :meth:`curl` computed by cugrad."""

    def divergence(
        self,
        components: Mapping[Hashable, Hashable],
        edge_order: Literal[1, 2] = 1,
        datetime_unit: str | None = None,
        *,
        accuracy: int = 2,
        boundary: Boundary | Mapping[Hashable, Boundary] = "edge",
        period: float | Mapping[Hashable, float] | None = None,
    ) -> xr.DataArray:
        """The divergence of the vector field whose components are Dataset variables.

        ``components`` maps each coordinate (or dimension) to the variable of the component along
        it, e.g. ``{"x": "u", "y": "v"}``; the result, a DataArray named ``"divergence"``, equals
        ``ds.u.differentiate("x") + ds.v.differentiate("y")`` bit for bit.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import cugrad.xarray
        >>> y, x = np.mgrid[0:3, 0:4].astype(float)
        >>> ds = xr.Dataset({"u": (("y", "x"), 3 * x), "v": (("y", "x"), 2 * y)})
        >>> ds.cugrad.divergence({"x": "u", "y": "v"}).values
        array([[5., 5., 5., 5.],
               [5., 5., 5., 5.],
               [5., 5., 5., 5.]])
        """
        return _xarray_operators.vector_operator(
            self._obj, "divergence", components, edge_order, datetime_unit, accuracy, boundary,
            period,
        )

    def curl(
        self,
        components: Mapping[Hashable, Hashable],
        edge_order: Literal[1, 2] = 1,
        datetime_unit: str | None = None,
        *,
        accuracy: int = 2,
        boundary: Boundary | Mapping[Hashable, Boundary] = "edge",
        period: float | Mapping[Hashable, float] | None = None,
    ) -> xr.DataArray | xr.Dataset:
        """The curl of a 2-D or 3-D vector field of Dataset variables (:func:`cugrad.curl`).

        ``components`` maps the coordinates ``a, b`` (or ``a, b, c``) to the variables of the
        components along them. Two: a DataArray named ``"curl"``, ``dFb/da - dFa/db`` (with
        ``{"x": "u", "y": "v"}`` the vorticity ``dv/dx - du/dy``). Three: a Dataset of
        ``curl_a``, ``curl_b``, ``curl_c`` (``dFc/db - dFb/dc``, ...), right-handed for
        ``{"x": .., "y": .., "z": ..}``.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import cugrad.xarray
        >>> y, x = np.mgrid[0:3, 0:4].astype(float)
        >>> ds = xr.Dataset({"u": (("y", "x"), -y), "v": (("y", "x"), x)})
        >>> ds.cugrad.curl({"x": "u", "y": "v"}).values
        array([[2., 2., 2., 2.],
               [2., 2., 2., 2.],
               [2., 2., 2., 2.]])
        """
        return _xarray_operators.vector_operator(
            self._obj, "curl", components, edge_order, datetime_unit, accuracy, boundary, period
        )
