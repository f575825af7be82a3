from __future__ import annotations

import json

import pytest

from experiments.space.compiling import Budget
from experiments.space.errors import SpaceError
from experiments.space.presets import PRESETS, SearchConfig, preset


def test_paper_preset_matches_the_paper() -> None:
    config = preset("paper")
    assert (config.designs_per_stage, config.epochs, config.num_groups) == (100, 3, 4)
    assert config.budget == Budget(fraction=0.005)


def test_quick_preset_fits_a_cpu() -> None:
    config = preset("quick")
    assert config.designs_per_stage == 8 and config.epochs == 1
    assert 100 <= config.max_train_examples <= 1000


def test_every_preset_needs_two_successes_per_choice() -> None:
    assert all(config.min_successes >= 2 for config in PRESETS.values())
    with pytest.raises(SpaceError) as info:
        preset("quick", min_successes=1)
    assert info.value.field == "min_successes"
    assert "at least 2" in str(info.value) and "got 1" in str(info.value)


def test_every_field_is_overridable_and_round_trips() -> None:
    config = preset("quick", budget={"parameters": 40_000}, num_groups=3, halving_eta=3, seed=9)
    assert config.budget == Budget(parameters=40_000) and config.halving_eta == 3
    data = json.loads(json.dumps(config.to_dict()))
    assert SearchConfig.from_dict(data) == config
    assert set(SearchConfig.help()) == set(data)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"designs_per_stage": 1}, "designs_per_stage"),
        ({"epochs": 0}, "epochs"),
        ({"budget": {"fraction": -0.5}}, "budget.fraction"),
        ({"num_groups": 0}, "num_groups"),
        ({"num_groups": 99}, "num_groups"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"max_train_examples": 0}, "max_train_examples"),
        ({"halving_eta": 1}, "halving_eta"),
        ({"halving_rank_by": "loss"}, "halving_rank_by"),
        ({"halving_rank_by": ["auc"]}, "halving_rank_by"),
        ({"balance": "yes"}, "balance"),
        ({"final_seeds": 0}, "final_seeds"),
        ({"min_successes": 0}, "min_successes"),
        ({"epochs": 2.5}, "epochs"),
        ({"warmup": 3}, "warmup"),
    ],
)
def test_bad_values_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(SpaceError) as info:
        preset("paper", **overrides)
    assert info.value.field == field


def test_unknown_preset() -> None:
    with pytest.raises(SpaceError) as info:
        preset("huge")
    assert info.value.field == "preset"
