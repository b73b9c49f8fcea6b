"""售后分析: the after-sales summary of the last 7 or 30 days, as pure selectors.

The stores covered are those on which the actor holds ``view_analytics`` (owners: every store of their agency).
The figures are additive per store (``aftersales/rollups.py``): a rollup refreshed by the beat (every five
minutes, ``aftersales.refresh_all_analytics``) holds them per store, and the stores it does not cover (made
since) are computed live by the same SQL — a few grouped queries whatever the volume and the number of stores
(docs/ANALYTICS.md).
When a fresh rollup (``ANALYTICS_ROLLUP_MAX_AGE_SECONDS``) is used, every figure is as of its refresh: ``as_of``
is that time and the window ends there (``until``); without one, everything is computed live up to now.

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
from dataclasses import dataclass, replace
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales import rollups
from aftersales.models import AnalyticsRollup, Compensation, SlaKind
from aftersales.rollups import COMPLETION_HOURS, WINDOWS, Figures
from aftersales.sla import DEFAULT_SCORE_FLOOR
from stores import errors
from stores.errors import AppError
from stores.models import Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

__all__ = ["COMPLETION_HOURS", "WINDOWS", "dashboard", "refresh", "summary"]

TOP_REASONS = 3
DEFAULT_RETURN_BENCHMARKS = {"apparel": "12.4", "3c_accessories": "5.8"}
# Other spellings of the benchmark categories that line items may carry.
CATEGORY_ALIASES = {"electronics_accessories": "3c_accessories", "electronics accessories": "3c_accessories"}
DEFAULT_SERVICE_BENCHMARKS = {"handling_hours_platform_integrated": "28.6", "handling_hours_industry": "52.3",
                              "completed_within_72h_pct": "94.7"}
CENTS = Decimal("0.01")


def return_benchmarks() -> dict[str, Decimal]:
    raw = getattr(settings, "ANALYTICS_RETURN_BENCHMARKS", DEFAULT_RETURN_BENCHMARKS)
    return {str(k): Decimal(str(v)) for k, v in raw.items()}


def service_benchmarks() -> dict[str, Decimal]:
    raw = {**DEFAULT_SERVICE_BENCHMARKS, **getattr(settings, "ANALYTICS_SERVICE_BENCHMARKS", {})}
    return {k: Decimal(str(v)) for k, v in raw.items()}


def refresh(agency_id: int | None = None, now: dt.datetime | None = None) -> int:
    """Refresh the rollup of one agency (every agency when None) up to ``now``; the figure rows written."""
    return rollups.refresh(agency_id, now)


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
    """What every figure of one call shares: the period, the stores covered, and where their figures come from
    (the rollup for the stores it covers, a live computation for the others)."""

    days: int
    now: dt.datetime
    since: dt.datetime
    stores: list[dict]
    store_ids: list[int]
    agency_id: int
    rollup: AnalyticsRollup | None
    covered: list[int]

    @property
    def missing(self) -> list[int]:
        covered = set(self.covered)
        return [pk for pk in self.store_ids if pk not in covered]


def _window(actor: Actor, days: int, store, now: dt.datetime | None) -> _Window:
    if days not in WINDOWS:
        raise AppError(errors.ERR_VALIDATION, fields={"days": [_("7 or 30.")]})
    now = now or timezone.now()
    stores = analytics_stores(actor, store)
    store_rows = list(stores.order_by("name", "pk").values(
        "pk", "public_id", "name", "service_score", market_code=F("market__code"),
        time_zone=F("market__time_zone"), score_floor=F("market__policy__score_floor_for_traffic")))
    store_ids = [row["pk"] for row in store_rows]
    if store is None and not store_ids and not actor.is_owner and Store.objects.for_actor(actor).exists():
        raise AppError(errors.ERR_PERM_005)
    rollup = rollups.latest(actor.agency_id, now) if store_ids else None
    in_rollup = set(rollup.store_ids) if rollup else set()
    covered = [pk for pk in store_ids if pk in in_rollup]
    if rollup and covered:
        now = rollup.computed_at  # one instant for every figure: the stores it lacks are computed as of it too
    else:
        rollup = None
    return _Window(days, now, now - dt.timedelta(days=days), store_rows, store_ids, actor.agency_id, rollup,
                   covered)


def _figures(window: _Window) -> tuple[_Window, Figures]:
    figures = Figures()
    if window.rollup is not None:
        rows = rollups.read(window.rollup, window.days, window.covered)
        if rows:
            figures.add(rows)
        else:  # every covered store has a score_start row: none means the rollup was dropped since it was picked
            window = replace(window, rollup=None, covered=[])
    return window, figures.add(rollups.compute(window.agency_id, window.missing, window.now, window.days))


def summary(actor: Actor, *, days: int, store=None, now: dt.datetime | None = None) -> dict:
    """The summary of the module docstring for the last ``days`` (7 or 30) days.

    Without a store it covers every store with view_analytics; a sub-account that sees stores but may view
    the analytics of none gets ERR_PERM_005 (rather than an empty summary that looks like a quiet week).
    """
    window, figures = _figures(_window(actor, days, store, now))
    return _summary(window, figures, TOP_REASONS)


def _summary(window: _Window, figures: Figures, reason_limit: int) -> dict:
    """The summary's figures; ``top_reasons`` holds up to ``reason_limit`` reasons (the dashboard's cloud
    asks for more, then keeps the summary's three)."""
    n = figures.count("requests")
    categories = sorted(((key, row) for (key, _k2, _d), row in figures.of("category").items()))
    volumes = {key: {"orders": row[0], "units_sold": row[1]} for (key, _k2, _d), row in figures.of("volume").items()}
    reasons = sorted(((key, row) for (key, _k2, _d), row in figures.of("reason").items()),
                     key=lambda item: (-item[1][0], item[0]))[:reason_limit]
    finished, handling = figures.count("finished"), figures.amount("finished")
    in_time, due = figures.count("in_time"), figures.count("due")
    proactive, intervened = figures.count("proactive"), figures.count("intervened")

    benchmarks = return_benchmarks()
    by_category = []
    asked_back = sold_total = 0
    for category, (requests, units, _amount, _text) in categories:
        key = CATEGORY_ALIASES.get(category.lower(), category)
        sold = (volumes.get(category) or {}).get("units_sold")
        units = units or 0
        if sold:
            asked_back, sold_total = asked_back + units, sold_total + sold
        by_category.append({"category": category, "requests": requests, "units": units, "units_sold": sold,
                            "rate_pct": _pct(units, sold or 0), "benchmark_max_pct": benchmarks.get(key)})
    if "" in volumes and not sold_total:  # volume sent as store totals: every unit asked back counts
        asked_back = sum(row[1] or 0 for _key, row in categories)
        sold_total = volumes[""]["units_sold"] or 0
    orders = sum(v["orders"] or 0 for v in volumes.values()) if volumes else None
    service = service_benchmarks()
    return {
        "days": window.days,
        "since": window.since,
        "until": window.now,
        "as_of": window.now,
        "store_ids": [str(row["public_id"]) for row in window.stores],
        "requests": n,
        "return_rate": {
            "rate_pct": _pct(asked_back, sold_total),
            "orders": orders,
            "units_sold": sold_total if volumes else None,
            "by_category": by_category,
            "benchmarks": [{"category": k, "max_pct": v} for k, v in sorted(benchmarks.items())],
        },
        "proactive_refund_rate": {"pct": _pct(proactive, n), "count": proactive, "of": n},
        "platform_intervention_rate": {"pct": _pct(intervened, n), "count": intervened, "of": n},
        "avg_handling_hours": {
            "hours": round(float(handling) / finished / 3600, 2) if finished and handling is not None else None,
            "finished": finished,
            "benchmark_platform_integrated": service["handling_hours_platform_integrated"],
            "benchmark_industry": service["handling_hours_industry"],
        },
        "completed_within_72h": {"pct": _pct(in_time, due), "count": in_time, "of": due,
                                 "benchmark_pct": service["completed_within_72h_pct"]},
        "top_reasons": [{"key": key, "text": row[3] or "", "count": row[0], "share_pct": _pct(row[0], n)}
                        for key, row in reasons],
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
    window, figures = _figures(_window(actor, days, store, now))
    result = _summary(window, figures, CLOUD_REASONS)
    result["reasons"] = result["top_reasons"]
    result["top_reasons"] = result["reasons"][:TOP_REASONS]
    result["breaches"] = _breaches(figures)
    result["compensation"] = _compensation(figures)
    result["service_score"] = _score_trend(window, figures, single=store is not None)
    result["reason_products"] = _reason_products(window, figures, result["requests"])
    return result


def _breaches(figures: Figures) -> dict:
    labels = dict(SlaKind.choices)
    kinds = [{"kind": kind, "label": str(labels.get(kind, kind)), "count": row[0]}
             for (kind, _k2, _d), row in sorted(figures.of("breach").items())]
    return {"total": sum(k["count"] for k in kinds), "by_kind": kinds}


def _compensation(figures: Figures) -> dict:
    result: dict[str, list] = {"paid": [], "capped": []}
    for (currency, status, _d), row in sorted(figures.of("compensation").items()):
        key = "paid" if status == Compensation.Status.GRANTED else "capped"
        result[key].append({"currency": currency, "amount": row[2].quantize(CENTS), "count": row[0]})
    return result


def _score_trend(window: _Window, figures: Figures, *, single: bool) -> dict:
    """The sum of the stores' starting scores, plus the sum of their changes up to each day, over the stores.

    Stores in far-apart markets have different local days, so the plotted days are one common range — from
    the earliest store's first local day to the latest store's last — and every store has a score on every
    one of them: its starting score (its last ledger entry before the window; 5.00 when its ledger starts in
    the window; its current score when it has none) before its own first day, its last known score carried
    forward after its own last day. So each point averages every store and the line does not jump at its ends."""
    zones = {row["time_zone"] for row in window.stores}
    first = min((window.since.astimezone(ZoneInfo(z)).date() for z in zones), default=None)
    last = max((window.now.astimezone(ZoneInfo(z)).date() for z in zones), default=None)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)] if first and last else []
    changes: dict[dt.date, Decimal] = {}
    for (_key, _key2, day), row in figures.of("score").items():
        changes[day] = changes.get(day, Decimal("0")) + row[2]
    total = figures.amount("score_start") or Decimal("0")
    total += sum((delta for day, delta in changes.items() if first is None or day < first), Decimal("0"))
    points = []
    for day in days:
        total += changes.get(day, Decimal("0"))
        points.append((day, (total / len(window.stores)).quantize(CENTS)))
    stores = []
    for row in window.stores:
        floor = row["score_floor"] if row["score_floor"] is not None else DEFAULT_SCORE_FLOOR
        stores.append({"id": str(row["public_id"]), "name": row["name"], "market": row["market_code"],
                       "score": row["service_score"], "floor": floor, "below": row["service_score"] < floor})
    return {"stores": stores, "floors": sorted({s["floor"] for s in stores}), "averaged": not single,
            "points": points}


def _reason_products(window: _Window, figures: Figures, requests: int) -> dict:
    """Columns: the products with the most requests (over every store's complete counts); rows: the reasons
    behind them, most frequent first."""
    products = sorted(((key, row[0]) for (key, _k2, _d), row in figures.of("product").items()),
                      key=lambda item: (-item[1], item[0]))[:MATRIX_PRODUCTS]
    names = [name for name, _n in products]
    pairs = Figures().add((("pair", key, key2, None, *row) for (key, key2, _d), row in figures.of("pair").items()
                           if key in names))
    if window.rollup is not None and names:
        pairs.add(rollups.read_pairs(window.rollup, window.days, window.covered, names))
    totals = dict(products)
    rows: dict[str, dict] = {}
    for (product, reason, _d), (count, _units, _amount, text) in pairs.of("pair").items():
        row = rows.setdefault(reason, {"key": reason, "text": "", "count": 0, "cells": {}})
        row["text"] = max(row["text"], text or "")
        row["count"] += count
        share = _pct(count, totals[product])
        row["cells"][product] = {"count": count, "share_pct": share,
                                 "standout": count >= STANDOUT_MIN_COUNT and share >= STANDOUT_MIN_PCT}
    ordered = sorted(rows.values(), key=lambda r: (-r["count"], r["key"]))[:MATRIX_REASONS]
    return {
        "products": [{"name": name, "requests": n} for name, n in products],
        "rows": [{**row, "cells": [row["cells"].get(name) for name in names]} for row in ordered],
        "requests": requests,
    }
