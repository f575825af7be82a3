"""An upload can carry its own selection and report files (issue 12: a 32-row upload was scored on
3 held-out rows). The form and the API take them alike; a bad one is refused naming its field and
leaves no file and no row; the answer says where each role's examples come from."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.urls import reverse

from experiments.models import Task

pytestmark = pytest.mark.django_db


def jsonl(name: str, rows: int, *, label: str = "label", start: int = 0) -> io.BytesIO:
    lines = [json.dumps({"text": f"{name} sentence {i}", label: "pos" if i % 2 else "neg"})
             for i in range(start, start + rows)]
    handle = io.BytesIO(("\n".join(lines) + "\n").encode())
    handle.name = name
    return handle


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_the_form_takes_three_files_and_says_where_each_role_comes_from(client, user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    client.force_login(user)
    html = client.post(reverse("task-upload"), {
        "upload-name": "reviews", "upload-text_columns": ["text"], "upload-label_column": "label",
        "upload-columns": ["text", "label"], "upload-file": jsonl("train.jsonl", 40),
        "upload-selection_file": jsonl("select.jsonl", 12), "upload-report_file": jsonl("dev.jsonl", 30),
    }).content.decode()
    assert "Task <strong>reviews</strong> added" in html
    # nothing is held out of the training file: each role has its own file and its size is shown
    assert ("training: 40 examples from train.jsonl; selection: 12 examples from select.jsonl; "
            "report: 30 examples from dev.jsonl.") in html
    task = Task.objects.get(owner=user, name="reviews")
    spec = task.spec
    for key in ("train_path", "selection_path", "eval_path"):
        assert (tmp_path / spec[key]).is_file()
    assert len({spec["train_path"], spec["selection_path"], spec["eval_path"]}) == 3
    assert len(stored_files(tmp_path)) == 3


def test_the_api_takes_three_files(api, user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    response = api.post("/api/tasks/", {
        "name": "reviews", "text_columns": "text", "label_column": "label", "file": jsonl("train.jsonl", 40),
        "selection_file": jsonl("select.jsonl", 12), "report_file": jsonl("dev.jsonl", 30)}, format="multipart")
    assert response.status_code == 201, response.content
    assert "report: 30 examples from dev.jsonl" in response.json()["notes"]
    spec = Task.objects.get(pk=response.json()["id"]).spec
    assert spec["selection_path"] and spec["eval_path"]
    assert len(stored_files(tmp_path)) == 3


def test_a_training_file_alone_holds_both_roles_out_and_says_so(client, user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    client.force_login(user)
    html = client.post(reverse("task-upload"), {
        "upload-name": "reviews", "upload-text_columns": ["text"], "upload-label_column": "label",
        "upload-columns": ["text", "label"], "upload-file": jsonl("train.jsonl", 40)}).content.decode()
    # 4 of 40 held out for the report set, 4 of the other 36 for the selection set
    assert ("training: 32 examples from train.jsonl; selection: 4 examples held out of train.jsonl; "
            "report: 4 examples held out of train.jsonl.") in html


def test_a_bad_report_file_is_refused_naming_the_field_and_leaves_nothing(api, client, user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    response = api.post("/api/tasks/", {
        "name": "reviews", "text_columns": "text", "label_column": "label", "file": jsonl("train.jsonl", 40),
        "report_file": jsonl("dev.jsonl", 30, label="gold")}, format="multipart")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == ["report_file"], errors
    assert "dev.jsonl" in errors["report_file"][0] and "'label' not found" in errors["report_file"][0]
    assert "pefs-upload" not in json.dumps(errors)  # the user's file name, never the staged path
    assert not Task.objects.filter(name="reviews").exists()
    assert stored_files(tmp_path) == []
    # the form answers the same, in the report file's own error slot
    client.force_login(user)
    html = client.post(reverse("task-upload"), {
        "upload-name": "reviews", "upload-text_columns": ["text"], "upload-label_column": "label",
        "upload-columns": ["text", "label"], "upload-file": jsonl("train.jsonl", 40),
        "upload-report_file": jsonl("dev.csv", 30)}).content.decode()
    assert 'id="upload-err-report_file" hx-swap-oob="true"' in html
    assert "dev.csv: is CSV but the training file is JSONL" in html
    assert not Task.objects.filter(name="reviews").exists() and stored_files(tmp_path) == []


def test_the_preview_offers_the_optional_files(client, user):
    client.force_login(user)
    html = client.post(reverse("task-preview"), {"upload-file": jsonl("train.jsonl", 5)}).content.decode()
    assert 'name="upload-selection_file"' in html and 'name="upload-report_file"' in html
