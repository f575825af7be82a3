"""A result a user can take away (issue 12): from the downloads of a finished search (the design
JSON with its label map, one task's weights, the usage snippet and the PEFS engine wheel), a fresh
virtualenv outside the checkout runs the snippet and prints the label the trained model predicts.

The venv is made with ``python -m venv`` (no system site-packages, nothing of the checkout on its
path, cwd a temporary folder) and the engine wheel is installed with pip, which brings torch,
transformers and safetensors from the package index (pinned by requirements.txt as a constraint).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from django.urls import reverse
from rest_framework.test import APIClient

from experiments.models import Search, Trial
from experiments.services import artifacts_write
from experiments.services.artifacts import trial_artifacts_store
from pefs_web.engine_wheel import BASE_DIR, pefs_version, wheel_name
from tasks.peft import HeadSpec, apply, design_from_sizes, load_backbone, save
from tests.factories import SearchFactory, StageFactory, TaskFactory, TrialFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

LABEL_NAMES = ["entailment", "neutral", "contradiction"]
PAIRS = [("A man plays a guitar on stage.", "Someone is making music."),
         ("The cat sleeps all afternoon.", "A dog runs through the park at noon.")]


def outside_env() -> dict[str, str]:
    """This process's environment without anything that points Python at the checkout or its venv."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PEFS_")}
    return env | {"HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run_outside(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=outside_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def trained_pair_task_search(user, tiny_backbone):
    """A finished search over a 3-label pair task: its selected run saved the way a worker saves it,
    its artifacts written; returns (search, the in-process model, its tokenizer)."""
    task = TaskFactory(owner=user, name="pairs", text_columns=["premise", "hypothesis"], labels=["0", "1", "2"],
                       spec={"text_columns": ["premise", "hypothesis"], "labels": ["0", "1", "2"],
                             "label_names": LABEL_NAMES})
    search = SearchFactory(owner=user, backbone=tiny_backbone, tasks=[task], status=Search.Status.COMPLETED)
    search.config["max_length"] = 48
    search.save(update_fields=["config"])
    torch.manual_seed(0)
    backbone = load_backbone(tiny_backbone.name_or_path, head=HeadSpec("classification", len(LABEL_NAMES)))
    sizes = {0: {"lora": 2, "adapter": 2}, 1: {"prefix": 2, "bitfit": 1}, 3: {"lora": 1, "prefix": 1}}
    design = design_from_sizes(backbone.shape, sizes, seed=0)
    apply(backbone, design)
    with torch.no_grad():  # stand-in for training: every PEFT tensor and the head away from its initial value
        for parameter in backbone.model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.5)
    final = StageFactory(search=search, order=0, key="final")
    trial = TrialFactory(stage=final, kind=Trial.Kind.SELECTED, eval_role=Trial.Role.REPORT,
                         status=Trial.Status.SUCCEEDED, seed=0, design=design.to_dict(), score=50.0)
    with tempfile.TemporaryDirectory() as output:  # as a worker saves a trial's weights, then stores them
        save(backbone.model, design, Path(output) / task.name)
        trial_artifacts_store(trial=trial, directory=Path(output))
    artifacts_write(search=search)
    backbone.model.eval()
    return search, backbone.model, backbone.tokenizer


def download(client: APIClient, url: str, folder: Path) -> Path:
    response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    name = re.search(r'filename="([^"]+)"', response["Content-Disposition"]).group(1)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    (folder / name).write_bytes(content)
    return folder / name


@pytest.mark.timeout(900)
def test_downloads_predict_label_names_in_a_fresh_venv(user, tiny_backbone, settings, tmp_path):
    # Given a finished search and its downloads, fetched through the API as its owner
    settings.MEDIA_ROOT = tmp_path / "artifacts"
    search, model, tokenizer = trained_pair_task_search(user, tiny_backbone)
    client = APIClient()
    client.force_authenticate(user)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    design_file = download(client, reverse("api:download", args=[search.pk, "design.json"]), downloads)
    download(client, reverse("api:download-weights", args=[search.pk, "pairs"]), downloads)
    usage = download(client, reverse("api:download", args=[search.pk, "usage.py"]), downloads)
    wheel = download(client, reverse("api:engine-wheel", args=[wheel_name()]), downloads)
    assert wheel.name == f"pefs_engine-{pefs_version()}-py3-none-any.whl"
    # ...the design JSON carries the task's label map, index -> name, and its text fields
    task_usage = json.loads(design_file.read_text())["provenance"]["tasks"]["pairs"]
    assert task_usage["labels"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert task_usage["text_columns"] == ["premise", "hypothesis"] and task_usage["max_length"] == 48

    # When a fresh venv outside the checkout installs the wheel (and only the wheel) with pip
    assert not downloads.resolve().is_relative_to(BASE_DIR)
    venv = tmp_path / "venv"
    run_outside([sys.executable, "-m", "venv", str(venv)], downloads, timeout=300)
    python = str(venv / "bin" / "python")
    run_outside([python, "-m", "pip", "install", "--quiet", "--constraint", str(BASE_DIR / "requirements.txt"),
                 str(wheel)], downloads, timeout=600)

    # Then PEFS itself is not importable there, the engine is, under its own name and version
    probe = subprocess.run([python, "-c", "import tasks"], cwd=downloads, env=outside_env(),
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "No module named 'tasks'" in probe.stderr
    version = run_outside([python, "-c", "import pefs_engine; print(pefs_engine.__version__)"], downloads, 120)
    assert version.stdout.strip() == pefs_version()
    # ...and the snippet prints, for each sentence pair, the label name the trained model predicts
    for premise, hypothesis in PAIRS:
        printed = run_outside([python, usage.name, premise, hypothesis], downloads, timeout=300).stdout.strip()
        inputs = tokenizer(premise, hypothesis, truncation=True, max_length=48, return_tensors="pt")
        with torch.no_grad():
            expected = LABEL_NAMES[int(model(**inputs).logits[0].argmax())]
        assert printed.splitlines()[-1] == expected, printed

