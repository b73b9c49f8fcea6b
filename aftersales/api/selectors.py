"""Reads the API needs on top of ``aftersales.selectors``: the queue with its joins, one ticket by public id.

Everything starts from ``tickets_for_actor`` (the scoping gate): a foreign or ungranted ticket is simply
absent, so the API answers 404 for both.
"""

from __future__ import annotations

from django.db.models import F, QuerySet

from aftersales.models import AfterSalesRequest
from aftersales.selectors import tickets_for_actor
from aftersales.states import Decision, RequestType, targets
from stores import errors
from stores.errors import AppError
from stores.scoping import Actor

# The plain approval of each type, in the order tried: the first one the request's state offers is the default.
PLAIN_APPROVALS = (Decision.APPROVE_REFUND, Decision.APPROVE_RETURN, Decision.APPROVE_RECEIVED_PACKAGE,
                   Decision.APPROVE_REPLACEMENT, Decision.APPROVE_REQUEST_CANCEL)
TYPE_APPROVAL = {RequestType.REFUND_ONLY: Decision.APPROVE_REFUND,
                 RequestType.RETURN_AND_REFUND: Decision.APPROVE_RETURN,
                 RequestType.EXCHANGE: Decision.APPROVE_REPLACEMENT,
                 RequestType.CANCELLATION: Decision.APPROVE_REQUEST_CANCEL}


def ticket_queue(actor: Actor | None, *, stores_first: bool = False) -> QuerySet[AfterSalesRequest]:
    """The queue as the list shows it: store and market joined, assignee and return tracking number as
    columns (one query per page whatever its size). Lists pass ``stores_first`` (see ``for_actor``)."""
    return tickets_for_actor(actor, stores_first=stores_first).annotate(
        assignee_username=F("assignee__username"),
        return_tracking_number=F("return_shipment__tracking_number"),
    )


def ticket_for_actor(actor: Actor, ticket_id) -> AfterSalesRequest:
    """One ticket by public id with what its detail shows; ERR_NOT_FOUND when absent, foreign or ungranted."""
    ticket = (ticket_queue(actor).by_id(str(ticket_id))
              .select_related("return_shipment__carrier")
              .prefetch_related("items")
              .first())
    if ticket is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return ticket


def ticket_ref(actor: Actor | None, ticket_id) -> AfterSalesRequest:
    """Just the ticket's id, type and state, through the gate; ERR_NOT_FOUND when absent, foreign or ungranted."""
    ticket = (AfterSalesRequest.objects.for_actor(actor).by_id(str(ticket_id))
              .only("pk", "type", "state").first())
    if ticket is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return ticket


def default_approval(ticket: AfterSalesRequest) -> str:
    """The decision ``approve`` takes when the client names none: the plain approval the request's type and
    state offer (refund, return, received package, replacement). When none applies the type's own is
    returned, so the service answers with the precise state error."""
    for decision in PLAIN_APPROVALS:
        if targets(f"approve:{decision}", ticket.type, ticket.state):
            return decision.value
    return TYPE_APPROVAL.get(ticket.type, Decision.APPROVE_REFUND).value
