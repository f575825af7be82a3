"""Fair queueing between searches (issue 12): a search has at most PEFS_SENT_PER_SEARCH messages in the
broker; each claim sends its next trial to the back of the queue, so searches take turns."""
from __future__ import annotations

import pytest

from django.urls import reverse

from experiments import services
from experiments.models import Trial
from experiments.services import queue
from tests.factories import SearchFactory, StageFactory, TrialFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(monkeypatch):
    """The broker's queue, first in first out: (trial id, attempt, rung) in the order sent."""
    sent: list[tuple[int, int, int]] = []
    monkeypatch.setattr(queue, "enqueue_on_commit", lambda deliveries: sent.extend(tuple(d) for d in deliveries))
    return sent


def _stage_of(n: int, **search_fields):
    search = SearchFactory(**search_fields)
    stage = StageFactory(search=search)
    return search, [TrialFactory(search=search, stage=stage, index=i, status=Trial.Status.QUEUED, attempt=0)
                    for i in range(n)]


def _work_through(broker, claims: int) -> list[int]:
    """A single worker taking messages off the front of the queue: the trial ids it ran, in order."""
    ran = []
    while broker and len(ran) < claims:
        trial_id, attempt, _ = broker.pop(0)
        if services.trial_claim(trial_id=trial_id, attempt=attempt, worker="w") is not None:
            ran.append(trial_id)
    return ran


def test_a_second_search_does_not_wait_behind_the_first_ones_whole_stage(settings, broker):
    settings.PEFS_SENT_PER_SEARCH = 2
    first, first_trials = _stage_of(10)
    services.trials_enqueue(trials=first_trials)
    # Only two of the ten are in the broker; the rest wait their turn with no message
    assert [d[0] for d in broker] == [t.pk for t in first_trials[:2]]
    assert Trial.objects.filter(search=first, sent_at__isnull=True, status="queued").count() == 8
    second, second_trials = _stage_of(3)
    services.trials_enqueue(trials=second_trials)

    ran = _work_through(broker, claims=6)
    # The second search's first trial runs third, not eleventh; the searches take turns of at most
    # two (the window) after that
    owner = {t.pk: "A" for t in first_trials} | {t.pk: "B" for t in second_trials}
    assert "".join(owner[t] for t in ran) == "AABBAA"
    assert ran.index(second_trials[0].pk) == 2


def test_one_search_alone_keeps_its_window_full_until_its_stage_is_sent(settings, broker):
    settings.PEFS_SENT_PER_SEARCH = 3
    search, trials = _stage_of(5)
    services.trials_enqueue(trials=trials)
    assert len(broker) == 3
    ran = _work_through(broker, claims=5)
    assert ran == [t.pk for t in trials]  # in stage order, none skipped, none twice
    assert not Trial.objects.filter(search=search, sent_at__isnull=True).exists()


def test_cancelling_a_sent_trial_frees_its_turn(settings, broker):
    settings.PEFS_SENT_PER_SEARCH = 1
    search, trials = _stage_of(3)
    services.trials_enqueue(trials=trials)
    assert [d[0] for d in broker] == [trials[0].pk]
    services.trial_cancel(trial=trials[0])
    assert [d[0] for d in broker] == [trials[0].pk, trials[1].pk]


def test_the_search_page_shows_where_its_next_trial_stands(settings, broker, client, user):
    settings.PEFS_SENT_PER_SEARCH = 2
    first, first_trials = _stage_of(5)
    services.trials_enqueue(trials=first_trials)
    second, second_trials = _stage_of(4, owner=user)
    services.trials_enqueue(trials=second_trials)
    client.force_login(user)
    response = client.get(reverse("search-status", args=[second.pk]))
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    text = " ".join(html.split())
    assert 'id="queue-position"' in text
    assert "2 trials of other searches are ahead of this search's next trial" in text
    assert "2 of its 4 queued trials are in the broker" in text
