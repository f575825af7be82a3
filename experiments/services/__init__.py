"""Writes. Every change to PEFS's rows goes through a function here (STYLE.md: services/selectors).

Functions are named <entity>_<action>, take keyword-only arguments and run in a transaction;
Celery messages and live events are sent with transaction.on_commit, so nothing fires for a write
that rolled back. Bad input raises django.core.exceptions.ValidationError with a dict that names
the field. One module per sub-domain, each importing only those before it:

- queue: mark trials queued and send their Celery messages (by job name) after commit;
- metrics: store a batch of metric points and publish it;
- artifacts: a completed search's files (design, weights, PEFT exports, report);
- catalog: tasks (uploads, bundled GLUE) and backbones (measured in a child process: no torch here);
- limits: a search's configuration and plan (trials, task-epochs) before it starts, and the
  per-user limits it must fit;
- stage_trials: a stage's trial rows, inserted in bounded batches, counted and queued;
- halving: successive halving's rungs: promotion of each choice's best 1/eta between rungs (the
  others halted), rung checkpoints, and what halving saved;
- final: the final stage: each arm's learning-rate grid on the selection set, then its report runs;
- searches: create a search, draw stages (outside the write transaction), open/complete/approve
  stages, cancel, complete;
- trials: claim, heartbeat, finish, cancel, retry, and the sweep that supervises running trials;
- users: the accounts the command line acts for;
- workers: each trial worker's heartbeat row (device, concurrency), its clean stop, pruning;
- estimate: example sets and a duration estimate before a search, a search's place in the queue.

Reads are in experiments.selectors, event payloads in experiments.events; the worker side of a
trial (running the engine, the recorder, the heartbeat thread) is tasks.worker, which calls in here.
"""
from .artifacts import artifacts_write, trial_artifact_dir
from .catalog import IntrospectionError, backbone_introspect, backbone_register, seed_bundled, task_preview, task_upload
from .limits import search_config_build, search_plan_check, search_plan_preview
from .halving import rung_checkpoint_fetch, rung_checkpoint_publish, trial_rung_plan
from .metrics import metric_points_carry, metric_points_record
from .queue import trial_message_id, trials_enqueue
from .searches import (
    UNSCHEDULED_SETTINGS,
    final_stage_open,
    search_cancel,
    search_complete,
    search_config,
    search_create,
    stage_approve,
    stage_check_complete,
    stage_open,
)
from .trials import (
    TrialResult,
    trial_became_final,
    trial_cancel,
    trial_claim,
    trial_finish,
    trial_heartbeat,
    trial_retry,
    trials_retry_failed,
    trials_sweep,
)
from .users import user_ensure

__all__ = [
    "UNSCHEDULED_SETTINGS", "IntrospectionError", "TrialResult", "artifacts_write", "backbone_introspect",
    "backbone_register", "final_stage_open", "metric_points_carry", "metric_points_record", "trial_rung_plan", "rung_checkpoint_fetch", "rung_checkpoint_publish", "search_cancel",
    "search_complete", "search_config", "search_config_build", "search_create", "search_plan_check",
    "search_plan_preview", "seed_bundled", "stage_approve", "stage_check_complete",
    "stage_open", "task_preview", "task_upload", "trial_artifact_dir", "trial_became_final", "trial_cancel",
    "trial_claim", "trial_finish", "trial_heartbeat", "trial_message_id", "trial_retry", "trials_enqueue",
    "trials_retry_failed", "trials_sweep", "user_ensure",
]
