"""The score-vs-parameters chart's log axis (issue 12): few enough tick labels that they never
overlap, one per decade when the parameter counts span one or more, 1-2-5 within a decade."""
from __future__ import annotations

import pytest

from tests.browser.conftest import log_in
from tests.experiments.test_pages_evidence import sst2
from tests.factories import SearchFactory, StageFactory, TrialFactory

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.timeout(300)]

# Horizontal extents of the x-axis tick labels, left to right.
TICK_BOXES = """() => Array.from(document.querySelectorAll('#chart-pareto .xtick text'))
  .map(t => { const b = t.getBoundingClientRect(); return [b.left, b.right, t.textContent]; })
  .filter(b => b[1] > b[0]).sort((a, b) => a[0] - b[0])"""


@pytest.fixture
def searches(transactional_db, user):
    """Two searches of finished trials: counts over four decades, and within one decade."""
    made = []
    for counts in ([700, 2_000, 9_000, 40_000, 300_000, 2_500_000, 6_000_000], [1_100, 1_900, 3_300, 5_200, 8_800]):
        search = SearchFactory(owner=user, tasks=[sst2()], name=f"span {counts[0]}-{counts[-1]}")
        stage = StageFactory(search=search, order=0, key="S1", status="completed")
        for index, count in enumerate(counts):
            TrialFactory(stage=stage, index=index, status="succeeded", score=50.0 + index, trainable_params=count)
        made.append(search.pk)
    return made


def test_pareto_tick_labels_never_overlap(live_web, searches, new_page):
    page = new_page(live_web)
    page.set_viewport_size({"width": 760, "height": 860})  # a narrow window: the chart is at its smallest
    log_in(page, "alice", "alice-password-1")
    labels = []
    for search_id in searches:
        page.goto(f"/searches/{search_id}/")
        page.wait_for_selector("#chart-pareto .xtick text")
        boxes = page.evaluate(TICK_BOXES)
        assert len(boxes) >= 2, boxes
        labels.append([text for _, _, text in boxes])
        for (_, right, text), (left, _, following) in zip(boxes, boxes[1:]):
            assert right <= left, f"tick {text!r} overlaps {following!r}: {boxes}"
    # one label per decade over four decades; 1-2-5 within one (not 1k 2k 3k ... 9k)
    assert labels == [["1k", "10k", "100k", "1M", "10M"], ["1k", "2k", "5k", "10k"]]
    assert not page.errors, page.errors
