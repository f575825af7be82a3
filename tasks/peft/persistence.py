"""Saving, loading and exporting tuned models.

``save`` writes only what training changed, beside the design that explains it::

    <directory>/design.json        the pefs.design/1 document
    <directory>/peft.safetensors   stored PEFT tensors (prefixes folded), keyed by module path;
                                   their sizes add up to trainable_parameters.peft_total
    <directory>/head.safetensors   the task head (metadata: problem, num_labels)

``load`` rebuilds the model on a fresh backbone (the design's, or one passed in) and reproduces
the saved model's outputs. ``export_peft`` writes a LoRA-only design in Hugging Face PEFT format.

Example:
    >>> save(model, design, "run/42")                                      # doctest: +SKIP
    >>> again = load("run/42")                       # loads design.backbone  # doctest: +SKIP
    >>> export_peft(model, design, "run/42/hf-peft")                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tasks.peft.backbones import Backbone, blocks, load_backbone, model_family
from tasks.peft.budget import STRATEGIES
from tasks.peft.design import Design, DesignError, HeadSpec
from tasks.peft.engine import applied_design, apply, head_state_dict, peft_state_dict

DESIGN_FILE = "design.json"
PEFT_FILE = "peft.safetensors"
HEAD_FILE = "head.safetensors"
FORMAT = "pefs.peft/1"


class NotExpressible(ValueError):
    """The design has parts Hugging Face PEFT's LoRA format cannot represent."""

    def __init__(self, reason: str, parts: list[str] | None = None) -> None:
        self.reason = reason
        self.parts = parts or []
        super().__init__(reason)


def _resolve_design(model: nn.Module, design: Design | Mapping[str, Any] | None) -> Design:
    """The design applied to ``model``; a given ``design`` must describe the same modules.

    Only what shapes the weights is compared (layers and options): the head, seed and
    provenance of a caller's copy may legitimately differ from the applied one.
    """
    applied = applied_design(model)
    if design is None:
        return applied
    design = design if isinstance(design, Design) else Design.from_dict(design)
    if (design.layers, design.options) != (applied.layers, applied.options):
        raise DesignError(
            "design", "its layers/options differ from the design applied to this model"
        )
    return applied


def _head_spec(model: nn.Module) -> HeadSpec:
    config = model.config
    problem = "regression" if config.problem_type == "regression" else "classification"
    return HeadSpec(problem, config.num_labels)


def save(
    model: nn.Module, design: Design | Mapping[str, Any] | None, directory: str | os.PathLike
) -> Path:
    """Write design.json, peft.safetensors and head.safetensors into ``directory``."""
    design = _resolve_design(model, design)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = peft_state_dict(model)
    total = sum(t.numel() for t in tensors.values())
    if total != design.trainable_parameters.peft_total:
        raise AssertionError(
            f"stored {total} PEFT parameters, design says {design.trainable_parameters.peft_total}"
        )
    head = _head_spec(model)
    (out / DESIGN_FILE).write_text(design.to_json(indent=2) + "\n")
    save_file(tensors, str(out / PEFT_FILE), metadata={"format": FORMAT, "peft_total": str(total)})
    save_file(
        head_state_dict(model),
        str(out / HEAD_FILE),
        metadata={"format": FORMAT, "problem": head.problem, "num_labels": str(head.num_labels)},
    )
    return out


def load(directory: str | os.PathLike, backbone: Backbone | nn.Module | None = None) -> nn.Module:
    """Rebuild a saved model (in eval mode) on ``backbone`` or on a fresh ``design.backbone``."""
    src = Path(directory)
    design = Design.from_json((src / DESIGN_FILE).read_text())
    with safe_open(str(src / HEAD_FILE), "pt") as f:
        meta = f.metadata() or {}
    head = design.head or HeadSpec(
        meta.get("problem", "classification"), int(meta.get("num_labels", 2))
    )
    if backbone is None:
        name = design.backbone.name_or_path
        if name.startswith("config:"):
            raise ValueError(
                f"{src}: the backbone was built from a config; pass backbone= to load it"
            )
        backbone = load_backbone(name, head=head)
    model = backbone.model if isinstance(backbone, Backbone) else backbone
    # Saved prefixes are folded: rebuild them as plain parameters whatever the training option.
    apply(model, design, reparameterize_prefix=False)
    tensors = {**load_file(str(src / PEFT_FILE)), **load_file(str(src / HEAD_FILE))}
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{src}: tensors that do not fit the design: {result.unexpected_keys[:5]}")
    missing = set(tensors) & set(result.missing_keys)
    if missing:
        raise ValueError(f"{src}: tensors not loaded: {sorted(missing)[:5]}")
    model.eval()
    return model


def _not_expressible_parts(design: Design) -> list[str]:
    parts = []
    for strategy in STRATEGIES:
        if strategy == "lora":
            continue
        layers = [i for i, layer in enumerate(design.layers) if strategy in layer]
        if layers:
            parts.append(f"{strategy} on layers {layers}")
    return parts


_WHY = {
    "adapter": "HF PEFT LoRA has no bottleneck adapter after the feed-forward sublayer",
    "prefix": "HF PEFT prefix tuning is a separate, model-wide adapter type "
    "(one length for every layer)",
    "bitfit": "HF PEFT LoRA's bias option trains biases model-wide ('all'/'lora_only'), "
    "not per layer",
}


def export_peft(
    model: nn.Module, design: Design | Mapping[str, Any] | None, directory: str | os.PathLike
) -> Path:
    """Write a LoRA-only design as a Hugging Face PEFT adapter (``PeftModel.from_pretrained``).

    Per-layer ranks become ``rank_pattern`` (most common rank as ``r``); the targeted modules are
    listed by full path, which also keeps T5/BART cross-attention out; encoder-only families also
    record ``layers_to_transform``. The task head goes into ``modules_to_save``. Raises
    ``NotExpressible`` naming every non-LoRA part otherwise.
    """
    from peft import LoraConfig, get_peft_model

    design = _resolve_design(model, design)
    parts = _not_expressible_parts(design)
    if parts:
        why = "; ".join(f"{p} ({_WHY[p.split()[0]]})" for p in parts)
        raise NotExpressible(f"not expressible in HF PEFT LoRA format: {why}", parts)
    lora_layers = [i for i, layer in enumerate(design.layers) if "lora" in layer]
    if not lora_layers:
        raise NotExpressible(
            "not expressible in HF PEFT LoRA format: the design tunes no layer", []
        )

    family = model_family(model)
    clean = copy.deepcopy(model)
    # Unwrap LoRA so the copy is the plain backbone with the trained head; keep the trained updates.
    updates: dict[str, tuple[Any, Any]] = {}
    ranks: dict[str, int] = {}
    for handle in blocks(clean):
        for role in design.options.lora.targets if handle.index in lora_layers else ():
            owner, attr = handle.projections[role]
            wrapped = getattr(owner, attr)
            path = next(n for n, m in clean.named_modules() if m is wrapped)
            updates[path] = (
                wrapped.lora.lora_A.weight.detach(),
                wrapped.lora.lora_B.weight.detach(),
            )
            ranks[path] = design.size(handle.index, "lora")
            setattr(owner, attr, wrapped.base)
    for attr in ("_pefs_design", "_pefs_stored"):
        clean.__dict__.pop(attr, None)

    rank = Counter(ranks.values()).most_common(1)[0][0]
    options = design.options.lora
    extra: dict[str, Any] = {}
    if family.name in ("bert", "roberta"):
        extra = {"layers_to_transform": lora_layers, "layers_pattern": "layer"}
    config = LoraConfig(
        r=rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=sorted(ranks),
        rank_pattern={p: r for p, r in ranks.items() if r != rank},
        modules_to_save=list(family.head_modules),
        bias="none",
        **extra,
    )
    peft_model = get_peft_model(clean, config)
    for path, (a, b) in updates.items():
        target = peft_model.base_model.model.get_submodule(path)
        target.lora_A["default"].weight.data.copy_(a)
        target.lora_B["default"].weight.data.copy_(b)
    out = Path(directory)
    peft_model.save_pretrained(str(out))
    (out / DESIGN_FILE).write_text(design.to_json(indent=2) + "\n")
    return out
