"""Services without worker processes: trial lifecycle, supervision, cancel/retry, metric batching,
search creation and validation, stage approval. Database only (no Redis messages are awaited)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from experiments import services
from experiments.models import MetricPoint, Search, Stage, Trial
from tasks import worker
from tests.conftest import BASE_DIR
from tests.factories import BackboneFactory, StageFactory, TaskFactory, TrialFactory, backbone_shape

pytestmark = pytest.mark.django_db


def queued(**kwargs) -> Trial:
    return TrialFactory(status=Trial.Status.QUEUED, attempt=1, queued_at=timezone.now(), **kwargs)


def test_a_delivery_claims_its_attempt_once():
    trial = queued()
    assert services.trial_claim(trial_id=trial.pk, attempt=1, worker="w1") is not None
    # The same message delivered again (e.g. after the broker's visibility timeout) is dropped
    assert services.trial_claim(trial_id=trial.pk, attempt=1, worker="w2") is None
    trial.refresh_from_db()
    assert trial.status == Trial.Status.RUNNING and trial.worker == "w1"


def test_a_stale_message_for_an_older_attempt_is_dropped():
    trial = queued()
    trial.attempt = 2
    trial.save()
    assert services.trial_claim(trial_id=trial.pk, attempt=1, worker="w") is None


def test_sweep_requeues_a_silent_running_trial_then_gives_up(settings):
    settings.PEFS_MAX_ATTEMPTS = 2
    trial = TrialFactory(status=Trial.Status.RUNNING, attempt=1, worker="w1",
                         heartbeat_at=timezone.now() - timedelta(seconds=settings.PEFS_STALE_SECONDS + 5))
    assert services.trials_sweep()["requeued"] == 1
    trial.refresh_from_db()
    assert (trial.status, trial.attempt) == (Trial.Status.QUEUED, 2)
    assert "stopped answering" in trial.notes[-1]
    # The second attempt goes silent as well: that was the last allowed attempt
    services.trial_claim(trial_id=trial.pk, attempt=2, worker="w2")
    Trial.objects.filter(pk=trial.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.trials_sweep()["failed"] == 1
    trial.refresh_from_db()
    assert trial.status == Trial.Status.FAILED and "gave up after 2 attempts" in trial.error


def test_sweep_leaves_beating_trials_alone():
    TrialFactory(status=Trial.Status.RUNNING, attempt=1, heartbeat_at=timezone.now())
    assert services.trials_sweep() == {"requeued": 0, "failed": 0, "resent": 0}


def test_sweep_resends_queued_trials_the_broker_lost(settings, django_capture_on_commit_callbacks):
    old = timezone.now() - timedelta(seconds=settings.PEFS_STALE_SECONDS + 5)
    lost = TrialFactory(status=Trial.Status.QUEUED, attempt=1, queued_at=old, sent_at=old)
    held = TrialFactory(status=Trial.Status.QUEUED, attempt=1, queued_at=old, sent_at=old)
    # Waiting its search's turn (fair queueing): it has no message yet, so none can be lost
    TrialFactory(status=Trial.Status.QUEUED, attempt=1, queued_at=old, sent_at=None)
    held_id = services.trial_message_id(held.pk, 1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = services.trials_sweep(broker_ids={held_id})
    assert result["resent"] == 1 and len(callbacks) == 1
    assert lost.pk != held.pk


def test_heartbeat_reports_cancellation():
    trial = queued()
    services.trial_claim(trial_id=trial.pk, attempt=1, worker="w")
    assert services.trial_heartbeat(trial_id=trial.pk, attempt=1) is True
    services.trial_cancel(trial=trial)
    assert services.trial_heartbeat(trial_id=trial.pk, attempt=1) is False


def test_cancelling_a_queued_trial_finishes_it_and_counts_it():
    trial = queued()
    services.trial_cancel(trial=trial)
    trial.refresh_from_db()
    assert trial.status == Trial.Status.CANCELLED
    assert Search.objects.get(pk=trial.search_id).trials_done == 1
    with pytest.raises(ValidationError) as error:
        services.trial_cancel(trial=trial)
    assert "status" in error.value.message_dict


def test_retry_requeues_a_failed_trial_as_a_new_attempt():
    trial = TrialFactory(status=Trial.Status.FAILED, attempt=1, error="boom")
    Search.objects.filter(pk=trial.search_id).update(trials_done=1, trials_total=1)
    services.trial_retry(trial=trial)
    trial.refresh_from_db()
    assert (trial.status, trial.attempt, trial.error) == (Trial.Status.QUEUED, 2, "")
    assert Search.objects.get(pk=trial.search_id).trials_done == 0
    with pytest.raises(ValidationError):
        services.trial_retry(trial=trial)  # queued trials are not retried


def test_finishing_a_superseded_attempt_changes_nothing():
    trial = queued()
    services.trial_claim(trial_id=trial.pk, attempt=1, worker="w")
    Trial.objects.filter(pk=trial.pk).update(attempt=2, status=Trial.Status.QUEUED)
    assert services.trial_finish(trial_id=trial.pk, attempt=1, status=Trial.Status.SUCCEEDED,
                                 result=services.TrialResult(90.0, {}, 10, 2)) is None
    trial.refresh_from_db()
    assert trial.status == Trial.Status.QUEUED and trial.score is None


def test_metric_recorder_batches_and_never_duplicates():
    trial = queued()
    recorder = worker.MetricRecorder(trial_id=trial.pk, attempt=1, search_id=trial.search_id,
                                     stage_id=trial.stage_id, flush_points=10, flush_seconds=3600, publish=False)
    recorder.add("sst2", step=1, values={"loss": 1.0, "lr": 1e-3, "nan": float("nan")})
    assert MetricPoint.objects.filter(trial=trial).count() == 2  # the first points go out at once
    for step in range(2, 6):
        recorder.add("sst2", step=step, values={"loss": 1 / step, "lr": 1e-3})
    assert MetricPoint.objects.filter(trial=trial).count() == 2  # 8 more: below the batch size
    recorder.add("sst2", step=6, values={"loss": 0.2, "lr": 1e-3})
    assert MetricPoint.objects.filter(trial=trial).count() == 12
    recorder.buffer = [(6, "sst2:loss", 0.2)]  # a replayed flush
    recorder.flush()
    assert MetricPoint.objects.filter(trial=trial).count() == 12
    assert not MetricPoint.objects.filter(name="sst2:nan").exists()


def test_search_create_names_the_bad_field(user):
    backbone = BackboneFactory(shape=backbone_shape(), total_params=100_000, num_layers=4)
    task = TaskFactory()
    good = dict(owner=user, name="s", tasks=[task], backbone=backbone, budget_kind="absolute", budget_value=2000,
                groups=2, preset="quick")
    cases = [
        ({"name": " "}, "name"),
        ({"tasks": []}, "tasks"),
        ({"groups": 9}, "groups"),
        ({"budget_value": -1}, "budget_value"),
        ({"budget_kind": "percent"}, "budget_kind"),
        ({"preset": "fast"}, "preset"),
        ({"overrides": {"epochs": 0}}, "epochs"),
        ({"overrides": {"colour": "red"}}, "colour"),
        ({"overrides": {"halving_eta": 1}}, "halving_eta"),
        ({"overrides": {"halving_eta": 17}}, "halving_eta"),
    ]
    for change, field in cases:
        with pytest.raises(ValidationError) as error:
            services.search_create(**{**good, **change})
        assert field in error.value.message_dict, (change, error.value.message_dict)
    assert not Search.objects.exists()  # nothing half-written


def test_search_create_stores_the_first_stage_and_its_trials(user, django_capture_on_commit_callbacks):
    backbone = BackboneFactory(shape=backbone_shape(), total_params=100_000, num_layers=4)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        search = services.search_create(owner=user, name="s", tasks=[TaskFactory()], backbone=backbone,
                                        budget_kind="fraction", budget_value=0.02, groups=2, preset="quick",
                                        overrides={"designs_per_stage": 5}, seed=7)
    stage = search.stages.get()
    assert (stage.key, stage.component, stage.status) == ("S1", "grouping", Stage.Status.RUNNING)
    trials = list(stage.trials.all())
    # Issue 10: 3 distinct groupings on 4 layers with G = 2, each trained min_successes (2) times,
    # so the preset's 5 designs are raised to 6
    assert len(trials) == 6 and all(t.status == Trial.Status.QUEUED and t.attempt == 1 for t in trials)
    assert stage.plan["stage_plan"]["raised_from"] == 5
    assert all(t.trainable_params == pytest.approx(2000, rel=0.02) for t in trials)
    assert search.budget_params == 2000 and search.trials_total == 6
    assert callbacks  # the messages are sent after commit, never before


def test_approving_a_stage_that_is_not_waiting_is_refused(user):
    stage = StageFactory(status=Stage.Status.RUNNING)
    with pytest.raises(ValidationError) as error:
        services.stage_approve(stage=stage, user=user)
    assert "stage" in error.value.message_dict


def test_admin_pages_load(admin_client):
    trial = TrialFactory()
    for url in ["/admin/", "/admin/experiments/search/", f"/admin/experiments/search/{trial.search_id}/change/",
                "/admin/experiments/trial/", f"/admin/experiments/trial/{trial.pk}/change/",
                "/admin/experiments/stage/", "/admin/experiments/task/", "/admin/experiments/backbone/",
                "/admin/experiments/metricpoint/", "/admin/experiments/artifact/"]:
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.slow
def test_backbone_introspection_leaves_torch_out_of_the_web_process(tiny_model_dir):
    # Given a web-side process (Django set up, no torch), when it measures a backbone
    program = (
        "import json, sys, django\n"
        "django.setup()\n"
        "from experiments.services import backbone_introspect\n"
        "shape = backbone_introspect(sys.argv[1])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'shape': shape.to_dict()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", program, str(tiny_model_dir)], capture_output=True, text=True,
                          cwd=BASE_DIR, env={**os.environ, "DJANGO_SETTINGS_MODULE": "pefs_web.settings"},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    # Then torch was never imported there, and the shape is the one the engine measures on the loaded model
    assert answer["torch"] is False
    from tasks.peft import HeadSpec, load_backbone

    loaded = load_backbone(str(tiny_model_dir), head=HeadSpec(problem="classification", num_labels=2))
    assert answer["shape"] == loaded.shape.to_dict()


def test_backbone_introspection_failure_says_why(tmp_path):
    with pytest.raises(services.IntrospectionError) as error:
        services.backbone_introspect(str(tmp_path / "no-such-model"))
    assert str(error.value)  # the child's last error line, e.g. the missing path
