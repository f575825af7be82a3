"""A completed search's files in the artifacts storage: design JSON, weights, PEFT exports and the report.

Each file is recorded as an Artifact row (its name in the artifacts storage, size, sha256), which
is what the downloads serve. The design JSON says, per task, how to use the weights outside PEFS
(``provenance.tasks``: the label map, index -> label name; the text fields; the token limit).

A worker trains into a local folder and hands it to :func:`trial_artifacts_store`, which writes it
to ``searches/<search>/trials/<trial>/<task>/...``; :func:`artifacts_write` reads those back from
the storage, wherever it runs, and writes ``searches/<search>/<file>`` (experiments.files).
"""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from pathlib import Path

from django.core.files.storage import Storage
from safetensors import safe_open
from safetensors.numpy import save_file

from .. import selectors
from ..models import Artifact, Search, Trial
from ..reports import design_document, report_json, report_markdown
from ..files import artifact_storage, directory_store, file_store, storage_delete_tree, storage_walk


def search_artifact_prefix(search_id: int) -> str:
    return f"searches/{search_id}"


def trial_artifact_dir(trial: Trial) -> str:
    """Where, in the artifacts storage, the weights of a run that stands for the search are kept."""
    return f"{search_artifact_prefix(trial.search_id)}/trials/{trial.pk}"


def trial_artifacts_store(*, trial: Trial, directory: Path) -> list[str]:
    """A worker's local output folder (one sub-folder per task) written to the trial's place in the
    artifacts storage, replacing what an earlier attempt left there."""
    storage = artifact_storage()
    prefix = trial_artifact_dir(trial)
    storage_delete_tree(storage, prefix)
    return directory_store(storage=storage, prefix=prefix, directory=directory)


def _artifact_record(search: Search, kind: str, name: str, content: bytes, *, task: str = "",
                     trial: Trial | None = None) -> None:
    file_store(storage=artifact_storage(), name=name, content=content)
    Artifact.objects.update_or_create(
        search=search, kind=kind, task=task,
        defaults={"path": name, "size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
                  "trial": trial},
    )


def _trial_files(storage: Storage, trial: Trial) -> dict[str, dict[str, str]]:
    """Per task, each stored file of the trial: path within the task's folder -> storage name."""
    prefix = trial_artifact_dir(trial)
    tasks: dict[str, dict[str, str]] = {}
    for name in storage_walk(storage, prefix):
        task_name, _, relative = name[len(prefix) + 1:].partition("/")
        if relative:
            tasks.setdefault(task_name, {})[relative] = name
    return tasks


def artifacts_write(*, search: Search) -> None:
    """Design JSON, weights, PEFT exports and the report (JSON and Markdown), in the artifacts storage."""
    storage = artifact_storage()
    root = search_artifact_prefix(search.pk)
    design = design_document(search)
    if design is not None:
        _artifact_record(search, Artifact.Kind.DESIGN, f"{root}/design.json",
                         (json.dumps(design, indent=2) + "\n").encode())
    for trial in selectors.search_selected_trials(search).filter(status=Trial.Status.SUCCEEDED):
        for task_name, files in sorted(_trial_files(storage, trial).items()):
            if "peft.safetensors" in files:
                _artifact_record(search, Artifact.Kind.WEIGHTS, f"{root}/weights-{task_name}.safetensors",
                                 _combined_weights(storage, files), task=task_name, trial=trial)
            export = {relative[len("peft/"):]: name for relative, name in files.items() if relative.startswith("peft/")}
            if export:
                _artifact_record(search, Artifact.Kind.PEFT_EXPORT, f"{root}/peft-{task_name}.zip",
                                 _zipped(storage, export), task=task_name, trial=trial)
    report = report_json(search)
    _artifact_record(search, Artifact.Kind.REPORT_JSON, f"{root}/report.json",
                     (json.dumps(report, indent=2, default=str) + "\n").encode())
    _artifact_record(search, Artifact.Kind.REPORT_MD, f"{root}/report.md", report_markdown(report).encode())


def _combined_weights(storage: Storage, files: dict[str, str]) -> bytes:
    """One download per task: the PEFT tensors and the task head, in one .safetensors file."""
    tensors, metadata = {}, {}
    with tempfile.TemporaryDirectory(prefix="pefs-weights-") as scratch:
        for part in ("peft.safetensors", "head.safetensors"):
            local = Path(scratch) / part
            with storage.open(files[part], "rb") as source:
                local.write_bytes(source.read())
            with safe_open(str(local), "np") as f:
                metadata.update(f.metadata() or {})
                tensors.update({key: f.get_tensor(key) for key in f.keys()})
        out = Path(scratch) / "combined.safetensors"
        save_file(tensors, str(out), metadata=metadata)
        return out.read_bytes()


def _zipped(storage: Storage, files: dict[str, str]) -> bytes:
    """The PEFT export folder as a zip archive (paths relative to the folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative, name in sorted(files.items()):
            with storage.open(name, "rb") as source:
                archive.writestr(relative, source.read())
    return buffer.getvalue()
