"""Fixtures shared by the web side's tests."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api(user) -> APIClient:
    """An API client authenticated as `user`."""
    client = APIClient()
    client.force_authenticate(user)
    return client
