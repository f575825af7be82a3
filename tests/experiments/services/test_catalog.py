"""Backbone registration: who may register what is decided before any file is looked at or any
child process starts; a hub id is checked for syntax and, offline, for a cached copy."""
from __future__ import annotations

import subprocess
import time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from huggingface_hub import constants as hub_constants

from experiments import services
from experiments.models import Backbone
from experiments.services import catalog
from tasks.peft.budget import BackboneShape
from tests.factories import backbone_shape

pytestmark = pytest.mark.django_db


def _forbid(*args, **kwargs):
    raise AssertionError("the request must be refused before this is called")


@pytest.fixture
def no_probe(monkeypatch):
    """Fail the test if registration measures a model, resolves a path or starts a process."""
    monkeypatch.setattr(catalog, "backbone_introspect", _forbid)
    monkeypatch.setattr(catalog, "model_folder_allowed", _forbid)
    monkeypatch.setattr(catalog.subprocess, "run", _forbid)


@pytest.fixture
def measured(monkeypatch):
    """Introspection that records what it was asked to load and answers a small shape."""
    calls: list[str] = []

    def introspect(name_or_path):
        calls.append(name_or_path)
        return BackboneShape.from_dict(backbone_shape(name=name_or_path))

    monkeypatch.setattr(catalog, "backbone_introspect", introspect)
    return calls


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_user("root", password="pw-root-123", is_staff=True)


@pytest.fixture
def model_dirs(settings, tmp_path):
    root = tmp_path / "models"
    (root / "tiny").mkdir(parents=True)
    settings.PEFS_MODEL_DIRS = [root]
    return root


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc", "~/models", "../../etc/passwd", "./tasks",
                                  "var/uploads/1/x.csv", "C:\\models\\x"])
def test_a_user_who_is_not_an_administrator_cannot_name_a_local_path(api, no_probe, path):
    response = api.post(reverse("api:backbone-list"), {"name_or_path": path}, format="json")
    assert response.status_code == 403
    assert "administrators" in response.json()["detail"]
    assert not Backbone.objects.exists()


def test_an_administrator_may_register_a_folder_under_a_model_directory(admin, model_dirs, measured):
    backbone = services.backbone_register(owner=admin, name_or_path=str(model_dirs / "tiny") + "/")
    assert measured == [str((model_dirs / "tiny").resolve())]
    assert backbone.name_or_path == str((model_dirs / "tiny").resolve()) and backbone.display_name == "tiny"


@pytest.mark.parametrize("path", ["/etc/passwd", "{root}/../secret", "relative/inside/models"])
def test_an_administrator_is_limited_to_the_model_directories(admin, model_dirs, measured, path):
    with pytest.raises(ValidationError) as info:
        services.backbone_register(owner=admin, name_or_path=path.format(root=model_dirs))
    message = info.value.message_dict["name_or_path"][0]
    assert "PEFS_MODEL_DIRS" in message or "absolute path" in message
    assert measured == []


def test_a_link_inside_a_model_directory_cannot_lead_outside(admin, model_dirs, measured, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (model_dirs / "escape").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValidationError, match="PEFS_MODEL_DIRS"):
        services.backbone_register(owner=admin, name_or_path=str(model_dirs / "escape"))
    assert measured == []


def test_the_command_line_may_name_a_folder_but_still_only_under_the_model_directories(user, model_dirs, measured):
    assert services.backbone_register(owner=user, name_or_path=str(model_dirs / "tiny"), operator=True)
    with pytest.raises(ValidationError, match="PEFS_MODEL_DIRS"):
        services.backbone_register(owner=user, name_or_path="/etc", operator=True)


@pytest.mark.parametrize("name", ["org/na me", "org/" + "x" * 97, "-org/name", "org/name-", "org--x/name",
                                  "org/na..me", "org/name?revision=x", "org/näme", "org/"])
def test_a_malformed_hub_id_is_refused_before_loading(api, no_probe, name):
    response = api.post(reverse("api:backbone-list"), {"name_or_path": name}, format="json")
    assert response.status_code == 400
    assert "Hugging Face id is org/name" in response.json()["name_or_path"][0]


def test_a_hub_id_may_not_name_a_folder_of_the_server(api, no_probe):
    response = api.post(reverse("api:backbone-list"), {"name_or_path": "tasks"}, format="json")
    assert response.status_code == 400 and "folder of this server" in response.json()["name_or_path"][0]


def test_offline_a_hub_id_missing_from_the_cache_is_refused_at_once(api, monkeypatch, tmp_path):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(catalog.subprocess, "run", _forbid)
    started = time.monotonic()
    response = api.post(reverse("api:backbone-list"), {"name_or_path": "org/not-downloaded"}, format="json")
    assert response.status_code == 400 and time.monotonic() - started < 5
    assert "HF_HUB_OFFLINE" in response.json()["name_or_path"][0]


def test_offline_a_cached_hub_id_is_measured_within_the_time_limit(monkeypatch, settings, tmp_path):
    snapshot = tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--cached" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings.PEFS_INTROSPECT_TIMEOUT_SECONDS = 7
    seen = {}

    def too_slow(args, **kwargs):
        seen.update(args=args, timeout=kwargs["timeout"])
        raise subprocess.TimeoutExpired(args, kwargs["timeout"])

    monkeypatch.setattr(catalog.subprocess, "run", too_slow)
    with pytest.raises(catalog.IntrospectionError, match="more than 7 s"):
        catalog.backbone_introspect("org/cached")
    assert seen["timeout"] == 7 and seen["args"][-1] == "org/cached"


def test_a_registration_that_fails_never_stores_a_backbone(user, monkeypatch):
    monkeypatch.setattr(catalog, "backbone_introspect", lambda name: (_ for _ in ()).throw(OSError("gone")))
    with pytest.raises(ValidationError, match="gone"):
        services.backbone_register(owner=user, name_or_path="org/missing")
    with pytest.raises(PermissionDenied):
        services.backbone_register(owner=user, name_or_path="/srv/models/x")
    assert not Backbone.objects.exists()
