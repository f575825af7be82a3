"""Successive halving on the workers (issue 11), in-process through the services and the real engine:
rungs, promotion per choice, continuation from rung checkpoints, a lost worker's resume."""
from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from experiments import pages, services
from experiments.files import artifact_storage, storage_walk
from experiments.models import MetricPoint, Search, Stage, Trial
from experiments.services.halving import checkpoint_root
from experiments.space.halving import keep_count
from tasks import worker
from tests.conftest import TINY_OVERRIDES

pytestmark = pytest.mark.slow

# Two epochs at eta 2: rungs end at epochs 1 and 2; each choice keeps the better half at rung 1.
# Tiny tasks (2 steps an epoch): the first rung after one epoch (halving_min_steps 1).
HALVING = {**TINY_OVERRIDES, "epochs": 2, "halving_eta": 2, "halving_min_steps": 1, "designs_per_stage": 4}


def _search(user, tiny_backbone, bundled_tasks, **extra) -> Search:
    return services.search_create(owner=user, name="halving", tasks=[bundled_tasks["sst2"]], backbone=tiny_backbone,
                                  budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                  overrides={**HALVING, **extra}, auto_approve=False, seed=11)


def _run_queued(search: Search, *, until=lambda trial: False) -> None:
    """Train queued trials in this process, one at a time, until none is left or ``until(trial)``."""
    while True:
        trial = Trial.objects.filter(search=search, status=Trial.Status.QUEUED).order_by("stage__order", "rung",
                                                                                          "index").first()
        if trial is None or until(trial):
            return
        worker.trial_execute(trial_id=trial.pk, attempt=trial.attempt, worker="local")


@pytest.mark.django_db(transaction=True)
def test_a_halving_stage_promotes_each_choices_best_and_survivors_continue_their_curves(user, tiny_backbone,
                                                                                      bundled_tasks):
    search = _search(user, tiny_backbone, bundled_tasks, halving_rank_by="auc")
    stage = search.stages.get(order=0)
    # 32 examples at batch 16: the first rung after 2 optimizer steps
    assert stage.plan["halving"] == {"eta": 2, "rungs": [1, 2], "rank_by": "auc", "first_rung_steps": 2}

    _run_queued(search)

    stage.refresh_from_db()
    search.refresh_from_db()
    assert stage.status == Stage.Status.AWAITING and stage.rung == 1
    trials = list(stage.trials.all())
    by_choice: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        by_choice[trial.choices[stage.component]].append(trial)
    for choice, members in by_choice.items():
        survivors = [t for t in members if not t.halted]
        # The best ceil(n / eta) of each choice by their rung-1 ranking AUC went on; the rest were halted
        assert len(survivors) == keep_count(len(members), 2), choice
        assert {t.rung_scores[0]["rank_by"] for t in members} == {"auc"}
        first_rung = {t.pk: t.rung_scores[0]["rank"] for t in members}
        for trial in members:  # a halted trial's metrics are its rung-1 metrics: the AUC it was ranked by
            if trial.halted:
                assert first_rung[trial.pk] == pytest.approx(100 * trial.scores["sst2"]["metrics"]["eval_auc"])
        assert min(first_rung[t.pk] for t in survivors) >= max(
            (first_rung[t.pk] for t in members if t.halted), default=-1)
        for trial in members:
            assert trial.status == Trial.Status.SUCCEEDED
            if trial.halted:
                assert trial.rung == 0 and [r["epochs"] for r in trial.rung_scores] == [1]
            else:
                assert trial.rung == 1 and [r["epochs"] for r in trial.rung_scores] == [1, 2]
                assert trial.score == trial.rung_scores[-1]["score"] and trial.attempt == 1
    # A survivor's curve continues under the same attempt: steps 1..2 epochs' worth, no restart
    survivor = next(t for t in trials if not t.halted)
    steps = list(MetricPoint.objects.filter(trial=survivor, name="sst2:loss").order_by("step")
                 .values_list("step", "attempt"))
    total = survivor.scores["sst2"]["steps"]  # the global step at the end of the last rung
    assert total % 2 == 0 and [s for s, _ in steps] == list(range(1, total + 1)) and {a for _, a in steps} == {1}
    # The statistics use the survivors only, and the stage says what halving saved
    summary = stage.summary
    assert sum(c["n"] for c in summary["choices"]) == sum(1 for t in trials if not t.halted)
    halted = sum(1 for t in trials if t.halted)
    assert summary["halving"]["saved_trial_epochs"] == halted * 1
    assert summary["halving"]["trial_epochs"] + halted == len(trials) * 2
    assert search.trials_done == search.trials_total == len(trials)
    # Nothing continues from the checkpoints any more: they are gone
    assert not any(checkpoint_root(search.pk).glob("*/rung-*"))
    # The wizard says what halving saved; the table and the trial page show each trial's rung
    client = Client()
    client.force_login(user)
    page = client.get(reverse("stage-detail", args=[search.pk, stage.pk])).content.decode()
    assert f"<strong>{halted} saved</strong>" in page and "Successive halving" in page
    assert "rungs end at epoch 1, 2 (the first after 2 optimizer steps per task)" in page
    table = client.get(reverse("search-trials", args=[search.pk])).content.decode()
    assert "halted after rung 1 of 2 (1 epoch)" in table and "rung 2 of 2 (2 epochs)" in table
    detail = client.get(reverse("trial-detail", args=[search.pk, survivor.pk])).content.decode()
    assert 'id="rungs"' in detail and "curve goes on" in detail and "AUC " in detail
    assert "ranked by the selection set's ranking AUC" in page
    # The score-vs-parameters chart leaves halted trials out (their scores are from fewer epochs)
    # and carries what each plotted trial's optimiser updated next to its stored count
    data = pages.chart_data(search)
    assert set(data["id"]) == {t.pk for t in trials if not t.halted}
    assert all(o > p for o, p in zip(data["optimised"], data["params"]))
    # A trial the stage has moved past (a rung-1 failure, never promoted) cannot be retried into rung 2
    stale = next(t for t in trials if t.halted)
    Trial.objects.filter(pk=stale.pk).update(status=Trial.Status.FAILED, halted=False)
    with pytest.raises(ValidationError, match="past this trial's rung"):
        services.trial_retry(trial=Trial.objects.get(pk=stale.pk))


@pytest.mark.django_db(transaction=True)
def test_a_search_ranks_its_rungs_by_score_unless_asked_otherwise(user, tiny_backbone, bundled_tasks):
    search = _search(user, tiny_backbone, bundled_tasks)
    stage = search.stages.get(order=0)
    assert stage.plan["halving"]["rank_by"] == "score"
    _run_queued(search, until=lambda trial: trial.rung == 1)  # the first rung only

    members: dict[str, list[Trial]] = defaultdict(list)
    for trial in stage.trials.all():
        members[trial.choices[stage.component]].append(trial)
    for choice, trials in members.items():
        assert all(t.rung_scores[0]["rank_by"] == "score" and t.rung_scores[0]["rank"] == t.rung_scores[0]["score"]
                   for t in trials)
        survivors = [t for t in trials if not t.halted]
        assert len(survivors) == keep_count(len(trials), 2), choice
        assert min(t.rung_scores[0]["score"] for t in survivors) >= max(
            (t.rung_scores[0]["score"] for t in trials if t.halted), default=-1)


@pytest.mark.django_db(transaction=True)
def test_a_worker_lost_between_rungs_resumes_from_the_checkpoint_with_the_whole_curve(user, tiny_backbone,
                                                                                     bundled_tasks):
    from tasks.runner import run_design
    from tasks.train import TrainConfig

    search = _search(user, tiny_backbone, bundled_tasks)
    # Rung 1 done for every design: the survivors are queued for rung 2 with their checkpoints
    _run_queued(search, until=lambda trial: trial.rung == 1)
    survivor = Trial.objects.filter(search=search, rung=1, status=Trial.Status.QUEUED).first()
    assert survivor is not None and survivor.checkpoint["attempt"] == 1
    assert (checkpoint_root(search.pk) / str(survivor.pk) / "rung-0").is_dir()
    rung_one_points = MetricPoint.objects.filter(trial=survivor, attempt=1).count()
    # The checkpoint is also in the artifacts storage; the next rung runs on a "machine" without
    # the local copy, so it must fetch it
    stored = list(storage_walk(artifact_storage(), f"checkpoints/{search.pk}/{survivor.pk}/rung-0"))
    assert any(name.endswith("meta.json") for name in stored)
    shutil.rmtree(checkpoint_root(search.pk) / str(survivor.pk))

    # Its worker claims it and is lost: the sweep gives it a new attempt
    assert services.trial_claim(trial_id=survivor.pk, attempt=1, worker="lost") is not None
    Trial.objects.filter(pk=survivor.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.trials_sweep()["requeued"] == 1
    survivor.refresh_from_db()
    assert survivor.attempt == 2 and survivor.status == Trial.Status.QUEUED

    worker.trial_execute(trial_id=survivor.pk, attempt=2, worker="local")
    survivor.refresh_from_db()
    assert survivor.status == Trial.Status.SUCCEEDED, survivor.error
    # The new attempt's curve holds the first rung's points (carried) and the second rung's
    loss = list(MetricPoint.objects.filter(trial=survivor, attempt=2, name="sst2:loss").order_by("step")
                .values_list("step", flat=True))
    assert loss == list(range(1, survivor.scores["sst2"]["steps"] + 1))
    assert MetricPoint.objects.filter(trial=survivor, attempt=2).count() > rung_one_points
    # Resuming is exact: the same score as training the design for both epochs without a stop
    config = TrainConfig(**worker.train_config_fields(search.config, seed=worker.trial_data_seed(survivor)))
    straight = run_design(survivor.design, [worker.task_spec(bundled_tasks["sst2"])], train_config=config,
                          role="selection")
    assert survivor.score == pytest.approx(straight.score, abs=1e-9)
    # Its stage is done once every survivor has run: no checkpoint is kept, locally or in storage
    _run_queued(search)
    assert Stage.objects.get(pk=survivor.stage_id).status == Stage.Status.AWAITING
    assert not list(storage_walk(artifact_storage(), f"checkpoints/{search.pk}"))
