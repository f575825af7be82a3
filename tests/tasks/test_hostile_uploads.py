"""Hostile and clumsy uploads: each is refused at once with a DataError naming the problem.

The big inputs are the ones that were quadratic before the reader streamed (a 0.9 MB CSV with
100,002 columns took 319 s, a 0.4 MB JSONL with a new key per row 47 s); they are generated here,
the small ones live in tests/fixtures/hostile_uploads/.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.data import (
    MAX_COLUMNS,
    MAX_JSON_DEPTH,
    MAX_LINE_BYTES,
    MAX_ROWS,
    MAX_USER_FILE_BYTES,
    DataError,
    load_task,
    preview_user_file,
    user_task,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostile_uploads"
COLUMNS = {"text_columns": ["text"], "label_column": "label"}


def _refusal(path: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        user_task(path, **{**COLUMNS, **kwargs})
    return info.value


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("binary_garbage.csv", "line 1 holds a NUL byte: not a text file"),
        ("utf16.csv", "UTF-16"),
        ("utf16_no_bom.tsv", "NUL byte"),
        ("latin1.csv", "byte 0xe9 at line 2 is not UTF-8"),
        ("empty.csv", "empty file"),
        ("blank_lines_only.jsonl", "empty file"),
        ("header_only.csv", "no data rows"),
        ("duplicate_headers.csv", "header repeats column(s) ['text']"),
        ("json_array.json", "looks like one JSON array"),
        ("not_json.jsonl", "line 2: not valid JSON"),
        ("scalar_lines.jsonl", "line 1: expected a JSON object"),
        ("huge_integer.jsonl", "line 1: not valid JSON"),
        ("unterminated_quote.csv", "has 1 fields, the header has 2"),
    ],
)
def test_small_hostile_files_are_refused_by_name(name, words):
    error = _refusal(FIXTURES / name)
    assert words in error.message
    assert error.field in ("path", "text_columns", "label_column")


def test_every_fixture_is_listed_in_the_readme():
    readme = (FIXTURES / "README.md").read_text()
    for path in FIXTURES.iterdir():
        if path.name != "README.md":
            assert f"| {path.name} |" in readme


def test_a_hundred_thousand_columns_are_refused_by_the_header(tmp_path):
    path = tmp_path / "wide.csv"
    header = ",".join(f"c{i}" for i in range(100_002))
    path.write_text(header + "\n" + ",".join("x" * 100_002) + "\n")
    for refuse in (lambda: preview_user_file(path), lambda: user_task(path, **COLUMNS)):
        with pytest.raises(DataError, match=f"more than {MAX_COLUMNS} .MAX_COLUMNS."):
            refuse()
    # Exactly the limit is a table.
    fine = tmp_path / "wide_enough.csv"
    names = [f"c{i}" for i in range(MAX_COLUMNS - 2)] + ["text", "label"]
    rows = [["x"] * (MAX_COLUMNS - 2) + [f"t{i}", str(i % 2)] for i in range(20)]
    fine.write_text("\n".join(",".join(row) for row in [names, *rows]))
    assert preview_user_file(fine)["columns"] == names
    assert user_task(fine, **COLUMNS).labels == ("0", "1")


def test_a_new_jsonl_key_on_every_row_stops_at_the_key_limit(tmp_path):
    path = tmp_path / "keys.jsonl"
    path.write_text("".join(json.dumps({"text": "t", "label": 1, f"k{i}": i}) + "\n"
                            for i in range(20_000)))
    error = _refusal(path)
    assert f"line {MAX_COLUMNS - 1}: more than {MAX_COLUMNS} columns" in error.message


def test_json_nested_fifty_thousand_levels_is_a_clean_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": ' + "[" * 50_000 + "]" * 50_000 + ', "label": 1}\n')
    assert "MAX_JSON_DEPTH" in _refusal(path).message
    # Deep but under Python's recursion limit: refused by the documented depth, not by luck.
    shallow = tmp_path / "deepish.jsonl"
    shallow.write_text('{"text": ' + "[" * 200 + "]" * 200 + ', "label": 1}\n')
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in _refusal(shallow).message
    ok = tmp_path / "nested_ok.jsonl"
    ok.write_text("".join(json.dumps({"text": [["x"]], "label": i % 2}) + "\n" for i in range(20)))
    assert user_task(ok, **COLUMNS).labels == ("0", "1")


@pytest.mark.parametrize("ending", [b"", b"\n"])
def test_a_line_longer_than_the_limit_is_refused(tmp_path, ending):
    path = tmp_path / "long.csv"
    path.write_bytes(b"text,label\n" + b"x" * (2 * MAX_LINE_BYTES) + ending + b"y,1\n")
    assert "MAX_LINE_BYTES" in _refusal(path).message
    jsonl = tmp_path / "long.jsonl"
    jsonl.write_bytes(b'{"text": "' + b"x" * (2 * MAX_LINE_BYTES) + b'", "label": 1}' + ending)
    assert "MAX_LINE_BYTES" in _refusal(jsonl).message


def test_more_rows_than_the_limit_are_refused_while_reading(tmp_path):
    path = tmp_path / "tall.csv"
    path.write_bytes(b"text,label\n" + b"t,1\n" * (MAX_ROWS + 1))
    with pytest.raises(DataError, match=r"line 1000002: more than 1,000,000 rows \(MAX_ROWS\)"):
        preview_user_file(path)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as sparse:  # a hole: no disk used, nothing worth reading
        sparse.truncate(MAX_USER_FILE_BYTES + 1)
    assert "too large: 200.0 MiB, the limit is 200 MiB" in _refusal(path).message


def test_reading_stops_at_the_first_bad_line(tmp_path):
    # Given a bad header followed by 100 MB of NUL bytes (a sparse hole)
    path = tmp_path / "stops.csv"
    with open(path, "wb") as out:
        out.write(b"text,label,text\n")
        out.truncate(100 * 2**20)
    # Then the error is the header's: the reader never looked at the rest
    assert "header repeats" in _refusal(path).message


def test_line_ends_of_every_kind_and_chunk_boundaries_parse_the_same(tmp_path):
    rows = [(f"row {i} " + "w" * (i % 7000), i % 2) for i in range(60)]
    expected = [text for text, _ in rows]
    for name, end in (("unix", "\n"), ("windows", "\r\n"), ("mac", "\r")):
        path = tmp_path / f"{name}.csv"
        path.write_bytes(("text,label" + end + "".join(f"{t},{y}{end}" for t, y in rows)).encode())
        loaded = load_task(user_task(path, **COLUMNS, holdout_fraction=0.5))
        assert sorted(loaded.train["text"][:] + loaded.eval["text"][:]) == sorted(expected), name
    # "\r\n" split across the reader's 64 KiB chunks is one line end: line 3 stays line 3.
    boundary = tmp_path / "boundary.csv"
    header = b"text,label\r\n"
    boundary.write_bytes(header + b"x" * (2**16 - 1 - len(header) - 2) + b",1\r\nlonely\r\n")
    assert boundary.read_bytes()[2**16 - 1 : 2**16 + 1] == b"\r\n"
    assert "line 3 has 1 fields" in _refusal(boundary).message
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(b'text,label\r\n"two\r\nlines",1\r\n"one\rline",0\r\n' + b"x,1\r\n" * 20)
    preview = preview_user_file(quoted)
    assert preview["rows"][:2] == [["two\r\nlines", "1"], ["one\rline", "0"]]
    assert preview["row_count"] == 22


def test_a_jsonl_key_first_seen_late_reports_the_first_line_without_it(tmp_path):
    path = tmp_path / "late.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n' + '{"text": "c", "label": 1}\n' * 10)
    error = _refusal(path)
    assert error.field == "label_column" and "line 1: column 'label' is empty" in error.message


# --- fuzzing ------------------------------------------------------------------------------


def _parse(content: bytes, suffix: str) -> None:
    """Preview and, with columns the preview offers, validate: a table or a DataError."""
    handle, name = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        try:
            preview = preview_user_file(name)
        except DataError:
            return
        assert isinstance(preview["columns"], list) and preview["row_count"] >= 0
        columns = [c for c in preview["columns"] if isinstance(c, str)]
        if len(columns) < 2:
            return
        try:
            spec = user_task(name, text_columns=columns[:1], label_column=columns[-1])
        except DataError:
            return
        assert spec.source == "upload"
        assert spec.problem == "regression" or len(spec.labels) >= 2
    finally:
        os.unlink(name)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@FUZZ
@given(content=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_random_bytes_give_a_table_or_a_data_error(content, suffix):
    _parse(content, suffix)


@FUZZ
@given(
    rows=st.lists(st.lists(CELL, min_size=1, max_size=4), min_size=0, max_size=30),
    delimiter=st.sampled_from([",", "\t"]),
    end=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_random_delimited_text_gives_a_table_or_a_data_error(rows, delimiter, end):
    text = end.join(delimiter.join(row) for row in rows)
    _parse(text.encode("utf-8", "surrogatepass"), ".csv" if delimiter == "," else ".tsv")


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | CELL,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CELL, inner, max_size=3),
    max_leaves=10,
)


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["text", "label", "x"]) | CELL, JSON_VALUE,
                                     max_size=4), max_size=30))
def test_random_json_lines_give_a_table_or_a_data_error(rows):
    _parse("\n".join(json.dumps(row) for row in rows).encode(), ".jsonl")
