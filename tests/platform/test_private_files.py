"""Files PEFS writes are owner-only from the start, and the admin password stays out of `ps`."""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from pefs_web.launch import admin_credentials, login_hint
from pefs_web.private_files import create_private_file, private_directory

BASE_DIR = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def shared_bits(folder: Path) -> dict[str, str]:
    """Every path under `folder` (itself included) that its group or others may read or enter."""
    return {str(p): oct(mode(p)) for p in [folder, *folder.rglob("*")] if mode(p) & 0o077}


@pytest.fixture
def open_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_private_file_is_created_0600_once_and_never_overwritten(tmp_path, open_umask):
    path = tmp_path / "secret"
    assert create_private_file(path, "first") is True
    assert mode(path) == 0o600
    assert create_private_file(path, "second") is False
    assert path.read_text() == "first"


def test_a_private_directory_is_0700_and_an_existing_open_one_is_narrowed(tmp_path, open_umask):
    new = private_directory(tmp_path / "a" / "b")
    assert mode(new) == 0o700
    existing = tmp_path / "old"
    existing.mkdir(mode=0o755)
    assert mode(private_directory(existing)) == 0o700


def test_the_admin_password_is_shown_when_created_and_afterwards_only_where_it_is_kept(tmp_path, open_umask):
    username, password, created = admin_credentials(tmp_path)
    assert created and mode(tmp_path / "admin-credentials.txt") == 0o600
    assert password in login_hint(username, password, created=True, folder=tmp_path)
    again = admin_credentials(tmp_path)
    assert again == (username, password, False)
    hint = login_hint(username, password, created=False, folder=tmp_path)
    assert password not in hint and str(tmp_path / "admin-credentials.txt") in hint


@pytest.mark.slow
def test_settings_create_the_data_folder_secret_key_and_database_owner_only(tmp_path, open_umask):
    # Given a process started without the launcher (its umask lets everyone read)
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update({"PEFS_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "pefs_web.settings"})
    # When it loads the settings and writes to the SQLite database (WAL mode)
    code = ("import django, json, os, stat; django.setup(); from django.conf import settings; "
            "from django.db import connection; connection.cursor().execute('CREATE TABLE t (x int)'); "
            "print(json.dumps({p.name: stat.S_IMODE(p.stat().st_mode) for p in settings.DATA_DIR.iterdir()}))")
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=BASE_DIR, check=True, capture_output=True,
                         text=True)
    # Then the folder, the secret key, the database and its WAL (seen while open) are the owner's alone
    modes = json.loads(run.stdout.strip().splitlines()[-1])
    assert {"secret_key", "pefs.sqlite3", "pefs.sqlite3-wal", "pefs.sqlite3-shm"} <= set(modes), modes
    assert {name: oct(m) for name, m in modes.items() if m & 0o077} == {}
    assert mode(data) == 0o700 and mode(data / "secret_key") == 0o600
    assert shared_bits(data) == {}


@pytest.mark.django_db
class TestAdminCommand:
    def test_reads_the_password_from_the_environment(self, monkeypatch):
        monkeypatch.setenv("PEFS_ADMIN_PASSWORD", "from-the-environment")
        call_command("pefs_admin", "--username=root", stdout=io.StringIO())
        assert get_user_model().objects.get(username="root").check_password("from-the-environment")

    def test_reads_the_password_from_a_file_or_stdin(self, tmp_path, monkeypatch):
        (tmp_path / "pw").write_text("from-a-file-123\n")
        call_command("pefs_admin", "--username=root", f"--password-file={tmp_path / 'pw'}", stdout=io.StringIO())
        assert get_user_model().objects.get(username="root").check_password("from-a-file-123")
        monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin-4567\n"))
        call_command("pefs_admin", "--username=root", "--password-file=-", stdout=io.StringIO())
        assert get_user_model().objects.get(username="root").check_password("from-stdin-4567")

    def test_takes_no_password_on_the_command_line(self, monkeypatch):
        monkeypatch.delenv("PEFS_ADMIN_PASSWORD", raising=False)
        with pytest.raises(CommandError, match="PEFS_ADMIN_PASSWORD"):
            call_command("pefs_admin", "--username=root", stdout=io.StringIO())
        with pytest.raises((CommandError, TypeError)):
            call_command("pefs_admin", "--username=root", "--password=visible-in-ps", stdout=io.StringIO())
