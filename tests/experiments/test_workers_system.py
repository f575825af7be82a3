"""Real Celery workers: a trial worker registers its device and concurrency, is shown lost once it
stops beating (stopped after a clean shutdown), and a worker started with -c 2 trains two trials
of one search at the same time."""
from __future__ import annotations

import itertools
import socket

import pytest

from experiments import services, worker_states
from experiments.models import Search, Trial, Worker
from tests.conftest import WorkerProcess, _free_port
from tests.experiments.test_system import SYSTEM_OVERRIDES, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow]

STALE_SECONDS = 6  # what tests.conftest.subprocess_env gives the workers (beats every second)


class ConcurrentWorker(WorkerProcess):
    """The launcher's trial worker with N pool processes (worker_factory's workers run one)."""

    def __init__(self, *args, concurrency: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency

    def start(self) -> "ConcurrentWorker":
        import subprocess
        import sys

        from pefs_web.supervisor import spawn
        from tests.conftest import BASE_DIR

        args = [sys.executable, "-m", "celery", "-A", "pefs_web", "worker", "-Q", self.queues,
                "-c", str(self.concurrency), "--pool", "prefork", "--loglevel", "INFO",
                "-n", f"test-{_free_port()}@%h", "--without-gossip", "--without-mingle"]
        with open(self.log_path, "ab") as log:
            self.proc = spawn(args, env=self.env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT)
        return self


def registered(worker: WorkerProcess, *, timeout: float = 180) -> Worker:
    return wait_for(lambda: Worker.objects.exclude(stopped_at__isnull=False).first(), timeout=timeout,
                    what="the worker's row", logs=[worker])


def state_of(user, name: str) -> str:
    return next(w.state for w in worker_states.worker_list(user=user) if w.name == name)


def test_a_worker_registers_its_device_and_is_lost_after_it_stops_beating(user, worker_factory, settings):
    settings.PEFS_STALE_SECONDS = STALE_SECONDS
    worker = worker_factory(queues="gpu,default", beat=False)

    row = registered(worker)
    assert (row.device, row.device_name, row.device_memory_bytes, row.concurrency) == ("cpu", "", None, 1)
    assert row.pid == worker.proc.pid and row.name.startswith(f"{socket.gethostname()}:test-")
    assert state_of(user, row.name) == "idle"

    worker.kill()  # no shutdown: the row simply stops being refreshed
    wait_for(lambda: state_of(user, row.name) == "lost", timeout=STALE_SECONDS * 5, what="the worker to be lost",
             logs=[worker])
    assert Worker.objects.get(pk=row.pk).stopped_at is None


@pytest.mark.usefixtures("worker_factory")  # a test database for processes, and queues purged before and after
def test_a_worker_with_two_processes_trains_two_trials_at_once(user, tiny_backbone, bundled_tasks, redis_url, tmp_path,
                                                                settings):
    from tests.conftest import subprocess_env

    settings.PEFS_STALE_SECONDS = STALE_SECONDS
    worker = ConcurrentWorker(subprocess_env(redis_url), tmp_path / "concurrent.log", beat=False,
                              queues="gpu,default", concurrency=2).start()
    try:
        row = registered(worker)
        assert row.concurrency == 2 and row.device == "cpu"
        search = services.search_create(owner=user, name="two at once", tasks=[bundled_tasks["sst2"]],
                                        backbone=tiny_backbone, budget_kind="absolute", budget_value=6000, groups=2,
                                        preset="quick", overrides={**SYSTEM_OVERRIDES, "max_train_examples": 256},
                                        seed=3)
        finished = wait_for(
            lambda: list(Trial.objects.filter(search=search, status=Trial.Status.SUCCEEDED)[:4])
            if Trial.objects.filter(search=search, status=Trial.Status.SUCCEEDED).count() >= 2 else None,
            timeout=600, what="two trials to finish", logs=[worker])
        services.search_cancel(search=Search.objects.get(pk=search.pk))

        assert {trial.worker for trial in finished} == {row.name}
        overlapping = [(a.pk, b.pk) for a, b in itertools.combinations(finished, 2)
                       if a.started_at < b.finished_at and b.started_at < a.finished_at]
        assert overlapping, [(t.pk, t.started_at, t.finished_at) for t in finished]
    finally:
        worker.stop()  # a clean shutdown
    assert state_of(user, row.name) == "stopped"
