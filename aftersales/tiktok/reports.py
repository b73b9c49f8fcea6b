"""What people see of the connector: each connected store's sync report, runs, and acting on them.

Everything goes through the scoping gate (``for_actor``): a store the caller may not see is absent (404), and
acting on one needs the after-sales handling permission of that store (the coded 403 names the role setting).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery

from aftersales.models import AfterSalesRequest
from aftersales.tiktok import outbox, sync
from aftersales.tiktok.models import PlatformDecision, StoreLink, SyncRun
from stores import errors
from stores.errors import AppError
from stores.models import Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

LAST_RUN_FIELDS = ("status", "trigger", "started_at", "finished_at", "counts", "error_code", "platform_code",
                   "message")


def with_last_run(links: QuerySet[StoreLink]) -> QuerySet[StoreLink]:
    """Each link with its store's newest sync run's fields as ``last_<field>`` (subqueries: still one query)."""
    last = SyncRun.objects.unscoped().filter(store_id=OuterRef("store_id")).order_by("-started_at", "-id")
    return links.annotate(**{f"last_{name}": Subquery(last.values(name)[:1]) for name in LAST_RUN_FIELDS})


def connections_for_actor(actor: Actor | None) -> QuerySet[StoreLink]:
    """Connected stores the actor sees, each with its last run's report (one query)."""
    return with_last_run(StoreLink.objects.for_actor(actor).select_related("store__market", "authorization__app"))


def runs_for_actor(actor: Actor | None, store_id=None) -> QuerySet[SyncRun]:
    runs = SyncRun.objects.for_actor(actor).select_related("store")
    if store_id is not None:
        runs = runs.filter(store__public_id=store_id)
    return runs


def _visible_store(actor: Actor, store_id) -> Store:
    store = Store.objects.for_actor(actor).by_id(str(store_id)).select_related("market").first()
    if store is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return store


def start_sync(actor: Actor, store_id) -> None:
    """A pull now, for a store the actor handles (ERR_TTS_006 when it is not connected)."""
    store = _visible_store(actor, store_id)
    require_store_perm(actor, store, StorePerm.HANDLE_AFTERSALES)
    link = StoreLink.objects.for_agency(store.agency_id).filter(store=store).select_related("authorization").first()
    if link is None or not link.sync_enabled or link.authorization.status != "active":
        raise AppError(errors.ERR_TTS_006)
    sync.request_sync(store.pk, trigger=SyncRun.Trigger.MANUAL)


def resend_decision(actor: Actor, ticket_id) -> PlatformDecision:
    """Send the request's failed decision again (its own idempotency key); ERR_TTS_012 when none failed."""
    with transaction.atomic():
        ticket = (AfterSalesRequest.objects.for_actor(actor).by_id(str(ticket_id)).select_related("store")
                  .first())
        if ticket is None:
            raise AppError(errors.ERR_NOT_FOUND)
        require_store_perm(actor, ticket.store, StorePerm.HANDLE_AFTERSALES)
        latest = outbox.latest_for([ticket.pk]).get(ticket.pk)
        if latest is None or latest.status != PlatformDecision.Status.FAILED:
            raise AppError(errors.ERR_TTS_012)
        outbox.resend([latest.pk])
    latest.refresh_from_db()
    return latest
