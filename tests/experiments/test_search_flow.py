"""A whole search in-process through the services: S-stages, approval, final stage, artifacts."""
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from experiments import services
from experiments.models import Artifact, Search, Stage, Trial
from tasks import worker
from tests.conftest import TINY_OVERRIDES

pytestmark = pytest.mark.slow


@pytest.mark.django_db(transaction=True)
def test_auto_approved_search_runs_every_stage_and_writes_artifacts(user, tiny_backbone, bundled_tasks):
    # Given a quick search on a tiny model with auto-approve
    search = services.search_create(owner=user, name="tiny", tasks=[bundled_tasks["sst2"]], backbone=tiny_backbone,
                                    budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                    overrides=TINY_OVERRIDES, auto_approve=True, seed=3)
    # When its trials run in this process
    search = worker.search_run_local(search=search)
    # Then every stage was decided automatically, in the paper's order, and the search completed
    assert search.status == Search.Status.COMPLETED, [s.summary for s in search.stages.all()]
    keys = list(search.stages.order_by("order").values_list("key", flat=True))
    tuned = search.stages.get(key="S3").decision["choice"].split("+")
    assert keys == ["S1", "S2", "S3", *[f"S4.{g}" for g in tuned], "final"]
    assert not Trial.objects.filter(search=search).exclude(status=Trial.Status.SUCCEEDED).exists()
    for stage in search.stages.exclude(key="final"):
        assert stage.decided_automatically and stage.decision["choice"] == stage.recommendation["choice"]
        assert {c["choice"] for c in stage.summary["choices"]} == set(stage.decision["open_before"])
    assert search.trials_done == search.trials_total == Trial.objects.filter(search=search).count()
    # The final stage compared the selected design with the four baselines and full fine-tuning
    final = search.stages.get(key="final")
    assert {row["arm"] for row in final.summary["rows"]} == {"selected", "adapter", "prefix", "bitfit", "lora", "full"}
    # Issue 10: stages and the final stage's learning-rate tuning were scored on the selection set,
    # the comparison on the report set, and every trained run recorded both parameter counts
    stage_trial = Trial.objects.filter(search=search, stage__key="S1").first()
    assert stage_trial.eval_role == "selection" and stage_trial.scores["sst2"]["eval_set"]["role"] == "selection"
    assert final.plan["phase"] == "report" and set(final.plan["tuning"]) == set(final.plan["learning_rates"])
    tuned = final.trials.filter(eval_role="selection")
    assert tuned.count() == 6 * 2 and {t.scores["sst2"]["eval_set"]["role"] for t in tuned} == {"selection"}
    report_run = final.trials.filter(eval_role="report", choices__arm="lora").first()
    assert report_run.scores["sst2"]["eval_set"]["role"] == "report"
    assert report_run.choices["learning_rate"] == final.plan["learning_rates"]["lora"]
    assert report_run.optimised_params > report_run.trainable_params  # the head trains too
    assert all(row["learning_rate"] and row["optimised_parameters"] for row in final.summary["rows"])
    # Downloads exist and the design JSON is the selected design with its decisions
    kinds = set(Artifact.objects.filter(search=search).values_list("kind", flat=True))
    assert {"design", "weights", "report_json", "report_md"} <= kinds
    design = json.loads((Path(settings.MEDIA_ROOT) / Artifact.objects.get(search=search, kind="design").path).read_text())
    assert design["schema"] == "pefs.design/1"
    assert len(design["provenance"]["decisions"]) == len(keys) - 1
    assert design["trainable_parameters"]["peft_total"] == pytest.approx(6000, rel=0.02)
    report = (Path(settings.MEDIA_ROOT) / Artifact.objects.get(search=search, kind="report_md").path).read_text()
    assert "What each number was scored on" in report and "Learning rate per arm" in report
    # Each arm's strategies train at their own rates (measured defaults times the arm's chosen factor)
    assert "(lora " in report and "(bitfit " in report
    client = Client()
    client.force_login(user)
    page = client.get(reverse("search-report", args=[search.pk])).content.decode()
    assert page.count('data-col="strategy-rates"') >= 5  # the selected design and the four baselines


@pytest.mark.django_db(transaction=True)
def test_stage_waits_for_a_person_and_an_override_keeps_its_reason(user, tiny_backbone, bundled_tasks):
    search = services.search_create(owner=user, name="manual", tasks=[bundled_tasks["rte"]], backbone=tiny_backbone,
                                    budget_kind="absolute", budget_value=6000, groups=2, preset="quick",
                                    overrides=TINY_OVERRIDES, seed=1)
    search = worker.search_run_local(search=search)
    assert search.status == Search.Status.WAITING
    stage = search.stages.get(key="S1")
    assert stage.status == Stage.Status.AWAITING and stage.summary["recommendation"]["choice"]
    # Overriding without a reason is refused and changes nothing
    other = next(c["choice"] for c in stage.summary["choices"] if c["choice"] != stage.recommendation["choice"])
    with pytest.raises(ValidationError) as error:
        services.stage_approve(stage=stage, user=user, choice=other)
    assert "reason" in error.value.message_dict
    assert Stage.objects.get(pk=stage.pk).status == Stage.Status.AWAITING
    # With a reason the override is recorded and the next stage samples the refined space
    services.stage_approve(stage=stage, user=user, choice=other, reason="spindle is what the paper found")
    stage.refresh_from_db()
    assert stage.decision["override"] is True and stage.override_reason == "spindle is what the paper found"
    assert stage.decided_by == user
    s2 = search.stages.get(key="S2")
    assert s2.space["choices"]["grouping"] == [other]
    assert set(Trial.objects.filter(stage=s2).values_list("choices__grouping", flat=True)) == {other}
