"""Browser pages through the Django test client: owners see their pages, others get 404,
anonymous visitors are sent to the login page, and form errors are shown next to their fields."""
from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from experiments.forms import preset_values
from experiments.space.presets import PRESETS
from tests.factories import BackboneFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory, design_document

pytestmark = pytest.mark.django_db

S0_SPACE = {"schema": "pefs.space/1", "num_groups": 4,
            "choices": {"grouping": ["increasing", "uniform", "spindle"], "allocation": ["uniform"],
                        "groups": ["G1+G2+G3+G4"], **{f"assignment.G{g}": ["A", "L", "A+L"] for g in range(1, 5)}}}
SUMMARY = {
    "stage": "S1", "component": "grouping",
    "trials": {"total": 6, "succeeded": 6, "failed": 0, "not_applicable": 0},
    "choices": [
        {"choice": "increasing", "n": 2, "failed": 0, "mean": 61.0, "median": 61.0, "std": 1.41,
         "ci95": [60.0, 62.0], "edf": [[60.0, 0.5], [62.0, 1.0]]},
        {"choice": "uniform", "n": 2, "failed": 0, "mean": 70.5, "median": 70.5, "std": 0.7,
         "ci95": [70.0, 71.0], "edf": [[70.0, 0.5], [71.0, 1.0]]},
        {"choice": "spindle", "n": 2, "failed": 0, "mean": 80.5, "median": 80.5, "std": 0.7,
         "ci95": [80.0, 81.0], "edf": [[80.0, 0.5], [81.0, 1.0]]},
    ],
    "overall": {"choice": None, "n": 6, "failed": 0, "mean": 70.6, "median": 70.5, "std": 8.5,
                "ci95": [63.0, 78.0], "edf": []},
    "recommendation": {"choice": "spindle", "status": "separable", "runner_up": "uniform",
                       "not_compared": [], "reason": "spindle has the highest mean and its CI is above uniform's."},
    "bootstrap": {"resamples": 1000, "seed": 3, "level": 0.95},
}


@pytest.fixture
def backbone():
    return BackboneFactory(is_default=True, display_name="Tiny BERT")


@pytest.fixture
def task():
    return TaskFactory(name="sst2", display_name="SST-2")


@pytest.fixture
def search(user, backbone, task):
    search = SearchFactory(owner=user, backbone=backbone, tasks=[task], name="my first search",
                           trials_total=3, trials_done=1, best_score=71.25)
    stage = StageFactory(search=search, order=1, key="S1", component="grouping", space=S0_SPACE,
                         status="running")
    search.current_stage = stage
    search.save(update_fields=["current_stage"])
    TrialFactory(stage=stage, index=0, status="succeeded", score=71.25, trainable_params=1234567,
                 duration_s=83, choices={"grouping": "spindle", "assignment.G1": "A+L"},
                 design=design_document(layers=[{"adapter": 3, "lora": 2}, {}, {"bitfit": True}, {"prefix": 4}]))
    TrialFactory(stage=stage, index=1, status="failed", error="CUDA out of memory",
                 choices={"grouping": "uniform", "assignment.G1": "A"})
    TrialFactory(stage=stage, index=2, status="running", choices={"grouping": "increasing", "assignment.G1": "L"})
    return search


@pytest.fixture
def owner_client(client, user):
    client.force_login(user)
    return client


def awaiting_stage(search):
    return StageFactory(search=search, order=2, key="S2", component="grouping", space=S0_SPACE,
                        status="awaiting", summary=SUMMARY, recommendation=SUMMARY["recommendation"])


def page_urls(search):
    stage = search.stages.first()
    trial = search.trials.first()
    return [
        reverse("search-detail", args=[search.pk]),
        reverse("search-status", args=[search.pk]),
        reverse("search-trials", args=[search.pk]),
        reverse("search-charts", args=[search.pk]),
        reverse("search-report", args=[search.pk]),
        reverse("stage-detail", args=[search.pk, stage.pk]),
        reverse("trial-detail", args=[search.pk, trial.pk]),
    ]


def test_pages_require_login(client, search):
    for url in [reverse("search-list"), reverse("search-new"), *page_urls(search)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_login_page_renders_for_anonymous_visitors(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"Log in to PEFS" in response.content


def test_owner_sees_every_page_of_the_search(owner_client, search):
    for url in page_urls(search):
        assert owner_client.get(url).status_code == 200, url


def test_another_user_gets_404_on_every_page(client, other_user, search):
    client.force_login(other_user)
    trial = search.trials.first()
    for url in page_urls(search):
        assert client.get(url).status_code == 404, url
    assert "belongs to another user" in client.get(page_urls(search)[0]).content.decode()
    retry = reverse("trial-action", args=[search.pk, trial.pk, "retry"])
    assert client.post(retry).status_code == 404
    assert client.post(reverse("search-cancel", args=[search.pk])).status_code == 404


def test_search_list_shows_own_searches_with_progress(owner_client, search, other_user, backbone):
    SearchFactory(owner=other_user, backbone=backbone, name="someone else's")
    response = owner_client.get(reverse("search-list"))
    body = response.content.decode()
    assert "my first search" in body and "someone else" not in body
    assert "1 / 3" in body and "71.25" in body
    assert 'datetime="' in body  # times go to the browser as ISO for local formatting
    assert "New search" in body


def test_search_list_empty_state_says_what_to_do(owner_client):
    body = owner_client.get(reverse("search-list")).content.decode()
    assert "No searches yet" in body


def test_search_page_shows_timeline_trials_and_strip(owner_client, search):
    body = owner_client.get(reverse("search-detail", args=[search.pk])).content.decode()
    for key in ("S1", "S2", "S3", "S4.G1", "S4.G4", "final"):
        assert f'<span class="key">{key}</span>' in body
    assert '<span class="key">S0</span>' not in body  # the quick preset has no reference stage
    assert "1,234,567" in body  # long numbers formatted
    assert 'class="strip"' in body
    assert "Retry" in body and "Cancel" in body
    assert "/static/vendor/plotly.min.js" in body and "django_htmx/htmx-2.min.js" in body


def test_trial_table_filters_by_dotted_choice_and_sorts(owner_client, search):
    url = reverse("search-trials", args=[search.pk])
    body = owner_client.get(url, {"choice": "assignment.G1=A+L"}).content.decode()
    assert body.count("<tr data-trial=") == 1
    body = owner_client.get(url, {"status": "failed"}).content.decode()
    assert body.count("<tr data-trial=") == 1 and "failed" in body
    body = owner_client.get(url, {"sort": "-score"}).content.decode()
    assert body.count("<tr data-trial=") == 3
    body = owner_client.get(url, {"sort": "bogus"}).content.decode()
    assert "Cannot sort by bogus" in body
    body = owner_client.get(url, {"choice": "grouping=bottleneck"}).content.decode()
    assert "No trial matches these filters" in body


def test_chart_data_is_columnar_and_compressed_on_request(owner_client, search):
    import gzip
    import json

    compressed = owner_client.get(reverse("search-charts", args=[search.pk]), HTTP_ACCEPT_ENCODING="gzip")
    assert compressed["Content-Encoding"] == "gzip"
    data = owner_client.get(reverse("search-charts", args=[search.pk])).json()
    assert json.loads(gzip.decompress(compressed.content)) == data
    assert data["score"] == [71.25] and data["params"] == [1234567]
    grouping = data["labels"]["grouping"]
    assert grouping[data["codes"]["grouping"][0]] == "spindle"
    assert data["codes"]["allocation"] == [-1]
    assert data["stages"][data["stage"][0]] == "S1" and data["kinds"][data["kind"][0]] == "sample"


def test_new_search_form_renders_presets_and_tasks(owner_client, task, backbone):
    body = owner_client.get(reverse("search-new")).content.decode()
    assert "SST-2" in body and "Tiny BERT" in body
    assert 'id="preset-values"' in body and "designs_per_stage" in body
    assert 'name="budget_value"' in body and 'value="0.5"' in body


def test_new_search_form_shows_errors_inline(owner_client, task, backbone):
    response = owner_client.post(reverse("search-new"),
                                 {**valid_form(task, backbone), "name": "", "tasks": [], "budget_value": "150"})
    assert response.status_code == 400
    body = response.content.decode()
    name_field = body[body.index('id="field-name"'):body.index('id="field-tasks"')]
    assert "This field is required" in name_field
    tasks_field = body[body.index('id="field-tasks"'):body.index('id="field-backbone"')]
    assert "This field is required" in tasks_field
    budget_field = body[body.index('id="field-budget_value"'):body.index('id="budget-preview"')]
    assert "between 0 and 100" in budget_field


def valid_form(task, backbone, **extra):
    """What the browser posts after choosing the quick preset (every preset field filled in)."""
    data = {key: ("on" if value is True else "" if value in (False, None) else value)
            for key, value in preset_values(PRESETS["quick"]).items()}
    return {**data, "name": "sweep", "tasks": [task.pk], "backbone": backbone.pk, "preset": "quick", "seed": 7,
            "max_eval_examples": "", **extra}


def test_new_search_calls_the_service_and_redirects(owner_client, user, task, backbone, search):
    with mock.patch("experiments.services.search_create", create=True, return_value=search) as create:
        response = owner_client.post(reverse("search-new"), valid_form(task, backbone))
    assert response.status_code == 302
    assert response["Location"] == reverse("search-detail", args=[search.pk])
    kwargs = create.call_args.kwargs
    assert kwargs["owner"] == user and kwargs["budget_value"] == pytest.approx(0.005)
    assert kwargs["seed"] == 7 and kwargs["preset"] == "quick"
    assert kwargs["overrides"]["max_eval_examples"] is None and kwargs["overrides"]["balance"] is True


def test_service_errors_land_on_their_field(owner_client, task, backbone):
    error = ValidationError({"budget_value": ["Too small for this backbone: no design fits 3 parameters."]})
    with mock.patch("experiments.services.search_create", create=True, side_effect=error):
        response = owner_client.post(reverse("search-new"), valid_form(task, backbone))
    assert response.status_code == 400
    body = response.content.decode()
    budget_field = body[body.index('id="field-budget_value"'):body.index('id="budget-preview"')]
    assert "no design fits 3 parameters" in budget_field


def test_space_library_field_names_map_to_form_fields(owner_client, task, backbone):
    error = ValidationError({"num_groups": ["must be at most 4, got 9"], "designs_per_stage": ["must be >= 2"]})
    with mock.patch("experiments.services.search_create", create=True, side_effect=error):
        body = owner_client.post(reverse("search-new"), valid_form(task, backbone)).content.decode()
    assert "must be at most 4" in body[body.index('id="field-groups"'):body.index('id="field-preset"')]
    assert "must be &gt;= 2" in body[body.index('id="field-designs_per_stage"'):]


def test_budget_preview_counts_parameters(owner_client, backbone):
    response = owner_client.get(reverse("budget-preview"),
                                {"backbone": backbone.pk, "budget_kind": "fraction", "budget_value": "0.5"})
    assert "500" in response.content.decode() and "trainable parameters" in response.content.decode()
    response = owner_client.get(reverse("budget-preview"),
                                {"backbone": backbone.pk, "budget_kind": "absolute", "budget_value": "10000000"})
    assert "exceeds" in response.content.decode()


def test_stage_wizard_shows_statistics_and_recommendation(owner_client, search):
    stage = awaiting_stage(search)
    body = owner_client.get(reverse("stage-detail", args=[search.pk, stage.pk])).content.decode()
    assert "Recommended: <span class=\"mono\">spindle</span>" in body
    assert "80.00 – 81.00" in body  # the CI
    assert "Student-t interval" in body  # how the intervals are made
    assert 'id="chart-edf"' in body and 'id="approve-form"' in body
    assert "data-pending-diff" in body


def test_final_stage_page_is_the_report(owner_client, search):
    final = StageFactory(search=search, order=9, key="final", component="", space=S0_SPACE, status="running")
    response = owner_client.get(reverse("stage-detail", args=[search.pk, final.pk]))
    assert response["Location"] == reverse("search-report", args=[search.pk])


def test_reference_stage_plots_all_its_designs(owner_client, search):
    s0 = StageFactory(search=search, order=0, key="S0", component="", space=S0_SPACE, status="completed",
                      summary={**SUMMARY, "component": None, "choices": [], "recommendation": None})
    body = owner_client.get(reverse("stage-detail", args=[search.pk, s0.pk])).content.decode()
    assert '"choice": "all designs"' in body and "Reference stage" in body


def test_override_without_reason_is_an_inline_error(owner_client, search):
    stage = awaiting_stage(search)
    url = reverse("stage-detail", args=[search.pk, stage.pk])
    with mock.patch("experiments.services.stage_approve", create=True) as approve:
        response = owner_client.post(url, {"choice": "uniform", "reason": ""})
    assert response.status_code == 400 and not approve.called
    body = response.content.decode()
    reason = body[body.index('id="reason-field"'):]
    assert "Say why you override" in reason[:2000]


def test_approve_and_override_call_the_service(owner_client, user, search):
    stage = awaiting_stage(search)
    url = reverse("stage-detail", args=[search.pk, stage.pk])
    with mock.patch("experiments.services.stage_approve", create=True) as approve:
        assert owner_client.post(url, {"choice": "spindle"}).status_code == 302
        assert approve.call_args.kwargs == {"stage": stage, "user": user, "choice": None, "reason": ""}
        assert owner_client.post(url, {"choice": "uniform", "reason": "cheaper"}).status_code == 302
        assert approve.call_args.kwargs["choice"] == "uniform"
        assert approve.call_args.kwargs["reason"] == "cheaper"


def test_trial_retry_returns_the_row_for_htmx(owner_client, search):
    trial = search.trials.get(status="failed")
    url = reverse("trial-action", args=[search.pk, trial.pk, "retry"])
    response = owner_client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    trial.refresh_from_db()
    assert trial.status == "queued"
    assert f'data-trial="{trial.pk}"' in response.content.decode()


def test_report_without_final_stage_says_what_to_do(owner_client, search):
    body = owner_client.get(reverse("search-report", args=[search.pk])).content.decode()
    assert "No final stage yet" in body


def test_report_compares_selected_design_with_baselines(owner_client, search, user):
    decided = StageFactory(search=search, order=3, key="S3", component="groups", space=S0_SPACE,
                           status="approved", decided_by=user, decided_at=timezone.now(), override_reason="cheaper",
                           decision={"stage": "S3", "component": "groups", "choice": "G1+G2", "recommended": "G1",
                                     "override": True, "decided_by": "alice", "reason": "cheaper",
                                     "open_before": ["G1", "G1+G2"]})
    final = StageFactory(search=search, order=9, key="final", component="", space=S0_SPACE, status="completed")
    design = design_document(layers=[{"adapter": 8, "lora": 4}, {"prefix": 2}, {}, {"bitfit": True}])
    for seed, (selected, lora) in enumerate([(80.0, 70.0), (82.0, 72.0)]):
        TrialFactory(stage=final, kind="selected", status="succeeded", score=selected, seed=seed, design=design,
                     choices={"arm": "selected", "task": "sst2", "seed": seed}, trainable_params=4321)
        TrialFactory(stage=final, kind="baseline", status="succeeded", score=lora, seed=seed,
                     choices={"arm": "lora", "task": "sst2", "seed": seed})
    TrialFactory(stage=final, kind="baseline", status="running", choices={"arm": "full", "task": "sst2", "seed": 0})
    body = owner_client.get(reverse("search-report", args=[search.pk])).content.decode()
    assert "Selected design" in body and "LoRA only" in body and "4,321" in body
    assert "81.00" in body and "± 1.41" in body  # mean and std over two seeds
    assert "1 run to go" in body
    assert 'id="chart-bars"' in body and 'class="heat"' in body
    assert "G1+G2" in body and "override" in body and "cheaper" in body
    assert "not expressible" in body  # PEFT export of an adapter design
    assert decided.key in body


def test_plotly_is_served_from_the_package_as_a_static_file(client):
    from django.templatetags.static import static

    url = static("vendor/plotly.min.js")
    response = client.get(url)  # no login needed: a public library, like every static file
    assert response.status_code == 200
    assert b"plotly.js" in b"".join(response.streaming_content)[:200]


def test_trial_cancel_without_htmx_redirects_to_the_trial(owner_client, search):
    trial = search.trials.get(status="running")
    response = owner_client.post(reverse("trial-action", args=[search.pk, trial.pk, "cancel"]))
    assert response.status_code == 302
    assert response["Location"] == reverse("trial-detail", args=[search.pk, trial.pk])
    trial.refresh_from_db()
    assert trial.cancel_requested


def test_search_cancel_says_what_happened(owner_client, search):
    response = owner_client.post(reverse("search-cancel", args=[search.pk]), follow=True)
    search.refresh_from_db()
    assert search.status == "cancelled"
    assert "Search cancelled" in response.content.decode()
    response = owner_client.post(reverse("search-cancel", args=[search.pk]), follow=True)
    assert "already cancelled" in response.content.decode()


def test_formatting_filters():
    from experiments.templatetags.pefs_format import compact, design_strip, duration, percent, score

    assert (compact(22_713_216), compact(113_568), compact(950), compact(None)) == ("22.7M", "114k", "950", "—")
    assert (duration(83), duration(7500), duration(None)) == ("1m 23s", "2h 05m", "—")
    assert (percent(0.005), score(71.256), score(None)) == ("0.50%", "71.26", "—")
    strip = design_strip(design_document(layers=[{"adapter": 3, "lora": 2}, {}, {"bitfit": True}, {"prefix": 4}]))
    assert strip.count("<i") == 16 and 'title="L1:AL L2:- L3:B L4:P"' in strip


def test_report_shows_the_table_search_completion_stored(owner_client, search):
    # Given a completed final stage whose stored results table says 55.55 for the selected design
    final = StageFactory(search=search, order=9, key="final", component="", space=S0_SPACE, status="completed")
    for seed, score in enumerate([80.0, 82.0]):
        TrialFactory(stage=final, kind="selected", status="succeeded", score=score, seed=seed,
                     choices={"arm": "selected", "task": "sst2", "seed": seed}, trainable_params=4321)
    cell = {"mean": 55.55, "std": 0.25, "n": 2, "failed": 0}
    final.summary = {"tasks": ["sst2"], "arms": ["selected"], "best": "selected",
                     "rows": [{"arm": "selected", "parameters": 9876, "per_task": {"sst2": cell},
                               "average": {"mean": 55.55, "std": 0.25, "seeds": 2}}]}
    final.save(update_fields=["summary"])
    # When the report is shown, Then it renders the stored numbers, not a recomputation of the trials
    body = owner_client.get(reverse("search-report", args=[search.pk])).content.decode()
    assert "55.55" in body and "9,876" in body
    assert "81.00" not in body


def test_trial_table_reads_each_design_once(owner_client, search):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        body = owner_client.get(reverse("search-trials", args=[search.pk])).content.decode()
    assert body.count('class="strip"') == 3  # every trial of the fixture has a design
    design_reads = [q["sql"] for q in queries if '"design"' in q["sql"] and "experiments_trial" in q["sql"]]
    assert len(design_reads) == 1, design_reads


def test_stage_page_of_another_search_is_404(owner_client, search, user, backbone):
    other = SearchFactory(owner=user, backbone=backbone)
    stage = StageFactory(search=other, order=1, key="S1", space=S0_SPACE)
    assert owner_client.get(reverse("stage-detail", args=[search.pk, stage.pk])).status_code == 404


def test_new_search_form_offers_no_setting_the_service_refuses(owner_client, task, backbone):
    from experiments import services

    body = owner_client.get(reverse("search-new")).content.decode()
    assert 'name="designs_per_stage"' in body  # the other preset fields stay editable
    # Successive halving runs on the workers: the form offers it, bounded like the service
    assert 'name="halving_eta"' in body and 'max="16"' in body
    for setting in services.UNSCHEDULED_SETTINGS:
        assert f'name="{setting}"' not in body


def test_trial_and_stage_pages_follow_the_search_websocket(owner_client, search):
    import json
    import re
    from pathlib import Path

    from django.conf import settings

    trial = search.trials.get(status="running")
    stage = search.stages.get(key="S1")
    pages = {"trial-config": reverse("trial-detail", args=[search.pk, trial.pk]),
             "stage-config": reverse("stage-detail", args=[search.pk, stage.pk])}
    for script_id, url in pages.items():
        body = owner_client.get(url).content.decode()
        config = json.loads(re.search(rf'<script id="{script_id}" type="application/json">(.*?)</script>',
                                      body, re.S).group(1))
        assert config["ws"] == f"/ws/searches/{search.pk}/", url
        assert "pefs/js/pefs.js" in body
    # Both scripts take the shared WebSocket client and keep only a slow safety poll
    for name in ("trial.js", "stage.js"):
        source = (Path(settings.BASE_DIR) / "static" / "pefs" / "js" / name).read_text()
        assert "PEFS.followSearch(" in source and "new WebSocket" not in source, name
        assert "SAFETY_POLL_MS = 30000" in source and "setInterval" not in source, name
        assert not re.search(r"setTimeout\((tick|poll)", source), name


def test_every_rows_links_are_the_ones_reverse_gives(owner_client, search):
    # The rows build their links from one prefix per page (pages.trials_base), not four reverse()
    # calls per row (issue 14): each must still be exactly the URL the URLconf gives.
    body = owner_client.get(reverse("search-detail", args=[search.pk])).content.decode()
    trials = list(search.trials.all())
    assert trials
    for trial in trials:
        assert f'data-href="{reverse("trial-detail", args=[search.pk, trial.pk])}"' in body
        for action in ("retry", "cancel"):
            assert f'hx-post="{reverse("trial-action", args=[search.pk, trial.pk, action])}"' in body
    running = search.trials.get(status="running")
    row = owner_client.post(reverse("trial-action", args=[search.pk, running.pk, "cancel"]), HTTP_HX_REQUEST="true")
    assert f'href="{reverse("trial-detail", args=[search.pk, running.pk])}"' in row.content.decode()
