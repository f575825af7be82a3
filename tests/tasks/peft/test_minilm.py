"""The real default backbone: pretrained all-MiniLM-L6-v2 from the installed package, offline."""

from __future__ import annotations

import pytest
import torch

from tasks.peft import HeadSpec, apply, design_from_sizes, load, load_backbone, save, solve_sizes
from tasks.peft.backbones import DEFAULT_BACKBONE


@pytest.mark.slow
def test_minilm_paper_s4_design_at_half_a_percent(tmp_path):
    # Given the default backbone
    backbone = load_backbone(head=HeadSpec("classification", 2))
    shape = backbone.shape
    assert (shape.family, shape.num_layers, shape.hidden_size, shape.num_heads) == (
        "bert",
        6,
        384,
        12,
    )
    assert shape.name_or_path == DEFAULT_BACKBONE
    assert 22_000_000 < shape.total_params < 23_000_000
    assert backbone.tokenizer is not None

    # When the paper's S4 assignment on spindle groups (1, 2, 2, 1) gets 0.5% of it, uniformly
    groups = [
        ("adapter", "lora"),
        ("adapter", "prefix"),
        ("adapter", "prefix", "bitfit"),
        ("prefix", "bitfit", "lora"),
    ]
    layer_group = [0, 1, 1, 2, 2, 3]
    target = 0.005 * shape.total_params
    solved = solve_sizes(
        {i: target / 6 for i in range(6)}, {i: groups[g] for i, g in enumerate(layer_group)}, shape
    )
    design = design_from_sizes(shape, solved.sizes, seed=0, head=HeadSpec("classification", 2))
    report = apply(backbone, design)

    # Then torch, the closed form and the design agree, within 2% of the budget
    assert report.peft_total == solved.total == design.trainable_parameters.peft_total
    assert abs(report.peft_total - target) <= 0.02 * target
    assert report.trainable_total == sum(
        p.numel() for p in backbone.model.parameters() if p.requires_grad
    )
    batch = backbone.tokenizer(
        ["a gripping, beautiful film", "dull and lifeless"], return_tensors="pt", padding=True
    )
    out = backbone.model(**batch, labels=torch.tensor([1, 0]))
    out.loss.backward()
    assert out.logits.shape == (2, 2) and torch.isfinite(out.loss)

    # And after a step, saving and loading onto a fresh default backbone reproduces the logits
    torch.optim.AdamW([p for p in backbone.model.parameters() if p.requires_grad], lr=1e-2).step()
    backbone.model.eval()
    with torch.no_grad():
        expected = backbone.model(**batch).logits
    save(backbone.model, design, tmp_path)
    restored = load(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored(**batch).logits, expected, rtol=0, atol=1e-5)
