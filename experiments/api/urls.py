"""/api/: the REST API, its OpenAPI schema (/api/schema/) and interactive docs (/api/docs/)."""
from __future__ import annotations

from django.apps import apps
from django.contrib.auth.decorators import login_not_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser

from pefs_web.login_attempts import RateLimitedLogin

from ..models import Artifact
from . import views
from .engine import EngineWheelView
from .parsers import BoundedJSONParser
from .workers import WorkerListView

app_name = "api"


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI from the drf-spectacular-sidecar package when installed: no CDN, works offline."""

    def _swagger_ui_resource(self, filename: str) -> str:
        if apps.is_installed("drf_spectacular_sidecar"):
            from django.templatetags.static import static

            return static(f"drf_spectacular_sidecar/swagger-ui-dist/{filename}")
        return super()._swagger_ui_resource(filename)

    def _swagger_ui_favicon(self) -> str:
        if apps.is_installed("drf_spectacular_sidecar"):
            from django.templatetags.static import static

            return static("drf_spectacular_sidecar/swagger-ui-dist/favicon-32x32.png")
        return super()._swagger_ui_favicon()


class TokenView(RateLimitedLogin, ObtainAuthToken):
    """ObtainAuthToken lists its own parsers; use the bounded JSON parser there too. Password
    guessing is limited as at the login form (pefs_web/login_attempts.py)."""

    parser_classes = [FormParser, MultiPartParser, BoundedJSONParser]


# As every other endpoint (views.PefsViewMixin): token authentication first, so an anonymous
# request gets 401 with a WWW-Authenticate header, not SessionAuthentication's 403.
SCHEMA_AUTHENTICATION = views.PefsViewMixin.authentication_classes

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(authentication_classes=SCHEMA_AUTHENTICATION), name="schema"),
    path("docs/", SwaggerView.as_view(url_name="api:schema", authentication_classes=SCHEMA_AUTHENTICATION),
         name="docs"),
    path("auth/token/", login_not_required(TokenView.as_view()), name="token"),

    path("tasks/", views.TaskListView.as_view(), name="task-list"),
    path("tasks/preview/", views.TaskPreviewView.as_view(), name="task-preview"),
    path("tasks/<int:pk>/", views.TaskDetailView.as_view(), name="task-detail"),

    path("backbones/", views.BackboneListView.as_view(), name="backbone-list"),
    path("backbones/<int:pk>/", views.BackboneDetailView.as_view(), name="backbone-detail"),
    path("backbones/<int:pk>/budget/", views.BackboneBudgetView.as_view(), name="backbone-budget"),

    path("searches/", views.SearchListView.as_view(), name="search-list"),
    path("searches/<int:pk>/", views.SearchDetailView.as_view(), name="search-detail"),
    path("searches/<int:pk>/cancel/", views.SearchCancelView.as_view(), name="search-cancel"),
    path("searches/<int:pk>/retry-failed/", views.SearchRetryFailedView.as_view(), name="search-retry-failed"),
    path("searches/<int:pk>/trials/", views.SearchTrialListView.as_view(), name="search-trials"),
    path("searches/<int:pk>/metrics/", views.SearchMetricsView.as_view(), name="search-metrics"),
    path("searches/<int:pk>/downloads/", views.SearchArtifactListView.as_view(), name="search-downloads"),
    path("searches/<int:pk>/downloads/weights/<slug:task>.safetensors",
         views.SearchTaskDownloadView.as_view(kind=Artifact.Kind.WEIGHTS), name="download-weights"),
    path("searches/<int:pk>/downloads/peft/<slug:task>.zip",
         views.SearchTaskDownloadView.as_view(kind=Artifact.Kind.PEFT_EXPORT), name="download-peft"),
    path("searches/<int:pk>/downloads/<str:filename>", views.SearchDownloadView.as_view(), name="download"),
    path("engine/<str:filename>", EngineWheelView.as_view(), name="engine-wheel"),

    path("stages/<int:pk>/", views.StageDetailView.as_view(), name="stage-detail"),
    path("stages/<int:pk>/approve/", views.StageApproveView.as_view(), name="stage-approve"),

    path("trials/<int:pk>/", views.TrialDetailView.as_view(), name="trial-detail"),
    path("trials/<int:pk>/retry/", views.TrialRetryView.as_view(), name="trial-retry"),
    path("trials/<int:pk>/cancel/", views.TrialCancelView.as_view(), name="trial-cancel"),

    path("workers/", WorkerListView.as_view(), name="worker-list"),
]
