"""The plan with successive halving (experiments.space.planning with config.halving_eta) and the
"study" preset it sizes."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.space import DesignSpace, sample, stage_seed
from experiments.space.halving import keep_count, rung_epochs
from experiments.space.planning import min_per_choice, search_plan, stage_plan
from experiments.space.presets import preset
from tests.experiments.space.shapes import minilm_shape

STUDY_TASKS = 2  # sst2, mrpc: the committed study (docs/study/)


def test_without_halving_nothing_changes() -> None:
    plan = search_plan(preset("quick", num_groups=2), num_layers=6, tasks=2)
    assert plan.halving_eta is None and plan.task_epochs == plan.full_task_epochs
    assert all(stage.to_dict()["halving"] is None for stage in plan.stages)
    assert plan.to_dict()["full_task_epochs"] == plan.task_epochs


@pytest.mark.parametrize(("epochs", "eta", "expected"), [(3, 3, 6), (10, 3, 18), (3, 2, 4), (1, 3, 2), (9, 2, 16)])
def test_each_choice_draws_enough_designs_to_keep_min_successes_at_the_last_rung(epochs, eta, expected) -> None:
    config = preset("quick", num_groups=2, epochs=epochs, halving_eta=eta)
    assert min_per_choice(config) == expected == 2 * eta ** (len(rung_epochs(epochs, eta=eta)) - 1)
    survivors = expected
    for _ in rung_epochs(epochs, eta=eta)[1:]:
        survivors = keep_count(survivors, eta)
    assert survivors >= config.min_successes


def test_a_halving_stage_reports_rungs_trials_and_both_costs() -> None:
    config = preset("quick", num_groups=2, epochs=3, halving_eta=3, designs_per_stage=8)
    space = DesignSpace.initial(num_groups=2, num_layers=6)
    plan = stage_plan(config, space, tasks=4)
    choices = len(space.open(plan.component))
    assert plan.designs == choices * 6 and plan.min_per_choice == 6 and plan.raised_from == 8
    halving = plan.to_dict()["halving"]
    assert halving["eta"] == 3 and halving["rungs"] == [1, 3]
    assert halving["per_rung_trials"] == [plan.designs, choices * 2]
    # Every design trains to epoch 1; the survivors two more epochs
    assert halving["trial_epochs"] == plan.designs + choices * 2 * 2
    assert halving["full_trial_epochs"] == plan.designs * 3
    assert plan.task_epochs == halving["trial_epochs"] * 4 < plan.full_task_epochs == plan.designs * 3 * 4
    assert "survive" in plan.note


def test_the_sampler_draws_the_planned_designs_per_choice() -> None:
    config = preset("quick", num_groups=2, epochs=3, halving_eta=3)
    space = DesignSpace.initial(num_groups=2, num_layers=6)
    plan = stage_plan(config, space)
    batch = sample(space, plan.designs, seed=stage_seed(config.seed, plan.name), shape=minilm_shape(),
                   budget=config.budget, balance=plan.balance, stratify=plan.stratify,
                   min_per_choice=plan.min_per_choice)
    per_choice = Counter(d.choices[plan.component] for d in batch.designs)
    assert set(per_choice) == set(space.open(plan.component))
    assert min(per_choice.values()) >= 6


def test_the_search_totals_add_up_with_and_without_halving() -> None:
    plan = search_plan(preset("study"), num_layers=6, tasks=STUDY_TASKS)
    assert plan.halving_eta == 2
    assert plan.task_epochs == sum(s.task_epochs for s in plan.stages)
    assert plan.full_task_epochs == sum(s.full_task_epochs for s in plan.stages)
    assert plan.task_epochs < plan.full_task_epochs
    final = plan.stages[-1]
    assert final.name == "final" and final.halving is None  # arms are not halved


def test_the_study_preset_keeps_three_designs_per_choice_at_the_last_rung() -> None:
    config = preset("study")
    assert (config.halving_eta, config.halving_rank_by, config.epochs, config.num_groups) == (2, "score", 2, 2)
    assert (config.max_train_examples, config.max_eval_examples, config.batch_size, config.max_length) == (
        128, 200, 16, 64)
    assert (config.final_seeds, config.final_epochs, config.final_lr_grid, config.reference_stage) == (3, 2, 3, False)
    assert config.min_successes == 3
    assert rung_epochs(config.epochs, eta=config.halving_eta) == (1, 2)
    plan = search_plan(config, num_layers=6, tasks=STUDY_TASKS)
    for stage in plan.stages:
        if stage.halving is None:
            continue
        last = stage.halving.rungs[-1]
        assert len(last.trials_per_choice) == stage.choices
        assert min(last.trials_per_choice.values()) >= config.min_successes


# The first rung after a number of optimizer steps (SearchConfig.halving_min_steps): on the recorded
# stages a rung after 8 steps promoted nearly at random (bench/halving.py).

def test_the_first_rung_waits_for_halving_min_steps() -> None:
    # 128 examples at batch 16: 8 steps an epoch, so 24 steps are 3 epochs; eta 3 over 9 epochs: rungs 3, 9
    config = preset("study", halving_min_steps=24, halving_eta=3, epochs=9)
    assert (config.steps_per_epoch(), config.halving_min_epochs()) == (8, 3)
    plan = search_plan(config, num_layers=6, tasks=2)
    halved = [s for s in plan.stages if s.halving is not None]
    assert halved and all([r.epochs for r in s.halving.rungs] == [3, 9] for s in halved)
    assert plan.halving_first_rung_steps == 24 and plan.to_dict()["halving_first_rung_steps"] == 24
    # Two rungs, not three: each choice draws min_successes x eta designs, not x eta^2
    assert min_per_choice(config) == config.min_successes * 3
    # Ranked after the first epoch, the same search has three rungs (1, 3, 9)
    eager = preset("study", halving_min_steps=1, halving_eta=3, epochs=9)
    assert [r.epochs for r in search_plan(eager, num_layers=6, tasks=2).stages[0].halving.rungs] == [1, 3, 9]


def test_a_first_rung_beyond_the_stage_turns_halving_off_and_says_why() -> None:
    config = preset("study", halving_min_steps=24)  # 2 epochs of 8 steps: no room for a rung after 24
    plan = search_plan(config, num_layers=6, tasks=2)
    assert plan.halving_eta is None and plan.task_epochs == plan.full_task_epochs
    assert all(s.halving is None for s in plan.stages)
    assert min_per_choice(config) == config.min_successes  # no rungs to survive
    note = plan.to_dict()["halving_note"]
    assert "halving (eta 2) is off" in note and "24 optimizer steps" in note and "at least 6" in note
    # A rung never ends after the stage's last epoch (it used to: (3,) for 2 epochs)
    assert rung_epochs(2, eta=2, min_epochs=3) == (2,)
    assert search_plan(preset("study"), num_layers=6, tasks=2).to_dict()["halving_note"] == ""


def test_with_all_training_examples_the_first_rung_is_the_first_epoch() -> None:
    config = preset("paper", halving_eta=3)  # max_train_examples None: an epoch's steps are unknown
    assert config.steps_per_epoch() is None and config.halving_min_epochs() == 1
    plan = search_plan(config, num_layers=6, tasks=1)
    assert plan.halving_first_rung_steps is None and [r.epochs for r in plan.stages[1].halving.rungs] == [1, 3]


@pytest.mark.parametrize("bad", [0, -1, 100_001, True, 2.5, "24"])
def test_halving_min_steps_is_bounded_and_named(bad) -> None:
    from experiments.space.errors import SpaceError

    with pytest.raises(SpaceError) as caught:
        preset("study", halving_min_steps=bad)
    assert caught.value.field == "halving_min_steps"
