"""The tracking aggregators' protocols (AfterShip, 17TRACK): the carrier-check client, webhook signatures,
webhook bodies, and their status vocabularies mapped onto ``ShipmentStatus``.

Only the outside world's formats live here; what to do with an answer is in ``logistics.services``.

The carrier check speaks AfterShip's "get a tracking" call (reference §3.2):
``GET {TRACKING_AGGREGATOR_URL}/trackings/{slug}/{tracking_number}`` with header ``as-api-key``; a carrier
without an AfterShip slug is looked up by number (``GET …/trackings?tracking_numbers=…``). 200 → found,
404 (meta.code 4004) or an empty list → not found, 429/5xx/timeouts/connection errors → transient, other
4xx (bad key, bad request) → permanent. stdlib urllib only: the project does not ship ``requests``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from logistics.models import ShipmentStatus
from stores import errors
from stores.errors import AppError

S = ShipmentStatus
MAX_BODY = 2 * 1024 * 1024  # an aggregator answer larger than this is not a tracking

# --- status vocabularies --------------------------------------------------------------------------
AFTERSHIP_TAGS = {
    "pending": S.REGISTERED, "inforeceived": S.INFO_RECEIVED, "intransit": S.IN_TRANSIT,
    "outfordelivery": S.OUT_FOR_DELIVERY, "attemptfail": S.FAILED_ATTEMPT, "delivered": S.DELIVERED,
    "availableforpickup": S.AVAILABLE_FOR_PICKUP, "exception": S.EXCEPTION, "expired": S.EXPIRED,
}
# Exception subtags that mean the parcel goes (went) back to its sender.
AFTERSHIP_RETURN_SUBTAGS = {"exception_010", "exception_011"}

SEVENTEENTRACK_STATUSES = {
    "notfound": S.REGISTERED, "inforeceived": S.INFO_RECEIVED, "intransit": S.IN_TRANSIT, "expired": S.EXPIRED,
    "availableforpickup": S.AVAILABLE_FOR_PICKUP, "outfordelivery": S.OUT_FOR_DELIVERY,
    "deliveryfailure": S.FAILED_ATTEMPT, "delivered": S.DELIVERED, "exception": S.EXCEPTION,
}
SEVENTEENTRACK_RETURN_SUBS = {"exception_returning", "exception_returned"}
# 17TRACK event "stage" values, used when an event carries no sub_status.
SEVENTEENTRACK_STAGES = {
    "inforeceived": S.INFO_RECEIVED, "pickedup": S.IN_TRANSIT, "departure": S.IN_TRANSIT, "arrival": S.IN_TRANSIT,
    "availableforpickup": S.AVAILABLE_FOR_PICKUP, "outfordelivery": S.OUT_FOR_DELIVERY,
    "delivered": S.DELIVERED, "returning": S.RETURNED_TO_SENDER, "returned": S.RETURNED_TO_SENDER,
    "deliveryfailure": S.FAILED_ATTEMPT,
}


def status_from_aftership(tag: str, subtag: str = "") -> str:
    """AfterShip tag (+ subtag) → our status; an unknown tag is ``unknown`` (the raw value is kept)."""
    tag = (tag or "").strip().lower() or (subtag or "").split("_")[0].strip().lower()
    if tag == "exception" and (subtag or "").strip().lower() in AFTERSHIP_RETURN_SUBTAGS:
        return S.RETURNED_TO_SENDER
    return AFTERSHIP_TAGS.get(tag, S.UNKNOWN)


def status_from_17track(status: str, sub_status: str = "") -> str:
    """17TRACK main status (+ sub-status) → our status; unknown → ``unknown``."""
    sub = (sub_status or "").strip().lower()
    main = (status or "").strip().lower() or sub.split("_")[0]
    if main == "exception" and sub in SEVENTEENTRACK_RETURN_SUBS:
        return S.RETURNED_TO_SENDER
    return SEVENTEENTRACK_STATUSES.get(main, S.UNKNOWN)


def parse_time(value) -> dt.datetime | None:
    """Aggregator times are ISO 8601; one without an offset (AfterShip's checkpoint local time) is taken as UTC."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = parse_datetime(value.strip().replace(" ", "T", 1))
        except ValueError:
            return None
    else:
        return None
    if parsed is None:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)


def _text(value, limit: int) -> str:
    return str(value or "").strip()[:limit]


def aftership_events(checkpoints) -> list[dict[str, Any]]:
    """AfterShip checkpoints → our event dicts (checkpoints without a readable time are dropped)."""
    out = []
    for cp in checkpoints if isinstance(checkpoints, list) else []:
        if not isinstance(cp, dict):
            continue
        when = parse_time(cp.get("checkpoint_time"))
        if when is None:
            continue
        tag, subtag = _text(cp.get("tag"), 32), _text(cp.get("subtag"), 32)
        location = cp.get("location") or ", ".join(
            str(cp[k]) for k in ("city", "state", "country_name") if cp.get(k))
        out.append({"occurred_at": when, "status": status_from_aftership(tag, subtag),
                    "raw_status": (subtag or tag)[:64], "message": _text(cp.get("message"), 500),
                    "location": _text(location, 200)})
    return out


# --- the carrier check (AfterShip "get a tracking") -------------------------------------------------
class AggregatorError(Exception):
    """The aggregator could not answer. ``transient`` failures are retried; the others are not."""

    def __init__(self, detail: str, *, transient: bool = True):
        super().__init__(detail)
        self.detail = detail[:500]
        self.transient = transient


@dataclass(frozen=True)
class Lookup:
    found: bool
    tag: str = ""
    subtag: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return status_from_aftership(self.tag, self.subtag) if self.tag else None


def get_tracking(number: str, *, slug: str, base_url: str, api_key: str, timeout: float) -> Lookup:
    """Ask the aggregator about one number. Raises AggregatorError when it cannot tell."""
    base = base_url.rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise AggregatorError(f"TRACKING_AGGREGATOR_URL must be http(s), got {base_url!r}", transient=False)
    if slug:
        url = f"{base}/trackings/{urllib.parse.quote(slug, safe='')}/{urllib.parse.quote(number, safe='')}"
    else:
        url = f"{base}/trackings?{urllib.parse.urlencode({'tracking_numbers': number})}"
    request = urllib.request.Request(url, headers={  # noqa: S310 - scheme checked above
        "as-api-key": api_key, "Accept": "application/json", "User-Agent": "aftersales-control-tower"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            body = response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:
            return Lookup(found=False)
        raise AggregatorError(f"HTTP {exc.code}", transient=exc.code == 429 or exc.code >= 500) from None
    except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
        raise AggregatorError(f"unreachable: {exc}") from None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AggregatorError("answer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise AggregatorError("answer has no data object")
    if (data.get("meta") or {}).get("code") == 4004:
        return Lookup(found=False)
    tracking = data["data"].get("tracking")
    if tracking is None and isinstance(data["data"].get("trackings"), list):
        matches = [t for t in data["data"]["trackings"]
                   if isinstance(t, dict) and str(t.get("tracking_number", "")).upper() == number]
        tracking = matches[0] if matches else None
        if tracking is None:
            return Lookup(found=False)
    if not isinstance(tracking, dict):
        raise AggregatorError("answer has no tracking object")
    return Lookup(found=True, tag=_text(tracking.get("tag"), 32), subtag=_text(tracking.get("subtag"), 32),
                  events=aftership_events(tracking.get("checkpoints")))


# --- webhooks ----------------------------------------------------------------------------------------
def sign_aftership(secret: str, body: bytes) -> str:
    """``aftership-hmac-sha256``: base64 HMAC-SHA256 of the raw body with the webhook secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def sign_17track(api_key: str, body: bytes) -> str:
    """``sign``: lowercase hex SHA-256 (a plain hash, not an HMAC) of ``raw_body + "/" + api_key``."""
    return hashlib.sha256(body + b"/" + api_key.encode()).hexdigest()


def signature_ok(provider: str, secret: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison on the raw bytes; an empty secret or signature never passes."""
    if not secret or not signature:
        return False
    if provider == "aftership":
        expected, given = sign_aftership(secret, body), signature.strip()
    else:
        expected, given = sign_17track(secret, body), signature.strip().lower()
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


@dataclass(frozen=True)
class HookUpdate:
    """One webhook, provider-neutral: apply ``events``/``latest_status`` to the shipments with this number."""

    event_id: str
    tracking_number: str
    events: list[dict[str, Any]]
    latest_status: str | None
    latest_raw_status: str
    ignored: bool = False  # an event type that carries no tracking change (still deduplicated)


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AppError(errors.ERR_HOOK_002, detail="body is not JSON") from None
    if not isinstance(data, dict):
        raise AppError(errors.ERR_HOOK_002, detail="body is not a JSON object")
    return data


def parse_aftership(body: bytes) -> HookUpdate:
    """AfterShip Tracking webhook: ``{event, event_id, msg: {tracking_number, tag, subtag, checkpoints}}``."""
    data = _json_object(body)
    msg = data.get("msg")
    event_id = _text(data.get("event_id"), 128)
    if not event_id or not isinstance(msg, dict) or not _text(msg.get("tracking_number"), 64):
        raise AppError(errors.ERR_HOOK_002, detail="event_id and msg.tracking_number are required")
    tag, subtag = _text(msg.get("tag"), 32), _text(msg.get("subtag"), 32)
    return HookUpdate(
        event_id=event_id, tracking_number=_text(msg["tracking_number"], 64),
        events=aftership_events(msg.get("checkpoints")),
        latest_status=status_from_aftership(tag, subtag) if tag else None, latest_raw_status=(subtag or tag)[:64],
        ignored=data.get("event", "tracking_update") != "tracking_update",
    )


def seventeentrack_event_id(namespace: str, data: dict, latest: dict, status: dict) -> str:
    """17TRACK sends no event id, so one is derived: the same tracking state delivered twice is one event.

    sha256 over the endpoint (two agencies may track the same parcel with their own 17TRACK accounts), the
    number and carrier, the latest event's UTC time and the status with its sub-status.
    """
    parts = [namespace, str(data.get("number", "")).upper(), str(data.get("carrier", "")),
             str(latest.get("time_utc") or latest.get("time_iso") or ""), str(status.get("status", "")),
             str(status.get("sub_status", ""))]
    return "17t:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def parse_17track(body: bytes, *, namespace: str) -> HookUpdate:
    """17TRACK v2 webhook: ``{event, data: {number, carrier, track_info: {latest_status, latest_event, tracking}}}``."""
    payload = _json_object(body)
    data = payload.get("data")
    if not isinstance(data, dict) or not _text(data.get("number"), 64):
        raise AppError(errors.ERR_HOOK_002, detail="data.number is required")
    info = data.get("track_info") if isinstance(data.get("track_info"), dict) else {}
    status = info.get("latest_status") if isinstance(info.get("latest_status"), dict) else {}
    latest = info.get("latest_event") if isinstance(info.get("latest_event"), dict) else {}
    events: list[dict[str, Any]] = []
    providers = (info.get("tracking") or {}).get("providers") if isinstance(info.get("tracking"), dict) else None
    for provider in providers if isinstance(providers, list) else []:
        for ev in (provider.get("events") if isinstance(provider, dict) else None) or []:
            event = _17track_event(ev) if isinstance(ev, dict) else None
            if event is not None:
                events.append(event)
    raw_latest = _text(status.get("sub_status") or status.get("status"), 64)
    if not events and latest:
        event = _17track_event({**latest, "sub_status": raw_latest})
        if event is not None:
            events.append(event)
    latest_status = status_from_17track(status.get("status", ""), status.get("sub_status", "")) if raw_latest else None
    return HookUpdate(
        event_id=seventeentrack_event_id(namespace, data, latest, status), tracking_number=_text(data["number"], 64),
        events=events, latest_status=latest_status, latest_raw_status=raw_latest,
        ignored=payload.get("event", "TRACKING_UPDATED") != "TRACKING_UPDATED" or not info,
    )


def _17track_event(ev: dict) -> dict[str, Any] | None:
    when = parse_time(ev.get("time_utc")) or parse_time(ev.get("time_iso"))
    if when is None:
        return None
    sub, stage = _text(ev.get("sub_status"), 64), _text(ev.get("stage"), 64)
    status = status_from_17track("", sub) if sub else SEVENTEENTRACK_STAGES.get(stage.lower(), S.UNKNOWN)
    return {"occurred_at": when, "status": status, "raw_status": sub or stage,
            "message": _text(ev.get("description"), 500), "location": _text(ev.get("location"), 200)}
