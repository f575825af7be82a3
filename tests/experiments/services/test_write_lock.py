"""No request holds the database's write lock for more than a moment (issue 9): a stage's designs
are drawn before the write transaction opens, and a large search created while a worker beats
its heartbeat never makes a heartbeat fail."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from experiments import services
from experiments.models import Stage, Trial
from experiments.services import searches
from experiments.space import DesignSpace
from tests.factories import BackboneFactory, TaskFactory, TrialFactory, backbone_shape


def _search_kwargs(user, **overrides):
    backbone = BackboneFactory(shape=backbone_shape(), total_params=100_000, num_layers=4)
    return dict(owner=user, name="s", tasks=[TaskFactory()], backbone=backbone, budget_kind="fraction",
                budget_value=0.02, groups=2, preset="quick", overrides=overrides)


@pytest.mark.django_db
def test_designs_are_drawn_outside_the_write_transaction(user, monkeypatch):
    draws = []
    real_sample = searches.sample

    def recording_sample(*args, **kwargs):
        # pytest-django wraps each test in one atomic block; a draw inside a service's own
        # transaction would be nested one level deeper.
        draws.append(len(connection.atomic_blocks))
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(searches, "sample", recording_sample)
    outer = len(connection.atomic_blocks)
    search = services.search_create(**_search_kwargs(user, designs_per_stage=6))
    stage = search.stages.get()
    Stage.objects.filter(pk=stage.pk).update(status=Stage.Status.AWAITING)
    choice = DesignSpace.from_dict(stage.space).open(stage.component)[0]
    services.stage_approve(stage=stage, user=user, choice=choice, reason="test")
    assert len(draws) == 2 and draws == [outer, outer], draws
    assert search.stages.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_large_search_does_not_fail_a_concurrent_heartbeat(user):
    trial = TrialFactory(status=Trial.Status.RUNNING, attempt=1, heartbeat_at=timezone.now())
    stop = threading.Event()
    outcomes: list[object] = []

    def beat() -> None:
        try:
            if connection.vendor == "sqlite":
                # "A moment": a heartbeat waits at most 2 s for the write lock (the worker's own
                # busy timeout is 30 s); holding the lock for a whole draw used to exceed it.
                connection.ensure_connection()
                connection.connection.execute("PRAGMA busy_timeout = 2000")
            while not stop.is_set():
                try:
                    outcomes.append(services.trial_heartbeat(trial_id=trial.pk, attempt=1))
                except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                    outcomes.append(exc)
                stop.wait(0.02)
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        search = services.search_create(**_search_kwargs(user, designs_per_stage=1000))
    finally:
        stop.set()
        thread.join()
    assert search.trials.count() >= 1000
    failures = [o for o in outcomes if o is not True]
    assert outcomes and not failures, failures[:3]
