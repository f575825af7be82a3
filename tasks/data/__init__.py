"""Task data for PEFS: bundled GLUE files, user files and hub datasets, tokenised and cached.

Three kinds of task, all described by one frozen :class:`TaskSpec`:

* **bundled** GLUE tasks shipped in ``tasks/glue`` (see ``tasks/glue/MANIFEST.tsv`` for provenance,
  checksums, licences and quirks): cola, sst2, mrpc, rte, stsb, qnli, wnli. GLUE test labels are not
  public, so the GLUE dev set is the report set; the selection set that stage trials are scored
  on is held out of the training split. QNLI's train file is not available offline: its dev file
  is split deterministically into train and report halves, and the result notes say so.
* **upload** tasks from a user's CSV, TSV or JSONL with one to three named text columns and a label
  column, validated up front by :func:`user_task` with errors that name the problem (:class:`DataError`).
  One column is a text, two a text and its pair; three (WiC: word, sentence1, sentence2) are read as
  the text ``"{word}: {sentence1}"`` (:data:`THREE_FIELD_TEMPLATE`, recorded as
  ``TaskSpec.text_template``) and the pair ``sentence2`` (:func:`text_segments`).
  Without separate evaluation files, deterministic shares of the rows are held out as the report
  set (10%) and the selection set (10% of the rest).
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
* :mod:`~tasks.data.roles`: the three disjoint evaluation roles (train, selection, report) and
  :class:`ExampleSet`, which says which examples a number was scored on;
* :mod:`~tasks.data.loading`: :func:`load_task` (a role's examples, sub-sampled, cached) and
  :func:`example_sets` (each role's size before a search starts);
* :mod:`~tasks.data.encoding`: :func:`encode_task`, tokenised and cached.

No Django here: the engine's side of the data path is a plain library.

Example:
    >>> data = load_task("rte", train_examples=100)
    >>> len(data.train), len(data.eval), data.spec.labels
    (100, 277, ('entailment', 'not_entailment'))
"""

from tasks.data.files import MAX_CLASSES, preview_user_file, user_task
from tasks.data.hub import hub_task
from tasks.data.encoding import EncodedTask, encode_task, tokenizer_fingerprint
from tasks.data.loading import CACHE_SIZE, TaskData, clear_caches, example_sets, load_task
from tasks.data.parsing import (
    MAX_COLUMNS,
    MAX_JSON_DEPTH,
    MAX_LINE_BYTES,
    MAX_ROWS,
    MAX_USER_FILE_BYTES,
    USER_FORMATS,
)
from tasks.data.roles import EXAMPLE_ID, ROLES, SPLIT_SEED, ExampleSet, Role
from tasks.data.specification import (
    BUNDLED_DIR,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_SELECTION_FRACTION,
    GLUE_TASKS,
    MAX_TEXT_COLUMNS,
    THREE_FIELD_TEMPLATE,
    DataError,
    Problem,
    Source,
    TaskSpec,
    get_task,
    resolve_task,
    task_names,
    text_segments,
)

__all__ = [
    "BUNDLED_DIR",
    "CACHE_SIZE",
    "DEFAULT_HOLDOUT_FRACTION",
    "DEFAULT_SELECTION_FRACTION",
    "EXAMPLE_ID",
    "GLUE_TASKS",
    "MAX_CLASSES",
    "MAX_COLUMNS",
    "MAX_JSON_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_ROWS",
    "MAX_TEXT_COLUMNS",
    "MAX_USER_FILE_BYTES",
    "ROLES",
    "SPLIT_SEED",
    "THREE_FIELD_TEMPLATE",
    "USER_FORMATS",
    "DataError",
    "EncodedTask",
    "ExampleSet",
    "Problem",
    "Role",
    "Source",
    "TaskData",
    "TaskSpec",
    "clear_caches",
    "encode_task",
    "example_sets",
    "get_task",
    "hub_task",
    "load_task",
    "preview_user_file",
    "resolve_task",
    "task_names",
    "text_segments",
    "tokenizer_fingerprint",
    "user_task",
]
