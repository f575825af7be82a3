"""WSGI entry point: the pages, the API and downloads, for gunicorn's synchronous workers behind a
buffering proxy (README, several machines), the fastest way to serve them there. `make run` serves
HTTP through pefs_web/asgi.py instead, since nothing in front of it holds slow clients
(pefs_web/serving.py)."""
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from pefs_web.body_limit import WSGIRequestBodyLimit
from pefs_web.serving import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
application = WSGIRequestBodyLimit(get_wsgi_application(), limit=lambda: settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
freeze_startup_objects()
