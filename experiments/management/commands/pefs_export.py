"""Write a search's result files to a folder: report (JSON + Markdown), design JSON, weights.

Stored artifacts are copied as they are; a report that was not stored (a search still running,
or stopped early) is written from the database (experiments.reports), so the files always say
where the search stands.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments import selectors
from experiments.files import artifact_storage
from experiments.models import Artifact, Search
from experiments.reports import design_document, report_json, report_markdown


def export_results(*, search: Search, out: Path) -> list[Path]:
    """Write report.json, report.md, design.json (and stored weights / PEFT exports) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for artifact in selectors.artifact_list(search=search).order_by("kind", "task"):
        storage = artifact_storage()  # the folder under PEFS_DATA_DIR, or the S3 bucket
        if not storage.exists(artifact.path):
            continue
        kind = Artifact.Kind(artifact.kind)
        name = {Artifact.Kind.DESIGN: "design.json", Artifact.Kind.REPORT_JSON: "report.json",
                Artifact.Kind.REPORT_MD: "report.md", Artifact.Kind.PEFT_EXPORT: f"peft-{artifact.task}.zip",
                Artifact.Kind.WEIGHTS: f"weights-{artifact.task}.safetensors"}[kind]
        with storage.open(artifact.path, "rb") as source, open(out / name, "wb") as target:
            shutil.copyfileobj(source, target)
        written.append(out / name)
    names = {path.name for path in written}
    if {"report.json", "report.md"} - names:
        report = report_json(search)
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (out / "report.md").write_text(report_markdown(report))
        written += [out / "report.json", out / "report.md"]
    if "design.json" not in names:
        design = design_document(search)  # with each task's label map, as the web's download
        if design is not None:
            (out / "design.json").write_text(json.dumps(design, indent=2) + "\n")
            written.append(out / "design.json")
    return sorted(set(written))


class Command(BaseCommand):
    help = "Write a search's report (JSON, Markdown), winning design and weights to a folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("search_id", type=int, help="the search's id (see pefs_list)")
        parser.add_argument("--out", type=Path, default=None, help="folder to write (default ./pefs-search-<id>)")

    def handle(self, *args: Any, search_id: int, out: Path | None, **options: Any) -> None:
        search = selectors.search_get(search_id=search_id)
        if search is None:
            raise CommandError(f"search_id: no search #{search_id} (see `manage.py pefs_list`).")
        out = out or Path(f"pefs-search-{search.pk}")
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out: {out} exists and is not a folder.")
        for path in export_results(search=search, out=out):
            self.stdout.write(str(path))
