"""Reads for return logistics. Every read for a person starts from ``for_actor`` (DESIGN rule 2)."""

from __future__ import annotations

from django.db.models import QuerySet

from aftersales.models import AfterSalesRequest
from aftersales.states import RequestType
from logistics.models import ReturnShipment
from stores.scoping import Actor


def stalled_for_actor(actor: Actor) -> QuerySet[ReturnShipment]:
    """The stalled queue (物流断链): return parcels still without a carrier scan, longest-stalled first."""
    return (ReturnShipment.objects.for_actor(actor)
            .filter(stalled_at__isnull=False, first_scan_at__isnull=True)
            .select_related("ticket", "ticket__store", "carrier")
            .order_by("stalled_at", "pk"))


def reported_return_tracking(ticket_id: int) -> tuple[str, str] | None:
    """The return tracking number and provider name the platform sent with a request, if it has a parcel.

    System read (event handler): unscoped by id.
    """
    row = (AfterSalesRequest.objects.unscoped().filter(
        pk=ticket_id, type__in=[RequestType.RETURN_AND_REFUND, RequestType.EXCHANGE])
        .values_list("raw__return_tracking_number", "raw__return_provider_name").first())
    if row is None or not row[0] or not isinstance(row[0], str | int):
        return None
    return str(row[0]), str(row[1] or "")


def label_file_for_user(user, label_id):
    """A return-label PDF to download: members through the scoping gate; back-office staff with the
    view permission across tenants. None when not found or not allowed."""
    import uuid

    from logistics.models import ReturnLabel
    from stores.services import actor_for_user

    try:
        public_id = uuid.UUID(str(label_id))
    except ValueError:
        return None
    actor = actor_for_user(user)
    if actor is not None:
        qs = ReturnLabel.objects.for_actor(actor)
    elif user.is_active and user.is_staff and user.has_perm("logistics.view_returnlabel"):
        qs = ReturnLabel.objects.unscoped()
    else:
        return None
    return qs.filter(public_id=public_id).select_related("ticket").first()
