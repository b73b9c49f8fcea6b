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

``dashboard`` (the portal's 售后分析 page) adds to the summary, in a fixed number of grouped queries more:
missed deadlines per kind, compensation per currency, the daily service-score trend, up to 30 reasons for the
word cloud and the reason × product table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Avg, Count, DateField, DateTimeField, ExpressionWrapper, F, Func, Max, Q, QuerySet, Sum
from django.db.models import DurationField as DurationOutput
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales.models import Compensation, LineItem, OrderVolume, ServiceScoreEntry, SlaBreach, SlaKind
from aftersales.selectors import tickets_for_actor
from aftersales.sla import DEFAULT_SCORE_FLOOR, MAX_SCORE
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


@dataclass(frozen=True)
class _Window:
    """What every figure of one call shares: the period, the stores covered and their requests in it."""

    days: int
    now: dt.datetime
    since: dt.datetime
    stores: list[dict]
    store_ids: list[int]
    tickets: QuerySet


def _window(actor: Actor, days: int, store, now: dt.datetime | None) -> _Window:
    if days not in WINDOWS:
        raise AppError(errors.ERR_VALIDATION, fields={"days": [_("7 or 30.")]})
    now = now or timezone.now()
    since = now - dt.timedelta(days=days)
    stores = analytics_stores(actor, store)
    store_rows = list(stores.order_by("name", "pk").values(
        "pk", "public_id", "name", "service_score", market_code=F("market__code"),
        time_zone=F("market__time_zone"), score_floor=F("market__policy__score_floor_for_traffic")))
    store_ids = [row["pk"] for row in store_rows]
    if store is None and not store_ids and not actor.is_owner and Store.objects.for_actor(actor).exists():
        raise AppError(errors.ERR_PERM_005)
    requested_at = Coalesce("platform_created_at", "created_at")
    tickets = (tickets_for_actor(actor).select_related(None).filter(store_id__in=store_ids)
               .annotate(requested_at=requested_at).filter(requested_at__gte=since).order_by())
    return _Window(days, now, since, store_rows, store_ids, tickets)


def summary(actor: Actor, *, days: int, store=None, now: dt.datetime | None = None) -> dict:
    """The summary of the module docstring for the last ``days`` (7 or 30) days.

    Without a store it covers every store with view_analytics; a sub-account that sees stores but may view
    the analytics of none gets ERR_PERM_005 (rather than an empty summary that looks like a quiet week).
    """
    return _summary(_window(actor, days, store, now), TOP_REASONS)


def _summary(window: _Window, reason_limit: int) -> dict:
    """The summary's figures; ``top_reasons`` holds up to ``reason_limit`` reasons (the dashboard's cloud
    asks for more in the same query, then keeps the summary's three)."""
    days, now, since, store_ids, tickets = window.days, window.now, window.since, window.store_ids, window.tickets
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
        .order_by("-count", "reason_key")[:reason_limit]
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
        "store_ids": [str(row["public_id"]) for row in window.stores],
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


# --- the portal's dashboard (售后分析) ----------------------------------------------------------------------
CLOUD_REASONS = 30
MATRIX_PRODUCTS = 6
MATRIX_REASONS = 10
# A reason "stands out" for a product when it is behind at least this share of that product's requests, and
# in at least STANDOUT_MIN_COUNT of them (so one request of a rarely returned product is not a finding). The
# seed's example: "missing assembly instructions" behind 37 % of one product's returns.
STANDOUT_MIN_PCT = 25
STANDOUT_MIN_COUNT = 3


def dashboard(actor: Actor, *, days: int, store=None, now: dt.datetime | None = None) -> dict:
    """Everything the 售后分析 page shows: ``summary`` (its keys, unchanged, top 3 reasons) plus

    - ``reasons``: up to ``CLOUD_REASONS`` reasons (key, text, count, share) for the word cloud;
    - ``breaches``: missed deadlines recorded in the window, per kind, and their ``total``;
    - ``compensation``: 自动赔付 recorded in the window per currency, ``paid`` (granted) and ``capped`` —
      never summed across currencies;
    - ``service_score``: each store's current score against its market's down-weighting floor, and the daily
      trend (the score at the end of each market-local day) of the one store, or averaged over the stores;
    - ``reason_products``: the reason × product table — columns are the products with the most requests,
      rows the reasons behind them, each cell the count and its share of that product's requests.

    The same scope and permission rules as ``summary`` (view_analytics, ERR_PERM_005). A constant number of
    grouped queries whatever the volume and the number of stores.
    """
    window = _window(actor, days, store, now)
    result = _summary(window, CLOUD_REASONS)
    result["reasons"] = result["top_reasons"]
    result["top_reasons"] = result["reasons"][:TOP_REASONS]
    scoped = {"agency_id": actor.agency_id, "store_id__in": window.store_ids,
              "created_at__gte": window.since, "created_at__lte": window.now}
    result["breaches"] = _breaches(scoped)
    result["compensation"] = _compensation(scoped)
    result["service_score"] = _score_trend(window, scoped, single=store is not None)
    result["reason_products"] = _reason_products(window.tickets, result["requests"])
    return result


def _breaches(scoped: dict) -> dict:
    rows = (SlaBreach.objects.filter(**scoped).values("kind").annotate(count=Count("pk")).order_by("kind"))
    labels = dict(SlaKind.choices)
    kinds = [{"kind": r["kind"], "label": str(labels.get(r["kind"], r["kind"])), "count": r["count"]}
             for r in rows]
    return {"total": sum(k["count"] for k in kinds), "by_kind": kinds}


def _compensation(scoped: dict) -> dict:
    rows = (Compensation.objects.filter(**scoped).values("currency", "status")
            .annotate(amount=Sum("amount"), count=Count("pk")).order_by("currency", "status"))
    result: dict[str, list] = {"paid": [], "capped": []}
    for row in rows:
        key = "paid" if row["status"] == Compensation.Status.GRANTED else "capped"
        result[key].append({"currency": row["currency"], "amount": row["amount"], "count": row["count"]})
    return result


def _score_trend(window: _Window, scoped: dict, *, single: bool) -> dict:
    """Two queries: the last ledger entry of each (store, market-local day) in the window, and each store's
    last entry before it (the score the window starts from; 5.00 when the ledger is empty before, or the
    store's current score when it has no entry at all).

    Stores in far-apart markets have different local days, so the plotted days are one common range — from
    the earliest store's first local day to the latest store's last — and every store has a score on every
    one of them: its starting score before its own first day, its last known score carried forward after its
    own last day. So each point averages every store and the line does not jump at its ends."""
    local_day = Cast(Func(F("store__market__time_zone"), F("created_at"), function="timezone",
                          output_field=DateTimeField()), DateField())
    in_window = list(ServiceScoreEntry.objects.filter(**scoped).annotate(day=local_day)
                     .order_by("store_id", "day", "-created_at", "-id").distinct("store_id", "day")
                     .values_list("store_id", "day", "score_after"))
    before = dict(ServiceScoreEntry.objects.filter(
        agency_id=scoped["agency_id"], store_id__in=window.store_ids, created_at__lt=window.since)
        .order_by("store_id", "-created_at", "-id").distinct("store_id").values_list("store_id", "score_after"))
    daily: dict[int, dict[dt.date, Decimal]] = {}
    for store_id, day, score in in_window:
        daily.setdefault(store_id, {})[day] = score
    zones = {row["time_zone"] for row in window.stores}
    first = min((window.since.astimezone(ZoneInfo(z)).date() for z in zones), default=None)
    last = max((window.now.astimezone(ZoneInfo(z)).date() for z in zones), default=None)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)] if first and last else []
    totals = dict.fromkeys(days, Decimal("0"))
    stores = []
    for row in window.stores:
        entries = daily.get(row["pk"], {})
        score = before.get(row["pk"], MAX_SCORE if entries else row["service_score"])
        for day in days:
            score = entries.get(day, score)
            totals[day] += score
        floor = row["score_floor"] if row["score_floor"] is not None else DEFAULT_SCORE_FLOOR
        stores.append({"id": str(row["public_id"]), "name": row["name"], "market": row["market_code"],
                       "score": row["service_score"], "floor": floor, "below": row["service_score"] < floor})
    points = [(day, (totals[day] / len(stores)).quantize(Decimal("0.01"))) for day in days]
    return {"stores": stores, "floors": sorted({s["floor"] for s in stores}), "averaged": not single,
            "points": points}


def _reason_products(tickets: QuerySet, requests: int) -> dict:
    """Columns: the products with the most requests; rows: the reasons behind them, most frequent first."""
    items = LineItem.objects.filter(ticket__in=tickets.values("pk"))
    products = list(items.values("product_name").annotate(requests=Count("ticket_id", distinct=True))
                    .order_by("-requests", "product_name")[:MATRIX_PRODUCTS])
    names = [p["product_name"] for p in products]
    pairs = list(items.filter(product_name__in=names).values("product_name", reason_key=F("ticket__reason_key"))
                 .annotate(count=Count("ticket_id", distinct=True), text=Max("ticket__reason_text"))
                 .order_by()) if names else []
    totals = {p["product_name"]: p["requests"] for p in products}
    rows: dict[str, dict] = {}
    for pair in pairs:
        row = rows.setdefault(pair["reason_key"], {"key": pair["reason_key"], "text": "", "count": 0, "cells": {}})
        row["text"] = max(row["text"], pair["text"] or "")
        row["count"] += pair["count"]
        share = _pct(pair["count"], totals[pair["product_name"]])
        row["cells"][pair["product_name"]] = {
            "count": pair["count"], "share_pct": share,
            "standout": pair["count"] >= STANDOUT_MIN_COUNT and share >= STANDOUT_MIN_PCT}
    ordered = sorted(rows.values(), key=lambda r: (-r["count"], r["key"]))[:MATRIX_REASONS]
    return {
        "products": [{"name": p["product_name"], "requests": p["requests"]} for p in products],
        "rows": [{**row, "cells": [row["cells"].get(name) for name in names]} for row in ordered],
        "requests": requests,
    }
