"""Every change to an after-sales request happens here: one transaction per action.

Pattern (DESIGN rule 4): lock the request row, check permission and the transition table, write,
append the operation-log row, enqueue side effects after commit. A refused action is logged with its
error code in a short transaction of its own, after the rollback. Seller actions, buyer events and
platform events all take this path, so the demo and the platform sync behave the same.

Batch review (``bulk``) applies one action to many requests with the same checks per request, written
set-based in one transaction (``perform_many``): the only place where several actions share a transaction, for
speed at 1,000 requests a call — each still has its own result and log row, and a refusal rolls back nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.utils import timezone

from aftersales import events, oplog, sla
from aftersales.models import ActorKind, AfterSalesRequest, LineItem
from aftersales.oplog import PLATFORM, Performer
from aftersales.states import (
    ACTIONS,
    PLATFORM_TYPE,
    Arbitration,
    Decision,
    RequestType,
    State,
    normalise_platform_status,
    state_for_platform_status,
    targets,
)
from stores import bulk as bulk_sql
from stores import errors
from stores.errors import AppError
from stores.models import MarketPolicy, Store
from stores.permissions import StorePerm
from stores.services import missing_perm, require_store_perm, store_perms

log = logging.getLogger(__name__)

# Which permission each seller action needs (refunds move money, so they need the refund permission).
ACTION_PERMS: dict[str, tuple[str, ...]] = {
    "approve": (StorePerm.HANDLE_AFTERSALES,),
    "reject": (StorePerm.HANDLE_AFTERSALES,),
    "request_evidence": (StorePerm.HANDLE_AFTERSALES,),
    "refund": (StorePerm.HANDLE_AFTERSALES, StorePerm.REFUND),
    "ship_replacement": (StorePerm.HANDLE_AFTERSALES,),
    "close": (StorePerm.HANDLE_AFTERSALES,),
    "arbitration": (StorePerm.HANDLE_AFTERSALES,),
}

# Decisions that are rejections; the rest are approvals.
REJECT_DECISIONS = {Decision.REJECT_REFUND, Decision.REJECT_RETURN, Decision.REJECT_RECEIVED_PACKAGE,
                    Decision.REJECT_REPLACEMENT, Decision.REJECT_REQUEST_CANCEL}

# Used when the platform has not sent a request-specific list (e.g. demo data); names as observed.
DEFAULT_REJECT_REASONS = [
    {"name": "reverse_reject_request_reason_1", "text": "Buyer's return reason is not valid"},
    {"name": "reverse_reject_request_reason_3",
     "text": "Product already used, damaged or removed from original packaging"},
    {"name": "reverse_reject_request_reason_4", "text": "Product delivery is on schedule"},
    {"name": "reverse_reject_request_reason_5", "text": "Reached an agreement with the buyer"},
]

DEFAULT_CANCEL_REJECT_REASONS = [
    {"name": "order_manage_list_action_respond_popup_reject_reason_invalid_cancellation_reason",
     "text": "The cancellation reason is not valid"},
    {"name": "order_manage_list_action_respond_popup_reject_reason_delivered", "text": "The order was delivered"},
]

MAX_COMMENT = 500


# --- the one path every change takes -------------------------------------------------------------
def lock_ticket(performer: Performer, ticket_id) -> AfterSalesRequest:
    """Lock one request for this performer: people through the scoping gate, system performers unscoped."""
    qs = AfterSalesRequest.objects
    qs = qs.for_actor(performer.actor) if performer.actor is not None else qs.unscoped()
    lookup = {"pk": ticket_id} if isinstance(ticket_id, int) else {"public_id": ticket_id}
    try:
        # The store's platform link comes along (a LEFT JOIN, not locked): decisions on linked stores go to the outbox.
        return qs.select_for_update(of=("self",)).select_related("store__market", "store__tiktok_link").get(**lookup)
    except (AfterSalesRequest.DoesNotExist, ValueError, TypeError, DjangoValidationError):
        raise AppError(errors.ERR_NOT_FOUND) from None


def _target(action: str, ticket: AfterSalesRequest) -> str:
    steps = ACTIONS.get(action, [])
    if not any(ticket.type in s.types for s in steps):
        raise AppError(errors.ERR_STATE_002, data={"action": action, "type": ticket.type})
    found = targets(action, ticket.type, ticket.state)
    if not found:
        raise AppError(errors.ERR_STATE_001, data={"action": action, "state": ticket.state})
    return found[0]


def perform(performer: Performer, ticket_id, action: str, change: Callable[[AfterSalesRequest, str], Any] | None,
            *, perm_key: str | None = None, payload: dict | None = None, log_action: str | None = None,
            choose_target: Callable[[AfterSalesRequest], str] | None = None) -> AfterSalesRequest:
    """Run one state-changing action: lock, check, change, log — or log the refusal."""
    payload = dict(payload or {})
    log_name = log_action or action
    locked_pk: int | None = None
    try:
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)
            locked_pk = ticket.pk
            if performer.actor is not None and perm_key is not None:
                for perm in ACTION_PERMS[perm_key]:
                    require_store_perm(performer.actor, ticket.store, perm)
            before = ticket.state
            _decide(performer, ticket, action, change, choose_target, payload)
            ticket.save()
            oplog.record(ticket, performer=performer, action=log_name, before=before, after=ticket.state,
                         payload=payload)
            if _decides_on_platform(log_name, performer):
                _queue_for_platform(ticket, log_name, payload)
            events.publish(events.STATE_CHANGED, ticket_id=ticket.pk, action=action, before=before,
                           after=ticket.state, payload=payload)
            return ticket
    except AppError as exc:
        if locked_pk is not None:
            oplog.record_failure(locked_pk, performer=performer, action=log_name, error_code=exc.code,
                                 message=exc.detail or str(exc.error.message), payload=payload)
        raise


def _decide(performer: Performer, ticket: AfterSalesRequest, action: str,
            change: Callable[[AfterSalesRequest, str], Any] | None,
            choose_target: Callable[[AfterSalesRequest], str] | None, payload: dict, *,
            missed: set[str] | None = None) -> None:
    """The action on a locked request, in memory (``perform`` and ``perform_many`` alike): the transition, the
    action's own change (its extra log payload merged into ``payload``), the first human response and the
    deadlines that still apply. Raises the AppError of a refusal; the caller writes or rolls back."""
    before = ticket.state
    target = choose_target(ticket) if choose_target else _target(action, ticket)
    extra = change(ticket, target) if change else None
    if extra:
        payload.update(extra)
    if target != before:
        ticket.state = target
        ticket.state_changed_at = timezone.now()
    sla.note_action(ticket, performer, before, missed=missed)


@dataclass(frozen=True)
class Step:
    """A seller action made ready for any request: what ``perform`` needs besides the request.

    Built once from the caller's input (refusing bad input before any request is touched), then applied to one
    request (``run``) or to a whole batch (``perform_many``) through the same checks.
    """

    action: str
    change: Callable[[AfterSalesRequest, str], Any] | None = None
    perm_key: str | None = None
    payload: dict | None = None
    log_action: str | None = None
    choose_target: Callable[[AfterSalesRequest], str] | None = None
    # The columns ``change`` may set, besides the state and SLA columns every action sets (PERFORM_FIELDS): the
    # batch path writes exactly these (tests/test_bulk_batch.py compares it with ``run`` column by column).
    fields: tuple[str, ...] = ()

    def run(self, performer: Performer, ticket_id) -> AfterSalesRequest:
        return perform(performer, ticket_id, self.action, self.change, perm_key=self.perm_key, payload=self.payload,
                       log_action=self.log_action, choose_target=self.choose_target)


def _queue_for_platform(ticket: AfterSalesRequest, operation: str, payload: dict) -> None:
    """A decision on a store linked to TikTok Shop is written to the outbox with the decision (same transaction)
    and sent after commit (aftersales.tiktok.outbox)."""
    if _linked(ticket):
        from aftersales.tiktok import outbox

        outbox.enqueue(ticket, operation, payload)


def _linked(ticket: AfterSalesRequest) -> bool:
    try:
        return ticket.store.tiktok_link is not None
    except ObjectDoesNotExist:
        return False


def _decides_on_platform(log_name: str, performer: Performer) -> bool:
    """A seller's approve or reject is the platform's to apply too (not an echo of the buyer's or platform's)."""
    return log_name in ("approve", "reject") and performer.kind not in (ActorKind.PLATFORM, ActorKind.BUYER)


def _check_eligible(ticket: AfterSalesRequest, decision: str) -> None:
    """Where the platform said which decisions it allows now (decision eligibility), respect it."""
    verdict = (ticket.platform_eligibility or {}).get(str(decision))
    if isinstance(verdict, dict) and verdict.get("eligible") is False:
        raise AppError(errors.ERR_TTS_009, detail=str(verdict.get("reason") or "")[:300] or None,
                       data={"decision": str(decision), "platform_code": verdict.get("code") or ""})


# --- seller actions --------------------------------------------------------------------------------
def parse_amount(raw, currency: str | None = None, *, expected_currency: str) -> Decimal:
    if currency is not None and currency != expected_currency:
        raise AppError(errors.ERR_REFUND_002, fields={"currency": [f"expected {expected_currency}"]})
    try:
        amount = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise AppError(errors.ERR_REFUND_002, fields={"amount": ["not a decimal number"]}) from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise AppError(errors.ERR_REFUND_002, fields={"amount": ["must be positive with at most 2 decimals"]})
    return amount


def approve(performer: Performer, ticket_id, decision: str, *, partial_refund: str | None = None,
            currency: str | None = None, buyer_keep_item: bool = False) -> AfterSalesRequest:
    return approve_step(decision, partial_refund=partial_refund, currency=currency,
                        buyer_keep_item=buyer_keep_item).run(performer, ticket_id)


def approve_step(decision: str, *, partial_refund: str | None = None, currency: str | None = None,
                 buyer_keep_item: bool = False) -> Step:
    try:
        decision = Decision(decision)
    except ValueError:
        raise AppError(errors.ERR_VALIDATION, fields={"decision": [f"unknown decision {decision!r}"]}) from None
    if decision in REJECT_DECISIONS:
        raise AppError(errors.ERR_VALIDATION, fields={"decision": ["use reject for a rejection"]})
    if decision == Decision.APPROVE_RETURN and buyer_keep_item:
        decision = Decision.DIRECT_REFUND  # the platform's "returnless refund"

    def change(ticket: AfterSalesRequest, target: str):
        _check_eligible(ticket, decision)
        if decision == Decision.OFFER_PARTIAL_REFUND:
            if partial_refund is None:
                raise AppError(errors.ERR_REFUND_002, fields={"partial_refund": ["required for a partial offer"]})
            amount = parse_amount(partial_refund, currency, expected_currency=ticket.currency)
            if amount > ticket.refundable:
                raise AppError(errors.ERR_REFUND_001, data={"refundable": str(ticket.refundable)})
            ticket.partial_refund_offer = amount
            return {"partial_refund": {"amount": str(amount), "currency": ticket.currency}}
        if decision == Decision.DIRECT_REFUND:
            ticket.can_buyer_keep_item = True
        return None

    return Step(f"approve:{decision}", change, perm_key="approve", payload={"decision": decision.value},
                log_action="approve", fields=("partial_refund_offer", "can_buyer_keep_item"))


def _reject_decision(ticket: AfterSalesRequest) -> str:
    if ticket.type == RequestType.CANCELLATION:
        return Decision.REJECT_REQUEST_CANCEL
    if ticket.type == RequestType.EXCHANGE:
        return Decision.REJECT_REPLACEMENT
    if ticket.type == RequestType.REFUND_ONLY:
        return Decision.REJECT_REFUND
    if ticket.state == State.RETURN_IN_TRANSIT:
        return Decision.REJECT_RECEIVED_PACKAGE
    return Decision.REJECT_RETURN


def reject_reasons(ticket: AfterSalesRequest) -> list[dict[str, str]]:
    if ticket.reject_reasons:
        return ticket.reject_reasons
    return DEFAULT_CANCEL_REJECT_REASONS if ticket.type == RequestType.CANCELLATION else DEFAULT_REJECT_REASONS


def reject(performer: Performer, ticket_id, *, reason: str, comment: str = "",
           images: list[str] | None = None, decision: str | None = None) -> AfterSalesRequest:
    return reject_step(reason=reason, comment=comment, images=images, decision=decision).run(performer, ticket_id)


def reject_step(*, reason: str, comment: str = "", images: list[str] | None = None,
                decision: str | None = None) -> Step:
    images = list(images or [])
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise AppError(errors.ERR_VALIDATION, fields={"comment": [f"at most {MAX_COMMENT} characters"]})
    payload = {"reason": reason, "comment": comment, "images": images}
    chosen: dict[str, str] = {}

    def pick(ticket: AfterSalesRequest) -> str:
        chosen["decision"] = decision or _reject_decision(ticket)
        if chosen["decision"] not in REJECT_DECISIONS:
            raise AppError(errors.ERR_VALIDATION, fields={"decision": ["not a reject decision"]})
        return _target(f"reject:{chosen['decision']}", ticket)

    def change(ticket: AfterSalesRequest, target: str):
        _check_eligible(ticket, chosen["decision"])
        names = {r["name"] for r in reject_reasons(ticket)}
        if reason not in names:
            raise AppError(errors.ERR_REVIEW_001, fields={"reason": sorted(names)})
        if images:
            from aftersales.models import Evidence

            bad = [i for i in images if not _is_uuid(i)]
            if bad:
                raise AppError(errors.ERR_VALIDATION, fields={"images": [f"not an evidence id: {b}" for b in bad]})

            found = set(Evidence.objects.for_agency(ticket.agency_id).filter(
                ticket=ticket, role=Evidence.Role.SELLER, public_id__in=images).values_list("public_id", flat=True))
            missing = [i for i in images if not any(str(f) == str(i) for f in found)]
            if missing:
                raise AppError(errors.ERR_VALIDATION, fields={"images": [f"unknown evidence {m}" for m in missing]})
        return {"decision": chosen["decision"]}

    # ``chosen`` is shared by pick and change of one request: a batch runs both for a request before the next.
    return Step("reject", change, perm_key="reject", payload=payload, choose_target=pick)


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def request_evidence(performer: Performer, ticket_id, *, message: str = "") -> AfterSalesRequest:
    return request_evidence_step(message=message).run(performer, ticket_id)


def request_evidence_step(*, message: str = "") -> Step:
    return Step("request_evidence", perm_key="request_evidence", payload={"message": (message or "")[:MAX_COMMENT]})


def refund(performer: Performer, ticket_id, *, amount: str | None = None,
           currency: str | None = None) -> AfterSalesRequest:
    def change(ticket: AfterSalesRequest, target: str):
        value = ticket.refundable if amount is None else parse_amount(amount, currency,
                                                                        expected_currency=ticket.currency)
        if value > ticket.refundable or value <= 0:
            raise AppError(errors.ERR_REFUND_001, data={"refundable": str(ticket.refundable)})
        ticket.refunded_amount += value
        return {"amount": str(value), "currency": ticket.currency,
                "partial": value < ticket.refund_total, "refunded_total": str(ticket.refunded_amount)}

    return perform(performer, ticket_id, "refund", change, perm_key="refund")


def ship_replacement(performer: Performer, ticket_id, *, carrier: str, tracking_number: str) -> AfterSalesRequest:
    number = "".join((tracking_number or "").split()).upper()
    if not number or len(number) > 64:
        raise AppError(errors.ERR_LOG_204, fields={"tracking_number": ["1 to 64 characters"]})

    def change(ticket: AfterSalesRequest, target: str):
        ticket.replacement_tracking_number = number
        return {"carrier": carrier, "tracking_number": number}

    return perform(performer, ticket_id, "ship_replacement", change, perm_key="ship_replacement")


def close(performer: Performer, ticket_id, *, comment: str = "") -> AfterSalesRequest:
    return close_step(comment=comment).run(performer, ticket_id)


def close_step(*, comment: str = "") -> Step:
    return Step("close", perm_key="close", payload={"comment": (comment or "")[:MAX_COMMENT]})


def record_arbitration(performer: Performer, ticket_id, status: str) -> AfterSalesRequest:
    """平台仲裁: record the platform's arbitration and, on a ruling, where it leaves the request."""
    try:
        status = Arbitration(status)
    except ValueError:
        raise AppError(errors.ERR_VALIDATION, fields={"status": [f"unknown arbitration status {status!r}"]}) from None
    action = f"arbitration:{status}"

    def pick(ticket: AfterSalesRequest) -> str:
        options = set(targets(action, ticket.type, ticket.state))
        if not options:
            return _target(action, ticket)  # raises the right code
        if status == Arbitration.SUPPORT_BUYER:
            # A rejected return request goes back to "awaiting the buyer's parcel"; every other ruling
            # for the buyer means the refund is owed.
            if ticket.type == RequestType.RETURN_AND_REFUND and ticket.pre_arbitration_state == State.REJECTED:
                return State.AWAITING_RETURN
            return State.REFUND_APPROVED
        return options.pop()

    def change(ticket: AfterSalesRequest, target: str):
        if status == Arbitration.IN_PROGRESS:
            ticket.pre_arbitration_state = ticket.state
        ticket.arbitration_status = status
        return {"arbitration_status": status.value}

    return perform(performer, ticket_id, action, change, perm_key="arbitration", choose_target=pick,
                   log_action="arbitration")


# --- buyer and platform events ---------------------------------------------------------------------
def buyer_shipped(ticket_id, *, carrier: str = "", tracking_number: str = "") -> AfterSalesRequest:
    return perform(oplog.BUYER, ticket_id, "buyer_shipped", None,
                   payload={"carrier": carrier, "tracking_number": tracking_number})


def buyer_cancelled(ticket_id, *, performer: Performer = oplog.BUYER) -> AfterSalesRequest:
    return perform(performer, ticket_id, "buyer_cancelled", None)


def buyer_responded(ticket_id, *, note: str = "") -> AfterSalesRequest:
    return perform(oplog.BUYER, ticket_id, "buyer_responded", None, payload={"note": note[:MAX_COMMENT]})


def buyer_accepted_offer(ticket_id) -> AfterSalesRequest:
    def change(ticket: AfterSalesRequest, target: str):
        if ticket.partial_refund_offer is None:
            raise AppError(errors.ERR_STATE_001, detail="no partial refund was offered")
        # The buyer keeps the item and the refundable amount becomes the offer.
        ticket.refund_total = ticket.refunded_amount + ticket.partial_refund_offer
        ticket.can_buyer_keep_item = True
        return {"amount": str(ticket.partial_refund_offer)}

    return perform(oplog.BUYER, ticket_id, "buyer_accepted_offer", change)


def replacement_delivered(ticket_id) -> AfterSalesRequest:
    return perform(PLATFORM, ticket_id, "replacement_delivered", None)


# Platform fields a newer copy of a request refreshes (from parse_return): amounts, deadlines, handling details.
REFRESHED_FIELDS = ("arbitration_status", "refund_total", "refund_subtotal", "refund_shipping_fee", "refund_tax",
                    "seller_next_actions", "platform_deadline", "shipment_type", "handover_method", "return_method",
                    "can_buyer_keep_item", "is_quick_refund", "raw")


def apply_platform_status(ticket_id, raw_status: str, *, performer: Performer = PLATFORM,
                          payload: dict | None = None, updated_at: dt.datetime | None = None,
                          fields: dict | None = None) -> AfterSalesRequest:
    """The platform is the source of truth for its own status: take it, or flag an unknown one.

    Updates can arrive out of order (webhook retries, overlapping sync windows): one older than the
    platform update time we already hold is logged with ERR_SYNC_003 and changes nothing, so a replay
    can never move a finished request back. The very update already applied (same update time, same
    status) is a no-op without a log row: overlapping sync windows and webhook re-fetches read it again.
    ``fields`` (from ``parse_return``) refreshes the platform's other fields with a newer copy.
    """
    mapped = state_for_platform_status(raw_status)
    locked_pk: int | None = None
    with transaction.atomic():
        ticket = lock_ticket(performer, ticket_id)
        locked_pk = ticket.pk
        before = ticket.state
        held = ticket.platform_updated_at
        if updated_at is not None and held is not None and updated_at < held:
            oplog.record(ticket, performer=performer, action="platform_status", before=before, after=before,
                         error_code=errors.ERR_SYNC_003.code, message=str(errors.ERR_SYNC_003.message),
                         payload={"raw_status": raw_status, "update_time": updated_at.isoformat(),
                                  "held_update_time": ticket.platform_updated_at.isoformat(), **(payload or {})})
            return ticket
        if (updated_at is not None and held == updated_at
                and ticket.platform_status == normalise_platform_status(raw_status)[:64]):
            return ticket
        if updated_at is not None:
            ticket.platform_updated_at = updated_at
        deadline_before = ticket.platform_deadline
        for name in REFRESHED_FIELDS if fields else ():
            setattr(ticket, name, fields[name])
        if fields and fields.get("reject_reasons"):
            ticket.reject_reasons = fields["reject_reasons"]
        ticket.platform_status = normalise_platform_status(raw_status)[:64]
        if mapped is None:
            ticket.platform_status_unknown = True
            ticket.save()
            oplog.record(ticket, performer=performer, action="platform_status", before=before, after=before,
                         error_code=errors.ERR_SYNC_001.code, message=str(errors.ERR_SYNC_001.message),
                         payload={"raw_status": raw_status, **(payload or {})})
            return ticket
        ticket.platform_status_unknown = False
        if mapped != before:
            ticket.state = mapped
            ticket.state_changed_at = timezone.now()
        if mapped != before or ticket.platform_deadline != deadline_before:
            sla.set_deadlines(ticket)  # a finished request stops being watched; a moved platform deadline counts
        ticket.save()
        code, message = _review_failure(ticket, before, payload)
        oplog.record(ticket, performer=performer, action="platform_status", before=before, after=ticket.state,
                     error_code=code, message=message, payload={"raw_status": raw_status, **(payload or {})})
        if ticket.state != before:
            events.publish(events.STATE_CHANGED, ticket_id=ticket.pk, action="platform_status", before=before,
                           after=ticket.state, payload={"raw_status": raw_status, **(payload or {})})
    assert locked_pk is not None
    return ticket


def _review_failure(ticket: AfterSalesRequest, before: str, payload: dict | None) -> tuple[str, str]:
    """审核失败: the platform (not the seller) rejected the request — usually unclear or mismatched evidence.

    Those need a manual re-review, so the log row carries ERR_REVIEW_002 and the request can be found by it.
    """
    role = str((payload or {}).get("role") or "").upper()
    if ticket.state == State.REJECTED and before != State.REJECTED and role in {"SYSTEM", "OPERATOR"}:
        return errors.ERR_REVIEW_002.code, str(errors.ERR_REVIEW_002.message)
    return "", ""


# --- intake ------------------------------------------------------------------------------------------
def _money(value, field: str) -> Decimal:
    if value in (None, ""):
        return Decimal("0")
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise AppError(errors.ERR_SYNC_002, fields={field: ["not a decimal string"]}) from None
    if not amount.is_finite() or amount < 0:
        raise AppError(errors.ERR_SYNC_002, fields={field: ["must be a non-negative amount"]})
    return amount.quantize(Decimal("0.01"))


def _ts(value) -> dt.datetime | None:
    if value in (None, ""):
        return None
    try:
        return dt.datetime.fromtimestamp(int(value), tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise AppError(errors.ERR_SYNC_002, fields={"timestamp": [f"not a unix time: {value!r}"]}) from None


def parse_return(store: Store, data: dict) -> tuple[dict, list[dict]]:
    """Turn a platform return object (Search Returns, §1.3) into model fields and line items.

    Anything malformed is ERR_SYNC_002, whatever Python error the shape would cause: in a batch one bad object
    must fail alone (``intake_many``), not take the others down with a TypeError."""
    if not isinstance(data, dict):
        raise AppError(errors.ERR_SYNC_002, fields={"payload": ["must be an object"]})
    try:
        return _parse_return(store, data)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise AppError(errors.ERR_SYNC_002, fields={"payload": [f"malformed ({type(exc).__name__})"]}) from None


def _parse_return(store: Store, data: dict) -> tuple[dict, list[dict]]:
    missing = [k for k in ("return_id", "order_id", "return_type") if not data.get(k)]
    if missing:
        raise AppError(errors.ERR_SYNC_002, fields={k: ["required"] for k in missing})
    rtype = PLATFORM_TYPE.get(str(data["return_type"]).upper())
    if rtype is None:
        raise AppError(errors.ERR_SYNC_002, fields={"return_type": [f"unknown {data['return_type']!r}"]})
    if not isinstance(data.get("return_status") or "", str):
        raise AppError(errors.ERR_SYNC_002, fields={"return_status": ["must be a string"]})
    amounts = data.get("refund_amount") or {}
    currency = (amounts.get("currency") or store.market.currency).upper()[:3]
    actions = data.get("seller_next_action_response") or []
    deadlines = [d for d in (_ts(a.get("deadline")) for a in actions if isinstance(a, dict)) if d]
    fields = {
        "type": rtype,
        "return_id": str(data["return_id"])[:64],
        "order_id": str(data["order_id"])[:64],
        "platform_return_type": str(data["return_type"])[:32],
        "arbitration_status": (data.get("arbitration_status") or "")[:16],
        "initiator_role": (data.get("role") or "BUYER")[:16],
        "reason_key": (data.get("return_reason") or "")[:160],
        "reason_text": (data.get("return_reason_text") or "")[:500],
        "buyer_user_id": str(data.get("buyer_user_id") or "")[:64],
        "buyer_name": (data.get("buyer_name") or "")[:200],
        "currency": currency,
        "refund_total": _money(amounts.get("refund_total"), "refund_total"),
        "refund_subtotal": _money(amounts.get("refund_subtotal"), "refund_subtotal"),
        "refund_shipping_fee": _money(amounts.get("refund_shipping_fee"), "refund_shipping_fee"),
        "refund_tax": _money(amounts.get("refund_tax"), "refund_tax"),
        "seller_next_actions": actions,
        "platform_deadline": min(deadlines) if deadlines else None,
        "shipment_type": (data.get("shipment_type") or "")[:16],
        "handover_method": (data.get("handover_method") or "")[:16],
        "return_method": (data.get("return_method") or "")[:24],
        "can_buyer_keep_item": bool(data.get("can_buyer_keep_item")),
        "is_quick_refund": bool(data.get("is_quick_refund")),
        "platform_created_at": _ts(data.get("create_time")),
        "platform_updated_at": _ts(data.get("update_time")),
        "raw": data,
    }
    if data.get("reject_reasons"):
        fields["reject_reasons"] = [{"name": str(r.get("name")), "text": str(r.get("text", ""))}
                                    for r in data["reject_reasons"] if isinstance(r, dict) and r.get("name")]
    items = []
    for item in data.get("return_line_items") or []:
        if not isinstance(item, dict):
            continue
        items.append({
            "line_item_id": str(item.get("return_line_item_id") or "")[:64],
            "order_line_item_id": str(item.get("order_line_item_id") or "")[:64],
            "sku_id": str(item.get("sku_id") or "")[:64],
            "seller_sku": str(item.get("seller_sku") or "")[:64],
            "sku_name": str(item.get("sku_name") or "")[:200],
            "product_name": str(item.get("product_name") or "")[:300],
            "category": str(item.get("category") or "")[:64],
            "quantity": max(1, int(item.get("quantity") or 1)),
            "refund_amount": _money((item.get("refund_amount") or {}).get("refund_total"), "line refund_total"),
        })
    return fields, items


DEFAULT_STATUS = "RETURN_OR_REFUND_REQUEST_PENDING"  # a new object the platform sent without a status


@dataclass(frozen=True)
class IntakeResult:
    """One payload's outcome in ``intake_many``: the request (None when refused), whether this call created it,
    whether it changed the request (created, or a platform version other than the one held), and the coded
    error of a refused payload."""

    ticket: AfterSalesRequest | None
    created: bool = False
    changed: bool = False
    error: AppError | None = None


@dataclass(frozen=True)
class _Parsed:
    index: int  # position in the caller's list
    data: dict
    fields: dict
    items: list[dict]
    raw_status: str

    @property
    def return_id(self) -> str:
        return self.fields["return_id"]


def intake(store: Store, data: dict, *, performer: Performer = PLATFORM) -> tuple[AfterSalesRequest, bool]:
    """A new request from the platform (or a buyer in the demo). Idempotent by (store, return_id).

    Returns (request, created). A request already known gets the platform's newer status instead. A batch of
    one: ``intake_many`` is the only path, so one object and a page of them behave the same.
    """
    result = intake_many(store, [data], performer=performer)[0]
    if result.error is not None:
        raise result.error
    assert result.ticket is not None
    return result.ticket, result.created


def intake_many(store: Store, payloads: list[dict], *, performer: Performer = PLATFORM) -> list[IntakeResult]:
    """Platform objects of one store (a sync page), set-based: one result per payload, in order.

    Per object it is ``intake``: idempotent by (store, return_id); a known request gets ``apply_platform_status``
    (one transaction each); a malformed object fails alone with ERR_SYNC_002 and the others are stored. The new
    requests are written together — one INSERT each for requests, line items and log rows, in one transaction —
    with their deadlines, no-reason exemption and review-failure rows as a single intake writes them, and one
    CREATED event lists them after commit. A copy of a return_id seen earlier in the batch is applied after the
    first, as if the objects had come one by one. A return another intake inserts meanwhile is skipped by the
    INSERT (ON CONFLICT DO NOTHING) and applied as known: a race never raises.
    """
    results: list[IntakeResult | None] = [None] * len(payloads)
    pending: list[_Parsed] = []
    for index, data in enumerate(payloads):
        try:
            fields, items = parse_return(store, data)
        except AppError as exc:
            results[index] = IntakeResult(None, error=exc)
            continue
        pending.append(_Parsed(index, data, fields, items, data.get("return_status") or DEFAULT_STATUS))
    held: dict[str, tuple] = {}  # return_id → (platform update time, platform status) as it stands
    policy: list[MarketPolicy | None] = []  # looked up once, and only when something is new
    while pending:  # a second round only for copies of a return whose first copy the database refused
        pending = _intake_round(store, pending, results, performer, held, policy)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _intake_round(store: Store, pending: list[_Parsed], results: list[IntakeResult | None], performer: Performer,
                  held: dict[str, tuple], policy: list[MarketPolicy | None]) -> list[_Parsed]:
    """Create the returns not known yet (the first copy of each), then apply every other copy in order; returns
    the copies left over (their first copy could not be stored: the next round tries them as new)."""
    known: dict[str, int] = {}
    for return_id, pk, updated_at, status in _known(store, {p.return_id for p in pending}):
        known[return_id] = pk
        held.setdefault(return_id, (updated_at, status))
    first: dict[str, _Parsed] = {}
    for p in pending:
        if p.return_id not in known:
            first.setdefault(p.return_id, p)
    created: dict[str, AfterSalesRequest] = {}
    refused: dict[str, AppError] = {}
    if first:
        if not policy:
            policy.append(sla.policy_for(store.market_id))
        created, lost, refused = _create_many(store, list(first.values()), performer, policy[0])
        known.update(lost)  # a concurrent intake inserted these: they are updates now (of a version not seen)
    left: list[_Parsed] = []
    for p in pending:
        if first.get(p.return_id) is p and p.return_id in created:
            result = IntakeResult(created[p.return_id], created=True, changed=True)
        elif first.get(p.return_id) is p and p.return_id in refused:
            result = IntakeResult(None, error=refused[p.return_id])
        elif p.return_id in known:
            result = _update(known[p.return_id], p, performer, held.get(p.return_id))
        else:
            left.append(p)
            continue
        if result.ticket is not None:
            held[p.return_id] = (result.ticket.platform_updated_at, result.ticket.platform_status)
        results[p.index] = result
    return left


def _known(store: Store, return_ids: set[str]) -> list[tuple]:
    """(return_id, id, platform update time, platform status) of the store's requests among ``return_ids``.

    One fixed statement: building it with the ORM cost more CPU than running it, once per batch on the ingest
    path. On the store alone (it fixes the agency), so only the unique (store, return_id) index fits: with the
    agency in the filter too, the planner took the agency's index for a new tenant (no statistics yet) and
    read all its requests for each batch."""
    table = AfterSalesRequest._meta.db_table
    return bulk_sql.execute(
        f"""SELECT return_id, id, platform_updated_at, platform_status FROM {table}
            WHERE store_id = %b AND return_id = ANY(%b::text[])""",  # noqa: S608 - table name only
        [store.pk, sorted(return_ids)], fetch=True)


def _update(ticket_id: int, p: _Parsed, performer: Performer, before: tuple | None) -> IntakeResult:
    try:
        ticket = apply_platform_status(ticket_id, p.raw_status, performer=performer,
                                       payload={"role": p.data.get("role")},
                                       updated_at=p.fields["platform_updated_at"], fields=p.fields)
    except AppError as exc:
        return IntakeResult(None, error=exc)
    return IntakeResult(ticket, changed=(ticket.platform_updated_at, ticket.platform_status) != before)


def _create_many(store: Store, news: list[_Parsed], performer: Performer, policy: MarketPolicy | None
                 ) -> tuple[dict[str, AfterSalesRequest], dict[str, int], dict[str, AppError]]:
    """New requests in one transaction: (created by return_id, ids of those a concurrent intake inserted first,
    refusals). A value the database refuses (a number too large for its column, say) rolls the batch back; it is
    then redone one request per transaction, so only the faulty one is refused (ERR_SYNC_002)."""
    try:
        with transaction.atomic():
            created, lost = _insert_new(store, news, performer, policy)
        return created, lost, {}
    except (DataError, IntegrityError):
        if len(news) == 1:
            return {}, {}, {news[0].return_id: AppError(errors.ERR_SYNC_002, detail="the request could not be stored")}
    created, lost, refused = {}, {}, {}
    for p in news:
        one = _create_many(store, [p], performer, policy)
        created.update(one[0])
        lost.update(one[1])
        refused.update(one[2])
    return created, lost, refused


def _insert_new(store: Store, news: list[_Parsed], performer: Performer, policy: MarketPolicy | None
                ) -> tuple[dict[str, AfterSalesRequest], dict[str, int]]:
    """The writes of ``_create_many``'s transaction: requests, line items, log rows, one statement each."""
    now = timezone.now()
    exempt = set(policy.no_reason_exempt_categories) if policy else set()
    # In return_id order: two batches sharing returns take the unique index's locks in the same order, so
    # they wait for each other instead of deadlocking.
    news = sorted(news, key=lambda p: p.return_id)
    tickets, exemptions = [], []
    for p in news:
        mapped = state_for_platform_status(p.raw_status)
        ticket = _new_request(store, {
            "agency_id": store.agency_id, "store_id": store.pk, "state": mapped or State.PENDING_REVIEW,
            "state_changed_at": now, "platform_status": normalise_platform_status(p.raw_status)[:64],
            "platform_status_unknown": mapped is None, "created_at": now, "updated_at": now, **p.fields})
        sla.set_deadlines(ticket, policy, missed=set())  # from market policy; the earliest is watched by the sweep
        exemption = _no_reason_exemption(store, p.fields, p.items, exempt)
        if exemption:
            ticket.exempt_category = exemption["category"]
        tickets.append(ticket)
        exemptions.append(exemption)
    inserted = _insert_requests(tickets)
    created: dict[str, AfterSalesRequest] = {}
    items: list[dict] = []
    rows: list[tuple[AfterSalesRequest, dict]] = []
    for p, ticket, exemption in zip(news, tickets, exemptions, strict=True):
        if ticket.return_id not in inserted:
            continue
        ticket.pk = inserted[ticket.return_id]
        ticket._state.adding, ticket._state.db = False, connection.alias  # as a saved instance
        created[ticket.return_id] = ticket
        items += [{**item, "ticket_id": ticket.pk} for item in p.items]
        rows += _intake_rows(ticket, p, performer, exemption)
    lost = {}
    if len(created) < len(news):  # a concurrent intake won these (ON CONFLICT waited for it to commit)
        lost = {return_id: pk for return_id, pk, *_ in _known(store, {p.return_id for p in news} - set(created))}
    bulk_sql.insert_rows(LineItem, items)
    oplog.record_many(rows)
    if created:
        events.publish(events.CREATED, agency_id=store.agency_id, ticket_ids=[t.pk for t in created.values()])
    return created, lost


def _new_request(store: Store, values: dict) -> AfterSalesRequest:
    """``AfterSalesRequest(store=store, **values)`` (attribute names) for a fraction of the CPU: positional
    arguments skip the per-name keyword path, the store instance goes straight into the relation's cache."""
    args = [values[f.attname] if f.attname in values else None if f.primary_key else f.get_default()
            for f in AfterSalesRequest._meta.concrete_fields]
    ticket = AfterSalesRequest(*args)
    AfterSalesRequest.store.field.set_cached_value(ticket, store)
    return ticket


def _intake_rows(ticket: AfterSalesRequest, p: _Parsed, performer: Performer,
                 exemption: dict | None) -> list[tuple[AfterSalesRequest, dict]]:
    """A new request's log rows: its intake (ERR_REVIEW_002 when born rejected by the platform), an unknown
    status (ERR_SYNC_001), a no-reason exemption (ERR_POLICY_001)."""
    code, message = _review_failure(ticket, "", {"role": p.fields["initiator_role"]})
    rows = [(ticket, {"performer": performer, "action": "intake", "before": "", "after": ticket.state,
                      "error_code": code, "message": message,
                      "payload": {"return_status": p.raw_status, "reason": p.fields["reason_key"]}})]
    if ticket.platform_status_unknown:
        rows.append((ticket, {"performer": performer, "action": "platform_status", "before": ticket.state,
                              "after": ticket.state, "error_code": errors.ERR_SYNC_001.code,
                              "message": str(errors.ERR_SYNC_001.message), "payload": {"raw_status": p.raw_status}}))
    if exemption:
        rows.append((ticket, {"performer": oplog.SYSTEM, "action": "policy_check", "before": ticket.state,
                              "after": ticket.state, "error_code": errors.ERR_POLICY_001.code,
                              "message": str(errors.ERR_POLICY_001.message), "payload": exemption}))
    return rows


def _insert_requests(tickets: list[AfterSalesRequest]) -> dict[str, int]:
    """One ``INSERT … SELECT … FROM unnest(…) ON CONFLICT DO NOTHING``: {return_id: id} of the rows it inserted.

    A return whose (store, return_id) row exists is skipped, never an error: the statement waits for a
    concurrent intake of it to commit, and the caller applies the object to that row. ``stores.bulk.insert_rows``
    has no conflict clause and refuses array columns, hence the statement here; values go through its column
    conversion, so rows are what the ORM writes. Half the columns of a new request hold the same value on every
    row (store, times, empty lists, NULLs): each of those travels once, not as an array — dumping arrays is
    most of the statement's cost in Python. A new request has no tags: the array column gets '{}'."""
    if not tickets:
        return {}
    fields, arrays = _request_columns()
    if any(getattr(t, f.attname) for t in tickets for f in arrays):
        raise ValueError("a new request carries no array values")
    rows = [{f.attname: getattr(t, f.attname) for f in fields} for t in tickets]
    constant = tuple(_same([r[f.attname] for r in rows]) for f in fields)
    params = [bulk_sql._column(f, rows[:1])[0] for f, same in zip(fields, constant, strict=True) if same]
    params += [bulk_sql._column(f, rows) for f, same in zip(fields, constant, strict=True) if not same]
    return dict(bulk_sql.execute(_insert_requests_sql(constant), params, fetch=True))


def _same(column: list) -> bool:
    """One value on every row, of one type; JSON only when empty (1 == 1.0 == True in Python, not in jsonb)."""
    first = column[0]
    if isinstance(first, dict | list) and first:
        return False
    return column.count(first) == len(column) and all(type(v) is type(first) for v in column)


@functools.cache
def _request_columns() -> tuple[list, list]:
    """The request's columns written on intake, and its array columns (written empty)."""
    concrete = [f for f in AfterSalesRequest._meta.concrete_fields if not f.primary_key]
    return ([f for f in concrete if not isinstance(f, ArrayField)], [f for f in concrete if isinstance(f, ArrayField)])


@functools.cache
def _insert_requests_sql(constant: tuple[bool, ...]) -> str:
    """The statement for one pattern of constant columns (a handful of patterns occur: cached)."""
    model = AfterSalesRequest
    quote = connection.ops.quote_name
    fields, arrays = _request_columns()
    select, unnest, names = [], [], []
    for i, (f, same) in enumerate(zip(fields, constant, strict=True)):
        if same:
            select.append(f"%b::{f.db_type(connection)}")
        else:
            select.append(f"v.c{i}")
            unnest.append(f"%b::{f.db_type(connection)}[]")
            names.append(f"c{i}")
    select += [f"'{{}}'::{f.db_type(connection)}" for f in arrays]
    source = f" FROM unnest({', '.join(unnest)}) AS v({', '.join(names)})" if unnest else ""
    columns = ", ".join(quote(f.column) for f in [*fields, *arrays])
    unique = ", ".join(quote(model._meta.get_field(n).column) for n in ("store", "return_id"))
    # Names and types come from the model; every value is a bound parameter.
    return (f"INSERT INTO {quote(model._meta.db_table)} ({columns}) SELECT {', '.join(select)}{source} "
            f"ON CONFLICT ({unique}) DO NOTHING RETURNING {quote('return_id')}, {quote('id')}")


# Reason keys that mean "no reason" (buyer changed their mind): the ones exempt categories refuse.
NO_REASON_MARKERS = ("no_longer_needed", "changed_mind", "change_of_mind", "no_reason", "dont_want",
                     "do_not_want", "not_needed", "ordered_by_mistake")


def _no_reason_exemption(store: Store, fields: dict, items: list[dict], exempt: set[str]) -> dict | None:
    """无理由退货豁免: a no-reason return of an item in an exempt category (``exempt``: the market policy's
    no_reason_exempt_categories, read once per batch)."""
    if fields["type"] == RequestType.EXCHANGE:
        return None
    reason = (fields.get("reason_key") or "").lower()
    if not any(marker in reason for marker in NO_REASON_MARKERS):
        return None
    for item in items:
        if item["category"] in exempt:
            return {"rule": "no_reason_exempt_categories", "market": store.market.code,
                    "category": item["category"], "sku_id": item["sku_id"], "reason": fields["reason_key"],
                    "source": "US Return Policy §4.2" if store.market.code == "US" else ""}
    return None


# --- logistics hooks (called by the logistics app; the request's state does not change) -------------
def mark_stalled(ticket_id, *, detail: dict) -> bool:
    """物流断链: flag the request stalled and log ERR_LOG_301 — once; False when it already was."""
    with transaction.atomic():
        ticket = lock_ticket(oplog.SYSTEM, ticket_id)
        if ticket.stalled_at is not None:
            return False
        ticket.stalled_at = timezone.now()
        ticket.save(update_fields=["stalled_at", "updated_at"])
        oplog.record(ticket, performer=oplog.SYSTEM, action="scan_watch", before=ticket.state, after=ticket.state,
                     error_code=errors.ERR_LOG_301.code, message=str(errors.ERR_LOG_301.message), payload=detail)
        raise_alert(ticket, "stalled", key=str(detail.get("tracking_number", ""))[:100],
                    error_code=errors.ERR_LOG_301.code, message=str(errors.ERR_LOG_301.message))
        return True


def raise_alert(ticket: AfterSalesRequest, kind: str, *, key: str = "", error_code: str = "",
                message: str = "") -> bool:
    """Raise an alert once per (request, kind, key); False when it was already raised."""
    from aftersales.models import Alert

    alert, created = Alert.objects.get_or_create(
        ticket=ticket, kind=kind, key=key[:100],
        defaults={"agency_id": ticket.agency_id, "error_code": error_code, "message": message[:500]},
    )
    if not created and alert.resolved_at is not None:
        # The same cause came back (e.g. the same parcel stalled again): reopen the alert.
        Alert.objects.for_agency(ticket.agency_id).filter(pk=alert.pk).update(resolved_at=None, read_at=None)
        return True
    return created


def clear_stalled(ticket_id, *, detail: dict) -> bool:
    """The carrier's first scan arrived: the request leaves the stalled queue (logged)."""
    with transaction.atomic():
        ticket = lock_ticket(oplog.SYSTEM, ticket_id)
        if ticket.stalled_at is None:
            return False
        ticket.stalled_at = None
        ticket.save(update_fields=["stalled_at", "updated_at"])
        ticket.alerts.filter(kind="stalled", resolved_at__isnull=True).update(resolved_at=timezone.now())
        oplog.record(ticket, performer=oplog.SYSTEM, action="scan_watch_cleared", before=ticket.state,
                     after=ticket.state, payload=detail)
        return True


def log_logistics(ticket_id, *, performer: Performer, action: str, payload: dict, error: AppError | None = None):
    """A logistics step on a request (tracking number, interception, label) into its operation log."""
    with transaction.atomic():
        ticket = lock_ticket(performer, ticket_id)
        oplog.record(ticket, performer=performer, action=action, before=ticket.state, after=ticket.state,
                     error_code=error.code if error else "",
                     message=(error.detail or str(error.error.message)) if error else "", payload=payload)
        return ticket


# --- batch review (批量审核) -------------------------------------------------------------------------
BULK_LIMIT = 1000


BULK_STEPS: dict[str, Callable[[dict[str, Any]], Step]] = {
    "approve": lambda p: approve_step(p.get("decision", ""), partial_refund=p.get("partial_refund"),
                                      currency=p.get("currency"), buyer_keep_item=bool(p.get("buyer_keep_item"))),
    "reject": lambda p: reject_step(reason=p.get("reason", ""), comment=p.get("comment", "")),
    "request_evidence": lambda p: request_evidence_step(message=p.get("message", "")),
    "close": lambda p: close_step(comment=p.get("comment", "")),
}
BULK_ACTIONS = set(BULK_STEPS)


def bulk(performer: Performer, action: str, ids: list, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Act on many requests across stores. Each item has its own result and code; a refused one never holds
    back the others (``perform_many``)."""
    if action not in BULK_ACTIONS:
        raise AppError(errors.ERR_BULK_002)
    if len(ids) > BULK_LIMIT:
        raise AppError(errors.ERR_BULK_001, data={"limit": BULK_LIMIT})
    unique = list(dict.fromkeys(str(i) for i in ids))  # duplicates act once
    try:
        outcome = perform_many(performer, unique, BULK_STEPS[action](params))
    except AppError as exc:  # the input itself is refused (an unknown decision, a comment too long): every item
        outcome = dict.fromkeys(unique, exc)
    return [{"id": i, "ok": outcome[i] is None, "error": None if outcome[i] is None else {
        "code": outcome[i].code, "message": outcome[i].detail or str(outcome[i].error.message)}} for i in unique]


# Columns every action may set (state; first human response and the SLA watch, sla.note_action) — with
# ``Step.fields``, what a batch writes.
PERFORM_FIELDS = ("state", "state_changed_at", "first_human_response_at", "due_at", "due_kind", "sla_check_at",
                  "updated_at")
# Read by no seller action or deadline: a batch leaves them unread (the payloads are the bulk of a row).
_BATCH_DEFERRED = ("raw", "platform_records", "seller_next_actions")


def perform_many(performer: Performer, ids: list[str], step: Step) -> dict[str, AppError | None]:
    """``perform`` for many requests (public ids) at once: each its own checks, result, log row, outbox row and
    event, exactly as ``step.run`` would give it — written set-based, in one transaction.

    The requests are locked in id order in one statement (batches and single actions never deadlock) and
    decided in memory; then one UPDATE of the changed columns, one INSERT of the log rows (refusals with their
    code, as ``perform`` logs them) and one of the outbox rows, whatever the size. A refusal is a result, not a
    rollback. Should the database refuse the batch as a whole, it is rolled back and redone one request per
    transaction (``step.run``), so one bad row costs only its own change. Returns the error of each id (None:
    done); an id spelled twice (other case, no dashes) acts once.
    """
    try:
        with sla.policies_cached(), transaction.atomic():
            return _perform_batch(performer, ids, step)
    except DatabaseError:
        log.warning("batch %s of %d requests refused as a whole; redone one by one", step.action, len(ids),
                    exc_info=True)
    outcome: dict[str, AppError | None] = {}
    with sla.policies_cached():
        for ticket_id in ids:
            try:
                step.run(performer, ticket_id)
                outcome[ticket_id] = None
            except AppError as exc:
                outcome[ticket_id] = exc
            except DatabaseError:  # this request's own fault: it alone fails, coded; the others go on
                log.exception("batch %s: request %s refused by the database", step.action, ticket_id)
                outcome[ticket_id] = AppError(errors.ERR_INTERNAL)
    return outcome


def _perform_batch(performer: Performer, ids: list[str], step: Step) -> dict[str, AppError | None]:
    outcome: dict[str, AppError | None] = {}
    wanted: dict[str, uuid.UUID] = {}
    for ticket_id in ids:
        try:
            wanted[ticket_id] = uuid.UUID(str(ticket_id))
        except ValueError:
            outcome[ticket_id] = AppError(errors.ERR_NOT_FOUND)
    qs = AfterSalesRequest.objects
    qs = qs.for_actor(performer.actor) if performer.actor is not None else qs.unscoped()
    locked = {t.public_id: t for t in qs.select_for_update(of=("self",)).select_related(
        "store__market", "store__tiktok_link").defer(*_BATCH_DEFERRED).filter(
        public_id__in=set(wanted.values())).order_by("pk")}
    granted = None
    if performer.actor is not None and step.perm_key is not None:
        granted = store_perms(performer.actor, {t.store_id for t in locked.values()})
    missed = sla.breached_kinds_of([t for t in locked.values() if t.breached_at is not None])
    log_name = step.log_action or step.action
    seen: dict[int, AppError | None] = {}
    done: list[tuple[AfterSalesRequest, str, dict]] = []
    log_rows: list[tuple[AfterSalesRequest, dict]] = []
    for ticket_id, public_id in wanted.items():
        ticket = locked.get(public_id)
        if ticket is None:  # missing, another tenant's or a store the actor may not see: alike, and not logged
            outcome[ticket_id] = AppError(errors.ERR_NOT_FOUND)
            continue
        if ticket.pk in seen:
            outcome[ticket_id] = seen[ticket.pk]
            continue
        payload, before = dict(step.payload or {}), ticket.state
        try:
            if granted is not None:
                for perm in ACTION_PERMS[step.perm_key]:
                    if perm not in granted.get(ticket.store_id, ()):
                        raise missing_perm(perm)
            _decide(performer, ticket, step.action, step.change, step.choose_target, payload,
                    missed=missed.get(ticket.pk, set()))
        except AppError as exc:  # nothing of this request is written; its refusal is logged as perform logs it
            seen[ticket.pk] = outcome[ticket_id] = exc
            log_rows.append((ticket, {"performer": performer, "action": log_name, "before": before, "after": before,
                                      "error_code": exc.code, "message": exc.detail or str(exc.error.message),
                                      "payload": payload}))
            continue
        seen[ticket.pk] = outcome[ticket_id] = None
        done.append((ticket, before, payload))
        log_rows.append((ticket, {"performer": performer, "action": log_name, "before": before,
                                  "after": ticket.state, "payload": payload}))
    bulk_sql.update_rows(AfterSalesRequest, [t for t, _before, _payload in done], (*PERFORM_FIELDS, *step.fields))
    oplog.record_many(log_rows)
    if _decides_on_platform(log_name, performer):
        linked = [(t, payload) for t, _before, payload in done if _linked(t)]
        if linked:
            from aftersales.tiktok import outbox

            outbox.enqueue_many(linked, log_name)
    for ticket, before, payload in done:
        events.publish(events.STATE_CHANGED, ticket_id=ticket.pk, action=step.action, before=before,
                       after=ticket.state, payload=payload)
    return outcome


# --- escalation by a person -------------------------------------------------------------------------
# Escalating needs what every other seller action needs; offered by selectors.allowed_actions on open requests.
ESCALATE_PERMS: tuple[str, ...] = (StorePerm.HANDLE_AFTERSALES,)


def escalate(performer: Performer, ticket_id, note: str = "") -> AfterSalesRequest:
    """升级: flag the request for a senior's review, as the auto-rules' escalate action does — the "review_failed"
    alert with key "escalated" (reopened if it was resolved) and an ``escalate`` log row; the state stays.

    Like ``perform``: the row locked, the store permission checked, a refusal logged with its code after the
    rollback. Only open requests can be escalated (ERR_STATE_001 otherwise). A person's escalation is a human
    response: the first one stamps ``first_human_response_at`` (sla.note_action), as any successful action does.
    """
    from django.utils.translation import gettext

    from aftersales.states import OPEN_STATES

    note = (note or "").strip()[:MAX_COMMENT]
    payload = {"note": note}
    locked_pk: int | None = None
    try:
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)
            locked_pk = ticket.pk
            if performer.actor is not None:
                for perm in ESCALATE_PERMS:
                    require_store_perm(performer.actor, ticket.store, perm)
            if ticket.state not in OPEN_STATES:
                raise AppError(errors.ERR_STATE_001, data={"action": "escalate", "state": ticket.state})
            sla.note_action(ticket, performer, ticket.state)
            ticket.save()
            message = note or gettext("Escalated for review by %(who)s.") % {"who": performer.label}
            payload["alert_raised"] = raise_alert(ticket, "review_failed", key="escalated", message=message)
            oplog.record(ticket, performer=performer, action="escalate", before=ticket.state, after=ticket.state,
                         payload=payload)
            return ticket
    except AppError as exc:
        if locked_pk is not None:
            oplog.record_failure(locked_pk, performer=performer, action="escalate", error_code=exc.code,
                                 message=exc.detail or str(exc.error.message), payload=payload)
        raise
