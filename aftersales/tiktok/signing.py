"""Request signatures and webhook verification, exactly as ../shared/reference/tiktok-shop-api.md §2.1 and §2.4.

Request ``sign`` = lowercase hex HMAC-SHA256(key = app secret, message = secret + path + the query parameters
sorted by key as ``{key}{value}`` (without ``sign`` and ``access_token``; list values comma-joined) + the exact
body bytes sent (not for multipart) + secret). Everything is handled as bytes, so the body that is signed is
the body that is sent — never a re-serialisation of it.

Webhook ``Authorization`` = lowercase hex HMAC-SHA256(key = app secret, message = app key + raw body),
compared in constant time on the raw bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

UNSIGNED = frozenset({"sign", "access_token"})


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def string_to_sign(path: str, query: Mapping[str, Any], body: bytes = b"", *, multipart: bool = False) -> bytes:
    """The message before wrapping in the secret (exposed for tests and for the emulator's own check)."""
    if not path.startswith("/") or "?" in path:
        raise ValueError("path must be the bare request path, e.g. /return_refund/202309/returns/search")
    params = "".join(f"{key}{_text(query[key])}" for key in sorted(query) if key not in UNSIGNED)
    return path.encode() + params.encode() + (b"" if multipart else (body or b""))


def sign(app_secret: str, path: str, query: Mapping[str, Any], body: bytes = b"", *, multipart: bool = False) -> str:
    secret = app_secret.encode()
    message = secret + string_to_sign(path, query, body, multipart=multipart) + secret
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def webhook_signature(app_key: str, app_secret: str, raw_body: bytes) -> str:
    return hmac.new(app_secret.encode(), app_key.encode() + raw_body, hashlib.sha256).hexdigest()


def verify_webhook(app_key: str, app_secret: str, raw_body: bytes, authorization: str | None) -> bool:
    """True only for the exact signature of these bytes (constant-time; a missing header is False)."""
    if not authorization:
        return False
    expected = webhook_signature(app_key, app_secret, raw_body)
    return hmac.compare_digest(expected.encode(), authorization.strip().lower().encode())
