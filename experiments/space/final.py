"""The final stage: the selected design against single-strategy baselines and full fine-tuning.

Arms, each trained on every task with several seeds:

- ``selected``: the search's decided design (stages.final_choices, compiled on the backbone);
- ``adapter``, ``prefix``, ``lora``: that strategy alone on every layer, budget split uniformly,
  at the same budget as the selected design;
- ``bitfit``: BitFit on every layer; its size is fixed by the architecture, so it cannot be
  matched to the budget and its own count is reported (with a note);
- ``full``: full fine-tuning, no design (every backbone parameter trains).

``results_table`` turns per-run scores into mean and standard deviation per task and arm, plus
the average over tasks: the mean of the per-task means, and the standard deviation over seeds of
each seed's task average (seeds with a failed task are left out of that spread). Failed runs
(score None) are counted, never averaged.

Common random numbers (seed policy: sampling.py): every arm of replicate ``s`` trains with seed
``s``, as its design seed and as its data seed (``FinalRun.data_seed``: example order, head
initialisation, dropout), so within a replicate the arms differ by their design only.

Learning rate per arm. One rate does not suit every arm (prefix-heavy designs diverge where LoRA
is fine; full fine-tuning wants far less), so with ``grid=k`` each arm first tries ``k`` rates on
the *selection* set (``FinalPlan.tuning``: one run per arm, task and rate, with the first seed),
keeps the rate whose mean over tasks scores best (``choose_learning_rates``; a tie or a failed
run favours the lower rate, the stabler one), and only then trains its report runs on the
*report* set at that rate (``report_runs``). The grid is ``learning_rate_grid``: rates a factor 3
apart around the arm's base rate, the extra one below for an even ``k`` (too high a rate, not too
low, is what makes short runs unstable). The base is the search's rate for the PEFT arms and
``min(rate, FULL_FINETUNING_RATE)`` for full fine-tuning (the paper's "up to 5e-5").

Per strategy, the grid is a grid of *factors*: every design is compiled with each strategy it uses
at its own rate (the search's ``strategy_learning_rates``, else the measured defaults of
``tasks.peft.strategies``; compiling.rate_options), and a grid point ``rate`` multiplies the
head's base rate and every strategy's rate by the same ``rate / base``. So a mixed design's
strategies keep their measured ratio while the arm's overall scale is tuned, and a single-strategy
baseline's grid is centred on its strategy's measured rate. The plan keeps each arm's
strategy rates at the base (``FinalPlan.strategy_rates``); ``arm_rates`` gives them at a grid
point, and the report shows the chosen head rate and the chosen strategy rates per arm.
``grid=1`` (or no ``learning_rate``) skips tuning: the report runs use the base rates.

>>> learning_rate_grid(3e-3, 2)
(0.001, 0.003)
>>> learning_rate_grid(5e-5, 3)
(1.67e-05, 5e-05, 0.00015)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from experiments.space.compiling import Budget, CompiledDesign, compile_choices, rate_options
from experiments.space.errors import SpaceError
from experiments.space.space import DesignSpace
from experiments.space.stages import final_choices
from tasks.peft.budget import STRATEGIES, BackboneShape, InfeasibleBudget
from tasks.peft.design import DesignOptions, design_from_sizes
from tasks.peft.strategies import code_by_name

SELECTED = "selected"
FULL = "full"
ARMS: tuple[str, ...] = (SELECTED, *STRATEGIES, FULL)

# Evaluation roles of final-stage runs (tasks.data.roles): tuning runs choose on the selection set,
# report runs are the numbers the report shows.
SELECTION, REPORT = "selection", "report"
# Full fine-tuning's rate never exceeds the paper's recipe (PAPER.md: "up to 5e-5"); the engine
# applies the same cap (tasks.runner.FULL_FINETUNING_MAX_LR) when a document gives no rate.
FULL_FINETUNING_RATE = 5e-5
LEARNING_RATE_STEP = 3.0
MAX_GRID = 7


def learning_rate_grid(base: float, size: int) -> tuple[float, ...]:
    """``size`` rates a factor 3 apart around ``base``, ascending (module docstring)."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_GRID:
        raise SpaceError("grid", f"must be an integer from 1 to {MAX_GRID}, got {size!r}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not 0 < base <= 1:
        raise SpaceError("learning_rate", f"must be a number in (0, 1], got {base!r}")
    lowest = -(size // 2)
    return tuple(
        float(f"{base * LEARNING_RATE_STEP ** k:.3g}") for k in range(lowest, lowest + size)
    )


def arm_base_rate(arm: str, learning_rate: float) -> float:
    """The rate an arm's grid is centred on (module docstring)."""
    return min(learning_rate, FULL_FINETUNING_RATE) if arm == FULL else learning_rate


def strategy_rates(design: Mapping[str, Any] | None) -> dict[str, float]:
    """``{strategy: learning_rate}`` of a design document (full fine-tuning, None: empty)."""
    return {
        name: values["learning_rate"]
        for name, values in ((design or {}).get("options") or {}).items()
        if isinstance(values, Mapping) and values.get("learning_rate") is not None
    }


def arm_rates(base_rates: Mapping[str, float], base: float, rate: float) -> dict[str, float]:
    """An arm's strategy rates (``base_rates``, at head rate ``base``) at head rate ``rate``.

    >>> arm_rates({"lora": 0.01, "prefix": 0.001}, 0.003, 0.001)
    {'lora': 0.00333, 'prefix': 0.000333}
    """
    return {name: float(f"{value * rate / base:.3g}") for name, value in base_rates.items()}


def _design_at_rate(design: dict[str, Any] | None, factor: float) -> dict[str, Any] | None:
    """``design`` with every strategy's own learning rate (where it has one) scaled by ``factor``."""
    if design is None or factor == 1:
        return design
    options = {
        name: (
            # Capped at 1, the bound every design's rate keeps (tasks.peft.strategies).
            {**values, "learning_rate": min(1.0, float(f"{values['learning_rate'] * factor:.3g}"))}
            if isinstance(values, dict) and values.get("learning_rate") is not None
            else values
        )
        for name, values in (design.get("options") or {}).items()
    }
    return {**design, "options": options}


@dataclass(frozen=True)
class FinalRun:
    """One training run of the final stage; ``design`` is None for full fine-tuning."""

    arm: str
    task: str
    seed: int
    design: dict[str, Any] | None
    parameters: int  # stored trainable parameters (full: the whole backbone), task head excluded
    learning_rate: float | None = None  # None: the search's rate (no tuning planned)
    role: str = REPORT  # SELECTION: a tuning run; REPORT: a number the report shows

    @property
    def data_seed(self) -> int:
        """Example order, head and dropout seed: shared by every arm of the replicate."""
        return self.seed

    def at_learning_rate(self, rate: float, *, role: str = REPORT) -> FinalRun:
        """This run at ``rate`` (the arm's strategy rates scaled alike) in ``role``."""
        if self.learning_rate is None:
            raise SpaceError("learning_rate", "the plan was made without a learning rate to scale")
        return replace(
            self,
            design=_design_at_rate(self.design, rate / self.learning_rate),
            learning_rate=rate,
            role=role,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "task": self.task,
            "seed": self.seed,
            "data_seed": self.data_seed,
            "design": self.design,
            "parameters": self.parameters,
            "learning_rate": self.learning_rate,
            "role": self.role,
        }


@dataclass(frozen=True)
class FinalPlan:
    runs: tuple[FinalRun, ...]
    arms: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    target: int
    parameters: Mapping[str, int]  # per arm
    notes: tuple[str, ...]
    # Learning-rate tuning (module docstring): each arm's grid and its runs on the selection set.
    grids: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    tuning: tuple[FinalRun, ...] = ()
    # Per arm, each strategy's rate at the arm's base rate (empty for full fine-tuning).
    strategy_rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    base_rates: Mapping[str, float] = field(default_factory=dict)  # per arm: the head's base

    def chosen_strategy_rates(self, chosen: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Per arm, each strategy's rate at the arm's ``chosen`` head rate (else its base)."""
        return {
            arm: (
                arm_rates(rates, self.base_rates[arm], chosen[arm])
                if arm in chosen and arm in self.base_rates
                else dict(rates)
            )
            for arm, rates in self.strategy_rates.items()
        }

    def report_runs(self, chosen: Mapping[str, float]) -> tuple[FinalRun, ...]:
        """The report runs, each arm at its ``chosen`` rate (arms left out: their base rate)."""
        return tuple(
            run.at_learning_rate(chosen[run.arm]) if run.arm in chosen else run for run in self.runs
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "arms": list(self.arms),
            "tasks": list(self.tasks),
            "seeds": list(self.seeds),
            "target": self.target,
            "parameters": dict(self.parameters),
            "notes": list(self.notes),
            "grids": {arm: list(rates) for arm, rates in self.grids.items()},
            "strategy_rates": {arm: dict(rates) for arm, rates in self.strategy_rates.items()},
            "tuning_runs": len(self.tuning),
            "report_runs": len(self.runs),
            "runs": [r.to_dict() for r in self.runs],
        }


def baseline_design(
    strategy: str,
    *,
    shape: BackboneShape,
    budget: Budget,
    seed: int,
    options: DesignOptions | Mapping[str, Any] | None = None,
    learning_rates: Mapping[str, float] | None = None,
) -> tuple[CompiledDesign, str | None]:
    """``strategy`` alone on every layer at ``budget``; returns the design and a note, if any.

    Expressed as design-space choices (one group, uniform allocation), so the baselines are
    compiled by exactly the code that compiles sampled designs.
    """
    if strategy not in STRATEGIES:
        raise SpaceError("strategy", f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    choices = {
        "grouping": "uniform",
        "allocation": "uniform",
        "groups": "G1",
        "assignment.G1": code_by_name()[strategy],
    }
    provenance = {"baseline": strategy}
    try:
        return compile_choices(
            choices,
            shape=shape,
            budget=budget,
            num_groups=1,
            seed=seed,
            options=options,
            provenance=provenance,
            learning_rates=learning_rates,
        ), None
    except InfeasibleBudget:
        if strategy != "bitfit":
            raise
    # BitFit has no size knob: train every bias, whatever that costs.
    design = design_from_sizes(
        shape,
        {i: {"bitfit": 1} for i in range(shape.num_layers)},
        seed=seed,
        options=rate_options(options, ["bitfit"], learning_rates),
        provenance={
            **provenance,
            "grouping": "uniform",
            "allocation": "uniform",
            "groups": "G1",
            "assignment": {"G1": "B"},
        },
    )
    target = budget.resolve(shape)
    compiled = CompiledDesign(choices=choices, design=design, target=target)
    note = (
        f"bitfit trains every bias: {compiled.parameters} parameters; its size is fixed by the "
        f"architecture, so it cannot be matched to the budget of {target}"
    )
    return compiled, note


def final_plan(
    space: DesignSpace,
    *,
    shape: BackboneShape,
    budget: Budget,
    tasks: Sequence[str],
    seeds: int | Sequence[int] = 3,
    baselines: Sequence[str] = STRATEGIES,
    include_full: bool = True,
    options: DesignOptions | Mapping[str, Any] | None = None,
    learning_rate: float | None = None,
    grid: int = 1,
    learning_rates: Mapping[str, float] | None = None,
) -> FinalPlan:
    """Every run of the final stage: each arm on each task with each seed (``runs``, at each arm's
    base rate) and, with ``learning_rate`` and ``grid`` > 1, the tuning runs that choose each
    arm's rate on the selection set (module docstring). ``learning_rates``: per-strategy rates
    (None: the measured defaults)."""
    if learning_rate is not None:
        learning_rate_grid(learning_rate, grid)  # validates both
    if not tasks:
        raise SpaceError("tasks", "need at least one task")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SpaceError("seeds", f"need at least one seed, got {seeds}")
        seeds = tuple(range(seeds))
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise SpaceError("seeds", f"must be distinct and non-empty, got {list(seeds)}")
    unknown = [b for b in baselines if b not in STRATEGIES]
    if unknown:
        raise SpaceError(
            "baselines", f"unknown strategy {unknown[0]!r}; expected some of {STRATEGIES}"
        )
    choices = final_choices(space)
    notes: list[str] = []
    arms: dict[str, list[CompiledDesign | None]] = {SELECTED: [], **{b: [] for b in baselines}}
    for seed in seeds:
        arms[SELECTED].append(
            compile_choices(
                choices,
                shape=shape,
                budget=budget,
                num_groups=space.num_groups,
                seed=seed,
                options=options,
                provenance={"final": SELECTED},
                learning_rates=learning_rates,
            )
        )
        for strategy in baselines:
            compiled, note = baseline_design(
                strategy,
                shape=shape,
                budget=budget,
                seed=seed,
                options=options,
                learning_rates=learning_rates,
            )
            arms[strategy].append(compiled)
            if note and note not in notes:
                notes.append(note)
    if include_full:
        arms[FULL] = [None] * len(seeds)
    runs = tuple(
        FinalRun(
            arm=arm,
            task=task,
            seed=seed,
            design=compiled.design.to_dict() if compiled else None,
            parameters=compiled.parameters if compiled else shape.total_params,
            learning_rate=None if learning_rate is None else arm_base_rate(arm, learning_rate),
        )
        for arm, compiled_per_seed in arms.items()
        for task in tasks
        for seed, compiled in zip(seeds, compiled_per_seed, strict=True)
    )
    parameters = {arm: (c[0].parameters if c[0] else shape.total_params) for arm, c in arms.items()}
    grids: dict[str, tuple[float, ...]] = {}
    tuning: list[FinalRun] = []
    if learning_rate is not None and grid > 1:
        grids = {arm: learning_rate_grid(arm_base_rate(arm, learning_rate), grid) for arm in arms}
        first = [run for run in runs if run.seed == seeds[0]]
        tuning = [run.at_learning_rate(rate, role=SELECTION) for run in first for rate in grids[run.arm]]
        notes.append(
            f"learning rate per arm: {grid} rates tried on the selection set (seed {seeds[0]}), "
            f"the best kept for the {len(seeds)} report seeds: {len(tuning)} tuning runs before "
            f"{len(runs)} report runs"
        )
    first_design = {arm: (c[0].design.to_dict() if c[0] else None) for arm, c in arms.items()}
    return FinalPlan(
        runs=runs,
        arms=tuple(arms),
        tasks=tuple(tasks),
        seeds=seeds,
        target=budget.resolve(shape),
        parameters=parameters,
        notes=tuple(notes),
        grids=grids,
        tuning=tuple(tuning),
        strategy_rates={arm: strategy_rates(design) for arm, design in first_design.items()},
        base_rates=(
            {} if learning_rate is None else {arm: arm_base_rate(arm, learning_rate) for arm in arms}
        ),
    )


@dataclass(frozen=True)
class TuningResult:
    """One tuning run's outcome: ``score`` on the selection set, None when it failed."""

    arm: str
    task: str
    learning_rate: float
    score: float | None


def choose_learning_rates(
    results: Iterable[TuningResult], grids: Mapping[str, Sequence[float]]
) -> dict[str, dict[str, Any]]:
    """Per arm: the chosen rate and the evidence, ``{"grid", "scores", "chosen", "reason"}``.

    ``scores[str(rate)]`` is the mean over tasks on the selection set (None when a task's run
    failed or has not run). The best mean wins; ties go to the lower rate. An arm none of whose
    rates completed every task keeps its lowest rate, and the reason says so.
    """
    results = list(results)
    tasks = list(dict.fromkeys(r.task for r in results))
    chosen: dict[str, dict[str, Any]] = {}
    for arm, grid in grids.items():
        scores: dict[str, float | None] = {}
        for rate in grid:
            by_task = {r.task: r.score for r in results if r.arm == arm and r.learning_rate == rate}
            complete = tasks and all(by_task.get(t) is not None for t in tasks)
            scores[repr(rate)] = statistics.fmean(by_task[t] for t in tasks) if complete else None
        scored = [(mean, rate) for rate in grid if (mean := scores[repr(rate)]) is not None]
        if scored:
            best = max(scored, key=lambda pair: (pair[0], -pair[1]))
            rate, reason = best[1], f"best mean selection score over tasks ({best[0]:.2f})"
        else:
            rate, reason = min(grid), "no rate completed every task: the lowest rate is kept"
        chosen[arm] = {"grid": list(grid), "scores": scores, "chosen": rate, "reason": reason}
    return chosen


@dataclass(frozen=True)
class FinalResult:
    arm: str
    task: str
    seed: int
    score: float | None  # None: the run failed


def _cell(scores: list[float], failed: int) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(scores) if scores else None,
        "std": statistics.stdev(scores) if len(scores) >= 2 else None,
        "n": len(scores),
        "failed": failed,
    }


def results_table(
    results: Iterable[FinalResult],
    *,
    parameters: Mapping[str, int] | None = None,
    learning_rates: Mapping[str, float] | None = None,
    optimised: Mapping[str, int] | None = None,
    strategy_learning_rates: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Mean and std per task and arm, and the average over tasks (module docstring).

    Shape: ``{"tasks": [...], "arms": [...], "rows": [{"arm", "parameters",
    "optimised_parameters", "learning_rate", "strategy_learning_rates", "per_task": {task: {"mean", "std", "n", "failed"}},
    "average": {"mean", "std", "seeds"}}], "best": arm}``. ``parameters`` is the stored count
    (the budget), ``optimised_parameters`` what the optimiser updated (head and reparameterisation
    included), ``learning_rate`` the arm's (head's) rate and ``strategy_learning_rates`` each of its
strategies' rates (``{}`` for full fine-tuning); each None when not given.
    """
    results = list(results)
    arms = list(dict.fromkeys(r.arm for r in results))
    tasks = list(dict.fromkeys(r.task for r in results))
    rows = []
    for arm in arms:
        mine = [r for r in results if r.arm == arm]
        per_task = {}
        for task in tasks:
            runs = [r for r in mine if r.task == task]
            per_task[task] = _cell(
                [r.score for r in runs if r.score is not None], sum(r.score is None for r in runs)
            )
        task_means = [cell["mean"] for cell in per_task.values()]
        complete_seeds = []
        for seed in dict.fromkeys(r.seed for r in mine):
            by_task = {r.task: r.score for r in mine if r.seed == seed}
            if all(by_task.get(t) is not None for t in tasks):
                complete_seeds.append(statistics.fmean(by_task[t] for t in tasks))
        rows.append(
            {
                "arm": arm,
                "parameters": (parameters or {}).get(arm),
                "optimised_parameters": (optimised or {}).get(arm),
                "learning_rate": (learning_rates or {}).get(arm),
                "strategy_learning_rates": (
                    None
                    if strategy_learning_rates is None
                    else dict(strategy_learning_rates.get(arm) or {})
                ),
                "per_task": per_task,
                "average": {
                    "mean": statistics.fmean(task_means) if None not in task_means else None,
                    "std": statistics.stdev(complete_seeds) if len(complete_seeds) >= 2 else None,
                    "seeds": len(complete_seeds),
                },
            }
        )
    scored = [row for row in rows if row["average"]["mean"] is not None]
    best = max(scored, key=lambda row: row["average"]["mean"])["arm"] if scored else None
    return {"tasks": tasks, "arms": arms, "rows": rows, "best": best}
