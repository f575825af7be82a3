"""Files PEFS writes are the owner's alone from the moment they exist (database, WAL, uploads,
artifacts, credentials, the secret key): a umask for everything a process creates, and exclusive
owner-only creation for the secrets, so no file is ever world-readable, not even before a chmod.
"""
from __future__ import annotations

import os
from pathlib import Path

OWNER_ONLY_UMASK = 0o077


def restrict_umask() -> None:
    """Add owner-only to this process's umask (children inherit it); stricter bits already set stay."""
    os.umask(os.umask(OWNER_ONLY_UMASK) | OWNER_ONLY_UMASK)


def private_directory(path: Path) -> Path:
    """Create `path` (and parents) as 0700; an existing one is narrowed to 0700 too."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def create_private_file(path: Path, text: str) -> bool:
    """Write `text` to a new file created 0600; False (and nothing written) when it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True
