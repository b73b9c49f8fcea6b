"""提醒 in the browser: the header's live count (polled JSON) and the alerts page.

The header's badge is filled by ``static/portal/live.js`` from ``alerts/summary.json`` right after a page
loads and then every ``PORTAL_ALERTS_POLL_SECONDS`` while the tab is visible, so no page pays a query for it
and a new buyer message or a deadline about to pass shows up without a reload. The rules (what is open, who
may read) are in ``aftersales/alerts.py``.
"""

from __future__ import annotations

import base64
import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from aftersales import alerts as service
from aftersales.models import Alert
from portal.request import ShownError
from portal.views import current_store, no_agency
from stores.selectors import stores_for_actor
from stores.services import actor_for_user

BEFORE_PARAM = "before"


def poll_seconds() -> int:
    """How often an open page asks for the count (``PORTAL_ALERTS_POLL_SECONDS``, default 20)."""
    return settings.PORTAL_ALERTS_POLL_SECONDS


def _cursor(alert: Alert) -> str:
    raw = f"{alert.created_at.isoformat()}|{alert.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(value: str) -> tuple[dt.datetime, int] | None:
    """A cursor from the page's own "older" link; anything else starts from the newest."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        when, pk = raw.split("|")
        created = parse_datetime(when)
        return (created, int(pk)) if created is not None and timezone.is_aware(created) else None
    except (ValueError, UnicodeDecodeError):
        return None


@login_required
@require_GET
def summary_json(request):
    """The header's badge: the open unread count, by kind, and the newest few."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    data = service.unread_summary(actor)
    labels = dict(Alert.Kind.choices)
    latest = [{
        "id": str(a.public_id),
        "kind": a.kind,
        "label": str(labels.get(a.kind, a.kind)),
        "message": a.message,
        "code": a.error_code,
        "request": a.ticket.return_id or a.ticket.order_id,
        "store": f"{a.ticket.store.name} · {a.ticket.store.market.code}",
        "url": reverse("portal:request", kwargs={"ticket_id": a.ticket.public_id}),
        "created": a.created_at.isoformat(),
    } for a in data["latest"]]
    count = data["count"]
    return JsonResponse({
        "count": count,
        "text": ngettext("%(n)s unread alert", "%(n)s unread alerts", count) % {"n": count},
        "by_kind": {str(labels.get(k, k)): n for k, n in sorted(data["by_kind"].items())},
        "latest": latest,
        "poll_seconds": poll_seconds(),
    }, headers={"Cache-Control": "no-store"})


@login_required
@require_GET
def alerts_page(request):
    """Open alerts of the stores in view, newest first, 50 a page; filters: store, kind, unread only."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores = list(stores_for_actor(actor))
    chosen = request.GET.get("store")
    store = (next((s for s in stores if str(s.public_id) == chosen), None) if chosen is not None
             else current_store(request, stores))
    kinds = dict(Alert.Kind.choices)
    kind = request.GET.get("kind", "")
    kind = kind if kind in kinds else ""
    unread_only = request.GET.get("unread") == "1"
    before = _decode(request.GET.get(BEFORE_PARAM, ""))
    rows, more = service.page(service.open_alerts(actor, store=store, kind=kind, unread_only=unread_only), before)
    for row in rows:  # a code reads in today's language, with its hint; the stored text is the detail
        row.shown = ShownError.from_code(row.error_code, row.message) if row.error_code else None
    here = {k: v for k, v in (("store", str(store.public_id) if store else ""), ("kind", kind),
                              ("unread", "1" if unread_only else "")) if v}
    return render(request, "portal/alerts.html", {
        "stores": stores,
        "store": store,
        "kinds": Alert.Kind.choices,
        "kind": kind,
        "unread_only": unread_only,
        "rows": rows,
        "older_query": urlencode({**here, BEFORE_PARAM: _cursor(rows[-1])}) if more else "",
        "newest_query": urlencode(here) if before is not None else None,
        "back": f"{request.path}?{urlencode(here)}" if here else request.path,
    })


@login_required
@require_POST
def mark_read(request):
    """Acknowledge the ticked alerts, or all open ones (``all=1``); then back to the list (PRG)."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    ids = None if request.POST.get("all") == "1" else request.POST.getlist("alert")
    # "All" means all the page shows: the same store and kind filters.
    stores = list(stores_for_actor(actor))
    store = next((s for s in stores if str(s.public_id) == request.POST.get("store", "")), None)
    kind = request.POST.get("kind", "")
    kind = kind if kind in dict(Alert.Kind.choices) else ""
    changed = service.mark_read(actor, ids, store=store, kind=kind) if ids is None or ids else 0
    if ids is not None and not ids:
        messages.warning(request, _("Tick the alerts to mark as read first."))
    else:
        messages.success(request, ngettext("%(n)s alert marked as read.", "%(n)s alerts marked as read.",
                                           changed) % {"n": changed})
    target = request.POST.get("next", "")
    if not target.startswith(reverse("portal:alerts")):
        target = reverse("portal:alerts")
    return redirect(target)


urlpatterns = [
    path("alerts/", alerts_page, name="alerts"),
    path("alerts/summary.json", summary_json, name="alerts_summary"),
    path("alerts/read/", mark_read, name="alerts_read"),
]
