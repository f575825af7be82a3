"""Aliases: pattern choices that give the same design on one backbone are one choice.

The grouping and allocation patterns are defined for any backbone, but on a given number of
layers L some of them coincide. On the default 6-layer backbone with G = 4, "uniform" and
"decreasing" both split the layers (2, 2, 1, 1); at L = 5 "uniform", "decreasing" and "bottleneck"
all give (2, 1, 1, 1); with G = 1 or G = L every pattern gives the same split. Ranking such
patterns against each other would compare a design with itself, so a space built for a backbone
(``DesignSpace.initial(..., num_layers=L)``) merges them into one choice:

- grouping: patterns alias when ``grouping.group_sizes`` is equal for (L, G);
- allocation: patterns alias when they give every tuned layer the same share for every number of
  tuned layers the space allows. A space's tunable-groups component always offers "all groups",
  which tunes all L layers, so on L >= 2 the three allocation patterns differ and only L = 1 (one
  tuned layer, whole budget) merges them;
- tunable groups and strategy sets never alias: different labels tune different layers or train
  different strategies.

A merged choice is named by one of its patterns, its *representative*: "uniform" when it is in
the class (the honest name when every group or layer gets the same share), else the first in
canonical order. The representative is what the space keeps open, what designs are compiled from
and what transfers to another backbone; the label names every alias, representative first.

>>> [c.label for c in pattern_choices("grouping", num_layers=6, num_groups=4)]
['increasing', 'uniform = decreasing', 'spindle', 'bottleneck']
>>> pattern_choices("allocation", num_layers=1, num_groups=1)[0].aliases
('uniform', 'increasing', 'decreasing')
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any

from experiments.space.allocation import ALLOCATION_PATTERNS, allocation_weights
from experiments.space.errors import SpaceError
from experiments.space.grouping import GROUPING_PATTERNS, group_sizes

# Components whose choices are patterns and can therefore alias on a backbone.
PATTERN_COMPONENTS: tuple[str, ...] = ("grouping", "allocation")
PREFERRED = "uniform"
LABEL_SEPARATOR = " = "


@dataclass(frozen=True)
class Choice:
    """One choice of a component: its representative ``name`` and every pattern it stands for.

    ``aliases`` always contains ``name`` first; a choice that merges nothing has ``(name,)``.
    """

    name: str
    aliases: tuple[str, ...]

    @property
    def merged(self) -> bool:
        return len(self.aliases) > 1

    @property
    def label(self) -> str:
        """What a person reads: ``"uniform = decreasing"``, or just the name."""
        return LABEL_SEPARATOR.join(self.aliases)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "label": self.label}


def _check_shape(num_layers: int, num_groups: int) -> None:
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise SpaceError("num_layers", f"must be a positive integer, got {num_layers!r}")
    if not 1 <= num_groups <= num_layers:
        raise SpaceError(
            "num_groups",
            f"must be between 1 and the number of layers ({num_layers}), got {num_groups}",
        )


def _design_key(component: str, pattern: str, num_layers: int, num_groups: int) -> Any:
    """What ``pattern`` does to the design; equal keys mean aliases (module docstring)."""
    if component == "grouping":
        return group_sizes(pattern, num_layers=num_layers, num_groups=num_groups)
    # Shares per tuned layer for every tuned-layer count 1..L ("all groups" reaches L).
    return tuple(
        tuple(Fraction(w, sum(weights)) for w in weights)
        for m in range(1, num_layers + 1)
        for weights in [allocation_weights(pattern, m)]
    )


@cache
def pattern_choices(component: str, *, num_layers: int, num_groups: int) -> tuple[Choice, ...]:
    """The distinct choices of a pattern component on (L, G), in canonical order of their names."""
    patterns = {"grouping": GROUPING_PATTERNS, "allocation": ALLOCATION_PATTERNS}.get(component)
    if patterns is None:
        raise SpaceError(
            "component", f"{component!r} has no patterns; expected one of {PATTERN_COMPONENTS}"
        )
    _check_shape(num_layers, num_groups)
    classes: dict[Any, list[str]] = {}
    for pattern in patterns:
        classes.setdefault(_design_key(component, pattern, num_layers, num_groups), []).append(
            pattern
        )
    choices = []
    for members in classes.values():
        name = PREFERRED if PREFERRED in members else members[0]
        choices.append(Choice(name, (name, *(m for m in members if m != name))))
    return tuple(sorted(choices, key=lambda c: patterns.index(c.name)))


def representative(component: str, pattern: str, *, num_layers: int, num_groups: int) -> str:
    """The name of the choice ``pattern`` belongs to on (L, G); ``pattern`` itself if unmerged.

    >>> representative("grouping", "decreasing", num_layers=6, num_groups=4)
    'uniform'
    """
    for choice in pattern_choices(component, num_layers=num_layers, num_groups=num_groups):
        if pattern in choice.aliases:
            return choice.name
    raise SpaceError(component, f"unknown pattern {pattern!r}")


__all__ = [
    "PATTERN_COMPONENTS",
    "Choice",
    "pattern_choices",
    "representative",
]
