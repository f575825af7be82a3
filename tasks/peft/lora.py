"""LoRA: ``W x + (alpha/r) * B A dropout(x)`` on self-attention projections of a block.

Targets are projection roles (``query``, ``key``, ``value``, ``output``; default query and value),
mapped per family to the real linear layers. ``A`` is Kaiming-uniform and ``B`` zero, as in the
LoRA paper and HF PEFT, so the model is unchanged at initialisation. Size = rank ``r``;
parameters ``r * (in + out)`` per target. Module names (``lora_A``/``lora_B`` linears without
bias) mirror HF PEFT so that LoRA-only designs export to its format one to one.

Example:
    >>> import torch
    >>> wrapped = LoraLinear(torch.nn.Linear(8, 6), LoraConfig(rank=2))
    >>> sum(p.numel() for p in wrapped.lora.parameters())  # r * (in + out)
    28
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from tasks.peft.backbones import BlockHandles
from tasks.peft.design import DesignError, DesignOptions
from tasks.peft.registry import (
    Injection,
    InjectionContext,
    StoredTensor,
    StrategySpec,
    WrappedLinear,
    mark_injected,
    register_strategy,
)
from tasks.peft.strategies import LoraOptions


@dataclass(frozen=True, kw_only=True)
class LoraConfig(LoraOptions):
    """One LoRA update: the design-wide options plus this layer's rank."""

    rank: int = field(metadata={"help": "rank r of B A (the LoRA size)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise DesignError("rank", f"must be a positive integer, got {self.rank!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoraUpdate(nn.Module):
    """The low-rank update ``scaling * B A dropout(x)``."""

    def __init__(self, in_features: int, out_features: int, config: LoraConfig) -> None:
        super().__init__()
        self.lora_A = nn.Linear(in_features, config.rank, bias=False)
        self.lora_B = nn.Linear(config.rank, out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.scaling = config.scaling
        mark_injected(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(self.dropout(x))) * self.scaling


class LoraLinear(WrappedLinear):
    """A projection with a LoRA update added to its output."""

    def __init__(self, base: nn.Module, config: LoraConfig) -> None:
        super().__init__(base)
        self.lora = LoraUpdate(base.in_features, base.out_features, config).to(
            base.weight.device, base.weight.dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora(x)


def make_config(size: int, options: DesignOptions) -> LoraConfig:
    o = options.lora
    return LoraConfig(rank=size, alpha=o.alpha, dropout=o.dropout, targets=o.targets)


def inject(block: BlockHandles, config: LoraConfig, context: InjectionContext) -> Injection:
    stored = []
    for role in config.targets:
        owner, attr = block.projections[role]
        wrapped = LoraLinear(getattr(owner, attr), config)
        setattr(owner, attr, wrapped)
        stored += [
            StoredTensor(wrapped.lora.lora_A, "weight"),
            StoredTensor(wrapped.lora.lora_B, "weight"),
        ]
    return Injection(stored=stored)


SPEC = register_strategy(
    StrategySpec(
        name="lora", config_class=LoraConfig, make_config=make_config, inject=inject, order=1
    )
)
