"""A worker's local copies of files it reads from a shared store, keyed by content hash.

Trials train from local files, and on many machines an upload lives in a bucket: the first trial
on a worker that needs it copies it into the cache folder, every later one reads the copy. A copy
is written to a temporary name and renamed into place, so processes sharing a cache folder never
see half a file, and one that lost the race to copy simply finds the copy there. No Django here:
the caller says how to open the source (experiments.files does)::

    >>> path = cached_copy(key=digest, suffix=".csv", cache_dir=Path("var/cache/uploads"),
    ...                    open_source=lambda: storage.open(name, "rb"))    # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, ContextManager

CHUNK_BYTES = 1 << 20
# A key of 32 to 64 lowercase hex digits is (a prefix of) the content's sha256, and is checked.
_SHA256 = re.compile(r"[0-9a-f]{32,64}")


class CacheError(RuntimeError):
    """The copy read from the store does not have the content hash it was asked for."""


def cached_copy(*, key: str, suffix: str, cache_dir: Path, open_source: Callable[[], ContextManager[BinaryIO]],
                ) -> Path:
    """The local copy of the file whose sha256 (or its first 32+ hex digits) is ``key``, read through
    ``open_source`` the first time. Any other key (derived from a name, for a file stored before
    content hashes were recorded) is used as is, unchecked."""
    if not re.fullmatch(r"[0-9A-Za-z_-]{8,128}", key) or not re.fullmatch(r"(\.[0-9A-Za-z]{1,16})?", suffix):
        raise ValueError(f"cache key {key!r} / suffix {suffix!r}: letters, digits, '-' and '_' only")
    target = cache_dir / key[:2] / f"{key}{suffix}"
    if target.is_file():
        return target
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    digest = hashlib.sha256()
    try:
        with os.fdopen(descriptor, "wb") as out, open_source() as source:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if _SHA256.fullmatch(key) and not digest.hexdigest().startswith(key):
            raise CacheError(f"the stored file read as sha256 {digest.hexdigest()}, not {key}")
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return target
