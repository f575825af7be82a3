"""Writes. Every change to PEFS's rows goes through a function here (STYLE.md: services/selectors).

Functions are named <entity>_<action>, take keyword-only arguments and run in a transaction;
Celery messages and live events are sent with transaction.on_commit, so nothing fires for a write
that rolled back. Bad input raises django.core.exceptions.ValidationError with a dict that names
the field.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from . import events
from .models import MetricPoint, Search, Stage, Trial

log = logging.getLogger(__name__)


# --- live events ---------------------------------------------------------------------------

def trial_event(trial: Trial) -> dict[str, Any]:
    return {
        "id": trial.pk, "stage": trial.stage_id, "index": trial.index, "status": trial.status,
        "attempt": trial.attempt, "score": trial.score, "trainable_params": trial.trainable_params,
        "duration_s": trial.duration_s, "error": trial.error[:500],
    }


def search_event(search: Search) -> dict[str, Any]:
    return {
        "id": search.pk, "status": search.status, "trials_done": search.trials_done,
        "trials_total": search.trials_total, "best_score": search.best_score,
        "current_stage": search.current_stage_id,
    }


def _publish_on_commit(search_id: int, event_type: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: events.publish(search_id, event_type, payload))


# --- queueing ------------------------------------------------------------------------------

def trial_message_id(trial_id: int, attempt: int) -> str:
    """Celery task id of one delivery: lets the sweep see which trials the broker still holds."""
    return f"trial-{trial_id}-{attempt}"


def _enqueue_on_commit(trial_ids_attempts: Iterable[tuple[int, int]]) -> None:
    pairs = list(trial_ids_attempts)

    def send() -> None:
        from tasks.jobs import run_trial

        for trial_id, attempt in pairs:
            run_trial.apply_async((trial_id, attempt), task_id=trial_message_id(trial_id, attempt))

    if pairs:
        transaction.on_commit(send)


def trials_enqueue(*, trials: Iterable[Trial]) -> None:
    """Mark trials queued (next attempt) and send their messages after commit."""
    now = timezone.now()
    pairs = []
    for trial in trials:
        trial.status = Trial.Status.QUEUED
        trial.attempt += 1
        trial.queued_at = now
        trial.cancel_requested = False
        trial.save(update_fields=["status", "attempt", "queued_at", "cancel_requested"])
        pairs.append((trial.pk, trial.attempt))
    _enqueue_on_commit(pairs)


# --- metrics -------------------------------------------------------------------------------

class MetricRecorder:
    """The worker's training callback: batches MetricPoints into the database, then publishes them.

    Points are buffered and written with one bulk insert per flush (every `flush_points` points or
    `flush_seconds`), ignoring conflicts on (trial, attempt, step, name) so a replayed flush never
    duplicates a point. The same flush publishes the batch to "search-<id>".

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

    def add(self, task: str, *, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if value is None:
                continue
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):  # NaN/inf: not storable in JSON
                continue
            self.buffer.append((int(step), f"{task}:{name}", value))
        if len(self.buffer) >= self.flush_points or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        MetricPoint.objects.bulk_create(
            [MetricPoint(trial_id=self.trial_id, attempt=self.attempt, step=s, name=n, value=v)
             for s, n, v in batch],
            ignore_conflicts=True, batch_size=2000,
        )
        self.written += len(batch)
        if self.publish:
            events.publish(self.search_id, "trial.metric", {
                "trial": self.trial_id, "attempt": self.attempt, "stage": self.stage_id,
                "points": [[s, n, v] for s, n, v in batch],
            })


# --- trial lifecycle -----------------------------------------------------------------------

def trial_claim(*, trial_id: int, attempt: int, worker: str) -> Trial | None:
    """Take a queued trial for this delivery; None when the message is stale or cancelled.

    A delivery carries the attempt it was sent for: a message redelivered after the sweep already
    re-queued the trial (or after a retry) no longer matches and is dropped, so a trial never runs
    twice at once.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = Trial.objects.filter(
            pk=trial_id, attempt=attempt, status=Trial.Status.QUEUED, cancel_requested=False,
        ).update(status=Trial.Status.RUNNING, worker=worker[:128], started_at=now, heartbeat_at=now,
                 error="")
        if not claimed:
            return None
        trial = Trial.objects.select_related("search", "stage").get(pk=trial_id)
        Search.objects.filter(pk=trial.search_id, status=Search.Status.RUNNING).update(
            current_stage=trial.stage_id)
        _publish_on_commit(trial.search_id, "trial.status", {"trial": trial_event(trial)})
    return trial


def trial_heartbeat(*, trial_id: int, attempt: int) -> bool:
    """Record that the worker is alive; returns False when the trial should stop (cancelled/superseded)."""
    updated = Trial.objects.filter(pk=trial_id, attempt=attempt, status=Trial.Status.RUNNING).update(
        heartbeat_at=timezone.now())
    if not updated:
        return False
    return not Trial.objects.filter(pk=trial_id, cancel_requested=True).exists()


@dataclass
class TrialResult:
    score: float
    scores: dict[str, Any]
    trainable_params: int
    head_params: int
    notes: list[str] = field(default_factory=list)


def trial_finish(*, trial_id: int, attempt: int, status: str, result: TrialResult | None = None,
                 error: str = "") -> Trial | None:
    """Close one attempt. Ignored (None) when the attempt was superseded meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        trial = (Trial.objects.select_for_update().select_related("search", "stage")
                 .filter(pk=trial_id, attempt=attempt, status=Trial.Status.RUNNING).first())
        if trial is None:
            return None
        trial.status = status
        trial.finished_at = now
        trial.duration_s = (now - trial.started_at).total_seconds() if trial.started_at else None
        trial.error = error
        fields = ["status", "finished_at", "duration_s", "error"]
        if result is not None:
            trial.score, trial.scores = result.score, result.scores
            trial.trainable_params, trial.head_params = result.trainable_params, result.head_params
            trial.notes = [*trial.notes, *(n for n in result.notes if n not in trial.notes)]  # keep crash notes
            fields += ["score", "scores", "trainable_params", "head_params", "notes"]
        trial.save(update_fields=fields)
        _trial_became_final(trial)
    return trial


def _trial_became_final(trial: Trial) -> None:
    """Counters, events, and the stage's completion check; runs inside the caller's transaction."""
    Search.objects.filter(pk=trial.search_id).update(trials_done=F("trials_done") + 1)
    if trial.status == Trial.Status.SUCCEEDED and trial.score is not None and trial.kind == Trial.Kind.SAMPLE:
        Search.objects.filter(pk=trial.search_id, best_score__isnull=True).update(best_score=trial.score)
        Search.objects.filter(pk=trial.search_id, best_score__lt=trial.score).update(best_score=trial.score)
    search = Search.objects.get(pk=trial.search_id)
    _publish_on_commit(trial.search_id, "trial.status", {"trial": trial_event(trial)})
    _publish_on_commit(trial.search_id, "search.status", {"search": search_event(search)})
    stage_check_complete(stage_id=trial.stage_id)


def trial_cancel(*, trial: Trial) -> Trial:
    """Queued: cancelled before it starts. Running: asked to stop at its next step."""
    with transaction.atomic():
        trial = Trial.objects.select_for_update().get(pk=trial.pk)
        if trial.status == Trial.Status.QUEUED:
            trial.status = Trial.Status.CANCELLED
            trial.finished_at = timezone.now()
            trial.save(update_fields=["status", "finished_at"])
            _trial_became_final(trial)
        elif trial.status == Trial.Status.RUNNING:
            trial.cancel_requested = True
            trial.save(update_fields=["cancel_requested"])
        else:
            raise ValidationError({"status": [f"A {trial.status} trial cannot be cancelled."]})
    return trial


def trial_retry(*, trial: Trial) -> Trial:
    """Run a failed or cancelled trial again as a new attempt, reopening its stage if needed."""
    with transaction.atomic():
        trial = Trial.objects.select_for_update().select_related("stage", "search").get(pk=trial.pk)
        if trial.status not in (Trial.Status.FAILED, Trial.Status.CANCELLED):
            raise ValidationError({"status": [f"Only failed or cancelled trials can be retried, not {trial.status}."]})
        stage, search = trial.stage, trial.search
        if search.status == Search.Status.CANCELLED:
            raise ValidationError({"search": ["The search was cancelled; start a new one."]})
        if stage.status not in (Stage.Status.RUNNING, Stage.Status.AWAITING):
            raise ValidationError({"stage": [f"Stage {stage.key} is already {stage.status}; its trials are final."]})
        if stage.status == Stage.Status.AWAITING:
            stage.status, stage.summary, stage.recommendation = Stage.Status.RUNNING, None, None
            stage.save(update_fields=["status", "summary", "recommendation"])
            _publish_on_commit(search.pk, "stage.status", {"stage": {"id": stage.pk, "key": stage.key,
                                                                     "status": stage.status}})
        Search.objects.filter(pk=search.pk).update(
            trials_done=F("trials_done") - 1, status=Search.Status.RUNNING, current_stage=stage)
        trial.error = ""
        trial.save(update_fields=["error"])
        trials_enqueue(trials=[trial])
        _publish_on_commit(search.pk, "trial.status", {"trial": trial_event(trial)})
    return trial


def trials_retry_failed(*, search: Search) -> int:
    """Retry every failed trial of the search's current, still open stage."""
    stage = search.current_stage
    if stage is None:
        return 0
    failed = list(stage.trials.filter(status=Trial.Status.FAILED))
    for trial in failed:
        trial_retry(trial=trial)
    return len(failed)


# --- supervision ---------------------------------------------------------------------------

def trials_sweep(*, now=None, broker_ids: set[str] | None = None) -> dict[str, int]:
    """Re-queue trials whose worker vanished, and queued trials whose message the broker lost.

    The database is the record: a running trial whose heartbeat is older than PEFS_STALE_SECONDS
    gets a new attempt (or fails after PEFS_MAX_ATTEMPTS). A queued trial older than the same
    grace period whose message id is not in the broker (`broker_ids`, read from Redis by the
    caller) is sent again with the same attempt; the claim drops any duplicate.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.PEFS_STALE_SECONDS)
    requeued = failed = resent = 0
    for trial_id in Trial.objects.filter(status=Trial.Status.RUNNING, heartbeat_at__lt=stale_before) \
            .values_list("pk", flat=True):
        with transaction.atomic():
            trial = (Trial.objects.select_for_update().filter(
                pk=trial_id, status=Trial.Status.RUNNING, heartbeat_at__lt=stale_before).first())
            if trial is None:
                continue
            message = f"worker {trial.worker or '?'} stopped answering during attempt {trial.attempt}"
            if trial.attempt >= settings.PEFS_MAX_ATTEMPTS:
                trial.status, trial.finished_at = Trial.Status.FAILED, now
                trial.error = f"{message}; gave up after {trial.attempt} attempts"
                trial.save(update_fields=["status", "finished_at", "error"])
                _trial_became_final(trial)
                failed += 1
            else:
                log.warning("re-queueing trial %s: %s", trial.pk, message)
                trial.notes = [*trial.notes, message]
                trial.save(update_fields=["notes"])
                trials_enqueue(trials=[trial])
                requeued += 1
    if broker_ids is not None:
        lost = Trial.objects.filter(status=Trial.Status.QUEUED, queued_at__lt=stale_before,
                                    cancel_requested=False).values_list("pk", "attempt")
        pairs = [(pk, attempt) for pk, attempt in lost if trial_message_id(pk, attempt) not in broker_ids]
        if pairs:
            with transaction.atomic():
                _enqueue_on_commit(pairs)
            resent = len(pairs)
    return {"requeued": requeued, "failed": failed, "resent": resent}


# --- running a trial -----------------------------------------------------------------------

class _Heartbeat(threading.Thread):
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
                    if not trial_heartbeat(trial_id=self.trial_id, attempt=self.attempt):
                        self.stop.set()
                except Exception:  # a missed beat is survivable; the next one may get through
                    log.warning("heartbeat failed for trial %s", self.trial_id, exc_info=True)
        finally:
            close_old_connections()
            from django.db import connection

            connection.close()


def task_spec(task) -> dict[str, Any]:
    """The trainer's TaskSpec for a Task row, with uploaded files resolved to absolute paths."""
    from pathlib import Path

    spec = dict(task.spec)
    for key in ("train_path", "eval_path"):
        if task.source == task.Source.UPLOAD and spec.get(key):
            spec[key] = str(Path(settings.UPLOAD_ROOT) / spec[key])
    return spec


def trial_artifact_dir(trial: Trial):
    from pathlib import Path

    return Path(settings.MEDIA_ROOT) / "searches" / str(trial.search_id) / "trials" / str(trial.pk)


def trial_execute(*, trial_id: int, attempt: int, worker: str, backbone_cache: Any = None) -> Trial | None:
    """Claim and train one trial: the body of the Celery job, and of the CLI's --local mode."""
    from tasks.runner import Cancelled, run_design
    from tasks.train import TrainConfig

    trial = trial_claim(trial_id=trial_id, attempt=attempt, worker=worker)
    if trial is None:
        return None
    search = trial.search
    recorder = MetricRecorder(trial_id=trial.pk, attempt=attempt, search_id=search.pk, stage_id=trial.stage_id)
    heartbeat = _Heartbeat(trial_id=trial.pk, attempt=attempt, interval=settings.PEFS_HEARTBEAT_SECONDS)
    heartbeat.start()
    final = trial.stage.key == "final"
    tasks = list(search.tasks.order_by("name"))
    if final:  # a final-stage run trains one task
        tasks = [t for t in tasks if t.name == trial.choices.get("task")]
    first_seed = min(range(search_config(search).final_seeds))
    keep_weights = trial.kind == Trial.Kind.SELECTED and trial.seed == first_seed
    output_dir = trial_artifact_dir(trial) if keep_weights else None
    try:
        config = TrainConfig(**train_config_fields(search.config, seed=trial.seed, final=final))
        outcome = run_design(
            trial.design,
            [task_spec(task) for task in tasks],
            train_config=config,
            callbacks=_RecorderCallbacks(recorder),
            should_stop=heartbeat.stop.is_set,
            backbone_cache=backbone_cache,
            output_dir=output_dir,
        )
        if output_dir is not None:
            outcome.notes.extend(_export_peft(outcome.saved, trial.design))
    except Cancelled:
        recorder.flush()
        return trial_finish(trial_id=trial.pk, attempt=attempt, status=Trial.Status.CANCELLED,
                            error="cancelled while running")
    except Exception as exc:
        log.exception("trial %s failed", trial.pk)
        recorder.flush()
        return trial_finish(trial_id=trial.pk, attempt=attempt, status=Trial.Status.FAILED,
                            error=f"{type(exc).__name__}: {exc}")
    finally:
        heartbeat.done.set()
        heartbeat.join(timeout=5)
    recorder.flush()
    result = TrialResult(score=outcome.score, scores=outcome.per_task, trainable_params=outcome.peft_total,
                         head_params=outcome.head_params, notes=list(outcome.notes))
    return trial_finish(trial_id=trial.pk, attempt=attempt, status=Trial.Status.SUCCEEDED, result=result)


def _export_peft(saved: dict[str, str], design: dict[str, Any]) -> list[str]:
    """Hugging Face PEFT export of each task's saved weights where the design is LoRA-only."""
    from pathlib import Path

    from tasks.peft import export_peft, load
    from tasks.peft.persistence import NotExpressible

    notes = []
    for task, directory in saved.items():
        try:
            export_peft(load(directory), design, Path(directory) / "peft")
        except NotExpressible as exc:
            notes.append(f"PEFT export not available for {task}: {exc}")
            (Path(directory) / "peft-not-expressible.txt").write_text(f"{exc}\n")
    return notes


class _RecorderCallbacks:
    def __init__(self, recorder: MetricRecorder) -> None:
        self.recorder = recorder

    def on_step(self, task: str, step: int, values: dict[str, float]) -> None:
        self.recorder.add(task, step=step, values=values)

    def on_eval(self, task: str, step: int, metrics: dict[str, Any]) -> None:
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.recorder.add(task, step=step, values=numeric)
        self.recorder.flush()  # evaluations are rare and the curves should show them at once

    def on_end(self, outcome: Any) -> None:
        self.recorder.flush()


# --- tasks and backbones -------------------------------------------------------------------

def _data_error(exc, *, stored=None, shown: str | None = None) -> ValidationError:
    """tasks.data.DataError -> a ValidationError for the web's field names.

    Messages name the file as the user uploaded it, never the path it is stored under."""
    field_map = {"path": "file", "file_format": "file", "text_columns": "text_columns",
                 "label_column": "label_column", "problem": "problem", "name": "name"}
    message = exc.message
    if stored is not None:
        message = message.replace(str(stored.resolve()), shown or "the file").replace(str(stored), shown or "the file")
    return ValidationError({field_map.get(exc.field, exc.field): [message]})


def _store_upload(uploaded_file, *, owner_id: int) -> "Path":
    """Write an upload to a fresh file under UPLOAD_ROOT/<owner>/ and return its path."""
    import uuid
    from pathlib import Path

    name = Path(uploaded_file.name or "upload").name
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".json", ".ndjson"):
        raise ValidationError({"file": [f"{name}: use a .csv, .tsv or .jsonl file (got {suffix or 'no extension'})."]})
    if uploaded_file.size is not None and uploaded_file.size > settings.UPLOAD_MAX_BYTES:
        raise ValidationError({"file": [
            f"{name}: too large: {uploaded_file.size / 2**20:.1f} MiB, the limit is "
            f"{settings.UPLOAD_MAX_BYTES / 2**20:.0f} MiB."]})
    directory = Path(settings.UPLOAD_ROOT) / str(owner_id)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}{suffix}"
    with open(path, "wb") as out:
        for chunk in uploaded_file.chunks():
            out.write(chunk)
    return path


def task_preview(*, uploaded_file, owner_id: int, max_rows: int = 5) -> dict[str, Any]:
    """Columns and the first rows of an uploaded file, for the upload form; stores nothing."""
    from tasks.data import DataError, preview_user_file

    path = _store_upload(uploaded_file, owner_id=owner_id)
    try:
        return preview_user_file(path, max_rows=max_rows, max_bytes=settings.UPLOAD_MAX_BYTES)
    except DataError as exc:
        raise _data_error(exc, stored=path, shown=uploaded_file.name) from None
    finally:
        path.unlink(missing_ok=True)


def task_upload(*, owner, name: str, uploaded_file, text_columns: list[str], label_column: str,
                problem: str | None = None) -> "Task":
    """Validate an uploaded CSV/TSV/JSONL file and register it as the owner's task."""
    from django.utils.text import slugify

    from tasks.data import DataError, user_task

    from .models import Task

    slug = slugify(name or "")[:64]
    if not slug:
        raise ValidationError({"name": ["Give the task a name (letters, digits, dashes)."]})
    if Task.objects.filter(owner=owner, name=slug).exists() or Task.objects.filter(owner=None, name=slug).exists():
        raise ValidationError({"name": [f"A task named {slug!r} already exists; choose another name."]})
    if not text_columns:
        raise ValidationError({"text_columns": ["Choose one or two text columns."]})
    if problem not in (None, "", "classification", "regression"):
        raise ValidationError({"problem": ["Choose classification or regression."]})
    path = _store_upload(uploaded_file, owner_id=owner.pk)
    try:
        spec = user_task(path, text_columns=list(text_columns), label_column=label_column,
                         problem=problem or None, name=slug, max_bytes=settings.UPLOAD_MAX_BYTES)
    except DataError as exc:
        path.unlink(missing_ok=True)
        raise _data_error(exc, stored=path, shown=uploaded_file.name) from None
    relative = str(path.relative_to(settings.UPLOAD_ROOT))
    spec_dict = spec.to_dict()
    spec_dict["train_path"] = relative
    try:
        with transaction.atomic():
            task = Task.objects.create(
                owner=owner, name=slug, display_name=name.strip()[:128], source=Task.Source.UPLOAD,
                path=relative, text_columns=list(spec.text_columns), label_column=spec.label_column,
                problem=spec.problem, labels=list(spec.labels), metric=spec.metric,
                notes=f"Uploaded file {uploaded_file.name}; {int(spec.holdout_fraction * 100)}% of it is "
                      "held out for evaluation.",
                spec=spec_dict,
            )
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return task


def backbone_introspect(name_or_path: str | None):
    """BackboneShape of a model (None: the bundled MiniLM). Loads it once, on this process."""
    from tasks.peft import HeadSpec, load_backbone

    return load_backbone(name_or_path, head=HeadSpec(problem="classification", num_labels=2)).shape


def backbone_register(*, owner, name_or_path: str, display_name: str = "") -> "Backbone":
    """Introspect a Hugging Face id or local folder and store it for the owner."""
    from .models import Backbone

    name_or_path = (name_or_path or "").strip()
    if not name_or_path:
        raise ValidationError({"name_or_path": ["Give a Hugging Face model id or a local folder."]})
    existing = Backbone.objects.filter(owner=owner, name_or_path=name_or_path).first()
    if existing:
        return existing
    try:
        shape = backbone_introspect(name_or_path)
    except Exception as exc:  # unsupported architecture, missing files, no network: say which
        raise ValidationError({"name_or_path": [f"Cannot use {name_or_path!r}: {exc}"]}) from None
    return Backbone.objects.create(
        owner=owner, name_or_path=name_or_path, display_name=display_name or name_or_path.rstrip("/").split("/")[-1],
        model_type=shape.model_type, family=shape.family, num_layers=shape.num_layers,
        hidden_size=shape.hidden_size, num_heads=shape.num_heads, total_params=shape.total_params,
        shape=shape.to_dict(),
    )


def budget_params(*, backbone, budget_kind: str, budget_value: float) -> int:
    if budget_kind == "fraction":
        if not 0 < budget_value <= 1:
            raise ValidationError({"budget_value": ["A fraction of the backbone must be in (0, 1], e.g. 0.005 for 0.5%."]})
        return max(1, round(budget_value * backbone.total_params))
    if budget_kind == "absolute":
        if budget_value < 1 or budget_value != int(budget_value):
            raise ValidationError({"budget_value": ["An absolute budget is a whole number of parameters >= 1."]})
        if budget_value > backbone.total_params:
            raise ValidationError({"budget_value": [
                f"{int(budget_value):,} exceeds the backbone's {backbone.total_params:,} parameters."]})
        return int(budget_value)
    raise ValidationError({"budget_kind": ["Choose 'fraction' or 'absolute'."]})


def budget_preview(*, backbone, budget_kind: str, budget_value: float) -> dict[str, Any]:
    count = budget_params(backbone=backbone, budget_kind=budget_kind, budget_value=budget_value)
    return {"budget_params": count, "fraction": count / backbone.total_params,
            "backbone_params": backbone.total_params}


def seed_bundled(*, backbone: bool = True) -> dict[str, int]:
    """Bundled GLUE tasks (everyone sees them) and the default MiniLM backbone; idempotent."""
    from tasks.data import GLUE_TASKS

    from .models import Backbone, Task

    new_tasks = 0
    for spec in GLUE_TASKS.values():
        if Task.objects.filter(owner=None, name=spec.name).exists():
            continue
        offline = spec.available_offline
        Task.objects.create(
            owner=None, name=spec.name, display_name=spec.description.split(":")[0] or spec.name,
            source=Task.Source.BUNDLED if offline else Task.Source.HUB, hub_id=spec.hub_id or "",
            text_columns=list(spec.text_columns), label_column=spec.label_column, problem=spec.problem,
            labels=list(spec.labels), metric=spec.metric, notes=spec.description, spec=spec.to_dict(),
        )
        new_tasks += 1
    new_backbones = 0
    if backbone and not Backbone.objects.filter(owner=None, is_default=True).exists():
        shape = backbone_introspect(None)
        Backbone.objects.create(
            owner=None, name_or_path=shape.name_or_path, display_name="all-MiniLM-L6-v2 (bundled)",
            model_type=shape.model_type, family=shape.family, num_layers=shape.num_layers,
            hidden_size=shape.hidden_size, num_heads=shape.num_heads, total_params=shape.total_params,
            shape=shape.to_dict(), is_default=True,
        )
        new_backbones = 1
    return {"tasks": new_tasks, "backbones": new_backbones}


# --- searches and stages -------------------------------------------------------------------

def _space_error(exc) -> ValidationError:
    """experiments.space.SpaceError / InfeasibleBudget -> ValidationError naming the field."""
    field_name = getattr(exc, "field", None) or "config"
    return ValidationError({field_name: [getattr(exc, "message", None) or str(exc)]})


def search_config(search: Search):
    from experiments.space import SearchConfig

    return SearchConfig.from_dict(search.config)


def train_config_fields(config: dict[str, Any], *, seed: int, final: bool = False) -> dict[str, Any]:
    """TrainConfig arguments for one trial of a search with SearchConfig dict `config`."""
    return {
        "batch_size": config["batch_size"],
        "epochs": config["final_epochs"] if final else config["epochs"],
        "learning_rate": config["learning_rate"],
        "train_examples": config.get("max_train_examples"),
        "eval_examples": config.get("max_eval_examples"),
        "max_length": config.get("max_length", 128),
        "seed": seed,
    }


# SearchConfig settings the library accepts but the workers cannot carry out yet, and why. The
# library plans halving and replays it on recorded stages; the workers do not yet pause and resume
# trials between rungs, so accepting the setting would silently ignore it. search_create refuses
# them and the new-search form does not offer them.
UNSCHEDULED_SETTINGS = {
    "halving_eta": "Successive halving is not scheduled on the workers yet; "
                   "leave it empty (replay it on finished stages instead).",
}


def search_create(*, owner, name: str, tasks: list, backbone, budget_kind: str = "fraction",
                  budget_value: float = 0.005, groups: int = 4, preset: str = "quick",
                  overrides: dict[str, Any] | None = None, auto_approve: bool = False, seed: int = 0) -> Search:
    """Validate a search, store it with its first stage and queue that stage's trials."""
    from experiments.space import DesignSpace, SpaceError
    from experiments.space import preset as make_preset

    from .models import Backbone, Task

    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["Give the search a name."]
    tasks = list(tasks or [])
    if not tasks:
        errors["tasks"] = ["Choose at least one task."]
    for task in tasks:
        if not isinstance(task, Task) or (task.owner_id not in (None, owner.pk)):
            errors.setdefault("tasks", []).append(f"Unknown task {getattr(task, 'pk', task)!r}.")
        elif task.source == Task.Source.HUB and not task.spec.get("available_offline", True):
            pass  # hub tasks are allowed; loading them fails clearly on the worker without network
    if not isinstance(backbone, Backbone) or backbone.owner_id not in (None, owner.pk):
        errors["backbone"] = ["Unknown backbone."]
    if errors:
        raise ValidationError(errors)
    if isinstance(groups, bool) or not isinstance(groups, int) or not 1 <= groups <= backbone.num_layers:
        raise ValidationError({"groups": [f"Groups must be a whole number from 1 to the backbone's "
                                          f"{backbone.num_layers} layers."]})
    count = budget_params(backbone=backbone, budget_kind=budget_kind, budget_value=budget_value)
    try:
        config = make_preset(preset, **(overrides or {}), num_groups=groups, budget={"parameters": count},
                             auto_approve=bool(auto_approve), seed=seed)
    except SpaceError as exc:
        raise _space_error(exc) from None
    except TypeError as exc:
        raise ValidationError({"overrides": [str(exc)]}) from None
    refused = {setting: [why] for setting, why in UNSCHEDULED_SETTINGS.items() if getattr(config, setting) is not None}
    if refused:
        raise ValidationError(refused)
    with transaction.atomic():
        search = Search.objects.create(
            owner=owner, name=name[:128], backbone=backbone, budget_kind=budget_kind,
            budget_value=budget_value, budget_params=count, groups=groups, preset=preset,
            config=config.to_dict(), auto_approve=bool(auto_approve), seed=seed,
        )
        search.tasks.set(tasks)
        stage_open(search=search, space=DesignSpace.initial(num_groups=groups), order=0)
    return search


def stage_open(*, search: Search, space, order: int) -> Stage:
    """Create the stage that follows `space` and queue its trials (inside the caller's transaction)."""
    from experiments.space import REFERENCE, InfeasibleSpace, SpaceError, next_stage, sample, stage_seed
    from experiments.space.stages import FINAL
    from tasks.peft.budget import BackboneShape

    config = search_config(search)
    spec = REFERENCE if order == 0 and config.reference_stage else next_stage(space)
    if spec.name == FINAL.name:
        return final_stage_open(search=search, space=space, order=order)
    shape = BackboneShape.from_dict(search.backbone.shape)
    try:
        batch = sample(space, config.designs_per_stage, seed=stage_seed(config.seed, spec.name), shape=shape,
                       budget=config.budget, balance=spec.component if config.balance and spec.component else None,
                       provenance={"search": search.pk, "stage": spec.name})
    except (InfeasibleSpace, SpaceError) as exc:
        raise _space_error(exc) from None
    stage = Stage.objects.create(
        search=search, order=order, key=spec.name, component=spec.component or "", space=space.to_dict(),
        plan={"title": spec.title, "requested": batch.requested, "sampled": len(batch.designs),
              "distinct_available": batch.distinct_available, "redraws": batch.redraws,
              "duplicates": batch.duplicates, "infeasible_fields": dict(batch.infeasible_fields),
              "shortfall": batch.shortfall, "seed": batch.seed},
    )
    trials = Trial.objects.bulk_create([
        Trial(search=search, stage=stage, index=d.index, kind=Trial.Kind.SAMPLE, choices=dict(d.choices),
              design=d.design, seed=d.seed, trainable_params=d.parameters,
              label=_choices_label(d.choices))
        for d in batch.designs
    ])
    _stage_started(search, stage, trials)
    return stage


def _choices_label(choices: dict[str, Any]) -> str:
    assignment = " ".join(f"{k.split('.')[-1]}:{v}" for k, v in choices.items()
                          if k.startswith("assignment.") and v)
    return f"{choices.get('grouping', '')}/{choices.get('allocation', '')}/{choices.get('groups', '')} {assignment}"[:64]


def _stage_started(search: Search, stage: Stage, trials: list[Trial]) -> None:
    trials = list(Trial.objects.filter(stage=stage).order_by("index"))  # bulk_create gives no pks on some DBs
    Search.objects.filter(pk=search.pk).update(
        trials_total=F("trials_total") + len(trials), current_stage=stage, status=Search.Status.RUNNING)
    trials_enqueue(trials=trials)
    search.refresh_from_db()
    _publish_on_commit(search.pk, "stage.status", {"stage": {"id": stage.pk, "key": stage.key,
                                                             "status": stage.status}})
    _publish_on_commit(search.pk, "search.status", {"search": search_event(search)})


def final_stage_open(*, search: Search, space, order: int) -> Stage:
    """The selected design against single-strategy baselines and full fine-tuning, several seeds."""
    from experiments.space import SpaceError, final_plan
    from tasks.peft.budget import BackboneShape

    config = search_config(search)
    shape = BackboneShape.from_dict(search.backbone.shape)
    task_names = [t.name for t in search.tasks.order_by("name")]
    try:
        plan = final_plan(space, shape=shape, budget=config.budget, tasks=task_names, seeds=config.final_seeds)
    except SpaceError as exc:
        raise _space_error(exc) from None
    plan_dict = plan.to_dict()
    plan_dict.pop("runs")
    stage = Stage.objects.create(search=search, order=order, key="final", component="", space=space.to_dict(),
                                 plan={"title": "Final: the selected design against baselines", **plan_dict})
    Trial.objects.bulk_create([
        Trial(search=search, stage=stage, index=i,
              kind=Trial.Kind.SELECTED if run.arm == "selected" else Trial.Kind.BASELINE,
              label=f"{run.arm} · {run.task} · seed {run.seed}",
              choices={"arm": run.arm, "task": run.task, "seed": run.seed},
              design=run.design or {"full_finetuning": True, "backbone": shape.name_or_path},
              seed=run.seed, trainable_params=run.parameters)
        for i, run in enumerate(plan.runs)
    ])
    _stage_started(search, stage, [])
    return stage


def _outcomes(stage: Stage):
    from experiments.space import TrialOutcome

    rows = stage.trials.values_list("pk", "choices", "score", "status")
    return [TrialOutcome(choices, score if status == Trial.Status.SUCCEEDED else None, pk)
            for pk, choices, score, status in rows]


def stage_check_complete(*, stage_id: int) -> Stage | None:
    """When every trial of a stage is final: summarise it, then wait for approval or move on."""
    from experiments.space import DesignSpace, SpaceError, summarise

    stage = Stage.objects.select_for_update().select_related("search", "search__backbone").get(pk=stage_id)
    if stage.status != Stage.Status.RUNNING or stage.trials.exclude(status__in=Trial.FINAL_STATUSES).exists():
        return None
    search = stage.search
    if search.status == Search.Status.CANCELLED:
        return None
    config = search_config(search)
    now = timezone.now()
    if stage.key == "final":
        return search_complete(search=search, stage=stage)
    space = DesignSpace.from_dict(stage.space)
    try:
        summary = summarise(_outcomes(stage), component=stage.component or None,
                            open_choices=space.open(stage.component) if stage.component else (),
                            stage=stage.key, seed=config.seed, resamples=config.bootstrap_resamples,
                            min_successes=config.min_successes)
    except SpaceError as exc:
        summary = None
        stage.summary = {"error": str(exc)}
    else:
        stage.summary = summary.to_dict()
        stage.recommendation = summary.recommendation.to_dict() if summary.recommendation else None
    stage.finished_at = now
    if not stage.component:  # the S0 reference stage decides nothing: go straight on
        stage.status = Stage.Status.COMPLETED
        stage.save(update_fields=["summary", "recommendation", "finished_at", "status"])
        _publish_on_commit(search.pk, "stage.status", {"stage": {"id": stage.pk, "key": stage.key,
                                                                 "status": stage.status}})
        stage_open(search=search, space=space, order=stage.order + 1)
        return stage
    stage.status = Stage.Status.AWAITING
    stage.save(update_fields=["summary", "recommendation", "finished_at", "status"])
    Search.objects.filter(pk=search.pk).update(status=Search.Status.WAITING)
    search.refresh_from_db()
    _publish_on_commit(search.pk, "stage.status", {"stage": {"id": stage.pk, "key": stage.key,
                                                             "status": stage.status}})
    _publish_on_commit(search.pk, "search.status", {"search": search_event(search)})
    recommendation = stage.recommendation or {}
    if search.auto_approve and recommendation.get("choice") and recommendation.get("status") != "insufficient":
        stage_approve(stage=stage, user=None)
    return stage


def stage_approve(*, stage: Stage, user, choice: str | None = None, reason: str = "") -> Stage:
    """Apply a stage's recommendation (choice None) or override it with a reason; open the next stage.

    user None means the search's auto-approve applied the recommendation.
    """
    from experiments.space import AUTO, DesignSpace, SpaceError, refine

    with transaction.atomic():
        stage = Stage.objects.select_for_update().select_related("search", "search__backbone").get(pk=stage.pk)
        if stage.status != Stage.Status.AWAITING:
            raise ValidationError({"stage": [f"Stage {stage.key} is {stage.get_status_display().lower()}, "
                                             "not waiting for approval."]})
        recommended = (stage.recommendation or {}).get("choice")
        choice = (choice or "").strip() or recommended
        if not choice:
            raise ValidationError({"choice": ["This stage has no recommendation (too few successful trials): "
                                              "choose an option and give a reason, or retry the failed trials."]})
        space = DesignSpace.from_dict(stage.space)
        decided_by = AUTO if user is None else f"user:{user.get_username()}"
        try:
            next_space, decision = refine(space, stage.component, choice, decided_by=decided_by,
                                          reason=reason, recommended=recommended)
        except SpaceError as exc:
            raise _space_error(exc) from None
        stage.decision = decision.to_dict()
        stage.decided_by = user
        stage.decided_automatically = user is None
        stage.decided_at = timezone.now()
        stage.override_reason = decision.reason if decision.override else ""
        stage.next_space = next_space.to_dict()
        stage.status = Stage.Status.APPROVED
        stage.save(update_fields=["decision", "decided_by", "decided_automatically", "decided_at",
                                  "override_reason", "next_space", "status"])
        _publish_on_commit(stage.search_id, "stage.status", {"stage": {"id": stage.pk, "key": stage.key,
                                                                       "status": stage.status}})
        stage_open(search=stage.search, space=next_space, order=stage.order + 1)
    return stage


def search_cancel(*, search: Search) -> Search:
    """Stop a search: queued trials never start, running ones stop at their next step."""
    with transaction.atomic():
        search = Search.objects.select_for_update().get(pk=search.pk)
        if search.status in (Search.Status.COMPLETED, Search.Status.CANCELLED, Search.Status.FAILED):
            raise ValidationError({"status": [f"The search is already {search.status}."]})
        now = timezone.now()
        queued = Trial.objects.filter(search=search, status=Trial.Status.QUEUED)
        cancelled = queued.update(status=Trial.Status.CANCELLED, finished_at=now)
        Trial.objects.filter(search=search, status=Trial.Status.RUNNING).update(cancel_requested=True)
        Stage.objects.filter(search=search, status__in=[Stage.Status.RUNNING, Stage.Status.AWAITING]).update(
            status=Stage.Status.CANCELLED, finished_at=now)
        Search.objects.filter(pk=search.pk).update(status=Search.Status.CANCELLED, finished_at=now,
                                                   trials_done=F("trials_done") + cancelled)
        search.refresh_from_db()
        _publish_on_commit(search.pk, "search.status", {"search": search_event(search)})
    return search


# --- completion, report and artifacts ------------------------------------------------------

def search_complete(*, search: Search, stage: Stage) -> Stage:
    """Close the final stage: results table, downloadable files, search completed."""
    from experiments.space import FinalResult, results_table

    rows = stage.trials.values_list("choices", "score", "status")
    results = [FinalResult(arm=c["arm"], task=c["task"], seed=c["seed"],
                           score=score if status == Trial.Status.SUCCEEDED else None)
               for c, score, status in rows]
    stage.summary = results_table(results, parameters=stage.plan.get("parameters"))
    stage.status = Stage.Status.COMPLETED
    stage.finished_at = timezone.now()
    stage.save(update_fields=["summary", "status", "finished_at"])
    Search.objects.filter(pk=search.pk).update(status=Search.Status.COMPLETED, finished_at=stage.finished_at)
    search.refresh_from_db()
    artifacts_write(search=search)
    _publish_on_commit(search.pk, "stage.status", {"stage": {"id": stage.pk, "key": stage.key,
                                                             "status": stage.status}})
    _publish_on_commit(search.pk, "search.status", {"search": search_event(search)})
    return stage


def _artifact(search: Search, kind: str, path, *, task: str = "", trial: Trial | None = None):
    import hashlib
    from pathlib import Path

    from .models import Artifact

    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    relative = str(path.relative_to(settings.MEDIA_ROOT))
    Artifact.objects.update_or_create(
        search=search, kind=kind, task=task,
        defaults={"path": relative, "size_bytes": path.stat().st_size, "sha256": digest, "trial": trial},
    )


def selected_design(search: Search) -> dict[str, Any] | None:
    """The search's winning design document (the selected arm, first seed)."""
    from .selectors import search_selected_trial

    trial = search_selected_trial(search)
    if trial is None:
        return None
    design = dict(trial.design)
    design["provenance"] = {**design.get("provenance", {}), "search": search.pk, "search_name": search.name,
                            "decisions": [s.decision for s in search.stages.order_by("order") if s.decision]}
    return design


def artifacts_write(*, search: Search) -> None:
    """Design JSON, weights, PEFT exports, usage snippet and the report, under MEDIA_ROOT."""
    import json
    import shutil
    from pathlib import Path

    from .models import Artifact
    from .reports import report_json, report_markdown

    root = Path(settings.MEDIA_ROOT) / "searches" / str(search.pk)
    root.mkdir(parents=True, exist_ok=True)
    design = selected_design(search)
    if design is not None:
        path = root / "design.json"
        path.write_text(json.dumps(design, indent=2) + "\n")
        _artifact(search, Artifact.Kind.DESIGN, path)
    selected = (Trial.objects.filter(search=search, stage__key="final", kind=Trial.Kind.SELECTED,
                                     status=Trial.Status.SUCCEEDED).order_by("seed", "index"))
    first_seed = selected.first().seed if selected.exists() else None
    for trial in selected.filter(seed=first_seed):
        directory = trial_artifact_dir(trial)
        if not directory.exists():
            continue
        for task_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
            task = task_dir.name
            if (task_dir / "peft.safetensors").exists():
                weights = _combined_weights(task_dir, root / f"weights-{task}.safetensors")
                _artifact(search, Artifact.Kind.WEIGHTS, weights, task=task, trial=trial)
            peft_dir = task_dir / "peft"
            if peft_dir.is_dir():
                archive = shutil.make_archive(str(root / f"peft-{task}"), "zip", peft_dir)
                _artifact(search, Artifact.Kind.PEFT_EXPORT, archive, task=task, trial=trial)
    report = report_json(search)
    (root / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    _artifact(search, Artifact.Kind.REPORT_JSON, root / "report.json")
    (root / "report.md").write_text(report_markdown(report))
    _artifact(search, Artifact.Kind.REPORT_MD, root / "report.md")


def _combined_weights(task_dir, out):
    """One download per task: the PEFT tensors and the task head, in one .safetensors file."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    tensors, metadata = {}, {}
    for name in ("peft.safetensors", "head.safetensors"):
        with safe_open(str(task_dir / name), "np") as f:
            metadata.update(f.metadata() or {})
            tensors.update({key: f.get_tensor(key) for key in f.keys()})
    save_file(tensors, str(out), metadata=metadata)
    return out


# --- in-process execution ------------------------------------------------------------------

def search_run_local(*, search: Search, progress: Callable[[Search], None] | None = None,
                     backbone_cache: Any = None) -> Search:
    """Run a search's queued trials in this process (the CLI's --local), until it completes,
    fails, is cancelled, or waits for a person. Celery messages sent meanwhile are harmless:
    a worker that later receives one finds the trial no longer queued and drops it."""
    if backbone_cache is None:
        from tasks.runner import BackboneCache

        backbone_cache = BackboneCache()
    while True:
        search.refresh_from_db()
        if progress:
            progress(search)
        if search.status != Search.Status.RUNNING:
            return search
        trial = (Trial.objects.filter(search=search, status=Trial.Status.QUEUED, cancel_requested=False)
                 .order_by("stage__order", "index").first())
        if trial is None:
            return search
        trial_execute(trial_id=trial.pk, attempt=trial.attempt, worker="local", backbone_cache=backbone_cache)
