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
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.space.compiling import Budget, CompiledDesign, compile_choices
from experiments.space.errors import SpaceError
from experiments.space.space import DesignSpace
from experiments.space.stages import final_choices
from experiments.space.subsets import CODE_OF_STRATEGY
from tasks.peft.budget import STRATEGIES, BackboneShape, InfeasibleBudget
from tasks.peft.design import DesignOptions, design_from_sizes

SELECTED = "selected"
FULL = "full"
ARMS: tuple[str, ...] = (SELECTED, *STRATEGIES, FULL)


@dataclass(frozen=True)
class FinalRun:
    """One training run of the final stage; ``design`` is None for full fine-tuning."""

    arm: str
    task: str
    seed: int
    design: dict[str, Any] | None
    parameters: int  # stored trainable parameters (full: the whole backbone), task head excluded

    @property
    def data_seed(self) -> int:
        """Example order, head and dropout seed: shared by every arm of the replicate."""
        return self.seed

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "task": self.task,
            "seed": self.seed,
            "data_seed": self.data_seed,
            "design": self.design,
            "parameters": self.parameters,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "arms": list(self.arms),
            "tasks": list(self.tasks),
            "seeds": list(self.seeds),
            "target": self.target,
            "parameters": dict(self.parameters),
            "notes": list(self.notes),
            "runs": [r.to_dict() for r in self.runs],
        }


def baseline_design(
    strategy: str,
    *,
    shape: BackboneShape,
    budget: Budget,
    seed: int,
    options: DesignOptions | Mapping[str, Any] | None = None,
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
        "assignment.G1": CODE_OF_STRATEGY[strategy],
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
        ), None
    except InfeasibleBudget:
        if strategy != "bitfit":
            raise
    # BitFit has no size knob: train every bias, whatever that costs.
    design = design_from_sizes(
        shape,
        {i: {"bitfit": 1} for i in range(shape.num_layers)},
        seed=seed,
        options=options,
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
) -> FinalPlan:
    """Every run of the final stage: each arm on each task with each seed."""
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
            )
        )
        for strategy in baselines:
            compiled, note = baseline_design(
                strategy, shape=shape, budget=budget, seed=seed, options=options
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
        )
        for arm, compiled_per_seed in arms.items()
        for task in tasks
        for seed, compiled in zip(seeds, compiled_per_seed, strict=True)
    )
    parameters = {arm: (c[0].parameters if c[0] else shape.total_params) for arm, c in arms.items()}
    return FinalPlan(
        runs=runs,
        arms=tuple(arms),
        tasks=tuple(tasks),
        seeds=seeds,
        target=budget.resolve(shape),
        parameters=parameters,
        notes=tuple(notes),
    )


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
    results: Iterable[FinalResult], *, parameters: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """Mean and std per task and arm, and the average over tasks (module docstring).

    Shape: ``{"tasks": [...], "arms": [...], "rows": [{"arm", "parameters", "per_task":
    {task: {"mean", "std", "n", "failed"}}, "average": {"mean", "std", "seeds"}}], "best": arm}``.
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
