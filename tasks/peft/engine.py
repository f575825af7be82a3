"""``apply``: turn a design into a trainable model with exactly the design's parameter count.

Example:
    >>> from transformers import BertConfig
    >>> from tasks.peft import HeadSpec, design_from_sizes, load_backbone
    >>> tiny = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=4, intermediate_size=37)
    >>> backbone = load_backbone(config=tiny, head=HeadSpec("classification", 2))
    >>> sizes = {0: {"lora": 2}, 1: {"adapter": 4, "bitfit": 1}}
    >>> design = design_from_sizes(backbone.shape, sizes, seed=0)
    >>> report = apply(backbone, design)
    >>> report.peft_total == design.trainable_parameters.peft_total
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tasks.peft.backbones import Backbone, blocks, head_parameters, introspect
from tasks.peft.budget import BackboneShape, strategy_params
from tasks.peft.design import Design, DesignError
from tasks.peft.registry import InjectionContext, StoredTensor, get_strategy
from tasks.peft.strategies import names as strategy_names

DESIGN_ATTR = "_pefs_design"
STORED_ATTR = "_pefs_stored"
TRAINED_ATTR = "_pefs_trained_by_strategy"
HEAD_GROUP = "head"


@dataclass
class ApplyReport:
    """Exact parameter counts after ``apply``.

    ``per_layer`` / ``peft_total``: stored PEFT parameters (what the budget counts, head excluded).
    ``head``: task-head parameters (always trainable). ``training_only``: parameters trained but
    not stored (the prefix reparameterisation MLP and its inputs). ``trainable_total``: what the
    optimiser sees, ``sum(p.numel() for p in model.parameters() if p.requires_grad)``.
    """

    per_layer: list[int]
    peft_total: int
    head: int
    trainable_total: int
    training_only: int = 0
    per_strategy: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_layer": list(self.per_layer),
            "peft_total": self.peft_total,
            "head": self.head,
            "trainable_total": self.trainable_total,
            "training_only": self.training_only,
            "per_strategy": dict(self.per_strategy),
        }


def _as_design(design: Design | Mapping[str, Any]) -> Design:
    return design if isinstance(design, Design) else Design.from_dict(design)


def _check_head(model: nn.Module, design: Design) -> None:
    if design.head is None:
        return
    config = model.config
    if config.num_labels != design.head.num_labels:
        raise DesignError(
            "head.num_labels",
            f"design wants {design.head.num_labels} outputs, "
            f"the model's head has {config.num_labels}",
        )
    is_regression = config.problem_type == "regression"
    if is_regression != (design.head.problem == "regression"):
        raise DesignError(
            "head.problem", f"design wants {design.head.problem}, model is {config.problem_type}"
        )


def apply(
    backbone_or_model: Backbone | nn.Module,
    design: Design | Mapping[str, Any],
    *,
    reparameterize_prefix: bool = True,
) -> ApplyReport:
    """Freeze the backbone, inject the design's strategies and return exact counts.

    The model is modified in place. ``reparameterize_prefix=False`` builds plain prefixes even when
    the design trains them through an MLP (``load`` uses this for folded, saved prefixes).
    Raises ``DesignError`` (naming the field) when the design does not fit the model.
    """
    model = (
        backbone_or_model.model if isinstance(backbone_or_model, Backbone) else backbone_or_model
    )
    design = _as_design(design)
    if getattr(model, DESIGN_ATTR, None) is not None:
        raise DesignError(
            "design", "this model already has a PEFT design applied; load a fresh backbone"
        )
    shape = introspect(model)
    design.check_against(shape)
    _check_head(model, design)

    for p in model.parameters():
        p.requires_grad_(False)
    head = head_parameters(model)
    for _, p in head:
        p.requires_grad_(True)

    handles = blocks(model)
    context = InjectionContext(
        model=model, reparameterize_prefix=reparameterize_prefix, design=design, shape=shape
    )
    stored: dict[int, list[StoredTensor]] = {}
    training_only: list[nn.Parameter] = []
    per_strategy: dict[str, int] = {}
    trained: dict[str, list[nn.Parameter]] = {}
    # PEFT initialisation depends on the design's seed only, and leaves the caller's RNG alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(design.seed)
        _inject_all(design, shape, handles, context, stored, training_only, per_strategy, trained)
    setattr(model, DESIGN_ATTR, design)
    setattr(model, STORED_ATTR, stored)
    setattr(model, TRAINED_ATTR, trained)

    per_layer = [sum(t.value().numel() for t in stored[i]) for i in range(len(design.layers))]
    report = ApplyReport(
        per_layer=per_layer,
        peft_total=sum(per_layer),
        head=sum(p.numel() for _, p in head),
        trainable_total=sum(p.numel() for p in model.parameters() if p.requires_grad),
        training_only=sum(p.numel() for p in training_only),
        per_strategy=per_strategy,
    )
    stored_params = [t.parameter() for ts in stored.values() for t in ts]
    expected_trainable = (
        sum(p.numel() for p in stored_params if p is not None) + report.training_only + report.head
    )
    if (
        report.trainable_total != expected_trainable
        or report.peft_total != design.trainable_parameters.peft_total
    ):
        raise AssertionError(f"trainable parameters do not add up: {report}")
    return report


def _inject_all(
    design: Design,
    shape: BackboneShape,
    handles: list,
    context: InjectionContext,
    stored: dict[int, list[StoredTensor]],
    training_only: list[nn.Parameter],
    per_strategy: dict[str, int],
    trained: dict[str, list[nn.Parameter]],
) -> None:
    """Inject every strategy of every layer, checking each count against the closed form.

    ``trained[strategy]`` collects the parameters the optimiser updates for that strategy: its
    stored parameters and its training-only ones (a prefix's inputs and shared MLP).
    """
    for i, layer in enumerate(design.layers):
        specs = sorted((get_strategy(s) for s in layer), key=lambda spec: spec.order)
        stored[i] = []
        for spec in specs:
            try:
                config = spec.make_config(design.size(i, spec.name), design.options)
            except DesignError as exc:
                raise exc.under(f"layers[{i}].{spec.name}") from None
            injection = spec.inject(handles[i], config, context)
            count = sum(t.value().numel() for t in injection.stored)
            expected = strategy_params(
                spec.name,
                design.size(i, spec.name),
                shape.layers[i],
                lora_targets=design.options.lora.targets,
            )
            if count != expected:  # the engine and budget.py must never disagree
                raise AssertionError(
                    f"layers[{i}].{spec.name}: injected {count}, closed form {expected}"
                )
            per_strategy[spec.name] = per_strategy.get(spec.name, 0) + count
            stored[i].extend(injection.stored)
            training_only.extend(injection.training_only)
            own = [t.parameter() for t in injection.stored] + injection.training_only
            trained.setdefault(spec.name, []).extend(p for p in own if p is not None)


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The parameters the optimiser updates, by who owns them: ``"head"`` and one group per
    strategy of the applied design (canonical order); each parameter in exactly one group."""
    trained: dict[str, list[nn.Parameter]] = getattr(model, TRAINED_ATTR, None)
    if trained is None:
        raise ValueError("no PEFT design has been applied to this model")
    groups = {HEAD_GROUP: [p for _, p in head_parameters(model)]}
    groups.update({name: list(trained[name]) for name in strategy_names() if name in trained})
    return groups


def applied_design(model: nn.Module) -> Design:
    """The design ``apply`` put on ``model``."""
    design = getattr(model, DESIGN_ATTR, None)
    if design is None:
        raise ValueError("no PEFT design has been applied to this model")
    return design


def peft_state_dict(model: nn.Module) -> dict[str, Any]:
    """Stored PEFT tensors by module path (prefixes folded), detached on CPU."""
    names = {id(m): n for n, m in model.named_modules()}
    stored: dict[int, list[StoredTensor]] = getattr(model, STORED_ATTR)
    return {
        f"{names[id(t.owner)]}.{t.name}": t.value().detach().cpu().contiguous()
        for ts in stored.values()
        for t in ts
    }


def head_state_dict(model: nn.Module) -> dict[str, Any]:
    """Task-head tensors by parameter path, detached on CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in head_parameters(model)}
