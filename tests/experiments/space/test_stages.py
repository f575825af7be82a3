from __future__ import annotations

import pytest

from experiments.space.errors import SpaceError
from experiments.space.space import DesignSpace
from experiments.space.stages import (
    FINAL,
    REFERENCE,
    Decision,
    final_choices,
    next_stage,
    refine,
    remaining_stages,
    stage_order,
    stage_seed,
)
from tests.experiments.space.paper import PAPER_S4


def test_stage_order_s0_to_s4_g4() -> None:
    assert [s.name for s in stage_order(4)] == [
        "S0",
        "S1",
        "S2",
        "S3",
        "S4.G1",
        "S4.G2",
        "S4.G3",
        "S4.G4",
        "final",
    ]
    assert [s.component for s in stage_order(4, reference=False)][:4] == [
        "grouping",
        "allocation",
        "groups",
        "assignment.G1",
    ]
    assert stage_order(2)[0] is REFERENCE and stage_order(2)[-1] is FINAL


def test_greedy_refinement_walks_the_paper_path() -> None:
    space = DesignSpace.initial(num_groups=4)
    names, records = [], []
    for component, choice in PAPER_S4.items():
        stage = next_stage(space)
        assert stage.component == component
        names.append(stage.name)
        space, decision = refine(space, component, choice, decided_by="auto", recommended=choice)
        records.append(decision)
    assert names == ["S1", "S2", "S3", "S4.G1", "S4.G2", "S4.G3", "S4.G4"]
    assert next_stage(space) is FINAL and remaining_stages(space) == (FINAL,)
    assert final_choices(space) == PAPER_S4
    assert records[0].open_before == (
        "increasing",
        "uniform",
        "decreasing",
        "spindle",
        "bottleneck",
    )
    assert not any(r.override for r in records)


def test_override_keeps_the_reason() -> None:
    space = DesignSpace.initial(num_groups=4)
    space, decision = refine(
        space,
        "grouping",
        "uniform",
        decided_by="user:alice",
        reason="spindle is not separable from uniform; prefer the simpler one",
        recommended="spindle",
    )
    assert space.open("grouping") == ("uniform",)
    record = decision.to_dict()
    assert record == {
        "stage": "S1",
        "component": "grouping",
        "choice": "uniform",
        "recommended": "spindle",
        "override": True,
        "decided_by": "user:alice",
        "reason": "spindle is not separable from uniform; prefer the simpler one",
        "open_before": ["increasing", "uniform", "decreasing", "spindle", "bottleneck"],
        "aliases": ["uniform"],
        "label": "uniform",
        "trained": True,
    }
    assert Decision.from_dict(record) == decision


def test_untuned_groups_get_no_strategy_stage() -> None:
    space = DesignSpace.initial(num_groups=4)
    for component, choice in [
        ("grouping", "spindle"),
        ("allocation", "uniform"),
        ("groups", "G2+G4"),
    ]:
        space, _ = refine(space, component, choice, decided_by="user:bob")
    assert [s.name for s in remaining_stages(space)] == ["S4.G2", "S4.G4", "final"]
    for component in ("assignment.G2", "assignment.G4"):
        space, _ = refine(space, component, "L", decided_by="user:bob")
    choices = final_choices(space)
    assert choices["assignment.G1"] is None and choices["assignment.G4"] == "L"


def test_components_fixed_up_front_are_skipped() -> None:
    space = DesignSpace.initial(num_groups=4).restrict("grouping", ["spindle"])
    assert next_stage(space).name == "S2"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (
            {
                "component": "allocation",
                "choice": "uniform",
                "decided_by": "auto",
                "recommended": "uniform",
            },
            "component",
        ),
        ({"component": "grouping", "choice": "zigzag", "decided_by": "user:a"}, "choice"),
        (
            {
                "component": "grouping",
                "choice": "uniform",
                "decided_by": "user:a",
                "recommended": "spindle",
            },
            "reason",
        ),
        (
            {
                "component": "grouping",
                "choice": "uniform",
                "decided_by": "auto",
                "recommended": "spindle",
                "reason": "x",
            },
            "decided_by",
        ),
        ({"component": "grouping", "choice": "uniform", "decided_by": "auto"}, "decided_by"),
        ({"component": "grouping", "choice": "uniform", "decided_by": " "}, "decided_by"),
        (
            {
                "component": "grouping",
                "choice": "uniform",
                "decided_by": "user:a",
                "recommended": "zigzag",
            },
            "recommended",
        ),
    ],
)
def test_bad_refinements_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpaceError) as info:
        refine(DesignSpace.initial(num_groups=4), **kwargs)
    assert info.value.field == field


def test_final_choices_need_a_decided_space() -> None:
    with pytest.raises(SpaceError) as info:
        final_choices(DesignSpace.initial())
    assert info.value.field == "space"


def test_stage_seeds_differ_per_stage_and_are_stable() -> None:
    assert stage_seed(0, "S1") != stage_seed(0, "S2")
    assert stage_seed(5, "S4.G1") == stage_seed(5, "S4.G1")
