"""apply(): identity at initialisation, prefix locality, gradient flow and exact counts."""

from __future__ import annotations

import copy

import pytest
import torch

from tasks.peft import UnsupportedModel, apply, design_from_sizes, introspect, strategy_params
from tasks.peft.backbones import backbone_parameters, blocks, head_parameters, is_injected
from tasks.peft.design import DesignError
from tasks.peft.engine import STORED_ATTR, peft_state_dict
from tests.tasks.peft.conftest import logits, tiny_backbone, tiny_inputs


def every_layer(shape, sizes):
    return {i: dict(sizes) for i in range(shape.num_layers)}


@pytest.mark.parametrize(
    "sizes", [{"adapter": 4}, {"lora": 3}, {"bitfit": 1}, {"adapter": 2, "lora": 2, "bitfit": 1}]
)
def test_identity_at_initialisation(family, sizes):
    backbone = tiny_backbone(family)
    inputs = tiny_inputs(family)
    before = logits(backbone.model, inputs)
    apply(backbone, design_from_sizes(backbone.shape, every_layer(backbone.shape, sizes), seed=0))
    torch.testing.assert_close(logits(backbone.model, inputs), before, rtol=0, atol=1e-6)


def _attention_calls(model, inputs):
    """Run ``model`` and record (args, kwargs, output) of every block's self-attention."""
    calls = {}
    hooks = []
    for h in blocks(model):

        def hook(module, args, kwargs, output, index=h.index):
            calls[index] = (args, dict(kwargs), output[0])

        hooks.append(h.self_attention.register_forward_hook(hook, with_kwargs=True))
    logits(model, inputs)
    for handle in hooks:
        handle.remove()
    return calls


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_changes_attention_only_where_it_sits(family, attn):
    backbone = tiny_backbone(family, attn_implementation=attn)
    clean = copy.deepcopy(backbone.model).eval()
    inputs = tiny_inputs(family)
    carrier = backbone.shape.num_layers - 2  # a middle layer; encoder-decoder: last encoder block
    apply(backbone, design_from_sizes(backbone.shape, {carrier: {"prefix": 3}}, seed=0))
    calls = _attention_calls(backbone.model, inputs)
    clean_attention = {h.index: h.self_attention for h in blocks(clean)}
    for index, (args, kwargs, output) in calls.items():
        with torch.no_grad():
            reference = clean_attention[index](*args, **kwargs)[0]
        if index == carrier:
            assert not torch.allclose(output, reference, atol=1e-4), (
                f"layer {index} ignores its prefix"
            )
        else:
            torch.testing.assert_close(output, reference, rtol=0, atol=1e-6)


def test_prefix_attention_matches_a_manual_reference():
    """BERT self-attention with a prefix == softmax(q [Pk; K]^T / sqrt(d) + mask) [Pv; V]."""
    backbone = tiny_backbone("bert", attn_implementation="eager")
    apply(backbone, design_from_sizes(backbone.shape, {0: {"prefix": 2}}, seed=0))
    attn = blocks(backbone.model)[0].self_attention
    attn.eval()
    x = torch.randn(2, 5, 32)
    pad = torch.tensor([[0.0] * 5, [0.0] * 3 + [torch.finfo(torch.float32).min] * 2]).view(
        2, 1, 1, 5
    )
    with torch.no_grad():
        out = attn(x, attention_mask=pad)[0]
        pk, pv = attn.pefs_prefix.expand(2, x.dtype)

        def heads(t):
            return t.view(2, 5, 4, 8).transpose(1, 2)

        q, k, v = heads(attn.query(x)), heads(attn.key(x)), heads(attn.value(x))
        k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        scores = q @ k.transpose(-1, -2) / 8**0.5 + torch.cat([torch.zeros(2, 1, 1, 2), pad], -1)
        reference = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)


def test_prefix_gives_the_same_logits_with_sdpa_and_eager(family):
    outs = []
    for attn in ("sdpa", "eager"):
        backbone = tiny_backbone(family, attn_implementation=attn)
        n = backbone.shape.num_layers
        torch.manual_seed(5)
        apply(
            backbone,
            design_from_sizes(backbone.shape, {0: {"prefix": 2}, n - 1: {"prefix": 4}}, seed=0),
        )
        outs.append(logits(backbone.model, tiny_inputs(family)))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)


S4_LIKE = [
    {"adapter": 3, "lora": 2},
    {"adapter": 2, "prefix": 2},
    {"adapter": 2, "prefix": 2, "bitfit": 1},
    {"prefix": 3, "bitfit": 1, "lora": 1},
]


def s4_like_sizes(num_layers):
    return {i: S4_LIKE[min(i, 3)] for i in range(num_layers)}


def test_gradients_reach_only_peft_and_head(family):
    backbone = tiny_backbone(family)
    model = backbone.model
    apply(
        backbone,
        design_from_sizes(backbone.shape, s4_like_sizes(backbone.shape.num_layers), seed=0),
    )
    model.train()
    out = model(**tiny_inputs(family), labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    stored = {id(t.parameter()) for ts in getattr(model, STORED_ATTR).values() for t in ts}
    allowed = stored | {id(p) for _, p in head_parameters(model)}
    allowed |= {id(p) for m in model.modules() if is_injected(m) for p in m.parameters()}
    assert {id(p) for _, p in backbone_parameters(model)} & allowed - stored == set()
    for name, p in model.named_parameters():
        if id(p) in allowed:
            assert p.requires_grad and p.grad is not None, (
                f"PEFT/head parameter {name} gets no gradient"
            )
        else:
            assert not p.requires_grad and p.grad is None, f"backbone parameter {name} is trained"
    # The zero-initialised halves (LoRA B, adapter up) must receive signal on the first step
    # (adapter.up.bias: its weight gradient can vanish when a tiny ReLU bottleneck is all-negative).
    for name, p in model.named_parameters():
        if name.endswith(
            ("lora_B.weight", "adapter.up.bias", "head.out_proj.weight", "classifier.weight")
        ):
            assert p.grad.abs().sum() > 0, name


def expected_bitfit(family, config, layer):
    if family in ("bert", "roberta"):
        return 7 * config.hidden_size + config.intermediate_size
    if family == "bart":
        decoder = layer >= config.encoder_layers
        return 7 * config.d_model + config.encoder_ffn_dim + (5 * config.d_model if decoder else 0)
    inner, d = config.num_heads * config.d_kv, config.d_model
    decoder = layer >= config.num_layers
    return (3 * inner + d + config.d_ff + d) * 1 + ((3 * inner + d) if decoder else 0)


@pytest.mark.parametrize(
    "strategy,size", [("adapter", 5), ("prefix", 3), ("bitfit", 1), ("lora", 2)]
)
def test_counts_equal_the_closed_form(family, strategy, size):
    backbone = tiny_backbone(family)
    config, shape = backbone.model.config, backbone.shape
    for i, layer in enumerate(shape.layers):
        assert layer.bitfit_params == expected_bitfit(family, config, i)
    total_before = sum(p.numel() for p in backbone.model.parameters())
    design = design_from_sizes(
        shape,
        every_layer(shape, {strategy: size}),
        seed=0,
        options={"prefix": {"reparameterize": False}},
    )
    report = apply(backbone, design)
    closed = [strategy_params(strategy, size, layer) for layer in shape.layers]
    d, kv = shape.hidden_size, shape.layers[0].kv_dim
    by_hand = {
        "adapter": 2 * d * size + size + d,
        "prefix": 2 * size * kv,
        "lora": size * (d + kv) * 2,
    }.get(strategy)
    if by_hand is not None:
        assert closed == [by_hand] * shape.num_layers
    assert report.per_layer == closed
    assert report.peft_total == sum(closed) == design.trainable_parameters.peft_total
    trainable = sum(p.numel() for p in backbone.model.parameters() if p.requires_grad)
    assert trainable == report.trainable_total == report.peft_total + report.head
    assert sum(t.numel() for t in peft_state_dict(backbone.model).values()) == report.peft_total
    # Backbone size is unchanged by apply (T5 BitFit biases are PEFT, not backbone).
    assert introspect(backbone.model).total_params == shape.total_params
    added = sum(p.numel() for p in backbone.model.parameters()) - total_before
    assert added == (report.peft_total if strategy != "bitfit" or family == "t5" else 0)


def test_reparameterised_prefix_counts_stored_and_training_only_apart(family):
    backbone = tiny_backbone(family)
    shape = backbone.shape
    design = design_from_sizes(
        shape,
        {0: {"prefix": 2}, 1: {"prefix": 5, "lora": 1}},
        seed=0,
        options={"prefix": {"reparameterize": True, "mlp_hidden": 16}},
    )
    report = apply(backbone, design)
    kv = shape.layers[0].kv_dim
    mlp = kv * 16 + 16 + 16 * 2 * kv + 2 * kv
    assert report.training_only == mlp + (2 + 5) * kv
    assert report.peft_total == 2 * 2 * kv + 2 * 5 * kv + strategy_params(
        "lora", 1, shape.layers[1]
    )
    assert (
        report.trainable_total
        == report.peft_total - 2 * 7 * kv + report.training_only + report.head
    )
    assert sum(t.numel() for t in peft_state_dict(backbone.model).values()) == report.peft_total


def test_bad_designs_name_the_field():
    backbone = tiny_backbone("bert")
    shape = backbone.shape
    good = design_from_sizes(shape, {0: {"lora": 2}}, seed=0).to_dict()
    with pytest.raises(DesignError) as err:
        design_from_sizes(shape, {shape.num_layers: {"lora": 2}}, seed=0)
    assert err.value.field == f"layers[{shape.num_layers}]"
    for mutate, field in [({"ia3": 2}, "layers[0].ia3"), ({"lora": 0}, "layers[0].lora")]:
        d = copy.deepcopy(good)
        d["layers"][0] = mutate
        with pytest.raises(DesignError) as err:
            apply(backbone, d)
        assert err.value.field == field
    d = copy.deepcopy(good)
    d["layers"].append({})
    d["backbone"]["num_layers"] += 1
    d["trainable_parameters"]["per_layer"].append(0)
    with pytest.raises(DesignError) as err:
        apply(backbone, d)
    assert err.value.field == "backbone.num_layers"
    d = copy.deepcopy(good)
    d["head"] = {"problem": "classification", "num_labels": 5}
    with pytest.raises(DesignError) as err:
        apply(backbone, d)
    assert err.value.field == "head.num_labels"
    apply(backbone, good)
    with pytest.raises(DesignError) as err:
        apply(backbone, good)
    assert err.value.field == "design"


def test_strategy_configs_reject_bad_values():
    from tasks.peft.adapter import AdapterConfig
    from tasks.peft.bitfit import BitFitConfig
    from tasks.peft.lora import LoraConfig
    from tasks.peft.prefix import PrefixConfig

    cases = [
        (AdapterConfig, {"bottleneck": 0}, "bottleneck"),
        (AdapterConfig, {"bottleneck": 2, "activation": "x"}, "activation"),
        (PrefixConfig, {"length": -1}, "length"),
        (PrefixConfig, {"length": 2, "mlp_hidden": 0}, "mlp_hidden"),
        (LoraConfig, {"rank": 1.5}, "rank"),
        (LoraConfig, {"rank": 2, "targets": ("gate",)}, "targets"),
        (BitFitConfig, {"size": 3}, "size"),
    ]
    for cls, kwargs, field in cases:
        with pytest.raises(DesignError) as err:
            cls(**kwargs)
        assert err.value.field == field


def test_unsupported_model_lists_the_supported_ones():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from tasks.peft import HeadSpec, load_backbone

    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99)
    with pytest.raises(UnsupportedModel) as err:
        load_backbone(config=config, head=HeadSpec("classification", 2))
    assert "gpt2" in str(err.value) and "bert" in str(err.value) and "t5" in str(err.value)
    assert err.value.field == "backbone.model_type"
    with pytest.raises(UnsupportedModel):
        introspect(GPT2ForSequenceClassification(config))


def test_regression_head(family):
    backbone = tiny_backbone(family, num_labels=1)
    apply(backbone, design_from_sizes(backbone.shape, {0: {"lora": 2}}, seed=0))
    out = backbone.model(**tiny_inputs(family), labels=torch.tensor([0.5, 1.0, -1.0]))
    assert out.logits.shape == (3, 1) and out.loss.ndim == 0


def test_peft_initialisation_follows_the_design_seed():
    base = tiny_backbone("bert")
    sizes = {0: {"adapter": 2, "lora": 2}, 1: {"prefix": 2}}
    states = []
    for seed in (4, 4, 5):
        model = copy.deepcopy(base.model)
        torch.manual_seed(seed * 100)  # the caller's RNG state must not matter
        apply(model, design_from_sizes(base.shape, sizes, seed=seed))
        states.append(peft_state_dict(model))
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0] if "lora_A" in k)
