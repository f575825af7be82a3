"""`make run` on embedded defaults (SQLite, embedded Redis) comes up, answers HTTP, lets the printed
admin log in, and Ctrl-C stops every process it started (tests/platform has the finer checks)."""
from __future__ import annotations

import asyncio
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
    env.update({"PEFS_DATA_DIR": str(tmp_path / "var"), "PEFS_PORT": str(port), "PEFS_WEB_PROCESSES": "2",
                "PEFS_WEBSOCKET_PORT": "1"})  # a stale setting from a split deployment must not leak into make run
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
        # HTTP and WebSockets: gunicorn, a master and PEFS_WEB_PROCESSES workers, on the one port
        gunicorns = [p for p in tree if "gunicorn" in " ".join(p.cmdline())]
        assert len(gunicorns) == 3, [p.cmdline() for p in tree]
        assert not [p for p in tree if "daphne" in " ".join(p.cmdline())]
        # The pages name no port of their own for the WebSocket, and a logged-in session opens a
        # search's socket on the pages' port, and gets its live events there
        assert asyncio.run(_websocket_opens(port, username, password))
    finally:
        with contextlib.suppress(ProcessLookupError):  # make may already have exited on an error
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's process group
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    # Every child (Redis, worker, web) is gone: no process is left in the group, the port is free
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


async def _websocket_opens(port: int, username: str, password: str) -> bool:
    """Log in over HTTP, start a search through the API, open its WebSocket on the same port with the
    session cookie alone, cancel the search, and read the status event that reaches the socket
    (published after the commit, through the channel layer): True when it says cancelled."""
    import json

    import httpx2
    import websockets

    base = f"http://127.0.0.1:{port}"
    async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
        login = await client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        await client.post("/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": token},
                          headers={"Referer": f"{base}/login/"})
        csrf = {"X-CSRFToken": client.cookies.get("csrftoken"), "Referer": f"{base}/"}
        backbone = (await client.get("/api/backbones/")).json()
        backbone = (backbone["results"] if isinstance(backbone, dict) else backbone)[0]["id"]
        created = await client.post("/api/searches/", headers=csrf, json={
            "name": "websocket check", "tasks": "sst2", "backbone": str(backbone), "preset": "quick"})
        assert created.status_code == 201, created.text[:500]
        search = created.json()["id"]
        page = (await client.get(f"/searches/{search}/")).text
        config = json.loads(re.search(r'<script id="search-config" type="application/json">(.*?)</script>',
                                      page).group(1))
        assert config["wsPort"] is None and config["ws"] == f"/ws/searches/{search}/"
        url = f"ws://127.0.0.1:{port}{config['ws']}"
        session = client.cookies.get("sessionid")
        async with websockets.connect(url, additional_headers={"Cookie": f"sessionid={session}", "Origin": base}) as ws:
            await asyncio.sleep(0.5)  # joined its group
            assert (await client.post(f"/api/searches/{search}/cancel/", headers=csrf)).status_code in (200, 202)
            async with asyncio.timeout(30):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "search.status" and event["search"]["status"] == "cancelled":
                        return True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
