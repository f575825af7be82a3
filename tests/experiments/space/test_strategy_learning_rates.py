"""Per-strategy learning rates: measured defaults in every compiled design, a search's override,
and the final stage's grid scaling every strategy of an arm alike (experiments.space.compiling,
presets, final)."""

from __future__ import annotations

import pytest

from experiments.space.compiling import Budget, compile_choices, rate_options
from experiments.space.errors import SpaceError
from experiments.space.final import (
    FinalResult,
    TuningResult,
    arm_rates,
    choose_learning_rates,
    final_plan,
    results_table,
)
from experiments.space.presets import SearchConfig, preset
from tasks.peft.design import Design
from tasks.peft.strategies import MEASURED_LEARNING_RATES, default_learning_rates, get
from tests.experiments.space.paper import paper_space
from tests.experiments.space.shapes import minilm_shape

MIXED = {"grouping": "uniform", "allocation": "uniform", "groups": "G1+G2",
         "assignment.G1": "A+L", "assignment.G2": "P"}


def _rates(design: Design) -> dict[str, float | None]:
    return {name: design.options.for_strategy(name).learning_rate for name in design.strategies_used}


def test_the_registry_holds_the_measured_rates() -> None:
    assert default_learning_rates() == MEASURED_LEARNING_RATES
    for name, rate in MEASURED_LEARNING_RATES.items():
        assert get(name).default_learning_rate == rate and 1e-6 <= rate <= 1


def test_a_compiled_design_trains_each_strategy_it_uses_at_its_measured_rate() -> None:
    compiled = compile_choices(MIXED, shape=minilm_shape(), budget=Budget(), num_groups=2, seed=0)
    design = compiled.design
    assert set(design.strategies_used) == {"adapter", "lora", "prefix"}
    assert _rates(design) == {name: MEASURED_LEARNING_RATES[name] for name in design.strategies_used}
    # A strategy the design does not use carries no rate in the document
    assert "learning_rate" not in (design.to_dict()["options"].get("bitfit") or {})


def test_a_search_override_and_an_explicit_option_win_over_the_default() -> None:
    compiled = compile_choices(MIXED, shape=minilm_shape(), budget=Budget(), num_groups=2, seed=0,
                               options={"adapter": {"learning_rate": 0.05}},
                               learning_rates={"adapter": 0.2, "lora": 2e-4})
    rates = _rates(compiled.design)
    assert rates["adapter"] == 0.05  # the document's own option is kept
    assert rates["lora"] == 2e-4  # the search's override
    assert rates["prefix"] == MEASURED_LEARNING_RATES["prefix"]  # the measured default


def test_rate_options_drops_the_rates_of_unused_strategies() -> None:
    options = rate_options({"lora": {"learning_rate": 0.01, "alpha": 8}}, ["adapter"])
    assert options.lora.learning_rate is None and options.lora.alpha == 8
    assert options.adapter.learning_rate == MEASURED_LEARNING_RATES["adapter"]


def test_search_config_validates_strategy_learning_rates() -> None:
    config = preset("quick", strategy_learning_rates={"prefix": 1e-3})
    assert config.learning_rates() == {**MEASURED_LEARNING_RATES, "prefix": 1e-3}
    assert config.design_options()["prefix"] == {"learning_rate": 1e-3}
    assert SearchConfig.from_dict(config.to_dict()) == config
    assert preset("quick").strategy_learning_rates is None
    assert preset("quick").learning_rates() == MEASURED_LEARNING_RATES
    for bad, field in (({"dora": 1e-3}, "strategy_learning_rates.dora"),
                       ({"lora": 1e-7}, "strategy_learning_rates.lora"),
                       ({"lora": 2}, "strategy_learning_rates.lora"),
                       ({"lora": True}, "strategy_learning_rates.lora"),
                       ({"lora": float("nan")}, "strategy_learning_rates.lora"),
                       ([1e-3], "strategy_learning_rates")):
        with pytest.raises(SpaceError) as info:
            preset("quick", strategy_learning_rates=bad)
        assert info.value.field == field


def test_final_arms_grids_scale_every_strategy_rate_by_the_same_factor() -> None:
    # Given a final plan whose grid is two factors (1/3 and 1) of the base rates
    plan = final_plan(paper_space(), shape=minilm_shape(), budget=Budget(), tasks=["rte"], seeds=3,
                      learning_rate=3e-3, grid=2, learning_rates={"lora": 6e-3})
    # Then each single-strategy baseline sits at its own strategy's rate
    assert plan.strategy_rates["adapter"] == {"adapter": MEASURED_LEARNING_RATES["adapter"]}
    assert plan.strategy_rates["lora"] == {"lora": 6e-3}
    assert plan.strategy_rates["full"] == {}
    assert plan.to_dict()["strategy_rates"]["lora"] == {"lora": 6e-3}
    # And a tuning run one grid step down has every strategy rate a third of its base
    for run in plan.tuning:
        if run.arm == "full":
            continue
        factor = run.learning_rate / 3e-3
        own = run.design["options"]
        for name, base in plan.strategy_rates[run.arm].items():
            assert own[name]["learning_rate"] == pytest.approx(base * factor, rel=1e-2)
    # So a mixed design's strategies keep their ratio at every grid point
    assert len(plan.strategy_rates["selected"]) >= 2
    for run in (r for r in plan.tuning if r.arm == "selected"):
        own = {name: values["learning_rate"] for name, values in run.design["options"].items()
               if "learning_rate" in values}
        first = next(iter(own))
        for name, rate in own.items():
            expected = plan.strategy_rates["selected"][name] / plan.strategy_rates["selected"][first]
            assert rate / own[first] == pytest.approx(expected, rel=1e-2)


def test_the_results_table_shows_each_arms_chosen_strategy_rates() -> None:
    plan = final_plan(paper_space(), shape=minilm_shape(), budget=Budget(), tasks=["rte"], seeds=2,
                      learning_rate=3e-3, grid=2)
    tuning = choose_learning_rates(
        [TuningResult(arm=arm, task="rte", learning_rate=rate, score=60.0 + (rate == 1e-3))
         for arm, grid in plan.grids.items() for rate in grid], plan.grids)
    chosen = {arm: entry["chosen"] for arm, entry in tuning.items()}
    assert chosen["lora"] == 1e-3
    strategy_rates = plan.chosen_strategy_rates(chosen)
    assert strategy_rates["lora"] == arm_rates({"lora": MEASURED_LEARNING_RATES["lora"]}, 3e-3, 1e-3)
    table = results_table([FinalResult(arm=arm, task="rte", seed=s, score=70.0) for arm in plan.arms for s in (0, 1)],
                          learning_rates=chosen, strategy_learning_rates=strategy_rates)
    rows = {row["arm"]: row for row in table["rows"]}
    assert rows["lora"]["learning_rate"] == 1e-3
    assert rows["lora"]["strategy_learning_rates"] == strategy_rates["lora"]
    assert rows["full"]["strategy_learning_rates"] == {}
