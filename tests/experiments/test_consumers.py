"""The search WebSocket against the real channel layer (Redis from `make test`): who may connect,
and live events that survive Redis losing the group (a flush or a restart, issue 9)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from experiments import consumers
from experiments.events import search_group
from experiments.routing import websocket_urlpatterns

# Channels closes old database connections around every consumer event, in the test's own thread:
# only a transactional test database allows that.
pytestmark = pytest.mark.django_db(transaction=True)

SEARCH_ID = 424242


def as_user(user):
    """The WebSocket routes with `user` in the scope, as AuthMiddlewareStack would put it."""
    router = URLRouter(websocket_urlpatterns)

    async def application(scope, receive, send):
        return await router({**scope, "user": user}, receive, send)

    return application


@pytest.fixture
def owner(monkeypatch, redis_url, settings):
    settings.PEFS_WS_GROUP_REFRESH_SECONDS = 0.5
    # Ownership without the database (the selector's own tests cover it): the search this user owns.
    async def owns(consumer, user):
        return user.owns == consumer.search_id

    monkeypatch.setattr(consumers.SearchConsumer, "_owns", owns)
    return SimpleNamespace(is_authenticated=True, owns=SEARCH_ID)


async def publish(n: int) -> None:
    await get_channel_layer().group_send(search_group(SEARCH_ID), {"type": "trial.metric", "payload": {"n": n}})


def test_someone_who_does_not_own_the_search_is_refused_before_accept(owner):
    async def scenario():
        for user in (SimpleNamespace(is_authenticated=False, owns=None), SimpleNamespace(is_authenticated=True, owns=1)):
            communicator = WebsocketCommunicator(as_user(user), f"/ws/searches/{SEARCH_ID}/")
            connected, code = await communicator.connect()
            assert (connected, code) == (False, consumers.POLICY_VIOLATION)

    async_to_sync(scenario)()


def test_live_events_resume_after_redis_is_flushed_and_the_client_is_told_to_catch_up(owner, redis_url, settings):
    async def scenario():
        communicator = WebsocketCommunicator(as_user(owner), f"/ws/searches/{SEARCH_ID}/")
        connected, _ = await communicator.connect()
        assert connected
        await publish(0)
        assert await communicator.receive_json_from(timeout=5) == {"type": "trial.metric", "n": 0}

        # Redis forgets every group; the socket stays open
        redis.Redis.from_url(redis_url).flushdb()
        flushed = time.monotonic()
        n, received = 0, []
        deadline = flushed + 4 * settings.PEFS_WS_GROUP_REFRESH_SECONDS + 2 * consumers.PROBE_TIMEOUT_SECONDS + 5
        while not any(m["type"] == "trial.metric" for m in received) and time.monotonic() < deadline:
            n += 1
            await publish(n)
            # receive_nothing waits without ending the consumer (a receive timeout would cancel it)
            while not await communicator.receive_nothing(timeout=0.2):
                received.append(await communicator.receive_json_from())
        assert any(m["type"] == "trial.metric" for m in received), "no event reached the socket after the flush"
        # Within one interval plus the probe that found the loss
        assert time.monotonic() - flushed < 2 * settings.PEFS_WS_GROUP_REFRESH_SECONDS + consumers.PROBE_TIMEOUT_SECONDS + 1
        # The events published while the group was lost are gone: the client is told to read them from the API
        assert {"type": "sync"} in received
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_no_sync_is_sent_while_the_group_holds(owner, settings):
    async def scenario():
        communicator = WebsocketCommunicator(as_user(owner), f"/ws/searches/{SEARCH_ID}/")
        connected, _ = await communicator.connect()
        assert connected
        # Several membership checks pass: the page is not sent to the API for nothing
        assert await communicator.receive_nothing(timeout=4 * settings.PEFS_WS_GROUP_REFRESH_SECONDS)
        await publish(1)
        assert await communicator.receive_json_from(timeout=5) == {"type": "trial.metric", "n": 1}
        await communicator.disconnect()

    async_to_sync(scenario)()
