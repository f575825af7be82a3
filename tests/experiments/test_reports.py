"""The report (JSON and Markdown) says what every number is: both parameter counts, each arm's
learning rate and its grid, which examples each number was scored on, decisions made without
training."""
from __future__ import annotations

import pytest

from experiments import selectors
from experiments.models import Trial
from experiments.reports import report_json, report_markdown
from experiments.space import DesignSpace
from tests.factories import SearchFactory, StageFactory, TrialFactory

pytestmark = pytest.mark.django_db

SELECTION_SET = {"role": "selection", "split": "train", "pool": 6735, "count": 64, "seed": 0, "held_out": True,
                 "split_seed": 0,
                 "description": "selection: 64 of 6,735 examples held out of train (split seed 0), sub-sampled "
                                "with seed 0"}
REPORT_SET = {"role": "report", "split": "validation", "pool": 872, "count": 64, "seed": 0, "held_out": False,
              "split_seed": 0, "description": "report: 64 of 872 examples from validation, sub-sampled with seed 0"}
TRAIN_SET = {"role": "train", "split": "train", "pool": 60614, "count": 32, "seed": 0, "held_out": False,
             "split_seed": 0, "description": "train: 32 of 60,614 examples from train, sub-sampled with seed 0"}


def _scores(eval_set):
    return {"sst2": {"score": 70.0, "train_set": TRAIN_SET, "eval_set": eval_set}}


@pytest.fixture
def finished_search():
    search = SearchFactory(untrained_decisions=[{
        "stage": "S1", "component": "grouping", "choice": "uniform", "recommended": "uniform", "override": False,
        "decided_by": "auto", "reason": "all 5 grouping patterns give the same layer partition: decided without "
                                        "training", "open_before": ["uniform"], "aliases": ["uniform", "spindle"],
        "label": "uniform = spindle", "trained": False}])
    space = DesignSpace.initial(num_groups=4).to_dict()
    s2 = StageFactory(search=search, order=0, key="S2", component="allocation", space=space, status="approved")
    TrialFactory(stage=s2, status="succeeded", score=60.0, scores=_scores(SELECTION_SET))
    final = StageFactory(search=search, order=1, key="final", component="", space=space, status="completed", plan={
        "parameters": {"selected": 2000, "lora": 2048}, "notes": [], "grids": {"lora": [1e-3, 3e-3]},
        "learning_rates": {"selected": 3e-3, "lora": 1e-3},
        "tuning": {"lora": {"grid": [1e-3, 3e-3], "scores": {repr(1e-3): 80.0, repr(3e-3): None}, "chosen": 1e-3,
                            "reason": "best mean selection score over tasks (80.00)"}}})
    TrialFactory(stage=final, kind="baseline", eval_role="selection", status="succeeded", score=80.0,
                 scores=_scores(SELECTION_SET), choices={"arm": "lora", "task": "sst2", "seed": 0,
                                                         "learning_rate": 1e-3})
    for arm, optimised in (("selected", 5000), ("lora", 5100)):
        TrialFactory(stage=final, kind="selected" if arm == "selected" else "baseline", status="succeeded",
                     score=75.0, seed=0, scores=_scores(REPORT_SET), optimised_params=optimised,
                     choices={"arm": arm, "task": "sst2", "seed": 0})
    final.summary = {"tasks": ["sst2"], "arms": ["selected", "lora"], "best": "selected", "rows": [
        {"arm": arm, "parameters": params, "optimised_parameters": optimised, "learning_rate": rate,
         "per_task": {"sst2": {"mean": 75.0, "std": None, "n": 1, "failed": 0}},
         "average": {"mean": 75.0, "std": None, "seeds": 1}}
        for arm, params, optimised, rate in (("selected", 2000, 5000, 3e-3), ("lora", 2048, 5100, 1e-3))]}
    final.save(update_fields=["summary"])
    return search


def test_report_json_says_which_examples_each_number_was_scored_on(finished_search):
    report = report_json(finished_search)
    s2 = next(st for st in report["stages"] if st["key"] == "S2")
    assert s2["scored_on"]["sst2"]["eval"]["role"] == "selection"
    assert report["final"]["scored_on"]["sst2"]["eval"]["role"] == "report"
    assert report["final"]["scored_on"]["sst2"]["train"]["count"] == 32
    assert report["untrained_decisions"][0]["trained"] is False


def test_report_markdown_shows_both_counts_the_rates_and_the_examples(finished_search):
    text = report_markdown(report_json(finished_search))
    assert "| stored parameters | optimised parameters | learning rate |" in text
    # both arms average 75.0: a tie, never "best" (issue 12)
    assert "| selected (tie) | 2,000 | 5,000 | 0.003 |" in text and "**best**" not in text
    assert "No best arm: selected, lora have the same average." in text
    assert "| lora | 0.001, 0.003 | 0.001: 80.00, 0.003: n/a | 0.001 |" in text
    assert "S2, sst2: selection: 64 of 6,735 examples held out of train" in text
    assert "final (report runs), sst2: report: 64 of 872 examples from validation" in text
    assert "uniform = spindle" in text and "not trained" in text


def test_final_stage_optimised_counts_report_runs_only(finished_search):
    final = finished_search.stages.get(key="final")
    TrialFactory(stage=final, kind="baseline", eval_role="selection", status="succeeded", optimised_params=99_999,
                 choices={"arm": "lora", "task": "sst2", "seed": 0})
    assert selectors.final_stage_optimised(stage=final) == {"selected": 5000, "lora": 5100}
    assert Trial.objects.filter(stage=final, eval_role="report").count() == 2
