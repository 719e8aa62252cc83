"""Plans of the derived operators: gradient magnitude, divergence, curl and Laplacian.

Each operator is a set of terms (derivatives of its input arrays, described by the same axis plans
the gradient uses) and how they combine (see :class:`cugrad._plan.FusedOutput`). The first
derivatives come from :func:`cugrad._plan.make_plan`, so every spacing form, ``edge_order``,
``accuracy``, ``boundary`` and ``period`` mean exactly what they mean for :func:`cugrad.gradient`;
the Laplacian's second derivatives from the same function with ``deriv=2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cugrad._plan import FusedOutput, OperatorPlan, Term, make_plan, normalize_axes


def magnitude_plan(f: Any, varargs, axis, edge_order, options) -> OperatorPlan:
    """``sqrt((g0*g0 + g1*g1) + ...)`` of the gradient's results in axis order."""
    gp = make_plan(f, varargs, axis, edge_order, **options)
    if gp.out_dtype.kind == "c":
        raise TypeError(
            f"gradient_magnitude needs real data, got dtype {f.dtype}: take the magnitude of the "
            "real and imaginary parts separately, or abs() of each gradient component"
        )
    if not gp.axis_plans:
        raise ValueError("gradient_magnitude needs at least one axis to differentiate")
    terms = tuple(Term(0, ap) for ap in gp.axis_plans)
    return OperatorPlan(gp.shape, gp.data_dtype, gp.out_dtype, 1,
                        (FusedOutput(terms, "magnitude"),))


def component_axes(k: int, shape: tuple[int, ...], axis: Any, what: str) -> tuple[int, ...]:
    """The axes of a k-component operator: one per component, every axis of S by default."""
    axes = normalize_axes(axis, len(shape))
    if len(axes) != k:
        given = "every axis of the components" if axis is None else f"axis={axis!r}"
        raise ValueError(
            f"{what} of {k} components needs {k} axes, one per component, but {given} gives "
            f"{len(axes)} for components of shape {shape}: pass axis= with {k} axes"
        )
    return axes


def divergence_plan(f: Any, k: int, varargs, axis, edge_order, options) -> OperatorPlan:
    """``(dF0/da0 + dF1/da1) + ...``: component i along ``axis[i]``."""
    axes = component_axes(k, tuple(f.shape), axis, "divergence")
    gp = make_plan(f, varargs, axes, edge_order, **options)
    terms = tuple(Term(i, ap) for i, ap in enumerate(gp.axis_plans))
    return OperatorPlan(gp.shape, gp.data_dtype, gp.out_dtype, k, (FusedOutput(terms, "sum"),))


def curl_plan(f: Any, k: int, varargs, axis, edge_order, options) -> OperatorPlan:
    """k = 2: ``dFb/da - dFa/db``; k = 3: the three components of the right-handed curl."""
    if k not in (2, 3):
        raise ValueError(f"curl needs 2 or 3 components (a 2-D or 3-D vector field), got {k}")
    axes = component_axes(k, tuple(f.shape), axis, "curl")
    gp = make_plan(f, varargs, axes, edge_order, **options)
    if k == 2:
        pa, pb = gp.axis_plans
        outputs = (FusedOutput((Term(1, pa), Term(0, pb)), "difference"),)
    else:
        pa, pb, pc = gp.axis_plans
        outputs = (
            FusedOutput((Term(2, pb), Term(1, pc)), "difference"),
            FusedOutput((Term(0, pc), Term(2, pa)), "difference"),
            FusedOutput((Term(1, pa), Term(0, pb)), "difference"),
        )
    return OperatorPlan(gp.shape, gp.data_dtype, gp.out_dtype, k, outputs)


def laplacian_plan(f: Any, varargs, axis, options) -> OperatorPlan:
    """``(d2f/da0^2 + d2f/da1^2) + ...`` over ``axis``, in axis order."""
    gp = make_plan(f, varargs, axis, 1, deriv=2, **options)
    if not gp.axis_plans:
        raise ValueError("laplacian needs at least one axis to differentiate")
    terms = tuple(Term(0, ap) for ap in gp.axis_plans)
    return OperatorPlan(gp.shape, gp.data_dtype, gp.out_dtype, 1, (FusedOutput(terms, "sum"),))


def check_components(components: list[Any]) -> None:
    """Components of one shape and one dtype."""
    if not components:
        raise ValueError("the vector field has no components")
    shape, dtype = tuple(components[0].shape), np.dtype(components[0].dtype)
    for i, c in enumerate(components[1:], start=1):
        if tuple(c.shape) != shape:
            raise ValueError(
                f"component {i} has shape {tuple(c.shape)} but component 0 has {shape}: every "
                "component must have the same shape"
            )
        if np.dtype(c.dtype) != dtype:
            raise TypeError(
                f"component {i} has dtype {c.dtype} but component 0 has {dtype}: convert the "
                "components to one dtype first"
            )
