"""What `make run` serves on one port with gunicorn's asyncio workers (pefs_web/serving.py): HTTP
through the WSGI application (pefs_web/wsgi.py: pages, API, downloads) run on a few threads by
a2wsgi, and the WebSockets of the live pages through Channels (pefs_web/asgi.py's).

The event loop reads each HTTP request, headers and whole body (body_limit.BufferedBody, bounded by
RequestBodyLimit), before a thread runs Django, and takes each answer from the thread as fast as the
thread writes it (an unbounded send queue: PEFS's largest answers are result files of a few MB),
sending it as the client reads: a client slow to send or to read holds a socket and the bytes in
flight, never a thread. Django's own ASGI handler (pefs_web/asgi.py's HTTP side) was slower under
load: bench/web_load.py, 50 clients, trials API p95 194 ms on it, 64 ms here (README).
"""
from __future__ import annotations

from a2wsgi import WSGIMiddleware
from channels.routing import ProtocolTypeRouter
from django.conf import settings

from pefs_web.asgi import websocket_application  # importing either entry point sets Django up
from pefs_web.body_limit import BufferedBody, RequestBodyLimit
from pefs_web.wsgi import application as wsgi_application

# Views run on this many threads a process. A second keeps the process answering while one view is
# slow (an upload being checked, a backbone being registered: up to 120 s); more cost latency, the
# views being CPU-bound Python that share the GIL (bench/web_load.py, 50 clients, p95 of the search
# page / trials API: 1 thread 111 / 45 ms, 2 threads 149 / 64 ms, 4 threads 192 / 84 ms).
THREADS = 2

http_application = RequestBodyLimit(
    BufferedBody(WSGIMiddleware(wsgi_application, workers=THREADS, send_queue_size=0)),
    limit=lambda: settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
)
application = ProtocolTypeRouter({"http": http_application, "websocket": websocket_application})
