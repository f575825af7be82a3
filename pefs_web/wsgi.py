"""WSGI entry point: the pages, the API and downloads, served by gunicorn's processes (`make run`,
pefs_web/serving.py). WebSockets go to Daphne (pefs_web/asgi.py), which can serve HTTP too."""
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from pefs_web.body_limit import WSGIRequestBodyLimit
from pefs_web.serving import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
application = WSGIRequestBodyLimit(get_wsgi_application(), limit=lambda: settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
freeze_startup_objects()
