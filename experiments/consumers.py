"""WebSocket consumer: streams a search's live events to its logged-in owner."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import selectors
from .events import search_group

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # RFC 6455: the server refuses a connection that breaks its policy
PROBE_TIMEOUT_SECONDS = 2.0  # a probe of a live group comes back in milliseconds, even under load


class SearchConsumer(AsyncJsonWebsocketConsumer):
    """ws/searches/<id>/: the owner receives trial.metric, trial.status, stage.status, search.status.

    Anyone else (anonymous or another user) is refused before accept(): the handshake fails, and
    the client sees HTTP 403 (Daphne answers a close before accept that way; the 1008 passed to
    close() only reaches in-process test clients).

    The channel layer's group lives in Redis. A flush or a restart of Redis forgets it, and events
    would stop reaching an open socket with nothing to tell the page. So every
    PEFS_WS_GROUP_REFRESH_SECONDS the consumer checks its membership and joins again (group_add is
    idempotent and also renews the membership's expiry): after a loss, live events resume within
    one interval, and the client gets {"type": "sync"}, on which the page catches up from the API
    (pefs.js) instead of waiting for a reconnect or a safety poll. The check sends a probe to a
    group of this socket alone (the layer has no membership query; a probe through the search's
    group would reach every other socket too): Redis forgets both groups together.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.search_id = int(self.scope["url_route"]["kwargs"]["search_id"])
        if user is None or not user.is_authenticated or not await self._owns(user):
            await self.close(code=POLICY_VIOLATION)
            return
        self.group = search_group(self.search_id)
        self.probe_group = f"{self.group}.probe.{uuid.uuid4().hex}"
        self._probe_sent: str | None = None
        self._probe_returned = asyncio.Event()
        await self._join_groups()
        await self.accept()
        self._rejoin = asyncio.create_task(self._keep_group_membership())

    async def disconnect(self, code: int) -> None:
        rejoin = getattr(self, "_rejoin", None)
        if rejoin is not None:
            rejoin.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rejoin
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.probe_group, self.channel_name)

    async def _join_groups(self) -> None:
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.probe_group, self.channel_name)

    async def _keep_group_membership(self) -> None:
        while True:
            await asyncio.sleep(settings.PEFS_WS_GROUP_REFRESH_SECONDS)
            try:
                # Probe before joining again: a loss found after the join would go unnoticed
                lost = not await self._probe_comes_back()
                await self._join_groups()
            except Exception:  # Redis down for now: the next interval tries again
                log.warning("could not re-join %s", self.group, exc_info=True)
                continue
            if lost:
                log.info("re-joined %s after the channel layer lost it", self.group)
                await self.send_json({"type": "sync"})

    async def _probe_comes_back(self) -> bool:
        self._probe_sent = uuid.uuid4().hex
        self._probe_returned.clear()
        await self.channel_layer.group_send(self.probe_group, {"type": "group.probe", "probe": self._probe_sent})
        try:
            await asyncio.wait_for(self._probe_returned.wait(), PROBE_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            return False
        return True

    async def group_probe(self, event: dict) -> None:
        if event["probe"] == self._probe_sent:  # a late answer to an earlier probe proves nothing now
            self._probe_returned.set()

    async def receive_json(self, content, **kwargs) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    @database_sync_to_async
    def _owns(self, user) -> bool:
        return selectors.search_is_owned(user=user, search_id=self.search_id)

    async def _forward(self, event: dict) -> None:
        await self.send_json({"type": event["type"], **event["payload"]})

    trial_metric = _forward
    trial_status = _forward
    stage_status = _forward
    search_status = _forward
