"""What the fair instrument shows in a real browser: a trial that finishes while the search page is
open loses its Cancel button and shows both parameter counts and its duration the server's way;
the stage wizard and the final report draw their evidence without a script error (screenshots in
the test's screenshot folder)."""
from __future__ import annotations

import pytest

from tests.browser.conftest import log_in
from tests.browser.test_live_pages import publish
from tests.experiments.test_pages_evidence import completed_final, sst2, wizard_stage
from tests.factories import SearchFactory, StageFactory, TrialFactory

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.timeout(300)]


@pytest.fixture
def running_trial(transactional_db, user):
    """A search with one running trial (made before the browser starts: no ORM call after)."""
    search = SearchFactory(owner=user, tasks=[sst2()], name="live rows")
    stage = StageFactory(search=search, order=0, key="S1", status="running")
    return search, stage, TrialFactory(stage=stage, index=0, status="running", trainable_params=112_827)


@pytest.fixture
def evidence(transactional_db, user):
    """A stage waiting with an under-sampled choice and a final stage that tuned its rates."""
    from experiments.space import TuningResult, choose_learning_rates

    stage = wizard_stage(user, {"increasing": [60, 62], "uniform": [70, 71], "spindle": [95, None],
                                "bottleneck": [50, 52]})
    tuning = choose_learning_rates([TuningResult("selected", "sst2", 0.001, 71.0),
                                    TuningResult("selected", "sst2", 0.003, 74.0),
                                    TuningResult("lora", "sst2", 0.001, 72.5),
                                    TuningResult("lora", "sst2", 0.003, 70.0)],
                                   {"selected": [0.001, 0.003], "lora": [0.001, 0.003]})
    return stage, completed_final(user, {"selected": 76.0, "lora": 73.0}, tuning=tuning)


def test_a_trial_finishing_on_screen_loses_its_cancel_button(live_web, running_trial, new_page):
    search, stage, trial = running_trial
    page = new_page(live_web)
    log_in(page, "alice", "alice-password-1")
    page.goto(f"/searches/{search.pk}/")
    page.wait_for_selector("#live-status.connected")
    row = f'tr[data-trial="{trial.pk}"]'
    assert page.is_visible(f"{row} .row-cancel") and not page.is_visible(f"{row} .row-retry")

    publish(search.pk, "trial.status", {"trial": {
        "id": trial.pk, "stage": stage.pk, "status": "succeeded", "score": 80.0, "duration_s": 146,
        "trainable_params": 112_827, "optimised_params": 261_437, "cancel_requested": False}})
    page.wait_for_selector(f'{row}[data-status="succeeded"]')
    assert not page.is_visible(f"{row} .row-cancel") and not page.is_visible(f"{row} .row-retry")
    assert page.inner_text(f'{row} [data-col="duration"]') == "2m 26s"
    assert page.inner_text(f'{row} [data-col="params"]') == "stored 112,827 · trains 261,437"

    publish(search.pk, "trial.status", {"trial": {"id": trial.pk, "stage": stage.pk, "status": "failed"}})
    page.wait_for_selector(f'{row}[data-status="failed"]')
    assert page.is_visible(f"{row} .row-retry") and not page.is_visible(f"{row} .row-cancel")
    assert not page.errors, page.errors


def test_the_wizard_and_the_report_draw_their_evidence(live_web, evidence, new_page, screenshot_dir):
    stage, final = evidence
    page = new_page(live_web)
    log_in(page, "alice", "alice-password-1")
    page.goto(f"/searches/{stage.search.pk}/stages/{stage.pk}/")
    page.wait_for_selector("#chart-edf .main-svg")
    assert "uniform = decreasing" in page.inner_text("#leader")
    assert page.is_visible('tr[data-choice="spindle"] [data-tag="short"]')
    page.screenshot(path=str(screenshot_dir / "evidence-stage-wizard.png"), full_page=True)

    page.goto(f"/searches/{final.search.pk}/report/")
    page.wait_for_selector("#chart-bars .main-svg")
    assert page.inner_text('#report-table tr.highlight [data-col="rate"] strong') == "0.003"
    page.screenshot(path=str(screenshot_dir / "evidence-final-report.png"), full_page=True)
    assert not page.errors, page.errors
