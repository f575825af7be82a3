"""Per-user limits on the work one search asks for, and the plan shown before it starts (issue 9):
the same figures on the new-search form, in the API's dry run and in `pefs_search --dry-run`."""
from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from experiments import services
from experiments.forms import preset_values
from experiments.models import Search, Trial
from experiments.space.planning import search_plan
from experiments.space.presets import PRESETS, preset
from tests.factories import BackboneFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def backbone():
    return BackboneFactory(is_default=True)


@pytest.fixture
def tasks():
    return [TaskFactory(name="sst2"), TaskFactory(name="rte")]


def quick_plan(backbone, tasks, **overrides):
    return search_plan(preset("quick", num_groups=2, **overrides), num_layers=backbone.num_layers, tasks=len(tasks))


def create(user, backbone, tasks, **overrides):
    return services.search_create(owner=user, name="s", tasks=tasks, backbone=backbone, groups=2, preset="quick",
                                  budget_value=0.05, overrides=overrides)


def test_a_search_over_the_trial_limit_is_refused_naming_the_limit(user, backbone, tasks, settings):
    planned = quick_plan(backbone, tasks).trials
    settings.PEFS_MAX_TRIALS_PER_SEARCH = planned - 1
    with pytest.raises(ValidationError) as info:
        create(user, backbone, tasks)
    message = info.value.message_dict["plan"][0]
    assert "PEFS_MAX_TRIALS_PER_SEARCH" in message and f"{planned:,} trials" in message
    assert not Search.objects.exists() and not Trial.objects.exists()
    settings.PEFS_MAX_TRIALS_PER_SEARCH = planned
    assert create(user, backbone, tasks).trials_total > 0


def test_a_search_over_the_task_epoch_limit_is_a_400_from_the_api(api, backbone, tasks, settings):
    planned = quick_plan(backbone, tasks, epochs=3)
    settings.PEFS_MAX_TASK_EPOCHS_PER_SEARCH = planned.task_epochs - 1
    response = api.post(reverse("api:search-list"), {"name": "s", "tasks": ["sst2", "rte"], "backbone": str(backbone.pk),
                                                     "groups": 2, "budget_value": 0.05, "overrides": {"epochs": 3}}, format="json")
    assert response.status_code == 400
    assert "PEFS_MAX_TASK_EPOCHS_PER_SEARCH" in response.json()["plan"][0]
    assert f"{planned.task_epochs:,} task-epochs" in response.json()["plan"][0]
    assert not Search.objects.exists()


def test_trials_already_queued_count_against_the_active_limit(user, backbone, tasks, settings):
    running = SearchFactory(owner=user, backbone=backbone)
    stage = StageFactory(search=running, order=0, key="S1")
    for index, status in enumerate([Trial.Status.QUEUED, Trial.Status.RUNNING, Trial.Status.SUCCEEDED]):
        TrialFactory(stage=stage, index=index, status=status)
    first_stage = next(s.designs for s in quick_plan(backbone, tasks).stages if s.designs)
    settings.PEFS_MAX_ACTIVE_TRIALS_PER_USER = first_stage + 1  # 2 active + the first stage passes by one
    with pytest.raises(ValidationError, match="PEFS_MAX_ACTIVE_TRIALS_PER_USER") as info:
        create(user, backbone, tasks)
    assert "You have 2 trials queued or running" in info.value.message_dict["plan"][0]
    settings.PEFS_MAX_ACTIVE_TRIALS_PER_USER = first_stage + 2
    assert create(user, backbone, tasks)


def test_the_api_dry_run_answers_the_plan_and_starts_nothing(api, backbone, tasks, settings):
    expected = quick_plan(backbone, tasks, designs_per_stage=12)
    settings.PEFS_MAX_TRIALS_PER_SEARCH = expected.trials - 1
    response = api.post(reverse("api:search-list"), {
        "name": "s", "tasks": ["sst2", "rte"], "backbone": str(backbone.pk), "groups": 2, "budget_value": 0.05,
        "overrides": {"designs_per_stage": 12}, "dry_run": True}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["trials"], body["task_epochs"], body["tasks"]) == (expected.trials, expected.task_epochs, 2)
    assert [(s["name"], s["designs"]) for s in body["stages"]] == [(s.name, s.designs) for s in expected.stages]
    assert body["limits"]["trials_per_search"] == expected.trials - 1
    assert len(body["problems"]) == 1 and "PEFS_MAX_TRIALS_PER_SEARCH" in body["problems"][0]
    assert not Search.objects.exists() and not Trial.objects.exists()


def test_the_new_search_form_shows_the_plan_before_start(client, user, backbone, tasks):
    client.force_login(user)
    data = {key: ("on" if value is True else "" if value in (False, None) else value)
            for key, value in preset_values(PRESETS["quick"]).items()}
    data.update({"tasks": [t.pk for t in tasks], "backbone": backbone.pk, "preset": "quick", "groups": 2,
                 "budget_kind": "fraction", "budget_value": 5, "seed": 0, "max_eval_examples": "", "name": ""})
    response = client.get(reverse("search-plan-preview"), data)
    expected = quick_plan(backbone, tasks)
    assert response.status_code == 200
    plan = response.context["plan"]
    assert (plan["trials"], plan["task_epochs"]) == (expected.trials, expected.task_epochs)
    assert f"{expected.trials:,}</span> trials" in response.content.decode()
    assert 'id="search-plan"' in client.get(reverse("search-new")).content.decode()

    too_many = client.get(reverse("search-plan-preview"), {**data, "designs_per_stage": 10**6})
    assert "plan" not in too_many.context and "designs_per_stage" in too_many.context["form"].errors


def test_pefs_search_dry_run_prints_the_plan_and_starts_nothing(user, backbone, tasks):
    out = io.StringIO()
    call_command("pefs_search", "--tasks", "sst2,rte", "--groups", "2", "--budget", "0.05", "--dry-run", "--user", user.username,
                 stdout=out)
    expected = quick_plan(backbone, tasks)
    text = out.getvalue()
    assert f"{expected.trials:,} trials" in text and f"{expected.task_epochs:,} task-epochs" in text
    assert all(stage.name in text for stage in expected.stages)
    assert not Search.objects.exists()
