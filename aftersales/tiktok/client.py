"""One signed-request helper for the TikTok Shop Partner API (reference §2).

Every call carries ``app_key``, ``timestamp`` (unix seconds) and ``sign`` in the query, ``shop_cipher`` for
shop-scoped paths (never for ``/authorization/``, ``/seller/`` or uploads — the platform refuses it there), the
access token in the ``x-tts-access-token`` header, and the JSON body serialised once: the bytes signed are the
bytes sent. The answer is the envelope ``{code, message, request_id, data}``; ``code`` 0 is success.

Failures (the platform's code is always kept on the error):
- 36009002 (rate limited) and 36009003 (internal error), HTTP 5xx and network errors → retried with
  exponential backoff and full jitter, then ``ERR_TTS_002`` / ``ERR_TTS_004``;
- 105002 (access token expired) → ``on_token_expired`` (the caller refreshes and returns the new token) and
  one retry, then ``ERR_TTS_001``;
- any other code → ``ERR_TTS_003`` with the code and message.
Secrets never appear in errors or logs (the query logged is without ``sign`` and the token is a header).
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aftersales.tiktok.signing import sign
from stores import errors
from stores.errors import AppError

log = logging.getLogger(__name__)

RATE_LIMITED, INTERNAL, TOKEN_EXPIRED = 36009002, 36009003, 105002
RETRIED = frozenset({RATE_LIMITED, INTERNAL})
NO_CIPHER_PREFIXES = ("/authorization/", "/seller/", "/product/202309/images/upload", "/product/202309/files/upload")
MAX_BODY = 4 * 1024 * 1024


class TikTokError(AppError):
    """A refused or failed call: our catalogue code plus the platform's code, message and request id."""

    def __init__(self, error, *, platform_code: int | None = None, platform_message: str = "",
                 request_id: str = ""):
        super().__init__(error, fields={"platform": [f"{platform_code}: {platform_message[:300]}"]}
                         if platform_code is not None else None)
        self.platform_code, self.platform_message, self.platform_request_id = (
            platform_code, platform_message[:500], request_id)


@dataclass
class Client:
    base_url: str
    app_key: str
    app_secret: str = field(repr=False)
    access_token: str = field(repr=False, default="")
    shop_cipher: str = ""
    timeout: float = 10.0
    attempts: int = 4
    backoff: float = 0.5
    on_token_expired: Callable[[], str] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    def call(self, method: str, path: str, *, query: dict[str, Any] | None = None,
             body: dict[str, Any] | None = None,
             files: dict[str, tuple[str, bytes, str]] | None = None) -> dict[str, Any]:
        """``data`` of a successful envelope; TikTokError otherwise. ``files`` ({field: (name, bytes, type)})
        sends multipart/form-data (not signed over the body, reference §2.1) instead of a JSON body."""
        refreshed = False
        for attempt in range(1, self.attempts + 1):
            try:
                return self._once(method, path, query or {}, body, files)
            except TikTokError as exc:
                if exc.platform_code == TOKEN_EXPIRED and self.on_token_expired and not refreshed:
                    self.access_token, refreshed = self.on_token_expired(), True
                    continue
                if not _transient(exc) or attempt == self.attempts:
                    raise
                delay = random.uniform(0, self.backoff * 2 ** (attempt - 1))  # noqa: S311 - jitter, not secrets
                log.warning("TikTok Shop %s %s: %s (platform %s); retry %d in %.2f s", method, path, exc.code,
                            exc.platform_code, attempt, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _once(self, method: str, path: str, query: dict[str, Any], body: dict[str, Any] | None,
              files: dict[str, tuple[str, bytes, str]] | None = None) -> dict[str, Any]:
        params = {**query, "app_key": self.app_key, "timestamp": int(self.clock())}
        if self.shop_cipher and not path.startswith(NO_CIPHER_PREFIXES):
            params["shop_cipher"] = self.shop_cipher
        content_type = "application/json"
        if files:
            boundary = uuid.uuid4().hex
            raw = _multipart(boundary, body or {}, files)
            content_type = f"multipart/form-data; boundary={boundary}"
            params["sign"] = sign(self.app_secret, path, params, raw, multipart=True)
        else:
            raw = b"" if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            params["sign"] = sign(self.app_secret, path, params, raw)
        flat = {k: ",".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in params.items()}
        url = f"{self.base_url.rstrip('/')}{path}?{urllib.parse.urlencode(flat)}"
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise TikTokError(errors.ERR_TTS_004)
        request = urllib.request.Request(url, data=raw if body is not None or files else None, method=method, headers={  # noqa: S310
            "x-tts-access-token": self.access_token, "Content-Type": content_type,
            "User-Agent": "aftersales-control-tower"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - scheme checked
                payload, status = response.read(MAX_BODY), response.status
        except urllib.error.HTTPError as exc:  # the platform answers 4xx/5xx with the same envelope
            payload, status = exc.read(MAX_BODY), exc.code
            exc.close()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise TikTokError(errors.ERR_TTS_004, platform_message=str(exc)) from None
        try:
            envelope = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise TikTokError(errors.ERR_TTS_004, platform_code=None, platform_message=f"HTTP {status}") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
            raise TikTokError(errors.ERR_TTS_004, platform_message=f"HTTP {status}: no envelope")
        code, message, rid = envelope["code"], str(envelope.get("message") or ""), str(envelope.get("request_id") or "")
        if code == 0:
            data = envelope.get("data")
            return data if isinstance(data, dict) else {}
        if code == TOKEN_EXPIRED:
            raise TikTokError(errors.ERR_TTS_001, platform_code=code, platform_message=message, request_id=rid)
        if code in RETRIED or status >= 500:
            raise TikTokError(errors.ERR_TTS_002, platform_code=code, platform_message=message, request_id=rid)
        raise TikTokError(errors.ERR_TTS_003, platform_code=code, platform_message=message, request_id=rid)


def _multipart(boundary: str, fields: dict[str, Any], files: dict[str, tuple[str, bytes, str]]) -> bytes:
    out = bytearray()
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    for name, (filename, data, content_type) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def _transient(exc: TikTokError) -> bool:
    return exc.code in (errors.ERR_TTS_002.code, errors.ERR_TTS_004.code)
