"""Pattern choices that give the same design on a backbone are one choice (aliases.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.space.aliases import pattern_choices, representative
from experiments.space.allocation import ALLOCATION_PATTERNS
from experiments.space.errors import SpaceError
from experiments.space.grouping import GROUPING_PATTERNS, group_layers, group_sizes
from experiments.space.sampling import sample
from experiments.space.space import DesignSpace, diff
from experiments.space.stages import (
    decisions_without_training,
    next_stage,
    refine,
    remaining_stages,
)
from experiments.space.stats import TrialOutcome, summarise
from tests.tasks.peft.shapes import bert_like_shape

BACKBONES = [(layers, groups) for layers in (4, 5, 6, 12, 24) for groups in (2, 3, 4)]


def partitions(space: DesignSpace) -> list[tuple[int, ...]]:
    return [
        group_sizes(c, num_layers=space.num_layers, num_groups=space.num_groups)
        for c in space.open("grouping")
    ]


@pytest.mark.parametrize(("num_layers", "num_groups"), BACKBONES)
def test_no_two_grouping_choices_give_the_same_partition(
    num_layers: int, num_groups: int
) -> None:
    space = DesignSpace.initial(num_groups=num_groups, num_layers=num_layers)
    found = partitions(space)
    assert len(found) == len(set(found))
    # and nothing distinct was merged: as many choices as distinct partitions of all patterns
    every = {group_sizes(p, num_layers=num_layers, num_groups=num_groups)
             for p in GROUPING_PATTERNS}
    assert len(found) == len(every)


@pytest.mark.parametrize(("num_layers", "num_groups"), BACKBONES)
def test_every_pattern_is_an_alias_of_exactly_one_choice(
    num_layers: int, num_groups: int
) -> None:
    space = DesignSpace.initial(num_groups=num_groups, num_layers=num_layers)
    pattern_components = (("grouping", GROUPING_PATTERNS), ("allocation", ALLOCATION_PATTERNS))
    for component, patterns in pattern_components:
        aliases = space.aliases(component)
        named = [p for names in aliases.values() for p in names]
        assert sorted(named) == sorted(patterns), component
        for choice, names in aliases.items():
            assert names[0] == choice
            for p in names:  # each alias gives its choice's design
                assert representative(
                    component, p, num_layers=num_layers, num_groups=num_groups
                ) == choice


@pytest.mark.parametrize(("num_layers", "num_groups"), BACKBONES)
def test_refining_on_any_alias_decides_its_partition(num_layers: int, num_groups: int) -> None:
    shape = bert_like_shape(num_layers=num_layers)
    space = DesignSpace.initial(num_groups=num_groups, num_layers=num_layers)
    for pattern in GROUPING_PATTERNS:
        if space.is_fixed("grouping"):  # G = L: merged into one choice, decided without a stage
            decided, choice = space, space.open("grouping")[0]
            assert pattern in space.aliases("grouping")[choice]
        else:
            decided, decision = refine(space, "grouping", pattern, decided_by="user:alice")
            choice = decision.choice
            assert pattern in decision.aliases and decided.open("grouping") == (choice,)
            assert decision.label == space.label("grouping", choice)
        batch = sample(decided, 3, seed=1, shape=shape)
        runs = group_layers(pattern, num_layers=num_layers, num_groups=num_groups)
        expected = [list(run) for run in runs]
        for design in batch.designs:
            assert design.choices["grouping"] == choice
            assert design.design["provenance"]["group_layers"] == expected


def test_default_backbone_merges_uniform_and_decreasing() -> None:
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    assert space.open("grouping") == ("increasing", "uniform", "spindle", "bottleneck")
    assert space.label("grouping", "uniform") == "uniform = decreasing"
    assert space.label("grouping", "decreasing") == "uniform = decreasing"
    assert space.count_designs() == DesignSpace.initial(num_groups=4).count_designs() * 4 // 5
    data = json.loads(json.dumps(space.to_dict()))
    assert data["num_layers"] == 6
    assert data["aliases"] == {"grouping": {"uniform": ["uniform", "decreasing"]}}
    assert DesignSpace.from_dict(data) == space
    # A space stored before merging (or naming an alias) reads back merged.
    legacy = DesignSpace.initial(num_groups=4).to_dict()
    assert DesignSpace.from_dict({**legacy, "num_layers": 6}) == space


def test_five_layers_merge_three_patterns() -> None:
    space = DesignSpace.initial(num_groups=4, num_layers=5)
    assert space.aliases("grouping")["uniform"] == ("uniform", "decreasing", "bottleneck")
    assert len(space.open("grouping")) == 3


def test_diff_names_the_aliases_of_merged_choices() -> None:
    s0 = DesignSpace.initial(num_groups=4, num_layers=6)
    s1, _ = refine(s0, "grouping", "decreasing", decided_by="user:alice")
    (change,) = diff(s0, s1)
    data = change.to_dict()
    assert data["after"] == ["uniform"]
    assert data["aliases"] == {"uniform": ["uniform", "decreasing"]}
    with pytest.raises(SpaceError) as info:
        diff(DesignSpace.initial(num_groups=4), s0)
    assert info.value.field == "num_layers"


def test_summary_and_recommendation_name_every_alias() -> None:
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    scores = {"increasing": [60.0, 61.0], "uniform": [80.0], "decreasing": [81.0],
              "spindle": [50.0, 51.0], "bottleneck": [55.0, 56.0]}
    outcomes = [
        TrialOutcome({"grouping": pattern}, score)
        for pattern, values in scores.items()
        for score in values
    ]
    summary = summarise(
        outcomes,
        component="grouping",
        open_choices=space.open("grouping"),
        aliases=space.aliases("grouping"),
    )
    data = summary.to_dict()
    merged = next(c for c in data["choices"] if c["choice"] == "uniform")
    assert merged["aliases"] == ["uniform", "decreasing"]
    assert merged["label"] == "uniform = decreasing"
    assert merged["n"] == 2  # the trial recorded as "decreasing" counts for its choice
    assert summary.recommendation.choice == "uniform"
    assert summary.recommendation.reason.startswith("uniform = decreasing has the highest mean")


@pytest.mark.parametrize("num_layers", [1, 3, 6])
def test_a_component_that_collapses_is_decided_without_training(num_layers: int) -> None:
    # G = L: every grouping pattern puts one layer in each group.
    space = DesignSpace.initial(num_groups=num_layers, num_layers=num_layers)
    assert space.is_fixed("grouping") and next_stage(space).name != "S1"
    assert "S1" not in [s.name for s in remaining_stages(space)]
    decisions = {d.component: d for d in decisions_without_training(space)}
    grouping = decisions["grouping"]
    assert (grouping.stage, grouping.trained, grouping.override) == ("S1", False, False)
    assert sorted(grouping.aliases) == sorted(GROUPING_PATTERNS)
    assert "decided without training" in grouping.reason
    assert grouping.to_dict()["trained"] is False
    # allocation collapses only on a single layer (one tuned layer gets the whole budget)
    assert ("allocation" in decisions) == (num_layers == 1)
    assert space.is_fixed("allocation") == (num_layers == 1)


def test_no_decisions_without_training_when_choices_remain() -> None:
    assert decisions_without_training(DesignSpace.initial(num_groups=4, num_layers=6)) == ()
    assert decisions_without_training(DesignSpace.initial(num_groups=4)) == ()
    # fixed by a stage decision, not by merging: no untrained record
    space, _ = refine(DesignSpace.initial(num_groups=4, num_layers=6), "grouping", "spindle",
                      decided_by="user:alice")
    assert decisions_without_training(space) == ()


@pytest.mark.parametrize("num_layers", [2, 4, 6, 12, 24])
def test_allocation_patterns_stay_distinct_on_more_than_one_layer(num_layers: int) -> None:
    for num_groups in range(1, min(num_layers, 4) + 1):
        choices = pattern_choices("allocation", num_layers=num_layers, num_groups=num_groups)
        assert [c.name for c in choices] == list(ALLOCATION_PATTERNS)


def test_a_space_for_one_backbone_refuses_another() -> None:
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    with pytest.raises(SpaceError) as info:
        sample(space, 2, seed=0, shape=bert_like_shape(num_layers=12))
    assert info.value.field == "shape"
    with pytest.raises(SpaceError) as info:
        DesignSpace.initial(num_groups=4, num_layers=3)
    assert info.value.field == "num_layers"


@given(st.integers(1, 48).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, min(n, 12)))))
def test_merged_choices_partition_the_patterns(shape: tuple[int, int]) -> None:
    num_layers, num_groups = shape
    choices = pattern_choices("grouping", num_layers=num_layers, num_groups=num_groups)
    def split(pattern: str) -> tuple[int, ...]:
        return group_sizes(pattern, num_layers=num_layers, num_groups=num_groups)

    sizes = {c.name: split(c.name) for c in choices}
    assert len(set(sizes.values())) == len(choices)
    assert sorted(p for c in choices for p in c.aliases) == sorted(GROUPING_PATTERNS)
    for c in choices:
        assert {split(p) for p in c.aliases} == {sizes[c.name]}
