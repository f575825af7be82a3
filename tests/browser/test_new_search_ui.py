"""The new-search form in a real browser: keyboard use, live budget preview, task upload with a
preview of the first rows and column choice."""
from __future__ import annotations

import pytest

from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.timeout(300)]


@pytest.fixture
def reviews_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = ["id,review,label"] + [f"{i},{'great film' if i % 2 else 'dull and long'},{'pos' if i % 2 else 'neg'}"
                                  for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_form_is_keyboard_usable_and_previews_budget_and_upload(
        live_web, user, tiny_backbone, bundled_tasks, reviews_csv, new_page):
    page = new_page(live_web)
    log_in(page, "alice", "alice-password-1")
    page.goto("/searches/new/")

    # Keyboard: type a name, Tab to the first task and tick it with the space bar
    page.focus("#id_name")
    page.keyboard.type("keyboard search")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    assert page.eval_on_selector('input[name="tasks"] >> nth=0', "el => el.checked")
    assert page.eval_on_selector('input[name="tasks"] >> nth=0', "el => el === document.activeElement")

    # The budget preview follows the backbone and the budget as they change
    page.select_option("#id_backbone", str(tiny_backbone.pk))
    page.check('input[name="budget_kind"][value="absolute"]')
    page.fill("#id_budget_value", "1234")
    page.wait_for_selector("#budget-preview-value:has-text('1,234')")
    page.fill("#id_budget_value", str(tiny_backbone.total_params * 10))
    page.wait_for_selector("#budget-preview .error:has-text('exceeds')")

    # Choosing a file shows its first rows and the column pickers; adding it ticks the new task
    page.fill("#id_upload-name", "my-reviews")
    page.set_input_files("#id_upload-file", str(reviews_csv))
    page.wait_for_selector("#upload-preview-table")
    assert page.inner_text("#upload-preview-table thead") .split() == ["ID", "REVIEW", "LABEL"]
    assert page.is_checked('input[name="upload-text_columns"][value="review"]')
    assert page.input_value("#id_upload-label_column") == "label"
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-result:has-text('my-reviews')")
    ticked = page.eval_on_selector_all('input[name="tasks"]:checked', "els => els.length")
    assert ticked == 2
    assert page.input_value("#id_upload-name") == ""  # the upload form is ready for another file

    # The same name again is refused next to the name field
    page.fill("#id_upload-name", "my-reviews")
    page.set_input_files("#id_upload-file", str(reviews_csv))
    page.wait_for_selector("#upload-preview-table")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-err-name .errorlist")
    assert "already exists" in page.inner_text("#upload-err-name")
    assert not page.errors, page.errors


def test_editing_the_form_quickly_logs_no_console_errors_and_the_previews_end_current(
        live_web, user, tiny_backbone, bundled_tasks, new_page):
    # htmx used to abort a preview request when the next change came (hx-sync replace) and logged
    # each abort as a console error; now a change waits for the request in flight, and the last one wins.
    page = new_page(live_web)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    log_in(page, "alice", "alice-password-1")
    page.goto("/searches/new/")
    page.select_option("#id_backbone", str(tiny_backbone.pk))
    page.check('input[name="budget_kind"][value="absolute"]')
    for value in ("1000", "2000", "3000", "4000", "5678"):
        page.fill("#id_budget_value", value)
        page.dispatch_event("#id_budget_value", "change")
    page.wait_for_selector("#budget-preview-value:has-text('5,678')")
    # and the plan follows the tasks ticked last, after a quick tick, untick, tick
    boxes = page.locator('input[name="tasks"]:not([disabled])')
    boxes.nth(0).check()
    boxes.nth(1).check()
    boxes.nth(1).uncheck()
    page.wait_for_selector("#search-plan-value:has-text('trials')")
    page.wait_for_load_state("networkidle")
    assert page.locator("#plan-example-sets tbody tr").count() == 1
    assert errors == []
