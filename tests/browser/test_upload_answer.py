"""Uploading a task in a real browser (issue 12 §9): no htmx:oobErrorNoTarget (or any other error) in
the console, the preview stays inside its card, and a small file is flagged as too small to
separate designs."""
from __future__ import annotations

import pytest

from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.timeout(300)]


@pytest.fixture
def wide_csv(tmp_path):
    path = tmp_path / "wide.csv"
    header = "id,review,label," + ",".join(f"extra_column_{i}" for i in range(12))
    rows = [f"{i},{'a great and moving film' if i % 2 else 'dull and long'},{'pos' if i % 2 else 'neg'},"
            + ",".join("some extra text" for _ in range(12)) for i in range(40)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_upload_without_console_errors_inside_its_card(live_web, user, bundled_tasks, wide_csv, new_page):
    page = new_page(live_web)
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    log_in(page, "alice", "alice-password-1")
    page.goto("/searches/new/")

    page.fill("#id_upload-name", "wide-reviews")
    page.set_input_files("#id_upload-file", str(wide_csv))
    page.wait_for_selector("#upload-preview-table")
    # The preview scrolls inside the card instead of running past it
    card = page.eval_on_selector("#upload-card", "el => el.getBoundingClientRect().right")
    wrap = page.eval_on_selector("#upload-preview .table-wrap", "el => el.getBoundingClientRect().right")
    assert wrap <= card
    assert page.eval_on_selector("#upload-preview .table-wrap", "el => el.scrollWidth > el.clientWidth")

    for box in page.query_selector_all('input[name="upload-text_columns"]:checked'):
        box.uncheck()
    page.check('input[name="upload-text_columns"][value="review"]')
    page.select_option("#id_upload-label_column", "label")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-result:has-text('wide-reviews')")
    assert "Too small to separate designs" in page.inner_text("#upload-too-small")
    assert "one example = 25.00 points" in page.inner_text("#upload-evaluation")
    page.wait_for_load_state("networkidle")
    assert not console_errors, console_errors
    assert not page.errors, page.errors
