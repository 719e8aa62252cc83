"""The worked examples of the two seed texts, as literals, against cugrad and numpy.

Each example is checked twice: against the values the text states, and against
numpy.gradient on the same arguments (the oracle).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same

import cugrad


def check(expected_literal, f, *varargs, **kwargs):
    """cugrad equals the text's numbers and numpy.gradient, bit for bit."""
    result = cugrad.gradient(f, *varargs, **kwargs)
    assert_same(result, np.gradient(f, *varargs, **kwargs))
    if isinstance(expected_literal, tuple):
        assert len(result) == len(expected_literal)
        for r, e in zip(result, expected_literal, strict=True):
            np.testing.assert_array_equal(r, np.array(e, dtype=float))
    else:
        np.testing.assert_array_equal(result, np.array(expected_literal, dtype=float))
    return result


# --- Kodeclik blog: "Calculating numerical gradients using numpy.gradient()" ---------------
# The cube x*x*x is mapped over the x-values [1, 2, 3]; the text explains the output
# [7, 13, 19] as (8-1)/(2-1), (27-1)/(3-1) and (27-8)/(3-2).

XVALUES = np.array([1, 2, 3])
YVALUES = np.array([1, 8, 27])  # x*x*x for each x-value


def test_cube_without_x_values():
    assert np.array_equal(XVALUES**3, YVALUES)
    check([7.0, 13.0, 19.0], YVALUES)


def test_cube_with_x_values():
    # "We can pass on explicitly x-values ... This will give the same output as before"
    check([7.0, 13.0, 19.0], YVALUES, XVALUES)


def test_cube_is_not_the_analytic_derivative():
    # The text contrasts the result with 3*x*x = [3, 12, 27]: only x=2 is close.
    result = cugrad.gradient(YVALUES, XVALUES)
    assert not np.array_equal(result, 3 * XVALUES**2)


# The 2-D field: the code and output are not in the text, only the explanation "along
# the x-axis, all ratios of differences amount to 3 (e.g., (4-1)/(2-1)). Along the y-axis,
# they all amount to 1 (e.g., (5-4)/(5-4))." Rows [1, 2, 3] and [4, 5, 6] fit every word:
# going down a column (numpy's axis 0, the blog's "x") the values step 1 -> 4, a
# difference of 3 per row; going along a row (axis 1, the blog's "y") they step 4 -> 5,
# a difference of 1 per column. The denominators (2-1) and (5-4) read naturally as the
# coordinates x = [1, 2] for the rows and y = [4, 5, 6] for the columns (unit steps), so
# the example is checked with unit spacing and with those coordinates: same result.
FIELD = np.array([[1, 2, 3], [4, 5, 6]])
FIELD_GRADIENT = ([[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])


def test_2d_field_unit_spacing():
    check(FIELD_GRADIENT, FIELD)


def test_2d_field_with_coordinates():
    check(FIELD_GRADIENT, FIELD, np.array([1, 2]), np.array([4, 5, 6]))


def test_2d_field_single_axes():
    check(FIELD_GRADIENT[0], FIELD, axis=0)
    check(FIELD_GRADIENT[1], FIELD, axis=1)


# --- Q&A thread: "What does numpy.gradient do?" ------------------------------------------


def test_documentation_example_y():
    # y = [1, 2, 4, 7, 11, 16] -> [1, 1.5, 2.5, 3.5, 4.5, 5] (the text's dtype=np.float is
    # gone from NumPy 2; it meant the builtin float, i.e. float64).
    y = np.array([1, 2, 4, 7, 11, 16], dtype=float)
    check([1.0, 1.5, 2.5, 3.5, 4.5, 5.0], y)
    # The text's hand computation: first differences at the ends, halved central ones.
    assert (2 - 1) / 1 == 1 and (4 - 1) / 2 == 1.5 and (16 - 11) / 1 == 5


F_EXAMPLE = np.array([5, 7, 4, 8])


def test_example_1_unit_spacing():
    # f'(0) = (7-5)/1 = 2, f'(1) = (4-5)/(2*1) = -0.5, f'(2) = (8-7)/(2*1) = 0.5,
    # f'(3) = (8-4)/1 = 4.
    check([2.0, -0.5, 0.5, 4.0], F_EXAMPLE)


def test_example_2_spacing_half_doubles_everything():
    # "The net effect is to replace h = 1 with h = 0.5 and all the results will be doubled."
    result = check([4.0, -1.0, 1.0, 8.0], F_EXAMPLE, 0.5)
    np.testing.assert_array_equal(result, 2 * cugrad.gradient(F_EXAMPLE))


@pytest.mark.parametrize("edge_order", [1, 2])
def test_example_3_nonuniform_coordinates(edge_order):
    # f(0) = 5, f(1) = 7, f(3) = 4, f(3.5) = 8; the text gives no numbers, so numpy's
    # are the reference, plus the first-order edges written out by hand.
    x = np.array([0, 1, 3, 3.5])
    result = cugrad.gradient(F_EXAMPLE, x, edge_order=edge_order)
    assert_same(result, np.gradient(F_EXAMPLE, x, edge_order=edge_order))
    if edge_order == 1:
        assert result[0] == (7 - 5) / (1 - 0)
        assert result[-1] == (8 - 4) / (3.5 - 3)


def test_2d_input_gives_partial_derivatives():
    # "if your input is a 2d array ... output the arrays of discretized partial derivatives"
    f = np.array([[5, 7, 4, 8], [6, 9, 1, 0], [2, 2, 3, 5]])
    result = cugrad.gradient(f)
    assert type(result) is tuple and len(result) == 2
    assert_same(result, np.gradient(f))
