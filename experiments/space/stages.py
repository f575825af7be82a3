"""The stage machine: which component each stage decides, and greedy refinement.

Stage order (PAPER.md, after RegNet), for G groups:

======  =================  =====================================================================
name    decides            samples from
======  =================  =====================================================================
S0      nothing            S0, the unconstrained space: the reference EDF every later stage is
                           compared with (optional: ``SearchConfig.reference_stage``)
S1      grouping           S0
S2      allocation         S1 (grouping fixed)
S3      groups             S2 (grouping, allocation fixed)
S4.G1   assignment.G1      S3 (tuned groups fixed), G2..GG assignments still open
...
S4.GG   assignment.GG      S4.G(G-1): only GG's assignment open
final   nothing            the fully decided design, trained against baselines (final.py)
======  =================  =====================================================================

A stage is named for the space it produces: stage S1 samples S0 and, once decided, yields the
space S1. A component with a single open choice needs no stage (``next_stage`` skips it), and
neither does the assignment of a group S3 left untuned. On a backbone where every pattern of a
component gives the same design (grouping with G = 1 or G = L, allocation with L = 1: aliases.py)
the component is fixed from S0 on; ``decisions_without_training`` returns the decision records
that say so (``trained`` False), for the platform to store beside the trained stages' decisions.

>>> from experiments.space.space import DesignSpace
>>> space = DesignSpace.initial(num_groups=4)
>>> next_stage(space).name
'S1'
>>> space, decision = refine(space, "grouping", "spindle", decided_by="auto", recommended="spindle")
>>> next_stage(space).name, decision.override
('S2', False)
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from experiments.space.aliases import PATTERN_COMPONENTS
from experiments.space.errors import SpaceError
from experiments.space.space import DesignSpace, all_choices, component_names

AUTO = "auto"  # decided_by value of a decision applied without a person


@dataclass(frozen=True)
class StageSpec:
    """One step of a search; ``component`` is what it decides (None for S0 and final)."""

    name: str
    component: str | None
    title: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "component": self.component, "title": self.title}


REFERENCE = StageSpec("S0", None, "Reference: sample the unconstrained space")
FINAL = StageSpec("final", None, "Final: the selected design against single-strategy baselines")


def stage_for(component: str) -> StageSpec:
    """The stage that decides ``component``."""
    if component == "grouping":
        return StageSpec("S1", component, "Layer grouping")
    if component == "allocation":
        return StageSpec("S2", component, "Parameter allocation")
    if component == "groups":
        return StageSpec("S3", component, "Tunable groups")
    if component.startswith("assignment.G") and component.removeprefix("assignment.G").isdigit():
        group = component.removeprefix("assignment.")
        return StageSpec(f"S4.{group}", component, f"Strategy assignment of {group}")
    raise SpaceError("component", f"unknown component {component!r}")


def stage_order(num_groups: int, *, reference: bool = True) -> tuple[StageSpec, ...]:
    """Every stage of a search over ``num_groups`` groups, in order (for display and plans)."""
    decided = tuple(stage_for(c) for c in component_names(num_groups))
    return ((REFERENCE,) if reference else ()) + decided + (FINAL,)


def _pending(space: DesignSpace, component: str) -> bool:
    """Does ``component`` still need a stage in ``space``?"""
    if space.is_fixed(component):
        return False
    if component.startswith("assignment."):
        group = int(component.removeprefix("assignment.G")) - 1
        # Before S3 every group may still be tuned; after it, untuned groups need no strategies.
        return group in space.tunable_groups()
    return True


def next_stage(space: DesignSpace) -> StageSpec:
    """The stage that decides the first still-open component, or FINAL when none is left."""
    for component in space.components:
        if _pending(space, component):
            return stage_for(component)
    return FINAL


def remaining_stages(space: DesignSpace) -> tuple[StageSpec, ...]:
    """The stages still to run from ``space``, ending with FINAL (the plan shown to the user)."""
    return tuple(stage_for(c) for c in space.components if _pending(space, c)) + (FINAL,)


def final_choices(space: DesignSpace) -> dict[str, str | None]:
    """The single design a fully decided space describes (untuned groups' assignments: None)."""
    stage = next_stage(space)
    if stage is not FINAL:
        raise SpaceError(
            "space", f"not fully decided: {stage.component} is still open ({stage.name})"
        )
    tuned = space.tunable_groups()
    choices: dict[str, str | None] = {}
    for component in space.components:
        irrelevant = (
            component.startswith("assignment.")
            and int(component.removeprefix("assignment.G")) - 1 not in tuned
        )
        choices[component] = None if irrelevant else space.open(component)[0]
    return choices


def stage_seed(seed: int, stage_name: str) -> int:
    """A sampling seed per stage derived from the search seed (stable across processes)."""
    return (seed * 1_000_003 + zlib.crc32(stage_name.encode())) % 2**31


@dataclass(frozen=True)
class Decision:
    """The record of one refinement: what was decided, by whom, and why.

    ``override`` is True when the choice differs from the stage's recommendation; an override
    always carries a reason. ``aliases`` are the patterns the chosen choice stands for on the
    space's backbone (itself first; just the choice when nothing merged). ``trained`` is False for
    a component decided without a stage because all its choices were aliases of one.
    """

    stage: str
    component: str
    choice: str
    recommended: str | None
    override: bool
    decided_by: str
    reason: str
    open_before: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    trained: bool = True

    @property
    def label(self) -> str:
        """The chosen choice as a person reads it: ``"uniform = decreasing"``."""
        return " = ".join(self.aliases) if self.aliases else self.choice

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "component": self.component,
            "choice": self.choice,
            "recommended": self.recommended,
            "override": self.override,
            "decided_by": self.decided_by,
            "reason": self.reason,
            "open_before": list(self.open_before),
            "aliases": list(self.aliases or (self.choice,)),
            "label": self.label,
            "trained": self.trained,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        try:
            return cls(
                stage=str(data["stage"]),
                component=str(data["component"]),
                choice=str(data["choice"]),
                recommended=data.get("recommended"),
                override=bool(data["override"]),
                decided_by=str(data["decided_by"]),
                reason=str(data.get("reason", "")),
                open_before=tuple(data["open_before"]),
                aliases=tuple(data.get("aliases") or ()),
                trained=bool(data.get("trained", True)),
            )
        except KeyError as exc:
            raise SpaceError(f"decision.{exc.args[0]}", "missing") from None


def refine(
    space: DesignSpace,
    component: str,
    choice: str,
    *,
    decided_by: str,
    reason: str = "",
    recommended: str | None = None,
) -> tuple[DesignSpace, Decision]:
    """Fix ``component`` to ``choice``; return the next space and the decision record.

    ``component`` must be the one ``next_stage(space)`` decides (the greedy order of the paper).
    ``recommended`` is the stage summary's ``recommendation.choice``; choosing anything else is an
    override and needs a ``reason``. ``decided_by`` is ``"auto"`` (only the recommendation itself
    may be applied automatically) or who decided, e.g. ``"user:alice"``.
    """
    expected = next_stage(space)
    if expected.component != component:
        wanted = (
            f"{expected.component!r} ({expected.name})"
            if expected.component
            else "nothing (the space is fully decided)"
        )
        raise SpaceError("component", f"the next stage decides {wanted}, not {component!r}")
    if not isinstance(decided_by, str) or not decided_by.strip():
        raise SpaceError("decided_by", "must name who decided (e.g. 'auto' or 'user:alice')")
    # An alias names its merged choice (aliases.py): refining on "decreasing" where it merged
    # into "uniform" decides "uniform = decreasing".
    choice_aliases = space.choice(component, choice).aliases
    choice = choice_aliases[0]
    if recommended is not None:
        try:
            recommended = space.choice(component, recommended).name
        except SpaceError:
            raise SpaceError(
                "recommended", f"{recommended!r} is not an open choice of {component}"
            ) from None
    override = recommended is not None and choice != recommended
    reason = (reason or "").strip()
    if decided_by == AUTO and (recommended is None or override):
        raise SpaceError(
            "decided_by", "only the stage's recommendation can be applied automatically"
        )
    if override and not reason:
        raise SpaceError("reason", f"overriding the recommendation {recommended!r} needs a reason")
    decision = Decision(
        stage=expected.name,
        component=component,
        choice=choice,
        recommended=recommended,
        override=override,
        decided_by=decided_by,
        reason=reason,
        open_before=space.open(component),
        aliases=choice_aliases,
    )
    return space.restrict(component, [choice]), decision


def decisions_without_training(space: DesignSpace) -> tuple[Decision, ...]:
    """Decisions for pattern components whose every choice is an alias of one (module docstring).

    Empty for a space without ``num_layers`` or where every pattern component still has several
    distinct choices. Decided by ``AUTO``, never an override, ``trained`` False.

    >>> space = DesignSpace.initial(num_groups=6, num_layers=6)
    >>> [d.label for d in decisions_without_training(space)]
    ['uniform = increasing = decreasing = spindle = bottleneck']
    """
    decisions = []
    for component in PATTERN_COMPONENTS:
        everything = all_choices(component, space.num_groups)
        if not space.is_fixed(component):
            continue
        choice = space.choice(component, space.open(component)[0])
        if set(choice.aliases) != set(everything):
            continue  # fixed by a decision or by the caller, not by merging
        what = "layer partition" if component == "grouping" else "per-layer budget shares"
        decisions.append(
            Decision(
                stage=stage_for(component).name,
                component=component,
                choice=choice.name,
                recommended=choice.name,
                override=False,
                decided_by=AUTO,
                reason=(
                    f"all {len(everything)} {component} patterns give the same {what} on this "
                    f"{space.num_layers}-layer backbone with G = {space.num_groups}: decided "
                    "without training"
                ),
                open_before=everything,
                aliases=choice.aliases,
                trained=False,
            )
        )
    return tuple(decisions)


__all__ = [
    "AUTO",
    "FINAL",
    "REFERENCE",
    "Decision",
    "StageSpec",
    "decisions_without_training",
    "final_choices",
    "next_stage",
    "refine",
    "remaining_stages",
    "stage_for",
    "stage_order",
    "stage_seed",
]
