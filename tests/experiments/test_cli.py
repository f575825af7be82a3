"""Command line: pefs_search end to end on a tiny model, flag errors, pefs_list, pefs_export."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from experiments import services
from experiments.models import Artifact, Search, Trial
from tests.factories import ArtifactFactory, BackboneFactory, SearchFactory, StageFactory, TaskFactory, TrialFactory

# final_lr_grid=1: no learning-rate tuning in the final stage, which the search-flow test covers.
TINY_SETTINGS = ["--set", "max_eval_examples=16", "--set", "batch_size=16", "--set", "final_seeds=1",
                 "--set", "final_epochs=1", "--set", "bootstrap_resamples=200", "--set", "final_lr_grid=1"]


@pytest.fixture
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "artifacts"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def tiny_task(user, settings, tmp_path):
    """A 40-row sentiment CSV uploaded as the user's task: evaluation takes milliseconds."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.UPLOAD_ROOT = tmp_path / "uploads"
    rows = "".join(f"{'a fine' if i % 2 else 'a dull'} film number {i},{i % 2}\n" for i in range(40))
    upload = SimpleUploadedFile("tiny.csv", ("text,label\n" + rows).encode(), content_type="text/csv")
    return services.task_upload(owner=user, name="tiny", uploaded_file=upload, text_columns=["text"],
                                label_column="label")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_pefs_search_local_runs_a_whole_search_and_writes_results(user, tiny_backbone, tiny_task, media, tmp_path):
    # Given a tiny model and a tiny uploaded task, when the CLI runs a quick auto-approved search in-process
    out_dir = tmp_path / "results"
    stdout, stderr = run("pefs_search", "--backbone", str(tiny_backbone.pk), "--tasks", "tiny", "--preset", "quick",
                         "--auto-approve", "--local", "--samples-per-stage", "2", "--epochs", "1",
                         "--train-examples", "16", "--budget", "6000", "--groups", "1", "--seed", "3",
                         "--user", user.username, "--out", str(out_dir), *TINY_SETTINGS)
    # Then the search completed with every stage, showing a progress bar per stage
    search = Search.objects.get()
    assert search.status == Search.Status.COMPLETED and search.owner == user
    assert search.config["designs_per_stage"] == 2 and search.config["max_train_examples"] == 16
    assert search.config["batch_size"] == 16 and search.budget_params == 6000
    keys = list(search.stages.order_by("order").values_list("key", flat=True))
    # G = 1: every grouping gives one group, so grouping is decided without a stage (issue 10)
    assert keys[0] == "S2" and keys[-1] == "final"
    assert [d["component"] for d in search.untrained_decisions] == ["grouping"]
    for key in keys:
        assert f"{key:>6}" in stderr
    # ...and the report and the winning design are in --out
    report = json.loads((out_dir / "report.json").read_text())
    assert report["search"]["id"] == search.pk and report["search"]["status"] == "completed"
    design = json.loads((out_dir / "design.json").read_text())
    assert design["schema"] == "pefs.design/1"
    assert design["trainable_parameters"]["peft_total"] == pytest.approx(6000, rel=0.02)
    assert (out_dir / "report.md").read_text().startswith(f"# PEFS search #{search.pk}")
    assert any(p.name.startswith("weights-tiny") for p in out_dir.iterdir())
    assert f"Search #{search.pk} completed" in stdout
    # ...and the design says how to use the weights (label map, text fields), which then load strictly
    # (the usage snippet itself runs in a fresh venv with the engine wheel: tests/platform/test_takeaway.py)
    tiny_usage = design["provenance"]["tasks"]["tiny"]
    assert tiny_usage["text_columns"] == ["text"] and sorted(tiny_usage["labels"]) == ["0", "1"]
    import torch
    from safetensors.torch import load_file

    from tasks.peft.persistence import load_result

    weights = next(out_dir.glob("weights-tiny*"))
    stored = load_file(str(weights))
    state = load_result(out_dir / "design.json", weights).model.state_dict()
    assert stored and all(torch.equal(state[key], tensor) for key, tensor in stored.items())


@pytest.mark.django_db
@pytest.mark.parametrize("args, flag", [
    (["--tasks", "nope"], "--tasks"),
    (["--tasks", " , "], "--tasks"),
    (["--epochs", "0"], "--epochs"),
    (["--samples-per-stage", "-1"], "--samples-per-stage"),
    (["--preset", "huge"], "--preset"),
    (["--budget", "0"], "--budget"),
    (["--budget", "2.5"], "--budget"),
    (["--groups", "9"], "--groups"),
    (["--backbone", "999"], "--backbone"),
    (["--set", "learning_rate=-1"], "--set learning_rate"),
    (["--set", "warp_speed=9"], "--set"),
    (["--set", "oops"], "--set"),
])
def test_pefs_search_bad_flags_name_the_flag(args, flag, tiny_backbone, bundled_tasks, monkeypatch):
    monkeypatch.setattr(services.queue, "enqueue_on_commit", lambda pairs: None)
    base = {"--backbone": str(tiny_backbone.pk), "--tasks": "sst2"}
    for name, value in zip(args[::2], args[1::2]):
        base[name] = value
    argv = [part for pair in base.items() for part in pair]
    with pytest.raises(CommandError) as error:
        run("pefs_search", *argv)
    assert str(error.value).startswith(flag), str(error.value)
    assert not Search.objects.exists()


@pytest.mark.django_db
def test_pefs_search_on_workers_follows_the_database(user, media, tmp_path, monkeypatch):
    # Given a search the workers have already finished (the service is replaced: no broker here)
    done = SearchFactory(owner=user, status=Search.Status.COMPLETED, tasks=[TaskFactory(name="sst2")])
    StageFactory(search=done, key="S1", status="approved")
    TrialFactory(stage=StageFactory(search=done, key="final"), kind=Trial.Kind.SELECTED, status="succeeded")
    monkeypatch.setattr(services, "search_create", lambda **kwargs: done)
    BackboneFactory(name_or_path="default", is_default=True)
    # When the CLI runs without --local, it polls until the search is final and exports the results
    stdout, _ = run("pefs_search", "--tasks", "sst2", "--user", user.username, "--poll", "0.01",
                    "--out", str(tmp_path / "out"))
    assert f"Search #{done.pk} completed" in stdout
    assert json.loads((tmp_path / "out" / "design.json").read_text())["schema"] == "pefs.design/1"


@pytest.mark.django_db
def test_pefs_list_shows_searches(user, other_user):
    SearchFactory(owner=user, name="first search")
    SearchFactory(owner=other_user, name="theirs", status=Search.Status.FAILED)
    stdout, _ = run("pefs_list")
    assert "first search" in stdout and "theirs" in stdout and stdout.splitlines()[0].startswith("id")
    mine, _ = run("pefs_list", "--user", user.username)
    assert "first search" in mine and "theirs" not in mine
    failed, _ = run("pefs_list", "--status", "failed")
    assert "theirs" in failed and "first search" not in failed
    with pytest.raises(CommandError, match="^--user"):
        run("pefs_list", "--user", "nobody")


@pytest.mark.django_db
def test_pefs_list_says_what_to_do_when_empty():
    stdout, _ = run("pefs_list")
    assert "pefs_search" in stdout


@pytest.mark.django_db
def test_pefs_export_copies_artifacts(user, media, tmp_path):
    search = SearchFactory(owner=user, status=Search.Status.COMPLETED)
    for kind, name, task in [(Artifact.Kind.DESIGN, "d.json", ""), (Artifact.Kind.REPORT_MD, "r.md", ""),
                             (Artifact.Kind.REPORT_JSON, "r.json", ""), (Artifact.Kind.WEIGHTS, "w.st", "sst2")]:
        (media / name).write_text(f"stored {kind}")
        ArtifactFactory(search=search, kind=kind, path=name, task=task)
    stdout, _ = run("pefs_export", str(search.pk), "--out", str(tmp_path / "x"))
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "design.json", "report.json", "report.md", "weights-sst2.safetensors"]
    assert (tmp_path / "x" / "report.md").read_text() == "stored report_md"
    assert len(stdout.splitlines()) == 4


@pytest.mark.django_db
def test_pefs_export_writes_the_report_of_an_unfinished_search(user, media, tmp_path):
    search = SearchFactory(owner=user, tasks=[TaskFactory(name="rte")])
    StageFactory(search=search, key="S1")
    run("pefs_export", str(search.pk), "--out", str(tmp_path / "y"))
    report = json.loads((tmp_path / "y" / "report.json").read_text())
    assert report["search"]["status"] == "running" and [s["key"] for s in report["stages"]] == ["S1"]
    assert not (tmp_path / "y" / "design.json").exists()
    with pytest.raises(CommandError, match="^search_id"):
        run("pefs_export", "99999")


@pytest.mark.django_db
def test_pefs_search_asks_at_the_terminal_with_each_choices_statistics(user, monkeypatch, capsys):
    # Given a stage waiting for approval whose summary lists its choices (a list of per-choice dicts)
    from experiments.management.commands.pefs_search import Command

    search = SearchFactory(owner=user, status=Search.Status.WAITING)
    stage = StageFactory(search=search, status="awaiting", recommendation={"choice": "uniform"},
                         summary={"choices": [{"choice": "uniform", "n": 3, "failed": 0, "mean": 71.5},
                                              {"choice": "spindle", "n": 2, "failed": 1, "mean": None}]})
    approved = []
    monkeypatch.setattr(services, "stage_approve", lambda **kwargs: approved.append(kwargs))
    monkeypatch.setattr("builtins.input", lambda prompt="": "")
    # When the person presses Enter
    Command().approve(stage, search)
    # Then every choice was shown with its statistics and the recommendation was approved
    shown = capsys.readouterr().err
    assert "uniform: mean 71.50 over 3 designs" in shown and "spindle: mean n/a over 2 designs (1 failed)" in shown
    assert approved == [{"stage": stage, "user": user, "choice": None, "reason": ""}]
