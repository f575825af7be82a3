"""The running system: a real Redis, real Celery worker processes, the real web server (gunicorn, as `make run`) and real
WebSocket connections, on a tiny model and tiny data."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from django.test import Client

from experiments import services
from experiments.models import MetricPoint, Search, Trial
from tests.conftest import TINY_OVERRIDES

pytestmark = [pytest.mark.system, pytest.mark.slow]

# Each stage trains min_successes (2) designs per open choice whatever designs_per_stage says (issue
# 10: S4 stages over 15 strategy sets train 30), so the preset's figure stays small; the final stage
# skips learning-rate tuning here (the in-process search-flow test covers it) to keep this test short.
SYSTEM_OVERRIDES = {**TINY_OVERRIDES, "designs_per_stage": 2, "final_seeds": 1, "final_lr_grid": 1}


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition", logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = "\n".join(worker.log()[-4000:] for worker in logs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_quick_search_runs_from_first_stage_to_final_on_a_real_worker(user, tiny_backbone, bundled_tasks,
                                                                       worker_factory):
    worker = worker_factory()
    search = services.search_create(owner=user, name="system", tasks=[bundled_tasks["sst2"]], backbone=tiny_backbone,
                                    budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                    overrides=SYSTEM_OVERRIDES, auto_approve=True, seed=5)
    done = wait_for(lambda: Search.objects.filter(pk=search.pk, status__in=["completed", "failed"]).first(),
                    timeout=900, what="the search to complete", logs=[worker])
    assert done.status == Search.Status.COMPLETED
    keys = list(done.stages.order_by("order").values_list("key", flat=True))
    tuned = done.stages.get(key="S3").decision["choice"].split("+")
    assert keys == ["S1", "S2", "S3", *[f"S4.{g}" for g in tuned], "final"]
    assert not Trial.objects.filter(search=search).exclude(status=Trial.Status.SUCCEEDED).exists()
    assert set(Trial.objects.filter(search=search).values_list("worker", flat=True)) != {""}
    assert MetricPoint.objects.filter(trial__search=search, name="sst2:loss").exists()


def _collect_events(url: str, cookie: str | None, origin: str, seconds: float) -> tuple[list[dict], int | None]:
    """Connect, read events for `seconds`; returns (events, close code if the server closed)."""

    async def run():
        headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
        received: list[dict] = []
        try:
            async with websockets.connect(url, additional_headers=headers, origin=origin) as ws:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    try:
                        message = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                    received.append(json.loads(message))
                    if any(e["type"] == "trial.metric" for e in received) and \
                            any(e["type"] == "trial.status" for e in received):
                        break
        except websockets.exceptions.ConnectionClosed as closed:
            return received, closed.rcvd.code if closed.rcvd else None
        except websockets.exceptions.InvalidStatus as refused:  # refused during the handshake
            return received, refused.response.status_code
        return received, None

    # A fresh thread has no event loop, whatever an earlier test (Playwright) left in this one.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_trial_metrics_reach_the_owners_websocket_and_no_one_elses(user, other_user, tiny_backbone, bundled_tasks,
                                                                     worker_factory, live_web, tmp_path):
    search = services.search_create(owner=user, name="live", tasks=[bundled_tasks["sst2"]], backbone=tiny_backbone,
                                    budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                    overrides={**SYSTEM_OVERRIDES, "max_train_examples": 256}, seed=2)
    ws_url = live_web.replace("http://", "ws://") + f"/ws/searches/{search.pk}/"
    # Anonymous and other users are refused with the policy-violation code before any event
    events, code = _collect_events(ws_url, None, live_web, 3)
    assert events == [] and code in (1008, 403)
    events, code = _collect_events(ws_url, session_cookie(other_user), live_web, 3)
    assert events == [] and code in (1008, 403)
    # The owner, connected before the worker starts, receives live metric points and status changes
    worker = worker_factory()
    events, code = _collect_events(ws_url, session_cookie(user), live_web, 240)
    assert code is None, (tmp_path / "web.log").read_text()[-3000:]
    metrics = [e for e in events if e["type"] == "trial.metric"]
    assert metrics, f"no trial.metric among {[e['type'] for e in events]}"
    point = metrics[0]["points"][0]
    step, name, value = point
    assert name.startswith("sst2:") and isinstance(value, float)
    trial_id = metrics[0]["trial"]
    assert MetricPoint.objects.filter(trial_id=trial_id, step=step, name=name).exists()
    services.search_cancel(search=Search.objects.get(pk=search.pk))


def test_killed_worker_mid_trial_is_completed_by_a_restarted_worker_without_duplicate_points(
        user, tiny_backbone, bundled_tasks, worker_factory):
    overrides = {**SYSTEM_OVERRIDES, "designs_per_stage": 2, "max_train_examples": 1500, "epochs": 2}
    search = services.search_create(owner=user, name="crash", tasks=[bundled_tasks["sst2"]], backbone=tiny_backbone,
                                    budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                    overrides=overrides, seed=4)
    worker = worker_factory()
    # Given a trial that is running and has written metric points
    trial = wait_for(lambda: Trial.objects.filter(search=search, status=Trial.Status.RUNNING,
                                                  metric_points__isnull=False).first(),
                     timeout=300, interval=0.2, what="a running trial with metrics", logs=[worker])
    first_attempt = trial.attempt
    # When its worker process is killed outright
    worker.kill()
    points_before = MetricPoint.objects.filter(trial=trial, attempt=first_attempt).count()
    assert points_before > 0
    # (The stage holds min_successes designs per open choice: the trials still queued are cancelled so
    # that the restarted worker's next trial is the re-queued one, not a long queue ahead of it.)
    for other in Trial.objects.filter(search=search, status=Trial.Status.QUEUED):
        services.trial_cancel(trial=other)
    # Then a restarted worker (its sweep notices the silent heartbeat) completes the trial
    restarted = worker_factory()
    finished = wait_for(lambda: Trial.objects.filter(pk=trial.pk, status=Trial.Status.SUCCEEDED).first(),
                        timeout=600, what="the trial to complete after the crash", logs=[restarted])
    assert finished.attempt == first_attempt + 1
    assert any("stopped answering" in note for note in finished.notes)
    # And its metric series has every (step, name) exactly once in the attempt that counts
    rows = list(MetricPoint.objects.filter(trial=trial, attempt=finished.attempt).values_list("step", "name"))
    assert rows and len(rows) == len(set(rows))
    # The killed attempt's points stay apart (attempt number) and the API serves only the latest
    assert MetricPoint.objects.filter(trial=trial, attempt=first_attempt).count() == points_before
    services.search_cancel(search=Search.objects.get(pk=search.pk))


def test_successive_halving_runs_its_rungs_on_a_real_worker(user, tiny_backbone, bundled_tasks, worker_factory):
    # Issue 11: a stage with halving_eta trains every design to rung 1 on the worker, then only each
    # choice's best continue, from their checkpoints, under the same attempt
    worker = worker_factory()
    search = services.search_create(owner=user, name="halving", tasks=[bundled_tasks["sst2"]], backbone=tiny_backbone,
                                    budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                    overrides={**SYSTEM_OVERRIDES, "epochs": 2, "halving_eta": 2,
                                               "halving_min_steps": 1},
                                    auto_approve=False, seed=5)
    stage = wait_for(lambda: search.stages.filter(order=0, status="awaiting").first(), timeout=600,
                     what="the first stage to wait for approval", logs=[worker])
    trials = list(stage.trials.all())
    survivors = [t for t in trials if not t.halted]
    assert stage.rung == 1 and 0 < len(survivors) < len(trials)
    assert all(t.rung == 1 and len(t.rung_scores) == 2 and t.attempt == 1 for t in survivors)
    assert all(t.rung == 0 and len(t.rung_scores) == 1 for t in trials if t.halted)
    assert {t.worker for t in survivors} != {""}
    assert stage.summary["halving"]["saved_trial_epochs"] == len(trials) - len(survivors)
