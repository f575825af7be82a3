"""The files PEFS keeps, through Django's storage API (settings.STORAGES, pefs_web.file_storage).

Nothing here knows where a storage keeps its files: a folder of PEFS_DATA_DIR on one machine, an
S3-compatible bucket on many. The artifacts storage ("default") holds each trial's saved weights
and a search's result files, the uploads storage ("uploads") the uploaded task files. A worker
trains from local files: :func:`upload_local_path` gives the storage's own file where the storage
is a folder here, and otherwise a copy in the worker's cache (tasks.file_cache, keyed by the
content hash recorded in the upload's name), read from the bucket once per worker.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages

from tasks.file_cache import cached_copy

ARTIFACTS, UPLOADS = "default", "uploads"
# An upload's name ends in the content's sha256 (its first 32 hex digits, 128 bits: names show in
# error messages, which are kept short): <owner>/<token>-<sha256 prefix>.<suffix>.
CONTENT_KEY_HEX = 32
_HASHED_NAME = re.compile(rf"-([0-9a-f]{{{CONTENT_KEY_HEX}}})(\.[0-9A-Za-z]{{1,16}})$")


def artifact_storage() -> Storage:
    return storages[ARTIFACTS]


def upload_storage() -> Storage:
    return storages[UPLOADS]


@dataclass(frozen=True)
class StoredFile:
    """A file in a storage, for a download: ``FileResponse(stored.open("rb"), ...)`` streams it."""

    storage: Storage
    name: str

    def open(self, mode: str = "rb") -> File:
        return self.storage.open(self.name, mode)


def file_store(*, storage: Storage, name: str, content: bytes | str | IO[bytes]) -> str:
    """Write ``content`` to ``name``, replacing what was there; returns the name.

    Every storage PEFS configures overwrites in place, but one that renames on a clash (Django's
    default) must not leave a second copy that no row refers to: the old file goes first."""
    if isinstance(content, str):
        content = content.encode()
    file = ContentFile(content) if isinstance(content, bytes) else File(content)
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, file)
    if saved != name:
        storage.delete(saved)
        raise RuntimeError(f"the storage renamed {name} to {saved}; configure it to overwrite")
    return saved


def directory_store(*, storage: Storage, prefix: str, directory: Path) -> list[str]:
    """Every file under a local ``directory`` written to ``prefix/<its relative path>``."""
    names = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        with path.open("rb") as content:
            names.append(file_store(storage=storage, name=f"{prefix}/{path.relative_to(directory).as_posix()}",
                                    content=content))
    return names


def storage_walk(storage: Storage, prefix: str) -> Iterator[str]:
    """The names of every file under ``prefix`` (nothing when it does not exist), depth first."""
    try:
        folders, files = storage.listdir(prefix)
    except FileNotFoundError:
        return
    for name in sorted(files):
        yield f"{prefix}/{name}"
    for folder in sorted(folders):
        yield from storage_walk(storage, f"{prefix}/{folder}")


def storage_delete_tree(storage: Storage, prefix: str) -> None:
    for name in list(storage_walk(storage, prefix)):
        storage.delete(name)


def upload_name(*, owner_id: int, token: str, digest: str, suffix: str) -> str:
    """The name an upload is stored under: the owner, a random token (two uploads of one file stay
    two files) and the content's sha256 (``digest``, hex), the key of workers' cached copies."""
    return f"{owner_id}/{token}-{digest[:CONTENT_KEY_HEX]}{suffix}"


def upload_content_key(name: str) -> str:
    """The cache key of a stored upload: the sha256 prefix in its name, or (an upload stored before names
    carried it) a hash of the name, which never changes as an upload is never rewritten."""
    match = _HASHED_NAME.search(name)
    if match:
        return match.group(1)
    return "name-" + hashlib.sha256(name.encode()).hexdigest()


def upload_exists(name: str) -> bool:
    return upload_storage().exists(name)


def upload_local_path(name: str) -> Path:
    """A local file with the content of the stored upload ``name``: the storage's own file when the
    storage is a folder on this machine, otherwise a copy in PEFS_CACHE_DIR/uploads."""
    storage = upload_storage()
    if isinstance(storage, FileSystemStorage):  # a folder on this machine: its own file
        return Path(storage.path(name))
    suffix = PurePosixPath(name).suffix.lower()
    return cached_copy(key=upload_content_key(name), suffix=suffix, cache_dir=Path(settings.PEFS_CACHE_DIR) / "uploads",
                       open_source=lambda: storage.open(name, "rb"))
