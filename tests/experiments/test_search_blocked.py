"""A search whose stage cannot produce enough successful trials is blocked (issue 12: MNLI could not
load offline, every trial failed, and the search showed "waiting for approval / Review S1" with
nothing to approve). It says "blocked: <reason>" with the first failing trial's error, offers retry
and cancel, and the list, the API and the CLI say the same."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse

from experiments import services
from experiments.models import Search, Stage, Trial
from tests.experiments.test_cli import tiny_task  # noqa: F401  (a fixture: a 40-row upload)
from tests.factories import SearchFactory, StageFactory, TaskFactory, TrialFactory

TRACEBACK = ("Traceback (most recent call last):\n  File \"tasks/worker.py\", line 1, in run\n"
             "tasks.data.DataError: train_path: /srv/uploads/1/abc.csv: file not found")


def blocked_stage(user, *, errors: list[str]) -> Stage:
    """An S1 grouping stage whose trials are all final: one failed trial per error, then a success."""
    search = SearchFactory(owner=user, status=Search.Status.RUNNING, tasks=[TaskFactory(name="gone")])
    stage = StageFactory(search=search, order=1, key="S1", status=Stage.Status.RUNNING)
    for error in errors:
        TrialFactory(stage=stage, status=Trial.Status.FAILED, error=error)
    TrialFactory(stage=stage, status=Trial.Status.SUCCEEDED, score=70.0)
    Search.objects.filter(pk=search.pk).update(current_stage=stage, trials_done=len(errors) + 1,
                                               trials_total=len(errors) + 1)
    return stage


@pytest.mark.django_db
def test_a_stage_whose_trials_failed_blocks_the_search_with_the_first_error(user):
    stage = blocked_stage(user, errors=[TRACEBACK, "RuntimeError: a later failure"])
    with transaction.atomic():
        services.stage_check_complete(stage_id=stage.pk)
    search = Search.objects.get(pk=stage.search_id)
    assert search.status == Search.Status.BLOCKED
    assert search.error.startswith("stage S1: 2 of 3 trials failed, so some grouping choice has fewer than")
    # the first failing trial's error, its last line (the exception), never the whole traceback
    assert search.error.endswith("the first error: tasks.data.DataError: train_path: /srv/uploads/1/abc.csv: "
                                 "file not found")
    assert "Traceback" not in search.error
    # the stage keeps its statistics for a person who decides by hand, but nothing is approved
    stage.refresh_from_db()
    assert stage.status == Stage.Status.AWAITING and stage.decision is None


@pytest.mark.django_db
def test_a_long_error_is_shortened(user):
    stage = blocked_stage(user, errors=["ValueError: " + "x" * 1000])
    with transaction.atomic():
        services.stage_check_complete(stage_id=stage.pk)
    error = Search.objects.get(pk=stage.search_id).error
    quoted = error.split("the first error: ", 1)[1]
    assert len(quoted) == services.searches.BLOCKED_ERROR_CHARS and quoted.endswith("…")


@pytest.mark.django_db
def test_the_status_partial_offers_retry_and_cancel_never_a_review(client, user):
    stage = blocked_stage(user, errors=[TRACEBACK])
    with transaction.atomic():
        services.stage_check_complete(stage_id=stage.pk)
    search = Search.objects.get(pk=stage.search_id)
    client.force_login(user)
    html = client.get(reverse("search-status", args=[search.pk])).content.decode()
    assert 'id="blocked-callout"' in html and "<strong>Blocked:</strong>" in html
    assert "abc.csv: file not found" in html
    assert f'hx-post="{reverse("api:search-retry-failed", args=[search.pk])}"' in html
    assert 'id="blocked-cancel"' in html
    assert "waits for your approval" not in html and "Review S1" not in html and 'id="waiting-callout"' not in html
    # the list says it too, with the reason
    listed = client.get(reverse("search-list")).content.decode()
    assert 'badge s-blocked">blocked<' in listed and "retry or cancel" in listed and "file not found" in listed
    # the API's status field, with the reason
    detail = client.get(f"/api/searches/{search.pk}/").json()
    assert detail["status"] == "blocked" and "file not found" in detail["error"]
    # and the stage page: blocked with the reason, retry and cancel
    page = client.get(reverse("stage-detail", args=[search.pk, stage.pk])).content.decode()
    assert 'id="stage-blocked"' in page and "file not found" in page and "Retry failed trials" in page


@pytest.mark.django_db
def test_retry_reopens_a_blocked_search_and_cancel_stops_it(user, monkeypatch):
    stage = blocked_stage(user, errors=[TRACEBACK])
    with transaction.atomic():
        services.stage_check_complete(stage_id=stage.pk)
    monkeypatch.setattr("experiments.services.queue.trials_enqueue", lambda **kwargs: None)  # no broker here
    search = Search.objects.get(pk=stage.search_id)
    assert services.trials_retry_failed(search=search) == 1
    search.refresh_from_db()
    stage.refresh_from_db()
    assert search.status == Search.Status.RUNNING and stage.status == Stage.Status.RUNNING
    assert search.error == ""  # the blocked reason went with the retry
    services.search_cancel(search=search)
    assert Search.objects.get(pk=search.pk).status == Search.Status.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_a_search_on_a_task_whose_file_is_gone_is_blocked_and_the_cli_says_why(user, tiny_backbone, tiny_task,
                                                                               tmp_path, monkeypatch):
    # Given a search started on an uploaded task whose file then disappears from the server
    settings.MEDIA_ROOT = tmp_path / "artifacts"
    search = services.search_create(
        owner=user, name="gone", tasks=[tiny_task], backbone=tiny_backbone, budget_kind="absolute",
        budget_value=6000, groups=1, preset="quick", auto_approve=True, seed=3,
        overrides={"designs_per_stage": 2, "epochs": 1, "max_train_examples": 16, "max_eval_examples": 16,
                   "batch_size": 16, "bootstrap_resamples": 200})
    (Path(settings.UPLOAD_ROOT) / tiny_task.spec["train_path"]).unlink()
    monkeypatch.setattr(services, "search_create", lambda **kwargs: search)
    # When the CLI runs it in-process
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command("pefs_search", "--backbone", str(tiny_backbone.pk), "--tasks", "tiny", "--local",
                     "--auto-approve", "--user", user.username, "--out", str(tmp_path / "out"), stdout=out, stderr=err)
    # Then every trial of the first stage failed, the search is blocked (not waiting), and the CLI
    # exits non-zero with the reason and the trial's error
    search.refresh_from_db()
    assert search.status == Search.Status.BLOCKED
    assert not search.trials.exclude(status=Trial.Status.FAILED).exists()
    assert str(error.value).startswith(f"Search #{search.pk} is blocked: stage ")
    assert "the first error: " in str(error.value) and "not found" in str(error.value)
