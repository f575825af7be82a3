"""Adapter: a bottleneck MLP with a residual, after the feed-forward sublayer of a block.

``y = f(x); y + up(act(down(y)))`` where ``f`` is the block's feed-forward output projection
(BERT/RoBERTa ``output.dense``, T5 ``wo``, BART ``fc2``), i.e. before the sublayer's residual
add and normalisation (Pfeiffer placement). The up-projection starts at zero so the model is
unchanged at initialisation. Size = bottleneck width ``m``; parameters ``2*d*m + m + d``.

Example:
    >>> import torch
    >>> wrapped = AdapterLinear(torch.nn.Linear(8, 8), AdapterConfig(bottleneck=2))
    >>> x = torch.randn(3, 8)
    >>> torch.equal(wrapped(x), wrapped.base(x))  # identity at initialisation
    True
"""

from __future__ import annotations

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
from tasks.peft.strategies import AdapterOptions

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


@dataclass(frozen=True, kw_only=True)
class AdapterConfig(AdapterOptions):
    """One adapter: the design-wide options plus this layer's bottleneck width."""

    bottleneck: int = field(metadata={"help": "bottleneck width m (the adapter's size)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.bottleneck, bool)
            or not isinstance(self.bottleneck, int)
            or self.bottleneck < 1
        ):
            raise DesignError("bottleneck", f"must be a positive integer, got {self.bottleneck!r}")


class Adapter(nn.Module):
    """The bottleneck ``up(act(down(h)))``; the caller adds the residual."""

    def __init__(self, width: int, config: AdapterConfig) -> None:
        super().__init__()
        self.down = nn.Linear(width, config.bottleneck)
        self.act = ACTIVATION_MODULES[config.activation]()
        self.up = nn.Linear(config.bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        mark_injected(self)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(h)))


class AdapterLinear(WrappedLinear):
    """The feed-forward output projection followed by a residual adapter."""

    def __init__(self, base: nn.Module, config: AdapterConfig) -> None:
        super().__init__(base)
        self.adapter = Adapter(base.out_features, config).to(base.weight.device, base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y + self.adapter(y)


def make_config(size: int, options: DesignOptions) -> AdapterConfig:
    return AdapterConfig(bottleneck=size, activation=options.adapter.activation)


def inject(block: BlockHandles, config: AdapterConfig, context: InjectionContext) -> Injection:
    owner, attr = block.ffn_output
    wrapped = AdapterLinear(getattr(owner, attr), config)
    setattr(owner, attr, wrapped)
    adapter = wrapped.adapter
    return Injection(
        stored=[StoredTensor(m, n) for m in (adapter.down, adapter.up) for n in ("weight", "bias")]
    )


SPEC = register_strategy(
    StrategySpec(
        name="adapter", config_class=AdapterConfig, make_config=make_config, inject=inject, order=2
    )
)
