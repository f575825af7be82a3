"""The torch side of the strategies: the contract between the engine and the strategy modules.

A strategy's descriptor (name, code, options, cost) is defined once in ``tasks.peft.strategies``;
its torch module (``adapter.py``, ``prefix.py``, ``bitfit.py``, ``lora.py``, named by the
descriptor's ``implementation``) defines a dataclass config and an ``inject`` function and
registers both here under the same name. The engine looks strategies up by the names used in a
design and never imports the modules directly.

Example (looking a registered strategy up):
    >>> from tasks.peft.registry import get_strategy
    >>> from tasks.peft.design import DesignOptions
    >>> spec = get_strategy("lora")
    >>> spec.make_config(4, DesignOptions()).rank
    4
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tasks.peft.backbones import BlockHandles
from tasks.peft.design import DesignError, DesignOptions
from tasks.peft.strategies import names as strategy_names
from tasks.peft.strategies import registered as registered_strategies


@dataclass
class StoredTensor:
    """One tensor a strategy stores after training: ``owner.<name>``.

    Owners that compute the tensor (a reparameterised prefix) implement ``stored_tensor(name)``;
    otherwise the tensor is the parameter ``getattr(owner, name)``.
    """

    owner: nn.Module
    name: str

    def value(self) -> torch.Tensor:
        getter = getattr(self.owner, "stored_tensor", None)
        return getter(self.name) if getter is not None else getattr(self.owner, self.name)

    def parameter(self) -> nn.Parameter | None:
        """The trainable parameter behind this tensor, or None when it is computed."""
        p = self.owner._parameters.get(self.name)
        return p if isinstance(p, nn.Parameter) else None


@dataclass
class Injection:
    """What one strategy added to one layer: stored tensors and training-only parameters."""

    stored: list[StoredTensor] = field(default_factory=list)
    training_only: list[nn.Parameter] = field(default_factory=list)


@dataclass
class InjectionContext:
    """Model-wide state shared by the injections of one ``apply`` call."""

    model: nn.Module
    # Prefix: when False, prefixes are plain parameters even if the design reparameterises them
    # (used when loading a saved, already folded design).
    reparameterize_prefix: bool = True
    shared: dict[str, Any] = field(default_factory=dict)
    # The design being applied and the backbone's shape, for strategies whose modules are shared
    # across layers and sized by the whole design (the prefix reparameterisation).
    design: Any = None
    shape: Any = None


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: its config class, how a design's size becomes a config, injection."""

    name: str
    config_class: type
    make_config: Callable[[int, DesignOptions], Any]
    inject: Callable[[BlockHandles, Any, InjectionContext], Injection]
    # Lower runs first on a layer: BitFit must see the original linears before they are wrapped.
    order: int = 0


STRATEGY_REGISTRY: dict[str, StrategySpec] = {}


def register_strategy(spec: StrategySpec) -> StrategySpec:
    """Register ``spec`` under ``spec.name``; re-registering the same name is an error."""
    if spec.name in STRATEGY_REGISTRY and STRATEGY_REGISTRY[spec.name] is not spec:
        raise ValueError(f"strategy {spec.name!r} is already registered")
    STRATEGY_REGISTRY[spec.name] = spec
    return spec


def get_strategy(name: str) -> StrategySpec:
    """The registered strategy ``name``; ``DesignError`` naming ``strategy`` if unknown."""
    if name not in STRATEGY_REGISTRY:
        modules = {s.name: s.implementation for s in registered_strategies()}
        if name not in modules:
            raise DesignError(
                "strategy", f"unknown strategy {name!r}; known: {list(strategy_names())}"
            )
        importlib.import_module(modules[name])
    return STRATEGY_REGISTRY[name]


def mark_injected(module: nn.Module) -> nn.Module:
    """Tag ``module`` as added by a strategy (not part of the backbone)."""
    module._pefs_injected = True
    return module


class WrappedLinear(nn.Module):
    """Base for strategies that wrap an ``nn.Linear`` in place (LoRA, adapter).

    Exposes the wrapped layer's ``weight``/``bias``/sizes because model code reads them
    (e.g. T5's feed-forward checks ``self.wo.weight.dtype``).
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features
