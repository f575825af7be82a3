"""A search before it starts: its configuration from the form's, API's or CLI's inputs, the trials
and task-epochs it will train (experiments.space.planning), and the per-user limits those must fit.

The new-search form's preview, the API's dry run and `pefs_search --dry-run` (search_plan_preview)
and search_create (search_plan_check) share search_config_build and search_plan_limits, so what
a person is shown is what is enforced:

    config, budget_params = search_config_build(backbone=backbone, groups=4, preset="quick")
    plan = search_plan_check(owner=user, config=config, backbone=backbone, tasks=2)
    plan.trials, plan.task_epochs   # ValidationError {"plan": [...]} when over a limit
    search_plan_preview(owner=user, backbone=backbone, tasks=[sst2, rte], groups=4, preset="quick")
    # -> {"stages": [...], "trials": 180, "task_epochs": 384, "full_task_epochs": 384,
    #     "example_sets": [...], "estimate": {"text": "about 40 min on 1 worker (estimate)", ...},
    #     "problems": [], "limits": {...}}
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError

from experiments.space import SearchConfig, SpaceError
from experiments.space import preset as make_preset
from experiments.space.planning import SearchPlan, search_plan

from .. import selectors
from ..models import Backbone, Task, Trial
from .estimate import search_estimate, task_example_sets

# SearchConfig fields the library knows but the workers do not schedule: a search that sets one is
# refused, since accepting it would silently ignore it. None today: successive halving
# (halving_eta) runs on the workers, rung by rung (experiments.space.halving).
UNSCHEDULED_SETTINGS: dict[str, str] = {}


def space_error(exc: Exception) -> ValidationError:
    """experiments.space.SpaceError / InfeasibleBudget -> ValidationError naming the field."""
    field_name = getattr(exc, "field", None) or "config"
    return ValidationError({field_name: [getattr(exc, "message", None) or str(exc)]})


def search_config_build(*, backbone: Backbone, budget_kind: str = "fraction", budget_value: float = 0.005,
                        groups: int = 4, preset: str = "quick", overrides: dict[str, Any] | None = None,
                        auto_approve: bool = False, seed: int = 0) -> tuple[SearchConfig, int]:
    """The SearchConfig these inputs give on `backbone`, and the budget as a parameter count.

    Every number is checked by SearchConfig against experiments.space.presets.LIMITS; a
    ValidationError names the field."""
    if isinstance(groups, bool) or not isinstance(groups, int) or not 1 <= groups <= backbone.num_layers:
        raise ValidationError({"groups": [f"Groups must be a whole number from 1 to the backbone's "
                                          f"{backbone.num_layers} layers."]})
    count = selectors.budget_params(backbone=backbone, budget_kind=budget_kind, budget_value=budget_value)
    try:
        config = make_preset(preset, **(overrides or {}), num_groups=groups, budget={"parameters": count},
                             auto_approve=bool(auto_approve), seed=seed)
    except SpaceError as exc:
        raise space_error(exc) from None
    except TypeError as exc:
        raise ValidationError({"overrides": [str(exc)]}) from None
    refused = {setting: [message] for setting, message in UNSCHEDULED_SETTINGS.items()
               if getattr(config, setting) is not None}
    if refused:
        raise ValidationError(refused)
    return config, count


def active_trial_count(*, owner: AbstractBaseUser) -> int:
    """Trials of the owner's searches that are queued or running now."""
    return Trial.objects.filter(search__owner=owner, status__in=(Trial.Status.QUEUED, Trial.Status.RUNNING)).count()


def search_plan_limits(*, owner: AbstractBaseUser, plan: SearchPlan) -> list[str]:
    """What the plan passes of the per-user limits, one sentence each naming the setting (none: it fits)."""
    at_most = "at most " if plan.upper_bound else ""
    problems = []
    if plan.trials > settings.PEFS_MAX_TRIALS_PER_SEARCH:
        problems.append(f"This search trains {at_most}{plan.trials:,} trials; the limit is "
                        f"{settings.PEFS_MAX_TRIALS_PER_SEARCH:,} per search (PEFS_MAX_TRIALS_PER_SEARCH). "
                        "Lower designs per stage, groups or final seeds.")
    if plan.task_epochs > settings.PEFS_MAX_TASK_EPOCHS_PER_SEARCH:
        problems.append(f"This search trains {at_most}{plan.task_epochs:,} task-epochs; the limit is "
                        f"{settings.PEFS_MAX_TASK_EPOCHS_PER_SEARCH:,} per search "
                        "(PEFS_MAX_TASK_EPOCHS_PER_SEARCH). Lower epochs, designs per stage or tasks.")
    first = next((stage.designs for stage in plan.stages if stage.designs), 0)
    active = active_trial_count(owner=owner)
    if active + first > settings.PEFS_MAX_ACTIVE_TRIALS_PER_USER:
        problems.append(f"You have {active:,} trials queued or running and this search's first stage adds "
                        f"{first:,}; the limit is {settings.PEFS_MAX_ACTIVE_TRIALS_PER_USER:,} per user "
                        "(PEFS_MAX_ACTIVE_TRIALS_PER_USER). Wait for a search to finish or cancel one.")
    return problems


def _plan(config: SearchConfig, *, backbone: Backbone, tasks: int) -> SearchPlan:
    try:
        return search_plan(config, num_layers=backbone.num_layers, tasks=tasks)
    except SpaceError as exc:
        raise space_error(exc) from None


def search_plan_check(*, owner: AbstractBaseUser, config: SearchConfig, backbone: Backbone, tasks: int) -> SearchPlan:
    """The search's plan (every stage's trials, the totals) when it fits the per-user limits.

    ValidationError {"plan": [...]} naming each limit it passes: the trials and task-epochs of the
    whole search (PEFS_MAX_TRIALS_PER_SEARCH, PEFS_MAX_TASK_EPOCHS_PER_SEARCH) and the trials the
    owner would have queued or running once its first stage is queued (PEFS_MAX_ACTIVE_TRIALS_PER_USER).
    """
    plan = _plan(config, backbone=backbone, tasks=tasks)
    problems = search_plan_limits(owner=owner, plan=plan)
    if problems:
        raise ValidationError({"plan": problems})
    return plan


def search_plan_preview(*, owner: AbstractBaseUser, backbone: Backbone, tasks: int | Sequence[Task],
                        **inputs: Any) -> dict[str, Any]:
    """What a search with these inputs (search_config_build's) would train, shown before it starts.

    The plan (experiments.space.planning.SearchPlan.to_dict: stages, trials, task_epochs with
    halving and full_task_epochs without, upper_bound), the limits and the sentences saying which
    it passes (`problems`, empty: it may start). Given the Task rows (not just their number): each
    task's example sets (`example_sets`, estimate.task_example_sets) and the duration
    (`estimate`, estimate.search_estimate). ValidationError naming the field for inputs
    search_create would refuse."""
    config, _ = search_config_build(backbone=backbone, **inputs)
    rows = [] if isinstance(tasks, int) else list(tasks)
    plan = _plan(config, backbone=backbone, tasks=tasks if isinstance(tasks, int) else len(rows))
    sets = [task_example_sets(task=task, config=config) for task in rows]
    return {**plan.to_dict(), "example_sets": sets,
            "estimate": search_estimate(plan=plan, config=config, backbone=backbone, example_sets=sets),
            "problems": search_plan_limits(owner=owner, plan=plan),
            "limits": {"trials_per_search": settings.PEFS_MAX_TRIALS_PER_SEARCH,
                       "task_epochs_per_search": settings.PEFS_MAX_TASK_EPOCHS_PER_SEARCH,
                       "active_trials_per_user": settings.PEFS_MAX_ACTIVE_TRIALS_PER_USER}}
