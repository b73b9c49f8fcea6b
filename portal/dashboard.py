"""售后分析: the after-sales analytics page and its CSV. Presentation only.

The figures are ``aftersales.analytics.dashboard`` (the REST summary plus breaches, compensation, the service
score trend, reasons and the reason × product table), under its scope and permission rules; this module picks
the window (7 / 30 days) and the store (the page's select, else the store switcher's choice), turns figures
into text with their units and benchmarks, and draws them with ``portal.charts``. The CSV is built from the
same prepared view (``Shown``), so it holds exactly what the page shows.

Colours are display states, not policy: a figure is "bad" (red) when worse than its benchmark; average
handling time is "warn" (amber) between the platform-integrated sellers' 28.6 h and the industry's 52.3 h and
red beyond the industry's figure.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET

from aftersales import analytics
from aftersales.jobs import safe_cell
from portal import charts
from portal.request import ShownError
from portal.templatetags.portal_format import money
from portal.views import SESSION_STORE_KEY, no_agency
from stores.errors import AppError
from stores.permissions import StorePerm
from stores.selectors import stores_for_actor
from stores.services import actor_for_user, store_perms

CATEGORY_NAMES = {
    "apparel": gettext_lazy("Apparel"),
    "3c_accessories": gettext_lazy("Electronics accessories"),
    "beauty": gettext_lazy("Beauty"),
    "home": gettext_lazy("Home & living"),
}
HEAT_STEPS = (10, 25, 40)  # cell shading of the reason × product table, by share of the product's requests


def pct_text(value) -> str:
    return "—" if value is None else _("%(value)s %%") % {"value": f"{float(value):.1f}"}


def hours_text(value) -> str:
    return "—" if value is None else _("%(hours)s h") % {"hours": f"{float(value):.1f}"}


def category_name(key: str) -> str:
    if not key:
        return _("Uncategorised")
    canonical = analytics.CATEGORY_ALIASES.get(key.lower(), key)
    return str(CATEGORY_NAMES.get(canonical, key))


def reason_name(key: str, text: str) -> str:
    return text or key or _("No reason given")


@dataclass
class Kpi:
    """One headline figure as shown: label, value with its unit, the benchmark beside it, a display state."""

    slug: str
    label: str
    value: str
    detail: str = ""
    benchmark: str = ""
    state: str = "neutral"  # good | warn | bad | neutral | none (no data)
    flag: str | None = None  # the words beside a coloured value; None: the state's usual words


@dataclass
class Shown:
    """The dashboard as the page shows it; the CSV writes the same object."""

    data: dict
    days: int
    stores: list[dict]
    time_zone: str
    kpis: list[Kpi] = field(default_factory=list)
    categories: list[dict] = field(default_factory=list)
    reasons: list[dict] = field(default_factory=list)
    trend: list[tuple[str, Decimal]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.data["requests"]


def shown(data: dict, zones: set[str]) -> Shown:
    """Figures → text with units, benchmarks and states (the page and the CSV share this). Times are in the
    stores' market time zone when they share one, else UTC."""
    stores = data["service_score"]["stores"]
    view = Shown(data=data, days=data["days"], stores=stores, time_zone=next(iter(zones)) if len(zones) == 1 else "UTC")
    n = data["requests"]
    rate = data["return_rate"]
    view.kpis.append(Kpi("requests", _("After-sales requests"), str(n) if n else "—",
                         state="neutral" if n else "none"))
    worse = [c for c in rate["by_category"] if c["rate_pct"] is not None and c["benchmark_max_pct"] is not None
             and Decimal(str(c["rate_pct"])) > c["benchmark_max_pct"]]
    view.kpis.append(Kpi(
        "return_rate", _("Return rate (退货率)"), pct_text(rate["rate_pct"]),
        detail=(ngettext("%(units)s unit sold", "%(units)s units sold", rate["units_sold"])
                % {"units": rate["units_sold"]}) if rate["units_sold"]
        else _("No units sold sent by your ERP yet"),
        benchmark=_("Benchmarks: apparel ≤ %(apparel)s %%, electronics accessories ≤ %(acc)s %%") % {
            "apparel": _bench(rate, "apparel"), "acc": _bench(rate, "3c_accessories")},
        state="none" if rate["rate_pct"] is None else ("bad" if worse else "good"),
        flag=(_("above the benchmark: %(categories)s") % {
            "categories": ", ".join(category_name(c["category"]) for c in worse)}) if worse else None))
    for slug, label, figure in (("proactive_refund_rate", _("Proactive refund rate (主动退款率)"),
                                 data["proactive_refund_rate"]),
                                ("platform_intervention_rate", _("Platform intervention rate (平台介入率)"),
                                 data["platform_intervention_rate"])):
        view.kpis.append(Kpi(slug, label, pct_text(figure["pct"]),
                             detail=_of_requests(figure) if figure["of"] else "",
                             state="neutral" if figure["pct"] is not None else "none"))
    hours = data["avg_handling_hours"]
    fast, slow = hours["benchmark_platform_integrated"], hours["benchmark_industry"]
    h = hours["hours"]
    view.kpis.append(Kpi(
        "avg_handling_hours", _("Average handling time"), hours_text(h),
        detail=ngettext("%(count)s finished request", "%(count)s finished requests", hours["finished"])
        % {"count": hours["finished"]} if hours["finished"] else "",
        benchmark=_("Platform-integrated sellers %(fast)s, industry %(slow)s") % {
            "fast": hours_text(fast), "slow": hours_text(slow)},
        state="none" if h is None else ("good" if h <= fast else "warn" if h <= slow else "bad")))
    within = data["completed_within_72h"]
    view.kpis.append(Kpi(
        "completed_within_72h", _("Completed within 72 h"), pct_text(within["pct"]),
        detail=_of_requests(within) if within["of"] else "",
        benchmark=_("Benchmark %(pct)s") % {"pct": pct_text(within["benchmark_pct"])},
        state="none" if within["pct"] is None else (
            "bad" if Decimal(str(within["pct"])) < within["benchmark_pct"] else "good")))
    breaches = data["breaches"]["total"]
    view.kpis.append(Kpi("breaches", _("Deadlines missed"), str(breaches),
                         detail=", ".join(f'{k["label"]}: {k["count"]}' for k in data["breaches"]["by_kind"]),
                         state="bad" if breaches else "good",
                         flag=_("each one costs service score") if breaches else ""))
    paid = data["compensation"]["paid"]
    view.kpis.append(Kpi("compensation", _("Compensation paid (自动赔付)"),
                         " · ".join(money(p["amount"], p["currency"]) for p in paid) or "—",
                         detail=" · ".join(ngettext("%(count)s payment in %(currency)s",
                                                    "%(count)s payments in %(currency)s", p["count"]) % p
                                           for p in paid),
                         state="bad" if paid else "good", flag=""))
    for c in rate["by_category"]:
        bench = c["benchmark_max_pct"]
        is_worse = c in worse
        view.categories.append({
            **c, "name": category_name(c["category"]), "rate_text": pct_text(c["rate_pct"]),
            "benchmark_text": (_("≤ %(pct)s") % {"pct": pct_text(bench)}) if bench is not None else "",
            "worse": is_worse})
    for r in data["reasons"]:
        view.reasons.append({**r, "name": reason_name(r["key"], r["text"]), "share_text": pct_text(r["share_pct"])})
    view.trend = data["service_score"]["points"]
    return view


def _of_requests(figure: dict) -> str:
    """"3 of 40 requests": the plural follows the whole (the "of" count)."""
    return ngettext("%(count)s of %(of)s request", "%(count)s of %(of)s requests", figure["of"]) % figure


def _bench(rate: dict, category: str) -> str:
    return next((f'{b["max_pct"]}' for b in rate["benchmarks"] if b["category"] == category), "—")


def heat(share) -> int:
    return sum(1 for step in HEAT_STEPS if share is not None and share >= step)


def chart_context(view: Shown) -> dict:
    """The three SVG pictures (none when there is nothing to draw: the page says "no data" instead)."""
    days = view.days
    context = {}
    bars = [charts.Bar(c["name"], c["rate_pct"], c["rate_text"] if c["rate_pct"] is not None
                       else _("no units sold sent"),
                       float(c["benchmark_max_pct"]) if c["benchmark_max_pct"] is not None else None,
                       c["benchmark_text"], c["worse"]) for c in view.categories]
    if any(c["rate_pct"] is not None for c in view.categories):
        context["return_chart"] = charts.bar_chart(
            bars, label=_("Return rate by category, last %(days)s days, against the benchmarks") % {"days": days})
    score = view.data["service_score"]
    if view.trend:
        n = len(score["stores"])
        series = (ngettext("Average of %(n)s store", "Average of %(n)s stores", n) % {"n": n} if score["averaged"]
                  else score["stores"][0]["name"])
        context["score_chart"] = charts.line_chart(
            [(day.strftime("%m-%d"), float(value)) for day, value in view.trend],
            label=_("Service score (服务分) per day, last %(days)s days: %(series)s") % {"days": days,
                                                                                      "series": series},
            series_label=series,
            thresholds=[charts.Threshold(float(f), _("%(floor)s line") % {"floor": f})
                        for f in score["floors"]])
        context["score_series"] = series
    if view.reasons:
        context["reason_cloud"] = charts.word_cloud(
            [charts.Word(r["name"], r["count"], f'{r["name"]}: {r["count"]} ({r["share_text"]})')
             for r in view.reasons],
            label=_("Return reasons, last %(days)s days, sized by the number of requests") % {"days": days})
    return context


# --- the views ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    view: Shown | None
    error: ShownError | None
    status: int
    days: str
    store: str  # the public id in view, "" for all stores
    choices: list  # the stores whose analytics the user may view (the select offers only these)


def _zones(data: dict, stores: list) -> set[str]:
    ids = set(data["store_ids"])
    return {s.market.time_zone for s in stores if str(s.public_id) in ids}


def load(request, actor) -> Outcome:
    """The window and store asked for (the select, else the switcher's store) and the dashboard, or the
    coded refusal (ERR_VALIDATION, ERR_NOT_FOUND, ERR_PERM_005 with its role-setting hint)."""
    visible = list(stores_for_actor(actor))
    perms = store_perms(actor, [s.pk for s in visible])
    choices = [s for s in visible if StorePerm.VIEW_ANALYTICS.value in perms.get(s.pk, set())]
    days = request.GET.get("days", "7")
    if "store" in request.GET:
        store = request.GET["store"].strip()
    else:
        current = request.session.get(SESSION_STORE_KEY, "")
        store = current if any(str(s.public_id) == current for s in visible) else ""
    try:
        data = analytics.dashboard(actor, days=int(days) if days.isdigit() else 0, store=store or None)
    except AppError as exc:
        return Outcome(None, ShownError.of(exc), exc.status, days, store, choices)
    return Outcome(shown(data, _zones(data, visible)), None, 200, days, store, choices)


def _query(outcome: Outcome) -> str:
    return urlencode({"days": outcome.days, "store": outcome.store})


@login_required
@require_GET
def dashboard_page(request):
    """售后分析 for the last 7 or 30 days, one store or all the stores whose analytics the user may view."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    outcome = load(request, actor)
    view = outcome.view
    context = {
        "actor": actor, "outcome": outcome, "view": view, "error": outcome.error,
        "windows": analytics.WINDOWS, "csv_query": _query(outcome),
        "choices": outcome.choices, "no_stores": view is not None and not view.stores,
    }
    if view is not None:
        context.update(chart_context(view))
        context["matrix"] = _matrix(view.data["reason_products"])
        context["until"] = view.data["until"]
        context["since"] = view.data["since"]
        context["time_zone"] = view.time_zone
    return render(request, "portal/dashboard.html", context, status=outcome.status)


def _matrix(table: dict) -> dict:
    rows = []
    for row in table["rows"]:
        cells = [None if cell is None else {**cell, "heat": heat(cell["share_pct"]),
                                            "share_text": pct_text(cell["share_pct"])} for cell in row["cells"]]
        rows.append({**row, "name": reason_name(row["key"], row["text"]), "cells": cells})
    return {"products": table["products"], "rows": rows,
            "standout_pct": analytics.STANDOUT_MIN_PCT, "standout_count": analytics.STANDOUT_MIN_COUNT}


@login_required
@require_GET
def dashboard_csv(request):
    """The CSV of what the page shows for the same parameters: UTF-8 with a BOM (Excel opens Chinese), text
    cells guarded against formula injection, figures as plain numbers, amounts with their currency."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    outcome = load(request, actor)
    if outcome.view is None:
        error = outcome.error
        return HttpResponse(f"{error.code}: {error.message} {error.hint}".strip(), status=outcome.status,
                            content_type="text/plain; charset=utf-8")
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in csv_rows(outcome.view):
        writer.writerow([cell(value) for value in row])
    stamp = timezone.now().strftime("%Y%m%d")
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="aftersales-analytics-{outcome.days}d-{stamp}.csv"'
    return response


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, int | float | Decimal):
        return str(value)
    return safe_cell(str(value))


def csv_rows(view: Shown) -> list[list]:
    """Sections, each a title row, a header row and its rows, separated by an empty row."""
    data, zone = view.data, ZoneInfo(view.time_zone)
    rows: list[list] = [
        [_("After-sales analytics (售后分析)")],
        [_("Period"), data["since"].astimezone(zone).strftime("%Y-%m-%d %H:%M"),
         data["until"].astimezone(zone).strftime("%Y-%m-%d %H:%M"), view.time_zone],
        [_("Stores"), *(f'{s["name"]} · {s["market"]}' for s in view.stores)],
        [],
        [_("Headline figures")],
        [_("Figure"), _("Value"), _("Benchmark"), _("Worse than the benchmark"), _("Detail")],
    ]
    rows += [[k.label, k.value, k.benchmark, k.state == "bad" if k.state != "none" else None, k.detail]
             for k in view.kpis]
    rows += [[], [_("Return rate by category")],
             [_("Category"), _("Requests"), _("Units asked back"), _("Units sold"), _("Return rate (%)"),
              _("Benchmark, at most (%)"), _("Worse than the benchmark")]]
    rows += [[c["name"], c["requests"], c["units"], c["units_sold"], c["rate_pct"], c["benchmark_max_pct"],
              c["worse"]] for c in view.categories]
    rows += [[], [_("Deadlines missed")], [_("Deadline"), _("Count")]]
    rows += [[k["label"], k["count"]] for k in data["breaches"]["by_kind"]]
    rows += [[], [_("Compensation (自动赔付)")], [_("Status"), _("Currency"), _("Amount"), _("Count")]]
    for status, label in (("paid", _("Paid")), ("capped", _("Capped by the monthly budget"))):
        rows += [[label, p["currency"], p["amount"], p["count"]] for p in data["compensation"][status]]
    rows += [[], [_("Service score (服务分)")], [_("Store"), _("Market"), _("Score"), _("Down-weighting below"),
                                                _("Below the line")]]
    rows += [[s["name"], s["market"], s["score"], s["floor"], s["below"]] for s in view.stores]
    rows += [[], [_("Service score per day (store time)")], [_("Day"), _("Score")]]
    rows += [[day.isoformat(), value] for day, value in view.trend]
    rows += [[], [_("Return reasons")], [_("Reason key"), _("Reason"), _("Requests"), _("Share of requests (%)")]]
    rows += [[r["key"], r["name"], r["count"], r["share_pct"]] for r in view.reasons]
    table = data["reason_products"]
    rows += [[], [_("Reasons by product")],
             [_("Reason"), _("Product"), _("Requests"), _("Share of the product's requests (%)"), _("Stands out")]]
    for row in table["rows"]:
        for product, value in zip(table["products"], row["cells"], strict=True):
            if value is not None:
                rows.append([reason_name(row["key"], row["text"]), product["name"], value["count"],
                             value["share_pct"], value["standout"]])
    return rows


urlpatterns: list = [
    path("analytics/", dashboard_page, name="dashboard"),
    path("analytics/export.csv", dashboard_csv, name="dashboard_csv"),
]
