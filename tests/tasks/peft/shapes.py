"""Hand-built BackboneShape fixtures for the pure-Python tests (no torch)."""

from __future__ import annotations

from tasks.peft.budget import PROJECTION_ROLES, BackboneShape, LayerShape


def bert_like_shape(
    num_layers: int = 6, hidden: int = 384, intermediate: int = 1536
) -> BackboneShape:
    """A MiniLM-sized BERT: BitFit covers 7 biases of width ``hidden`` plus the FFN bias."""
    layer = LayerShape(
        hidden_size=hidden,
        kv_dim=hidden,
        projections={role: (hidden, hidden) for role in PROJECTION_ROLES},
        bitfit_params=7 * hidden + intermediate,
    )
    return BackboneShape(
        name_or_path="tiny-bert",
        model_type="bert",
        family="bert",
        num_layers=num_layers,
        hidden_size=hidden,
        num_heads=12,
        total_params=22_713_216,
        layers=(layer,) * num_layers,
    )


def t5_like_shape(enc: int = 2, dec: int = 2, d_model: int = 32, inner: int = 48) -> BackboneShape:
    """A T5 whose attention inner width differs from d_model (kv_dim != hidden_size)."""
    projections = {
        "query": (d_model, inner),
        "key": (d_model, inner),
        "value": (d_model, inner),
        "output": (inner, d_model),
    }
    enc_layer = LayerShape(
        d_model, inner, projections, bitfit_params=3 * inner + d_model + 64 + d_model
    )
    dec_layer = LayerShape(
        d_model, inner, projections, bitfit_params=6 * inner + 2 * d_model + 64 + d_model
    )
    return BackboneShape(
        "tiny-t5",
        "t5",
        "t5",
        enc + dec,
        d_model,
        4,
        100_000,
        (enc_layer,) * enc + (dec_layer,) * dec,
    )
