"""Tiny randomly initialised backbones of every supported family, built in memory."""

from __future__ import annotations

import copy

import pytest
import torch

FAMILIES = ("bert", "roberta", "t5", "bart")
VOCAB = 99
EOS = {"t5": 1, "bart": 2}


def tiny_config(family: str, attn_implementation: str = "sdpa"):
    from transformers import BartConfig, BertConfig, RobertaConfig, T5Config

    common = {"vocab_size": VOCAB, "attn_implementation": attn_implementation}
    if family in ("bert", "roberta"):
        encoder = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4}
        if family == "bert":
            return BertConfig(intermediate_size=37, **encoder, **common)
        return RobertaConfig(intermediate_size=37, pad_token_id=1, **encoder, **common)
    if family == "t5":
        # d_kv * heads != d_model on purpose: kv_dim differs from the residual width.
        return T5Config(
            d_model=32,
            d_kv=12,
            num_heads=4,
            d_ff=37,
            num_layers=2,
            num_decoder_layers=2,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
            **common,
        )
    return BartConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_position_embeddings=64,
        **common,
    )


def tiny_backbone(
    family: str, *, seed: int = 0, num_labels: int = 3, attn_implementation: str = "sdpa"
):
    from tasks.peft import HeadSpec, load_backbone

    torch.manual_seed(seed)
    head = HeadSpec("regression", 1) if num_labels == 1 else HeadSpec("classification", num_labels)
    return load_backbone(config=tiny_config(family, attn_implementation), head=head)


def tiny_inputs(
    family: str, *, batch: int = 3, length: int = 9, seed: int = 1
) -> dict[str, torch.Tensor]:
    """Random ids ending in </s> (T5/BART heads read it), the last example padded by two."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    eos = EOS.get(family, 4)
    ids[:, -1] = eos
    if family != "bart":  # BART's head needs the same number of </s> at the same place per row
        ids[-1, -3:] = torch.tensor([eos, 0, 0])
        mask[-1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model, inputs) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def clone():
    return copy.deepcopy
