"""How PEFS serves the web on one machine: one port, gunicorn's asyncio workers, HTTP and WebSockets.

``PEFS_WEB_PROCESSES`` gunicorn processes run gunicorn's asyncio ASGI worker on pefs_web/web.py: the
live pages' WebSockets through Channels, and HTTP (pages, API, downloads) through the WSGI
application, run on two threads a process by a2wsgi, behind an event loop that reads each request in
full (headers, then the body) before a thread sees it and sends each answer as the client reads it.
A connection that sends nothing, half a request or a body slowly, or reads slowly, costs a socket,
not a process. gunicorn's synchronous workers (this module's choice until 2026-12) gave each
connection a whole process from accept to the last byte: with 3 of them, 3 sockets that sent nothing
(a browser's preconnects, or anyone on the network) kept every page waiting; a fourth client's
request timed out after 20 s. tests/platform/test_supervision.py now holds 30 such connections open
while pages answer.

Each connection is closed after its answer (``--keep-alive 0``): a process's loop accepts whatever
comes while its threads are busy, so a kept-alive connection would tie a browser's requests to one
process however loaded, where a new connection goes to whichever process takes it first
(bench/web_load.py, 50 clients, Django's ASGI handler: server CPU per process 21/38/10 s kept
alive, 28/29/29 s closed). With these, that load is answered about as fast as by synchronous workers
(README, web_load row): the threads run Django's plain WSGI path, where Django's own ASGI handler
(pefs_web/asgi.py) cost 3 to 4 times the p95. Behind a buffering proxy (nginx), which holds slow
clients itself, the synchronous workers on pefs_web/wsgi.py are as good (README, several machines).

WebSockets share the pages' port (``PEFS_PORT``), so the session cookie logs them in and a proxy in
front needs no route of its own; the channel layer (Redis) brings every process the events of every
search. Until 2026-12 `make run` served them from a Daphne process on a second port, which the pages
named (settings.PEFS_WEBSOCKET_PORT: still there for a deployment that serves WebSockets apart).
Daphne alone (HTTP and WebSockets on one port, pefs_web/asgi.py: what the test suite's live server
runs) still works.

Static files are collected (``collectstatic``, gzip copies made by WhiteNoise's
CompressedStaticFilesStorage) before the processes start, and ``PEFS_STATIC_COLLECTED=1`` tells the
settings to serve the collected folder: WhiteNoise then sends the precompressed copy to a browser
that accepts gzip (plotly.min.js: 4.8 MB raw, 1.5 MB sent). Without it (tests, ``runserver``) the
finders serve the source files uncompressed.
"""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping

# Bounds of the typed numbers (a typed number always has an upper one).
WEB_PROCESSES = (1, 16)
STATIC_COLLECTED = "PEFS_STATIC_COLLECTED"
# A worker whose event loop has not reported for this long is replaced: above the longest request
# PEFS allows (registering a backbone, PEFS_INTROSPECT_TIMEOUT_SECONDS, 120 s by default), in case a
# view ever holds the loop itself.
REQUEST_TIMEOUT_S = 300


def _bounded(environ: Mapping[str, str], name: str, default: int, bounds: tuple[int, int]) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    low, high = bounds
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and low <= int(raw) <= high):
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def web_processes(environ: Mapping[str, str]) -> int:
    """PEFS_WEB_PROCESSES: gunicorn workers; default one per CPU core plus one (so a slow request,
    an upload being validated, never leaves a core idle), at least 2 and at most 8."""
    default = max(2, min(8, (os.cpu_count() or 1) + 1))
    return _bounded(environ, "PEFS_WEB_PROCESSES", default, WEB_PROCESSES)


def ensure_free(host: str, port: int, variable: str) -> None:
    """Stop with a message naming the setting when another program already listens on the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"{host}:{port} is in use ({exc.strerror}); stop what listens there "
                             f"or set {variable} to another port") from None


def gunicorn_argv(host: str, port: int, workers: int, python: str = sys.executable, *,
                  sync: bool = False) -> list[str]:
    """The web server: ``workers`` gunicorn processes with the asyncio ASGI worker on host:port,
    each connection closed after its answer (module docstring); ``sync``: synchronous workers on
    the WSGI application instead, for behind a buffering proxy (bench/web_load.py --sync). No
    control socket: gunicorn would put one at the same path in the user's home for every server
    (make run, the tests' and the benchmarks'), each taking it from the last; PEFS does not use it."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    worker = (["--worker-class", "sync"] if sync
              else ["--worker-class", "asgi", "--keep-alive", "0"])
    return [python, "-m", "gunicorn", "--workers", str(workers), *worker, "--bind", address,
            "--timeout", str(REQUEST_TIMEOUT_S), "--graceful-timeout", "10", "--log-level", "warning",
            "--no-control-socket", "pefs_web.wsgi:application" if sync else "pefs_web.web:application"]


def freeze_startup_objects() -> None:
    """Move what loading the application created out of the garbage collector's generations
    (gc.freeze): those objects live as long as the process, and a full collection, set off by a
    request that allocates a lot (the chart data of 10,000 trials), walked them all every time. That
    walk was most of the chart endpoint's p95 tail (bench/dashboard_scale.py, 10,000 trials: p95 331
    and 290 ms in two runs before, 238 and 220 ms after).
    pefs_web/wsgi.py and asgi.py call it once the application is built."""
    import gc

    gc.collect()
    gc.freeze()

