"""`make run` on embedded defaults (SQLite, embedded Redis) comes up, answers HTTP, lets the printed
admin log in, and Ctrl-C stops every process it started (tests/platform has the finer checks)."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from pefs_web.supervisor import is_alive

pytestmark = [pytest.mark.system, pytest.mark.slow]
BASE_DIR = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_run_serves_the_app_and_stops_on_ctrl_c(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({"PEFS_DATA_DIR": str(tmp_path / "var"), "PEFS_PORT": str(port), "PEFS_WEB_PROCESSES": "2"})
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["make", "run"], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            text = log_path.read_text(errors="replace")
            if "PEFS is running at" in text:
                break
            assert proc.poll() is None, text[-4000:]
            assert time.monotonic() < deadline, text[-4000:]
            time.sleep(0.5)
        username, password = re.search(r"log in as (\S+) / (\S+)\)", text).groups()
        # Anonymous visitors are sent to the login page; the login page itself answers 200
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener = urllib.request.build_opener(_NoRedirect)
            opener.open(f"http://127.0.0.1:{port}/", timeout=10)
        assert redirect.value.code == 302 and "/login/" in redirect.value.headers["Location"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=10) as page:
            assert page.status == 200 and b"password" in page.read().lower()
        assert username == "admin" and len(password) >= 12, text[-2000:]
        assert (tmp_path / "var" / "admin-credentials.txt").exists()
        # Static files are collected and sent precompressed to a browser that takes gzip (issue 14)
        plotly = urllib.request.Request(f"http://127.0.0.1:{port}/static/vendor/plotly.min.js",
                                        headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(plotly, timeout=10) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert 0 < len(answer.read()) < 2_000_000  # 4.8 MB raw
        # The launcher's children run in sessions of their own: the tree, not the group, holds them all
        tree = psutil.Process(proc.pid).children(recursive=True)
        # Two web processes (PEFS_WEB_PROCESSES) share the port, each on its own socket
        daphnes = [p for p in tree if "daphne" in " ".join(p.cmdline()) and "--fd" in p.cmdline()]
        assert len(daphnes) == 2, [p.cmdline() for p in tree]
    finally:
        with contextlib.suppress(ProcessLookupError):  # make may already have exited on an error
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's process group
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    # Every child (Redis, worker, Daphne) is gone: no process is left in the group, the port is free
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes outlived Ctrl-C:\n" + log_path.read_text()[-3000:]
        time.sleep(0.5)
    left = [p for p in tree if is_alive(p)]
    assert not left, [p.cmdline() for p in left]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
