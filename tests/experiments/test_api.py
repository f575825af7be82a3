"""REST API: permissions on every endpoint, validation errors that name the field, lists, downloads."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments import services
from experiments.models import Artifact, Search, Stage, Trial
from tests.factories import (
    ArtifactFactory, BackboneFactory, MetricPointFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory,
    backbone_shape, design_document,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "artifacts"
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture
def world(user, media):
    """A search of `user`: a task, a backbone, stage S0 with a failed trial, a final stage with the
    selected design, a metric point and every kind of artifact on disk."""
    task = TaskFactory(owner=user, name="mine")
    backbone = BackboneFactory(owner=user)
    search = SearchFactory(owner=user, backbone=backbone, tasks=[task])
    stage = StageFactory(search=search, order=0, key="S0")
    trial = TrialFactory(stage=stage, status=Trial.Status.FAILED, score=None)
    final = StageFactory(search=search, order=1, key="final")
    selected = TrialFactory(stage=final, status=Trial.Status.SUCCEEDED, kind=Trial.Kind.SELECTED, score=70.0)
    MetricPointFactory(trial=trial)
    Search.objects.filter(pk=search.pk).update(trials_total=2, trials_done=2)
    for kind, name, content in [(Artifact.Kind.DESIGN, "design.json", b"{}"),
                                (Artifact.Kind.WEIGHTS, "w.safetensors", b"weights"),
                                (Artifact.Kind.REPORT_MD, "report.md", b"# report"),
                                (Artifact.Kind.REPORT_JSON, "report.json", b"{}"),
                                (Artifact.Kind.PEFT_EXPORT, "export.zip", b"PK")]:
        (media / name).write_bytes(content)
        per_task = kind in (Artifact.Kind.WEIGHTS, Artifact.Kind.PEFT_EXPORT)
        ArtifactFactory(search=search, trial=selected, kind=kind, path=name, size_bytes=len(content),
                        task=task.name if per_task else "")
    return {"task": task, "backbone": backbone, "search": search, "stage": stage, "trial": trial}


def owned_endpoints(world) -> list[tuple[str, str, dict]]:
    """(method, url, body) of every endpoint that addresses one owned object."""
    s, st, t = world["search"].pk, world["stage"].pk, world["trial"].pk
    return [
        ("get", reverse("api:task-detail", args=[world["task"].pk]), {}),
        ("get", reverse("api:backbone-detail", args=[world["backbone"].pk]), {}),
        ("get", reverse("api:backbone-budget", args=[world["backbone"].pk]) + "?budget_value=0.01", {}),
        ("get", reverse("api:search-detail", args=[s]), {}),
        ("post", reverse("api:search-cancel", args=[s]), {}),
        ("post", reverse("api:search-retry-failed", args=[s]), {}),
        ("get", reverse("api:search-trials", args=[s]), {}),
        ("get", reverse("api:search-metrics", args=[s]), {}),
        ("get", reverse("api:search-downloads", args=[s]), {}),
        ("get", reverse("api:download", args=[s, "design.json"]), {}),
        ("get", reverse("api:download-peft", args=[s, world["task"].name]), {}),
        ("get", reverse("api:download", args=[s, "report.md"]), {}),
        ("get", reverse("api:download", args=[s, "report.json"]), {}),
        ("get", reverse("api:download", args=[s, "usage.py"]), {}),
        ("get", reverse("api:download-weights", args=[s, world["task"].name]), {}),
        ("get", reverse("api:stage-detail", args=[st]), {}),
        ("post", reverse("api:stage-approve", args=[st]), {"reason": "x"}),
        ("get", reverse("api:trial-detail", args=[t]), {}),
        ("post", reverse("api:trial-retry", args=[t]), {}),
        ("post", reverse("api:trial-cancel", args=[t]), {}),
    ]


LIST_ENDPOINTS = ["api:task-list", "api:backbone-list", "api:search-list"]


def test_another_users_objects_are_404_on_every_endpoint(world, other_user):
    # Given mallory logged in, when she addresses any of alice's objects, then every answer is 404
    client = APIClient()
    client.force_authenticate(other_user)
    for method, url, body in owned_endpoints(world):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
    # ...and her lists do not show them
    assert client.get(reverse("api:search-list")).json()["count"] == 0
    assert all(t["name"] != "mine" for t in client.get(reverse("api:task-list")).json())
    assert client.get(reverse("api:backbone-list")).json() == []


def test_anonymous_requests_are_401_not_login_redirects(world):
    client = APIClient()
    urls = [(m, u) for m, u, _ in owned_endpoints(world)] + [("get", reverse(n)) for n in LIST_ENDPOINTS]
    urls.append(("post", reverse("api:task-preview")))
    for method, url in urls:
        response = getattr(client, method)(url)
        assert response.status_code == 401, (method, url, response.status_code)
        assert response["WWW-Authenticate"] == "Token"


def test_token_and_session_authentication(user):
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(reverse("api:search-list")).status_code == 200
    session = APIClient()
    session.login(username="alice", password="alice-password-1")
    assert session.get(reverse("api:search-list")).status_code == 200
    obtained = APIClient().post(reverse("api:token"), {"username": "alice", "password": "alice-password-1"})
    assert obtained.json()["token"] == token.key


def test_schema_and_docs_need_login_and_are_served_offline(client, user):
    # Anonymous visitors get neither the schema nor the docs page
    assert client.get(reverse("api:schema")).status_code in (401, 403)
    assert client.get(reverse("api:docs")).status_code in (401, 403)
    client.force_login(user)
    schema = client.get(reverse("api:schema"))
    assert schema.status_code == 200
    assert b"/api/searches/{id}/metrics/" in schema.content
    # Swagger UI comes from drf-spectacular-sidecar's static files: no CDN
    offline = client.get(reverse("api:docs")).content.decode()
    assert "swagger-ui" in offline
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in offline
    assert "cdn" not in offline.lower()


# --- tasks -------------------------------------------------------------------------------------

def csv_upload(text: str | bytes, name: str = "reviews.csv") -> io.BytesIO:
    handle = io.BytesIO(text.encode() if isinstance(text, str) else text)
    handle.name = name
    return handle


GOOD_CSV = "text,label\n" + "".join(f"review {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(40))


def test_task_list_shows_bundled_and_own(api, user, other_user):
    TaskFactory(name="sst2")
    TaskFactory(owner=user, name="mine")
    TaskFactory(owner=other_user, name="theirs")
    names = {t["name"]: t["owned"] for t in api.get(reverse("api:task-list")).json()}
    assert names == {"sst2": False, "mine": True}


def test_task_upload_creates_a_task(api, media):
    response = api.post(reverse("api:task-list"), {"file": csv_upload(GOOD_CSV), "name": "reviews",
                                                   "text_columns": "text", "label_column": "label"},
                        format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "reviews" and body["owned"] and body["text_columns"] == ["text"]
    assert sorted(body["labels"]) == ["0", "1"] or sorted(map(str, body["labels"])) == ["0", "1"]


@pytest.mark.parametrize("fields, field", [
    ({"label_column": "missing"}, "label_column"),
    ({"text_columns": "nope"}, "text_columns"),
    ({"name": ""}, "name"),
    ({"file": None}, "file"),
    ({"problem": "ranking"}, "problem"),
])
def test_task_upload_errors_name_the_field(api, media, fields, field):
    data = {"file": csv_upload(GOOD_CSV), "name": "reviews", "text_columns": "text", "label_column": "label"}
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    response = api.post(reverse("api:task-list"), data, format="multipart")
    assert response.status_code == 400
    assert field in response.json(), response.json()


@pytest.mark.parametrize("text, problem, message", [
    ("text,label\n" + "same label,1\n" * 20, "", "two classes"),
    ("text,label\n" + "words,high\nmore words,low\n" * 10, "regression", "not a finite number"),
])
def test_task_upload_checks_the_label_set(api, media, text, problem, message):
    data = {"file": csv_upload(text), "name": "labels", "text_columns": "text", "label_column": "label"}
    if problem:
        data["problem"] = problem
    response = api.post(reverse("api:task-list"), data, format="multipart")
    assert response.status_code == 400 and message in response.json()["label_column"][0], response.json()


def test_task_upload_rejects_too_large_and_undecodable_files(api, media, settings):
    settings.UPLOAD_MAX_BYTES = 100
    data = {"name": "big", "text_columns": "text", "label_column": "label"}
    response = api.post(reverse("api:task-list"), {**data, "file": csv_upload(GOOD_CSV)}, format="multipart")
    assert response.status_code == 400 and "limit" in response.json()["file"][0]
    settings.UPLOAD_MAX_BYTES = 10**6
    latin = ("text,label\n" + "caf\xe9 cr\xe8me,1\n" * 30).encode("latin-1") + b"\xff\xfe\x00"
    response = api.post(reverse("api:task-list"), {**data, "file": csv_upload(latin)}, format="multipart")
    assert response.status_code == 400 and "file" in response.json(), response.json()


def test_task_preview_returns_columns_and_rows(api, media):
    response = api.post(reverse("api:task-preview"), {"file": csv_upload(GOOD_CSV), "max_rows": 3},
                        format="multipart")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["columns"] == ["text", "label"] and len(body["rows"]) == 3 and body["format"] == "csv"


# --- backbones ---------------------------------------------------------------------------------

def test_backbone_list_register_and_budget(api, user, monkeypatch):
    BackboneFactory(name_or_path="default", is_default=True)
    from tasks.peft.budget import BackboneShape

    shape = BackboneShape.from_dict(backbone_shape(name="org/tiny"))
    monkeypatch.setattr(services.catalog, "backbone_introspect", lambda name_or_path: shape)
    response = api.post(reverse("api:backbone-list"), {"name_or_path": "org/tiny"}, format="json")
    assert response.status_code == 201, response.json()
    registered = response.json()
    assert registered["num_layers"] == 4 and registered["owned"] and registered["shape"]["num_layers"] == 4
    assert {b["name_or_path"] for b in api.get(reverse("api:backbone-list")).json()} == {"default", "org/tiny"}

    url = reverse("api:backbone-budget", args=[registered["id"]])
    assert api.get(url, {"budget_kind": "fraction", "budget_value": 0.01}).json()["budget_params"] == 1000
    assert api.get(url, {"budget_kind": "absolute", "budget_value": 500}).json()["budget_params"] == 500
    assert "budget_value" in api.get(url, {"budget_kind": "fraction", "budget_value": 3}).json()
    assert "budget_value" in api.get(url, {"budget_kind": "fraction"}).json()
    assert "budget_kind" in api.get(url, {"budget_kind": "percent", "budget_value": 1}).json()


def test_backbone_register_failure_names_the_field(api, monkeypatch):
    def broken(name_or_path):
        raise OSError("no such model")

    monkeypatch.setattr(services.catalog, "backbone_introspect", broken)
    response = api.post(reverse("api:backbone-list"), {"name_or_path": "org/missing"}, format="json")
    assert response.status_code == 400 and "no such model" in response.json()["name_or_path"][0]
    assert "name_or_path" in api.post(reverse("api:backbone-list"), {}, format="json").json()


# --- searches ----------------------------------------------------------------------------------

def test_search_list_and_detail(api, world):
    search, stage = world["search"], world["stage"]
    Search.objects.filter(pk=search.pk).update(current_stage=stage, trials_total=4, best_score=70.0)
    SearchFactory()  # someone else's
    body = api.get(reverse("api:search-list")).json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["current_stage"] == {"id": stage.pk, "key": "S0", "status": "running"}
    assert (row["trials_done"], row["trials_total"], row["best_score"]) == (2, 4, 70.0)
    assert row["tasks"] == ["mine"] and row["elapsed_s"] >= 0
    detail = api.get(reverse("api:search-detail", args=[search.pk])).json()
    assert [s["key"] for s in detail["stages"]] == ["S0", "final"]
    assert {a["kind"] for a in detail["artifacts"]} == set(Artifact.Kind.values)
    assert api.get(reverse("api:search-list"), {"status": "completed"}).json()["count"] == 0


def test_search_create_validates_and_calls_the_service(api, user, monkeypatch):
    task, backbone = TaskFactory(name="sst2"), BackboneFactory()
    calls = []

    def search_create(**kwargs):
        calls.append(kwargs)
        return SearchFactory(owner=kwargs["owner"], backbone=kwargs["backbone"], tasks=kwargs["tasks"])

    monkeypatch.setattr(services, "search_create", search_create, raising=False)
    url = reverse("api:search-list")
    bad = api.post(url, {"name": "x", "tasks": ["sst2", "nope"], "backbone": str(backbone.pk)}, format="json")
    assert bad.status_code == 400 and "nope" in bad.json()["tasks"][0]
    assert "backbone" in api.post(url, {"name": "x", "tasks": ["sst2"], "backbone": "999"}, format="json").json()
    ok = api.post(url, {"name": "x", "tasks": [str(task.pk)], "backbone": backbone.name_or_path,
                        "budget_value": 0.01, "overrides": {"epochs": 1}, "auto_approve": True}, format="json")
    assert ok.status_code == 201, ok.json()
    assert calls[0]["tasks"] == [task] and calls[0]["backbone"] == backbone and calls[0]["overrides"] == {"epochs": 1}
    assert ok.json()["tasks"] == ["sst2"]


def test_search_create_passes_service_errors_on_by_field(api, monkeypatch):
    from django.core.exceptions import ValidationError

    TaskFactory(name="sst2")
    backbone = BackboneFactory()

    def search_create(**kwargs):
        raise ValidationError({"groups": ["More groups (9) than layers (4)."]})

    monkeypatch.setattr(services, "search_create", search_create, raising=False)
    response = api.post(reverse("api:search-list"), {"name": "x", "tasks": "sst2", "backbone": str(backbone.pk),
                                                     "groups": 9}, format="json")
    assert response.status_code == 400 and response.json() == {"groups": ["More groups (9) than layers (4)."]}


def test_retry_and_cancel_trial(api, world, monkeypatch):
    sent = []
    monkeypatch.setattr(services.queue, "enqueue_on_commit", lambda pairs: sent.extend(pairs))
    trial = world["trial"]
    response = api.post(reverse("api:trial-retry", args=[trial.pk]))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "queued" and response.json()["attempt"] == 2
    assert sent == [(trial.pk, 2, 0)]  # (trial, attempt, rung): a retry is a new attempt at the trial's rung
    assert api.post(reverse("api:trial-cancel", args=[trial.pk])).json()["status"] == "cancelled"
    again = api.post(reverse("api:trial-cancel", args=[trial.pk]))
    assert again.status_code == 400 and "status" in again.json()


def test_retry_failed_trials_of_the_current_stage(api, world, monkeypatch):
    monkeypatch.setattr(services.queue, "enqueue_on_commit", lambda pairs: None)
    Search.objects.filter(pk=world["search"].pk).update(current_stage=world["stage"])
    response = api.post(reverse("api:search-retry-failed", args=[world["search"].pk]))
    assert response.json() == {"retried": 1}


# --- stages ----------------------------------------------------------------------------------

def test_stage_detail_has_counts_and_best_trials(api, world):
    stage = world["stage"]
    TrialFactory(stage=stage, status=Trial.Status.SUCCEEDED, score=90.0)
    TrialFactory(stage=stage, status=Trial.Status.SUCCEEDED, score=80.0)
    Stage.objects.filter(pk=stage.pk).update(summary={"choices": {"spindle": {"n": 2}}},
                                             recommendation={"choice": "spindle"})
    body = api.get(reverse("api:stage-detail", args=[stage.pk])).json()
    assert body["trial_counts"]["succeeded"] == 2 and body["trial_counts"]["failed"] == 1
    assert [t["score"] for t in body["best_trials"]] == [90.0, 80.0]
    assert body["recommendation"] == {"choice": "spindle"} and body["space"] == stage.space


def test_stage_approve_calls_the_service(api, user, world, monkeypatch):
    calls = []

    def stage_approve(*, stage, user, choice=None, reason=""):
        calls.append((stage.pk, user.pk, choice, reason))
        return stage

    monkeypatch.setattr(services, "stage_approve", stage_approve, raising=False)
    stage = world["stage"]
    assert api.post(reverse("api:stage-approve", args=[stage.pk]), {}, format="json").status_code == 200
    api.post(reverse("api:stage-approve", args=[stage.pk]), {"choice": "uniform", "reason": "cheaper"}, format="json")
    assert calls == [(stage.pk, user.pk, None, ""), (stage.pk, user.pk, "uniform", "cheaper")]


# --- trials ----------------------------------------------------------------------------------

@pytest.fixture
def trials(user):
    search = SearchFactory(owner=user)
    s0 = StageFactory(search=search, order=0, key="S0")
    s1 = StageFactory(search=search, order=1, key="S1")
    rows = [
        TrialFactory(stage=s0, index=0, status="succeeded", score=50.0, trainable_params=300, duration_s=5.0,
                     choices={"grouping": "spindle", "groups": 4}),
        TrialFactory(stage=s0, index=1, status="succeeded", score=70.0, trainable_params=100, duration_s=None,
                     choices={"grouping": "uniform", "groups": 4}),
        TrialFactory(stage=s0, index=2, status="running", score=None, trainable_params=200, duration_s=3.0,
                     choices={"grouping": "spindle", "groups": 2}),
        TrialFactory(stage=s1, index=0, status="failed", score=None, trainable_params=400, kind="baseline",
                     choices={"grouping": "spindle", "groups": 4}, design=design_document(layers=[
                         {"adapter": 4, "lora": 2}, {}, {"prefix": 2, "bitfit": True}, {"lora": 1}])),
    ]
    return search, s0, s1, rows


def trial_ids(api, search, **params) -> list[int]:
    response = api.get(reverse("api:search-trials", args=[search.pk]), params)
    assert response.status_code == 200, response.json()
    return [t["id"] for t in response.json()["results"]]


def test_trial_list_sorts_with_missing_values_last(api, trials):
    search, s0, s1, (a, b, c, d) = trials
    assert trial_ids(api, search) == [a.pk, b.pk, c.pk, d.pk]
    assert trial_ids(api, search, ordering="-score") == [b.pk, a.pk, c.pk, d.pk]
    assert trial_ids(api, search, ordering="score") == [a.pk, b.pk, c.pk, d.pk]
    assert trial_ids(api, search, ordering="trainable_params") == [b.pk, c.pk, a.pk, d.pk]
    assert trial_ids(api, search, ordering="-duration_s") == [a.pk, c.pk, b.pk, d.pk]
    assert trial_ids(api, search, ordering="-index") == [d.pk, c.pk, b.pk, a.pk]
    bad = api.get(reverse("api:search-trials", args=[search.pk]), {"ordering": "design"})
    assert bad.status_code == 400 and "ordering" in bad.json()


def test_trial_list_filters(api, trials):
    search, s0, s1, (a, b, c, d) = trials
    assert trial_ids(api, search, status="succeeded,running") == [a.pk, b.pk, c.pk]
    assert trial_ids(api, search, stage=s1.pk) == [d.pk]
    assert trial_ids(api, search, kind="baseline") == [d.pk]
    assert trial_ids(api, search, **{"choice.grouping": "spindle"}) == [a.pk, c.pk, d.pk]
    assert trial_ids(api, search, **{"choice.grouping": "spindle", "choice.groups": "4"}) == [a.pk, d.pk]
    Trial.objects.filter(pk=c.pk).update(choices={"grouping": "spindle", "assignment.G1": "A+L"})
    assert trial_ids(api, search, **{"choice.assignment.G1": "A+L"}) == [c.pk]
    bad = api.get(reverse("api:search-trials", args=[search.pk]), {"status": "exploded"})
    assert bad.status_code == 400 and "status" in bad.json()


def test_trial_list_pages_and_rows(api, trials):
    search, s0, s1, (a, b, c, d) = trials
    body = api.get(reverse("api:search-trials", args=[search.pk]), {"page_size": 3, "page": 2}).json()
    assert body["count"] == 4 and [t["id"] for t in body["results"]] == [d.pk]
    row = body["results"][0]
    assert row["stage_key"] == "S1" and row["strategies"] == ["AL", "", "PB", "L"] and "design" not in row
    detail = api.get(reverse("api:trial-detail", args=[d.pk])).json()
    assert detail["design"]["layers"][0] == {"adapter": 4, "lora": 2}


def test_trial_list_reads_a_bounded_number_of_queries(api, trials, django_assert_max_num_queries):
    search = trials[0]
    for i in range(60):
        TrialFactory(stage=trials[1], index=100 + i)
    with django_assert_max_num_queries(6):
        body = api.get(reverse("api:search-trials", args=[search.pk]), {"ordering": "-score"}).json()
    assert len(body["results"]) == 50


# --- metrics -----------------------------------------------------------------------------------

def test_metrics_after_cursor_latest_attempt_only(api, user):
    trial = TrialFactory(stage=StageFactory(search=SearchFactory(owner=user)), attempt=2)
    MetricPointFactory(trial=trial, attempt=1, step=1, value=9.0)  # an earlier attempt: never shown
    points = [MetricPointFactory(trial=trial, attempt=2, step=step, value=step / 10) for step in range(5)]
    url = reverse("api:search-metrics", args=[trial.search_id])
    body = api.get(url).json()
    assert body["more"] is False and body["downsampled"] is False and body["next"] == points[-1].pk
    assert body["series"] == [{"trial": trial.pk, "attempt": 2, "name": "sst2:loss",
                               "steps": [0, 1, 2, 3, 4], "values": [0.0, 0.1, 0.2, 0.3, 0.4]}]
    after = api.get(url, {"after": points[2].pk}).json()
    assert after["series"][0]["steps"] == [3, 4]
    assert api.get(url, {"after": body["next"]}).json() == {"next": body["next"], "more": False, "scanned": 0,
                                                            "returned": 0, "downsampled": False, "series": []}


def test_metrics_downsample_keeps_first_and_last_and_pages_by_cursor(api, user):
    search = SearchFactory(owner=user)
    stage = StageFactory(search=search)
    trial = TrialFactory(stage=stage)
    other_stage_trial = TrialFactory(stage=StageFactory(search=search))
    MetricPointFactory.create_batch(3, trial=other_stage_trial)
    for step in range(300):
        MetricPointFactory(trial=trial, step=step, value=float(step))
    url = reverse("api:search-metrics", args=[search.pk])
    body = api.get(url, {"stage": stage.pk, "max_points": 10}).json()
    # max_points 10 reads at most 50 points per call: the first 50 steps, downsampled to 10
    assert body["more"] is True and body["downsampled"] is True and body["scanned"] == 50
    steps = body["series"][0]["steps"]
    assert len(steps) == 10 and steps[0] == 0 and steps[-1] == 49
    seen = list(steps)
    cursor = body["next"]
    while body["more"]:
        body = api.get(url, {"stage": stage.pk, "max_points": 10, "after": cursor}).json()
        cursor = body["next"]
        seen += body["series"][0]["steps"] if body["series"] else []
    assert seen[-1] == 299 and len(seen) <= 60
    one = api.get(url, {"trial": other_stage_trial.pk}).json()
    assert [s["trial"] for s in one["series"]] == [other_stage_trial.pk]


def test_metrics_rejects_trials_and_stages_of_other_searches(api, user):
    search = SearchFactory(owner=user)
    elsewhere = TrialFactory(stage=StageFactory(search=SearchFactory(owner=user)))
    url = reverse("api:search-metrics", args=[search.pk])
    assert api.get(url, {"trial": elsewhere.pk}).status_code == 404
    assert api.get(url, {"stage": elsewhere.stage_id}).status_code == 404
    assert "max_points" in api.get(url, {"max_points": 0}).json()


# --- downloads ---------------------------------------------------------------------------------

def test_downloads_are_attachments_from_artifacts(api, world):
    search = world["search"]
    response = api.get(reverse("api:download", args=[search.pk, "report.md"]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="search{search.pk}-report.md"'
    assert b"".join(response.streaming_content) == b"# report"
    weights = api.get(reverse("api:download-weights", args=[search.pk, "mine"]))
    assert weights.status_code == 200 and b"".join(weights.streaming_content) == b"weights"
    assert weights["Content-Disposition"] == f'attachment; filename="search{search.pk}-weights-mine.safetensors"'
    export = api.get(reverse("api:download-peft", args=[search.pk, "mine"]))
    assert export.status_code == 200 and b"".join(export.streaming_content) == b"PK"
    assert api.get(reverse("api:download-weights", args=[search.pk, "other"])).status_code == 404
    listing = api.get(reverse("api:search-downloads", args=[search.pk])).json()
    assert reverse("api:download", args=[search.pk, "design.json"]) in {a["download_url"] for a in listing}
    assert api.get(reverse("api:download", args=[search.pk, "secrets.txt"])).status_code == 404


def test_downloads_under_asgi_go_out_in_blocks_read_as_the_client_takes_them(user, world, media):
    # Daphne (manage.py runserver, a split deployment) serves HTTP through Django's ASGI handler. Given
    # the open file, that handler read it whole into memory before sending a byte, and warned.
    import warnings

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    search = world["search"]
    (media / "w.safetensors").write_bytes(b"w" * 200_000)  # several of FileResponse's 4 KB blocks
    client = AsyncClient()
    client.force_login(user)

    async def fetch(url):
        response = await client.get(url)
        return response, b"".join([block async for block in response])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response, body = async_to_sync(fetch)(reverse("api:download-weights", args=[search.pk, "mine"]))
        report, report_body = async_to_sync(fetch)(reverse("api:download", args=[search.pk, "report.md"]))
    assert response.status_code == 200 and response.is_async
    assert body == b"w" * 200_000 and response["Content-Length"] == "200000"
    assert response["Content-Disposition"] == f'attachment; filename="search{search.pk}-weights-mine.safetensors"'
    assert report.status_code == 200 and report_body == b"# report"
    assert not [w for w in caught if "iterators" in str(w.message)], [str(w.message) for w in caught]


def test_usage_snippet_is_python(api, world):
    response = api.get(reverse("api:download", args=[world["search"].pk, "usage.py"]))
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    source = response.content.decode()
    compile(source, "usage.py", "exec")
    assert "load_result" in source and "weights-{TASK}.safetensors" in source and "TASK = 'mine'" in source
    assert "PeftModel" in source and "pefs_engine" in source and "tasks.peft" not in source


def selected_trial(search, design):
    final = StageFactory(search=search, key="final")
    return TrialFactory(stage=final, kind=Trial.Kind.SELECTED, status="succeeded", design=design)


def test_peft_export_of_a_non_lora_design_is_409_with_the_reason(api, user, media):
    search = SearchFactory(owner=user, tasks=[TaskFactory(name="sst2")])
    selected_trial(search, design_document(layers=[{"adapter": 4}, {"lora": 2}, {}, {"prefix": 1}]))
    response = api.get(reverse("api:download-peft", args=[search.pk, "sst2"]))
    assert response.status_code == 409 and "adapter, prefix" in response.json()["detail"]
    assert "PeftModel" not in api.get(reverse("api:download", args=[search.pk, "usage.py"])).content.decode()


def test_missing_lora_export_is_404(api, user, media):
    search = SearchFactory(owner=user)
    selected_trial(search, design_document())
    response = api.get(reverse("api:download-peft", args=[search.pk, "sst2"]))
    assert response.status_code == 404 and "sst2" in response.json()["detail"]


def test_downloads_before_the_final_design_are_409(api, user, media):
    search = SearchFactory(owner=user)
    urls = [reverse("api:download", args=[search.pk, name]) for name in ("design.json", "usage.py", "report.md")]
    urls += [reverse("api:download-peft", args=[search.pk, "sst2"]),
             reverse("api:download-weights", args=[search.pk, "sst2"])]
    for url in urls:
        response = api.get(url)
        assert response.status_code == 409, url
        assert "final" in response.json()["detail"] or "finishes" in response.json()["detail"]


def test_missing_artifact_file_is_404(api, world, media):
    (media / "design.json").unlink()
    response = api.get(reverse("api:download", args=[world["search"].pk, "design.json"]))
    assert response.status_code == 404 and "missing" in response.json()["detail"]
    artifact = world["search"].artifacts.get(kind="report_md")
    artifact.path = "../../etc/passwd"
    artifact.save()
    assert api.get(reverse("api:download", args=[world["search"].pk, "report.md"])).status_code == 404


def test_json_responses_are_json(api, world):
    response = api.get(reverse("api:search-detail", args=[world["search"].pk]))
    assert response["Content-Type"] == "application/json"
    json.loads(response.content)
