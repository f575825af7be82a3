"""Redis flushed mid-search (issue 9): the search page's curve still ends up with every point.

No worker runs here: the test records metric points through the service a worker uses (stored,
then published), flushes Redis while the page follows the search, and watches the page recover.
The search page has no safety poll: only the server's {"type": "sync"}, sent when it re-joins the
group Redis forgot, can bring back the points published while nobody was in the group.
"""
from __future__ import annotations

import pytest
import redis

from tests.browser.conftest import in_thread, open_following

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.timeout(300)]

GROUP_REFRESH_SECONDS = 1


@pytest.fixture
def web_rejoining_quickly(monkeypatch, request):
    """live_web, started with a 1 s group refresh (its environment is copied from this process)."""
    monkeypatch.setenv("PEFS_WS_GROUP_REFRESH_SECONDS", str(GROUP_REFRESH_SECONDS))
    return request.getfixturevalue("live_web")


def record_losses(*, search_id: int, stage_id: int, trial_id: int, steps: range) -> None:
    from django.db import connection

    from experiments.services import metric_points_record

    def record():
        metric_points_record(trial_id=trial_id, attempt=1, search_id=search_id, stage_id=stage_id,
                             points=[(step, "sst2:loss", 1.0 / step) for step in steps])
        connection.close()

    in_thread(record)


def wait_for_drawn_points(page, count: int) -> None:
    page.wait_for_function(f"() => Number(document.getElementById('chart-loss').dataset.points) === {count}")


def test_search_page_curve_is_complete_after_redis_is_flushed(web_rejoining_quickly, running_search, new_page,
                                                              redis_url):
    search_id, stage_id, trial_id = running_search
    trial = {"search_id": search_id, "stage_id": stage_id, "trial_id": trial_id}
    page = open_following(new_page, web_rejoining_quickly, f"/searches/{search_id}/", "#live-status")

    # Given a curve drawn from live events
    record_losses(**trial, steps=range(1, 4))
    wait_for_drawn_points(page, 3)

    # When Redis forgets the search's group and points are published while nobody is in it
    redis.Redis.from_url(redis_url).flushdb()
    record_losses(**trial, steps=range(4, 7))
    page.wait_for_function("() => window.PEFS.live.resyncs >= 1")

    # and more points come after the server has re-joined the group
    record_losses(**trial, steps=range(7, 10))

    # Then the curve has every point, the lost ones read from the API, with the socket never dropped
    wait_for_drawn_points(page, 9)
    steps = page.evaluate(
        "(id) => Array.from(window.PEFS.live.trials.get(id).series['sst2:loss'].keys()).sort((a, b) => a - b)",
        trial_id)
    assert steps == list(range(1, 10))
    assert page.evaluate("window.PEFS.live.reconnects") == 0
    assert not page.errors, page.errors
