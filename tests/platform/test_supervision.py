"""`make run` supervises what it starts: a worker that dies is restarted while the web server and
Redis stay up, connections that never finish a request do not hold up the pages, and Ctrl-C leaves
no process of the whole tree behind (beat and pool included)."""
from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request

import pytest

from pefs_web.supervisor import is_alive

pytestmark = [pytest.mark.system, pytest.mark.slow]


def _answers(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/login/", timeout=10) as page:
        return page.status == 200


def test_beat_runs_in_its_own_process_beside_the_workers(launched):
    assert launched.child("celery", " beat ") is not None, launched.log()[-3000:]
    worker = launched.child("celery", " worker ", "gpu,default")
    assert worker is not None and "-B" not in worker.cmdline()


def test_a_killed_worker_is_restarted_while_the_web_server_and_redis_stay_up(launched):
    # Given a running system
    worker = launched.child("celery", " worker ", "gpu,default")
    web, redis = launched.child("gunicorn"), launched.child("redis-server")
    assert worker and web and redis
    # When the trial worker is killed outright
    os.kill(worker.pid, signal.SIGKILL)
    # Then the web server keeps answering while the supervisor restarts the worker
    deadline = time.monotonic() + 60
    while True:
        assert _answers(launched.url)
        restarted = launched.child("celery", " worker ", "gpu,default")
        if restarted is not None and restarted.pid != worker.pid:
            break
        assert time.monotonic() < deadline, launched.log()[-3000:]
        time.sleep(0.5)
    assert f"worker (pid {worker.pid}) exited with code -9" in launched.log()
    assert "restarting in" in launched.log()
    assert launched.child("gunicorn").pid == web.pid
    assert launched.child("redis-server").pid == redis.pid
    assert _answers(launched.url)


def test_connections_that_send_nothing_or_half_a_request_do_not_hold_up_the_pages(launched):
    # gunicorn's synchronous workers gave each connection a process until it was answered: as many
    # silent sockets as workers (a browser's preconnects, or anyone on the network) and every page
    # waited for up to 300 s. Now an event loop per process holds them, and a body sent slowly is
    # read there before a thread sees the request (pefs_web/serving.py, pefs_web/web.py).
    with urllib.request.urlopen(f"{launched.url}/login/", timeout=10) as page:  # the CSRF check reads the body
        cookie = next(c for c in page.headers.get_all("Set-Cookie") if c.startswith("csrftoken=")).split(";")[0].encode()
    half_a_request = [b"", b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # and never the blank line
                      b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded"
                      b"\r\nCookie: " + cookie + b"\r\nContent-Length: 1000\r\n\r\nusername=a"]  # 10 of 1,000 bytes
    held = []
    try:
        for i in range(30):
            sock = socket.create_connection(("127.0.0.1", launched.port), timeout=10)
            sock.sendall(half_a_request[i % 3])
            held.append(sock)
        time.sleep(1)
        for _ in range(5):
            assert _answers(launched.url)  # within urlopen's 10 s, while all 30 are still open
    finally:
        for sock in held:
            sock.close()


def test_ctrl_c_stops_every_process_of_the_tree(launched):
    # Given the whole tree, once the worker's pool is up (the pool is a grandchild of the launcher)
    deadline = time.monotonic() + 60
    while not launched.child("celery", " worker ", "gpu,default").children():
        assert time.monotonic() < deadline, launched.log()[-3000:]
        time.sleep(0.5)
    tree = launched.tree()
    names = [" ".join(p.cmdline()) for p in tree]
    assert any("beat" in n for n in names) and any("gunicorn" in n for n in names), names
    # When Ctrl-C reaches the launcher (the terminal's signal; the children have sessions of their own)
    launched.proc.send_signal(signal.SIGINT)
    assert launched.proc.wait(timeout=60) == 0
    # Then no process of the tree is left, and the port is free
    left = [p for p in tree if is_alive(p)]
    assert not left, [p.cmdline() for p in left]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", launched.port)) != 0
