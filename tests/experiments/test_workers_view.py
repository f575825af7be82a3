"""The workers view (page and API) and the service behind it: a worker's row, its state (idle,
running, stopped, lost after the stale interval) and who may see which running trial."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from experiments import worker_states
from experiments.models import Trial, Worker
from experiments.services.workers import WORKER_RETENTION, worker_beat, worker_stop, workers_prune
from tests.factories import SearchFactory, StageFactory, TrialFactory

pytestmark = pytest.mark.django_db

GPU_WORKER = "gpu-host:worker@gpu-host"
CPU_WORKER = "cpu-host:worker@cpu-host"


def beat(name: str = CPU_WORKER, **fields) -> Worker:
    arguments = {"name": name, "hostname": name.split(":")[0], "device": "cpu", "concurrency": 2, "pid": 4242,
                 "started_at": timezone.now(), **fields}
    return worker_beat(**arguments)


def running_trial(owner, *, worker: str, search_name: str = "mine") -> Trial:
    stage = StageFactory(search=SearchFactory(owner=owner, name=search_name), key="S1")
    return TrialFactory(stage=stage, status=Trial.Status.RUNNING, worker=worker, started_at=timezone.now())


# --- the service ---------------------------------------------------------------------------

def test_a_beat_inserts_the_row_then_refreshes_it_in_place():
    first = beat(concurrency=1)
    later = beat(concurrency=3, device="cuda", device_name="NVIDIA H200", device_memory_bytes=141 * 2**30)

    assert Worker.objects.count() == 1
    assert later.pk == first.pk and later.last_seen >= first.last_seen
    row = Worker.objects.get()
    assert (row.device, row.device_name, row.device_memory_bytes, row.concurrency) == \
        ("cuda", "NVIDIA H200", 141 * 2**30, 3)


def test_a_worker_is_idle_while_it_beats_and_lost_after_the_stale_interval(user, settings):
    settings.PEFS_STALE_SECONDS = 60
    beat()
    now = timezone.now()

    assert [w.state for w in worker_states.worker_list(user=user, now=now)] == ["idle"]
    assert [w.state for w in worker_states.worker_list(user=user, now=now + timedelta(seconds=59))] == ["idle"]
    assert [w.state for w in worker_states.worker_list(user=user, now=now + timedelta(seconds=61))] == ["lost"]


def test_a_clean_shutdown_says_stopped_and_a_new_beat_revives_the_row(user):
    beat()
    worker_stop(name=CPU_WORKER)
    assert [w.state for w in worker_states.worker_list(user=user)] == ["stopped"]
    beat()
    assert [w.state for w in worker_states.worker_list(user=user)] == ["idle"]


def test_workers_not_seen_for_the_retention_period_are_pruned():
    beat(CPU_WORKER)
    beat(GPU_WORKER)
    Worker.objects.filter(name=GPU_WORKER).update(last_seen=timezone.now() - WORKER_RETENTION - timedelta(minutes=1))

    assert workers_prune() == 1
    assert list(Worker.objects.values_list("name", flat=True)) == [CPU_WORKER]


def test_running_trials_are_named_for_their_owner_and_staff_only(user, other_user, django_user_model):
    beat(CPU_WORKER)
    mine = running_trial(user, worker=CPU_WORKER, search_name="alice's search")
    running_trial(other_user, worker=CPU_WORKER, search_name="mallory's secret")

    [seen] = worker_states.worker_list(user=user)
    assert seen.state == "running" and seen.busy_elsewhere == 1
    visible = [t for t in seen.trials if t.visible]
    assert [(t.trial_id, t.search_name) for t in visible] == [(mine.pk, "alice's search")]
    assert all(t.search_name == "" and t.trial_id is None for t in seen.trials if not t.visible)

    staff = django_user_model.objects.create_user(username="root", password="root-password-1", is_staff=True)
    [as_staff] = worker_states.worker_list(user=staff)
    assert sorted(t.search_name for t in as_staff.trials) == ["alice's search", "mallory's secret"]


# --- the page and the API ------------------------------------------------------------------

def test_the_page_links_your_trial_and_hides_another_users(user, other_user):
    beat(CPU_WORKER)
    beat(GPU_WORKER, device="cuda", device_name="NVIDIA H200", device_memory_bytes=141 * 10**9)
    mine = running_trial(user, worker=CPU_WORKER, search_name="alice's search")
    running_trial(other_user, worker=GPU_WORKER, search_name="mallory's secret")
    client = Client()
    client.force_login(user)

    html = client.get(reverse("worker-list")).content.decode()

    assert reverse("trial-detail", args=[mine.search_id, mine.pk]) in html
    assert "alice&#x27;s search" in html
    assert "mallory" not in html
    assert "busy (another user's search)" in html
    assert "NVIDIA H200" in html and "CPU" in html
    assert f'href="{reverse("worker-list")}"' in html  # the main navigation links the page


def test_the_page_and_the_api_need_a_login():
    assert Client().get(reverse("worker-list")).status_code == 302
    assert APIClient().get(reverse("api:worker-list")).status_code == 401


def test_the_api_lists_workers_with_state_and_unnamed_foreign_trials(user, other_user, api):
    beat(CPU_WORKER)
    mine = running_trial(user, worker=CPU_WORKER)
    running_trial(other_user, worker=CPU_WORKER, search_name="mallory's secret")

    response = api.get(reverse("api:worker-list"))

    assert response.status_code == 200
    [worker] = response.json()
    assert (worker["name"], worker["device"], worker["concurrency"], worker["state"]) == (CPU_WORKER, "cpu", 2, "running")
    assert worker["last_seen"]
    trials = sorted(worker["trials"], key=lambda t: not t["visible"])
    assert trials[0]["trial"] == mine.pk and trials[0]["url"] == reverse("api:trial-detail", args=[mine.pk])
    assert trials[1] == {"visible": False, "trial": None, "stage": "", "index": None, "search": None,
                         "search_name": "", "label": "busy (another user's search)", "url": None}
    assert "mallory" not in response.content.decode()


def test_the_api_refuses_an_unknown_query_parameter(api):
    response = api.get(reverse("api:worker-list"), {"state": "lost"})
    assert response.status_code == 400 and "state" in response.content.decode()
