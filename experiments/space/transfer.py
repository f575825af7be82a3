"""Transfer: apply a finished search's choices to another backbone.

The choices are abstract (patterns, group subsets, strategy sets), so they compile on any backbone
with at least G layers: the grouping is recomputed for the new layer count and the sizes are
re-solved for the new widths and budget. A fractional budget is resolved against the new
backbone's parameter count (0.5% stays 0.5%); an absolute budget stays the same count.
A choice that merged aliases on the source backbone (aliases.py) transfers as its
representative pattern: on the new layer count its aliases may split again, and the
representative is the pattern the source designs were compiled from.

``choices_from_design`` recovers the choices from a design document's provenance, so a
downloaded final design can be transferred without the search that produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments.space.compiling import Budget, CompiledDesign, compile_choices
from experiments.space.errors import SpaceError
from experiments.space.space import DesignSpace, assignment_component
from experiments.space.stages import final_choices
from tasks.peft.budget import BackboneShape
from tasks.peft.design import DesignOptions


def choices_from_design(design: Mapping[str, Any]) -> tuple[dict[str, str | None], int]:
    """(choices, num_groups) recorded in a compiled design's provenance."""
    provenance = design.get("provenance") or {}
    missing = [
        k
        for k in ("grouping", "allocation", "groups", "assignment", "group_layers")
        if k not in provenance
    ]
    if missing:
        raise SpaceError(
            f"design.provenance.{missing[0]}",
            "missing: the design was not compiled from design-space choices",
        )
    num_groups = len(provenance["group_layers"])
    choices: dict[str, str | None] = {
        "grouping": provenance["grouping"],
        "allocation": provenance["allocation"],
        "groups": provenance["groups"],
    }
    for g in range(num_groups):
        choices[assignment_component(g)] = provenance["assignment"].get(f"G{g + 1}")
    return choices, num_groups


def transfer(
    source: DesignSpace | Mapping[str, Any],
    *,
    shape: BackboneShape,
    budget: Budget,
    seed: int = 0,
    num_groups: int | None = None,
    options: DesignOptions | Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> CompiledDesign:
    """Compile a finished search's choices on ``shape``.

    ``source`` is a fully decided DesignSpace, a choices mapping (then ``num_groups`` is
    required), or a ``pefs.design/1`` document compiled by this library. The new design's
    provenance records ``{"transfer": {"from": <source backbone or None>}}``.
    """
    origin = None
    if isinstance(source, DesignSpace):
        choices, groups = final_choices(source), source.num_groups
    elif isinstance(source, Mapping) and source.get("schema") == "pefs.design/1":
        choices, groups = choices_from_design(source)
        origin = (source.get("backbone") or {}).get("name_or_path")
    elif isinstance(source, Mapping):
        if num_groups is None:
            raise SpaceError("num_groups", "required when transferring a choices mapping")
        choices, groups = dict(source), num_groups
    else:
        raise SpaceError(
            "source", f"expected a DesignSpace, choices or a design, got {type(source).__name__}"
        )
    return compile_choices(
        choices,
        shape=shape,
        budget=budget,
        num_groups=groups,
        seed=seed,
        options=options,
        provenance={**dict(provenance or {}), "transfer": {"from": origin}},
    )
