"""Shared fixtures. System fixtures start real processes: a Celery worker and the web server `make run` runs,
both pointed at the test database (a file for SQLite, test_<name> for PostgreSQL) and at the real
Redis that `make test` provides (REDIS_URL)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pefs_web.supervisor import is_alive, spawn, stop_process_tree

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_cache():
    """DRF's throttles count requests in the cache, which outlives a test's transaction: every test
    starts with no requests counted (all test clients share one address)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="mallory-password-1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A URL for the database pytest-django created, so subprocesses see the same rows."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.fail("REDIS_URL is not set: run the suite with `make test`, which provides Redis.")
    return url


def subprocess_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "pefs_web.settings",
        "HF_HUB_OFFLINE": "1",
        "PEFS_HEARTBEAT_SECONDS": "1",
        "PEFS_STALE_SECONDS": "6",
        "PEFS_SWEEP_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class WorkerProcess:
    """A real `celery worker` process (solo pool: killing it kills the trial it runs).

    It consumes every queue and runs an embedded beat unless told otherwise, so one worker is a
    whole system; with queues="gpu,default" and pool="prefork" it is the launcher's trial worker.
    """

    def __init__(self, env: dict[str, str], log_path: Path, beat: bool = True,
                 queues: str = "gpu,default,control", pool: str = "solo") -> None:
        self.env, self.log_path, self.beat, self.queues, self.pool = env, log_path, beat, queues, pool
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        args = [sys.executable, "-m", "celery", "-A", "pefs_web", "worker", "-Q", self.queues, "-c", "1",
                "--pool", self.pool, "--loglevel", "INFO", "-n", f"test-{_free_port()}@%h", "--without-gossip",
                "--without-mingle"]
        if self.beat:
            args += ["-B", "--schedule", str(self.log_path.with_suffix(".beat"))]
        with open(self.log_path, "ab") as log:
            self.proc = spawn(args, env=self.env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """Kill the worker outright, with its pool and embedded beat (SIGKILL, no shutdown)."""
        if self.proc:
            stop_process_tree(self.proc, grace=0)

    def stop(self) -> None:
        if self.proc:
            stop_process_tree(self.proc, grace=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _purge_trial_queue(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete("gpu", "default", "control", "unacked", "unacked_index")


@pytest.fixture
def worker_factory(transactional_db, redis_url, tmp_path):
    """Start real Celery worker processes against the test database; all stopped at the end."""
    _purge_trial_queue(redis_url)
    started: list[WorkerProcess] = []

    def start(*, queues: str = "gpu,default,control", beat: bool = True, pool: str = "solo",
              **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(subprocess_env(redis_url, **extra_env), tmp_path / f"worker-{len(started)}.log",
                               beat=beat, queues=queues, pool=pool).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    _purge_trial_queue(redis_url)


@pytest.fixture
def live_web(transactional_db, redis_url, tmp_path):
    """The web as `make run` serves it (pefs_web/serving.py: gunicorn's asyncio worker, HTTP and
    WebSockets on one port), one process, on a free port; yields its base URL."""
    from pefs_web.serving import gunicorn_argv

    port = _free_port()
    with open(tmp_path / "web.log", "ab") as log:
        proc = spawn(gunicorn_argv("127.0.0.1", port, 1, sys.executable),
                     env=subprocess_env(redis_url), cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "web.log").read_text())
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_tree(proc, grace=10)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised 4-layer, 32-wide BERT saved to disk with the MiniLM tokenizer.

    Workers load backbones by path, so system tests need a model on disk; this one trains a step
    in milliseconds."""
    import torch
    import transformers

    from tasks.peft.backbones import default_backbone_path

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(default_backbone_path()), local_files_only=True)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def tiny_backbone(db, tiny_model_dir):
    """The tiny model registered as a Backbone row (owner None: visible to every user)."""
    from experiments.models import Backbone
    from tasks.peft import HeadSpec, load_backbone

    # The shape backbone_introspect measures in a child process; measured here, where torch is loaded anyway.
    shape = load_backbone(str(tiny_model_dir), head=HeadSpec(problem="classification", num_labels=2)).shape
    return Backbone.objects.create(
        owner=None, name_or_path=str(tiny_model_dir), display_name="tiny-bert", model_type=shape.model_type,
        family=shape.family, num_layers=shape.num_layers, hidden_size=shape.hidden_size,
        num_heads=shape.num_heads, total_params=shape.total_params, shape=shape.to_dict())


@pytest.fixture
def bundled_tasks(db):
    from experiments.models import Task
    from experiments.services import seed_bundled

    seed_bundled(backbone=False)
    return {t.name: t for t in Task.objects.filter(owner=None)}


# Small enough that a whole search (every stage and the final comparison) trains in about a minute.
TINY_OVERRIDES = {"designs_per_stage": 6, "epochs": 1, "max_train_examples": 32, "max_eval_examples": 64,
                  "batch_size": 16, "final_seeds": 2, "final_epochs": 1, "bootstrap_resamples": 200}


def pytest_sessionfinish(session, exitstatus):
    """The suite leaves no process behind: every child still alive now is reported, killed, and
    fails the run (a fixture that forgot to stop its worker, a worker's orphaned beat)."""
    lines = []
    for proc in psutil.Process().children(recursive=True):
        if not is_alive(proc):
            continue
        try:
            lines.append(f"  pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    if not lines:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("Processes left running by the test suite (killed now):\n" + "\n".join(lines), red=True)
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
