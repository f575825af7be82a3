"""Celery jobs: thin. They take ids, call the worker glue (tasks.worker), and own their retry/error policy.

Workers: `celery -A pefs_web worker -Q gpu -c N` (CUDA_VISIBLE_DEVICES picks the GPU; N trials
share it, each in its own pool process with its own CUDA context, behind the memory guard of
tasks.device_memory). Messages are acknowledged late and rejected when the worker is lost, so a
killed worker's trial is delivered again; the periodic sweep covers what Redis itself lost. The web
side sends run_trial by its name (experiments.services.queue), never by importing this module.

A worker that consumes the trial queue registers itself when ready and beats from its main process
(tasks.worker.WorkerBeacon): the workers view lists its device, concurrency and state.
"""
from __future__ import annotations

import socket

from celery import shared_task
from celery.signals import worker_init, worker_ready, worker_shutdown
from django.conf import settings

from experiments import services
from experiments.services.queue import RUN_TRIAL_JOB
from experiments.services.workers import workers_prune

from . import worker

# One process trains one trial at a time; keeping the backbone's pretrained weights between
# trials of the same backbone saves the reload from disk (a worker lives for many trials).
_backbone_cache = None
# The main process's beacon, while this process is a trial worker.
_beacon: worker.WorkerBeacon | None = None


def _cache():
    global _backbone_cache
    if _backbone_cache is None:
        from tasks.runner import BackboneCache  # imports torch: not before the first trial

        _backbone_cache = BackboneCache()
    return _backbone_cache


def worker_name(node: str | None) -> str:
    """'<host>:<celery node name>': what Trial.worker and the Worker row both record."""
    return f"{socket.gethostname()}:{node or 'worker'}"


@shared_task(name=RUN_TRIAL_JOB, acks_late=True, reject_on_worker_lost=True,
             time_limit=settings.PEFS_TRIAL_TIME_LIMIT + 60, soft_time_limit=settings.PEFS_TRIAL_TIME_LIMIT)
def run_trial(trial_id: int, attempt: int) -> str:
    name = worker_name(run_trial.request.hostname)
    trial = worker.trial_execute(trial_id=trial_id, attempt=attempt, worker=name, backbone_cache=_cache())
    return "skipped" if trial is None else trial.status


@shared_task(name="experiments.sweep_trials", ignore_result=True)
def sweep_trials() -> dict:
    counts = services.trials_sweep(broker_ids=worker.broker_message_ids())
    counts["workers_pruned"] = workers_prune()
    return counts


@worker_init.connect
def preload_engine(sender, **kwargs) -> None:
    """A trial worker imports the engine (torch, transformers, datasets) before its pool forks, so
    its first trial does not spend seconds importing them (time to the first live point, issue 14).
    Importing torch starts no CUDA context: forked pool processes can still use the GPU."""
    queue = settings.CELERY_TASK_ROUTES[RUN_TRIAL_JOB]["queue"]
    if queue in sender.app.amqp.queues.consume_from:
        import tasks.data.loading  # noqa: F401  (datasets, tokenizers)
        import tasks.runner  # noqa: F401  (torch, transformers)
        from tasks.peft.backbones import preload_model_classes

        preload_model_classes()  # transformers' lazily imported modelling modules


@worker_ready.connect
def register_worker(sender, **kwargs) -> None:
    """A worker consuming the trial queue starts beating; one serving only the sweep does not."""
    global _beacon
    queue = settings.CELERY_TASK_ROUTES[RUN_TRIAL_JOB]["queue"]
    if queue not in sender.app.amqp.queues.consume_from:
        return
    _beacon = worker.WorkerBeacon(name=worker_name(sender.hostname), concurrency=sender.pool.limit or 1,
                                  interval=settings.PEFS_HEARTBEAT_SECONDS)
    _beacon.start()


@worker_shutdown.connect
def unregister_worker(sender, **kwargs) -> None:
    if _beacon is not None:
        _beacon.stop()
