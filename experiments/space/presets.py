"""Search configurations and the three presets, "paper", "quick" and "study".

- "paper": the paper's regime (100 designs per stage, 3 epochs, G = 4, batch 128, 10 final
  epochs).
- "quick": a laptop-sized look at the search (one short epoch, a few hundred examples per task).
- "study": sized for a 2-core CPU study on the bundled MiniLM over bundled GLUE tasks (the
  committed one, docs/study/, ran sst2 and mrpc) with successive halving on: G = 2, 2 epochs with
  halving eta 2 (rungs at 1 and 2 epochs), so each deciding stage draws
  min_successes (3) x 2 = 6 designs per open choice and 3 of each survive to the last rung
  (planning.min_per_choice); 128 training and 200 selection examples per task, batch 16, length 64;
  no reference stage; 3 final seeds after a 3-rate grid per arm, 2 final epochs.

Every field can be overridden; each is validated on construction and a bad value raises
``SpaceError`` naming the field.

>>> preset("quick").designs_per_stage
8
>>> preset("paper", designs_per_stage=50).to_dict()["designs_per_stage"]
50
>>> preset("paper", epochs=0)
Traceback (most recent call last):
...
experiments.space.errors.SpaceError: epochs: must be an integer from 1 to 100, got 0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from experiments.space.compiling import Budget
from experiments.space.errors import SpaceError
from experiments.space.halving import RANK_BY
from experiments.space.space import MAX_GROUPS
from tasks.peft.strategies import default_learning_rates
from tasks.peft.strategies import names as strategy_names


# Upper bounds of every number a user can type (form, API and CLI all validate through
# SearchConfig). They keep one request from queueing an unbounded amount of work or holding the
# database; a per-user cap on a search's total trials is checked where searches are created.
LIMITS: dict[str, int | float] = {
    "designs_per_stage": 1000,
    "epochs": 100,
    "max_train_examples": 1_000_000,
    "max_eval_examples": 1_000_000,
    "max_length": 4096,
    "learning_rate": 1.0,
    "batch_size": 1024,
    "halving_eta": 16,
    "halving_min_steps": 100_000,
    "min_successes": 100,
    "bootstrap_resamples": 100_000,
    "final_seeds": 20,
    "final_epochs": 100,
    "final_lr_grid": 7,
    # Seeds are stored as 32-bit signed integers, and final-stage seeds add small offsets.
    "seed": 2_000_000_000,
}


# Bounds of a per-strategy learning rate a search sets (SearchConfig.strategy_learning_rates).
STRATEGY_RATE_BOUNDS = (1e-6, 1.0)


def _check_strategy_rates(rates: Any) -> dict[str, float] | None:
    if rates is None:
        return None
    name = "strategy_learning_rates"
    if not isinstance(rates, Mapping):
        raise SpaceError(name, f"must be an object {{strategy: rate}} or null, got {_shown(rates)}")
    low, high = STRATEGY_RATE_BOUNDS
    checked: dict[str, float] = {}
    for strategy, rate in rates.items():
        if strategy not in strategy_names():
            raise SpaceError(
                f"{name}.{str(strategy)[:40]}", f"unknown strategy; known: {list(strategy_names())}"
            )
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not low <= rate <= high
        ):
            raise SpaceError(
                f"{name}.{strategy}", f"must be a number from {low:g} to {high:g}, got {_shown(rate)}"
            )
        checked[strategy] = float(rate)
    return checked


# Steps before halving's first rung (SearchConfig.halving_min_steps). On the four recorded MiniLM /
# SST-2 stages with 8-step epochs (bench/halving.py, README) a first rung after 24 steps (3 epochs)
# decided like the full stage more often than one after 8, on every stage (eta 3: 60/60/91/53% of
# replays against 60/55/65/26%), at 0.56 of the trial-epochs instead of 0.30. It is a floor, not a
# cure: on the stage recorded with 24-step epochs a rung after one epoch agreed in 26%.
HALVING_MIN_STEPS = 24

# Below two successes a choice has no spread, so its confidence interval is undefined and
# comparing it is guesswork.
MIN_SUCCESSES = 2


def _int(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    maximum = LIMITS.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
        maximum is not None and value > maximum
    ):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise SpaceError(
            name, f"must be an integer {bound}{' or null' if optional else ''}, got {_shown(value)}"
        )


def _shown(value: Any) -> str:
    """repr() of a user's value, shortened: a 10**30 must not turn into a 30-digit error line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """How a search runs: stage size, short training regime, budget, statistics, final stage."""

    designs_per_stage: int = field(
        default=100,
        metadata={
            "help": "designs sampled and trained per stage; raised to open choices x "
            "min_successes where that is larger (planning.py)"
        },
    )
    epochs: int = field(default=3, metadata={"help": "training epochs of each stage design"})
    budget: Budget = field(default_factory=Budget, metadata={"help": "PEFT parameter budget"})
    num_groups: int = field(default=4, metadata={"help": "layer groups G (1 <= G <= layers)"})
    max_train_examples: int | None = field(
        default=None, metadata={"help": "training examples per task (null: all)"}
    )
    max_eval_examples: int | None = field(
        default=None, metadata={"help": "evaluation examples per task (null: all)"}
    )
    max_length: int = field(default=128, metadata={"help": "tokens per training example (pairs included)"})
    learning_rate: float = field(
        default=5e-5, metadata={"help": "peak learning rate of the task head (pooler, classifier)"}
    )
    strategy_learning_rates: Mapping[str, float] | None = field(
        default=None,
        metadata={
            "help": "peak learning rate of each strategy's parameters, e.g. {\"prefix\": 0.001} "
            "(null or a strategy left out: its measured default, tasks.peft.strategies)"
        },
    )
    batch_size: int = field(default=128, metadata={"help": "training batch size"})
    reference_stage: bool = field(
        default=True,
        metadata={"help": "run S0 (sample the unconstrained space) as the reference EDF"},
    )
    balance: bool = field(
        default=True,
        metadata={"help": "give each open choice of the decided component an equal share"},
    )
    halving_eta: int | None = field(
        default=None,
        metadata={
            "help": "successive halving inside each deciding stage: train every design to the first "
            "rung, keep the best 1/eta of each choice, continue them to the next (rungs at "
            "epochs/eta^k); stages draw min_successes x eta^(rungs-1) designs per choice so "
            "min_successes reach the last rung (2 to 16; empty: off). The stage then compares "
            "each choice's best designs, not all of them: on the recorded 36-design stages "
            "(bench/halving.py) the same designs trained for a third of the epochs decided like "
            "the full stage more often"
        },
    )
    halving_rank_by: str = field(
        default="score",
        metadata={
            "help": "what successive halving's rungs rank each choice's designs by: score (what the "
            "stage decides by) or auc (the selection set's ranking AUC, which moves while accuracy "
            "is still at the majority class; on the recorded stages it was not the better ranking, "
            "bench/halving.py); the stage decides by the survivors' scores either way",
            "choices": tuple(RANK_BY),
        },
    )
    halving_min_steps: int = field(
        default=HALVING_MIN_STEPS,
        metadata={
            "help": "optimizer steps every design trains before halving's first rung ranks it: the "
            "first rung comes at the first epoch that reaches them (an epoch: max_train_examples / "
            "batch_size steps; with all examples, 1 epoch). On the recorded stages (bench/halving.py) "
            "a first rung after 8 steps ranked nearly at random; a stage whose epochs are too few "
            "for a later first rung trains in full (1: rank after the first epoch)"
        },
    )
    min_successes: int = field(
        default=2,
        metadata={
            "help": "successful trials every open choice needs before a stage recommends; each "
            "stage trains at least this many designs per choice (at least 2)"
        },
    )
    bootstrap_resamples: int = field(
        default=2000, metadata={"help": "bootstrap resamples for the CIs"}
    )
    auto_approve: bool = field(
        default=False,
        metadata={"help": "apply each stage's recommendation without waiting for a person"},
    )
    final_seeds: int = field(default=3, metadata={"help": "seeds per task in the final stage"})
    final_epochs: int = field(default=10, metadata={"help": "training epochs in the final stage"})
    final_lr_grid: int = field(
        default=3,
        metadata={
            "help": "learning rates each final arm tries on the selection set before its report "
            "runs (a factor 3 apart around learning_rate; 1: no tuning; final.py)"
        },
    )
    seed: int = field(
        default=0, metadata={"help": "search seed; stage sampling seeds derive from it"}
    )

    def __post_init__(self) -> None:
        _int("designs_per_stage", self.designs_per_stage, 2)
        _int("epochs", self.epochs, 1)
        if not isinstance(self.budget, Budget):
            object.__setattr__(self, "budget", Budget.from_dict(self.budget))
        _int("num_groups", self.num_groups, 1)
        if self.num_groups > MAX_GROUPS:
            raise SpaceError("num_groups", f"must be at most {MAX_GROUPS}, got {self.num_groups}")
        _int("max_train_examples", self.max_train_examples, 1, optional=True)
        _int("max_eval_examples", self.max_eval_examples, 1, optional=True)
        _int("max_length", self.max_length, 8)
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, (int, float))
            or not math.isfinite(lr)
            or lr <= 0
            or lr > LIMITS["learning_rate"]
        ):
            raise SpaceError(
                "learning_rate", f"must be a number in (0, {LIMITS['learning_rate']}], got {_shown(lr)}"
            )
        object.__setattr__(
            self, "strategy_learning_rates", _check_strategy_rates(self.strategy_learning_rates)
        )
        _int("batch_size", self.batch_size, 1)
        for flag in ("reference_stage", "balance", "auto_approve"):
            if not isinstance(getattr(self, flag), bool):
                raise SpaceError(flag, f"must be true or false, got {getattr(self, flag)!r}")
        _int("halving_eta", self.halving_eta, 2, optional=True)
        _int("halving_min_steps", self.halving_min_steps, 1)
        if not isinstance(self.halving_rank_by, str) or self.halving_rank_by not in RANK_BY:
            raise SpaceError("halving_rank_by", f"must be {' or '.join(RANK_BY)}, got {_shown(self.halving_rank_by)}")
        if isinstance(self.min_successes, int) and not isinstance(self.min_successes, bool):
            if self.min_successes < MIN_SUCCESSES:
                raise SpaceError(
                    "min_successes",
                    f"must be at least {MIN_SUCCESSES}: a choice needs two successful trials for a "
                    f"spread and a confidence interval, got {self.min_successes}",
                )
        _int("min_successes", self.min_successes, MIN_SUCCESSES)
        _int("bootstrap_resamples", self.bootstrap_resamples, 100)
        _int("final_seeds", self.final_seeds, 1)
        _int("final_epochs", self.final_epochs, 1)
        _int("final_lr_grid", self.final_lr_grid, 1)
        _int("seed", self.seed, 0)

    def steps_per_epoch(self) -> int | None:
        """Optimizer steps of one epoch on one task (None: all training examples, count unknown here)."""
        if self.max_train_examples is None:
            return None
        return math.ceil(self.max_train_examples / self.batch_size)

    def halving_min_epochs(self) -> int:
        """Epochs before halving's first rung: the fewest that reach ``halving_min_steps``.

        >>> SearchConfig(max_train_examples=128, batch_size=16, halving_min_steps=24).halving_min_epochs()
        3
        >>> SearchConfig(max_train_examples=384, batch_size=16, halving_min_steps=24).halving_min_epochs()
        1
        """
        steps = self.steps_per_epoch()
        return 1 if steps is None else max(1, math.ceil(self.halving_min_steps / steps))

    def learning_rates(self) -> dict[str, float]:
        """Each strategy's rate: the configured one, else its measured default."""
        return {**default_learning_rates(), **(self.strategy_learning_rates or {})}

    def design_options(self) -> dict[str, dict[str, float]]:
        """``options`` for the designs this search compiles: ``{strategy: {"learning_rate": r}}``
        (compiling.rate_options keeps the rates of the strategies a design uses)."""
        return {name: {"learning_rate": rate} for name, rate in self.learning_rates().items()}

    def replace(self, **overrides: Any) -> SearchConfig:
        """A copy with ``overrides`` applied (validated; unknown names rejected)."""
        return SearchConfig.from_dict({**self.to_dict(), **overrides})

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["budget"] = self.budget.to_dict()
        if self.strategy_learning_rates is not None:
            data["strategy_learning_rates"] = dict(self.strategy_learning_rates)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        if not isinstance(data, Mapping):
            raise SpaceError("config", f"must be an object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpaceError(unknown[0], f"unknown setting; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Help text of each field (for forms and the CLI)."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


PRESETS: dict[str, SearchConfig] = {
    # The paper's regime (PAPER.md): 100 designs per stage, 3 epochs, 0.5% budget, G = 4; final
    # training with its reported recipe (lr 5e-5, batch 128, 10 epochs).
    "paper": SearchConfig(),
    # Small enough for a laptop CPU with a MiniLM-sized backbone: a few hundred examples per task,
    # one epoch, 8 designs per stage (balanced so every choice is seen), no reference stage. PEFT
    # modules start from scratch, so one short epoch needs a higher learning rate than the paper's.
    # 8 designs is the figure for stages with few choices; a stage with more open choices trains
    # min_successes (2) designs for each (S3 and each S4 stage over 15 choices: 30, planning.py),
    # so that no choice is discarded untried and every choice has a spread.
    # Measured on MiniLM / SST-2 (README): with 300 examples at lr 5e-4 and batch 32 (9 steps)
    # nearly every design stayed at the majority class, so the stages compared noise; 512
    # examples at lr 3e-3, batch 16, length 64 (32 steps, ~9 s a design on 2 CPU cores) separate
    # designs from 48 to 74.
    "quick": SearchConfig(
        designs_per_stage=8,
        epochs=1,
        max_train_examples=512,
        max_eval_examples=300,
        max_length=64,
        learning_rate=3e-3,
        batch_size=16,
        reference_stage=False,
        min_successes=2,
        bootstrap_resamples=1000,
        # Three report seeds for a spread (issue 10); two rates per arm keep tuning cheap: with
        # 6 arms, 12 tuning runs and 18 report runs per task.
        final_seeds=3,
        final_epochs=2,
        final_lr_grid=2,
    ),
}
# Sized for a 2-core CPU study (module docstring): quick's short-run recipe (length 64, batch 16,
# no reference stage, 3 final seeds) with halving at eta 2 over 2 epochs (rungs at 1 and 2). What
# the first study (two designs a choice, a 2-rate grid) showed set the rest: three designs a choice
# reach the last rung (min_successes 3; two gave intervals too wide to decide anything), and a
# 3-rate final grid (every arm had picked the top of the 2-rate one). designs_per_stage 18 is what
# the three-choice stages need (3 choices x 3 x eta 2); the strategy-set stages are raised to
# 15 x 6 = 90. On MiniLM with two GLUE tasks (sst2,
# mrpc) the plan estimates at most about 55 min (docs/study/ says what it took).
# Its first rung comes after one epoch, 8 steps (halving_min_steps 1), as in both committed studies:
# bench/halving.py shows such a rung promotes nearly at random, and a rung after 24 steps (the
# default) would need 6 epochs of 128 examples, more than a 90-minute study on 2 cores affords.
PRESETS["study"] = PRESETS["quick"].replace(
    designs_per_stage=18,
    epochs=2,
    halving_eta=2,
    halving_min_steps=1,
    min_successes=3,
    num_groups=2,
    max_train_examples=128,
    max_eval_examples=200,
    final_epochs=2,
    final_lr_grid=3,
)


def preset(name: str, **overrides: Any) -> SearchConfig:
    """The preset ``name`` with ``overrides`` applied (each validated)."""
    if name not in PRESETS:
        raise SpaceError("preset", f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
