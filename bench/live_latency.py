"""Live latency: a metric event from the worker's call to a logged-in page's WebSocket.

The path measured is the real one: publisher processes record points exactly as a trial worker
does (experiments.services.metric_points_record: bulk insert into the database, then
events.publish to the channel group "search-<id>" over Redis), and the web server (started as
``make run`` starts it: ``--processes`` gunicorn processes with the asyncio worker on pefs_web.web,
default make run's) forwards them through SearchConsumer to WebSocket clients logged in with a
session cookie, each the owner of the search it watches.

Load: ``--rate`` events per second in all (default 200), spread evenly over ``--searches``
searches (default 4), one publisher process per search (a worker per search), each event one
point of one of the search's running trials; each search is watched by ``--clients-per-search``
WebSocket clients (default 2: 8 in all). Publishers keep an absolute schedule (event k is due at
start + k / rate), so a slow call delays the next events instead of lowering the rate silently.

The send time travels in the payload: each point's value is the wall-clock time just before
metric_points_record is called (all processes read the same clock), so a client's latency for a
point is its receive time minus the value. Every client checks it got each (trial, step) of its
search once: ``lost`` counts the ones that never arrived.

Reported (the last line, one JSON object): latency p50/p95/p99/max over every (client, point),
the achieved rate, events sent, deliveries expected and received, the worker-side cost of one
metric_points_record call (p50/p95), load average before and after. Target: p95 <= 500 ms, none
lost. Database: a temporary SQLite file, or a PostgreSQL database of its own when DATABASE_URL
points at a server (bench/harness.py); Redis: REDIS_URL or an embedded one.

    .venv/bin/python bench/live_latency.py [--seconds 30] [--rate 200] [--searches 4] [--clients-per-search 2] [--processes 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Environment, Server, bounded, load_average, migrate, session_cookie, summary  # noqa: E402

TARGET_P95_MS = 500.0
METRIC = "sst2:loss"
DRAIN_S = 5.0  # after the last send, how long clients keep listening for stragglers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=bounded(1, 600), default=30, help="how long publishers send (1-600)")
    parser.add_argument("--rate", type=bounded(1, 2000), default=200, help="events per second in all (1-2000)")
    parser.add_argument("--searches", type=bounded(1, 16), default=4, help="searches, one publisher each (1-16)")
    parser.add_argument("--clients-per-search", type=bounded(1, 16), default=2,
                        help="WebSocket clients watching each search (1-16)")
    from pefs_web.serving import web_processes

    parser.add_argument("--processes", type=bounded(1, 16), default=web_processes(dict(os.environ)),
                        help="web server processes (1-16; default make run's: PEFS_WEB_PROCESSES, else cores + 1)")
    parser.add_argument("--trials-per-search", type=bounded(1, 64), default=4,
                        help="running trials per search the events cycle through (1-64)")
    return parser.parse_args(argv)


def schedule(rate: float, seconds: float) -> int:
    """How many events one publisher of `rate` events/s sends in `seconds` (event k due at k/rate)."""
    return max(1, int(rate * seconds))


def point_latencies(message: dict, received_at: float) -> list[tuple[int, int, float]]:
    """(trial, step, latency ms) for each point of a "trial.metric" message; [] for other types."""
    if message.get("type") != "trial.metric":
        return []
    return [(message["trial"], step, (received_at - value) * 1000.0)
            for step, name, value in message["points"] if name == METRIC]


# --- the publisher: one process per search, as a worker is -------------------------------------

def publish_events(search_id: int, stage_id: int, trial_ids: list[int], rate: float, count: int,
                   ready, go, start_at, results) -> None:
    """Child process: record `count` points at `rate` per second from the shared start time."""
    import django

    django.setup()
    from experiments.services import metric_points_record

    ready.put(search_id)
    go.wait()
    calls, late = [], 0
    for k in range(count):
        due = start_at.value + k / rate
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        elif wait < -0.05:
            late += 1
        sent = time.time()
        metric_points_record(trial_id=trial_ids[k % len(trial_ids)], attempt=1, search_id=search_id,
                             stage_id=stage_id, points=[(k, METRIC, sent)])
        calls.append((time.time() - sent) * 1000.0)
    results.put({"search": search_id, "sent": count, "late": late, "finished_at": time.time(), "call_ms": calls})


# --- the watchers --------------------------------------------------------------------------------

class Watchers(threading.Thread):
    """WebSocket clients in one event loop of their own: connect all, then record every point."""

    def __init__(self, url: str, origin: str, clients: list[tuple[int, str]]) -> None:
        super().__init__(daemon=True)
        self.url, self.origin, self.clients = url, origin, clients
        self.connected = threading.Event()
        self.stop_at: float | None = None  # wall-clock time set by the main thread
        self.seen: list[set[tuple[int, int]]] = [set() for _ in clients]
        self.latencies: list[float] = []
        self.duplicates = 0
        self.errors: list[str] = []

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        import websockets

        sockets = []
        try:
            for search_id, cookie in self.clients:
                sockets.append(await websockets.connect(
                    f"{self.url}/ws/searches/{search_id}/", origin=self.origin,
                    additional_headers={"Cookie": f"sessionid={cookie}"}, max_size=2 ** 22))
        except Exception as error:  # noqa: BLE001  reported, and the run fails
            self.errors.append(f"connect: {error!r}")
            self.connected.set()
            return
        self.connected.set()
        await asyncio.gather(*(self._listen(i, ws) for i, ws in enumerate(sockets)))
        for ws in sockets:
            await ws.close()

    async def _listen(self, index: int, ws) -> None:
        while self.stop_at is None or time.time() < self.stop_at:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            except Exception as error:  # noqa: BLE001  a closed socket ends this client
                self.errors.append(f"client {index}: {error!r}")
                return
            received_at = time.time()
            for trial, step, latency in point_latencies(json.loads(raw), received_at):
                if (trial, step) in self.seen[index]:
                    self.duplicates += 1
                    continue
                self.seen[index].add((trial, step))
                self.latencies.append(latency)


def seed(searches: int, trials_per_search: int) -> list[dict]:
    """One owner per search, each with one stage of running trials; returns their ids and cookie."""
    from django.contrib.auth import get_user_model

    from experiments.models import Trial
    from tests.factories import SearchFactory, StageFactory, TrialFactory

    seeded = []
    for i in range(searches):
        owner = get_user_model().objects.create_user(username=f"watcher{i}", password="bench-password-1")
        search = SearchFactory(owner=owner, name=f"live {i}")
        stage = StageFactory(search=search, order=0, key="S1")
        trials = [TrialFactory(stage=stage, index=t, status=Trial.Status.RUNNING) for t in range(trials_per_search)]
        seeded.append({"search": search.pk, "stage": stage.pk, "trials": [t.pk for t in trials],
                       "cookie": session_cookie(owner)})
    return seeded


def run(args: argparse.Namespace, env: Environment) -> dict:
    load_before = load_average()
    migrate_s = migrate()
    seeded = seed(args.searches, args.trials_per_search)
    from django.db import connections

    connections.close_all()  # the publishers open their own
    web = Server(log_path=env.workdir / "web.log", processes=args.processes)
    context = multiprocessing.get_context("spawn")
    publishers = []
    try:
        web.wait_ready()
        watchers = Watchers(web.url.replace("http://", "ws://"), web.url,
                            [(s["search"], s["cookie"]) for s in seeded for _ in range(args.clients_per_search)])
        watchers.start()
        if not watchers.connected.wait(timeout=60) or watchers.errors:
            raise RuntimeError(f"WebSocket clients could not connect: {watchers.errors}\n"
                               f"{(env.workdir / 'web.log').read_text()[-2000:]}")
        per_search_rate = args.rate / args.searches
        count = schedule(per_search_rate, args.seconds)
        ready, results, go = context.Queue(), context.Queue(), context.Event()
        start_at = context.Value("d", 0.0)
        for s in seeded:
            proc = context.Process(target=publish_events, args=(s["search"], s["stage"], s["trials"],
                                                                per_search_rate, count, ready, go, start_at,
                                                                results))
            proc.start()
            publishers.append(proc)
        for _ in seeded:
            ready.get(timeout=120)
        start_at.value = time.time() + 0.5
        go.set()
        outcomes = [results.get(timeout=args.seconds * 4 + 120) for _ in seeded]
        sent_end = max(o["finished_at"] for o in outcomes)
        watchers.stop_at = sent_end + DRAIN_S
        watchers.join(timeout=DRAIN_S + 30)
    finally:
        for proc in publishers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        web.stop()

    sent = sum(o["sent"] for o in outcomes)
    expected = sent * args.clients_per_search
    received = sum(len(seen) for seen in watchers.seen)
    latency = summary(watchers.latencies)
    calls = summary([ms for o in outcomes for ms in o["call_ms"]])
    elapsed = sent_end - start_at.value
    return {
        "bench": "live_latency", "database": env.database, "server": web.command, "processes": args.processes,
        "searches": args.searches, "clients": args.searches * args.clients_per_search, "seconds": args.seconds,
        "target_rate": args.rate, "achieved_rate": round(sent / elapsed, 1) if elapsed > 0 else None,
        "events_sent": sent, "late_sends": sum(o["late"] for o in outcomes),
        "deliveries_expected": expected, "deliveries_received": received, "lost": expected - received,
        "duplicates": watchers.duplicates, "client_errors": watchers.errors[:5],
        "latency": latency, "record_call": {k: calls[k] for k in ("p50_ms", "p95_ms", "max_ms")},
        "target_p95_ms": TARGET_P95_MS,
        "ok": latency["p95_ms"] is not None and latency["p95_ms"] <= TARGET_P95_MS and expected == received,
        "migrate_s": round(migrate_s, 1), "load_before": load_before, "load_after": load_average(),
    }


def main() -> None:
    args = parse_args()
    with Environment("live") as env:
        result = run(args, env)
    lat = result["latency"]
    print(f"{result['events_sent']} events at {result['achieved_rate']}/s to {result['clients']} clients: "
          f"p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms; lost {result['lost']}",
          flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
