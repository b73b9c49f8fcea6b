"""Production: everything base.py does, with deployment hardening that passes check --deploy."""

from config.env import ConfigError, env_bool, env_int, env_list, env_str

from .base import *  # noqa: F403
from .base import REST_FRAMEWORK

DEBUG = False
if env_bool("DEBUG", False):
    raise ConfigError("DEBUG must be off with config.settings.production")

SECRET_KEY = env_str("SECRET_KEY", required=True)
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure"):
    raise ConfigError("SECRET_KEY is too weak for production: use 50+ random characters")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS is not set: list the host names this site answers to")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Production serves collected, hashed, compressed files (``manage.py collectstatic``).
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "var" / "static"))  # noqa: F405
WHITENOISE_USE_FINDERS = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Browsable API is never enabled in production; JSON only.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]}

# Stored partner-app secrets and seller tokens must not depend on SECRET_KEY in production.
CREDENTIALS_KEYS = env_list("CREDENTIALS_KEYS", [])
if not CREDENTIALS_KEYS:
    raise ConfigError("CREDENTIALS_KEYS is not set: one or more Fernet keys, newest first (docs/CONNECTOR.md)")
