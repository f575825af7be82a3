"""bench/report_figure.py draws a committed study's final figure from its report.json with the
dashboard's own chart code (the numbers it feeds the chart; Chromium's screenshot is not tested here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import report_figure  # noqa: E402

STUDY2 = ROOT / "docs" / "study" / "study2" / "report.json"


def test_the_bars_are_the_reports_arms_in_the_pages_order_with_its_numbers():
    report = json.loads(STUDY2.read_text())
    data = report_figure.bars(report)
    rows = {row["arm"]: row for row in report["final"]["results"]["rows"]}
    assert data["tasks"] == [*report["final"]["results"]["tasks"], "average"]
    assert [g["arm"] for g in data["groups"]][0] == "selected" and {g["arm"] for g in data["groups"]} == set(rows)
    for group in data["groups"]:
        assert group["values"]["average"]["mean"] == rows[group["arm"]]["average"]["mean"]
        for task in report["final"]["results"]["tasks"]:
            assert group["values"][task]["std"] == rows[group["arm"]]["per_task"][task]["std"]
    assert data["groups"][0]["name"] == "Selected design"
    page = report_figure.page(data, "t")
    assert "PEFS.charts.groupedBars" in page and "<script src" not in page  # both scripts inline: nothing fetched


def test_a_report_without_a_final_stage_is_refused():
    with pytest.raises(SystemExit, match="final.results has no rows"):
        report_figure.bars({"final": None})
