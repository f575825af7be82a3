"""A training run's settings (:class:`TrainConfig`), validated on construction (no Django).

``tasks.train`` re-exports both names; every field carries a ``help`` text that the API and the
CLI show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

class TrainConfigError(ValueError):
    """A bad TrainConfig value; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """How to train one design on one task. Every field is validated in ``__post_init__``."""

    batch_size: int = field(default=32, metadata=_help("training examples per step"))
    epochs: int = field(default=3, metadata=_help("passes over the (sub-sampled) training set"))
    learning_rate: float = field(default=5e-4, metadata=_help("peak AdamW learning rate"))
    warmup_ratio: float = field(
        default=0.06, metadata=_help("share of all steps spent warming up linearly from 0")
    )
    weight_decay: float = field(
        default=0.01, metadata=_help("AdamW decoupled weight decay for matrices (not biases/norms)")
    )
    max_grad_norm: float | None = field(
        default=1.0, metadata=_help("clip the gradient's global L2 norm; None: no clipping")
    )
    max_length: int = field(default=128, metadata=_help("tokens per example, pairs included"))
    train_examples: int | None = field(
        default=None, metadata=_help("sub-sample the training set to this many; None: all")
    )
    eval_examples: int | None = field(
        default=None, metadata=_help("sub-sample the evaluation set to this many; None: all")
    )
    eval_batch_size: int = field(default=64, metadata=_help("examples per evaluation batch"))
    seed: int | None = field(
        default=None, metadata=_help("RNG seed; None: the design's seed (runner) or 0 (train)")
    )
    device: str = field(
        default="auto", metadata=_help("'auto' (CUDA if present), 'cpu', 'cuda[:n]'")
    )
    eval_every: int | None = field(
        default=None, metadata=_help("also evaluate every this many steps; None: per epoch only")
    )
    bf16: bool = field(
        default=True, metadata=_help("bf16 autocast on CUDA devices that support it")
    )

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, *, optional: bool = False) -> None:
            if value is None and optional:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainConfigError(name, f"must be a positive integer, got {value!r}")

        def number(
            name: str, value: Any, low: float, high: float, *, open_low: bool = False
        ) -> None:
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
            if not ok or value > high or value < low or (open_low and value == low):
                bounds = f"{'(' if open_low else '['}{low}, {high}]"
                raise TrainConfigError(name, f"must be a number in {bounds}, got {value!r}")

        positive_int("batch_size", self.batch_size)
        positive_int("epochs", self.epochs)
        number("learning_rate", self.learning_rate, 0.0, 1.0, open_low=True)
        number("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        number("weight_decay", self.weight_decay, 0.0, 1.0)
        if self.max_grad_norm is not None:
            number("max_grad_norm", self.max_grad_norm, 0.0, math.inf, open_low=True)
        positive_int("max_length", self.max_length)
        if self.max_length < 8:
            raise TrainConfigError(
                "max_length", f"must be at least 8 tokens, got {self.max_length}"
            )
        positive_int("train_examples", self.train_examples, optional=True)
        positive_int("eval_examples", self.eval_examples, optional=True)
        positive_int("eval_batch_size", self.eval_batch_size)
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0
        ):
            raise TrainConfigError(
                "seed", f"must be a non-negative integer or None, got {self.seed!r}"
            )
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise TrainConfigError(
                "device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        positive_int("eval_every", self.eval_every, optional=True)
        if not isinstance(self.bf16, bool):
            raise TrainConfigError("bf16", f"must be true or false, got {self.bf16!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a JSON object; an unknown key raises TrainConfigError naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainConfigError(
                unknown[0], f"unknown setting; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(d))

    def resolved_device(self) -> torch.device:
        """The torch device this config trains on ('auto' picks CUDA when available)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise TrainConfigError("device", f"{self.device!r} requested but CUDA is not available")
        return device
