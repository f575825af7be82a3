from __future__ import annotations

import copy
import json
import pickle
import time

import pytest

from experiments.space.errors import SpaceError
from experiments.space.space import MAX_GROUPS, DesignSpace, component_names, diff
from experiments.space.subsets import (
    group_subsets,
    groups_label,
    parse_groups,
    parse_strategies,
    strategies_label,
    strategy_subsets,
)


def test_s0_leaves_every_choice_open() -> None:
    s0 = DesignSpace.initial(num_groups=4)
    assert s0.components == (
        "grouping",
        "allocation",
        "groups",
        "assignment.G1",
        "assignment.G2",
        "assignment.G3",
        "assignment.G4",
    )
    assert len(s0.open("grouping")) == 5 and len(s0.open("allocation")) == 3
    assert len(s0.open("groups")) == 15
    assert all(len(s0.open(f"assignment.G{g}")) == 15 for g in range(1, 5))
    # 5 * 3 * sum over tuned subsets of 15**|subset| = 15 * (16**4 - 1)
    assert s0.count_designs() == 15 * (16**4 - 1)


def test_subset_labels_are_canonical() -> None:
    assert strategy_subsets()[-1] == "A+P+B+L" and len(strategy_subsets()) == 15
    assert group_subsets(3) == ("G1", "G2", "G3", "G1+G2", "G1+G3", "G2+G3", "G1+G2+G3")
    assert parse_groups("G2+G4", 4) == (1, 3) and groups_label([3, 1]) == "G2+G4"
    assert strategies_label(["lora", "adapter"]) == "A+L"
    assert parse_strategies("P+B") == ("prefix", "bitfit")
    with pytest.raises(SpaceError, match="canonical order"):
        parse_strategies("L+A")
    with pytest.raises(SpaceError, match="unknown group"):
        parse_groups("G5", 4)


def test_json_round_trip_and_canonical_order() -> None:
    space = DesignSpace.initial(num_groups=3).restrict("grouping", ["spindle", "uniform"])
    data = json.loads(json.dumps(space.to_dict()))
    assert data["schema"] == "pefs.space/1"
    assert data["choices"]["grouping"] == ["uniform", "spindle"]  # canonical, not given, order
    assert DesignSpace.from_dict(data) == space
    assert DesignSpace.from_dict(data).to_dict() == data


def test_diff_lists_changed_components_in_stage_order() -> None:
    s0 = DesignSpace.initial(num_groups=2)
    s2 = s0.restrict("allocation", ["uniform"]).restrict("grouping", ["spindle"])
    changes = [c.to_dict() for c in diff(s0, s2)]
    assert [c["component"] for c in changes] == ["grouping", "allocation"]
    assert changes[1] == {
        "component": "allocation",
        "before": ["increasing", "uniform", "decreasing"],
        "after": ["uniform"],
        "removed": ["increasing", "decreasing"],
        "added": [],
    }
    assert diff(s2, s2) == []


def test_count_ignores_assignment_of_untuned_groups() -> None:
    space = DesignSpace.initial(num_groups=2).restrict("groups", ["G1"])
    assert space.count_designs() == 5 * 3 * 15
    s0 = DesignSpace.initial(num_groups=2)
    for component in s0.components:
        for choice in s0.open(component):
            expected = s0.restrict(component, [choice]).count_designs()
            assert s0.count_designs(fixing=(component, choice)) == expected


def good_dict() -> dict:
    return DesignSpace.initial(num_groups=4).to_dict()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["choices"].__setitem__("grouping", []), "choices.grouping"),
        (
            lambda d: d["choices"].__setitem__("grouping", ["uniform", "zigzag"]),
            "choices.grouping[1]",
        ),
        (
            lambda d: d["choices"].__setitem__("allocation", ["uniform", "uniform"]),
            "choices.allocation[1]",
        ),
        (
            lambda d: d["choices"].__setitem__("assignment.G2", ["A", "X"]),
            "choices.assignment.G2[1]",
        ),
        (lambda d: d["choices"].__setitem__("groups", ["G5"]), "choices.groups[0]"),
        (lambda d: d["choices"].pop("groups"), "choices.groups"),
        (lambda d: d["choices"].__setitem__("assignment.G9", ["A"]), "choices.assignment.G9"),
        (lambda d: d["choices"].__setitem__("grouping", "uniform"), "choices.grouping"),
        (lambda d: d.__setitem__("num_groups", 0), "num_groups"),
        (lambda d: d.__setitem__("num_groups", MAX_GROUPS + 1), "num_groups"),
        (lambda d: d.__setitem__("schema", "pefs.space/0"), "schema"),
    ],
)
def test_bad_spaces_are_rejected_naming_the_field(mutate, field: str) -> None:
    data = good_dict()
    mutate(data)
    with pytest.raises(SpaceError) as info:
        DesignSpace.from_dict(data)
    assert info.value.field == field


def test_restrict_rejects_closed_or_empty_choices() -> None:
    s1 = DesignSpace.initial().restrict("grouping", ["spindle"])
    with pytest.raises(SpaceError) as info:
        s1.restrict("grouping", ["uniform"])
    assert info.value.field == "choices.grouping[0]"
    with pytest.raises(SpaceError) as info:
        s1.restrict("allocation", [])
    assert info.value.field == "choices.allocation"
    with pytest.raises(SpaceError) as info:
        s1.open("depth")
    assert info.value.field == "component"


def test_component_names_for_one_group() -> None:
    assert component_names(1) == ("grouping", "allocation", "groups", "assignment.G1")
    assert DesignSpace.initial(num_groups=1).count_designs() == 5 * 3 * 15


def test_spaces_pickle_and_copy() -> None:
    space = DesignSpace.initial(num_groups=3).restrict("groups", ["G1+G3"])
    assert pickle.loads(pickle.dumps(space)) == space
    assert copy.deepcopy(space) == space


def test_largest_space_is_cheap_to_build() -> None:
    start = time.perf_counter()
    space = DesignSpace.initial(num_groups=MAX_GROUPS)
    assert len(space.open("groups")) == 2**MAX_GROUPS - 1
    assert DesignSpace.from_dict(space.to_dict()) == space
    assert time.perf_counter() - start < 1.0
