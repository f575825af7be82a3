"""A trial's resumable state on disk: what successive halving keeps between rungs (no Django).

One directory per task, written by :func:`write_task` and read back by :func:`read_task`:

- ``trainable.safetensors``: every parameter with ``requires_grad`` (PEFT modules, task head,
  prefix reparameterisation), by name; never the frozen backbone, which is rebuilt from the
  pretrained weights.
- ``state.pt``: optimizer and scheduler ``state_dict``s and the RNG states (CPU, CUDA when
  trained there, data order); only tensors, dicts, lists and numbers, so it loads with
  ``torch.load(weights_only=True)`` and no pickled code runs.
- ``meta.json``, written last: the format, ``epochs_done``, ``step``, the evaluations so far and
  the fingerprint of the run (design hash, training settings, seed, role, task, training-set
  size) that a resume must match.

Checkpoints are written atomically: :func:`staged` collects every task's directory in a hidden
temporary directory beside them and moves them into place only when the whole run succeeded, so
a cancelled, failed or killed run leaves no checkpoint that looks valid.

Example:
    >>> with staged(checkpoint_dir) as stage:                                   # doctest: +SKIP
    ...     write_task(stage / "rte", model, result.state, fingerprint(design, config, ...))
    >>> state = read_task(checkpoint_dir / "rte", rebuilt_model)                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasks.peft.design import Design
from tasks.train import TrainConfig, TrainConfigError, TrainState

__all__ = [
    "FORMAT",
    "CheckpointError",
    "design_hash",
    "fingerprint",
    "read_meta",
    "read_task",
    "staged",
    "write_task",
]

FORMAT = 1
PARAMETERS_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"

#: The training settings a resumed run must share with the run that wrote the checkpoint (the
#: device, evaluation batch size and bf16 switch may differ: they change nothing that is stored).
MATCHED_SETTINGS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "max_length",
    "train_examples",
    "eval_examples",
    "eval_every",
    "seed",
)


class CheckpointError(TrainConfigError):
    """A checkpoint that is missing, unreadable or from another run; ``field`` names what differs
    (``resume_from``, ``tasks``, ``design``, a training setting such as ``epochs``...)."""


def design_hash(design: Design) -> str:
    """SHA-256 of the design's canonical JSON, provenance left out (it does not change training)."""
    document = {k: v for k, v in design.to_dict().items() if k != "provenance"}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def fingerprint(
    design: Design, config: TrainConfig, *, task: str, role: str | None, train_size: int
) -> dict[str, Any]:
    """What identifies a run for resuming: ``config.seed`` must already be resolved."""
    settings = config.to_dict()
    return {
        "task": task,
        "design": design_hash(design),
        **{name: settings[name] for name in MATCHED_SETTINGS},
        "role": role,
        "train_size": train_size,
    }


# --- writing ------------------------------------------------------------------------------


@contextmanager
def staged(checkpoint_dir: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory for task checkpoints, moved into ``checkpoint_dir`` on success.

    Each ``<stage>/<task>`` becomes ``checkpoint_dir/<task>`` by rename (replacing an older one);
    on any exception (``Cancelled`` included) the stage is deleted and nothing is moved.
    """
    root = Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    stage = root / f".partial-{uuid.uuid4().hex}"
    stage.mkdir()
    try:
        yield stage
        for directory in sorted(p for p in stage.iterdir() if not p.name.startswith(".")):
            target = root / directory.name
            if target.exists():
                target.rename(stage / f".replaced-{directory.name}")
            directory.rename(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_task(
    directory: str | os.PathLike, model: nn.Module, state: TrainState, meta: Mapping[str, Any]
) -> Path:
    """Write ``model``'s trainable parameters, ``state`` and ``meta`` (a :func:`fingerprint`)
    into ``directory`` (created; use one inside :func:`staged`)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True)
    parameters = {
        name: param.detach().to("cpu", copy=True).contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }
    save_file(parameters, str(directory / PARAMETERS_FILE))
    torch.save(
        {
            "optimizer": _to_cpu(state.optimizer),
            "scheduler": state.scheduler,
            "cpu_rng": state.cpu_rng,
            "order_rng": state.order_rng,
            "cuda_rng": state.cuda_rng,
        },
        directory / STATE_FILE,
    )
    document = {
        "format": FORMAT,
        **meta,
        "epochs_done": state.epochs_done,
        "step": state.step,
        "evaluations": [{k: float(v) for k, v in e.items()} for e in state.evaluations],
    }
    (directory / META_FILE).write_text(json.dumps(document, indent=1))
    return directory


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


# --- reading ------------------------------------------------------------------------------


def read_meta(directory: str | os.PathLike, expected: Mapping[str, Any] | None = None) -> dict:
    """The checkpoint's ``meta.json``; with ``expected`` (a :func:`fingerprint`), every key must
    match, or :class:`CheckpointError` names the first that does not."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError("resume_from", f"no checkpoint at {directory} ({META_FILE} missing)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError("resume_from", f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError("resume_from", f"{path}: format {found!r}, expected {FORMAT}")
    for key, value in (expected or {}).items():
        if meta.get(key) != value:
            what = "design (its content hash)" if key == "design" else key
            raise CheckpointError(
                key, f"the checkpoint at {directory} has {what} {meta.get(key)!r}, this run {value!r}"
            )
    return meta


def read_task(directory: str | os.PathLike, model: nn.Module) -> TrainState:
    """Load the trainable parameters into ``model`` (built exactly as for the run that wrote them)
    and return the :class:`TrainState` to pass to ``train(resume=...)``."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_meta(directory)
    try:
        saved = load_file(str(directory / PARAMETERS_FILE))
        state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one kind of error here
        raise CheckpointError("resume_from", f"{directory}: unreadable ({exc})") from None
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(saved) != set(trainable):
        extra, missing = sorted(set(saved) - set(trainable)), sorted(set(trainable) - set(saved))
        raise CheckpointError(
            "parameters",
            f"{directory}: trainable parameters differ (missing {missing[:3]}, unexpected {extra[:3]})",
        )
    with torch.no_grad():
        for name, param in trainable.items():
            if saved[name].shape != param.shape:
                raise CheckpointError(
                    "parameters",
                    f"{directory}: {name} has shape {tuple(saved[name].shape)}, "
                    f"the model {tuple(param.shape)}",
                )
            param.copy_(saved[name])
    return TrainState(
        epochs_done=meta["epochs_done"],
        step=meta["step"],
        optimizer=state["optimizer"],
        scheduler=state["scheduler"],
        cpu_rng=state["cpu_rng"],
        order_rng=state["order_rng"],
        cuda_rng=state.get("cuda_rng"),
        evaluations=meta["evaluations"],
    )
