"""Evaluation roles: training, selection and report examples never overlap (issue 10)."""

from __future__ import annotations

import json

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import data
from tasks.data import (
    EXAMPLE_ID,
    DataError,
    ExampleSet,
    TaskSpec,
    encode_task,
    example_sets,
    hub_task,
    load_task,
    user_task,
)


def _ids(split) -> set[str]:
    ids = split[EXAMPLE_ID][:]
    assert len(set(ids)) == len(ids), "an example appears twice"
    return set(ids)


def _assert_disjoint(task, **sizes) -> tuple[set[str], set[str], set[str]]:
    """Load both roles with ``sizes`` (counts and seeds may differ per role) and check that no
    training, selection or report example is shared."""
    selection = load_task(task, role="selection", **sizes.get("selection", {}))
    report = load_task(task, role="report", **sizes.get("report", {}))
    trained = _ids(selection.train) | _ids(report.train)
    chosen_on, reported_on = _ids(selection.eval), _ids(report.eval)
    assert not chosen_on & reported_on
    assert not trained & chosen_on
    assert not trained & reported_on
    return trained, chosen_on, reported_on


ROLE_SIZES = [
    {},
    {"selection": {"train_examples": 64, "eval_examples": 30, "sample_seed": 1},
     "report": {"train_examples": 64, "eval_examples": 40, "sample_seed": 2}},
    {"selection": {"train_examples": 10_000, "sample_seed": 7},
     "report": {"eval_examples": 25, "sample_seed": 0}},
]


@pytest.mark.parametrize("name", ["rte", "stsb", "qnli", "wnli"])
@pytest.mark.parametrize("sizes", ROLE_SIZES, ids=["whole", "sub-sampled", "mixed"])
def test_bundled_roles_never_share_an_example(name, sizes):
    trained, chosen_on, reported_on = _assert_disjoint(name, **sizes)
    spec = data.get_task(name)
    if spec.train_path is not None:
        # Selection comes out of GLUE train, report is GLUE dev.
        assert all(i.startswith("train:") for i in trained | chosen_on)
        assert all(i.startswith("eval:") for i in reported_on)


def test_bundled_roles_partition_the_training_split():
    sets = example_sets("sst2")
    assert sets["train"].pool + sets["selection"].pool == 67349
    assert sets["selection"].pool == 6735 and sets["selection"].held_out
    assert sets["selection"].split == "GLUE train" and sets["report"].split == "GLUE dev"
    assert sets["report"].pool == sets["report"].count == 872 and not sets["report"].held_out
    # Both roles train on the same examples, so the final stage trains as the stages did.
    stage = load_task("sst2", role="selection", train_examples=128, eval_examples=50)
    final = load_task("sst2", role="report", train_examples=128)
    assert stage.train[EXAMPLE_ID][:] == final.train[EXAMPLE_ID][:]
    assert stage.train_set == final.train_set


def test_loading_without_a_role_is_unchanged():
    legacy = load_task("sst2", train_examples=512)
    assert len(legacy.train) == 512 and len(legacy.eval) == 872 and legacy.role is None
    assert legacy.train_set.pool == 67349  # the selection set is not held out without a role
    assert legacy.eval_set.role == "report"
    assert _ids(legacy.eval) == _ids(load_task("sst2", role="report").eval)


def test_example_sets_say_which_examples_a_number_was_scored_on():
    stage = load_task("rte", role="selection", train_examples=100, eval_examples=50, sample_seed=3)
    assert stage.eval_set == ExampleSet(
        role="selection", split="GLUE train", pool=249, count=50, seed=3, held_out=True
    )
    assert stage.train_set == ExampleSet(role="train", split="GLUE train", pool=2241, count=100,
                                         seed=3)
    assert json.loads(json.dumps(stage.eval_set.to_dict()))["split_seed"] == 0
    assert "scored on selection: 50 of 249 examples held out of GLUE train" in " ".join(stage.notes)
    final = load_task("rte", role="report")
    assert final.eval_set.describe() == "report: 277 of 277 examples from GLUE dev"
    assert any("GLUE dev set" in note for note in final.notes)
    with pytest.raises(DataError) as info:
        load_task("rte", role="dev")
    assert info.value.field == "role"


# --- uploads ----------------------------------------------------------------------------------


def _csv(path, rows, start=0):
    path.write_text("text,label\n" + "".join(f"text {i},{('neg', 'pos')[i % 2]}\n"
                                             for i in range(start, start + rows)))
    return path


@pytest.fixture(scope="module")
def upload_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roles")
    return {
        "train": _csv(folder / "train.csv", 200),
        "eval": _csv(folder / "eval.csv", 40, start=1000),
        "selection": _csv(folder / "selection.csv", 30, start=2000),
    }


@pytest.mark.parametrize("files", [(), ("eval",), ("selection",), ("eval", "selection")])
@pytest.mark.parametrize("sizes", ROLE_SIZES, ids=["whole", "sub-sampled", "mixed"])
def test_uploaded_roles_never_share_an_example(upload_files, files, sizes):
    paths = {f"{which}_path": upload_files[which] for which in files}
    spec = user_task(upload_files["train"], text_columns=["text"], label_column="label", **paths)
    _, chosen_on, reported_on = _assert_disjoint(spec, **sizes)
    # A role with its own file is scored on that file; texts differ between files, so a shared
    # text would also show an overlap that ids could hide.
    assert all(i.startswith("selection:" if "selection" in files else "train:") for i in chosen_on)
    assert all(i.startswith("eval:" if "eval" in files else "train:") for i in reported_on)
    selection = load_task(spec, role="selection", **sizes.get("selection", {}))
    report = load_task(spec, role="report", **sizes.get("report", {}))
    assert not set(selection.eval["text"][:]) & set(report.eval["text"][:])


def test_an_upload_alone_keeps_its_old_evaluation_rows_as_the_report_set(upload_files):
    spec = user_task(upload_files["train"], text_columns=["text"], label_column="label")
    sets = example_sets(spec)
    assert (sets["train"].pool, sets["selection"].pool, sets["report"].pool) == (162, 18, 20)
    assert _ids(load_task(spec).eval) == _ids(load_task(spec, role="report").eval)


def test_a_file_too_small_for_a_selection_set_is_refused_at_upload(tmp_path):
    # Given six rows of which the report set takes five (80%)
    tiny = _csv(tmp_path / "six.csv", 6)
    columns = {"text_columns": ["text"], "label_column": "label", "holdout_fraction": 0.8}
    with pytest.raises(DataError, match="too few to hold out a selection set"):
        user_task(tiny, **columns)
    # With its own selection file the same rows are enough.
    spec = user_task(tiny, **columns, selection_path=_csv(tmp_path / "sel.csv", 4, start=50))
    assert len(load_task(spec, role="selection").eval) == 4
    # A spec stored before selection sets existed still loads; only the selection role refuses.
    old = TaskSpec.from_dict({**spec.to_dict(), "selection_path": None})
    legacy = load_task(old)
    assert (len(legacy.train), len(legacy.eval)) == (1, 5)
    with pytest.raises(DataError) as info:
        load_task(old, role="selection")
    assert info.value.field == "selection"


def test_a_selection_file_must_use_known_labels(upload_files, tmp_path):
    odd = tmp_path / "odd.csv"
    odd.write_text("text,label\nfine,meh\n")
    with pytest.raises(DataError, match="'meh' is not one of") as info:
        user_task(upload_files["train"], text_columns=["text"], label_column="label",
                  selection_path=odd)
    assert info.value.field == "selection_path"  # the file at fault, not the label column of the training file


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(min_value=12, max_value=300),
    counts=st.tuples(*[st.none() | st.integers(min_value=1, max_value=400)] * 4),
    seeds=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
)
def test_no_sizes_or_seeds_make_roles_overlap(tmp_path_factory, rows, counts, seeds):
    path = _csv(tmp_path_factory.mktemp("fuzz") / "rows.csv", rows)
    spec = user_task(path, text_columns=["text"], label_column="label")
    _assert_disjoint(
        spec,
        selection={"train_examples": counts[0], "eval_examples": counts[1],
                   "sample_seed": seeds[0]},
        report={"train_examples": counts[2], "eval_examples": counts[3],
                "sample_seed": seeds[1]},
    )


# --- hub and encoding ---------------------------------------------------------------------


def test_hub_selection_is_held_out_of_the_train_split(monkeypatch):
    served = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(50)],
                                          "label": [i % 2 for i in range(50)]}),
        validation=datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, 0, 1]}),
    )
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, config=None: served)
    data.clear_caches()
    spec = hub_task("someone/reviews", text_columns="text", name="roles-hub")
    _, chosen_on, reported_on = _assert_disjoint(spec)
    assert len(chosen_on) == 5 and reported_on == {"eval:0", "eval:1", "eval:2"}
    assert example_sets(spec)["selection"].split == "hub split 'train'"
    data.clear_caches()


def test_encoded_roles_keep_their_example_ids(minilm_tokenizer):
    stage = encode_task("rte", minilm_tokenizer, max_length=32, train_examples=40,
                        eval_examples=30, role="selection")
    final = encode_task("rte", minilm_tokenizer, max_length=32, train_examples=40, role="report")
    assert stage is not final and stage.role == "selection" and final.role == "report"
    assert stage.eval_set.count == 30 and final.eval_set.count == 277
    assert not _ids(stage.eval) & _ids(final.eval)
    assert _ids(stage.train) == _ids(final.train)
    assert "input_ids" in stage.eval.column_names and len(stage.eval["labels"]) == 30
    assert encode_task("rte", minilm_tokenizer, max_length=32, train_examples=40,
                       eval_examples=30, role="selection") is stage
