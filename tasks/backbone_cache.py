"""Pretrained backbones kept in memory between trials (no Django).

:class:`BackboneCache` keeps a backbone's pretrained weights (a state dict of everything the
checkpoint had, BERT's pooler included) and tokenizer in memory, so a long-lived worker reads each
checkpoint from disk once. Every model is built the same way, cache or not: a fresh model from the
pretrained config (its new classifier initialised under the trial's seed), then the cached
pretrained weights copied in. A warm cache therefore changes nothing but the time it takes, and
every arm of a comparison with the same seed starts from the same head. ``tasks.runner`` uses it
(and re-exports it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from tasks.peft.design import HeadSpec

__all__ = ["BackboneCache"]


@dataclass
class _CachedBackbone:
    config: Any
    tokenizer: Any
    shape: Any
    weights: dict[str, torch.Tensor]


def _default_names() -> set[str]:
    from tasks.peft.backbones import DEFAULT_BACKBONE, default_backbone_path

    return {DEFAULT_BACKBONE, str(default_backbone_path())}


def _load_name(name_or_path: str | None) -> str | None:
    """The argument for load_backbone: None (the bundled MiniLM, offline) for the default's names."""
    if not name_or_path or name_or_path in _default_names():
        return None
    return name_or_path


class BackboneCache:
    """Pretrained weights, config and tokenizer per backbone, kept in memory between trials.

    Holds at most ``max_backbones`` backbones (least recently used goes first). Thread-safe.

    Example:
        >>> cache = BackboneCache()
        >>> backbone = cache.load(None, head=HeadSpec(problem="regression", num_labels=1), seed=0)  # doctest: +SKIP
    """

    def __init__(self, max_backbones: int = 2) -> None:
        if max_backbones < 1:
            raise ValueError("max_backbones: must be at least 1")
        self.max_backbones = max_backbones
        self._entries: OrderedDict[str, _CachedBackbone] = OrderedDict()
        self._lock = threading.Lock()
        self.disk_loads = 0  # how often a checkpoint was read from disk (tests, worker metrics)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _entry(self, name_or_path: str | None) -> _CachedBackbone:
        from tasks.peft.backbones import load_backbone

        key = _load_name(name_or_path) or "<default>"
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            # Fixed RNG for the disk load: the throwaway head (and anything the checkpoint lacks)
            # is initialised identically in every process, and the caller's RNG is left alone.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                loaded = load_backbone(
                    _load_name(name_or_path), head=HeadSpec(problem="classification", num_labels=2)
                )
            self.disk_loads += 1
            return self._store(key, loaded)

    def _store(self, key: str, backbone: Any) -> _CachedBackbone:
        from tasks.peft.backbones import head_parameters

        # Keep every weight the checkpoint had, the pretrained pooler included; only what loading
        # initialised (the classifier) is left out, to be initialised under each trial's seed.
        # A backbone built from a config has no checkpoint: its whole head is left out.
        fresh = getattr(backbone, "fresh_parameters", None)
        if fresh is None:
            fresh = {name for name, _ in head_parameters(backbone.model)}
        # state_dict tensors outlive a discarded model; load_state_dict copies them into each new
        # model, so the cached weights are never trained in place.
        weights = {k: v for k, v in backbone.model.state_dict().items() if k not in fresh}
        entry = _CachedBackbone(backbone.model.config, backbone.tokenizer, backbone.shape, weights)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_backbones:
            self._entries.popitem(last=False)
        return entry

    def put(self, name_or_path: str, backbone: Any) -> None:
        """Register a backbone already in memory (before ``apply``) under ``name_or_path``.

        Its weights are copied, so later training of ``backbone`` does not leak into the cache.
        Used for models built from a config (tests) or fetched by other means.
        """
        if backbone.tokenizer is None:
            raise ValueError("backbone: has no tokenizer; set backbone.tokenizer before caching it")
        with self._lock:
            entry = self._store(_load_name(name_or_path) or "<default>", backbone)
            entry.weights = {k: v.clone() for k, v in entry.weights.items()}

    def tokenizer(self, name_or_path: str | None) -> Any:
        """The backbone's tokenizer (loads the backbone into the cache if needed)."""
        return self._entry(name_or_path).tokenizer

    def load(self, name_or_path: str | None, *, head: HeadSpec, seed: int) -> Any:
        """A fresh ``tasks.peft.Backbone`` with pretrained weights and a head initialised under ``seed``."""
        from tasks.peft.backbones import Backbone, head_parameters, load_backbone

        entry = self._entry(name_or_path)
        torch.manual_seed(seed)
        built = load_backbone(head=head, config=entry.config)
        missing, unexpected = built.model.load_state_dict(entry.weights, strict=False)
        head_names = {name for name, _ in head_parameters(built.model)}
        if unexpected or set(missing) - head_names:
            raise RuntimeError(
                f"cached weights do not fit the rebuilt model: missing {sorted(set(missing) - head_names)}, "
                f"unexpected {sorted(unexpected)}"
            )
        return Backbone(model=built.model, tokenizer=entry.tokenizer, shape=entry.shape, head=head)
