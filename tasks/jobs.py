"""Celery jobs: thin. They take ids, call the worker glue (tasks.worker), and own their retry/error policy.

Workers: `celery -A pefs_web worker -Q gpu -c 1` (one process per GPU; CUDA_VISIBLE_DEVICES picks
it). Messages are acknowledged late and rejected when the worker is lost, so a killed worker's
trial is delivered again; the periodic sweep covers what Redis itself lost. The web side sends
run_trial by its name (experiments.services.queue), never by importing this module.
"""
from __future__ import annotations

import socket

from celery import shared_task
from django.conf import settings

from experiments import services
from experiments.services.queue import RUN_TRIAL_JOB

from . import worker

# One process trains one trial at a time; keeping the backbone's pretrained weights between
# trials of the same backbone saves the reload from disk (a worker lives for many trials).
_backbone_cache = None


def _cache():
    global _backbone_cache
    if _backbone_cache is None:
        from tasks.runner import BackboneCache  # imports torch: not before the first trial

        _backbone_cache = BackboneCache()
    return _backbone_cache


@shared_task(name=RUN_TRIAL_JOB, acks_late=True, reject_on_worker_lost=True,
             time_limit=settings.PEFS_TRIAL_TIME_LIMIT + 60, soft_time_limit=settings.PEFS_TRIAL_TIME_LIMIT)
def run_trial(trial_id: int, attempt: int) -> str:
    name = f"{socket.gethostname()}:{run_trial.request.hostname or 'worker'}"
    trial = worker.trial_execute(trial_id=trial_id, attempt=attempt, worker=name, backbone_cache=_cache())
    return "skipped" if trial is None else trial.status


@shared_task(name="experiments.sweep_trials", ignore_result=True)
def sweep_trials() -> dict:
    return services.trials_sweep(broker_ids=worker.broker_message_ids())
