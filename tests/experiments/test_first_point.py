"""Time to the first live point (issue 14): the recorder sends a trial's first point at once, later
ones in batches; a trial worker imports the engine before its pool forks."""
from __future__ import annotations

from types import SimpleNamespace

from tasks import jobs, worker


def test_the_first_point_is_flushed_at_once_and_later_ones_are_batched(monkeypatch):
    batches = []
    monkeypatch.setattr(worker.services, "metric_points_record", lambda **kw: batches.append(kw["points"]) or len(kw["points"]))
    recorder = worker.MetricRecorder(trial_id=1, attempt=1, search_id=1, stage_id=1, flush_points=100, flush_seconds=3600)
    recorder.add("sst2", step=1, values={"loss": 0.7})
    assert batches == [[(1, "sst2:loss", 0.7)]]
    recorder.add("sst2", step=2, values={"loss": 0.6})
    recorder.add("sst2", step=3, values={"loss": 0.5})
    assert len(batches) == 1  # waiting for the batch size or the flush interval
    recorder.flush()
    assert batches[1] == [(2, "sst2:loss", 0.6), (3, "sst2:loss", 0.5)]


def test_a_trial_worker_preloads_the_engine_and_a_control_worker_does_not(monkeypatch):
    imported = []
    real_import = __import__

    def spy(name, *args, **kwargs):
        if name in ("tasks.runner", "tasks.data.loading"):
            imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", spy)
    control = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={"control": 1}))))
    jobs.preload_engine(control)
    assert imported == []
    trials = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={"gpu": 1}))))
    jobs.preload_engine(trials)
    assert set(imported) == {"tasks.runner", "tasks.data.loading"}
