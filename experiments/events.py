"""Live events for a watched search, published to the channel group "search-<id>".

Event types are dotted ("trial.metric", "trial.status", "stage.status", "search.status") and map
to SearchConsumer methods. Publishing is best effort: Redis carries messages only, the database
already holds what an event announces, and a page that missed one backfills from the REST API.
"""
from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def search_group(search_id: int) -> str:
    return f"search-{search_id}"


def publish(search_id: int, event_type: str, payload: dict[str, Any]) -> None:
    """Send one event to everyone watching the search; never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(search_group(search_id), {"type": event_type, "payload": payload})
    except Exception:  # a lost message costs a page a backfill, never a trial
        log.warning("could not publish %s for search %s", event_type, search_id, exc_info=True)
