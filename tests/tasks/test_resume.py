"""Rungs of successive halving: stop a design at an epoch, checkpoint it, resume it elsewhere.

Tiny random BERTs (dropout on) with a design that mixes all four strategies, the prefix with its
reparameterisation MLP, so every kind of trainable state goes through the checkpoint. CPU runs are
deterministic, so an interrupted run must give exactly (==, not approx) the losses of a straight one.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tasks.peft import HeadSpec, design_from_sizes, load_backbone
from tasks.runner import BackboneCache, Cancelled, CheckpointError, TrainConfigError, run_design
from tasks.train import TrainConfig
from tests.tasks.test_runner import FAST

E3 = dataclasses.replace(FAST, epochs=3, eval_examples=64)  # CPU: bitwise deterministic
STEPS_PER_EPOCH = 2  # 32 examples, batches of 16


def fresh_cache(config, tokenizer):
    """A new cache with new model objects: what a fresh worker process would have."""
    torch.manual_seed(0)
    backbone = load_backbone(config=config, head=HeadSpec(problem="classification", num_labels=2))
    backbone.tokenizer = tokenizer
    cache = BackboneCache()
    cache.put(backbone.shape.name_or_path, backbone)
    return cache, backbone.shape


@pytest.fixture
def setup(tiny_bert_config, minilm_tokenizer):
    assert tiny_bert_config.hidden_dropout_prob > 0  # dropout draws from the RNG being restored
    cache, shape = fresh_cache(tiny_bert_config, minilm_tokenizer)
    sizes = {0: {"adapter": 4, "lora": 2}, 1: {"prefix": 3, "bitfit": 1}}
    design = design_from_sizes(shape, sizes, seed=5, options={"prefix": {"mlp_hidden": 16}})
    return cache, design.to_dict(), lambda: fresh_cache(tiny_bert_config, minilm_tokenizer)[0]


class Recorder:
    def __init__(self):
        self.steps, self.evals = [], []

    def on_step(self, task, step, values):
        self.steps.append((task, step, values["loss"], values["lr"]))

    def on_eval(self, task, step, metrics):
        self.evals.append((task, step, metrics["epoch"], metrics["score"]))


def run(design, cache, tasks=("rte",), **kwargs):
    recorder = Recorder()
    outcome = run_design(
        design, list(tasks), train_config=kwargs.pop("config", E3), callbacks=recorder,
        backbone_cache=cache, **kwargs,
    )  # fmt: skip
    return outcome, recorder


def test_stopping_and_resuming_in_fresh_processes_equals_one_straight_run(setup, tmp_path):
    cache, design, new_cache = setup
    straight, whole = run(design, cache, tasks=("rte", "stsb"))
    assert straight.per_task["rte"]["training_only"] > 0  # the prefix MLP is in the state too

    first, part1 = run(design, new_cache(), tasks=("rte", "stsb"), until_epoch=1,
                       checkpoint_dir=tmp_path / "rung1")  # fmt: skip
    second, part2 = run(design, new_cache(), tasks=("rte", "stsb"), until_epoch=2,
                        resume_from=tmp_path / "rung1", checkpoint_dir=tmp_path / "rung2")  # fmt: skip
    third, part3 = run(design, new_cache(), tasks=("rte", "stsb"),
                       resume_from=tmp_path / "rung2")  # fmt: skip

    for task in ("rte", "stsb"):  # each task trains on its own, so compare task by task
        def of(records, task=task):
            return [record for record in records if record[0] == task]

        # Losses, rates and step numbers; then evaluation steps, epochs and scores.
        assert of(part1.steps) + of(part2.steps) + of(part3.steps) == of(whole.steps)
        assert of(part1.evals) + of(part2.evals) + of(part3.evals) == of(whole.evals)
    assert third.score == straight.score and third.per_task["rte"]["metrics"] == (
        straight.per_task["rte"]["metrics"]
    )
    assert (first.epochs_done, second.epochs_done, third.epochs_done) == (1, 2, 3)
    assert second.per_task["stsb"]["epochs_done"] == 2
    # A rung's score is the evaluation at the end of its epoch.
    assert first.per_task["rte"]["score"] == whole.evals[0][3] and whole.evals[0][2] == 1.0
    assert second.per_task["rte"]["score"] == whole.evals[1][3] and whole.evals[1][2] == 2.0
    assert first.checkpoints == {t: str(tmp_path / "rung1" / t) for t in ("rte", "stsb")}
    assert third.checkpoints == {}
    assert any("stopped after epoch 1 of 3" in note for note in first.notes)


def test_step_numbers_continue_from_the_checkpoint(setup, tmp_path):
    cache, design, new_cache = setup
    run(design, cache, until_epoch=1, checkpoint_dir=tmp_path)
    outcome, resumed = run(design, new_cache(), until_epoch=2, resume_from=tmp_path)
    assert [step for _, step, _, _ in resumed.steps] == [3, 4]
    assert [(step, epoch) for _, step, epoch, _ in resumed.evals] == [(4, 2.0)]
    assert outcome.per_task["rte"]["steps"] == 2 * STEPS_PER_EPOCH


def _rewrite_state(directory, **changes):
    path = directory / "state.pt"
    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save(state, path)


@pytest.mark.parametrize("rng", ["cpu_rng", "order_rng"])
def test_the_restored_rng_states_are_what_makes_the_resume_exact(setup, tmp_path, rng):
    """Resuming with a different dropout (or data-order) RNG state changes the losses: the equality
    above is earned by restoring them, not by an RNG the run never draws from."""
    cache, design, new_cache = setup
    _, whole = run(design, cache, until_epoch=2)
    run(design, new_cache(), until_epoch=1, checkpoint_dir=tmp_path)
    _, faithful = run(design, new_cache(), until_epoch=2, resume_from=tmp_path, checkpoint_dir=tmp_path / "x")
    assert faithful.steps == whole.steps[STEPS_PER_EPOCH:]

    _rewrite_state(tmp_path / "rte", **{rng: torch.Generator().manual_seed(12345).get_state()})
    _, tampered = run(design, new_cache(), until_epoch=2, resume_from=tmp_path)
    assert [loss for _, _, loss, _ in tampered.steps] != [loss for _, _, loss, _ in faithful.steps]


def test_the_checkpoint_holds_only_trainable_parameters(setup, tmp_path):
    from safetensors.torch import load_file

    cache, design, _ = setup
    outcome, _ = run(design, cache, until_epoch=1, checkpoint_dir=tmp_path)
    directory = tmp_path / "rte"
    assert sorted(p.name for p in directory.iterdir()) == [
        "meta.json", "state.pt", "trainable.safetensors",
    ]  # fmt: skip
    saved = load_file(str(directory / "trainable.safetensors"))
    assert sum(t.numel() for t in saved.values()) == outcome.trainable_parameters["optimised_total"]
    assert not any("word_embeddings" in name for name in saved)
    backbone_bytes = 4 * sum(t.numel() for t in cache._entry("config:bert").weights.values())
    assert sum(p.stat().st_size for p in directory.iterdir()) < backbone_bytes / 20
    meta = json.loads((directory / "meta.json").read_text())
    assert (meta["epochs_done"], meta["step"], meta["task"]) == (1, STEPS_PER_EPOCH, "rte")
    assert [e["epoch"] for e in meta["evaluations"]] == [1.0]
    # Loads without unpickling code.
    assert set(torch.load(directory / "state.pt", weights_only=True)) >= {"optimizer", "scheduler"}
    # No staging directory left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rte"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"config": TrainConfig(**{**E3.to_dict(), "batch_size": 8})}, "batch_size"),
        ({"config": TrainConfig(**{**E3.to_dict(), "epochs": 4})}, "epochs"),
        ({"config": TrainConfig(**{**E3.to_dict(), "seed": 9})}, "seed"),
        ({"config": TrainConfig(**{**E3.to_dict(), "train_examples": 48})}, "train_examples"),
        ({"role": "selection"}, "role"),
        ({"tasks": ("rte", "stsb")}, "tasks"),
        ({"design_seed": 6}, "design"),
        ({"resume_from": "elsewhere"}, "resume_from"),
    ],
)
def test_a_mismatched_resume_is_refused_naming_what_differs(setup, tmp_path, change, field):
    cache, design, _ = setup
    run(design, cache, until_epoch=1, checkpoint_dir=tmp_path / "rung1")
    change = dict(change)
    if "design_seed" in change:
        design = {**design, "seed": change.pop("design_seed")}
    change["resume_from"] = tmp_path / change.get("resume_from", "rung1")
    with pytest.raises(CheckpointError) as info:
        run(design, cache, until_epoch=2, **change)
    assert info.value.field == field, str(info.value)


def test_until_epoch_is_checked(setup, tmp_path):
    cache, design, _ = setup
    for bad in (0, 4, "2", True):
        with pytest.raises(TrainConfigError) as info:
            run(design, cache, until_epoch=bad)
        assert info.value.field == "until_epoch"
    run(design, cache, until_epoch=2, checkpoint_dir=tmp_path)
    with pytest.raises(TrainConfigError, match="must be in \\[3, 3\\]") as info:
        run(design, cache, until_epoch=2, resume_from=tmp_path)
    assert info.value.field == "until_epoch"


def test_a_cancelled_or_failed_run_leaves_no_checkpoint(setup, tmp_path):
    cache, design, _ = setup
    polls = iter(range(1000))
    # rte trains (and would be checkpointed), then stsb is cancelled: neither is kept.
    with pytest.raises(Cancelled) as info:
        run(design, cache, tasks=("rte", "stsb"), until_epoch=1, checkpoint_dir=tmp_path,
            should_stop=lambda: next(polls) >= 2 * STEPS_PER_EPOCH + 2)  # fmt: skip
    assert info.value.task == "stsb"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError) as refused:
        run(design, cache, until_epoch=2, resume_from=tmp_path)
    assert refused.value.field == "tasks"


def test_full_finetuning_has_no_rungs(setup, tmp_path):
    cache, design, _ = setup
    document = {"full_finetuning": True, "backbone": design["backbone"]["name_or_path"]}
    for argument in ({"until_epoch": 1}, {"checkpoint_dir": tmp_path}, {"resume_from": tmp_path}):
        with pytest.raises(CheckpointError) as info:
            run(document, cache, **argument)
        assert info.value.field == next(iter(argument))


def test_a_write_that_fails_midway_leaves_no_checkpoint(setup, tmp_path, monkeypatch):
    import tasks.checkpoint

    cache, design, _ = setup

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # The parameters are written, then the state file fails.
    monkeypatch.setattr(tasks.checkpoint.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        run(design, cache, until_epoch=1, checkpoint_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
