"""Task data: the bundled GLUE files, user files with named errors, hub tasks, tokenisation."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
from pathlib import Path

import datasets
import pytest

from tasks import data
from tasks.data import (
    BUNDLED_DIR,
    GLUE_TASKS,
    DataError,
    TaskSpec,
    encode_task,
    get_task,
    hub_task,
    load_task,
    preview_user_file,
    resolve_task,
    task_names,
    user_task,
)


def _manifest() -> dict[str, dict[str, str]]:
    lines = [
        line
        for line in (BUNDLED_DIR / "MANIFEST.tsv").read_text().splitlines()
        if not line.startswith("#")
    ]
    return {row["file"]: row for row in csv.DictReader(lines, delimiter="\t")}


# --- bundled GLUE -------------------------------------------------------------------------


def test_manifest_checksums_match_the_bundled_files():
    manifest = _manifest()
    on_disk = {str(p.relative_to(BUNDLED_DIR)) for p in BUNDLED_DIR.rglob("*") if p.is_file()}
    assert on_disk - {"MANIFEST.tsv", "README.md"} == set(manifest)
    for name, row in manifest.items():
        raw = (BUNDLED_DIR / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == row["sha256"], name
        assert len(raw) == int(row["size_bytes"]), name
        assert row["licence"], name
    assert not any(name.endswith("test.tsv") for name in manifest)  # GLUE test labels are private


@pytest.mark.parametrize("name", task_names(offline_only=True))
def test_bundled_tasks_load_with_manifest_row_counts_and_label_sets(name):
    spec = get_task(name)
    manifest = _manifest()
    loaded = load_task(name)
    eval_rows = int(manifest[spec.eval_path]["rows"])
    if spec.train_path is not None:
        assert len(loaded.train) == int(manifest[spec.train_path]["rows"])
        assert len(loaded.eval) == eval_rows
    else:  # QNLI: the dev file is split in two
        assert len(loaded.train) + len(loaded.eval) == eval_rows
    labels = set(loaded.train["label"]) | set(loaded.eval["label"])
    if spec.problem == "regression":
        assert min(labels) >= 0.0 and max(labels) <= 5.0 and len(labels) > 10
        assert spec.num_labels == 1
    else:
        assert labels == set(range(len(spec.labels))), "every class occurs"
        assert spec.num_labels == len(spec.labels) == 2
    for column in spec.text_columns:
        assert all(isinstance(text, str) and text.strip() for text in loaded.train[column][:50])


def test_quirks_are_handled():
    cola = load_task("cola")
    assert cola.train[0]["sentence"].startswith("Our friends won't buy")  # no header row lost
    mrpc = load_task("MRPC")  # header starts with a BOM; names are case/dash-insensitive
    assert "#1 String" in mrpc.train.column_names
    assert get_task("SST-2") is get_task("sst2")
    assert any("GLUE dev" in note and "not public" in note for note in load_task("rte").notes)


def test_qnli_dev_is_split_deterministically_and_the_notes_say_so():
    first, second = load_task("qnli"), load_task("qnli")
    assert first.train["question"] == second.train["question"]
    train_pairs = set(zip(first.train["question"], first.train["sentence"]))
    eval_pairs = set(zip(first.eval["question"], first.eval["sentence"]))
    assert not train_pairs & eval_pairs
    assert len(first.eval) == 2732 and len(first.train) == 2731
    assert any("held out" in note and "qnli" in note for note in first.notes)


def test_training_subsample_is_deterministic_and_noted():
    a = load_task("sst2", train_examples=512)
    b = load_task("sst2", train_examples=512)
    c = load_task("sst2", train_examples=512, sample_seed=1)
    assert len(a.train) == 512 and len(a.eval) == 872
    assert a.train["sentence"] == b.train["sentence"] != c.train["sentence"]
    assert any("sub-sampled to 512 of 67349" in note for note in a.notes)
    assert len(load_task("wnli", train_examples=10_000).train) == 635  # more than there is: all


@pytest.mark.parametrize("name", ["mnli", "qqp"])
def test_mnli_and_qqp_say_they_are_not_available_offline(name, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    assert name not in task_names(offline_only=True) and name in task_names()
    with pytest.raises(DataError) as info:
        load_task(name)
    assert info.value.field == "task"
    assert "not available offline" in str(info.value)
    assert "upload" in str(info.value) and "hub access" in str(info.value).lower()


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(DataError, match="known: cola, sst2") as info:
        get_task("imdb")
    assert info.value.field == "task"


def test_spec_round_trips_through_json():
    for spec in GLUE_TASKS.values():
        assert TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        assert resolve_task(spec.to_dict()) == spec
    with pytest.raises(DataError) as info:
        TaskSpec.from_dict({**get_task("rte").to_dict(), "colour": "red"})
    assert info.value.field == "colour"


def test_the_data_package_imports_no_django():
    package = Path(data.__file__).parent
    imported = set()
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert not imported & {"django", "rest_framework", "channels", "celery", "experiments"}


# --- user files ---------------------------------------------------------------------------


def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


GOOD_CSV = "text,extra,stars\n" + "".join(
    f'"review, number {i}",x,{("neg", "pos")[i % 2]}\n' for i in range(30)
)


def test_specs_stored_with_the_old_source_name_file_still_load(tmp_path):
    # Given an upload's spec as databases stored it before "file" became "upload"
    path = _write(tmp_path, "reviews.csv", GOOD_CSV)
    stored = {**user_task(path, text_columns=["text"], label_column="stars").to_dict(),
              "source": "file"}
    # When it is read back, Then it is an upload spec and its file loads
    spec = resolve_task(stored)
    assert spec.source == "upload"
    assert len(load_task(spec).train) == 27
    with pytest.raises(DataError) as info:
        TaskSpec.from_dict({**stored, "source": "disk"})
    assert info.value.field == "source"


def test_user_csv_becomes_a_task_with_a_held_out_split(tmp_path):
    path = _write(tmp_path, "reviews.csv", GOOD_CSV)
    spec = user_task(path, text_columns=["text"], label_column="stars")
    assert spec.source == "upload" and spec.problem == "classification"
    assert spec.labels == ("neg", "pos") and spec.metric == "accuracy"
    loaded = load_task(spec)
    assert len(loaded.train) == 27 and len(loaded.eval) == 3
    assert loaded.train[0]["text"].startswith("review, number")  # quoted comma kept
    assert any("held out" in note for note in loaded.notes)
    preview = preview_user_file(path, max_rows=2)
    assert preview["columns"] == ["text", "extra", "stars"] and preview["row_count"] == 30


def test_user_tsv_and_jsonl_pairs_with_separate_eval_file(tmp_path):
    rows = [{"a": f"premise {i}", "b": f"hypothesis {i}", "y": i % 3} for i in range(12)]
    train = _write(tmp_path, "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    dev = _write(tmp_path, "dev.jsonl", "\n".join(json.dumps(r) for r in rows[:4]))
    spec = user_task(train, text_columns=["a", "b"], label_column="y", eval_path=dev)
    assert spec.labels == ("0", "1", "2") and spec.num_labels == 3
    loaded = load_task(spec)
    assert (len(loaded.train), len(loaded.eval)) == (12, 4)
    assert loaded.notes == ("train: evaluated on dev.jsonl (4 examples)",)
    tsv = _write(
        tmp_path,
        "scores.tsv",
        "s\tscore\n" + "".join(f'say "{i}\t{i * 0.37:.2f}\n' for i in range(20)),
    )
    reg = user_task(tsv, text_columns="s", label_column="score")
    assert reg.problem == "regression" and reg.metric == "pearson_spearman" and reg.num_labels == 1
    assert load_task(reg).train[0]["s"].startswith('say "')  # TSV: quotes are plain characters


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "field", "words"),
    [
        ("a.csv", GOOD_CSV, {"text_columns": ["body"]}, "text_columns", "'body' not found"),
        ("a.csv", GOOD_CSV, {"label_column": "label"}, "label_column", "'label' not found"),
        ("a.csv", "", {}, "path", "empty file"),
        ("a.csv", "text,stars\n", {}, "path", "no data rows"),
        ("a.csv", "text,stars\ncaf\xe9,1\nok,0\n".encode("latin-1"), {}, "path", "not UTF-8"),
        (
            "a.csv",
            "text,stars\n" + "t,pos\n" * 20,
            {},
            "label_column",
            "classification needs at least two",
        ),
        (
            "a.csv",
            "text,stars\n" + "t,1.5\n" * 20 + "t,lots\n",
            {"problem": "regression"},
            "label_column",
            "'lots' is not a finite number",
        ),
        ("a.csv", "text,stars\nt,1\nt\n", {}, "path", "line 3 has 1 fields"),
        ("a.csv", "text,stars\n,1\nt,0\n", {}, "text_columns", "line 2: column 'text' is empty"),
        ("a.xlsx", GOOD_CSV, {}, "path", "use .csv, .tsv or .jsonl"),
        (
            "a.jsonl",
            '{"text": "x", "stars": 1}\n[1, 2]\n',
            {},
            "path",
            "line 2: expected a JSON object",
        ),
        ("a.jsonl", '{"text": "x", "stars": 1}\n{"text": "y"}\n', {}, "label_column", "line 2"),
        ("a.json", '[{"text": "x", "stars": 1}]', {}, "path", "looks like one JSON array"),
        ("a.csv", "text,stars\nt,1\nu,0\n", {}, "path", "too few to hold out"),
        ("a.csv", GOOD_CSV, {"max_bytes": 100}, "path", "too large"),
    ],
)
def test_bad_user_files_name_the_problem(tmp_path, name, content, kwargs, field, words):
    path = _write(tmp_path, name, content)
    args = {"text_columns": ["text"], "label_column": "stars", **kwargs}
    with pytest.raises(DataError) as info:
        user_task(path, **args)
    assert info.value.field == field
    assert words in str(info.value)


def test_eval_file_labels_must_be_known(tmp_path):
    train = _write(tmp_path, "t.csv", GOOD_CSV)
    dev = _write(tmp_path, "d.csv", "text,extra,stars\nfine,x,meh\n")
    with pytest.raises(DataError, match="'meh' is not one of") as info:
        user_task(train, text_columns=["text"], label_column="stars", eval_path=dev)
    assert info.value.field == "eval_path"  # the file at fault (the upload form: report_file)


def test_missing_user_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as info:
        user_task(tmp_path / "nope.csv", text_columns=["t"], label_column="y")
    assert info.value.field == "path"


def test_hub_task_without_hub_access_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    spec = hub_task("someone/reviews", text_columns=["text"], label_column="label")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE") as info:
        load_task(spec)
    assert info.value.field == "task"


# --- tokenisation -------------------------------------------------------------------------


def test_encoding_pairs_truncates_and_caches(minilm_tokenizer):
    data.clear_caches()
    encoded = encode_task("rte", minilm_tokenizer, max_length=32, train_examples=40)
    assert encoded.input_columns == ("input_ids", "attention_mask", "token_type_ids")
    assert len(encoded.train) == 40 and len(encoded.eval) == 277
    lengths = [len(ids) for ids in encoded.eval["input_ids"]]
    assert max(lengths) == 32  # RTE premises are long: truncated to max_length
    first = encoded.train[0]
    assert first["input_ids"][0] == minilm_tokenizer.cls_token_id
    assert 1 in first["token_type_ids"]  # the second sentence of the pair
    assert encoded.train["labels"] == load_task("rte", train_examples=40).train["label"]
    again = encode_task("rte", minilm_tokenizer, max_length=32, train_examples=40)
    assert again is encoded  # cached per (task, tokenizer, max_length, n)
    assert encode_task("rte", minilm_tokenizer, max_length=48, train_examples=40) is not encoded


def test_single_sentence_encoding_and_bad_max_length(minilm_tokenizer):
    encoded = encode_task("sst2", minilm_tokenizer, max_length=64, train_examples=16)
    assert set(encoded.train[0]["token_type_ids"]) == {0}
    with pytest.raises(DataError) as info:
        encode_task("sst2", minilm_tokenizer, max_length=2)
    assert info.value.field == "max_length"


def test_hub_task_reads_label_names_and_drops_unlabelled_rows(monkeypatch):
    # Given a hub dataset shaped like GLUE's (ClassLabel feature, -1 for unlabelled rows),
    # served in memory because the test machine has no network.
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    rows = {"text": [f"t{i}" for i in range(10)], "label": [i % 2 for i in range(10)]}
    served = datasets.DatasetDict(
        train=datasets.Dataset.from_dict(rows, features=features),
        validation=datasets.Dataset.from_dict(
            {"text": ["a", "b", "c"], "label": [1, -1, 0]},
            features=datasets.Features(
                {"text": datasets.Value("string"), "label": datasets.Value("int64")}
            ),
        ),
    )
    calls = []

    def fake_load_dataset(hub_id, config=None):
        calls.append((hub_id, config))
        return served

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data.clear_caches()
    # When it is loaded as a hub task
    loaded = load_task(hub_task("someone/reviews", text_columns="text", name="reviews-hub"))
    # Then labels come from the ClassLabel names and the -1 row is gone
    assert calls == [("someone/reviews", None)]
    assert loaded.spec.labels == ("0", "1") and loaded.spec.label_names == ("neg", "pos")
    assert (len(loaded.train), len(loaded.eval)) == (10, 2)
    assert loaded.eval["label"][:] == [1, 0]
    with pytest.raises(DataError) as info:
        load_task(hub_task("someone/reviews", text_columns="text", eval_split="test"))
    assert info.value.field == "eval_split" and "validation" in str(info.value)
    data.clear_caches()


def test_evaluation_set_can_be_sub_sampled_for_cheap_stages():
    from tasks.data import load_task

    full = load_task("sst2")
    small = load_task("sst2", eval_examples=50)
    again = load_task("sst2", eval_examples=50)
    assert len(small.eval) == 50 and len(full.eval) == 872
    assert small.eval["label"] == again.eval["label"]  # deterministic
    assert any("evaluation set sub-sampled to 50 of 872" in note for note in small.notes)
    with pytest.raises(DataError) as error:
        load_task("sst2", eval_examples=0)
    assert error.value.field == "eval_examples"
