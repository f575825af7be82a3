"""Where trials spent their time (Trial.timing, phases of tasks.timing): for the trial and search pages.

>>> rows = timing_rows({"queued": 0.5, "data": 1.0, "training": 3.0, "other": 0.0})
>>> [(r["phase"], r["share"]) for r in rows]
[('queued', None), ('data', 25.0), ('training', 75.0)]
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.timing import PHASES, RUNNING_PHASES

from .models import Stage, Trial

PHASE_LABELS = {
    "queued": "Queued (waiting for a worker)",
    "data": "Data (load and tokenise)",
    "model": "Model (backbone and PEFT modules)",
    "first_step": "First step (optimiser set-up, warm-up)",
    "training": "Training (optimiser steps)",
    "evaluation": "Evaluation",
    "recording": "Recording metrics",
    "artifacts": "Artifacts (weights, checkpoints)",
    "finish": "Finishing",
    "other": "Other (claim, set-up, bookkeeping)",
}
#: A stage's share is read from at most this many of its latest finished trials.
SHARE_TRIALS = 1000


def timing_rows(timing: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per phase with time, in trial order: seconds and the share (%) of the trial's
    running time (None for ``queued``, which comes before the trial starts)."""
    timing = {phase: float(s) for phase, s in (timing or {}).items()
              if isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0}
    running = sum(s for phase, s in timing.items() if phase in RUNNING_PHASES)
    order = {phase: i for i, phase in enumerate(PHASES)}
    return [{"phase": phase, "label": PHASE_LABELS.get(phase, phase), "seconds": seconds,
             "share": round(100 * seconds / running, 1) if phase in RUNNING_PHASES and running else None}
            for phase, seconds in sorted(timing.items(), key=lambda item: order.get(item[0], len(order)))]


def stage_training_share(stage: Stage | None) -> dict[str, Any] | None:
    """The share of pure training time (the optimiser steps) in the running time of the stage's
    finished trials, with the largest other phases; None before any finished trial has timing."""
    if stage is None:
        return None
    timings = (Trial.objects.filter(stage=stage, status=Trial.Status.SUCCEEDED).exclude(timing={})
               .order_by("-finished_at").values_list("timing", flat=True)[:SHARE_TRIALS])
    totals: dict[str, float] = {}
    count = 0
    for timing in timings:
        count += 1
        for row in timing_rows(timing):
            totals[row["phase"]] = totals.get(row["phase"], 0.0) + row["seconds"]
    running = sum(s for phase, s in totals.items() if phase in RUNNING_PHASES)
    if not running:
        return None
    others = sorted(((phase, s) for phase, s in totals.items() if phase in RUNNING_PHASES and phase != "training"),
                    key=lambda item: -item[1])[:3]
    return {"stage": stage.key, "trials": count, "percent": round(100 * totals.get("training", 0.0) / running),
            "others": [{"phase": phase, "label": PHASE_LABELS.get(phase, phase).split(" (")[0].lower(),
                        "percent": round(100 * s / running)} for phase, s in others]}
