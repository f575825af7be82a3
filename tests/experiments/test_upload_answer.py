"""The upload's answer (issue 12): it says how many evaluation examples the task has and what one
is worth, flags a set too small to separate designs, and swaps out-of-band only into elements that
exist on the page (no htmx:oobErrorNoTarget)."""
from __future__ import annotations

import io

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def csv_upload(rows: int) -> io.BytesIO:
    handle = io.BytesIO(("text,label\n" + "".join(f"sentence {i},{'pos' if i % 2 else 'neg'}\n"
                                                  for i in range(rows))).encode())
    handle.name = "reviews.csv"
    return handle


def post_upload(client, rows: int, **extra):
    return client.post(reverse("task-upload"), {
        "upload-name": "reviews", "upload-text_columns": ["text"], "upload-label_column": "label",
        "upload-columns": ["text", "label"], "upload-file": csv_upload(rows), **extra}).content.decode()


def test_a_small_upload_is_flagged_with_what_one_example_is_worth(client, user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    client.force_login(user)
    html = post_upload(client, 40)
    assert "Task <strong>reviews</strong> added" in html
    # 40 rows: 4 held out for the report set, 4 of the other 36 for the selection set
    assert "4 report examples (one example = 25.00 points)" in html
    assert 'id="upload-too-small"' in html and "Too small to separate designs" in html
    # the preview is swapped out, and with it its column pickers' error slots: none is targeted
    assert 'id="upload-err-text_columns"' not in html and 'id="upload-err-label_column"' not in html


def test_a_large_enough_upload_is_not_flagged(client, user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    client.force_login(user)
    html = post_upload(client, 2400)
    assert "240 report examples (one example = 0.42 points)" in html
    assert 'id="upload-too-small"' not in html


def test_a_refusal_targets_the_column_pickers_only_when_a_preview_showed_them(client, user, settings, tmp_path):
    settings.UPLOAD_ROOT = str(tmp_path)
    client.force_login(user)
    shown = post_upload(client, 40, **{"upload-label_column": ""})
    assert 'id="upload-err-label_column" hx-swap-oob="true"' in shown
    without_preview = client.post(reverse("task-upload"), {"upload-name": ""}).content.decode()
    assert 'id="upload-err-name" hx-swap-oob="true"' in without_preview
    assert "upload-err-label_column" not in without_preview and "upload-err-text_columns" not in without_preview
