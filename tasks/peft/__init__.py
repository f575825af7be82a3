"""PEFT engine: per-layer Adapter / Prefix / BitFit / LoRA with exact parameter budgets.

Import-light on purpose: ``import tasks.peft`` (and ``tasks.peft.budget`` / ``tasks.peft.design``)
never imports torch, so the web process and the design-space sampler stay cheap. The torch-side
names below are resolved on first attribute access.

Example:
    >>> import tasks.peft as peft
    >>> peft.STRATEGIES
    ('adapter', 'prefix', 'bitfit', 'lora')
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # pure Python
    "STRATEGIES": "tasks.peft.budget",
    "Strategy": "tasks.peft.strategies",
    "BackboneShape": "tasks.peft.budget",
    "LayerShape": "tasks.peft.budget",
    "InfeasibleBudget": "tasks.peft.budget",
    "SolvedSizes": "tasks.peft.budget",
    "solve_sizes": "tasks.peft.budget",
    "strategy_params": "tasks.peft.budget",
    "SCHEMA": "tasks.peft.design",
    "Design": "tasks.peft.design",
    "DesignError": "tasks.peft.design",
    "HeadSpec": "tasks.peft.design",
    "design_from_sizes": "tasks.peft.design",
    # torch side
    "Backbone": "tasks.peft.backbones",
    "UnsupportedModel": "tasks.peft.backbones",
    "load_backbone": "tasks.peft.backbones",
    "introspect": "tasks.peft.backbones",
    "pick_device": "tasks.peft.backbones",
    "autocast": "tasks.peft.backbones",
    "ApplyReport": "tasks.peft.engine",
    "apply": "tasks.peft.engine",
    "save": "tasks.peft.persistence",
    "load": "tasks.peft.persistence",
    "load_result": "tasks.peft.persistence",
    "WeightsMismatch": "tasks.peft.persistence",
    "export_peft": "tasks.peft.persistence",
    "NotExpressible": "tasks.peft.persistence",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tasks.peft' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
