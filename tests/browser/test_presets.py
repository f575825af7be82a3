"""Presets in a real browser (issue 12): picking a preset fills the preset's own fields only; the
layer groups, seed and budget the person set, and any preset field they edited by hand, stay as
they are (an edited field that the preset would change says "kept your value"), and the search
starts with them."""
from __future__ import annotations

import re

import pytest

from experiments.space.presets import PRESETS
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.timeout(300)]


def test_a_preset_keeps_the_fields_the_user_set(live_web, user, tiny_backbone, bundled_tasks, new_page):
    quick, paper = PRESETS["quick"], PRESETS["paper"]
    assert quick.designs_per_stage != paper.designs_per_stage and quick.epochs != paper.epochs
    page = new_page(live_web)
    log_in(page, "alice", "alice-password-1")
    page.goto("/searches/new/")
    assert page.input_value("#id_preset") == "quick"
    # Layer groups untouched by the person follow the preset (the study preset's 2)
    page.select_option("#id_preset", "study")
    assert page.input_value("#id_groups") == "2"
    page.select_option("#id_preset", "quick")
    assert page.input_value("#id_groups") == "4"

    # Given a form where the person set the groups, the seed, the budget and one preset field
    page.fill("#id_name", "kept values")
    page.check(f'input[name="tasks"][value="{bundled_tasks["sst2"].pk}"]')
    page.select_option("#id_backbone", str(tiny_backbone.pk))
    page.check('input[name="budget_kind"][value="absolute"]')
    page.fill("#id_budget_value", "6000")
    page.wait_for_selector("#budget-preview-value:has-text('6,000')")
    page.fill("#id_groups", "2")
    page.fill("#id_seed", "7")
    page.click("details.advanced summary")
    page.fill("#id_epochs", "2")

    # When another preset is picked
    page.select_option("#id_preset", "paper")

    # Then the preset's own fields change, the person's values stay, and the edited preset field says so
    assert page.input_value("#id_designs_per_stage") == str(paper.designs_per_stage)
    assert page.input_value("#id_groups") == "2"
    assert page.input_value("#id_seed") == "7"
    assert page.input_value("#id_budget_value") == "6000"
    assert page.is_checked('input[name="budget_kind"][value="absolute"]')
    assert page.input_value("#id_name") == "kept values"
    assert page.is_checked(f'input[name="tasks"][value="{bundled_tasks["sst2"].pk}"]')
    assert page.input_value("#id_epochs") == "2"
    assert "kept your value" in page.inner_text("#field-epochs")
    assert page.get_attribute("#id_epochs", "data-user-set") == "1"
    assert page.query_selector("#field-designs_per_stage .kept-note") is None

    # And back to the small preset for a search that starts at once: its own fields follow again
    page.select_option("#id_preset", "quick")
    assert page.input_value("#id_designs_per_stage") == str(quick.designs_per_stage)
    assert page.input_value("#id_groups") == "2"

    # When the search starts, the stored search has the person's groups, seed, budget and epochs
    page.click("button:has-text('Start search')")
    page.wait_for_url(re.compile(r"/searches/\d+/$"))
    search_id = int(re.search(r"/searches/(\d+)/", page.url).group(1))
    stored = page.request.get(f"/api/searches/{search_id}/").json()
    assert stored["groups"] == 2
    assert stored["seed"] == 7
    assert stored["config"]["epochs"] == 2
    assert stored["config"]["designs_per_stage"] == quick.designs_per_stage
    assert (stored["budget_kind"], stored["budget_params"]) == ("absolute", 6000)
    assert not page.errors, page.errors
