"""How PEFS serves HTTP and WebSockets on one machine: several Daphne processes on one port.

Each process gets a listening socket of its own, all bound to the same address with SO_REUSEPORT
and passed as ``daphne --fd``: the kernel spreads new connections evenly over the sockets. (With one
shared socket, whichever process waits in accept() first takes the connection, and keep-alive
connections pile up on one process.) Django's views are CPU-bound Python, so one process per core
is what lets a page use the second core while another renders (bench/web_load.py measures it).
`make run` (pefs_web.launch) and bench/harness.py both start the web this way.

Static files are collected (``collectstatic``, gzip copies made by WhiteNoise's
CompressedStaticFilesStorage) before the processes start, and ``PEFS_STATIC_COLLECTED=1`` tells the
settings to serve the collected folder: WhiteNoise then sends the precompressed copy to a browser
that accepts gzip (plotly.min.js: 4.8 MB raw). Without it (tests, ``manage.py runserver``) the
finders serve the source files uncompressed.
"""
from __future__ import annotations

import os
import socket
import sys

# Bounds of PEFS_WEB_PROCESSES (a typed number always has an upper one).
WEB_PROCESSES = (1, 16)
STATIC_COLLECTED = "PEFS_STATIC_COLLECTED"


def web_processes(environ: dict[str, str]) -> int:
    """PEFS_WEB_PROCESSES, default one per CPU core up to 4; a clear error names the variable."""
    raw = environ.get("PEFS_WEB_PROCESSES", "").strip()
    if not raw:
        return max(1, min(4, os.cpu_count() or 1))
    low, high = WEB_PROCESSES
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"PEFS_WEB_PROCESSES must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address (port 0: the first picks a free port, the others
    join it). The caller keeps them open for as long as processes may be (re)started on them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        # SO_REUSEPORT would also let us join a port another program (another PEFS of this user)
        # listens on, and take half its connections: a plain bind first fails with "address in use".
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
            probe.bind((host, port))
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(1024)
            port = sock.getsockname()[1]
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def daphne_argv(sock: socket.socket, python: str = sys.executable) -> list[str]:
    """The command line of one Daphne process serving PEFS on ``sock`` (pass it with pass_fds)."""
    return [python, "-m", "daphne", "--fd", str(sock.fileno()), "pefs_web.asgi:application"]
