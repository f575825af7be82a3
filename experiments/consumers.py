"""WebSocket consumer: streams a search's live events to its logged-in owner."""
from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import selectors
from .events import search_group

POLICY_VIOLATION = 1008  # RFC 6455: the server refuses a connection that breaks its policy


class SearchConsumer(AsyncJsonWebsocketConsumer):
    """ws/searches/<id>/: the owner receives trial.metric, trial.status, stage.status, search.status.

    Anyone else (anonymous or another user) is closed with code 1008 before accept().
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

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

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
