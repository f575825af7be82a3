"""Tasks that cannot run here (issue 12): MNLI and QQP were offered offline, the search started and
its first trial failed. catalog.task_unavailable_reason says why without loading any data; the
new-search form shows such a task disabled with the reason; the API refuses it."""
from __future__ import annotations

import re

import datasets
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from experiments.models import Task
from experiments.services import catalog, seed_bundled
from tests.factories import BackboneFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.fixture
def glue(db):
    seed_bundled(backbone=False)
    return {task.name: task for task in Task.objects.filter(owner=None)}


def test_hub_tasks_are_unavailable_offline_and_bundled_files_are_available(glue, offline):
    for name in ("mnli", "qqp"):
        reason = catalog.task_unavailable_reason(glue[name])
        assert reason and "HF_HUB_OFFLINE" in reason and "upload" in reason
    for name in ("sst2", "rte", "cola", "qnli"):
        assert catalog.task_unavailable_reason(glue[name]) is None, name


def test_hub_tasks_are_offered_when_the_hub_is_on(glue, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    assert catalog.task_unavailable_reason(glue["mnli"]) is None


def test_a_bundled_task_without_its_files_is_unavailable():
    task = TaskFactory(name="gone", source=Task.Source.BUNDLED, spec={"train_path": "GONE/train.tsv",
                                                                       "eval_path": "GONE/dev.tsv"})
    assert "missing" in catalog.task_unavailable_reason(task)


def test_an_upload_whose_file_is_gone_is_unavailable(user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    task = TaskFactory(owner=user, name="mine", source=Task.Source.UPLOAD, path="1/data.csv",
                       spec={"train_path": "1/data.csv"})
    assert "upload it again" in catalog.task_unavailable_reason(task)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "data.csv").write_text("text,label\na,0\n")
    assert catalog.task_unavailable_reason(task) is None


def test_the_new_search_form_shows_unavailable_tasks_disabled_with_the_reason(client, user, glue, offline):
    client.force_login(user)
    html = client.get(reverse("search-new")).content.decode()
    mnli = re.search(rf'<label class="task-unavailable" data-unavailable="{glue["mnli"].pk}">.*?</label>', html, re.S)
    assert mnli, "MNLI is not shown as unavailable"
    assert " disabled " in mnli.group(0) and "HF_HUB_OFFLINE" in mnli.group(0)
    sst2 = re.search(rf'<input type="checkbox" name="tasks" value="{glue["sst2"].pk}"[^>]*>', html).group(0)
    assert "disabled" not in sst2


def test_the_api_refuses_a_search_on_an_unavailable_task(user, glue, offline):
    api = APIClient()
    api.force_authenticate(user)
    response = api.post(reverse("api:search-list"), {"name": "offline mnli", "tasks": ["mnli"],
                                                     "backbone": str(BackboneFactory().pk), "budget_value": 0.05,
                                                     "preset": "quick"}, format="json")
    assert response.status_code == 400, response.json()
    assert "HF_HUB_OFFLINE" in " ".join(response.json().get("tasks", [])), response.json()
