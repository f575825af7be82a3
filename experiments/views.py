"""Browser pages. Thin: a form or query string in, one selector or service call, a template out.

Every object is looked up through a selector scoped to request.user, so another user's search,
stage or trial is a 404. Live data (metric curves) comes from the REST API and the WebSocket;
pages render what the database holds at request time.
"""
from __future__ import annotations

import json
from pathlib import Path

import plotly
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .forms import ApproveForm, BudgetPreviewForm, SearchForm, TaskUploadForm, attach_errors
from .models import Search, Stage, Trial

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
TRIALS_PER_PAGE = 25
# (sort key or "", heading, numeric)
TRIAL_COLUMNS = [("", "Stage", False), ("index", "#", True), ("", "Status", False), ("score", "Score", True),
                 ("trainable_params", "Parameters", True), ("duration_s", "Duration", True),
                 ("", "Design", False), ("", "Choices", False), ("", "", False)]
TRIAL_SORTS = [("index", "Stage and index"), ("-score", "Score, best first"), ("score", "Score, worst first"),
               ("trainable_params", "Parameters, fewest first"), ("-trainable_params", "Parameters, most first"),
               ("-duration_s", "Duration, longest first"), ("-started_at", "Started, latest first")]


@login_not_required
@require_GET
@cache_control(max_age=7 * 24 * 3600, public=True)
def plotly_js(request: HttpRequest) -> FileResponse:
    """plotly.js as the plotly PyPI package ships it (no CDN: PEFS works offline)."""
    return FileResponse(open(PLOTLY_JS, "rb"), content_type="text/javascript")


def _search_or_404(request: HttpRequest, search_id: int) -> Search:
    try:
        return selectors.search_detail(user=request.user, search_id=search_id)
    except Search.DoesNotExist:
        raise Http404("No such search.") from None


# --- searches ------------------------------------------------------------------------------

@require_GET
def search_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    page = Paginator(selectors.search_list(user=request.user, status=status), 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    active = any(search.status in (Search.Status.RUNNING, Search.Status.WAITING) for search in page.object_list)
    return render(request, "experiments/search_list.html",
                  {"page": page, "status": status, "statuses": Search.Status.choices, "query": query.urlencode(),
                   "active": active})


def search_new(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            search = services.search_create(owner=request.user, **form.service_arguments())
        except ValidationError as error:
            attach_errors(form, error)
        else:
            messages.success(request, f"Search “{search.name}” started: its first stage is training.")
            return redirect("search-detail", search_id=search.pk)
    return render(request, "experiments/search_new.html",
                  {"form": form, "upload_form": TaskUploadForm(prefix="upload"),
                   "presets": form.presets}, status=400 if form.errors else 200)


@require_GET
def budget_preview(request: HttpRequest) -> HttpResponse:
    """htmx: the trainable-parameter budget the form's backbone and budget fields give."""
    form = BudgetPreviewForm(request.GET, user=request.user)
    context = {"form": form}
    if form.is_valid():
        try:
            context["preview"] = services.budget_preview(**form.service_arguments())
        except ValidationError as error:
            attach_errors(form, error)
        context["backbone"] = form.cleaned_data.get("backbone")
    return render(request, "experiments/partials/budget_preview.html", context)


@require_POST
def task_preview(request: HttpRequest) -> HttpResponse:
    """htmx: columns and first rows of a file chosen for upload, and the column pickers."""
    uploaded = request.FILES.get("upload-file")
    context = {}
    if uploaded is None:
        context["error"] = "Choose a CSV, TSV or JSONL file first."
    else:
        try:
            preview = services.task_preview(uploaded_file=uploaded, owner_id=request.user.pk)
        except ValidationError as error:
            context["error"] = " ".join(m for ms in error.message_dict.values() for m in ms)
        else:
            context["preview"] = preview
            context["upload_form"] = TaskUploadForm(prefix="upload", columns=preview["columns"],
                                                    initial=_guess_columns(preview["columns"]))
    return render(request, "experiments/partials/task_preview.html", context)


def _guess_columns(columns: list[str]) -> dict:
    label = next((c for c in columns if c.lower() in ("label", "labels", "target", "y", "score")), columns[-1])
    texts = [c for c in columns if c != label and c.lower() not in ("id", "idx", "index")][:2]
    return {"label_column": label, "text_columns": texts}


@require_POST
def task_upload(request: HttpRequest) -> HttpResponse:
    """htmx: register the uploaded file as a task; on success the task list gains it, ticked."""
    columns = request.POST.getlist("upload-columns")
    form = TaskUploadForm(request.POST, request.FILES, prefix="upload", columns=columns)
    task = None
    if form.is_valid():
        data = form.cleaned_data
        try:
            task = services.task_upload(owner=request.user, name=data["name"], uploaded_file=data["file"],
                                        text_columns=data["text_columns"], label_column=data["label_column"],
                                        problem=data["problem"] or None)
        except ValidationError as error:
            attach_errors(form, error)
    search_form = None
    if task is not None:
        ticked = {*request.POST.getlist("tasks"), str(task.pk)}
        search_form = SearchForm(user=request.user, initial={"tasks": sorted(ticked)})
    return render(request, "experiments/partials/task_upload_result.html",
                  {"upload_form": form, "task": task, "form": search_form, "columns": columns})


@require_GET
def search_detail(request: HttpRequest, search_id: int) -> HttpResponse:
    search = _search_or_404(request, search_id)
    # Curves of the running trials or, when none runs, of the latest finished ones.
    running = list(Trial.objects.filter(search=search, status=Trial.Status.RUNNING)
                   .order_by("started_at").values_list("id", flat=True)[:12])
    if not running:
        running = list(Trial.objects.filter(search=search, status=Trial.Status.SUCCEEDED)
                       .order_by("-finished_at", "-id").values_list("id", flat=True)[:6])
    context = {
        **_status_context(search),
        "running_ids": running,
        "live_config": {
            "ws": f"/ws/searches/{search.pk}/",
            "metrics": reverse("api:search-metrics", args=[search.pk]),
            "trials": reverse("api:search-trials", args=[search.pk]),
            "charts": reverse("search-charts", args=[search.pk]),
            "trialUrl": reverse("trial-detail", args=[search.pk, 0]),
        },
        **_trial_table_context(request, search),
    }
    return render(request, "experiments/search_detail.html", context)


def _trial_table_context(request: HttpRequest, search: Search) -> dict:
    filters, error = trial_filters_from_query(request.GET)
    trials = filter_by_choice(selectors.trial_list(search=search, filters=filters), request.GET.get("choice"))
    page = Paginator(trials, TRIALS_PER_PAGE).get_page(request.GET.get("page"))
    if page.object_list:  # the strip needs each shown trial's design: one query for the page
        designs = dict(Trial.objects.filter(pk__in=[t.pk for t in page.object_list]).values_list("pk", "design"))
        for trial in page.object_list:
            trial.page_design = designs.get(trial.pk)
    query = request.GET.copy()
    query.pop("page", None)
    unsorted = query.copy()
    unsorted.pop("sort", None)
    return {"search": search, "page": page, "filters": filters, "filter_error": error,
            "filter_options": trial_filter_options(search), "query": query.urlencode(),
            "query_without_sort": unsorted.urlencode(), "sort": filters.ordering,
            "choice": request.GET.get("choice", ""), "status_values": Trial.Status.values,
            "columns": TRIAL_COLUMNS, "sort_options": TRIAL_SORTS}


@require_GET
def search_trials(request: HttpRequest, search_id: int) -> HttpResponse:
    """htmx: the trial table (filter, sort, page) of a search."""
    search = _search_or_404(request, search_id)
    return render(request, "experiments/partials/trial_table.html", _trial_table_context(request, search))


@require_GET
def search_timeline(request: HttpRequest, search_id: int) -> HttpResponse:
    """htmx: the stage timeline and status header, refreshed when a stage or the search changes."""
    search = _search_or_404(request, search_id)
    return render(request, "experiments/partials/search_status.html", _status_context(search))


def _status_context(search: Search) -> dict:
    stages = list(search.stages.all())
    return {"search": search, "timeline": stage_timeline(search, stages),
            "waiting_stage": next((s for s in stages if s.status == Stage.Status.AWAITING), None),
            "final_stage": next((s for s in stages if s.key == "final"), None),
            "elapsed_s": selectors.search_elapsed_s(search)}


@require_GET
@gzip_page  # columnar chart data for 10,000 trials is ~575 KB raw; it holds no secrets (no BREACH risk)
def search_charts(request: HttpRequest, search_id: int) -> JsonResponse:
    """JSON for the parallel-coordinates and Pareto charts: finished trials, column-wise."""
    search = _search_or_404(request, search_id)
    return JsonResponse(chart_data(search))


@require_POST
def search_cancel(request: HttpRequest, search_id: int) -> HttpResponse:
    search = _search_or_404(request, search_id)
    try:
        services.search_cancel(search=search)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "Search cancelled: queued trials will not start, running ones stop.")
    return redirect("search-detail", search_id=search.pk)


# --- trials --------------------------------------------------------------------------------

def _trial_or_404(request: HttpRequest, search_id: int, trial_id: int) -> Trial:
    try:
        trial = selectors.trial_detail(user=request.user, trial_id=trial_id)
    except Trial.DoesNotExist:
        raise Http404("No such trial.") from None
    if trial.search_id != search_id:
        raise Http404("No such trial.")
    return trial


@require_GET
def trial_detail(request: HttpRequest, search_id: int, trial_id: int) -> HttpResponse:
    trial = _trial_or_404(request, search_id, trial_id)
    return render(request, "experiments/trial_detail.html", {
        "trial": trial, "search": trial.search, "heatmap": design_heatmap(trial.design),
        "design_json": json.dumps(trial.design, indent=2),
        "trial_config": {"trial": trial.pk, "status": trial.status,
                         "metrics": reverse("api:search-metrics", args=[search_id]),
                         "detail": reverse("api:trial-detail", args=[trial.pk])}})


@require_POST
def trial_action(request: HttpRequest, search_id: int, trial_id: int, action: str) -> HttpResponse:
    """Retry a failed/cancelled trial or cancel a queued/running one; htmx gets the row back."""
    trial = _trial_or_404(request, search_id, trial_id)
    service = {"retry": services.trial_retry, "cancel": services.trial_cancel}.get(action)
    if service is None:
        raise Http404("Unknown action.")
    error = None
    try:
        trial = service(trial=trial)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("trial-detail", search_id=search_id, trial_id=trial.pk)
    trial = selectors.trial_list(search=trial.search).get(pk=trial.pk)
    trial.page_design = Trial.objects.values_list("design", flat=True).get(pk=trial.pk)
    return render(request, "experiments/partials/trial_row.html",
                  {"trial": trial, "search": trial.search, "row_error": error})


# --- stages --------------------------------------------------------------------------------

def stage_detail(request: HttpRequest, search_id: int, stage_id: int) -> HttpResponse:
    """The stage wizard: per-choice statistics and EDFs, approve or override, the space diff."""
    search = _search_or_404(request, search_id)
    stage = get_object_or_404(search.stages.select_related("decided_by"), pk=stage_id)
    if stage.key == "final":  # the final stage decides nothing: its page is the report
        return redirect("search-report", search_id=search.pk)
    summary = stage.summary or {}
    options = [c["choice"] for c in summary.get("choices", []) if c.get("choice") is not None]
    recommended = (stage.recommendation or {}).get("choice")
    form = ApproveForm(request.POST or None, options=options, recommended=recommended)
    if request.method == "POST":
        if stage.status != Stage.Status.AWAITING:
            messages.error(request, f"Stage {stage.key} is not waiting for approval.")
            return redirect("stage-detail", search_id=search.pk, stage_id=stage.pk)
        if form.is_valid():
            try:
                services.stage_approve(stage=stage, user=request.user, **form.service_arguments())
            except ValidationError as error:
                attach_errors(form, error)
            else:
                chosen = form.cleaned_data["choice"]
                verb = "approved" if chosen == recommended else "overridden"
                messages.success(request, f"Stage {stage.key} {verb}: {stage.component} = {chosen}. "
                                          "The next stage is starting.")
                return redirect("search-detail", search_id=search.pk)
    context = {
        "search": search, "stage": stage, "summary": summary, "form": form,
        "recommendation": stage.recommendation or {}, "recommended": recommended,
        # S0 decides nothing: its EDF is the one of all its designs, the reference later stages beat.
        "edf_series": summary.get("choices") or (
            [{**summary["overall"], "choice": "all designs"}] if summary.get("overall") else []),
        "diff": space_diff(stage, options),
        "counts": selectors.stage_trial_counts(stage=stage),
        "timeline": stage_timeline(search, list(search.stages.all())),
        "stage_config": {"status": stage.status, "detail": reverse("api:stage-detail", args=[stage.pk])},
    }
    return render(request, "experiments/stage_detail.html", context, status=400 if form.errors else 200)


# --- final report --------------------------------------------------------------------------

@require_GET
def search_report(request: HttpRequest, search_id: int) -> HttpResponse:
    search = _search_or_404(request, search_id)
    report = final_report(search)
    columns = [*report["tasks"], "average"]
    bars = {"tasks": columns, "groups": [{"name": row["name"], "arm": row["arm"], "values": row["cells"]}
                                         for row in report["rows"]]}
    return render(request, "experiments/search_report.html",
                  {"search": search, "report": report, "columns": columns, "bars": bars,
                   "downloads": report_downloads(search, report)})


# --- page data: shaping rows for templates and charts ------------------------------------------

TIMELINE_STATE = {Stage.Status.RUNNING: "running", Stage.Status.AWAITING: "awaiting",
                  Stage.Status.APPROVED: "done", Stage.Status.COMPLETED: "done",
                  Stage.Status.CANCELLED: "cancelled"}


def stage_timeline(search: Search, stages: list[Stage]) -> list[dict]:
    """Every stage the search plans (S0 when configured, S1, S2, S3, S4.G1..S4.G<groups>, final)
    with its state and page; stages the search skipped (an untuned group's assignment) say so."""
    from experiments.space.stages import stage_order

    reference = (search.config or {}).get("reference_stage", True)
    planned = [(spec.name, spec.component or ("reference" if spec.name == "S0" else "baselines"))
               for spec in stage_order(search.groups, reference=bool(reference))]
    by_key = {stage.key: stage for stage in stages}
    known = {key for key, _ in planned}
    planned += [(stage.key, stage.component) for stage in stages if stage.key not in known]
    last_order = max((stage.order for stage in stages), default=-1)
    steps = []
    for key, label in planned:
        stage = by_key.get(key)
        if stage is not None:
            state = TIMELINE_STATE.get(stage.status, "pending")
        else:  # a planned stage the search has moved past was not needed
            later = [s for s in stages if s.order == last_order and s.key != key]
            state = "skipped" if later and _planned_index(planned, key) < _planned_index(planned, later[0].key) \
                else "pending"
        steps.append({"key": key, "stage": stage, "state": state, "label": label,
                      "current": stage is not None and stage.pk == search.current_stage_id})
    return steps


def _planned_index(planned: list[tuple[str, str]], key: str) -> int:
    return next((i for i, (name, _) in enumerate(planned) if name == key), len(planned))


def trial_filters_from_query(query) -> tuple[selectors.TrialFilters, str]:
    """TrialFilters from ?status=&stage=&sort=; the choice filter is applied by filter_by_choice."""
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
    return selectors.TrialFilters(status=[status] if status else [], stage=int(stage) if stage else None,
                                  ordering=sort), error


def filter_by_choice(trials, raw: str):
    """?choice=<component>=<value>, e.g. assignment.G1=A+L (component names may contain dots)."""
    component, _, value = (raw or "").partition("=")
    if not component or not value:
        return trials
    return trials.filter(**{f"choices__{component}": value})


def trial_filter_options(search: Search) -> list[tuple[str, list[str]]]:
    """(component, open choices in S0) for the table's choice filter."""
    from experiments.space.space import all_choices, component_names

    return [(name, list(all_choices(name, search.groups))) for name in component_names(search.groups)]


def chart_data(search: Search) -> dict:
    """Finished trials column-wise: ids, stage and kind codes, scores, parameters, choice codes.

    Compact on purpose (10,000 trials stay a few hundred kilobytes): stages, kinds and each
    component's choices are indices into their label lists, -1 where a component does not apply;
    labels are sent only for the final stage's arms (sampled designs are described by choices).
    """
    from experiments.space.space import all_choices, component_names

    components = list(component_names(search.groups))
    labels = {name: list(all_choices(name, search.groups)) for name in components}
    index = {name: {label: i for i, label in enumerate(values)} for name, values in labels.items()}
    stages = list(search.stages.order_by("order").values_list("key", flat=True))
    kinds = list(Trial.Kind.values)
    rows = (Trial.objects.filter(search=search, status=Trial.Status.SUCCEEDED, score__isnull=False)
            .order_by("stage__order", "index")
            .values_list("id", "stage__key", "kind", "score", "trainable_params", "choices"))
    data = {"components": components, "labels": labels, "stages": stages, "kinds": kinds, "id": [], "stage": [],
            "kind": [], "arm": [], "score": [], "params": [], "codes": {name: [] for name in components}}
    for trial_id, stage_key, kind, score_value, params, choices in rows:
        choices = choices or {}
        data["id"].append(trial_id)
        data["stage"].append(stages.index(stage_key))
        data["kind"].append(kinds.index(kind))
        data["arm"].append(choices.get("arm", "") if kind != Trial.Kind.SAMPLE else "")
        data["score"].append(round(score_value, 3))
        data["params"].append(params)
        for name in components:
            data["codes"][name].append(index[name].get(choices.get(name), -1))
    return data


def space_diff(stage: Stage, options: list[str]) -> list[dict]:
    """Per component: open choices before the stage and after its decision (or, while it waits,
    after each possible choice: the page shows the one the radio button selects)."""
    before = (stage.space or {}).get("choices", {})
    after = (stage.next_space or {}).get("choices") if stage.next_space else None
    rows = []
    for component, values in before.items():
        decided = component == stage.component
        kept = after.get(component, values) if after is not None else (values if not decided else None)
        rows.append({"component": component, "before": values, "after": kept, "decided": decided,
                     "changed": kept is not None and list(kept) != list(values)})
    return rows


ARM_NAMES = {"selected": "Selected design", "adapter": "Adapter only", "prefix": "Prefix only",
             "bitfit": "BitFit only", "lora": "LoRA only", "full": "Full fine-tuning"}


def final_report(search: Search) -> dict:
    """The final stage: each arm (selected design, single-strategy baselines, full fine-tuning) per
    task, mean and std over seeds (experiments.space.final.results_table); the selected design's
    layer x strategy sizes; every stage's decision; the downloadable artifacts."""
    from experiments.space.final import FinalResult, results_table

    final = search.stages.filter(key="final").first()
    results, parameters, pending = [], {}, 0
    if final is not None:
        rows = final.trials.values_list("choices", "status", "score", "trainable_params")
        for choices, status, score_value, params in rows:
            arm = choices.get("arm")
            if arm is None:
                continue
            parameters.setdefault(arm, params)
            if status not in Trial.FINAL_STATUSES:
                pending += 1
                continue
            results.append(FinalResult(arm=arm, task=choices.get("task", ""), seed=choices.get("seed", 0),
                                       score=score_value if status == Trial.Status.SUCCEEDED else None))
    table = results_table(results, parameters=parameters) if results else {"tasks": [], "rows": [], "best": None}
    for row in table["rows"]:
        row["name"] = ARM_NAMES.get(row["arm"], row["arm"])
        row["failed"] = sum(cell["failed"] for cell in row["per_task"].values())
        row["cells"] = {**row["per_task"], "average": {**row["average"], "n": row["average"]["seeds"]}}
    table["rows"].sort(key=lambda row: row["arm"] != "selected")
    selected_row = next((r for r in table["rows"] if r["arm"] == "selected"), None)
    baselines = [r["average"]["mean"] for r in table["rows"]
                 if r["arm"] not in ("selected", "full") and r["average"]["mean"] is not None]
    full = next((r["average"]["mean"] for r in table["rows"] if r["arm"] == "full"), None)
    selected = selectors.search_selected_trial(search)
    return {
        "final_stage": final, "tasks": table["tasks"], "rows": table["rows"], "best": table["best"],
        "pending": pending, "selected_average": selected_row["average"]["mean"] if selected_row else None,
        "best_baseline": max(baselines, default=None), "full": full,
        "selected": selected, "heatmap": design_heatmap(selected.design if selected else None),
        "decisions": [s for s in search.stages.all() if s.decision],
        "artifacts": list(selectors.artifact_list(search=search)),
    }


def report_downloads(search: Search, report: dict) -> list[dict]:
    """Every download of the final report: a link when the file exists, else why it does not."""
    from experiments.api.downloads import FILENAMES, PEFT_STRATEGIES, artifact_download_path, design_strategies

    from .models import Artifact

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
        extra = sorted(design_strategies(selected.design) - PEFT_STRATEGIES)
        rows.append({"label": Artifact.Kind.PEFT_EXPORT.label, "name": "peft", "url": "", "size": None,
                     "why": f"not expressible: PEFT exports LoRA-only designs, this one also uses {', '.join(extra)}"
                     if extra else "written when the search completes"})
    rows.append({"label": "Usage snippet (Python)", "name": "usage.py",
                 "url": reverse("api:download", args=[search.pk, "usage.py"]) if selected else "", "size": None,
                 "why": "" if selected else "available once the final design exists"})
    return rows


def design_heatmap(design: dict | None) -> dict:
    """Rows per strategy, a cell per layer: the size (bitfit: on/off) and a 0..1 shade."""
    from tasks.peft.budget import STRATEGIES

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
