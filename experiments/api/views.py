"""REST API views: validate with a serializer, call one service or selector, serialise the result.

Every object is looked up through a selector scoped to the requesting user, so another user's
search, stage, trial, task or backbone is a 404 on every endpoint. Services raise Django's
ValidationError with a {field: [messages]} dict; PefsView turns it into a 400 with the same fields.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..models import Artifact, Search
from . import serializers as s
from .downloads import FILENAMES, DownloadUnavailable, artifact_resolve, file_response, usage_snippet
from .parsers import BoundedJSONParser
from .query import check_query_params


def field_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {field: list(messages) for field, messages in exc.message_dict.items()}
    return {"non_field_errors": list(exc.messages)}


class PefsViewMixin:
    """API behaviour shared by every view.

    - Token authentication first, so an anonymous request gets 401 with a WWW-Authenticate header
      (a logged-in browser still authenticates with its session).
    - Exempt from LoginRequiredMiddleware: DRF answers 401/403 itself instead of a login redirect.
    - Service ValidationError -> 400 naming the field; DoesNotExist -> 404; a download that cannot
      be served -> its 404/409 with the reason.
    """

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    # The query parameters the endpoint documents; any other is a 400 (see api/query.py).
    query_params_allowed: tuple[str, ...] = ()
    query_param_prefixes: tuple[str, ...] = ()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        check_query_params(request.query_params, allowed=self.query_params_allowed,
                           prefixes=self.query_param_prefixes)

    @classmethod
    def as_view(cls, **initkwargs: Any):
        return login_not_required(super().as_view(**initkwargs))

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, DjangoValidationError):
            exc = ValidationError(detail=field_errors(exc))
        elif isinstance(exc, ObjectDoesNotExist):
            exc = Http404(str(exc))
        elif isinstance(exc, DownloadUnavailable):
            return Response({"detail": exc.detail}, status=exc.status)
        return super().handle_exception(exc)

    def validated(self, serializer_class: type, data: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data, context={"request": self.request})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class PefsView(PefsViewMixin, APIView):
    pass


class TrialPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


# --- tasks -----------------------------------------------------------------------------------

class TaskListView(PefsViewMixin, generics.ListAPIView):
    """Bundled tasks and your uploads; POST (multipart) uploads a CSV/TSV/JSONL file as a task."""

    serializer_class = s.TaskSerializer
    pagination_class = None
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]

    def get_queryset(self):
        return selectors.task_list(user=self.request.user)

    @extend_schema(request={"multipart/form-data": s.TaskUploadSerializer}, responses={201: s.TaskSerializer})
    def post(self, request: Request) -> Response:
        data = self.validated(s.TaskUploadSerializer, request.data)
        task = services.task_upload(owner=request.user, name=data["name"], uploaded_file=data["file"],
                                    text_columns=data["text_columns"], label_column=data["label_column"],
                                    problem=data.get("problem") or None, selection_file=data.get("selection_file"),
                                    report_file=data.get("report_file"))
        return Response(s.TaskSerializer(task).data, status=status.HTTP_201_CREATED)


class TaskDetailView(PefsView):
    @extend_schema(responses=s.TaskSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.TaskSerializer(selectors.task_list(user=request.user).get(pk=pk)).data)


class TaskPreviewView(PefsView):
    """Columns and first rows of a file, for the upload form; nothing is stored."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": s.TaskPreviewInputSerializer}, responses=s.TaskPreviewSerializer)
    def post(self, request: Request) -> Response:
        data = self.validated(s.TaskPreviewInputSerializer, request.data)
        preview = services.task_preview(uploaded_file=data["file"], owner_id=request.user.pk,
                                        max_rows=data["max_rows"])
        return Response(s.TaskPreviewSerializer(preview).data)


# --- backbones ---------------------------------------------------------------------------------

class BackboneListView(PefsViewMixin, generics.ListAPIView):
    """Backbones you can search on; POST registers a Hugging Face id or local folder (introspected)."""

    serializer_class = s.BackboneSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.backbone_list(user=self.request.user)

    @extend_schema(request=s.BackboneRegisterSerializer, responses={201: s.BackboneDetailSerializer})
    def post(self, request: Request) -> Response:
        data = self.validated(s.BackboneRegisterSerializer, request.data)
        backbone = services.backbone_register(owner=request.user, name_or_path=data["name_or_path"],
                                              display_name=data["display_name"])
        return Response(s.BackboneDetailSerializer(backbone).data, status=status.HTTP_201_CREATED)


class BackboneDetailView(PefsView):
    @extend_schema(responses=s.BackboneDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.BackboneDetailSerializer(selectors.backbone_list(user=request.user).get(pk=pk)).data)


class BackboneBudgetView(PefsView):
    """The budget as a trainable-parameter count, for the form's live preview."""

    query_params_allowed = ("budget_kind", "budget_value")

    @extend_schema(parameters=[s.BudgetQuerySerializer], responses=s.BudgetPreviewSerializer)
    def get(self, request: Request, pk: int) -> Response:
        backbone = selectors.backbone_list(user=request.user).get(pk=pk)
        data = self.validated(s.BudgetQuerySerializer, request.query_params)
        return Response(selectors.budget_preview(backbone=backbone, **data))


# --- searches ----------------------------------------------------------------------------------

class SearchListView(PefsViewMixin, generics.ListAPIView):
    """Your searches, newest first (?status= filters); POST starts a new search."""

    serializer_class = s.SearchSerializer
    query_params_allowed = ("status", "page")

    def get_queryset(self):
        status_filter = self.request.query_params.get("status")
        if status_filter is not None and status_filter not in Search.Status.values:
            raise ValidationError({"status": [f"Unknown status; use one of {', '.join(Search.Status.values)}."]})
        return selectors.search_list(user=self.request.user, status=status_filter)

    @extend_schema(request=s.SearchCreateSerializer,
                   responses={201: s.SearchDetailSerializer, 200: s.SearchPlanSerializer})
    def post(self, request: Request) -> Response:
        data = self.validated(s.SearchCreateSerializer, request.data)
        if data.pop("dry_run"):
            data.pop("name")
            tasks = data.pop("tasks")
            plan = services.search_plan_preview(owner=request.user, tasks=tasks, **data)
            return Response(s.SearchPlanSerializer(plan).data)
        search = services.search_create(owner=request.user, **data)
        detail = selectors.search_detail(user=request.user, search_id=search.pk)
        return Response(s.SearchDetailSerializer(detail).data, status=status.HTTP_201_CREATED)


class SearchDetailView(PefsView):
    @extend_schema(responses=s.SearchDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.SearchDetailSerializer(selectors.search_detail(user=request.user, search_id=pk)).data)


class SearchCancelView(PefsView):
    """Stop the search: queued trials are cancelled, running ones stop at their next step."""

    @extend_schema(request=None, responses=s.SearchDetailSerializer)
    def post(self, request: Request, pk: int) -> Response:
        search = selectors.search_for_user(user=request.user, search_id=pk)
        services.search_cancel(search=search)
        return Response(s.SearchDetailSerializer(selectors.search_detail(user=request.user, search_id=pk)).data)


class SearchRetryFailedView(PefsView):
    """Run the failed trials of the current stage again."""

    @extend_schema(request=None, responses=s.SearchRetrySerializer)
    def post(self, request: Request, pk: int) -> Response:
        search = selectors.search_for_user(user=request.user, search_id=pk)
        retried = services.trials_retry_failed(search=search)
        return Response({"retried": retried})


CHOICE_PREFIX = "choice."


class SearchTrialListView(PefsViewMixin, generics.ListAPIView):
    """A search's trials, paginated server-side; filter with status, stage, kind and choice.<name>."""

    query_params_allowed = ("status", "stage", "kind", "ordering", "page", "page_size")
    query_param_prefixes = ("choice.",)
    serializer_class = s.TrialSerializer
    pagination_class = TrialPagination

    @extend_schema(parameters=[
        s.TrialQuerySerializer,
        OpenApiParameter("choice.grouping", str, description="Any choice.<name>=<value>, e.g. choice.grouping=spindle."),
    ])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        search = selectors.search_for_user(user=self.request.user, search_id=self.kwargs["pk"])
        query = self.validated(s.TrialQuerySerializer, self.request.query_params)
        choices = {key[len(CHOICE_PREFIX):]: value for key, value in self.request.query_params.items()
                   if key.startswith(CHOICE_PREFIX)}
        filters = selectors.TrialFilters(status=query.get("status", []), stage=query.get("stage"),
                                         kind=query.get("kind", []), choices=choices, ordering=query["ordering"])
        try:
            return selectors.trial_list(search=search, filters=filters)
        except selectors.TrialFilterError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None


class SearchMetricsView(PefsView):
    """Metric points after a cursor (latest attempt of each trial), downsampled per series.

    Call with ?after=<next of the previous answer> until `more` is false; live events carry the rest.
    """

    query_params_allowed = ("after", "trial", "stage", "max_points")

    @extend_schema(parameters=[s.MetricQuerySerializer], responses=s.MetricPageSerializer)
    def get(self, request: Request, pk: int) -> Response:
        search = selectors.search_for_user(user=request.user, search_id=pk)
        query = self.validated(s.MetricQuerySerializer, request.query_params)
        if "trial" in query:
            selectors.trial_of_search(search=search, trial_id=query["trial"])  # 404 for another search's
        if "stage" in query:
            selectors.stage_of_search(search=search, stage_id=query["stage"])
        page = selectors.metric_points(search=search, after=query["after"], trial_id=query.get("trial"),
                                       stage_id=query.get("stage"), max_points=query["max_points"])
        return Response(asdict(page))


class SearchArtifactListView(PefsViewMixin, generics.ListAPIView):
    """The search's result files with their download URLs."""

    serializer_class = s.ArtifactSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.artifact_list(search=selectors.search_for_user(user=self.request.user,
                                                                        search_id=self.kwargs["pk"]))


KIND_BY_FILENAME = {filename: kind for kind, filename in FILENAMES.items()}
USAGE_FILENAME = "usage.py"


class SearchDownloadView(PefsView):
    """design.json, report.md, report.json or usage.py of a search (owner only)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The file."),
                              404: s.DownloadErrorSerializer, 409: s.DownloadErrorSerializer})
    def get(self, request: Request, pk: int, filename: str) -> HttpResponse:
        search = selectors.search_for_user(user=request.user, search_id=pk)
        if filename == USAGE_FILENAME:
            response = HttpResponse(usage_snippet(search=search), content_type="text/x-python; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="search{search.pk}-usage.py"'
            return response
        if filename not in KIND_BY_FILENAME:
            raise Http404(f"No download named {filename}; use one of "
                          f"{', '.join([*KIND_BY_FILENAME, USAGE_FILENAME])}.")
        path, name = artifact_resolve(search=search, kind=KIND_BY_FILENAME[filename])
        return file_response(request, path.open("rb"), filename=name)


class SearchTaskDownloadView(PefsView):
    """A per-task file of the selected design: trained weights (.safetensors) or the PEFT export (.zip)."""

    kind: str = Artifact.Kind.WEIGHTS

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The file."),
                              404: s.DownloadErrorSerializer, 409: s.DownloadErrorSerializer})
    def get(self, request: Request, pk: int, task: str) -> HttpResponse:
        search = selectors.search_for_user(user=request.user, search_id=pk)
        path, name = artifact_resolve(search=search, kind=self.kind, task=task)
        return file_response(request, path.open("rb"), filename=name)


# --- stages and trials -------------------------------------------------------------------------

class StageDetailView(PefsView):
    """A stage: its space, per-choice summary, recommendation, decision, trial counts, best trials."""

    @extend_schema(responses=s.StageDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.StageDetailSerializer(selectors.stage_list(user=request.user).get(pk=pk)).data)


class StageApproveView(PefsView):
    """Approve the recommendation, or another choice with a reason; the next stage starts."""

    @extend_schema(request=s.StageApproveSerializer, responses=s.StageDetailSerializer)
    def post(self, request: Request, pk: int) -> Response:
        stage = selectors.stage_list(user=request.user).get(pk=pk)
        data = self.validated(s.StageApproveSerializer, request.data)
        stage = services.stage_approve(stage=stage, user=request.user, choice=data["choice"] or None,
                                       reason=data["reason"])
        return Response(s.StageDetailSerializer(selectors.stage_list(user=request.user).get(pk=stage.pk)).data)


class TrialDetailView(PefsView):
    @extend_schema(responses=s.TrialDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.TrialDetailSerializer(selectors.trial_detail(user=request.user, trial_id=pk)).data)


class TrialRetryView(PefsView):
    """Run a failed or cancelled trial again (a new attempt)."""

    @extend_schema(request=None, responses=s.TrialDetailSerializer)
    def post(self, request: Request, pk: int) -> Response:
        trial = selectors.trial_detail(user=request.user, trial_id=pk)
        services.trial_retry(trial=trial)
        return Response(s.TrialDetailSerializer(selectors.trial_detail(user=request.user, trial_id=pk)).data)


class TrialCancelView(PefsView):
    """Cancel a queued trial, or ask a running one to stop at its next step."""

    @extend_schema(request=None, responses=s.TrialDetailSerializer)
    def post(self, request: Request, pk: int) -> Response:
        trial = selectors.trial_detail(user=request.user, trial_id=pk)
        services.trial_cancel(trial=trial)
        return Response(s.TrialDetailSerializer(selectors.trial_detail(user=request.user, trial_id=pk)).data)

