"""How the web is served (pefs_web/serving.py): several processes on one port, static files
collected with gzip copies. `make run` itself is exercised by tests/test_make_run.py."""
from __future__ import annotations

import gzip
import socket

import pytest
from django.core.management import call_command

from pefs_web.serving import WEB_PROCESSES, daphne_argv, reuseport_sockets, web_processes


def test_web_processes_defaults_to_the_cores_and_refuses_bad_values():
    assert WEB_PROCESSES[0] <= web_processes({}) <= 4
    assert web_processes({"PEFS_WEB_PROCESSES": "3"}) == 3
    for bad in ("0", "17", "-1", "two", "1e3", "99999999999999999999"):
        with pytest.raises(ValueError, match="PEFS_WEB_PROCESSES must be an integer from 1 to 16"):
            web_processes({"PEFS_WEB_PROCESSES": bad})


def test_sockets_share_one_port_and_each_process_gets_its_own():
    sockets = reuseport_sockets("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1 and len({s.fileno() for s in sockets}) == 3
        argv = daphne_argv(sockets[1], "python")
        assert argv[-3:] == ["--fd", str(sockets[1].fileno()), "pefs_web.asgi:application"]
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=2):
            pass  # the kernel queues the connection on one of them
    finally:
        for s in sockets:
            s.close()


@pytest.mark.parametrize("reuseport", [False, True])
def test_a_port_in_use_is_refused_not_shared(reuseport):
    # Another program on the port (a plain server, or another PEFS with its own reuseport sockets)
    # must not silently get half of our connections, nor we half of its.
    if reuseport:
        taken = reuseport_sockets("127.0.0.1", 0, 1)
    else:
        taken = [socket.socket()]
        taken[0].bind(("127.0.0.1", 0))
        taken[0].listen()
    try:
        with pytest.raises(OSError):
            reuseport_sockets("127.0.0.1", taken[0].getsockname()[1], 2)
    finally:
        for s in taken:
            s.close()


def test_collectstatic_writes_plotly_and_gzip_copies(tmp_path, settings):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", "-v", "0")
    plotly = tmp_path / "static" / "vendor" / "plotly.min.js"
    assert plotly.is_file() and plotly.stat().st_size > 1_000_000
    packed = plotly.with_name("plotly.min.js.gz")
    assert packed.stat().st_size < plotly.stat().st_size / 2
    assert gzip.decompress(packed.read_bytes()) == plotly.read_bytes()
    assert (tmp_path / "static" / "pefs" / "js" / "search.js.gz").is_file()
