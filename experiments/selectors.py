"""Reads. Everything the API, the pages and the CLI show comes through a function here.

Every selector that takes ``user`` only ever returns that user's rows (plus the bundled tasks and
backbones, whose owner is empty), so a caller that looks an object up in a selector's queryset
answers 404 for another user's object without a separate permission check:

>>> search = get_object_or_404(search_list(user=request.user), pk=search_id)  # doctest: +SKIP

Lists select only the columns they show: a search of 10,000 trials pages in a few milliseconds
because per-task scores, notes and heartbeats stay in the database until a detail asks.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.utils import timezone

from experiments.space.final import FinalResult

from .models import Artifact, Backbone, MetricPoint, Search, Stage, Task, Trial

# --- users -----------------------------------------------------------------------------------


def user_find(*, username: str) -> AbstractBaseUser | None:
    return get_user_model().objects.filter(username=username).first()


def user_sole_superuser() -> AbstractBaseUser | None:
    """The only superuser, or None when there are none or several."""
    admins = list(get_user_model().objects.filter(is_superuser=True)[:2])
    return admins[0] if len(admins) == 1 else None


# --- tasks and backbones -------------------------------------------------------------------


def task_list(*, user: AbstractBaseUser) -> QuerySet[Task]:
    """Bundled tasks and the user's own uploads."""
    return Task.objects.filter(Q(owner__isnull=True) | Q(owner=user))


def task_by_names(*, user: AbstractBaseUser, names: Iterable[str]) -> tuple[list[Task], list[str]]:
    """Tasks visible to the user by name, in the order asked, and the names that matched nothing.

    The user's own task wins over a bundled one of the same name.
    """
    wanted = [name.strip() for name in names if name.strip()]
    found: dict[str, Task] = {}
    for task in task_list(user=user).filter(name__in=wanted).order_by(F("owner").asc(nulls_first=True)):
        found[task.name] = task  # the owned task comes last and replaces the bundled one
    return [found[n] for n in wanted if n in found], [n for n in wanted if n not in found]


def backbone_list(*, user: AbstractBaseUser) -> QuerySet[Backbone]:
    """The bundled backbone(s) and those the user registered."""
    return Backbone.objects.filter(Q(owner__isnull=True) | Q(owner=user))


def backbone_default() -> Backbone | None:
    """The bundled default backbone, once seeded."""
    return Backbone.objects.filter(owner__isnull=True, is_default=True).first()


def task_bundled_seeded() -> bool:
    """Whether the bundled tasks are in the database (pefs_seed or make run put them there)."""
    return Task.objects.filter(owner__isnull=True).exists()


def backbone_find(*, user: AbstractBaseUser, ref: str) -> Backbone | None:
    """A visible backbone by id, name_or_path or display name (the user's own first)."""
    backbones = backbone_list(user=user).order_by(F("owner").desc(nulls_last=True), "pk")
    if ref.isdigit():
        return backbones.filter(pk=int(ref)).first()
    return backbones.filter(Q(name_or_path=ref) | Q(display_name=ref)).first()


def budget_params(*, backbone: Backbone, budget_kind: str, budget_value: float) -> int:
    """A search budget as a trainable-parameter count; ValidationError naming the field when out of range."""
    if budget_kind == "fraction":
        if not 0 < budget_value <= 1:
            raise ValidationError({"budget_value": ["A fraction of the backbone must be in (0, 1], e.g. 0.005 for 0.5%."]})
        return max(1, round(budget_value * backbone.total_params))
    if budget_kind == "absolute":
        if budget_value < 1 or budget_value != int(budget_value):
            raise ValidationError({"budget_value": ["An absolute budget is a whole number of parameters >= 1."]})
        if budget_value > backbone.total_params:
            raise ValidationError({"budget_value": [
                f"{int(budget_value):,} exceeds the backbone's {backbone.total_params:,} parameters."]})
        return int(budget_value)
    raise ValidationError({"budget_kind": ["Choose 'fraction' or 'absolute'."]})


def budget_preview(*, backbone: Backbone, budget_kind: str, budget_value: float) -> dict[str, Any]:
    """The budget as a count and as a fraction of the backbone, for the form's live preview."""
    count = budget_params(backbone=backbone, budget_kind=budget_kind, budget_value=budget_value)
    return {"budget_params": count, "fraction": count / backbone.total_params,
            "backbone_params": backbone.total_params}


# --- searches and stages -------------------------------------------------------------------

SEARCH_LIST_FIELDS = (
    "id", "name", "status", "preset", "auto_approve", "trials_done", "trials_total", "best_score",
    "budget_kind", "budget_value", "budget_params", "groups", "seed", "created_at", "finished_at",
    "error", "owner", "backbone__id", "backbone__display_name", "current_stage__id", "current_stage__key",
    "current_stage__status",
)


def search_list(*, user: AbstractBaseUser, status: str | None = None) -> QuerySet[Search]:
    """The user's searches, newest first, with the columns a list shows."""
    searches = (Search.objects.filter(owner=user)
                .select_related("backbone", "current_stage")
                .only(*SEARCH_LIST_FIELDS)
                .prefetch_related("tasks"))
    if status:
        searches = searches.filter(status=status)
    return searches


def search_list_all(*, status: str | None = None) -> QuerySet[Search]:
    """Every user's searches, newest first: for administrators' command-line tools only."""
    searches = Search.objects.select_related("owner", "current_stage").order_by("-created_at")
    return searches.filter(status=status) if status else searches


def search_get(*, search_id: int) -> Search | None:
    """A search by id whoever owns it (command-line tools), with its backbone and current stage."""
    return Search.objects.select_related("backbone", "current_stage", "owner").filter(pk=search_id).first()


def search_has_started(*, search: Search) -> bool:
    """Whether any of the search's trials has left the queue (a worker is taking them)."""
    return search.trials.exclude(status=Trial.Status.QUEUED).exists()


def search_detail(*, user: AbstractBaseUser, search_id: int) -> Search:
    """One search with its tasks, backbone, stages and artifacts; Search.DoesNotExist otherwise."""
    return (Search.objects.filter(owner=user)
            .select_related("backbone", "current_stage", "owner")
            .prefetch_related("tasks", "artifacts", "stages__decided_by")
            .get(pk=search_id))


def search_for_user(*, user: AbstractBaseUser, search_id: int) -> Search:
    """The user's search (no prefetching); Search.DoesNotExist for anyone else's."""
    return Search.objects.select_related("backbone", "current_stage").get(pk=search_id, owner=user)


def search_tasks(search: Search) -> list[Task]:
    """The search's tasks by name (the order every trial trains them in)."""
    return list(search.tasks.order_by("name"))


def search_is_owned(*, user: AbstractBaseUser, search_id: int) -> bool:
    """Whether the search exists and belongs to the user (the WebSocket's admission check)."""
    return Search.objects.filter(pk=search_id, owner=user).exists()


def search_elapsed_s(search: Search, *, now: datetime | None = None) -> float:
    """Seconds since the search was created, up to when it finished."""
    end = search.finished_at or now or timezone.now()
    return max(0.0, (end - search.created_at).total_seconds())


def stage_list(*, user: AbstractBaseUser) -> QuerySet[Stage]:
    return Stage.objects.filter(search__owner=user).select_related("search", "decided_by")


def stage_awaiting(*, search: Search) -> Stage | None:
    """The search's first stage waiting for approval, if any."""
    return search.stages.filter(status=Stage.Status.AWAITING).order_by("order").first()


def stage_progress(*, search_id: int) -> QuerySet[Stage]:
    """The search's stages in order, each with total, done (final) and failed trial counts."""
    return (Stage.objects.filter(search_id=search_id).order_by("order")
            .annotate(total=Count("trials"),
                      done=Count("trials", filter=Q(trials__status__in=Trial.FINAL_STATUSES)),
                      failed=Count("trials", filter=Q(trials__status=Trial.Status.FAILED))))


def stage_of_search(*, search: Search, stage_id: int) -> Stage:
    """One stage of the search; Stage.DoesNotExist for another search's."""
    return Stage.objects.get(pk=stage_id, search=search)


def stage_trial_counts(*, stage: Stage) -> dict[str, int]:
    """How many of the stage's trials are in each status (every status present, zero or not)."""
    counts = {status: 0 for status in Trial.Status.values}
    for row in stage.trials.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def stage_best_trials(*, stage: Stage, limit: int = 5) -> list[dict[str, Any]]:
    """The stage's top-scoring finished trials (id, index, choices, score and both parameter counts:
    trainable_params stored, optimised_params updated by the optimiser, head_params the head's)."""
    return list(stage.trials.filter(status=Trial.Status.SUCCEEDED, score__isnull=False)
                .order_by(F("score").desc(), "index")
                .values("id", "index", "kind", "label", "choices", "score", "trainable_params",
                        "optimised_params", "head_params")[:limit])


# --- trials ----------------------------------------------------------------------------------

TRIAL_LIST_FIELDS = (
    "id", "search_id", "stage_id", "stage__key", "index", "kind", "eval_role", "label", "choices", "seed", "status",
    "attempt", "worker", "queued_at", "started_at", "finished_at", "cancel_requested", "score",
    "trainable_params", "optimised_params", "head_params", "duration_s", "error",
    "rung", "halted", "rung_scores", "stage__plan",  # successive halving: the rung column (experiments.rungs)
    "design",  # a few hundred bytes per trial: the table draws its layer x strategy strip from it
)
TRIAL_ORDERINGS = ("index", "score", "trainable_params", "duration_s", "started_at", "finished_at")


class TrialFilterError(ValueError):
    """A trial-list filter that cannot be applied; .field names the query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def choice_value_candidates(raw: str) -> list[Any]:
    """The JSON values a query-string value may stand for: "4" matches 4 and "4", "true" True."""
    candidates: list[Any] = [raw]
    try:
        parsed = json.loads(raw)
    except ValueError:
        return candidates
    if not isinstance(parsed, (dict, list)) and parsed != raw:
        candidates.append(parsed)
    return candidates


@dataclass
class TrialFilters:
    status: list[str] = field(default_factory=list)
    stage: int | None = None
    kind: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    ordering: str = "index"


def trial_list(*, search: Search, filters: TrialFilters | None = None) -> QuerySet[Trial]:
    """A search's trials, filtered and sorted, without their design documents.

    ``ordering`` is a field of TRIAL_ORDERINGS, "-" first for descending; missing values (a running
    trial's score) sort last either way, and ties break by stage and index so pages are stable.
    """
    filters = filters or TrialFilters()
    trials = Trial.objects.filter(search=search).select_related("stage").only(*TRIAL_LIST_FIELDS)
    if filters.status:
        unknown = sorted(set(filters.status) - set(Trial.Status.values))
        if unknown:
            raise TrialFilterError("status", f"Unknown status {', '.join(unknown)}; use {', '.join(Trial.Status.values)}.")
        trials = trials.filter(status__in=filters.status)
    if filters.kind:
        unknown = sorted(set(filters.kind) - set(Trial.Kind.values))
        if unknown:
            raise TrialFilterError("kind", f"Unknown kind {', '.join(unknown)}; use {', '.join(Trial.Kind.values)}.")
        trials = trials.filter(kind__in=filters.kind)
    if filters.stage is not None:
        trials = trials.filter(stage_id=filters.stage)
    for key, raw in filters.choices.items():
        # "__" would reach the ORM as a lookup (choice.grouping__regex=...): names are plain keys.
        if not key or "__" in key or len(key) > 64 or not key.replace("_", "").replace(".", "").isalnum():
            raise TrialFilterError(f"choice.{key}", "Choice names are letters, digits, underscores and dots "
                                                    "(e.g. grouping, assignment.G1).")
        match = Q()
        for value in choice_value_candidates(raw):
            match |= Q(**{f"choices__{key}": value})
        trials = trials.filter(match)
    name = filters.ordering.lstrip("-")
    if name not in TRIAL_ORDERINGS:
        raise TrialFilterError("ordering", f"Sort by one of {', '.join(TRIAL_ORDERINGS)} (prefix - for descending).")
    column = F(name).desc(nulls_last=True) if filters.ordering.startswith("-") else F(name).asc(nulls_last=True)
    tie_break = ("-stage__order", "-index") if filters.ordering == "-index" else ("stage__order", "index")
    if name == "index":
        return trials.order_by(*tie_break, "id")
    return trials.order_by(column, *tie_break, "id")


def trial_next_queued(*, search: Search) -> Trial | None:
    """The queued trial a local runner should train next: earliest stage, lowest index."""
    return (Trial.objects.filter(search=search, status=Trial.Status.QUEUED, cancel_requested=False)
            .order_by("stage__order", "index").first())


def trial_of_search(*, search: Search, trial_id: int) -> Trial:
    """One trial of the search; Trial.DoesNotExist for another search's."""
    return Trial.objects.get(pk=trial_id, search=search)


def trial_detail(*, user: AbstractBaseUser, trial_id: int) -> Trial:
    """One of the user's trials with its design and scores; Trial.DoesNotExist otherwise."""
    return Trial.objects.select_related("stage", "search").get(pk=trial_id, search__owner=user)


def trial_strategy_strip(design: Mapping[str, Any]) -> list[str]:
    """Per layer, the short codes of its strategies in canonical order: ["AL", "", "PBL", ...]."""
    codes = {"adapter": "A", "prefix": "P", "bitfit": "B", "lora": "L"}
    return ["".join(code for name, code in codes.items() if layer.get(name)) for layer in design.get("layers", [])]


# --- metrics ---------------------------------------------------------------------------------

METRICS_DEFAULT_POINTS = 2000
METRICS_MAX_POINTS = 20000
METRICS_SCAN_FACTOR = 5


@dataclass
class MetricSeries:
    trial: int
    attempt: int
    name: str
    steps: list[int]
    values: list[float]


@dataclass
class MetricPage:
    series: list[MetricSeries]
    next: int            # cursor for the next call: the last MetricPoint id this call looked at
    more: bool           # points after `next` already exist: call again to catch up
    scanned: int         # points read after the cursor
    returned: int        # points kept after downsampling
    downsampled: bool


def downsample_indices(length: int, keep: int) -> list[int]:
    """Evenly spaced positions of a series, always including the first and the last.

    >>> downsample_indices(10, 4)
    [0, 3, 6, 9]
    """
    if length <= keep:
        return list(range(length))
    if keep <= 1:
        return [length - 1]
    stride = (length - 1) / (keep - 1)
    return sorted({round(i * stride) for i in range(keep)})


def metric_points(*, search: Search, after: int = 0, trial_id: int | None = None,
                  stage_id: int | None = None, max_points: int = METRICS_DEFAULT_POINTS) -> MetricPage:
    """The search's metric points with id > ``after``, latest attempt of each trial only.

    One call reads at most ``max_points * METRICS_SCAN_FACTOR`` points, so its cost is bounded
    however large the stage, and downsamples each series it read to at most its share of
    ``max_points``, keeping every series' first and last point. ``next`` is the cursor for the
    following call and ``more`` says whether one is needed: a page that reconnects calls with its
    last cursor until ``more`` is false, then follows the live events.

    One trial is read through its index. Several are read as a window of primary keys,
    ``after < id <= after + scan``, filtered on the trials' id range with ``trial_id + 0`` so that
    no planner (SQLite's or PostgreSQL's, with or without statistics) swaps the bounded key range
    for the trial index, which would read every point of a stage and sort them. A window holding
    none of the asked points jumps to the first one after it, so other searches' points cost one
    extra query, not one call per window.
    """
    max_points = max(1, min(int(max_points), METRICS_MAX_POINTS))
    scan_limit = max_points * METRICS_SCAN_FACTOR
    trials = Trial.objects.filter(search=search)
    if trial_id is not None:
        trials = trials.filter(pk=trial_id)
    if stage_id is not None:
        trials = trials.filter(stage_id=stage_id)
    bounds = trials.aggregate(low=Min("id"), high=Max("id"))
    columns = ("id", "trial_id", "attempt", "name", "step", "value")
    if bounds["low"] is None:
        rows, next_cursor, more = [], after, False
    elif bounds["low"] == bounds["high"]:
        points = MetricPoint.objects.filter(trial_id=bounds["low"], id__gt=after).order_by("id")
        rows = list(points.values_list(*columns)[:scan_limit + 1])
        more = len(rows) > scan_limit
        rows = rows[:scan_limit]
        next_cursor = rows[-1][0] if rows else after
    else:
        in_range = (MetricPoint.objects.alias(trial_key=F("trial_id") + 0)
                    .filter(trial_key__gte=bounds["low"], trial_key__lte=bounds["high"]))
        newest = MetricPoint.objects.aggregate(newest=Max("id"))["newest"] or 0

        def window(start: int) -> list[tuple]:
            return list(in_range.filter(id__gt=start, id__lte=start + scan_limit).order_by("id")
                        .values_list(*columns))

        rows = window(after) if after < newest else []
        if not rows and after + scan_limit < newest:
            first = in_range.filter(id__gt=after + scan_limit).order_by("id").values_list("id", flat=True).first()
            after = newest if first is None else first - 1
            rows = window(after) if first is not None else []
        next_cursor = min(after + scan_limit, max(newest, after))
        more = next_cursor < newest
    # The id range may hold other stages' trials: keep the asked ones, at their latest attempt.
    attempts = dict(trials.filter(pk__in={row[1] for row in rows}).values_list("id", "attempt")) if rows else {}

    grouped: dict[tuple[int, int, str], tuple[list[int], list[float]]] = {}
    kept = 0
    for _, trial, attempt, name, step, value in rows:
        if attempts.get(trial) != attempt:
            continue
        steps, values = grouped.setdefault((trial, attempt, name), ([], []))
        steps.append(step)
        values.append(value)
        kept += 1

    downsampled = kept > max_points
    keep_per_series = max(2, max_points // max(1, len(grouped))) if downsampled else 0
    series: list[MetricSeries] = []
    returned = 0
    for (trial, attempt, name), (steps, values) in grouped.items():
        if any(a > b for a, b in zip(steps, steps[1:])):  # written out of step order: sort by step
            steps, values = map(list, zip(*sorted(zip(steps, values))))
        if downsampled and len(steps) > keep_per_series:
            picked = downsample_indices(len(steps), keep_per_series)
            steps, values = [steps[i] for i in picked], [values[i] for i in picked]
        returned += len(steps)
        series.append(MetricSeries(trial=trial, attempt=attempt, name=name, steps=steps, values=values))
    return MetricPage(series=series, next=next_cursor, more=more, scanned=len(rows), returned=returned,
                      downsampled=downsampled)


# --- artifacts ---------------------------------------------------------------------------------


def artifact_list(*, search: Search) -> QuerySet[Artifact]:
    return search.artifacts.all()


def artifact_find(*, search: Search, kind: str, task: str = "") -> Artifact | None:
    """The newest artifact of a kind (and task, for per-task weights) of the search."""
    return search.artifacts.filter(kind=kind, task=task).order_by("-created_at", "-pk").first()




# --- the selected design ------------------------------------------------------------------------
# One rule says which runs of the final stage stand for the search: the selected design's report
# runs (at its chosen learning rate) with the lowest seed, one per task. The worker keeps their
# weights, the search's downloads come from them, and their design document is the search's answer.
# The final stage's learning-rate tuning runs (scored on the selection set) never stand for it.


def selected_seed(stage: Stage) -> int | None:
    """The seed of the final stage's runs that stand for the search; None without selected report runs."""
    return (stage.trials.filter(kind=Trial.Kind.SELECTED, eval_role=Trial.Role.REPORT)
            .aggregate(seed=Min("seed"))["seed"])


def trial_stands_for_search(trial: Trial) -> bool:
    """True for a report run of the selected design with the selected seed (its weights are kept)."""
    return (trial.kind == Trial.Kind.SELECTED and trial.eval_role == Trial.Role.REPORT
            and trial.seed == selected_seed(trial.stage))


def search_selected_trials(search: Search) -> QuerySet[Trial]:
    """The runs that stand for the search, in task order; empty before the final stage."""
    stage = search.stages.filter(key="final").first()
    if stage is None:
        return Trial.objects.none()
    return (Trial.objects.filter(stage=stage, kind=Trial.Kind.SELECTED, eval_role=Trial.Role.REPORT,
                                 seed=selected_seed(stage))
            .select_related("stage").order_by("index"))


def search_selected_trial(search: Search) -> Trial | None:
    """The first run that stands for the search (its design is the search's answer)."""
    return search_selected_trials(search).first()


def search_decisions(search: Search) -> list[dict[str, Any]]:
    """Every decision record in stage order: components fixed without training (all their choices
    give one design on the backbone) first, then each approved stage's."""
    return [*(search.untrained_decisions or []),
            *(s.decision for s in search.stages.order_by("order") if s.decision)]


def selected_design(search: Search) -> dict[str, Any] | None:
    """The search's winning design document, with the decisions that led to it; None before the final stage."""
    trial = search_selected_trial(search)
    if trial is None:
        return None
    design = dict(trial.design)
    design["provenance"] = {**design.get("provenance", {}), "search": search.pk, "search_name": search.name,
                            "decisions": search_decisions(search)}
    return design


# --- browser pages -------------------------------------------------------------------------------


def search_curve_trial_ids(*, search: Search, running: int = 12, finished: int = 6) -> list[int]:
    """The trials whose curves the search page opens with: the running ones or, when none runs,
    the latest finished."""
    ids = list(Trial.objects.filter(search=search, status=Trial.Status.RUNNING)
               .order_by("started_at").values_list("id", flat=True)[:running])
    return ids or list(Trial.objects.filter(search=search, status=Trial.Status.SUCCEEDED)
                       .order_by("-finished_at", "-id").values_list("id", flat=True)[:finished])


def trial_chart_rows(*, search: Search) -> QuerySet:
    """Scored trials as (id, stage key, kind, score, trainable_params, optimised_params, choices), by
    stage and index; trials halted by successive halving (scored after fewer epochs) are left out."""
    return (Trial.objects.filter(search=search, status=Trial.Status.SUCCEEDED, score__isnull=False, halted=False)
            .order_by("stage__order", "index")
            .values_list("id", "stage__key", "kind", "score", "trainable_params", "optimised_params", "choices"))


def stage_example_sets(*, stage: Stage, role: str | None = None) -> dict[str, dict[str, Any]]:
    """Per task, which examples the stage's trials (of ``role``, when given) trained on and were
    scored on: ``{task: {"train": ExampleSet dict, "eval": ExampleSet dict}}`` (split, pool, count,
    seeds, role and a one-line description, tasks.data.roles.ExampleSet).

    Every trial records its own sets in its per-task scores; within a stage and role they are the
    same examples (the sub-sample seed is fixed, not the trial's), so the first succeeded trial
    that recorded them speaks for the stage. Empty before any trial has.
    """
    trials = stage.trials.filter(status=Trial.Status.SUCCEEDED)
    if role is not None:
        trials = trials.filter(eval_role=role)
    sets: dict[str, dict[str, Any]] = {}
    for scores in trials.order_by("index").values_list("scores", flat=True)[:50]:
        for task, entry in (scores or {}).items():
            if task not in sets and isinstance(entry, dict) and entry.get("eval_set"):
                sets[task] = {"train": entry.get("train_set"), "eval": entry["eval_set"]}
        if sets:
            return sets
    return sets


def final_stage_optimised(*, stage: Stage) -> dict[str, int]:
    """Per arm, the most parameters its report runs' optimiser updated (tasks differ by their head's
    output width only); arms without a trained run are left out."""
    most: dict[str, int] = {}
    rows = (stage.trials.filter(eval_role=Trial.Role.REPORT, optimised_params__isnull=False)
            .values_list("choices", "optimised_params"))
    for choices, optimised in rows:
        arm = (choices or {}).get("arm")
        if arm is not None:
            most[arm] = max(most.get(arm, 0), optimised)
    return most


def final_stage_results(*, stage: Stage) -> tuple[list[FinalResult], dict[str, int]]:
    """The final stage's finished report runs as results_table input (a failed run scores None),
    and each arm's trainable parameters. Learning-rate tuning runs (selection set) are left out."""
    results, parameters = [], {}
    rows = (stage.trials.filter(eval_role=Trial.Role.REPORT).order_by("index")
            .values_list("choices", "status", "score", "trainable_params"))
    for choices, status, score, params in rows:
        arm = (choices or {}).get("arm")
        if arm is None:
            continue
        parameters.setdefault(arm, params)
        if status in Trial.FINAL_STATUSES:
            results.append(FinalResult(arm=arm, task=choices.get("task", ""), seed=choices.get("seed", 0),
                                       score=score if status == Trial.Status.SUCCEEDED else None))
    return results, parameters


def search_role_results(*, search: Search) -> dict[str, dict[str, Any]]:
    """Per evaluation role (Trial.Role), each task's result from the search's latest succeeded trial
    of that role that trained it: what the pages read to say which examples each role's scores come
    from (every trial of a role is scored on the same examples: tasks.data.roles). A final-stage run
    trains one task, so several runs are read (at most 200) until every task is found."""
    found: dict[str, dict[str, Any]] = {}
    tasks = search.tasks.count()
    for role in Trial.Role.values:
        merged: dict[str, Any] = {}
        for scores in (search.trials.filter(eval_role=role, status=Trial.Status.SUCCEEDED)
                       .order_by("-finished_at", "-id").values_list("scores", flat=True)[:200]):
            merged.update({task: entry for task, entry in (scores or {}).items() if task not in merged})
            if len(merged) >= tasks:
                break
        if merged:
            found[role] = merged
    return found


def search_trained_counts(*, search_ids: Iterable[int]) -> dict[int, int]:
    """Per search, its trials that ran to the end (succeeded or failed): a cancelled search's
    progress, whose trials_done also counts the trials cancellation closed."""
    rows = (Trial.objects.filter(search_id__in=list(search_ids),
                                 status__in=(Trial.Status.SUCCEEDED, Trial.Status.FAILED))
            .values("search_id").annotate(trained=Count("id")))
    return {row["search_id"]: row["trained"] for row in rows}
