"""The Celery app. Trial workers: `celery -A pefs_web worker -Q gpu -c 1` (one per GPU); the sweep:
`celery -A pefs_web worker -Q control -c 1` (one, beside `celery -A pefs_web beat`)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")

app = Celery("pefs_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tasks"], related_name="jobs")
