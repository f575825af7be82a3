"""The catalogue a search draws from: uploaded and bundled tasks, registered backbones.

The web process never imports torch: a backbone is measured (layers, widths, parameter counts)
once, in a short-lived child interpreter, and its shape is stored on the Backbone row. Who may
register what is decided before anything on disk is looked at: any user may name a Hugging Face
id (checked for syntax, and with HF_HUB_OFFLINE for a copy in the local cache); a local folder is
for administrators (and the command line), and only under settings.PEFS_MODEL_DIRS.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.text import slugify

from tasks.peft.budget import BackboneShape

from ..models import Backbone, Task
from ..files import file_store, upload_exists, upload_local_path, upload_name, upload_storage

if TYPE_CHECKING:
    from tasks.data import DataError, TaskSpec

logger = logging.getLogger(__name__)

_INTROSPECT_PROGRAM = """
import json, sys
from tasks.peft import HeadSpec, load_backbone
backbone = load_backbone(sys.argv[1] or None, head=HeadSpec(problem="classification", num_labels=2))
print(json.dumps(backbone.shape.to_dict()))
"""


class IntrospectionError(RuntimeError):
    """The child process could not load the backbone; the message is its last error line."""


UPLOAD_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")
# Exceptions a parser may still raise on a hostile file it does not foresee: a refusal of the file,
# logged so the parser can learn to name the problem, never a server error.
_UNFORESEEN_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, RecursionError, UnicodeError,
                            OverflowError, MemoryError)


# The upload's files, by form field: the training file, and the optional files of the evaluation
# roles (tasks.data.roles); a role without a file is held out of the training file.
UPLOAD_FILE_FIELDS = ("file", "selection_file", "report_file")
# tasks.data.DataError fields -> the web's field names.
_DATA_FIELDS = {"path": "file", "file_format": "file", "text_columns": "text_columns",
                "label_column": "label_column", "problem": "problem", "name": "name",
                "eval_path": "report_file", "selection_path": "selection_file"}


def _data_error(exc: DataError, *, shown: dict[Path, str] | None = None) -> ValidationError:
    """tasks.data.DataError -> a ValidationError for the web's field names.

    Messages name each file as the user uploaded it (``shown``: stored path -> name), never the path
    it is stored under."""
    message = exc.message
    for stored, name in (shown or {}).items():
        message = message.replace(str(stored.resolve()), name).replace(str(stored), name)
    return ValidationError({_DATA_FIELDS.get(exc.field, exc.field): [message]})


@contextlib.contextmanager
def _staged_uploads(files: dict[str, UploadedFile]) -> Iterator[dict[str, Path]]:
    """Each upload (by form field) in a private temporary file outside the uploads storage, removed
    on exit whatever happens.

    Files are parsed here and written to the uploads storage only once accepted, so a refused or failing
    upload leaves nothing behind. tasks.data.DataError and parser failures become ValidationErrors
    on the field DataError names (a file's own field for a file that cannot be read) that name the
    file as the user sent it.
    """
    from tasks.data import DataError  # tasks.data imports datasets: not for every request

    staged: dict[str, Path] = {}
    shown: dict[Path, str] = {}
    try:
        for field, uploaded_file in files.items():
            path = _stage_one(field, uploaded_file)
            staged[field] = path
            shown[path] = Path(uploaded_file.name or "upload").name
        try:
            yield staged
        except DataError as exc:
            raise _data_error(exc, shown=shown) from None
        except _UNFORESEEN_PARSE_ERRORS as exc:
            names = ", ".join(shown.values())
            logger.warning("upload %s refused by an unforeseen %s", names, type(exc).__name__, exc_info=True)
            raise ValidationError({"file": [f"{names}: could not be read as CSV, TSV or JSON Lines "
                                            f"({type(exc).__name__})."]}) from None
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)


def _stage_one(field: str, uploaded_file: UploadedFile) -> Path:
    """One upload copied to a temporary file (the caller removes it); its suffix and size checked."""
    name = Path(uploaded_file.name or "upload").name
    suffix = Path(name).suffix.lower()
    limit = settings.UPLOAD_MAX_BYTES
    too_large = ValidationError({field: [f"{name}: too large: the limit is {limit / 2**20:.0f} MiB."]})
    if suffix not in UPLOAD_SUFFIXES:
        raise ValidationError({field: [f"{name}: use a .csv, .tsv or .jsonl file (got {suffix or 'no extension'})."]})
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise too_large
    descriptor, staged = tempfile.mkstemp(prefix="pefs-upload-", suffix=suffix)
    path = Path(staged)
    try:
        with os.fdopen(descriptor, "wb") as out:
            for chunk in uploaded_file.chunks():
                if out.tell() + len(chunk) > limit:
                    raise too_large
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def _staged_upload(uploaded_file: UploadedFile) -> Iterator[Path]:
    """One upload (the `file` field) staged as by :func:`_staged_uploads`."""
    with _staged_uploads({"file": uploaded_file}) as staged:
        yield staged["file"]


def task_preview(*, uploaded_file: UploadedFile, owner_id: int, max_rows: int = 5) -> dict[str, Any]:
    """Columns and the first rows of an uploaded file, for the upload form; stores nothing."""
    from tasks.data import preview_user_file  # tasks.data imports datasets: not for every request

    with _staged_upload(uploaded_file) as path:
        return preview_user_file(path, max_rows=max_rows, max_bytes=settings.UPLOAD_MAX_BYTES)


def _label_column_check(path: Path, spec: TaskSpec) -> None:
    """Refuse a 'label' column in which nearly every row is its own class (an id, a sentence).

    Such a column gives as many classes as rows (issue 12: a 40-class task from 40 rows): nothing
    can be learnt from it, and it is almost always the wrong column picked by mistake."""
    from tasks.data import preview_user_file  # tasks.data imports datasets: not for every request

    if spec.problem != "classification":
        return
    rows = preview_user_file(path, max_rows=1, max_bytes=settings.UPLOAD_MAX_BYTES)["row_count"]
    if len(spec.labels) * 2 > rows:
        raise ValidationError({"label_column": [
            f"{spec.label_column!r} has {len(spec.labels)} different values in {rows} rows, so nearly every "
            "row would be a class of its own: it does not look like a label column. Choose the column that "
            "holds the labels (for a numeric score, choose regression)."]})


MAX_TEXT_COLUMNS = 3  # tasks.data.MAX_TEXT_COLUMNS (not imported here: tasks.data imports datasets)


def task_upload_validate(*, owner: AbstractBaseUser, name: str, path: Path, text_columns: list[str],
                         label_column: str, problem: str | None = None, selection_path: Path | None = None,
                         report_path: Path | None = None) -> TaskSpec:
    """Every check an upload passes, for the form and the API alike: the name, the columns, the labels,
    and the optional selection and report files (same format and columns as the training file).

    Raises ValidationError naming the field (tasks.data.DataError inside _staged_uploads)."""
    from tasks.data import user_task  # tasks.data imports datasets: not for every request

    slug = slugify(name or "")[:64]
    if not slug:
        raise ValidationError({"name": ["Give the task a name (letters, digits, dashes)."]})
    if Task.objects.filter(owner=owner, name=slug).exists() or Task.objects.filter(owner=None, name=slug).exists():
        raise ValidationError({"name": [f"A task named {slug!r} already exists; choose another name."]})
    if not text_columns or len(text_columns) > MAX_TEXT_COLUMNS:
        raise ValidationError({"text_columns": [f"Choose one to three text columns, got {len(text_columns or ())}."]})
    if not label_column:
        raise ValidationError({"label_column": ["Choose the column that holds the labels."]})
    if problem not in (None, "", "classification", "regression"):
        raise ValidationError({"problem": ["Choose classification or regression."]})
    spec = user_task(path, text_columns=list(text_columns), label_column=label_column,
                     problem=problem or None, name=slug, max_bytes=settings.UPLOAD_MAX_BYTES,
                     eval_path=report_path, selection_path=selection_path)
    _label_column_check(path, spec)
    return spec


def _role_sources(spec: TaskSpec, names: dict[str, str]) -> str:
    """Where each role's examples come from and how many there are, in the uploader's file names:
    'training: 26 examples of train.jsonl; selection: 3 held out of train.jsonl; report: 40 from dev.jsonl'."""
    from tasks.data import example_sets  # tasks.data imports datasets: not for every request

    sets = example_sets(spec)
    shown = {"train": names["file"], "selection": names.get("selection_file"), "report": names.get("report_file")}
    parts = []
    for role, label in (("train", "training"), ("selection", "selection"), ("report", "report")):
        if role not in sets:
            continue
        count = sets[role].pool
        where = f"held out of {names['file']}" if sets[role].held_out else f"from {shown[role] or names['file']}"
        parts.append(f"{label}: {count:,} example{'s' if count != 1 else ''} {where}")
    return "; ".join(parts) + "."


def task_upload(*, owner: AbstractBaseUser, name: str, uploaded_file: UploadedFile, text_columns: list[str],
                label_column: str, problem: str | None = None, selection_file: UploadedFile | None = None,
                report_file: UploadedFile | None = None) -> Task:
    """Validate an uploaded CSV/TSV/JSONL training file (and the optional selection and report files)
    and register them as the owner's task.

    Without a selection or report file that role is held out of the training file (tasks.data.roles).
    The files are validated in a temporary place and written to the uploads storage (as
    <owner>/<token>-<sha256>.<suffix>, experiments.files) only with the Task row that refers to them: a
    refused upload leaves nothing stored. Task.notes says where each role's examples come from and
    how many there are."""
    uploads = {"file": uploaded_file, "selection_file": selection_file, "report_file": report_file}
    uploads = {field: upload for field, upload in uploads.items() if upload is not None}
    names = {field: Path(upload.name or "upload").name for field, upload in uploads.items()}
    with _staged_uploads(uploads) as staged:
        spec = task_upload_validate(owner=owner, name=name, path=staged["file"], text_columns=text_columns,
                                    label_column=label_column, problem=problem,
                                    selection_path=staged.get("selection_file"), report_path=staged.get("report_file"))
        notes = f"Uploaded {_role_sources(spec, names)}"
        stored = {field: upload_name(owner_id=owner.pk, token=uuid.uuid4().hex[:8], digest=_file_sha256(path),
                                     suffix=path.suffix) for field, path in staged.items()}
        spec_dict = spec.to_dict()
        for field, key in (("file", "train_path"), ("selection_file", "selection_path"), ("report_file", "eval_path")):
            spec_dict[key] = stored.get(field)
        storage = upload_storage()
        try:
            with transaction.atomic():
                task = Task.objects.create(
                    owner=owner, name=spec.name, display_name=name.strip()[:128], source=Task.Source.UPLOAD,
                    path=spec_dict["train_path"], text_columns=list(spec.text_columns),
                    label_column=spec.label_column, problem=spec.problem, labels=list(spec.labels),
                    metric=spec.metric, notes=notes, spec=spec_dict,
                )
                for field, name in stored.items():
                    with staged[field].open("rb") as content:
                        file_store(storage=storage, name=name, content=content)
        except BaseException:
            for name in stored.values():
                storage.delete(name)
            raise
    return task


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as content:
        while chunk := content.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_TASK_FILE_KEYS = ("train_path", "eval_path", "selection_path")


def _hub_offline() -> bool:
    """Whether hub access is switched off here: the flag tasks.data.hub.load_hub refuses on."""
    import datasets  # already loaded by the pages (tasks.data); the loader's own reading of the flag

    return bool(datasets.config.HF_HUB_OFFLINE)


def _task_files(task: Task) -> list[str]:
    """The files a bundled or uploaded task's trials read: its TaskSpec's paths (for an upload, its
    names in the uploads storage)."""
    spec = task.spec or {}
    return [spec[key] for key in _TASK_FILE_KEYS if spec.get(key)]


def task_unavailable_reason(task: Task) -> str | None:
    """Why a search cannot use ``task`` on this server, or None when it can (as far as can be known
    without loading the data: this runs on every new-search page, so it only looks at the
    environment and whether files exist).

    A hub task (MNLI, QQP) needs the Hugging Face Hub, which HF_HUB_OFFLINE switches off; a bundled
    or uploaded task needs its files. Whether an online hub answers is only known when a trial
    loads the data.

    Example (with HF_HUB_OFFLINE=1):
        >>> task_unavailable_reason(Task.objects.get(owner=None, name="mnli"))
        'needs the Hugging Face Hub, which is switched off here (HF_HUB_OFFLINE); upload ...'
    """
    if task.source == Task.Source.HUB:
        if _hub_offline():
            return ("needs the Hugging Face Hub, which is switched off here (HF_HUB_OFFLINE); "
                    "upload its data as a file instead")
        return None
    files = _task_files(task)
    if task.source == Task.Source.UPLOAD:
        if not files:
            return "its uploaded file is not recorded; upload it again"
        if not all(upload_exists(name) for name in files):
            return "its uploaded file is no longer on the server; upload it again"
        return None
    from tasks.data import BUNDLED_DIR  # tasks.data imports datasets: not for every request

    missing = [BUNDLED_DIR / name for name in files if not (BUNDLED_DIR / name).is_file()]
    if not missing:
        return None
    return (f"its data files are missing from this installation "
            f"({missing[0].name} of {missing[0].parent.name})")


def task_evaluation_sizes(task: Task) -> dict[str, int]:
    """How many examples a bundled or uploaded task's selection and report sets hold (whole pools,
    before a search's max_eval_examples), read from its files: for the upload's answer, once, not
    on every page. Empty for a hub task or files that cannot be read."""
    from tasks.data import DataError, TaskSpec, example_sets  # tasks.data imports datasets

    if task.source == Task.Source.HUB:
        return {}
    spec = dict(task.spec or {})
    try:
        if task.source == Task.Source.UPLOAD:
            spec.update({key: str(upload_local_path(spec[key])) for key in _TASK_FILE_KEYS if spec.get(key)})
        sets = example_sets(TaskSpec.from_dict(spec))
    except (DataError, OSError, ValueError):
        logger.warning("evaluation sizes of task %s", task.pk, exc_info=True)
        return {}
    return {role: sets[role].pool for role in ("selection", "report") if role in sets}


# A Hugging Face repository id: an optional owner and a name, each of letters, digits, '-', '_'
# and '.', at most 96 characters, not starting or ending with '-' or '.' (huggingface_hub's rules).
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"(?:{_HUB_PART}/)?{_HUB_PART}")
HUB_ID_RULE = ("a Hugging Face id is org/name (or a bare name): letters, digits, '-', '_' and '.', "
               "at most 96 characters each")


def hub_id_valid(name: str) -> bool:
    return bool(_HUB_ID.fullmatch(name)) and "--" not in name and ".." not in name


def _is_local_path(name: str) -> bool:
    return name.startswith(("/", "~", ".", "\\")) or os.sep in name.split("/", 1)[-1] or "\\" in name


def _can_register_folders(owner: AbstractBaseUser) -> bool:
    return bool(getattr(owner, "is_staff", False) or getattr(owner, "is_superuser", False))


def model_folder_allowed(name: str) -> Path:
    """The absolute folder `name` names when it lies under a configured model directory.

    ValidationError otherwise. The textual check comes first, so a path elsewhere is refused
    without touching the disk; symbolic links are then resolved, so none leads outside.
    """
    roots = [Path(os.path.normpath(root)) for root in settings.PEFS_MODEL_DIRS]
    shown = ", ".join(str(root) for root in roots)
    outside = ValidationError({"name_or_path": [
        f"{name!r} is not under a model directory; local folders must lie in one of: {shown} "
        "(PEFS_MODEL_DIRS)."]})
    if not os.path.isabs(name):
        raise ValidationError({"name_or_path": [f"{name!r}: give a local folder as an absolute path."]})
    folder = Path(os.path.normpath(name))
    if not any(folder.is_relative_to(root) for root in roots):
        raise outside
    resolved = Path(os.path.realpath(folder))
    if not any(resolved.is_relative_to(os.path.realpath(root)) for root in roots):
        raise outside
    return resolved


def _hub_copy_missing_offline(repo_id: str) -> bool:
    """With HF_HUB_OFFLINE, whether the model is neither the bundled default nor in the local cache."""
    from huggingface_hub import constants, try_to_load_from_cache  # ~1 s to import: only when needed

    if not constants.HF_HUB_OFFLINE:
        return False
    default = Backbone.objects.filter(owner=None, is_default=True).values_list("name_or_path", flat=True).first()
    return repo_id != default and not isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def backbone_introspect(name_or_path: str | None, *, timeout_s: float | None = None) -> BackboneShape:
    """BackboneShape of a model (None: the bundled MiniLM), measured by loading it in a child process.

    Raises IntrospectionError when the child fails or runs past `timeout_s` (default
    settings.PEFS_INTROSPECT_TIMEOUT_SECONDS), and at once, without a child, for a hub id that
    cannot be loaded offline.
    """
    timeout_s = timeout_s or settings.PEFS_INTROSPECT_TIMEOUT_SECONDS
    if name_or_path and hub_id_valid(name_or_path) and _hub_copy_missing_offline(name_or_path):
        raise IntrospectionError(
            "the hub is switched off here (HF_HUB_OFFLINE) and the model is not in the local Hugging "
            "Face cache; choose a registered backbone, or ask an administrator to download it")
    try:
        done = subprocess.run([sys.executable, "-c", _INTROSPECT_PROGRAM, name_or_path or ""],
                              capture_output=True, text=True, cwd=settings.BASE_DIR, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise IntrospectionError(f"loading the model took more than {timeout_s:g} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise IntrospectionError(lines[-1] if lines else f"the loader exited with status {done.returncode}")
    return BackboneShape.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))


def backbone_register(*, owner: AbstractBaseUser, name_or_path: str, display_name: str = "",
                      operator: bool = False) -> Backbone:
    """Introspect a Hugging Face id or local folder and store it for the owner.

    A local folder needs an administrator (or `operator`: the command line, run on the server) and
    must lie under settings.PEFS_MODEL_DIRS; PermissionDenied / ValidationError say so before any
    file is looked at.
    """
    name_or_path = (name_or_path or "").strip()
    if not name_or_path:
        raise ValidationError({"name_or_path": ["Give a Hugging Face model id or a local folder."]})
    if _is_local_path(name_or_path) or not hub_id_valid(name_or_path):
        if not _is_local_path(name_or_path):
            raise ValidationError({"name_or_path": [f"{name_or_path[:100]!r} is not a valid id: {HUB_ID_RULE}."]})
        if not (operator or _can_register_folders(owner)):
            raise PermissionDenied("Registering a local folder is for administrators; choose a registered "
                                   "backbone or give a Hugging Face id (org/name).")
        name_or_path = str(model_folder_allowed(name_or_path))
    elif (Path(settings.BASE_DIR) / name_or_path).exists():
        # The loader takes an existing relative folder for a local model: no hub id may name one.
        raise ValidationError({"name_or_path": [f"{name_or_path!r} names a folder of this server, not a "
                                                "Hugging Face model."]})
    existing = Backbone.objects.filter(owner=owner, name_or_path=name_or_path).first()
    if existing:
        return existing
    try:
        shape = backbone_introspect(name_or_path)
    except Exception as exc:  # unsupported architecture, missing files, no network: say which
        raise ValidationError({"name_or_path": [f"Cannot use {name_or_path!r}: {exc}"]}) from None
    return Backbone.objects.create(
        owner=owner, name_or_path=name_or_path, display_name=display_name or name_or_path.rstrip("/").split("/")[-1],
        model_type=shape.model_type, family=shape.family, num_layers=shape.num_layers,
        hidden_size=shape.hidden_size, num_heads=shape.num_heads, total_params=shape.total_params,
        shape=shape.to_dict(),
    )

def seed_bundled(*, backbone: bool = True) -> dict[str, int]:
    """Bundled GLUE tasks (everyone sees them) and the default MiniLM backbone; idempotent."""
    from tasks.data import GLUE_TASKS  # tasks.data imports datasets: not for every request

    new_tasks = 0
    for spec in GLUE_TASKS.values():
        if Task.objects.filter(owner=None, name=spec.name).exists():
            continue
        offline = spec.available_offline
        Task.objects.create(
            owner=None, name=spec.name, display_name=spec.description.split(":")[0] or spec.name,
            source=Task.Source.BUNDLED if offline else Task.Source.HUB, hub_id=spec.hub_id or "",
            text_columns=list(spec.text_columns), label_column=spec.label_column, problem=spec.problem,
            labels=list(spec.labels), metric=spec.metric, notes=spec.description, spec=spec.to_dict(),
        )
        new_tasks += 1
    new_backbones = 0
    if backbone and not Backbone.objects.filter(owner=None, is_default=True).exists():
        shape = backbone_introspect(None)
        Backbone.objects.create(
            owner=None, name_or_path=shape.name_or_path, display_name="all-MiniLM-L6-v2 (bundled)",
            model_type=shape.model_type, family=shape.family, num_layers=shape.num_layers,
            hidden_size=shape.hidden_size, num_heads=shape.num_heads, total_params=shape.total_params,
            shape=shape.to_dict(), is_default=True,
        )
        new_backbones = 1
    return {"tasks": new_tasks, "backbones": new_backbones}
