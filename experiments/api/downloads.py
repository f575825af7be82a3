"""Result files of a search: which Artifact row answers which download, and the usage snippet.

Every file comes from an Artifact row (path relative to MEDIA_ROOT) and is sent as an attachment.
When a file cannot exist the answer says why instead of a bare 404: a PEFT export of a design that
uses adapters, prefixes or BitFit is not expressible in Hugging Face PEFT (409), and nothing can
be downloaded before the search has its final design (409).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.urls import reverse

from .. import selectors
from ..models import Artifact, Search

FILENAMES = {
    Artifact.Kind.DESIGN: "design.json",
    Artifact.Kind.PEFT_EXPORT: "peft-export.zip",
    Artifact.Kind.REPORT_JSON: "report.json",
    Artifact.Kind.REPORT_MD: "report.md",
}
PEFT_STRATEGIES = {"lora"}


class DownloadUnavailable(Exception):
    """The file cannot be served; .status is 404 (absent) or 409 (cannot exist yet or at all)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def artifact_download_path(artifact: Artifact) -> str | None:
    """The API path that downloads this artifact."""
    if artifact.kind == Artifact.Kind.WEIGHTS:
        return reverse("api:download-weights", kwargs={"pk": artifact.search_id, "task": artifact.task})
    filename = FILENAMES.get(artifact.kind)
    if filename is None:
        return None
    return reverse("api:download", kwargs={"pk": artifact.search_id, "filename": filename})


def design_strategies(design: dict[str, Any]) -> set[str]:
    return {name for layer in design.get("layers", []) for name, size in layer.items() if size}


def _final_design(search: Search) -> dict[str, Any]:
    trial = selectors.search_final_trial(search=search)
    if trial is None:
        raise DownloadUnavailable(409, f"Search #{search.pk} has no final design yet (status {search.status}); "
                                       "downloads appear when its final stage has run.")
    return trial.design


def artifact_resolve(*, search: Search, kind: str, task: str = "") -> tuple[Path, str]:
    """(file on disk, download name) of the search's artifact, or DownloadUnavailable saying why."""
    artifact = selectors.artifact_find(search=search, kind=kind, task=task)
    if artifact is None:
        if kind == Artifact.Kind.PEFT_EXPORT:
            extra = sorted(design_strategies(_final_design(search)) - PEFT_STRATEGIES)
            if extra:
                raise DownloadUnavailable(409, "The design is not expressible as a Hugging Face PEFT model: it uses "
                                               f"{', '.join(extra)}, and PEFT exports LoRA-only designs. Download "
                                               "the weights and load them with PEFS's engine instead.")
        elif kind in (Artifact.Kind.REPORT_JSON, Artifact.Kind.REPORT_MD) and search.finished_at is None:
            raise DownloadUnavailable(409, f"The report is written when the search finishes (status {search.status}).")
        else:
            _final_design(search)
        what = f"{Artifact.Kind(kind).label} for task {task}" if task else Artifact.Kind(kind).label
        raise DownloadUnavailable(404, f"Search #{search.pk} has no {what}.")
    path = (Path(settings.MEDIA_ROOT) / artifact.path).resolve()
    if not path.is_relative_to(Path(settings.MEDIA_ROOT).resolve()) or not path.is_file():
        raise DownloadUnavailable(404, f"The file of artifact #{artifact.pk} is missing from the server.")
    if kind == Artifact.Kind.WEIGHTS:
        return path, f"search{search.pk}-{task}.safetensors"
    return path, f"search{search.pk}-{FILENAMES[Artifact.Kind(kind)]}"


def usage_snippet(*, search: Search) -> str:
    """Python that loads the search's selected design and weights (and its PEFT export, if any)."""
    design = _final_design(search)
    tasks = list(search.tasks.order_by("name"))
    weights = {a.task for a in selectors.artifact_list(search=search) if a.kind == Artifact.Kind.WEIGHTS}
    task = next((t for t in tasks if t.name in weights), tasks[0] if tasks else None)
    task_name = task.name if task else "<task>"
    problem = task.problem if task else "classification"
    num_labels = max(1, len(task.labels)) if task and problem == "classification" else 1
    backbone = design.get("backbone", {}).get("name_or_path") or search.backbone.name_or_path
    peft_total = design.get("trainable_parameters", {}).get("peft_total", 0)
    lines = [
        f"# PEFS search #{search.pk} ({search.name}): the selected design, {peft_total:,} trainable PEFT parameters.",
        f"# Files: search{search.pk}-design.json and search{search.pk}-{task_name}.safetensors from the search's "
        "downloads.",
        "import json",
        "",
        "from safetensors.torch import load_file",
        "",
        "from tasks.peft import Design, HeadSpec, apply, load_backbone",
        "",
        f'design = Design.from_dict(json.load(open("search{search.pk}-design.json")))',
        f'backbone = load_backbone({backbone!r}, head=HeadSpec(problem={problem!r}, num_labels={num_labels}))',
        "apply(backbone, design)  # freezes the backbone and adds the PEFT modules",
        f'backbone.model.load_state_dict(load_file("search{search.pk}-{task_name}.safetensors"), strict=False)',
        "backbone.model.eval()",
    ]
    if design_strategies(design) <= PEFT_STRATEGIES:
        lines += [
            "",
            f"# LoRA-only: search{search.pk}-peft-export.zip also loads with Hugging Face PEFT alone:",
            "# from peft import PeftModel",
            "# from transformers import AutoModelForSequenceClassification",
            f"# base = AutoModelForSequenceClassification.from_pretrained({backbone!r}, num_labels={num_labels})",
            f'# model = PeftModel.from_pretrained(base, "<unzipped export>/{task_name}")',
        ]
    return "\n".join(lines) + "\n"

