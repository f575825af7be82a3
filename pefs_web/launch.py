"""Start the whole PEFS system on one machine, or run the test suite with the services it needs.

    python -m pefs_web.launch run    # Redis (embedded unless REDIS_URL), Celery worker, Daphne
    python -m pefs_web.launch test [pytest args]
    python -m pefs_web.launch bench  # every bench/*.py

`make run` and `make test` call this. Ctrl-C stops every process it started.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable


class Processes:
    """Children started by the launcher, stopped together (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def add(self, name: str, proc: subprocess.Popen) -> subprocess.Popen:
        self.children.append((name, proc))
        return proc

    def stop(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def ensure_redis(procs: Processes, env: dict[str, str]) -> None:
    if env.get("REDIS_URL"):
        return
    from pefs_web.embedded_redis import start_embedded_redis, wait_for_redis

    data_dir = Path(env.get("PEFS_DATA_DIR", BASE_DIR / "var")) / "redis"
    proc, url = start_embedded_redis(data_dir)
    procs.add("redis", proc)
    wait_for_redis(url)
    env["REDIS_URL"] = url
    print(f"Embedded Redis at {url}", flush=True)


def wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the server accepts connections, so the URL we print already answers."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the web server exited with code {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not listen on {host}:{port} within {timeout:.0f} s") from None
            time.sleep(0.2)


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([PY, str(BASE_DIR / "manage.py"), *args], check=True, env=env, cwd=BASE_DIR)


@contextlib.contextmanager
def environment_with_redis() -> Iterator[tuple[dict[str, str], Processes]]:
    """The environment for PEFS processes, with Redis available; stops what it started on exit."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
    env.setdefault("HF_HUB_OFFLINE", "1")
    procs = Processes()
    try:
        ensure_redis(procs, env)
        yield env, procs
    finally:
        procs.stop()


def run(host: str, port: int) -> int:
    try:
        with environment_with_redis() as (env, procs):
            manage("migrate", "--noinput", env=env)
            manage("pefs_seed", env=env)
            data_dir = Path(env.get("PEFS_DATA_DIR", BASE_DIR / "var"))
            data_dir.mkdir(parents=True, exist_ok=True)
            credentials = data_dir / "admin-credentials.txt"
            if not credentials.exists():
                credentials.write_text(f"admin {secrets.token_urlsafe(12)}\n")
                credentials.chmod(0o600)
            username, password = credentials.read_text().split()
            # Creates the account on first run (or on a new database); never resets a changed password.
            # --opt=value: a generated password may start with "-", which argparse would take for a flag.
            manage("pefs_admin", f"--username={username}", f"--password={password}", "--if-missing", env=env)
            procs.add("worker", subprocess.Popen(
                [PY, "-m", "celery", "-A", "pefs_web", "worker", "-B", "-Q", "gpu,default", "-c", "1",
                 "--loglevel", "INFO", "-n", "worker@%h", "--schedule", str(data_dir / "celerybeat")],
                env=env, cwd=BASE_DIR))
            web = procs.add("web", subprocess.Popen(
                [PY, "-m", "daphne", "-b", host, "-p", str(port), "pefs_web.asgi:application"],
                env=env, cwd=BASE_DIR))
            wait_for_port(host, port, web)
            print(f"\nPEFS is running at http://{host}:{port}/  (log in as {username} / {password})\n"
                  "Press Ctrl-C to stop every process.\n", flush=True)
            while all(proc.poll() is None for _, proc in procs.children):
                time.sleep(0.5)
            dead = [name for name, proc in procs.children if proc.poll() is not None]
            print(f"Stopping: {', '.join(dead)} exited.", flush=True)
            return 1
    except KeyboardInterrupt:
        return 0


def test(pytest_args: list[str]) -> int:
    with environment_with_redis() as (env, _):
        return subprocess.run([PY, "-m", "pytest", *pytest_args], env=env, cwd=BASE_DIR).returncode


def bench() -> int:
    """Every bench/*.py in turn (each prints one JSON line last), with Redis available."""
    with environment_with_redis() as (env, _):
        for script in sorted((BASE_DIR / "bench").glob("*.py")):
            print(f"== {script.relative_to(BASE_DIR)}", flush=True)
            code = subprocess.run([PY, str(script)], env=env, cwd=BASE_DIR).returncode
            if code:
                return code
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pefs_web.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start Redis, a Celery worker and Daphne")
    run_parser.add_argument("--host", default=os.environ.get("PEFS_HOST", "127.0.0.1"))
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("PEFS_PORT", "8000")))
    sub.add_parser("test", help="run pytest with Redis available")
    sub.add_parser("bench", help="run every benchmark in bench/ with Redis available")
    args, rest = parser.parse_known_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if args.command == "run":
        return run(args.host, args.port)
    if args.command == "bench":
        return bench()
    return test(rest)


if __name__ == "__main__":
    sys.exit(main())
