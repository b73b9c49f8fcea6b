"""A TikTok Shop Partner API emulator on 127.0.0.1, checking requests exactly as the reference says (§2).

It verifies, in the platform's order: app key, timestamp window (not older than 5 minutes, not more than 30 s
ahead), signature (recomputed here step by step from the reference, independently of the product's code),
access token (``x-tts-access-token``; an expired one is 105002), and ``shop_cipher`` (required on shop-scoped
paths: 106013 when missing; refused on ``/authorization/`` with 36009004). Answers are the documented
envelope ``{code, message, request_id, data}``. Faults can be queued (rate limit, internal error, 5xx, a body
that is not JSON). Implemented: ``GET /authorization/202309/shops`` and
``POST /return_refund/202309/returns/search`` (``page_size`` 10–50, ``page_token``, ``update_time_ge``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Fault:
    code: int
    http_status: int = 200
    message: str = ""
    raw: bytes | None = None  # a body that is not the envelope


RATE_LIMIT = Fault(36009002, 429, "Too many requests")
INTERNAL = Fault(36009003, 500, "Internal error")
NOT_JSON = Fault(0, 502, raw=b"<html>bad gateway</html>")


@dataclass
class TikTokEmulator:
    app_key: str = "emu-app-key"
    app_secret: str = "emu-app-secret"
    shop_cipher: str = "ROW_emulated_cipher"
    tokens: set[str] = field(default_factory=lambda: {"token-1"})
    expired_tokens: set[str] = field(default_factory=set)
    returns: list[dict] = field(default_factory=list)
    shops: list[dict] = field(default_factory=lambda: [{"id": "7494726673780148744", "name": "Emu UK",
                                                         "region": "GB", "seller_type": "CROSS_BORDER",
                                                         "cipher": "ROW_emulated_cipher", "code": "GBEMU"}])
    faults: list[Fault] = field(default_factory=list)
    seen: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- the platform's checks --------------------------------------------------------------------------
    def expected_sign(self, path: str, query: dict[str, str], body: bytes) -> str:
        kept = sorted((k, v) for k, v in query.items() if k not in ("sign", "access_token"))
        message = path.encode() + "".join(f"{k}{v}" for k, v in kept).encode() + body
        secret = self.app_secret.encode()
        return hmac.new(secret, secret + message + secret, hashlib.sha256).hexdigest()

    def answer(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, bytes]:
        with self._lock:
            self.seen.append({"method": method, "path": path, "query": dict(query), "body": body,
                              "token": headers.get("x-tts-access-token", "")})
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            return fault.http_status, fault.raw if fault.raw is not None else self._envelope(fault.code, fault.message)
        if query.get("app_key") != self.app_key:
            return 200, self._envelope(36009004, "Invalid app_key")
        try:
            skew = time.time() - int(query.get("timestamp", ""))
        except ValueError:
            return 200, self._envelope(36009004, "Invalid timestamp")
        if skew > 300 or skew < -30:
            return 200, self._envelope(36009004, "Invalid timestamp: expired or in the future")
        if not hmac.compare_digest(query.get("sign", ""), self.expected_sign(path, query, body)):
            return 200, self._envelope(106001, "Invalid sign")
        token = headers.get("x-tts-access-token", "")
        if token in self.expired_tokens:
            return 401, self._envelope(105002, "Expired credentials")
        if token not in self.tokens:
            return 200, self._envelope(36009004, "Invalid access token")
        if path.startswith("/authorization/"):
            if "shop_cipher" in query:
                return 200, self._envelope(36009004, "Unexpected identifier: shop_cipher is not required")
            return 200, self._envelope(0, "Success", {"shops": self.shops})
        if "shop_cipher" not in query:
            return 200, self._envelope(106013, "shop_cipher is required")
        if query["shop_cipher"] != self.shop_cipher:
            return 200, self._envelope(36009004, "Invalid shop_cipher")
        if (method, path) == ("POST", "/return_refund/202309/returns/search"):
            return self._search(query, body)
        return 404, self._envelope(36009009, "Invalid path")

    def _search(self, query: dict[str, str], body: bytes) -> tuple[int, bytes]:
        try:
            size = int(query.get("page_size", "10"))
            filters = json.loads(body or b"{}")
        except ValueError:
            return 400, self._envelope(36009004, "Invalid param")
        if not 10 <= size <= 50:
            return 400, self._envelope(36009004, "Invalid param: page_size must be 10-50")
        since = int(filters.get("update_time_ge", 0))
        rows = sorted((r for r in self.returns if r["update_time"] >= since),
                      key=lambda r: (r["update_time"], r["return_id"]))
        start = int(query.get("page_token") or 0)
        page = rows[start:start + size]
        token = str(start + size) if start + size < len(rows) else ""
        return 200, self._envelope(0, "Success", {"return_orders": page, "total_count": len(rows),
                                                  "next_page_token": token})

    @staticmethod
    def _envelope(code: int, message: str, data: dict | None = None) -> bytes:
        return json.dumps({"code": code, "message": message, "request_id": uuid.uuid4().hex,
                           "data": data or {}}).encode()

    # --- the server ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> TikTokEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = emulator.answer(self.command, parts.path, dict(parse_qsl(parts.query)),
                                                  {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
