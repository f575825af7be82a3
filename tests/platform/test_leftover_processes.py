"""The suite leaves no process behind: a child still running when pytest ends is reported, killed,
and fails the run."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

BASE_DIR = Path(__file__).resolve().parents[2]


def test_a_process_a_test_leaves_running_fails_the_run_and_is_killed(tmp_path):
    # Given a test that starts a child and forgets it
    (tmp_path / "test_leak.py").write_text(textwrap.dedent("""
        import subprocess

        def test_forgets_its_child():
            proc = subprocess.Popen(["sleep", "300"])
            open("child.pid", "w").write(str(proc.pid))
    """))
    # When it runs under the suite's conftest (loaded as a plugin: the file is outside tests/)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_leak.py")],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(BASE_DIR)}, capture_output=True, text=True,
                         timeout=300)
    # Then the run fails, names the process, and the process is gone
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Processes left running by the test suite" in run.stdout and "sleep 300" in run.stdout
    pid = int((tmp_path / "child.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
