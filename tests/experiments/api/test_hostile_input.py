"""Hostile numbers through the API: each is a fast 400 that names the field, never a 500, never
a request that queues unbounded work (issue 9: designs_per_stage = 10**30 once took Daphne to
9.5 GB while it held the SQLite write lock)."""
from __future__ import annotations

import json
import time

import pytest
from django.urls import reverse

from experiments.models import Search, Trial
from tests.factories import BackboneFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory

pytestmark = pytest.mark.django_db

HUGE = 10**30


@pytest.fixture
def search_body():
    task, backbone = TaskFactory(name="sst2"), BackboneFactory()
    return {"name": "x", "tasks": [str(task.pk)], "backbone": str(backbone.pk)}


@pytest.mark.parametrize("overrides,field", [
    ({"designs_per_stage": HUGE}, "designs_per_stage"),
    ({"designs_per_stage": 3000}, "designs_per_stage"),
    ({"epochs": 10**23}, "epochs"),
    ({"bootstrap_resamples": HUGE}, "bootstrap_resamples"),
    ({"batch_size": 2**63}, "batch_size"),
    ({"max_train_examples": HUGE}, "max_train_examples"),
])
def test_an_oversized_setting_is_a_fast_400_naming_the_field(api, search_body, overrides, field):
    started = time.monotonic()
    response = api.post(reverse("api:search-list"), {**search_body, "overrides": overrides}, format="json")
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.content[:300]
    assert field in response.content.decode()
    assert Search.objects.count() == 0 and Trial.objects.count() == 0
    assert elapsed < 10  # generous: the refusal itself takes milliseconds; the bug took minutes


def test_an_infinite_learning_rate_is_a_400(api, search_body):
    body = json.dumps({**search_body, "overrides": {"learning_rate": 1.0}}).replace("1.0", "1e309")
    response = api.post(reverse("api:search-list"), body, content_type="application/json")
    assert response.status_code == 400 and "learning_rate" in response.content.decode()


def test_a_task_reference_of_100000_digits_is_a_400(api, search_body):
    response = api.post(reverse("api:search-list"), {**search_body, "tasks": ["9" * 100_000]}, format="json")
    assert response.status_code == 400 and "tasks" in response.json()


@pytest.mark.parametrize("seed", [2**63, 2**64 + 5, -1, 2**31])
def test_an_out_of_range_seed_is_a_400(api, search_body, seed):
    response = api.post(reverse("api:search-list"), {**search_body, "seed": seed}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert "seed" in response.json()
    assert Search.objects.count() == 0


def test_a_task_id_beyond_64_bits_is_an_unknown_task(api, search_body):
    response = api.post(reverse("api:search-list"), {**search_body, "tasks": [str(2**70)]}, format="json")
    assert response.status_code == 400
    assert "Unknown task" in response.json()["tasks"][0]


@pytest.mark.parametrize("name", ["api:search-detail", "api:stage-detail", "api:trial-detail", "api:task-detail",
                                  "api:backbone-detail"])
def test_object_ids_beyond_64_bits_are_404(api, name):
    response = api.get(reverse(name, args=[1]).replace("/1/", f"/{2**70}/"))
    assert response.status_code == 404


@pytest.mark.parametrize("query", [
    {"choice.grouping__regex": "("}, {"choice.grouping__contains": "x"}, {"choice.grouping__isnull": "1"},
    {"score__gt": "1e309"}, {"status": "nonsense"}, {"ordering": "owner__password"}, {"page": "99999999999999999999999"},
    {"choice.grouping": "x" * 10_000}, {"stage": str(2**70)}, {"unknown": "1"},
])
def test_trial_list_query_accepts_only_documented_filters(api, user, query):
    search = SearchFactory(owner=user)
    TrialFactory(stage=StageFactory(search=search, order=0, key="S0"))
    response = api.get(reverse("api:search-trials", args=[search.pk]), query)
    assert response.status_code in (400, 404), (query, response.status_code, response.content[:300])
    assert response.status_code != 500


@pytest.mark.parametrize("query", [{"after": str(2**70)}, {"trial": str(2**64)}, {"bogus": "1"}])
def test_metrics_query_is_bounded(api, user, query):
    search = SearchFactory(owner=user)
    response = api.get(reverse("api:search-metrics", args=[search.pk]), query)
    assert response.status_code == 400, response.content[:300]


def test_search_list_refuses_an_unknown_status_and_parameter(api):
    assert api.get(reverse("api:search-list"), {"status": "nonsense"}).status_code == 400
    assert api.get(reverse("api:search-list"), {"statuss": "running"}).status_code == 400
    assert api.get(reverse("api:search-list"), {"status": "running"}).status_code == 200
