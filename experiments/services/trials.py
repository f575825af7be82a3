"""A trial's lifecycle: claim, heartbeat, finish, cancel, retry, and the sweep that supervises them.

The trial-attempt protocol: every delivery carries the attempt it was sent for, a conditional
update claims a queued trial for exactly that attempt, and only the attempt that holds the trial
may beat or finish it. A redelivered or superseded message therefore never runs a trial twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from experiments.space.halving import rank_value
from tasks.timing import RUNNING_PHASES, add_phases, rounded

from .. import events
from ..models import Search, Stage, Trial
from . import queue
from .halving import stage_rank_by
from .searches import stage_check_complete

log = logging.getLogger(__name__)


def trial_claim(*, trial_id: int, attempt: int, worker: str) -> Trial | None:
    """Take a queued trial for this delivery; None when the message is stale or cancelled.

    A delivery carries the attempt it was sent for: a message redelivered after the sweep already
    re-queued the trial (or after a retry) no longer matches and is dropped, so a trial never runs
    twice at once.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = Trial.objects.filter(
            pk=trial_id, attempt=attempt, status=Trial.Status.QUEUED, cancel_requested=False,
        ).update(status=Trial.Status.RUNNING, worker=worker[:128], started_at=now, heartbeat_at=now,
                 error="")
        if not claimed:
            return None
        trial = Trial.objects.select_related("search", "stage").get(pk=trial_id)
        Search.objects.filter(pk=trial.search_id, status=Search.Status.RUNNING).update(
            current_stage=trial.stage_id)
        queue.search_dispatch(search_id=trial.search_id)  # the claim freed one of its turns
        events.trial_changed(trial)
    return trial


def trial_heartbeat(*, trial_id: int, attempt: int) -> bool:
    """Record that the worker is alive; returns False when the trial should stop (cancelled/superseded)."""
    updated = Trial.objects.filter(pk=trial_id, attempt=attempt, status=Trial.Status.RUNNING).update(
        heartbeat_at=timezone.now())
    if not updated:
        return False
    return not Trial.objects.filter(pk=trial_id, cancel_requested=True).exists()


@dataclass
class TrialResult:
    """What a trained trial reports: its score, per-task scores (with the examples each was scored
    on) and both parameter counts: ``trainable_params`` stored (the budget), ``optimised_params``
    updated by the optimiser (head and reparameterisation included; None when unknown)."""

    score: float
    scores: dict[str, Any]
    trainable_params: int
    head_params: int
    notes: list[str] = field(default_factory=list)
    optimised_params: int | None = None
    # Successive halving (services.halving): the epochs this rung ended at, and the checkpoint it
    # wrote ({"attempt", "epochs", "steps": {task: global step}}; None at the last rung).
    rung_epochs: int | None = None
    checkpoint: dict[str, Any] | None = None
    # Seconds per phase of this run (tasks.timing): queued, data, model, first_step, training, ...
    timing: dict[str, float] = field(default_factory=dict)


def trial_finish(*, trial_id: int, attempt: int, status: str, result: TrialResult | None = None,
                 error: str = "") -> Trial | None:
    """Close one attempt. Ignored (None) when the attempt was superseded meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        trial = (Trial.objects.select_for_update().select_related("search", "stage")
                 .filter(pk=trial_id, attempt=attempt, status=Trial.Status.RUNNING).first())
        if trial is None:
            return None
        trial.status = status
        trial.finished_at = now
        seconds = (now - trial.started_at).total_seconds() if trial.started_at else None
        # A survivor of successive halving ran once per rung: its duration is the sum of them.
        earlier = sum(r.get("seconds") or 0 for r in trial.rung_scores if r.get("rung", 0) < trial.rung)
        trial.duration_s = None if seconds is None else earlier + seconds
        trial.error = error
        fields = ["status", "finished_at", "duration_s", "error"]
        if result is not None:
            trial.score, trial.scores = result.score, result.scores
            trial.trainable_params, trial.head_params = result.trainable_params, result.head_params
            trial.optimised_params = result.optimised_params
            trial.notes = [*trial.notes, *(n for n in result.notes if n not in trial.notes)]  # keep crash notes
            fields += ["score", "scores", "trainable_params", "head_params", "optimised_params", "notes"]
            if result.rung_epochs is not None:
                rank_by = stage_rank_by(trial.stage)
                trial.rung_scores = [*(r for r in trial.rung_scores if r.get("rung") != trial.rung),
                                     {"rung": trial.rung, "epochs": result.rung_epochs, "score": result.score,
                                      "rank_by": rank_by, "rank": rank_value(result.scores, result.score, rank_by),
                                      "seconds": seconds}]
                trial.checkpoint = result.checkpoint
                fields += ["rung_scores", "checkpoint"]
            trial.timing = trial_timing(trial, result.timing)
            fields.append("timing")
        trial.save(update_fields=fields)
        trial_became_final(trial)
    return trial


def trial_timing(trial: Trial, measured: dict[str, float]) -> dict[str, float]:
    """The trial's phases with this run's added (a survivor of successive halving sums its rung runs,
    like its duration), and ``other``: what of the duration no measured phase covers."""
    earlier = {k: v for k, v in (trial.timing or {}).items() if k != "other"} if trial.rung else {}
    timing = add_phases(earlier, measured)
    covered = sum(seconds for phase, seconds in timing.items() if phase in RUNNING_PHASES)
    timing["other"] = max(0.0, (trial.duration_s or 0.0) - covered)
    return rounded(timing)


def trial_became_final(trial: Trial) -> None:
    """Counters, events, and the stage's completion check; runs inside the caller's transaction."""
    Search.objects.filter(pk=trial.search_id).update(trials_done=F("trials_done") + 1)
    if trial.status == Trial.Status.SUCCEEDED and trial.score is not None and trial.kind == Trial.Kind.SAMPLE:
        Search.objects.filter(pk=trial.search_id, best_score__isnull=True).update(best_score=trial.score)
        Search.objects.filter(pk=trial.search_id, best_score__lt=trial.score).update(best_score=trial.score)
    events.trial_changed(trial)
    events.search_changed(Search.objects.get(pk=trial.search_id))
    stage_check_complete(stage_id=trial.stage_id)


def trial_cancel(*, trial: Trial) -> Trial:
    """Queued: cancelled before it starts. Running: asked to stop at its next step."""
    with transaction.atomic():
        trial = Trial.objects.select_for_update().get(pk=trial.pk)
        if trial.status == Trial.Status.QUEUED:
            trial.status = Trial.Status.CANCELLED
            trial.finished_at = timezone.now()
            trial.save(update_fields=["status", "finished_at"])
            trial_became_final(trial)
            queue.search_dispatch(search_id=trial.search_id)
        elif trial.status == Trial.Status.RUNNING:
            trial.cancel_requested = True
            trial.save(update_fields=["cancel_requested"])
        else:
            raise ValidationError({"status": [f"A {trial.status} trial cannot be cancelled."]})
    return trial


def trial_retry(*, trial: Trial) -> Trial:
    """Run a failed or cancelled trial again as a new attempt, reopening its stage if needed."""
    with transaction.atomic():
        trial = Trial.objects.select_for_update().select_related("stage", "search").get(pk=trial.pk)
        if trial.status not in (Trial.Status.FAILED, Trial.Status.CANCELLED):
            raise ValidationError({"status": [f"Only failed or cancelled trials can be retried, not {trial.status}."]})
        stage, search = trial.stage, trial.search
        if search.status == Search.Status.CANCELLED:
            raise ValidationError({"search": ["The search was cancelled; start a new one."]})
        if stage.status not in (Stage.Status.RUNNING, Stage.Status.AWAITING):
            raise ValidationError({"stage": [f"Stage {stage.key} is already {stage.status}; its trials are final."]})
        if trial.halted or trial.rung != stage.rung:
            raise ValidationError({"status": [f"Successive halving has moved stage {stage.key} past this trial's "
                                              f"rung ({trial.rung + 1}); it cannot be retried."]})
        if stage.status == Stage.Status.AWAITING:
            stage.status, stage.summary, stage.recommendation = Stage.Status.RUNNING, None, None
            stage.save(update_fields=["status", "summary", "recommendation"])
            events.stage_changed(stage)
        Search.objects.filter(pk=search.pk).update(  # a blocked search's reason goes with the retry
            trials_done=F("trials_done") - 1, status=Search.Status.RUNNING, current_stage=stage, error="")
        trial.error = ""
        trial.save(update_fields=["error"])
        queue.trials_enqueue(trials=[trial])
        events.trial_changed(trial)
    return trial


def trials_retry_failed(*, search: Search) -> int:
    """Retry every failed trial of the search's current, still open stage."""
    stage = search.current_stage
    if stage is None:
        return 0
    failed = list(stage.trials.filter(status=Trial.Status.FAILED, rung=stage.rung, halted=False))
    for trial in failed:
        trial_retry(trial=trial)
    return len(failed)


# --- supervision ---------------------------------------------------------------------------

def trials_sweep(*, now: datetime | None = None, broker_ids: set[str] | None = None) -> dict[str, int]:
    """Re-queue trials whose worker vanished, and queued trials whose message the broker lost.

    The database is the record: a running trial whose heartbeat is older than PEFS_STALE_SECONDS
    gets a new attempt (or fails after PEFS_MAX_ATTEMPTS). A queued trial older than the same
    grace period whose message id is not in the broker (`broker_ids`, read from Redis by the
    caller) is sent again with the same attempt; the claim drops any duplicate.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.PEFS_STALE_SECONDS)
    requeued = failed = resent = 0
    for trial_id in Trial.objects.filter(status=Trial.Status.RUNNING, heartbeat_at__lt=stale_before) \
            .values_list("pk", flat=True):
        with transaction.atomic():
            trial = (Trial.objects.select_for_update().filter(
                pk=trial_id, status=Trial.Status.RUNNING, heartbeat_at__lt=stale_before).first())
            if trial is None:
                continue
            message = f"worker {trial.worker or '?'} stopped answering during attempt {trial.attempt}"
            if trial.attempt >= settings.PEFS_MAX_ATTEMPTS:
                trial.status, trial.finished_at = Trial.Status.FAILED, now
                trial.error = f"{message}; gave up after {trial.attempt} attempts"
                trial.save(update_fields=["status", "finished_at", "error"])
                trial_became_final(trial)
                failed += 1
            else:
                log.warning("re-queueing trial %s: %s", trial.pk, message)
                trial.notes = [*trial.notes, message]
                trial.save(update_fields=["notes"])
                queue.trials_enqueue(trials=[trial])
                requeued += 1
    if broker_ids is not None:
        # Held trials (fair queueing, sent_at empty) have no message yet: only sent ones can be lost.
        lost = Trial.objects.filter(status=Trial.Status.QUEUED, sent_at__lt=stale_before,
                                    cancel_requested=False).values_list("pk", "attempt", "rung")
        pairs = [(pk, attempt, rung) for pk, attempt, rung in lost
                 if queue.trial_message_id(pk, attempt, rung) not in broker_ids]
        if pairs:
            with transaction.atomic():
                queue.enqueue_on_commit(pairs)
            resent = len(pairs)
    return {"requeued": requeued, "failed": failed, "resent": resent}
