"""The schema and the docs answer an anonymous request as every other endpoint does: 401 with a
WWW-Authenticate header, not 403 (issue 12)."""
from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["api:schema", "api:docs", "api:search-list"])
def test_anonymous_schema_and_docs_are_401_like_the_rest(name):
    response = APIClient().get(reverse(name))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_the_schema_is_served_with_a_token(user):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = api.get(reverse("api:schema"))
    assert response.status_code == 200
    assert b"/api/searches/" in response.content
