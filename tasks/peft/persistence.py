"""Saving, loading and exporting tuned models.

``save`` writes only what training changed, beside the design that explains it::

    <directory>/design.json        the pefs.design/1 document
    <directory>/peft.safetensors   stored PEFT tensors (prefixes folded), keyed by module path;
                                   their sizes add up to trainable_parameters.peft_total
    <directory>/head.safetensors   the task head (metadata: problem, num_labels)

``load`` rebuilds the model on a fresh backbone (the design's, or one passed in) and reproduces
the saved model's outputs; ``load_result`` does the same from what PEFS's downloads page offers
(the design JSON and one task's weights, PEFT tensors and head in one .safetensors file). Both
load strictly: every tensor in the files must fit the design and every tensor the design needs
must be there, else ``WeightsMismatch`` names the keys. ``export_peft`` writes a LoRA-only design
in Hugging Face PEFT format.

Example:
    >>> save(model, design, "run/42")                                      # doctest: +SKIP
    >>> again = load("run/42")                       # loads design.backbone  # doctest: +SKIP
    >>> result = load_result("design.json", "weights-sst2.safetensors")    # doctest: +SKIP
    >>> result.model(**result.tokenizer("A fine film.", return_tensors="pt")).logits  # doctest: +SKIP
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

from tasks.peft.backbones import Backbone, blocks, introspect, load_backbone, model_family
from tasks.peft.budget import STRATEGIES
from tasks.peft.design import Design, DesignError, HeadSpec
from tasks.peft.engine import applied_design, apply, head_state_dict, peft_state_dict

DESIGN_FILE = "design.json"
PEFT_FILE = "peft.safetensors"
HEAD_FILE = "head.safetensors"
FORMAT = "pefs.peft/1"


class WeightsMismatch(ValueError):
    """Saved tensors that do not fit the design: ``missing`` (needed, absent), ``unexpected``
    (present, fitting nothing) and ``mismatched`` (``{key: (saved shape, model shape)}``)."""

    def __init__(
        self,
        source: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing: {_listed(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} not used by the design: {_listed(unexpected)}")
        if mismatched:
            shapes = [f"{k} {list(a)} != {list(b)}" for k, (a, b) in mismatched.items()]
            problems.append(f"{len(mismatched)} of the wrong shape (saved != model): "
                            f"{_listed(shapes)}")
        super().__init__(f"{source}: the weights do not fit the design; " + "; ".join(problems))


def _listed(keys: list[str], shown: int = 8) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


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
    tensors = {**load_file(str(src / PEFT_FILE)), **load_file(str(src / HEAD_FILE))}
    return _rebuild(design, tensors, meta, backbone, str(src)).model


def load_result(
    design: Design | Mapping[str, Any] | str | os.PathLike,
    weights: str | os.PathLike,
    backbone: Backbone | nn.Module | str | os.PathLike | None = None,
) -> Backbone:
    """Rebuild a downloaded result: ``design`` (a pefs.design/1 document or its JSON file) and
    one task's ``weights`` file (PEFT tensors and head together, metadata: problem, num_labels).

    Returns the Backbone (model in eval mode, with its tokenizer). ``backbone``: None loads
    ``design.backbone``; a name or folder loads that checkpoint instead (a copy of the backbone
    elsewhere); a loaded Backbone or module is used as it is (a bare module has no tokenizer).
    """
    if not isinstance(design, (Design, Mapping)):
        design = Design.from_json(Path(design).read_text())
    design = design if isinstance(design, Design) else Design.from_dict(design)
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata() or {}
    return _rebuild(design, load_file(str(weights)), meta, backbone, str(weights))


def _rebuild(
    design: Design,
    tensors: dict[str, Any],
    meta: Mapping[str, str],
    backbone: Backbone | nn.Module | str | os.PathLike | None,
    source: str,
) -> Backbone:
    head = design.head or HeadSpec(
        meta.get("problem", "classification"), int(meta.get("num_labels", 2))
    )
    if backbone is None or isinstance(backbone, (str, os.PathLike)):
        name = str(backbone or design.backbone.name_or_path)
        if name.startswith("config:"):
            raise ValueError(
                f"{source}: the backbone was built from a config; pass backbone= to load it"
            )
        backbone = load_backbone(name, head=head)
    if not isinstance(backbone, Backbone):
        backbone = Backbone(model=backbone, tokenizer=None, shape=introspect(backbone), head=head)
    model = backbone.model
    # Saved prefixes are folded: rebuild them as plain parameters whatever the training option.
    apply(model, design, reparameterize_prefix=False)
    _load_strictly(model, tensors, source)
    model.eval()
    return backbone


def _load_strictly(model: nn.Module, tensors: Mapping[str, Any], source: str) -> None:
    """Load the design's tensors (PEFT and head): every saved key used, every needed key saved.

    The frozen backbone comes from its checkpoint, so a plain ``strict=True`` (which would ask
    the file for every backbone weight too) is not the check; the design's own keys are.
    """
    needed = {**peft_state_dict(model), **head_state_dict(model)}
    mismatched = {
        key: (tuple(tensors[key].shape), tuple(value.shape))
        for key, value in needed.items()
        if key in tensors and tuple(tensors[key].shape) != tuple(value.shape)
    }
    missing, unexpected = sorted(set(needed) - set(tensors)), sorted(set(tensors) - set(needed))
    if missing or unexpected or mismatched:
        raise WeightsMismatch(source, missing, unexpected, mismatched)
    result = model.load_state_dict(dict(tensors), strict=False)
    if result.unexpected_keys:  # a stored key that is not a parameter path: never loaded
        raise WeightsMismatch(source, [], sorted(result.unexpected_keys), {})


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
