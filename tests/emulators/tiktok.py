"""A local stand-in for the TikTok Shop Partner API (and its auth host), on 127.0.0.1, for tests and the demo.

Everything follows ../shared/reference/tiktok-shop-api.md; the section numbers below are that file's.

Checks (§2.1–§2.3), applied to every Partner API path in the platform's order: app key, timestamp window (not
older than 5 minutes, not more than 30 s ahead), signature (recomputed here step by step from the reference,
independently of the product's code), access token (header ``x-tts-access-token``; an expired one is 105002 with
HTTP 401, an unknown one 36009004), and ``shop_cipher`` (refused on ``/authorization/`` with 36009004 "Unexpected
identifier"; elsewhere 106013 when missing and 36009004 "Invalid shop_cipher" unless it is the cipher of a shop
that this token covers). Answers are the envelope ``{code, message, request_id, data}``.

Served (paths, methods and parameters as §1.1, §1.2, §1.5, §1.6, §1.8, §2.2):

* auth host, not signed: ``GET /api/v2/token/get`` (single-use auth codes) and ``GET /api/v2/token/refresh``
  (rotation: the old access token answers 105002 afterwards, the old refresh token 36004004); token data with
  absolute ``access_token_expire_in`` (now + 7 days, and the token really expires then by ``clock``) and
  ``refresh_token_expire_in`` (now + 365 days); wrong app key or secret → 36009004 "Invalid app_key".
  ``GET /open/authorize?service_id&state`` is the browser step: 302 to ``redirect_uri?code=…&state=…``.
* ``GET /authorization/202309/shops`` — only the shops this token covers (``token_shops``; a token absent from
  that mapping, such as the default "token-1", covers every shop).
* ``POST /return_refund/202309/returns/search`` and ``…/cancellations/search`` — the §1.2 / §1.8 body filters
  (lists, ``*_time_ge`` / ``*_time_lt``; when only ``_ge`` is given, ``_lt`` is now), ``sort_field``
  create_time|update_time, ``sort_order`` ASC|DESC, ``page_size`` 10–50 (returns) or 1–50 (cancellations), a
  stable order (sort field, then id), only the rows of the cipher's shop. A ``page_token`` is accepted only if
  this emulator issued it for the same search (kind, shop, filters); anything else is 36009004. Issued tokens
  are bare offsets ("10") by default, as the first tests expect, or random opaque strings with
  ``opaque_page_tokens=True`` (the demo's setting) so that a client computing tokens itself fails.
* ``GET …/returns/{return_id}/records`` (§1.6; one BUYER record with an image, plus a video for
  RETURN_AND_REFUND, unless a test adds its own), ``GET …/reject_reasons`` (§1.5),
  ``GET /return_refund/202601/decision_eligibility`` (§1.1), computed from the current status and type.
* decisions (§1.5): approve / reject of returns and cancellations, with a required ``idempotency_key``
  (1–255 characters): the same key again answers the same data without a second effect, the same key for a
  different request is 36009004. Every effective decision is appended to ``decisions``.
* ``GET /media/<name>.jpg`` — a real (tiny, 16×16 grey) baseline JPEG made here, so evidence can be downloaded;
  ``/media/<name>.mp4`` is only an ISO-BMFF header (``ftyp`` box), a placeholder and not a playable video.
* webhooks (§1.10, §2.4): ``{type, tts_notification_id, shop_id, timestamp, data}`` signed with header
  ``Authorization`` = hex HMAC-SHA256(key=app_secret, msg=app_key + raw body); type 12 for returns, 11 for
  cancellations. With ``webhook_url`` set, ``set_status`` posts one at once and a decision posts one from a
  background thread (so a product that calls the emulator from a request is never waiting on itself).

Invented here: code **48001001** stands for the platform's per-endpoint business refusals (a decision the
current status or type does not allow, a reject reason not offered for that request), which the reference does
not enumerate; it is also the ``ineligible_code`` in decision eligibility. The decision endpoints answer
``data: {}`` (the reference gives no response fields for them). Reason keys other than the reject reasons and
the two return reasons quoted in §1.5 are illustrative.

Faults (``faults``) are taken first-in first-out among those whose ``path`` prefix matches (all paths when
``path`` is None), before any check; ``delay`` sleeps first, and a fault with code 0 and no ``raw`` body then
lets the normal answer through (``slow()``). Everything shared is guarded by one lock. Run it for the demo with
``python -m tests.emulators.tiktok --port 9100 --shops 3 --returns 40``.
"""

from __future__ import annotations

import argparse
import copy
import email.parser
import email.policy
import functools
import hashlib
import hmac
import json
import random
import re
import secrets
import signal
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

INVALID = 36009004
IMAGE_UPLOAD = "/product/202309/images/upload"
INVALID_AUTH = 36004004
EXPIRED = 105002
BUSINESS_REFUSAL = 48001001  # invented: see the module docstring

DAY = 86_400
ACCESS_LIFETIME, REFRESH_LIFETIME = 7 * DAY, 365 * DAY
GRANTED_SCOPES = ["seller.authorization.info", "seller.shop.info", "seller.order.info", "seller.return_refund.basic",
                  "seller.fulfillment.basic", "seller.logistics"]

PENDING = "RETURN_OR_REFUND_REQUEST_PENDING"
SUCCESS = "RETURN_OR_REFUND_REQUEST_SUCCESS"
REPLACEMENT_PENDING = "REPLACEMENT_REQUEST_PENDING"
RETURN_STATUSES = frozenset({
    PENDING, "REFUND_OR_RETURN_REQUEST_REJECT", "AWAITING_BUYER_SHIP", "BUYER_SHIPPED_ITEM", "REJECT_RECEIVE_PACKAGE",
    SUCCESS, "RETURN_OR_REFUND_REQUEST_CANCEL", "RETURN_OR_REFUND_REQUEST_COMPLETE", REPLACEMENT_PENDING,
    "REPLACEMENT_REQUEST_REJECT", "REPLACEMENT_REQUEST_REFUND_SUCCESS", "REPLACEMENT_REQUEST_CANCEL",
    "REPLACEMENT_REQUEST_COMPLETE", "AWAITING_BUYER_RESPONSE"})
RETURN_TYPES = ("REFUND", "RETURN_AND_REFUND", "REPLACEMENT")
CANCEL_PENDING = "CANCELLATION_REQUEST_PENDING"
CANCEL_STATUSES = frozenset({CANCEL_PENDING, "CANCELLATION_REQUEST_SUCCESS", "CANCELLATION_REQUEST_CANCEL",
                             "CANCELLATION_REQUEST_CANCELLED", "CANCELLATION_REQUEST_COMPLETE"})
CANCEL_TYPES = ("CANCEL", "BUYER_CANCEL")

RETURN_REJECT_REASONS = [
    {"name": "reverse_reject_request_reason_1", "text": "Buyer's return reason is not valid"},
    {"name": "reverse_reject_request_reason_3",
     "text": "Product already used, damaged or removed from original packaging"},
    {"name": "reverse_reject_request_reason_4", "text": "Product delivery is on schedule"},
    {"name": "reverse_reject_request_reason_5", "text": "Reached an agreement with the buyer"},
]
CANCEL_REJECT_REASONS = [
    {"name": "order_manage_list_action_respond_popup_reject_reason_invalid_cancellation_reason",
     "text": "Invalid cancellation reason"},
    {"name": "order_manage_list_action_respond_popup_reject_reason_delivered", "text": "The order has been delivered"},
]
RETURN_REASONS = {
    "REFUND": ("ecom_order_shipped_refund_reason_not_arrive_on_time", "Package didn't arrive on time"),
    "RETURN_AND_REFUND": ("ecom_order_delivered_refund_and_return_reason_wrong_product_seller",
                          "Seller sent the wrong item"),
    "REPLACEMENT": ("ecom_order_delivered_replacement_reason_damaged_product", "Item arrived damaged"),
}
CANCEL_REASONS = [("ecom_order_to_ship_cancel_reason_no_longer_needed", "No longer needed"),
                  ("ecom_order_to_ship_cancel_reason_change_shipping_address", "Need to change the shipping address"),
                  ("ecom_order_to_ship_cancel_reason_better_price", "Found a better price elsewhere")]

# decision → (return types, statuses) in which it is allowed; cancellation decisions need a pending BUYER_CANCEL
RETURN_RULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "APPROVE_REFUND": (frozenset({"REFUND"}), frozenset({PENDING})),
    "REJECT_REFUND": (frozenset({"REFUND"}), frozenset({PENDING})),
    "APPROVE_RETURN": (frozenset({"RETURN_AND_REFUND"}), frozenset({PENDING})),
    "REJECT_RETURN": (frozenset({"RETURN_AND_REFUND"}), frozenset({PENDING})),
    "DIRECT_REFUND": (frozenset({"RETURN_AND_REFUND"}), frozenset({PENDING})),
    "OFFER_PARTIAL_REFUND": (frozenset({"REFUND", "RETURN_AND_REFUND"}), frozenset({PENDING})),
    "APPROVE_RECEIVED_PACKAGE": (frozenset({"RETURN_AND_REFUND"}), frozenset({"BUYER_SHIPPED_ITEM"})),
    "REJECT_RECEIVED_PACKAGE": (frozenset({"RETURN_AND_REFUND"}), frozenset({"BUYER_SHIPPED_ITEM"})),
    "APPROVE_REPLACEMENT": (frozenset({"REPLACEMENT"}), frozenset({REPLACEMENT_PENDING})),
    "ISSUE_REPLACEMENT_REFUND": (frozenset({"REPLACEMENT"}), frozenset({REPLACEMENT_PENDING})),
    "REJECT_REPLACEMENT": (frozenset({"REPLACEMENT"}), frozenset({REPLACEMENT_PENDING})),
}
RETURN_EFFECTS = {
    "APPROVE_REFUND": SUCCESS, "APPROVE_RETURN": "AWAITING_BUYER_SHIP", "APPROVE_RECEIVED_PACKAGE": SUCCESS,
    "DIRECT_REFUND": SUCCESS, "OFFER_PARTIAL_REFUND": "AWAITING_BUYER_RESPONSE",
    "APPROVE_REPLACEMENT": "REPLACEMENT_REQUEST_COMPLETE",
    "ISSUE_REPLACEMENT_REFUND": "REPLACEMENT_REQUEST_REFUND_SUCCESS",
    "REJECT_REFUND": "REFUND_OR_RETURN_REQUEST_REJECT", "REJECT_RETURN": "REFUND_OR_RETURN_REQUEST_REJECT",
    "REJECT_RECEIVED_PACKAGE": "REJECT_RECEIVE_PACKAGE", "REJECT_REPLACEMENT": "REPLACEMENT_REQUEST_REJECT",
}
APPROVE_DECISIONS = frozenset(d for d in RETURN_EFFECTS if not d.startswith("REJECT_"))
REJECT_DECISIONS = frozenset(d for d in RETURN_EFFECTS if d.startswith("REJECT_"))
CANCEL_EFFECTS = {"APPROVE_REQUEST_CANCEL": "CANCELLATION_REQUEST_SUCCESS",
                  "REJECT_REQUEST_CANCEL": "CANCELLATION_REQUEST_CANCEL"}
CHECKABLE_DECISIONS = ("APPROVE_REQUEST_CANCEL", "APPROVE_REFUND", "APPROVE_RETURN", "APPROVE_RECEIVED_PACKAGE",
                       "APPROVE_REPLACEMENT", "ISSUE_REPLACEMENT_REFUND", "DIRECT_REFUND", "REJECT_REQUEST_CANCEL",
                       "REJECT_REFUND", "REJECT_RETURN", "REJECT_RECEIVED_PACKAGE", "REJECT_REPLACEMENT")

REGIONS = {"GB": ("United Kingdom", "GBP", Decimal(1)), "MY": ("Malaysia", "MYR", Decimal("5.9")),
           "TH": ("Thailand", "THB", Decimal(44)), "SG": ("Singapore", "SGD", Decimal("1.7")),
           "PH": ("Philippines", "PHP", Decimal(72)), "VN": ("Vietnam", "VND", Decimal(32000)),
           "ID": ("Indonesia", "IDR", Decimal(20000)), "US": ("United States", "USD", Decimal("1.27"))}
WHOLE_CURRENCIES = frozenset({"VND", "IDR"})
CATALOGUE = [  # product name, sku name, seller sku, price in GBP
    ("Wireless Earbuds Pro", "Black", "EB-PRO-BLK", Decimal("24.99")),
    ("Silk Pillowcase", "Champagne, Queen", "SILK-PC-CHQ", Decimal("18.50")),
    ("Stainless Steel Water Bottle 750ml", "Sage green", "BTL-750-SGE", Decimal("12.00")),
    ("LED Ring Light 10 inch", "With tripod", "RL-10-TRI", Decimal("21.90")),
    ("Matte Lipstick Set", "Nude x 6", "LIP-MT-N6", Decimal("9.99")),
    ("Phone Case for iPhone 15", "Clear", "CASE-IP15-CLR", Decimal("6.49")),
    ("Cotton Oversized T-shirt", "White, L", "TEE-OV-WL", Decimal("14.00")),
]
ID_PREFIXES = {"return": "4035", "order": "5769", "cancel": "4036", "line": "5770", "return_line": "4037",
               "cancel_line": "4038", "sku": "1729", "buyer": "7494", "notification": "7327", "shop": "7495"}
RETURN_CARRIERS = {  # region → (provider id, name): the national posts, whose numbers are UPU S10 (ids invented)
    "GB": ("6617675756643321601", "Royal Mail"), "MY": ("6617675756643321602", "Pos Malaysia"),
    "TH": ("6617675756643321603", "Thailand Post"), "SG": ("6617675756643321604", "SingPost"),
    "PH": ("6617675756643321605", "PHLPost"), "VN": ("6617675756643321606", "Vietnam Post"),
    "ID": ("6617675756643321607", "Pos Indonesia"), "US": ("6617675756643321608", "USPS")}
MEDIA_NAME = re.compile(r"^/media/([A-Za-z0-9_-]{1,80})\.(jpg|mp4)$")
IMAGE_SIZE = 16

ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/return_refund/202309/returns/search$"), "_search_returns"),
    ("POST", re.compile(r"^/return_refund/202309/cancellations/search$"), "_search_cancellations"),
    ("GET", re.compile(r"^/return_refund/202309/returns/([^/]+)/records$"), "_records"),
    ("GET", re.compile(r"^/return_refund/202309/reject_reasons$"), "_reject_reasons"),
    ("GET", re.compile(r"^/return_refund/202601/decision_eligibility$"), "_decision_eligibility"),
    ("POST", re.compile(r"^/return_refund/202309/returns/([^/]+)/(approve|reject)$"), "_decide_return"),
    ("POST", re.compile(r"^/return_refund/202309/cancellations/([^/]+)/(approve|reject)$"), "_decide_cancellation"),
]


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) refuses connections when many clients call at once on a busy machine (seen:
    # 20 concurrent decision retries → a connection reset); the platform does not.
    request_queue_size = 128


@dataclass(frozen=True)
class Fault:
    code: int
    http_status: int = 200
    message: str = ""
    raw: bytes | None = None  # a body that is not the envelope
    path: str | None = None  # only requests whose path starts with this; None = every request
    delay: float = 0.0  # seconds to wait before answering

    def matches(self, path: str) -> bool:
        return self.path is None or path.startswith(self.path)

    @property
    def passes_through(self) -> bool:
        """Only a delay: the normal answer follows."""
        return self.code == 0 and self.raw is None


RATE_LIMIT = Fault(36009002, 429, "Too many requests")
INTERNAL = Fault(36009003, 500, "Internal error")
NOT_JSON = Fault(0, 502, raw=b"<html>bad gateway</html>")


def slow(seconds: float, path: str | None = None) -> Fault:
    """A slow answer: wait, then answer normally."""
    return Fault(0, delay=seconds, path=path)


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class Refused(Exception):
    """A request refused with a platform code (raised inside handlers, answered as the envelope)."""

    def __init__(self, code: int, message: str, status: int = 200):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _invalid(what: str) -> Refused:
    return Refused(INVALID, f"Invalid param: {what}", 400)


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
    cancellations: list[dict] = field(default_factory=list)
    token_shops: dict[str, set[str]] = field(default_factory=dict)  # token → shop ids; absent = every shop
    service_id: str = "emu-service"
    redirect_uri: str = ""
    webhook_url: str = ""
    clock: Callable[[], float] = time.time  # data timestamps and token lifetimes (not the signature window)
    opaque_page_tokens: bool = False
    seed: int = 0
    decisions: list[dict] = field(default_factory=list)
    webhooks_sent: list[dict] = field(default_factory=list)
    records: dict[str, list[dict]] = field(default_factory=dict)
    uploaded_images: dict[str, int] = field(default_factory=dict)  # uri → bytes (reject images must be these)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._random = random.Random(self.seed)
        self._serial = self._random.randrange(10**9, 10**10)
        self._auth_codes: dict[str, list[str]] = {}
        self._refresh_grants: dict[str, dict] = {}
        self._token_expiry: dict[str, float] = {}
        self._reasons_by_id: dict[str, list[dict]] = {}
        self._eligibility: dict[str, dict[str, tuple[bool, int, str]]] = {}
        self._idempotency: dict[str, dict] = {}
        self._page_tokens: dict[tuple[str, str, str, str], int] = {}

    # --- the platform's checks --------------------------------------------------------------------------
    def expected_sign(self, path: str, query: dict[str, str], body: bytes) -> str:
        kept = sorted((k, v) for k, v in query.items() if k not in ("sign", "access_token"))
        message = path.encode() + "".join(f"{k}{v}" for k, v in kept).encode() + body
        secret = self.app_secret.encode()
        return hmac.new(secret, secret + message + secret, hashlib.sha256).hexdigest()

    def answer(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, bytes]:
        """Status and body of the answer to one request (what the HTTP server sends, without its headers)."""
        reply = self.respond(method, path, query, headers, body)
        return reply.status, reply.body

    def respond(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Reply:
        """The whole answer (status, body, headers): a queued fault first, then the auth host, the browser
        authorization step, media, or the checked Partner API."""
        with self._lock:
            self.seen.append({"method": method, "path": path, "query": dict(query), "body": body,
                              "token": headers.get("x-tts-access-token", "")})
            index = next((i for i, f in enumerate(self.faults) if f.matches(path)), None)
            fault = self.faults.pop(index) if index is not None else None
        if fault is not None:
            if fault.delay > 0:
                time.sleep(fault.delay)
            if not fault.passes_through:
                payload = fault.raw if fault.raw is not None else self._envelope(fault.code, fault.message)
                return Reply(fault.http_status, payload, {"Content-Type": "application/json"})
        try:
            if path.startswith("/api/v2/token/"):
                return self._token_endpoint(method, path, query)
            if path == "/open/authorize":
                return self._authorize(method, query)
            if path.startswith("/media/"):
                return self._media(method, path)
            return self._partner_api(method, path, query, headers, body)
        except Refused as refused:
            return self._json(refused.status, refused.code, refused.message)

    def _partner_api(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                     body: bytes) -> Reply:
        if query.get("app_key") != self.app_key:
            raise Refused(INVALID, "Invalid app_key")
        try:
            skew = time.time() - int(query.get("timestamp", ""))
        except ValueError:
            raise Refused(INVALID, "Invalid timestamp") from None
        if skew > 300 or skew < -30:
            raise Refused(INVALID, "Invalid timestamp: expired or in the future")
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        signed_body = b"" if multipart else body  # §2.1 step 4: a multipart body is not signed
        if not hmac.compare_digest(query.get("sign", ""), self.expected_sign(path, query, signed_body)):
            raise Refused(106001, "Invalid sign")
        token = headers.get("x-tts-access-token", "")
        with self._lock:
            expiry = self._token_expiry.get(token)
            if expiry is not None and self.clock() >= expiry and token in self.tokens:
                self.tokens.discard(token)
                self.expired_tokens.add(token)
            if token in self.expired_tokens:
                raise Refused(EXPIRED, "Expired credentials", 401)
            if token not in self.tokens:
                raise Refused(INVALID, "Invalid access token")
        if path == IMAGE_UPLOAD:
            if "shop_cipher" in query:
                raise Refused(INVALID, "Unexpected identifier: shop_cipher is not required")
            if method != "POST":
                raise Refused(36009010, "Invalid method", 405)
            if not multipart:
                raise Refused(36009022, "Invalid content-type: multipart/form-data expected")
            return self._json(200, 0, "Success", self._upload_image(headers["content-type"], body))
        if path.startswith("/authorization/"):
            if "shop_cipher" in query:
                raise Refused(INVALID, "Unexpected identifier: shop_cipher is not required")
            if path != "/authorization/202309/shops":
                raise Refused(36009009, "Invalid path", 404)
            if method != "GET":
                raise Refused(36009010, "Invalid method", 405)
            with self._lock:
                shops = [dict(s) for s in self.shops if self._covers(token, s["id"])]
            return self._json(200, 0, "Success", {"shops": shops})
        if "shop_cipher" not in query:
            raise Refused(106013, "shop_cipher is required")
        with self._lock:
            shop = self._shop_by_cipher(query["shop_cipher"])
            if shop is None or not self._covers(token, shop["id"]):
                raise Refused(INVALID, "Invalid shop_cipher")
        for route_method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if method != route_method:
                raise Refused(36009010, "Invalid method", 405)
            return self._json(200, 0, "Success", getattr(self, handler)(shop["id"], query, body, *match.groups()))
        raise Refused(36009009, "Invalid path", 404)

    def _upload_image(self, content_type: str, body: bytes) -> dict:
        """Product image upload (the reject images' ``image_id`` is the ``uri`` it returns, reference §1.5)."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        data = parts.get("data")
        payload = data.get_payload(decode=True) if data is not None else b""
        if not payload:
            raise Refused(INVALID, "Invalid param: data (the image file) is required")
        if not payload.startswith((b"\xff\xd8", b"\x89PNG", b"RIFF")):
            raise Refused(INVALID, "Invalid param: data is not a JPEG, PNG or WebP image")
        uri = f"tos-maliva-i-o3syd03w52-us/{hashlib.sha256(payload).hexdigest()[:32]}"
        with self._lock:
            self.uploaded_images[uri] = len(payload)
        return {"uri": uri, "url": f"{self.url}/media/{uri.rsplit('/', 1)[1]}.jpg", "width": 0, "height": 0,
                "use_case": "ATTRIBUTE_IMAGE"}

    # --- shops and tokens -----------------------------------------------------------------------------
    def _covers(self, token: str, shop_id: str) -> bool:
        allowed = self.token_shops.get(token)
        return allowed is None or shop_id in allowed

    def _shop_by_cipher(self, cipher: str) -> dict | None:
        shop = next((s for s in self.shops if s.get("cipher") == cipher), None)
        if shop is None and cipher == self.shop_cipher and self.shops:
            return self.shops[0]
        return shop

    def _default_shop_id(self) -> str:
        shop = self._shop_by_cipher(self.shop_cipher)
        return shop["id"] if shop else ""

    def _shop(self, shop_id: str | None) -> dict:
        wanted = shop_id or self._default_shop_id()
        for shop in self.shops:
            if shop["id"] == wanted:
                return shop
        raise ValueError(f"no shop {wanted!r} in this emulator")

    def add_shop(self, region: str = "MY", seller_type: str = "LOCAL", name: str = "") -> dict:
        """A new shop with its own id and cipher (regions: GB, MY, TH, SG, PH, VN, ID, US)."""
        if region not in REGIONS:
            raise ValueError(f"unknown region {region!r}")
        with self._lock:
            number = len(self.shops) + 1
            shop = {"id": self._new_id("shop"), "name": name or f"Emu {REGIONS[region][0]} {number}",
                    "region": region, "seller_type": seller_type,
                    "cipher": f"ROW_{self._random.getrandbits(96):024x}",
                    "code": f"{region}{self._random.getrandbits(32):08X}"}
            self.shops.append(shop)
            return dict(shop)

    def issue_auth_code(self, shop_ids: list[str] | None = None) -> str:
        """A single-use authorization code for these shops (all shops when None)."""
        with self._lock:
            known = [s["id"] for s in self.shops]
            wanted = list(known if shop_ids is None else shop_ids)
            unknown = set(wanted) - set(known)
            if unknown or not wanted:
                raise ValueError(f"unknown or no shops: {sorted(unknown)}")
            code = f"ROW_{secrets.token_urlsafe(24)}"
            self._auth_codes[code] = wanted
            return code

    def expire_token(self, token: str) -> None:
        """From now on this access token answers 105002."""
        with self._lock:
            self.tokens.discard(token)
            self.expired_tokens.add(token)

    def _token_endpoint(self, method: str, path: str, query: dict[str, str]) -> Reply:
        if path not in ("/api/v2/token/get", "/api/v2/token/refresh"):
            raise Refused(36009009, "Invalid path", 404)
        if method != "GET":
            raise Refused(36009010, "Invalid method", 405)
        if query.get("app_key") != self.app_key or query.get("app_secret") != self.app_secret:
            raise Refused(INVALID, "Invalid app_key")
        with self._lock:
            if path == "/api/v2/token/get":
                if query.get("grant_type") != "authorized_code":
                    raise Refused(INVALID, "Invalid param: grant_type")
                shop_ids = self._auth_codes.pop(query.get("auth_code", ""), None)
                if shop_ids is None:
                    raise Refused(INVALID_AUTH, "Invalid auth code: unknown or already used")
            else:
                if query.get("grant_type") != "refresh_token":
                    raise Refused(INVALID, "Invalid param: grant_type")
                grant = self._refresh_grants.pop(query.get("refresh_token", ""), None)
                if grant is None or self.clock() >= grant["expire"]:
                    raise Refused(INVALID_AUTH, "Invalid refresh token: unknown, used or expired")
                self.tokens.discard(grant["access_token"])
                self.expired_tokens.add(grant["access_token"])
                shop_ids = grant["shop_ids"]
            data = self._grant(shop_ids)
        return self._json(200, 0, "success", data)

    def _grant(self, shop_ids: list[str]) -> dict:
        now = int(self.clock())
        access, refresh = f"ROW_{secrets.token_urlsafe(32)}", f"ROW_{secrets.token_urlsafe(32)}"
        shops = [s for s in self.shops if s["id"] in shop_ids]
        open_id = hashlib.sha256(",".join(sorted(shop_ids)).encode()).hexdigest()[:32]
        self.tokens.add(access)
        self.token_shops[access] = set(shop_ids)
        self._token_expiry[access] = now + ACCESS_LIFETIME
        self._refresh_grants[refresh] = {"access_token": access, "shop_ids": shop_ids,
                                         "expire": now + REFRESH_LIFETIME}
        return {"access_token": access, "access_token_expire_in": now + ACCESS_LIFETIME,
                "refresh_token": refresh, "refresh_token_expire_in": now + REFRESH_LIFETIME,
                "open_id": open_id, "seller_name": shops[0]["name"] if shops else "",
                "seller_base_region": shops[0]["region"] if shops else "", "user_type": 0,
                "granted_scopes": list(GRANTED_SCOPES)}

    def _authorize(self, method: str, query: dict[str, str]) -> Reply:
        if method != "GET":
            raise Refused(36009010, "Invalid method", 405)
        if query.get("service_id") != self.service_id:
            raise Refused(INVALID, "Invalid param: service_id", 400)
        if not self.redirect_uri:
            raise Refused(INVALID, "Invalid param: no redirect URI is registered for this service", 400)
        code = self.issue_auth_code()
        joiner = "&" if "?" in self.redirect_uri else "?"
        location = f"{self.redirect_uri}{joiner}{urlencode({'code': code, 'state': query.get('state', '')})}"
        return Reply(302, b"", {"Location": location, "Content-Type": "text/plain"})

    # --- data: returns, cancellations, records, reasons -----------------------------------------------
    def _new_id(self, kind: str) -> str:
        """A digit string unique in this emulator (19 digits, prefixed by kind). Call with the lock held."""
        self._serial += 1
        return f"{ID_PREFIXES[kind]}{self._serial:015d}"

    def _money(self, amount: Decimal, currency: str) -> str:
        return str(amount.quantize(Decimal(1) if currency in WHOLE_CURRENCIES else Decimal("0.01")))

    def _line_items(self, shop: dict, kind: str, count: int) -> tuple[list[dict], Decimal]:
        _name, currency, rate = REGIONS.get(shop.get("region", "GB"), REGIONS["GB"])
        items, subtotal = [], Decimal(0)
        for product, sku_name, seller_sku, price in self._random.sample(CATALOGUE, count):
            amount = Decimal(self._money(price * rate, currency))
            sku_id = self._new_id("sku")
            subtotal += amount
            items.append({f"{kind}_line_item_id": self._new_id(f"{kind}_line"),
                          "order_line_item_id": self._new_id("line"), "sku_id": sku_id, "sku_name": sku_name,
                          "seller_sku": seller_sku, "product_name": product,
                          "product_image": {"url": f"/media/product-{sku_id}.jpg", "width": IMAGE_SIZE,
                                            "height": IMAGE_SIZE},
                          "refund_amount": {"currency": currency, "refund_total": self._money(amount, currency),
                                            "refund_subtotal": self._money(amount, currency),
                                            "refund_shipping_fee": self._money(Decimal(0), currency),
                                            "refund_tax": self._money(Decimal(0), currency)}})
        return items, subtotal

    def _refund_amount(self, currency: str, subtotal: Decimal, shipping: Decimal) -> dict:
        zero = self._money(Decimal(0), currency)
        return {"currency": currency, "refund_total": self._money(subtotal + shipping, currency),
                "refund_subtotal": self._money(subtotal, currency),
                "refund_shipping_fee": self._money(shipping, currency), "refund_tax": zero,
                "retail_delivery_fee": zero, "buyer_service_fee": zero}

    def add_return(self, shop_id: str | None = None, **overrides: Any) -> dict:
        """A realistic §1.3 return of this shop (the default shop when None); ``overrides`` replace fields."""
        with self._lock:
            shop = self._shop(shop_id)
            now = int(self.clock())
            return_type = overrides.get("return_type") or self._random.choice(RETURN_TYPES)
            status = overrides.get("return_status") or (
                REPLACEMENT_PENDING if return_type == "REPLACEMENT" else PENDING)
            created = int(overrides.get("create_time", now))
            _name, currency, rate = REGIONS.get(shop.get("region", "GB"), REGIONS["GB"])
            items, subtotal = self._line_items(shop, "return", self._random.choice((1, 1, 1, 2)))
            shipping = Decimal(0)
            if return_type == "REFUND":  # the parcel never came: the shipping fee is refunded too
                shipping = Decimal(self._money(Decimal("2.99") * rate, currency))
            reason, reason_text = RETURN_REASONS.get(return_type, RETURN_REASONS["REFUND"])  # odd types are allowed
            platform = self._random.random() < 0.7
            row = {
                "return_id": self._new_id("return"), "order_id": self._new_id("order"),
                "return_type": return_type, "return_status": status, "role": "BUYER",
                "return_reason": reason, "return_reason_text": reason_text,
                "seller_next_action_response": [],
                "shipment_type": "PLATFORM" if platform else "BUYER_ARRANGE",
                "handover_method": self._random.choice(("DROP_OFF", "PICKUP")) if platform else "DROP_OFF",
                "return_method": ("PLATFORM_SHIPPED" if platform else "BUYER_SHIPPED")
                if return_type == "RETURN_AND_REFUND" else "",
                "can_buyer_keep_item": False, "is_quick_refund": False, "is_combined_return": False,
                "refund_amount": self._refund_amount(currency, subtotal, shipping),
                "return_line_items": items,
                "create_time": created, "update_time": max(created, int(overrides.get("update_time", created))),
                "buyer_user_id": self._new_id("buyer"),
            }
            if status in ("BUYER_SHIPPED_ITEM", SUCCESS, "RETURN_OR_REFUND_REQUEST_COMPLETE",
                          "REJECT_RECEIVE_PACKAGE") and return_type == "RETURN_AND_REFUND":
                row.update(self._return_parcel(shop))
            row["seller_next_action_response"] = self._next_actions("return", row, row["update_time"])
            row.update({k: v for k, v in overrides.items() if k != "shop_id"})
            row["shop_id"] = shop["id"]
            self.returns.append(row)
            return copy.deepcopy(row)

    def add_cancellation(self, shop_id: str | None = None, **overrides: Any) -> dict:
        """A realistic §1.8 buyer cancellation request of this shop; ``overrides`` replace fields."""
        with self._lock:
            shop = self._shop(shop_id)
            now = int(self.clock())
            created = int(overrides.get("create_time", now))
            currency = REGIONS.get(shop.get("region", "GB"), REGIONS["GB"])[1]
            items, subtotal = self._line_items(shop, "cancel", self._random.choice((1, 1, 2)))
            reason, reason_text = self._random.choice(CANCEL_REASONS)
            row = {
                "cancel_id": self._new_id("cancel"), "order_id": self._new_id("order"),
                "cancel_type": overrides.get("cancel_type", "BUYER_CANCEL"),
                "cancel_status": overrides.get("cancel_status", CANCEL_PENDING), "role": "BUYER",
                "cancel_reason": reason, "cancel_reason_text": reason_text,
                "seller_next_action_response": [],
                "refund_amount": self._refund_amount(currency, subtotal, Decimal(0)),
                "cancel_line_items": items, "should_replenish_stock": True,
                "create_time": created, "update_time": max(created, int(overrides.get("update_time", created))),
                "buyer_user_id": self._new_id("buyer"),
            }
            row["seller_next_action_response"] = self._next_actions("cancellation", row, row["update_time"])
            row.update({k: v for k, v in overrides.items() if k != "shop_id"})
            row["shop_id"] = shop["id"]
            self.cancellations.append(row)
            return copy.deepcopy(row)

    def _return_parcel(self, shop: dict) -> dict:
        region = shop.get("region", "GB")
        provider_id, provider_name = RETURN_CARRIERS.get(region, RETURN_CARRIERS["GB"])
        return {"return_tracking_number": _s10(self._random, region), "return_provider_id": provider_id,
                "return_provider_name": provider_name}

    @staticmethod
    def _next_actions(kind: str, row: dict, since: int) -> list[dict]:
        if kind == "cancellation":
            if row.get("cancel_status") == CANCEL_PENDING and row.get("cancel_type") == "BUYER_CANCEL":
                return [{"action": "SELLER_RESPOND_CANCEL", "deadline": since + 2 * DAY}]
            return []
        status = row.get("return_status")
        if status == PENDING:
            action = "SELLER_RESPOND_REFUND" if row.get("return_type") == "REFUND" else "SELLER_RESPOND_RETURN"
            return [{"action": action, "deadline": since + 2 * DAY}]
        if status == REPLACEMENT_PENDING:
            return [{"action": "SELLER_RESPOND_REPLACEMENT", "deadline": since + DAY}]
        if status == "BUYER_SHIPPED_ITEM":
            return [{"action": "SELLER_RESPOND_RECEIVE_PACKAGE", "deadline": since + 2 * DAY}]
        return []

    def _find(self, object_id: str) -> tuple[str, dict]:
        for row in self.returns:
            if str(row.get("return_id")) == object_id:
                return "return", row
        for row in self.cancellations:
            if str(row.get("cancel_id")) == object_id:
                return "cancellation", row
        raise KeyError(object_id)

    def _shop_of(self, row: dict) -> str:
        return row.get("shop_id") or self._default_shop_id()

    def _find_in_shop(self, object_id: str, shop_id: str, kind: str | None = None) -> tuple[str, dict] | None:
        try:
            found_kind, row = self._find(object_id)
        except KeyError:
            return None
        if self._shop_of(row) != shop_id or (kind is not None and found_kind != kind):
            return None
        return found_kind, row

    def _apply_status(self, kind: str, row: dict, status: str) -> None:
        """Set the status, bump update_time (never backwards, always forwards) and the seller's next action."""
        row["return_status" if kind == "return" else "cancel_status"] = status
        row["update_time"] = max(int(self.clock()), int(row.get("update_time") or 0) + 1)
        if kind == "return" and status == "BUYER_SHIPPED_ITEM" and not row.get("return_tracking_number"):
            row.update(self._return_parcel(self._shop(self._shop_of(row))))
        row["seller_next_action_response"] = self._next_actions(kind, row, row["update_time"])

    def set_status(self, object_id: str, status: str) -> dict:
        """Move a return or cancellation to ``status`` (as the buyer, carrier or platform would); posts the type
        12 / 11 webhook to ``webhook_url`` when one is set. Returns the row as stored."""
        with self._lock:
            kind, row = self._find(object_id)
            if status not in (RETURN_STATUSES if kind == "return" else CANCEL_STATUSES):
                raise ValueError(f"{status!r} is not a {kind} status")
            self._apply_status(kind, row, status)
            event = self._event(kind, row)
            url, snapshot = self.webhook_url, copy.deepcopy(row)
        if url:
            self._notify(url, *event)
        return snapshot

    def status_of(self, object_id: str) -> str:
        """The current status of a return or cancellation (KeyError when unknown)."""
        with self._lock:
            kind, row = self._find(object_id)
            return str(row.get("return_status" if kind == "return" else "cancel_status"))

    def add_records(self, return_id: str, records: list[dict]) -> None:
        """Append §1.6 records (after the default BUYER record) to a return's timeline."""
        with self._lock:
            kind, row = self._find(return_id)
            if kind != "return":
                raise ValueError(f"{return_id} is not a return")
            self._records_of(row).extend(copy.deepcopy(records))

    def _records_of(self, row: dict) -> list[dict]:
        return_id = str(row["return_id"])
        if return_id not in self.records:
            image = {"url": f"/media/evidence-{return_id}-1.jpg", "width": IMAGE_SIZE, "height": IMAGE_SIZE}
            record = {"event": "ORDER_RETURN", "role": "BUYER",
                      "description": "Buyer requested a " + (
                          "return and refund" if row.get("return_type") == "RETURN_AND_REFUND" else
                          "replacement" if row.get("return_type") == "REPLACEMENT" else "refund"),
                      "reason_text": row.get("return_reason_text", ""), "note": "Please see the photos.",
                      "images": [image], "videos": [], "create_time": int(row.get("create_time") or 0)}
            if row.get("return_type") == "RETURN_AND_REFUND":
                record["videos"] = [{"url": f"/media/evidence-{return_id}-1.mp4",
                                     "cover": f"/media/evidence-{return_id}-cover.jpg",
                                     "width": IMAGE_SIZE, "height": IMAGE_SIZE, "duration_millis": 8000}]
            self.records[return_id] = [record]
        return self.records[return_id]

    def set_reject_reasons(self, object_id: str, reasons: list[dict | str]) -> None:
        """The reasons offered to reject this return or cancellation (``{name, text}`` or bare names)."""
        with self._lock:
            self._find(object_id)
            self._reasons_by_id[object_id] = [r if isinstance(r, dict) else {"name": r, "text": r}
                                               for r in reasons]

    def _reasons_for(self, kind: str, object_id: str) -> list[dict]:
        default = RETURN_REJECT_REASONS if kind == "return" else CANCEL_REJECT_REASONS
        return copy.deepcopy(self._reasons_by_id.get(object_id, default))

    def set_eligibility(self, object_id: str, decisions: dict[str, tuple[bool, int, str]]) -> None:
        """Override decision eligibility for one id: ``{decision: (eligible, ineligible_code, reason)}``; the
        decision endpoints obey the override too."""
        with self._lock:
            self._find(object_id)
            self._eligibility.setdefault(object_id, {}).update(decisions)

    def _eligible(self, kind: str, row: dict, decision: str) -> tuple[bool, int, str]:
        object_id = str(row["return_id"] if kind == "return" else row["cancel_id"])
        override = self._eligibility.get(object_id, {}).get(decision)
        if override is not None:
            return override
        if kind == "cancellation":
            status, kind_type = row.get("cancel_status"), row.get("cancel_type")
            if decision not in CANCEL_EFFECTS:
                return False, BUSINESS_REFUSAL, f"{decision} does not apply to a cancellation"
            if kind_type != "BUYER_CANCEL" or status != CANCEL_PENDING:
                return False, BUSINESS_REFUSAL, (f"{decision} is not allowed for a {kind_type} cancellation "
                                                 f"in status {status}")
            return True, 0, ""
        status, return_type = row.get("return_status"), row.get("return_type")
        rule = RETURN_RULES.get(decision)
        if rule is None:
            return False, BUSINESS_REFUSAL, f"{decision} does not apply to a return"
        types, statuses = rule
        if return_type not in types or status not in statuses:
            return False, BUSINESS_REFUSAL, (f"{decision} is not allowed for a {return_type} return "
                                             f"in status {status}")
        if decision == "REJECT_RECEIVED_PACKAGE" and row.get("is_quick_refund"):
            return False, BUSINESS_REFUSAL, "a quick refund's received package cannot be rejected"
        return True, 0, ""

    # --- endpoints ------------------------------------------------------------------------------------
    def _search_returns(self, shop_id: str, query: dict[str, str], body: bytes) -> dict:
        return self._search("return", shop_id, query, body)

    def _search_cancellations(self, shop_id: str, query: dict[str, str], body: bytes) -> dict:
        return self._search("cancellation", shop_id, query, body)

    def _search(self, kind: str, shop_id: str, query: dict[str, str], body: bytes) -> dict:
        id_field, list_key, smallest = (("return_id", "return_orders", 10) if kind == "return" else
                                        ("cancel_id", "cancellations", 1))
        try:
            size = int(query.get("page_size", "10"))
            filters = json.loads(body or b"{}")
        except ValueError:
            raise _invalid("page_size or body") from None
        if not smallest <= size <= 50:
            raise _invalid(f"page_size must be {smallest}-50")
        if not isinstance(filters, dict):
            raise _invalid("body must be an object")
        sort_field, sort_order = query.get("sort_field", "create_time"), query.get("sort_order", "ASC")
        if sort_field not in ("create_time", "update_time"):
            raise _invalid("sort_field")
        if sort_order not in ("ASC", "DESC"):
            raise _invalid("sort_order")
        keep = self._filter(kind, filters)
        fingerprint = json.dumps(filters, sort_keys=True, separators=(",", ":"))
        with self._lock:
            rows = [r for r in (self.returns if kind == "return" else self.cancellations)
                    if self._shop_of(r) == shop_id and keep(r)]
            rows.sort(key=lambda r: (int(r.get(sort_field) or 0), str(r.get(id_field))), reverse=sort_order == "DESC")
            token = query.get("page_token", "")
            offset = self._page_tokens.get((kind, shop_id, fingerprint, token), None) if token else 0
            if offset is None:
                raise _invalid("page_token")
            page = rows[offset:offset + size]
            following = ""
            if offset + size < len(rows):
                following = secrets.token_urlsafe(18) if self.opaque_page_tokens else str(offset + size)
                self._page_tokens[(kind, shop_id, fingerprint, following)] = offset + size
            return {list_key: [self._public(r) for r in page], "total_count": len(rows),
                    "next_page_token": following}

    def _filter(self, kind: str, filters: dict) -> Callable[[dict], bool]:
        lists = ({"return_ids": "return_id", "order_ids": "order_id", "buyer_user_ids": "buyer_user_id",
                  "return_types": "return_type", "return_status": "return_status",
                  "seller_proposed_return_type": "seller_proposed_return_type",
                  "arbitration_status": "arbitration_status"} if kind == "return" else
                 {"cancel_ids": "cancel_id", "order_ids": "order_id", "buyer_user_ids": "buyer_user_id",
                  "cancel_types": "cancel_type", "cancel_status": "cancel_status"})
        times = ("create_time", "update_time")
        known = set(lists) | {f"{t}_{b}" for t in times for b in ("ge", "lt")} | {"locale"}
        unknown = sorted(set(filters) - known)
        if unknown:
            raise _invalid(f"unknown filter {unknown[0]}")
        wanted: dict[str, set[str]] = {}
        for name, column in lists.items():
            if name not in filters:
                continue
            values = filters[name]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise _invalid(name)
            wanted[column] = {_cancel_status(v) for v in values} if column == "cancel_status" else set(values)
        bounds: dict[str, tuple[float, float]] = {}
        for column in times:
            ge, lt = filters.get(f"{column}_ge"), filters.get(f"{column}_lt")
            for bound in (ge, lt):
                if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                    raise _invalid(f"{column} bounds must be unix seconds")
            if ge is not None or lt is not None:
                bounds[column] = (ge if ge is not None else float("-inf"), lt if lt is not None else self.clock())

        def keep(row: dict) -> bool:
            for column, values in wanted.items():
                value = str(row.get(column) or "")
                if (_cancel_status(value) if column == "cancel_status" else value) not in values:
                    return False
            return all(low <= int(row.get(column) or 0) < high for column, (low, high) in bounds.items())

        return keep

    def _public(self, row: dict) -> dict:
        """What the platform sends: without our shop_id, with media paths as absolute URLs of this server."""
        base = self.url if self._server is not None else ""

        def absolute(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: absolute(v) for k, v in value.items() if k != "shop_id"}
            if isinstance(value, list):
                return [absolute(v) for v in value]
            if isinstance(value, str) and value.startswith("/media/"):
                return base + value
            return value

        return absolute(row)

    def _records(self, shop_id: str, query: dict[str, str], body: bytes, return_id: str) -> dict:
        with self._lock:
            found = self._find_in_shop(return_id, shop_id, "return")
            if found is None:
                raise _invalid("return_id")
            return {"records": [self._public(r) for r in self._records_of(found[1])]}

    def _reject_reasons(self, shop_id: str, query: dict[str, str], body: bytes) -> dict:
        object_id = query.get("return_or_cancel_id", "")
        with self._lock:
            found = self._find_in_shop(object_id, shop_id) if object_id else None
            if found is None:
                raise _invalid("return_or_cancel_id")
            return {"reasons": self._reasons_for(found[0], object_id)}

    def _decision_eligibility(self, shop_id: str, query: dict[str, str], body: bytes) -> dict:
        object_id = query.get("return_or_cancel_id", "")
        asked = [d for d in query.get("check_decisions", "").split(",") if d] or list(CHECKABLE_DECISIONS)
        if any(d not in CHECKABLE_DECISIONS for d in asked):
            raise _invalid("check_decisions")
        with self._lock:
            found = self._find_in_shop(object_id, shop_id) if object_id else None
            if found is None:
                raise _invalid("return_or_cancel_id")
            kind, row = found
            answers = []
            for decision in asked:
                eligible, code, reason = self._eligible(kind, row, decision)
                reasons = self._reasons_for(kind, object_id) if eligible and decision.startswith("REJECT_") else []
                answers.append({"decision": decision, "eligible": eligible, "ineligible_code": code,
                                "ineligible_reason": reason, "available_reject_reasons": reasons})
            return {"decisions": answers}

    def _decide_return(self, shop_id: str, query: dict[str, str], body: bytes, return_id: str, action: str) -> dict:
        return self._decide("return", shop_id, query, body, return_id, action)

    def _decide_cancellation(self, shop_id: str, query: dict[str, str], body: bytes, cancel_id: str,
                             action: str) -> dict:
        return self._decide("cancellation", shop_id, query, body, cancel_id, action)

    def _decide(self, kind: str, shop_id: str, query: dict[str, str], body: bytes, object_id: str,
                action: str) -> dict:
        key = query.get("idempotency_key", "")
        if not 1 <= len(key) <= 255:
            raise _invalid("idempotency_key")
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            raise _invalid("body is not JSON") from None
        if not isinstance(payload, dict):
            raise _invalid("body must be an object")
        decision = self._decision_of(kind, action, payload)
        fingerprint = json.dumps([kind, object_id, action, payload], sort_keys=True)
        with self._lock:
            found = self._find_in_shop(object_id, shop_id, kind)
            if found is None:
                raise _invalid("return_id" if kind == "return" else "cancel_id")
            row = found[1]
            earlier = self._idempotency.get(key)
            if earlier is not None:
                if earlier["fingerprint"] != fingerprint:
                    raise _invalid("idempotency_key was already used for a different request")
                return copy.deepcopy(earlier["data"])
            eligible, _code, why = self._eligible(kind, row, decision)
            if not eligible:
                raise Refused(BUSINESS_REFUSAL, f"Decision refused: {why}")
            if action == "reject":
                names = {r["name"] for r in self._reasons_for(kind, object_id)}
                if payload["reject_reason"] not in names:
                    raise Refused(BUSINESS_REFUSAL, f"Decision refused: reject_reason {payload['reject_reason']!r} "
                                                    "is not offered for this request")
                images = payload.get("images") or []
                unknown = [i.get("image_id") for i in images if not isinstance(i, dict)
                           or i.get("image_id") not in self.uploaded_images]
                if unknown:  # image ids are the uris the image upload returned (reference §1.5)
                    raise _invalid(f"images: not uploaded image ids {unknown[:3]}")
            status_before = row["return_status" if kind == "return" else "cancel_status"]
            if kind == "return":
                status_after = RETURN_EFFECTS[decision]
                if decision == "APPROVE_RETURN" and payload.get("buyer_keep_item"):
                    status_after = SUCCESS
                if decision == "OFFER_PARTIAL_REFUND":
                    self._check_partial_refund(row, payload.get("partial_refund"))
                    row["seller_proposed_return_type"] = "PARTIAL_REFUND"
                    row["partial_refund"] = dict(payload["partial_refund"])
            else:
                status_after = CANCEL_EFFECTS[decision]
            self._apply_status(kind, row, status_after)
            self.decisions.append({"key": key, "kind": kind, "id": object_id, "action": decision,
                                   "body": copy.deepcopy(payload), "status_before": status_before,
                                   "status_after": status_after})
            data: dict = {}
            self._idempotency[key] = {"fingerprint": fingerprint, "data": data}
            url, event = self.webhook_url, self._event(kind, row)
        if url:
            threading.Thread(target=self._notify, args=(url, *event), name="tiktok-emulator-webhook",
                             daemon=True).start()
        return copy.deepcopy(data)

    @staticmethod
    def _decision_of(kind: str, action: str, payload: dict) -> str:
        """The decision a request asks for, after checking its body's shape (36009004 when malformed)."""
        if kind == "return":
            decision = payload.get("decision")
            allowed = APPROVE_DECISIONS if action == "approve" else REJECT_DECISIONS
            if decision not in allowed:
                raise _invalid("decision")
            if "buyer_keep_item" in payload and not isinstance(payload["buyer_keep_item"], bool):
                raise _invalid("buyer_keep_item")
        else:
            decision = "APPROVE_REQUEST_CANCEL" if action == "approve" else "REJECT_REQUEST_CANCEL"
        if action == "reject":
            if not isinstance(payload.get("reject_reason"), str) or not payload["reject_reason"]:
                raise _invalid("reject_reason")
            if not isinstance(payload.get("comment", ""), str):
                raise _invalid("comment")
            images = payload.get("images", [])
            if not isinstance(images, list) or not all(
                    isinstance(i, dict) and isinstance(i.get("image_id"), str) for i in images):
                raise _invalid("images")
        return decision

    @staticmethod
    def _check_partial_refund(row: dict, offer: Any) -> None:
        refund = row.get("refund_amount") or {}
        if not isinstance(offer, dict) or offer.get("currency") != refund.get("currency"):
            raise _invalid("partial_refund")
        try:
            amount, total = Decimal(offer.get("amount")), Decimal(str(refund.get("refund_total", "0")))
            within = amount.is_finite() and Decimal(0) < amount <= total
        except (InvalidOperation, TypeError):
            within = False
        if not isinstance(offer.get("amount"), str) or not within:
            raise _invalid("partial_refund.amount: a string, more than 0 and at most the refund total")

    # --- webhooks ---------------------------------------------------------------------------------------
    def _event(self, kind: str, row: dict) -> tuple[int, str, dict]:
        """(type, shop_id, data) of the status-change webhook for this row (§1.10)."""
        if kind == "return":
            data = {"order_id": row.get("order_id"), "return_id": row.get("return_id"),
                    "return_role": row.get("role", "BUYER"), "return_type": row.get("return_type"),
                    "return_status": row.get("return_status"), "create_time": row.get("create_time"),
                    "update_time": row.get("update_time")}
            return 12, self._shop_of(row), data
        data = {"order_id": row.get("order_id"), "cancel_id": row.get("cancel_id"),
                "cancellations_role": row.get("role", "BUYER"), "cancel_status": row.get("cancel_status"),
                "update_time": row.get("update_time")}
        return 11, self._shop_of(row), data

    def webhook_body(self, type: int, shop_id: str, data: dict, notification_id: str | None = None) -> bytes:
        if notification_id is None:
            with self._lock:
                notification_id = self._new_id("notification")
        return json.dumps({"type": type, "tts_notification_id": notification_id, "shop_id": shop_id,
                           "timestamp": int(self.clock()), "data": data}, separators=(",", ":")).encode()

    def webhook_signature(self, body: bytes) -> str:
        """§2.4: lowercase hex HMAC-SHA256(key = app secret, message = app key + raw body)."""
        return hmac.new(self.app_secret.encode(), self.app_key.encode() + body, hashlib.sha256).hexdigest()

    def emit_webhook(self, url: str, type: int, shop_id: str, data: dict, notification_id: str | None = None,
                     signature: str | None = None) -> tuple[int, bytes]:
        """POST one signed webhook (or one with the given, possibly wrong, signature); (status, body) of the
        answer, 4xx and 5xx included. Network errors propagate. Recorded in ``webhooks_sent``."""
        body = self.webhook_body(type, shop_id, data, notification_id)
        sent = {"url": url, "type": type, "shop_id": shop_id, "body": body,
                "signature": self.webhook_signature(body) if signature is None else signature,
                "status": None, "response": b""}
        with self._lock:
            self.webhooks_sent.append(sent)
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": sent["signature"], "Content-Type": "application/json",
            "User-Agent": "TikTokShop-Webhook-Emulator"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as refused:
            status, answer = refused.code, refused.read()
            refused.close()
        with self._lock:
            sent["status"], sent["response"] = status, answer
        return status, answer

    def _notify(self, url: str, type: int, shop_id: str, data: dict) -> None:
        """The automatic webhook: a receiver that is down is the receiver's problem, as on the platform."""
        try:
            self.emit_webhook(url, type, shop_id, data)
        except OSError:
            return

    # --- answers and media ----------------------------------------------------------------------------
    @staticmethod
    def _envelope(code: int, message: str, data: dict | None = None) -> bytes:
        return json.dumps({"code": code, "message": message, "request_id": uuid.uuid4().hex,
                           "data": data or {}}).encode()

    def _json(self, status: int, code: int, message: str, data: dict | None = None) -> Reply:
        return Reply(status, self._envelope(code, message, data), {"Content-Type": "application/json"})

    def _media(self, method: str, path: str) -> Reply:
        match = MEDIA_NAME.match(path)
        if method != "GET" or match is None:
            return Reply(404, b"not found", {"Content-Type": "text/plain"})
        name, extension = match.groups()
        if extension == "jpg":
            return Reply(200, tiny_jpeg(name), {"Content-Type": "image/jpeg"})
        return Reply(200, MP4_PLACEHOLDER, {"Content-Type": "video/mp4"})

    # --- demo data --------------------------------------------------------------------------------------
    def seed_demo(self, shops: int = 3, returns: int = 40) -> None:
        """Shops in several regions (the default UK shop first) and returns / cancellations in a mix of states."""
        regions = ["MY", "TH", "SG", "PH", "VN", "ID", "US"]
        for n in range(1, shops):
            self.add_shop(regions[(n - 1) % len(regions)], "LOCAL" if n % 2 else "CROSS_BORDER")
        shop_ids = [s["id"] for s in self.shops][:max(shops, 1)]
        mixes = {"REFUND": [PENDING, PENDING, SUCCESS, "RETURN_OR_REFUND_REQUEST_COMPLETE",
                            "REFUND_OR_RETURN_REQUEST_REJECT", "RETURN_OR_REFUND_REQUEST_CANCEL"],
                 "RETURN_AND_REFUND": [PENDING, PENDING, "AWAITING_BUYER_SHIP", "BUYER_SHIPPED_ITEM",
                                       "BUYER_SHIPPED_ITEM", SUCCESS, "RETURN_OR_REFUND_REQUEST_COMPLETE",
                                       "REJECT_RECEIVE_PACKAGE"],
                 "REPLACEMENT": [REPLACEMENT_PENDING, "REPLACEMENT_REQUEST_COMPLETE"]}
        now = int(self.clock())
        for n in range(returns):
            return_type = self._random.choice(("REFUND", "REFUND", "RETURN_AND_REFUND", "RETURN_AND_REFUND",
                                               "REPLACEMENT"))
            status = self._random.choice(mixes[return_type])
            waiting = status in (PENDING, REPLACEMENT_PENDING)
            created = now - self._random.randrange(600, (DAY if waiting else 10 * DAY))
            updated = created if waiting else min(now, created + self._random.randrange(3600, 3 * DAY))
            self.add_return(shop_ids[n % len(shop_ids)], return_type=return_type, return_status=status,
                            create_time=created, update_time=updated)
        for n in range(max(1, returns // 4)):
            status = self._random.choice((CANCEL_PENDING, CANCEL_PENDING, "CANCELLATION_REQUEST_SUCCESS"))
            created = now - self._random.randrange(300, DAY)
            updated = created if status == CANCEL_PENDING else min(now, created + self._random.randrange(600, 7200))
            self.add_cancellation(shop_ids[n % len(shop_ids)], cancel_status=status, create_time=created,
                                  update_time=updated)

    # --- the server ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> TikTokEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = emulator.respond(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                                         {k.lower(): v for k, v in self.headers.items()}, body)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    return

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args):
                return

        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="tiktok-emulator",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TikTokEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _cancel_status(value: str) -> str:
    """§1.4 caveat 3: the request says CANCELLATION_REQUEST_CANCEL, the response doc CANCELLATION_REQUEST_CANCELLED."""
    return "CANCELLATION_REQUEST_CANCEL" if value == "CANCELLATION_REQUEST_CANCELLED" else value


def _s10(rnd: random.Random, region: str) -> str:
    """A UPU S10 postal tracking number with a valid check digit (as used by the region's post)."""
    serial = f"{rnd.randrange(10**8):08d}"
    remainder = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7), strict=True)) % 11
    check = 0 if remainder == 1 else 5 if remainder == 0 else 11 - remainder
    return f"R{rnd.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ')}{serial}{check}{region}"


# --- a tiny baseline JPEG, made with the standard library ---------------------------------------------------
MP4_PLACEHOLDER = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 0x200, b"isom", b"mp41")


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload


@functools.lru_cache(maxsize=256)
def tiny_jpeg(name: str) -> bytes:
    """A valid 16×16 greyscale baseline JPEG (four flat 8×8 blocks, shades from the name), a few hundred bytes.

    Quantisation is 1 everywhere and only DC coefficients are non-zero, so a block of grey ``g`` is DC
    ``8·(g − 128)``; the Huffman tables are minimal: DC categories 0–11 as 4-bit codes, AC only end-of-block.
    """
    digest = hashlib.sha256(name.encode()).digest()
    shades = [48 + digest[i] % 160 for i in range(4)]
    jfif = _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = _segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = _segment(0xC0, struct.pack(">BHHB", 8, IMAGE_SIZE, IMAGE_SIZE, 1) + b"\x01\x11\x00")
    dc_table = b"\x00" + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12))
    ac_table = b"\x10" + bytes([1] + [0] * 15) + b"\x00"
    dht = _segment(0xC4, dc_table + ac_table)
    sos = _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    bits, previous = "", 0
    for shade in shades:  # blocks in raster order: top-left, top-right, bottom-left, bottom-right
        dc = 8 * (shade - 128)
        diff, previous = dc - previous, dc
        size = abs(diff).bit_length()
        bits += format(size, "04b")
        if size:
            bits += format(diff if diff > 0 else diff + (1 << size) - 1, f"0{size}b")
        bits += "0"  # end of block: every AC coefficient is zero
    bits += "1" * (-len(bits) % 8)
    scan = bytearray()
    for i in range(0, len(bits), 8):
        byte = int(bits[i:i + 8], 2)
        scan.append(byte)
        if byte == 0xFF:
            scan.append(0x00)
    return b"\xff\xd8" + jfif + dqt + sof + dht + sos + bytes(scan) + b"\xff\xd9"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local TikTok Shop Partner API for the demo.")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--shops", type=int, default=3)
    parser.add_argument("--returns", type=int, default=40)
    parser.add_argument("--redirect-uri", default="", help="where /open/authorize sends the browser back")
    parser.add_argument("--webhook-url", default="", help="where status changes are posted (types 12 and 11)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    emulator = TikTokEmulator(redirect_uri=args.redirect_uri, webhook_url=args.webhook_url,
                              opaque_page_tokens=True, seed=args.seed)
    emulator.seed_demo(shops=max(1, args.shops), returns=max(0, args.returns))
    emulator.start(port=args.port)
    code = emulator.issue_auth_code()
    print(f"TikTok Shop emulator on {emulator.url}")
    print(f"  app key     {emulator.app_key}")
    print(f"  app secret  {emulator.app_secret}")
    print(f"  service id  {emulator.service_id}")
    print(f"  authorize   {emulator.url}/open/authorize?service_id={emulator.service_id}&state=demo")
    print(f"  auth code   {code}  (single use; GET {emulator.url}/api/v2/token/get)")
    for shop in emulator.shops:
        print(f"  shop        {shop['id']}  {shop['region']}  {shop['seller_type']:<12}  cipher {shop['cipher']}")
    print(f"  data        {len(emulator.returns)} returns, {len(emulator.cancellations)} cancellations")
    print("Ctrl-C stops it.", flush=True)
    # SIGTERM (a process manager, the test) stops it as cleanly as Ctrl-C: a shell without job control starts
    # background commands with SIGINT ignored, and the child inherits that.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
