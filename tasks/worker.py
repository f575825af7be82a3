"""The worker side of a trial: claim it, beat a heartbeat, run the engine, record metrics, finish it.

The data path is one-way: tasks.jobs (Celery) -> this module -> experiments.services (every write)
and tasks.runner (the engine, which knows nothing of Django). The CLI's --local mode runs the same
code in its own process (search_run_local).

torch is imported only when a trial runs (tasks.runner and tasks.train import it), so importing
this module stays cheap for the CLI and the Celery process before its first trial.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from experiments import selectors, services
from experiments.models import Search, Task, Trial
from experiments.files import upload_local_path
from experiments.services.artifacts import trial_artifacts_store
from experiments.services.workers import worker_beat, worker_stop

log = logging.getLogger(__name__)

# The broker's list of waiting "gpu" messages and Redis's hash of delivered, unacknowledged ones.
BROKER_QUEUE, BROKER_UNACKED = "gpu", "unacked"


# --- metrics -------------------------------------------------------------------------------

class MetricRecorder:
    """Batches a trial's metric points and hands each batch to services.metric_points_record.

    Points are buffered and flushed every `flush_points` points or `flush_seconds`; the service
    stores a batch with one idempotent bulk insert and publishes it to "search-<id>".

    >>> recorder = MetricRecorder(trial_id=1, attempt=1, search_id=1, stage_id=1)  # doctest: +SKIP
    >>> recorder.add("sst2", step=10, values={"loss": 0.69, "lr": 1e-4}); recorder.flush()  # doctest: +SKIP
    """

    def __init__(self, *, trial_id: int, attempt: int, search_id: int, stage_id: int,
                 flush_points: int = 500, flush_seconds: float = 1.0, publish: bool = True) -> None:
        self.trial_id, self.attempt = trial_id, attempt
        self.search_id, self.stage_id = search_id, stage_id
        self.flush_points, self.flush_seconds = flush_points, flush_seconds
        self.publish = publish
        self.buffer: list[tuple[int, str, float]] = []
        self.last_flush = time.monotonic()
        self.written = 0

    def add(self, task_name: str, *, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if value is None:
                continue
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):  # NaN/inf: not storable in JSON
                continue
            self.buffer.append((int(step), f"{task_name}:{name}", value))
        # The first point goes out at once (the live curve starts without waiting a flush
        # interval); later ones in batches.
        if (not self.written or len(self.buffer) >= self.flush_points
                or time.monotonic() - self.last_flush >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        self.written += services.metric_points_record(
            trial_id=self.trial_id, attempt=self.attempt, search_id=self.search_id, stage_id=self.stage_id,
            points=batch, publish=self.publish)


class RecorderCallbacks:
    """The training loop's callbacks (tasks.train.Callbacks protocol) feeding a MetricRecorder, and
    the engine's phase timings (tasks.timing) summed in ``timing``."""

    def __init__(self, recorder: MetricRecorder) -> None:
        self.recorder = recorder
        self.timing: dict[str, float] = {}

    def on_phase(self, task_name: str, phase: str, seconds: float) -> None:
        self.timing[phase] = self.timing.get(phase, 0.0) + seconds

    def on_step(self, task_name: str, step: int, values: dict[str, float]) -> None:
        self.recorder.add(task_name, step=step, values=values)

    def on_eval(self, task_name: str, step: int, metrics: dict[str, Any]) -> None:
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.recorder.add(task_name, step=step, values=numeric)
        self.recorder.flush()  # evaluations are rare and the curves should show them at once

    def on_end(self, outcome: Any) -> None:
        self.recorder.flush()


# --- running a trial -----------------------------------------------------------------------

class Heartbeat(threading.Thread):
    """Beats for a running trial from its own thread, so a long step never looks like a dead worker.

    It also carries cancellation back: when the trial was cancelled or superseded, `stop` is set
    and the training loop (which polls it every step) ends cooperatively.
    """

    def __init__(self, *, trial_id: int, attempt: int, interval: float) -> None:
        super().__init__(name=f"heartbeat-{trial_id}", daemon=True)
        self.trial_id, self.attempt, self.interval = trial_id, attempt, interval
        self.stop = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(self.interval):
                try:
                    if not services.trial_heartbeat(trial_id=self.trial_id, attempt=self.attempt):
                        self.stop.set()
                except Exception:  # a missed beat is survivable; the next one may get through
                    log.warning("heartbeat failed for trial %s", self.trial_id, exc_info=True)
        finally:
            close_old_connections()
            connection.close()  # this thread's own connection


class WorkerBeacon(threading.Thread):
    """Keeps this worker's row (experiments.services.workers) fresh from the worker's main process.

    It measures the device once, in a child process (tasks.device_memory.device_probe: the parent of
    a prefork pool must never initialise CUDA), then beats every `interval` seconds until `done` is
    set; `stop` records a clean shutdown.
    """

    def __init__(self, *, name: str, concurrency: int, interval: float) -> None:
        super().__init__(name="worker-beacon", daemon=True)
        self.worker_name, self.concurrency, self.interval = name, concurrency, interval
        self.started_at = timezone.now()
        self.done = threading.Event()

    def run(self) -> None:
        from tasks.device_memory import device_probe

        device = device_probe()
        try:
            while not self.done.is_set():
                try:
                    worker_beat(name=self.worker_name, hostname=socket.gethostname(), device=device.device,
                                device_name=device.name, device_memory_bytes=device.total_bytes,
                                concurrency=self.concurrency, pid=os.getpid(), started_at=self.started_at)
                except Exception:  # the database may be briefly away; the next beat may get through
                    log.warning("worker heartbeat failed for %s", self.worker_name, exc_info=True)
                self.done.wait(self.interval)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
        worker_stop(name=self.worker_name)


def memory_guard(trial: Trial, config: Any) -> None:
    """Refuse, before it allocates anything, a trial whose estimated memory does not fit the free
    memory of its CUDA device (tasks.device_memory); nothing on CPU."""
    from tasks.device_memory import TrialShape, guard

    backbone = trial.search.backbone
    full = "full_finetuning" in trial.design
    trained = backbone.total_params if full else trial.search.budget_params + backbone.hidden_size ** 2
    device = config.resolved_device()
    guard(TrialShape(total_params=backbone.total_params, trained_params=trained, num_layers=backbone.num_layers,
                     hidden_size=backbone.hidden_size, num_heads=backbone.num_heads,
                     batch_size=config.batch_size, max_length=config.max_length,
                     bf16=config.bf16 and device.type == "cuda"), device)


def task_spec(task: Task) -> dict[str, Any]:
    """The trainer's TaskSpec for a Task row, with uploaded files resolved to local files: the
    uploads storage's own where it is a folder here, else this worker's cached copy (read from the
    storage once per worker, experiments.files.upload_local_path)."""
    spec = dict(task.spec)
    for key in ("train_path", "eval_path", "selection_path"):
        if task.source == task.Source.UPLOAD and spec.get(key):
            spec[key] = str(upload_local_path(spec[key]))
    return spec


def trial_output_dir() -> Path:
    """A fresh local folder for the weights of a run that stands for the search (removed once they
    are in the artifacts storage): PEFS_DATA_DIR/scratch, this machine's own."""
    scratch = Path(settings.DATA_DIR) / "scratch"
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="trial-", dir=scratch))


def train_config_fields(config: dict[str, Any], *, seed: int, final: bool = False,
                        learning_rate: float | None = None) -> dict[str, Any]:
    """TrainConfig arguments for one trial of a search with SearchConfig dict `config`.

    ``learning_rate``: a final-stage run's own rate (its arm's grid point or chosen rate); None:
    the search's."""
    return {
        "batch_size": config["batch_size"],
        "epochs": config["final_epochs"] if final else config["epochs"],
        "learning_rate": learning_rate or config["learning_rate"],
        "train_examples": config.get("max_train_examples"),
        "eval_examples": config.get("max_eval_examples"),
        "max_length": config.get("max_length", 128),
        "seed": seed,
    }


def trial_data_seed(trial: Trial) -> int:
    """The seed of the example order, head initialisation and dropout (TrainConfig.seed).

    Common random numbers: every design of a stage shares its stage's data seed (recorded in the
    design's provenance by experiments.space.sample), so designs differ by their design, not by
    the shuffle; the engine initialises the PEFT modules with the design's own seed. A final-stage
    run (and a trial stored before data seeds existed) uses the trial's seed, which every arm of a
    replicate shares.
    """
    sample = (trial.design.get("provenance") or {}).get("sample") or {}
    data_seed = sample.get("data_seed")
    return data_seed if isinstance(data_seed, int) and not isinstance(data_seed, bool) else trial.seed


def trial_execute(*, trial_id: int, attempt: int, worker: str, backbone_cache: Any = None) -> Trial | None:
    """Claim and train one trial: the body of the Celery job, and of the CLI's --local mode."""
    from tasks.runner import Cancelled, run_design  # imports torch: only once a trial runs
    from tasks.train import TrainConfig

    trial = services.trial_claim(trial_id=trial_id, attempt=attempt, worker=worker)
    if trial is None:
        return None
    search = trial.search
    recorder = MetricRecorder(trial_id=trial.pk, attempt=attempt, search_id=search.pk, stage_id=trial.stage_id)
    callbacks = RecorderCallbacks(recorder)
    if trial.queued_at is not None and trial.started_at is not None:  # the wait from queueing to this claim
        callbacks.on_phase("", "queued", (trial.started_at - trial.queued_at).total_seconds())
    heartbeat = Heartbeat(trial_id=trial.pk, attempt=attempt, interval=settings.PEFS_HEARTBEAT_SECONDS)
    heartbeat.start()
    final = trial.stage.key == "final"
    task_rows = selectors.search_tasks(search)
    if final:  # a final-stage run trains one task
        task_rows = [t for t in task_rows if t.name == trial.choices.get("task")]
    output_dir = trial_output_dir() if selectors.trial_stands_for_search(trial) else None
    rung = services.trial_rung_plan(trial)  # successive halving: which epochs this delivery trains
    try:
        config = TrainConfig(**train_config_fields(search.config, seed=trial_data_seed(trial), final=final,
                                                   learning_rate=trial.choices.get("learning_rate")))
        if rung is not None and rung["checkpoint_dir"] is not None:  # left by a superseded attempt
            shutil.rmtree(rung["checkpoint_dir"], ignore_errors=True)
        if rung is not None and rung["resume_from"] is not None:
            services.rung_checkpoint_fetch(trial, rung["rung"] - 1)  # written on another worker, maybe
            _carry_points(trial, attempt)
        memory_guard(trial, config)
        outcome = run_design(
            trial.design,
            [task_spec(task) for task in task_rows],
            train_config=config,
            callbacks=callbacks,
            should_stop=heartbeat.stop.is_set,
            backbone_cache=backbone_cache,
            output_dir=output_dir,
            role=trial.eval_role,
            **_rung_arguments(rung),
        )
        if output_dir is not None:
            exported = time.perf_counter()
            outcome.notes.extend(export_peft(outcome.saved, trial.design))
            trial_artifacts_store(trial=trial, directory=output_dir)
            callbacks.on_phase("", "artifacts", time.perf_counter() - exported)
    except Cancelled:
        recorder.flush()
        return services.trial_finish(trial_id=trial.pk, attempt=attempt, status=Trial.Status.CANCELLED,
                                     error="cancelled while running")
    except Exception as exc:
        log.exception("trial %s failed", trial.pk)
        recorder.flush()
        return services.trial_finish(trial_id=trial.pk, attempt=attempt, status=Trial.Status.FAILED,
                                     error=f"{type(exc).__name__}: {exc}")
    finally:
        finishing = time.perf_counter()
        heartbeat.done.set()
        heartbeat.join(timeout=5)
        if output_dir is not None:
            shutil.rmtree(output_dir, ignore_errors=True)
    recorder.flush()
    result = services.TrialResult(score=outcome.score, scores=outcome.per_task, trainable_params=outcome.peft_total,
                                  head_params=outcome.head_params, notes=list(outcome.notes),
                                  optimised_params=outcome.trainable_parameters.get("optimised_total"))
    if rung is not None:
        result.rung_epochs = rung["until_epoch"]
        if rung["checkpoint_dir"] is not None:
            services.rung_checkpoint_publish(trial, rung["rung"])  # the next rung may run elsewhere
            result.checkpoint = {"attempt": attempt, "epochs": rung["until_epoch"],
                                 "steps": {task: entry["steps"] for task, entry in outcome.per_task.items()}}
    callbacks.on_phase("", "finish", time.perf_counter() - finishing)
    result.timing = callbacks.timing
    return services.trial_finish(trial_id=trial.pk, attempt=attempt, status=Trial.Status.SUCCEEDED, result=result)


def _rung_arguments(rung: dict[str, Any] | None) -> dict[str, Any]:
    """run_design's halving arguments: train to the rung's epoch, from and to rung checkpoints."""
    if rung is None:
        return {}
    return {"until_epoch": rung["until_epoch"], "resume_from": rung["resume_from"],
            "checkpoint_dir": rung["checkpoint_dir"]}


def _carry_points(trial: Trial, attempt: int) -> None:
    """A new attempt resuming from a rung checkpoint written by an earlier one: copy that attempt's
    points up to the checkpoint, so the curve is whole (services.halving)."""
    checkpoint = trial.checkpoint or {}
    if checkpoint.get("attempt") not in (None, attempt):
        services.metric_points_carry(trial_id=trial.pk, from_attempt=checkpoint["attempt"], to_attempt=attempt,
                                     steps=checkpoint.get("steps") or {}, search_id=trial.search_id,
                                     stage_id=trial.stage_id)


def export_peft(saved: dict[str, str], design: dict[str, Any]) -> list[str]:
    """Hugging Face PEFT export of each task's saved weights where the design is LoRA-only."""
    from tasks.peft import export_peft as export, load  # imports torch
    from tasks.peft.persistence import NotExpressible

    notes = []
    for task_name, directory in saved.items():
        try:
            export(load(directory), design, Path(directory) / "peft")
        except NotExpressible as exc:
            notes.append(f"PEFT export not available for {task_name}: {exc}")
            (Path(directory) / "peft-not-expressible.txt").write_text(f"{exc}\n")
    return notes


# --- in-process execution and supervision --------------------------------------------------

def search_run_local(*, search: Search, progress: Callable[[Search], None] | None = None,
                     backbone_cache: Any = None) -> Search:
    """Run a search's queued trials in this process (the CLI's --local), until it completes,
    fails, is cancelled, or waits for a person. Celery messages sent meanwhile are harmless:
    a worker that later receives one finds the trial no longer queued and drops it."""
    if backbone_cache is None:
        from tasks.runner import BackboneCache  # imports torch

        backbone_cache = BackboneCache()
    while True:
        search.refresh_from_db()
        if progress:
            progress(search)
        if search.status != Search.Status.RUNNING:
            return search
        trial = selectors.trial_next_queued(search=search)
        if trial is None:
            return search
        trial_execute(trial_id=trial.pk, attempt=trial.attempt, worker="local", backbone_cache=backbone_cache)


def broker_message_ids() -> set[str] | None:
    """Ids of the messages Redis still holds for the trial queue (waiting or delivered, unacked)."""
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        raw = client.lrange(BROKER_QUEUE, 0, -1) + list(client.hvals(BROKER_UNACKED))
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
