"""Every setting that comes from the environment is read here, and only here.

A bad value stops the process with one line naming the variable and what is wrong
(`ConfigError`), caught by the entry points (manage.py, wsgi, celery) so users never
see a traceback for a typo in their environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message is one line."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{name} is not set: it is required here")
        return default
    return value


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class DatabaseUrl:
    name: str
    user: str
    password: str
    host: str
    port: str

    def as_django(self) -> dict:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": self.name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": self.port,
            # Short-lived connections keep the embedded server and tests simple; production
            # overrides CONN_MAX_AGE from the environment.
            "CONN_MAX_AGE": 0,
            "ATOMIC_REQUESTS": False,
        }

    def as_sqlalchemy(self) -> str:
        """The same database as a SQLAlchemy URL (kombu's sqla transport uses it as the broker)."""
        auth = self.user + (f":{self.password}" if self.password else "")
        netloc = f"{auth}@{'' if self.host.startswith('/') else self.host}"
        if self.port and not self.host.startswith("/"):
            netloc += f":{self.port}"
        query = f"?host={self.host}" if self.host.startswith("/") else ""
        return f"postgresql+psycopg://{netloc}/{self.name}{query}"


def parse_database_url(name: str, raw: str) -> DatabaseUrl:
    """Parse ``postgres[ql]://user:pass@host:port/db`` (host may be a socket folder via ``?host=``)."""
    parts = urlsplit(raw)
    if parts.scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ConfigError(
            f"{name} must be a postgres:// URL (the product runs on PostgreSQL only), got scheme {parts.scheme!r}"
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ConfigError(f"{name} has no database name (expected postgres://user@host:5432/dbname)")
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or ""])[0]
    try:
        port = str(parts.port or "")
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number") from None
    return DatabaseUrl(
        name=dbname,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        host=host,
        port=port,
    )


def check_broker_url(name: str, raw: str) -> str:
    scheme = urlsplit(raw).scheme
    allowed = {"redis", "rediss", "sqla+postgresql", "sqla+postgresql+psycopg", "amqp", "pyamqp"}
    if scheme not in allowed:
        raise ConfigError(f"{name} has scheme {scheme!r}; use redis://host:6379/0 (or leave it unset)")
    return raw
