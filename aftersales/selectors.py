"""Reads of the after-sales core, always through the scoping gate."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import QuerySet

from aftersales.models import AfterSalesRequest, Evidence, OperationLog
from aftersales.services import ACTION_PERMS, ESCALATE_PERMS
from aftersales.states import ACTIONS, OPEN_STATES, targets
from stores.models import MarketPolicy
from stores.scoping import Actor
from stores.services import store_perms

CENT = Decimal("0.01")

# Seller actions offered to people; buyer and platform events are not theirs to take.
SELLER_ACTION_PREFIXES = ("approve:", "reject:", "request_evidence", "refund", "ship_replacement", "close")


def tickets_for_actor(actor: Actor | None, *, stores_first: bool = False) -> QuerySet[AfterSalesRequest]:
    return AfterSalesRequest.objects.for_actor(actor, stores_first=stores_first).select_related("store__market")


def timeline(ticket: AfterSalesRequest) -> QuerySet[OperationLog]:
    """The operation log of one request, oldest first, in one query."""
    return OperationLog.objects.filter(ticket_id=ticket.pk).select_related("actor_user").order_by("id")


def platform_allows(ticket: AfterSalesRequest, decision: str) -> bool:
    """False only when the platform's decision eligibility marked this decision ineligible for the request."""
    verdict = (ticket.platform_eligibility or {}).get(decision)
    return not (isinstance(verdict, dict) and verdict.get("eligible") is False)


def allowed_actions(actor: Actor, ticket: AfterSalesRequest, perms: set[str] | None = None) -> list[str]:
    """What this person may do to this request now (state × role), so clients never guess."""
    if perms is None:
        perms = store_perms(actor, [ticket.store_id]).get(ticket.store_id, set())
    result = []
    for action in ACTIONS:
        if not action.startswith(SELLER_ACTION_PREFIXES) or not targets(action, ticket.type, ticket.state):
            continue
        verb, _sep, decision = action.partition(":")
        if decision and not platform_allows(ticket, decision):
            continue  # the platform said no (decision eligibility): the button is not offered
        needed = ACTION_PERMS[verb]
        if all(p in perms for p in needed):
            result.append(action)
    if ticket.state in OPEN_STATES and all(p in perms for p in ESCALATE_PERMS):
        result.append("escalate")  # no state change: offered on every open request (services.escalate)
    return result


def fees(ticket: AfterSalesRequest, policy: MarketPolicy | None = None) -> dict:
    """Commission returned on the refunded amount and who pays return shipping, per market policy.

    Before any refund the commission figure is what *will* be returned on the refundable total.
    """
    if policy is None:
        policy = MarketPolicy.objects.filter(market_id=ticket.store.market_id).first()
    rate = policy.commission_rate if policy else Decimal("0")
    base = ticket.refunded_amount if ticket.refunded_amount > 0 else ticket.refund_total
    shipping = (ticket.raw or {}).get("shipping_fee_amount") or []
    return {
        "currency": ticket.currency,
        "commission_rate": rate,
        "commission_returned": (base * rate).quantize(CENT, rounding=ROUND_HALF_UP),
        "commission_is_estimate": ticket.refunded_amount <= 0,
        "return_shipping_payer": policy.return_shipping_payer if policy else "",
        "return_shipping_payer_label": str(policy.get_return_shipping_payer_display()) if policy else "",
        "platform_shipping_fees": shipping[0] if shipping and isinstance(shipping[0], dict) else {},
    }


def evidence_file_for_user(user, evidence_id) -> Evidence | None:
    """An evidence file to download: members through the scoping gate; back-office staff with the
    view permission across tenants (the admin links here). None when not found or not allowed."""
    from stores.services import actor_for_user

    try:
        lookup = {"public_id": uuid.UUID(str(evidence_id)), "kind": Evidence.Kind.IMAGE}
    except ValueError:
        return None
    actor = actor_for_user(user)
    if actor is not None:
        qs = Evidence.objects.for_actor(actor)
    elif user.is_active and user.is_staff and user.has_perm("aftersales.view_evidence"):
        qs = Evidence.objects.unscoped()
    else:
        return None
    return qs.filter(**lookup).exclude(file="").first()
