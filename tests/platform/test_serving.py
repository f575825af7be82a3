"""How the web is served (pefs_web/serving.py): gunicorn's asyncio workers for HTTP and WebSockets, static
files collected with gzip copies. `make run` itself is exercised by tests/test_make_run.py."""
from __future__ import annotations

import gzip
import socket

import pytest
from django.core.management import call_command

from pefs_web.serving import WEB_PROCESSES, ensure_free, gunicorn_argv, web_processes


def test_web_processes_defaults_to_the_cores_plus_one_and_refuses_bad_values():
    assert 2 <= web_processes({}) <= 8
    assert web_processes({"PEFS_WEB_PROCESSES": "3"}) == 3
    for bad in ("0", "17", "-1", "two", "1e3", "99999999999999999999", "²"):
        with pytest.raises(ValueError, match=rf"PEFS_WEB_PROCESSES must be an integer from 1 to {WEB_PROCESSES[1]}"):
            web_processes({"PEFS_WEB_PROCESSES": bad})


def test_a_port_in_use_stops_the_launch_naming_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=rf"127.0.0.1:{port} is in use.*PEFS_PORT"):
            ensure_free("127.0.0.1", port, "PEFS_PORT")
    ensure_free("127.0.0.1", port, "PEFS_PORT")  # closed: free again


def test_the_command_lines():
    http = gunicorn_argv("127.0.0.1", 8000, 3, "python")
    assert http[:3] == ["python", "-m", "gunicorn"] and http[-1] == "pefs_web.web:application"
    assert http[http.index("--workers") + 1] == "3" and http[http.index("--bind") + 1] == "127.0.0.1:8000"
    # An event loop per process holds slow connections; each closes after its answer (module docstring)
    assert http[http.index("--worker-class") + 1] == "asgi" and http[http.index("--keep-alive") + 1] == "0"
    assert "--no-control-socket" in http  # not one shared path in the user's home for every server
    behind_a_proxy = gunicorn_argv("127.0.0.1", 8000, 3, "python", sync=True)
    assert behind_a_proxy[behind_a_proxy.index("--worker-class") + 1] == "sync"
    assert behind_a_proxy[-1] == "pefs_web.wsgi:application" and "--keep-alive" not in behind_a_proxy
    assert gunicorn_argv("::1", 8000, 1, "python")[gunicorn_argv("::1", 8000, 1).index("--bind") + 1] == "[::1]:8000"


def test_collectstatic_writes_plotly_and_gzip_copies(tmp_path, settings):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", "-v", "0")
    plotly = tmp_path / "static" / "vendor" / "plotly.min.js"
    assert plotly.is_file() and plotly.stat().st_size > 1_000_000
    packed = plotly.with_name("plotly.min.js.gz")
    assert packed.stat().st_size < plotly.stat().st_size / 2
    assert gzip.decompress(packed.read_bytes()) == plotly.read_bytes()
    assert (tmp_path / "static" / "pefs" / "js" / "search.js.gz").is_file()


def test_pages_tell_the_browser_the_websocket_port_only_when_it_has_its_own(settings):
    from types import SimpleNamespace

    from experiments.pages import live_config

    search = SimpleNamespace(pk=7)
    settings.PEFS_WEBSOCKET_PORT = None
    assert live_config(search)["wsPort"] is None  # the page's own host and port
    settings.PEFS_WEBSOCKET_PORT = 8001
    assert live_config(search)["wsPort"] == 8001 and live_config(search)["ws"] == "/ws/searches/7/"


def test_loading_the_wsgi_application_freezes_what_it_created(tmp_path):
    # A full collection then skips the application's own objects (the chart endpoint's p95 tail)
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = "import gc; assert gc.get_freeze_count() == 0; import pefs_web.wsgi; print(gc.get_freeze_count())"
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "HOME": "/tmp",
                               "DJANGO_SETTINGS_MODULE": "pefs_web.settings",
                               "PEFS_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 10_000
