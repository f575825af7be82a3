"""What the web benchmarks share: bounded flags, percentiles, and a throwaway PEFS to measure.

``Environment`` sets up, before Django does, a temporary data folder, a database that nothing
else uses and Redis, and undoes all of it on exit:

- the database: a fresh SQLite file in the data folder; or, when DATABASE_URL (or
  PEFS_BENCH_DATABASE_URL) names a PostgreSQL server, a database of its own created on that
  server (``pefs_bench_<pid>``) and dropped at the end. The database the URL names is never
  connected to: the CREATE and DROP go through the server's "postgres" maintenance database;
- Redis: REDIS_URL, or an embedded redis-server (pefs_web.embedded_redis) stopped at the end.

``Server(processes=n)`` serves HTTP and WebSockets as `make run` does (n gunicorn processes with the
asyncio worker, static files collected and precompressed).

    >>> percentile([1, 2, 3, 4], 0.5)
    2
    >>> summary([10.0, 20.0, 30.0])["p95_ms"]
    30.0
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql", "postgis")


# --- flags and statistics ------------------------------------------------------------------------

def bounded(low: float, high: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse type: a number of `kind` from `low` to `high`, or a message naming the range."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number from {low} to {high}, got {text!r}") from None
        if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q <= 1) of `values`: a value that was really observed."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(milliseconds: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99 and max of timings in milliseconds, rounded to 0.1 ms (None when empty)."""
    if not milliseconds:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {"n": len(milliseconds),
            **{f"p{round(q * 100)}_ms": round(percentile(milliseconds, q), 1) for q in (0.5, 0.95, 0.99)},
            "max_ms": round(max(milliseconds), 1)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- databases -----------------------------------------------------------------------------------

def is_postgres(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in POSTGRES_SCHEMES


def with_database(url: str, name: str) -> str:
    """`url` with its database (the path) replaced by `name`, query and credentials kept."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _maintenance(url: str):
    import psycopg

    parts = urlsplit(with_database(url, "postgres"))
    return psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username,
                           password=parts.password, dbname="postgres", autocommit=True)


class Environment:
    """Temporary data folder, own database and Redis for one benchmark run (a context manager);
    all three are removed on exit."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pefs-{label}-"))
        self.redis_proc: subprocess.Popen | None = None
        self.server_url: str | None = None  # the PostgreSQL URL we were given
        self.database_name: str | None = None  # the database we created there

    @property
    def database(self) -> str:
        """What the JSON line reports: "sqlite" or "postgresql <version-free host:port>"."""
        if self.database_name:
            return f"postgresql {urlsplit(self.server_url).hostname}:{urlsplit(self.server_url).port or 5432}"
        return "sqlite"

    def __enter__(self) -> Environment:
        configured = os.environ.get("PEFS_BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
        os.environ["PEFS_DATA_DIR"] = str(self.workdir)
        if is_postgres(configured):
            self.server_url = configured
            self.database_name = f"pefs_bench_{os.getpid()}"
            with _maintenance(configured) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}"')
                conn.execute(f'CREATE DATABASE "{self.database_name}"')
            os.environ["DATABASE_URL"] = with_database(configured, self.database_name)
        else:
            os.environ["DATABASE_URL"] = f"sqlite:///{self.workdir / 'bench.sqlite3'}"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        if not os.environ.get("REDIS_URL"):
            from pefs_web.embedded_redis import start_embedded_redis, wait_for_redis

            self.redis_proc, url = start_embedded_redis(self.workdir / "redis")
            wait_for_redis(url)
            os.environ["REDIS_URL"] = url
        return self

    def __exit__(self, *exc) -> None:
        if self.database_name:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # Django was never set up
                pass
            with _maintenance(self.server_url) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            self.redis_proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def migrate() -> float:
    """django.setup() and migrate the fresh database; returns the seconds it took."""
    import django

    django.setup()
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    return time.perf_counter() - started


def session_cookie(user) -> str:
    """A logged-in session for `user`, as the browser holds it after the login form."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


# --- the server ----------------------------------------------------------------------------------

class Server:
    """The web served as `make run` serves it (pefs_web/serving.py) on a free loopback port, static
    files collected and precompressed first: ``processes`` gunicorn processes with its asyncio ASGI
    worker (HTTP and WebSockets); ``sync``: synchronous workers on the WSGI application, as behind a
    buffering proxy (HTTP only)."""

    def __init__(self, log_path: Path, processes: int = 1, *, sync: bool = False) -> None:
        from pefs_web.serving import STATIC_COLLECTED, gunicorn_argv
        from pefs_web.supervisor import spawn

        subprocess.run([sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput", "-v", "0"],
                       check=True, cwd=ROOT, env=dict(os.environ))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.processes = processes
        self.argv = gunicorn_argv("127.0.0.1", self.port, processes, sync=sync)
        with open(log_path, "ab") as log:
            self.procs = [spawn(self.argv, env={**os.environ, STATIC_COLLECTED: "1"}, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)]

    @property
    def command(self) -> str:
        """The server's command line, as the JSON line reports it."""
        return " ".join(["python", *self.argv[1:]])

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the server has answered a few requests over fresh connections (two per process; a
        process still importing leaves its share in the backlog, so the benchmarks warm up before
        they measure)."""
        import http.client

        deadline = time.monotonic() + timeout
        answered = 0
        while answered < 2 * self.processes:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"the server exited:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server not ready within {timeout:.0f} s:\n{self.log_path.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/login/")
                conn.getresponse().read()
                conn.close()
                answered += 1
            except OSError:
                time.sleep(0.3)

    def cpu_seconds(self) -> list[float]:
        """CPU seconds each server process (gunicorn's master and workers) has used so far: shows
        the load really spread over them."""
        import psutil

        root = psutil.Process(self.procs[0].pid)
        return [round(sum(p.cpu_times()[:2]), 1) for p in [root, *root.children(recursive=True)]]

    def stop(self) -> None:
        from pefs_web.supervisor import stop_process_tree

        for proc in self.procs:
            stop_process_tree(proc, grace=10)
