"""save/load round trip (atol 1e-5) and Hugging Face PEFT export verified with the peft library."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tasks.peft import NotExpressible, apply, design_from_sizes, export_peft, load, save
from tasks.peft.persistence import DESIGN_FILE, HEAD_FILE, PEFT_FILE
from tests.tasks.peft.conftest import logits, tiny_backbone, tiny_inputs


def train_a_little(model, family, steps: int = 3) -> None:
    """A few real optimiser steps so that every PEFT tensor moves away from its initial value."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    labels = torch.tensor([0, 1, 2])
    for _ in range(steps):
        optimizer.zero_grad()
        model(**tiny_inputs(family), labels=labels).loss.backward()
        optimizer.step()


def apply_and_train(backbone, design, family, untouched):
    """Apply ``design`` and train briefly; return inputs and logits (checked != ``untouched``)."""
    apply(backbone, design)
    train_a_little(backbone.model, family)
    inputs = tiny_inputs(family)
    expected = logits(backbone.model, inputs)
    assert not torch.allclose(expected, logits(untouched, inputs), atol=1e-3)
    return inputs, expected


def test_save_load_round_trip(family, tmp_path):
    backbone = tiny_backbone(family)
    fresh = copy.deepcopy(backbone.model)
    n = backbone.shape.num_layers
    sizes = {
        0: {"adapter": 3, "lora": 2},
        1: {"prefix": 2, "bitfit": 1},
        n - 1: {"adapter": 2, "prefix": 3, "bitfit": 1, "lora": 1},
    }
    design = design_from_sizes(
        backbone.shape,
        sizes,
        seed=3,
        options={"prefix": {"reparameterize": True, "mlp_hidden": 16}},
    )
    inputs, expected = apply_and_train(backbone, design, family, fresh)

    save(backbone.model, design, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {DESIGN_FILE, PEFT_FILE, HEAD_FILE}
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / PEFT_FILE))
    assert sum(t.numel() for t in stored.values()) == design.trainable_parameters.peft_total
    assert not any("mlp" in k or k.endswith(".inputs") for k in stored), (
        "training-only tensors saved"
    )
    assert json.loads((tmp_path / DESIGN_FILE).read_text()) == design.to_dict()

    restored = load(tmp_path, fresh)
    torch.testing.assert_close(logits(restored, inputs), expected, rtol=0, atol=1e-5)


def lora_only(shape):
    n = shape.num_layers
    return {0: {"lora": 2}, n - 1: {"lora": 4}}


def test_export_peft_round_trip(family, tmp_path):
    from peft import PeftModel

    backbone = tiny_backbone(family)
    base = copy.deepcopy(backbone.model)
    design = design_from_sizes(
        backbone.shape,
        lora_only(backbone.shape),
        seed=0,
        options={"lora": {"alpha": 8, "targets": ["query", "value", "output"]}},
    )
    inputs, expected = apply_and_train(backbone, design, family, base)

    export_peft(backbone.model, design, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] in (2, 4) and set(config["rank_pattern"].values()) <= {2, 4}
    assert len(config["target_modules"]) == 6  # 3 projections x 2 layers, self-attention only
    restored = PeftModel.from_pretrained(base, str(tmp_path))
    torch.testing.assert_close(logits(restored, inputs), expected, rtol=0, atol=1e-5)


def test_export_refuses_non_lora_parts_precisely(tmp_path):
    backbone = tiny_backbone("bert")
    design = design_from_sizes(
        backbone.shape, {0: {"lora": 2, "adapter": 2}, 2: {"prefix": 1, "bitfit": 1}}, seed=0
    )
    apply(backbone, design)
    with pytest.raises(NotExpressible) as err:
        export_peft(backbone.model, design, tmp_path)
    assert err.value.parts == [
        "adapter on layers [0]",
        "prefix on layers [2]",
        "bitfit on layers [2]",
    ]
    assert "layers [0]" in str(err.value) and "bitfit" in str(err.value)
    assert not (tmp_path / "adapter_config.json").exists()


def test_save_and_export_check_the_given_design_against_the_applied_one(tmp_path):
    from tasks.peft.design import DesignError

    backbone = tiny_backbone("bert")
    design = design_from_sizes(backbone.shape, {0: {"lora": 2}}, seed=0)
    apply(backbone, design)
    relabelled = design.to_dict() | {"provenance": {"trial": 9}, "seed": 5}
    export_peft(backbone.model, relabelled, tmp_path / "peft")  # same modules: accepted
    other = design_from_sizes(backbone.shape, {0: {"lora": 3}}, seed=0)
    with pytest.raises(DesignError) as err:
        save(backbone.model, other, tmp_path / "saved")
    assert err.value.field == "design"


def saved_lora_bert(tmp_path):
    """A LoRA + BitFit design on a tiny BERT, saved; returns (fresh copy of the backbone, design)."""
    backbone = tiny_backbone("bert")
    fresh = copy.deepcopy(backbone.model)
    design = design_from_sizes(backbone.shape, {0: {"lora": 2}, 1: {"bitfit": 1}}, seed=0)
    apply(backbone, design)
    save(backbone.model, design, tmp_path)
    return fresh, design


@pytest.mark.parametrize("change", ["missing", "extra", "reshaped"])
def test_load_is_strict_and_names_the_keys(change, tmp_path):
    from safetensors.torch import load_file, save_file

    from tasks.peft.persistence import WeightsMismatch

    fresh, _ = saved_lora_bert(tmp_path)
    tensors = load_file(str(tmp_path / PEFT_FILE))
    key = sorted(tensors)[0]
    if change == "missing":
        del tensors[key]
    elif change == "extra":
        tensors["bert.encoder.layer.2.attention.self.query.lora.lora_A.weight"] = torch.zeros(2, 32)
    else:
        tensors[key] = torch.zeros(*tensors[key].shape, 1)
    save_file(tensors, str(tmp_path / PEFT_FILE))

    with pytest.raises(WeightsMismatch) as err:
        load(tmp_path, fresh)

    named = {"missing": err.value.missing, "extra": err.value.unexpected,
             "reshaped": list(err.value.mismatched)}[change]
    expected = "bert.encoder.layer.2.attention.self.query.lora.lora_A.weight" if change == "extra" else key
    assert named == [expected]
    assert expected in str(err.value)


def test_load_result_reads_one_weights_file_and_refuses_a_missing_head(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from tasks.peft.persistence import WeightsMismatch, load_result

    backbone = tiny_backbone("bert")
    fresh = copy.deepcopy(backbone.model)
    design = design_from_sizes(backbone.shape, {0: {"lora": 2}, 2: {"adapter": 2}}, seed=0)
    inputs, expected = apply_and_train(backbone, design, "bert", copy.deepcopy(fresh))
    save(backbone.model, design, tmp_path / "saved")
    with safe_open(str(tmp_path / "saved" / HEAD_FILE), "pt") as f:
        meta = f.metadata()
    combined = {**load_file(str(tmp_path / "saved" / PEFT_FILE)),
                **load_file(str(tmp_path / "saved" / HEAD_FILE))}
    save_file(combined, str(tmp_path / "weights.safetensors"), metadata=meta)

    result = load_result(tmp_path / "saved" / DESIGN_FILE, tmp_path / "weights.safetensors",
                         copy.deepcopy(fresh))

    torch.testing.assert_close(logits(result.model, inputs), expected, rtol=0, atol=1e-5)
    assert result.head.num_labels == 3 and result.tokenizer is None
    without_head = {k: v for k, v in combined.items() if not k.startswith("classifier.")}
    save_file(without_head, str(tmp_path / "no-head.safetensors"), metadata=meta)
    with pytest.raises(WeightsMismatch) as err:
        load_result(design.to_dict(), tmp_path / "no-head.safetensors", copy.deepcopy(fresh))
    assert err.value.missing == ["classifier.bias", "classifier.weight"]
