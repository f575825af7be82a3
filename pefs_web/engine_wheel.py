"""The PEFS engine as an installable wheel: distribution ``pefs-engine``, import package ``pefs_engine``.

In this repository the engine is ``tasks.peft``, a name that would clash in a user's
site-packages (``tasks`` is a common top-level name). The wheel ships it as ``pefs_engine.peft``:
the build stages a copy of ``tasks/peft`` with every ``tasks.peft`` reference (imports and the
lazy-export table alike) rewritten, refuses to build if the copy still refers to any other
``tasks`` module (the engine must stand alone: no Django, no trainer, no data loading), and builds
``engine/pyproject.toml`` with pip and setuptools, offline (``--no-build-isolation --no-index``).
The version is the repository's ``VERSION``.

Built wheels are cached by the content of their sources: the web builds one once per version and
engine change and keeps it in its artifacts storage under :func:`stored_wheel_name`
(experiments.api.downloads serves it from there); :func:`engine_wheel` caches in a local folder::

    >>> engine_wheel(Path("var/engine"))                                    # doctest: +SKIP
    PosixPath('var/engine/3f0c.../pefs_engine-1.0.0-py3-none-any.whl')

From a shell: ``.venv/bin/python -m pefs_web.engine_wheel --out <folder>``.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PROJECT_DIR = BASE_DIR / "engine"
ENGINE_SOURCE = BASE_DIR / "tasks" / "peft"
VERSION_FILE = BASE_DIR / "VERSION"
IMPORT_PACKAGE = "pefs_engine"
_RENAMED = re.compile(r"\btasks\.peft\b")
_OTHER_TASKS_MODULE = re.compile(r"\btasks\.[A-Za-z_]\w*|\bfrom tasks import\b|\bimport tasks\b")


class EngineBuildError(RuntimeError):
    """The engine cannot be packaged (it imports the rest of PEFS, or the build itself failed)."""


def pefs_version() -> str:
    """PEFS's version, from the one place that holds it (the repository's VERSION file)."""
    return VERSION_FILE.read_text().strip()


def wheel_name(version: str | None = None) -> str:
    return f"{IMPORT_PACKAGE}-{version or pefs_version()}-py3-none-any.whl"


def _sources() -> list[Path]:
    return sorted(p for p in ENGINE_SOURCE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def source_digest() -> str:
    """A hash of everything that goes into the wheel: a change anywhere means a new build."""
    digest = hashlib.sha256(pefs_version().encode())
    for path in [*_sources(), PROJECT_DIR / "pyproject.toml", PROJECT_DIR / "README.md", __file__]:
        digest.update(str(Path(path).relative_to(BASE_DIR)).encode() + b"\0" + Path(path).read_bytes())
    return digest.hexdigest()


def _init_text(version: str) -> str:
    return (f'"""PEFS engine {version}: ``pefs_engine.peft`` is PEFS\'s ``tasks.peft``, renamed so it\n'
            f'cannot clash with another ``tasks`` package. Start with pefs_engine.peft.persistence.load_result."""\n\n'
            f'__version__ = "{version}"\n')


def stage(directory: Path) -> Path:
    """Write the buildable project (pyproject, README, src/pefs_engine) into ``directory``."""
    package = directory / "src" / IMPORT_PACKAGE
    (package / "peft").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "pyproject.toml", directory / "pyproject.toml")
    shutil.copy(PROJECT_DIR / "README.md", directory / "README.md")
    (package / "__init__.py").write_text(_init_text(pefs_version()))
    for source in _sources():
        if source.suffix != ".py":
            continue
        text = _RENAMED.sub(f"{IMPORT_PACKAGE}.peft", source.read_text())
        left = sorted(set(_OTHER_TASKS_MODULE.findall(text)))
        relative = Path("tasks/peft") / source.relative_to(ENGINE_SOURCE)
        if left:
            raise EngineBuildError(f"{relative} refers to {', '.join(left)}: the engine wheel ships "
                                   "tasks.peft alone, so it must not import the rest of PEFS")
        target = package / "peft" / source.relative_to(ENGINE_SOURCE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return directory


def build(out: Path) -> Path:
    """Build the wheel into ``out`` (created if needed); returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pefs-engine-") as tmp:
        project = stage(Path(tmp) / "project")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "--wheel-dir", str(out), str(project)],
            capture_output=True, text=True, cwd=tmp, timeout=300,
        )
    wheel = out / wheel_name()
    if result.returncode != 0 or not wheel.is_file():
        raise EngineBuildError(f"pip wheel failed (exit {result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return wheel


def stored_wheel_name() -> str:
    """The wheel's name in the web's artifacts storage (experiments.api.downloads): one per source digest."""
    return f"engine/{source_digest()[:16]}/{wheel_name()}"


def engine_wheel(cache: Path) -> Path:
    """The wheel of the current sources, built into ``cache/<digest>/`` the first time it is asked for.

    A concurrent first build is harmless: each builds in its own folder and the first rename wins.
    """
    folder = cache / source_digest()[:16]
    wheel = folder / wheel_name()
    if wheel.is_file():
        return wheel
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="building-", dir=cache) as tmp:
        build(Path(tmp) / "wheel")
        try:
            (Path(tmp) / "wheel").rename(folder)
        except OSError:
            if not wheel.is_file():  # not a concurrent build that won: a real failure
                raise
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the pefs-engine wheel from tasks/peft.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the wheel into")
    print(build(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
