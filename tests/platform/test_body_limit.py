"""Oversized request bodies are refused before anything reads them (issue 9: a 200 MB upload was
read in full, then refused, while other requests waited)."""
from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.testing import ApplicationCommunicator

from pefs_web.body_limit import BufferedBody, RequestBodyLimit


def _scope(length: int | None, path: str = "/api/tasks/") -> dict:
    headers = [(b"content-type", b"multipart/form-data; boundary=x")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 5000), "root_path": ""}


class RecordingApp:
    """Reads the whole body, then answers 200; records what it read."""

    def __init__(self) -> None:
        self.called = False
        self.read = 0
        self.disconnected = False

    async def __call__(self, scope, receive, send):
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            self.read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _response(communicator: ApplicationCommunicator) -> tuple[int, bytes]:
    start = await communicator.receive_output(timeout=2)
    body = await communicator.receive_output(timeout=2)
    return start["status"], body["body"]


def test_a_declared_oversize_is_refused_without_reading_or_calling_the_app():
    async def scenario():
        app = RecordingApp()
        communicator = ApplicationCommunicator(RequestBodyLimit(app, limit=lambda: 1000), _scope(200 * 1024 * 1024))
        # No body is ever sent: a middleware that waited for it would time out here.
        status, body = await _response(communicator)
        return app, status, json.loads(body)

    app, status, body = asyncio.run(scenario())
    assert status == 413 and "larger than 1000 bytes" in body["detail"]
    assert not app.called


def test_a_body_that_grows_past_the_limit_is_cut_and_refused():
    async def scenario():
        app = RecordingApp()
        communicator = ApplicationCommunicator(RequestBodyLimit(app, limit=lambda: 1000), _scope(None))
        for _ in range(5):
            await communicator.send_input({"type": "http.request", "body": b"x" * 400, "more_body": True})
        status, _ = await _response(communicator)
        return app, status

    app, status = asyncio.run(scenario())
    assert status == 413
    assert app.disconnected and app.read <= 1000


def test_a_body_within_the_limit_reaches_the_app():
    async def scenario():
        app = RecordingApp()
        communicator = ApplicationCommunicator(RequestBodyLimit(app, limit=lambda: 1000), _scope(800))
        await communicator.send_input({"type": "http.request", "body": b"x" * 800, "more_body": False})
        return app, await _response(communicator)

    app, (status, body) = asyncio.run(scenario())
    assert status == 200 and body == b"ok" and app.read == 800


@pytest.mark.django_db
@pytest.mark.parametrize("module", ["pefs_web.asgi", "pefs_web.web"])  # Daphne's; make run's HTTP
def test_the_real_asgi_applications_refuse_a_200_mb_upload_at_once(settings, module):
    import importlib

    application = importlib.import_module(module).application

    async def scenario():
        communicator = ApplicationCommunicator(application, _scope(200 * 1024 * 1024))
        return await _response(communicator)

    status, body = asyncio.run(scenario())
    assert status == 413
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in json.loads(body)["detail"]


# --- buffering (pefs_web/web.py: a2wsgi's threads must never wait on a slow body) ------------

class BlockRecordingApp(RecordingApp):
    """RecordingApp that also keeps the blocks it received."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[bytes] = []

    async def __call__(self, scope, receive, send):
        async def keeping():
            message = await receive()
            self.blocks.append(message.get("body", b""))
            return message

        await super().__call__(scope, keeping, send)


def test_the_app_runs_only_once_the_whole_body_is_in_and_reads_it_without_waiting():
    body = bytes(range(256)) * 1000  # 256,000 bytes: past the in-memory spool, so a temporary file

    async def scenario():
        app = BlockRecordingApp()
        communicator = ApplicationCommunicator(BufferedBody(app, spool_bytes=100_000), _scope(len(body)))
        for start in range(0, len(body), 10_000):  # a client sending 10 KB at a time
            await communicator.send_input({"type": "http.request", "body": body[start:start + 10_000],
                                           "more_body": start + 10_000 < len(body)})
            await asyncio.sleep(0)
            if start + 10_000 < len(body):
                assert not app.called  # still arriving: no thread would be taken yet
        return app, await _response(communicator)

    app, (status, answer) = asyncio.run(scenario())
    assert status == 200 and answer == b"ok" and app.read == len(body)
    assert b"".join(app.blocks) == body and len(app.blocks) == 4  # 64 KB blocks, handed over at once


def test_a_client_that_leaves_before_its_body_is_whole_never_reaches_the_app():
    async def scenario():
        app = RecordingApp()
        communicator = ApplicationCommunicator(BufferedBody(app), _scope(1000))
        await communicator.send_input({"type": "http.request", "body": b"x" * 10, "more_body": True})
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=2)
        return app

    assert not asyncio.run(scenario()).called


def test_an_empty_body_and_the_limit_around_the_buffer():
    async def scenario(limit, chunks):
        app = RecordingApp()
        communicator = ApplicationCommunicator(RequestBodyLimit(BufferedBody(app), limit=lambda: limit), _scope(None))
        for chunk, more in chunks:
            await communicator.send_input({"type": "http.request", "body": chunk, "more_body": more})
        return app, await _response(communicator)

    app, (status, _) = asyncio.run(scenario(1000, [(b"", False)]))
    assert status == 200 and app.called and app.read == 0
    app, (status, _) = asyncio.run(scenario(1000, [(b"x" * 600, True), (b"x" * 600, True)]))
    assert status == 413 and not app.called


# --- the WSGI side (gunicorn serves pages and the API: pefs_web/serving.py) ------------------------

def _wsgi_call(app, length: str | None) -> tuple[str, bytes, bool]:
    import io

    body = io.BytesIO(b"x" * 64)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/tasks/", "wsgi.input": body,
               "CONTENT_TYPE": "multipart/form-data; boundary=x"}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    answered = {}

    def start_response(status, headers):
        answered["status"] = status

    chunks = b"".join(app(environ, start_response))
    return answered["status"], chunks, body.tell() > 0


def test_wsgi_refuses_a_declared_oversize_or_a_bad_length_without_reading_or_calling_the_app():
    from pefs_web.body_limit import WSGIRequestBodyLimit

    called = []

    def app(environ, start_response):
        called.append(True)
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    limited = WSGIRequestBodyLimit(app, limit=lambda: 32)
    for length in ("33", "9" * 5000, "１２", "-1", "3e4"):
        status, body, read = _wsgi_call(limited, length)
        assert status.startswith("413") and json.loads(body) == {"detail": "Request body larger than 32 bytes."}
        assert not read and not called
    status, body, read = _wsgi_call(limited, "32")  # at the limit: the app runs
    assert status == "200 OK" and called == [True] and read
    status, _, _ = _wsgi_call(limited, None)  # no length (chunked): Django reads nothing past 0 bytes
    assert status == "200 OK"


@pytest.mark.django_db
def test_the_real_wsgi_application_refuses_a_200_mb_upload_at_once(settings):
    from pefs_web.wsgi import application

    status, body, read = _wsgi_call(application, str(200 * 1024 * 1024))
    assert status.startswith("413") and not read
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in json.loads(body)["detail"]
