"""The final stage's learning rate per arm: a grid tried on the selection set, the best kept for
the report runs (experiments.space.final)."""

from __future__ import annotations

import pytest

from experiments.space.compiling import Budget
from experiments.space.errors import SpaceError
from experiments.space.final import (
    FULL_FINETUNING_RATE,
    REPORT,
    SELECTION,
    TuningResult,
    choose_learning_rates,
    final_plan,
    learning_rate_grid,
    results_table,
)
from tests.experiments.space.paper import paper_space
from tests.experiments.space.shapes import minilm_shape


def test_grids_are_a_factor_three_apart_with_the_extra_rate_below() -> None:
    assert learning_rate_grid(3e-3, 1) == (3e-3,)
    assert learning_rate_grid(3e-3, 2) == (1e-3, 3e-3)
    assert learning_rate_grid(1e-3, 3) == (3.33e-4, 1e-3, 3e-3)
    assert learning_rate_grid(1e-3, 4) == (1.11e-4, 3.33e-4, 1e-3, 3e-3)
    for bad in (0, 8, True):
        with pytest.raises(SpaceError) as info:
            learning_rate_grid(1e-3, bad)
        assert info.value.field == "grid"


def test_each_arm_tunes_on_the_selection_set_then_reports_at_its_chosen_rate() -> None:
    plan = final_plan(paper_space(), shape=minilm_shape(), budget=Budget(), tasks=["rte", "sst2"], seeds=3,
                      learning_rate=3e-3, grid=2)
    # Every arm has its grid; full fine-tuning is centred on the paper's cap, not the PEFT rate
    assert plan.grids["lora"] == (1e-3, 3e-3)
    assert plan.grids["full"] == learning_rate_grid(FULL_FINETUNING_RATE, 2)
    # One tuning run per arm, task and rate (the first seed), all on the selection set
    assert len(plan.tuning) == 6 * 2 * 2 and {r.role for r in plan.tuning} == {SELECTION}
    assert {r.seed for r in plan.tuning} == {0}
    assert len(plan.runs) == 6 * 2 * 3 and {r.role for r in plan.runs} == {REPORT}
    runs = plan.report_runs({"lora": 1e-3, "full": FULL_FINETUNING_RATE})
    assert {r.learning_rate for r in runs if r.arm == "lora"} == {1e-3}
    assert {r.learning_rate for r in runs if r.arm == "adapter"} == {3e-3}  # not chosen: its base rate
    assert {r.role for r in runs} == {REPORT}
    assert any("tuning runs" in note for note in plan.notes)


def test_a_strategys_own_rate_scales_with_its_arm() -> None:
    plan = final_plan(paper_space(), shape=minilm_shape(), budget=Budget(), tasks=["rte"], seeds=1,
                      learning_rate=3e-3, grid=2,
                      options={"prefix": {"learning_rate": 6e-4}})
    low = next(r for r in plan.tuning if r.arm == "selected" and r.learning_rate == 1e-3)
    high = next(r for r in plan.tuning if r.arm == "selected" and r.learning_rate == 3e-3)
    assert low.design["options"]["prefix"]["learning_rate"] == pytest.approx(2e-4)
    assert high.design["options"]["prefix"]["learning_rate"] == pytest.approx(6e-4)


def test_without_a_grid_nothing_is_tuned() -> None:
    plan = final_plan(paper_space(), shape=minilm_shape(), budget=Budget(), tasks=["rte"], seeds=2,
                      learning_rate=3e-3, grid=1)
    assert plan.tuning == () and plan.grids == {}
    assert {r.learning_rate for r in plan.runs if r.arm == "full"} == {FULL_FINETUNING_RATE}


def test_the_best_mean_over_tasks_wins_and_failures_never_do() -> None:
    grids = {"lora": (1e-3, 3e-3), "prefix": (1e-3, 3e-3), "full": (1.67e-5, 5e-5)}
    results = [
        TuningResult("lora", "rte", 1e-3, 60.0), TuningResult("lora", "sst2", 1e-3, 80.0),
        TuningResult("lora", "rte", 3e-3, 66.0), TuningResult("lora", "sst2", 3e-3, 78.0),
        # prefix diverges at the higher rate on one task: that rate has no complete mean
        TuningResult("prefix", "rte", 1e-3, 55.0), TuningResult("prefix", "sst2", 1e-3, 70.0),
        TuningResult("prefix", "rte", 3e-3, 90.0), TuningResult("prefix", "sst2", 3e-3, None),
        TuningResult("full", "rte", 1.67e-5, None), TuningResult("full", "sst2", 1.67e-5, 50.0),
        TuningResult("full", "rte", 5e-5, None), TuningResult("full", "sst2", 5e-5, 51.0),
    ]
    chosen = choose_learning_rates(results, grids)
    assert chosen["lora"]["chosen"] == 3e-3 and chosen["lora"]["scores"][repr(3e-3)] == pytest.approx(72.0)
    assert chosen["prefix"]["chosen"] == 1e-3 and chosen["prefix"]["scores"][repr(3e-3)] is None
    assert chosen["full"]["chosen"] == 1.67e-5 and "lowest" in chosen["full"]["reason"]
    tie = choose_learning_rates([TuningResult("lora", "rte", 1e-3, 70.0), TuningResult("lora", "rte", 3e-3, 70.0)],
                                {"lora": (1e-3, 3e-3)})
    assert tie["lora"]["chosen"] == 1e-3  # a tie goes to the lower, stabler rate


def test_results_table_carries_each_arms_rate() -> None:
    from experiments.space.final import FinalResult

    table = results_table([FinalResult("lora", "rte", 0, 70.0)], learning_rates={"lora": 1e-3})
    assert table["rows"][0]["learning_rate"] == 1e-3
