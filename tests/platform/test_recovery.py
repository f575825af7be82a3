"""Recovery does not wait for the running trial: the sweep has a worker slot of its own (queue
"control", as `make run` lays it out), so a trial whose pool process is killed is re-queued within
the stale interval plus one sweep period, even while the trial worker's only slot is busy with
another trial."""
from __future__ import annotations

import time

import psutil
import pytest
from django.utils import timezone

from experiments import services
from experiments.models import Search, Trial
from tests.conftest import TINY_OVERRIDES, subprocess_env

pytestmark = [pytest.mark.system, pytest.mark.slow]

# Scheduling noise on a loaded machine: beat's tick, the control worker picking the message up.
SLACK_SECONDS = 5.0


def _wait_for(predicate, *, timeout: float, what: str, workers=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(worker.log()[-3000:] for worker in workers)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def test_a_trial_whose_pool_process_dies_is_requeued_within_stale_plus_one_sweep(
        user, tiny_backbone, bundled_tasks, worker_factory, redis_url):
    env = subprocess_env(redis_url)
    stale, sweep = float(env["PEFS_STALE_SECONDS"]), float(env["PEFS_SWEEP_SECONDS"])
    # Given the launcher's layout: one prefork trial worker, and the sweep's worker with beat
    trials = worker_factory(queues="gpu,default", beat=False, pool="prefork")
    control = worker_factory(queues="control", beat=True)
    workers = [trials, control]
    # and trials long enough that the next one still trains when the first is found lost
    overrides = {**TINY_OVERRIDES, "designs_per_stage": 2, "final_seeds": 1, "max_train_examples": 8000,
                 "epochs": 3}
    search = services.search_create(owner=user, name="recovery", tasks=[bundled_tasks["sst2"]],
                                    backbone=tiny_backbone, budget_kind="absolute", budget_value=6000, groups=2,
                                    preset="quick", overrides=overrides, seed=5)
    trial = _wait_for(lambda: Trial.objects.filter(search=search, status=Trial.Status.RUNNING,
                                                   metric_points__isnull=False).first(),
                      timeout=300, what="a running trial with metrics", workers=workers)
    first_attempt = trial.attempt
    # When the pool process that trains it is killed outright
    # (the worker's other child, a short-lived device probe started when it became ready, is not it)
    (pool_process,) = [child for child in psutil.Process(trials.proc.pid).children() if "celery" in child.cmdline()]
    killed_at = timezone.now()
    pool_process.kill()
    # Then the sweep re-queues it within the stale interval plus one sweep period,
    requeued = _wait_for(lambda: Trial.objects.filter(pk=trial.pk, attempt=first_attempt + 1).first(),
                         timeout=stale + sweep + 120, what="the lost trial to be re-queued", workers=workers)
    delay = (requeued.queued_at - killed_at).total_seconds()
    assert delay <= stale + sweep + SLACK_SECONDS, f"re-queued after {delay:.1f} s"
    assert any("stopped answering" in note for note in requeued.notes)
    # although the trial worker's only slot is taken by the other trials, far from done
    others = list(Trial.objects.filter(search=search, status__in=[Trial.Status.QUEUED, Trial.Status.RUNNING])
                  .exclude(pk=trial.pk))
    assert others
    # And once that slot is free, a new pool process runs the lost trial again
    for other in others:
        services.trial_cancel(trial=other)
    rerun = _wait_for(lambda: Trial.objects.filter(pk=trial.pk, attempt=first_attempt + 1,
                                                   started_at__gt=requeued.queued_at).first(),
                      timeout=180, what="the re-queued trial to run again", workers=workers)
    print(f"re-queued {delay:.1f} s and re-run {(rerun.started_at - killed_at).total_seconds():.1f} s "
          f"after the kill (stale {stale:.0f} s, sweep {sweep:.0f} s)")
    services.search_cancel(search=Search.objects.get(pk=search.pk))
