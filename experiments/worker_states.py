"""Reads for the workers view (page and API): each worker's device, concurrency and state.

A worker is *stopped* when it shut down cleanly, *lost* when its last beat is older than
PEFS_STALE_SECONDS, *running* while Trial rows with status running name it, *idle* otherwise.
A user sees the search and trial of their own running trials only; another user's trial is shown
as busy without a name or link (staff see every trial).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from .models import Trial, Worker

IDLE, RUNNING, LOST, STOPPED = "idle", "running", "lost", "stopped"


@dataclass
class RunningTrial:
    """A running trial as the viewer may see it: ids and names only for the viewer's own searches."""

    visible: bool
    trial_id: int | None = None
    trial_index: int | None = None
    stage_key: str = ""
    search_id: int | None = None
    search_name: str = ""


@dataclass
class WorkerState:
    name: str
    hostname: str
    device: str
    device_name: str
    device_memory_bytes: int | None
    concurrency: int
    pid: int | None
    started_at: datetime
    last_seen: datetime
    state: str
    trials: list[RunningTrial] = field(default_factory=list)

    @property
    def busy_elsewhere(self) -> int:
        """Running trials of other users' searches (counted, never named)."""
        return sum(1 for trial in self.trials if not trial.visible)


def _state(worker: Worker, *, running: bool, stale_before: datetime) -> str:
    if worker.stopped_at is not None:
        return STOPPED
    if worker.last_seen < stale_before:
        return LOST
    return RUNNING if running else IDLE


def worker_list(*, user: AbstractBaseUser, now: datetime | None = None) -> list[WorkerState]:
    """Every recorded worker, by name, with the running trials it holds as `user` may see them."""
    stale_before = (now or timezone.now()) - timedelta(seconds=settings.PEFS_STALE_SECONDS)
    workers = list(Worker.objects.all())
    trials: dict[str, list[RunningTrial]] = {}
    running = (Trial.objects.filter(status=Trial.Status.RUNNING, worker__in=[w.name for w in workers])
               .select_related("search", "stage").only("index", "worker", "stage__key", "search__name",
                                                       "search__owner_id")
               .order_by("pk"))
    for trial in running:
        if user.is_staff or trial.search.owner_id == user.pk:
            seen = RunningTrial(visible=True, trial_id=trial.pk, trial_index=trial.index, stage_key=trial.stage.key,
                                search_id=trial.search_id, search_name=trial.search.name)
        else:
            seen = RunningTrial(visible=False)
        trials.setdefault(trial.worker, []).append(seen)
    states = []
    for worker in workers:
        held = trials.get(worker.name, [])
        state = _state(worker, running=bool(held), stale_before=stale_before)
        states.append(WorkerState(
            name=worker.name, hostname=worker.hostname, device=worker.device, device_name=worker.device_name,
            device_memory_bytes=worker.device_memory_bytes, concurrency=worker.concurrency, pid=worker.pid,
            started_at=worker.started_at, last_seen=worker.last_seen, state=state,
            trials=held if state == RUNNING else []))
    return states
