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
    # the committed recordings: one learning rate for all, the measured per-strategy rates, those
    # with the selection loss and ranking AUC after every epoch, and two with 24-step epochs
    assert set(result["recorded"]) == {"halving_stages.json", "halving_stages_measured.json", "halving_stages_auc.json",
                                       "halving_stages_384.json", "halving_stages_384_eval1000.json",
                                       "halving_stages_384_seed2.json"}
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


def test_rungs_ranked_by_the_recorded_auc_and_by_foresight_are_replayed_beside_the_score():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "halving.py"), "--eta", "3", "--rank-by", "score",
                           "auc", "oracle", "--resamples", "20"], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["by_eta"]) == {"3", "3, ranked by auc", "3, ranked by oracle"}
    rows = result["stages"]
    # only recordings with a per-epoch AUC can be ranked by it; every recording can be by foresight
    with_auc = {r["recording"] for r in rows if r["rank_by"] == "auc"}
    assert with_auc == {"halving_stages_auc.json", "halving_stages_384.json", "halving_stages_384_eval1000.json",
                        "halving_stages_384_seed2.json"}
    assert {r["recording"] for r in rows if r["rank_by"] == "oracle"} == {r["recording"] for r in rows}
    for recording in with_auc:
        recorded = json.loads((ROOT / "bench" / "data" / recording).read_text())
        assert all(len(t["aucs"]) == len(t["scores"]) for s in recorded["stages"] for t in s["trials"])
    # each signal's rank correlation with the final score after every epoch: the score's own is 1 at the end
    for row in rows:
        correlations = row["signal_correlations"]
        assert correlations["score"][-1] == 1.0 and len(correlations["score"]) == row["rungs"][-1]
        assert ("auc" in correlations) == (row["recording"] in with_auc)
        assert all(rho is None or -1 <= rho <= 1 for series in correlations.values() for rho in series)
    # the same trials and plan whatever the ranking: only the survivors differ
    for row in rows:
        twin = next(r for r in rows if r["rank_by"] == "score" and (r["recording"], r["stage_index"]) ==
                    (row["recording"], row["stage_index"]))
        assert (row["trial_epochs"], row["full_decision"]) == (twin["trial_epochs"], twin["full_decision"])
        # deciding by every design's mean at the first rung does not depend on the ranking either
        assert row["first_rung_agreement"] == twin["first_rung_agreement"] and 0 < row["first_rung_cost"] < 1


def test_a_first_rung_after_a_number_of_steps_becomes_each_recordings_epochs():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "halving.py"), "--eta", "3", "--min-epochs", "1",
                           "--min-steps", "24", "--resamples", "20"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["by_eta"]) == {"3", "3, first rung >= 24 steps"}
    later = {row["recording"]: row["rungs"] for row in result["stages"] if row["schedule"].endswith("24 steps")}
    # 128 examples at batch 16 are 8 steps an epoch: 3 epochs; 64 examples (4 steps) need 6, which leaves
    # 9 epochs no second rung at eta 3, so that stage trains in full
    assert later["halving_stages_measured.json"] == [3, 9] and later["halving_stages.json"] == [9]
    # A stage trained in full agrees by construction and saves nothing: the summary leaves it out
    summary = result["by_eta"]["3, first rung >= 24 steps"]
    in_full = sum(1 for row in result["stages"] if row["schedule"].endswith("24 steps") and len(row["rungs"]) == 1)
    assert summary["stages_in_full"] == in_full >= 2 and summary["stages_halved"] == len(result["stages"]) / 2 - in_full
    assert summary["cost_fraction"] < 1
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "halving.py"), "--min-steps", "0"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "--min-steps" in bad.stderr
