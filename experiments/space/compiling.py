"""Budgets and the compilation of abstract choices into a concrete ``pefs.design/1`` document.

Compilation of one set of choices on a backbone (``compile_choices``):

1. grouping pattern -> the layers of each group (grouping.group_layers, G <= L required);
2. tuned groups -> tuned layers, each carrying its group's strategy set;
3. allocation pattern -> a real-valued budget per tuned layer (allocation.layer_budgets) summing
   to the resolved budget;
4. ``tasks.peft.budget.solve_sizes`` -> integer sizes (raises ``InfeasibleBudget`` when the budget
   cannot be met, e.g. BitFit alone cannot spend it);
5. ``tasks.peft.design.design_from_sizes`` -> the validated design, with the choices recorded in its
   provenance, and each strategy it uses at its own learning rate (``options.<strategy>.
   learning_rate``; :func:`rate_options`): the rate the caller's options give, else the search's
   ``learning_rates``, else the measured default (``tasks.peft.strategies.default_learning_rates``).
   The engine trains each strategy's parameters in its own optimizer group at that rate.
The package docstring (``experiments.space``) shows a full example.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from experiments.space.allocation import ALLOCATION_PATTERNS, layer_budgets
from experiments.space.errors import SpaceError
from experiments.space.grouping import GROUPING_PATTERNS, group_layers
from experiments.space.space import assignment_component, component_names
from experiments.space.subsets import parse_groups, parse_strategies
from tasks.peft.budget import BackboneShape, solve_sizes
from tasks.peft.design import Design, DesignOptions, design_from_sizes
from tasks.peft.strategies import default_learning_rates

Choices = Mapping[str, "str | None"]


# Larger than any backbone PEFS can train; a bound so that no typed number is unbounded.
MAX_BUDGET_PARAMETERS = 10**12


@dataclass(frozen=True)
class Budget:
    """The PEFT parameter budget: a fraction of the backbone's parameters or an absolute count.

    Exactly one of the two is set; ``Budget()`` is the paper's 0.5%.

    >>> Budget().to_dict(), Budget(parameters=50_000).to_dict()
    ({'fraction': 0.005}, {'parameters': 50000})
    >>> Budget(fraction=-0.1)
    Traceback (most recent call last):
    ...
    experiments.space.errors.SpaceError: budget.fraction: must be in (0, 1), got -0.1
    """

    fraction: float | None = None
    parameters: int | None = None

    def __post_init__(self) -> None:
        if self.fraction is None and self.parameters is None:
            object.__setattr__(self, "fraction", 0.005)
        elif self.fraction is not None and self.parameters is not None:
            raise SpaceError("budget", "give either a fraction or a parameter count, not both")
        if self.fraction is not None:
            f = self.fraction
            if (
                isinstance(f, bool)
                or not isinstance(f, (int, float))
                or not math.isfinite(f)
                or not 0 < f < 1
            ):
                raise SpaceError("budget.fraction", f"must be in (0, 1), got {f!r}")
            object.__setattr__(self, "fraction", float(f))
        if self.parameters is not None:
            p = self.parameters
            if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= MAX_BUDGET_PARAMETERS:
                raise SpaceError(
                    "budget.parameters",
                    f"must be an integer from 1 to {MAX_BUDGET_PARAMETERS:,}, got {str(p)[:40]}",
                )

    def resolve(self, shape: BackboneShape) -> int:
        """The target parameter count on ``shape``."""
        if self.parameters is not None:
            return self.parameters
        assert self.fraction is not None  # set by __post_init__
        return max(1, round(self.fraction * shape.total_params))

    def to_dict(self) -> dict[str, Any]:
        return (
            {"parameters": self.parameters}
            if self.parameters is not None
            else {"fraction": self.fraction}
        )

    @classmethod
    def from_dict(cls, data: Any) -> Budget:
        if isinstance(data, Budget):
            return data
        if not isinstance(data, Mapping):
            raise SpaceError(
                "budget", f"must be an object with 'fraction' or 'parameters', got {data!r}"
            )
        unknown = sorted(set(data) - {"fraction", "parameters"})
        if unknown:
            raise SpaceError(
                f"budget.{unknown[0]}", "unknown field; expected 'fraction' or 'parameters'"
            )
        return cls(fraction=data.get("fraction"), parameters=data.get("parameters"))


@dataclass(frozen=True)
class CompiledDesign:
    """Abstract choices and the concrete design they compile to on one backbone."""

    choices: Mapping[str, str | None]  # every component; None = not applicable (untuned group)
    design: Design
    target: int  # the resolved budget the solver aimed at

    @property
    def parameters(self) -> int:
        """Exact stored PEFT parameters of the design (task head excluded)."""
        return self.design.trainable_parameters.peft_total


def effective_choices(choices: Choices, num_groups: int) -> dict[str, str | None]:
    """Validate a full set of choices; the assignment of an untuned group becomes None.

    Assignments may be omitted (or None) for untuned groups, and must be given for tuned ones.
    """
    names = component_names(num_groups)
    unknown = sorted(set(choices) - set(names))
    if unknown:
        raise SpaceError(f"choices.{unknown[0]}", f"unknown component; expected one of {names}")
    for name in ("grouping", "allocation", "groups"):
        if not isinstance(choices.get(name), str):
            raise SpaceError(f"choices.{name}", f"missing or not a string: {choices.get(name)!r}")
    tuned = parse_groups(choices["groups"], num_groups, field="choices.groups")
    result: dict[str, str | None] = {
        name: choices[name] for name in ("grouping", "allocation", "groups")
    }
    for g in range(num_groups):
        name = assignment_component(g)
        if g in tuned:
            if not isinstance(choices.get(name), str):
                raise SpaceError(
                    f"choices.{name}", f"group G{g + 1} is tuned and needs a strategy set"
                )
            parse_strategies(choices[name], field=f"choices.{name}")
            result[name] = choices[name]
        else:
            result[name] = None
    for name, patterns in (("grouping", GROUPING_PATTERNS), ("allocation", ALLOCATION_PATTERNS)):
        if result[name] not in patterns:
            raise SpaceError(
                f"choices.{name}", f"unknown pattern {result[name]!r}; expected one of {patterns}"
            )
    return result


def rate_options(
    options: DesignOptions | Mapping[str, Any] | None,
    used: Iterable[str],
    learning_rates: Mapping[str, float] | None = None,
) -> DesignOptions:
    """``options`` with a learning rate for every strategy in ``used`` and none for the others.

    A rate ``options`` already gives is kept; otherwise ``learning_rates[name]``, else the
    strategy's measured default. A strategy without either trains at the trial's base rate.

    >>> rate_options(None, ["lora"], {"lora": 1e-3}).to_dict()["lora"]["learning_rate"]
    0.001
    >>> "learning_rate" in rate_options({"adapter": {"learning_rate": 0.1}}, []).to_dict().get(
    ...     "adapter", {})
    False
    """
    written = (
        options.to_dict() if isinstance(options, DesignOptions) else dict(options or {})
    )
    used = set(used)
    rates = {**default_learning_rates(), **dict(learning_rates or {})}
    result: dict[str, Any] = {}
    for name, group in written.items():
        group = dict(group) if isinstance(group, Mapping) else group
        if isinstance(group, dict) and name not in used:
            group.pop("learning_rate", None)
        result[name] = group
    for name in sorted(used):
        group = result.setdefault(name, {})
        if isinstance(group, dict) and group.get("learning_rate") is None and name in rates:
            group["learning_rate"] = rates[name]
    return DesignOptions.from_dict(result)


def _used_strategies(sizes: Mapping[int, Mapping[str, int]]) -> set[str]:
    return {name for entry in sizes.values() for name, size in entry.items() if size}


def compile_choices(
    choices: Choices,
    *,
    shape: BackboneShape,
    budget: Budget,
    num_groups: int,
    seed: int,
    options: DesignOptions | Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    learning_rates: Mapping[str, float] | None = None,
) -> CompiledDesign:
    """Compile one full set of choices on ``shape`` (see the module docstring).

    ``learning_rates``: per-strategy rates for the strategies ``options`` leaves without one
    (None: the measured defaults).

    Raises ``SpaceError`` for bad choices or ``num_groups`` > layers, and
    ``tasks.peft.budget.InfeasibleBudget`` when the budget cannot be met.
    """
    if num_groups > shape.num_layers:
        raise SpaceError(
            "num_groups",
            f"{num_groups} groups need at least as many layers; "
            f"{shape.name_or_path} has {shape.num_layers}",
        )
    effective = effective_choices(choices, num_groups)
    options = options if isinstance(options, DesignOptions) else DesignOptions.from_dict(options)
    runs = group_layers(effective["grouping"], num_layers=shape.num_layers, num_groups=num_groups)
    layer_strategies: dict[int, tuple[str, ...]] = {}
    for g in parse_groups(effective["groups"], num_groups):
        strategies = parse_strategies(effective[assignment_component(g)])
        for layer in runs[g]:
            layer_strategies[layer] = strategies
    target = budget.resolve(shape)
    budgets = layer_budgets(
        effective["allocation"], tuned_layers=sorted(layer_strategies), total=target
    )
    solved = solve_sizes(budgets, layer_strategies, shape, lora_targets=options.lora.targets)
    design = design_from_sizes(
        shape,
        solved.sizes,
        seed=seed,
        options=rate_options(options, _used_strategies(solved.sizes), learning_rates),
        provenance={
            **dict(provenance or {}),
            "grouping": effective["grouping"],
            "allocation": effective["allocation"],
            "groups": effective["groups"],
            "assignment": {
                f"G{g + 1}": effective[assignment_component(g)]
                for g in range(num_groups)
                if effective[assignment_component(g)] is not None
            },
            "group_layers": [list(run) for run in runs],
            "budget": {**budget.to_dict(), "target": target},
        },
    )
    return CompiledDesign(choices=effective, design=design, target=target)
