"""What an evaluation set can resolve (issue 12): one example of n is 100/n points of an accuracy;
sets under 100 examples are flagged as too small to separate designs; final arms closer than one
example are a tie or not separable, never "best"."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from experiments.reports import evaluation_resolution, final_separation, one_example_points
from tests.experiments.test_pages_evidence import completed_final, wizard, wizard_stage
from tests.factories import TrialFactory


def rows(**means):
    return [{"arm": arm, "average": {"mean": mean}} for arm, mean in means.items()]


def test_one_example_is_100_over_n_points_of_an_accuracy():
    assert one_example_points(3, "accuracy") == pytest.approx(33.333, abs=1e-3)
    assert one_example_points(872, "f1_accuracy") == pytest.approx(0.1147, abs=1e-4)
    assert one_example_points(1000, "pearson_spearman") is None
    assert one_example_points(None, "accuracy") is None and one_example_points(0, "accuracy") is None


def test_the_resolution_of_each_task_and_of_their_average():
    resolution = evaluation_resolution(
        {"rte": {"eval_set": {"count": 50}}, "sst2": {"eval_examples": 872}},
        {"rte": "accuracy", "sst2": "accuracy"})
    assert resolution["by_task"]["rte"] == {"task": "rte", "examples": 50, "points": 2.0, "too_small": True}
    assert resolution["by_task"]["sst2"]["too_small"] is False
    # one sst2 example moves the mean of two tasks by half its points
    assert resolution["average"] == pytest.approx(100 / 872 / 2)
    assert [t["task"] for t in resolution["too_small"]] == ["rte"]
    # a stage's example sets ({"eval": ...}) read the same; a correlation has no step
    stage = evaluation_resolution({"stsb": {"eval": {"count": 300}}}, {"stsb": "pearson_spearman"})
    assert stage["by_task"]["stsb"]["examples"] == 300 and stage["average"] is None


def test_final_arms_closer_than_one_example_are_never_best():
    assert final_separation(rows(selected=70.0, lora=60.0), resolution=1.0) == {
        "best": "selected", "tied_best": [], "separation": "best"}
    assert final_separation(rows(selected=66.67, lora=66.67, bitfit=50.0), resolution=None) == {
        "best": None, "tied_best": ["selected", "lora"], "separation": "tie"}
    assert final_separation(rows(selected=66.67, lora=60.0, bitfit=20.0), resolution=33.3) == {
        "best": None, "tied_best": ["selected", "lora"], "separation": "not_separable"}
    # exactly one example apart is a difference the set resolves
    assert final_separation(rows(selected=70.0, lora=60.0), resolution=10.0)["best"] == "selected"
    assert final_separation(rows(selected=None), resolution=1.0)["separation"] is None


def report_set(count: int) -> dict:
    return {"sst2": {"score": 66.67, "eval_examples": count,
                     "eval_set": {"role": "report", "split": "validation", "pool": count, "count": count,
                                  "seed": None, "held_out": False, "split_seed": 0}}}


@pytest.mark.django_db
def test_the_report_shows_no_best_badge_for_arms_within_one_example(client, user):
    client.force_login(user)
    final = completed_final(user, {"selected": 66.67, "lora": 60.0, "bitfit": 20.0})
    TrialFactory(stage=final, kind="selected", eval_role="report", status="succeeded", score=66.67,
                 scores=report_set(3), choices={"arm": "selected", "task": "sst2", "seed": 0})
    html = client.get(reverse("search-report", args=[final.search.pk])).content.decode()
    table = re.search(r'<table class="data" id="report-table">.*?</table>', html, re.S).group(0)
    assert 'class="tag rec">best' not in table
    assert table.count('class="tag warn">not separable') == 2
    assert 'data-resolution="sst2">one example = 33.33 points' in table
    assert "not separable: selected, lora" in html
    assert 'id="report-too-small"' in html and "sst2 was scored on 3 examples" in html


@pytest.mark.django_db
def test_the_report_badges_best_when_the_set_resolves_the_difference(client, user):
    client.force_login(user)
    final = completed_final(user, {"selected": 76.0, "lora": 73.0})
    TrialFactory(stage=final, kind="selected", eval_role="report", status="succeeded", score=76.0,
                 scores=report_set(872), choices={"arm": "selected", "task": "sst2", "seed": 0})
    html = client.get(reverse("search-report", args=[final.search.pk])).content.decode()
    table = re.search(r'<table class="data" id="report-table">.*?</table>', html, re.S).group(0)
    assert table.count('class="tag rec">best') == 1
    assert "one example = 0.11 points" in table and 'id="report-too-small"' not in html


@pytest.mark.django_db
def test_the_wizard_says_what_one_example_is_worth_and_flags_a_small_set(client, user):
    client.force_login(user)
    stage = wizard_stage(user, {"increasing": [60, 62], "uniform": [70, 71], "spindle": [80, 81],
                                "bottleneck": [50, 52]})
    TrialFactory(stage=stage, status="succeeded", score=60.0, scores={"sst2": {
        "score": 60.0, "eval_set": {"role": "selection", "split": "train", "pool": 30, "count": 30, "seed": None,
                                    "held_out": True, "split_seed": 0}}})
    html = wizard(client, stage)
    assert "30 sst2 examples (one example = 3.33 points)" in re.search(
        r'id="stage-resolution">.*?</p>', html, re.S).group(0)
    assert 'id="stage-too-small"' in html and "Too small to separate designs" in html
