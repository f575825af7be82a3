"""Celery jobs: thin. They take ids, call experiments.services, and own their retry/error policy.

Workers: `celery -A pefs_web worker -Q gpu -c 1` (one process per GPU; CUDA_VISIBLE_DEVICES picks
it). Messages are acknowledged late and rejected when the worker is lost, so a killed worker's
trial is delivered again; the periodic sweep covers what Redis itself lost.
"""
from __future__ import annotations

import json
import logging
import socket

from celery import shared_task
from django.conf import settings

log = logging.getLogger(__name__)

# One process trains one trial at a time; keeping the backbone's pretrained weights between
# trials of the same backbone saves the reload from disk (a worker lives for many trials).
_backbone_cache = None


def _cache():
    global _backbone_cache
    if _backbone_cache is None:
        from tasks.runner import BackboneCache

        _backbone_cache = BackboneCache()
    return _backbone_cache


@shared_task(name="experiments.run_trial", acks_late=True, reject_on_worker_lost=True,
             time_limit=settings.PEFS_TRIAL_TIME_LIMIT + 60, soft_time_limit=settings.PEFS_TRIAL_TIME_LIMIT)
def run_trial(trial_id: int, attempt: int) -> str:
    from experiments.services import trial_execute

    worker = f"{socket.gethostname()}:{run_trial.request.hostname or 'worker'}"
    trial = trial_execute(trial_id=trial_id, attempt=attempt, worker=worker, backbone_cache=_cache())
    return "skipped" if trial is None else trial.status


def broker_message_ids() -> set[str] | None:
    """Ids of the messages Redis still holds for the trial queue (waiting or delivered, unacked)."""
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        raw = client.lrange("gpu", 0, -1) + list(client.hvals("unacked"))
    except Exception:
        log.warning("sweep could not read the broker; skipping the lost-message check", exc_info=True)
        return None
    ids = set()
    for item in raw:
        try:
            message = json.loads(item)
            if isinstance(message, list):  # the unacked hash stores [message, exchange, routing_key]
                message = message[0]
            ids.add(message["headers"]["id"])
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return ids


@shared_task(name="experiments.sweep_trials", ignore_result=True)
def sweep_trials() -> dict:
    from experiments.services import trials_sweep

    return trials_sweep(broker_ids=broker_message_ids())
