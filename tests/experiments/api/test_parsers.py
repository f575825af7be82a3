"""JSON bodies have a size and a depth limit on every JSON endpoint: a 400 that names the limit,
never a RecursionError (a 500) or an unbounded read."""
from __future__ import annotations

import json

import pytest
from django.urls import reverse
from hypothesis import given, settings as hyp_settings, strategies as st
from rest_framework.test import APIClient

from experiments.api.parsers import json_depth, loads_bounded

DEEP = "[" * 50_000 + "]" * 50_000


JSON_ENDPOINTS = [
    ("api:search-list", {}),
    ("api:token", {}),
]


@pytest.mark.django_db
@pytest.mark.parametrize("name,kwargs", JSON_ENDPOINTS)
def test_a_deeply_nested_body_is_a_400_naming_the_limit(api, name, kwargs):
    response = api.post(reverse(name, kwargs=kwargs), DEEP, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper than" in json.dumps(response.json())


@pytest.mark.django_db
def test_the_token_endpoint_refuses_deep_json_anonymously():
    response = APIClient().post(reverse("api:token"), DEEP, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper than" in response.json()["detail"]


@pytest.mark.django_db
def test_an_oversized_body_is_refused_from_its_declared_length(api, settings):
    settings.PEFS_MAX_JSON_BYTES = 1000
    body = json.dumps({"name": "x" * 2000})
    response = api.post(reverse("api:search-list"), body, content_type="application/json")
    assert response.status_code == 400
    assert "larger than 1000 bytes" in response.json()["detail"]


@pytest.mark.django_db
def test_moderately_nested_bodies_still_reach_validation(api):
    # Depth 3 is within the limit: the request is parsed and validated (errors name fields).
    response = api.post(reverse("api:search-list"), {"overrides": {"epochs": [1]}}, format="json")
    assert response.status_code == 400
    assert "nested deeper" not in json.dumps(response.json())


def test_depth_of_values():
    assert json_depth(1) == 0
    assert json_depth([]) == 1
    assert json_depth({"a": [1, {"b": []}]}) == 4


def test_loads_bounded_turns_recursion_into_value_error():
    with pytest.raises(ValueError, match="nested deeper than 32"):
        loads_bounded(DEEP, max_depth=32)
    with pytest.raises(ValueError, match="nested deeper than 2"):
        loads_bounded("[[[1]]]", max_depth=2)
    assert loads_bounded("[[1]]", max_depth=2) == [[1]]


@hyp_settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=20))
def test_loads_bounded_agrees_with_json_within_the_limit(value):
    text = json.dumps(value)
    if json_depth(value) <= 32:
        assert loads_bounded(text, max_depth=32) == value
    else:
        with pytest.raises(ValueError):
            loads_bounded(text, max_depth=32)
