"""Django settings for booktime.

Every value that differs between machines is read from the environment here,
and only here, through the small typed helpers below. A malformed value stops
start-up with ``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from booktime.email_url import parse_email_url
from booktime.redis_topology import layer_hosts, parse_sentinels

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of IP addresses or CIDR networks (``10.0.0.0/8``)."""
    values = env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list IP addresses or networks (10.0.0.1, 10.0.0.0/8), got {value!r}"
            ) from None
    return values


def env_secret(name: str, default: str | None) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/K8s secrets)."""
    if os.environ.get(f"{name}_FILE"):
        try:
            return Path(os.environ[f"{name}_FILE"]).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE cannot be read: {exc}") from None
    return os.environ.get(name, default)


# --- Core -------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)

# A development key is used when none is given; the system check
# ``booktime.W001`` (and ``check --deploy``) warns about it.
DEV_SECRET_KEY = "django-insecure-booktime-development-key-do-not-use-in-production"
SECRET_KEY = env_secret("SECRET_KEY", None) or DEV_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Reverse proxies (IPs or CIDRs) whose X-Forwarded-For and X-Forwarded-Proto
# are believed; nobody else's are (booktime.clientip). Empty: the TCP peer
# is the client.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "orders",
    "notifications",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # api/: a query parameter given twice is a 400 naming it.
    "booktime.limits.RepeatedParamsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "booktime.urls"
ASGI_APPLICATION = "booktime.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database -----------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    _db = dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
except Exception as exc:  # dj-database-url raises several types
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None

if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the publisher and the tests read while one writes;
    # IMMEDIATE takes the write lock up front, so two writers queue instead of
    # failing with "database is locked" halfway through a transaction.
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not :memory:) so daphne processes started by live tests share it.
    _db["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer ------------------------------------------------------------

_REDIS_URL_GIVEN = env_str("REDIS_URL", "") != ""
REDIS_URL = env_str("REDIS_URL", "") or "redis://127.0.0.1:6379/0"
# RedisPubSubChannelLayer by default: one PUBLISH per group and a local
# fan-out in each process, against ~11 Redis commands per delivery for
# RedisChannelLayer (bench, docs/performance.md). It is at-most-once, which
# the cursor rule covers: consumers catch up from the event log after any gap.
CHANNEL_LAYER = env_str("CHANNEL_LAYER", "pubsub")
# Each test run uses its own prefix so parallel runs never see each other's groups.
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "booktime")
# redis and memory layers: messages the one Redis key all consumers of a
# process share (its channel) may hold; closing consumers send nothing through
# it (notifications.recovery.RecoveryMixin.end_layer_receive). Completeness
# never depends on it: a group message dropped for a full process is marked,
# and the process's watchdog has its consumers catch up from the event log by
# cursor (notifications.layers.BlockingPoolRedisChannelLayer.group_send).
CHANNEL_LAYER_CAPACITY = env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=1)
CHANNEL_LAYER_EXPIRY = env_int("CHANNEL_LAYER_EXPIRY", 60, minimum=1)

# High availability: a master watched by Sentinel (host:port list); or shards:
# several independent Redis servers the channel layer spreads groups over.
# Not both. booktime/redis_topology.py builds the connections; README "Deploying".
REDIS_SENTINELS = parse_sentinels(env_list("REDIS_SENTINELS", []))
REDIS_MASTER_NAME = env_str("REDIS_MASTER_NAME", "booktime")
REDIS_URLS = env_list("REDIS_URLS", [])
_REDIS_HOSTS = layer_hosts(REDIS_URL, REDIS_URLS, REDIS_SENTINELS, REDIS_MASTER_NAME)
# RedisChannelLayer only: how long a Redis read may take. Its receive blocks
# in BZPOPMIN for 5 s (channels-redis's brpop_timeout); at or below that —
# redis-py's default is 5 s — every idle receive failed with "Timeout reading
# from ...", which consumers took for an outage: a log line, a re-join and a
# re-read of the log every ~5 s, forever. notifications.checks keeps it above.
CHANNEL_LAYER_SOCKET_TIMEOUT = 10
# RedisChannelLayer (and the in-memory layer) drop a group member that
# joined longer ago than this. Open consumers re-join their groups every
# 40-50 % of it (notifications/recovery.py, no log re-read), so it only has
# to outlast a consumer that died without leaving.
CHANNEL_LAYER_GROUP_EXPIRY = env_int("CHANNEL_LAYER_GROUP_EXPIRY", 86400, minimum=2)
# RedisChannelLayer only: Redis connections per process (per shard). A layer
# call waits for a free one (notifications.layers.BlockingPoolRedisChannelLayer);
# the stock pool failed every call over this many at once (a reconnect storm).
CHANNEL_LAYER_MAX_CONNECTIONS = env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 100, minimum=2)

if CHANNEL_LAYER == "memory":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {
                "capacity": CHANNEL_LAYER_CAPACITY,
                "expiry": CHANNEL_LAYER_EXPIRY,
                "group_expiry": CHANNEL_LAYER_GROUP_EXPIRY,
            },
        }
    }
elif CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's RedisPubSubChannelLayer, decoding each message once
            # per process and writing into consumers' inboxes (notifications/layers.py).
            "BACKEND": "notifications.layers.InboxPubSubChannelLayer",
            "CONFIG": {"hosts": _REDIS_HOSTS, "prefix": CHANNEL_LAYER_PREFIX},
        }
    }
elif CHANNEL_LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "notifications.layers.BlockingPoolRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        **host,
                        "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
                        "max_connections": CHANNEL_LAYER_MAX_CONNECTIONS,
                    }
                    for host in _REDIS_HOSTS
                ],
                "prefix": CHANNEL_LAYER_PREFIX,
                "capacity": CHANNEL_LAYER_CAPACITY,
                "expiry": CHANNEL_LAYER_EXPIRY,
                "group_expiry": CHANNEL_LAYER_GROUP_EXPIRY,
            },
        }
    }
else:
    raise ImproperlyConfigured(
        f"CHANNEL_LAYER must be one of redis, pubsub, memory; got {CHANNEL_LAYER!r}"
    )

# --- Cache: throttle and sign-in counters ---------------------------------------

# Shared by every process through Redis, so a limit holds however many daphne
# processes serve the site. booktime.cache.FailOpenRedisCache answers "not
# cached" while Redis is down: limits pause, requests (and saves) go on.
# Local memory only for a one-process set-up without Redis. Sessions stay in
# the database (a cached session would outlive its deletion: revocation).
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", f"{CHANNEL_LAYER_PREFIX}:cache")
if CHANNEL_LAYER == "memory" and not _REDIS_URL_GIVEN:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "booktime.cache.FailOpenRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}
            # The Sentinel's current master instead of LOCATION (booktime/redis_topology.py).
            | (
                {"pool_class": "booktime.redis_topology.SentinelCachePool"}
                if REDIS_SENTINELS
                else {}
            ),
        }
    }

# --- Real-time tuning ---------------------------------------------------------

# How often an open SSE stream gets a comment line when no event is due. NAT
# boxes and proxies drop idle connections at about 60 s; 15 s keeps well
# inside that. (WebSocket clients ping; a long-poll is answered within its
# timeout.) It has no part in outage recovery: after a Redis restart the
# watchdog in notifications/recovery.py has consumers re-join within about a
# second.
STREAM_HEARTBEAT_SECONDS = env_int("STREAM_HEARTBEAT_SECONDS", 15, minimum=1)
# Allocations (net, of container objects) between the cycle collector's
# young-generation passes in a server process (booktime/asgi.py); Python's
# default is 700, at which the collector was 8 % of an SSE open's CPU under
# churn. At 10,000 the CPU per SSE open fell 6-9 % (docs/performance.md,
# round 12); each pass's pause is on /metrics (booktime_gc_pause_seconds).
# 0 leaves Python's default.
GC_YOUNG_THRESHOLD = env_int("GC_YOUNG_THRESHOLD", 10_000, minimum=0)
LONGPOLL_DEFAULT_TIMEOUT = 25
LONGPOLL_MAX_TIMEOUT = 60
# Concurrent long-polls one user (or one anonymous client address) may hold
# open, across every server process (Redis); more get 429. A page needs one
# per stream.
LONGPOLL_MAX_PER_CLIENT = env_int("LONGPOLL_MAX_PER_CLIENT", 6, minimum=1)
# Concurrent SSE streams one user (or one anonymous client address) may hold
# open; more get 429. Like LONGPOLL_MAX_PER_CLIENT, counted across every
# process in Redis (notifications/slots.py), per process without it.
SSE_MAX_PER_CLIENT = env_int("SSE_MAX_PER_CLIENT", 10, minimum=1)
# Rows one read of the event log returns at most: a long-poll answers with
# one such page, WS and SSE send each page before reading the next, the
# REST feed's `limit` is capped at it.
BACKFILL_PAGE_SIZE = env_int("BACKFILL_PAGE_SIZE", 500, minimum=1)
# Days of events `manage.py prune_events` keeps by default (0 keeps none).
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 90, minimum=0)
MAX_SUBSCRIPTIONS_PER_SOCKET = 50
# A client that stops reading is cut off once this much is waiting in the
# server's send buffer for it (it resumes by cursor). Bounds the memory one
# stalled client can pin; 128 KiB is several hundred events.
STREAM_CLIENT_BUFFER_BYTES = env_int("STREAM_CLIENT_BUFFER_BYTES", 128 * 1024, minimum=1024)
# ...and has not drained below it within this many seconds. Meanwhile the
# connection's further writes wait (a backfill goes out page by page).
STREAM_SLOW_CLIENT_GRACE_SECONDS = env_int("STREAM_SLOW_CLIENT_GRACE_SECONDS", 5, minimum=1)
# Optional cap (bytes) on each stream socket's kernel send buffer; 0 leaves
# the kernel's default. Lower values make slow clients hit the bound sooner.
STREAM_SOCKET_SNDBUF = env_int("STREAM_SOCKET_SNDBUF", 0)
MAX_WEBSOCKET_FRAME_BYTES = 64 * 1024
# Open streams re-check their access this often (±50 % jitter), for changes
# that announce nothing: QuerySet.update(), raw SQL, expired tracking links,
# announcements lost in a Redis outage. Announced changes act within about a
# second and session expiry at the expiry date. One database hop per
# connection each time: 10,000 connections at 300 s make ~33 a second.
ACCESS_RECHECK_SECONDS = env_int("ACCESS_RECHECK_SECONDS", 300, minimum=1)
# Signed tracking links for anonymous viewers stay valid this long.
TRACKING_TOKEN_MAX_AGE = env_int("TRACKING_TOKEN_MAX_AGE", 60 * 60 * 24 * 90, minimum=60)

# --- Webhooks (notifications.webhooks, docs/webhooks.md) -----------------------

# Private, loopback and link-local receivers (and plain http://) are refused
# unless this is on: tests and scripts/run deliver to 127.0.0.1.
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", False)
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", WEBHOOKS_ALLOW_PRIVATE_NETWORKS)
# Retry delay after the n-th consecutive failure: base * 2**(n-1), capped,
# with +-20 % jitter. Defaults: 10 s, 20 s, ... up to every 6 h.
WEBHOOKS_RETRY_BASE_MS = env_int("WEBHOOKS_RETRY_BASE_MS", 10_000, minimum=1)
WEBHOOKS_RETRY_MAX_MS = env_int("WEBHOOKS_RETRY_MAX_MS", 6 * 3600 * 1000, minimum=1)
# An endpoint failing without a single success for this long is disabled.
WEBHOOKS_DISABLE_AFTER_SECONDS = env_int("WEBHOOKS_DISABLE_AFTER_SECONDS", 3 * 24 * 3600, minimum=1)
# After a secret rotation the old secret keeps signing (next to the new one) this long.
WEBHOOKS_ROTATION_GRACE_SECONDS = env_int("WEBHOOKS_ROTATION_GRACE_SECONDS", 24 * 3600)
WEBHOOKS_CONNECT_TIMEOUT_SECONDS = env_int("WEBHOOKS_CONNECT_TIMEOUT_SECONDS", 5, minimum=1)
WEBHOOKS_READ_TIMEOUT_SECONDS = env_int("WEBHOOKS_READ_TIMEOUT_SECONDS", 10, minimum=1)
# Endpoints one ``deliver`` worker sends to at the same time.
WEBHOOKS_CONCURRENCY = env_int("WEBHOOKS_CONCURRENCY", 32, minimum=1)
# The worker also scans this often without a wake-up (Redis down, missed signal).
WEBHOOKS_POLL_MS = env_int("WEBHOOKS_POLL_MS", 1000, minimum=10)

# --- E-mail and Web Push (notifications.email, notifications.push; docs/notifications.md)

# console: prints e-mails (the development default); smtp://user:pass@host:587/?tls=1;
# backend:anymail.backends.<esp>.EmailBackend (README). See booktime/email_url.py.
EMAIL_URL = env_str("EMAIL_URL", "console:" if DEBUG else "smtp://localhost:25")
try:
    globals().update(parse_email_url(EMAIL_URL))
except ValueError as exc:
    raise ImproperlyConfigured(f"EMAIL_URL is not a valid e-mail URL: {exc}") from None
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "booktime <orders@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# django-anymail's settings: ANYMAIL_MAILGUN_API_KEY=... becomes ANYMAIL["MAILGUN_API_KEY"].
ANYMAIL = {k.removeprefix("ANYMAIL_"): v for k, v in os.environ.items() if k.startswith("ANYMAIL_")}
# The shop's name in e-mails and notifications, and the address links in them point at.
SHOP_NAME = env_str("SHOP_NAME", "booktime")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Which order statuses customers get an e-mail (and push notification) for.
NOTIFY_CUSTOMER_STATUSES = env_list(
    "NOTIFY_CUSTOMER_STATUSES", ["placed", "shipped", "delivered", "cancelled"]
)
_unknown = set(NOTIFY_CUSTOMER_STATUSES) - {
    "placed", "paid", "packed", "shipped", "delivered", "cancelled", "returned"
}  # fmt: skip
if _unknown:
    raise ImproperlyConfigured(f"NOTIFY_CUSTOMER_STATUSES: unknown status {sorted(_unknown)}")
# A customer e-mail waits this long after its change; a newer change to the
# same order within the wait replaces it (one e-mail for both).
EMAIL_FOLD_SECONDS = env_int("EMAIL_FOLD_SECONDS", 60)
# Staff new-order e-mails: off, each (one per order) or digest (every N minutes).
EMAIL_STAFF_NEW_ORDERS = env_str("EMAIL_STAFF_NEW_ORDERS", "off")
if EMAIL_STAFF_NEW_ORDERS not in ("off", "each", "digest"):
    raise ImproperlyConfigured(
        f"EMAIL_STAFF_NEW_ORDERS must be off, each or digest, got {EMAIL_STAFF_NEW_ORDERS!r}"
    )
EMAIL_STAFF_DIGEST_MINUTES = env_int("EMAIL_STAFF_DIGEST_MINUTES", 60, minimum=1)
# An e-mail handed to the mail server by a worker that then stopped before
# recording the outcome is marked "unknown" after this long, and not re-sent.
EMAIL_SENDING_STUCK_SECONDS = env_int("EMAIL_SENDING_STUCK_SECONDS", 300, minimum=1)
# Web Push (VAPID): ``manage.py create_vapid_keys`` prints these; push is off without them.
VAPID_PUBLIC_KEY = env_str("VAPID_PUBLIC_KEY", "")
VAPID_PRIVATE_KEY = env_secret("VAPID_PRIVATE_KEY", "") or ""
VAPID_SUBJECT = env_str("VAPID_SUBJECT", "mailto:admin@localhost")
# How long a push service keeps a notification for an offline browser.
PUSH_TTL_SECONDS = env_int("PUSH_TTL_SECONDS", 24 * 3600)

# --- Auth, sessions, security -------------------------------------------------

# Failed sign-ins (frontend and admin) per username and per client address,
# and failed credentials (unknown API tokens, bad tracking links) per client
# address, within one window; past a limit: a form error / 429 with
# Retry-After until the window ends (booktime.throttles).
LOGIN_FAILURES_PER_USERNAME = env_int("LOGIN_FAILURES_PER_USERNAME", 5, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
AUTH_FAILURES_PER_ADDRESS = env_int("AUTH_FAILURES_PER_ADDRESS", 20, minimum=1)
AUTH_FAILURE_WINDOW_SECONDS = env_int("AUTH_FAILURE_WINDOW_SECONDS", 300, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# --- Internationalisation & static files --------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where ``collectstatic`` puts the files nginx serves (deploy/nginx/booktime.conf).
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Serve app static files straight from the apps (no collectstatic needed), in
# development and production alike; WhiteNoise caches them in memory.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# STATIC_ROOT exists only after collectstatic, which this set-up never needs.
warnings.filterwarnings("ignore", message="No directory at")

# --- REST framework -----------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # DRF's, with unknown tokens counted per client address.
        "orders.api.permissions.ThrottledTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("API_THROTTLE_USER", "600/min"),
        "anon": env_str("API_THROTTLE_ANON", "60/min"),
        # Per API token (orders.api.permissions.TokenThrottle).
        "token": env_str("API_THROTTLE_TOKEN", "300/min"),
    },
    # One JSON error shape for the whole API, in the vocabulary of
    # booktime/errors.py (rendered by orders/api/errors.py).
    "EXCEPTION_HANDLER": "orders.api.errors.api_exception_handler",
    # DRF's, bounded: depth, numbers, strings and size (booktime/limits.py);
    # a hostile body is a 400/413 naming it, never a 500.
    "DEFAULT_PARSER_CLASSES": [
        "orders.api.parsers.JSONParser",
        "orders.api.parsers.FormParser",
        "orders.api.parsers.MultiPartParser",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "booktime API",
    "DESCRIPTION": "Orders and the ordered order-event feed for third parties.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # drf-spectacular's own hook, then 413/415 on every operation with a body.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "orders.api.common.document_body_errors",
    ],
    # One schema enum per choice set, however many fields use it.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.status.OrderStatus",
        "EventTypeEnum": "orders.models.EventType",
    },
}

# --- Logging ------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# "text" (readable lines) or "json" (one object per line, with the request or
# connection id; booktime/logging.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
_LOG_FORMATTER = "json" if LOG_FORMAT == "json" else "plain"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "booktime.logging.JsonFormatter"},
    },
    "filters": {
        "request_id": {"()": "booktime.logging.RequestIdFilter"},
        # A hostile request Django refuses (bad Host header, too many form
        # fields: the ``django.security`` loggers) is one line, not a traceback.
        "without_traceback": {"()": "booktime.errors.WithoutTraceback"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": _LOG_FORMATTER,
            "filters": ["request_id"],
        },
        "console_one_line": {
            "class": "logging.StreamHandler",
            "formatter": _LOG_FORMATTER,
            "filters": ["request_id", "without_traceback"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django.security": {"handlers": ["console_one_line"], "propagate": False},
        "booktime": {"level": LOG_LEVEL},
        "orders": {"level": LOG_LEVEL},
        "notifications": {"level": LOG_LEVEL},
        "frontend": {"level": LOG_LEVEL},
        # Its "Listening on TCP address ..." line tells scripts and the live
        # test harness which port daphne bound; the WARNING root would hide it.
        "daphne.server": {"level": "INFO"},
    },
}

# --- Production: cache, health, metrics, log format ---------------------------

# /readyz fails while the oldest unpublished event is older than this.
READY_MAX_PUBLISH_LAG_SECONDS = env_int("READY_MAX_PUBLISH_LAG_SECONDS", 30, minimum=1)
# /metrics answers a request bearing "Authorization: Bearer <METRICS_TOKEN>",
# or one from these addresses that did not come through a proxy (default:
# loopback). booktime/health.py.
METRICS_TOKEN = env_secret("METRICS_TOKEN", None)
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
