"""Password guessing is limited per (username, address) at the login form and the token endpoint,
and the token endpoint also per address; the lockout leaves other addresses and accounts alone."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

LIMIT = settings.AXES_FAILURE_LIMIT


def log_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


@pytest.mark.django_db
def test_the_login_form_locks_a_username_and_address_out_after_repeated_wrong_passwords(user):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    # Given failed logins up to the limit, each answered as a plain wrong password
    for _ in range(LIMIT - 1):
        assert log_in(attacker, "alice", "wrong-guess").status_code == 200
    # When the limit is reached, the pair is locked out: even the right password answers 429
    assert log_in(attacker, "alice", "wrong-guess").status_code == 429
    assert log_in(attacker, "alice", "alice-password-1").status_code == 429
    # Then the same account still logs in from another address
    elsewhere = log_in(Client(REMOTE_ADDR="198.51.100.4"), "alice", "alice-password-1")
    assert elsewhere.status_code == 302 and elsewhere.url == reverse("search-list")


@pytest.mark.django_db
def test_the_token_endpoint_locks_out_repeated_wrong_passwords_with_a_429(user, other_user):
    url = reverse("api:token")
    attacker = APIClient(REMOTE_ADDR="203.0.113.8")
    answers = [attacker.post(url, {"username": "alice", "password": "wrong"}, format="json").status_code
               for _ in range(LIMIT)]
    assert answers == [400] * (LIMIT - 1) + [429]
    locked = attacker.post(url, {"username": "alice", "password": "alice-password-1"}, format="json")
    assert locked.status_code == 429
    # Another account from the same address, and the same account from another address, still work
    ok = attacker.post(url, {"username": "mallory", "password": "mallory-password-1"}, format="json")
    assert ok.status_code == 200 and ok.json()["token"]
    other = APIClient(REMOTE_ADDR="198.51.100.5")
    assert other.post(url, {"username": "alice", "password": "alice-password-1"}, format="json").status_code == 200


@pytest.mark.django_db
def test_the_token_endpoint_takes_a_bounded_number_of_requests_per_address(user):
    url = reverse("api:token")
    rate = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login"].split("/")[0])
    sprayer = APIClient(REMOTE_ADDR="203.0.113.9")
    # Each guess a different username, so no (username, address) pair reaches the lockout
    answers = [sprayer.post(url, {"username": f"user{i}", "password": "guess"}, format="json").status_code
               for i in range(rate + 1)]
    assert answers[:rate] == [400] * rate and answers[rate] == 429
    assert APIClient(REMOTE_ADDR="198.51.100.6").post(
        url, {"username": "alice", "password": "alice-password-1"}, format="json").status_code == 200
