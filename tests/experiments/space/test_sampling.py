from __future__ import annotations

import json
from collections import Counter

import pytest
from scipy.stats import chisquare

from experiments.space.compiling import Budget, compile_choices
from experiments.space.errors import SpaceError
from experiments.space.sampling import InfeasibleSpace, sample
from experiments.space.space import DesignSpace
from tasks.peft.design import Design
from tests.experiments.space.paper import PAPER_S4
from tests.experiments.space.shapes import bert_base_shape, minilm_shape


def without_bitfit_only(space: DesignSpace) -> DesignSpace:
    """BitFit alone cannot spend a budget, so such draws are redrawn; leave them out where a test
    needs every draw to be feasible."""
    for g in range(1, space.num_groups + 1):
        space = space.restrict(
            f"assignment.G{g}", [c for c in space.open(f"assignment.G{g}") if c != "B"]
        )
    return space


def test_same_seed_same_designs_other_seed_other_designs() -> None:
    s0 = DesignSpace.initial()
    first = sample(s0, 20, seed=7, shape=minilm_shape())
    again = sample(s0, 20, seed=7, shape=minilm_shape())
    other = sample(s0, 20, seed=8, shape=minilm_shape())
    assert first.to_dict() == again.to_dict()
    assert [d.choices for d in first.designs] != [d.choices for d in other.designs]
    json.dumps(first.to_dict())  # JSON-safe as stored on trial rows


def test_designs_are_distinct_valid_and_within_two_percent_of_the_budget() -> None:
    for shape in (minilm_shape(), bert_base_shape()):
        batch = sample(DesignSpace.initial(), 100, seed=1, shape=shape)
        target = round(0.005 * shape.total_params)
        keys = [tuple(d.choices.values()) for d in batch.designs]
        assert len(set(keys)) == len(keys) == 100
        for d in batch.designs:
            assert d.target == target
            assert abs(d.parameters - target) <= 0.02 * target
            design = Design.from_dict(d.design)
            assert design.trainable_parameters.peft_total == d.parameters
            assert design.seed == d.seed
            assert design.provenance["grouping"] == d.choices["grouping"]
        assert sum(d.redraws for d in batch.designs) <= batch.redraws


def test_absolute_budget() -> None:
    batch = sample(
        DesignSpace.initial(), 10, seed=2, shape=minilm_shape(), budget=Budget(parameters=60_000)
    )
    assert all(abs(d.parameters - 60_000) <= 1_200 for d in batch.designs)


def test_each_component_is_uniform_over_its_open_choices() -> None:
    # Given a space where every draw is feasible (budget 1%, no BitFit-only groups)
    space = without_bitfit_only(DesignSpace.initial())
    # When 3000 designs are drawn
    batch = sample(space, 3000, seed=11, shape=bert_base_shape(), budget=Budget(fraction=0.01))
    assert batch.redraws == 0 and len(batch.designs) == 3000
    # Then each equal-sized component passes a chi-square test of uniformity
    for component in ("grouping", "allocation", "assignment.G1", "assignment.G4"):
        counts = Counter(d.choices[component] for d in batch.designs if d.choices[component])
        observed = [counts[c] for c in space.open(component)]
        assert chisquare(observed).pvalue > 0.001, (component, observed)


def test_balanced_component_gets_equal_shares() -> None:
    space = without_bitfit_only(DesignSpace.initial())
    batch = sample(
        space, 32, seed=5, shape=minilm_shape(), budget=Budget(fraction=0.01), balance="groups"
    )
    counts = Counter(d.choices["groups"] for d in batch.designs)
    assert len(counts) == 15 and max(counts.values()) - min(counts.values()) <= 1


def test_untuned_groups_have_no_assignment_and_no_parameters() -> None:
    compiled = compile_choices(
        {**PAPER_S4, "groups": "G1+G4", "assignment.G2": "B"},
        shape=bert_base_shape(),
        budget=Budget(),
        num_groups=4,
        seed=0,
    )
    assert compiled.choices["assignment.G2"] is None and compiled.choices["assignment.G3"] is None
    layers = compiled.design.to_dict()["layers"]
    assert (
        layers[2:10] == [{}] * 8
    )  # spindle on 12 layers: G1 = 0-1, G2 = 2-5, G3 = 6-9, G4 = 10-11
    assert set(layers[0]) == {"adapter", "lora"} and set(layers[11]) == {"prefix", "bitfit", "lora"}


def test_small_space_reports_shortfall_or_repeats() -> None:
    space = DesignSpace.initial()
    for component, choice in list(PAPER_S4.items())[:-1]:
        space = space.restrict(component, [choice])
    short = sample(space, 20, seed=0, shape=minilm_shape(), balance="assignment.G4", repeats=False)
    assert len(short.designs) == 15 and short.distinct_available == 15
    assert "15 distinct designs" in short.shortfall
    repeated = sample(space, 20, seed=0, shape=minilm_shape())
    assert "15 distinct designs" in repeated.shortfall
    assert len(repeated.designs) == 20 and repeated.distinct == 15
    assert [d.repeat_of for d in repeated.designs[15:]] == [0, 1, 2, 3, 4]
    assert repeated.designs[15].choices == repeated.designs[0].choices
    assert repeated.designs[15].seed != repeated.designs[0].seed


def test_space_that_cannot_meet_the_budget_is_reported() -> None:
    space = DesignSpace.initial(num_groups=2)
    space = space.restrict("assignment.G1", ["B"]).restrict("assignment.G2", ["B"])
    with pytest.raises(InfeasibleSpace) as info:
        sample(space, 5, seed=0, shape=minilm_shape())
    assert info.value.field == "budget" and "no design" in str(info.value)


def test_redraw_cap_stops_and_says_why() -> None:
    # A budget so small (0.02% of BERT-base) that most draws fail, with a cap of 3 redraws.
    batch = sample(
        DesignSpace.initial(),
        50,
        seed=0,
        shape=bert_base_shape(),
        budget=Budget(parameters=20_000),
        max_redraws=3,
    )
    assert batch.redraws == 4 and len(batch.designs) < 50
    assert batch.shortfall.startswith("stopped after 3 infeasible redraws")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (
            lambda: sample(DesignSpace.initial(num_groups=8), 4, seed=0, shape=minilm_shape()),
            "num_groups",
        ),
        (lambda: sample(DesignSpace.initial(), 0, seed=0, shape=minilm_shape()), "n"),
        (lambda: sample(DesignSpace.initial(), 4, seed=-1, shape=minilm_shape()), "seed"),
        (
            lambda: sample(DesignSpace.initial(), 4, seed=0, shape=minilm_shape(), balance="depth"),
            "component",
        ),
        (
            lambda: sample(
                DesignSpace.initial(), 4, seed=0, shape=minilm_shape(), balance="assignment.G1"
            ),
            "balance",
        ),
        (lambda: Budget(fraction=-0.01), "budget.fraction"),
        (lambda: Budget(fraction=1.5), "budget.fraction"),
        (lambda: Budget(parameters=-5), "budget.parameters"),
        (lambda: Budget(fraction=0.01, parameters=5), "budget"),
        (lambda: Budget.from_dict({"percent": 1}), "budget.percent"),
        (
            lambda: compile_choices(
                {**PAPER_S4, "grouping": "zigzag"},
                shape=minilm_shape(),
                budget=Budget(),
                num_groups=4,
                seed=0,
            ),
            "choices.grouping",
        ),
        (
            lambda: compile_choices(
                {**PAPER_S4, "assignment.G1": None},
                shape=minilm_shape(),
                budget=Budget(),
                num_groups=4,
                seed=0,
            ),
            "choices.assignment.G1",
        ),
    ],
)
def test_bad_input_names_the_field(call, field: str) -> None:
    with pytest.raises(SpaceError) as info:
        call()
    assert info.value.field == field
