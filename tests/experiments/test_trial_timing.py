"""Per-trial timing (issue 14): trials run through the worker record every phase, summed over a survivor's
rungs; the API, the trial page and the search page show them."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import reverse

from experiments import services
from experiments.models import Trial
from experiments.services.trials import trial_timing
from experiments.timing import stage_training_share
from tasks import worker
from tasks.timing import PHASES, RUNNING_PHASES
from tests.conftest import TINY_OVERRIDES

# Two epochs at eta 2: every design trains rung 1 (and writes its checkpoint), the survivors rung 2.
# Tiny tasks (2 steps an epoch): the first rung after one epoch (halving_min_steps 1).
HALVING = {**TINY_OVERRIDES, "epochs": 2, "halving_eta": 2, "halving_min_steps": 1, "designs_per_stage": 4}
# The clocks of claim and finish (the database's) and of the phases (the worker's) differ by this much at most.
TOLERANCE_S = 0.05


def test_a_later_rung_adds_its_phases_and_other_covers_the_rest_of_the_summed_duration():
    trial = SimpleNamespace(rung=1, timing={"queued": 0.5, "training": 1.0, "other": 0.5}, duration_s=5.0)
    assert trial_timing(trial, {"queued": 0.25, "training": 2.0}) == {"queued": 0.75, "training": 3.0, "other": 2.0}
    # A first rung (or a trial without halving) starts from nothing, whatever an earlier attempt left
    trial = SimpleNamespace(rung=0, timing={"training": 9.0}, duration_s=1.0)
    assert trial_timing(trial, {"data": 0.25}) == {"data": 0.25, "other": 0.75}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_trials_run_by_the_worker_record_every_phase_and_the_pages_show_them(user, tiny_backbone, bundled_tasks):
    # Given a halving stage trained through the worker's trial_execute, as a Celery worker does
    search = services.search_create(owner=user, name="timing", tasks=[bundled_tasks["sst2"]], backbone=tiny_backbone,
                                    budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                    overrides=HALVING, auto_approve=False, seed=3)
    while (trial := Trial.objects.filter(search=search, status=Trial.Status.QUEUED)
           .order_by("rung", "index").first()) is not None:
        worker.trial_execute(trial_id=trial.pk, attempt=trial.attempt, worker="local")

    # Then every trial has every phase, none negative, and the running phases fill its duration
    trials = list(Trial.objects.filter(search=search))
    assert trials and all(t.status == Trial.Status.SUCCEEDED for t in trials)
    for trial in trials:
        assert set(trial.timing) == set(PHASES), trial.timing
        assert all(seconds >= 0 for seconds in trial.timing.values())
        running = sum(trial.timing[phase] for phase in RUNNING_PHASES)
        assert running <= trial.duration_s + TOLERANCE_S
        assert running == pytest.approx(trial.duration_s, abs=TOLERANCE_S)  # "other" is the remainder
        assert trial.timing["training"] > 0 and trial.timing["artifacts"] > 0  # the rung-1 checkpoint
    # A survivor ran twice: its duration and its phases are the sum of both runs
    survivor = next(t for t in trials if not t.halted)
    assert len(survivor.rung_scores) == 2
    assert survivor.duration_s == pytest.approx(sum(r["seconds"] for r in survivor.rung_scores))

    # The API and the trial page show the phases
    client = Client()
    client.force_login(user)
    detail = client.get(reverse("api:trial-detail", args=[survivor.pk])).json()
    assert detail["timing"] == survivor.timing
    page = client.get(reverse("trial-detail", args=[search.pk, survivor.pk])).content.decode()
    assert 'id="trial-timing"' in page and 'data-phase="training"' in page and "Training (optimiser steps)" in page
    # The search page says what share of the stage's trial time was training
    share = stage_training_share(survivor.stage)
    assert share is not None and share["trials"] == len(trials) and 0 < share["percent"] <= 100
    status = client.get(reverse("search-status", args=[search.pk])).content.decode()
    assert f"Training {share['percent']}% of trial time in stage {share['stage']}" in status
