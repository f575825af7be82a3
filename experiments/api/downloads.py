"""Result files of a search: which Artifact row answers which download, and the usage snippet.

Every file comes from an Artifact row (path relative to MEDIA_ROOT, written by
experiments.services.artifacts when the search completes) and is sent as an attachment. When a file
cannot exist the answer says why instead of a bare 404: a PEFT export of a design that uses
adapters, prefixes or BitFit is not expressible in Hugging Face PEFT (409), and nothing can be
downloaded before the search has its final design (409).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.urls import reverse

from .. import selectors
from ..models import Artifact, Search

# Files of the search as a whole; weights and PEFT exports are per task.
FILENAMES = {
    Artifact.Kind.DESIGN: "design.json",
    Artifact.Kind.REPORT_JSON: "report.json",
    Artifact.Kind.REPORT_MD: "report.md",
}
PER_TASK = {Artifact.Kind.WEIGHTS: ("weights", "safetensors"), Artifact.Kind.PEFT_EXPORT: ("peft", "zip")}
PEFT_STRATEGIES = {"lora"}


class DownloadUnavailable(Exception):
    """The file cannot be served; .status is 404 (absent) or 409 (cannot exist yet or at all)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def artifact_download_path(artifact: Artifact) -> str | None:
    """The API path that downloads this artifact."""
    if artifact.kind in PER_TASK:
        return reverse(f"api:download-{PER_TASK[Artifact.Kind(artifact.kind)][0]}",
                       kwargs={"pk": artifact.search_id, "task": artifact.task})
    filename = FILENAMES.get(artifact.kind)
    if filename is None:
        return None
    return reverse("api:download", kwargs={"pk": artifact.search_id, "filename": filename})


def design_strategies(design: dict[str, Any]) -> set[str]:
    return {name for layer in design.get("layers", []) for name, size in layer.items() if size}


def final_design(search: Search) -> dict[str, Any]:
    """The selected design, or DownloadUnavailable(409) while the final stage has not run."""
    design = selectors.selected_design(search)
    if design is None:
        raise DownloadUnavailable(409, f"Search #{search.pk} has no final design yet (status {search.status}); "
                                       "downloads appear when its final stage has run.")
    return design


def artifact_resolve(*, search: Search, kind: str, task: str = "") -> tuple[Path, str]:
    """(file on disk, download name) of the search's artifact, or DownloadUnavailable saying why."""
    artifact = selectors.artifact_find(search=search, kind=kind, task=task)
    if artifact is None:
        if kind in (Artifact.Kind.REPORT_JSON, Artifact.Kind.REPORT_MD) and search.finished_at is None:
            raise DownloadUnavailable(409, f"The report is written when the search finishes (status {search.status}).")
        design = final_design(search)
        extra = sorted(design_strategies(design) - PEFT_STRATEGIES)
        if kind == Artifact.Kind.PEFT_EXPORT and extra:
            raise DownloadUnavailable(409, "The design is not expressible as a Hugging Face PEFT model: it uses "
                                           f"{', '.join(extra)}, and PEFT exports LoRA-only designs. Download the "
                                           "weights and load them with PEFS's engine (see usage.py) instead.")
        what = Artifact.Kind(kind).label + (f" for task {task}" if task else "")
        raise DownloadUnavailable(404, f"Search #{search.pk} has no {what}.")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / artifact.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise DownloadUnavailable(404, f"The file of artifact #{artifact.pk} is missing from the server.")
    if kind in PER_TASK:
        prefix, extension = PER_TASK[Artifact.Kind(kind)]
        return path, f"search{search.pk}-{prefix}-{task}.{extension}"
    return path, f"search{search.pk}-{FILENAMES[Artifact.Kind(kind)]}"


def usage_snippet(*, search: Search) -> str:
    """Python that loads the search's selected design and weights (and its PEFT export, if any)."""
    design = final_design(search)
    task_rows = selectors.search_tasks(search)
    weights = {a.task for a in selectors.artifact_list(search=search) if a.kind == Artifact.Kind.WEIGHTS}
    task = next((t for t in task_rows if t.name in weights), task_rows[0] if task_rows else None)
    task_name = task.name if task else "<task>"
    problem = task.problem if task else "classification"
    num_labels = max(1, len(task.labels)) if task and problem == "classification" else 1
    backbone = design.get("backbone", {}).get("name_or_path") or search.backbone.name_or_path
    peft_total = design.get("trainable_parameters", {}).get("peft_total", 0)
    prefix = f"search{search.pk}"
    lines = [
        f"# PEFS search #{search.pk} ({search.name}): the selected design, {peft_total:,} trainable PEFT parameters.",
        f"# Files from the search's downloads: {prefix}-design.json, {prefix}-weights-{task_name}.safetensors.",
        "import json",
        "",
        "from safetensors.torch import load_file",
        "",
        "from tasks.peft import Design, HeadSpec, apply, load_backbone",
        "",
        f'design = Design.from_dict(json.load(open("{prefix}-design.json")))',
        f"backbone = load_backbone({backbone!r}, head=HeadSpec(problem={problem!r}, num_labels={num_labels}))",
        "# freeze the backbone and add the PEFT modules; stored prefixes are already folded",
        "apply(backbone.model, design, reparameterize_prefix=False)",
        f'backbone.model.load_state_dict(load_file("{prefix}-weights-{task_name}.safetensors"), strict=False)',
        "backbone.model.eval()",
    ]
    if design_strategies(design) <= PEFT_STRATEGIES:
        lines += [
            "",
            f"# LoRA-only: {prefix}-peft-{task_name}.zip also loads with Hugging Face PEFT alone:",
            "# from peft import PeftModel",
            "# from transformers import AutoModelForSequenceClassification",
            f"# base = AutoModelForSequenceClassification.from_pretrained({backbone!r}, num_labels={num_labels})",
            '# model = PeftModel.from_pretrained(base, "<the unzipped export folder>")',
        ]
    return "\n".join(lines) + "\n"
