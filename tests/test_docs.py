"""The examples in README.md and in the public docstrings run and print what they say.

Each example's printed value is written out by hand in the docs (from the seed texts' worked
examples); the test also compares every README example with numpy.gradient itself, so a wrong
literal in the docs cannot hide a wrong result.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import cugrad
from cugrad import _api

README = Path(__file__).resolve().parents[1] / "README.md"
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


@pytest.mark.skipif(not README.exists(), reason="README.md is not next to the tests (installed copy)")
def test_readme_examples_run() -> None:
    failures, tried = doctest.testfile(str(README), module_relative=False, optionflags=FLAGS)
    assert tried > 10
    assert failures == 0


def test_gradient_docstring_examples_run() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = finder.find(_api.gradient, "gradient", globs={"np": np, "cugrad": cugrad})
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    assert runner.failures == 0


@pytest.mark.skipif(not README.exists(), reason="README.md is not next to the tests (installed copy)")
def test_readme_examples_equal_numpy() -> None:
    # Re-run every README example with np.gradient in place of cugrad.gradient: the printed output
    # must be the same, so the documented values are numpy's values.
    parser = doctest.DocTestParser()
    test = parser.get_doctest(README.read_text(), {}, "README", str(README), 0)
    for example in test.examples:
        example.source = example.source.replace("cugrad.gradient(", "np.gradient(")
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    assert runner.failures == 0
