"""Alerts for people (提醒): what is open, how many are unread, and acknowledging them.

Alerts are raised by system code (``services.raise_alert``: a stalled return, a deadline close or missed, a
buyer message, a failed review or platform decision). An alert is the team's, not one person's: whoever sees
the store may read it, and "read" means someone on the team has looked (``read_at``), as in a shared inbox.
An alert whose cause went away (``resolved_at``) is no longer open and is not counted.

Everything passes the tenant gate (``Alert.objects.for_actor``): a sub-account counts and reads only the
alerts of the stores granted to it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from aftersales.models import Alert
from stores.scoping import Actor

LATEST = 5  # the newest unread alerts the header's pop-up lists
PAGE_SIZE = 50
MAX_IDS = 200  # alerts acknowledged in one request


def open_alerts(actor: Actor | None, *, store=None, kind: str = "", unread_only: bool = False) -> QuerySet[Alert]:
    """The actor's open (unresolved) alerts, newest first, with what a list shows (request, store, market)."""
    qs = (Alert.objects.for_actor(actor).filter(resolved_at__isnull=True)
          .select_related("ticket__store__market").order_by("-created_at", "-id"))
    if store is not None:
        qs = qs.filter(ticket__store=store)
    if kind:
        qs = qs.filter(kind=kind)
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    return qs


def page(qs: QuerySet[Alert], before: tuple[dt.datetime, int] | None, size: int | None = None) -> tuple[list, bool]:
    """One page of a newest-first list, continuing after ``before`` (keyset: created_at, id)."""
    size = size or PAGE_SIZE
    if before is not None:
        created, pk = before
        qs = qs.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=pk))
    rows = list(qs[: size + 1])
    return rows[:size], len(rows) > size


def unread_summary(actor: Actor | None) -> dict:
    """The header's figure: open unread alerts by kind, and the newest few (two queries)."""
    unread = open_alerts(actor, unread_only=True)
    by_kind = dict(unread.order_by().values_list("kind").annotate(n=Count("id")))
    return {"count": sum(by_kind.values()), "by_kind": by_kind, "latest": list(unread[:LATEST])}


def mark_read(actor: Actor | None, ids: Iterable | None = None, *, store=None, kind: str = "") -> int:
    """Acknowledge the given open alerts (public ids), or every open unread one when ``ids`` is None (of one
    store and one kind when given: what the list showed).

    Ids the actor cannot see (another agency's, an ungranted store's, malformed) simply match nothing; the
    first reader's time is kept (an alert read twice stays read at the first time). Returns how many changed.
    """
    qs = open_alerts(actor, store=store, kind=kind, unread_only=True).select_related(None).order_by()
    if ids is not None:
        qs = qs.filter(public_id__in=_uuids(ids))
    return qs.update(read_at=timezone.now())


def _uuids(values: Iterable) -> list[uuid.UUID]:
    found = []
    for value in list(values)[:MAX_IDS]:
        try:
            found.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return found
