"""Start the whole PEFS system on one machine, or run the test suite with the services it needs.

    python -m pefs_web.launch run    # Redis (embedded unless REDIS_URL), Celery workers, beat, the web
                                     # (gunicorn's asyncio workers: HTTP and WebSockets on one port;
                                     # pefs_web/serving.py)
    python -m pefs_web.launch test [pytest args]
    python -m pefs_web.launch bench [names]  # bench/<name>.py (default: the short ones)

`make run` and `make test` call this. `run` supervises its children (pefs_web.supervisor): one
that dies is restarted with backoff while the others stay up; Ctrl-C or SIGTERM stops every
process it started, their own children included.
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

from pefs_web.private_files import create_private_file, private_directory, restrict_umask
from pefs_web.serving import STATIC_COLLECTED, ensure_free, gunicorn_argv, web_processes
from pefs_web.supervisor import Supervisor

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
ADMIN_CREDENTIALS = "admin-credentials.txt"


def ensure_redis(supervisor: Supervisor, env: dict[str, str]) -> None:
    if env.get("REDIS_URL"):
        return
    from pefs_web.embedded_redis import embedded_redis_argv, free_port, redis_url, wait_for_redis

    port = free_port()
    # A restarted Redis comes back on the same port, so the URL the others hold stays right.
    supervisor.start("redis", embedded_redis_argv(data_dir(env) / "redis", port), stdout=subprocess.DEVNULL)
    url = redis_url(port)
    wait_for_redis(url)
    env["REDIS_URL"] = url
    print(f"Embedded Redis at {url}", flush=True)


def wait_for_port(host: str, port: int, procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    """Block until the server answers HTTP, so the URL we print already works."""
    import http.client

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/login/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            exited = next((p for p in procs if p.poll() is not None), None)
            if exited is not None:
                raise RuntimeError(f"the web server exited with code {exited.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not listen on {host}:{port} within {timeout:.0f} s") from None
            time.sleep(0.2)


def manage(*args: str, env: dict[str, str], stdin: str | None = None) -> None:
    subprocess.run([PY, str(BASE_DIR / "manage.py"), *args], input=stdin, text=True, check=True, env=env,
                   cwd=BASE_DIR)


def data_dir(env: dict[str, str]) -> Path:
    return Path(env.get("PEFS_DATA_DIR", BASE_DIR / "var"))


@contextlib.contextmanager
def environment_with_redis() -> Iterator[tuple[dict[str, str], Supervisor]]:
    """The environment for PEFS processes, with Redis available; stops what it started on exit."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
    env.setdefault("HF_HUB_OFFLINE", "1")
    private_directory(data_dir(env))
    supervisor = Supervisor(env=env, cwd=BASE_DIR)
    try:
        ensure_redis(supervisor, env)
        yield env, supervisor
    finally:
        # A second Ctrl-C must not cut the stop short and leave children behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        supervisor.stop()


MAX_TRIALS_PER_DEVICE = 32


def trials_per_device(env: dict[str, str]) -> int:
    """PEFS_TRIALS_PER_DEVICE (default 1): the trial worker's concurrency, from 1 to 32."""
    raw = env.get("PEFS_TRIALS_PER_DEVICE", "1")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_TRIALS_PER_DEVICE:
        raise SystemExit(f"PEFS_TRIALS_PER_DEVICE must be a whole number from 1 to {MAX_TRIALS_PER_DEVICE}, "
                         f"got {raw!r}")
    return value


def celery(*args: str) -> list[str]:
    return [PY, "-m", "celery", "-A", "pefs_web", *args, "--loglevel", "INFO"]


def admin_credentials(folder: Path) -> tuple[str, str, bool]:
    """(username, password, created): a random password the first time, kept owner-only in `folder`."""
    path = folder / ADMIN_CREDENTIALS
    created = create_private_file(path, f"admin {secrets.token_urlsafe(12)}\n")
    username, password = path.read_text().split()
    return username, password, created


def login_hint(username: str, password: str, *, created: bool, folder: Path) -> str:
    """The password is shown once, when it is made; afterwards only where it is kept."""
    if created:
        return f"log in as {username} / {password}"
    return f"log in as {username}; the password is in {folder / ADMIN_CREDENTIALS}"


def ensure_admin(env: dict[str, str], folder: Path) -> str:
    """Create the admin account on first run (or on a new database); never resets a changed password."""
    username, password, created = admin_credentials(folder)
    # Through stdin: a command line is visible to every user of the machine.
    manage("pefs_admin", f"--username={username}", "--password-file=-", "--if-missing", env=env,
           stdin=f"{password}\n")
    return login_hint(username, password, created=created, folder=folder)


def run(host: str, port: int) -> int:
    concurrency = trials_per_device(dict(os.environ))  # a bad value stops before anything starts
    try:
        processes = web_processes(dict(os.environ))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    ensure_free(host, port, "PEFS_PORT")
    try:
        with environment_with_redis() as (env, supervisor):
            manage("migrate", "--noinput", env=env)
            manage("pefs_seed", env=env)
            manage("collectstatic", "--noinput", "-v", "0", env=env)  # with gzip copies (pefs_web/serving.py)
            folder = data_dir(env)
            hint = ensure_admin(env, folder)
            # N trials at once on this machine's device, each in its own pool process (tasks.jobs).
            supervisor.start("worker", celery("worker", "-Q", "gpu,default", "-c", str(concurrency),
                                              "-n", "worker@%h"))
            # The sweep's own slot: recovering a lost trial never waits for the trial that is running.
            supervisor.start("control", celery("worker", "-Q", "control", "-c", "1", "--pool", "solo",
                                               "-n", "control@%h"))
            # Beat on its own: a worker restart never takes the schedule down with it, nor orphans it.
            supervisor.start("beat", celery("beat", "--schedule", str(folder / "celerybeat")))
            # HTTP and WebSockets on one port: gunicorn's asyncio processes (pefs_web/serving.py).
            web_env = {**env, STATIC_COLLECTED: "1"}
            web_env.pop("PEFS_WEBSOCKET_PORT", None)  # the pages' own port
            web = supervisor.start("web", gunicorn_argv(host, port, processes, PY), env=web_env)
            wait_for_port(host, port, [web])
            print(f"\nPEFS is running at http://{host}:{port}/  ({hint})\n"
                  "Press Ctrl-C to stop every process.\n", flush=True)
            supervisor.watch()
    except KeyboardInterrupt:
        pass
    return 0


def test(pytest_args: list[str]) -> int:
    with environment_with_redis() as (env, _):
        return subprocess.run([PY, "-m", "pytest", *pytest_args], env=env, cwd=BASE_DIR).returncode


# What `make bench` runs without names: the benchmarks that take minutes, not hours, on 2 CPU cores.
# The others (strategy_lr, search_overhead, halving's `record` step) are run by name.
DEFAULT_BENCHES = ("peft_step", "dashboard_scale", "ingest", "halving")


def bench(names: list[str] | None = None) -> int:
    """The named bench/*.py (default DEFAULT_BENCHES) in turn, each printing one JSON line last,
    with Redis available."""
    names = list(names or DEFAULT_BENCHES)
    unknown = [n for n in names if not (BASE_DIR / "bench" / f"{n}.py").is_file()]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; bench/ has "
              f"{', '.join(sorted(p.stem for p in (BASE_DIR / 'bench').glob('*.py')))}", file=sys.stderr)
        return 2
    with environment_with_redis() as (env, _):
        for name in names:
            print(f"== bench/{name}.py", flush=True)
            code = subprocess.run([PY, str(BASE_DIR / "bench" / f"{name}.py")], env=env, cwd=BASE_DIR).returncode
            if code:
                return code
        return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP stop the launcher and, through it, every child. SIGINT is
    set explicitly too: a process started from a non-interactive shell's background job inherits
    SIGINT ignored, and Python then leaves it ignored, so Ctrl-C (or a test's SIGINT) did nothing."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pefs_web.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start Redis, Celery workers and beat, and the web (gunicorn, Daphne), and keep them up")
    run_parser.add_argument("--host", default=os.environ.get("PEFS_HOST", "127.0.0.1"))
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("PEFS_PORT", "8000")))
    sub.add_parser("test", help="run pytest with Redis available")
    bench_parser = sub.add_parser("bench", help="run benchmarks in bench/ with Redis available")
    bench_parser.add_argument("names", nargs="*", help=f"bench/<name>.py to run (default: {' '.join(DEFAULT_BENCHES)})")
    args, rest = parser.parse_known_args(argv)
    restrict_umask()  # before anything is written; every child inherits it
    # Children run in sessions of their own, so the terminal's signals reach only this process.
    install_signal_handlers()
    if args.command == "run":
        return run(args.host, args.port)
    if args.command == "bench":
        return bench(args.names)
    return test(rest)


if __name__ == "__main__":
    sys.exit(main())
