"""Supervisor.stop stops every child at once, sharing one grace period, and the broker (the first
child started) last: one after another, children that each use the whole grace added up to more than
a minute on a loaded machine (.ci/run: `make run` did not stop within 60 s of Ctrl-C)."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from pefs_web.supervisor import Supervisor

# Each child writes, when it gets SIGTERM, which of the other children are still alive, then exits;
# "stubborn" ignores SIGTERM and waits for the SIGKILL at the end of the grace period.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    name, folder = sys.argv[1], sys.argv[2]
    with open(os.path.join(folder, name + ".pid"), "w") as f:
        f.write(str(os.getpid()))
    def alive(other):
        try:
            os.kill(int(open(os.path.join(folder, other + ".pid")).read()), 0)
            return True
        except (OSError, ValueError):
            return False
    def on_term(*_):
        others = [n for n in ("broker", "polite", "stubborn") if n != name and alive(n)]
        with open(os.path.join(folder, name + ".term"), "w") as f:
            f.write(",".join(others))
        sys.exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if name == "stubborn" else on_term)
    while True:
        time.sleep(0.05)
""")


def test_children_stop_together_and_the_broker_last(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    supervisor = Supervisor(env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, log=lambda line: None, grace=2.0)
    for name in ("broker", "polite", "stubborn"):  # started in this order, as the launcher starts Redis first
        supervisor.start(name, [sys.executable, str(script), name, str(tmp_path)])
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"{name}.pid").exists() for name in ("broker", "polite", "stubborn")):
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.05)
    supervisor.stop()
    # "polite" got SIGTERM while "stubborn" (started after it) was still alive: both were signalled
    # together; one after another in reverse start order, stubborn would have been killed first
    assert (tmp_path / "polite.term").read_text().split(",") == ["broker", "stubborn"]
    assert not (tmp_path / "stubborn.term").exists()  # it ignored SIGTERM and was killed
    # The broker went last, once nothing that uses it was left
    assert (tmp_path / "broker.term").read_text() == ""
    assert all(child.proc.poll() is not None for child in supervisor.children.values())


def test_the_launcher_takes_ctrl_c_even_when_started_with_sigint_ignored() -> None:
    # A background job of a non-interactive shell starts with SIGINT ignored, and Python keeps it so:
    # `make run` started that way ignored Ctrl-C (and the tests' SIGINT) until this handler was explicit.
    import signal
    import subprocess

    code = ("import os, signal, time\n"
            "from pefs_web.launch import install_signal_handlers\n"
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
            "install_signal_handlers()\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
            "time.sleep(30)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2],
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr[-2000:]
