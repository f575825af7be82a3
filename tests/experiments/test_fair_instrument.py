"""Issue 10 on the web side: every open choice is trained, aliases are one choice, components
that cannot differ are decided without training, auto-approve never discards an untried choice,
and a stage's designs share one data seed. Database only, no worker processes."""
from __future__ import annotations

import importlib
from collections import Counter

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments import selectors, services
from experiments.models import Search, Stage, Trial
from experiments.services import stage_trials
from tasks import worker
from tests.factories import BackboneFactory, SearchFactory, TaskFactory

pytestmark = pytest.mark.django_db


def _search(user, *, groups: int = 2, auto_approve: bool = False, **overrides):
    backbone = BackboneFactory()  # 4 layers
    return services.search_create(owner=user, name="fair", tasks=[TaskFactory()], backbone=backbone,
                                  budget_kind="absolute", budget_value=2000, groups=groups, preset="quick",
                                  overrides={"designs_per_stage": 2, **overrides}, auto_approve=auto_approve,
                                  seed=3)


def _finish_all(stage: Stage, score_of) -> None:
    for trial in stage.trials.order_by("index"):
        services.trial_claim(trial_id=trial.pk, attempt=trial.attempt, worker="w")
        score = score_of(trial)
        if score is None:
            services.trial_finish(trial_id=trial.pk, attempt=trial.attempt, status=Trial.Status.FAILED,
                                  error="boom")
        else:
            services.trial_finish(trial_id=trial.pk, attempt=trial.attempt, status=Trial.Status.SUCCEEDED,
                                  result=services.TrialResult(score, {}, 2000, 66))


def test_every_open_choice_of_a_stage_gets_min_successes_designs(user):
    search = _search(user)
    stage = search.stages.get()
    per_choice = Counter(stage.trials.values_list("choices__grouping", flat=True))
    # On 4 layers with G = 2, uniform = spindle = bottleneck: three distinct groupings, twice each
    assert per_choice == {"increasing": 2, "uniform": 2, "decreasing": 2}
    assert stage.plan["stage_plan"]["designs"] == 6 and stage.plan["stage_plan"]["raised_from"] == 2
    assert "raised from 2 to 6" in stage.plan["stage_plan"]["note"]
    assert stage.plan["untried"] == {}


def test_a_component_whose_choices_all_coincide_is_decided_without_a_stage(user):
    # G = L = 4: every grouping pattern gives one layer per group
    search = _search(user, groups=4)
    assert [d["component"] for d in search.untrained_decisions] == ["grouping"]
    assert search.untrained_decisions[0]["trained"] is False
    assert set(search.untrained_decisions[0]["aliases"]) == {"uniform", "increasing", "decreasing", "spindle",
                                                             "bottleneck"}
    assert search.stages.get().key == "S2"


def test_stage_summary_names_the_aliases_of_a_merged_choice(user):
    search = _search(user)
    stage = search.stages.get()
    _finish_all(stage, lambda t: 60.0 + t.index)
    stage.refresh_from_db()
    uniform = next(c for c in stage.summary["choices"] if c["choice"] == "uniform")
    assert uniform["aliases"] == ["uniform", "spindle", "bottleneck"]


def test_auto_approve_waits_for_a_person_when_a_choice_has_too_few_successes(user):
    search = _search(user, auto_approve=True)
    stage = search.stages.get()
    # Given the best-scoring choice with a single success (its other design failed)
    failed = stage.trials.filter(choices__grouping="increasing").order_by("index").first()
    _finish_all(stage, lambda t: None if t.pk == failed.pk else (90.0 if t.choices["grouping"] == "increasing"
                                                                  else 50.0 + t.index))
    stage.refresh_from_db()
    # Then nothing is approved automatically; the leader among the choices that can be compared is
    # shown to the person who decides, and the search says it is blocked and why (issue 12: never
    # "waiting for approval" as if the evidence were complete)
    assert stage.status == Stage.Status.AWAITING
    assert stage.recommendation["auto_approvable"] is False and stage.recommendation["choice"] is None
    assert stage.recommendation["leader"] in {"uniform", "decreasing"}
    blocked = Search.objects.get(pk=search.pk)
    assert blocked.status == Search.Status.BLOCKED and blocked.error


def test_auto_approve_applies_a_recommendation_every_choice_backs(user):
    search = _search(user, auto_approve=True)
    stage = search.stages.get()
    _finish_all(stage, lambda t: 90.0 + t.index if t.choices["grouping"] == "decreasing" else 40.0 + t.index)
    stage.refresh_from_db()
    assert stage.status == Stage.Status.APPROVED and stage.decision["choice"] == "decreasing"
    assert search.stages.filter(key="S2").exists()


def test_trials_are_inserted_in_bounded_batches(user, monkeypatch):
    monkeypatch.setattr(stage_trials, "TRIAL_INSERT_BATCH", 2)
    with CaptureQueriesContext(connection) as queries:
        search = _search(user)
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "experiments_trial"')]
    assert search.trials.count() == 6 and len(inserts) == 3


def test_a_stages_designs_share_one_data_seed_and_keep_their_own_design_seeds(user):
    stage = _search(user).stages.get()
    trials = list(stage.trials.all())
    data_seeds = {worker.trial_data_seed(t) for t in trials}
    assert len(data_seeds) == 1 and data_seeds == {stage.plan["data_seed"]}
    assert len({t.seed for t in trials}) == len(trials)
    assert data_seeds.isdisjoint({t.seed for t in trials})


def test_stored_configs_below_two_successes_are_raised_so_they_load():
    migration = importlib.import_module("experiments.migrations.0003_search_untrained_decisions")
    search = SearchFactory()
    Search.objects.filter(pk=search.pk).update(config={**search.config, "min_successes": 1})
    migration.raise_min_successes(apps, None)
    search.refresh_from_db()
    assert search.config["min_successes"] == 2
    assert services.search_config(search).min_successes == 2


def test_a_finished_trial_shows_both_counts_and_its_role_in_the_api_and_the_event(user, monkeypatch,
                                                                                   django_capture_on_commit_callbacks):
    from django.urls import reverse
    from rest_framework.test import APIClient

    from experiments import events

    published = []
    monkeypatch.setattr(events, "publish", lambda search_id, event_type, payload: published.append(payload))
    stage = _search(user).stages.get()
    trial = stage.trials.order_by("index").first()
    services.trial_claim(trial_id=trial.pk, attempt=trial.attempt, worker="w")
    with django_capture_on_commit_callbacks(execute=True):
        services.trial_finish(trial_id=trial.pk, attempt=trial.attempt, status=Trial.Status.SUCCEEDED,
                              result=services.TrialResult(70.0, {}, 2000, 66, optimised_params=2066 + 600))
    client = APIClient()
    client.force_authenticate(user)
    row = next(r for r in client.get(reverse("api:search-trials", args=[stage.search_id])).json()["results"]
               if r["id"] == trial.pk)
    assert (row["trainable_params"], row["optimised_params"], row["head_params"]) == (2000, 2666, 66)
    assert row["eval_role"] == "selection"
    event = next(p["trial"] for p in published if "trial" in p and isinstance(p["trial"], dict)
                 and p["trial"]["id"] == trial.pk and p["trial"]["status"] == "succeeded")
    assert event["optimised_params"] == 2666 and event["trainable_params"] == 2000
    best = selectors.stage_best_trials(stage=stage)
    assert best[0]["optimised_params"] == 2666 and best[0]["trainable_params"] == 2000


def test_the_stage_api_shows_the_plan_and_which_examples_scored_it(user):
    from django.urls import reverse
    from rest_framework.test import APIClient

    stage = _search(user).stages.get()
    trial = stage.trials.order_by("index").first()
    eval_set = {"role": "selection", "split": "train", "pool": 249, "count": 50, "seed": 0, "held_out": True,
                "split_seed": 0, "description": "selection: 50 of 249 examples held out of train"}
    services.trial_claim(trial_id=trial.pk, attempt=trial.attempt, worker="w")
    services.trial_finish(trial_id=trial.pk, attempt=trial.attempt, status=Trial.Status.SUCCEEDED,
                          result=services.TrialResult(70.0, {"rte": {"score": 70.0, "eval_set": eval_set}}, 2000, 66))
    client = APIClient()
    client.force_authenticate(user)
    body = client.get(reverse("api:stage-detail", args=[stage.pk])).json()
    assert body["plan"]["stage_plan"]["raised_from"] == 2 and body["plan"]["untried"] == {}
    assert body["scored_on"] == {"rte": {"train": None, "eval": eval_set}}
