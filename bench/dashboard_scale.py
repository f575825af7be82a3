"""Dashboard at scale: one search with 10,000 finished trials and 1,000,000 metric points.

Seeds a throwaway database, then measures, with Django's test Client (server time: the request
goes through the whole middleware stack in this process, no network), the search page, the trial
list API (first page sorted by score), the metrics API for the stage, the search API and the
chart data (searches/<id>/charts.json: the parallel-coordinates and Pareto charts' columns):
p50/p95 over 20 requests after 2 warm-ups, the bytes of each response as sent (``bytes``: PEFS
serves responses uncompressed) and gzipped at level 6 (``gzip_bytes``: what a compressing proxy
or middleware would send). Targets: p95 <= 300 ms and <= 1 MB as sent.

Database (bench/harness.py): a fresh SQLite file in a temporary folder; or, when DATABASE_URL (or
PEFS_BENCH_DATABASE_URL) points at a PostgreSQL server, a database of its own created there and
dropped at the end (the database the URL names is left alone).

    .venv/bin/python bench/dashboard_scale.py [--trials 10000] [--points 100] [--requests 20]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/dashboard_scale.py

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Environment, bounded, load_average, migrate, summary  # noqa: E402

TARGET_MS = 300.0
TARGET_BYTES = 1_000_000


def seed(*, trials: int, points_per_trial: int, seed: int = 0) -> dict:
    """One user, search, stage and `trials` finished trials with `points_per_trial` points each."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from experiments.models import Backbone, MetricPoint, Search, Stage, Task, Trial
    from tests.factories import backbone_shape, design_document

    rng = random.Random(seed)
    user = get_user_model().objects.create_user(username="bench", password="bench-password-1")
    task = Task.objects.create(name="sst2", display_name="SST-2", source=Task.Source.BUNDLED,
                               text_columns=["sentence"], label_column="label", labels=["0", "1"])
    shape = backbone_shape(num_layers=6, hidden=384, name="all-MiniLM-L6-v2")
    backbone = Backbone.objects.create(name_or_path="all-MiniLM-L6-v2", display_name="MiniLM", model_type="bert",
                                       family="bert", num_layers=6, hidden_size=384, num_heads=12,
                                       total_params=22_700_000, shape=shape, is_default=True)
    now = timezone.now()
    search = Search.objects.create(owner=user, name="scale", backbone=backbone, budget_value=0.005,
                                   budget_params=113_500, status=Search.Status.WAITING,
                                   trials_total=trials, trials_done=trials)
    search.tasks.set([task])
    stage = Stage.objects.create(search=search, order=0, key="S1", component="grouping",
                                 space={"grouping": ["uniform", "increasing", "decreasing", "spindle"]},
                                 status=Stage.Status.AWAITING)
    Search.objects.filter(pk=search.pk).update(current_stage=stage)
    patterns = ["uniform", "increasing", "decreasing", "spindle"]
    strategies = ["adapter", "prefix", "bitfit", "lora"]

    def design() -> dict:
        layers = []
        for _ in range(6):
            chosen = rng.sample(strategies, rng.randint(0, 3))
            layers.append({name: (True if name == "bitfit" else rng.randint(1, 64)) for name in chosen})
        return design_document(num_layers=6, layers=layers, name="all-MiniLM-L6-v2")

    started = time.perf_counter()
    with transaction.atomic():
        Trial.objects.bulk_create([
            Trial(search=search, stage=stage, index=i, choices={"grouping": patterns[i % 4], "groups": 4},
                  design=design(), seed=i, status=Trial.Status.SUCCEEDED, attempt=1, score=rng.uniform(50, 90),
                  scores={"sst2": {"score": 0.0, "metrics": {"accuracy": 0.0}}},
                  trainable_params=rng.randint(100_000, 120_000), duration_s=rng.uniform(30, 300),
                  queued_at=now, started_at=now, finished_at=now)
            for i in range(trials)
        ], batch_size=2000)
    trial_ids = list(Trial.objects.filter(stage=stage).order_by("index").values_list("id", flat=True))
    trial_s = time.perf_counter() - started

    # 100 points a trial: 80 training-loss steps, 10 evaluation accuracies, 10 scores. Written with
    # executemany in 50,000-row batches: the shape of MetricRecorder's bulk inserts, without building
    # a million model instances first.
    evals = max(1, points_per_trial // 10)
    losses = points_per_trial - 2 * evals
    table = MetricPoint._meta.db_table
    columns = ", ".join(MetricPoint._meta.get_field(f).column for f in ("trial", "attempt", "step", "name", "value"))
    sql = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s)"
    started = time.perf_counter()
    batch: list[tuple] = []
    with transaction.atomic(), connection.cursor() as cursor:
        for trial_id in trial_ids:
            batch += [(trial_id, 1, step * 10, "sst2:loss", 0.7 * 0.99 ** step) for step in range(losses)]
            for e in range(evals):
                step = (e + 1) * losses * 10 // evals
                batch.append((trial_id, 1, step, "sst2:accuracy", 0.5 + 0.03 * e))
                batch.append((trial_id, 1, step, "sst2:score", 50.0 + 3 * e))
            if len(batch) >= 50_000:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
    points_s = time.perf_counter() - started
    with connection.cursor() as cursor:  # statistics as a live database has them (autovacuum, PRAGMA optimize)
        cursor.execute("ANALYZE")
    return {"user": user, "search": search, "stage": stage, "trial_seed_s": round(trial_s, 1),
            "point_seed_s": round(points_s, 1), "points": MetricPoint.objects.count()}


def measure(client, url: str, *, requests: int, warmup: int = 2) -> dict:
    times, body = [], b""
    for i in range(warmup + requests):
        started = time.perf_counter()
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {body[:300]!r}")
        if i >= warmup:
            times.append(elapsed)
    stats = summary(times)
    return {"url": url, "p50_ms": stats["p50_ms"], "p95_ms": stats["p95_ms"], "max_ms": stats["max_ms"],
            "bytes": len(body), "gzip_bytes": len(gzip.compress(body, compresslevel=6)), "requests": len(times)}


def backfill(client, url: str) -> dict:
    """Walk the metrics cursor from the start until `more` is false: what a reconnecting page pays."""
    cursor, calls, total_bytes, points = 0, 0, 0, 0
    started = time.perf_counter()
    while True:
        response = client.get(f"{url}&after={cursor}")
        body = response.json()
        calls += 1
        total_bytes += len(response.content)
        points += body["returned"]
        cursor = body["next"]
        if not body["more"]:
            break
    return {"calls": calls, "seconds": round(time.perf_counter() - started, 2), "bytes": total_bytes,
            "points_returned": points}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=bounded(1, 100_000), default=10_000, help="finished trials (1-100,000)")
    parser.add_argument("--points", type=bounded(3, 1000), default=100, help="metric points per trial (3-1,000)")
    parser.add_argument("--requests", type=bounded(1, 1000), default=20, help="timed requests per endpoint (1-1,000)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, env: Environment) -> dict:
    from django.test import Client
    from django.urls import reverse

    load_before = load_average()
    print(f"database: {env.database}; migrated in {migrate():.1f} s", flush=True)
    seeded = seed(trials=args.trials, points_per_trial=args.points)
    search, stage = seeded["search"], seeded["stage"]
    print(f"seeded {args.trials:,} trials in {seeded['trial_seed_s']} s and {seeded['points']:,} points in "
          f"{seeded['point_seed_s']} s", flush=True)

    client = Client()
    client.force_login(seeded["user"])
    from pefs_web.serving import freeze_startup_objects

    freeze_startup_objects()  # as a web process does once the application is loaded (pefs_web/wsgi.py)
    endpoints = {
        "search_page": reverse("search-detail", kwargs={"search_id": search.pk}),
        "trial_list_api": f"/api/searches/{search.pk}/trials/?ordering=-score",
        "metrics_api_stage": f"/api/searches/{search.pk}/metrics/?stage={stage.pk}",
        "search_detail_api": f"/api/searches/{search.pk}/",
        "chart_data": reverse("search-charts", kwargs={"search_id": search.pk}),
    }
    results = {}
    for name, url in endpoints.items():
        results[name] = r = measure(client, url, requests=args.requests)
        print(f"{name:>18}: p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  {r['bytes']:>10,} bytes "
              f"({r['gzip_bytes']:>9,} gzipped)  {url}", flush=True)
    results["metrics_api_stage_backfill"] = backfill(client, endpoints["metrics_api_stage"])
    print(f"metrics backfill of the whole stage: {results['metrics_api_stage_backfill']}", flush=True)

    targeted = ("search_page", "trial_list_api", "metrics_api_stage", "chart_data")
    ok = all(results[n]["p95_ms"] <= TARGET_MS and results[n]["bytes"] <= TARGET_BYTES for n in targeted)
    return {
        "bench": "dashboard_scale", "database": env.database,
        "trials": args.trials, "points": seeded["points"], "seed_s": round(seeded["trial_seed_s"] + seeded["point_seed_s"], 1),
        "target_p95_ms": TARGET_MS, "target_bytes": TARGET_BYTES, "ok": ok,
        **{name: {k: v for k, v in r.items() if k != "url"} for name, r in results.items()},
        "load_before": load_before, "load_after": load_average(),
    }


def main() -> None:
    args = parse_args()
    with Environment("dashboard") as env:
        result = run(args, env)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
