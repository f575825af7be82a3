"""A schema fuzzer (schemathesis) against every operation of the OpenAPI schema, bounded in time:
no generated request, valid or not, may get a 500."""
from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from huggingface_hub import constants as hub_constants
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from experiments.services import catalog
from tests.factories import BackboneFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory

# Per operation and mode: enough to reach every parameter's edge values, small enough for CI
# (about 30 operations x 2 modes x this many in-process calls).
EXAMPLES_PER_OPERATION = 8


def _no_child_process(*args, **kwargs):
    raise AssertionError("an API request started a child process")


@pytest.fixture
def keep_test_connection():
    """The WSGI handler closes the database connection after each request, which would end the
    test's transaction; Django's own test client disconnects the same signal handler."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(user, settings, tmp_path, keep_test_connection, monkeypatch):
    settings.ALLOWED_HOSTS = ["*"]
    # A generated backbone id that passes the syntax check is refused at once as not cached, never
    # measured in a child process (each took ~25 s and made this test last minutes).
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(catalog.subprocess, "run", _no_child_process)
    # The token endpoint hashes every guessed password; a fast hasher keeps the fuzzer's budget
    # for the requests themselves.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "artifacts"
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    task = TaskFactory(owner=user, name="mine")
    search = SearchFactory(owner=user, backbone=BackboneFactory(owner=user), tasks=[task])
    TrialFactory(stage=StageFactory(search=search, order=0, key="S0"))
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(fuzz_world, mode):
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/schema/", app, headers=fuzz_world)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the whole API, not an empty schema

    for operation in operations:
        @hyp_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            response = case.call(headers=fuzz_world)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}")

        try:
            fuzz()
        except Unsatisfiable:
            # Negative mode cannot always build an invalid request (an operation with no
            # parameters and no body); nothing to fuzz there.
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert not failures, "\n".join(failures[:20])
