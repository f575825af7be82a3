"""A running `make run` keeps its secrets: owner-only files, no password in any command line."""
from __future__ import annotations

import pytest

from tests.platform.test_private_files import mode, shared_bits

pytestmark = [pytest.mark.system, pytest.mark.slow]


def test_everything_under_the_data_folder_is_the_owners_alone(launched):
    names = {p.name for p in launched.data_dir.iterdir()}
    assert {"pefs.sqlite3", "secret_key", "admin-credentials.txt", "redis"} <= names, names
    assert mode(launched.data_dir) == 0o700
    assert shared_bits(launched.data_dir) == {}


def test_the_admin_password_is_in_no_command_line_and_printed_once(launched):
    password = (launched.data_dir / "admin-credentials.txt").read_text().split()[1]
    for process in launched.tree():
        assert password not in " ".join(process.cmdline()), process.cmdline()
    assert launched.log().count(password) == 1
