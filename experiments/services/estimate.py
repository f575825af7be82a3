"""Before a search starts: each task's example sets, and about how long the search will take.

Shown by the new-search form's plan, the API's dry run and `pefs_search --dry-run`
(limits.search_plan_preview).

*Example sets.* Each task's three evaluation roles (tasks.data.roles): the training examples, the
selection set stage trials are scored on and the report set only the final stage is scored on,
each with its split, pool, the count the search's ``max_train_examples``/``max_eval_examples``
keep and the seed of that draw. The pools are read once per task file (tasks.data.example_sets)
and cached by the file's size and modification time, so a form that asks on every change never
re-reads an upload; the count for a configuration is then arithmetic. Hub tasks are not loaded
in the web process (their sizes come from the hub when a worker loads them).

*Duration.* Training steps (``ceil(train examples / batch)`` per task-epoch, over the plan's
task-epochs, halving included) times seconds per step, divided by the workers that serve the
trial queue. Seconds per step: the median over this installation's last finished trials on the
backbone with the same batch size and length (``Trial.duration_s`` over its steps, so loading
and evaluation are counted), else :data:`DEFAULT_SECONDS_PER_STEP`, measured on the 2-core CPU
machine this project is developed on with the bundled MiniLM at batch 16 and length 64, scaled by
the batch's tokens and the backbone's size. Workers: the Celery workers that answer a
``active_queues`` broadcast on the trial queue within :data:`PING_TIMEOUT` seconds, cached for
:data:`WORKERS_CACHE_SECONDS`; with none answering it says "at least 1 worker". Always an estimate.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
from collections.abc import Sequence
from typing import Any

from django.core.cache import cache

from experiments.space import SearchConfig
from experiments.space.planning import SearchPlan

from ..models import Backbone, Task, Trial

log = logging.getLogger(__name__)

#: Seconds per training step with no finished trial to measure: bundled MiniLM (22.7M parameters),
#: batch 16, length 64, on a 2-core CPU (bench/strategy_lr.py's runs and the quick preset's).
DEFAULT_SECONDS_PER_STEP = 0.5
DEFAULT_STEP_SHAPE = {"batch_size": 16, "max_length": 64, "parameters": 22_713_216}
#: Finished trials the median is taken over (the newest).
STEP_HISTORY = 200
TRIAL_QUEUE = "gpu"
PING_TIMEOUT = 1.0
WORKERS_CACHE_SECONDS = 30
POOLS_CACHE_SECONDS = 24 * 3600


# --- example sets ------------------------------------------------------------------------------

def _spec(task: Task) -> dict[str, Any]:
    """The task's TaskSpec dict with uploaded files resolved to local files (the storage's own
    file, or a cached copy of a remote bucket's: experiments.files.upload_local_path)."""
    from experiments.files import upload_local_path

    spec = dict(task.spec)
    if task.source == Task.Source.UPLOAD:
        for key in ("train_path", "eval_path", "selection_path"):
            if spec.get(key):
                spec[key] = str(upload_local_path(spec[key]))
    return spec


def _pools(task: Task) -> dict[str, dict[str, Any]]:
    """Each role's whole pool (ExampleSet dicts, nothing sub-sampled), read once per file version."""
    from tasks.data import TaskSpec, example_sets  # datasets, not torch: imported on first use
    from tasks.data.loading import task_key

    spec = TaskSpec.from_dict(_spec(task))
    digest = hashlib.sha256(json.dumps(task_key(spec), default=str).encode()).hexdigest()[:32]
    key = f"pefs:example-pools:{task.pk}:{digest}"
    pools = cache.get(key)
    if pools is None:
        pools = {role: examples.to_dict() for role, examples in example_sets(spec).items()}
        cache.set(key, pools, POOLS_CACHE_SECONDS)
    return pools


def _at_count(pool: dict[str, Any], limit: int | None, seed: int = 0) -> dict[str, Any]:
    """A role's pool as a search with at most ``limit`` examples draws it (tasks.data.loading)."""
    from tasks.data.roles import ExampleSet

    drawn = limit is not None and limit < pool["pool"]
    examples = ExampleSet(**{**pool, "count": limit if drawn else pool["pool"], "seed": seed if drawn else None})
    return {**examples.to_dict(), "description": examples.describe()}


def task_example_sets(*, task: Task, config: SearchConfig) -> dict[str, Any]:
    """``{"task", "train", "selection", "report", "error"}``: each role's ExampleSet dict (with its
    ``description``) as the search would load it; a role is None when unknown (``error`` says why)."""
    entry: dict[str, Any] = {"task": task.name, "train": None, "selection": None, "report": None, "error": None}
    if task.source == Task.Source.HUB:
        entry["error"] = "sizes are read from the hub when a worker first loads the task"
        return entry
    try:
        pools = _pools(task)
    except Exception as exc:  # a broken file is the upload's problem; the plan still shows
        log.warning("example sets of task %s", task.pk, exc_info=True)
        entry["error"] = getattr(exc, "message", None) or str(exc)[:200]
        return entry
    entry["train"] = _at_count(pools["train"], config.max_train_examples)
    entry["report"] = _at_count(pools["report"], config.max_eval_examples)
    if "selection" in pools:
        entry["selection"] = _at_count(pools["selection"], config.max_eval_examples)
    else:
        entry["error"] = "too few training rows to hold out a selection set"
    return entry


# --- duration -----------------------------------------------------------------------------------

def trial_workers() -> int | None:
    """Celery workers serving the trial queue (None: no broker or no worker answered), cached."""
    cached = cache.get("pefs:trial-workers")
    if cached is not None:
        return cached or None
    count = 0
    try:
        from pefs_web.celery import app

        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=PING_TIMEOUT)
            queues = app.control.inspect(timeout=PING_TIMEOUT, connection=connection).active_queues() or {}
        count = sum(any(q.get("name") == TRIAL_QUEUE for q in served or ()) for served in queues.values())
    except Exception:  # no broker: the estimate says "at least 1 worker"
        log.info("no answer counting trial workers", exc_info=True)
    cache.set("pefs:trial-workers", count, WORKERS_CACHE_SECONDS)
    return count or None


def seconds_per_step(*, backbone: Backbone, config: SearchConfig) -> tuple[float, str]:
    """(seconds, where they come from): measured on this installation, else the default."""
    rows = (Trial.objects.filter(search__backbone=backbone, status=Trial.Status.SUCCEEDED, duration_s__gt=0,
                                 search__config__batch_size=config.batch_size,
                                 search__config__max_length=config.max_length)
            .order_by("-pk").values_list("duration_s", "scores")[:STEP_HISTORY])
    rates = []
    for duration, scores in rows:
        steps = sum(s.get("steps") or 0 for s in (scores or {}).values() if isinstance(s, dict))
        if steps > 0:
            rates.append(duration / steps)
    if rates:
        return statistics.median(rates), f"median of {len(rates)} finished trials on this backbone"
    shape = DEFAULT_STEP_SHAPE
    scale = (config.batch_size * config.max_length / (shape["batch_size"] * shape["max_length"])
             * max(backbone.total_params, 1) / shape["parameters"])
    return (DEFAULT_SECONDS_PER_STEP * scale,
            f"default {DEFAULT_SECONDS_PER_STEP:g} s/step (MiniLM, batch 16, length 64, 2-core CPU), "
            "scaled to this batch, length and backbone; no finished trial to measure yet")


def search_estimate(*, plan: SearchPlan, config: SearchConfig, backbone: Backbone,
                    example_sets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """About how long ``plan`` takes (module docstring): ``{"minutes", "workers", "workers_counted",
    "seconds_per_step", "step_source", "steps", "text"}``; minutes None when a task's size is unknown."""
    step_s, source = seconds_per_step(backbone=backbone, config=config)
    counted = trial_workers()
    workers = counted or 1
    # Without a task's pool (hub tasks, or only a task count given): the configured cap.
    counts = [(entry.get("train") or {}).get("count") or config.max_train_examples
              for entry in example_sets] or [config.max_train_examples]
    per_epoch = [] if None in counts else [math.ceil(count / config.batch_size) for count in counts]
    steps = round(plan.task_epochs * statistics.fmean(per_epoch)) if per_epoch else None
    minutes = None if steps is None else max(1, round(steps * step_s / workers / 60))
    on = f"{counted} worker{'s' if counted != 1 else ''}" if counted else "at least 1 worker"
    at_most = "at most " if plan.upper_bound else ""
    text = (f"{at_most}about {minutes:,} min on {on} (estimate)" if minutes is not None
            else "duration unknown until every task's size is known")
    return {"minutes": minutes, "workers": workers, "workers_counted": bool(counted), "steps": steps,
            "seconds_per_step": float(f"{step_s:.3g}"), "step_source": source, "text": text}


def search_queue(*, search_id: int) -> dict[str, Any] | None:
    """Where a search's next queued trial stands (fair queueing, services.queue), for its page.

    ``ahead``: other searches' trials whose messages were sent before this search's first waiting
    one, so a worker takes them first; ``sent``/``held``: this search's queued trials in the broker
    and waiting their turn; ``running``: trials running now, all searches; ``workers``: the trial
    workers that answered (None: none answered, or no broker). None when nothing of it is queued.
    """
    mine = Trial.objects.filter(search_id=search_id, status=Trial.Status.QUEUED, cancel_requested=False)
    queued = mine.count()
    if not queued:
        return None
    first = mine.filter(sent_at__isnull=False).order_by("sent_at").values_list("sent_at", flat=True).first()
    ahead = 0 if first is None else (Trial.objects.filter(status=Trial.Status.QUEUED, cancel_requested=False,
                                                         sent_at__lt=first).exclude(search_id=search_id).count())
    sent = mine.filter(sent_at__isnull=False).count()
    return {"queued": queued, "sent": sent, "held": queued - sent, "ahead": ahead,
            "running": Trial.objects.filter(status=Trial.Status.RUNNING).count(), "workers": trial_workers()}
