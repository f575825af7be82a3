"""pefs_web.file_storage: the storages PEFS_STORAGE selects, and the embedded default's folders."""
from __future__ import annotations

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile

from pefs_web.file_storage import SettingRootStorage, storages_from_env


def test_the_embedded_default_keeps_artifacts_and_uploads_in_their_folders(settings, tmp_path):
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    storage = SettingRootStorage(root_setting="UPLOAD_ROOT", allow_overwrite=True)
    storage.save("1/a.csv", ContentFile(b"one"))
    storage.save("1/a.csv", ContentFile(b"two"))  # overwritten in place, not renamed
    assert (tmp_path / "uploads" / "1" / "a.csv").read_bytes() == b"two"
    settings.UPLOAD_ROOT = tmp_path / "elsewhere"  # the folder follows the setting
    assert storage.path("1/a.csv") == str(tmp_path / "elsewhere" / "1" / "a.csv")


def test_s3_puts_both_storages_in_one_bucket_under_their_prefixes(monkeypatch):
    for name, value in {"PEFS_STORAGE": "s3", "PEFS_S3_BUCKET": "pefs", "PEFS_S3_ENDPOINT_URL": "http://s3.local:9000",
                        "PEFS_S3_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    storages = storages_from_env(environ.Env())
    for alias, prefix in (("default", "artifacts"), ("uploads", "uploads")):
        options = storages[alias]["OPTIONS"]
        assert storages[alias]["BACKEND"] == "storages.backends.s3.S3Storage"
        assert (options["bucket_name"], options["location"], options["endpoint_url"], options["region_name"]) == (
            "pefs", prefix, "http://s3.local:9000", "eu-west-1")
    assert storages["staticfiles"]["BACKEND"].endswith("StaticFilesStorage")


@pytest.mark.parametrize("variables, named", [({"PEFS_STORAGE": "ftp"}, "PEFS_STORAGE"),
                                              ({"PEFS_STORAGE": "s3"}, "PEFS_S3_BUCKET"),
                                              ({"PEFS_STORAGE": "s3", "PEFS_S3_BUCKET": "b",
                                                "PEFS_S3_ADDRESSING_STYLE": "dns"}, "PEFS_S3_ADDRESSING_STYLE")])
def test_a_bad_storage_setting_names_the_variable(monkeypatch, variables, named):
    for name in ("PEFS_STORAGE", "PEFS_S3_BUCKET", "PEFS_S3_ADDRESSING_STYLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=named):
        storages_from_env(environ.Env())
