"""Result files of a search: which Artifact row answers which download, the usage snippet and
the engine wheel the snippet installs.

Every file comes from an Artifact row (its name in the artifacts storage, written by
experiments.services.artifacts when the search completes) and is streamed from that storage
(experiments.files: a folder here, or an S3-compatible bucket) as an attachment. When a file
cannot exist the answer says why instead of a bare 404: a PEFT export of a design that uses
adapters, prefixes or BitFit is not expressible in Hugging Face PEFT (409), and nothing can be
downloaded before the search has its final design (409).
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import SuspiciousFileOperation
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest
from django.urls import reverse

from pefs_web.engine_wheel import EngineBuildError, build, stored_wheel_name, wheel_name

from .. import selectors
from ..models import Artifact, Search
from ..reports import design_document
from ..files import StoredFile, artifact_storage, file_store

# Files of the search as a whole; weights and PEFT exports are per task.
FILENAMES = {
    Artifact.Kind.DESIGN: "design.json",
    Artifact.Kind.REPORT_JSON: "report.json",
    Artifact.Kind.REPORT_MD: "report.md",
}
PER_TASK = {Artifact.Kind.WEIGHTS: ("weights", "safetensors"), Artifact.Kind.PEFT_EXPORT: ("peft", "zip")}
PEFT_STRATEGIES = {"lora"}
# tasks.peft.backbones.DEFAULT_BACKBONE (not imported: that module imports torch); the engine's
# [minilm] extra installs it.
BUNDLED_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"


class DownloadUnavailable(Exception):
    """The file cannot be served; .status is 404 (absent) or 409 (cannot exist yet or at all)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def file_response(request: HttpRequest, file: Any, *, filename: str, content_type: str | None = None) -> FileResponse:
    """``file`` as an attachment. Under Django's ASGI handler (pefs_web/asgi.py, as Daphne serves it)
    it goes out a block at a time, each read on a worker thread as the client takes the previous one:
    given the file itself, that handler reads a synchronous file whole into memory before sending a
    byte (and warns). `make run` runs views through WSGI (pefs_web/web.py), where FileResponse streams."""
    response = FileResponse(file, as_attachment=True, filename=filename,
                            **({"content_type": content_type} if content_type else {}))
    if isinstance(getattr(request, "_request", request), ASGIRequest):  # a DRF Request wraps Django's
        response.streaming_content = _blocks(file, response.block_size)
    return response


async def _blocks(file: Any, size: int):
    read = sync_to_async(file.read, thread_sensitive=False)
    while block := await read(size):
        yield block


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


def artifact_resolve(*, search: Search, kind: str, task: str = "") -> tuple[StoredFile, str]:
    """(stored file, download name) of the search's artifact, or DownloadUnavailable saying why."""
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
    storage = artifact_storage()
    missing = DownloadUnavailable(404, f"The file of artifact #{artifact.pk} is missing from the server.")
    try:
        if not artifact.path or not storage.exists(artifact.path):
            raise missing
    except SuspiciousFileOperation:  # a name that leads out of the storage's folder
        raise missing from None
    stored = StoredFile(storage, artifact.path)
    if kind in PER_TASK:
        prefix, extension = PER_TASK[Artifact.Kind(kind)]
        return stored, f"search{search.pk}-{prefix}-{task}.{extension}"
    return stored, f"search{search.pk}-{FILENAMES[Artifact.Kind(kind)]}"


def engine_wheel_file() -> StoredFile:
    """The PEFS engine wheel (pefs-engine, import package pefs_engine) in the artifacts storage,
    built once per version and engine change (pefs_web.engine_wheel) by the first web process
    asked for it; a concurrent first build writes the same name twice, harmlessly."""
    storage, name = artifact_storage(), stored_wheel_name()
    if not storage.exists(name):
        with tempfile.TemporaryDirectory(prefix="pefs-engine-") as scratch:
            try:
                wheel = build(Path(scratch))
            except EngineBuildError as exc:
                raise DownloadUnavailable(409, f"The engine wheel cannot be built on this server: {exc}") from None
            with wheel.open("rb") as content:
                file_store(storage=storage, name=name, content=content)
    return StoredFile(storage, name)


def _example(columns: list[str]) -> list[str]:
    return [f"An example {column}." for column in columns] or ["An example sentence."]


# The usage snippet's fixed part: read the task's usage from the design JSON, load, predict, print.
_PREDICT = """
usage = json.loads(DESIGN.read_text())["provenance"]["tasks"][TASK]  # labels, text fields, token limit
columns, texts = usage["text_columns"], sys.argv[1:] or EXAMPLE
if len(texts) != len(columns):
    sys.exit(f"{TASK} reads {len(columns)} text field(s), {', '.join(columns)}; got {len(texts)}")
if usage.get("text_template"):  # three fields: the first two joined as in training, the third the pair
    texts = [usage["text_template"].format(texts[0], texts[1]), texts[2]]

# Strict: every tensor in the weights file fits the design, every tensor the design needs is there.
result = load_result(DESIGN, WEIGHTS, backbone=BACKBONE)
inputs = result.tokenizer(*texts, truncation=True, max_length=usage["max_length"], return_tensors="pt")
with torch.no_grad():
    logits = result.model(**inputs).logits[0]
if usage["problem"] == "regression":
    print(f"{float(logits[0]):.4f}")
else:
    index = int(logits.argmax())
    print(usage["labels"].get(str(index), index))  # the label name (the index if the task has none)"""


def usage_snippet(*, search: Search) -> str:
    """A complete script: install the engine wheel, load the selected design and one task's weights
    (strictly), tokenise the text fields given on the command line and print the predicted label name.

    The label map, the text fields and the token limit come from the downloaded design JSON
    (provenance.tasks, experiments.reports.design_document), so the script and the JSON agree.
    """
    design = design_document(search)
    if design is None:
        final_design(search)  # raises the 409 saying why
    task_rows = selectors.search_tasks(search)
    weights = {a.task for a in selectors.artifact_list(search=search) if a.kind == Artifact.Kind.WEIGHTS}
    task = next((t for t in task_rows if t.name in weights), task_rows[0] if task_rows else None)
    task_name = task.name if task else "<task>"
    usage = design["provenance"]["tasks"].get(task_name, {"problem": "classification", "text_columns": []})
    columns = list(usage["text_columns"])
    backbone = design.get("backbone", {}).get("name_or_path") or search.backbone.name_or_path
    peft_total = design.get("trainable_parameters", {}).get("peft_total", 0)
    prefix, wheel = f"search{search.pk}", wheel_name()
    extra = "[minilm]" if backbone == BUNDLED_BACKBONE else ""
    example = " ".join(shlex.quote(text) for text in _example(columns))
    others = sorted(weights - {task_name})
    header = [
        f"PEFS search #{search.pk}: the selected design, {peft_total:,} trainable PEFT parameters, predicting "
        f"task {task_name}" + (f" (weights for {', '.join(others)} too: change TASK)." if others else "."),
        "",
        "Put these files from the search's downloads page in one folder:",
        f"    {prefix}-design.json  {prefix}-weights-{task_name}.safetensors  {wheel}",
        "then, in a fresh virtual environment (Python 3.11+):",
        "    python -m venv .venv",
        f'    .venv/bin/pip install "./{wheel}{extra}"',
        f"    .venv/bin/python {prefix}-usage.py {example}",
        f"Text fields, in order: {', '.join(columns) or '(see the design JSON)'}"
        + (f"; read as {usage['text_template'].format(*columns[:2])!r} and {columns[2]} as its pair."
           if usage.get("text_template") else "."),
    ]
    # A comment ends at a line break, whatever an uploaded column name holds.
    lines = [f"# {' '.join(line.splitlines())}".rstrip() for line in header] + [
        "import json",
        "import sys",
        "from pathlib import Path",
        "",
        "import torch",
        "",
        "from pefs_engine.peft.persistence import load_result",
        "",
        "HERE = Path(__file__).resolve().parent",
        f"TASK = {task_name!r}",
        f'DESIGN = HERE / "{prefix}-design.json"',
        f'WEIGHTS = HERE / f"{prefix}-weights-{{TASK}}.safetensors"',
    ]
    if backbone != BUNDLED_BACKBONE and not backbone.startswith("config:"):
        lines += ["# The backbone the design was trained on (a folder on the PEFS server: copy it, give its path)",
                  f"BACKBONE = {backbone!r}"]
    else:
        lines.append("BACKBONE = None  # the design's own backbone")
    lines += [f"EXAMPLE = {_example(columns)!r}", _PREDICT]
    if design_strategies(design) <= PEFT_STRATEGIES:
        lines += [
            "",
            f"# LoRA-only: {prefix}-peft-{task_name}.zip also loads with Hugging Face PEFT alone:",
            "# from peft import PeftModel",
            "# from transformers import AutoModelForSequenceClassification",
            f"# base = AutoModelForSequenceClassification.from_pretrained({backbone!r}, "
            f"num_labels={max(1, len(usage.get('labels', {})))})",
            '# model = PeftModel.from_pretrained(base, "<the unzipped export folder>")',
        ]
    return "\n".join(lines) + "\n"
