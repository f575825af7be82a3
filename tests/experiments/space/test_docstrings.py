"""The examples in the library's docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "aliases",
    "allocation",
    "compiling",
    "errors",
    "grouping",
    "halving",
    "planning",
    "presets",
    "sampling",
    "space",
    "stages",
    "stats",
    "subsets",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"experiments.space.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
