"""The final stage through the services: learning-rate tuning on the selection set, then the
report runs at each arm's chosen rate on the report set; only report runs make the results."""
from __future__ import annotations

import pytest

from experiments import selectors, services
from experiments.models import Search, Stage, Trial
from experiments.space import DesignSpace
from tests.factories import BackboneFactory, TaskFactory

pytestmark = pytest.mark.django_db(transaction=True)

DECIDED = {"grouping": "uniform", "allocation": "uniform", "groups": "G1+G2", "assignment.G1": "L",
           "assignment.G2": "A+L"}


def _final_stage(user, **overrides) -> Stage:
    search = services.search_create(owner=user, name="final", tasks=[TaskFactory(name="rte")],
                                    backbone=BackboneFactory(), budget_kind="absolute", budget_value=2048, groups=2,
                                    preset="quick", overrides={"final_seeds": 2, **overrides}, seed=1)
    space = DesignSpace.initial(num_groups=2, num_layers=4)
    for component, choice in DECIDED.items():
        space = space.restrict(component, [choice])
    return services.stage_open(search=search, space=space, order=9)


def _finish(trials, score_of) -> None:
    for trial in trials:
        services.trial_claim(trial_id=trial.pk, attempt=trial.attempt, worker="w")
        services.trial_finish(trial_id=trial.pk, attempt=trial.attempt, status=Trial.Status.SUCCEEDED,
                              result=services.TrialResult(score_of(trial), {}, trial.trainable_params, 66))


def test_arms_tune_on_the_selection_set_and_report_at_their_chosen_rate(user):
    stage = _final_stage(user)
    search = stage.search
    # Given the tuning runs: 6 arms x 1 task x 2 rates, scored on the selection set
    tuning = list(stage.trials.order_by("index"))
    assert len(tuning) == 12 and {t.eval_role for t in tuning} == {Trial.Role.SELECTION}
    assert stage.plan["phase"] == "tune" and stage.plan["grids"]["lora"] == [1e-3, 3e-3]
    full = next(t for t in tuning if t.choices["arm"] == "full")
    assert full.design["learning_rate"] == full.choices["learning_rate"] <= 5e-5
    # When they finish, the lower rate scoring better for LoRA and the higher for every other arm
    _finish(tuning, lambda t: (80.0 if t.choices["learning_rate"] == 1e-3 else 60.0) if t.choices["arm"] == "lora"
            else 50.0 + 1e4 * t.choices["learning_rate"])
    stage.refresh_from_db()
    # Then each arm's rate is kept and its report runs (2 seeds) queue on the report set at that rate
    assert stage.status == Stage.Status.RUNNING and stage.plan["phase"] == "report"
    assert stage.plan["learning_rates"]["lora"] == 1e-3 and stage.plan["learning_rates"]["adapter"] == 3e-3
    assert stage.plan["tuning"]["lora"]["scores"] == {repr(1e-3): 80.0, repr(3e-3): 60.0}
    report = list(stage.trials.filter(eval_role=Trial.Role.REPORT).order_by("index"))
    assert len(report) == 12 and [t.index for t in report] == list(range(12, 24))
    assert {t.choices["learning_rate"] for t in report if t.choices["arm"] == "lora"} == {1e-3}
    assert all(t.status == Trial.Status.QUEUED and t.attempt == 1 for t in report)
    search.refresh_from_db()
    first_stage = search.stages.get(order=0).trials.count()  # search_create opened S1 as well
    assert search.trials_total == first_stage + 24 and search.status == Search.Status.RUNNING
    # The selected design is not decided by a tuning run
    assert selectors.search_selected_trial(search).eval_role == Trial.Role.REPORT
    # When the report runs finish, the results hold only them, with each arm's rate
    _finish(report, lambda t: 70.0 + t.choices["seed"])
    stage.refresh_from_db()
    assert stage.status == Stage.Status.COMPLETED
    rows = {row["arm"]: row for row in stage.summary["rows"]}
    assert rows["lora"]["per_task"]["rte"]["n"] == 2 and rows["lora"]["learning_rate"] == 1e-3
    assert rows["selected"]["average"]["mean"] == pytest.approx(70.5)
    assert Search.objects.get(pk=search.pk).status == Search.Status.COMPLETED
    results, _ = selectors.final_stage_results(stage=stage)
    assert len(results) == 12


def test_a_grid_of_one_rate_goes_straight_to_the_report_runs(user):
    stage = _final_stage(user, final_lr_grid=1)
    assert stage.plan["phase"] == "report" and "tuning" not in stage.plan
    assert stage.trials.count() == 6 * 2 and not stage.trials.filter(eval_role=Trial.Role.SELECTION).exists()


def test_the_full_fine_tuning_rate_is_the_engines_cap():
    from experiments.space.final import FULL_FINETUNING_RATE
    from tasks.runner import FULL_FINETUNING_MAX_LR

    assert FULL_FINETUNING_RATE == FULL_FINETUNING_MAX_LR
