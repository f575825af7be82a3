"""Run one concrete design on one or more tasks: build, apply, train, evaluate, score.

:func:`run_design` is what a worker calls for a trial. For each task it builds the design's
backbone with the task's head (classification with the task's number of labels, or regression),
applies the design with ``tasks.peft.apply``, trains and evaluates it with ``tasks.train``, and
scores it on the 0-100 scale of ../shared/PAPER.md; the design's score is the mean over tasks.
No Django, no Celery: progress leaves through callbacks, cancellation comes in through
``should_stop`` (:class:`~tasks.train.Cancelled` is raised, and re-exported here).

Reproducibility: the seed (``train_config.seed``, or the design's own ``seed`` when that is None)
is set before the model is built, so the task head and the PEFT modules are initialised the same
way every time, and it then drives dropout and data order in the trainer.

:class:`~tasks.backbone_cache.BackboneCache` (re-exported here) keeps pretrained backbones in
memory between trials; a warm cache changes nothing but the time a trial takes.

Rungs and checkpoints (successive halving): ``train_config.epochs`` is always the full count E,
so the warm-up and linear decay span all E epochs whether or not the run stops early.

- ``until_epoch=k`` (1..E, None: E) stops each task after k epochs in total; the outcome's scores
  and metrics are those of the evaluation at the end of epoch k, and ``outcome.epochs_done`` (and
  each ``per_task`` entry's ``epochs_done``) is k.
- ``checkpoint_dir``: after every task has trained to k, each task's resumable state (trainable
  parameters only, optimizer, scheduler, step, RNG and data-order states, evaluations) is in
  ``checkpoint_dir/<task>/`` (format in :mod:`tasks.checkpoint`), listed in
  ``outcome.checkpoints``. The directories appear together, by rename, only when the whole design
  succeeded: a cancelled or failed run leaves none.
- ``resume_from``: a directory written that way, by the same design (content hash, provenance
  aside), tasks, role and training settings (seed, epochs, batch size, examples, max length...;
  the device may differ). Each task's model is built as always, its state loaded, and training
  goes on from epoch k+1 with global step numbers continuing (the first ``on_step`` is the
  checkpoint's step + 1); ``until_epoch`` must then be above k. On CPU, stopping and resuming
  gives exactly the losses and scores of one uninterrupted run.
- Anything missing or mismatched raises :class:`CheckpointError` (a ``TrainConfigError``, so a
  ``ValueError``) whose ``field`` names it: ``resume_from`` (no or unreadable checkpoint),
  ``tasks`` (a task without one), ``design``, a setting (``epochs``, ``batch_size``, ``seed``...),
  ``role``, ``train_size``, ``parameters``. A bad ``until_epoch`` raises ``TrainConfigError``
  naming it. Full fine-tuning refuses all three arguments (CheckpointError naming the argument).

Example:
    >>> outcome = run_design(design_dict, ["sst2", "rte"],                      # doctest: +SKIP
    ...                      train_config=TrainConfig(epochs=1, train_examples=512),
    ...                      callbacks=Callbacks(on_eval=print), should_stop=lambda: False)
    >>> outcome.score, outcome.per_task["rte"]["metrics"]                       # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tasks import checkpoint
from tasks.backbone_cache import BackboneCache
from tasks.checkpoint import CheckpointError
from tasks.data import DataError, ExampleSet, Role, TaskSpec, encode_task, resolve_task
from tasks.peft.design import Design, DesignError, HeadSpec
from tasks.peft.engine import HEAD_GROUP, parameter_groups
from tasks.timing import PhaseTimer
from tasks.train import (
    ALL_PARAMETERS,
    Callbacks,
    Cancelled,
    TrainConfig,
    TrainConfigError,
    rung_end,
    train,
)

__all__ = [
    "FULL_FINETUNING_MAX_LR",
    "BackboneCache",
    "Cancelled",
    "CheckpointError",
    "DesignOutcome",
    "FullFineTuning",
    "TrainConfigError",
    "design_learning_rates",
    "run_design",
    "trainable_parameters",
]


@dataclass
class DesignOutcome:
    """The result of one design over its tasks.

    ``score``: mean of the per-task scores (0-100). ``per_task[name]``: ``metrics`` (raw GLUE
    metrics of the last evaluation), ``score``, and the run's ``steps``, ``seconds``,
    ``train_examples``, ``eval_examples``, ``head_params``, ``trainable_total`` and
    ``training_only`` (prefix MLP parameters trained but not stored), ``trainable_parameters``
    (as below, for that task) and ``learning_rates`` (peak rate per parameter group: ``head``
    and each strategy, or ``all`` for full fine-tuning). ``peft_total``: stored PEFT
    parameters (the budget's count, identical for every task). ``head_params``: the largest task
    head among the tasks (heads differ only in their output width). ``trainable_parameters``:
    what was counted and what was trained, for the task with the largest head:
    ``peft_stored`` (the budget), ``head`` (pooler + classifier, the same module for every arm),
    ``reparameterisation`` (trained, not stored: the prefix inputs and MLP) and
    ``optimised_total`` (every parameter the optimiser updated). ``notes``: what a reader of
    the scores must know (held-out splits, sub-sampling, dev-set evaluation, the seed used).
    ``timing``: seconds per phase over all tasks (:mod:`tasks.timing`; each ``per_task`` entry
    has its own ``timing``).
    """

    score: float
    per_task: dict[str, dict[str, Any]]
    peft_total: int
    head_params: int
    notes: list[str]
    seed: int
    seconds: float = 0.0
    saved: dict[str, str] = field(default_factory=dict)
    trainable_parameters: dict[str, int] = field(default_factory=dict)
    epochs_done: int = 0
    checkpoints: dict[str, str] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "per_task": self.per_task,
            "peft_total": self.peft_total,
            "head_params": self.head_params,
            "trainable_parameters": dict(self.trainable_parameters),
            "notes": list(self.notes),
            "seed": self.seed,
            "seconds": self.seconds,
            "saved": dict(self.saved),
            "epochs_done": self.epochs_done,
            "checkpoints": dict(self.checkpoints),
            "timing": dict(self.timing),
        }


# --- running a design ---------------------------------------------------------------------


def _directory_name(task_name: str) -> str:
    # Hub ids ("someone/reviews:config") must not become nested or odd paths.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task_name).strip("._") or "task"


def _check_head(design: Design, spec: TaskSpec, head: HeadSpec) -> None:
    if design.head is not None and design.head != head:
        raise DesignError(
            "head",
            f"the design fixes a {design.head.problem} head with {design.head.num_labels} output(s), "
            f"but task {spec.name!r} needs {head.problem} with {head.num_labels}; use head: null to "
            "choose the head per task",
        )


#: Full fine-tuning rewrites pretrained weights; at PEFT learning rates (1e-4 to 1e-3) it
#: forgets them. Unless the document names a rate, the baseline trains at no more than this, the
#: top of the recipe ../shared/PAPER.md reports for full fine-tuning.
FULL_FINETUNING_MAX_LR = 5e-5


@dataclass(frozen=True)
class FullFineTuning:
    """The full fine-tuning baseline: every backbone parameter trains, no PEFT design.

    Its document is ``{"full_finetuning": true, "backbone": <name_or_path or {"name_or_path": ..}>,
    "seed": int (optional, default 0), "learning_rate": float (optional), "provenance": {..}}``.
    """

    backbone: str
    seed: int = 0
    learning_rate: float | None = None

    KEYS = ("full_finetuning", "backbone", "seed", "learning_rate", "provenance")

    @staticmethod
    def describes(document: Any) -> bool:
        return isinstance(document, Mapping) and "full_finetuning" in document

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FullFineTuning:
        """Validate a full fine-tuning document; DesignError names the bad field."""
        unknown = sorted(set(d) - set(cls.KEYS))
        if unknown:
            raise DesignError(unknown[0], f"unknown key; known: {list(cls.KEYS)}")
        if d.get("full_finetuning") is not True:
            raise DesignError("full_finetuning", "must be true")
        backbone = d.get("backbone")
        if isinstance(backbone, Mapping):
            backbone = backbone.get("name_or_path")
        if not isinstance(backbone, str) or not backbone:
            raise DesignError("backbone", "must be a name_or_path string or {'name_or_path': ...}")
        seed = d.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise DesignError("seed", f"must be a non-negative integer, got {seed!r}")
        rate = d.get("learning_rate")
        if rate is not None and (
            not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate <= 1
        ):
            raise DesignError("learning_rate", f"must be a number in (0, 1], got {rate!r}")
        return cls(backbone=backbone, seed=seed, learning_rate=rate)


def _counts_for_full_finetuning(backbone: Any) -> dict[str, int]:
    from tasks.peft.backbones import backbone_parameters, head_parameters

    for param in backbone.model.parameters():
        param.requires_grad_(True)
    head = sum(p.numel() for _, p in head_parameters(backbone.model))
    body = sum(p.numel() for _, p in backbone_parameters(backbone.model))
    return {"peft_total": body, "head": head, "trainable_total": body + head, "training_only": 0}


def trainable_parameters(counts: Mapping[str, int]) -> dict[str, int]:
    """What a trial stores and what it trains, from ``ApplyReport.to_dict()``-shaped counts."""
    return {
        "peft_stored": counts["peft_total"],
        "head": counts["head"],
        "reparameterisation": counts["training_only"],
        "optimised_total": counts["trainable_total"],
    }


def design_learning_rates(design: Design, base: float) -> dict[str, float]:
    """Peak rate per parameter group: the head at ``base``; each strategy of the design at its
    ``options.<strategy>.learning_rate``, or ``base`` where the design leaves it unset."""
    rates = {HEAD_GROUP: base}
    for name in design.strategies_used:
        own = design.options.for_strategy(name).learning_rate
        rates[name] = base if own is None else own
    return rates


def _described(examples: ExampleSet | None) -> dict[str, Any] | None:
    """An ExampleSet as stored beside a score: its fields and the line a report prints."""
    return None if examples is None else {**examples.to_dict(), "description": examples.describe()}


def _save_full_model(backbone: Any, directory: Path) -> None:
    # Every weight changed, so only the whole model is a faithful artifact (HF format).
    backbone.model.save_pretrained(directory)
    if backbone.tokenizer is not None:
        backbone.tokenizer.save_pretrained(directory)


def run_design(
    design: Design | FullFineTuning | Mapping[str, Any],
    tasks: Sequence[str | TaskSpec | Mapping[str, Any]],
    *,
    train_config: TrainConfig,
    callbacks: Callbacks | Any | None = None,
    should_stop: Callable[[], bool] | None = None,
    backbone_cache: BackboneCache | None = None,
    output_dir: str | Path | None = None,
    role: Role | None = None,
    until_epoch: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
) -> DesignOutcome:
    """Train and score ``design`` on each of ``tasks``; return the mean score and details.

    ``role`` picks the evaluation set (tasks.data.roles): ``"selection"`` for search stages,
    ``"report"`` for the final comparison, None for the training split and report set PEFS used
    before roles. Each task's ``per_task`` entry says which examples it trained on and was scored
    on (``train_set``, ``eval_set``: ExampleSet dicts with a ``description``).

    ``tasks``: registered names ("sst2"), TaskSpecs, or TaskSpec dicts (as stored on Task rows).
    ``callbacks``: any object with optional ``on_step(task, step, values)``,
    ``on_eval(task, step, metrics)``, ``on_phase(task, phase, seconds)`` (as each timed phase
    ends, see :mod:`tasks.timing`) and ``on_end(outcome)`` methods (e.g. :class:`Callbacks`);
    ``on_end`` is called once, with the outcome, after the last task. ``should_stop`` is polled
    every step; when it returns True, :class:`Cancelled` is raised and no outcome is produced.
    ``output_dir``: when given, each task's trained PEFT weights and head are saved with
    ``tasks.peft.save`` into ``output_dir/<task>/``.

    ``design`` may also be a full fine-tuning document (:class:`FullFineTuning`), the baseline
    of the final stage: then every backbone parameter trains, ``peft_total`` is the backbone's
    parameter count, the learning rate is capped at :data:`FULL_FINETUNING_MAX_LR` unless the
    document gives one, and ``output_dir`` receives whole models (``save_pretrained``).

    Rungs (see the module docstring): ``until_epoch`` stops every task after that many of
    ``train_config.epochs`` epochs; ``checkpoint_dir`` receives each task's resumable state
    (``checkpoint_dir/<task>/``, listed in ``outcome.checkpoints``) once every task has trained;
    ``resume_from`` continues from such a directory. PEFT designs only.

    Raises ``DesignError`` (bad design, or a fixed head that does not fit a task), ``DataError``
    (bad task), ``TrainConfigError`` (``until_epoch`` among its fields), :class:`CheckpointError`
    (a checkpoint missing or from another run) and ``TrainingDiverged``, each naming the problem.
    """
    from tasks.peft import apply

    started = time.perf_counter()
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config: expected a TrainConfig, got {type(train_config).__name__}")
    full: FullFineTuning | None = None
    if isinstance(design, FullFineTuning) or FullFineTuning.describes(design):
        full = design if isinstance(design, FullFineTuning) else FullFineTuning.from_dict(design)
    elif not isinstance(design, Design):
        design = Design.from_dict(design)
    if isinstance(tasks, (str, TaskSpec, Mapping)):
        tasks = [tasks]
    specs = [resolve_task(task) for task in tasks]
    if not specs:
        raise DataError("tasks", "give at least one task")
    names = [spec.name for spec in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError("tasks", f"task(s) listed more than once: {', '.join(repeated)}")

    _check_rung_arguments(full, train_config, until_epoch, checkpoint_dir, resume_from)
    own_seed = full.seed if full is not None else design.seed
    seed = own_seed if train_config.seed is None else train_config.seed
    config = replace(train_config, seed=seed)
    cache = backbone_cache if backbone_cache is not None else BackboneCache(max_backbones=1)
    backbone_name = full.backbone if full is not None else design.backbone.name_or_path

    per_task: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    if full is not None:
        rate = full.learning_rate or min(config.learning_rate, FULL_FINETUNING_MAX_LR)
        if rate != config.learning_rate:
            config = replace(config, learning_rate=rate)
        notes.append(
            f"full fine-tuning: every backbone parameter trained, learning rate {rate:g}"
            + ("" if full.learning_rate else f" (capped at {FULL_FINETUNING_MAX_LR:g})")
        )
    saved: dict[str, str] = {}
    peft_total = 0
    timer = PhaseTimer(callbacks)
    # Load, tokenise and check every task before training any: a bad task or a head that does
    # not fit should fail the trial at once, not after the first tasks have trained.
    mark = time.perf_counter()
    tokenizer = cache.tokenizer(backbone_name)
    prepared = []
    for spec in specs:
        encoded = encode_task(
            spec, tokenizer, max_length=config.max_length, train_examples=config.train_examples,
            eval_examples=config.eval_examples, role=role,
        )
        spec = encoded.spec  # hub tasks learn their label set when loaded
        head = HeadSpec(problem=spec.problem, num_labels=spec.num_labels)
        meta = None
        if full is None:
            _check_head(design, spec, head)
            meta = checkpoint.fingerprint(
                design, config, task=spec.name, role=role, train_size=len(encoded.train)
            )
        prepared.append((spec, encoded, head, meta))
        timer.add(spec.name, "data", time.perf_counter() - mark)
        mark = time.perf_counter()
    epochs_before = 0 if resume_from is None else _resumed_epochs(Path(resume_from), prepared)
    stop = rung_end(config, until_epoch, epochs_before)

    checkpoints: dict[str, str] = {}
    staging = checkpoint.staged(checkpoint_dir) if checkpoint_dir is not None else nullcontext()
    with staging as stage:
        for spec, encoded, head, meta in prepared:
            per_task[spec.name], peft_total, saved_to = _run_task(
                design if full is None else full, spec, encoded, head, config,
                cache=cache, callbacks=callbacks, timer=timer, should_stop=should_stop,
                until_epoch=stop, resume_from=resume_from, stage=stage, meta=meta,
                output_dir=output_dir,
            )  # fmt: skip
            per_task[spec.name]["timing"] = dict(timer.per_task.get(spec.name, {}))
            notes.extend(note for note in encoded.notes if note not in notes)
            if saved_to is not None:
                saved[spec.name] = saved_to
            if stage is not None:
                checkpoints[spec.name] = str(Path(checkpoint_dir) / _directory_name(spec.name))

    seed_source = "the design's seed" if train_config.seed is None else "train_config.seed"
    if full is not None and train_config.seed is None:
        seed_source = "the baseline's seed"
    notes.append(f"seed {seed} ({seed_source}) for initialisation, dropout and data order")
    if stop < config.epochs:
        notes.append(f"stopped after epoch {stop} of {config.epochs} (a rung of successive halving)")
    largest_head = max(per_task.values(), key=lambda entry: entry["head_params"])
    outcome = DesignOutcome(
        score=sum(entry["score"] for entry in per_task.values()) / len(per_task),
        per_task=per_task,
        peft_total=peft_total,
        head_params=largest_head["head_params"],
        trainable_parameters=dict(largest_head["trainable_parameters"]),
        notes=notes,
        seed=seed,
        seconds=time.perf_counter() - started,
        saved=saved,
        epochs_done=stop,
        checkpoints=checkpoints,
        timing=dict(timer.totals),
    )
    on_end = getattr(callbacks, "on_end", None)
    if on_end is not None:
        on_end(outcome)
    return outcome


def _check_rung_arguments(
    full: FullFineTuning | None,
    config: TrainConfig,
    until_epoch: Any,
    checkpoint_dir: Any,
    resume_from: Any,
) -> None:
    """Refuse rungs for full fine-tuning; check until_epoch's range before anything trains."""
    if full is not None:
        given = {"until_epoch": until_epoch, "checkpoint_dir": checkpoint_dir, "resume_from": resume_from}
        for name, value in given.items():
            if value is not None:
                raise CheckpointError(
                    name, "full fine-tuning trains all its epochs in one run; rungs and "
                    "checkpoints are for PEFT designs",
                )  # fmt: skip
    rung_end(config, until_epoch)  # checked again against the resumed epoch once it is known


def _resumed_epochs(resume_from: Path, prepared: Sequence[tuple[Any, ...]]) -> int:
    """The epochs done in ``resume_from``; every task's checkpoint must be there and match."""
    if not resume_from.is_dir():
        raise CheckpointError("resume_from", f"{resume_from} is not a directory")
    epochs = {}
    for spec, _, _, meta in prepared:
        directory = resume_from / _directory_name(spec.name)
        if not (directory / checkpoint.META_FILE).is_file():
            raise CheckpointError("tasks", f"no checkpoint of task {spec.name!r} in {resume_from}")
        epochs[spec.name] = checkpoint.read_meta(directory, meta)["epochs_done"]
    if len(set(epochs.values())) > 1:
        raise CheckpointError("resume_from", f"the tasks' checkpoints are at different epochs: {epochs}")
    return next(iter(epochs.values()))


def _run_task(
    design: Design | FullFineTuning,
    spec: TaskSpec,
    encoded: Any,
    head: HeadSpec,
    config: TrainConfig,
    *,
    cache: BackboneCache,
    callbacks: Any,
    timer: PhaseTimer,
    should_stop: Callable[[], bool] | None,
    until_epoch: int,
    resume_from: str | Path | None,
    stage: Path | None,
    meta: dict[str, Any] | None,
    output_dir: str | Path | None,
) -> tuple[dict[str, Any], int, str | None]:
    """Build, apply, (resume,) train and (checkpoint,) save one task: its per_task entry, the
    stored PEFT count and where its weights were saved."""
    from tasks.peft import apply

    if should_stop is not None and should_stop():
        raise Cancelled(spec.name, 0)
    full = isinstance(design, FullFineTuning)
    backbone_name = design.backbone if full else design.backbone.name_or_path
    directory_name = _directory_name(spec.name)
    groups: dict[str, list[Any]] | None = None
    rates: dict[str, float] = {ALL_PARAMETERS: config.learning_rate}
    state = None
    with timer.measure(spec.name, "model"):
        backbone = cache.load(backbone_name, head=head, seed=config.seed)
        if not full:
            counts = apply(backbone, design).to_dict()
            groups = parameter_groups(backbone.model)
            rates = design_learning_rates(design, config.learning_rate)
        else:
            counts = _counts_for_full_finetuning(backbone)
        if resume_from is not None:
            state = checkpoint.read_task(Path(resume_from) / directory_name, backbone.model)
    timed = timer.training(spec.name, callbacks)
    result = train(
        backbone.model,
        encoded,
        config,
        task_name=spec.name,
        callbacks=timed,
        should_stop=should_stop,
        groups=groups,
        learning_rates=rates,
        until_epoch=until_epoch,
        resume=state,
        keep_state=stage is not None,
    )
    timed.close()
    if stage is not None:
        with timer.measure(spec.name, "artifacts"):
            checkpoint.write_task(stage / directory_name, backbone.model, result.state, meta or {})
    entry = {
        "metrics": result.metrics,
        "score": result.score,
        "steps": result.steps,
        "epochs_done": result.epochs,
        "seconds": result.seconds,
        "train_examples": len(encoded.train),
        "eval_examples": len(encoded.eval),
        "head_params": counts["head"],
        "trainable_total": counts["trainable_total"],
        "training_only": counts["training_only"],
        "trainable_parameters": trainable_parameters(counts),
        "learning_rates": rates,
        "train_set": _described(encoded.train_set),
        "eval_set": _described(encoded.eval_set),
    }
    saved_to = None
    if output_dir is not None:
        from tasks.peft import save

        directory = Path(output_dir) / directory_name
        with timer.measure(spec.name, "artifacts"):
            backbone.model.to("cpu")
            if full:
                _save_full_model(backbone, directory)
            else:
                save(backbone.model, design, directory)
        saved_to = str(directory)
    return entry, counts["peft_total"], saved_to
