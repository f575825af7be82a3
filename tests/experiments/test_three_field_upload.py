"""A three-field (WiC-style) upload through the API and the form, refused in the user's terms with
four, and a result whose downloaded usage snippet joins the fields exactly as training did."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from experiments import services
from experiments.api.downloads import usage_snippet
from experiments.models import Task, Trial
from experiments.reports import design_document
from tests.factories import SearchFactory, StageFactory, TrialFactory

pytestmark = pytest.mark.django_db

WIC = Path(__file__).resolve().parent.parent / "fixtures" / "wic.jsonl"
FIELDS = ["word", "sentence1", "sentence2"]


def wic_file() -> SimpleUploadedFile:
    return SimpleUploadedFile("wic.jsonl", WIC.read_bytes())


def test_the_api_takes_three_text_columns_and_refuses_four_naming_the_field(api, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    four = api.post("/api/tasks/", {"name": "wic4", "text_columns": ",".join([*FIELDS, "version"]),
                                    "label_column": "label", "file": wic_file()}, format="multipart")
    assert four.status_code == 400
    assert four.json() == {"text_columns": ["Choose one to three text columns, got 4."]}
    assert not list(tmp_path.rglob("*.jsonl"))
    three = api.post("/api/tasks/", {"name": "wic", "text_columns": ",".join(FIELDS), "label_column": "label",
                                     "file": wic_file()}, format="multipart")
    assert three.status_code == 201, three.content
    assert three.json()["text_columns"] == FIELDS
    assert Task.objects.get(name="wic").spec["text_template"] == "{0}: {1}"


def test_the_form_says_how_three_fields_are_joined(client, user):
    client.force_login(user)
    html = client.post(reverse("task-preview"), {"upload-file": wic_file()}).content.decode()
    assert "One to three input text columns" in html and "first: second" in html


def test_the_usage_snippet_joins_three_fields_as_training_did(user, settings, tmp_path):
    from tasks.data import TaskSpec, text_segments

    settings.UPLOAD_ROOT = str(tmp_path / "uploads")
    task = services.task_upload(owner=user, name="wic", uploaded_file=wic_file(), text_columns=FIELDS,
                                label_column="label")
    search = SearchFactory(owner=user, tasks=[task])
    TrialFactory(stage=StageFactory(search=search, key="final"), kind=Trial.Kind.SELECTED, status="succeeded")
    document = design_document(search)
    usage = document["provenance"]["tasks"]["wic"]
    assert usage["text_columns"] == FIELDS and usage["text_template"] == "{0}: {1}"
    source = usage_snippet(search=search)
    assert "read as 'word: sentence1' and sentence2 as its pair" in source
    # Run the snippet's reading of the command line (up to loading the model) on the design JSON
    design = tmp_path / "design.json"
    design.write_text(json.dumps(document))
    reading = source[source.index("usage = json.loads"):source.index("# Strict:")]
    given = ["bank", "He sat on the bank.", "She went to the bank."]
    namespace = {"json": json, "sys": sys, "DESIGN": design, "TASK": "wic", "EXAMPLE": []}
    old_argv, sys.argv = sys.argv, ["usage.py", *given]
    try:
        exec(reading, namespace)  # noqa: S102 - our own generated snippet
    finally:
        sys.argv = old_argv
    spec = TaskSpec.from_dict({**task.spec, "train_path": None})
    trained_on = [segment[0] for segment in text_segments(spec, dict(zip(FIELDS, ([g] for g in given))))]
    assert namespace["texts"] == trained_on == ["bank: He sat on the bank.", "She went to the bank."]
