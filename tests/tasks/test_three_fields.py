"""Up to three text fields per task (issue 12: a WiC-style upload, word/sentence1/sentence2, could not
be expressed, and the error printed a Python list). Three fields read as the text "{word}: {sentence1}"
and the pair sentence2; the template is recorded in the TaskSpec."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tasks.data import (
    THREE_FIELD_TEMPLATE,
    DataError,
    TaskSpec,
    encode_task,
    load_task,
    text_segments,
    user_task,
)
from tasks.train import TrainConfig, train

WIC = Path(__file__).resolve().parent.parent / "fixtures" / "wic.jsonl"
FIELDS = ["word", "sentence1", "sentence2"]


@pytest.fixture
def wic() -> TaskSpec:
    # 32 rows with extra fields (idx, start1, end1, version) that are not read
    return user_task(WIC, text_columns=FIELDS, label_column="label", name="wic")


def test_three_fields_record_the_template_that_joins_them(wic):
    assert wic.text_columns == tuple(FIELDS) and wic.labels == ("0", "1")
    assert wic.text_template == THREE_FIELD_TEMPLATE == "{0}: {1}"
    assert TaskSpec.from_dict(wic.to_dict()) == wic
    row = load_task(wic).train[0]
    assert text_segments(wic, {name: [row[name]] for name in FIELDS}) == [
        [f"{row['word']}: {row['sentence1']}"], [row["sentence2"]]]


def test_one_or_two_fields_are_unchanged_and_carry_no_template():
    spec = TaskSpec(name="rte", text_columns=("sentence1", "sentence2"), label_column="label",
                    problem="classification", metric="accuracy", source="upload")
    assert spec.text_template is None
    assert text_segments(spec, {"sentence1": ["a"], "sentence2": ["b"]}) == [["a"], ["b"]]
    with pytest.raises(DataError) as info:
        TaskSpec(name="rte", text_columns=("sentence1",), label_column="label", problem="classification",
                 metric="accuracy", source="upload", text_template="{0}: {1}")
    assert info.value.field == "text_template"


@pytest.mark.parametrize("template", ["{0}", "{0} {1} {2}", "{word}: {1}", "{0: {1}"])
def test_a_template_must_use_the_first_two_fields_once_each(template):
    with pytest.raises(DataError) as info:
        TaskSpec(name="wic", text_columns=tuple(FIELDS), label_column="label", problem="classification",
                 metric="accuracy", source="upload", text_template=template)
    assert info.value.field == "text_template"


def test_four_fields_are_refused_in_the_users_terms(tmp_path):
    with pytest.raises(DataError) as info:
        user_task(WIC, text_columns=[*FIELDS, "version"], label_column="label")
    assert str(info.value) == "text_columns: choose one to three text columns, got 4"
    with pytest.raises(DataError) as info:
        TaskSpec(name="x", text_columns=("a", "b", "c", "d"), label_column="label", problem="classification",
                 metric="accuracy", source="upload")
    assert "[" not in str(info.value) and "got 4" in str(info.value)


def test_the_encoder_reads_the_joined_text_and_the_pair(wic, minilm_tokenizer):
    encoded = encode_task(wic, minilm_tokenizer, max_length=64)
    first = encoded.train[0]
    row = load_task(wic).train[0]
    expected = minilm_tokenizer(f"{row['word']}: {row['sentence1']}", row["sentence2"])["input_ids"]
    assert first["input_ids"] == expected
    assert 1 in first["token_type_ids"]  # the third field is the pair segment


def test_a_tiny_model_trains_on_a_three_field_task(wic, minilm_tokenizer, tiny_bert_config):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config.__class__.from_dict(
        {**tiny_bert_config.to_dict(), "num_labels": 2}))
    result = train(model, encode_task(wic, minilm_tokenizer, max_length=48), TrainConfig(batch_size=8, epochs=1))
    assert math.isfinite(result.final_loss) and 0.0 <= result.score <= 100.0
