"""The trial row (trials API, WebSocket trial events) is built directly, not by DRF's generic walk
over its fields (issue 14: that walk was most of a trials page's time). It must stay the same dict,
key for key and value for value, in every state a trial can be in."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers as drf

from experiments import selectors
from experiments.api.serializers import TrialDetailSerializer, TrialSerializer
from experiments.models import Trial
from tests.factories import StageFactory, TrialFactory

pytestmark = pytest.mark.django_db


def generic(trial: Trial) -> dict:
    return drf.ModelSerializer.to_representation(TrialSerializer(), trial)


def trials_in_every_state() -> list[Trial]:
    now = timezone.now()
    halving = StageFactory(plan={"halving": {"eta": 2, "rungs": [1, 2]}}, rung=1)
    plain = StageFactory(search=halving.search)
    made = [
        TrialFactory(stage=plain),  # queued: no times, no score
        TrialFactory(stage=plain, status=Trial.Status.RUNNING, started_at=now, attempt=2, cancel_requested=True),
        TrialFactory(stage=plain, status=Trial.Status.SUCCEEDED, started_at=now - timedelta(seconds=12.5),
                     finished_at=now, score=71.25, duration_s=12.5, optimised_params=2048, head_params=512,
                     label="LoRA", kind=Trial.Kind.BASELINE),
        TrialFactory(stage=plain, status=Trial.Status.FAILED, error="x" * 5000, finished_at=now),
        TrialFactory(stage=halving, status=Trial.Status.SUCCEEDED, rung=0, halted=True, score=60.0,
                     rung_scores=[60.0], finished_at=now),
        TrialFactory(stage=halving, status=Trial.Status.RUNNING, rung=1, rung_scores=[66.5], started_at=now),
        TrialFactory(stage=plain, status=Trial.Status.SUCCEEDED, score=0, duration_s=0.0, finished_at=now,
                     choices={}, design={"layers": []}),
    ]
    return list(selectors.trial_list(search=halving.search).filter(pk__in=[t.pk for t in made]))


def test_the_direct_row_equals_drfs_generic_walk_in_every_state():
    trials = trials_in_every_state()
    assert len(trials) == 7
    for trial in trials:
        direct = TrialSerializer(trial).data
        assert list(direct) == TrialSerializer.Meta.fields
        assert direct == generic(trial), trial.status
        # Equal as JSON too (types, not only values: 0 is not 0.0 once rendered)
        assert json.dumps(direct, sort_keys=True) == json.dumps(generic(trial), sort_keys=True)


def test_a_failed_trials_row_previews_its_error_and_the_detail_keeps_it_whole():
    failed = next(t for t in trials_in_every_state() if t.status == Trial.Status.FAILED)
    assert len(TrialSerializer(failed).data["error"]) < len(failed.error)
    detail = TrialDetailSerializer(Trial.objects.get(pk=failed.pk)).data
    assert detail["error"] == failed.error and "design" in detail and "timing" in detail
