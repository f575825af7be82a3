"""bench/halving.py replays the committed recording of a fully trained MiniLM stage (issue 11)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_replay_reads_the_committed_recording_and_prints_one_json_line_last():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "halving.py"), "--eta", "2", "3", "--resamples", "50"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "halving" and set(result["by_eta"]) == {"2", "3"}
    # both committed recordings: one learning rate for all, and the measured per-strategy rates
    assert set(result["recorded"]) == {"halving_stages.json", "halving_stages_measured.json"}
    assert {row["strategy_rates"] for row in result["stages"]} == {"one rate for all", "measured"}
    for row in result["stages"]:
        assert 0 <= row["agreement"] <= 1 and 0 <= row["full_stability"] <= 1
        assert row["trial_epochs"] < row["full_trial_epochs"] == row["trials"] * row["rungs"][-1]


def test_a_later_first_rung_is_replayed_beside_the_searchs_schedule():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "halving.py"), "--eta", "3", "--min-epochs", "1", "3",
                           "--resamples", "20"], capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["by_eta"]) == {"3", "3, first rung >= 3"}
    later = [row for row in result["stages"] if row["schedule"] == "3, first rung >= 3"]
    assert later and all(row["rungs"][0] >= 3 for row in later)
    assert all(row["rungs"][0] == 1 for row in result["stages"] if row["schedule"] == "3")


def test_record_writes_one_file():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "halving.py"), "record", "--file", "a.json", "b.json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "--file: record writes one file" in done.stderr


def test_flags_are_bounded():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "halving.py"), "--resamples", "1000000"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "--resamples must be from 1 to 100000" in done.stderr
