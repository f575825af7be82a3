"""The training loop: a config, a model, a tokenised task and callbacks (minGPT-style, no Django).

:func:`train` fine-tunes whatever parameters of ``model`` require gradients (after
``tasks.peft.apply`` that is the PEFT modules plus the task head) with AdamW, a linear schedule
with warm-up and gradient clipping, evaluates at the end of every epoch (and every
``eval_every`` steps if set) and returns a :class:`TrainResult` whose metrics are those of the
*last* evaluation: picking the best evaluation would select on the very set that is reported.

It knows nothing of Django or Celery. Progress leaves through :class:`Callbacks`, and
cancellation comes in through ``should_stop``, a callable polled before every step and between
evaluation batches; when it returns True, :class:`Cancelled` is raised.

Determinism: for a given ``seed`` on CPU two runs produce identical losses. The seed fixes the
torch RNG (dropout, and any initialisation done by the caller after seeding) and the per-epoch
data order (an explicit ``torch.Generator``); deterministic algorithms are switched on for the
duration of a CPU run (cheap there) and restored afterwards. On CUDA, bf16 autocast is used when
the device supports it, and results are only approximately reproducible.

Stopping and resuming at an epoch boundary (successive halving's rungs): ``until_epoch=k`` trains
only until ``k`` of the ``config.epochs`` epochs are done (the schedule still spans all of them),
and ``keep_state=True`` returns the :class:`TrainState` there (optimizer, scheduler, step, RNG and
data-order states, evaluations so far). ``resume=state`` continues such a run, in a fresh process
with the model rebuilt and its trainable parameters restored by the caller, exactly where it
stopped: on CPU the losses are identical to an uninterrupted run's. ``tasks.checkpoint`` writes the
state to disk and reads it back.

Example:
    >>> config = TrainConfig(batch_size=16, epochs=1, learning_rate=1e-3)       # doctest: +SKIP
    >>> result = train(model, encode_task("sst2", tok, max_length=64, train_examples=512),
    ...                config, callbacks=Callbacks(on_step=print))              # doctest: +SKIP
    >>> result.score                                                            # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tasks.data import EncodedTask
from tasks.metrics import compute_metrics, ranking_auc, task_score
from tasks.train_config import TrainConfig, TrainConfigError  # noqa: F401 (re-exported)

StepCallback = Callable[[str, int, dict[str, float]], None]
EvalCallback = Callable[[str, int, dict[str, float]], None]
EndCallback = Callable[[Any], None]


class Cancelled(Exception):
    """Raised when ``should_stop()`` returned True; training stopped before ``step``."""

    def __init__(self, task: str, step: int) -> None:
        super().__init__(f"training of {task!r} cancelled at step {step}")
        self.task = task
        self.step = step


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the learning rate is usually too high."""

    def __init__(self, task: str, step: int, loss: float) -> None:
        super().__init__(
            f"training of {task!r} diverged at step {step} (loss {loss}); lower learning_rate"
        )
        self.task = task
        self.step = step
        self.loss = loss


@dataclass
class Callbacks:
    """Optional hooks. ``on_step(task, step, {"loss", "lr", "examples_per_s"})``,
    ``on_eval(task, step, metrics)`` (metrics include ``score`` and ``epoch``) and ``on_end(outcome)``
    (called by the runner with its DesignOutcome, once per design)."""

    on_step: StepCallback | None = None
    on_eval: EvalCallback | None = None
    on_end: EndCallback | None = None


@dataclass
class TrainState:
    """Everything besides the trainable parameters that a run needs to continue exactly.

    ``epochs_done`` epochs and ``step`` optimiser steps are behind it; ``optimizer`` and
    ``scheduler`` are their ``state_dict()``s; ``cpu_rng`` (dropout), ``cuda_rng`` (the training
    device's, when it is CUDA) and ``order_rng`` (the data-order generator) are RNG states;
    ``evaluations`` are those made so far. Tensors only reference the live ones: write the state
    out (``tasks.checkpoint.save``) before training the model further.
    """

    epochs_done: int
    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    cpu_rng: torch.Tensor
    order_rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None
    evaluations: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainResult:
    """What one training run produced; ``metrics``/``score`` come from the last evaluation.

    ``steps``: the global step count (a resumed run's steps included); ``epochs``: the epochs done
    (``until_epoch`` when the run stopped at a rung); ``state``: the state to resume from, when
    ``keep_state`` was asked for.
    """

    task: str
    steps: int
    epochs: int
    metrics: dict[str, float]
    score: float
    evaluations: list[dict[str, float]]
    final_loss: float
    seconds: float
    state: TrainState | None = None


# --- batches ------------------------------------------------------------------------------


class _Batches:
    """Pads tokenised examples per batch (pad to the longest in the batch, not to max_length)."""

    def __init__(
        self, split: Any, input_columns: tuple[str, ...], pad_token_id: int, regression: bool
    ):
        # Pull the columns into Python lists once (``[:]`` materialises a datasets Column in one
        # Arrow conversion): indexing the Column per example is ~100x slower.
        self.columns = {name: split[name][:] for name in input_columns}
        dtype = torch.float32 if regression else torch.long
        self.labels = torch.tensor(np.asarray(split["labels"][:]), dtype=dtype)
        self.pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        self.size = len(self.labels)

    def batch(
        self, indices: list[int], device: torch.device
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        inputs = {}
        for name, rows in self.columns.items():
            chosen = [rows[i] for i in indices]
            width = max(len(r) for r in chosen)
            pad = self.pad_values.get(name, 0)
            padded = torch.full((len(chosen), width), pad, dtype=torch.long)
            for j, row in enumerate(chosen):
                padded[j, : len(row)] = torch.as_tensor(row, dtype=torch.long)
            inputs[name] = padded.to(device)
        return inputs, self.labels[indices].to(device)


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    return output[0]


def _loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    # Computed here (in float32) rather than by the model, so any head the engine builds works.
    logits = logits.float()
    if regression:
        return nn.functional.mse_loss(logits.view(-1), labels.view(-1))
    return nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))


def _autocast(device: torch.device, config: TrainConfig) -> Any:
    enabled = device.type == "cuda" and config.bf16 and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


ALL_PARAMETERS = "all"


def optimizer_groups(
    model: nn.Module,
    config: TrainConfig,
    groups: Mapping[str, Sequence[nn.Parameter]] | None = None,
    learning_rates: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """AdamW parameter groups: one per named group (each strategy, the head), at its own rate.

    ``groups`` (None: one group ``"all"`` of every trainable parameter) must cover each trainable
    parameter of ``model`` exactly once; ``learning_rates[name]`` (absent: ``config.learning_rate``)
    is that group's peak rate. Each group is split in two torch groups that share its ``"group"``
    name and rate, because decay applies to matrices only: decaying biases and norm scales (what
    BitFit trains) pulls them to 0.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise TrainConfigError("model", "has no trainable parameters; apply a design first")
    if groups is None:
        groups = {ALL_PARAMETERS: trainable}
    rates = dict(learning_rates or {})
    unknown = sorted(set(rates) - set(groups))
    if unknown:
        raise TrainConfigError("learning_rates", f"no parameter group {unknown[0]!r}")
    owner: dict[int, str] = {}
    torch_groups = []
    for name, params in groups.items():
        params = [p for p in params if p.requires_grad]
        for p in params:
            if id(p) in owner:
                raise TrainConfigError(
                    "groups", f"a parameter is in both {owner[id(p)]!r} and {name!r}"
                )
            owner[id(p)] = name
        rate = rates.get(name, config.learning_rate)
        for decayed in (True, False):
            chosen = [p for p in params if (p.ndim >= 2) == decayed]
            if chosen:
                torch_groups.append(
                    {
                        "params": chosen,
                        "lr": rate,
                        "weight_decay": config.weight_decay if decayed else 0.0,
                        "group": name,
                    }
                )
    missing = sum(1 for p in trainable if id(p) not in owner)
    if missing:
        raise TrainConfigError("groups", f"{missing} trainable parameter(s) belong to no group")
    return torch_groups


def _linear_warmup(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return factor


# --- evaluation ---------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    encoded: EncodedTask,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    config: TrainConfig | None = None,
    should_stop: Callable[[], bool] | None = None,
    task_name: str | None = None,
    step: int = 0,
) -> dict[str, float]:
    """Metrics of ``model`` on ``encoded.eval`` plus ``score`` (0-100, see tasks.metrics) and
    ``eval_loss`` (the mean training loss, cross-entropy or squared error, over the examples) and,
    for classification, ``eval_auc`` (tasks.metrics.ranking_auc of the class probabilities).

    ``should_stop`` is polled between batches (``step`` is only for the Cancelled report).
    """
    device = torch.device(device)
    spec = encoded.spec
    regression = spec.problem == "regression"
    batches = _Batches(encoded.eval, encoded.input_columns, encoded.pad_token_id, regression)
    was_training = model.training
    model.eval()
    predictions: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    loss_sum = 0.0
    try:
        with torch.no_grad(), _autocast(device, config or TrainConfig()):
            for start in range(0, batches.size, batch_size):
                if should_stop is not None and should_stop():
                    raise Cancelled(task_name or spec.name, step)
                inputs, labels = batches.batch(
                    list(range(start, min(start + batch_size, batches.size))), device
                )
                logits = _logits(model(**inputs)).float()
                loss_sum += float(_loss(logits, labels, regression)) * len(labels)
                if regression:
                    predictions.append(logits.view(-1).cpu().numpy())
                else:
                    predictions.append(logits.argmax(dim=-1).cpu().numpy())
                    probabilities.append(logits.softmax(dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    metrics = compute_metrics(spec.metric, np.concatenate(predictions), batches.labels.numpy())
    metrics["score"] = task_score(spec.metric, metrics)
    # The training loss on the evaluation set: a continuous signal that moves before accuracy does
    # (successive halving ranks its early rungs by it, experiments.space.halving).
    metrics["eval_loss"] = loss_sum / max(batches.size, 1)
    if not regression:  # how well it orders the examples, before accuracy moves (tasks.metrics)
        metrics["eval_auc"] = ranking_auc(np.concatenate(probabilities), batches.labels.numpy())
    return metrics


# --- training -----------------------------------------------------------------------------


def train(
    model: nn.Module,
    encoded: EncodedTask,
    config: TrainConfig,
    *,
    task_name: str | None = None,
    callbacks: Callbacks | None = None,
    should_stop: Callable[[], bool] | None = None,
    groups: Mapping[str, Sequence[nn.Parameter]] | None = None,
    learning_rates: Mapping[str, float] | None = None,
    until_epoch: int | None = None,
    resume: TrainState | None = None,
    keep_state: bool = False,
) -> TrainResult:
    """Train ``model``'s trainable parameters on ``encoded.train``; evaluate on ``encoded.eval``.

    ``groups`` and ``learning_rates``: named parameter groups with their own peak rates (see
    :func:`optimizer_groups`; the runner passes one per strategy and the head). The schedule
    scales every group alike; ``on_step`` reports the base rate (``config.learning_rate``) at
    that step.

    The caller seeds and builds the model (the runner does, so initialisation is reproducible);
    this function reseeds with ``config.seed`` (None: 0) before the first step. ``model`` is moved
    to the configured device. Raises :class:`Cancelled` when ``should_stop()`` returns True and
    :class:`TrainingDiverged` when the loss stops being finite.

    ``until_epoch`` (None: ``config.epochs``) stops after that many epochs in total; ``resume``
    continues from a :class:`TrainState` of the same model, data and config (step numbers go on
    from its ``step``); ``keep_state`` puts the state at the end into ``TrainResult.state``.
    ``TrainConfigError`` names ``until_epoch`` or ``resume`` when they do not fit.
    """
    name = task_name or encoded.spec.name
    seed = 0 if config.seed is None else config.seed
    device = config.resolved_device()
    regression = encoded.spec.problem == "regression"
    batches = _Batches(encoded.train, encoded.input_columns, encoded.pad_token_id, regression)
    on_step = getattr(callbacks, "on_step", None)
    on_eval = getattr(callbacks, "on_eval", None)

    steps_per_epoch = math.ceil(batches.size / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = math.ceil(config.warmup_ratio * total_steps)
    start_epoch = 0 if resume is None else resume.epochs_done
    stop_epoch = rung_end(config, until_epoch, start_epoch)
    if resume is not None and resume.step != start_epoch * steps_per_epoch:
        raise TrainConfigError(
            "resume",
            f"state has {resume.step} steps after {start_epoch} epoch(s), but this training set "
            f"gives {steps_per_epoch} steps per epoch",
        )

    model.to(device)
    model.train()
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, config, groups, learning_rates),
        lr=config.learning_rate,
        fused=False,
    )
    schedule = _linear_warmup(warmup_steps, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
    trainable = [p for p in model.parameters() if p.requires_grad]

    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    order_rng = torch.Generator().manual_seed(seed)
    evaluations: list[dict[str, float]] = []
    if resume is not None:
        torch.set_rng_state(resume.cpu_rng)
        order_rng.set_state(resume.order_rng)
        if device.type == "cuda" and resume.cuda_rng is not None:
            torch.cuda.set_rng_state(resume.cuda_rng, device)
        evaluations = [dict(e) for e in resume.evaluations]

    def run_eval(step: int, epoch: float) -> dict[str, float]:
        metrics = evaluate(
            model,
            encoded,
            batch_size=config.eval_batch_size,
            device=device,
            config=config,
            should_stop=should_stop,
            task_name=name,
            step=step,
        )
        metrics = {**metrics, "epoch": epoch, "step": step}
        evaluations.append(metrics)
        if on_eval is not None:
            on_eval(name, step, dict(metrics))
        return metrics

    started = time.perf_counter()
    step = 0 if resume is None else resume.step
    loss_value = math.nan
    try:
        for epoch in range(start_epoch, stop_epoch):
            order = torch.randperm(batches.size, generator=order_rng).tolist()
            for start in range(0, batches.size, config.batch_size):
                if should_stop is not None and should_stop():
                    raise Cancelled(name, step)
                step_started = time.perf_counter()
                indices = order[start : start + config.batch_size]
                inputs, labels = batches.batch(indices, device)
                with _autocast(device, config):
                    logits = _logits(model(**inputs))
                loss = _loss(logits, labels, regression)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(name, step + 1, loss_value)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                lr = config.learning_rate * schedule(scheduler.last_epoch)
                optimizer.step()
                scheduler.step()
                step += 1
                if on_step is not None:
                    elapsed = max(time.perf_counter() - step_started, 1e-9)
                    on_step(
                        name,
                        step,
                        {
                            "loss": loss_value,
                            "lr": lr,
                            "examples_per_s": len(indices) / elapsed,
                        },
                    )
                if (
                    config.eval_every
                    and step % config.eval_every == 0
                    and start + config.batch_size < batches.size
                ):
                    run_eval(step, epoch + (start + len(indices)) / batches.size)
            run_eval(step, float(epoch + 1))
    finally:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)
    final = evaluations[-1]
    metrics = {k: v for k, v in final.items() if k not in ("score", "epoch", "step")}
    state = None
    if keep_state:
        state = TrainState(
            epochs_done=stop_epoch,
            step=step,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            cpu_rng=torch.get_rng_state(),
            order_rng=order_rng.get_state(),
            cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            evaluations=[dict(e) for e in evaluations],
        )
    return TrainResult(
        task=name,
        steps=step,
        epochs=stop_epoch,
        metrics=metrics,
        score=final["score"],
        evaluations=evaluations,
        final_loss=loss_value,
        seconds=time.perf_counter() - started,
        state=state,
    )


def rung_end(config: TrainConfig, until_epoch: Any, epochs_done: int = 0) -> int:
    """The epoch to stop after: ``until_epoch`` checked against the config and the resumed state."""
    if until_epoch is None:
        until_epoch = config.epochs
    if not isinstance(until_epoch, int) or isinstance(until_epoch, bool):
        raise TrainConfigError("until_epoch", f"must be an integer or None, got {until_epoch!r}")
    if not epochs_done < until_epoch <= config.epochs:
        raise TrainConfigError(
            "until_epoch",
            f"must be in [{epochs_done + 1}, {config.epochs}] ({epochs_done} epoch(s) done of "
            f"{config.epochs}), got {until_epoch}",
        )
    return until_epoch
