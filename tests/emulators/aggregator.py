"""An AfterShip-style tracking API on 127.0.0.1, scripted per tracking number.

It speaks what ``logistics.aggregator.get_tracking`` documents: ``GET /trackings/{slug}/{number}`` and
``GET /trackings?tracking_numbers=…``, header ``as-api-key``; 200 ``{"meta": {"code": 200}, "data":
{"tracking": {…}}}``, 404 ``{"meta": {"code": 4004}}`` for an unknown number, and whatever failure a test
scripts (503, a slow answer, a body that is not JSON). Each request takes the next scripted reply for its
number; the last one repeats. Every request is recorded for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | dict | None = None
    delay: float = 0.0


NOT_FOUND = Reply(404, {"meta": {"code": 4004, "message": "Tracking does not exist.", "type": "NotFound"},
                        "data": {}})
UNAVAILABLE = Reply(503, {"meta": {"code": 503, "message": "Service Unavailable"}})
NOT_JSON = Reply(200, b"<html>maintenance</html>")


def checkpoint(when: str, tag: str = "InTransit", subtag: str = "", message: str = "", location: str = "") -> dict:
    return {"checkpoint_time": when, "tag": tag, "subtag": subtag or f"{tag}_001",
            "message": message or tag, "location": location}


def found(number: str, *, slug: str = "", tag: str = "InTransit", subtag: str = "",
          checkpoints: list[dict] | None = None) -> Reply:
    tracking = {"tracking_number": number, "slug": slug, "tag": tag, "subtag": subtag or f"{tag}_001",
                "checkpoints": checkpoints if checkpoints is not None else [
                    checkpoint("2026-03-01T08:00:00+00:00", "InfoReceived", message="Label created"),
                    checkpoint("2026-03-01T15:30:00+00:00", tag, message="Picked up", location="Los Angeles, CA")]}
    return Reply(200, {"meta": {"code": 200}, "data": {"tracking": tracking}})


def slow(seconds: float) -> Reply:
    return Reply(200, {"meta": {"code": 200}, "data": {}}, delay=seconds)


@dataclass
class Seen:
    path: str
    number: str
    slug: str
    api_key: str


@dataclass
class AggregatorEmulator:
    api_key: str = "emulator-key"
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- scripting ---
    def script(self, number: str, *replies: Reply) -> None:
        with self._lock:
            self.scripts[number] = list(replies)

    def calls(self, number: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.number == number)

    def _next(self, number: str) -> Reply:
        with self._lock:
            queue = self.scripts.get(number)
            if not queue:
                return NOT_FOUND
            return queue.pop(0) if len(queue) > 1 else queue[0]

    # --- serving ---
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AggregatorEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                emulator._handle(self)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, name="aggregator-emulator", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AggregatorEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        listing = segments == ["trackings"]
        if listing:
            slug, number = "", parse_qs(parts.query).get("tracking_numbers", [""])[0]
        elif len(segments) == 3 and segments[0] == "trackings":
            slug, number = segments[1], segments[2]
        else:
            return self._send(handler, Reply(404, {"meta": {"code": 404, "message": "no such path"}}))
        key = handler.headers.get("as-api-key", "")
        with self._lock:
            self.requests.append(Seen(path=handler.path, number=number, slug=slug, api_key=key))
        if key != self.api_key:
            return self._send(handler, Reply(401, {"meta": {"code": 401, "message": "Invalid API key."}}))
        reply = self._next(number)
        if listing and reply.status in (200, 404) and isinstance(reply.body, dict):
            tracking = (reply.body.get("data") or {}).get("tracking")
            reply = Reply(200, {"meta": {"code": 200}, "data": {"trackings": [tracking] if tracking else []}},
                          reply.delay)
        return self._send(handler, reply)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body or {}).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass
