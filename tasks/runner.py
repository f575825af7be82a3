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

:class:`BackboneCache` keeps a backbone's pretrained weights (a state dict of everything the
checkpoint had, BERT's pooler included) and tokenizer in memory, so a long-lived worker reads each
checkpoint from disk once. Every model is built the same way, cache or not: a fresh model from the
pretrained config (its new classifier initialised under the trial's seed), then the cached
pretrained weights copied in. A warm cache therefore changes nothing but the time it takes, and
every arm of a comparison with the same seed starts from the same head.

Example:
    >>> outcome = run_design(design_dict, ["sst2", "rte"],                      # doctest: +SKIP
    ...                      train_config=TrainConfig(epochs=1, train_examples=512),
    ...                      callbacks=Callbacks(on_eval=print), should_stop=lambda: False)
    >>> outcome.score, outcome.per_task["rte"]["metrics"]                       # doctest: +SKIP
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tasks.data import DataError, ExampleSet, Role, TaskSpec, encode_task, resolve_task
from tasks.peft.design import Design, DesignError, HeadSpec
from tasks.peft.engine import HEAD_GROUP, parameter_groups
from tasks.train import ALL_PARAMETERS, Callbacks, Cancelled, TrainConfig, train

__all__ = [
    "FULL_FINETUNING_MAX_LR",
    "BackboneCache",
    "Cancelled",
    "DesignOutcome",
    "FullFineTuning",
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
        }


# --- backbone cache -----------------------------------------------------------------------


@dataclass
class _CachedBackbone:
    config: Any
    tokenizer: Any
    shape: Any
    weights: dict[str, torch.Tensor]


def _default_names() -> set[str]:
    from tasks.peft.backbones import DEFAULT_BACKBONE, default_backbone_path

    return {DEFAULT_BACKBONE, str(default_backbone_path())}


def _load_name(name_or_path: str | None) -> str | None:
    """The argument for load_backbone: None (the bundled MiniLM, offline) for the default's names."""
    if not name_or_path or name_or_path in _default_names():
        return None
    return name_or_path


class BackboneCache:
    """Pretrained weights, config and tokenizer per backbone, kept in memory between trials.

    Holds at most ``max_backbones`` backbones (least recently used goes first). Thread-safe.

    Example:
        >>> cache = BackboneCache()
        >>> backbone = cache.load(None, head=HeadSpec(problem="regression", num_labels=1), seed=0)  # doctest: +SKIP
    """

    def __init__(self, max_backbones: int = 2) -> None:
        if max_backbones < 1:
            raise ValueError("max_backbones: must be at least 1")
        self.max_backbones = max_backbones
        self._entries: OrderedDict[str, _CachedBackbone] = OrderedDict()
        self._lock = threading.Lock()
        self.disk_loads = 0  # how often a checkpoint was read from disk (tests, worker metrics)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _entry(self, name_or_path: str | None) -> _CachedBackbone:
        from tasks.peft.backbones import load_backbone

        key = _load_name(name_or_path) or "<default>"
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            # Fixed RNG for the disk load: the throwaway head (and anything the checkpoint lacks)
            # is initialised identically in every process, and the caller's RNG is left alone.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                loaded = load_backbone(
                    _load_name(name_or_path), head=HeadSpec(problem="classification", num_labels=2)
                )
            self.disk_loads += 1
            return self._store(key, loaded)

    def _store(self, key: str, backbone: Any) -> _CachedBackbone:
        from tasks.peft.backbones import head_parameters

        # Keep every weight the checkpoint had, the pretrained pooler included; only what loading
        # initialised (the classifier) is left out, to be initialised under each trial's seed.
        # A backbone built from a config has no checkpoint: its whole head is left out.
        fresh = getattr(backbone, "fresh_parameters", None)
        if fresh is None:
            fresh = {name for name, _ in head_parameters(backbone.model)}
        # state_dict tensors outlive a discarded model; load_state_dict copies them into each new
        # model, so the cached weights are never trained in place.
        weights = {k: v for k, v in backbone.model.state_dict().items() if k not in fresh}
        entry = _CachedBackbone(backbone.model.config, backbone.tokenizer, backbone.shape, weights)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_backbones:
            self._entries.popitem(last=False)
        return entry

    def put(self, name_or_path: str, backbone: Any) -> None:
        """Register a backbone already in memory (before ``apply``) under ``name_or_path``.

        Its weights are copied, so later training of ``backbone`` does not leak into the cache.
        Used for models built from a config (tests) or fetched by other means.
        """
        if backbone.tokenizer is None:
            raise ValueError("backbone: has no tokenizer; set backbone.tokenizer before caching it")
        with self._lock:
            entry = self._store(_load_name(name_or_path) or "<default>", backbone)
            entry.weights = {k: v.clone() for k, v in entry.weights.items()}

    def tokenizer(self, name_or_path: str | None) -> Any:
        """The backbone's tokenizer (loads the backbone into the cache if needed)."""
        return self._entry(name_or_path).tokenizer

    def load(self, name_or_path: str | None, *, head: HeadSpec, seed: int) -> Any:
        """A fresh ``tasks.peft.Backbone`` with pretrained weights and a head initialised under ``seed``."""
        from tasks.peft.backbones import Backbone, head_parameters, load_backbone

        entry = self._entry(name_or_path)
        torch.manual_seed(seed)
        built = load_backbone(head=head, config=entry.config)
        missing, unexpected = built.model.load_state_dict(entry.weights, strict=False)
        head_names = {name for name, _ in head_parameters(built.model)}
        if unexpected or set(missing) - head_names:
            raise RuntimeError(
                f"cached weights do not fit the rebuilt model: missing {sorted(set(missing) - head_names)}, "
                f"unexpected {sorted(unexpected)}"
            )
        return Backbone(model=built.model, tokenizer=entry.tokenizer, shape=entry.shape, head=head)


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
) -> DesignOutcome:
    """Train and score ``design`` on each of ``tasks``; return the mean score and details.

    ``role`` picks the evaluation set (tasks.data.roles): ``"selection"`` for search stages,
    ``"report"`` for the final comparison, None for the training split and report set PEFS used
    before roles. Each task's ``per_task`` entry says which examples it trained on and was scored
    on (``train_set``, ``eval_set``: ExampleSet dicts with a ``description``).

    ``tasks``: registered names ("sst2"), TaskSpecs, or TaskSpec dicts (as stored on Task rows).
    ``callbacks``: any object with optional ``on_step(task, step, values)``,
    ``on_eval(task, step, metrics)`` and ``on_end(outcome)`` methods (e.g. :class:`Callbacks`);
    ``on_end`` is called once, with the outcome, after the last task. ``should_stop`` is polled
    every step; when it returns True, :class:`Cancelled` is raised and no outcome is produced.
    ``output_dir``: when given, each task's trained PEFT weights and head are saved with
    ``tasks.peft.save`` into ``output_dir/<task>/``.

    ``design`` may also be a full fine-tuning document (:class:`FullFineTuning`), the baseline
    of the final stage: then every backbone parameter trains, ``peft_total`` is the backbone's
    parameter count, the learning rate is capped at :data:`FULL_FINETUNING_MAX_LR` unless the
    document gives one, and ``output_dir`` receives whole models (``save_pretrained``).

    Raises ``DesignError`` (bad design, or a fixed head that does not fit a task), ``DataError``
    (bad task), ``TrainConfigError`` and ``TrainingDiverged``, each naming the problem.
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
    # Load, tokenise and check every task before training any: a bad task or a head that does
    # not fit should fail the trial at once, not after the first tasks have trained.
    tokenizer = cache.tokenizer(backbone_name)
    prepared = []
    for spec in specs:
        encoded = encode_task(
            spec, tokenizer, max_length=config.max_length, train_examples=config.train_examples,
            eval_examples=config.eval_examples, role=role,
        )
        spec = encoded.spec  # hub tasks learn their label set when loaded
        head = HeadSpec(problem=spec.problem, num_labels=spec.num_labels)
        if full is None:
            _check_head(design, spec, head)
        prepared.append((spec, encoded, head))

    for spec, encoded, head in prepared:
        if should_stop is not None and should_stop():
            raise Cancelled(spec.name, 0)
        backbone = cache.load(backbone_name, head=head, seed=seed)
        groups: dict[str, list[Any]] | None = None
        rates: dict[str, float] = {ALL_PARAMETERS: config.learning_rate}
        if full is None:
            counts = apply(backbone, design).to_dict()
            groups = parameter_groups(backbone.model)
            rates = design_learning_rates(design, config.learning_rate)
        else:
            counts = _counts_for_full_finetuning(backbone)
        peft_total = counts["peft_total"]
        result = train(
            backbone.model,
            encoded,
            config,
            task_name=spec.name,
            callbacks=callbacks,
            should_stop=should_stop,
            groups=groups,
            learning_rates=rates,
        )
        per_task[spec.name] = {
            "metrics": result.metrics,
            "score": result.score,
            "steps": result.steps,
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
        notes.extend(note for note in encoded.notes if note not in notes)
        if output_dir is not None:
            from tasks.peft import save

            directory = Path(output_dir) / _directory_name(spec.name)
            backbone.model.to("cpu")
            if full is None:
                save(backbone.model, design, directory)
            else:
                _save_full_model(backbone, directory)
            saved[spec.name] = str(directory)
        del backbone  # free the trained model before building the next task's

    seed_source = "the design's seed" if train_config.seed is None else "train_config.seed"
    if full is not None and train_config.seed is None:
        seed_source = "the baseline's seed"
    notes.append(f"seed {seed} ({seed_source}) for initialisation, dropout and data order")
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
    )
    on_end = getattr(callbacks, "on_end", None)
    if on_end is not None:
        on_end(outcome)
    return outcome
