"""A stage's trial rows: inserted in bounded batches, then counted and queued after commit.

Every stage (sampled designs, the final stage's tuning runs and its report runs) adds its trials
through here, so the search's counters and the queue always agree with the rows.
"""
from __future__ import annotations

from django.db.models import F

from .. import events
from ..models import Search, Stage, Trial
from .queue import trials_enqueue

# Rows per INSERT: a stage of thousands of designs writes in short statements, so SQLite's single
# write lock is never held for one long one (workers finishing trials wait on it).
TRIAL_INSERT_BATCH = 200


def stage_trials_add(*, search: Search, stage: Stage, trials: list[Trial]) -> None:
    """Insert ``trials`` (new rows of ``stage``, no per-row save), count and queue them.

    New trials take the stage's next indices; they are read back from the first of them, because
    bulk_create gives no primary keys on some databases.
    """
    Trial.objects.bulk_create(trials, batch_size=TRIAL_INSERT_BATCH)
    first = min((t.index for t in trials), default=None)
    added = [] if first is None else list(Trial.objects.filter(stage=stage, index__gte=first).order_by("index"))
    Search.objects.filter(pk=search.pk).update(
        trials_total=F("trials_total") + len(added), current_stage=stage, status=Search.Status.RUNNING)
    trials_enqueue(trials=added)
    search.refresh_from_db()
    events.stage_changed(stage)
    events.search_changed(search)
