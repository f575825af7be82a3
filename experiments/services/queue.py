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


def trial_message_id(trial_id: int, attempt: int) -> str:
    """Celery task id of one delivery: lets the sweep see which trials the broker still holds."""
    return f"trial-{trial_id}-{attempt}"


def enqueue_on_commit(trial_ids_attempts: Iterable[tuple[int, int]]) -> None:
    """Send one run_trial message per (trial id, attempt) after the current transaction commits."""
    pairs = list(trial_ids_attempts)

    def send() -> None:
        for trial_id, attempt in pairs:
            current_app.send_task(RUN_TRIAL_JOB, args=(trial_id, attempt),
                                  task_id=trial_message_id(trial_id, attempt))

    if pairs:
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
        pairs.append((trial.pk, trial.attempt))
    enqueue_on_commit(pairs)
