"""售后分析: the after-sales summary of the last 7 or 30 days, as pure selectors.

Everything starts from ``tickets_for_actor`` (the scoping gate) and is narrowed to the stores on which the
actor holds ``view_analytics`` (owners: every store of their agency). Three grouped queries, whatever the
volume: one aggregate over the requests, one over their line items by category, one over reasons.

Definitions (the window is ``days`` back from now; a request belongs to it by its *request time*, the
platform's creation time when sent, else our intake time — as in ``aftersales/buyers.py``):

- **requests**: after-sales requests in the window (every type and state).
- **return rate (退货率)**: units asked back ÷ units sold, in percent, per line-item category and overall,
  next to the category benchmark (DOMAIN: apparel ≤ 12.4 %, electronics accessories ≤ 5.8 %; data in
  ``settings.ANALYTICS_RETURN_BENCHMARKS``, category key → percent). Units sold come from ``OrderVolume``
  (pushed by ERPs: ``aftersales/volumes.py``), summed over the window's market-local days from the day of
  ``since``; a category without volume has ``rate_pct`` None, and the overall rate counts only the
  categories that have it (or every unit, when volume is sent as store totals, category ""). ``orders`` and
  ``units_sold`` are the summed volume (None when none was sent).
- **proactive refund rate (主动退款率)**: requests refunded (``refunded_amount`` > 0) without the platform
  ever intervening (no arbitration status) ÷ requests, in percent.
- **platform intervention rate (平台介入率)**: requests that reached platform arbitration (any arbitration
  status) ÷ requests, in percent.
- **average handling hours**: for requests in the window that are finished (completed, closed or
  cancelled), the mean of (time they reached that state − request time), in hours. Benchmarks (DOMAIN):
  platform-integrated sellers 28.6 h, industry 52.3 h.
- **72 h completion rate**: requests finished within 72 h of their request time ÷ requests that have had
  their 72 h (request time at least 72 h ago) or are already finished, in percent — so a request that is
  still young and open neither helps nor hurts. Benchmark (DOMAIN): 94.7 %.
- **top reasons**: the most frequent reason keys (with the text most recently seen for it), count and
  share of the window's requests in percent; ties by key.

Rates are ``None`` when their denominator is 0. Percentages are rounded to two places.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db.models import Avg, Count, ExpressionWrapper, F, Max, Q, QuerySet, Sum
from django.db.models import DurationField as DurationOutput
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales.models import LineItem, OrderVolume
from aftersales.selectors import tickets_for_actor
from aftersales.states import FINAL_STATES
from stores import errors
from stores.errors import AppError
from stores.models import Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

WINDOWS = (7, 30)
TOP_REASONS = 3
COMPLETION_HOURS = 72
DEFAULT_RETURN_BENCHMARKS = {"apparel": "12.4", "3c_accessories": "5.8"}
# Other spellings of the benchmark categories that line items may carry.
CATEGORY_ALIASES = {"electronics_accessories": "3c_accessories", "electronics accessories": "3c_accessories"}
DEFAULT_SERVICE_BENCHMARKS = {"handling_hours_platform_integrated": "28.6", "handling_hours_industry": "52.3",
                              "completed_within_72h_pct": "94.7"}


def return_benchmarks() -> dict[str, Decimal]:
    raw = getattr(settings, "ANALYTICS_RETURN_BENCHMARKS", DEFAULT_RETURN_BENCHMARKS)
    return {str(k): Decimal(str(v)) for k, v in raw.items()}


def service_benchmarks() -> dict[str, Decimal]:
    raw = {**DEFAULT_SERVICE_BENCHMARKS, **getattr(settings, "ANALYTICS_SERVICE_BENCHMARKS", {})}
    return {k: Decimal(str(v)) for k, v in raw.items()}


def _pct(part: int, whole: int) -> float | None:
    return round(part * 100 / whole, 2) if whole else None


def analytics_stores(actor: Actor, store=None) -> QuerySet[Store]:
    """The stores the summary covers: one visible store (404 when not visible, ERR_PERM_005 without
    view_analytics there) or every store the actor holds view_analytics on."""
    if store is not None:
        found = Store.objects.for_actor(actor).by_id(store).first()
        if found is None:
            raise AppError(errors.ERR_NOT_FOUND)
        require_store_perm(actor, found, StorePerm.VIEW_ANALYTICS)
        return Store.objects.for_actor(actor).filter(pk=found.pk)
    return Store.objects.for_actor(actor, perm=StorePerm.VIEW_ANALYTICS)


def summary(actor: Actor, *, days: int, store=None, now: dt.datetime | None = None) -> dict:
    """The summary of the module docstring for the last ``days`` (7 or 30) days.

    Without a store it covers every store with view_analytics; a sub-account that sees stores but may view
    the analytics of none gets ERR_PERM_005 (rather than an empty summary that looks like a quiet week).
    """
    if days not in WINDOWS:
        raise AppError(errors.ERR_VALIDATION, fields={"days": [_("7 or 30.")]})
    now = now or timezone.now()
    since = now - dt.timedelta(days=days)
    stores = analytics_stores(actor, store)
    store_rows = list(stores.order_by("name", "pk").values_list("pk", "public_id"))
    store_ids = [pk for pk, _public in store_rows]
    if store is None and not store_ids and not actor.is_owner and Store.objects.for_actor(actor).exists():
        raise AppError(errors.ERR_PERM_005)

    requested_at = Coalesce("platform_created_at", "created_at")
    tickets = (tickets_for_actor(actor).select_related(None).filter(store_id__in=store_ids)
               .annotate(requested_at=requested_at).filter(requested_at__gte=since).order_by())
    finished = Q(state__in=[str(s) for s in FINAL_STATES])
    handling = ExpressionWrapper(F("state_changed_at") - F("requested_at"), output_field=DurationOutput())
    in_time = finished & Q(state_changed_at__lte=F("requested_at") + dt.timedelta(hours=COMPLETION_HOURS))
    due = finished | Q(requested_at__lte=now - dt.timedelta(hours=COMPLETION_HOURS))
    totals = tickets.aggregate(
        n=Count("pk"),
        proactive=Count("pk", filter=Q(refunded_amount__gt=0, arbitration_status="")),
        intervened=Count("pk", filter=~Q(arbitration_status="")),
        finished=Count("pk", filter=finished),
        avg_handling=Avg(handling, filter=finished),
        in_time=Count("pk", filter=in_time),
        due=Count("pk", filter=due),
    )

    categories = list(
        LineItem.objects.filter(ticket__in=tickets.values("pk")).values("category")
        .annotate(requests=Count("ticket_id", distinct=True), units=Sum("quantity")).order_by("category")
    )
    volumes = {row["category"]: row for row in OrderVolume.objects.filter(
        store_id__in=store_ids, day__gte=since.date()).values("category")
        .annotate(units_sold=Sum("units_sold"), orders=Sum("orders")).order_by()}
    reasons = list(
        tickets.values("reason_key").annotate(count=Count("pk"), text=Max("reason_text"))
        .order_by("-count", "reason_key")[:TOP_REASONS]
    )

    n = totals["n"]
    benchmarks = return_benchmarks()
    by_category = []
    asked_back = sold_total = 0
    for row in categories:
        key = CATEGORY_ALIASES.get((row["category"] or "").lower(), row["category"] or "")
        sold = (volumes.get(row["category"] or "") or {}).get("units_sold")
        units = row["units"] or 0
        if sold:
            asked_back, sold_total = asked_back + units, sold_total + sold
        by_category.append({"category": row["category"] or "", "requests": row["requests"],
                            "units": units, "units_sold": sold, "rate_pct": _pct(units, sold or 0),
                            "benchmark_max_pct": benchmarks.get(key)})
    if "" in volumes and not sold_total:  # volume sent as store totals: every unit asked back counts
        asked_back = sum(row["units"] or 0 for row in categories)
        sold_total = volumes[""]["units_sold"] or 0
    orders = sum(v["orders"] or 0 for v in volumes.values()) if volumes else None
    service = service_benchmarks()
    avg = totals["avg_handling"]
    return {
        "days": days,
        "since": since,
        "until": now,
        "store_ids": [str(public) for _pk, public in store_rows],
        "requests": n,
        "return_rate": {
            "rate_pct": _pct(asked_back, sold_total),
            "orders": orders,
            "units_sold": sold_total if volumes else None,
            "by_category": by_category,
            "benchmarks": [{"category": k, "max_pct": v} for k, v in sorted(benchmarks.items())],
        },
        "proactive_refund_rate": {"pct": _pct(totals["proactive"], n), "count": totals["proactive"], "of": n},
        "platform_intervention_rate": {"pct": _pct(totals["intervened"], n), "count": totals["intervened"],
                                       "of": n},
        "avg_handling_hours": {
            "hours": None if avg is None else round(avg.total_seconds() / 3600, 2),
            "finished": totals["finished"],
            "benchmark_platform_integrated": service["handling_hours_platform_integrated"],
            "benchmark_industry": service["handling_hours_industry"],
        },
        "completed_within_72h": {"pct": _pct(totals["in_time"], totals["due"]), "count": totals["in_time"],
                                 "of": totals["due"], "benchmark_pct": service["completed_within_72h_pct"]},
        "top_reasons": [{"key": r["reason_key"], "text": r["text"] or "", "count": r["count"],
                         "share_pct": _pct(r["count"], n)} for r in reasons],
    }
