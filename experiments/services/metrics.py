"""Storing a trial's metric points: one idempotent bulk insert per batch, then one live event."""
from __future__ import annotations

from collections.abc import Sequence

from .. import events
from ..models import MetricPoint


def metric_points_record(*, trial_id: int, attempt: int, search_id: int, stage_id: int,
                         points: Sequence[tuple[int, str, float]], publish: bool = True) -> int:
    """Insert (step, "<task>:<metric>", value) points of one attempt and publish them as trial.metric.

    Conflicts on (trial, attempt, step, name) are ignored, so a replayed batch never duplicates a
    point. Returns how many points were in the batch.
    """
    if not points:
        return 0
    MetricPoint.objects.bulk_create(
        [MetricPoint(trial_id=trial_id, attempt=attempt, step=step, name=name, value=value)
         for step, name, value in points],
        ignore_conflicts=True, batch_size=2000,
    )
    if publish:  # outside any transaction: the worker writes and announces each batch at once
        events.publish(search_id, events.TRIAL_METRIC,
                       events.trial_metric(trial_id=trial_id, attempt=attempt, stage_id=stage_id, points=points))
    return len(points)
