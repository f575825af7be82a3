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

from tasks.peft.errors import BudgetError, FieldError, InfeasibleBudget
from tasks.peft.strategies import (
    DEFAULT_LORA_TARGETS,
    PROJECTION_ROLES,
    check_lora_targets,
    sized_names,
)
from tasks.peft.strategies import get as strategy_descriptor
from tasks.peft.strategies import names as strategy_names

# The strategies registered at import; the functions below read the registry itself, so a
# strategy registered later (tests) is counted too.
STRATEGIES: tuple[str, ...] = strategy_names()
SIZED_STRATEGIES: tuple[str, ...] = sized_names()
FAMILIES: tuple[str, ...] = ("bert", "roberta", "t5", "bart")

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "FAMILIES",
    "PROJECTION_ROLES",
    "SIZED_STRATEGIES",
    "STRATEGIES",
    "BackboneShape",
    "BudgetError",
    "FieldError",
    "InfeasibleBudget",
    "LayerShape",
    "SolvedSizes",
    "check_lora_targets",
    "layer_params",
    "solve_sizes",
    "strategy_params",
]


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


def _unit_cost(strategy: str, layer: LayerShape, lora_targets: Collection[str]) -> tuple[int, int]:
    """(cost per unit of size, fixed cost) so that params(size) = unit*size + fixed."""
    descriptor = strategy_descriptor(strategy)
    if not descriptor.sized:
        raise BudgetError(
            "strategy", f"{strategy!r} has no size; sized strategies: {list(sized_names())}"
        )
    return descriptor.cost(layer, lora_targets)


def _fixed_cost(strategy: str, layer: LayerShape) -> int:
    """Stored parameters of a strategy without a size (BitFit: the block's biases)."""
    return strategy_descriptor(strategy).cost(layer, DEFAULT_LORA_TARGETS)[1]


def strategy_params(
    strategy: str,
    size: int,
    layer: LayerShape,
    *,
    lora_targets: Collection[str] = DEFAULT_LORA_TARGETS,
) -> int:
    """Stored parameters ``strategy`` of ``size`` adds to ``layer`` (see the module docstring)."""
    if not strategy_descriptor(strategy).sized:
        return _fixed_cost(strategy, layer)
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
        if strategy_descriptor(s).sized or v
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
        known = strategy_names()
        unknown = [s for s in strats if s not in known]
        if unknown:
            raise BudgetError(f"layers[{i}]", f"unknown strategy {unknown}; known: {list(known)}")
        if strats:
            strategies[i] = [s for s in known if s in strats]
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

    sized = sized_names()
    # Strategies without a size (BitFit) cost what the architecture fixes; counted first.
    bitfit_cost = {
        i: sum(_fixed_cost(x, shape.layers[i]) for x in s if x not in sized)
        for i, s in strategies.items()
    }
    sized_layers = [i for i, s in strategies.items() if any(x in sized for x in s)]
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
        layer_sized = [s for s in strategies[i] if s in sized]
        sizes[i].update({s: 1 for s in strategies[i] if s not in sized})
        if not layer_sized:
            continue
        if "lora" in layer_sized:
            missing = [t for t in lora_targets if t not in layer.projections]
            if missing:
                raise BudgetError(f"layers[{i}].lora", f"layer has no projection(s) {missing}")
        own = budgets.get(i, 0.0)
        extra = leftover * own / sized_budget if sized_budget > 0 else 0.0
        share = (own + extra - bitfit_cost[i]) / len(layer_sized)
        for s in layer_sized:
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
    sizes = {i: {s: v[s] for s in strategy_names() if s in v} for i, v in sizes.items()}
    per_layer = {
        i: sum(cost(i, s, v) for s, v in layer_sizes.items()) for i, layer_sizes in sizes.items()
    }
    return SolvedSizes(sizes=sizes, per_layer=per_layer, total=total, target=target)
