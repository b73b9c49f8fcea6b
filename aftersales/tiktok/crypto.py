"""Partner-app secrets and seller tokens, encrypted at rest and never printable.

Stored as Fernet tokens (AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package) under the keys in
``settings.CREDENTIALS_KEYS`` — newest first; every key decrypts, the first one encrypts (``MultiFernet``), so a
key can be rotated without downtime: prepend the new key, run ``manage.py rotate_credentials`` (re-encrypts every
value with the first key), then remove the old key. Without the setting (development, tests) one key is derived
from ``SECRET_KEY`` with HKDF; production refuses to start without it.

In Python a stored value is a :class:`Secret`: its ``repr``/``str`` are masked, so it cannot leak into logs, error
reports, admin pages or API answers by accident; ``reveal()`` is the one explicit way to read it.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from stores import errors
from stores.errors import AppError

MASK = "••••••"


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"aftersales-credentials",
                       info=b"fernet key v1").derive(secret_key.encode())
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys])
    except (ValueError, TypeError):
        raise AppError(errors.ERR_TTS_005, detail="CREDENTIALS_KEYS holds a value that is not a Fernet key") from None


def fernet() -> MultiFernet:
    return _fernet(tuple(getattr(settings, "CREDENTIALS_KEYS", ()) or ()), settings.SECRET_KEY)


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise AppError(errors.ERR_TTS_005) from None


def rotate(token: str) -> str:
    """The same value encrypted under the newest key (raises ERR_TTS_005 if no configured key opens it)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise AppError(errors.ERR_TTS_005) from None


class Secret:
    """A credential: masked when printed, decrypted only by ``reveal()``."""

    __slots__ = ("_ciphertext", "_plain")

    def __init__(self, *, plain: str | None = None, ciphertext: str | None = None):
        self._plain, self._ciphertext = plain, ciphertext

    def reveal(self) -> str:
        if self._plain is None:
            self._plain = decrypt(self._ciphertext) if self._ciphertext else ""
        return self._plain

    def ciphertext(self) -> str:
        if self._ciphertext is None:
            self._ciphertext = encrypt(self._plain) if self._plain else ""
        return self._ciphertext

    def __bool__(self) -> bool:
        return bool(self._ciphertext or self._plain)

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and self.reveal() == other.reveal()

    __hash__ = None  # mutable cache; not a dict key

    def __repr__(self) -> str:
        return f"Secret({MASK if self else ''})"

    __str__ = __repr__


class _SecretAttribute(DeferredAttribute):
    """Assigning a plain string wraps it at once: the instance never holds a printable credential."""

    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = self.field.to_python(value)


class EncryptedField(models.TextField):
    """A TextField holding a Fernet token; Python sees a :class:`Secret`, assignments may be plain strings."""

    descriptor_class = _SecretAttribute

    def from_db_value(self, value, expression, connection):
        return Secret(ciphertext=value or "")

    def to_python(self, value):
        if isinstance(value, Secret):
            return value
        return Secret(plain="" if value is None else str(value))

    def get_prep_value(self, value):
        if value is None:
            return ""
        return self.to_python(value).ciphertext()

    def value_to_string(self, obj):  # dumpdata: never the plain text
        return self.get_prep_value(self.value_from_object(obj))

    def formfield(self, **kwargs):
        from django import forms

        # Write-only in forms: the stored value is never rendered back into the page.
        kwargs.setdefault("widget", forms.PasswordInput(render_value=False))
        kwargs.setdefault("required", False)
        return super().formfield(**kwargs)
