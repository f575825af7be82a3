"""Browser pages. Thin: a form or query string in, one service call or page builder
(experiments.pages, which reads through the selectors), a template out.

Every object is looked up through a selector scoped to request.user, so another user's search,
stage or trial is a 404. Live data (metric curves) comes from the REST API and the WebSocket;
pages render what the database holds at request time.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET, require_POST

from . import pages, selectors, services, worker_states
from .forms import ApproveForm, BudgetPreviewForm, SearchForm, TaskUploadForm, attach_errors
from .models import Search, Stage, Trial

def _search_or_404(request: HttpRequest, search_id: int) -> Search:
    try:
        return selectors.search_detail(user=request.user, search_id=search_id)
    except Search.DoesNotExist:
        raise Http404("No such search.") from None


# --- searches ------------------------------------------------------------------------------

@require_GET
def search_list(request: HttpRequest) -> HttpResponse:
    return render(request, "experiments/search_list.html", pages.search_list_page(request.user, request.GET))


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
            context["preview"] = selectors.budget_preview(**form.service_arguments())
        except ValidationError as error:
            attach_errors(form, error)
        context["backbone"] = form.cleaned_data.get("backbone")
    return render(request, "experiments/partials/budget_preview.html", context)


@require_GET
def search_plan_preview(request: HttpRequest) -> HttpResponse:
    """htmx: the trials and task-epochs the new-search form's settings would train, and the limits."""
    form = SearchForm(request.GET, user=request.user)
    context = {"form": form}
    if not request.GET.getlist("tasks"):  # a fresh form: nothing is wrong yet, there is just no plan
        return render(request, "experiments/partials/search_plan.html", {"form": None})
    if not form.is_valid() and form.plan_errors():
        return render(request, "experiments/partials/search_plan.html", context)
    try:
        context["plan"] = pages.plan_preview(services.search_plan_preview(
            owner=request.user, tasks=list(form.cleaned_data["tasks"]), **form.config_arguments()))
    except ValidationError as error:
        attach_errors(form, error)
    return render(request, "experiments/partials/search_plan.html", context)


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
                                                    initial=pages.upload_columns_guess(preview["columns"]))
    return render(request, "experiments/partials/task_preview.html", context)


@require_POST
def task_upload(request: HttpRequest) -> HttpResponse:
    """htmx: register the uploaded file as a task; on success the task list gains it, ticked."""
    columns = request.POST.getlist("upload-columns")
    form = TaskUploadForm(request.POST, request.FILES, prefix="upload", columns=columns)
    task = None
    if form.is_valid():
        try:
            task = services.task_upload(owner=request.user, **form.service_arguments())
        except ValidationError as error:
            attach_errors(form, error)
    search_form = None
    if task is not None:
        ticked = {*request.POST.getlist("tasks"), str(task.pk)}
        search_form = SearchForm(user=request.user, initial={"tasks": sorted(ticked)})
    return render(request, "experiments/partials/task_upload_result.html",
                  {"upload_form": form, "task": task, "form": search_form, "columns": columns})


@require_GET
def worker_list(request: HttpRequest) -> HttpResponse:
    """Every trial worker: device, concurrency, state (another user's trial is not named)."""
    return render(request, "experiments/workers.html",
                  {"workers": worker_states.worker_list(user=request.user),
                   "stale_seconds": settings.PEFS_STALE_SECONDS})


@require_GET
def search_detail(request: HttpRequest, search_id: int) -> HttpResponse:
    search = _search_or_404(request, search_id)
    return render(request, "experiments/search_detail.html", pages.search_page(search, request.GET))


@require_GET
def search_trials(request: HttpRequest, search_id: int) -> HttpResponse:
    """htmx: the trial table (filter, sort, page) of a search."""
    search = _search_or_404(request, search_id)
    return render(request, "experiments/partials/trial_table.html", pages.trial_table(search, request.GET))


@require_GET
def search_timeline(request: HttpRequest, search_id: int) -> HttpResponse:
    """htmx: the stage timeline and status header, refreshed when a stage or the search changes."""
    search = _search_or_404(request, search_id)
    return render(request, "experiments/partials/search_status.html", pages.search_status(search))


@require_GET
@gzip_page  # columnar chart data for 10,000 trials is ~575 KB raw; it holds no secrets (no BREACH risk)
def search_charts(request: HttpRequest, search_id: int) -> JsonResponse:
    """JSON for the parallel-coordinates and Pareto charts: finished trials, column-wise."""
    search = _search_or_404(request, search_id)
    return JsonResponse(pages.chart_data(search))


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
    return render(request, "experiments/trial_detail.html", pages.trial_page(trial))


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
    return render(request, "experiments/partials/trial_row.html",
                  {"trial": trial, "search": trial.search, "row_error": error,
                   "trials_base": pages.trials_base(trial.search)})


# --- stages --------------------------------------------------------------------------------

def stage_detail(request: HttpRequest, search_id: int, stage_id: int) -> HttpResponse:
    """The stage wizard: per-choice statistics and EDFs, approve or override, the space diff."""
    search = _search_or_404(request, search_id)
    stage = next((s for s in search.stages.all() if s.pk == stage_id), None)
    if stage is None:
        raise Http404("No such stage.")
    if stage.key == "final":  # the final stage decides nothing: its page is the report
        return redirect("search-report", search_id=search.pk)
    options, recommended = pages.stage_choices(stage)
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
    return render(request, "experiments/stage_detail.html", {**pages.stage_page(search, stage), "form": form},
                  status=400 if form.errors else 200)


# --- final report --------------------------------------------------------------------------

@require_GET
def search_report(request: HttpRequest, search_id: int) -> HttpResponse:
    search = _search_or_404(request, search_id)
    return render(request, "experiments/search_report.html", pages.report_page(search))
