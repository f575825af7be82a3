"""tasks.timing: the phases a design's run is split into, measured by the runner and reported to on_phase."""

from __future__ import annotations

import pytest
import torch

from tasks.peft import HeadSpec, design_from_sizes, load_backbone
from tasks.runner import BackboneCache, run_design
from tasks.timing import PhaseTimer, add_phases, rounded
from tasks.train import TrainConfig

FAST = TrainConfig(batch_size=16, epochs=2, train_examples=32, eval_examples=64, max_length=32,
                   learning_rate=1e-3, eval_batch_size=512, device="cpu")


class Recorder:
    def __init__(self):
        self.steps, self.evals, self.phases = [], [], []

    def on_step(self, task, step, values):
        self.steps.append(step)

    def on_eval(self, task, step, metrics):
        self.evals.append(step)

    def on_phase(self, task, phase, seconds):
        self.phases.append((task, phase, seconds))


def test_timed_training_splits_the_first_step_later_steps_evaluations_and_the_callers_time():
    # Given a timer and the callbacks it wraps around one training run
    recorder = Recorder()
    timer = PhaseTimer(recorder)
    timed = timer.training("rte", recorder)
    # When the loop reports two steps, an evaluation and a third step, then returns
    timed.on_step("rte", 1, {"loss": 1.0})
    timed.on_step("rte", 2, {"loss": 0.9})
    timed.on_eval("rte", 2, {"score": 50.0})
    timed.on_step("rte", 3, {"loss": 0.8})
    timed.close()
    # Then the caller still got every callback, and each phase was reported and summed
    assert recorder.steps == [1, 2, 3] and recorder.evals == [2]
    assert set(timer.totals) == {"first_step", "training", "evaluation", "recording"}
    reported = [phase for _, phase, _ in recorder.phases]
    assert reported.count("first_step") == 1 and reported.count("recording") == 4
    assert all(task == "rte" and seconds >= 0 for task, _, seconds in recorder.phases)
    assert timer.per_task["rte"] == timer.totals


def test_phase_dicts_add_up_and_are_stored_rounded_in_trial_order():
    summed = add_phases({"training": 1.0, "data": 0.5}, {"training": 2.0, "queued": 0.25})
    assert summed == {"training": 3.0, "data": 0.5, "queued": 0.25}
    assert list(rounded({"other": 0.1, "training": 1.23456, "queued": -0.01})) == ["queued", "training", "other"]
    assert rounded({"training": 1.23456})["training"] == 1.2346 and rounded({"queued": -0.01})["queued"] == 0.0


@pytest.mark.slow
def test_run_design_times_every_phase_of_every_task_within_its_duration(tiny_bert_config, minilm_tokenizer,
                                                                        tmp_path):
    torch.manual_seed(0)
    backbone = load_backbone(config=tiny_bert_config, head=HeadSpec(problem="classification", num_labels=2))
    backbone.tokenizer = minilm_tokenizer
    cache = BackboneCache()
    cache.put(backbone.shape.name_or_path, backbone)
    design = design_from_sizes(backbone.shape, {0: {"adapter": 4, "lora": 2}, 1: {"bitfit": 1}}, seed=5).to_dict()
    recorder = Recorder()

    outcome = run_design(design, ["rte", "sst2"], train_config=FAST, callbacks=recorder, backbone_cache=cache,
                         output_dir=tmp_path / "out", until_epoch=1, checkpoint_dir=tmp_path / "ckpt")

    phases = {"data", "model", "first_step", "training", "evaluation", "recording", "artifacts"}
    assert set(outcome.timing) == phases
    for task in ("rte", "sst2"):
        assert set(outcome.per_task[task]["timing"]) == phases
    # Every reported phase is in the totals, nothing is negative, and the phases fit in the run
    reported: dict[str, float] = {}
    for _, phase, seconds in recorder.phases:
        reported[phase] = reported.get(phase, 0.0) + seconds
    assert reported == pytest.approx(outcome.timing)
    assert all(seconds >= 0 for seconds in outcome.timing.values())
    assert sum(outcome.timing.values()) <= outcome.seconds
    # The steps before and after the first are split: one first step per task, the rest is training
    assert outcome.per_task["rte"]["steps"] == 2 and recorder.steps.count(1) == 2
    assert outcome.to_dict()["timing"] == outcome.timing
