"""Before Start: each task's example sets, the plan with and without successive halving, and the
duration estimate, on the form, in the API's dry run and in `pefs_search --dry-run`
(experiments.services.estimate, limits.search_plan_preview)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from experiments import services
from experiments.forms import preset_values
from experiments.models import Search, Task, Trial
from experiments.services import estimate
from experiments.space.planning import search_plan
from experiments.space.presets import PRESETS, preset
from tasks.data import get_task, user_task
from tests.factories import BackboneFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker_count(monkeypatch):
    """No broadcast to a broker in these tests: as when no worker answers."""
    monkeypatch.setattr(estimate, "trial_workers", lambda: None)


@pytest.fixture
def backbone():
    return BackboneFactory(is_default=True)


@pytest.fixture
def rte():
    spec = get_task("rte")
    return TaskFactory(name="rte", spec=spec.to_dict(), text_columns=list(spec.text_columns),
                       label_column=spec.label_column)


@pytest.fixture
def upload(settings, tmp_path):
    """An uploaded CSV of 200 rows and no evaluation file: both sets are carved out of it."""
    settings.UPLOAD_ROOT = str(tmp_path)
    path = Path(tmp_path, "u1", "reviews.csv")
    path.parent.mkdir()
    path.write_text("text,label\n" + "".join(f"review number {i},{i % 2}\n" for i in range(200)))
    spec = user_task(path, text_columns=["text"], label_column="label", name="reviews").to_dict()
    spec["train_path"] = "u1/reviews.csv"
    return TaskFactory(name="reviews", source=Task.Source.UPLOAD, spec=spec, text_columns=["text"])


def test_bundled_example_sets_name_split_count_and_seed(rte):
    sets = estimate.task_example_sets(task=rte, config=preset("study"))
    assert sets["error"] is None
    train, selection, report = sets["train"], sets["selection"], sets["report"]
    assert (train["count"], train["seed"]) == (128, 0) and train["pool"] + selection["pool"] == 2490
    assert (selection["count"], selection["seed"], selection["split"], selection["held_out"]) == (
        200, 0, "GLUE train", True)
    # The report set is the GLUE dev split, whole (277 < 200 is false: drawn with seed 0)
    assert (report["split"], report["pool"], report["count"], report["held_out"]) == ("GLUE dev", 277, 200, False)
    assert "held out of GLUE train" in selection["description"]


def test_an_upload_without_an_evaluation_file_shows_both_carved_sets(upload):
    sets = estimate.task_example_sets(task=upload, config=preset("quick", max_train_examples=None,
                                                                 max_eval_examples=None))
    train, selection, report = sets["train"], sets["selection"], sets["report"]
    # 10% of 200 rows held out for the report set, then 10% of the 180 left for selection
    assert (report["count"], selection["count"], train["count"]) == (20, 18, 162)
    assert report["held_out"] and selection["held_out"] and report["split"] == "reviews.csv"
    assert report["seed"] is None  # the whole pool: no draw


def test_pools_are_read_once_per_file_version(upload, monkeypatch):
    import tasks.data

    calls = []
    real = tasks.data.example_sets
    monkeypatch.setattr(tasks.data, "example_sets", lambda spec: calls.append(spec) or real(spec))
    for limit in (10, 50, 100, None):  # every keystroke of the form: one read
        estimate.task_example_sets(task=upload, config=preset("quick", max_train_examples=limit))
    assert len(calls) == 1
    Path(Task.objects.get(pk=upload.pk).spec and Path(estimate._spec(upload)["train_path"])).write_text(
        "text,label\n" + "".join(f"new review {i},{i % 2}\n" for i in range(100)))
    sets = estimate.task_example_sets(task=upload, config=preset("quick"))
    assert len(calls) == 2 and sets["report"]["pool"] == 10  # a re-uploaded file is read again


def test_a_hub_task_is_not_loaded_in_the_web_process():
    hub = TaskFactory(name="mnli", source=Task.Source.HUB, spec={"name": "mnli"})
    sets = estimate.task_example_sets(task=hub, config=preset("quick"))
    assert sets["train"] is None and "hub" in sets["error"]


def test_the_estimate_uses_the_default_step_time_without_history(backbone, rte):
    config = preset("study", num_groups=2)
    plan = search_plan(config, num_layers=backbone.num_layers, tasks=1)
    sets = [estimate.task_example_sets(task=rte, config=config)]
    result = estimate.search_estimate(plan=plan, config=config, backbone=backbone, example_sets=sets)
    assert result["steps"] == plan.task_epochs * 8  # 128 examples / batch 16
    assert "default" in result["step_source"] and not result["workers_counted"]
    assert "at least 1 worker" in result["text"] and "estimate" in result["text"]
    assert result["seconds_per_step"] == pytest.approx(
        estimate.DEFAULT_SECONDS_PER_STEP * backbone.total_params / estimate.DEFAULT_STEP_SHAPE["parameters"], rel=1e-2)


def test_the_estimate_uses_measured_steps_and_the_worker_count(backbone, rte, monkeypatch):
    config = preset("quick")
    search = SearchFactory(backbone=backbone, config=config.to_dict())
    stage = StageFactory(search=search, order=0, key="S1")
    for index, seconds in enumerate((10.0, 20.0, 30.0)):  # 10 steps each: 1, 2, 3 s per step
        TrialFactory(stage=stage, index=index, status=Trial.Status.SUCCEEDED, duration_s=seconds,
                     scores={"rte": {"score": 50.0, "steps": 6}, "sst2": {"score": 50.0, "steps": 4}})
    seconds, source = estimate.seconds_per_step(backbone=backbone, config=config)
    assert seconds == 2.0 and "median of 3" in source
    # Another batch size is another step: not measured by these trials
    assert "default" in estimate.seconds_per_step(backbone=backbone, config=config.replace(batch_size=32))[1]
    monkeypatch.setattr(estimate, "trial_workers", lambda: 4)
    plan = search_plan(config, num_layers=backbone.num_layers, tasks=1)
    result = estimate.search_estimate(plan=plan, config=config, backbone=backbone,
                                      example_sets=[estimate.task_example_sets(task=rte, config=config)])
    assert result["workers"] == 4 and "on 4 workers" in result["text"]
    assert result["minutes"] == max(1, round(plan.task_epochs * 32 * 2.0 / 4 / 60))


def test_trial_workers_without_a_broker_is_none(settings, monkeypatch):
    monkeypatch.undo()
    from django.core.cache import cache

    from pefs_web.celery import app

    cache.delete("pefs:trial-workers")
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    assert estimate.trial_workers() is None
    assert cache.get("pefs:trial-workers") == 0  # remembered: the next preview asks nobody


def _form_data(backbone, tasks, preset_name="quick", **changes):
    data = {key: ("on" if value is True else "" if value in (False, None) else value)
            for key, value in preset_values(PRESETS[preset_name]).items() if key != "strategy_learning_rates"}
    data.update({"tasks": [t.pk for t in tasks], "backbone": backbone.pk, "preset": preset_name,
                 "budget_kind": "fraction", "budget_value": 0.5, "name": "", "seed": 0, **changes})
    return data


def test_the_form_shows_halving_example_sets_and_duration(client, user, backbone, rte, upload):
    client.force_login(user)
    response = client.get(reverse("search-plan-preview"), _form_data(backbone, [rte, upload], "study"))
    assert response.status_code == 200
    assert "plan" in response.context, response.context["form"].errors
    plan, body = response.context["plan"], response.content.decode()
    expected = search_plan(preset("study"), num_layers=backbone.num_layers, tasks=2)
    assert (plan["task_epochs"], plan["full_task_epochs"]) == (expected.task_epochs, expected.full_task_epochs)
    assert expected.task_epochs < expected.full_task_epochs
    assert 'id="plan-halving"' in body and f"{expected.full_task_epochs:,}" in body
    assert "rungs ranked by score" in body
    ranked_by_auc = client.get(reverse("search-plan-preview"),
                               _form_data(backbone, [rte], "study", halving_rank_by="auc")).content.decode()
    assert "rungs ranked by the selection set's ranking AUC" in ranked_by_auc
    bad = client.get(reverse("search-plan-preview"), _form_data(backbone, [rte], "study", halving_rank_by="loss"))
    assert "halving_rank_by" in bad.context["form"].errors
    assert 'id="plan-example-sets"' in body and "GLUE dev" in body and "reviews.csv" in body
    assert 'id="plan-estimate"' in body and "at least 1 worker" in body
    # Without halving the form says nothing about it
    plain = client.get(reverse("search-plan-preview"), _form_data(backbone, [rte], "quick")).content.decode()
    assert 'id="plan-halving"' not in plain


def test_the_form_bounds_halving_eta(client, user, backbone, rte):
    client.force_login(user)
    response = client.get(reverse("search-plan-preview"), _form_data(backbone, [rte], "study", halving_eta=17))
    assert "halving_eta" in response.context["form"].errors
    response = client.get(reverse("search-plan-preview"), _form_data(backbone, [rte], "study", halving_eta=1))
    assert "plan" not in response.context and "halving_eta" in response.context["form"].errors


def test_the_api_dry_run_shows_halving_example_sets_and_duration(api, backbone, rte):
    response = api.post(reverse("api:search-list"), {
        "name": "s", "tasks": ["rte"], "backbone": str(backbone.pk), "groups": 2, "preset": "study",
        "dry_run": True}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    expected = search_plan(preset("study"), num_layers=backbone.num_layers, tasks=1)
    assert (body["task_epochs"], body["full_task_epochs"], body["halving_eta"], body["halving_rank_by"]) == (
        expected.task_epochs, expected.full_task_epochs, 2, "score")
    assert body["stages"][0]["halving"]["rungs"] == [1, 2]
    assert body["example_sets"][0]["selection"]["count"] == 200
    assert "min" in body["estimate"]["text"] and body["estimate"]["workers"] == 1
    assert not Search.objects.exists()


def test_the_cli_dry_run_prints_halving_example_sets_and_duration(user, backbone, rte):
    out = io.StringIO()
    call_command("pefs_search", "--tasks", "rte", "--preset", "study", "--dry-run", "--user", user.username,
                 stdout=out)
    text = out.getvalue()
    expected = search_plan(preset("study"), num_layers=backbone.num_layers, tasks=1)  # groups: the preset's 2
    assert f"without it the same trials: {expected.full_task_epochs:,}" in text
    assert "rungs at 1, 2 epochs" in text
    assert "selection: 200 of" in text and "report: 200 of 277" in text
    assert "Duration: at most about" in text and "min on at least 1 worker" in text  # S4 runs only if S3 tunes it
    assert not Search.objects.exists()


def test_halving_is_no_longer_refused(user, backbone, rte):
    assert services.UNSCHEDULED_SETTINGS == {}
    config, _ = services.search_config_build(backbone=backbone, groups=2, preset="study")
    assert config.halving_eta == 2


def test_the_form_api_and_cli_say_when_the_first_rung_ranks_and_when_halving_is_off(client, api, user, backbone,
                                                                                   rte):
    client.force_login(user)
    # 128 examples a task at batch 16, 24 steps before the first rung: 3 epochs; 9 epochs at eta 3: rungs 3, 9
    later = {"halving_min_steps": 24, "halving_eta": 3, "epochs": 9}
    body = client.get(reverse("search-plan-preview"), _form_data(backbone, [rte], "study", **later)).content.decode()
    assert "The first rung ranks designs after 24 optimizer steps" in body and "rungs at 3, 9 epochs" in body
    off = client.get(reverse("search-plan-preview"),
                     _form_data(backbone, [rte], "study", halving_min_steps=24)).content.decode()
    assert 'id="plan-halving-off"' in off and "Halving (eta 2) is off" in off and 'id="plan-halving"' not in off
    response = api.post(reverse("api:search-list"), {
        "name": "s", "tasks": ["rte"], "backbone": str(backbone.pk), "groups": 2, "preset": "study",
        "overrides": later, "dry_run": True}, format="json")
    assert response.status_code == 200, response.json()
    plan = response.json()
    assert (plan["halving_first_rung_steps"], plan["steps_per_epoch"], plan["halving_note"]) == (24, 8, "")
    assert plan["stages"][0]["halving"]["rungs"] == [3, 9]
    out = io.StringIO()
    call_command("pefs_search", "--tasks", "rte", "--preset", "study", "--dry-run", "--user", user.username,
                 "--set", "halving_min_steps=24", stdout=out)
    assert "halving (eta 2) is off: stages train 2 epochs" in out.getvalue()
    assert not Search.objects.exists()


def test_a_search_stored_before_halving_min_steps_keeps_its_first_rung(user, backbone):
    from experiments.services.searches import search_config

    stored = {**PRESETS["study"].to_dict(), "epochs": 9, "halving_eta": 3}
    stored.pop("halving_min_steps")
    search = SearchFactory(owner=user, backbone=backbone, config=stored)
    assert search_config(search).halving_min_steps == 1
    from experiments.services.halving import halving_stage_plan

    assert halving_stage_plan(search_config(search), "grouping")["rungs"] == [1, 3, 9]
