"""Keep the processes of one PEFS machine running, and stop all of them, leaving nothing behind.

Each child starts in a session (and so a process group) of its own: a Ctrl-C at the terminal
reaches only the launcher, which then stops the children (all at once, the broker last); and a child's whole
group (a Celery worker's pool processes, an embedded beat) can be signalled even after the child
itself died and its own children were re-parented.

    supervisor = Supervisor(env=os.environ.copy(), cwd=BASE_DIR)
    supervisor.start("worker", ["celery", "-A", "pefs_web", "worker"])
    try:
        supervisor.watch()          # restarts a child that dies, with backoff; returns on Ctrl-C
    finally:
        supervisor.stop()
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# A child that ran this long before dying is restarted at once: its failures were not a crash loop.
HEALTHY_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 60.0


_PR_SET_PDEATHSIG = 1
# Loaded before any fork: the child runs only the call, not the dynamic loader.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the launcher dies, even by SIGKILL (Linux only)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: list[str], *, env: dict[str, str], cwd: Path, **popen_kwargs) -> subprocess.Popen:
    """Start a child in its own session, so its whole process group can be stopped as one."""
    return subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True,
                            preexec_fn=_die_with_parent if _libc is not None else None, **popen_kwargs)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user took the id over: not ours
        return False
    return True


def _signal_all(pgid: int, members: list[psutil.Process], signum: int) -> None:
    if _group_alive(pgid):
        os.killpg(pgid, signum)
    for member in members:  # a descendant that left the group (setsid) is still ours
        try:
            member.send_signal(signum)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def is_alive(process: psutil.Process) -> bool:
    """Still running: not exited, not a zombie, and its pid not taken over by a new process."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _all_gone(proc: subprocess.Popen, members: list[psutil.Process]) -> bool:
    proc.poll()  # reaps the child: a zombie would keep its group alive
    return not any(is_alive(member) for member in members) and not _group_alive(proc.pid)


def stop_process_tree(proc: subprocess.Popen, *, grace: float = 15.0) -> bool:
    """Stop a child started by `spawn`, its process group and every descendant.

    SIGTERM first, SIGKILL for whatever is left after `grace` seconds (at once when grace is 0).
    Returns True when nothing of the tree is left.
    """
    return not stop_process_trees([proc], grace=grace)


def stop_process_trees(procs: list[subprocess.Popen], *, grace: float = 15.0) -> list[subprocess.Popen]:
    """`stop_process_tree` for several children at once: every tree gets SIGTERM together and
    they share one grace period, so stopping n children takes at most grace + 5 s, not n times
    that. Returns the children whose tree is not gone."""
    trees = [(proc, _tree(proc.pid)) for proc in procs]
    steps = [(signal.SIGTERM, grace), (signal.SIGKILL, 5.0)] if grace > 0 else [(signal.SIGKILL, 5.0)]
    for signum, wait in steps:
        for proc, members in trees:
            _signal_all(proc.pid, members, signum)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            trees = [(proc, members) for proc, members in trees if not _all_gone(proc, members)]
            if not trees:
                return []
            time.sleep(0.1)
    return [proc for proc, members in trees if not _all_gone(proc, members)]


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    crashes: int = 0  # deaths in a row, each after less than HEALTHY_AFTER_SECONDS
    restart_at: float | None = None
    popen_kwargs: dict = field(default_factory=dict)


class Supervisor:
    """Starts named children, restarts any that dies (backoff 1, 2, 4 ... 60 s), stops them all."""

    def __init__(self, *, env: dict[str, str], cwd: Path, log: Callable[[str], None] | None = None,
                 grace: float = 15.0) -> None:
        self.env, self.cwd, self.grace = env, cwd, grace  # grace: seconds from SIGTERM to SIGKILL in stop()
        self.children: dict[str, Child] = {}
        self.log = log or (lambda line: print(f"[supervisor] {line}", flush=True))

    def start(self, name: str, argv: list[str], **popen_kwargs) -> subprocess.Popen:
        child = self.children.setdefault(name, Child(name=name, argv=argv, popen_kwargs=popen_kwargs))
        kwargs = {"env": self.env, **child.popen_kwargs}  # a child may bring its own environment
        child.proc = spawn(child.argv, cwd=self.cwd, **kwargs)
        child.started_at, child.restart_at = time.monotonic(), None
        return child.proc

    def pid(self, name: str) -> int:
        return self.children[name].proc.pid

    def check(self) -> None:
        """Restart children that died (once their backoff has passed); one pass, no waiting."""
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.start(child.name, child.argv)
                    self.log(f"{child.name} restarted (pid {child.proc.pid})")
                continue
            code = child.proc.poll()
            if code is None:
                continue
            # Its pool processes or embedded beat may outlive it: they go before the new one starts.
            stop_process_tree(child.proc, grace=5.0)
            ran = now - child.started_at
            child.crashes = 1 if ran >= HEALTHY_AFTER_SECONDS else child.crashes + 1
            delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (child.crashes - 1))
            child.restart_at = now + delay
            self.log(f"{child.name} (pid {child.proc.pid}) exited with code {code} after {ran:.0f} s; "
                     f"restarting in {delay:.0f} s")

    def watch(self, *, interval: float = 0.5) -> None:
        """Supervise until interrupted (KeyboardInterrupt, which the launcher raises on SIGTERM too)."""
        while True:
            self.check()
            time.sleep(interval)

    def stop(self) -> None:
        """Stop every child, then anything else this process still has: first all but the first
        started (the broker the others use) at once, sharing one grace period, then the first. One
        after another, six children that each take the whole grace (a worker finishing its task,
        gunicorn draining) took minutes; together they take one grace at most."""
        children = [child for child in self.children.values() if child.proc is not None]
        for wave in (children[1:], children[:1]):
            by_proc = {id(child.proc): child for child in wave}
            for proc in stop_process_trees([child.proc for child in wave], grace=self.grace):
                child = by_proc[id(proc)]
                self.log(f"{child.name} (pid {child.proc.pid}) did not stop")
        for stray in psutil.Process().children(recursive=True):
            try:
                stray.kill()
            except psutil.NoSuchProcess:
                pass
