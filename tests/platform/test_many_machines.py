"""Several machines played on this one: the web and two Celery workers share nothing but the
database, Redis and an S3-compatible bucket (moto's standalone server, started here).

Each worker has its own working directory and PEFS_DATA_DIR; the web side (this test process,
through Django's test client) has its own too. An upload goes through the web into the bucket, the
workers train from their own cached copies of it, write each standing trial's weights to the bucket,
and the web serves every result file from the bucket.
"""
from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import environ
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from experiments import services
from experiments.models import Artifact, MetricPoint, Search, Trial
from pefs_web.engine_wheel import wheel_name
from pefs_web.file_storage import storages_from_env
from pefs_web.supervisor import spawn
from tests.conftest import BASE_DIR, WorkerProcess, _free_port, subprocess_env
from tests.experiments.test_system import SYSTEM_OVERRIDES, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow]

BUCKET = "pefs-test"
S3_ENV = {"PEFS_STORAGE": "s3", "PEFS_S3_BUCKET": BUCKET, "PEFS_S3_REGION": "us-east-1",
          "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# What a machine's own PEFS_DATA_DIR may hold besides its cached copies and its scratch folder
# (settings creates a secret key and an empty static folder in every data directory).
# Successive halving's rung checkpoints are a worker's own scratch too (off in this search).
MACHINE_LOCAL = {"cache", "scratch", "checkpoints", "staticfiles", "secret_key"}


def _rows(count: int) -> str:
    words = ["fine", "great", "dull", "awful", "lovely", "bad"]
    return "".join(f"the film was {words[i % 6]} number {i},{int(i % 6 in (0, 1, 4))}\n" for i in range(count))


TRAIN_CSV = "text,label\n" + _rows(96)
REPORT_CSV = "text,label\n" + _rows(40)


class MachineWorker(WorkerProcess):
    """A worker process started in its own working directory, under a node name of its own."""

    def __init__(self, *, node: str, cwd: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.node, self.cwd = node, cwd

    def start(self) -> "MachineWorker":
        args = [sys.executable, "-m", "celery", "-A", "pefs_web", "worker", "-Q", self.queues, "-c", "1",
                "--pool", self.pool, "--loglevel", "INFO", "-n", f"{self.node}@%h", "--without-gossip",
                "--without-mingle", "-B", "--schedule", str(self.log_path.with_suffix(".beat"))]
        with open(self.log_path, "ab") as log:
            self.proc = spawn(args, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        return self


@pytest.fixture
def s3_server(tmp_path):
    """moto's S3 server on a free port, with an empty bucket; yields (endpoint URL, its log path)."""
    import boto3

    port, log_path = _free_port(), tmp_path / "moto.log"
    (tmp_path / "s3").mkdir()
    with open(log_path, "ab") as log:
        proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                     env=subprocess_env("redis://unused"), cwd=tmp_path / "s3", stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    try:
        wait_for(lambda: _bucket_created(client), timeout=60, interval=0.3, what="the S3 server")
        yield endpoint, log_path, client
    finally:
        from pefs_web.supervisor import stop_process_tree

        stop_process_tree(proc, grace=5)


def _bucket_created(client) -> bool:
    try:
        client.create_bucket(Bucket=BUCKET)
    except Exception as exc:  # not listening yet
        return "BucketAlreadyOwnedByYou" in str(exc)
    return True


@pytest.fixture
def web_machine(settings, tmp_path, monkeypatch, s3_server):
    """This test process as the web machine: its storages are the bucket, its data folder its own."""
    endpoint = s3_server[0]
    for name, value in {**S3_ENV, "PEFS_S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "web"
    data.mkdir()
    settings.DATA_DIR, settings.PEFS_CACHE_DIR = data, data / "cache"
    settings.MEDIA_ROOT, settings.UPLOAD_ROOT = data / "artifacts", data / "uploads"
    settings.STORAGES = storages_from_env(environ.Env())
    return data


def _upload(api: APIClient) -> int:
    def named(text: str, name: str) -> io.BytesIO:
        handle = io.BytesIO(text.encode())
        handle.name = name
        return handle

    response = api.post(reverse("api:task-list"), {
        "file": named(TRAIN_CSV, "films.csv"), "report_file": named(REPORT_CSV, "films-report.csv"),
        "name": "films", "text_columns": "text", "label_column": "label"}, format="multipart")
    assert response.status_code == 201, response.content[:500]
    return response.json()["id"]


def _download(api: APIClient, url: str) -> bytes:
    response = api.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    return b"".join(response.streaming_content) if response.streaming else response.content


def _gets(log_path: Path, key: str) -> int:
    """How many times the S3 server answered a GET of ``key`` (its request log)."""
    return len(re.findall(rf'"GET /{BUCKET}/{re.escape(key)}[ ?]', log_path.read_text(errors="replace")))


@pytest.mark.timeout(600)
def test_two_workers_and_the_web_share_only_the_database_redis_and_a_bucket(
        user, tiny_backbone, web_machine, s3_server, worker_factory, redis_url, tmp_path):
    endpoint, s3_log, s3 = s3_server
    api = APIClient()
    api.force_authenticate(user)
    # Given a task uploaded through the web (training and report files): stored in the bucket only
    from experiments.models import Task

    task = Task.objects.get(pk=_upload(api))
    upload_keys = [f"uploads/{task.spec[key]}" for key in ("train_path", "eval_path")]
    assert all(s3.head_object(Bucket=BUCKET, Key=key) for key in upload_keys)
    # ...and two workers, each in its own working directory with its own PEFS_DATA_DIR
    machines = {}
    for node in ("machine-a", "machine-b"):
        root = tmp_path / node
        (root / "cwd").mkdir(parents=True)
        env = subprocess_env(redis_url, **S3_ENV, PEFS_S3_ENDPOINT_URL=endpoint, PEFS_DATA_DIR=str(root / "data"),
                             PYTHONPATH=str(BASE_DIR))
        machines[node] = MachineWorker(node=node, cwd=root / "cwd", env=env, log_path=root / "worker.log").start()
    logs = list(machines.values())
    try:
        # When a search runs on them
        search = services.search_create(owner=user, name="machines", tasks=[task], backbone=tiny_backbone,
                                        budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                        overrides=SYSTEM_OVERRIDES, auto_approve=True,
                                        seed=7)
        # ...both take trials, and machine-a is killed outright in the middle of one
        wait_for(lambda: {w.split(":")[-1].split("@")[0] for w in Trial.objects.filter(
            search=search, status=Trial.Status.SUCCEEDED).values_list("worker", flat=True)} >= set(machines),
            timeout=300, interval=0.3, what="trials finished on both workers", logs=logs)
        wait_for(lambda: Trial.objects.filter(search=search, status=Trial.Status.RUNNING,
                                              worker__contains="machine-a@").exists(),
                 timeout=300, interval=0.05, what="a running trial on machine-a", logs=logs)
        machines["machine-a"].kill()
        killed = Trial.objects.filter(search=search, status=Trial.Status.RUNNING, worker__contains="machine-a@").first()
        assert killed is not None, "machine-a's trial finished before the kill; nothing was killed mid-trial"
        done = wait_for(lambda: Search.objects.filter(pk=search.pk, status__in=["completed", "failed", "blocked"])
                        .first(), timeout=420, what="the search to complete", logs=logs)
    finally:
        for worker in machines.values():
            worker.stop()
    # Then the search completed, the killed trial on machine-b's retry, every trial with one result
    assert done.status == Search.Status.COMPLETED, done.error
    killed.refresh_from_db()
    assert killed.status == Trial.Status.SUCCEEDED and killed.attempt > 1 and "machine-b@" in killed.worker
    trials = Trial.objects.filter(search=search)
    assert not trials.exclude(status__in=[Trial.Status.SUCCEEDED, Trial.Status.CANCELLED]).exists()
    for trial in trials.filter(status=Trial.Status.SUCCEEDED):
        rows = list(MetricPoint.objects.filter(trial=trial, attempt=trial.attempt).values_list("step", "name"))
        assert len(rows) == len(set(rows)), f"trial {trial.pk} has a (step, name) twice"
    # ...every result file downloads from the web, byte for byte what the artifact row records
    artifacts = {(a.kind, a.task): a for a in Artifact.objects.filter(search=search)}
    assert {Artifact.Kind.DESIGN, Artifact.Kind.WEIGHTS, Artifact.Kind.REPORT_JSON,
            Artifact.Kind.REPORT_MD} <= {kind for kind, _ in artifacts}
    urls = {Artifact.Kind.DESIGN: reverse("api:download", args=[search.pk, "design.json"]),
            Artifact.Kind.REPORT_JSON: reverse("api:download", args=[search.pk, "report.json"]),
            Artifact.Kind.REPORT_MD: reverse("api:download", args=[search.pk, "report.md"]),
            Artifact.Kind.WEIGHTS: reverse("api:download-weights", args=[search.pk, task.name]),
            Artifact.Kind.PEFT_EXPORT: reverse("api:download-peft", args=[search.pk, task.name])}
    for (kind, _), artifact in artifacts.items():
        assert hashlib.sha256(_download(api, urls[kind])).hexdigest() == artifact.sha256, kind
        assert s3.head_object(Bucket=BUCKET, Key=f"artifacts/{artifact.path}")["ContentLength"] == artifact.size_bytes
    assert _download(api, reverse("api:engine-wheel", args=[wheel_name()]))[:2] == b"PK"
    # ...and nothing was read from another machine's folder: the web's holds no artifacts or uploads,
    # each worker's only its cache (one copy of each uploaded file, read from the bucket once) and scratch
    assert not (web_machine / "artifacts").exists() and not (web_machine / "uploads").exists()
    for node in machines:
        data = tmp_path / node / "data"
        assert {p.name for p in data.iterdir()} <= MACHINE_LOCAL, node
        cached = sorted(p.name for p in (data / "cache" / "uploads").rglob("*") if p.is_file())
        assert len(cached) == 2 and not any(p.name.startswith(".partial") for p in (data / "cache").rglob("*"))
        assert list((tmp_path / node / "cwd").iterdir()) == []
    assert not any((tmp_path / "machine-b" / "data" / "scratch").iterdir())  # standing runs' weights went up
    for key in upload_keys:
        assert _gets(s3_log, key) == len(machines), key  # once per worker, never by the web
    assert trials.filter(status=Trial.Status.SUCCEEDED).count() > 2 * len(machines)
