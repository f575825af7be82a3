"""WebSocket consumer: streams a search's live events to its logged-in owner."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import selectors
from .events import search_group

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # RFC 6455: the server refuses a connection that breaks its policy


class SearchConsumer(AsyncJsonWebsocketConsumer):
    """ws/searches/<id>/: the owner receives trial.metric, trial.status, stage.status, search.status.

    Anyone else (anonymous or another user) is refused before accept(): the handshake fails, and
    the client sees HTTP 403 (Daphne answers a close before accept that way; the 1008 passed to
    close() only reaches in-process test clients).

    The channel layer's group lives in Redis. A flush or a restart of Redis forgets it, and events
    would stop reaching an open socket with nothing to tell the page. So the consumer joins its
    group again every PEFS_WS_GROUP_REFRESH_SECONDS (group_add is idempotent and also renews the
    membership's expiry): after a loss, live events resume within one interval, and the page's
    catch-up from the API (pefs.js) fills in what was missed.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.search_id = int(self.scope["url_route"]["kwargs"]["search_id"])
        if user is None or not user.is_authenticated or not await self._owns(user):
            await self.close(code=POLICY_VIOLATION)
            return
        self.group = search_group(self.search_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self._rejoin = asyncio.create_task(self._rejoin_group_periodically())

    async def disconnect(self, code: int) -> None:
        rejoin = getattr(self, "_rejoin", None)
        if rejoin is not None:
            rejoin.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rejoin
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _rejoin_group_periodically(self) -> None:
        while True:
            await asyncio.sleep(settings.PEFS_WS_GROUP_REFRESH_SECONDS)
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
            except Exception:  # Redis down for now: the next interval tries again
                log.warning("could not re-join %s", self.group, exc_info=True)

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
