"""BitFit: the bias terms of a block become trainable.

Every existing bias of the block's modules (linears and layer norms, including a decoder block's
cross-attention) is unfrozen. T5 blocks have no biases at all, so there BitFit *adds* a
zero-initialised bias to every linear layer of the block (attention q/k/v/o, cross-attention in
decoder blocks, feed-forward wi/wo), which leaves the model unchanged at initialisation; T5's
RMS norms stay bias-free. ``LayerShape.bitfit_params`` counts exactly these tensors. No size knob:
a design says ``"bitfit": true``.

Example:
    >>> BitFitConfig().size
    1
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tasks.peft.backbones import BlockHandles, bitfit_targets
from tasks.peft.design import DesignError, DesignOptions
from tasks.peft.registry import (
    Injection,
    InjectionContext,
    StoredTensor,
    StrategySpec,
    register_strategy,
)


@dataclass(frozen=True, kw_only=True)
class BitFitConfig:
    """BitFit has no size; ``size`` exists so that every strategy is built the same way."""

    size: int = field(
        default=1, metadata={"help": "always 1: BitFit's size is fixed by the architecture"}
    )

    def __post_init__(self) -> None:
        if self.size != 1:
            raise DesignError("size", f"BitFit has no size knob (use true), got {self.size!r}")


def make_config(size: int, options: DesignOptions) -> BitFitConfig:
    return BitFitConfig(size=int(size))


def inject(block: BlockHandles, config: BitFitConfig, context: InjectionContext) -> Injection:
    stored = []
    for module, name in bitfit_targets(block.block):
        bias = module._parameters.get(name)
        if bias is None:
            weight = module.weight
            bias = nn.Parameter(
                torch.zeros(module.out_features, device=weight.device, dtype=weight.dtype)
            )
            bias._pefs_added = True  # not a backbone parameter (introspect skips it)
            module.register_parameter(name, bias)
        bias.requires_grad_(True)
        stored.append(StoredTensor(module, name))
    return Injection(stored=stored)


SPEC = register_strategy(
    StrategySpec(
        name="bitfit", config_class=BitFitConfig, make_config=make_config, inject=inject, order=0
    )
)
