"""Loading a task's rows (sub-sampled, cached) and tokenising them for the trainer.

:func:`load_task` gives ``datasets.Dataset`` splits with the text columns plus an integer
(classification) or float (regression) ``label`` column; :func:`encode_task` tokenises them with
the backbone's tokenizer (single sentences or pairs, truncated to ``max_length``, unpadded: the
trainer pads per batch) and keeps the result in a small in-memory LRU cache keyed by
(task, tokenizer, max_length, train_examples, sample_seed), so the trials of a search that share a
task and backbone tokenise once per worker process.

Example:
    >>> data = load_task("rte", train_examples=100)
    >>> len(data.train), len(data.eval), data.spec.labels
    (100, 277, ('entailment', 'not_entailment'))
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from tasks.data.files import holdout_size, table_to_dataset
from tasks.data.hub import load_hub, quiet_progress
from tasks.data.parsing import MAX_USER_FILE_BYTES, read_table
from tasks.data.specification import BUNDLED_DIR, DataError, TaskSpec, resolve_task

#: Seed for the deterministic train/eval split of a single labelled file. Fixed (not the trial
#: seed) so that every trial of a search is scored on the same held-out rows.
SPLIT_SEED = 0


@dataclass(frozen=True)
class TaskData:
    """A task's splits: ``train`` and ``eval`` Datasets with text columns and ``label``.

    ``spec`` is resolved (hub label sets filled in); ``notes`` explain anything a reader of the
    results must know (held-out splits, sub-sampling, dev-as-evaluation).
    """

    spec: TaskSpec
    train: Dataset
    eval: Dataset
    notes: tuple[str, ...] = field(default_factory=tuple)


def _split_single(dataset: Dataset, fraction: float, what: str) -> tuple[Dataset, Dataset, str]:
    n = len(dataset)
    n_eval = holdout_size(n, fraction)
    if n_eval < 1 or n - n_eval < 1:
        raise DataError(
            "holdout_fraction", f"{what} has {n} rows, too few to hold out {fraction:.0%}"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    eval_idx, train_idx = np.sort(order[:n_eval]), np.sort(order[n_eval:])
    note = (
        f"{what} has no separate evaluation split: {n_eval} of its {n} rows were held out for "
        f"evaluation and the other {n - n_eval} used for training (fixed split, seed {SPLIT_SEED})"
    )
    return dataset.select(train_idx), dataset.select(eval_idx), note


def _subsample(dataset: Dataset, n: int | None, seed: int, name: str,
               split: str = "training") -> tuple[Dataset, str | None]:
    if n is None or n >= len(dataset):
        return dataset, None
    # Sorted indices: the subset is a deterministic function of (n, seed), in file order; the
    # trainer shuffles per epoch with its own seed.
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    note = f"{name}: {split} set sub-sampled to {n} of {len(dataset)} examples (seed {seed})"
    return dataset.select(chosen), note


_RAW_CACHE: OrderedDict[tuple[Any, ...], TaskData] = OrderedDict()
_ENCODED_CACHE: OrderedDict[tuple[Any, ...], EncodedTask] = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Entries kept per cache; a worker usually cycles through a handful of tasks.
CACHE_SIZE = 8


def _cache_get(cache: OrderedDict, key: tuple[Any, ...]) -> Any:
    with _CACHE_LOCK:
        value = cache.get(key)
        if value is not None:
            cache.move_to_end(key)
        return value


def _cache_put(cache: OrderedDict, key: tuple[Any, ...], value: Any) -> None:
    with _CACHE_LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)


def clear_caches() -> None:
    """Forget loaded and tokenised tasks (tests; or to free memory in a long-lived worker)."""
    with _CACHE_LOCK:
        _RAW_CACHE.clear()
        _ENCODED_CACHE.clear()


def _file_key(path: str | None) -> tuple[Any, ...]:
    if path is None:
        return (None,)
    stat = Path(path).stat() if Path(path).is_file() else None
    return (path, stat.st_size if stat else None, stat.st_mtime_ns if stat else None)


def _task_key(spec: TaskSpec) -> tuple[Any, ...]:
    # File size and mtime are part of the key so a re-uploaded user file is re-read.
    files = ()
    if spec.source != "hub":
        files = _file_key(_spec_path(spec, spec.train_path)) + _file_key(
            _spec_path(spec, spec.eval_path)
        )
    return (json.dumps(spec.to_dict(), sort_keys=True), files)


def _spec_path(spec: TaskSpec, path: str | None) -> str | None:
    if path is None:
        return None
    return str(BUNDLED_DIR / path) if spec.source == "bundled" else path


def _load_full(spec: TaskSpec) -> TaskData:
    """All labelled rows of ``spec`` as train/eval Datasets, before sub-sampling."""
    key = _task_key(spec)
    cached = _cache_get(_RAW_CACHE, key)
    if cached is not None:
        return cached
    notes: list[str] = []
    if spec.source == "hub":
        spec, train, evaluation = load_hub(spec)
        notes.append(f"{spec.name}: evaluated on the hub split {spec.eval_split!r}")
    else:
        # Bundled files are trusted (checksummed in MANIFEST.tsv), so no size limit applies.
        limit = MAX_USER_FILE_BYTES if spec.source == "upload" else math.inf
        fmt = spec.file_format
        read = {
            which: table_to_dataset(
                read_table(
                    path,
                    fmt,
                    header=spec.file_columns,
                    keep=(*spec.text_columns, spec.label_column),
                    max_bytes=limit,
                ),
                spec,
                path,
            )
            for which, path in (
                ("train", _spec_path(spec, spec.train_path)),
                ("eval", _spec_path(spec, spec.eval_path)),
            )
            if path is not None
        }
        if "train" in read and "eval" in read:
            train, evaluation = read["train"], read["eval"]
            if spec.source == "bundled":
                notes.append(
                    f"{spec.name}: evaluated on the GLUE dev set ({len(evaluation)} examples); "
                    "GLUE test labels are not public"
                )
            else:
                notes.append(
                    f"{spec.name}: evaluated on {Path(spec.eval_path or '').name} "
                    f"({len(evaluation)} examples)"
                )
        else:
            only = read["train"] if "train" in read else read.get("eval")
            if only is None:
                raise DataError("train_path", f"{spec.name}: no data file given")
            what = f"{spec.name} (only {Path(spec.eval_path or spec.train_path or '').name})"
            if spec.source == "bundled":
                what = f"{spec.name} (train file not available offline; GLUE dev file only)"
            train, evaluation, note = _split_single(only, spec.holdout_fraction, what)
            notes.append(note)
    data = TaskData(spec, train, evaluation, tuple(notes))
    _cache_put(_RAW_CACHE, key, data)
    return data


def load_task(
    task: str | TaskSpec, *, train_examples: int | None = None, sample_seed: int = 0,
    eval_examples: int | None = None,
) -> TaskData:
    """Load a task's train and evaluation splits, sub-sampling train to ``train_examples`` and
    the evaluation split to ``eval_examples`` (cheap search stages; reported in the notes).

    Sub-sampling is deterministic in ``sample_seed`` (default 0, not the trial seed, so every
    trial of a search trains and is scored on the same subsets and scores stay comparable).
    """
    for name, value in (("train_examples", train_examples), ("eval_examples", eval_examples)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DataError(name, f"must be a positive integer or None, got {value!r}")
    full = _load_full(resolve_task(task))
    train, note = _subsample(full.train, train_examples, sample_seed, full.spec.name)
    evaluation, eval_note = _subsample(full.eval, eval_examples, sample_seed, full.spec.name, split="evaluation")
    notes = full.notes + tuple(n for n in (note, eval_note) if n)
    return replace(full, train=train, eval=evaluation, notes=notes)


# --- tokenisation -------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedTask:
    """A tokenised task: ``train``/``eval`` Datasets with model inputs and ``labels``.

    The input columns are ``input_ids``, ``attention_mask`` and, when the tokenizer makes them,
    ``token_type_ids``; sequences are unpadded (``pad_token_id`` is for the batch collator).
    """

    spec: TaskSpec
    train: Dataset
    eval: Dataset
    input_columns: tuple[str, ...]
    pad_token_id: int
    notes: tuple[str, ...]


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
        texts = [batch[column] for column in spec.text_columns]
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

    # In-memory Datasets (from_dict/select) stay in memory through map: no cache files written.
    with quiet_progress():
        return dataset.map(
            tokenize, batched=True, batch_size=1000, remove_columns=dataset.column_names
        )


def encode_task(
    task: str | TaskSpec | TaskData,
    tokenizer: Any,
    *,
    max_length: int = 128,
    train_examples: int | None = None,
    sample_seed: int = 0,
    eval_examples: int | None = None,
) -> EncodedTask:
    """Load (unless given :class:`TaskData`) and tokenise a task, cached in memory.

    Pairs are truncated longest-first to ``max_length`` tokens in total, including special tokens.
    """
    if not isinstance(max_length, int) or max_length < 8:
        raise DataError("max_length", f"must be an integer >= 8, got {max_length!r}")
    if tokenizer is None:
        raise DataError("tokenizer", "the backbone has no tokenizer; pass one to encode text")
    if isinstance(task, TaskData):
        data = task
        # TaskData given directly: identify it by content, not by a spec that may hide a subset.
        task_key: tuple[Any, ...] = (data.train._fingerprint, data.eval._fingerprint)
    else:
        spec = resolve_task(task)
        task_key = (_task_key(spec), train_examples, sample_seed, eval_examples)
        data = None
    key = (task_key, tokenizer_fingerprint(tokenizer), max_length)
    cached = _cache_get(_ENCODED_CACHE, key)
    if cached is not None:
        return cached
    if data is None:
        data = load_task(task, train_examples=train_examples, sample_seed=sample_seed,
                         eval_examples=eval_examples)
    train = _encode_split(data.train, data.spec, tokenizer, max_length)
    evaluation = _encode_split(data.eval, data.spec, tokenizer, max_length)
    input_columns = tuple(
        c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train.column_names
    )
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise DataError("tokenizer", "has no pad token; set tokenizer.pad_token before training")
    encoded = EncodedTask(data.spec, train, evaluation, input_columns, int(pad_id), data.notes)
    _cache_put(_ENCODED_CACHE, key, encoded)
    return encoded
