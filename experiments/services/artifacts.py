"""A completed search's files under MEDIA_ROOT: design JSON, weights, PEFT exports and the report.

Each file is recorded as an Artifact row (path relative to MEDIA_ROOT, size, sha256), which is
what the downloads serve. The design JSON says, per task, how to use the weights outside PEFS
(``provenance.tasks``: the label map, index -> label name; the text fields; the token limit).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from safetensors import safe_open
from safetensors.numpy import save_file

from .. import selectors
from ..models import Artifact, Search, Trial
from ..reports import design_document, report_json, report_markdown


def trial_artifact_dir(trial: Trial) -> Path:
    """Where a worker saves the weights of a run that stands for the search."""
    return Path(settings.MEDIA_ROOT) / "searches" / str(trial.search_id) / "trials" / str(trial.pk)


def _artifact_record(search: Search, kind: str, path: Path | str, *, task: str = "",
                     trial: Trial | None = None) -> None:
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    relative = str(path.relative_to(settings.MEDIA_ROOT))
    Artifact.objects.update_or_create(
        search=search, kind=kind, task=task,
        defaults={"path": relative, "size_bytes": path.stat().st_size, "sha256": digest, "trial": trial},
    )


def artifacts_write(*, search: Search) -> None:
    """Design JSON, weights, PEFT exports and the report (JSON and Markdown), under MEDIA_ROOT."""
    root = Path(settings.MEDIA_ROOT) / "searches" / str(search.pk)
    root.mkdir(parents=True, exist_ok=True)
    design = design_document(search)
    if design is not None:
        path = root / "design.json"
        path.write_text(json.dumps(design, indent=2) + "\n")
        _artifact_record(search, Artifact.Kind.DESIGN, path)
    for trial in selectors.search_selected_trials(search).filter(status=Trial.Status.SUCCEEDED):
        directory = trial_artifact_dir(trial)
        if not directory.exists():
            continue
        for task_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
            task_name = task_dir.name
            if (task_dir / "peft.safetensors").exists():
                weights = _combined_weights(task_dir, root / f"weights-{task_name}.safetensors")
                _artifact_record(search, Artifact.Kind.WEIGHTS, weights, task=task_name, trial=trial)
            peft_dir = task_dir / "peft"
            if peft_dir.is_dir():
                archive = shutil.make_archive(str(root / f"peft-{task_name}"), "zip", peft_dir)
                _artifact_record(search, Artifact.Kind.PEFT_EXPORT, archive, task=task_name, trial=trial)
    report = report_json(search)
    (root / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    _artifact_record(search, Artifact.Kind.REPORT_JSON, root / "report.json")
    (root / "report.md").write_text(report_markdown(report))
    _artifact_record(search, Artifact.Kind.REPORT_MD, root / "report.md")


def _combined_weights(task_dir: Path, out: Path) -> Path:
    """One download per task: the PEFT tensors and the task head, in one .safetensors file."""
    tensors, metadata = {}, {}
    for name in ("peft.safetensors", "head.safetensors"):
        with safe_open(str(task_dir / name), "np") as f:
            metadata.update(f.metadata() or {})
            tensors.update({key: f.get_tensor(key) for key in f.keys()})
    save_file(tensors, str(out), metadata=metadata)
    return out
