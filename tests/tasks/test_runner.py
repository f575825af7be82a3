"""run_design end to end: tiny random BERTs for the mechanics, the real MiniLM for one real run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tasks.data import DataError, user_task
from tasks.peft import HeadSpec, design_from_sizes, load_backbone
from tasks.peft.design import DesignError
from tasks.runner import BackboneCache, Cancelled, DesignOutcome, FullFineTuning, run_design
from tasks.train import TrainConfig

# CPU explicitly: the bitwise determinism checked here is a CPU promise (CUDA kernels with atomics
# are only approximately reproducible).
FAST = TrainConfig(
    batch_size=16,
    epochs=1,
    train_examples=32,
    max_length=32,
    learning_rate=1e-3,
    eval_batch_size=512,
    device="cpu",
)


@pytest.fixture
def tiny(tiny_bert_config, minilm_tokenizer):
    """A cache holding a tiny random BERT (with the MiniLM tokenizer) and a mixed design for it."""
    torch.manual_seed(0)
    backbone = load_backbone(
        config=tiny_bert_config, head=HeadSpec(problem="classification", num_labels=2)
    )
    backbone.tokenizer = minilm_tokenizer
    cache = BackboneCache()
    cache.put(backbone.shape.name_or_path, backbone)
    design = design_from_sizes(
        backbone.shape, {0: {"adapter": 4, "lora": 2}, 1: {"prefix": 3, "bitfit": 1}}, seed=5
    ).to_dict()
    return cache, design


class Recorder:
    def __init__(self):
        self.steps, self.evals, self.ends = [], [], []

    def on_step(self, task, step, values):
        self.steps.append((task, step, values["loss"]))

    def on_eval(self, task, step, metrics):
        self.evals.append((task, step, metrics))

    def on_end(self, outcome):
        self.ends.append(outcome)


def test_a_design_is_trained_and_scored_on_each_task(tiny):
    cache, design = tiny
    recorder = Recorder()
    outcome = run_design(
        design,
        ["rte", "stsb"],
        train_config=FAST,
        callbacks=recorder,
        should_stop=lambda: False,
        backbone_cache=cache,
    )

    assert isinstance(outcome, DesignOutcome)
    assert set(outcome.per_task) == {"rte", "stsb"}
    assert set(outcome.per_task["rte"]["metrics"]) == {"accuracy", "eval_loss", "eval_auc"}
    assert set(outcome.per_task["stsb"]["metrics"]) == {"pearson", "spearman", "eval_loss"}  # no AUC: regression
    assert outcome.score == pytest.approx(
        (outcome.per_task["rte"]["score"] + outcome.per_task["stsb"]["score"]) / 2
    )
    assert outcome.peft_total == design["trainable_parameters"]["peft_total"]
    # Heads: pooler (32*32+32) + classifier (32*n+n); the regression head has one output.
    assert outcome.per_task["rte"]["head_params"] == 32 * 32 + 32 + 32 * 2 + 2
    assert outcome.per_task["stsb"]["head_params"] == 32 * 32 + 32 + 32 + 1
    assert outcome.head_params == outcome.per_task["rte"]["head_params"]
    assert (
        outcome.per_task["rte"]["train_examples"] == 32
        and outcome.per_task["rte"]["eval_examples"] == 277
    )
    assert any("sub-sampled to 32" in note for note in outcome.notes)
    assert any("seed 5 (the design's seed)" in note for note in outcome.notes)

    assert [task for task, _, _ in recorder.steps] == ["rte", "rte", "stsb", "stsb"]
    assert [(task, step) for task, step, _ in recorder.evals] == [("rte", 2), ("stsb", 2)]
    assert recorder.ends == [outcome]
    assert outcome.to_dict()["per_task"]["rte"]["score"] == outcome.per_task["rte"]["score"]


def test_same_seed_same_losses_and_the_cache_stays_pristine(tiny):
    cache, design = tiny
    weights_before = {k: v.clone() for k, v in cache._entry("config:bert").weights.items()}

    def run(config=FAST):
        recorder = Recorder()
        outcome = run_design(
            design, ["rte"], train_config=config, callbacks=recorder, backbone_cache=cache
        )
        return [loss for _, _, loss in recorder.steps], outcome

    losses_a, outcome_a = run()
    losses_b, outcome_b = run()
    assert losses_a == losses_b and outcome_a.score == outcome_b.score
    for name, tensor in cache._entry("config:bert").weights.items():
        assert torch.equal(tensor, weights_before[name]), name
    losses_c, outcome_c = run(TrainConfig(**{**FAST.to_dict(), "seed": 6}))
    assert losses_c != losses_a and outcome_c.seed == 6
    assert any("seed 6 (train_config.seed)" in note for note in outcome_c.notes)


def test_stop_flag_raises_cancelled_without_an_outcome(tiny):
    cache, design = tiny
    recorder = Recorder()
    polls = iter(range(100))
    with pytest.raises(Cancelled):
        run_design(
            design,
            ["rte"],
            train_config=FAST,
            callbacks=recorder,
            should_stop=lambda: next(polls) >= 2,
            backbone_cache=cache,
        )
    assert recorder.ends == [] and recorder.evals == []


def test_a_fixed_head_must_fit_every_task(tiny):
    cache, design = tiny
    with pytest.raises(DesignError) as info:
        run_design(
            {**design, "head": {"problem": "classification", "num_labels": 2}},
            ["rte", "stsb"],
            train_config=FAST,
            backbone_cache=cache,
        )
    assert info.value.field == "head" and "stsb" in str(info.value)


def test_bad_task_lists_are_rejected(tiny):
    cache, design = tiny
    with pytest.raises(DataError, match="more than once"):
        run_design(design, ["rte", "RTE"], train_config=FAST, backbone_cache=cache)
    with pytest.raises(DataError, match="at least one task"):
        run_design(design, [], train_config=FAST, backbone_cache=cache)


def test_user_file_task_from_a_stored_spec_dict(tiny, tmp_path):
    cache, design = tiny
    path = tmp_path / "tickets.jsonl"
    words = ["refund", "broken", "thanks", "great"]
    path.write_text(
        "".join(
            f'{{"body": "{words[i % 4]} ticket {i}", "team": "{["billing", "support", "sales"][i % 3]}"}}\n'
            for i in range(60)
        )
    )
    spec = user_task(path, text_columns=["body"], label_column="team").to_dict()
    outcome = run_design(design, [spec], train_config=FAST, backbone_cache=cache)
    entry = outcome.per_task["tickets"]
    assert entry["eval_examples"] == 6 and entry["head_params"] == 32 * 32 + 32 + 32 * 3 + 3
    assert any("held out" in note for note in outcome.notes)


def test_trained_weights_are_saved_per_task_when_asked(tiny, tmp_path):
    cache, design = tiny
    outcome = run_design(
        design, ["wnli"], train_config=FAST, backbone_cache=cache, output_dir=tmp_path
    )
    directory = tmp_path / "wnli"
    assert outcome.saved == {"wnli": str(directory)}
    assert any(directory.iterdir())


def test_an_encoder_decoder_backbone_runs_through_the_same_path(minilm_tokenizer):
    """A tiny random BART (layers = encoder then decoder blocks) with the MiniLM tokenizer,
    whose [SEP] plays BART's </s> (the classification head reads the last one)."""
    from transformers import BartConfig

    tok = minilm_tokenizer
    config = BartConfig(
        vocab_size=tok.vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
        decoder_start_token_id=tok.sep_token_id, forced_eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    backbone = load_backbone(config=config, head=HeadSpec(problem="classification", num_labels=2))
    backbone.tokenizer = tok
    cache = BackboneCache()
    cache.put(backbone.shape.name_or_path, backbone)
    sizes = {0: {"adapter": 4, "prefix": 2}, 1: {"lora": 2, "bitfit": 1}}
    # An explicit MLP width: the sizing rule gives a prefix this short no reparameterisation.
    design = design_from_sizes(
        backbone.shape, sizes, seed=1, options={"prefix": {"mlp_hidden": 16}}
    ).to_dict()

    outcome = run_design(design, ["rte"], train_config=FAST, backbone_cache=cache)

    assert outcome.peft_total == design["trainable_parameters"]["peft_total"]
    assert 0.0 <= outcome.per_task["rte"]["metrics"]["accuracy"] <= 1.0
    assert outcome.per_task["rte"]["training_only"] > 0  # the prefix MLP, trained but not stored


def test_full_finetuning_baseline_trains_every_parameter(tiny, tmp_path):
    cache, design = tiny
    document = {"full_finetuning": True, "backbone": design["backbone"]["name_or_path"]}
    outcome = run_design(
        document, ["rte"], train_config=TrainConfig(**{**FAST.to_dict(), "learning_rate": 1e-3}),
        callbacks=Recorder(), backbone_cache=cache, output_dir=tmp_path,
    )  # fmt: skip
    entry = outcome.per_task["rte"]
    shape = cache._entry("config:bert").shape
    assert outcome.peft_total == shape.total_params  # the whole backbone, head apart
    assert entry["trainable_total"] == shape.total_params + entry["head_params"]
    assert any("learning rate 5e-05 (capped at 5e-05)" in note for note in outcome.notes)
    assert (tmp_path / "rte" / "config.json").is_file()
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "rte").iterdir())


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"full_finetuning": False, "backbone": "x"}, "full_finetuning"),
        ({"full_finetuning": True}, "backbone"),
        ({"full_finetuning": True, "backbone": "x", "seed": -1}, "seed"),
        ({"full_finetuning": True, "backbone": "x", "learning_rate": 0}, "learning_rate"),
        ({"full_finetuning": True, "backbone": "x", "layers": []}, "layers"),
    ],
)
def test_bad_full_finetuning_documents_name_the_field(document, field):
    with pytest.raises(DesignError) as info:
        FullFineTuning.from_dict(document)
    assert info.value.field == field


@pytest.mark.slow
def test_real_minilm_beats_the_majority_class_on_sst2():
    """Pretrained MiniLM, SST-2, 512 training examples, 1 epoch, LoRA+adapter on every layer."""
    from tasks.data import load_task

    cache = BackboneCache()
    shape = cache.load(None, head=HeadSpec(problem="classification", num_labels=2), seed=0).shape
    design = design_from_sizes(
        shape, {i: {"adapter": 8, "lora": 4} for i in range(shape.num_layers)}, seed=0
    )
    config = TrainConfig(
        batch_size=16,
        epochs=1,
        train_examples=512,
        max_length=64,
        learning_rate=3e-3,
        eval_batch_size=128,
        device="cpu",
    )
    outcome = run_design(design.to_dict(), ["sst2"], train_config=config, backbone_cache=cache)

    dev_labels = load_task("sst2").eval["label"]
    majority = max(dev_labels.count(0), dev_labels.count(1)) / len(dev_labels)  # 444/872
    assert outcome.per_task["sst2"]["eval_examples"] == 872
    assert outcome.per_task["sst2"]["metrics"]["accuracy"] > majority + 0.05
    assert cache.disk_loads == 1


def test_the_pooler_starts_from_the_checkpoint(tmp_path, tiny_bert_config, minilm_tokenizer):
    """Only the classifier is new: BERT's pretrained pooler is loaded, not replaced at random."""
    from transformers import BertModel

    torch.manual_seed(3)
    saved = BertModel(tiny_bert_config, add_pooling_layer=True)
    saved.save_pretrained(tmp_path)
    minilm_tokenizer.save_pretrained(tmp_path)
    cache = BackboneCache()
    head = HeadSpec(problem="classification", num_labels=3)
    first = cache.load(str(tmp_path), head=head, seed=1)
    again = cache.load(str(tmp_path), head=head, seed=1)
    other_seed = cache.load(str(tmp_path), head=head, seed=2)
    for model in (first.model, other_seed.model):
        assert torch.equal(model.bert.pooler.dense.weight, saved.pooler.dense.weight)
        assert torch.equal(model.bert.pooler.dense.bias, saved.pooler.dense.bias)
    # The new classifier depends on the seed only: every arm with that seed gets the same head.
    assert torch.equal(first.model.classifier.weight, again.model.classifier.weight)
    assert not torch.equal(first.model.classifier.weight, other_seed.model.classifier.weight)


def test_outcome_reports_stored_and_trained_counts_and_rates(tiny):
    cache, design = tiny
    design["options"]["prefix"]["learning_rate"] = 1e-2
    design["options"]["prefix"]["mlp_hidden"] = 8
    outcome = run_design(design, ["rte"], train_config=FAST, backbone_cache=cache)
    entry = outcome.per_task["rte"]
    counts = outcome.trainable_parameters
    assert counts == entry["trainable_parameters"]
    assert counts["peft_stored"] == outcome.peft_total == design["trainable_parameters"]["peft_total"]
    assert counts["head"] == outcome.head_params == 32 * 32 + 32 + 32 * 2 + 2
    kv = 32
    assert counts["reparameterisation"] == 3 * kv + kv * 8 + 8 + 8 * 2 * kv + 2 * kv
    # The prefix's stored vectors are computed, not trained: the optimiser sees its MLP instead.
    prefix_stored = 2 * 3 * kv
    assert counts["optimised_total"] == (
        counts["peft_stored"] - prefix_stored + counts["reparameterisation"] + counts["head"]
    )
    assert entry["learning_rates"] == {
        "head": FAST.learning_rate, "adapter": FAST.learning_rate, "prefix": 1e-2,
        "bitfit": FAST.learning_rate, "lora": FAST.learning_rate,
    }  # fmt: skip
    assert outcome.to_dict()["trainable_parameters"] == counts


def test_a_role_picks_the_evaluation_set_and_the_outcome_says_which_examples(tiny):
    cache, design = tiny
    config = dataclasses.replace(FAST, eval_examples=40)
    stage = run_design(design, ["rte"], train_config=config, backbone_cache=cache, role="selection")
    final = run_design(design, ["rte"], train_config=config, backbone_cache=cache, role="report")
    selection, report = stage.per_task["rte"]["eval_set"], final.per_task["rte"]["eval_set"]
    # Stage trials are scored on examples held out of GLUE train, the final comparison on dev
    assert (selection["role"], selection["held_out"], selection["count"]) == ("selection", True, 40)
    assert report["role"] == "report" and report["count"] == 40
    assert selection["split"] != report["split"] or selection["held_out"] != report["held_out"]
    assert selection["description"].startswith("selection: 40 of ")
    # Both train on the same examples, which neither evaluation set shares
    assert stage.per_task["rte"]["train_set"] == final.per_task["rte"]["train_set"]
    assert stage.per_task["rte"]["train_set"]["count"] == 32
