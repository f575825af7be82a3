"""Live events: built from the REST serializers, so the WebSocket and the API agree on every field."""
from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from experiments import events, services
from experiments.models import Trial
from tests.factories import SearchFactory, StageFactory, TrialFactory, design_document

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch) -> list[tuple[int, str, dict]]:
    sent: list[tuple[int, str, dict]] = []
    monkeypatch.setattr(events, "publish", lambda search_id, event_type, payload: sent.append(
        (search_id, event_type, payload)))
    return sent


def api_trial_row(user, trial: Trial) -> dict:
    client = APIClient()
    client.force_authenticate(user)
    rows = client.get(reverse("api:search-trials", args=[trial.search_id])).json()["results"]
    return next(row for row in rows if row["id"] == trial.pk)


def test_the_trial_event_is_the_rest_trial_row(user, published, django_capture_on_commit_callbacks):
    # Given a running trial of the user's search whose error is longer than a row shows
    stage = StageFactory(search=SearchFactory(owner=user))
    TrialFactory(stage=stage)  # still queued: the stage stays open
    trial = TrialFactory(stage=stage, status=Trial.Status.RUNNING, attempt=1,
                         design=design_document(layers=[{"adapter": 4}, {"lora": 2}, {}, {"prefix": 1}]))
    # When the worker's attempt fails
    with django_capture_on_commit_callbacks(execute=True):
        services.trial_finish(trial_id=trial.pk, attempt=1, status=Trial.Status.FAILED, error="x" * 1000)
    # Then the WebSocket's trial.status payload is exactly the REST API's row for that trial
    trial_events = [payload["trial"] for _, event_type, payload in published if event_type == events.TRIAL_STATUS]
    assert len(trial_events) == 1
    assert trial_events[0] == api_trial_row(user, trial)
    assert len(trial_events[0]["error"]) == 300  # one length, defined once, for both


def test_the_search_event_is_the_rest_search_row(user, published, django_capture_on_commit_callbacks):
    stage = StageFactory(search=SearchFactory(owner=user))
    TrialFactory(stage=stage)  # still queued: the stage stays open
    trial = TrialFactory(stage=stage, status=Trial.Status.QUEUED, attempt=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.trial_cancel(trial=trial)
    search_events = [payload["search"] for _, event_type, payload in published if event_type == events.SEARCH_STATUS]
    client = APIClient()
    client.force_authenticate(user)
    row = client.get(reverse("api:search-list")).json()["results"][0]
    assert search_events and set(search_events[-1]) == set(row)
    # elapsed_s is measured when each answer is built; every other field is the same value
    assert {k: v for k, v in search_events[-1].items() if k != "elapsed_s"} == \
        {k: v for k, v in row.items() if k != "elapsed_s"}
    assert search_events[-1]["trials_done"] == 1


def test_the_stage_event_is_the_stage_reference_the_api_shows(user, published, django_capture_on_commit_callbacks):
    search = SearchFactory(owner=user)
    stage = StageFactory(search=search)
    with django_capture_on_commit_callbacks(execute=True):
        events.stage_changed(stage)
    assert published == [(search.pk, events.STAGE_STATUS, {"stage": {"id": stage.pk, "key": stage.key,
                                                                        "status": stage.status}})]


def test_a_metric_batch_is_stored_once_and_published(published):
    trial = TrialFactory(status=Trial.Status.RUNNING, attempt=1)
    points = [(1, "sst2:loss", 0.7), (2, "sst2:loss", 0.6)]
    for _ in range(2):  # a replayed batch
        services.metric_points_record(trial_id=trial.pk, attempt=1, search_id=trial.search_id,
                                      stage_id=trial.stage_id, points=points)
    assert trial.metric_points.count() == 2
    assert published[0] == (trial.search_id, events.TRIAL_METRIC, {
        "trial": trial.pk, "attempt": 1, "stage": trial.stage_id, "points": [[1, "sst2:loss", 0.7],
                                                                             [2, "sst2:loss", 0.6]]})
