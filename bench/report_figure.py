"""The final report's figure from a finished search's report.json, drawn by the dashboard's own code.

The report page (templates/experiments/search_report.html) draws each arm's mean ± std over seeds
per task and on average with ``PEFS.charts.groupedBars`` (static/pefs/js/charts.js) on the
plotly.js that the plotly package ships. This script feeds that same function the numbers of
``final.results`` in a report.json (what ``pefs_search --out DIR`` wrote), arms named and ordered as
the page orders them (experiments.pages.final_report), and has headless Chromium save the chart as a
PNG: the figure of a study whose database is gone, e.g. the committed second study::

    .venv/bin/python bench/report_figure.py docs/study/study2/report.json docs/study/study2/final-report.png

It needs Chromium (``apt-get install chromium``; ``--chromium`` names another binary). Nothing is
fetched: both scripts are inlined into one local page. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 1200, 560


def bars(report: dict) -> dict:
    """``{"tasks": [..., "average"], "groups": [{name, arm, values}]}``, as experiments.pages.report_page
    builds it, from report.json's ``final.results``."""
    from experiments.pages import ARM_NAMES  # noqa: PLC0415 (needs Django set up)

    results = ((report.get("final") or {}).get("results")) or {}
    rows = results.get("rows") or []
    if not rows:
        raise SystemExit("report.json: final.results has no rows (did the final stage finish?)")
    rows = sorted(rows, key=lambda row: row["arm"] != "selected")
    groups = [{"name": ARM_NAMES.get(row["arm"], row["arm"]), "arm": row["arm"],
               "values": {**row["per_task"], "average": row["average"]}} for row in rows]
    return {"tasks": [*results["tasks"], "average"], "groups": groups}


def page(data: dict, title: str) -> str:
    from pefs_web.static_finders import PACKAGE_FILES  # the plotly.js the pages are served
    from tasks.peft.strategies import ui_description

    plotly_js = PACKAGE_FILES["vendor/plotly.min.js"]().read_text()
    charts_js = (ROOT / "static" / "pefs" / "js" / "charts.js").read_text()
    strategies = json.dumps(ui_description())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{margin:0;background:#fff;font-family:system-ui,sans-serif;color:#1c2430}}
h1{{font-size:17px;margin:14px 20px 0}}.modebar{{display:none}}#chart{{width:{WIDTH}px;height:{HEIGHT - 40}px}}</style>
<script id="pefs-strategies" type="application/json">{strategies}</script>
<script>{plotly_js}</script><script>{charts_js}</script></head>
<body><h1>{title}</h1><div id="chart"></div>
<script>PEFS.charts.groupedBars(document.getElementById("chart"), {json.dumps(data["groups"])},
{json.dumps(data["tasks"])});</script></body></html>"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path, help="a report.json written by pefs_search --out")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
    import django

    django.setup()
    try:
        report = json.loads(args.report.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        parser.error(f"report: {exc}")
    data = bars(report)
    search = report.get("search") or {}
    title = (f"{search.get('name', 'search')}: selected design vs baselines on the report set "
             "(score 0-100, mean ± std over seeds)")
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp, "figure.html")
        html.write_text(page(data, title))
        shot = Path(tmp, "figure.png")
        subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=10000",
                        f"--screenshot={shot}", html.as_uri()], check=True, capture_output=True, timeout=120)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, args.out)
    averages = {g["arm"]: round(g["values"]["average"]["mean"], 2) for g in data["groups"]}
    print(json.dumps({"benchmark": "report_figure", "out": str(args.out), "arms": averages,
                      "bytes": args.out.stat().st_size}))


if __name__ == "__main__":
    main()
