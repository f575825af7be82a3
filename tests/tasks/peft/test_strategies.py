"""The strategy registry is the one definition every part of the engine reads.

A fifth strategy is added here the way the registry's docstring says: one descriptor registered
in ``tasks.peft.strategies`` and one torch module registered with ``register_strategy``. Budget,
design documents and ``apply`` then know it without any other change.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from tasks.peft import strategies
from tasks.peft.budget import strategy_params
from tasks.peft.design import Design, DesignError, DesignOptions, design_from_sizes
from tasks.peft.strategies import Strategy, StrategyOptions

from .shapes import bert_like_shape


@dataclass(frozen=True, kw_only=True)
class ScaleOptions(StrategyOptions):
    init: float = 1.0

    def to_dict(self):
        return {"init": self.init}


class ScaledOutput(nn.Module):
    """The feed-forward output times a learned per-channel vector (an IA3-like strategy)."""

    def __init__(self, base: nn.Module, init: float) -> None:
        super().__init__()
        self.base = base
        self.scale = nn.Parameter(torch.full((base.out_features,), init))
        self._pefs_injected = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) * self.scale


def _scale_cost(layer, lora_targets):
    return 0, layer.hidden_size


SCALE = Strategy(
    name="scale",
    code="S",
    label="Scale",
    colour="#123456",
    options_class=ScaleOptions,
    cost=_scale_cost,
    implementation=__name__,
    sized=False,
)


@pytest.fixture
def fifth_strategy():
    from tasks.peft.registry import (
        STRATEGY_REGISTRY,
        Injection,
        StoredTensor,
        StrategySpec,
        register_strategy,
    )

    def inject(block, config, context):
        owner, attr = block.ffn_output
        wrapped = ScaledOutput(getattr(owner, attr), config.init)
        setattr(owner, attr, wrapped)
        return Injection(stored=[StoredTensor(wrapped, "scale")])

    strategies.register(SCALE)
    register_strategy(
        StrategySpec(
            name="scale",
            config_class=ScaleOptions,
            make_config=lambda size, options: options.scale,
            inject=inject,
            order=4,
        )
    )
    try:
        yield SCALE
    finally:
        strategies.unregister("scale")
        STRATEGY_REGISTRY.pop("scale")


def test_the_four_strategies_of_the_paper_in_canonical_order():
    assert strategies.names() == ("adapter", "prefix", "bitfit", "lora")
    assert strategies.code_by_name() == {"adapter": "A", "prefix": "P", "bitfit": "B", "lora": "L"}
    assert strategies.name_by_code() == {"A": "adapter", "P": "prefix", "B": "bitfit", "L": "lora"}
    assert strategies.sized_names() == ("adapter", "prefix", "lora")
    assert list(strategies.ui_description()) == list(strategies.names())
    # Measured defaults (bench/strategy_lr.py) for every strategy, valid as design options.
    assert list(strategies.default_learning_rates()) == list(strategies.names())
    options = {n: {"learning_rate": r} for n, r in strategies.default_learning_rates().items()}
    assert DesignOptions.from_dict(options).bitfit.learning_rate == strategies.MEASURED_LEARNING_RATES["bitfit"]


def test_names_and_codes_are_unique():
    with pytest.raises(ValueError, match="already registered"):
        strategies.register(strategies.LORA)
    with pytest.raises(ValueError, match="already taken"):
        strategies.register(Strategy(**{**SCALE.__dict__, "code": "L"}))
    with pytest.raises(ValueError, match="one capital letter"):
        Strategy(**{**SCALE.__dict__, "code": "ss"})


def test_budget_costs_come_from_the_descriptors():
    layer = bert_like_shape().layers[0]
    for strategy in strategies.registered():
        size = 3 if strategy.sized else 1
        unit, fixed = strategy.cost(layer, ("query", "value"))
        assert strategy_params(strategy.name, size, layer) == unit * size + fixed


def test_a_fifth_strategy_is_known_to_budget_design_and_engine(fifth_strategy):
    from tasks.peft import HeadSpec, apply, load_backbone
    from tasks.peft.engine import peft_state_dict
    from transformers import BertConfig

    shape = bert_like_shape()
    assert strategy_params("scale", 1, shape.layers[0]) == shape.hidden_size
    design = design_from_sizes(
        shape,
        {0: {"scale": 1, "lora": 2}},
        seed=0,
        options={"scale": {"init": 0.5}},
    )
    assert design.to_dict()["layers"][0] == {"lora": 2, "scale": True}
    assert design.options.scale == ScaleOptions(init=0.5)
    assert design.to_dict()["options"]["scale"] == {"init": 0.5}
    assert Design.from_dict(design.to_dict()) == design
    bad = design.to_dict()
    bad["layers"][0]["scale"] = 2
    with pytest.raises(DesignError) as err:
        Design.from_dict(bad)
    assert err.value.field == "layers[0].scale"

    tiny = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37,
    )
    backbone = load_backbone(config=tiny, head=HeadSpec("classification", 2))
    real = design_from_sizes(backbone.shape, {1: {"scale": 1}}, seed=0)
    report = apply(backbone, real)
    assert report.per_layer == [0, 32] and report.per_strategy == {"scale": 32}
    stored = peft_state_dict(backbone.model)
    assert list(stored) == ["bert.encoder.layer.1.output.dense.scale"]
    assert torch.equal(stored["bert.encoder.layer.1.output.dense.scale"], torch.ones(32))


def test_unregistering_forgets_the_strategy(fifth_strategy):
    strategies.unregister("scale")
    try:
        assert "scale" not in strategies.names()
        assert DesignOptions() == DesignOptions.from_dict({})
        with pytest.raises(DesignError) as err:
            DesignOptions.from_dict({"scale": {}})
        assert err.value.field == "options.scale"
    finally:
        strategies.register(SCALE)
