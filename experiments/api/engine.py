"""The PEFS engine wheel as a download: what a result's usage snippet installs (login required)."""
from __future__ import annotations

from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request

from pefs_web.engine_wheel import wheel_name

from . import serializers as s
from .downloads import engine_wheel_file, file_response
from .views import PefsView


class EngineWheelView(PefsView):
    """The engine (distribution pefs-engine, import package pefs_engine) as a wheel of this server's
    version; built on the first request after an engine change, then streamed from the artifacts storage."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The wheel."),
                              404: s.DownloadErrorSerializer, 409: s.DownloadErrorSerializer})
    def get(self, request: Request, filename: str) -> HttpResponse:
        if filename != wheel_name():
            raise Http404(f"No engine wheel named {filename}; this server offers {wheel_name()}.")
        return file_response(request, engine_wheel_file().open("rb"), filename=wheel_name(),
                             content_type="application/octet-stream")
