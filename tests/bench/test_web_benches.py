"""The web benchmarks' pure parts: bounded flags, percentiles, latency matching and tallies.

No benchmark runs here: these check the arithmetic and the flag limits the JSON lines rest on.
"""
from __future__ import annotations

import argparse

import pytest

from bench import dashboard_scale, live_latency, web_load
from bench.harness import bounded, is_postgres, percentile, summary, with_database

# Every typed number of the three benches, with its upper bound.
FLAG_LIMITS = [
    (live_latency, "--seconds", 600), (live_latency, "--rate", 2000), (live_latency, "--searches", 16),
    (live_latency, "--clients-per-search", 16), (live_latency, "--trials-per-search", 64), (live_latency, "--processes", 16),
    (web_load, "--clients", 200), (web_load, "--seconds", 600), (web_load, "--think-ms", 30_000),
    (web_load, "--warmup-seconds", 60), (web_load, "--processes", 16), (web_load, "--trials", 20_000),
    (web_load, "--points", 1000),
    (dashboard_scale, "--trials", 100_000), (dashboard_scale, "--points", 1000), (dashboard_scale, "--requests", 1000),
]


@pytest.mark.parametrize(("bench", "flag", "limit"), FLAG_LIMITS)
def test_each_flag_takes_its_upper_bound_and_refuses_one_more_naming_the_flag(bench, flag, limit, capsys):
    dest = flag.lstrip("-").replace("-", "_")
    assert getattr(bench.parse_args([flag, str(limit)]), dest) == limit
    with pytest.raises(SystemExit):
        bench.parse_args([flag, str(limit + 1)])
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize("bench", [live_latency, web_load, dashboard_scale])
def test_every_numeric_flag_of_a_bench_is_in_the_bounds_table(bench):
    parser_flags = {flag for b, flag, _ in FLAG_LIMITS if b is bench}
    defaults = vars(bench.parse_args([]))
    typed = {name for name, value in defaults.items() if isinstance(value, int) and not isinstance(value, bool)}
    assert {f"--{name.replace('_', '-')}" for name in typed} == parser_flags  # a switch (--sync) types no number


def test_bounded_refuses_text_and_nan_with_the_range():
    parse = bounded(0.0, 1.0, float)
    assert parse("0.5") == 0.5
    for text in ("abc", "nan", "-0.1", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="from 0.0 to 1.0"):
            parse(text)


def test_percentile_is_nearest_rank_and_returns_an_observed_value():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0, 3.0, 5.0], 0.5) == 5.0  # unsorted input
    assert percentile([4.0], 0.95) == 4.0


def test_percentile_refuses_no_values_and_a_bad_quantile():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 0.0)


def test_summary_of_timings_and_of_none():
    assert summary([]) == {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    assert summary([30.0, 10.04, 20.0]) == {"n": 3, "p50_ms": 20.0, "p95_ms": 30.0, "p99_ms": 30.0, "max_ms": 30.0}


def test_a_postgres_url_gets_the_bench_database_and_keeps_the_rest():
    url = "postgres://postgres:secret@127.0.0.1:5433/test?sslmode=disable"
    assert is_postgres(url) and is_postgres("postgresql://h/db")
    assert not is_postgres("sqlite:////tmp/x.sqlite3") and not is_postgres(None)
    assert with_database(url, "pefs_bench_42") == "postgres://postgres:secret@127.0.0.1:5433/pefs_bench_42?sslmode=disable"


def test_latency_is_receive_time_minus_the_send_time_carried_as_the_value():
    message = {"type": "trial.metric", "trial": 7, "attempt": 1, "stage": 2,
               "points": [[3, "sst2:loss", 100.0], [3, "sst2:accuracy", 0.5], [4, "sst2:loss", 100.2]]}
    latencies = live_latency.point_latencies(message, received_at=100.25)
    assert [(trial, step) for trial, step, _ in latencies] == [(7, 3), (7, 4)]  # other metrics are not clocks
    assert [round(ms, 3) for _, _, ms in latencies] == [250.0, 50.0]
    assert live_latency.point_latencies({"type": "trial.status", "trial": {}}, received_at=1.0) == []


def test_a_publisher_sends_rate_times_seconds_events_and_at_least_one():
    assert live_latency.schedule(50, 30) == 1500
    assert live_latency.schedule(0.25, 2) == 1


def test_tally_counts_only_after_the_warmup_and_errors_apart_from_timings():
    records = [("search_page", 0.5, 900.0, 200, 100),  # warm-up: not counted
               ("search_page", 2.0, 100.0, 200, 100), ("search_page", 3.0, 300.0, 200, 300),
               ("trials_api", 2.5, 30000.0, 0, 0), ("trials_api", 2.6, 50.0, 200, 10),
               ("trials_api", 2.7, 40.0, 302, 0)]
    endpoints = web_load.tally(records, counted_from=1.0)
    assert endpoints["search_page"] == {"n": 2, "p50_ms": 100.0, "p95_ms": 300.0, "p99_ms": 300.0,
                                        "max_ms": 300.0, "errors": 0, "bytes": 200}
    assert endpoints["trials_api"]["n"] == 1 and endpoints["trials_api"]["errors"] == 2
    assert not web_load.verdict(endpoints)  # errors fail the run
    endpoints["trials_api"]["errors"] = 0
    assert web_load.verdict(endpoints)
    endpoints["trials_api"]["p95_ms"] = 201.0
    assert not web_load.verdict(endpoints)
