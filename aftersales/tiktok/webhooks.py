"""TikTok Shop webhooks (reference §1.10, §2.4): verify, record once, answer fast; a task re-fetches.

``receive`` runs inside the request and makes no platform call: it finds the partner app named in the URL,
checks ``Authorization`` = hex HMAC-SHA256(app secret, app key + raw body) on the exact bytes received, reads
the envelope ``{type, tts_notification_id, shop_id, timestamp, data}`` and inserts one ``WebhookDelivery``.
The row's unique (app, notification id) makes a replay — or two deliveries racing — a no-op ("duplicate").
Deliveries without ``tts_notification_id`` are keyed on (shop_id, type, object id, status, update_time),
hashed under a prefix no real id may carry, so a derived key never collides with a platform id.

Only a shop linked to the app's own agency is matched: a shop id of another agency is "unknown_shop" and is
never processed. After-sales types (11 cancellations, 12 returns, 64/65/67 after-sales/RMA/refund) of a linked
store are handed to ``process_webhook`` after commit; every other type is kept as "ignored".

``process_webhook`` never trusts the payload as the truth: it re-fetches the object named in it through the
normal sync (``aftersales.tiktok.sync``), or asks for a normal pull when nothing in it can be re-fetched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from typing import Any

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from aftersales.tiktok.models import PartnerApp, StoreLink, WebhookDelivery
from aftersales.tiktok.signing import verify_webhook
from stores import errors
from stores.errors import AppError

log = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome
DUPLICATE = "duplicate"  # a replay: answered 200, no row, no effect (not a stored outcome)

CANCELLATION_STATUS_CHANGE, RETURN_STATUS_CHANGE = 11, 12
AFTERSALES_REQUEST_STATUS_UPDATE, RMA_STATUS_UPDATE, REFUND_SUCCESS = 64, 65, 67
HANDLED_TYPES = frozenset({CANCELLATION_STATUS_CHANGE, RETURN_STATUS_CHANGE, AFTERSALES_REQUEST_STATUS_UPDATE,
                           RMA_STATUS_UPDATE, REFUND_SUCCESS})

# Keys we derive start with this; a platform id that does too is refused, so the two can never collide.
DERIVED_PREFIX = "derived:"
MAX_NOTIFICATION_ID = 128  # WebhookDelivery.notification_id
MAX_SHOP_ID = 64  # WebhookDelivery.shop_id / Store.shop_id
MAX_OBJECT_ID = 64
MAX_TYPE = 2**31 - 1

# Transient platform failures are retried by Celery (with backoff); anything else fails the delivery at once.
TRANSIENT = frozenset({errors.ERR_TTS_002.code, errors.ERR_TTS_004.code})
MAX_RETRIES = 5
BACKOFF_FACTOR, BACKOFF_MAX = 5, 600
# Database hiccups retry like aftersales.tasks.DB_RETRY (not imported from there: that module imports this one).
DB_RETRY = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": BACKOFF_FACTOR,
            "retry_backoff_max": BACKOFF_MAX, "retry_jitter": True, "max_retries": MAX_RETRIES,
            "ignore_result": True}


# --- receiving (in the request) ------------------------------------------------------------------------------
def receive(app_id: uuid.UUID | str, *, authorization: str | None, body: bytes) -> str:
    """Verify and record one delivery; returns its outcome: received, ignored, unknown_shop or duplicate.

    Unknown or inactive app, or a missing or wrong signature → ERR_HOOK_001 (nothing written, a log line
    without the body); a signed body that is not the documented envelope → ERR_HOOK_002.
    """
    app = _active_app(app_id)
    if app is None:
        log.warning("TikTok Shop webhook refused: unknown or inactive partner app %r", str(app_id)[:64])
        raise AppError(errors.ERR_HOOK_001)
    try:
        secret = app.app_secret.reveal()
    except AppError:  # ERR_TTS_005: answered 500, so the platform delivers again once the keys are fixed
        log.error("TikTok Shop webhook not verified: the secret of app %s cannot be decrypted", app.public_id)
        raise
    # An app without a secret would accept a signature anyone can compute (HMAC under the empty key).
    if not secret or not verify_webhook(app.app_key, secret, body, authorization):
        log.warning("TikTok Shop webhook refused: %s (app %s)",
                    "the app has no secret" if not secret else
                    "no signature" if not authorization else "bad signature", app.public_id)
        raise AppError(errors.ERR_HOOK_001)
    envelope = parse(body)
    kind, shop_id = envelope["type"], envelope["shop_id"]
    link = (StoreLink.objects.unscoped()
            .filter(agency_id=app.agency_id, store__agency_id=app.agency_id, store__shop_id=shop_id)
            .only("pk", "store_id").first())
    if kind not in HANDLED_TYPES:
        outcome, detail = Outcome.IGNORED, f"type {kind} is not used"
    elif link is None:
        outcome, detail = Outcome.UNKNOWN_SHOP, "shop not connected to this agency"
    else:
        outcome, detail = Outcome.RECEIVED, ""
    with transaction.atomic():
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    agency_id=app.agency_id, app=app, notification_id=envelope["notification_id"], type=kind,
                    shop_id=shop_id, store_id=link.store_id if link else None, payload=envelope["payload"],
                    outcome=outcome, detail=detail)
        except IntegrityError:
            log.info("TikTok Shop webhook replayed: type %s, notification %s", kind, envelope["notification_id"])
            return DUPLICATE
        except DataError:
            # e.g. a NUL character, which PostgreSQL's jsonb cannot hold.
            raise AppError(errors.ERR_HOOK_002) from None
        if outcome == Outcome.RECEIVED:
            pk = delivery.pk
            transaction.on_commit(lambda: _enqueue(pk))
    log.info("TikTok Shop webhook %s: type %s, delivery %s", outcome, kind, delivery.pk)
    return str(outcome)


def _active_app(app_id: uuid.UUID | str) -> PartnerApp | None:
    try:
        public_id = app_id if isinstance(app_id, uuid.UUID) else uuid.UUID(str(app_id))
    except ValueError:
        return None
    return PartnerApp.objects.unscoped().filter(public_id=public_id, is_active=True).first()


def _enqueue(delivery_id: int) -> None:
    """After commit. The delivery is recorded either way: if the broker is down, the 200 still stands and the
    row stays "received" (processed_at empty) for a re-run, instead of a 500 whose retry would be a duplicate."""
    try:
        process_webhook.delay(delivery_id)
    except Exception:
        log.exception("TikTok Shop webhook delivery %s recorded but not queued", delivery_id)


def parse(body: bytes) -> dict[str, Any]:
    """The checked envelope plus its dedupe key, or ERR_HOOK_002.

    ``type`` int, ``shop_id`` non-empty string, ``data`` object, ``timestamp`` int; ``tts_notification_id``
    optional (string or number).
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AppError(errors.ERR_HOOK_002) from None
    if not isinstance(payload, dict):
        raise AppError(errors.ERR_HOOK_002)
    try:
        json.dumps(payload, ensure_ascii=False).encode()  # a lone surrogate ("\ud800") is valid JSON, not text
    except UnicodeEncodeError:
        raise AppError(errors.ERR_HOOK_002) from None
    kind, shop_id, data, timestamp = (payload.get(k) for k in ("type", "shop_id", "data", "timestamp"))
    if not (_is_int(kind) and 0 <= kind <= MAX_TYPE and _is_int(timestamp) and isinstance(data, dict)
            and _is_text(shop_id, MAX_SHOP_ID)):
        raise AppError(errors.ERR_HOOK_002)
    given = payload.get("tts_notification_id")
    if given is None or given == "":
        notification_id = derived_key(shop_id, kind, data)
    elif _is_int(given) or isinstance(given, str):
        notification_id = str(given).strip()
        if not _is_text(notification_id, MAX_NOTIFICATION_ID) or notification_id.startswith(DERIVED_PREFIX):
            raise AppError(errors.ERR_HOOK_002)
    else:
        raise AppError(errors.ERR_HOOK_002)
    return {"type": kind, "shop_id": shop_id, "data": data, "timestamp": timestamp,
            "notification_id": notification_id, "payload": payload}


def derived_key(shop_id: str, kind: int, data: dict[str, Any]) -> str:
    """(shop_id, type, return_id/cancel_id, status, update_time), hashed under DERIVED_PREFIX (reference §1.10).

    A retry of the same change carries the same tuple even if its envelope ``timestamp`` differs. A payload
    without any of these (e.g. type 7) is keyed on its whole ``data`` instead.
    """
    object_id = _first(data, "return_id", "cancel_id", "order_id")
    status = _first(data, "return_status", "cancel_status", "status", "order_status")
    update_time = data.get("update_time")
    basis: list[Any] = [shop_id, kind, object_id, status, update_time]
    if object_id is None and status is None and update_time is None:
        basis = [shop_id, kind, data]
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return DERIVED_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: Any, max_length: int) -> bool:
    """A non-empty string that fits its column (PostgreSQL text cannot hold NUL: such a value is unreadable)."""
    if not (isinstance(value, str) and 0 < len(value) <= max_length and "\x00" not in value):
        return False
    try:
        value.encode()  # a lone surrogate (valid JSON, "\ud800") cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def _object_id(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if _is_int(value) or isinstance(value, str):
        text = str(value).strip()
        if _is_text(text, MAX_OBJECT_ID):
            return text
    return None


# --- processing (in a worker) --------------------------------------------------------------------------------
def process(delivery_id: int, *, may_retry: bool = False) -> str:
    """Act on one received delivery by re-fetching what it names; idempotent (a finished delivery is left alone).

    Returns the delivery's outcome. A platform or catalogue error marks it "failed" with the code in ``detail``
    and is re-raised; a transient one (ERR_TTS_002/004) with ``may_retry`` leaves it open for the retry.
    """
    delivery = (WebhookDelivery.objects.unscoped().filter(pk=delivery_id)
                .only("pk", "type", "store_id", "payload", "outcome", "processed_at").first())
    if delivery is None:
        log.warning("TikTok Shop webhook delivery %s no longer exists", delivery_id)
        return "missing"
    if delivery.processed_at is not None or delivery.outcome not in (Outcome.RECEIVED, Outcome.FAILED):
        return str(delivery.outcome)
    try:
        if delivery.store_id is None:  # the store was deleted since
            raise AppError(errors.ERR_TTS_006, detail="store no longer linked")
        detail = _dispatch(delivery.store_id, delivery.type, delivery.payload.get("data") or {})
    except AppError as exc:
        final = not (may_retry and exc.code in TRANSIENT)
        platform = getattr(exc, "platform_code", None)
        text = exc.code + (f" (platform {platform})" if platform is not None else "")
        if exc.detail:
            text += f": {exc.detail}"
        _finish(delivery.pk, Outcome.FAILED, text if final else f"{text}; retrying", final=final)
        raise
    _finish(delivery.pk, Outcome.PROCESSED, detail, final=True)
    return str(Outcome.PROCESSED)


def _dispatch(store_id: int, kind: int, data: dict[str, Any]) -> str:
    from aftersales.tiktok import sync

    return_id, cancel_id = _object_id(data, "return_id"), _object_id(data, "cancel_id")
    if kind == CANCELLATION_STATUS_CHANGE:
        target = ("cancellations", cancel_id) if cancel_id else None
    elif return_id:  # 12, and 64/65/67 when they name a return
        target = ("returns", return_id)
    elif cancel_id and kind != RETURN_STATUS_CHANGE:  # 64/65 about a cancellation
        target = ("cancellations", cancel_id)
    else:
        target = None
    if target is None:
        sync.request_sync(store_id, trigger="webhook")
        return "nothing to re-fetch by id: sync requested"
    kind_name, object_id = target
    result = sync.refresh_objects(store_id, kind_name, [object_id], trigger="webhook")
    counts = json.dumps(result, sort_keys=True, default=str) if result else "{}"
    return f"{kind_name} {object_id} re-fetched: {counts}"[:500]


def _finish(delivery_id: int, outcome: str, detail: str, *, final: bool) -> None:
    fields: dict[str, Any] = {"outcome": outcome, "detail": detail[:500]}
    if final:
        fields["processed_at"] = timezone.now()
    # Only an open delivery is finished: a second worker on the same delivery records nothing twice.
    WebhookDelivery.objects.unscoped().filter(pk=delivery_id, processed_at__isnull=True).update(**fields)


@shared_task(name="aftersales.tiktok.process_webhook", bind=True, acks_late=True, soft_time_limit=110,
             time_limit=120, **DB_RETRY)
def process_webhook(self, delivery_id: int) -> str:
    """After a webhook was recorded: re-fetch what it names (idempotent). Transient platform failures retry
    with exponential backoff and jitter (at most MAX_RETRIES); any other failure is kept on the delivery."""
    retries = self.request.retries or 0
    try:
        return process(delivery_id, may_retry=retries < MAX_RETRIES)
    except AppError as exc:
        if exc.code in TRANSIENT and retries < MAX_RETRIES:
            countdown = get_exponential_backoff_interval(BACKOFF_FACTOR, retries, BACKOFF_MAX, full_jitter=True)
            raise self.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES) from None
        log.warning("TikTok Shop webhook delivery %s failed: %s", delivery_id, exc.code)
        return str(Outcome.FAILED)


def stale_delivery_ids(minutes: int = 10) -> list[int]:
    """Deliveries not finished a while after they arrived: still "received" (their task was never queued: the
    broker was down) or failed-and-retrying for longer than every retry takes (the retry message was lost)."""
    now = timezone.now()
    pending = WebhookDelivery.objects.unscoped().filter(processed_at__isnull=True)
    received = pending.filter(outcome=WebhookDelivery.Outcome.RECEIVED,
                              received_at__lt=now - dt.timedelta(minutes=minutes))
    retrying = pending.filter(outcome=WebhookDelivery.Outcome.FAILED, received_at__lt=now - dt.timedelta(hours=1))
    return list((received | retrying).order_by("pk").values_list("pk", flat=True)[:500])
