"""Queueing trials: mark them queued, and send their Celery messages once the transaction commits.

The message goes to the Celery job by name ("experiments.run_trial", routed to the "gpu" queue by
CELERY_TASK_ROUTES), so the web side never imports the worker's code.
"""
from __future__ import annotations

from collections.abc import Iterable

from celery import current_app
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
    """Mark trials queued (next attempt) and send their messages after commit."""
    now = timezone.now()
    pairs = []
    for trial in trials:
        trial.status = Trial.Status.QUEUED
        trial.attempt += 1
        trial.queued_at = now
        trial.cancel_requested = False
        trial.save(update_fields=["status", "attempt", "queued_at", "cancel_requested"])
        pairs.append((trial.pk, trial.attempt, trial.rung))
    enqueue_on_commit(pairs)


def trials_continue(*, trials: Iterable[Trial]) -> None:
    """Queue survivors of a halving rung for their next rung: same attempt, so curves continue."""
    now = timezone.now()
    triples = []
    for trial in trials:
        trial.status = Trial.Status.QUEUED
        trial.queued_at = now
        trial.cancel_requested = False
        trial.save(update_fields=["status", "queued_at", "cancel_requested"])
        triples.append((trial.pk, trial.attempt, trial.rung))
    enqueue_on_commit(triples)
