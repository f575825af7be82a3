"""Pages under concurrency: 50 logged-in clients at the search page, the trials API and the charts.

Serving: as ``make run`` serves pages and the API (pefs_web/serving.py): ``--processes``
gunicorn processes (default ``make run``'s: PEFS_WEB_PROCESSES, else cores + 1) with its asyncio
ASGI worker on the ASGI application (``--sync``: synchronous workers on the WSGI application, as
behind a buffering proxy), on one port of 127.0.0.1, beside the same Redis the WebSockets use; DEBUG off;
static files collected first and served by WhiteNoise with their gzip copies. The command line is
in the JSON line. (The WebSockets, on the same server, are measured by bench/live_latency.py.)

Data: one search with ``--trials`` finished trials (default 500) and ``--points`` metric points
each (default 100: 50,000), seeded as bench/dashboard_scale.py seeds its search.

Load: ``--clients`` concurrent users (default 50, each with its own session and one keep-alive
connection, asyncio + httpx2 in this process) repeat, for ``--seconds`` (default 60): the search
page, the chart data (searches/<id>/charts.json), the trials API (first page sorted by score),
pausing ``--think-ms`` (default 1,000) after each response, as a person reading the page would;
starts are spread over the first pause. Requests started in the first ``--warmup-seconds``
(default 5) are not counted (each server process compiles templates on first use). An error is
any status other than 200, or no answer within 30 s.

Static files: the bench probes pefs.css and plotly.min.js with ``Accept-Encoding: gzip`` and
reports what is sent.

Reported (the last line, one JSON object): per endpoint n, p50/p95/p99/max and errors; requests
per second; the CPU seconds of each server process and of this client process (it shares the 2
cores with the server); load
average before and after. Targets: search page p95 <= 500 ms, trials API p95 <= 200 ms, 0 errors.

    .venv/bin/python bench/web_load.py [--clients 50] [--seconds 60] [--think-ms 1000] [--processes 3] [--sync]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Environment, Server, bounded, load_average, migrate, session_cookie, summary  # noqa: E402

TARGETS_P95_MS = {"search_page": 500.0, "trials_api": 200.0}
REQUEST_TIMEOUT_S = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=bounded(1, 200), default=50, help="concurrent users (1-200)")
    parser.add_argument("--seconds", type=bounded(1, 600), default=60, help="how long they load the server (1-600)")
    parser.add_argument("--think-ms", type=bounded(0, 30_000), default=1000,
                        help="pause after each response, ms (0-30,000)")
    parser.add_argument("--warmup-seconds", type=bounded(0, 60), default=5, help="not counted at the start (0-60)")
    from pefs_web.serving import web_processes

    parser.add_argument("--processes", type=bounded(1, 16), default=web_processes(dict(os.environ)),
                        help="gunicorn workers (1-16; default make run's: PEFS_WEB_PROCESSES, else cores + 1)")
    parser.add_argument("--sync", action="store_true",
                        help="synchronous gunicorn workers on the WSGI application (behind a buffering proxy)")
    parser.add_argument("--trials", type=bounded(1, 20_000), default=500, help="trials of the search (1-20,000)")
    parser.add_argument("--points", type=bounded(3, 1000), default=100, help="metric points per trial (3-1,000)")
    return parser.parse_args(argv)


def tally(records: list[tuple[str, float, float, int, int]], *, counted_from: float) -> dict[str, dict]:
    """Per endpoint: timing summary, errors and mean bytes of (endpoint, started, ms, status, bytes)
    records started at or after `counted_from`; status 0 is a request that got no answer."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r[0] for r in records):
        mine = [r for r in records if r[0] == name and r[1] >= counted_from]
        answered = [r for r in mine if r[3] == 200]
        out[name] = {**summary([r[2] for r in answered]), "errors": len(mine) - len(answered),
                     "bytes": round(sum(r[4] for r in answered) / len(answered)) if answered else 0}
    return out


def verdict(endpoints: dict[str, dict]) -> bool:
    """Targets met: p95 within TARGETS_P95_MS where targeted, and no errors anywhere."""
    if any(e["errors"] for e in endpoints.values()):
        return False
    return all(endpoints.get(name, {}).get("p95_ms") is not None and endpoints[name]["p95_ms"] <= limit
               for name, limit in TARGETS_P95_MS.items())


async def user(base_url: str, cookie: str, urls: dict[str, str], *, end: float, think: float,
               records: list, rng: random.Random) -> None:
    import httpx2

    await asyncio.sleep(rng.uniform(0, think or 0.05))
    async with httpx2.AsyncClient(base_url=base_url, cookies={"sessionid": cookie}, timeout=REQUEST_TIMEOUT_S,
                                  limits=httpx2.Limits(max_connections=1), follow_redirects=False) as client:
        while time.monotonic() < end:
            for name, url in urls.items():
                started = time.monotonic()
                if started >= end:
                    return
                try:
                    response = await client.get(url)
                    status, size = response.status_code, len(response.content)
                except httpx2.HTTPError:
                    status, size = 0, 0
                records.append((name, started, (time.monotonic() - started) * 1000.0, status, size))
                await asyncio.sleep(think)


async def load(base_url: str, cookies: list[str], urls: dict[str, str], *, seconds: float,
               think: float) -> tuple[list, float]:
    records: list = []
    started = time.monotonic()
    rng = random.Random(0)
    await asyncio.gather(*(user(base_url, cookie, urls, end=started + seconds, think=think, records=records,
                                rng=rng) for cookie in cookies))
    return records, started


def probe_static(base_url: str) -> dict[str, dict]:
    """What a browser gets for two static files when it accepts gzip."""
    import httpx2

    out = {}
    with httpx2.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        for label, path in (("pefs_css", "/static/pefs/css/pefs.css"), ("plotly_js", "/static/vendor/plotly.min.js")):
            # Raw bytes on the wire: stream and count before any decoding.
            with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as response:
                wire = sum(len(chunk) for chunk in response.iter_raw())
                out[label] = {"status": response.status_code, "bytes_sent": wire,
                              "content_encoding": response.headers.get("content-encoding", "none")}
    return out


def run(args: argparse.Namespace, env: Environment) -> dict:
    from django.urls import reverse

    from bench.dashboard_scale import seed

    load_before = load_average()
    migrate_s = migrate()
    seeded = seed(trials=args.trials, points_per_trial=args.points)
    search = seeded["search"]
    cookies = [session_cookie(seeded["user"]) for _ in range(args.clients)]
    urls = {"search_page": reverse("search-detail", kwargs={"search_id": search.pk}),
            "chart_data": reverse("search-charts", kwargs={"search_id": search.pk}),
            "trials_api": f"/api/searches/{search.pk}/trials/?ordering=-score"}
    from django.db import connections

    connections.close_all()
    processes = args.processes
    server = Server(log_path=env.workdir / "web.log", processes=processes, sync=args.sync)
    try:
        server.wait_ready()
        static = probe_static(server.url)
        cpu_before = time.process_time()
        records, started = asyncio.run(load(server.url, cookies, urls, seconds=args.warmup_seconds + args.seconds,
                                            think=args.think_ms / 1000.0))
        client_cpu_s = time.process_time() - cpu_before
        server_cpu_s = server.cpu_seconds()
    finally:
        server.stop()
    endpoints = tally(records, counted_from=started + args.warmup_seconds)
    counted = sum(e["n"] + e["errors"] for e in endpoints.values())
    return {
        "bench": "web_load", "database": env.database,
        "server": server.command, "processes": processes,
        "clients": args.clients, "seconds": args.seconds, "think_ms": args.think_ms, "trials": args.trials,
        "points": seeded["points"], "requests": counted, "requests_per_s": round(counted / args.seconds, 1),
        **endpoints, "errors": sum(e["errors"] for e in endpoints.values()),
        "targets_p95_ms": TARGETS_P95_MS, "ok": verdict(endpoints), "static": static,
        "client_cpu_s": round(client_cpu_s, 1), "server_cpu_s": server_cpu_s, "migrate_s": round(migrate_s, 1),
        "load_before": load_before, "load_after": load_average(),
    }


def main() -> None:
    args = parse_args()
    with Environment("web") as env:
        result = run(args, env)
    for name in ("search_page", "chart_data", "trials_api"):
        e = result.get(name, {})
        print(f"{name:>12}: n {e.get('n')}  p50 {e.get('p50_ms')} ms  p95 {e.get('p95_ms')} ms  "
              f"p99 {e.get('p99_ms')} ms  errors {e.get('errors')}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
