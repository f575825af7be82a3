"""Trial workers' own rows: each worker process beats here every PEFS_HEARTBEAT_SECONDS.

Only the worker itself writes its row (tasks.worker.WorkerBeacon); the web reads it through
experiments.worker_states, which calls a worker lost once its last beat is older than
PEFS_STALE_SECONDS. The trials a worker runs are not copied here: Trial.worker already names it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from ..models import Worker

# A worker not seen for this long is forgotten (the sweep prunes it): the view lists recent ones.
WORKER_RETENTION = timedelta(days=1)


def worker_beat(*, name: str, hostname: str, device: str, device_name: str = "",
                device_memory_bytes: int | None = None, concurrency: int, pid: int | None,
                started_at: datetime) -> Worker:
    """Insert or refresh this worker's row; a beat also clears a stop recorded by an earlier run."""
    worker, _ = Worker.objects.update_or_create(name=name, defaults={
        "hostname": hostname, "device": device, "device_name": device_name,
        "device_memory_bytes": device_memory_bytes, "concurrency": concurrency, "pid": pid,
        "started_at": started_at, "last_seen": timezone.now(), "stopped_at": None,
    })
    return worker


def worker_stop(*, name: str) -> None:
    """A clean shutdown: the view says stopped at once instead of lost after the stale interval."""
    Worker.objects.filter(name=name).update(stopped_at=timezone.now())


def workers_prune(*, now: datetime | None = None) -> int:
    """Forget workers not seen for WORKER_RETENTION; returns how many rows went."""
    deleted, _ = Worker.objects.filter(last_seen__lt=(now or timezone.now()) - WORKER_RETENTION).delete()
    return deleted
