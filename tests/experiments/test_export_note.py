"""The report's downloads say why a design has no Hugging Face PEFT export in plain terms: the
strategies it uses (issue 12: a prefix-only design was said to "also use prefix")."""
from __future__ import annotations

import pytest
from django.urls import reverse

from experiments.models import Trial
from tests.factories import SearchFactory, StageFactory, TaskFactory, TrialFactory, design_document

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("layers", "uses"), [
    ([{"prefix": 2}, {}, {"prefix": 1}, {}], "this one uses prefix"),
    ([{"lora": 2, "adapter": 4}, {}, {"bitfit": True}, {}], "this one uses adapter, bitfit, lora"),
])
def test_the_export_note_names_the_strategies_the_design_uses(client, user, layers, uses):
    search = SearchFactory(owner=user, tasks=[TaskFactory(name="sst2")])
    final = StageFactory(search=search, key="final", component="", status="completed")
    TrialFactory(stage=final, kind=Trial.Kind.SELECTED, status="succeeded", score=80.0, design=design_document(
        layers=layers), choices={"arm": "selected", "task": "sst2", "seed": 0})
    client.force_login(user)
    body = client.get(reverse("search-report", args=[search.pk])).content.decode()
    assert f"not expressible: PEFT exports LoRA-only designs, {uses}" in body
    assert "also uses" not in body
