"""The prefix reparameterisation trains no more parameters than the prefixes it produces store."""

from __future__ import annotations

import pytest

from tasks.peft.strategies import (
    MIN_REPARAMETERIZATION_WIDTH,
    prefix_reparameterization_params,
    prefix_reparameterization_width,
)


@pytest.mark.parametrize("kv_dim", [32, 48, 384, 768, 1024])
@pytest.mark.parametrize("total_length", [1, 5, 20, 60, 147, 400, 2000])
def test_the_rule_keeps_training_within_the_stored_budget(kv_dim, total_length):
    stored = 2 * total_length * kv_dim
    width = prefix_reparameterization_width(kv_dim, total_length)
    trained = prefix_reparameterization_params(width, kv_dim, total_length)
    assert trained <= stored
    if width:
        assert width >= MIN_REPARAMETERIZATION_WIDTH
        # The widest MLP within the budget: one more unit would exceed it.
        assert prefix_reparameterization_params(width + 1, kv_dim, total_length) > stored
    else:
        assert trained == 0


def test_minilm_prefix_design_at_half_a_percent():
    # 112,827 / (2 * 384) = 147 prefix vectors over the 6 layers: 48 units, not the old 512.
    width = prefix_reparameterization_width(384, 147)
    assert width == 48
    assert prefix_reparameterization_params(width, 384, 147) == 147 * 384 + 48 * 1153 + 768
    assert prefix_reparameterization_params(512, 384, 147) > 5 * 2 * 147 * 384 // 2


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_apply_sizes_the_mlp_by_the_rule(family):
    from tasks.peft import apply, design_from_sizes

    from tests.tasks.peft.conftest import tiny_backbone

    backbone = tiny_backbone(family)
    shape = backbone.shape
    kv = shape.layers[0].kv_dim
    sizes = {i: {"prefix": 40} for i in range(shape.num_layers)}
    design = design_from_sizes(shape, sizes, seed=0)
    assert design.options.prefix.mlp_hidden is None and design.options.prefix.reparameterize
    report = apply(backbone, design)
    total_length = 40 * shape.num_layers
    width = prefix_reparameterization_width(kv, total_length)
    assert width > 0
    assert report.training_only == prefix_reparameterization_params(width, kv, total_length)
    assert report.training_only <= report.peft_total
    assert report.trainable_total == report.training_only + report.head


def test_too_small_a_prefix_trains_directly():
    from tasks.peft import apply, design_from_sizes

    from tests.tasks.peft.conftest import tiny_backbone

    backbone = tiny_backbone("bert")
    design = design_from_sizes(backbone.shape, {0: {"prefix": 2}}, seed=0)
    report = apply(backbone, design)
    assert report.training_only == 0
    assert report.trainable_total == report.peft_total + report.head
