"""The usage examples in the engine's docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "strategies",
    "budget",
    "design",
    "registry",
    "adapter",
    "prefix",
    "bitfit",
    "lora",
    "engine",
    "backbones",
    "__init__",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module("tasks.peft" if name == "__init__" else f"tasks.peft.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
