"""Page builders: what each browser page shows, shaped for its template and charts.

Views validate input and call one builder (or one service); builders read through selectors only
and return plain dicts and lists for the templates. Nothing here writes.

>>> context = search_page(search, request.GET)  # doctest: +SKIP
>>> render(request, "experiments/search_detail.html", context)  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.paginator import Paginator
from django.http import QueryDict
from django.urls import reverse

from experiments.api.downloads import FILENAMES, PEFT_STRATEGIES, artifact_download_path, design_strategies
from experiments.space.final import results_table
from experiments.space.space import all_choices, component_names
from experiments.space.stages import stage_order
from pefs_web.engine_wheel import wheel_name
from tasks.data.roles import ExampleSet
from tasks.peft.budget import STRATEGIES

from . import selectors
from .models import Artifact, Search, Stage, Trial
from .reports import final_separation, search_resolution, stage_resolution
from .services.estimate import search_queue
from .timing import stage_training_share, timing_rows

SEARCHES_PER_PAGE = 25
TRIALS_PER_PAGE = 25
# (sort key or "", heading, numeric)
TRIAL_COLUMNS = [("", "Stage", False), ("index", "#", True), ("", "Status", False), ("score", "Score", True),
                 ("trainable_params", "Parameters (stored · trains)", True), ("duration_s", "Duration", True),
                 ("", "Design", False), ("", "Choices", False), ("", "", False)]
TRIAL_SORTS = [("index", "Stage and index"), ("-score", "Score, best first"), ("score", "Score, worst first"),
               ("trainable_params", "Parameters, fewest first"), ("-trainable_params", "Parameters, most first"),
               ("-duration_s", "Duration, longest first"), ("-started_at", "Started, latest first")]
TIMELINE_STATE = {Stage.Status.RUNNING: "running", Stage.Status.AWAITING: "awaiting",
                  Stage.Status.APPROVED: "done", Stage.Status.COMPLETED: "done",
                  Stage.Status.CANCELLED: "cancelled"}
EXAMPLE_SET_FIELDS = tuple(f.name for f in dataclasses.fields(ExampleSet))
# What each evaluation role means, where a score says which set it was scored on (tasks.data.roles).
ROLE_MEANINGS = {Trial.Role.SELECTION: "held out of training; the stages choose by it",
                 Trial.Role.REPORT: "only the final comparison is scored on it; disjoint from the selection set"}
# Means closer than this are the same score (they are means of 0-100 scores, stored as floats).
TIE_TOLERANCE = 1e-6
ARM_NAMES = {"selected": "Selected design", "adapter": "Adapter only", "prefix": "Prefix only",
             "bitfit": "BitFit only", "lora": "LoRA only", "full": "Full fine-tuning"}


def live_config(search: Search, **extra: Any) -> dict[str, Any]:
    """What a page's script needs to follow the search: its WebSocket path (and port, when WebSockets
    have their own server: settings.PEFS_WEBSOCKET_PORT) and the metrics API."""
    return {"ws": f"/ws/searches/{search.pk}/", "wsPort": settings.PEFS_WEBSOCKET_PORT,
            "metrics": reverse("api:search-metrics", args=[search.pk]), **extra}


# --- the search list -----------------------------------------------------------------------------

def search_list_page(user: AbstractBaseUser, query: QueryDict) -> dict[str, Any]:
    """A page of the user's searches, optionally of one status; active ones keep it refreshing."""
    status = query.get("status") or None
    page = Paginator(selectors.search_list(user=user, status=status), SEARCHES_PER_PAGE).get_page(query.get("page"))
    kept = query.copy()
    kept.pop("page", None)
    active = any(search.status in (Search.Status.RUNNING, Search.Status.WAITING) for search in page.object_list)
    return {"page": page, "status": status, "statuses": Search.Status.choices, "query": kept.urlencode(),
            "active": active, "progress": search_progress(page.object_list)}


def search_progress(searches: Iterable[Search]) -> dict[int, int]:
    """Per search, the trials its progress bar counts as done: a cancelled search counts only the
    trials that ran to the end, so its bar is never full for trials it never trained."""
    searches = list(searches)
    cancelled = [s.pk for s in searches if s.status == Search.Status.CANCELLED]
    trained = selectors.search_trained_counts(search_ids=cancelled) if cancelled else {}
    return {s.pk: trained.get(s.pk, 0) if s.status == Search.Status.CANCELLED else s.trials_done for s in searches}


# --- the search page ---------------------------------------------------------------------------

def search_page(search: Search, query: QueryDict) -> dict[str, Any]:
    """The search page: status and timeline, live curves, charts and the trial table."""
    return {
        **search_status(search),
        "running_ids": selectors.search_curve_trial_ids(search=search),
        "live_config": live_config(search, trials=reverse("api:search-trials", args=[search.pk]),
                                   charts=reverse("search-charts", args=[search.pk]),
                                   trialUrl=reverse("trial-detail", args=[search.pk, 0])),
        **trial_table(search, query),
    }


def search_status(search: Search) -> dict[str, Any]:
    """The status header and stage timeline (refreshed on its own by htmx)."""
    stages = list(search.stages.all())
    return {"search": search, "timeline": stage_timeline(search, stages),
            # A blocked search's awaiting stage has nothing to approve: it is offered retry and cancel.
            "waiting_stage": next((s for s in stages if s.status == Stage.Status.AWAITING
                                   and search.status != Search.Status.BLOCKED), None),
            "blocked_stage": next((s for s in stages if s.status == Stage.Status.AWAITING
                                   and search.status == Search.Status.BLOCKED), None),
            "final_stage": next((s for s in stages if s.key == "final"), None),
            "elapsed_s": selectors.search_elapsed_s(search), "trials_done": search_progress([search])[search.pk],
            "training_share": stage_training_share(search.current_stage),
            "queue": (search_queue(search_id=search.pk) if search.status == Search.Status.RUNNING else None)}


def stage_timeline(search: Search, stages: list[Stage]) -> list[dict]:
    """Every stage the search plans (S0 when configured, S1, S2, S3, S4.G1..S4.G<groups>, final)
    with its state and page; stages the search skipped (an untuned group's assignment) say so."""
    reference = (search.config or {}).get("reference_stage", True)
    planned = [(spec.name, spec.component or ("reference" if spec.name == "S0" else "baselines"))
               for spec in stage_order(search.groups, reference=bool(reference))]
    by_key = {stage.key: stage for stage in stages}
    known = {key for key, _ in planned}
    planned += [(stage.key, stage.component) for stage in stages if stage.key not in known]
    position = {key: i for i, (key, _) in reversed(list(enumerate(planned)))}
    last_order = max((stage.order for stage in stages), default=-1)
    latest = next((s for s in stages if s.order == last_order), None)
    steps = []
    for key, label in planned:
        stage = by_key.get(key)
        if stage is not None:
            state = TIMELINE_STATE.get(stage.status, "pending")
        else:  # a planned stage that comes before the latest stage was not needed
            passed = latest is not None and position[key] < position.get(latest.key, len(planned))
            state = "skipped" if passed else "pending"
        steps.append({"key": key, "stage": stage, "state": state, "label": label,
                      "current": stage is not None and stage.pk == search.current_stage_id})
    return steps


# --- the trial table -----------------------------------------------------------------------------

def trial_table(search: Search, query: QueryDict) -> dict[str, Any]:
    """One page of the search's trials, filtered and sorted as the query string asks."""
    filters, error = trial_filters_from_query(query)
    try:
        trials = selectors.trial_list(search=search, filters=filters)
    except selectors.TrialFilterError as exc:  # a malformed ?choice= component name
        filters.choices = {}
        error, trials = f"{exc} Showing every choice.", selectors.trial_list(search=search, filters=filters)
    page = Paginator(trials, TRIALS_PER_PAGE).get_page(query.get("page"))
    kept = query.copy()
    kept.pop("page", None)
    unsorted = kept.copy()
    unsorted.pop("sort", None)
    return {"search": search, "page": page, "filters": filters, "filter_error": error,
            "filter_options": trial_filter_options(search, selected=query.get("choice", "")), "query": kept.urlencode(),
            "query_without_sort": unsorted.urlencode(), "sort": filters.ordering,
            "choice": query.get("choice", ""), "status_values": Trial.Status.values,
            "columns": TRIAL_COLUMNS, "sort_options": TRIAL_SORTS, "trials_base": trials_base(search)}


def trials_base(search: Search) -> str:
    """'/searches/<id>/trials/': a row's links append '<trial id>/' (the trial page) and
    '<trial id>/<action>/' (retry, cancel), which is how experiments/urls.py nests them. One reverse
    per page instead of four per row: reverse() was a fifth of the table's time (issue 14)."""
    return reverse("search-trials", args=[search.pk])


def trial_filters_from_query(query: Mapping[str, str]) -> tuple[selectors.TrialFilters, str]:
    """TrialFilters from ?status=&stage=&sort=&choice=<component>=<value> (e.g.
    choice=assignment.G1=A+L: component names may contain dots), and what was ignored and why."""
    error = ""
    stage = query.get("stage") or None
    if stage is not None and not stage.isdigit():
        error, stage = "Unknown stage; showing every stage.", None
    sort = query.get("sort") or "index"
    if sort.lstrip("-") not in selectors.TRIAL_ORDERINGS:
        error, sort = f"Cannot sort by {sort}; sorted by index.", "index"
    status = query.get("status") or ""
    if status and status not in Trial.Status.values:
        error, status = f"Unknown status {status}; showing every status.", ""
    component, _, value = (query.get("choice") or "").partition("=")
    choices = {component: value} if component and value else {}
    return selectors.TrialFilters(status=[status] if status else [], stage=int(stage) if stage else None,
                                  choices=choices, ordering=sort), error


def trial_filter_options(search: Search, *, selected: str = "") -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """(component, [(key, value, selected)]) for the table's choice filter: every choice open in S0,
    keyed "<component>=<value>" as ?choice= takes it. Built here, not in the template: with four
    groups the select has about a hundred options, and the template's string filters on each were
    a large part of the search page's time (issue 14)."""
    options = []
    for name in component_names(search.groups):
        keyed = [(f"{name}={value}", value, f"{name}={value}" == selected)
                 for value in all_choices(name, search.groups)]
        options.append((name, keyed))
    return options


def plan_preview(plan: dict[str, Any]) -> dict[str, Any]:
    """The new-search form's plan (services.search_plan_preview) with the stages whose design count
    was raised so every open choice gets min_successes designs, and that minimum."""
    raised = [stage for stage in plan.get("stages", []) if stage.get("raised_from")]
    return {**plan, "raised": raised, "min_successes": max((s["min_per_choice"] for s in raised), default=None)}


def upload_columns_guess(columns: list[str]) -> dict[str, Any]:
    """The upload form's first guess at the label and text columns of a previewed file."""
    label = next((c for c in columns if c.lower() in ("label", "labels", "target", "y", "score")), None)
    texts = [c for c in columns if c != label and c.lower() not in ("id", "idx", "index")][:2]
    return {"label_column": label, "text_columns": texts}


# --- charts --------------------------------------------------------------------------------------

def chart_data(search: Search) -> dict[str, Any]:
    """Finished trials column-wise: ids, stage and kind codes, scores, parameters (stored and
    optimised), choice codes.

    Compact on purpose (10,000 trials stay a few hundred kilobytes): stages, kinds and each
    component's choices are indices into their label lists, -1 where a component does not apply;
    labels are sent only for the final stage's arms (sampled designs are described by choices).
    """
    components = list(component_names(search.groups))
    labels = {name: list(all_choices(name, search.groups)) for name in components}
    index = {name: {label: i for i, label in enumerate(values)} for name, values in labels.items()}
    stages = [stage.key for stage in search.stages.all()]
    stage_index = {key: i for i, key in enumerate(stages)}
    kinds = list(Trial.Kind.values)
    data = {"components": components, "labels": labels, "stages": stages, "kinds": kinds, "id": [], "stage": [],
            "kind": [], "arm": [], "score": [], "params": [], "optimised": [],
            "codes": {name: [] for name in components}}
    for trial_id, stage_key, kind, score, params, optimised, choices in selectors.trial_chart_rows(search=search):
        choices = choices or {}
        data["id"].append(trial_id)
        data["stage"].append(stage_index[stage_key])
        data["kind"].append(kinds.index(kind))
        data["arm"].append(choices.get("arm", "") if kind != Trial.Kind.SAMPLE else "")
        data["score"].append(round(score, 3))
        data["params"].append(params)
        data["optimised"].append(optimised)  # what the optimiser updated (head, reparameterisation); None: unknown
        for name in components:
            data["codes"][name].append(index[name].get(choices.get(name), -1))
    return data


# --- the trial page --------------------------------------------------------------------------------

def trial_page(trial: Trial) -> dict[str, Any]:
    """One trial: its design as a heatmap and as JSON, and what its script follows live."""
    search = trial.search
    return {"trial": trial, "search": search, "heatmap": design_heatmap(trial.design),
            "parameters": trial_parameters(trial), "evaluated_on": trial_example_sets(trial),
            "design_json": json.dumps(trial.design, indent=2), "timing": timing_rows(trial.timing),
            "trial_config": live_config(search, trial=trial.pk, status=trial.status, attempt=trial.attempt,
                                        detail=reverse("api:trial-detail", args=[trial.pk]))}


def trial_parameters(trial: Trial) -> dict[str, int | None]:
    """A trial's stored PEFT parameters (the budget's count) and what its optimiser updated, with
    the two parts the second adds: the task head and the prefix reparameterisation (trained, not
    stored). The parts come from the per-task result the worker stored (the task with the largest
    head, as the trial's own counts); None where the trial has not trained."""
    parts = [result["trainable_parameters"] for result in (trial.scores or {}).values()
             if isinstance(result, dict) and isinstance(result.get("trainable_parameters"), dict)]
    largest = max(parts, key=lambda part: part.get("optimised_total") or 0, default={})
    optimised = trial.optimised_params if trial.optimised_params is not None else largest.get("optimised_total")
    return {"stored": trial.trainable_params, "optimised": optimised,
            "head": largest.get("head", trial.head_params or None),
            "reparameterisation": largest.get("reparameterisation")}


def example_set_text(result: Mapping[str, Any], key: str, *, role: str, count_key: str) -> str:
    """One task's examples of ``key`` ("eval_set" or "train_set") in words, as tasks.data.roles
    describes them ("selection: 300 of 6,735 examples held out of train (split seed 0), ..."); from
    the bare count where the stored result predates the description."""
    described = result.get(key)
    if isinstance(described, Mapping):
        try:
            return ExampleSet(**{f: described[f] for f in EXAMPLE_SET_FIELDS if f in described}).describe()
        except (TypeError, ValueError):
            pass  # an incomplete description: fall back to the count
    count = result.get(count_key)
    return f"{role}: {count:,} examples" if isinstance(count, int) else f"{role}: not recorded"


def example_set_rows(scores: Mapping[str, Any] | None, role: str) -> list[dict[str, str]]:
    """Per task of a trial's stored results: which examples it was scored on (in ``role``) and
    trained on (tasks.data.roles)."""
    return [{"task": task, "role": role, "role_label": Trial.Role(role).label, "meaning": ROLE_MEANINGS[role],
             "eval": example_set_text(result, "eval_set", role=role, count_key="eval_examples"),
             "train": example_set_text(result, "train_set", role="train", count_key="train_examples")}
            for task, result in (scores or {}).items() if isinstance(result, Mapping)]


def trial_example_sets(trial: Trial) -> list[dict[str, str]]:
    """Which examples each of the trial's scores was scored on and trained on."""
    return example_set_rows(trial.scores, trial.eval_role or Trial.Role.SELECTION)


def design_heatmap(design: dict | None) -> dict[str, Any]:
    """Rows per strategy, a cell per layer: the size (bitfit: on/off) and a 0..1 shade."""
    layers = (design or {}).get("layers") or []
    per_layer = ((design or {}).get("trainable_parameters") or {}).get("per_layer") or []
    peak = {s: max([int(layer.get(s) or 0) for layer in layers] or [0]) or 1 for s in STRATEGIES}
    rows = []
    for strategy in STRATEGIES:
        cells = []
        for layer in layers:
            size = layer.get(strategy)
            shade = 1.0 if size is True else int(size or 0) / peak[strategy]
            cells.append({"size": size, "mix": round(25 + 60 * shade), "dark": shade > 0.55})
        rows.append({"strategy": strategy, "cells": cells})
    return {"layers": list(range(1, len(layers) + 1)), "rows": rows, "per_layer": per_layer}


# --- the stage wizard ----------------------------------------------------------------------------

def stage_choices(stage: Stage) -> tuple[list[str], str | None]:
    """The choices a person may approve at this stage, and the recommended one."""
    options = [c["choice"] for c in (stage.summary or {}).get("choices", []) if c.get("choice") is not None]
    return options, (stage.recommendation or {}).get("choice")


def stage_page(search: Search, stage: Stage) -> dict[str, Any]:
    """The stage wizard: per-choice statistics and EDFs, the evidence behind the recommendation
    (stage_evidence), the space before and after, the timeline."""
    summary = stage.summary or {}
    options, recommended = stage_choices(stage)
    counts = selectors.stage_trial_counts(stage=stage)
    evidence = stage_evidence(search, stage)
    return {
        "search": search, "stage": stage, "summary": summary,
        "recommendation": stage.recommendation or {}, "recommended": recommended,
        **evidence,
        # S0 decides nothing: its EDF is the one of all its designs, the reference later stages beat.
        "edf_series": evidence["choice_rows"] or (
            [{**summary["overall"], "choice": "all designs"}] if summary.get("overall") else []),
        "diff": space_diff(stage, options),
        "counts": counts, "trials_total": sum(counts.values()),
        "top_trials": selectors.stage_best_trials(stage=stage) if summary else [],
        "resolution": stage_resolution(stage),
        "timeline": stage_timeline(search, list(search.stages.all())),
        "stage_config": live_config(search, stage=stage.pk, status=stage.status,
                                    detail=reverse("api:stage-detail", args=[stage.pk])),
    }


def stage_evidence(search: Search, stage: Stage) -> dict[str, Any]:
    """What the wizard says about the evidence: each choice with its aliases, its successes
    against ``min_successes`` and its badge; ties; the stage's planned design count; components
    decided without training.

    Badges, at most one per choice: "recommended" (the stage's recommendation), "tied" (equal best
    means among choices with enough trials: a tie is never shown as a winner), "leading so far"
    (an insufficient stage's leader). A choice with fewer than ``min_successes`` successes is
    ``short`` and never badged.
    """
    summary, recommendation = stage.summary or {}, stage.recommendation or {}
    plan = (stage.plan or {}).get("stage_plan") or {}
    min_successes = int((search.config or {}).get("min_successes") or plan.get("min_per_choice") or 1)
    choices = [c for c in summary.get("choices") or [] if c.get("choice") is not None]
    backed = [c for c in choices if c["n"] >= min_successes and c.get("mean") is not None]
    top = max((c["mean"] for c in backed), default=None)
    tied = [c["choice"] for c in backed if top is not None and abs(c["mean"] - top) < TIE_TOLERANCE]
    tied = tied if len(tied) > 1 else []
    insufficient = recommendation.get("status") == "insufficient" or not recommendation.get("auto_approvable", True)
    leader = recommendation.get("leader") if insufficient else None
    infeasible = set((stage.plan or {}).get("infeasible_choices") or ())  # no design meets the budget
    rows = []
    for c in choices:
        aliases = list(c.get("aliases") or [c["choice"]])
        short = c["n"] < min_successes and c["choice"] not in infeasible
        badge = ("no design meets the budget" if c["choice"] in infeasible
                 else "" if short else "tied" if c["choice"] in tied
                 else "recommended" if c["choice"] == recommendation.get("choice") and not insufficient
                 else "leading so far" if c["choice"] == leader else "")
        rows.append({**c, "aliases": aliases, "label": c.get("label") or " = ".join(aliases),
                     "short": short, "badge": badge})
    space_aliases = ((stage.space or {}).get("aliases") or {}).get(stage.component, {})
    labels = {name: " = ".join(names) for name, names in space_aliases.items()}
    return {
        "choice_rows": rows, "by_choice": {r["choice"]: r for r in rows}, "min_successes": min_successes,
        "tied": tied, "leader": leader,
        "insufficient": insufficient,
        # The charts highlight a recommendation only when it is one (not a tie, not a leader).
        "highlighted": next((r["choice"] for r in rows if r["badge"] == "recommended"), None),
        "merged": [r for r in rows if len(r["aliases"]) > 1] or [
            {"label": label} for label in labels.values()],
        "choice_labels": labels, "stage_plan": plan,
        "untried": (stage.plan or {}).get("untried") or {},
        "untrained": [d for d in search.untrained_decisions or [] if not d.get("trained", False)],
    }


def space_diff(stage: Stage, options: list[str]) -> list[dict]:
    """Per component: open choices before the stage and after its decision (or, while it waits,
    after each possible choice: the page shows the one the radio button selects)."""
    before = (stage.space or {}).get("choices", {})
    after = (stage.next_space or {}).get("choices") if stage.next_space else None
    aliases = (stage.space or {}).get("aliases") or {}
    rows = []
    for component, values in before.items():
        decided = component == stage.component
        kept = after.get(component, values) if after is not None else (values if not decided else None)
        rows.append({"component": component, "before": values, "after": kept, "decided": decided,
                     "changed": kept is not None and list(kept) != list(values),
                     "labels": {name: " = ".join(names) for name, names in aliases.get(component, {}).items()}})
    return rows


# --- the final report ------------------------------------------------------------------------------

def report_page(search: Search) -> dict[str, Any]:
    """The final report with its bar chart data and downloads."""
    report = final_report(search)
    columns = [*report["tasks"], "average"]
    bars = {"tasks": columns, "groups": [{"name": row["name"], "arm": row["arm"], "values": row["cells"]}
                                         for row in report["rows"]]}
    return {"search": search, "report": report, "columns": columns, "bars": bars,
            "downloads": report_downloads(search, report)}


def final_results(final: Stage) -> dict[str, Any]:
    """The final stage's results table: the one search completion stored on the stage or, while
    the stage still trains, the same table (experiments.space.final.results_table) of the runs
    finished so far."""
    if final.status == Stage.Status.COMPLETED and (final.summary or {}).get("rows") is not None:
        return final.summary
    results, parameters = selectors.final_stage_results(stage=final)
    if not results:
        return {"tasks": [], "rows": [], "best": None}
    return results_table(results, parameters={**parameters, **(final.plan or {}).get("parameters", {})},
                         learning_rates=(final.plan or {}).get("learning_rates"),
                         optimised=selectors.final_stage_optimised(stage=final),
                         strategy_learning_rates=(final.plan or {}).get("strategy_learning_rates"))


def final_report(search: Search) -> dict[str, Any]:
    """The final stage: each arm (selected design, single-strategy baselines, full fine-tuning) per
    task, mean and std over seeds; the selected design's layer x strategy sizes; every stage's
    decision; the downloadable artifacts."""
    stages = list(search.stages.all())
    final = next((s for s in stages if s.key == "final"), None)
    table = final_results(final) if final is not None else {"tasks": [], "rows": [], "best": None}
    rows = [{**row, "name": ARM_NAMES.get(row["arm"], row["arm"]),
             "failed": sum(cell["failed"] for cell in row["per_task"].values()),
             "cells": {**row["per_task"], "average": {**row["average"], "n": row["average"]["seeds"]}}}
            for row in table["rows"]]
    rows.sort(key=lambda row: row["arm"] != "selected")
    plan = (final.plan or {}) if final is not None else {}
    for row in rows:
        row.update(arm_learning_rate(row, plan))
    averages = {row["arm"]: row["average"]["mean"] for row in rows}
    baselines = [mean for arm, mean in averages.items() if arm not in ("selected", "full") and mean is not None]
    counts = selectors.stage_trial_counts(stage=final) if final is not None else {}
    selected = selectors.search_selected_trial(search)
    resolution = search_resolution(search)
    return {
        "final_stage": final, "tasks": table["tasks"], "rows": rows, "resolution": resolution,
        **final_separation(rows, resolution=resolution["average"]),
        "pending": counts.get(Trial.Status.QUEUED, 0) + counts.get(Trial.Status.RUNNING, 0),
        "selected_average": averages.get("selected"), "best_baseline": max(baselines, default=None),
        "full": averages.get("full"),
        "selected": selected, "heatmap": design_heatmap(selected.design if selected else None),
        "tuned": bool(plan.get("tuning")), "tuning_phase": plan.get("phase") == "tune",
        "decisions": [s for s in stages if s.decision],
        "evaluated_on": [row for role, scores in selectors.search_role_results(search=search).items()
                         for row in example_set_rows(scores, role)],
        "artifacts": list(selectors.artifact_list(search=search)),
    }


def arm_learning_rate(row: dict[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    """An arm's learning rate for the report table: the rate its report runs used and, when the
    final stage tuned it (experiments.space.final), the grid with each rate's mean selection score
    and why the rate was kept."""
    entry = (plan.get("tuning") or {}).get(row["arm"]) or {}
    chosen = entry.get("chosen", row.get("learning_rate") or (plan.get("learning_rates") or {}).get(row["arm"]))
    scores = entry.get("scores") or {}
    grid = [{"rate": rate, "score": scores.get(repr(float(rate)), scores.get(str(rate))), "chosen": rate == chosen}
            for rate in entry.get("grid") or []]
    return {"learning_rate": chosen, "grid": grid, "rate_reason": entry.get("reason", "")}


def report_downloads(search: Search, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every download of the final report: a link when the file exists, else why it does not."""
    artifacts = report["artifacts"]
    whole = {a.kind: a for a in artifacts if a.kind in FILENAMES}
    rows = []
    for kind in (Artifact.Kind.DESIGN, Artifact.Kind.REPORT_MD, Artifact.Kind.REPORT_JSON):
        artifact = whole.get(kind)
        rows.append({"label": Artifact.Kind(kind).label, "name": FILENAMES[kind],
                     "url": artifact_download_path(artifact) if artifact else "",
                     "size": artifact.size_bytes if artifact else None,
                     "why": "" if artifact else "written when the search completes"})
    for kind in (Artifact.Kind.WEIGHTS, Artifact.Kind.PEFT_EXPORT):
        for artifact in sorted((a for a in artifacts if a.kind == kind), key=lambda a: a.task):
            rows.append({"label": f"{Artifact.Kind(kind).label}: {artifact.task}", "name": f"{kind}-{artifact.task}",
                         "url": artifact_download_path(artifact), "size": artifact.size_bytes, "why": ""})
    selected = report["selected"]
    if selected is not None and not any(a.kind == Artifact.Kind.PEFT_EXPORT for a in artifacts):
        used = sorted(design_strategies(selected.design))
        rows.append({"label": Artifact.Kind.PEFT_EXPORT.label, "name": "peft", "url": "", "size": None,
                     "why": f"not expressible: PEFT exports LoRA-only designs, this one uses {', '.join(used)}"
                     if set(used) - PEFT_STRATEGIES else "written when the search completes"})
    rows.append({"label": "Usage snippet (Python)", "name": "usage.py",
                 "url": reverse("api:download", args=[search.pk, "usage.py"]) if selected else "", "size": None,
                 "why": "" if selected else "available once the final design exists"})
    rows.append({"label": "PEFS engine (Python wheel: pip install it, then run usage.py)", "name": wheel_name(),
                 "url": reverse("api:engine-wheel", args=[wheel_name()]), "size": None, "why": ""})
    return rows
