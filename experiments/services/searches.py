"""Searches and their stages: create, open a stage, check it is complete, approve it, cancel, complete.

A search is a sequence of stages. Each stage samples designs from the current space and queues
them as trials; when every trial is final the stage is summarised per choice and waits for a
person (or is approved automatically), and the approved refinement is the next stage's space.
After the last component the final stage trains the selected design against the baselines
(services.final); new trials of any stage are added through services.stage_trials.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from experiments.space import (
    AUTO,
    REFERENCE,
    DesignSpace,
    InfeasibleSpace,
    SearchConfig,
    SpaceError,
    TrialOutcome,
    decisions_without_training,
    next_stage,
    refine,
    sample,
    stage_plan,
    stage_seed,
    summarise,
)
from experiments.space.planning import StagePlan
from experiments.space.sampling import SampleBatch
from experiments.space.stages import FINAL, Decision, StageSpec
from tasks.peft.budget import BackboneShape

from .. import events
from ..models import Backbone, Search, Stage, Task, Trial
from .catalog import task_unavailable_reason
from .final import final_stage_check, final_stage_open, search_complete
from .halving import (
    halving_stage_plan,
    search_checkpoints_remove,
    stage_checkpoints_remove,
    stage_halving_summary,
    stage_rung_advance,
)
from .limits import UNSCHEDULED_SETTINGS, search_config_build, search_plan_check
from .limits import space_error as _space_error
from .stage_trials import stage_trials_add


def search_config(search: Search) -> SearchConfig:
    # Searches stored before halving_min_steps existed ranked their first rung after one epoch.
    return SearchConfig.from_dict({"halving_min_steps": 1, **search.config})


def search_create(*, owner: AbstractBaseUser, name: str, tasks: list[Task], backbone: Backbone,
                  budget_kind: str = "fraction",
                  budget_value: float = 0.005, groups: int = 4, preset: str = "quick",
                  overrides: dict[str, Any] | None = None, auto_approve: bool = False, seed: int = 0) -> Search:
    """Validate a search, store it with its first stage and queue that stage's trials."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["Give the search a name."]
    tasks = list(tasks or [])
    if not tasks:
        errors["tasks"] = ["Choose at least one task."]
    for task in tasks:
        if not isinstance(task, Task) or (task.owner_id not in (None, owner.pk)):
            errors.setdefault("tasks", []).append(f"Unknown task {getattr(task, 'pk', task)!r}.")
        elif (reason := task_unavailable_reason(task)) is not None:
            errors.setdefault("tasks", []).append(f"{task.display_name or task.name} cannot run here: {reason}.")
    if not isinstance(backbone, Backbone) or backbone.owner_id not in (None, owner.pk):
        errors["backbone"] = ["Unknown backbone."]
    if errors:
        raise ValidationError(errors)
    config, count = search_config_build(backbone=backbone, budget_kind=budget_kind, budget_value=budget_value,
                                        groups=groups, preset=preset, overrides=overrides,
                                        auto_approve=auto_approve, seed=seed)
    search_plan_check(owner=owner, config=config, backbone=backbone, tasks=len(tasks))
    # Built for the backbone: patterns that give the same design on its layers are one choice, and a
    # component whose choices all coincide is decided here, without a stage.
    space = DesignSpace.initial(num_groups=groups, num_layers=backbone.num_layers)
    # Sampled before the transaction: with SQLite's single write lock, a large first stage must
    # not make workers' heartbeats and metric writes wait while designs are drawn.
    draft = stage_draft(config=config, space=space, order=0, backbone=backbone, tasks=len(tasks))
    with transaction.atomic():
        search = Search.objects.create(
            owner=owner, name=name[:128], backbone=backbone, budget_kind=budget_kind,
            budget_value=budget_value, budget_params=count, groups=groups, preset=preset,
            config=config.to_dict(), auto_approve=bool(auto_approve), seed=seed,
            untrained_decisions=[d.to_dict() for d in decisions_without_training(space)],
        )
        search.tasks.set(tasks)
        stage_open(search=search, space=space, order=0, draft=draft)
    return search


@dataclass(frozen=True)
class StageDraft:
    """A stage drawn but not yet stored: its spec, plan and sampled designs (no database writes)."""

    spec: StageSpec
    plan: StagePlan
    batch: SampleBatch


def stage_draft(*, config: SearchConfig, space: DesignSpace, order: int, backbone: Backbone,
                tasks: int) -> StageDraft | None:
    """Draw the stage that follows ``space`` (None when the final stage comes next).

    Pure computation on the search's settings, so callers run it before their write transaction.
    """
    spec = REFERENCE if order == 0 and config.reference_stage else next_stage(space)
    if spec.name == FINAL.name:
        return None
    shape = BackboneShape.from_dict(backbone.shape)
    try:
        # At least min_successes designs for every open choice (stratified), so no choice is
        # discarded untried; plan.raised_from says when the preset's figure was raised.
        plan = stage_plan(config, space, spec, tasks=tasks)
        batch = sample(space, plan.designs, seed=stage_seed(config.seed, spec.name), shape=shape,
                       budget=config.budget, balance=plan.balance, stratify=plan.stratify,
                       min_per_choice=plan.min_per_choice, provenance={"stage": spec.name},
                       options=config.design_options())  # per-strategy learning rates (the search's or measured)
    except (InfeasibleSpace, SpaceError) as exc:
        raise _space_error(exc) from None
    return StageDraft(spec=spec, plan=plan, batch=batch)


def stage_open(*, search: Search, space: DesignSpace, order: int, draft: StageDraft | None = None) -> Stage:
    """Store the stage that follows ``space`` and queue its trials (inside the caller's transaction).

    ``draft`` is the stage drawn beforehand by :func:`stage_draft`; without it the stage is drawn here.
    """
    if draft is None:
        draft = stage_draft(config=search_config(search), space=space, order=order, backbone=search.backbone,
                            tasks=search.tasks.count())
    if draft is None:
        return final_stage_open(search=search, space=space, order=order)
    spec, plan, batch = draft.spec, draft.plan, draft.batch
    stage = Stage.objects.create(
        search=search, order=order, key=spec.name, component=spec.component or "", space=space.to_dict(),
        plan={"title": spec.title, "requested": batch.requested, "sampled": len(batch.designs),
              "distinct_available": batch.distinct_available, "redraws": batch.redraws,
              "duplicates": batch.duplicates, "infeasible_fields": dict(batch.infeasible_fields),
              "shortfall": batch.shortfall, "seed": batch.seed, "stage_plan": plan.to_dict(),
              "untried": dict(batch.untried), "infeasible_choices": list(batch.infeasible_choices),
              "data_seed": batch.designs[0].data_seed if batch.designs else None,
              "halving": halving_stage_plan(search_config(search), spec.component)},
    )
    stage_trials_add(search=search, stage=stage, trials=[
        Trial(search=search, stage=stage, index=d.index, kind=Trial.Kind.SAMPLE, choices=dict(d.choices),
              design=_with_search(d.design, search.pk), seed=d.seed, trainable_params=d.parameters,
              eval_role=Trial.Role.SELECTION, label=_choices_label(d.choices))
        for d in batch.designs
    ])
    return stage


def _with_search(design: dict[str, Any], search_id: int) -> dict[str, Any]:
    """The design with its search's id in its provenance (drawn before the search row existed)."""
    provenance = design.get("provenance") or {}
    return {**design, "provenance": {"search": search_id, **provenance}}


def _choices_label(choices: dict[str, Any]) -> str:
    assignment = " ".join(f"{k.split('.')[-1]}:{v}" for k, v in choices.items()
                          if k.startswith("assignment.") and v)
    return f"{choices.get('grouping', '')}/{choices.get('allocation', '')}/{choices.get('groups', '')} {assignment}"[:64]


def _outcomes(stage: Stage) -> list[TrialOutcome]:
    # Trials halted by successive halving scored after fewer epochs than the survivors: left out.
    rows = stage.trials.filter(halted=False).values_list("pk", "choices", "score", "status")
    return [TrialOutcome(choices, score if status == Trial.Status.SUCCEEDED else None, pk)
            for pk, choices, score, status in rows]


def stage_check_complete(*, stage_id: int) -> Stage | None:
    """When every trial of a stage is final: summarise it, then wait for approval or move on."""
    stage = Stage.objects.select_for_update().select_related("search", "search__backbone").get(pk=stage_id)
    if stage.status != Stage.Status.RUNNING or stage.trials.exclude(status__in=Trial.FINAL_STATUSES).exists():
        return None
    search = stage.search
    if search.status == Search.Status.CANCELLED:
        return None
    config = search_config(search)
    now = timezone.now()
    if stage.key == "final":
        return final_stage_check(search=search, stage=stage)
    if stage_rung_advance(stage):  # successive halving: the survivors train on to the next rung
        return None
    stage_checkpoints_remove(stage)
    space = DesignSpace.from_dict(stage.space)
    try:
        summary = summarise(_outcomes(stage), component=stage.component or None,
                            open_choices=space.open(stage.component) if stage.component else (),
                            stage=stage.key, seed=config.seed, resamples=config.bootstrap_resamples,
                            min_successes=config.min_successes,
                            aliases=space.aliases(stage.component) if stage.component else None,
                            infeasible=(stage.plan or {}).get("infeasible_choices", ()))
    except SpaceError as exc:
        stage.summary = {"error": str(exc)}
    else:
        stage.summary = summary.to_dict()
        stage.recommendation = summary.recommendation.to_dict() if summary.recommendation else None
    halving = stage_halving_summary(stage)
    if halving is not None:
        stage.summary = {**stage.summary, "halving": halving}
    stage.finished_at = now
    if not stage.component:  # the S0 reference stage decides nothing: go straight on
        stage.status = Stage.Status.COMPLETED
        stage.save(update_fields=["summary", "recommendation", "finished_at", "status"])
        events.stage_changed(stage)
        stage_open(search=search, space=space, order=stage.order + 1)
        return stage
    stage.status = Stage.Status.AWAITING
    stage.save(update_fields=["summary", "recommendation", "finished_at", "status"])
    blocked = stage_blocked_reason(stage, min_successes=config.min_successes)
    Search.objects.filter(pk=search.pk).update(status=Search.Status.BLOCKED if blocked else Search.Status.WAITING,
                                               error=blocked or "")
    search.refresh_from_db()
    events.stage_changed(stage)
    events.search_changed(search)
    # Only a recommendation that every trainable choice backs with min_successes successes is
    # applied automatically; otherwise a person decides, seeing the leader so far.
    if search.auto_approve and (stage.recommendation or {}).get("auto_approvable"):
        stage_approve(stage=stage, user=None)
    return stage


# A blocked search quotes the start of its first failing trial's error; the trial page has all of it.
BLOCKED_ERROR_CHARS = 200


def stage_blocked_reason(stage: Stage, *, min_successes: int) -> str | None:
    """Why a stage whose trials are all final cannot be decided from its results, or None when it can.

    Blocked: some open choice has fewer than ``min_successes`` successful trials (the trials failed:
    the task cannot load here, the design does not train), so nothing can be recommended and no
    person has evidence to approve. The search says so (Search.Status.BLOCKED, the reason in
    Search.error) instead of waiting for an approval; retrying the failed trials reopens the stage
    (services.trials_retry_failed), choosing by hand with a reason still decides it.

    Example: 'stage S1: 12 of 12 trials failed, so no grouping choice has the 2 successful trials it
    needs; the first error: FileNotFoundError: ... '
    """
    recommendation = stage.recommendation or {}
    summary_error = (stage.summary or {}).get("error")
    if not summary_error and recommendation.get("status") != "insufficient":
        return None
    trials = stage.trials.filter(halted=False)
    failed = trials.filter(status=Trial.Status.FAILED)
    first = failed.exclude(error="").order_by("finished_at", "pk").values_list("error", flat=True).first()
    component = stage.component or "design"
    if failed.exists():
        reason = (f"stage {stage.key}: {failed.count()} of {trials.count()} trials failed, so some "
                  f"{component} choice has fewer than the {min_successes} successful trials it needs")
    else:
        reason = f"stage {stage.key}: {summary_error or recommendation.get('reason') or 'too few successful trials'}"
    if first:
        line = " ".join(first.strip().splitlines()[-1:]) or first.strip()
        if len(line) > BLOCKED_ERROR_CHARS:
            line = line[:BLOCKED_ERROR_CHARS - 1].rstrip() + "…"
        reason += f"; the first error: {line}"
    return reason


def stage_approve(*, stage: Stage, user: AbstractBaseUser | None, choice: str | None = None, reason: str = "") -> Stage:
    """Apply a stage's recommendation (choice None) or override it with a reason; open the next stage.

    user None means the search's auto-approve applied the recommendation.
    """
    # The next stage is drawn before the write transaction (refining is deterministic in the
    # stage's space and the choice), so drawing many designs never holds the database's write lock.
    ahead = Stage.objects.select_related("search", "search__backbone").get(pk=stage.pk)
    draft = None
    if ahead.status == Stage.Status.AWAITING:
        next_space, _ = _refinement(ahead, user=user, choice=choice, reason=reason)
        draft = stage_draft(config=search_config(ahead.search), space=next_space, order=ahead.order + 1,
                            backbone=ahead.search.backbone, tasks=ahead.search.tasks.count())
    with transaction.atomic():
        stage = Stage.objects.select_for_update().select_related("search", "search__backbone").get(pk=stage.pk)
        if stage.status != Stage.Status.AWAITING:
            raise ValidationError({"stage": [f"Stage {stage.key} is {stage.get_status_display().lower()}, "
                                             "not waiting for approval."]})
        next_space, decision = _refinement(stage, user=user, choice=choice, reason=reason)
        stage.decision = decision.to_dict()
        stage.decided_by = user
        stage.decided_automatically = user is None
        stage.decided_at = timezone.now()
        stage.override_reason = decision.reason if decision.override else ""
        stage.next_space = next_space.to_dict()
        stage.status = Stage.Status.APPROVED
        stage.save(update_fields=["decision", "decided_by", "decided_automatically", "decided_at",
                                  "override_reason", "next_space", "status"])
        events.stage_changed(stage)
        # Decided by hand despite too few successes: the search is no longer blocked.
        Search.objects.filter(pk=stage.search_id, status=Search.Status.BLOCKED).update(error="")
        stage_open(search=stage.search, space=next_space, order=stage.order + 1, draft=draft)
    return stage


def _refinement(stage: Stage, *, user: AbstractBaseUser | None, choice: str | None,
                reason: str) -> tuple[DesignSpace, Decision]:
    """The space after deciding ``stage`` for ``choice`` (its recommendation when None), and the decision."""
    recommended = (stage.recommendation or {}).get("choice")
    choice = (choice or "").strip() or recommended
    if not choice:
        raise ValidationError({"choice": ["This stage has no recommendation (too few successful trials): "
                                          "choose an option and give a reason, or retry the failed trials."]})
    decided_by = AUTO if user is None else f"user:{user.get_username()}"
    try:
        return refine(DesignSpace.from_dict(stage.space), stage.component, choice, decided_by=decided_by,
                      reason=reason, recommended=recommended)
    except SpaceError as exc:
        raise _space_error(exc) from None


def search_cancel(*, search: Search) -> Search:
    """Stop a search: queued trials never start, running ones stop at their next step."""
    with transaction.atomic():
        search = Search.objects.select_for_update().get(pk=search.pk)
        if search.status in (Search.Status.COMPLETED, Search.Status.CANCELLED, Search.Status.FAILED):
            raise ValidationError({"status": [f"The search is already {search.status}."]})
        now = timezone.now()
        queued = Trial.objects.filter(search=search, status=Trial.Status.QUEUED)
        cancelled = queued.update(status=Trial.Status.CANCELLED, finished_at=now)
        Trial.objects.filter(search=search, status=Trial.Status.RUNNING).update(cancel_requested=True)
        Stage.objects.filter(search=search, status__in=[Stage.Status.RUNNING, Stage.Status.AWAITING]).update(
            status=Stage.Status.CANCELLED, finished_at=now)
        Search.objects.filter(pk=search.pk).update(status=Search.Status.CANCELLED, finished_at=now,
                                                   trials_done=F("trials_done") + cancelled)
        search_checkpoints_remove(search)
        search.refresh_from_db()
        events.search_changed(search)
    return search
