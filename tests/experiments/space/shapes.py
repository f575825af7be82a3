"""Hand-built BackboneShapes for the design-space tests (no torch, no download).

Built on the engine tests' BERT-like layer (BitFit: 7 width-d biases plus the FFN bias) with the
real checkpoints' sizes: all-MiniLM-L6-v2 (6 layers, d = 384, FFN 1536, 22,713,216 parameters)
and bert-base-uncased (12 layers, d = 768, FFN 3072, 109,482,240 parameters).
"""

from __future__ import annotations

import dataclasses

from tasks.peft.budget import BackboneShape
from tests.tasks.peft.shapes import bert_like_shape


def minilm_shape() -> BackboneShape:
    return dataclasses.replace(
        bert_like_shape(num_layers=6, hidden=384, intermediate=1536),
        name_or_path="sentence-transformers/all-MiniLM-L6-v2",
        total_params=22_713_216,
    )


def bert_base_shape() -> BackboneShape:
    return dataclasses.replace(
        bert_like_shape(num_layers=12, hidden=768, intermediate=3072),
        name_or_path="bert-base-uncased",
        total_params=109_482_240,
    )
