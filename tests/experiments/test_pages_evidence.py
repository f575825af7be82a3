"""The fair instrument's evidence on the pages: the stage wizard names every alias of a choice,
counts each choice's successes against min_successes, never badges an under-sampled choice or a
tie, shows an insufficient stage's leader as "leading so far", the stage's planned design count
and components decided without training."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from experiments.models import Task
from experiments.space import DesignSpace, TrialOutcome, decisions_without_training, summarise
from experiments.space.presets import preset
from tests.factories import BackboneFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory

pytestmark = pytest.mark.django_db

# On 6 layers with G = 4, uniform and decreasing grouping give the same layer partition.
SPACE = DesignSpace.initial(num_groups=4, num_layers=6)
STAGE_PLAN = {"name": "S1", "component": "grouping", "choices": 4, "requested": 6, "designs": 8,
              "raised_from": 6, "min_per_choice": 2, "trained": True, "note": ""}


def sst2():
    """The sst2 task, made once per test (task names are unique)."""
    return Task.objects.filter(name="sst2").first() or TaskFactory(name="sst2")


def wizard_stage(user, scores: dict[str, list[float | None]], *, config=None, untrained=None):
    """An S1 stage waiting for approval, summarised by the real statistics from `scores`."""
    search = SearchFactory(owner=user, backbone=BackboneFactory(num_layers=6), tasks=[sst2()],
                           groups=4, config=(config or preset("quick")).to_dict(),
                           untrained_decisions=untrained or [])
    outcomes = [TrialOutcome({"grouping": choice}, score) for choice, values in scores.items() for score in values]
    summary = summarise(outcomes, component="grouping", open_choices=SPACE.open("grouping"), stage="S1",
                        seed=0, resamples=200, min_successes=2, aliases=SPACE.aliases("grouping"))
    return StageFactory(search=search, order=0, key="S1", component="grouping", space=SPACE.to_dict(),
                        status="awaiting", summary=summary.to_dict(),
                        recommendation=summary.recommendation.to_dict(),
                        plan={"requested": 8, "sampled": 8, "stage_plan": STAGE_PLAN, "untried": {}})


def wizard(client, stage) -> str:
    response = client.get(reverse("stage-detail", args=[stage.search.pk, stage.pk]))
    assert response.status_code == 200
    return response.content.decode()


def choice_row(html: str, choice: str) -> str:
    match = re.search(rf'<tr[^>]*data-choice="{re.escape(choice)}".*?</tr>', html, re.S)
    assert match, f"no row for {choice}"
    return match.group(0)


def test_the_wizard_names_every_alias_and_the_raised_design_count(client, user):
    client.force_login(user)
    stage = wizard_stage(user, {"increasing": [60, 62], "uniform": [70, 71], "spindle": [80, 81],
                                "bottleneck": [50, 52]})
    html = wizard(client, stage)
    assert SPACE.label("grouping", "uniform") == "uniform = decreasing"
    assert "uniform = decreasing" in choice_row(html, "uniform")
    assert 'id="stage-aliases"' in html and "give the same design on this 6-layer backbone" in html
    assert "raised from 6 to 8 so every choice gets 2 designs" in html
    assert "n (of 2 needed)" in html


def test_an_under_sampled_choice_is_never_badged_and_the_leader_is_not_a_recommendation(client, user):
    client.force_login(user)
    # spindle scores highest but has one success: nothing is recommended, uniform leads.
    stage = wizard_stage(user, {"increasing": [60, 62], "uniform": [70, 71], "spindle": [95, None],
                                "bottleneck": [50, 52]})
    assert stage.recommendation["status"] == "insufficient"
    html = wizard(client, stage)
    spindle = choice_row(html, "spindle")
    assert "not enough trials (1 of 2)" in spindle
    assert "recommended" not in spindle and "best" not in spindle
    assert "No recommendation: not every choice has 2 successful trials" in html
    assert re.search(r'id="leader">Leading so far: <span class="mono">uniform = decreasing</span>', html)
    assert "leading so far" in choice_row(html, "uniform")
    assert 'class="tag rec">recommended' not in html
    assert 'data-badge="recommended"' not in html


def test_a_tie_is_shown_as_a_tie_never_as_a_recommendation(client, user):
    client.force_login(user)
    stage = wizard_stage(user, {"increasing": [70, 71], "uniform": [70, 71], "spindle": [60, 61],
                                "bottleneck": [50, 52]})
    assert stage.recommendation["choice"] in ("increasing", "uniform")
    html = wizard(client, stage)
    for choice in ("increasing", "uniform"):
        row = choice_row(html, choice)
        assert "tied" in row and "recommended" not in row
    assert "<strong>Tied:</strong>" in html
    assert 'data-recommended-word="tied, preselected"' in html
    # The charts highlight no choice.
    assert re.search(r'<script id="edf-recommended" type="application/json">null</script>', html)


def test_a_separable_winner_is_recommended(client, user):
    client.force_login(user)
    stage = wizard_stage(user, {"increasing": [60, 61], "uniform": [70, 71], "spindle": [90, 91],
                                "bottleneck": [50, 52]})
    html = wizard(client, stage)
    assert 'data-badge="recommended"' in choice_row(html, "spindle")
    assert "Recommended: <span" in html


def test_components_decided_without_training_say_so(client, user):
    client.force_login(user)
    untrained = [d.to_dict() for d in decisions_without_training(DesignSpace.initial(num_groups=6, num_layers=6))]
    stage = wizard_stage(user, {"increasing": [60, 62], "uniform": [70, 71], "spindle": [80, 81],
                                "bottleneck": [50, 52]}, untrained=untrained)
    html = wizard(client, stage)
    assert 'id="stage-untrained"' in html and "Decided without training" in html
    assert "decided without training" in html  # the decision's own reason


# --- parameter counts: stored (the budget) and what the optimiser updates ------------------------

PER_TASK = {"sst2": {"score": 80.0, "metrics": {"accuracy": 0.8},
                     "trainable_parameters": {"peft_stored": 112_827, "head": 148_610,
                                              "reparameterisation": 0, "optimised_total": 261_437}}}


def trained_trial(user, **fields):
    stage = StageFactory(search=SearchFactory(owner=user, tasks=[sst2()]), order=0, key="S1")
    values = {"status": "succeeded", "score": 80.0, "trainable_params": 112_827, "head_params": 148_610,
              "optimised_params": 261_437, "scores": PER_TASK, **fields}
    return TrialFactory(stage=stage, **values)


def test_the_trial_table_shows_both_counts(client, user):
    client.force_login(user)
    trial = trained_trial(user)
    html = client.get(reverse("search-detail", args=[trial.search.pk])).content.decode()
    assert "Parameters (stored · trains)" in html
    assert re.search(r'stored 112,827</span> · <span data-count="trains">trains 261,437', html)


def test_an_untrained_trial_says_what_trains_is_not_known_yet(client, user):
    client.force_login(user)
    trial = trained_trial(user, status="queued", score=None, optimised_params=None, scores={})
    html = client.get(reverse("search-detail", args=[trial.search.pk])).content.decode()
    assert "stored 112,827</span> · <span data-count=\"trains\">trains —" in html
    page = client.get(reverse("trial-detail", args=[trial.search.pk, trial.pk])).content.decode()
    assert "known once the trial has trained" in page


def test_the_trial_page_breaks_the_optimised_count_down(client, user):
    client.force_login(user)
    parts = {"peft_stored": 112_827, "head": 148_610, "reparameterisation": 56_000, "optimised_total": 317_437}
    trial = trained_trial(user, optimised_params=None,  # a result stored before the column: read the breakdown
                          scores={"sst2": {**PER_TASK["sst2"], "trainable_parameters": parts}})
    html = client.get(reverse("trial-detail", args=[trial.search.pk, trial.pk])).content.decode()
    stored = re.search(r'id="params-stored">.*?</div></div>', html, re.S).group(0)
    trains = re.search(r'id="params-trains">.*?</div></div>', html, re.S).group(0)
    assert "Stored PEFT parameters (the budget)" in stored and "112,827" in stored
    assert "Parameters the optimiser updates" in trains and "317,437" in trains
    assert "head 148,610" in trains and "prefix reparameterisation 56,000" in trains


def test_the_wizard_lists_its_top_designs_with_both_counts(client, user):
    client.force_login(user)
    stage = wizard_stage(user, {"increasing": [60, 62], "uniform": [70, 71], "spindle": [80, 81],
                                "bottleneck": [50, 52]})
    TrialFactory(stage=stage, status="succeeded", score=81.0, trainable_params=112_827, optimised_params=261_437,
                 choices={"grouping": "spindle"})
    html = wizard(client, stage)
    table = re.search(r'<table class="data" id="top-trials">.*?</table>', html, re.S).group(0)
    assert "stored 112,827" in table and "trains 261,437" in table and "spindle" in table


# --- evaluation roles: which examples each score was scored on -----------------------------------

SELECTION_SET = {"role": "selection", "split": "train", "pool": 6735, "count": 300, "seed": 0, "held_out": True,
                 "split_seed": 0}
REPORT_SET = {"role": "report", "split": "dev", "pool": 872, "count": 300, "seed": 0, "held_out": False,
              "split_seed": 0}
TRAIN_SET = {"role": "train", "split": "train", "pool": 6435, "count": 512, "seed": 0, "held_out": False,
             "split_seed": 0}


def test_the_trial_page_says_which_examples_each_score_was_scored_on(client, user):
    client.force_login(user)
    trial = trained_trial(user, scores={"sst2": {**PER_TASK["sst2"], "eval_set": SELECTION_SET,
                                                 "train_set": TRAIN_SET}})
    html = client.get(reverse("trial-detail", args=[trial.search.pk, trial.pk])).content.decode()
    assert re.search(r'id="eval-role">selection set<', html)
    listed = re.search(r'id="evaluated-on">.*?</ul>', html, re.S).group(0)
    assert "selection: 300 of 6,735 examples held out of train (split seed 0), sub-sampled with seed 0" in listed
    assert "trained on train: 512 of 6,435 examples from train" in listed


def test_a_result_without_a_description_still_gives_role_and_count(client, user):
    client.force_login(user)
    trial = trained_trial(user, eval_role="report", scores={"sst2": {**PER_TASK["sst2"], "eval_examples": 872}})
    html = client.get(reverse("trial-detail", args=[trial.search.pk, trial.pk])).content.decode()
    assert re.search(r'id="eval-role">report set<', html)
    assert "report: 872 examples" in html


def test_the_report_says_its_scores_are_on_the_report_set_and_names_both_sets(client, user):
    client.force_login(user)
    search = SearchFactory(owner=user, tasks=[sst2()])
    stage = StageFactory(search=search, order=0, key="S1")
    final = StageFactory(search=search, order=1, key="final", component="", status="running")
    TrialFactory(stage=stage, status="succeeded", score=70.0, scores={"sst2": {"score": 70.0, "eval_set": SELECTION_SET}})
    TrialFactory(stage=final, status="succeeded", score=75.0, kind="selected", eval_role="report",
                 choices={"arm": "selected", "task": "sst2", "seed": 0},
                 scores={"sst2": {"score": 75.0, "eval_set": REPORT_SET}})
    html = client.get(reverse("search-report", args=[search.pk])).content.decode()
    roles = re.search(r'id="report-roles">.*?</div>', html, re.S).group(0)
    assert "The scores above are on the report set" in roles and "disjoint from the selection set" in roles
    assert re.search(r'data-role="report"><strong>sst2</strong>: report: 300 of 872 examples from dev', roles)
    assert re.search(r'data-role="selection"><strong>sst2</strong>: selection: 300 of 6,735 examples held out', roles)


# --- the final report: learning rate per arm, both counts, ties --------------------------------

def completed_final(user, averages: dict[str, float], *, tuning: dict | None = None):
    """A search whose final stage completed with one report run per arm (sst2, seeds 0 and 1)."""
    from experiments.space import FinalResult, results_table

    search = SearchFactory(owner=user, tasks=[sst2()], status="completed")
    results = [FinalResult(arm=arm, task="sst2", seed=seed, score=mean + (seed - 0.5))
               for arm, mean in averages.items() for seed in (0, 1)]
    rates = {arm: entry["chosen"] for arm, entry in (tuning or {}).items()}
    table = results_table(results, parameters={arm: 112_827 for arm in averages},
                          optimised={arm: 261_437 for arm in averages}, learning_rates=rates)
    plan = {"phase": "report", "tuning": tuning or {}, "learning_rates": rates}
    return StageFactory(search=search, order=5, key="final", component="", status="completed",
                        summary=table, plan=plan)


def test_the_report_shows_each_arms_grid_and_chosen_rate(client, user):
    from experiments.space import TuningResult, choose_learning_rates

    client.force_login(user)
    grids = {"selected": [0.001, 0.003], "lora": [0.001, 0.003], "full": [1.67e-05, 5e-05]}
    tuning = choose_learning_rates([
        TuningResult("selected", "sst2", 0.001, 71.0), TuningResult("selected", "sst2", 0.003, 74.0),
        TuningResult("lora", "sst2", 0.001, 72.5), TuningResult("lora", "sst2", 0.003, None),
        TuningResult("full", "sst2", 1.67e-05, 60.0), TuningResult("full", "sst2", 5e-05, 65.0)], grids)
    final = completed_final(user, {"selected": 76.0, "lora": 73.0, "full": 66.0}, tuning=tuning)
    html = client.get(reverse("search-report", args=[final.search.pk])).content.decode()
    table = re.search(r'<table class="data" id="report-table">.*?</table>', html, re.S).group(0)
    assert ">Learning rate</th>" in table
    selected = re.search(r"<tr class=\"highlight\">.*?</tr>", table, re.S).group(0)
    assert '<strong>0.003</strong>' in selected
    assert 'grid <span>0.001 (71.00)</span>, <span class="chosen-rate">0.003 (74.00)</span>' in selected
    full = re.search(r"Full fine-tuning.*?</tr>", table, re.S).group(0)
    assert "<strong>5e-05</strong>" in full and "1.67e-05 (60.00)" in full
    lora = re.search(r"LoRA only.*?</tr>", table, re.S).group(0)
    assert "<strong>0.001</strong>" in lora and "0.003</span>" in lora  # the failed rate: no score
    assert "stored 112,827" in selected and "trains 261,437" in selected
    assert 'id="report-tuning"' in html and "on the selection set" in html
    assert "and each arm chose its learning rate by" in html


def test_an_untuned_final_stage_shows_the_rate_without_a_grid(client, user):
    client.force_login(user)
    final = completed_final(user, {"selected": 76.0, "lora": 73.0})
    final.summary["rows"][0]["learning_rate"] = 0.003
    final.save(update_fields=["summary"])
    html = client.get(reverse("search-report", args=[final.search.pk])).content.decode()
    assert "<strong>0.003</strong>" in html
    assert 'data-col="grid"' not in html and 'id="report-tuning"' not in html


def test_tied_arms_are_shown_as_tied_never_best(client, user):
    client.force_login(user)
    final = completed_final(user, {"selected": 66.67, "lora": 66.67, "bitfit": 60.0})
    html = client.get(reverse("search-report", args=[final.search.pk])).content.decode()
    table = re.search(r'<table class="data" id="report-table">.*?</table>', html, re.S).group(0)
    assert 'class="tag rec">best' not in table
    assert table.count('class="tag warn">tied') == 2
    assert "tied for best: selected, lora" in html


# --- trial rows keep only the action their status allows; a cancelled search's progress ----------

def test_a_trial_row_carries_its_status_for_its_actions(client, user):
    client.force_login(user)
    trial = trained_trial(user, duration_s=146)
    html = client.get(reverse("search-detail", args=[trial.search.pk])).content.decode()
    row = re.search(rf'<tr data-trial="{trial.pk}" data-status="succeeded".*?</tr>', html, re.S).group(0)
    assert "row-cancel" in row and "row-retry" in row  # search.js switches them by data-status
    assert ">2m 26s<" in row  # durations one way: the same as the live rows' PEFS.formatDuration
    css = (Path(__file__).resolve().parents[2] / "static/pefs/css/pefs.css").read_text()
    hide_cancel = re.search(r'tr\[data-status\]:not\(\[data-status="queued"\]\):not\(\[data-status="running"\]\) '
                            r'\.row-cancel[^{]*\{ display: none; \}', css)
    assert hide_cancel, "a row whose trial is final must hide its Cancel button"


def test_a_cancelled_search_counts_only_the_trials_it_trained(client, user):
    client.force_login(user)
    search = SearchFactory(owner=user, tasks=[sst2()], status="cancelled",
                           trials_total=4, trials_done=4)
    stage = StageFactory(search=search, order=0, key="S1", status="cancelled")
    for status in ("succeeded", "failed", "cancelled", "cancelled"):
        TrialFactory(stage=stage, status=status)
    listing = client.get(reverse("search-list")).content.decode()
    assert 'aria-valuenow="2"' in listing and 'style="width:50%"' in listing
    assert "2 / 4 trained, then cancelled" in listing
    page = client.get(reverse("search-detail", args=[search.pk])).content.decode()
    assert re.search(r'<span id="stat-done">2</span>', page)


def test_the_new_search_plan_says_which_stages_were_raised_and_why(client, user):
    from experiments.forms import preset_values
    from experiments.space.presets import PRESETS

    client.force_login(user)
    backbone = BackboneFactory(num_layers=6, is_default=True)
    data = {key: ("on" if value is True else "" if value in (False, None) else value)
            for key, value in preset_values(PRESETS["quick"]).items()}
    data.update({"name": "plan", "tasks": [sst2().pk], "backbone": backbone.pk, "preset": "quick", "seed": 0,
                 "max_eval_examples": "", "groups": 4})
    response = client.get(reverse("search-plan-preview"), data)
    html = response.content.decode()
    raised = re.search(r'id="plan-raised">(.*?)</div>', html, re.S)
    assert raised, html
    assert "every open choice gets 2 designs (none is discarded untried)" in raised.group(1)
    assert re.search(r"S3 from 8 to \d+", raised.group(1)) and "S4.G1 from 8 to" in raised.group(1)


def test_a_fresh_new_search_form_shows_a_hint_not_an_error(client, user):
    from experiments.forms import preset_values
    from experiments.space.presets import PRESETS

    client.force_login(user)
    backbone = BackboneFactory(num_layers=6, is_default=True)
    fresh = client.get(reverse("search-plan-preview"), {"backbone": backbone.pk, "preset": "quick"}).content.decode()
    assert "Choose tasks" in fresh and "required" not in fresh and "error" not in fresh
    data = {key: ("on" if value is True else "" if value in (False, None) else value)
            for key, value in preset_values(PRESETS["quick"]).items()}
    data.update({"name": "plan", "tasks": [sst2().pk], "backbone": backbone.pk, "preset": "quick", "seed": 0,
                 "max_eval_examples": "", "groups": 4, "designs_per_stage": 10**6})
    bad = client.get(reverse("search-plan-preview"), data).content.decode()
    # Every problem says which field it is about.
    assert "Designs per stage:" in bad, bad


def test_a_choice_no_design_of_which_meets_the_budget_says_so_not_too_few_trials(client, user):
    client.force_login(user)
    stage = wizard_stage(user, {"increasing": [60, 62], "uniform": [70, 71], "spindle": [80, 81], "bottleneck": []})
    stage.plan = {**stage.plan, "infeasible_choices": ["bottleneck"],
                  "untried": {"bottleneck": "no design of this choice meets the budget"}}
    stage.save()
    row = choice_row(wizard(client, stage), "bottleneck")
    assert "no design meets the budget" in row and "not enough trials" not in row
