"""Design spaces: which choices remain open for each component.

A design space over G groups has 3 + G components, decided in this order by the stages:

- ``"grouping"``: a layer-grouping pattern (grouping.GROUPING_PATTERNS);
- ``"allocation"``: a parameter-allocation pattern (allocation.ALLOCATION_PATTERNS);
- ``"groups"``: which groups are tuned, a non-empty subset label such as ``"G1+G3"``;
- ``"assignment.G1"`` ... ``"assignment.G<G>"``: the strategies of that group, a non-empty subset
  label of A, P, B, L such as ``"A+L"``; irrelevant for a design that leaves the group untuned.

A space's choices are abstract (patterns, subsets), which is what lets a finished search transfer
to another backbone. S0 (``DesignSpace.initial``) leaves everything open. A space built for a
backbone (``num_layers=L``) also merges the pattern choices that give the same design on it
(aliases.py): only one representative per merged choice stays open, naming an alias in
``restrict`` means its representative, and ``aliases(component)`` says what each open choice
stands for. Without ``num_layers`` no pattern is merged (the abstract space of earlier versions).

JSON shape (``to_dict``), choices always in canonical order::

    {"schema": "pefs.space/1", "num_groups": 4,
     "choices": {"grouping": ["increasing", "uniform", ...], "allocation": [...],
                 "groups": ["G1", ..., "G1+G2+G3+G4"],
                 "assignment.G1": ["A", "P", "B", "L", "A+P", ..., "A+P+B+L"], ...}}

and, for a space built for a backbone, ``"num_layers": 6`` and the merged open choices with every
pattern they stand for, ``"aliases": {"grouping": {"uniform": ["uniform", "decreasing"]}}``.

>>> s0 = DesignSpace.initial(num_groups=4)
>>> s0.count_designs()
983025
>>> s1 = s0.restrict("grouping", ["spindle"])
>>> diff(s0, s1)[0].to_dict()["removed"]
['increasing', 'uniform', 'decreasing', 'bottleneck']
>>> minilm = DesignSpace.initial(num_groups=4, num_layers=6)
>>> minilm.open("grouping"), minilm.label("grouping", "uniform")
(('increasing', 'uniform', 'spindle', 'bottleneck'), 'uniform = decreasing')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

from experiments.space.aliases import PATTERN_COMPONENTS, Choice, pattern_choices
from experiments.space.allocation import ALLOCATION_PATTERNS
from experiments.space.errors import SpaceError
from experiments.space.grouping import GROUPING_PATTERNS
from experiments.space.subsets import group_names, group_subsets, parse_groups, strategy_subsets

SPACE_SCHEMA = "pefs.space/1"
# The tunable-groups component lists every subset explicitly (2**G - 1 of them), so G is capped to
# keep spaces small enough to store on each stage and show in the UI.
MAX_GROUPS = 12


def assignment_component(group: int) -> str:
    """Component deciding the strategies of 0-based ``group``: ``0`` -> ``"assignment.G1"``."""
    return f"assignment.G{group + 1}"


@cache
def component_names(num_groups: int) -> tuple[str, ...]:
    """All components of a space over ``num_groups`` groups, in stage (decision) order."""
    return ("grouping", "allocation", "groups") + tuple(
        assignment_component(g) for g in range(num_groups)
    )


def all_choices(component: str, num_groups: int) -> tuple[str, ...]:
    """Every possible choice of ``component``, canonical order (the S0 choice set)."""
    if component == "grouping":
        return GROUPING_PATTERNS
    if component == "allocation":
        return ALLOCATION_PATTERNS
    if component == "groups":
        return group_subsets(num_groups)
    if component in component_names(num_groups):
        return strategy_subsets()
    raise SpaceError(
        "component",
        f"unknown component {component!r}; expected one of {component_names(num_groups)}",
    )


@cache  # G = 12 has 4095 tunable-groups choices: validate by lookup, not by scanning
def _positions(component: str, num_groups: int) -> dict[str, int]:
    """Canonical position of each possible choice of ``component``."""
    return {choice: i for i, choice in enumerate(all_choices(component, num_groups))}


def _check_num_layers(num_layers: Any, num_groups: int) -> int | None:
    if num_layers is None:
        return None
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < num_groups:
        raise SpaceError(
            "num_layers",
            f"must be an integer >= num_groups ({num_groups}) or null, got {num_layers!r}",
        )
    return num_layers


def _check_num_groups(num_groups: Any) -> int:
    if isinstance(num_groups, bool) or not isinstance(num_groups, int):
        raise SpaceError("num_groups", f"must be an integer, got {num_groups!r}")
    if not 1 <= num_groups <= MAX_GROUPS:
        raise SpaceError("num_groups", f"must be between 1 and {MAX_GROUPS}, got {num_groups}")
    return num_groups


@dataclass(frozen=True)
class DesignSpace:
    """Open choices per component. Immutable; ``restrict`` returns a new space.

    Construct with ``DesignSpace.initial`` or ``DesignSpace.from_dict``; the constructor validates
    (every component present, no empty or unknown choice, no repeats) and stores choices in
    canonical order, so two equal spaces serialise identically. With ``num_layers`` it replaces
    each pattern by its representative on that backbone (aliases.py), merging aliases.
    """

    num_groups: int
    choices: Mapping[str, tuple[str, ...]]
    num_layers: int | None = None

    def __post_init__(self) -> None:
        num_groups = _check_num_groups(self.num_groups)
        num_layers = _check_num_layers(self.num_layers, num_groups)
        expected = component_names(num_groups)
        given = dict(self.choices)
        for name in given:
            if name not in expected:
                raise SpaceError(
                    f"choices.{name}", f"unknown component; expected one of {expected}"
                )
        canonical: dict[str, tuple[str, ...]] = {}
        for name in expected:
            if name not in given:
                raise SpaceError(f"choices.{name}", "missing")
            values = given[name]
            if isinstance(values, str) or not isinstance(values, Iterable):
                raise SpaceError(f"choices.{name}", f"must be a list of choices, got {values!r}")
            values = list(values)
            if not values:
                raise SpaceError(f"choices.{name}", "must keep at least one open choice")
            possible = all_choices(name, num_groups)
            position = _positions(name, num_groups)
            seen: set[str] = set()
            for i, value in enumerate(values):
                if not isinstance(value, str) or value not in position:
                    raise SpaceError(
                        f"choices.{name}[{i}]",
                        f"unknown choice {value!r}; expected one of {_preview(possible)}",
                    )
                if value in seen:
                    raise SpaceError(f"choices.{name}[{i}]", f"repeats {value!r}")
                seen.add(value)
            if num_layers is not None and name in PATTERN_COMPONENTS:
                seen = {self._representative(name, value, num_layers) for value in seen}
            canonical[name] = tuple(sorted(seen, key=position.__getitem__))
        object.__setattr__(self, "choices", MappingProxyType(canonical))

    def __reduce__(self) -> tuple[Any, ...]:
        # The choices are a read-only mappingproxy, which pickle and deepcopy cannot handle.
        return (_space_from_dict, (self.to_dict(),))

    @classmethod
    def initial(cls, *, num_groups: int = 4, num_layers: int | None = None) -> DesignSpace:
        """S0: every choice of every component open (aliases merged given ``num_layers``)."""
        num_groups = _check_num_groups(num_groups)
        return cls(
            num_groups=num_groups,
            choices={name: all_choices(name, num_groups) for name in component_names(num_groups)},
            num_layers=num_layers,
        )

    def _representative(self, component: str, value: str, num_layers: int) -> str:
        for choice in pattern_choices(
            component, num_layers=num_layers, num_groups=self.num_groups
        ):
            if value in choice.aliases:
                return choice.name
        return value

    def choice(self, component: str, name: str) -> Choice:
        """The open choice ``name`` (or one of its aliases) of ``component``, with its aliases."""
        if self.num_layers is not None and component in PATTERN_COMPONENTS:
            for choice in pattern_choices(
                component, num_layers=self.num_layers, num_groups=self.num_groups
            ):
                if name in choice.aliases and choice.name in self.open(component):
                    return choice
        if name not in self.open(component):
            open_now = list(self.open(component))
            raise SpaceError("choice", f"{name!r} is not an open choice of {component}: {open_now}")
        return Choice(name, (name,))

    def aliases(self, component: str) -> dict[str, tuple[str, ...]]:
        """Every open choice of ``component`` -> the patterns it stands for (itself first)."""
        return {name: self.choice(component, name).aliases for name in self.open(component)}

    def label(self, component: str, name: str) -> str:
        """How a person reads the open choice ``name``: ``"uniform = decreasing"``."""
        return self.choice(component, name).label

    def merged(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Component -> open choices that merge aliases -> their aliases (empty when none)."""
        result: dict[str, dict[str, tuple[str, ...]]] = {}
        for component in PATTERN_COMPONENTS:
            merged = {k: v for k, v in self.aliases(component).items() if len(v) > 1}
            if merged:
                result[component] = merged
        return result

    @property
    def components(self) -> tuple[str, ...]:
        return component_names(self.num_groups)

    def open(self, component: str) -> tuple[str, ...]:
        """The open choices of ``component``."""
        if component not in self.choices:
            raise SpaceError(
                "component", f"unknown component {component!r}; expected one of {self.components}"
            )
        return self.choices[component]

    def is_fixed(self, component: str) -> bool:
        return len(self.open(component)) == 1

    def restrict(self, component: str, keep: Iterable[str]) -> DesignSpace:
        """A new space whose ``component`` keeps only ``keep`` (each must be open here)."""
        keep = list(keep)
        if not keep:
            raise SpaceError(f"choices.{component}", "must keep at least one open choice")
        current = self.open(component)
        if self.num_layers is not None and component in PATTERN_COMPONENTS:
            keep = [self._representative(component, v, self.num_layers) for v in keep]
        for i, value in enumerate(keep):
            if value not in current:
                raise SpaceError(
                    f"choices.{component}[{i}]",
                    f"{value!r} is not open; open choices: {_preview(current)}",
                )
        return DesignSpace(
            num_groups=self.num_groups,
            choices={**self.choices, component: keep},
            num_layers=self.num_layers,
        )

    def tunable_groups(self) -> frozenset[int]:
        """0-based groups tuned by at least one open tunable-groups choice."""
        return frozenset(
            g for label in self.open("groups") for g in parse_groups(label, self.num_groups)
        )

    def always_tuned(self, group: int) -> bool:
        """True when every open tunable-groups choice tunes 0-based ``group``."""
        return all(group in parse_groups(label, self.num_groups) for label in self.open("groups"))

    def count_designs(self, *, fixing: tuple[str, str] | None = None) -> int:
        """Distinct effective designs: an untuned group's assignment does not count.

        ``fixing=(component, choice)`` counts as if that component were restricted to the choice
        (without building the restricted space: sampling asks this for every open choice).
        """

        def size(component: str) -> int:
            if fixing is not None and fixing[0] == component:
                return 1
            return len(self.open(component))

        labels = self.open("groups")
        if fixing is not None and fixing[0] == "groups":
            labels = (fixing[1],)
        per_groups = sum(
            math.prod(size(assignment_component(g)) for g in parse_groups(label, self.num_groups))
            for label in labels
        )
        return size("grouping") * size("allocation") * per_groups

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": SPACE_SCHEMA,
            "num_groups": self.num_groups,
            "choices": {name: list(values) for name, values in self.choices.items()},
        }
        if self.num_layers is not None:
            data["num_layers"] = self.num_layers
            data["aliases"] = {
                component: {name: list(names) for name, names in merged.items()}
                for component, merged in self.merged().items()
            }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesignSpace:
        """Parse and validate ``to_dict`` output (e.g. from a stage row's JSON column)."""
        if not isinstance(data, Mapping):
            raise SpaceError("space", f"must be an object, got {type(data).__name__}")
        if data.get("schema") != SPACE_SCHEMA:
            raise SpaceError("schema", f"expected {SPACE_SCHEMA!r}, got {data.get('schema')!r}")
        choices = data.get("choices")
        if not isinstance(choices, Mapping):
            raise SpaceError("choices", "must be an object mapping component names to lists")
        # "aliases" is derived from num_layers and is recomputed, never trusted from the input.
        return cls(
            num_groups=data.get("num_groups"), choices=choices, num_layers=data.get("num_layers")
        )


def _space_from_dict(data: Mapping[str, Any]) -> DesignSpace:
    return DesignSpace.from_dict(data)


@dataclass(frozen=True)
class ChoiceChange:
    """How one component's open choices differ between two spaces.

    ``aliases`` lists the choices on either side that merge several patterns (aliases.py).
    """

    component: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(v for v in self.before if v not in self.after)

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(v for v in self.after if v not in self.before)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "component": self.component,
            "before": list(self.before),
            "after": list(self.after),
            "removed": list(self.removed),
            "added": list(self.added),
        }
        if self.aliases:  # only spaces built for a backbone merge choices
            data["aliases"] = {name: list(names) for name, names in self.aliases.items()}
        return data


def diff(before: DesignSpace, after: DesignSpace) -> list[ChoiceChange]:
    """Components whose open choices differ, in stage order (empty when the spaces are equal)."""
    if before.num_groups != after.num_groups:
        raise SpaceError(
            "num_groups",
            f"cannot compare spaces over {before.num_groups} and {after.num_groups} groups",
        )
    if before.num_layers != after.num_layers:
        raise SpaceError(
            "num_layers",
            f"cannot compare spaces built for {before.num_layers} and {after.num_layers} layers",
        )
    return [
        ChoiceChange(
            name,
            before.open(name),
            after.open(name),
            {**before.merged().get(name, {}), **after.merged().get(name, {})},
        )
        for name in before.components
        if before.open(name) != after.open(name)
    ]


def _preview(values: tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


__all__ = [
    "MAX_GROUPS",
    "SPACE_SCHEMA",
    "ChoiceChange",
    "DesignSpace",
    "all_choices",
    "assignment_component",
    "component_names",
    "diff",
    "group_names",
]
