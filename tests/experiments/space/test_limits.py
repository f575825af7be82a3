"""Every number a user can type into a search's configuration has an upper bound, checked in one
place (SearchConfig) that the form, the API and the CLI share; the error names field and bound."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from experiments.space.compiling import MAX_BUDGET_PARAMETERS, Budget
from experiments.space.errors import SpaceError
from experiments.space.presets import LIMITS, SearchConfig, preset


@pytest.mark.parametrize("name", sorted(n for n, bound in LIMITS.items() if isinstance(bound, int)))
def test_each_integer_setting_refuses_one_past_its_bound(name):
    bound = LIMITS[name]
    with pytest.raises(SpaceError) as refused:
        preset("paper", **{name: bound + 1})
    assert refused.value.field == name
    assert str(bound) in str(refused.value)


@pytest.mark.parametrize("name", sorted(n for n, bound in LIMITS.items() if isinstance(bound, int)))
def test_each_integer_setting_accepts_its_bound(name):
    overrides = {name: LIMITS[name]}
    if name == "min_successes":  # cannot exceed the stage size
        overrides["designs_per_stage"] = LIMITS["designs_per_stage"]
    assert getattr(preset("paper", **overrides), name) == LIMITS[name]


def test_an_astronomical_stage_size_is_refused_with_a_short_message():
    with pytest.raises(SpaceError) as refused:
        preset("quick", designs_per_stage=10**30)
    message = str(refused.value)
    assert message.startswith("designs_per_stage: must be an integer from 2 to 1000")
    assert len(message) < 120


def test_learning_rate_and_budget_have_upper_bounds():
    with pytest.raises(SpaceError, match="learning_rate"):
        preset("quick", learning_rate=1e23)
    with pytest.raises(SpaceError, match="budget.parameters"):
        Budget(parameters=MAX_BUDGET_PARAMETERS + 1)
    assert Budget(parameters=MAX_BUDGET_PARAMETERS).parameters == MAX_BUDGET_PARAMETERS


@given(st.dictionaries(st.sampled_from(sorted(LIMITS)), st.integers(min_value=-(2**70), max_value=2**70), max_size=4))
def test_any_integers_either_validate_within_bounds_or_name_a_field(overrides):
    try:
        config = SearchConfig.from_dict(overrides)
    except SpaceError as exc:
        assert exc.field in LIMITS or exc.field in {f for f in SearchConfig.help()}
    else:
        for name, value in overrides.items():
            assert value <= LIMITS[name]
            assert getattr(config, name) == value
