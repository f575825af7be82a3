"""Live events for a watched search, published to the channel group "search-<id>".

Event types are dotted ("trial.metric", "trial.status", "stage.status", "search.status") and map
to SearchConsumer methods. Every payload is built here, and the status payloads come from the
REST serializers, so a page that follows the WebSocket and one that reads the API see the same
fields with the same values.

Publishing is best effort: Redis carries messages only, the database already holds what an event
announces, and a page that missed one backfills from the REST API. Services announce a change
with ``trial_changed(trial)`` (and friends) inside their transaction; the payload is built at
once, from the rows as the transaction wrote them, and sent only after commit.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .api.serializers import SearchSerializer, StageRefSerializer, TrialSerializer
from .models import Search, Stage, Trial

log = logging.getLogger(__name__)

TRIAL_METRIC = "trial.metric"
TRIAL_STATUS = "trial.status"
STAGE_STATUS = "stage.status"
SEARCH_STATUS = "search.status"


def search_group(search_id: int) -> str:
    return f"search-{search_id}"


# --- payloads --------------------------------------------------------------------------------

def trial_status(trial: Trial) -> dict[str, Any]:
    """{"trial": the REST trial-table row of the trial}."""
    return {"trial": dict(TrialSerializer(trial).data)}


def stage_status(stage: Stage) -> dict[str, Any]:
    """{"stage": {"id", "key", "status"}}, the stage reference the REST search list shows."""
    return {"stage": dict(StageRefSerializer(stage).data)}


def search_status(search: Search) -> dict[str, Any]:
    """{"search": the REST search-list row of the search}."""
    return {"search": dict(SearchSerializer(search).data)}


def trial_metric(*, trial_id: int, attempt: int, stage_id: int,
                 points: Iterable[tuple[int, str, float]]) -> dict[str, Any]:
    """A batch of metric points as [step, "<task>:<metric>", value] triples."""
    return {"trial": trial_id, "attempt": attempt, "stage": stage_id,
            "points": [[step, name, value] for step, name, value in points]}


# --- sending ---------------------------------------------------------------------------------

def publish(search_id: int, event_type: str, payload: dict[str, Any]) -> None:
    """Send one event to everyone watching the search; never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(search_group(search_id), {"type": event_type, "payload": payload})
    except Exception:  # a lost message costs a page a backfill, never a trial
        log.warning("could not publish %s for search %s", event_type, search_id, exc_info=True)


def publish_on_commit(search_id: int, event_type: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish(search_id, event_type, payload))


def trial_changed(trial: Trial) -> None:
    publish_on_commit(trial.search_id, TRIAL_STATUS, trial_status(trial))


def stage_changed(stage: Stage) -> None:
    publish_on_commit(stage.search_id, STAGE_STATUS, stage_status(stage))


def search_changed(search: Search) -> None:
    publish_on_commit(search.pk, SEARCH_STATUS, search_status(search))
