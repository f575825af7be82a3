"""Uploads: a refused file leaves nothing on disk, and the upload form and the API refuse the same
files with the same field and message (one validation path, experiments.services.catalog)."""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from django.urls import reverse

from experiments.models import Task

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hostile_uploads"

# issue 12: no label column; the form took the last column ("hypothesis") for the label and made
# a 40-class task from 40 rows.
NO_LABEL_COLUMN = "premise,hypothesis\n" + "".join(f"a premise {i},hypothesis number {i}\n" for i in range(40))


def _generated_hostile_files() -> dict[str, bytes]:
    return {
        "deeply_nested.jsonl": b'{"text": "a", "label": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
        "many_columns.csv": (",".join(f"c{i}" for i in range(100_002)) + "\n").encode(),
        "new_key_every_row.jsonl": b"".join(b'{"text": "t", "label": 1, "k%d": 1}\n' % i for i in range(20_000)),
        "no_label_column.csv": NO_LABEL_COLUMN.encode(),
    }


def hostile_files() -> dict[str, bytes]:
    kept = {path.name: path.read_bytes() for path in sorted(FIXTURES.iterdir()) if path.name != "README.md"}
    return {**kept, **_generated_hostile_files()}


def upload(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def folders(settings, tmp_path, monkeypatch):
    """The uploads folder and the temporary folder uploads are staged in, both empty."""
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    settings.UPLOAD_ROOT.mkdir()
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    return settings.UPLOAD_ROOT, staging


def _label_for(name: str) -> str:
    return "hypothesis" if name == "no_label_column.csv" else "label"


def _text_for(name: str) -> str:
    return "premise" if name == "no_label_column.csv" else "text"


@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_a_refused_upload_leaves_nothing_on_disk(api, client, user, folders, name):
    uploads, staging = folders
    content = hostile_files()[name]
    fields = {"name": "hostile", "text_columns": _text_for(name), "label_column": _label_for(name)}
    response = api.post(reverse("api:task-list"), {**fields, "file": upload(name, content)}, format="multipart")
    assert response.status_code == 400, response.content[:300]

    client.force_login(user)
    columns = [_text_for(name), _label_for(name)]
    form_response = client.post(reverse("task-upload"), {
        "upload-name": "hostile", "upload-text_columns": [_text_for(name)],
        "upload-label_column": _label_for(name), "upload-columns": columns, "upload-file": upload(name, content)})
    assert form_response.status_code == 200 and form_response.context["upload_form"].errors
    assert form_response.context["task"] is None

    preview = api.post(reverse("api:task-preview"), {"file": upload(name, content)}, format="multipart")
    assert preview.status_code in (200, 400)
    assert files_under(uploads) == [] and files_under(staging) == []
    assert not Task.objects.exists()


def test_the_form_and_the_api_refuse_a_file_without_a_label_column_alike(api, client, user, folders):
    file = NO_LABEL_COLUMN.encode()
    response = api.post(reverse("api:task-list"), {
        "name": "nli", "text_columns": "premise", "label_column": "hypothesis",
        "file": upload("nli.csv", file)}, format="multipart")
    assert response.status_code == 400
    api_message = response.json()["label_column"][0]
    assert "40 different values in 40 rows" in api_message

    client.force_login(user)
    form = client.post(reverse("task-upload"), {
        "upload-name": "nli", "upload-text_columns": ["premise"], "upload-label_column": "hypothesis",
        "upload-columns": ["premise", "hypothesis"], "upload-file": upload("nli.csv", file)}).context["upload_form"]
    assert form.errors["label_column"] == [api_message]
    assert not Task.objects.exists() and files_under(folders[0]) == []


def test_the_upload_form_does_not_guess_a_label_column_a_file_lacks(api, client, user, folders):
    client.force_login(user)
    response = client.post(reverse("task-preview"), {"upload-file": upload("nli.csv", NO_LABEL_COLUMN.encode())})
    form = response.context["upload_form"]
    assert form.initial["label_column"] is None
    assert form.fields["label_column"].choices[0] == ("", "Choose the label column")


def test_an_accepted_upload_is_stored_once_under_the_owners_folder(api, user, folders):
    uploads, staging = folders
    text = "text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(40))
    response = api.post(reverse("api:task-list"), {"name": "reviews", "text_columns": "text", "label_column": "label",
                                                   "file": upload("reviews.csv", text.encode())}, format="multipart")
    assert response.status_code == 201, response.json()
    task = Task.objects.get()
    assert [p.relative_to(uploads) for p in files_under(uploads) if p.is_file()] == [Path(task.path)]
    assert (uploads / task.path).read_text() == text and files_under(staging) == []
