"""Settings for every environment; production.py tightens them for deployment.

All environment reads go through config.env (one place, one-line errors).
"""

from pathlib import Path

from django.utils.translation import gettext_lazy as _

from config.env import (
    ConfigError,
    check_broker_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = env_bool("DEBUG", False)

_secret = env_str("SECRET_KEY")
if _secret is None:
    if not DEBUG and not env_bool("ALLOW_INSECURE_KEY", False):
        raise ConfigError("SECRET_KEY is not set (set DEBUG=1 for a local throw-away key)")
    _secret = "insecure-local-development-key-never-use-in-production-0123456789"
SECRET_KEY = _secret

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "guardian",
    "axes",
    "django_celery_beat",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "stores",
    "aftersales",
    "logistics",
    "portal",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.NulInPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into its response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_db_url = env_str("DATABASE_URL", required=True)
DATABASE = parse_database_url("DATABASE_URL", _db_url)
DATABASES = {"default": DATABASE.as_django()}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 0, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # Axes first so a locked-out user is refused before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

# --- i18n: English source strings, Simplified Chinese shipped complete -------------------
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "en")
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "config" / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "static/"
# Unset outside production: WhiteNoise serves straight from the apps' static folders (finders).
STATIC_ROOT = env_str("STATIC_ROOT")
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = BASE_DIR / "var" / "media"
MEDIA_URL = "media/"

# --- guardian: object permissions only; never fall back to global perms ------------------
ANONYMOUS_USER_NAME = None  # no anonymous user row: nothing is granted to the public
GUARDIAN_RAISE_403 = False
GUARDIAN_RENDER_403 = False

# --- axes: lock a username+IP after repeated failures, cool off after a while -------------
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "stores.api.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "config.api.CursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    # Per API token (per user for sessions); counters in the default cache (stores/api/throttling.py).
    "DEFAULT_THROTTLE_CLASSES": ["stores.api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env_str("API_THROTTLE_USER", "1200/min")},
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "After-sales control tower API",
    "DESCRIPTION": "REST API for ERPs and scripts. Errors use one envelope; see /api/v1/error-codes/.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets come from the sidecar package: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- e-mail (alert notifications, aftersales.notifications) --------------------------------------
# With EMAIL_HOST set, mail goes out over SMTP; without it (a local run) each message is written as a
# file under var/mail/, so nothing leaves the machine and the messages can still be read.
EMAIL_HOST = env_str("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 20
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = BASE_DIR / "var" / "mail"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "after-sales-tower@localhost")

# --- Celery --------------------------------------------------------------------------------
# With no broker configured, kombu's SQLAlchemy transport on the same Postgres is the broker:
# the embedded default needs no Redis. CI and production name Redis explicitly.
_broker = env_str("CELERY_BROKER_URL")
CELERY_BROKER_URL = (
    check_broker_url("CELERY_BROKER_URL", _broker) if _broker else "sqla+" + DATABASE.as_sqlalchemy()
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers an unacked task after this long (acks_late). The SQLAlchemy transport passes its
# options to create_engine, so it gets none.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600} if CELERY_BROKER_URL.startswith("redis") else {}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- logging: request id on every line ------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# --- product defaults ----------------------------------------------------------------------
API_TOKEN_PREFIX_LENGTH = 8

CELERY_BEAT_SCHEDULE = {
    # Proves the whole chain (beat → broker → worker → database) every minute; /healthz shows it.
    "heartbeat": {"task": "stores.heartbeat", "schedule": 60.0, "args": ["worker"]},
    # 物流断链: return parcels without a first carrier scan in time are marked stalled (SKIP LOCKED, overlap-safe).
    "logistics-scan-watch": {"task": "logistics.sweep_scan_watch", "schedule": 60.0},
    # SLA (issue 5): warnings before deadlines, missed deadlines → compensation, score, log (SKIP LOCKED).
    "aftersales-sla-sweep": {"task": "aftersales.sweep_sla", "schedule": 60.0},
    "aftersales-resume-stale-jobs": {"task": "aftersales.resume_stale_jobs", "schedule": 300.0},
    # TikTok Shop (issue 7): a pull per linked store (one at a time per store: a lease), and decisions whose
    # send was lost are sent again with their own idempotency key.
    "tiktok-sync-all": {"task": "aftersales.tiktok.sync_all", "schedule": 300.0},
    "tiktok-resend-stale-decisions": {"task": "aftersales.tiktok.resend_stale_decisions", "schedule": 300.0},
    "tiktok-requeue-webhooks": {"task": "aftersales.tiktok.requeue_webhooks", "schedule": 300.0},
    # 售后分析 (issue 9): a new rollup of every agency's figures per store (docs/ANALYTICS.md).
    "aftersales-analytics-rollups": {"task": "aftersales.refresh_all_analytics", "schedule": 300.0},
}
# The dashboard reads an agency's rollup while it is at most this old (the beat refreshes every 5 minutes; this
# allows a missed run and a slow refresh); an older one is ignored and every figure is computed live (slow at
# agency scale, never wrong). 0 turns the rollups off.
ANALYTICS_ROLLUP_MAX_AGE_SECONDS = env_int("ANALYTICS_ROLLUP_MAX_AGE_SECONDS", 900, minimum=0)

# --- return tracking: the carrier check through a tracking aggregator (AfterShip "get a tracking") ----------
# Empty URL: no check is made; attempts are recorded as "skipped" and the validation stays pending.
TRACKING_AGGREGATOR_URL = env_str("TRACKING_AGGREGATOR_URL", "")
TRACKING_AGGREGATOR_KEY = env_str("TRACKING_AGGREGATOR_KEY", "")
TRACKING_AGGREGATOR_TIMEOUT_S = env_int("TRACKING_AGGREGATOR_TIMEOUT_S", 5, minimum=1)
# Transient failures (5xx, 429, timeouts) retry this many times, after uniform(0, min(max, base·2^n)) seconds.
TRACKING_CHECK_MAX_RETRIES = env_int("TRACKING_CHECK_MAX_RETRIES", 6, minimum=0)
TRACKING_CHECK_BACKOFF_S = env_int("TRACKING_CHECK_BACKOFF_S", 30, minimum=1)
TRACKING_CHECK_BACKOFF_MAX_S = env_int("TRACKING_CHECK_BACKOFF_MAX_S", 3600, minimum=1)

# --- TikTok Shop connector ---------------------------------------------------------------------
# Fernet keys (comma-separated, newest first) that encrypt partner-app secrets and seller tokens at rest.
# Unset: one key derived from SECRET_KEY (local development; production.py requires the variable).
# Rotation (docs/CONNECTOR.md): put a new key first, run `manage.py rotate_credentials`, drop the old key.
CREDENTIALS_KEYS = env_list("CREDENTIALS_KEYS", [])
# How far back each pull re-reads (seconds): updates stamped just before the last watermark but committed
# on the platform after it are not missed; the upsert is idempotent, so the overlap costs only reads.
TTS_SYNC_OVERLAP_SECONDS = env_int("TTS_SYNC_OVERLAP_SECONDS", 300, minimum=0)
# A sync run holds its store's lease this long without renewing it before another worker may take over.
TTS_SYNC_LEASE_SECONDS = env_int("TTS_SYNC_LEASE_SECONDS", 120, minimum=10)
# Refresh an access token this long before it expires (tokens live 7 days).
TTS_TOKEN_REFRESH_MARGIN_SECONDS = env_int("TTS_TOKEN_REFRESH_MARGIN_SECONDS", 3600, minimum=0)
TTS_HTTP_TIMEOUT_SECONDS = env_int("TTS_HTTP_TIMEOUT_SECONDS", 15, minimum=1)
# Hosts a partner app may send its secret and tokens to (its API, token and authorisation pages): the platform's.
# A local emulator is allowed in development; elsewhere list it here. Guards against pointing an app elsewhere.
TTS_ALLOWED_HOSTS = env_list("TTS_ALLOWED_HOSTS", ["open-api.tiktokglobalshop.com", "auth.tiktok-shops.com",
                                                   "services.tiktokshop.com", "auth.tiktok-shops.cn"])
if DEBUG:
    TTS_ALLOWED_HOSTS = [*TTS_ALLOWED_HOSTS, "127.0.0.1", "localhost"]
# Where evidence images may be downloaded from (host suffixes of the platform's media CDN), besides the app's API
# host; anything else is kept as a link. Redirects and proxies are not followed.
TTS_MEDIA_HOST_SUFFIXES = env_list("TTS_MEDIA_HOST_SUFFIXES", [".tiktokcdn.com", ".tiktokcdn-us.com",
                                                               ".tiktokcdn-eu.com", ".ibyteimg.com",
                                                               ".byteimg.com", ".tiktokv.com"])
TTS_WEBHOOK_MAX_BYTES = env_int("TTS_WEBHOOK_MAX_BYTES", 256 * 1024, minimum=1024)

# --- portal ------------------------------------------------------------------------------------------------
# How often an open page asks for the alerts count (portal/alerts.py, static/portal/live.js).
PORTAL_ALERTS_POLL_SECONDS = env_int("PORTAL_ALERTS_POLL_SECONDS", 20, minimum=1)
