"""Tower's settings: one module, driven by the environment (see ``.env.example``).

With nothing set, Tower runs on the embedded default: SQLite in WAL mode, media and state under
``var/``, and an embedded Redis on a Unix socket (started by ``manage.py serve``) as the task
broker and Channels layer. Production sets ``DATABASE_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import dj_database_url

from tower.core import embedded
from tower.core.env import (
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("TOWER_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_secret("SECRET_KEY")
    if key:
        if len(key) < 32:
            raise SettingsError("SECRET_KEY must be at least 32 characters long")
        return key
    # Embedded default: generate once and keep it beside the data it protects.
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text(encoding="utf-8").strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key, encoding="utf-8")
    key_file.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # must precede staticfiles so runserver is the ASGI one
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "django_q",
    "tower",
    "projects",
    "characters",
    "generation",
    "quality",
    "training",
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
    "tower.core.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "tower.urls"
ASGI_APPLICATION = "tower.asgi.application"
WSGI_APPLICATION = None

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
                "tower.core.csp.csp_nonce",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, min_value=0))
    except ValueError as exc:
        raise SettingsError(f"DATABASE_URL cannot be parsed: {exc}") from None
    if _db.get("ENGINE") not in {
        "django.db.backends.postgresql",
        "django.db.backends.sqlite3",
    }:
        raise SettingsError("DATABASE_URL must be a postgres:// or sqlite:// URL")
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db["CONN_HEALTH_CHECKS"] = True
else:
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(VAR_DIR / "tower.sqlite3"),
        # Kept open like a DATABASE_URL's: a new connection per request reran its PRAGMAs every time.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60, min_value=0),
    }
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Tests share the database between threads (the engine's async code, live servers); an
    # in-memory shared-cache database locks whole tables there, a file in WAL mode does not.
    # One file per test process, so concurrent runs never share (and corrupt) one.
    _db.setdefault("TEST", {"NAME": str(VAR_DIR / f"test-tower-{os.getpid()}.sqlite3")})
    # Web and workers write concurrently: WAL + IMMEDIATE transactions avoid "database is locked".
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: task broker and Channels layer ---------------------------------------------------
EMBEDDED_REDIS = not env_str("REDIS_URL", "")
REDIS_URL = env_str("REDIS_URL", "") or embedded.redis_url(VAR_DIR)
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
REDIS_PREFIX = env_str("REDIS_PREFIX", "tower")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "tower.core.layers.ChannelLayer",
        "CONFIG": {
            # A socket's consumer waits for messages with BZPOPMIN, 5 s at a time (channels_redis'
            # brpop_timeout), and redis-py 8 gives up reading after 5 s by default: a page with no
            # event for 5 s lost its consumer to a TimeoutError. Reads may take 15 s here; a Redis
            # that hangs longer is still noticed.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}],
            "prefix": f"{REDIS_PREFIX}:ch",
            # Messages a socket's channel holds before more are dropped (channels_redis: 100). One
            # request queues up to 64 jobs, each a job_queued event delivered at once to every page
            # watching the project; two such requests overflowed 100 and later events (a
            # job_complete among them) never reached the page.
            "capacity": 1000,
        },
    }
}

Q_CLUSTER = {
    "name": f"{REDIS_PREFIX}-q",
    # A worker drives one prompt from submit to stored outputs, so pipelining a backend (the next
    # prompt already queued when one ends) takes max_in_flight workers per backend; one more keeps
    # reconcile and cancel tasks from waiting behind long jobs. 3 = one backend at 2 in flight.
    "workers": env_int("TOWER_WORKERS", 3, min_value=1, max_value=64),
    "timeout": env_int("TOWER_TASK_TIMEOUT", 3600, min_value=10),
    # django-q2 requires retry > timeout, or a long task is handed to a second worker.
    "retry": env_int("TOWER_TASK_TIMEOUT", 3600, min_value=10) + 120,
    "max_attempts": 1,
    # A Redis that hangs (rather than refusing) must not stall a worker or the engine forever: the
    # broker's client gives up on a silent socket (the pusher's blocking pop waits 1 s at a time).
    "redis": f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}socket_timeout=30&socket_connect_timeout=5",
    # Jobs keep their own history; saving each successful task (and pruning the table on every
    # save) cost the monitor process a write transaction per job. Failures are still saved.
    "save_limit": -1,
    "ack_failures": True,
    "catch_up": False,
    "sync": env_bool("TOWER_TASKS_SYNC", False),
    "label": "Tasks",
}

# --- Files ---------------------------------------------------------------------------------
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
MODELS_DIR = env_path("TOWER_MODELS_DIR", VAR_DIR / "models")
# `manage.py serve` fetches missing scoring models in the background at start (resumable, checksums
# verified, progress on the dashboard); false: only `manage.py fetch_models` downloads them.
TOWER_FETCH_MODELS = env_bool("TOWER_FETCH_MODELS", True)
WORKFLOWS_DIR = BASE_DIR / "workflows"

UPLOAD_MAX_BYTES = env_int("TOWER_UPLOAD_MAX_BYTES", 50 * 1024 * 1024, min_value=1024)
UPLOAD_MAX_PIXELS = env_int("TOWER_UPLOAD_MAX_PIXELS", 40_000_000, min_value=64 * 64)
# How long POST /api/v1/quality/evaluate waits for the worker before answering 202 (then poll).
EVALUATE_WAIT_SECONDS = env_float("TOWER_EVALUATE_WAIT", 20.0, min_value=0.0, max_value=300.0)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
HEALTH_MIN_FREE_BYTES = env_int("TOWER_HEALTH_MIN_FREE_BYTES", 1024**3, min_value=0)
# Web processes `manage.py serve`/`web` run on one port, and the HTTP requests each answers at once
# (one more gets a fast 503 with Retry-After: tower.core.shedding).
WEB_PROCESSES = env_int("TOWER_WEB_PROCESSES", max(2, os.cpu_count() or 1), min_value=1, max_value=256)
# 8: one process answers a page of 50 jobs in ~12 ms of CPU, so 8 waiting is ~100 ms; 16 doubled p50
# and p99 with no more served (bench/README.md, API throughput).
WEB_MAX_IN_FLIGHT = env_int("TOWER_WEB_MAX_IN_FLIGHT", 8, min_value=1, max_value=10_000)

# --- ComfyUI -------------------------------------------------------------------------------
# Backends live in the database (admin / API); COMFYUI_URLS seeds them on first start.
COMFYUI_URLS = env_list("COMFYUI_URLS", [])
COMFYUI_TIMEOUT = env_float("COMFYUI_TIMEOUT", 10.0, min_value=0.1)
COMFYUI_VRAM_HOLD = env_float("COMFYUI_VRAM_HOLD", 0.80, min_value=0.0, max_value=1.0)
# Silence on the WebSocket for this long makes the engine ask /queue and /history instead.
COMFYUI_STALL_TIMEOUT = env_float("COMFYUI_STALL_TIMEOUT", 15.0, min_value=0.1)
COMFYUI_MAX_OUTPUT_BYTES = env_int("COMFYUI_MAX_OUTPUT_BYTES", 2 * 1024**3, min_value=1024)
# A worker task drives the job it was given and, while it has room, claims the next queued ones
# itself, up to this many in all (0 = one job per task), sharing one client and WebSocket per backend.
TOWER_ENGINE_SESSION_JOBS = env_int("TOWER_ENGINE_SESSION_JOBS", 200, min_value=0)
# Most jobs one worker task drives at the same time. 1 (the default) spreads a backend's pipeline
# over as many worker processes as it has slots, so Tower's own per-job work runs on several cores;
# more lets one worker keep several prompts in flight (fewer processes, one Python core).
TOWER_ENGINE_SESSION_CONCURRENCY = env_int("TOWER_ENGINE_SESSION_CONCURRENCY", 1, min_value=1)
# A live job whose worker has not reported for this long is adopted by reconcile.
TOWER_HEARTBEAT_STALE_SECONDS = env_int("TOWER_HEARTBEAT_STALE_SECONDS", 30, min_value=5)
# The machine part of a worker's name (host:pid). Each worker machine needs its own: a worker on
# this host whose pid is gone is adopted at once; one elsewhere only when its heartbeat is stale.
TOWER_WORKER_HOST = env_str("TOWER_WORKER_HOST", "") or socket.gethostname()
# Functions (dotted paths, each called with the job id in the engine's process after the success
# commits; they enqueue work, never do it) when a job succeeds: how apps above generation subscribe
# to "job finished" without generation importing them. Not from the environment.
TOWER_ON_JOB_SUCCEEDED = ["quality.tasks.job_succeeded"]
# The same for a job that failed (never for a cancelled one): quality's orchestrations count it as
# a failed attempt. Not from the environment.
TOWER_ON_JOB_FAILED = ["quality.tasks.job_failed"]
# Called with job_ids=[...] after a submission commits: quality records each job's pre_gen gate.
TOWER_ON_JOBS_CREATED = ["quality.services.phase_gates.jobs_created"]
# fn(project=, character=, phase=) -> reason or None: may a character start phase-N work.
TOWER_PHASE_CHECK = "quality.services.phase_gates.phase_open_for"
# fn(episode=) -> [generation.assembly_task.SceneFootage]: an episode's scenes in order with the clips
# its film joins (their segments' outputs, which live in quality). Not from the environment.
TOWER_EPISODE_FOOTAGE = "quality.movie.assemble.episode_footage"
# Functions (dotted paths, no arguments) that generation's reconcile calls after each run (every
# worker start, once a minute): catch-up steps of apps above generation. Not from the environment.
TOWER_ON_RECONCILE = [
    "quality.tasks.score_missing",
    "quality.tasks.orchestrations_reconcile",
    "quality.tasks.scenes_reconcile",
    "generation.assembly_task.assemblies_reconcile",
    "training.trainer.tasks.training_reconcile",
]
# A function (dotted path) that, given a Character, returns the LoRAs its generations must carry
# ([{"name", "strength"}]): the character's active trained LoRA, which lives in training. Not from
# the environment; empty = none.
TOWER_CHARACTER_LORAS = "training.selectors.character_active_loras"

# --- Curation and training (issue 6) ------------------------------------------------------------
# Vision LLM for classifying and captioning dataset images: any OpenAI-compatible chat API
# (Ollama: http://127.0.0.1:11434/v1, vLLM, llama.cpp, Echo Brain). Empty = embedding similarity
# against the characters' references instead, and captions from prompts/tags.
TOWER_LLM_BASE_URL = env_str("TOWER_LLM_BASE_URL", "")
TOWER_LLM_MODEL = env_str("TOWER_LLM_MODEL", "llava")
TOWER_LLM_API_KEY = env_secret("TOWER_LLM_API_KEY", default="") or ""
TOWER_LLM_TIMEOUT = env_float("TOWER_LLM_TIMEOUT", 60.0, min_value=1.0)
# Smallest side (pixels) an image must have to join a dataset.
TOWER_DATASET_MIN_SIDE = env_int("TOWER_DATASET_MIN_SIDE", 512, min_value=16)
# Perceptual-hash distance (bits of 64) at or below which two images count as duplicates.
TOWER_DATASET_PHASH_DISTANCE = env_int("TOWER_DATASET_PHASH_DISTANCE", 6, min_value=0, max_value=32)
# Largest archive (bytes, after unpacking) and most members accepted from one zip upload.
TOWER_INGEST_MAX_ARCHIVE_BYTES = env_int("TOWER_INGEST_MAX_ARCHIVE_BYTES", 2 * 1024**3, min_value=1024)
TOWER_INGEST_MAX_ARCHIVE_MEMBERS = env_int("TOWER_INGEST_MAX_ARCHIVE_MEMBERS", 10_000, min_value=1)
# Largest video accepted for frame extraction (upload or download), in bytes.
TOWER_INGEST_MAX_VIDEO_BYTES = env_int("TOWER_INGEST_MAX_VIDEO_BYTES", 4 * 1024**3, min_value=1024)
# Hosts a URL ingest may fetch from although they are not public internet addresses (loopback,
# private, link-local…): comma-separated host names, addresses or CIDR ranges, e.g.
# nas.lan,192.168.1.0/24. Empty = public addresses only (a URL cannot reach Tower's own services).
TOWER_INGEST_ALLOWED_HOSTS = env_list("TOWER_INGEST_ALLOWED_HOSTS", [])
# Folders that "scan a ComfyUI output folder" may read (comma-separated); empty = none allowed.
TOWER_COMFYUI_OUTPUT_DIRS = env_list("TOWER_COMFYUI_OUTPUT_DIRS", [])
# Approved images a character needs before a LoRA can be trained.
TOWER_TRAINING_MIN_IMAGES = env_int("TOWER_TRAINING_MIN_IMAGES", 10, min_value=1)
# The trainer command (kohya sd-scripts' train_network.py or a wrapper), split like a shell would;
# Tower appends `--config_file <job>/config.toml`. Empty = training cannot start (the page says so).
TOWER_TRAINER_COMMAND = env_str("TOWER_TRAINER_COMMAND", "")
# Base model path passed to the trainer (pretrained_model_name_or_path) unless a job names another.
TOWER_TRAINER_BASE_MODEL = env_str("TOWER_TRAINER_BASE_MODEL", "")
# Comma-separated GPU slots training jobs run on, one at a time each (e.g. 0,1).
TOWER_TRAINING_GPUS = env_list("TOWER_TRAINING_GPUS", ["0"])
# Where training jobs build their kohya folders (images, captions, config, output); empty = under
# MEDIA_ROOT/training (not served).
TOWER_TRAINING_WORK_DIR = env_str("TOWER_TRAINING_WORK_DIR", "")
# Seconds one training run may take before it is stopped (default 7 days).
TOWER_TRAINING_TIMEOUT = env_int("TOWER_TRAINING_TIMEOUT", 7 * 24 * 3600, min_value=60)
# Seconds a cancelled trainer gets after SIGTERM before SIGKILL.
TOWER_TRAINER_KILL_GRACE = env_float("TOWER_TRAINER_KILL_GRACE", 10.0, min_value=0.1)
# Where trained LoRAs are copied so ComfyUI lists them (its models/loras folder, shared or local).
TOWER_COMFYUI_LORA_DIR = env_str("TOWER_COMFYUI_LORA_DIR", "")

# --- Auth and API ---------------------------------------------------------------------------
LOGIN_URL = "login"
# Django's password backend behind a per-account and per-address throttle (tower/signin.py). The
# plain one stays listed so sessions signed in through it stay valid; it never checks a password.
AUTHENTICATION_BACKENDS = ["tower.signin.ThrottledModelBackend", "django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tower.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "tower.core.api.Pagination",
    # DRF's JSON parser, bounded in depth (tower.core.parsers); form and multipart as DRF's defaults.
    "DEFAULT_PARSER_CLASSES": [
        "tower.core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "tower.core.api.FilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "generation": env_str("TOWER_GENERATION_RATE", "120/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "EXCEPTION_HANDLER": "tower.core.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Tower API",
    "DESCRIPTION": "Self-hosted anime production studio on your own ComfyUI servers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Every operation also documents its 400/401/403/404/413/429 answers (tower.core.openapi).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tower.core.openapi.add_error_responses",
    ],
    # Several models have a "kind"; name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": "generation.models.JobKind",
        "JobStatusEnum": "generation.models.JobStatus",
        "AssetKindEnum": "generation.models.AssetKind",
        "VariationKindEnum": "characters.models.VariationKind",
        "AttributeTypeEnum": "characters.models.AttributeType",
        "ModeEnum": "projects.models.Mode",
        "SceneStatusEnum": "projects.models.SceneStatus",
    },
}

# --- Misc ----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: a line per ComfyUI call, most of a busy worker's log (and
    # a tenth of its CPU time per job). Failures still surface through Tower's own messages.
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "django.request": {"filters": ["expected_answers"]},
    },
    # The health check's 503 is its answer (it logs a change of health once itself).
    "filters": {
        "expected_answers": {"()": "tower.core.logs.ExpectedAnswers", "url_names": ["health"], "status_codes": [503]}
    },
}
