"""Time to the first live point (issue 14): the recorder sends a trial's first point at once, later
ones in batches; a trial worker imports the engine before its pool forks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from tasks import jobs, worker
from tasks.peft import backbones

ROOT = Path(__file__).resolve().parents[2]


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
    preloaded = []
    monkeypatch.setattr(backbones, "preload_model_classes", lambda: preloaded.append(True))
    control = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={"control": 1}))))
    jobs.preload_engine(control)
    assert imported == [] and preloaded == []
    trials = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={"gpu": 1}))))
    jobs.preload_engine(trials)
    assert set(imported) == {"tasks.runner", "tasks.data.loading"}
    assert preloaded == [True]


def test_preloading_imports_every_familys_lazily_loaded_model_module():
    # A fresh interpreter: importing the engine leaves transformers' modelling modules unloaded
    # (the ~2 s a worker's first trial used to pay); preload_model_classes loads them all.
    script = (
        "import sys, tasks.runner\n"
        "from tasks.peft.backbones import FAMILY_SPECS, preload_model_classes\n"
        "modules = [f'transformers.models.{name}.modeling_{name}' for name in FAMILY_SPECS]\n"
        "before = [m for m in modules if m in sys.modules]\n"
        "preload_model_classes()\n"
        "after = [m for m in modules if m in sys.modules]\n"
        "print(len(before), len(after), len(modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    before, after, total = map(int, done.stdout.split())
    assert (before, after) == (0, total) and total == len(backbones.FAMILY_SPECS)
