"""The training loop on tiny random BERTs: config validation, determinism, callbacks, cancel."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tasks.data import encode_task
from tasks.train import (
    Callbacks,
    Cancelled,
    TrainConfig,
    TrainConfigError,
    TrainingDiverged,
    evaluate,
    train,
)


def _model(config, num_labels=2, seed=0):
    from transformers import BertForSequenceClassification

    config = config.__class__.from_dict({**config.to_dict(), "num_labels": num_labels})
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


@pytest.fixture
def rte(minilm_tokenizer):
    return encode_task("rte", minilm_tokenizer, max_length=32, train_examples=48)


class Recorder(Callbacks):
    def __init__(self):
        super().__init__(on_step=self.step, on_eval=self.eval)
        self.steps, self.evals = [], []

    def step(self, task, step, values):
        self.steps.append((task, step, values))

    def eval(self, task, step, metrics):
        self.evals.append((task, step, metrics))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("epochs", -1),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("warmup_ratio", 1.5),
        ("weight_decay", -0.1),
        ("max_grad_norm", 0.0),
        ("max_length", 4),
        ("train_examples", 0),
        ("eval_batch_size", 0),
        ("seed", -3),
        ("device", "tpu"),
        ("eval_every", 0),
        ("bf16", "yes"),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(TrainConfigError) as info:
        TrainConfig(**{field: value})
    assert info.value.field == field


def test_config_round_trips_and_rejects_unknown_keys():
    config = TrainConfig(batch_size=8, eval_every=5, max_grad_norm=None, seed=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(TrainConfigError) as info:
        TrainConfig.from_dict({"batch_size": 8, "lr": 0.1})
    assert info.value.field == "lr"


def test_same_seed_gives_identical_losses_and_scores(tiny_bert_config, rte):
    def run(seed):
        recorder = Recorder()
        result = train(
            _model(tiny_bert_config),
            rte,
            TrainConfig(batch_size=16, epochs=2, learning_rate=1e-3, seed=seed, device="cpu"),
            callbacks=recorder,
        )
        return [values["loss"] for _, _, values in recorder.steps], result

    losses_a, result_a = run(7)
    losses_b, result_b = run(7)
    losses_c, _ = run(8)
    assert losses_a == losses_b  # bitwise, not approximately
    assert result_a.metrics == result_b.metrics and result_a.score == result_b.score
    assert losses_a != losses_c  # the seed drives data order and dropout


def test_callbacks_report_steps_evaluations_and_the_schedule(tiny_bert_config, rte):
    recorder = Recorder()
    config = TrainConfig(
        batch_size=16, epochs=2, learning_rate=1e-3, warmup_ratio=0.5, eval_every=2
    )
    result = train(_model(tiny_bert_config), rte, config, callbacks=recorder, task_name="rte-small")

    # 48 examples / 16 per batch = 3 steps per epoch, 6 in all
    assert [s for _, s, _ in recorder.steps] == [1, 2, 3, 4, 5, 6]
    assert {task for task, _, _ in recorder.steps} == {"rte-small"}
    assert all(set(v) == {"loss", "lr", "examples_per_s"} for _, _, v in recorder.steps)
    assert all(v["examples_per_s"] > 0 and math.isfinite(v["loss"]) for _, _, v in recorder.steps)
    lrs = [v["lr"] for _, _, v in recorder.steps]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-3 * 3 / 4)  # warm-up over 3 steps
    assert lrs[3] > lrs[4] > lrs[5] > 0  # then linear decay

    # eval_every=2 adds step 2 and 4; epoch ends add 3 and 6 (step 6 is not evaluated twice)
    assert [s for _, s, _ in recorder.evals] == [2, 3, 4, 6]
    assert [m["epoch"] for _, _, m in recorder.evals] == pytest.approx([2 / 3, 1.0, 4 / 3, 2.0])
    last = recorder.evals[-1][2]
    assert result.score == last["score"] == pytest.approx(100 * last["accuracy"])
    assert result.steps == 6
    assert result.metrics == {key: last[key] for key in ("accuracy", "eval_loss", "eval_auc")}


def test_stop_flag_cancels_within_a_step(tiny_bert_config, rte):
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 2

    recorder = Recorder()
    with pytest.raises(Cancelled) as info:
        train(
            _model(tiny_bert_config),
            rte,
            TrainConfig(batch_size=8, epochs=3),
            callbacks=recorder,
            should_stop=should_stop,
        )
    assert info.value.step == 2 and info.value.task == "rte"
    assert len(recorder.steps) == 2 and recorder.evals == []


def test_only_trainable_parameters_change(tiny_bert_config, rte):
    model = _model(tiny_bert_config)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier.")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, rte, TrainConfig(batch_size=16, epochs=1, learning_rate=1e-2))
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param.detach().cpu())
        assert changed == name.startswith("classifier."), name


def test_no_trainable_parameters_is_an_error(tiny_bert_config, rte):
    model = _model(tiny_bert_config).requires_grad_(False)
    with pytest.raises(TrainConfigError, match="no trainable parameters"):
        train(model, rte, TrainConfig())


def test_regression_task_reports_correlations(tiny_bert_config, minilm_tokenizer):
    stsb = encode_task("stsb", minilm_tokenizer, max_length=32, train_examples=32)
    result = train(
        _model(tiny_bert_config, num_labels=1),
        stsb,
        TrainConfig(batch_size=16, epochs=1, eval_batch_size=256),
    )
    assert set(result.metrics) == {"pearson", "spearman", "eval_loss"}
    assert result.score == pytest.approx(
        50 * (result.metrics["pearson"] + result.metrics["spearman"])
    )
    assert math.isfinite(result.final_loss)


def _eval_inputs(encoded):
    """The evaluation set as one padded batch, built here rather than by the engine."""
    columns = {name: encoded.eval[name][:] for name in encoded.input_columns}
    width = max(len(row) for row in columns["input_ids"])
    inputs = {}
    for name, rows in columns.items():
        pad = encoded.pad_token_id if name == "input_ids" else 0
        inputs[name] = torch.tensor([list(row) + [pad] * (width - len(row)) for row in rows])
    return inputs


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_eval_loss_is_the_mean_loss_over_the_evaluation_set(tiny_bert_config, rte, batch_size):
    model = _model(tiny_bert_config).eval()
    with torch.no_grad():
        logits = model(**_eval_inputs(rte)).logits
    expected = nn.functional.cross_entropy(logits, torch.tensor(rte.eval["labels"][:]))
    metrics = evaluate(model, rte, batch_size=batch_size)
    assert metrics["eval_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_eval_loss_of_a_regression_task_is_the_squared_error(tiny_bert_config, minilm_tokenizer):
    stsb = encode_task("stsb", minilm_tokenizer, max_length=32, train_examples=32, eval_examples=40)
    model = _model(tiny_bert_config, num_labels=1).eval()
    with torch.no_grad():
        predictions = model(**_eval_inputs(stsb)).logits.view(-1)
    expected = nn.functional.mse_loss(predictions, torch.tensor(stsb.eval["labels"][:], dtype=torch.float32))
    assert evaluate(model, stsb, batch_size=16)["eval_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_evaluate_leaves_the_training_mode_alone(tiny_bert_config, rte):
    model = _model(tiny_bert_config).train()
    metrics = evaluate(model, rte, batch_size=100)
    assert model.training and 0.0 <= metrics["accuracy"] <= 1.0


class _NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))

    def forward(self, input_ids, **_):
        return self.weight.expand(input_ids.shape[0], 2) * float("nan")


def test_a_non_finite_loss_stops_training(rte):
    with pytest.raises(TrainingDiverged, match="diverged at step 1"):
        train(_NaNModel(), rte, TrainConfig(batch_size=16))


def test_each_strategy_trains_in_its_own_group_at_its_own_rate(tiny_bert_config):
    """One logical optimiser group per strategy and the head, each parameter in exactly one."""
    import torch

    from tasks.peft import HeadSpec, apply, design_from_sizes, load_backbone
    from tasks.peft.engine import parameter_groups
    from tasks.runner import design_learning_rates
    from tasks.train import TrainConfig, optimizer_groups

    torch.manual_seed(0)
    backbone = load_backbone(config=tiny_bert_config, head=HeadSpec("classification", 2))
    design = design_from_sizes(
        backbone.shape,
        {0: {"adapter": 4, "lora": 2}, 1: {"prefix": 30, "bitfit": 1}},
        seed=0,
        options={"prefix": {"learning_rate": 1e-2}, "lora": {"learning_rate": 3e-4}},
    )
    apply(backbone, design)
    config = TrainConfig(learning_rate=1e-3, weight_decay=0.01)
    groups = parameter_groups(backbone.model)
    rates = design_learning_rates(design, config.learning_rate)
    assert rates == {"head": 1e-3, "adapter": 1e-3, "prefix": 1e-2, "bitfit": 1e-3, "lora": 3e-4}
    torch_groups = optimizer_groups(backbone.model, config, groups, rates)
    assert [g["group"] for g in torch_groups if g["weight_decay"]] == [
        "head", "adapter", "prefix", "lora",  # BitFit trains vectors only: no decayed group
    ]
    assert {g["group"] for g in torch_groups} == set(rates)
    for group in torch_groups:
        assert group["lr"] == rates[group["group"]]
        assert all((p.ndim >= 2) == bool(group["weight_decay"]) for p in group["params"])
    seen = [id(p) for g in torch_groups for p in g["params"]]
    trainable = [id(p) for p in backbone.model.parameters() if p.requires_grad]
    assert len(seen) == len(set(seen)) and set(seen) == set(trainable)
    # The prefix group holds its reparameterisation (inputs and the shared MLP), not only vectors.
    prefix_params = sum(p.numel() for p in groups["prefix"])
    assert prefix_params > 0 and any(p.ndim == 2 and p.shape[0] != 30 for p in groups["prefix"])
    optimizer = torch.optim.AdamW(torch_groups, lr=config.learning_rate)
    assert {g["group"]: g["lr"] for g in optimizer.param_groups} == rates


def test_groups_must_cover_every_trainable_parameter_once(tiny_bert_config):
    import torch

    from tasks.peft import HeadSpec, load_backbone
    from tasks.train import TrainConfig, TrainConfigError, optimizer_groups

    torch.manual_seed(0)
    model = load_backbone(config=tiny_bert_config, head=HeadSpec("classification", 2)).model
    params = [p for p in model.parameters() if p.requires_grad]
    config = TrainConfig()
    with pytest.raises(TrainConfigError, match="in both"):
        optimizer_groups(model, config, {"a": params, "b": params[:1]})
    with pytest.raises(TrainConfigError, match="belong to no group"):
        optimizer_groups(model, config, {"a": params[1:]})
    with pytest.raises(TrainConfigError) as err:
        optimizer_groups(model, config, {"a": params}, {"b": 1e-3})
    assert err.value.field == "learning_rates"
