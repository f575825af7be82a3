"""Refuse oversized request bodies before anything reads them.

Django's ASGI handler spools a whole request body before a view (or the upload limit inside it)
runs, so a 200 MB upload used to be read in full, then refused, while other requests waited. This
ASGI middleware answers 413 at once when the declared Content-Length is over the limit, and stops a
body that grows past it while streaming (a chunked or lying request): the application then sees a
disconnect and the client gets the 413. It also guards pefs_web/web.py (what `make run` serves),
ahead of BufferedBody, which reads a body whole before a2wsgi's threads see it.
WSGIRequestBodyLimit does the same for the WSGI side (pefs_web/wsgi.py). In production put the same limit on the reverse proxy
(e.g. nginx ``client_max_body_size``), which refuses before the ASGI server buffers anything.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from tempfile import SpooledTemporaryFile
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestBodyLimit:
    """Wrap an ASGI HTTP application; ``limit`` is a callable so settings can change in tests."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, limit: Callable[[], int]) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the application's answer to a cut body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, bounded_receive, tracking_send)
        if exceeded and not started:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = _refusal(limit)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _refusal(limit: int) -> bytes:
    return json.dumps({"detail": f"Request body larger than {limit} bytes."}).encode()


class BufferedBody:
    """Read an HTTP request's whole body on the event loop before the application runs, then hand it
    over at once: the application's thread (a2wsgi's, pefs_web/web.py) would otherwise wait
    on a body sent slowly, and a few such uploads would hold every thread. The body is kept in
    memory up to ``spool_bytes``, then in a temporary file; RequestBodyLimit around this bounds it.
    A client that leaves before its body is whole gets no call to the application at all."""

    BLOCK = 64 * 1024

    def __init__(self, app: Callable[..., Awaitable[None]], *, spool_bytes: int = 1024 * 1024) -> None:
        self.app, self.spool_bytes = app, spool_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with SpooledTemporaryFile(max_size=self.spool_bytes) as spool:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                spool.write(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            size = spool.tell()
            spool.seek(0)
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()  # after the body: the client's disconnect, when it comes
                block = spool.read(self.BLOCK)
                replayed = spool.tell() >= size
                return {"type": "http.request", "body": block, "more_body": not replayed}

            await self.app(scope, replay, send)


class WSGIRequestBodyLimit:
    """The same refusal for the WSGI side (pefs_web/wsgi.py: synchronous workers, or a2wsgi's
    threads): 413 at once when the declared Content-Length is over the limit or not a number, before
    Django reads the body.
    Django reads at most Content-Length bytes of a WSGI body, so a body without one (chunked) is
    never read past it: nothing can grow beyond the declared length."""

    def __init__(self, app: Callable[..., Any], *, limit: Callable[[], int]) -> None:
        self.app, self.limit = app, limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        declared = (environ.get("CONTENT_LENGTH") or "").strip()
        limit = self.limit()
        valid = declared.isascii() and declared.isdigit() and len(declared) <= 20
        if declared and (not valid or int(declared) > limit):
            body = _refusal(limit)
            start_response("413 Request Entity Too Large", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")])
            return [body]
        return self.app(environ, start_response)
