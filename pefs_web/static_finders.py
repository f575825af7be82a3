"""Static files that ship inside PyPI packages, served by Django like PEFS's own (no CDN: PEFS works
offline). One file per entry, not the package's whole data folder: plotly's holds 9.6 MB of which
the browser needs only plotly.min.js."""
from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


# static path -> the file in its package
PACKAGE_FILES = {"vendor/plotly.min.js": _plotly_js}


class PackageFileFinder(BaseFinder):
    """Finds each PACKAGE_FILES entry (for the finders, collectstatic and WhiteNoise)."""

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        source = PACKAGE_FILES.get(path)
        found = str(source()) if source is not None and source().is_file() else None
        if find_all:
            return [found] if found else []
        return found or []

    def list(self, ignore_patterns):
        for path, source in PACKAGE_FILES.items():
            file = source()
            folder, _, _ = path.rpartition("/")
            storage = FileSystemStorage(location=str(file.parent))
            storage.prefix = folder  # collectstatic writes it under vendor/
            yield file.name, storage
