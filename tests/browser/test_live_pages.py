"""The trial and stage pages follow the search's WebSocket events instead of polling the API.

No worker runs here: the test publishes the events a worker and the services would publish, and
watches the pages react to them with no request to the API in between.
"""
from __future__ import annotations

import pytest

from experiments.models import Stage, Trial
from tests.browser.conftest import in_thread, open_following

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.timeout(300)]


def publish(search_id: int, event_type: str, payload: dict) -> None:
    from experiments import events

    in_thread(events.publish, search_id, event_type, payload)


def set_status(model, pk: int, status: str) -> None:
    from django.db import connection

    def update():
        model.objects.filter(pk=pk).update(status=status)
        connection.close()

    in_thread(update)


def api_requests(page) -> list[str]:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url) if "/api/" in request.url else None)
    return requests


def test_trial_page_draws_metric_events_and_reloads_on_status_event(live_web, running_search, new_page):
    search_id, stage_id, trial_id = running_search
    page = open_following(new_page, live_web, f"/searches/{search_id}/trials/{trial_id}/", "#trial-live")
    requests = api_requests(page)

    # When the worker publishes a batch of points, the curves gain them without asking the API
    points = [[step, "sst2:loss", 1.0 / step] for step in range(1, 6)]
    publish(search_id, "trial.metric", {"trial": trial_id, "attempt": 1, "stage": stage_id, "points": points})
    page.wait_for_function("() => Number(document.getElementById('chart-loss').dataset.points) === 5")
    assert requests == []

    # When the trial finishes, the page reloads and shows the final state
    set_status(Trial, trial_id, "succeeded")
    page.evaluate("window.notReloaded = true")
    publish(search_id, "trial.status", {"trial": {"id": trial_id, "stage": stage_id, "status": "succeeded"}})
    page.wait_for_function("() => window.notReloaded === undefined")
    page.wait_for_selector("#trial-live:has-text('final')")
    assert not page.errors, page.errors


def test_stage_page_reloads_on_its_stage_event_only(live_web, running_search, new_page):
    search_id, stage_id, _ = running_search
    page = open_following(new_page, live_web, f"/searches/{search_id}/stages/{stage_id}/", "#stage-live")
    page.evaluate("window.notReloaded = true")

    # Another stage's event changes nothing here
    publish(search_id, "stage.status", {"stage": {"id": stage_id + 1000, "key": "S2", "status": "awaiting"}})
    page.wait_for_function("() => window.PEFS.live.events >= 1")
    assert page.evaluate("window.notReloaded") is True

    # Its own stage's event reloads the page, which then shows the new status and stops following
    set_status(Stage, stage_id, "awaiting")
    publish(search_id, "stage.status", {"stage": {"id": stage_id, "key": "S1", "status": "awaiting"}})
    page.wait_for_function("() => window.notReloaded === undefined")
    page.wait_for_selector(".badge.s-awaiting")
    assert page.query_selector("#stage-live") is None
    assert not page.errors, page.errors

