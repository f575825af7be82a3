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


def metric_points_carry(*, trial_id: int, from_attempt: int, to_attempt: int, steps: dict[str, int],
                        search_id: int, stage_id: int) -> int:
    """Copy an earlier attempt's points up to a rung checkpoint into the attempt that resumes from it.

    ``steps`` maps each task to the global step its checkpoint was taken at; a point of task t is
    carried when its step is at most ``steps[t]``. The resumed attempt's curve therefore holds the
    whole run (services.halving). Published like any batch. Returns how many points were copied.
    """
    carried: list[tuple[int, str, float]] = []
    for task, last_step in steps.items():
        rows = (MetricPoint.objects.filter(trial_id=trial_id, attempt=from_attempt, name__startswith=f"{task}:",
                                           step__lte=last_step)
                .order_by("step", "name").values_list("step", "name", "value"))
        carried.extend(rows)
    return metric_points_record(trial_id=trial_id, attempt=to_attempt, search_id=search_id, stage_id=stage_id,
                                points=carried)
