"""After-commit subscriptions to the after-sales core: a number the buyer gives becomes a tracked parcel.

aftersales cannot import logistics (the dependency runs logistics → aftersales), so it publishes events and
this module subscribes. Handlers only enqueue a task with ids; the task registers the number with the
buyer as performer, which logs it (or its refusal) on the request.
"""

from __future__ import annotations

from django.db import transaction

from aftersales import events
from aftersales.models import AfterSalesRequest
from aftersales.states import RequestType


def connect() -> None:
    """Subscribe the handlers; safe to call more than once (subscribe ignores a handler it already has)."""
    events.subscribe(events.STATE_CHANGED, on_state_changed)
    events.subscribe(events.CREATED, on_created)


def _enqueue(ticket_id: int, number: str, carrier: str, source: str) -> None:
    from logistics.tasks import register_reported_tracking

    transaction.on_commit(
        lambda: register_reported_tracking.delay(ticket_id, number, carrier, source), robust=True)


def on_state_changed(ticket_id: int, action: str = "", payload: dict | None = None, **_data) -> None:
    """The buyer shipped the return: register the number they gave (carrier "other" when unknown)."""
    payload = payload or {}
    number = str(payload.get("tracking_number") or "").strip()
    if action == "buyer_shipped" and number:
        _enqueue(ticket_id, number, str(payload.get("carrier") or ""), "buyer_shipped")


def on_created(ticket_ids: list[int], **_data) -> None:
    """New requests may already carry the platform's return_tracking_number + return_provider_name (one query
    for the whole intake batch)."""
    for ticket_id, number, provider in _reported_return_trackings(ticket_ids):
        _enqueue(ticket_id, number, provider, "platform_return")


def _reported_return_trackings(ticket_ids: list[int]) -> list[tuple[int, str, str]]:
    """(request id, return tracking number, provider name) of the requests with a parcel whose platform payload
    names a number. System read (event handler): unscoped by id."""
    rows = (AfterSalesRequest.objects.unscoped()
            .filter(pk__in=ticket_ids, type__in=[RequestType.RETURN_AND_REFUND, RequestType.EXCHANGE],
                    raw__has_key="return_tracking_number")
            .order_by("pk").values_list("pk", "raw__return_tracking_number", "raw__return_provider_name"))
    return [(pk, str(number), str(provider or "")) for pk, number, provider in rows
            if number and isinstance(number, str | int)]
