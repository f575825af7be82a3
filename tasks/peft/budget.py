"""Closed-form parameter counts and the per-layer budget solver.

Pure Python on purpose: the web process, the design-space sampler and the engine all need the same
numbers, and only the engine may import torch. Everything here works on a :class:`BackboneShape`,
the JSON-safe description the engine's ``introspect()`` produces for a real model.

Counting rules (the numbers the engine's ``apply()`` must reproduce exactly):

* adapter, bottleneck ``m`` on a block of width ``d``: ``2*d*m + m + d``
  (down-projection weight and bias, up-projection weight and bias);
* prefix, length ``p``: ``2*p*kv_dim`` (the stored key and value prefixes; a reparameterisation
  MLP used only during training is not part of the budget);
* bitfit: ``layer.bitfit_params`` (fixed by the architecture, the size is ignored);
* lora, rank ``r``: ``r*(in + out)`` summed over the target projections.

Solver (:func:`solve_sizes`), following PAPER.md's PEFS definitions:

1. On every layer BitFit's fixed cost is counted first.
2. Budget that cannot be spent where it was given is redistributed to the layers that carry
   at least one sized strategy (adapter, prefix, lora), in proportion to their own budgets. This
   covers layers that carry only BitFit (their budget minus the BitFit cost; negative when BitFit
   costs more than the layer's share) and layers that were given a budget but no strategy.
3. The rest of each layer's budget is split equally among its sized strategies and turned into
   real-valued sizes; these are rounded down (never below 1) and then greedily nudged one unit at a
   time, largest fractional remainder first, while that brings the total closer to the target.
4. A strategy whose share is less than half of what size 1 costs makes the target infeasible
   (``InfeasibleBudget`` naming e.g. ``layers[3].lora``); so does a final total further than
   ``tolerance`` (relative) from the target (``InfeasibleBudget`` naming ``budget``).

Example:
    >>> layer = LayerShape(hidden_size=8, kv_dim=8,
    ...                    projections={r: (8, 8) for r in PROJECTION_ROLES}, bitfit_params=40)
    >>> shape = BackboneShape("tiny", "bert", "bert", 2, 8, 2, 1000, (layer, layer))
    >>> strategy_params("lora", 2, layer)
    64
    >>> solved = solve_sizes({0: 200, 1: 200}, {0: {"adapter", "bitfit"}, 1: {"lora"}}, shape)
    >>> solved.sizes
    {0: {'adapter': 9, 'bitfit': 1}, 1: {'lora': 6}}
    >>> solved.total, solved.target
    (393, 400)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

STRATEGIES: tuple[str, ...] = ("adapter", "prefix", "bitfit", "lora")
STRATEGY_CODES: dict[str, str] = {"adapter": "A", "prefix": "P", "bitfit": "B", "lora": "L"}
SIZED_STRATEGIES: tuple[str, ...] = ("adapter", "prefix", "lora")
PROJECTION_ROLES: tuple[str, ...] = ("query", "key", "value", "output")
FAMILIES: tuple[str, ...] = ("bert", "roberta", "t5", "bart")
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("query", "value")


class FieldError(ValueError):
    """A ValueError that names the offending field (``.field``) apart from its ``.message``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class BudgetError(FieldError):
    """A bad argument to the counting or solving functions."""


class InfeasibleBudget(BudgetError):
    """The target cannot be met with positive integer sizes within the tolerance.

    ``.field`` is ``"budget"`` for the overall total, or ``"layers[i].<strategy>"`` for a strategy
    whose share of its layer's budget is too small for size 1.
    """


@dataclass(frozen=True)
class LayerShape:
    """What the budget needs to know about one transformer block."""

    hidden_size: int  # width of the block's residual stream (adapter in/out)
    kv_dim: int  # output width of the self-attention key/value projections (prefix vector width)
    # self-attention linear layers by role ("query", "key", "value", "output"): (in, out)
    projections: dict[str, tuple[int, int]]
    bitfit_params: int  # parameters BitFit makes trainable on this layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "kv_dim": self.kv_dim,
            "projections": {role: list(io) for role, io in self.projections.items()},
            "bitfit_params": self.bitfit_params,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerShape:
        return cls(
            hidden_size=int(d["hidden_size"]),
            kv_dim=int(d["kv_dim"]),
            projections={role: (int(io[0]), int(io[1])) for role, io in d["projections"].items()},
            bitfit_params=int(d["bitfit_params"]),
        )


@dataclass(frozen=True)
class BackboneShape:
    """JSON-safe description of a backbone: the layers in forward order and their widths.

    For encoder-decoder models ``layers`` lists the encoder blocks, then the decoder blocks.
    """

    name_or_path: str
    model_type: str
    family: str  # "bert" | "roberta" | "t5" | "bart"
    num_layers: int
    hidden_size: int
    num_heads: int
    total_params: int  # backbone parameters, task head excluded
    layers: tuple[LayerShape, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name_or_path": self.name_or_path,
            "model_type": self.model_type,
            "family": self.family,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "total_params": self.total_params,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BackboneShape:
        return cls(
            name_or_path=str(d["name_or_path"]),
            model_type=str(d["model_type"]),
            family=str(d["family"]),
            num_layers=int(d["num_layers"]),
            hidden_size=int(d["hidden_size"]),
            num_heads=int(d["num_heads"]),
            total_params=int(d["total_params"]),
            layers=tuple(LayerShape.from_dict(layer) for layer in d["layers"]),
        )


def check_lora_targets(lora_targets: Collection[str], field_name: str = "lora_targets") -> None:
    """Raise ``BudgetError`` unless ``lora_targets`` is a non-empty set of projection roles."""
    if isinstance(lora_targets, str) or not lora_targets:
        raise BudgetError(field_name, f"must be a non-empty list of {list(PROJECTION_ROLES)}")
    unknown = [t for t in lora_targets if t not in PROJECTION_ROLES]
    if unknown:
        raise BudgetError(
            field_name, f"unknown projection(s) {unknown}; known: {list(PROJECTION_ROLES)}"
        )
    if len(set(lora_targets)) != len(list(lora_targets)):
        raise BudgetError(field_name, "contains duplicates")


def _unit_cost(strategy: str, layer: LayerShape, lora_targets: Collection[str]) -> tuple[int, int]:
    """(cost per unit of size, fixed cost) so that params(size) = unit*size + fixed."""
    if strategy == "adapter":
        return 2 * layer.hidden_size + 1, layer.hidden_size
    if strategy == "prefix":
        return 2 * layer.kv_dim, 0
    if strategy == "lora":
        return sum(sum(layer.projections[t]) for t in lora_targets), 0
    raise BudgetError(
        "strategy", f"{strategy!r} has no size; sized strategies: {list(SIZED_STRATEGIES)}"
    )


def strategy_params(
    strategy: str,
    size: int,
    layer: LayerShape,
    *,
    lora_targets: Collection[str] = DEFAULT_LORA_TARGETS,
) -> int:
    """Stored parameters ``strategy`` of ``size`` adds to ``layer`` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise BudgetError("strategy", f"unknown strategy {strategy!r}; known: {list(STRATEGIES)}")
    if strategy == "bitfit":
        return layer.bitfit_params
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BudgetError("size", f"{strategy} size must be a positive integer, got {size!r}")
    if strategy == "lora":
        check_lora_targets(lora_targets)
        missing = [t for t in lora_targets if t not in layer.projections]
        if missing:
            raise BudgetError("lora_targets", f"layer has no projection(s) {missing}")
    unit, fixed = _unit_cost(strategy, layer, lora_targets)
    return unit * size + fixed


def layer_params(
    sizes: Mapping[str, int | bool],
    layer: LayerShape,
    *,
    lora_targets: Collection[str] = DEFAULT_LORA_TARGETS,
) -> int:
    """Stored parameters of all strategies ``sizes`` (e.g. ``{"adapter": 8, "bitfit": True}``)."""
    return sum(
        strategy_params(s, int(v), layer, lora_targets=lora_targets)
        for s, v in sizes.items()
        if s != "bitfit" or v
    )


@dataclass
class SolvedSizes:
    """Integer sizes per layer (``bitfit`` -> 1), stored parameters per layer, total and target."""

    sizes: dict[int, dict[str, int]]
    per_layer: dict[int, int]
    total: int
    target: int


def _validated_inputs(
    layer_budgets: Mapping[int, float],
    layer_strategies: Mapping[int, Collection[str]],
    shape: BackboneShape,
) -> tuple[dict[int, float], dict[int, list[str]]]:
    n = shape.num_layers
    if len(shape.layers) != n:
        raise BudgetError("shape.layers", f"has {len(shape.layers)} entries for {n} layers")
    budgets: dict[int, float] = {}
    for i, b in layer_budgets.items():
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise BudgetError(f"layer_budgets[{i!r}]", f"layer index out of range 0..{n - 1}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
            raise BudgetError(f"layer_budgets[{i}]", f"must be a finite number >= 0, got {b!r}")
        budgets[i] = float(b)
    strategies: dict[int, list[str]] = {}
    for i, strats in layer_strategies.items():
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise BudgetError(f"layers[{i!r}]", f"layer index out of range 0..{n - 1}")
        if isinstance(strats, str):
            raise BudgetError(
                f"layers[{i}]", "strategies must be a collection of names, not a string"
            )
        unknown = [s for s in strats if s not in STRATEGIES]
        if unknown:
            raise BudgetError(
                f"layers[{i}]", f"unknown strategy {unknown}; known: {list(STRATEGIES)}"
            )
        if strats:
            strategies[i] = [s for s in STRATEGIES if s in strats]
    return budgets, strategies


def solve_sizes(
    layer_budgets: Mapping[int, float],
    layer_strategies: Mapping[int, Collection[str]],
    shape: BackboneShape,
    *,
    lora_targets: Collection[str] = DEFAULT_LORA_TARGETS,
    tolerance: float = 0.02,
) -> SolvedSizes:
    """Turn per-layer parameter budgets and per-layer strategy sets into integer sizes.

    ``layer_budgets`` maps layer index -> parameters; their sum is the target. Layers absent from
    ``layer_strategies`` (or mapped to an empty set) are left untouched. See the module docstring
    for the rules. Raises ``InfeasibleBudget`` when the target cannot be met.
    """
    check_lora_targets(lora_targets)
    if not 0 <= tolerance < 1:
        raise BudgetError("tolerance", f"must be in [0, 1), got {tolerance!r}")
    budgets, strategies = _validated_inputs(layer_budgets, layer_strategies, shape)
    target = round(sum(budgets.values()))
    if target <= 0:
        raise InfeasibleBudget("budget", f"total budget must be positive, got {target}")
    if not strategies:
        raise InfeasibleBudget("layers", "no layer carries a strategy")

    bitfit_cost = {
        i: (shape.layers[i].bitfit_params if "bitfit" in s else 0) for i, s in strategies.items()
    }
    sized_layers = [i for i, s in strategies.items() if any(x in SIZED_STRATEGIES for x in s)]
    sized_budget = sum(budgets.get(i, 0.0) for i in sized_layers)
    # What the other layers do not spend (negative when BitFit overspends) goes to sized layers.
    leftover = sum(b - bitfit_cost.get(i, 0) for i, b in budgets.items() if i not in sized_layers)
    leftover -= sum(
        bitfit_cost[i] for i in strategies if i not in sized_layers and i not in budgets
    )

    sizes: dict[int, dict[str, int]] = {i: {} for i in sorted(strategies)}
    real: list[tuple[int, str, float]] = []  # (layer, strategy, real-valued size)
    for i in sorted(strategies):
        layer = shape.layers[i]
        sized = [s for s in strategies[i] if s in SIZED_STRATEGIES]
        if "bitfit" in strategies[i]:
            sizes[i]["bitfit"] = 1
        if not sized:
            continue
        if "lora" in sized:
            missing = [t for t in lora_targets if t not in layer.projections]
            if missing:
                raise BudgetError(f"layers[{i}].lora", f"layer has no projection(s) {missing}")
        own = budgets.get(i, 0.0)
        extra = leftover * own / sized_budget if sized_budget > 0 else 0.0
        share = (own + extra - bitfit_cost[i]) / len(sized)
        for s in sized:
            unit, fixed = _unit_cost(s, layer, lora_targets)
            x = (share - fixed) / unit
            if x < 0.5:
                raise InfeasibleBudget(
                    f"layers[{i}].{s}",
                    f"share of {max(share, 0.0):.0f} parameters is too small: "
                    f"{s} of size 1 costs {unit + fixed}",
                )
            sizes[i][s] = max(1, math.floor(x))
            real.append((i, s, x))

    def cost(i: int, s: str, size: int) -> int:
        return strategy_params(s, size, shape.layers[i], lora_targets=lora_targets)

    total = sum(cost(i, s, v) for i, layer_sizes in sizes.items() for s, v in layer_sizes.items())
    # Greedy largest-remainder rounding: one unit at a time while it moves the total closer.
    by_remainder = sorted(real, key=lambda r: r[2] - math.floor(r[2]), reverse=True)
    improved = True
    while improved and total != target:
        improved = False
        for i, s, _ in by_remainder:
            unit, _fixed = _unit_cost(s, shape.layers[i], lora_targets)
            step = 1 if total < target else -1
            if step < 0 and sizes[i][s] == 1:
                continue
            if abs(total + step * unit - target) < abs(total - target):
                sizes[i][s] += step
                total += step * unit
                improved = True
    if abs(total - target) > tolerance * target:
        raise InfeasibleBudget(
            "budget",
            f"closest achievable total is {total} parameters for a target of {target} "
            f"(tolerance {tolerance:.1%})",
        )
    sizes = {i: {s: v[s] for s in STRATEGIES if s in v} for i, v in sizes.items()}
    per_layer = {
        i: sum(cost(i, s, v) for s, v in layer_sizes.items()) for i, layer_sizes in sizes.items()
    }
    return SolvedSizes(sizes=sizes, per_layer=per_layer, total=total, target=target)
