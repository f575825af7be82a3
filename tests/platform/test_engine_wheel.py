"""The engine wheel (pefs_web.engine_wheel): what it ships, what it refuses, how it is cached and served."""
from __future__ import annotations

import zipfile

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from pefs_web import engine_wheel as ew


def test_staged_engine_is_tasks_peft_renamed_and_versioned(tmp_path):
    package = ew.stage(tmp_path / "project") / "src" / "pefs_engine"
    sources = {p.relative_to(ew.ENGINE_SOURCE) for p in ew.ENGINE_SOURCE.glob("*.py")}
    assert {p.relative_to(package / "peft") for p in (package / "peft").glob("*.py")} == sources
    staged = "".join(p.read_text() for p in (package / "peft").glob("*.py"))
    assert "tasks." not in staged and '"pefs_engine.peft.persistence"' in staged
    assert f'__version__ = "{ew.pefs_version()}"' in (package / "__init__.py").read_text()


def test_staging_refuses_an_engine_that_imports_the_rest_of_pefs(tmp_path, monkeypatch):
    source = tmp_path / "peft"
    source.mkdir()
    (source / "__init__.py").write_text("from tasks.peft.budget import STRATEGIES\n")
    (source / "leaky.py").write_text("from tasks.data import load_task\n")
    monkeypatch.setattr(ew, "ENGINE_SOURCE", source)
    with pytest.raises(ew.EngineBuildError) as err:
        ew.stage(tmp_path / "project")
    assert "leaky.py" in str(err.value) and "tasks.data" in str(err.value)


def test_engine_wheel_is_built_once_per_source_digest(tmp_path, monkeypatch):
    built = []
    real_build = ew.build
    monkeypatch.setattr(ew, "build", lambda out: built.append(out) or real_build(out))
    first = ew.engine_wheel(tmp_path / "cache")
    again = ew.engine_wheel(tmp_path / "cache")
    assert first == again and len(built) == 1
    assert first.parent.name == ew.source_digest()[:16] and first.name == ew.wheel_name()
    with zipfile.ZipFile(first) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"pefs_engine-{ew.pefs_version()}.dist-info/METADATA").decode()
    assert "pefs_engine/peft/persistence.py" in names and not any(n.startswith("tasks/") for n in names)
    assert "Name: pefs-engine" in metadata and "Requires-Dist: torch" in metadata


def test_the_snippet_knows_the_engine_default_backbone():
    from experiments.api.downloads import BUNDLED_BACKBONE
    from tasks.peft.backbones import DEFAULT_BACKBONE

    assert BUNDLED_BACKBONE == DEFAULT_BACKBONE


@pytest.mark.django_db
def test_engine_wheel_download_needs_a_login_and_the_current_name(user):
    anonymous = APIClient().get(reverse("api:engine-wheel", args=[ew.wheel_name()]))
    assert anonymous.status_code == 401
    client = APIClient()
    client.force_authenticate(user)
    stale = client.get(reverse("api:engine-wheel", args=["pefs_engine-0.0.1-py3-none-any.whl"]))
    assert stale.status_code == 404 and ew.wheel_name() in stale.json()["detail"]
