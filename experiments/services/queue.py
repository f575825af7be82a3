"""Queueing trials: mark them queued, and send their Celery messages once the transaction commits.

The message goes to the Celery job by name ("experiments.run_trial", routed to the "gpu" queue by
CELERY_TASK_ROUTES), so the web side never imports the worker's code.

Fair queueing between searches: the broker's queue is first in, first out, so sending a whole stage
at once would make every other search wait behind it. A queued trial is therefore *held*
(``sent_at`` empty) until its search has fewer than ``PEFS_SENT_PER_SEARCH`` messages in the
broker; each claim frees a slot and sends the search's next held trial (earliest stage, rung,
index) to the back of the queue. Searches thus take turns: with one worker and two searches the
second's first trial waits behind at most ``PEFS_SENT_PER_SEARCH`` of the first's, not behind its
stage. Set it to at least the number of trial worker processes, so one search alone keeps every
worker busy.
"""
from __future__ import annotations

from collections.abc import Iterable

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Trial

RUN_TRIAL_JOB = "experiments.run_trial"


def trial_message_id(trial_id: int, attempt: int, rung: int = 0) -> str:
    """Celery task id of one delivery: lets the sweep see which trials the broker still holds.

    A survivor of successive halving is sent again for its next rung under the same attempt
    (services.halving), so the rung is part of the id from rung 1 on."""
    return f"trial-{trial_id}-{attempt}" + (f"-r{rung}" if rung else "")


def enqueue_on_commit(deliveries: Iterable[tuple[int, int] | tuple[int, int, int]]) -> None:
    """Send one run_trial message per (trial id, attempt[, rung]) after the current transaction commits."""
    triples = [(d[0], d[1], d[2] if len(d) > 2 else 0) for d in deliveries]

    def send() -> None:
        for trial_id, attempt, rung in triples:
            current_app.send_task(RUN_TRIAL_JOB, args=(trial_id, attempt),
                                  task_id=trial_message_id(trial_id, attempt, rung))

    if triples:
        transaction.on_commit(send)


def trials_enqueue(*, trials: Iterable[Trial]) -> None:
    """Mark trials queued (next attempt) and send as many as their searches' turns allow after commit."""
    _queue(trials, next_attempt=True)


def trials_continue(*, trials: Iterable[Trial]) -> None:
    """Queue survivors of a halving rung for their next rung: same attempt, so curves continue."""
    _queue(trials, next_attempt=False)


def _queue(trials: Iterable[Trial], *, next_attempt: bool) -> None:
    now = timezone.now()
    searches = set()
    for trial in trials:
        trial.status = Trial.Status.QUEUED
        trial.attempt += 1 if next_attempt else 0
        trial.queued_at = now
        trial.sent_at = None
        trial.cancel_requested = False
        trial.save(update_fields=["status", "attempt", "queued_at", "sent_at", "cancel_requested"])
        searches.add(trial.search_id)
    for search_id in sorted(searches):
        search_dispatch(search_id=search_id)


def search_dispatch(*, search_id: int) -> int:
    """Send the search's next held trials while it has fewer than PEFS_SENT_PER_SEARCH in the broker.

    Runs inside the caller's transaction (a claim, a new stage, a retry); returns how many it sent.
    """
    queued = Trial.objects.filter(search_id=search_id, status=Trial.Status.QUEUED, cancel_requested=False)
    free = settings.PEFS_SENT_PER_SEARCH - queued.filter(sent_at__isnull=False).count()
    if free <= 0:
        return 0
    held = list(queued.filter(sent_at__isnull=True).order_by("stage__order", "rung", "index")
                .values_list("pk", "attempt", "rung")[:free])
    if held:
        Trial.objects.filter(pk__in=[pk for pk, _, _ in held]).update(sent_at=timezone.now())
        enqueue_on_commit(held)
    return len(held)
