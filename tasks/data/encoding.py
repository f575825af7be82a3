"""Tokenising a loaded task for the trainer, cached per worker process.

:func:`encode_task` tokenises a task's splits with the backbone's tokenizer (single sentences or
pairs, truncated to ``max_length``, unpadded: the trainer pads per batch) and keeps the result in a
small in-memory LRU cache keyed by (task, role, tokenizer, max_length, train_examples,
eval_examples, sample_seed), so the trials of a search that share a task and backbone tokenise
once per worker process.

Example:
    >>> from transformers import AutoTokenizer  # doctest: +SKIP
    >>> encoded = encode_task("rte", tokenizer, max_length=64, role="selection")  # doctest: +SKIP
    >>> encoded.input_columns  # doctest: +SKIP
    ('input_ids', 'attention_mask', 'token_type_ids')
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from tasks.data.hub import quiet_progress
from tasks.data.loading import CACHE_SIZE, LruCache, TaskData, load_task, task_key
from tasks.data.roles import EXAMPLE_ID, ExampleSet, Role
from tasks.data.specification import DataError, TaskSpec, resolve_task, text_segments


@dataclass(frozen=True)
class EncodedTask:
    """A tokenised task: ``train``/``eval`` Datasets with model inputs, ``labels`` and (when the
    task data had them) ``example_id``.

    The input columns are ``input_ids``, ``attention_mask`` and, when the tokenizer makes them,
    ``token_type_ids``; sequences are unpadded (``pad_token_id`` is for the batch collator).
    ``role``, ``train_set`` and ``eval_set`` are those of the :class:`TaskData` it encodes.
    """

    spec: TaskSpec
    train: Dataset
    eval: Dataset
    input_columns: tuple[str, ...]
    pad_token_id: int
    notes: tuple[str, ...]
    role: Role | None = None
    train_set: ExampleSet | None = None
    eval_set: ExampleSet | None = None


_ENCODED = LruCache(CACHE_SIZE)
_TOKENIZER_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A content hash of a tokenizer, so caches survive reloading the same tokenizer."""
    try:
        return _TOKENIZER_FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        pass
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content = backend.to_str()
    else:
        content = json.dumps(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(
        f"{type(tokenizer).__name__}|{tokenizer.padding_side}|{tokenizer.truncation_side}|{content}".encode()
    ).hexdigest()
    try:
        _TOKENIZER_FINGERPRINTS[tokenizer] = digest
    except TypeError:
        pass  # not weak-referenceable: recompute next time
    return digest


def _encode_split(dataset: Dataset, spec: TaskSpec, tokenizer: Any, max_length: int) -> Dataset:
    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = text_segments(spec, batch)  # three fields: "{first}: {second}" and the third as the pair
        encoded = tokenizer(
            *texts,
            truncation=True,
            max_length=max_length,
            padding=False,
            return_attention_mask=True,
        )
        out = dict(encoded)
        out["labels"] = batch["label"]
        return out

    # The example ids stay, so a result can say which examples it was scored on.
    dropped = [column for column in dataset.column_names if column != EXAMPLE_ID]
    # In-memory Datasets (from_dict/select) stay in memory through map: no cache files written.
    with quiet_progress():
        return dataset.map(tokenize, batched=True, batch_size=1000, remove_columns=dropped)


def encode_task(
    task: str | TaskSpec | TaskData,
    tokenizer: Any,
    *,
    max_length: int = 128,
    train_examples: int | None = None,
    sample_seed: int = 0,
    eval_examples: int | None = None,
    role: Role | None = None,
) -> EncodedTask:
    """Load (unless given :class:`TaskData`) and tokenise a task, cached in memory.

    ``role`` picks the evaluation set as in :func:`~tasks.data.loading.load_task`. Pairs are
    truncated longest-first to ``max_length`` tokens in total, including special tokens.
    """
    if not isinstance(max_length, int) or max_length < 8:
        raise DataError("max_length", f"must be an integer >= 8, got {max_length!r}")
    if tokenizer is None:
        raise DataError("tokenizer", "the backbone has no tokenizer; pass one to encode text")
    if isinstance(task, TaskData):
        data = task
        # TaskData given directly: identify it by content, not by a spec that may hide a subset.
        key_of_task: tuple[Any, ...] = (data.train._fingerprint, data.eval._fingerprint)
    else:
        spec = resolve_task(task)
        key_of_task = (task_key(spec), train_examples, sample_seed, eval_examples, role)
        data = None
    key = (key_of_task, tokenizer_fingerprint(tokenizer), max_length)
    cached = _ENCODED.get(key)
    if cached is not None:
        return cached
    if data is None:
        data = load_task(task, train_examples=train_examples, sample_seed=sample_seed,
                         eval_examples=eval_examples, role=role)
    train = _encode_split(data.train, data.spec, tokenizer, max_length)
    evaluation = _encode_split(data.eval, data.spec, tokenizer, max_length)
    input_columns = tuple(
        c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train.column_names
    )
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise DataError("tokenizer", "has no pad token; set tokenizer.pad_token before training")
    encoded = EncodedTask(
        data.spec, train, evaluation, input_columns, int(pad_id), data.notes,
        data.role, data.train_set, data.eval_set,
    )
    _ENCODED.put(key, encoded)
    return encoded
