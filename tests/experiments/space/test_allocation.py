from __future__ import annotations

import pytest

from experiments.space.allocation import allocation_weights, layer_budgets
from experiments.space.errors import SpaceError


def test_weights_follow_rank_among_tuned_layers() -> None:
    assert allocation_weights("uniform", 3) == (1, 1, 1)
    assert allocation_weights("increasing", 3) == (1, 2, 3)
    assert allocation_weights("decreasing", 3) == (3, 2, 1)


def test_budgets_sum_to_total_and_follow_depth() -> None:
    # Given tuned layers that are not contiguous (G2 and G4 of a 12-layer split)
    tuned = [3, 4, 5, 9, 10, 11]
    # When the budget is allocated
    budgets = layer_budgets("decreasing", tuned_layers=tuned, total=2100)
    # Then shares are 6:5:4:3:2:1 of 2100 over the tuned layers only
    assert budgets == {3: 600.0, 4: 500.0, 5: 400.0, 9: 300.0, 10: 200.0, 11: 100.0}
    assert layer_budgets("uniform", tuned_layers=[0, 1], total=10) == {0: 5.0, 1: 5.0}


@pytest.mark.parametrize(
    ("pattern", "tuned", "total", "field"),
    [
        ("sideways", [0], 10, "allocation"),
        ("uniform", [], 10, "tuned_layers"),
        ("uniform", [0], -5, "budget"),
        ("uniform", [1, 1], 10, "tuned_layers"),
    ],
)
def test_bad_input_names_the_field(
    pattern: str, tuned: list[int], total: float, field: str
) -> None:
    with pytest.raises(SpaceError) as info:
        layer_budgets(pattern, tuned_layers=tuned, total=total)
    assert info.value.field == field
