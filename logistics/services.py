"""Return-parcel tracking: register a number, apply carrier updates, check with the aggregator, watch for the
first scan (物流断链), receive carrier webhooks.

Same pattern as ``aftersales.services`` (DESIGN rule 4): lock the request, check, write, log, enqueue after
commit; a refusal is logged with its code after the rollback. Locks are always taken request → shipment, so
a person, a webhook and the carrier check queue behind each other instead of deadlocking; the sweep never
waits at all (SKIP LOCKED on both rows).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales.models import ActorKind, AfterSalesRequest
from aftersales.oplog import BUYER, SYSTEM, Performer
from aftersales.services import clear_stalled, lock_ticket, log_logistics, mark_stalled
from aftersales.states import FINAL_STATES, RequestType
from logistics import aggregator, tracking
from logistics.models import (
    SCANNED_STATUSES,
    Carrier,
    CarrierCheckAttempt,
    ReturnShipment,
    ShipmentStatus,
    TrackingEvent,
    TrackingNumberChange,
    WebhookEndpoint,
    WebhookReceipt,
)
from stores import errors
from stores.errors import AppError
from stores.models import MarketPolicy
from stores.permissions import StorePerm
from stores.services import require_store_perm

log = logging.getLogger(__name__)

RETURN_TYPES = frozenset({RequestType.RETURN_AND_REFUND, RequestType.EXCHANGE})
DEFAULT_SCAN_WATCH_HOURS = 48
FALLBACK_CARRIER = "other"


# --- carriers ----------------------------------------------------------------------------------------
def carrier_for_market(code: str, market_code: str) -> Carrier:
    """An active carrier serving the market, or ERR_LOG_205."""
    carrier = Carrier.objects.filter(code=str(code or "").strip().lower(), is_active=True).first()
    if carrier is None or market_code not in carrier.markets:
        raise AppError(errors.ERR_LOG_205, fields={"carrier": [
            _("“%(carrier)s” is not an active carrier for %(market)s.") % {"carrier": str(code or ""),
                                                                        "market": market_code}]})
    return carrier


def _key(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(text or "").lower())


def resolve_carrier_code(hint: str, market_code: str) -> str:
    """A carrier named by the buyer or the platform (``return_provider_name``): match code, name or AfterShip
    slug case- and punctuation-insensitively among the market's carriers; otherwise "other" (unverified)."""
    wanted = _key(hint)
    if wanted:
        for carrier in Carrier.objects.filter(is_active=True, markets__contains=[market_code]):
            if wanted in {_key(carrier.code), _key(carrier.name), _key(carrier.aftership_slug)} - {""}:
                return carrier.code
    return FALLBACK_CARRIER


def scan_watch_hours(market_id: int) -> int:
    hours = MarketPolicy.objects.filter(market_id=market_id).values_list("scan_watch_hours", flat=True).first()
    return DEFAULT_SCAN_WATCH_HOURS if hours is None else hours


# --- registering a return tracking number (同步更新物流单号) ------------------------------------------
def register_tracking(performer: Performer, ticket_id, *, carrier_code: str, tracking_number: str,
                      source: str = "manual") -> ReturnShipment:
    """Register or replace the return parcel's number; the old one is kept in the history.

    The same number and carrier again is a no-op. A new number restarts the scan watch and the carrier check.
    """
    payload: dict[str, Any] = {"carrier": str(carrier_code or "")[:32],
                               "tracking_number": str(tracking_number or "")[:64], "source": source}
    locked_pk: int | None = None
    try:
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)
            locked_pk = ticket.pk
            if performer.actor is not None:
                require_store_perm(performer.actor, ticket.store, StorePerm.MANAGE_LOGISTICS)
            if ticket.type not in RETURN_TYPES:
                raise AppError(errors.ERR_LOG_208)
            carrier = carrier_for_market(carrier_code, ticket.store.market.code)
            number = tracking.normalise(tracking_number, carrier)
            payload.update(carrier=carrier.code, tracking_number=number[:64])
            verdict = tracking.validate(number, carrier)
            return _save_shipment(performer, ticket, carrier, number, verdict, payload)
    except AppError as exc:
        if locked_pk is not None:
            log_logistics(locked_pk, performer=performer, action="tracking_number", payload=payload, error=exc)
        raise


def _save_shipment(performer: Performer, ticket: AfterSalesRequest, carrier: Carrier, number: str,
                   verdict: tracking.Verdict, payload: dict) -> ReturnShipment:
    now = timezone.now()
    shipment = (ReturnShipment.objects.for_agency(ticket.agency_id).select_for_update(of=("self",))
                .select_related("carrier").filter(ticket=ticket).first())
    if shipment is not None:
        if shipment.tracking_number == number and shipment.carrier_id == carrier.pk:
            return shipment
        payload["previous"] = {"carrier": shipment.carrier.code if shipment.carrier else "",
                               "tracking_number": shipment.tracking_number}
        TrackingNumberChange.objects.create(shipment=shipment, carrier_id=shipment.carrier_id,
                                            tracking_number=shipment.tracking_number, replaced_at=now,
                                            replaced_by_id=performer.user_id)
    else:
        shipment = ReturnShipment(agency_id=ticket.agency_id, ticket=ticket)
    shipment.carrier, shipment.tracking_number, shipment.format_check = carrier, number, verdict.format_check
    shipment.registered_at = now
    shipment.scan_due_at = now + dt.timedelta(hours=scan_watch_hours(ticket.store.market_id))
    shipment.first_scan_at = shipment.stalled_at = shipment.status_at = None
    shipment.status = ShipmentStatus.REGISTERED
    shipment.validation, shipment.validation_attempts = ReturnShipment.Validation.PENDING, 0
    shipment.save()
    if ticket.stalled_at is not None:
        clear_stalled(ticket.pk, detail={"reason": "new_tracking_number", "tracking_number": number})
    payload.update(format_check=verdict.format_check, scan_due_at=shipment.scan_due_at.isoformat())
    log_logistics(ticket.pk, performer=performer, action="tracking_number", payload=payload)
    shipment_id = shipment.pk
    transaction.on_commit(lambda: _enqueue_check(shipment_id, number), robust=True)
    return shipment


def _enqueue_check(shipment_id: int, number: str) -> None:
    from logistics.tasks import check_tracking_number

    check_tracking_number.delay(shipment_id, number)


def register_reported_tracking(ticket_id: int, *, tracking_number: str, carrier_hint: str = "",
                               source: str) -> ReturnShipment:
    """A number the buyer gave (buyer shipped, or the platform's return payload): the named carrier when we
    know it in the store's market, else "other" (format unverified)."""
    market = (AfterSalesRequest.objects.unscoped().filter(pk=ticket_id)
              .values_list("store__market__code", flat=True).first())
    if market is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return register_tracking(BUYER, ticket_id, carrier_code=resolve_carrier_code(carrier_hint, market),
                             tracking_number=tracking_number, source=source)


# --- carrier updates ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateResult:
    new_events: int
    status_changed: bool
    first_scan: bool


def _event(raw: dict) -> dict | None:
    when = aggregator.parse_time(raw.get("occurred_at"))
    if when is None:
        return None
    status = raw.get("status")
    return {"occurred_at": when, "status": status if status in ShipmentStatus.values else ShipmentStatus.UNKNOWN,
            "raw_status": str(raw.get("raw_status") or "")[:64], "message": str(raw.get("message") or "")[:500],
            "location": str(raw.get("location") or "")[:200]}


def apply_tracking_update(shipment_id: int, *, source: str, events: list[dict], latest_status: str | None = None,
                          latest_raw_status: str = "") -> UpdateResult:
    """Record carrier checkpoints (deduplicated) and the newest status; the first scan clears the watch.

    Idempotent: the same update twice adds nothing and logs nothing. An update older than the status we
    hold adds its events but does not move the status back.
    """
    ticket_id = ReturnShipment.objects.unscoped().filter(pk=shipment_id).values_list("ticket_id", flat=True).first()
    if ticket_id is None:
        raise AppError(errors.ERR_NOT_FOUND)
    incoming = [e for e in (_event(raw) for raw in events) if e]
    if latest_status is not None and latest_status not in ShipmentStatus.values:
        latest_status = ShipmentStatus.UNKNOWN
    performer = Performer(ActorKind.SYSTEM, label=str(TrackingEvent.Source(source).label))
    with transaction.atomic():
        ticket = lock_ticket(SYSTEM, ticket_id)
        shipment = ReturnShipment.objects.unscoped().select_for_update().get(pk=shipment_id)
        keys = set(TrackingEvent.objects.filter(
            shipment=shipment, occurred_at__in={e["occurred_at"] for e in incoming},
        ).values_list("occurred_at", "raw_status", "message"))
        fresh = []
        for e in incoming:
            key = (e["occurred_at"], e["raw_status"], e["message"])
            if key not in keys:
                keys.add(key)
                fresh.append(TrackingEvent(shipment=shipment, source=source, **e))
        TrackingEvent.objects.bulk_create(fresh)

        before = shipment.status
        newest = max(incoming, key=lambda e: e["occurred_at"]) if incoming else None
        status = latest_status or (newest["status"] if newest else None)
        when = newest["occurred_at"] if newest else timezone.now()
        if status and (shipment.status_at is None or when >= shipment.status_at):
            shipment.status, shipment.status_at = status, when
        scans = [e["occurred_at"] for e in incoming if e["status"] in SCANNED_STATUSES]
        if not scans and latest_status in SCANNED_STATUSES:
            scans = [when]
        first_scan = shipment.first_scan_at is None and bool(scans)
        if first_scan:
            shipment.first_scan_at, shipment.scan_due_at, shipment.stalled_at = min(scans), None, None
        shipment.save()
        detail = {"shipment": str(shipment.public_id), "tracking_number": shipment.tracking_number,
                  "source": source}
        if first_scan and ticket.stalled_at is not None:
            clear_stalled(ticket.pk, detail={**detail, "reason": "first_scan",
                                             "first_scan_at": shipment.first_scan_at.isoformat()})
        if shipment.status != before:
            raw = latest_raw_status if latest_status else (newest["raw_status"] if newest else "")
            log_logistics(ticket.pk, performer=performer, action="tracking_update", payload={
                **detail, "from": before, "to": shipment.status, "raw_status": raw,
                "at": shipment.status_at.isoformat()})
    return UpdateResult(new_events=len(fresh), status_changed=shipment.status != before, first_scan=first_scan)


# --- the carrier check (aggregator) ---------------------------------------------------------------------
@dataclass(frozen=True)
class CheckOutcome:
    outcome: str  # valid / invalid / retry / failed / skipped
    detail: str = ""


def retry_countdown(retries: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base · 2^retries)), at least one second."""
    ceiling = min(settings.TRACKING_CHECK_BACKOFF_MAX_S, settings.TRACKING_CHECK_BACKOFF_S * 2 ** retries)
    return max(1.0, (rng or random.SystemRandom()).uniform(0, ceiling))


def _attempt(shipment: ReturnShipment, number: str, attempt: int, outcome: str, *, code: str = "",
             detail: str = "") -> CheckOutcome:
    CarrierCheckAttempt.objects.create(shipment=shipment, tracking_number=number[:64], attempt=attempt,
                                       at=timezone.now(), outcome=outcome, error_code=code, detail=detail[:500])
    return CheckOutcome(outcome, detail)


def check_tracking_number(shipment_id: int, tracking_number: str, *, attempt: int,
                          last_attempt: bool) -> CheckOutcome:
    """Ask the aggregator whether the carrier knows the number; every attempt leaves a CarrierCheckAttempt.

    Skipped (validation stays pending) when the number changed meanwhile, it was already decided, or no
    aggregator is configured (TRACKING_AGGREGATOR_URL empty, e.g. local development). Not found is
    permanent (ERR_LOG_206); transient failures return "retry" until the last attempt (then ERR_LOG_207).
    """
    shipment = ReturnShipment.objects.unscoped().select_related("carrier").filter(pk=shipment_id).first()
    if shipment is None:
        return CheckOutcome("skipped", "shipment no longer exists")
    skip = _skip_reason(shipment, tracking_number)
    if skip:
        return _attempt(shipment, tracking_number, attempt, "skipped", detail=skip)
    if not settings.TRACKING_AGGREGATOR_URL:
        return _attempt(shipment, tracking_number, attempt, "skipped", detail="no aggregator configured")
    lookup: aggregator.Lookup | None = None
    failure: aggregator.AggregatorError | None = None
    try:  # outside any transaction: no row stays locked while we wait for the network
        lookup = aggregator.get_tracking(
            tracking_number, slug=shipment.carrier.aftership_slug if shipment.carrier else "",
            base_url=settings.TRACKING_AGGREGATOR_URL, api_key=settings.TRACKING_AGGREGATOR_KEY,
            timeout=settings.TRACKING_AGGREGATOR_TIMEOUT_S)
    except aggregator.AggregatorError as exc:
        failure = exc
    with transaction.atomic():
        lock_ticket(SYSTEM, shipment.ticket_id)
        shipment = ReturnShipment.objects.unscoped().select_for_update().get(pk=shipment_id)
        skip = _skip_reason(shipment, tracking_number)
        if skip:
            return _attempt(shipment, tracking_number, attempt, "skipped", detail=skip)
        shipment.validation_attempts += 1
        payload = {"shipment": str(shipment.public_id), "tracking_number": tracking_number, "attempt": attempt}
        if failure is not None and failure.transient and not last_attempt:
            shipment.save(update_fields=["validation_attempts", "updated_at"])
            return _attempt(shipment, tracking_number, attempt, "retry", code=errors.ERR_LOG_207.code,
                            detail=failure.detail)
        if failure is not None:
            shipment.validation = ReturnShipment.Validation.FAILED
            shipment.save(update_fields=["validation", "validation_attempts", "updated_at"])
            log_logistics(shipment.ticket_id, performer=SYSTEM, action="carrier_check",
                          payload={**payload, "detail": failure.detail}, error=AppError(errors.ERR_LOG_207))
            return _attempt(shipment, tracking_number, attempt, "failed", code=errors.ERR_LOG_207.code,
                            detail=failure.detail)
        assert lookup is not None
        if not lookup.found:
            shipment.validation = ReturnShipment.Validation.INVALID
            shipment.save(update_fields=["validation", "validation_attempts", "updated_at"])
            log_logistics(shipment.ticket_id, performer=SYSTEM, action="carrier_check", payload=payload,
                          error=AppError(errors.ERR_LOG_206))
            return _attempt(shipment, tracking_number, attempt, "invalid", code=errors.ERR_LOG_206.code)
        shipment.validation = ReturnShipment.Validation.VALID
        shipment.save(update_fields=["validation", "validation_attempts", "updated_at"])
        apply_tracking_update(shipment.pk, source=TrackingEvent.Source.CARRIER_CHECK, events=lookup.events,
                              latest_status=lookup.status, latest_raw_status=lookup.subtag or lookup.tag)
        return _attempt(shipment, tracking_number, attempt, "valid", detail=lookup.tag)


def _skip_reason(shipment: ReturnShipment, number: str) -> str:
    if shipment.tracking_number != number:
        return "tracking number changed"
    if shipment.validation != ReturnShipment.Validation.PENDING:
        return f"already checked: {shipment.validation}"
    return ""


# --- the 48 h scan watch (物流断链) ------------------------------------------------------------------------
def _due(now: dt.datetime):
    # Exactly the partial index shipment_scan_due: an idle sweep is one index probe.
    return ReturnShipment.objects.unscoped().filter(scan_due_at__lte=now, first_scan_at__isnull=True,
                                                    stalled_at__isnull=True)


def sweep_scan_watch(batch: int = 500) -> int:
    """Mark every return parcel not scanned by its due time as stalled — once, even with sweeps racing.

    Rows are claimed with SKIP LOCKED on the shipment *and* its request, so a sweep never waits for a
    person or a webhook holding the request (those take request → shipment) and two sweeps never claim the
    same row. Returns the number of shipments handled.
    """
    handled = 0
    while True:
        now = timezone.now()
        if not _due(now).exists():  # the idle path: one query, no transaction
            return handled
        with transaction.atomic():
            claimed = list(_due(now).select_related("ticket", "carrier").order_by("scan_due_at", "pk")
                           .select_for_update(skip_locked=True, of=("self", "ticket"))[:batch])
            for shipment in claimed:
                _stall(shipment, now)
        handled += len(claimed)
        if len(claimed) < batch:
            return handled


def _stall(shipment: ReturnShipment, now: dt.datetime) -> None:
    ticket = shipment.ticket
    if ticket.state in FINAL_STATES:
        # Cancelled / closed / completed: nobody waits for this parcel any more, so the watch just ends.
        shipment.scan_due_at = None
        shipment.save(update_fields=["scan_due_at", "updated_at"])
        return
    shipment.stalled_at = now
    shipment.save(update_fields=["stalled_at", "updated_at"])
    detail = {"shipment": str(shipment.public_id), "tracking_number": shipment.tracking_number,
              "carrier": shipment.carrier.code if shipment.carrier else "",
              "registered_at": shipment.registered_at.isoformat(), "scan_due_at": shipment.scan_due_at.isoformat()}
    # mark_stalled logs ERR_LOG_301 once and raises the "stalled" alert (keyed by the tracking number).
    log.warning("scan watch: return parcel %s of request %s (return %s) has no carrier scan since %s",
                shipment.tracking_number, ticket.public_id, ticket.return_id, shipment.registered_at.isoformat())
    mark_stalled(ticket.pk, detail=detail)


# --- carrier webhooks ----------------------------------------------------------------------------------------
def webhook_endpoint(provider: str, public_id: str) -> WebhookEndpoint | None:
    """The agency's active endpoint named by ``?endpoint=`` (None when unknown, inactive or malformed)."""
    try:
        key = uuid.UUID(str(public_id or ""))
    except ValueError:
        return None
    return WebhookEndpoint.objects.unscoped().filter(public_id=key, provider=provider, is_active=True).first()


def receive_webhook(provider: str, endpoint_id: str, *, signature: str, body: bytes) -> str:
    """Verify, deduplicate and apply one carrier webhook; returns the receipt outcome.

    Forged or unknown endpoints → ERR_HOOK_001 (receipt "forged", nothing else); unreadable → ERR_HOOK_002.
    The receipt is inserted first in the same transaction: its unique (provider, event_id) makes a replay a
    no-op ("duplicate"), also when two deliveries race.
    """
    endpoint = webhook_endpoint(provider, endpoint_id)
    if endpoint is None or not aggregator.signature_ok(provider, endpoint.secret, body, signature):
        WebhookReceipt.objects.create(provider=provider, event_id="", outcome="forged",
                                      agency_id=endpoint.agency_id if endpoint else None,
                                      detail=("bad signature" if endpoint else "unknown endpoint")
                                      + f" (endpoint={str(endpoint_id)[:64]!r})")
        log.warning("%s webhook refused: %s", provider, "bad signature" if endpoint else "unknown endpoint")
        raise AppError(errors.ERR_HOOK_001)
    if provider == WebhookEndpoint.Provider.AFTERSHIP:
        update = aggregator.parse_aftership(body)
    else:
        update = aggregator.parse_17track(body, namespace=str(endpoint.public_id))
    number = tracking.normalise(update.tracking_number)
    with transaction.atomic():
        try:
            with transaction.atomic():
                # AfterShip event ids are not per account: scope them to the endpoint, so one agency's
                # delivery can never make another agency's event look like a replay.
                event_id = (f"{endpoint.public_id}:{update.event_id}"
                            if provider == WebhookEndpoint.Provider.AFTERSHIP else update.event_id)
                receipt = WebhookReceipt.objects.create(provider=provider, event_id=event_id,
                                                        agency_id=endpoint.agency_id, outcome="received",
                                                        tracking_number=number[:64])
        except IntegrityError:
            return "duplicate"
        shipments = list(ReturnShipment.objects.for_agency(endpoint.agency_id).filter(tracking_number=number)
                         .order_by("pk").values_list("pk", flat=True))
        if update.ignored:
            receipt.outcome = "ignored"
        elif not shipments:
            receipt.outcome = "unknown_number"
        else:
            # One parcel may carry the returns of two requests of the same order: update each.
            for pk in shipments:
                apply_tracking_update(pk, source=provider, events=update.events, latest_status=update.latest_status,
                                      latest_raw_status=update.latest_raw_status)
            receipt.outcome, receipt.detail = "applied", f"{len(shipments)} shipment(s)"
        receipt.save(update_fields=["outcome", "detail"])
        return receipt.outcome
