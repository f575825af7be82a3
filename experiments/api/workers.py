"""GET /api/workers/: the trial workers, as the workers page shows them (experiments.worker_states)."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from .. import worker_states
from .views import PefsView

BUSY_ELSEWHERE = "busy (another user's search)"


class RunningTrialSerializer(serializers.Serializer):
    """Your own trial with its ids, name and link; another user's has only its label (the rest null)."""

    visible = serializers.BooleanField()
    trial = serializers.IntegerField(source="trial_id", allow_null=True)
    stage = serializers.CharField(source="stage_key", allow_blank=True)
    index = serializers.IntegerField(source="trial_index", allow_null=True)
    search = serializers.IntegerField(source="search_id", allow_null=True)
    search_name = serializers.CharField(allow_blank=True)
    label = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    def get_label(self, trial: worker_states.RunningTrial) -> str:
        if not trial.visible:
            return BUSY_ELSEWHERE
        return f"trial {trial.stage_key} #{trial.trial_index} of {trial.search_name}"

    def get_url(self, trial: worker_states.RunningTrial) -> str | None:
        """The trial in the REST API."""
        if not trial.visible:
            return None
        return reverse("api:trial-detail", args=[trial.trial_id])


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    hostname = serializers.CharField()
    device = serializers.CharField(help_text="'cpu', 'cuda', or 'unknown' when the worker could not tell.")
    device_name = serializers.CharField(allow_blank=True)
    device_memory_bytes = serializers.IntegerField(allow_null=True)
    concurrency = serializers.IntegerField()
    pid = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=[worker_states.IDLE, worker_states.RUNNING, worker_states.LOST,
                                             worker_states.STOPPED])
    trials = RunningTrialSerializer(many=True)


class WorkerListView(PefsView):
    """Every trial worker: device, concurrency, state and last heartbeat. Running trials of your own
    searches are named; another user's are shown as busy (staff see every trial)."""

    @extend_schema(responses=WorkerSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(WorkerSerializer(worker_states.worker_list(user=request.user), many=True).data)
