"""Prefix tuning: learned key/value vectors prepended to self-attention of chosen layers.

Injection is per attention module and leaves layers without a prefix untouched: the module that
carries a prefix gets its own copy of the model config whose ``_attn_implementation`` names
``"pefs_prefix"``, an attention function registered with transformers' ``AttentionInterface``.
That function prepends the prefix keys/values (already in head layout), extends the attention
mask (and T5's relative position bias) with "attend" columns, and then calls the attention
implementation the model was using (``sdpa`` or ``eager``, the module's own eager function).
This works for every family whose attention modules dispatch through the interface, which is the
case for BERT, RoBERTa, T5 and BART in transformers 5.

Reparameterisation (``options.prefix.reparameterize``): during training each prefix is
``MLP(inputs)`` where ``inputs`` is a per-layer ``(length, kv_dim)`` matrix and the two-layer tanh
MLP (kv_dim -> mlp_hidden -> 2*kv_dim) is shared by all layers, as in Li & Liang (2021) and HF
PEFT's prefix projection. Both are training-only: ``save`` stores the folded plain prefixes, and
only those count towards the budget (``2 * length * kv_dim`` per layer).

Sizing (when ``options.prefix.mlp_hidden`` is absent): a prefix trains no more parameters than it
stores, so designs with and without prefixes are compared at the same training capacity; the
MLP's width is ``tasks.peft.strategies.prefix_reparameterization_width`` of the design's prefixes
of that ``kv_dim``, and too narrow an MLP (under 8 units) means plain prefixes.

Example:
    >>> import torch
    >>> prefix = Prefix(PrefixConfig(length=3, reparameterize=False), num_heads=2, head_dim=4)
    >>> prefix.stored_tensor("key").shape, prefix.expand(5, torch.float32)[0].shape
    (torch.Size([3, 8]), torch.Size([5, 2, 3, 4]))
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from tasks.peft.backbones import BlockHandles
from tasks.peft.design import DesignError, DesignOptions
from tasks.peft.registry import (
    Injection,
    InjectionContext,
    StoredTensor,
    StrategySpec,
    mark_injected,
    register_strategy,
)
from tasks.peft.strategies import PrefixOptions, prefix_reparameterization_width

ATTENTION_NAME = "pefs_prefix"
SUPPORTED_BASE_ATTENTION = ("eager", "sdpa")


@dataclass(frozen=True, kw_only=True)
class PrefixConfig(PrefixOptions):
    """One prefix: the design-wide options plus this layer's prefix length."""

    length: int = field(metadata={"help": "number of prefix key/value vectors (the prefix size)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise DesignError("length", f"must be a positive integer, got {self.length!r}")


class PrefixReparameterization(nn.Module):
    """The shared training-time MLP ``inputs -> (key | value)``."""

    def __init__(self, kv_dim: int, hidden: int) -> None:
        super().__init__()
        self.kv_dim = kv_dim
        self.net = nn.Sequential(
            nn.Linear(kv_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * kv_dim)
        )
        mark_injected(self)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key, value = self.net(inputs).split(self.kv_dim, dim=-1)
        return key, value


class Prefix(nn.Module):
    """The prefix of one attention module, plain or reparameterised."""

    def __init__(
        self,
        config: PrefixConfig,
        num_heads: int,
        head_dim: int,
        mlp: PrefixReparameterization | None = None,
        base_implementation: str = "sdpa",
    ) -> None:
        super().__init__()
        self.length, self.num_heads, self.head_dim = config.length, num_heads, head_dim
        self.base_implementation = base_implementation
        kv_dim = num_heads * head_dim
        # Standard-normal start, as HF PEFT's prefix embedding.
        if mlp is None:
            self.key = nn.Parameter(torch.randn(config.length, kv_dim))
            self.value = nn.Parameter(torch.randn(config.length, kv_dim))
        else:
            self.inputs = nn.Parameter(torch.randn(config.length, kv_dim))
        # A plain attribute, not a submodule: the MLP is registered once on the model root.
        self.__dict__["_mlp"] = mlp
        mark_injected(self)

    def key_value(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix keys and values, each ``(length, kv_dim)``."""
        if self._mlp is None:
            return self.key, self.value
        return self._mlp(self.inputs)

    def stored_tensor(self, name: str) -> torch.Tensor:
        """The plain (folded) prefix ``name`` ("key" or "value") that is saved."""
        with torch.no_grad():
            key, value = self.key_value()
        return {"key": key, "value": value}[name].detach()

    def expand(self, batch: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values in head layout ``(batch, heads, length, head_dim)``."""
        key, value = self.key_value()

        def heads(t: torch.Tensor) -> torch.Tensor:
            t = t.to(dtype).view(1, self.length, self.num_heads, self.head_dim).transpose(1, 2)
            return t.expand(batch, -1, -1, -1)

        return heads(key), heads(value)


def _extend_mask(
    mask: torch.Tensor | None, module: nn.Module, query: torch.Tensor, key_len: int, length: int
) -> torch.Tensor | None:
    """The attention mask with ``length`` always-visible columns in front."""
    if mask is None:
        q_len = query.shape[2]
        if not (getattr(module, "is_causal", False) and q_len > 1):
            return None  # no mask means "attend everywhere", prefix included
        # A causal module without a mask relies on sdpa's is_causal, which would misalign once
        # keys are longer than queries: spell the causal mask out (bottom-right aligned).
        visible = torch.ones(q_len, key_len, dtype=torch.bool, device=query.device).tril(
            key_len - q_len
        )
        mask = torch.zeros(1, 1, q_len, key_len, dtype=query.dtype, device=query.device)
        mask = mask.masked_fill(~visible, torch.finfo(query.dtype).min)
    pad_shape = (*mask.shape[:-1], length)
    if mask.dtype == torch.bool:
        pad = torch.ones(pad_shape, dtype=torch.bool, device=mask.device)
    else:
        pad = torch.zeros(pad_shape, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


def prefix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention function for modules carrying a prefix (registered as ``"pefs_prefix"``)."""
    prefix: Prefix = module.pefs_prefix
    eager = sys.modules[type(module).__module__].eager_attention_forward
    base = ALL_ATTENTION_FUNCTIONS.get_interface(prefix.base_implementation, eager)
    prefix_key, prefix_value = prefix.expand(query.shape[0], key.dtype)
    key_len = key.shape[2]
    key = torch.cat([prefix_key, key], dim=2)
    value = torch.cat([prefix_value, value], dim=2)
    attention_mask = _extend_mask(attention_mask, module, query, key_len, prefix.length)
    bias = kwargs.get("position_bias")
    if bias is not None:  # T5: relative position bias has no meaning for prefix slots -> zero
        pad = torch.zeros((*bias.shape[:-1], prefix.length), dtype=bias.dtype, device=bias.device)
        kwargs["position_bias"] = torch.cat([pad, bias], dim=-1)
    return base(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTENTION_NAME, prefix_attention)


def make_config(size: int, options: DesignOptions) -> PrefixConfig:
    o = options.prefix
    return PrefixConfig(length=size, reparameterize=o.reparameterize, mlp_hidden=o.mlp_hidden)


def _design_width(context: InjectionContext, kv_dim: int) -> int:
    """The rule's MLP width for the design's prefixes of width ``kv_dim`` (0: plain prefixes)."""
    design, shape = context.design, context.shape
    total_length = sum(
        design.size(i, "prefix")
        for i in range(len(design.layers))
        if shape.layers[i].kv_dim == kv_dim
    )
    return prefix_reparameterization_width(kv_dim, total_length)


def _shared_mlp(
    context: InjectionContext, kv_dim: int, hidden: int | None
) -> tuple[PrefixReparameterization | None, bool]:
    """The model's reparameterisation MLP for ``kv_dim`` (made on first use) and if it is new;
    ``None`` when the sizing rule leaves no room for one (``hidden`` None: sized by the rule)."""
    key = f"prefix_mlp_{kv_dim}"
    if key in context.shared:
        return context.shared[key], False
    if hidden is None:
        hidden = _design_width(context, kv_dim)
    if hidden == 0:
        context.shared[key] = None
        return None, False
    reference = next(context.model.parameters())
    mlp = PrefixReparameterization(kv_dim, hidden).to(reference.device, reference.dtype)
    context.model.add_module(f"pefs_{key}", mlp)
    context.shared[key] = mlp
    return mlp, True


def inject(block: BlockHandles, config: PrefixConfig, context: InjectionContext) -> Injection:
    attn = block.self_attention
    base_impl = attn.config._attn_implementation or "eager"
    if base_impl == ATTENTION_NAME:
        raise DesignError("prefix", f"layer {block.index} already carries a prefix")
    if base_impl not in SUPPORTED_BASE_ATTENTION:
        raise DesignError(
            "prefix",
            f"prefix tuning needs attention implementation {list(SUPPORTED_BASE_ATTENTION)}, "
            f"the model uses {base_impl!r}",
        )
    mlp, new_mlp = None, False
    if config.reparameterize and context.reparameterize_prefix:
        mlp, new_mlp = _shared_mlp(context, block.kv_dim, config.mlp_hidden)
    reference = block.linear("key").weight
    prefix = Prefix(config, block.num_heads, block.head_dim, mlp, base_impl).to(
        reference.device, reference.dtype
    )
    attn.pefs_prefix = prefix
    # Only this module switches to the prefix-aware attention function.
    attn.config = copy.copy(attn.config)
    attn.config._attn_implementation = ATTENTION_NAME
    training_only = list(mlp.parameters()) if new_mlp else []
    if mlp is not None:
        training_only.append(prefix.inputs)
    return Injection(
        stored=[StoredTensor(prefix, "key"), StoredTensor(prefix, "value")],
        training_only=training_only,
    )


SPEC = register_strategy(
    StrategySpec(
        name="prefix", config_class=PrefixConfig, make_config=make_config, inject=inject, order=3
    )
)
