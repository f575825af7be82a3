"""The PEFS Django project: settings, URLs, ASGI (HTTP + WebSocket) and the Celery app."""
from .celery import app as celery_app

__all__ = ["celery_app"]
