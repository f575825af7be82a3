"""Trials per stage, known before the search starts (planning.py)."""

from __future__ import annotations

import json

import pytest

from experiments.space.errors import SpaceError
from experiments.space.final import ARMS
from experiments.space.planning import search_plan, stage_plan
from experiments.space.presets import preset
from experiments.space.space import DesignSpace
from experiments.space.stages import REFERENCE, refine


def test_quick_preset_on_the_default_backbone_says_what_it_raised() -> None:
    plan = search_plan(preset("quick"), num_layers=6, tasks=1)
    rows = {s.name: s for s in plan.stages}
    assert [s.name for s in plan.stages] == [
        "S1", "S2", "S3", "S4.G1", "S4.G2", "S4.G3", "S4.G4", "final"
    ]
    assert (rows["S1"].choices, rows["S1"].designs, rows["S1"].raised_from) == (4, 8, None)
    assert (rows["S3"].choices, rows["S3"].designs, rows["S3"].raised_from) == (15, 30, 8)
    assert "raised from 8 to 30" in rows["S3"].note
    assert rows["S4.G2"].upper_bound and "runs only if S3 tunes G2" in rows["S4.G2"].note
    # arms x tasks x (2 tuning rates + 3 report seeds); issue 10: rates are tuned per arm
    assert rows["final"].designs == len(ARMS) * 1 * (2 + 3)
    assert plan.trials == 8 + 8 + 30 + 4 * 30 + 6 * 5 and plan.upper_bound
    assert [s.name for s in plan.raised] == ["S3", "S4.G1", "S4.G2", "S4.G3", "S4.G4"]
    json.dumps(plan.to_dict())


def test_paper_preset_needs_no_raise_and_counts_task_epochs() -> None:
    plan = search_plan(preset("paper"), num_layers=12, tasks=3)
    assert plan.raised == ()
    s0, final = plan.stages[0], plan.stages[-1]
    assert s0.name == REFERENCE.name and s0.designs == 100 and s0.stratify is None
    assert s0.task_epochs == 100 * 3 * 3  # designs x epochs x tasks per trial
    # runs (3 tuning rates + 3 report seeds per arm and task) x final epochs, one task each
    assert final.task_epochs == len(ARMS) * 3 * (3 + 3) * 10
    assert plan.task_epochs == sum(s.task_epochs for s in plan.stages)


def test_a_collapsed_component_plans_no_trials() -> None:
    # G = L = 6: every grouping pattern is one layer per group
    plan = search_plan(preset("quick", num_groups=6), num_layers=6)
    s1 = plan.stages[0]
    assert (s1.name, s1.designs, s1.trained) == ("S1", 0, False)
    assert "decided without training" in s1.note
    # G = 1: the tunable-groups stage has nothing to decide and G1 is surely tuned
    one = search_plan(preset("quick", num_groups=1), num_layers=6)
    assert "S3" not in [s.name for s in one.stages]
    assert not next(s for s in one.stages if s.name == "S4.G1").upper_bound


def test_stage_plan_matches_the_search_plan_and_follows_decisions() -> None:
    config = preset("quick", num_groups=4)
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    planned = {s.name: s for s in search_plan(config, num_layers=6).stages}
    for component, choice in (("grouping", "spindle"), ("allocation", "uniform")):
        plan = stage_plan(config, space)
        assert plan.designs == planned[plan.name].designs
        assert (plan.balance, plan.stratify) == (component, component)
        space, _ = refine(space, component, choice, decided_by="user:alice")
    assert stage_plan(config, space).designs == planned["S3"].designs
    space, _ = refine(space, "groups", "G1+G3", decided_by="user:alice")
    s4 = stage_plan(config, space)
    assert (s4.name, s4.choices, s4.designs, s4.min_per_choice) == ("S4.G1", 15, 30, 2)
    unbalanced = stage_plan(config.replace(balance=False), space)
    assert (unbalanced.balance, unbalanced.stratify) == (None, "assignment.G1")


def test_reference_stage_plan_and_bad_arguments() -> None:
    config = preset("paper")
    space = DesignSpace.initial(num_groups=4, num_layers=12)
    assert stage_plan(config, space, REFERENCE).designs == 100
    with pytest.raises(SpaceError) as info:
        search_plan(config, num_layers=3)
    assert info.value.field == "num_layers"
    with pytest.raises(SpaceError) as info:
        search_plan(config, num_layers=12, tasks=0)
    assert info.value.field == "tasks"
