"""Where PEFS keeps its files: settings.STORAGES, chosen by environment variables.

Two storages hold everything PEFS keeps (experiments.files uses them):

- ``default``: a search's artifacts (design JSON, weights, PEFT exports, reports) and each trial's
  saved weights under ``searches/<search>/...``, and the engine wheel under ``engine/<digest>/``;
- ``uploads``: uploaded task files under ``<owner>/<token>-<sha256 prefix>.<suffix>``.

Embedded (PEFS_STORAGE=filesystem, the default) they are folders of PEFS_DATA_DIR (``artifacts``
and ``uploads``: MEDIA_ROOT and UPLOAD_ROOT). For several machines (PEFS_STORAGE=s3) both live in
one S3-compatible bucket under the prefixes ``artifacts/`` and ``uploads/``::

    PEFS_STORAGE=s3 PEFS_S3_BUCKET=pefs PEFS_S3_ENDPOINT_URL=http://minio:9000 \\
    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... PEFS_S3_REGION=us-east-1 daphne pefs_web.asgi:application
"""
from __future__ import annotations

import os
from typing import Any

import environ
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage

STORAGE_KINDS = ("filesystem", "s3")


class SettingRootStorage(FileSystemStorage):
    """A FileSystemStorage whose folder is a setting read on every use (``root_setting``), as
    Django's own FileSystemStorage follows MEDIA_ROOT: tests that point UPLOAD_ROOT elsewhere move
    the uploads storage with it."""

    def __init__(self, *, root_setting: str = "MEDIA_ROOT", **options: Any) -> None:
        self.root_setting = root_setting
        super().__init__(**options)

    @property
    def base_location(self) -> str:
        return str(getattr(settings, self.root_setting))

    @property
    def location(self) -> str:
        return os.path.abspath(self.base_location)


def storages_from_env(env: environ.Env) -> dict[str, dict[str, Any]]:
    """settings.STORAGES for PEFS_STORAGE (filesystem or s3) and, for s3, the PEFS_S3_* variables."""
    kind = env.str("PEFS_STORAGE", default="filesystem")
    if kind not in STORAGE_KINDS:
        raise ImproperlyConfigured(f"PEFS_STORAGE must be one of {', '.join(STORAGE_KINDS)}, got {kind!r}")
    addressing = env.str("PEFS_S3_ADDRESSING_STYLE", default="")
    if addressing not in ("", "auto", "path", "virtual"):
        raise ImproperlyConfigured(f"PEFS_S3_ADDRESSING_STYLE must be auto, path or virtual, got {addressing!r}")
    # collectstatic also writes a .gz beside each text file; WhiteNoise sends it to browsers that take gzip.
    static = {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"}
    if kind == "filesystem":
        return {
            "default": {"BACKEND": "pefs_web.file_storage.SettingRootStorage",
                        "OPTIONS": {"root_setting": "MEDIA_ROOT", "allow_overwrite": True}},
            "uploads": {"BACKEND": "pefs_web.file_storage.SettingRootStorage",
                        "OPTIONS": {"root_setting": "UPLOAD_ROOT", "allow_overwrite": True}},
            "staticfiles": static,
        }
    s3 = {
        "bucket_name": env.str("PEFS_S3_BUCKET"),
        "endpoint_url": env.str("PEFS_S3_ENDPOINT_URL", default="") or None,
        "region_name": env.str("PEFS_S3_REGION", default="") or None,
        # Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or an instance role), read by boto3.
        "default_acl": None,  # the bucket's own policy: objects are private unless the bucket says otherwise
        "file_overwrite": True,  # PEFS names every file itself; a rewrite replaces it
        "signature_version": "s3v4",
        # "path" for a server reached by a host name that has no per-bucket names (MinIO, Ceph).
        "addressing_style": addressing or None,
    }
    return {
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {**s3, "location": "artifacts"}},
        "uploads": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {**s3, "location": "uploads"}},
        "staticfiles": static,
    }
