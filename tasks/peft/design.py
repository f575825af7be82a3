"""The concrete design document (schema ``pefs.design/1``) and its validation.

A design says, for every layer of one backbone, which PEFT strategies it carries and at what
integer size, plus the options shared by all layers. It is what users download as "the winning
configuration", so :meth:`Design.from_dict` validates everything and names the offending field
(``DesignError.field``, e.g. ``"layers[3].adapter"``), and ``to_dict`` round-trips exactly.
Pure Python: importable by the web process and the sampler without torch. The full schema is in
``tasks/peft/SCHEMA.md``.

Example:
    >>> from tasks.peft.budget import BackboneShape, LayerShape, PROJECTION_ROLES
    >>> layer = LayerShape(8, 8, {r: (8, 8) for r in PROJECTION_ROLES}, bitfit_params=40)
    >>> shape = BackboneShape("tiny", "bert", "bert", 2, 8, 2, 1000, (layer, layer))
    >>> design = design_from_sizes(shape, {0: {"lora": 2}, 1: {"bitfit": 1}}, seed=0)
    >>> design.to_dict()["layers"], design.trainable_parameters.peft_total
    ([{'lora': 2}, {'bitfit': True}], 104)
    >>> Design.from_dict(design.to_dict()) == design
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tasks.peft.budget import BackboneShape, BudgetError, strategy_params
from tasks.peft.errors import DesignError
from tasks.peft.strategies import (
    ACTIVATIONS,
    AdapterOptions,
    BitFitOptions,
    LoraOptions,
    PrefixOptions,
    StrategyOptions,
)
from tasks.peft.strategies import get as strategy_descriptor
from tasks.peft.strategies import names as strategy_names
from tasks.peft.strategies import registered as registered_strategies

__all__ = [
    "ACTIVATIONS",
    "PROBLEMS",
    "SCHEMA",
    "AdapterOptions",
    "BitFitOptions",
    "Design",
    "DesignError",
    "DesignOptions",
    "HeadSpec",
    "LoraOptions",
    "PrefixOptions",
    "design_from_sizes",
]

SCHEMA = "pefs.design/1"
PROBLEMS: tuple[str, ...] = ("classification", "regression")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class HeadSpec:
    """The task head: classification over ``num_labels`` classes, or regression (one output)."""

    problem: str = field(default="classification", metadata=_help("classification or regression"))
    num_labels: int = field(default=2, metadata=_help(">= 2 for classification, 1 for regression"))

    def __post_init__(self) -> None:
        if self.problem not in PROBLEMS:
            raise DesignError("problem", f"must be one of {list(PROBLEMS)}, got {self.problem!r}")
        if not _is_int(self.num_labels):
            raise DesignError("num_labels", f"must be an integer, got {self.num_labels!r}")
        if self.problem == "regression" and self.num_labels != 1:
            raise DesignError("num_labels", "regression heads have exactly 1 output")
        if self.problem == "classification" and self.num_labels < 2:
            raise DesignError("num_labels", "classification needs at least 2 labels")

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "num_labels": self.num_labels}


class DesignOptions:
    """Per-strategy options (``options.<strategy>``), one group per registered strategy.

    Groups read as attributes (``options.lora.targets``); missing groups take their defaults.
    """

    def __init__(self, **groups: StrategyOptions) -> None:
        known = strategy_names()
        unknown = sorted(set(groups) - set(known))
        if unknown:
            raise DesignError(f"options.{unknown[0]}", f"unknown option group; known: {list(known)}")
        self._groups: dict[str, StrategyOptions] = {
            s.name: groups.get(s.name) or s.options_class() for s in registered_strategies()
        }

    def __getattr__(self, name: str) -> StrategyOptions:
        if name.startswith("_"):  # never recurse while unpickling or copying
            raise AttributeError(name)
        try:
            return self._groups[name]
        except KeyError:
            raise AttributeError(f"no option group {name!r}") from None

    def for_strategy(self, name: str) -> StrategyOptions:
        """The options of strategy ``name`` (``DesignError`` if it is not registered)."""
        try:
            return self._groups[name]
        except KeyError:
            raise DesignError(f"options.{name}", "unknown option group") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DesignOptions) and self._groups == other._groups

    def __hash__(self) -> int:
        return hash(tuple(self._groups.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self._groups.items())
        return f"DesignOptions({inner})"

    @classmethod
    def from_dict(cls, d: Any) -> DesignOptions:
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise DesignError("options", "must be an object")
        known = strategy_names()
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise DesignError(
                f"options.{unknown[0]}", f"unknown option group; known: {list(known)}"
            )
        built: dict[str, StrategyOptions] = {}
        for name in known:
            klass = strategy_descriptor(name).options_class
            raw = d.get(name, {})
            if not isinstance(raw, Mapping):
                raise DesignError(f"options.{name}", "must be an object")
            allowed = {f.name for f in fields(klass)}
            extra = sorted(set(raw) - allowed)
            if extra:
                raise DesignError(
                    f"options.{name}.{extra[0]}", f"unknown option; known: {sorted(allowed)}"
                )
            try:
                built[name] = klass(**raw)
            except DesignError as exc:
                raise exc.under(f"options.{name}") from None
        return cls(**built)

    def to_dict(self) -> dict[str, Any]:
        # Groups with nothing to say (BitFit by default) are left out, so documents stay short.
        written = {name: group.to_dict() for name, group in self._groups.items()}
        return {name: group for name, group in written.items() if group}


@dataclass(frozen=True)
class BackboneRef:
    """Which backbone a design is for: HF id or local path, its model_type and layer count."""

    name_or_path: str
    model_type: str
    num_layers: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name_or_path": self.name_or_path,
            "model_type": self.model_type,
            "num_layers": self.num_layers,
        }


@dataclass(frozen=True)
class TrainableParameters:
    """Stored PEFT parameters per layer and in total (task head excluded)."""

    per_layer: tuple[int, ...]
    peft_total: int

    def to_dict(self) -> dict[str, Any]:
        return {"per_layer": list(self.per_layer), "peft_total": self.peft_total}


LayerSizes = dict[str, Any]  # {"adapter": int, "prefix": int, "bitfit": True, "lora": int}


@dataclass(frozen=True)
class Design:
    """A validated ``pefs.design/1`` document.

    Build one with :meth:`from_dict` or :func:`design_from_sizes`.
    """

    backbone: BackboneRef
    head: HeadSpec | None
    seed: int
    layers: tuple[LayerSizes, ...]
    options: DesignOptions
    trainable_parameters: TrainableParameters
    provenance: dict[str, Any] = field(default_factory=dict)

    _KEYS = (
        "schema",
        "backbone",
        "head",
        "seed",
        "layers",
        "options",
        "trainable_parameters",
        "provenance",
    )
    _REQUIRED = ("schema", "backbone", "seed", "layers", "trainable_parameters")

    # --- reading -----------------------------------------------------------------------------
    def strategies_at(self, index: int) -> tuple[str, ...]:
        """Strategies on layer ``index`` in canonical order."""
        return tuple(s for s in strategy_names() if s in self.layers[index])

    def size(self, index: int, strategy: str) -> int:
        """Integer size of ``strategy`` on layer ``index`` (BitFit: 1; absent: 0)."""
        return int(self.layers[index].get(strategy, 0))

    @property
    def strategies_used(self) -> tuple[str, ...]:
        return tuple(s for s in strategy_names() if any(s in layer for layer in self.layers))

    # --- (de)serialisation -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any) -> Design:
        """Validate a design document; raises ``DesignError`` naming the first bad field."""
        if not isinstance(d, Mapping):
            raise DesignError("", "a design must be a JSON object")
        unknown = sorted(set(d) - set(cls._KEYS))
        if unknown:
            raise DesignError(unknown[0], f"unknown key; known: {list(cls._KEYS)}")
        for key in cls._REQUIRED:
            if key not in d:
                raise DesignError(key, "is required")
        if d["schema"] != SCHEMA:
            raise DesignError("schema", f"unsupported schema {d['schema']!r}; expected {SCHEMA!r}")
        backbone = _backbone_from(d["backbone"])
        head = _head_from(d.get("head"))
        if not _is_int(d["seed"]) or d["seed"] < 0:
            raise DesignError("seed", f"must be a non-negative integer, got {d['seed']!r}")
        layers = _layers_from(d["layers"], backbone.num_layers)
        options = DesignOptions.from_dict(d.get("options"))
        counts = _counts_from(d["trainable_parameters"], layers)
        provenance = d.get("provenance", {})
        if not isinstance(provenance, Mapping):
            raise DesignError("provenance", "must be an object")
        try:
            provenance = json.loads(json.dumps(provenance))
        except (TypeError, ValueError) as exc:
            raise DesignError("provenance", f"must be JSON-serialisable: {exc}") from None
        return cls(backbone, head, d["seed"], layers, options, counts, provenance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "backbone": self.backbone.to_dict(),
            "head": self.head.to_dict() if self.head else None,
            "seed": self.seed,
            "layers": [dict(layer) for layer in self.layers],
            "options": self.options.to_dict(),
            "trainable_parameters": self.trainable_parameters.to_dict(),
            "provenance": json.loads(json.dumps(self.provenance)),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Design:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DesignError("", f"not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # --- checking against a real backbone ----------------------------------------------------
    def check_against(self, shape: BackboneShape) -> None:
        """Raise ``DesignError`` unless this design fits ``shape`` and its counts are exact."""
        if self.backbone.num_layers != shape.num_layers:
            raise DesignError(
                "backbone.num_layers",
                f"design has {self.backbone.num_layers} layers, backbone has {shape.num_layers}",
            )
        if self.backbone.model_type != shape.model_type:
            raise DesignError(
                "backbone.model_type",
                f"design is for {self.backbone.model_type!r}, backbone is {shape.model_type!r}",
            )
        expected = _per_layer_counts(shape, self.layers, self.options.lora.targets)
        for i, (got, want) in enumerate(
            zip(self.trainable_parameters.per_layer, expected, strict=True)
        ):
            if got != want:
                raise DesignError(
                    f"trainable_parameters.per_layer[{i}]",
                    f"says {got} but the strategies on this backbone have {want} parameters",
                )


def _backbone_from(raw: Any) -> BackboneRef:
    if not isinstance(raw, Mapping):
        raise DesignError("backbone", "must be an object")
    for key in ("name_or_path", "model_type", "num_layers"):
        if key not in raw:
            raise DesignError(f"backbone.{key}", "is required")
    extra = sorted(set(raw) - {"name_or_path", "model_type", "num_layers"})
    if extra:
        raise DesignError(f"backbone.{extra[0]}", "unknown key")
    for key in ("name_or_path", "model_type"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise DesignError(f"backbone.{key}", "must be a non-empty string")
    if not _is_int(raw["num_layers"]) or raw["num_layers"] < 1:
        raise DesignError(
            "backbone.num_layers", f"must be a positive integer, got {raw['num_layers']!r}"
        )
    return BackboneRef(raw["name_or_path"], raw["model_type"], raw["num_layers"])


def _head_from(raw: Any) -> HeadSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise DesignError("head", "must be null or an object")
    extra = sorted(set(raw) - {"problem", "num_labels"})
    if extra:
        raise DesignError(f"head.{extra[0]}", "unknown key")
    try:
        return HeadSpec(**raw)
    except DesignError as exc:
        raise exc.under("head") from None


def _layers_from(raw: Any, num_layers: int) -> tuple[LayerSizes, ...]:
    if not isinstance(raw, list):
        raise DesignError("layers", "must be a list with one entry per layer")
    if len(raw) != num_layers:
        raise DesignError(
            "layers", f"has {len(raw)} entries but backbone.num_layers is {num_layers}"
        )
    known = strategy_names()
    layers = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise DesignError(f"layers[{i}]", 'must be an object such as {"adapter": 8}')
        for name, value in entry.items():
            where = f"layers[{i}].{name}"
            if name not in known:
                raise DesignError(where, f"unknown strategy {name!r}; known: {list(known)}")
            descriptor = strategy_descriptor(name)
            if not descriptor.sized:
                if value is not True:
                    raise DesignError(
                        where, f"must be true (omit the key to leave {descriptor.label} off)"
                    )
            elif not _is_int(value) or value < 1:
                raise DesignError(where, f"size must be a positive integer, got {value!r}")
        # Canonical key order so that equal designs serialise identically.
        layers.append({s: entry[s] for s in known if s in entry})
    return tuple(layers)


def _counts_from(raw: Any, layers: tuple[LayerSizes, ...]) -> TrainableParameters:
    if not isinstance(raw, Mapping):
        raise DesignError("trainable_parameters", "must be an object")
    extra = sorted(set(raw) - {"per_layer", "peft_total"})
    if extra:
        raise DesignError(f"trainable_parameters.{extra[0]}", "unknown key")
    per_layer = raw.get("per_layer")
    if not isinstance(per_layer, list) or len(per_layer) != len(layers):
        raise DesignError(
            "trainable_parameters.per_layer", f"must be a list of {len(layers)} integers"
        )
    for i, (count, layer) in enumerate(zip(per_layer, layers, strict=True)):
        if not _is_int(count) or count < 0 or (count == 0) != (not layer):
            raise DesignError(
                f"trainable_parameters.per_layer[{i}]",
                "must be a positive integer for a tuned layer and 0 for an untouched one, "
                f"got {count!r}",
            )
    total = raw.get("peft_total")
    if not _is_int(total) or total != sum(per_layer):
        raise DesignError(
            "trainable_parameters.peft_total", f"must equal sum(per_layer) = {sum(per_layer)}"
        )
    return TrainableParameters(tuple(per_layer), total)


def _per_layer_counts(
    shape: BackboneShape, layers: tuple[LayerSizes, ...], lora_targets: tuple[str, ...]
) -> list[int]:
    counts = []
    for i, (entry, layer) in enumerate(zip(layers, shape.layers, strict=True)):
        try:
            counts.append(
                sum(
                    strategy_params(s, int(v), layer, lora_targets=lora_targets)
                    for s, v in entry.items()
                )
            )
        except BudgetError as exc:
            raise DesignError(f"layers[{i}]", exc.message) from None
    return counts


def design_from_sizes(
    shape: BackboneShape,
    sizes: Mapping[int, Mapping[str, int]],
    *,
    seed: int,
    options: DesignOptions | Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    head: HeadSpec | Mapping[str, Any] | None = None,
) -> Design:
    """Build a validated design from integer sizes (``SolvedSizes.sizes``; ``bitfit`` -> 1).

    ``trainable_parameters`` is filled in from ``budget.strategy_params`` for ``shape``.
    """
    if not isinstance(options, DesignOptions):
        options = DesignOptions.from_dict(options)
    for i in sizes:
        if not _is_int(i) or not 0 <= i < shape.num_layers:
            raise DesignError(
                f"layers[{i!r}]", f"layer index out of range 0..{shape.num_layers - 1}"
            )
    raw_layers: list[dict[str, Any]] = []
    for i in range(shape.num_layers):
        entry = dict(sizes.get(i, {}))
        # Unsized strategies (BitFit) come as 1 from the solver; a document says true.
        for name in [n for n in entry if n in strategy_names() and not strategy_descriptor(n).sized]:
            if entry[name]:
                entry[name] = True
            else:
                del entry[name]
        raw_layers.append(entry)
    layers = _layers_from(raw_layers, shape.num_layers)
    per_layer = _per_layer_counts(shape, layers, options.lora.targets)
    head_dict = head.to_dict() if isinstance(head, HeadSpec) else head
    return Design.from_dict(
        {
            "schema": SCHEMA,
            "backbone": {
                "name_or_path": shape.name_or_path,
                "model_type": shape.model_type,
                "num_layers": shape.num_layers,
            },
            "head": head_dict,
            "seed": seed,
            "layers": [dict(layer) for layer in layers],
            "options": options.to_dict(),
            "trainable_parameters": {"per_layer": per_layer, "peft_total": sum(per_layer)},
            "provenance": dict(provenance or {}),
        }
    )
