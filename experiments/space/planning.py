"""How many trials each stage trains, known before the search starts.

A stage that decides a component trains at least ``min_successes`` designs for every open choice
of that component, so no choice is discarded untried and each has a spread:

    designs = max(designs_per_stage, open choices x min_successes)

The preset's ``designs_per_stage`` is kept where it is larger; ``StagePlan.raised_from`` says
when it was raised (the form shows "raised from 8 to 30"). The designs are sampled stratified:
``min_successes`` per choice first, then the rest balanced (``balance`` on) or uniformly
(sampling.py, ``min_per_choice``/``stratify``). The S0 reference stage decides nothing and
trains ``designs_per_stage``. A pattern component whose every choice is an alias of one on this
backbone (aliases.py) is decided without training: its stage plans 0 trials.

With successive halving (``config.halving_eta`` = eta, halving.py), a deciding stage trains its
designs to the first rung, keeps the best 1/eta of each choice, and so on to the last rung at
``epochs``; so that ``min_successes`` designs of every choice survive to the last rung it draws

    min_per_choice = min_successes x eta ** (rungs - 1)      (rungs: halving.rung_epochs)

designs per choice (quick's E = 1 has one rung: nothing changes). ``StagePlan.halving`` gives the
rungs, the trials that reach each and the trial-epochs with halving and without it (the same
trials trained for every epoch); ``task_epochs`` counts with halving, ``full_task_epochs``
without. The S0 reference stage decides nothing, so it has no choice to halve within: it trains
in full.

Before the search, S4 stages depend on S3's decision: the plan counts one per group (every group
tuned, the most S3 can choose) and marks them ``upper_bound``. Work is counted in *task-epochs*:
a stage trial trains every task of the search for ``epochs`` epochs; a final-stage run trains one
task for ``final_epochs`` epochs.

>>> from experiments.space.presets import preset
>>> plan = search_plan(preset("quick"), num_layers=6)
>>> [(s.name, s.designs, s.raised_from) for s in plan.stages][:4]
[('S1', 8, None), ('S2', 8, None), ('S3', 30, 8), ('S4.G1', 30, 8)]

What the platform's services do when a stage opens::

    plan = stage_plan(config, space)
    batch = sample(space, plan.designs, seed=stage_seed(config.seed, plan.name), shape=shape,
                   budget=config.budget, balance=plan.balance, stratify=plan.stratify,
                   min_per_choice=plan.min_per_choice)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments.space.errors import SpaceError
from experiments.space.final import ARMS
from experiments.space.halving import HalvingPlan, plan_halving, rung_epochs
from experiments.space.presets import SearchConfig
from experiments.space.space import DesignSpace, all_choices
from experiments.space.stages import (
    FINAL,
    REFERENCE,
    StageSpec,
    decisions_without_training,
    next_stage,
    stage_order,
)


@dataclass(frozen=True)
class StagePlan:
    """The trials one stage trains (module docstring)."""

    name: str
    component: str | None
    title: str
    choices: int  # open choices of the component (merged aliases count once); 0: decides nothing
    requested: int  # the configuration's designs_per_stage (final: runs of the final plan)
    designs: int  # trials the stage trains
    min_per_choice: int
    epochs: int
    tasks_per_trial: int
    balance: str | None  # pass to sample(): component cycled through every draw
    stratify: str | None  # pass to sample(): component whose choices get min_per_choice first
    upper_bound: bool = False  # S4 before S3 has decided: runs only for a group S3 tunes
    trained: bool = True  # False: decided without training (all choices alias one)
    note: str = ""
    halving: HalvingPlan | None = None  # successive halving inside the stage (module docstring)

    @property
    def raised_from(self) -> int | None:
        """The configured figure when the stage trains more than it, else None."""
        return self.requested if self.designs > self.requested else None

    @property
    def task_epochs(self) -> int:
        """Task-epochs the stage trains (with halving, if it halves)."""
        if self.halving is not None:
            return self.halving.trial_epochs * self.tasks_per_trial
        return self.full_task_epochs

    @property
    def full_task_epochs(self) -> int:
        """Task-epochs of the same trials, each trained for every epoch (no halving)."""
        return self.designs * self.epochs * self.tasks_per_trial

    def halving_dict(self) -> dict[str, Any] | None:
        """``{eta, rungs, per_rung_trials, trial_epochs, full_trial_epochs}``; None: no halving.

        ``rungs`` are the cumulative epochs at the end of each rung (halving.rung_epochs), what
        the workers stop and promote at; ``per_rung_trials`` the trials that train to each."""
        plan = self.halving
        if plan is None:
            return None
        return {
            "eta": plan.eta,
            "rungs": [rung.epochs for rung in plan.rungs],
            "per_rung_trials": [rung.trials for rung in plan.rungs],
            "trial_epochs": plan.trial_epochs,
            "full_trial_epochs": plan.full_trial_epochs,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.component,
            "title": self.title,
            "choices": self.choices,
            "requested": self.requested,
            "designs": self.designs,
            "raised_from": self.raised_from,
            "min_per_choice": self.min_per_choice,
            "epochs": self.epochs,
            "tasks_per_trial": self.tasks_per_trial,
            "task_epochs": self.task_epochs,
            "full_task_epochs": self.full_task_epochs,
            "halving": self.halving_dict(),
            "balance": self.balance,
            "stratify": self.stratify,
            "upper_bound": self.upper_bound,
            "trained": self.trained,
            "note": self.note,
        }


@dataclass(frozen=True)
class SearchPlan:
    """Every stage's plan, S0 (when configured) to final, and the totals."""

    stages: tuple[StagePlan, ...]
    tasks: int
    halving_rank_by: str = "score"  # what halving's rungs rank by (SearchConfig.halving_rank_by)
    steps_per_epoch: int | None = None  # optimizer steps of one epoch on one task (None: unknown)
    halving_note: str = ""  # why a search with halving_eta halves no stage ("" when one does)

    @property
    def trials(self) -> int:
        return sum(s.designs for s in self.stages)

    @property
    def task_epochs(self) -> int:
        return sum(s.task_epochs for s in self.stages)

    @property
    def full_task_epochs(self) -> int:
        """Task-epochs of the same trials without halving."""
        return sum(s.full_task_epochs for s in self.stages)

    @property
    def halving_eta(self) -> int | None:
        return next((s.halving.eta for s in self.stages if s.halving is not None), None)

    @property
    def halving_first_rung_steps(self) -> int | None:
        """Optimizer steps (per task) every design trains before the first rung ranks it."""
        first = next((s.halving.rungs[0].epochs for s in self.stages if s.halving is not None), None)
        return None if first is None or self.steps_per_epoch is None else first * self.steps_per_epoch

    @property
    def upper_bound(self) -> bool:
        """True when the totals assume the most stages S3 can lead to."""
        return any(s.upper_bound for s in self.stages)

    @property
    def raised(self) -> tuple[StagePlan, ...]:
        return tuple(s for s in self.stages if s.raised_from is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "tasks": self.tasks,
            "trials": self.trials,
            "task_epochs": self.task_epochs,
            "full_task_epochs": self.full_task_epochs,
            "halving_eta": self.halving_eta,
            "halving_rank_by": self.halving_rank_by if self.halving_eta is not None else None,
            "halving_first_rung_steps": self.halving_first_rung_steps,
            "halving_note": self.halving_note,
            "steps_per_epoch": self.steps_per_epoch,
            "upper_bound": self.upper_bound,
        }


def min_per_choice(config: SearchConfig) -> int:
    """Designs a deciding stage draws per open choice: ``min_successes``, times eta for every rung
    after the first when the stage halves (module docstring).

    >>> from experiments.space.presets import preset
    >>> min_per_choice(preset("quick")), min_per_choice(preset("quick", epochs=3, halving_eta=3))
    (2, 6)
    """
    if config.halving_eta is None:
        return config.min_successes
    rungs = rung_epochs(config.epochs, eta=config.halving_eta, min_epochs=config.halving_min_epochs())
    return config.min_successes * config.halving_eta ** (len(rungs) - 1)


def _halving(config: SearchConfig, choices: int, designs: int) -> HalvingPlan | None:
    """The stage's halving plan, its designs spread evenly over its choices (as balanced and
    stratified sampling draws them)."""
    if config.halving_eta is None or choices < 1:
        return None
    share, extra = divmod(designs, choices)
    per_choice = {f"choice{i}": share + (i < extra) for i in range(choices)}
    plan = plan_halving(per_choice, epochs=config.epochs, eta=config.halving_eta,
                        min_epochs=config.halving_min_epochs())
    return plan if len(plan.rungs) > 1 else None  # one rung: the stage trains in full


def _deciding(
    config: SearchConfig, spec: StageSpec, choices: int, *, tasks: int, upper_bound: bool = False
) -> StagePlan:
    per_choice = min_per_choice(config)
    designs = max(config.designs_per_stage, choices * per_choice)
    each = (
        f"{per_choice} designs each ({config.min_successes} to survive "
        f"{per_choice // config.min_successes}x halving)"
        if per_choice != config.min_successes
        else f"{per_choice} designs each"
    )
    note = (
        f"raised from {config.designs_per_stage} to {designs}: {choices} open choices x {each}"
        if designs > config.designs_per_stage
        else ""
    )
    if upper_bound:
        group = spec.name.removeprefix("S4.")
        note = "; ".join(filter(None, [f"runs only if S3 tunes {group}", note]))
    return StagePlan(
        name=spec.name,
        component=spec.component,
        title=spec.title,
        choices=choices,
        requested=config.designs_per_stage,
        designs=designs,
        min_per_choice=per_choice,
        epochs=config.epochs,
        tasks_per_trial=tasks,
        balance=spec.component if config.balance else None,
        stratify=spec.component,
        upper_bound=upper_bound,
        note=note,
        halving=_halving(config, choices, designs),
    )


def _reference(config: SearchConfig, *, tasks: int) -> StagePlan:
    return StagePlan(
        name=REFERENCE.name,
        component=None,
        title=REFERENCE.title,
        choices=0,
        requested=config.designs_per_stage,
        designs=config.designs_per_stage,
        min_per_choice=0,
        epochs=config.epochs,
        tasks_per_trial=tasks,
        balance=None,
        stratify=None,
        note="samples the unconstrained space; decides nothing",
    )


def _check_tasks(tasks: Any) -> int:
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise SpaceError("tasks", f"must be a positive number of tasks, got {tasks!r}")
    return tasks


def stage_plan(
    config: SearchConfig,
    space: DesignSpace,
    spec: StageSpec | None = None,
    *,
    tasks: int = 1,
) -> StagePlan:
    """The plan of the stage that samples ``space`` (``spec`` default: ``next_stage(space)``)."""
    tasks = _check_tasks(tasks)
    spec = spec or next_stage(space)
    if spec.name == REFERENCE.name:
        return _reference(config, tasks=tasks)
    if spec.component is None:
        raise SpaceError("stage", f"{spec.name} trains the final plan (final.final_plan)")
    return _deciding(config, spec, len(space.open(spec.component)), tasks=tasks)


def search_plan(config: SearchConfig, *, num_layers: int, tasks: int = 1) -> SearchPlan:
    """Every stage's trials for a search with ``config`` on a backbone of ``num_layers`` layers.

    Raises ``SpaceError`` (field ``num_layers``) when the backbone has fewer layers than
    ``config.num_groups``.
    """
    tasks = _check_tasks(tasks)
    space = DesignSpace.initial(num_groups=config.num_groups, num_layers=num_layers)
    untrained = {d.component: d for d in decisions_without_training(space)}
    stages: list[StagePlan] = [_reference(config, tasks=tasks)] if config.reference_stage else []
    for spec in stage_order(config.num_groups, reference=False):
        if spec is FINAL:
            # Each arm tries final_lr_grid rates on the selection set (one seed) before its
            # final_seeds report runs (final.py); a grid of 1 is no tuning.
            tuning = config.final_lr_grid if config.final_lr_grid > 1 else 0
            runs = len(ARMS) * tasks * (config.final_seeds + tuning)
            stages.append(
                StagePlan(
                    name=FINAL.name,
                    component=None,
                    title=FINAL.title,
                    choices=0,
                    requested=runs,
                    designs=runs,
                    min_per_choice=0,
                    epochs=config.final_epochs,
                    tasks_per_trial=1,
                    balance=None,
                    stratify=None,
                    note=(
                        f"{len(ARMS)} arms x {tasks} task(s) x ({tuning} learning rates on the "
                        f"selection set + {config.final_seeds} report seeds), one task per run"
                    ),
                )
            )
        elif spec.component in untrained:
            decision = untrained[spec.component]
            stages.append(
                StagePlan(
                    name=spec.name,
                    component=spec.component,
                    title=spec.title,
                    choices=1,
                    requested=config.designs_per_stage,
                    designs=0,
                    min_per_choice=config.min_successes,
                    epochs=config.epochs,
                    tasks_per_trial=tasks,
                    balance=None,
                    stratify=None,
                    trained=False,
                    note=decision.reason,
                )
            )
        elif len(all_choices(spec.component, config.num_groups)) == 1:
            continue  # nothing to decide (tunable groups with G = 1): next_stage skips it too
        else:
            assert spec.component is not None  # only S0 and final decide nothing
            # Before S3 the assignment stages are all possible; each has the 15 strategy sets.
            choices = (
                len(space.open(spec.component))
                if not spec.component.startswith("assignment.")
                else len(all_choices(spec.component, config.num_groups))
            )
            stages.append(
                _deciding(
                    config,
                    spec,
                    choices,
                    tasks=tasks,
                    upper_bound=spec.component.startswith("assignment.")
                    and config.num_groups > 1,
                )
            )
    return SearchPlan(stages=tuple(stages), tasks=tasks, halving_rank_by=config.halving_rank_by,
                      steps_per_epoch=config.steps_per_epoch(),
                      halving_note=_halving_note(config, stages))


def _halving_note(config: SearchConfig, stages: list[StagePlan]) -> str:
    """Why a search with ``halving_eta`` halves none of its stages ("" when one halves, or none is asked).
    A second rung needs ``epochs >= eta x`` the first rung's epochs (halving.rung_epochs).

    >>> from experiments.space.presets import preset
    >>> _halving_note(preset("study", halving_min_steps=24), [])  # the study preset's own is 1
    'halving (eta 2) is off: stages train 2 epochs; the first rung needs 24 optimizer steps (halving_min_steps), 3 epochs of 8, so halving needs at least 6'
    """
    if config.halving_eta is None or any(s.halving is not None for s in stages):
        return ""
    min_epochs, steps = config.halving_min_epochs(), config.steps_per_epoch()
    first = (f"the first rung needs {config.halving_min_steps} optimizer steps (halving_min_steps), "
             f"{min_epochs} epoch{'s' if min_epochs > 1 else ''} of {steps}, so" if steps is not None and min_epochs > 1
             else "with the first rung after 1 epoch,")
    return (f"halving (eta {config.halving_eta}) is off: stages train {config.epochs} "
            f"epoch{'s' if config.epochs > 1 else ''}; {first} halving needs at least "
            f"{config.halving_eta * min_epochs}")


__all__ = ["SearchPlan", "StagePlan", "min_per_choice", "search_plan", "stage_plan"]
