"""CUDA with bf16 autocast (skipped without a GPU): every family trains and matches fp32 on CPU."""

from __future__ import annotations

import copy

import pytest
import torch

from tasks.peft import apply, autocast, design_from_sizes, pick_device
from tests.tasks.peft.conftest import logits, tiny_backbone, tiny_inputs
from tests.tasks.peft.test_engine import s4_like_sizes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bf16_autocast_training_step_matches_cpu(family):
    backbone = tiny_backbone(family)
    apply(
        backbone,
        design_from_sizes(backbone.shape, s4_like_sizes(backbone.shape.num_layers), seed=0),
    )
    inputs = tiny_inputs(family)
    reference = logits(copy.deepcopy(backbone.model), inputs)

    device = pick_device()
    assert device.type == "cuda"
    model = backbone.model.to(device)
    on_device = {k: v.to(device) for k, v in inputs.items()}
    model.eval()
    with torch.no_grad(), autocast(device):
        got = model(**on_device).logits
    torch.testing.assert_close(got.float().cpu(), reference, rtol=0, atol=0.05)

    model.train()
    with autocast(device):
        loss = model(**on_device, labels=torch.tensor([0, 1, 2], device=device)).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
