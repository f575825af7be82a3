"""Grouping pattern tables: the shapes PAPER.md fixes, generalised to any G (module docstring)."""

from __future__ import annotations

import pytest

from experiments.space.errors import SpaceError
from experiments.space.grouping import (
    GROUPING_PATTERNS,
    group_layers,
    group_sizes,
    grouping_weights,
)

# Expected G = 4 splits, worked by hand with largest-remainder rounding (ties to the lower group).
TABLES_G4 = {
    6: {
        "increasing": (1, 1, 2, 2),
        "uniform": (2, 2, 1, 1),
        "decreasing": (2, 2, 1, 1),
        "spindle": (1, 2, 2, 1),
        "bottleneck": (2, 1, 1, 2),
    },
    7: {
        "increasing": (1, 1, 2, 3),
        "uniform": (2, 2, 2, 1),
        "decreasing": (3, 2, 1, 1),
        "spindle": (1, 3, 2, 1),
        "bottleneck": (3, 1, 1, 2),
    },
    12: {
        "increasing": (1, 2, 4, 5),
        "uniform": (3, 3, 3, 3),
        "decreasing": (5, 4, 2, 1),
        "spindle": (2, 4, 4, 2),
        "bottleneck": (4, 2, 2, 4),
    },
    24: {
        "increasing": (2, 5, 7, 10),
        "uniform": (6, 6, 6, 6),
        "decreasing": (10, 7, 5, 2),
        "spindle": (4, 8, 8, 4),
        "bottleneck": (8, 4, 4, 8),
    },
}

# Other G: the degenerate small cases and an odd G for spindle/bottleneck.
TABLES_OTHER_G = {
    (7, 1): {p: (7,) for p in GROUPING_PATTERNS},
    (7, 2): {
        "increasing": (2, 5),
        "uniform": (4, 3),
        "decreasing": (5, 2),
        "spindle": (4, 3),
        "bottleneck": (4, 3),
    },
    (7, 3): {
        "increasing": (1, 2, 4),
        "uniform": (3, 2, 2),
        "decreasing": (4, 2, 1),
        "spindle": (2, 3, 2),
        "bottleneck": (3, 1, 3),
    },
    (6, 3): {
        "increasing": (1, 2, 3),
        "uniform": (2, 2, 2),
        "decreasing": (3, 2, 1),
        "spindle": (2, 3, 1),
        "bottleneck": (3, 1, 2),
    },
    (12, 5): {
        "increasing": (1, 2, 2, 3, 4),
        "uniform": (3, 3, 2, 2, 2),
        "decreasing": (4, 3, 2, 2, 1),
        "spindle": (1, 3, 4, 3, 1),
        "bottleneck": (4, 2, 1, 2, 3),
    },
    (6, 6): {p: (1,) * 6 for p in GROUPING_PATTERNS},
}


@pytest.mark.parametrize("num_layers", sorted(TABLES_G4))
def test_g4_tables(num_layers: int) -> None:
    for pattern, expected in TABLES_G4[num_layers].items():
        assert group_sizes(pattern, num_layers=num_layers, num_groups=4) == expected, pattern


@pytest.mark.parametrize(("num_layers", "num_groups"), sorted(TABLES_OTHER_G))
def test_other_g_tables(num_layers: int, num_groups: int) -> None:
    for pattern, expected in TABLES_OTHER_G[(num_layers, num_groups)].items():
        assert group_sizes(pattern, num_layers=num_layers, num_groups=num_groups) == expected, (
            pattern
        )


def test_weights_reproduce_the_paper_shapes_at_g4() -> None:
    assert {p: grouping_weights(p, 4) for p in GROUPING_PATTERNS} == {
        "increasing": (1, 2, 3, 4),
        "uniform": (1, 1, 1, 1),
        "decreasing": (4, 3, 2, 1),
        "spindle": (1, 2, 2, 1),
        "bottleneck": (2, 1, 1, 2),
    }
    assert grouping_weights("spindle", 5) == (1, 2, 3, 2, 1)
    assert grouping_weights("bottleneck", 5) == (3, 2, 1, 2, 3)
    assert grouping_weights("bottleneck", 1) == (1,)


@pytest.mark.parametrize("num_layers", [6, 7, 12, 24])
def test_every_g_gives_non_empty_groups_that_cover_all_layers(num_layers: int) -> None:
    for num_groups in range(1, num_layers + 1):
        for pattern in GROUPING_PATTERNS:
            runs = group_layers(pattern, num_layers=num_layers, num_groups=num_groups)
            assert len(runs) == num_groups
            assert all(runs), (pattern, num_groups)
            assert [layer for run in runs for layer in run] == list(range(num_layers))


def test_shapes_hold_where_rounding_allows() -> None:
    sizes = group_sizes("spindle", num_layers=24, num_groups=5)
    assert sizes[2] == max(sizes) and sizes[0] == sizes[-1] == min(sizes)
    sizes = group_sizes("bottleneck", num_layers=24, num_groups=5)
    assert sizes[2] == min(sizes)
    sizes = group_sizes("increasing", num_layers=24, num_groups=6)
    assert list(sizes) == sorted(sizes)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pattern": "zigzag", "num_layers": 6, "num_groups": 4}, "grouping"),
        ({"pattern": "uniform", "num_layers": 6, "num_groups": 7}, "num_groups"),
        ({"pattern": "uniform", "num_layers": 6, "num_groups": 0}, "num_groups"),
        ({"pattern": "uniform", "num_layers": 0, "num_groups": 1}, "num_layers"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    pattern = kwargs.pop("pattern")
    with pytest.raises(SpaceError) as info:
        group_sizes(pattern, **kwargs)
    assert info.value.field == field
