"""ASGI entry point: HTTP through Django's ASGI handler, WebSocket through Channels (login required).
Daphne serves it (the test suite's live server; a deployment that wants Daphne); `make run` serves
pefs_web/web.py, which takes its WebSocket side from here and runs HTTP on threads instead."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from django.conf import settings  # noqa: E402

from experiments.routing import websocket_urlpatterns  # noqa: E402
from pefs_web.body_limit import RequestBodyLimit  # noqa: E402
from pefs_web.serving import freeze_startup_objects  # noqa: E402

# Logged in by the session cookie, from the allowed hosts only; pefs_web/web.py serves it too.
websocket_application = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))

application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app, limit=lambda: settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
        "websocket": websocket_application,
    }
)
freeze_startup_objects()
