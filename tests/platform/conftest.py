"""A whole `python -m pefs_web.launch run` (what `make run` starts) on embedded defaults, shared by
the tests of this folder: starting it migrates a fresh SQLite database, which takes a while. The
last test of test_supervision.py stops it with Ctrl-C, so that module runs last (pytest takes files
in name order)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from pefs_web.supervisor import stop_process_tree

BASE_DIR = Path(__file__).resolve().parents[2]


@dataclass
class Launched:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def child(self, *words: str) -> psutil.Process | None:
        """The launcher's direct child whose command line holds every word (as a substring)."""
        for child in psutil.Process(self.proc.pid).children():
            try:
                line = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            if all(word in line for word in words):
                return child
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def launched(tmp_path_factory) -> Launched:
    folder = tmp_path_factory.mktemp("launch")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({"PEFS_DATA_DIR": str(folder / "var"), "PEFS_PORT": str(port),
                "PYTHONUNBUFFERED": "1"})
    log_path = folder / "launch.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pefs_web.launch", "run"], cwd=BASE_DIR, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    launched = Launched(proc=proc, port=port, data_dir=folder / "var", log_path=log_path)
    try:
        deadline = time.monotonic() + 300
        while "PEFS is running at" not in launched.log():
            assert proc.poll() is None, launched.log()[-4000:]
            assert time.monotonic() < deadline, launched.log()[-4000:]
            time.sleep(0.5)
        yield launched
    finally:
        if proc.poll() is None:
            stop_process_tree(proc, grace=30)
