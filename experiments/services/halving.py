"""Successive halving on the workers: a stage's rungs, promotion between them, rung checkpoints.

A stage of a search with ``halving_eta`` trains in rungs (experiments.space.halving; epochs ends
``rung_epochs(E, eta)``, e.g. 1 and 3 of E = 3 at eta = 3). Every design of the stage trains to
the first rung. When every trial of a rung is final, the best ``ceil(n / eta)`` of each choice
(``promote``: n counts the choice's trials of that rung, failed ones included; ranked by the plan's
``rank_by``, SearchConfig.halving_rank_by: the score by default, or the selection set's ranking AUC)
continue from their
rung checkpoint to the next rung; the others are *halted*: they keep their rung score, flagged,
and the stage's statistics leave them out, because a score after fewer epochs is not comparable.
The last rung's survivors are the stage's evidence. Only a stage that decides a component halves
(S0 and the final stage train every run in full).

Continuing is not a new attempt: the survivor is queued again under the same attempt with a
rung-specific message id (queue.trial_message_id), so its metric curve continues at the next step
rather than restarting. A *new* attempt of a trial past rung 0 (its worker was lost, or a person
retried it) resumes from the last rung checkpoint, and the checkpoint attempt's metric points up
to the checkpoint's step are copied into the new attempt (services.metrics), so its curve still
starts at step 1.

Rung checkpoints (PEFT parameters, head, optimizer and scheduler state, data order and RNG, written
by tasks.runner) are written by the worker under its own ``PEFS_DATA_DIR/checkpoints/<search>/
<trial>/rung-<k>/`` and published to the artifacts storage under ``checkpoints/<search>/<trial>/
rung-<k>/`` (experiments.files), so the survivor's next rung can run on any worker: one without
the local copy fetches it first. Both are removed when the trial is halted, when its stage has
finished its last rung, or when the search is cancelled.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from experiments.space import DesignSpace, SearchConfig, promote, rung_epochs
from experiments.space.halving import rank_value

from .. import events
from ..files import artifact_storage, directory_store, storage_delete_tree, storage_walk
from ..models import Search, Stage, Trial
from .queue import trials_continue


def halving_stage_plan(config: SearchConfig, component: str | None) -> dict[str, Any] | None:
    """The halving entry of a stage's plan ({"eta", "rungs", "rank_by", "first_rung_steps"}), or None
    when the stage trains in full (one rung: too few epochs for a first rung after halving_min_steps)."""
    if config.halving_eta is None or not component:
        return None
    rungs = rung_epochs(config.epochs, eta=config.halving_eta, min_epochs=config.halving_min_epochs())
    if len(rungs) < 2:  # one rung: nothing to halve (e.g. 1 epoch)
        return None
    steps = config.steps_per_epoch()
    return {"eta": config.halving_eta, "rungs": list(rungs), "rank_by": config.halving_rank_by,
            "first_rung_steps": None if steps is None else rungs[0] * steps}


def stage_halving(stage: Stage) -> dict[str, Any] | None:
    return (stage.plan or {}).get("halving")


def stage_rank_by(stage: Stage) -> str:
    """What the stage's rungs rank designs by; stages planned before the choice existed used the score."""
    return (stage_halving(stage) or {}).get("rank_by", "score")


def checkpoint_root(search_id: int) -> Path:
    return Path(settings.DATA_DIR) / "checkpoints" / str(search_id)


def trial_checkpoint_dir(trial: Trial, rung: int) -> Path:
    """Where the checkpoint written at the end of ``rung`` of ``trial`` lives."""
    return checkpoint_root(trial.search_id) / str(trial.pk) / f"rung-{rung}"


def trial_rung_plan(trial: Trial) -> dict[str, Any] | None:
    """How the worker trains this trial: {"until_epoch", "resume_from", "checkpoint_dir"} or None (in full).

    ``resume_from`` is the previous rung's checkpoint (None at rung 0); ``checkpoint_dir`` is where
    to save this rung's state (None at the last rung, which nothing continues from).
    """
    halving = stage_halving(trial.stage)
    if not halving or trial.stage.key == "final":
        return None
    rungs = halving["rungs"]
    rung = min(trial.rung, len(rungs) - 1)
    return {
        "rung": rung,
        "rungs": len(rungs),
        "until_epoch": rungs[rung],
        "resume_from": trial_checkpoint_dir(trial, rung - 1) if rung else None,
        "checkpoint_dir": trial_checkpoint_dir(trial, rung) if rung < len(rungs) - 1 else None,
    }


def _stored_prefix(search_id: int, trial_id: int | None = None, rung: int | None = None) -> str:
    prefix = f"checkpoints/{search_id}"
    if trial_id is not None:
        prefix += f"/{trial_id}"
    return prefix if rung is None else f"{prefix}/rung-{rung}"


def rung_checkpoint_publish(trial: Trial, rung: int) -> None:
    """After a rung: the worker's local checkpoint, copied to the artifacts storage for any worker."""
    directory_store(storage=artifact_storage(), prefix=_stored_prefix(trial.search_id, trial.pk, rung),
                    directory=trial_checkpoint_dir(trial, rung))


def rung_checkpoint_fetch(trial: Trial, rung: int) -> Path:
    """The local checkpoint of ``rung`` to resume from: this worker's own, or fetched from storage
    (into a temporary folder renamed into place, so a half-fetched one is never used)."""
    local = trial_checkpoint_dir(trial, rung)
    if local.is_dir():
        return local
    storage, prefix = artifact_storage(), _stored_prefix(trial.search_id, trial.pk, rung)
    partial = local.with_name(f".fetch-{local.name}-{uuid.uuid4().hex}")
    try:
        for name in storage_walk(storage, prefix):
            target = partial / name[len(prefix) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            with storage.open(name, "rb") as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
        if partial.is_dir():
            partial.rename(local)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return local  # missing when nothing was stored: the engine then names resume_from


def _remove_checkpoints(search_id: int, trial_ids: list[int] | None) -> None:
    """After commit: the local and the stored checkpoints of these trials (None: of the whole search)."""
    def remove() -> None:
        for trial_id in trial_ids if trial_ids is not None else [None]:
            local = checkpoint_root(search_id) if trial_id is None else checkpoint_root(search_id) / str(trial_id)
            shutil.rmtree(local, ignore_errors=True)
            storage_delete_tree(artifact_storage(), _stored_prefix(search_id, trial_id))

    if trial_ids is None or trial_ids:
        transaction.on_commit(remove)


def search_checkpoints_remove(search: Search) -> None:
    """Every rung checkpoint of a search (cancelled or finished), after the transaction commits."""
    _remove_checkpoints(search.pk, None)


def stage_rung_advance(stage: Stage) -> bool:
    """Inside stage_check_complete's transaction, every trial of ``stage`` final: start the next rung.

    Returns True when survivors were queued for the next rung (the stage goes on), False when the
    stage has no next rung (no halving, the last rung done, or no trial scored) and is summarised.
    """
    halving = stage_halving(stage)
    if not halving or stage.rung >= len(halving["rungs"]) - 1:
        return False
    space = DesignSpace.from_dict(stage.space)
    canonical = {alias: choice for choice, names in space.aliases(stage.component).items() for alias in names}
    rows = list(stage.trials.filter(rung=stage.rung, halted=False))
    rank_by = stage_rank_by(stage)
    scores = {t.pk: (rank_value(t.scores, t.score, rank_by) if t.status == Trial.Status.SUCCEEDED else None)
              for t in rows}
    choice_of = {t.pk: canonical.get(t.choices.get(stage.component), str(t.choices.get(stage.component)))
                 for t in rows}
    survivors = promote(scores, choice_of, eta=halving["eta"])
    if not survivors:
        return False
    halted = [t.pk for t in rows if t.pk not in survivors]
    Trial.objects.filter(pk__in=halted).update(halted=True)
    _remove_checkpoints(stage.search_id, halted)
    stage.rung += 1
    stage.save(update_fields=["rung"])
    continuing = [t for t in rows if t.pk in survivors]
    for trial in continuing:
        trial.rung = stage.rung
        trial.save(update_fields=["rung"])
    Search.objects.filter(pk=stage.search_id).update(trials_done=F("trials_done") - len(continuing),
                                                     status=Search.Status.RUNNING, current_stage=stage)
    trials_continue(trials=continuing)
    events.stage_changed(stage)
    for trial in continuing:
        events.trial_changed(trial)
    return True


def stage_halving_summary(stage: Stage) -> dict[str, Any] | None:
    """What halving spent and saved on a finished stage, for the wizard and the report."""
    halving = stage_halving(stage)
    if not halving:
        return None
    rungs = halving["rungs"]
    trials = list(stage.trials.values_list("rung", "halted", "status"))
    spent = sum(rungs[min(rung, len(rungs) - 1)] for rung, _, _ in trials)
    full = len(trials) * rungs[-1]
    per_rung = [sum(1 for rung, _, _ in trials if rung >= k) for k in range(len(rungs))]
    return {"eta": halving["eta"], "rungs": rungs, "rank_by": stage_rank_by(stage),
            "first_rung_steps": halving.get("first_rung_steps"),
            "trials_per_rung": per_rung,
            "survivors": sum(1 for rung, halted, status in trials
                             if rung == len(rungs) - 1 and status == Trial.Status.SUCCEEDED),
            "trial_epochs": spent, "full_trial_epochs": full, "saved_trial_epochs": full - spent}


def stage_checkpoints_remove(stage: Stage) -> None:
    """Every checkpoint of a stage whose last rung is done (nothing continues from them)."""
    if stage_halving(stage):
        _remove_checkpoints(stage.search_id, list(stage.trials.values_list("pk", flat=True)))
