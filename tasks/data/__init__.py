"""Task data for PEFS: bundled GLUE files, user files and hub datasets, tokenised and cached.

Three kinds of task, all described by one frozen :class:`TaskSpec`:

* **bundled** GLUE tasks shipped in ``tasks/glue`` (see ``tasks/glue/MANIFEST.tsv`` for provenance,
  checksums, licences and quirks): cola, sst2, mrpc, rte, stsb, qnli, wnli. GLUE test labels are not
  public, so the GLUE dev set is the evaluation split and what PEFS reports. QNLI's train file is
  not available offline: its dev file is split deterministically into train and eval halves, and
  the result notes say so.
* **upload** tasks from a user's CSV, TSV or JSONL with named text column(s) and a label column,
  validated up front by :func:`user_task` with errors that name the problem (:class:`DataError`).
  Without a separate evaluation file, a deterministic 10% of the rows is held out for evaluation.
* **hub** tasks loaded with ``datasets.load_dataset`` when the Hugging Face Hub is reachable
  (:func:`hub_task`). MNLI and QQP are registered this way: their GLUE files are too large for
  every offline snapshot, so without hub access they raise a :class:`DataError` that says to upload
  a user file or allow hub access.

The package is split by job, each module importing only those before it:

* :mod:`~tasks.data.specification`: :class:`TaskSpec`, :class:`DataError`, the GLUE task table;
* :mod:`~tasks.data.parsing`: reading CSV/TSV/JSONL files, streamed and bounded (the
  ``MAX_*`` limits on size, line length, columns, rows and JSON depth);
* :mod:`~tasks.data.files`: validating a file against a task, :func:`preview_user_file`,
  :func:`user_task`;
* :mod:`~tasks.data.hub`: :func:`hub_task` and hub loading;
* :mod:`~tasks.data.loading`: :func:`load_task` and :func:`encode_task` with sub-sampling and
  in-memory caches.

No Django here: the engine's side of the data path is a plain library.

Example:
    >>> data = load_task("rte", train_examples=100)
    >>> len(data.train), len(data.eval), data.spec.labels
    (100, 277, ('entailment', 'not_entailment'))
"""

from tasks.data.files import MAX_CLASSES, preview_user_file, user_task
from tasks.data.hub import hub_task
from tasks.data.loading import (
    CACHE_SIZE,
    SPLIT_SEED,
    EncodedTask,
    TaskData,
    clear_caches,
    encode_task,
    load_task,
    tokenizer_fingerprint,
)
from tasks.data.parsing import (
    MAX_COLUMNS,
    MAX_JSON_DEPTH,
    MAX_LINE_BYTES,
    MAX_ROWS,
    MAX_USER_FILE_BYTES,
    USER_FORMATS,
)
from tasks.data.specification import (
    BUNDLED_DIR,
    DEFAULT_HOLDOUT_FRACTION,
    GLUE_TASKS,
    DataError,
    Problem,
    Source,
    TaskSpec,
    get_task,
    resolve_task,
    task_names,
)

__all__ = [
    "BUNDLED_DIR",
    "CACHE_SIZE",
    "DEFAULT_HOLDOUT_FRACTION",
    "GLUE_TASKS",
    "MAX_CLASSES",
    "MAX_COLUMNS",
    "MAX_JSON_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_ROWS",
    "MAX_USER_FILE_BYTES",
    "SPLIT_SEED",
    "USER_FORMATS",
    "DataError",
    "EncodedTask",
    "Problem",
    "Source",
    "TaskData",
    "TaskSpec",
    "clear_caches",
    "encode_task",
    "get_task",
    "hub_task",
    "load_task",
    "preview_user_file",
    "resolve_task",
    "task_names",
    "tokenizer_fingerprint",
    "user_task",
]
