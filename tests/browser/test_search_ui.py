"""End to end in a real browser: a person configures a search, watches it train live, approves a
stage as recommended, overrides the next with a reason, and downloads the winning design."""
from __future__ import annotations

import json
import re

import pytest

from tests.browser.conftest import log_in
from tests.conftest import TINY_OVERRIDES

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(900)]

BUDGET = 6000
STAGE_WAIT_MS = 240_000


def fill_new_search(page, *, task_pk: int, backbone_pk: int) -> None:
    page.goto("/searches/new/")
    page.fill("#id_name", "browser search")
    page.check(f'input[name="tasks"][value="{task_pk}"]')
    page.select_option("#id_backbone", str(backbone_pk))
    page.select_option("#id_preset", "quick")  # fills every field first; each stays editable
    page.check('input[name="budget_kind"][value="absolute"]')
    page.fill("#id_budget_value", str(BUDGET))
    # The live preview answers with the parameter count the budget stands for
    page.wait_for_selector("#budget-preview-value:has-text('6,000')")
    page.fill("#id_groups", "2")
    page.click("details.advanced summary")
    for name, value in TINY_OVERRIDES.items():
        page.fill(f"#id_{name}", str(value))
    page.fill("#id_seed", "1")


def next_review(page, search_id: int) -> str | None:
    """On the search page, wait until a stage waits for approval (open it, return its key) or the
    search completes (return None)."""
    page.wait_for_selector("#waiting-callout, #complete-callout", timeout=STAGE_WAIT_MS)
    if page.query_selector("#complete-callout"):
        return None
    key = page.get_attribute("#waiting-callout", "data-stage")
    page.click("#waiting-callout a")
    page.wait_for_url(re.compile(rf"/searches/{search_id}/stages/\d+/$"))
    page.wait_for_selector("#chart-edf .main-svg")
    return key


def submit_decision(page) -> None:
    page.click("#approve-button")
    page.wait_for_selector(".messages li.success")


def watch_live_curves(page) -> None:
    """The next stage's trials stream over the WebSocket: the loss chart gains points without a
    reload; a dropped connection reconnects by itself and backfills from the metrics API."""
    before = int(page.get_attribute("#chart-loss", "data-points") or 0)
    page.wait_for_selector("#live-status.connected")
    page.wait_for_function(
        f"() => window.PEFS.live.events > 0 && Number(document.getElementById('chart-loss').dataset.points) > {before}",
        timeout=STAGE_WAIT_MS)
    page.evaluate("window.PEFS.live.dropConnection()")
    page.wait_for_function("() => window.PEFS.live.backfills >= 1")
    page.wait_for_selector("#live-status.connected")


def test_configure_watch_approve_override_and_download(
        live_web, worker_factory, user, other_user, tiny_backbone, bundled_tasks, screenshot_dir, new_page):
    worker_factory()
    page = new_page(live_web)
    log_in(page, "alice", "alice-password-1")

    # Given a new search configured in the form (a missing name is reported next to its field)
    fill_new_search(page, task_pk=bundled_tasks["sst2"].pk, backbone_pk=tiny_backbone.pk)
    page.fill("#id_name", "")
    page.click("button:has-text('Start search')")
    assert "required" in page.inner_text("#field-name")
    fill_new_search(page, task_pk=bundled_tasks["sst2"].pk, backbone_pk=tiny_backbone.pk)
    page.click("button:has-text('Start search')")
    page.wait_for_url(re.compile(r"/searches/\d+/$"))
    search_id = int(re.search(r"/searches/(\d+)/", page.url).group(1))
    page.wait_for_selector("#live-status.connected")

    # When each stage waits, the person decides: the first stage with a recommendation is approved
    # as recommended, the next one is overridden with a reason, the others follow the
    # recommendation (or, where too few trials succeeded to recommend, take a choice with a reason).
    decisions: list[tuple[str, str, str]] = []  # (stage, how, choice)
    watched = False
    while (key := next_review(page, search_id)) is not None:
        recommended = page.get_attribute("#approve-button", "data-recommended")
        options = page.eval_on_selector_all('input[name="choice"]', "els => els.map(e => e.value)")
        hows = {how for _, how, _ in decisions}
        if recommended and "recommended" not in hows:
            assert page.is_checked(f'input[name="choice"][value="{recommended}"]')
            page.screenshot(path=screenshot_dir / "stage-wizard.png", full_page=True)
            submit_decision(page)
            decisions.append((key, "recommended", recommended))
        elif recommended and "recommended" in hows and "override" not in hows:
            other = next(option for option in options if option != recommended)
            page.check(f'input[name="choice"][value="{other}"]')
            assert page.inner_text("#approve-button").startswith("Override")
            page.click("#approve-button")  # without a reason: refused, next to the field
            assert "Say why you override" in page.inner_text("#reason-field")
            page.check(f'input[name="choice"][value="{other}"]')
            page.fill("#id_reason", "smaller modules first, as in our earlier runs")
            page.click("#approve-button")
            page.wait_for_selector(".messages li.success:has-text('overridden')")
            decisions.append((key, "override", other))
        elif recommended:
            submit_decision(page)
            decisions.append((key, "recommended", recommended))
        else:
            page.check(f'input[name="choice"][value="{options[0]}"]')
            page.fill("#id_reason", "no recommendation: too few successful trials per choice")
            submit_decision(page)
            decisions.append((key, "no recommendation", options[0]))
        if not watched:  # the next stage starts at once: watch it train
            watch_live_curves(page)
            watched = True
    hows = [how for _, how, _ in decisions]
    assert "recommended" in hows and "override" in hows
    assert hows.index("override") > hows.index("recommended")

    # Then the search page shows every stage done and the finished trials' charts
    page.wait_for_selector("#chart-pareto .main-svg")
    page.screenshot(path=screenshot_dir / "search-page.png", full_page=True)

    # And the final report compares the selected design with the baselines and full fine-tuning
    page.click("#complete-callout a")
    page.wait_for_selector("#report-table")
    table = page.inner_text("#report-table")
    assert "Selected design" in table and "LoRA only" in table and "Full fine-tuning" in table
    history = page.inner_text("#decisions")
    assert "smaller modules first" in history and "override" in history
    page.wait_for_selector("#chart-bars .main-svg")
    page.screenshot(path=screenshot_dir / "final-report.png", full_page=True)

    # The design JSON downloads with the selected design and the decisions that led to it
    with page.expect_download() as info:
        page.click('a[data-download="design.json"]')
    with open(info.value.path()) as handle:
        design = json.load(handle)
    assert design["schema"] == "pefs.design/1"
    assert design["backbone"]["num_layers"] == tiny_backbone.num_layers == len(design["layers"])
    assert design["trainable_parameters"]["peft_total"] == pytest.approx(BUDGET, rel=0.02)
    assert [d["choice"] for d in design["provenance"]["decisions"]] == [choice for _, _, choice in decisions]
    overridden = next(d for d in design["provenance"]["decisions"] if d["override"])
    assert overridden["reason"] == "smaller modules first, as in our earlier runs"
    assert not page.errors, page.errors

    # Another user cannot open this search's pages
    intruder = new_page(live_web)
    log_in(intruder, "mallory", "mallory-password-1")
    for path in (f"/searches/{search_id}/", f"/searches/{search_id}/report/"):
        assert intruder.goto(path).status == 404
