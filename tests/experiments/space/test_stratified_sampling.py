"""Stratified sampling: every open choice of the decided component gets min_per_choice designs."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.space.errors import SpaceError
from experiments.space.sampling import NO_FEASIBLE_DESIGN, sample
from experiments.space.space import DesignSpace
from tests.experiments.space.paper import PAPER_S4
from tests.experiments.space.shapes import minilm_shape


def last_stage_space() -> DesignSpace:
    """S4.G4 of the paper's path: only G4's assignment open, one design per choice."""
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    for component, choice in list(PAPER_S4.items())[:-1]:
        space = space.restrict(component, [choice])
    return space


def test_the_quick_stage_that_discarded_seven_choices_now_trains_all_fifteen() -> None:
    # Given S3 on the default backbone: 15 tunable-groups choices
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    space = space.restrict("grouping", ["spindle"]).restrict("allocation", ["uniform"])
    # When 30 designs are drawn with two per choice
    batch = sample(space, 30, seed=3, shape=minilm_shape(), balance="groups", min_per_choice=2)
    counts = Counter(d.choices["groups"] for d in batch.designs)
    # Then every choice has two, none untried
    assert set(counts) == set(space.open("groups")) and set(counts.values()) == {2}
    assert batch.untried == {} and batch.distinct == 30


def test_without_balance_the_rest_is_drawn_uniformly_after_the_quota() -> None:
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    batch = sample(space, 40, seed=5, shape=minilm_shape(), stratify="grouping", min_per_choice=3)
    quota = 3 * len(space.open("grouping"))
    first = Counter(d.choices["grouping"] for d in batch.designs[:quota])
    assert set(first.values()) == {3}  # the first rounds are stratified
    assert len(batch.designs) == 40 and batch.distinct == 40


def test_a_choice_with_too_few_distinct_designs_repeats_its_own() -> None:
    space = last_stage_space()
    batch = sample(
        space, 30, seed=0, shape=minilm_shape(), balance="assignment.G4", min_per_choice=2
    )
    counts = Counter(d.choices["assignment.G4"] for d in batch.designs)
    assert set(counts.values()) == {2} and len(counts) == 15
    for d in batch.designs:
        if d.repeat_of is not None:
            original = batch.designs[d.repeat_of]
            assert original.choices == d.choices and original.seed != d.seed
    assert "repeats them with new seeds" in batch.shortfall


def test_a_choice_no_design_can_afford_is_reported_untried() -> None:
    # Given G1 is BitFit only, a BitFit-only G2 cannot spend the budget
    space = DesignSpace.initial(num_groups=2).restrict("assignment.G1", ["B"])
    space = space.restrict("grouping", ["uniform"]).restrict("allocation", ["uniform"])
    space = space.restrict("groups", ["G1+G2"])
    batch = sample(
        space, 30, seed=1, shape=minilm_shape(), balance="assignment.G2", min_per_choice=2
    )
    counts = Counter(d.choices["assignment.G2"] for d in batch.designs)
    assert "B" not in counts and batch.untried == {"B": NO_FEASIBLE_DESIGN}
    assert batch.infeasible_choices == ("B",)
    assert all(counts[c] >= 2 for c in space.open("assignment.G2") if c != "B")
    assert batch.to_dict()["untried"] == {"B": NO_FEASIBLE_DESIGN}


def test_too_small_a_batch_for_the_quota_is_refused() -> None:
    space = DesignSpace.initial(num_groups=4)
    with pytest.raises(SpaceError) as info:
        sample(space, 8, seed=0, shape=minilm_shape(), balance="groups", min_per_choice=2)
    assert info.value.field == "n" and "15 open groups choices x 2" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_per_choice": 2}, "stratify"),
        ({"min_per_choice": -1, "balance": "groups"}, "min_per_choice"),
        ({"balance": "groups", "stratify": "grouping", "min_per_choice": 1}, "stratify"),
        ({"stratify": "assignment.G1", "min_per_choice": 1}, "stratify"),
    ],
)
def test_bad_stratification_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpaceError) as info:
        sample(DesignSpace.initial(num_groups=4), 40, seed=0, shape=minilm_shape(), **kwargs)
    assert info.value.field == field


@settings(max_examples=15, deadline=None)
@given(
    component=st.sampled_from(["grouping", "allocation", "groups"]),
    per_choice=st.integers(1, 3),
    extra=st.integers(0, 7),
    seed=st.integers(0, 10_000),
    balanced=st.booleans(),
)
def test_every_open_choice_gets_its_quota(
    component: str, per_choice: int, extra: int, seed: int, balanced: bool
) -> None:
    space = DesignSpace.initial(num_groups=3, num_layers=6)
    n = per_choice * len(space.open(component)) + extra
    batch = sample(
        space,
        n,
        seed=seed,
        shape=minilm_shape(),
        balance=component if balanced else None,
        stratify=component,
        min_per_choice=per_choice,
    )
    counts = Counter(d.choices[component] for d in batch.designs)
    assert len(batch.designs) == n
    assert all(counts[c] >= per_choice for c in space.open(component)), counts
