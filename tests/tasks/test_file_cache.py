"""tasks.file_cache: a worker's local copies of stored files, keyed by content hash."""
from __future__ import annotations

import hashlib
import io

import pytest

from tasks.file_cache import CacheError, cached_copy

CONTENT = b"text,label\nfine,1\nawful,0\n"
DIGEST = hashlib.sha256(CONTENT).hexdigest()


class Store:
    """A stand-in for a bucket: counts how often each file is read."""

    def __init__(self, content: bytes) -> None:
        self.content, self.reads = content, 0

    def open(self) -> io.BytesIO:
        self.reads += 1
        return io.BytesIO(self.content)


def test_a_file_is_read_from_the_store_once_then_from_the_cache(tmp_path):
    store = Store(CONTENT)
    first = cached_copy(key=DIGEST[:32], suffix=".csv", cache_dir=tmp_path, open_source=store.open)
    again = cached_copy(key=DIGEST[:32], suffix=".csv", cache_dir=tmp_path, open_source=store.open)
    assert first == again == tmp_path / DIGEST[:2] / f"{DIGEST[:32]}.csv"
    assert first.read_bytes() == CONTENT and store.reads == 1


def test_a_copy_whose_content_does_not_match_its_key_is_refused_and_not_kept(tmp_path):
    with pytest.raises(CacheError, match="sha256"):
        cached_copy(key=DIGEST, suffix=".csv", cache_dir=tmp_path, open_source=Store(b"something else").open)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_name_derived_key_is_kept_unchecked(tmp_path):
    path = cached_copy(key="name-0123456789abcdef", suffix=".jsonl", cache_dir=tmp_path,
                       open_source=Store(b"{}\n").open)
    assert path.read_bytes() == b"{}\n"


@pytest.mark.parametrize("key, suffix", [("../../etc", ".csv"), ("a" * 40, "/x.csv"), ("short", ".csv")])
def test_keys_and_suffixes_cannot_name_another_folder(tmp_path, key, suffix):
    with pytest.raises(ValueError, match="cache key"):
        cached_copy(key=key, suffix=suffix, cache_dir=tmp_path, open_source=Store(CONTENT).open)
