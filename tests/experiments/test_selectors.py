"""Selectors: ownership scoping, trial filters and sorting, metric pages, reports."""
from __future__ import annotations

import pytest

from experiments import selectors
from experiments.models import MetricPoint
from tests.factories import (
    BackboneFactory, MetricPointFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory, design_document,
)


def test_downsample_indices_keep_the_ends_and_spread_evenly():
    assert selectors.downsample_indices(3, 10) == [0, 1, 2]
    assert selectors.downsample_indices(10, 4) == [0, 3, 6, 9]
    assert selectors.downsample_indices(1000, 2) == [0, 999]
    assert selectors.downsample_indices(5, 1) == [4]
    picked = selectors.downsample_indices(10_001, 100)
    assert len(picked) == 100 and picked[0] == 0 and picked[-1] == 10_000
    gaps = {b - a for a, b in zip(picked, picked[1:])}
    assert max(gaps) - min(gaps) <= 1


def test_strategy_strip_uses_canonical_codes():
    design = design_document(layers=[{"lora": 1, "adapter": 2}, {}, {"bitfit": True, "prefix": 3}, {"lora": 4}])
    assert selectors.trial_strategy_strip(design) == ["AL", "", "PB", "L"]


def test_choice_values_match_strings_and_json_scalars():
    assert selectors.choice_value_candidates("spindle") == ["spindle"]
    assert selectors.choice_value_candidates("4") == ["4", 4]
    assert selectors.choice_value_candidates("true") == ["true", True]
    assert selectors.choice_value_candidates("[1]") == ["[1]"]


@pytest.mark.django_db
def test_lists_are_scoped_to_the_user(user, other_user):
    TaskFactory(name="sst2")
    mine, theirs = TaskFactory(owner=user, name="mine"), TaskFactory(owner=other_user, name="theirs")
    BackboneFactory(name_or_path="bundled")
    secret = BackboneFactory(owner=other_user, name_or_path="secret")
    SearchFactory(owner=other_user, backbone=secret)
    assert set(selectors.task_list(user=user).values_list("name", flat=True)) == {"sst2", "mine"}
    assert list(selectors.backbone_list(user=user).values_list("name_or_path", flat=True)) == ["bundled"]
    assert selectors.search_list(user=user).count() == 0
    assert selectors.backbone_find(user=user, ref="secret") is None
    tasks, unknown = selectors.task_by_names(user=user, names=["mine", "theirs", "sst2"])
    assert tasks[0] == mine and [t.name for t in tasks] == ["mine", "sst2"] and unknown == ["theirs"]
    assert theirs not in tasks


@pytest.mark.django_db
def test_own_task_shadows_a_bundled_one_of_the_same_name(user):
    TaskFactory(name="sst2")
    own = TaskFactory(owner=user, name="sst2")
    assert selectors.task_by_names(user=user, names=["sst2"]) == ([own], [])


@pytest.mark.django_db
def test_backbone_find_by_id_path_or_display_name(user):
    bundled = BackboneFactory(name_or_path="sentence-transformers/all-MiniLM-L6-v2", display_name="MiniLM")
    own = BackboneFactory(owner=user, name_or_path="sentence-transformers/all-MiniLM-L6-v2", display_name="Mine")
    assert selectors.backbone_find(user=user, ref=str(bundled.pk)) == bundled
    assert selectors.backbone_find(user=user, ref="sentence-transformers/all-MiniLM-L6-v2") == own
    assert selectors.backbone_find(user=user, ref="MiniLM") == bundled
    assert selectors.backbone_find(user=user, ref="nope") is None


@pytest.mark.django_db
def test_trial_list_rejects_unknown_filters(user):
    search = SearchFactory(owner=user)
    for filters, field in [(selectors.TrialFilters(ordering="design"), "ordering"),
                           (selectors.TrialFilters(status=["lost"]), "status"),
                           (selectors.TrialFilters(kind=["weird"]), "kind"),
                           (selectors.TrialFilters(choices={"a;drop": "x"}), "choice.a;drop")]:
        with pytest.raises(selectors.TrialFilterError) as caught:
            list(selectors.trial_list(search=search, filters=filters))
        assert caught.value.field == field


@pytest.mark.django_db
def test_trial_list_defers_heavy_columns(user, django_assert_num_queries):
    stage = StageFactory(search=SearchFactory(owner=user))
    TrialFactory.create_batch(3, stage=stage, scores={"sst2": {"score": 1.0}}, notes=["long"] * 100)
    with django_assert_num_queries(1):
        trials = list(selectors.trial_list(search=stage.search, filters=selectors.TrialFilters(ordering="-score")))
        assert [t.stage.key for t in trials] == [stage.key] * 3
    assert {"scores", "notes", "heartbeat_at"} <= trials[0].get_deferred_fields()


@pytest.mark.django_db
def test_metric_points_latest_attempt_stage_and_trial_filters(user):
    search = SearchFactory(owner=user)
    s0, s1 = StageFactory(search=search), StageFactory(search=search)
    retried = TrialFactory(stage=s0, attempt=2)
    other = TrialFactory(stage=s1)
    MetricPointFactory(trial=retried, attempt=1, step=0)
    kept = MetricPointFactory(trial=retried, attempt=2, step=0)
    MetricPointFactory(trial=other, step=0)
    MetricPointFactory(trial=TrialFactory(), step=0)  # another search entirely
    everything = selectors.metric_points(search=search)
    assert {(s.trial, s.attempt) for s in everything.series} == {(retried.pk, 2), (other.pk, 1)}
    stage_page = selectors.metric_points(search=search, stage_id=s0.pk)
    assert [(s.trial, s.steps) for s in stage_page.series] == [(retried.pk, [0])]
    assert stage_page.next >= kept.pk and not stage_page.more
    assert selectors.metric_points(search=search, trial_id=other.pk).series[0].trial == other.pk
    empty = selectors.metric_points(search=search, stage_id=StageFactory(search=search).pk, after=7)
    assert (empty.series, empty.next, empty.more) == ([], 7, False)


@pytest.mark.django_db
def test_metric_points_sorts_series_written_out_of_step_order(user):
    trial = TrialFactory(stage=StageFactory(search=SearchFactory(owner=user)))
    for step in (2, 0, 1):
        MetricPointFactory(trial=trial, step=step, value=float(step))
    series = selectors.metric_points(search=trial.search).series[0]
    assert series.steps == [0, 1, 2] and series.values == [0.0, 1.0, 2.0]


@pytest.mark.django_db
def test_metric_points_bound_the_answer_across_many_series(user):
    stage = StageFactory(search=SearchFactory(owner=user))
    for trial in TrialFactory.create_batch(20, stage=stage):
        for step in range(30):
            MetricPointFactory(trial=trial, step=step, name="sst2:loss")
    page = selectors.metric_points(search=stage.search, stage_id=stage.pk, max_points=100)
    assert page.downsampled and page.returned <= 100 + 2 * len(page.series)
    assert all(s.steps[0] == 0 for s in page.series)


@pytest.mark.django_db
def test_metric_windows_skip_other_searches_points_and_walk_to_the_end(user):
    # Given a stage of two trials whose points come after 300 points of another search
    busy = TrialFactory(stage=StageFactory(search=SearchFactory(owner=user)))
    for step in range(300):
        MetricPointFactory(trial=busy, step=step)
    stage = StageFactory(search=SearchFactory(owner=user))
    trials = TrialFactory.create_batch(2, stage=stage)
    for step in range(30):
        for trial in trials:
            MetricPointFactory(trial=trial, step=step, name="sst2:loss")
    MetricPointFactory.create_batch(5, trial=busy)  # and the other search goes on writing
    # When a page backfills the stage from the start, 10 points a call (windows of 50 ids)
    page = selectors.metric_points(search=stage.search, stage_id=stage.pk, max_points=10)
    # Then the first call jumps over the other search's points and answers the stage's first ones
    assert page.series and all(s.steps[0] == 0 for s in page.series) and page.more
    seen, calls = {s.trial: s.steps[-1] for s in page.series}, 1
    while page.more:
        page = selectors.metric_points(search=stage.search, stage_id=stage.pk, max_points=10, after=page.next)
        seen.update({s.trial: s.steps[-1] for s in page.series})
        calls += 1
    assert seen == {trials[0].pk: 29, trials[1].pk: 29} and calls <= 3
    assert page.next == MetricPoint.objects.order_by("-id").first().pk


@pytest.mark.django_db
def test_role_results_cover_every_task_when_each_final_run_trains_one():
    # A final-stage run trains one task: the report must still say what every task was scored on
    search = SearchFactory()
    search.tasks.set([TaskFactory(name="sst2"), TaskFactory(name="mrpc")])
    stage = StageFactory(search=search, key="final")
    for index, task in enumerate(("mrpc", "sst2", "sst2")):
        TrialFactory(search=search, stage=stage, index=index, status="succeeded", eval_role="report",
                     scores={task: {"score": 50.0, "eval_set": {"role": "report", "split": "dev"}}})
    found = selectors.search_role_results(search=search)
    assert set(found["report"]) == {"sst2", "mrpc"} and "selection" not in found
