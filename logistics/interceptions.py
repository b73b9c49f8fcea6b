"""物流拦截: asking the carrier to stop an outgoing (seller → buyer) parcel, and recording how it ended.

One open interception per request: the request row is locked first, so concurrent asks queue and the
second sees the first; the partial unique constraint ``interception_one_open`` backs that up for writers
that do not lock (admin, scripts) and turns a race into ERR_LOG_401 as well.

"Known delivered" (ERR_LOG_401) is decided from what the platform told us, nothing is guessed:
- the raw payload carries an order status of DELIVERED or COMPLETED (the order sync may add it);
- for an exchange, the replacement parcel counts as delivered once the request is completed
  (``replacement_delivered``), and the original parcel always was (exchanges follow delivery);
- return-and-refund requests exist only after delivery (the platform allows returns only then);
- the buyer's reason key names the delivered stage (``ecom_order_delivered_…`` in the platform's catalogue).
Refund-only requests raised while the parcel is in transit (``ecom_order_shipped_…``) are the usual case
for an interception and stay allowed, whatever their state.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales.models import AfterSalesRequest
from aftersales.oplog import Performer
from aftersales.services import lock_ticket, log_logistics
from aftersales.states import RequestType, State
from logistics.models import Carrier, Interception
from stores import errors
from stores.errors import AppError
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

REQUESTED_ACTION = "interception_requested"
OUTCOME_ACTION = "interception_outcome"
MAX_NOTE = 500
MAX_NUMBER = 64
DELIVERED_ORDER_STATUSES = frozenset({"DELIVERED", "COMPLETED"})
DELIVERED_REASON_MARKER = "order_delivered"
OUTCOMES = (Interception.Outcome.SUCCEEDED, Interception.Outcome.FAILED, Interception.Outcome.TOO_LATE)


# --- checks ------------------------------------------------------------------------------------------
def normalise_number(raw) -> str:
    """Scanners and copy-paste add spaces; carriers print numbers in upper case."""
    number = "".join(str(raw or "").split()).upper()
    if not number or len(number) > MAX_NUMBER:
        raise AppError(errors.ERR_LOG_204,
                       fields={"tracking_number": [_("1 to %(n)s letters or digits.") % {"n": MAX_NUMBER}]})
    return number


def _carrier(code, ticket: AfterSalesRequest) -> Carrier | None:
    if code in (None, ""):
        return None
    carrier = Carrier.objects.filter(code=str(code).strip().lower(), is_active=True).first()
    market = ticket.store.market.code
    if carrier is None or (carrier.markets and market not in carrier.markets):
        raise AppError(errors.ERR_LOG_205, fields={"carrier_code": [
            _("Unknown carrier, or it does not serve %(market)s.") % {"market": market}]})
    return carrier


def delivered_evidence(ticket: AfterSalesRequest, tracking_number: str) -> str | None:
    """Why the parcel is known to be delivered, or None when nothing says so (see the module docstring)."""
    raw = ticket.raw if isinstance(ticket.raw, dict) else {}
    if str(raw.get("order_status") or "").strip().upper() in DELIVERED_ORDER_STATUSES:
        return "order_status"
    if ticket.type == RequestType.EXCHANGE:
        replacement = ticket.replacement_tracking_number
        if replacement and tracking_number == replacement:
            return "replacement_delivered" if ticket.state == State.COMPLETED else None
        return "exchange_after_delivery"
    if ticket.type == RequestType.RETURN_AND_REFUND:
        return "return_after_delivery"
    if DELIVERED_REASON_MARKER in (ticket.reason_key or "").lower():
        return "reason_after_delivery"
    return None


def _delivered_error(why: str) -> AppError:
    texts = {
        "order_status": _("The platform reports the order as delivered."),
        "replacement_delivered": _("The replacement parcel has been delivered."),
        "exchange_after_delivery": _("The original parcel of an exchange has been delivered."),
        "return_after_delivery": _("Return requests are raised after delivery: the parcel has been delivered."),
        "reason_after_delivery": _("The buyer's reason says the order was delivered."),
    }
    return AppError(errors.ERR_LOG_401, detail=texts[why], data={"reason": "delivered", "evidence": why})


def _open_interception(ticket: AfterSalesRequest) -> Interception | None:
    return Interception.objects.for_agency(ticket.agency_id).filter(
        ticket=ticket, outcome=Interception.Outcome.REQUESTED).first()


def _already_open(existing: Interception | None = None) -> AppError:
    data = {"reason": "open"}
    if existing is not None:
        data["interception_id"] = str(existing.public_id)
    return AppError(errors.ERR_LOG_401, detail=_("An interception for this request is still open."), data=data)


def _log_refusal(locked_pk: int | None, performer: Performer, action: str, payload: dict, exc: AppError) -> None:
    """Refusals are logged after the rollback, in their own transaction (the lock is gone by then)."""
    if locked_pk is not None:
        log_logistics(locked_pk, performer=performer, action=action, payload=payload, error=exc)


# --- services ----------------------------------------------------------------------------------------
def request_interception(performer: Performer, ticket_id, *, tracking_number, carrier_code=None,
                         note: str = "") -> Interception:
    """Ask to stop the outgoing parcel: refused while one is open or when the parcel is known delivered."""
    payload = {"tracking_number": str(tracking_number or "")[:MAX_NUMBER], "carrier": str(carrier_code or "")}
    locked_pk: int | None = None
    try:
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)
            locked_pk = ticket.pk
            if performer.actor is not None:
                require_store_perm(performer.actor, ticket.store, StorePerm.MANAGE_LOGISTICS)
            number = normalise_number(tracking_number)
            payload["tracking_number"] = number
            carrier = _carrier(carrier_code, ticket)
            if carrier is not None:
                payload["carrier"] = carrier.code
            clean_note = (note or "").strip()
            if len(clean_note) > MAX_NOTE:
                raise AppError(errors.ERR_VALIDATION,
                               fields={"note": [_("At most %(n)s characters.") % {"n": MAX_NOTE}]})
            existing = _open_interception(ticket)
            if existing is not None:
                raise _already_open(existing)
            why = delivered_evidence(ticket, number)
            if why:
                raise _delivered_error(why)
            try:
                with transaction.atomic():  # a savepoint: the constraint may refuse a racing writer's twin
                    interception = Interception.objects.create(
                        agency_id=ticket.agency_id, ticket=ticket, carrier=carrier, tracking_number=number,
                        requested_at=timezone.now(), note=clean_note, requested_by_id=performer.user_id)
            except IntegrityError:
                raise _already_open() from None
            log_logistics(ticket.pk, performer=performer, action=REQUESTED_ACTION, payload={
                **payload, "interception_id": str(interception.public_id), "note": clean_note})
            return interception
    except AppError as exc:
        _log_refusal(locked_pk, performer, REQUESTED_ACTION, payload, exc)
        raise


def _interception_ticket_pk(performer: Performer, interception_id) -> int:
    qs = Interception.objects
    qs = qs.for_actor(performer.actor) if performer.actor is not None else qs.unscoped()
    found = qs.by_id(interception_id).values_list("ticket_id", flat=True).first()
    if found is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return found



def record_interception_outcome(performer: Performer, interception_id, outcome: str) -> Interception:
    """How the carrier answered: succeeded, failed or too late — once, from "requested" only."""
    payload = {"interception_id": str(interception_id), "outcome": str(outcome)}
    locked_pk: int | None = None
    try:
        with transaction.atomic():
            # The request is locked before the interception, the same order request_interception takes.
            ticket = lock_ticket(performer, _interception_ticket_pk(performer, interception_id))
            locked_pk = ticket.pk
            if performer.actor is not None:
                require_store_perm(performer.actor, ticket.store, StorePerm.MANAGE_LOGISTICS)
            interception = (Interception.objects.for_agency(ticket.agency_id).filter(ticket=ticket)
                            .by_id(interception_id).select_for_update().first())
            if interception is None:
                raise AppError(errors.ERR_NOT_FOUND)
            payload["interception_id"] = str(interception.public_id)
            payload["tracking_number"] = interception.tracking_number
            if outcome not in OUTCOMES:
                raise AppError(errors.ERR_VALIDATION, fields={"outcome": [
                    _("One of: %(values)s.") % {"values": ", ".join(str(o) for o in OUTCOMES)}]})
            if interception.outcome != Interception.Outcome.REQUESTED:
                raise AppError(errors.ERR_LOG_401, detail=_("This interception was already decided (%(outcome)s).")
                               % {"outcome": interception.get_outcome_display()},
                               data={"reason": "decided", "outcome": interception.outcome})
            interception.outcome = outcome
            interception.decided_at = timezone.now()
            interception.save(update_fields=["outcome", "decided_at"])
            log_logistics(ticket.pk, performer=performer, action=OUTCOME_ACTION, payload=payload)
            return interception
    except AppError as exc:
        _log_refusal(locked_pk, performer, OUTCOME_ACTION, payload, exc)
        raise


# --- selectors ---------------------------------------------------------------------------------------
def interceptions_for_actor(actor: Actor, ticket_id=None) -> QuerySet:
    """The interceptions a person may see, newest first; optionally those of one request."""
    qs = Interception.objects.for_actor(actor).select_related("carrier", "ticket")
    if ticket_id is None:
        return qs
    if isinstance(ticket_id, int):
        return qs.filter(ticket_id=ticket_id)
    try:
        return qs.filter(ticket__public_id=uuid.UUID(str(ticket_id)))
    except ValueError:
        return qs.none()
