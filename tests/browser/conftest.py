"""Playwright (Python) driving Debian's chromium against the live web server (as `make run` serves it) and a real worker.

Screenshots go to the test's tmp dir, or to PEFS_SCREENSHOT_DIR when set (the README's images are
picked from there and copied to static/pefs/screenshots/).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("PEFS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def chromium():
    """Headless chromium. Playwright's sync API keeps an event loop running in this thread, where
    Django refuses ORM calls: request this fixture (through new_page) after the database fixtures,
    and query nothing while it is up."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: install the chromium package or set PEFS_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium):
    """Pages in fresh contexts (separate cookies per user), 1280 px wide like a laptop screen."""
    contexts = []

    def make(base_url: str):
        context = chromium.new_context(viewport={"width": 1280, "height": 860}, base_url=base_url,
                                       accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    directory = Path(os.environ.get("PEFS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def in_thread(function, *args, **kwargs) -> None:
    """Run a database write or an event publish away from Playwright's event-loop thread, where
    Django refuses ORM calls and async_to_sync cannot run."""
    errors = []

    def run():
        try:
            function(*args, **kwargs)
        except Exception as error:  # re-raised below, in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


@pytest.fixture
def running_search(transactional_db, user, tiny_backbone, bundled_tasks):
    from tests.factories import SearchFactory, StageFactory, TrialFactory

    search = SearchFactory(owner=user, backbone=tiny_backbone, tasks=[bundled_tasks["sst2"]], name="live pages")
    stage = StageFactory(search=search, order=1, key="S1", component="grouping", status="running")
    trial = TrialFactory(stage=stage, index=0, status="running", attempt=1)
    search.current_stage = stage
    search.save(update_fields=["current_stage"])
    return search.pk, stage.pk, trial.pk


def open_following(new_page, base_url: str, path: str, live_status: str):
    """Alice's page at path, once it follows the WebSocket and its first catch-up is done."""
    page = new_page(base_url)
    log_in(page, "alice", "alice-password-1")
    page.goto(path)
    page.wait_for_selector(f"{live_status}.connected")
    page.wait_for_load_state("networkidle")
    return page
