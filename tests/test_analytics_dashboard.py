"""aftersales.analytics.dashboard (售后分析 page's figures): the summary unchanged, missed deadlines per kind,
compensation per currency, the service-score trend, reasons for the cloud and the reason × product table —
with the summary's permission rules, no other tenant's rows, and a constant number of queries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aftersales import analytics
from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, Compensation, ServiceScoreEntry, SlaBreach
from stores.errors import AppError
from stores.models import Market, Store
from stores.services import actor_for_user
from tests.conftest import platform_return

NOW = timezone.now()


def make(store, *, reason="size", text="Size mismatch", product="Cotton T-shirt", category="apparel",
         days_ago: float = 1, **fields) -> AfterSalesRequest:
    item = {"return_line_item_id": "L1", "order_line_item_id": "OL1", "sku_id": "SKU1", "seller_sku": "S-1",
            "product_name": product, "category": category,
            "refund_amount": {"currency": "USD", "refund_total": "10.00"}}
    ticket, created = aftersales_services.intake(store, platform_return(
        return_reason=reason, return_reason_text=text, return_line_items=[item]))
    assert created
    AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(
        platform_created_at=NOW - dt.timedelta(days=days_ago), **fields)
    return ticket


def breach(ticket, *, kind="first_response", days_ago: float = 1, amount=None, currency="USD", status="granted",
           score=None):
    at = NOW - dt.timedelta(days=days_ago)
    row = SlaBreach.objects.create(agency_id=ticket.agency_id, store_id=ticket.store_id, ticket=ticket, kind=kind,
                                   due_at=at, created_at=at)
    if amount is not None:
        Compensation.objects.create(agency_id=ticket.agency_id, store_id=ticket.store_id, ticket=ticket, breach=row,
                                    amount=Decimal(amount), currency=currency, status=status, created_at=at)
    if score is not None:
        ServiceScoreEntry.objects.create(agency_id=ticket.agency_id, store_id=ticket.store_id, breach=row,
                                         delta=Decimal("-0.50"), score_after=Decimal(score), created_at=at)
    return row


def board(user, **kwargs):
    kwargs.setdefault("days", 7)
    kwargs.setdefault("now", NOW)
    return analytics.dashboard(actor_for_user(user), **kwargs)


def test_the_summary_part_is_the_summary(tenants):
    a, _b = tenants
    for i in range(5):
        make(a.stores[0], reason=f"r{i % 4}", text=f"Reason {i % 4}")
    make(a.stores[1], reason="colour", text="色差", days_ago=20)
    for days in (7, 30):
        summary = analytics.summary(actor_for_user(a.owner), days=days, now=NOW)
        data = board(a.owner, days=days)
        assert {k: data[k] for k in summary} == summary
    assert len(data["top_reasons"]) == 3 and len(data["reasons"]) == 5
    assert data["reasons"][0] == {"key": "r0", "text": "Reason 0", "count": 2, "share_pct": round(200 / 6, 2)}


def test_cloud_holds_up_to_thirty_reasons(tenants):
    a, _b = tenants
    for i in range(33):
        make(a.stores[0], reason=f"reason-{i:02d}", text=f"理由 {i}")
    reasons = board(a.owner)["reasons"]
    assert len(reasons) == analytics.CLOUD_REASONS == 30
    assert [r["key"] for r in reasons[:2]] == ["reason-00", "reason-01"]  # ties by key


def test_breaches_per_kind_and_compensation_per_currency(tenants):
    a, _b = tenants
    t1, t2, t3 = (make(a.stores[i % 2]) for i in range(3))
    breach(t1, amount="5.00", currency="GBP")
    breach(t2, amount="7.50", currency="GBP")
    breach(t3, amount="20.00", currency="MYR")
    breach(t1, kind="platform", amount="5.00", currency="GBP", status="capped")
    breach(t2, kind="auto_approve", days_ago=12, amount="99.00", currency="GBP")  # outside 7 days
    data = board(a.owner)
    assert data["breaches"]["total"] == 4
    assert {k["kind"]: k["count"] for k in data["breaches"]["by_kind"]} == {"first_response": 3, "platform": 1}
    assert data["breaches"]["by_kind"][0]["label"].startswith("First human response")
    # Never one total across currencies; capped compensation is not "paid".
    assert data["compensation"]["paid"] == [{"currency": "GBP", "amount": Decimal("12.50"), "count": 2},
                                            {"currency": "MYR", "amount": Decimal("20.00"), "count": 1}]
    assert data["compensation"]["capped"] == [{"currency": "GBP", "amount": Decimal("5.00"), "count": 1}]
    one = board(a.owner, store=a.stores[1].public_id)
    assert one["breaches"]["total"] == 1 and one["compensation"]["paid"][0]["currency"] == "GBP"
    month = board(a.owner, days=30)
    assert month["breaches"]["total"] == 5


def local(store, days_ago: float) -> dt.date:
    return (NOW - dt.timedelta(days=days_ago)).astimezone(ZoneInfo(store.market.time_zone)).date()


def test_service_score_trend_per_store_and_averaged(tenants):
    a, _b = tenants
    falling, steady = a.stores[0], a.stores[1]
    Store.objects.filter(pk=steady.pk).update(service_score=Decimal("4.90"))  # no ledger: the current score
    Store.objects.filter(pk=falling.pk).update(service_score=Decimal("4.00"))
    t1, t2 = make(falling, days_ago=9), make(falling)
    breach(t1, days_ago=9, score="4.50")  # before the window: the score it starts from
    breach(t2, days_ago=3, score="4.00")
    trend = board(a.owner, store=falling.public_id)["service_score"]
    points = dict(trend["points"])
    assert trend["averaged"] is False and trend["floors"] == [Decimal("4.80")]
    assert list(points) == sorted(points) and len(points) == 8  # 7 days back to today, both included
    assert points[local(falling, 5)] == Decimal("4.50") and points[local(falling, 3)] == Decimal("4.00")
    assert points[local(falling, 0)] == Decimal("4.00")
    [row] = trend["stores"]
    assert row["score"] == Decimal("4.00") and row["below"] is True and row["market"] == falling.market.code
    both = board(a.owner)["service_score"]
    assert both["averaged"] is True and len(both["stores"]) == 3
    mid = dict(both["points"])[local(falling, 5)]
    assert mid == ((Decimal("4.50") + Decimal("4.90") + Decimal("5.00")) / 3).quantize(Decimal("0.01"))
    steady_row = next(s for s in both["stores"] if s["name"] == steady.name)
    assert steady_row["below"] is False


def test_trend_over_far_apart_markets_averages_every_store_on_every_day(tenants):
    """US (UTC-7/-8) and MY (UTC+8) are on different local days for most of the UTC day: at 20:00 UTC the US
    is still on day D while Kuala Lumpur is on D+1. Every plotted day, the first and last included, averages
    all the stores (a store's starting score before its own first day, its last score after its last)."""
    a, _b = tenants
    now = (NOW - dt.timedelta(days=1)).replace(hour=20, minute=0, second=0, microsecond=0)
    us, my = Market.objects.get(code="US"), Market.objects.get(code="MY")
    us_a, kl, us_b = a.stores
    Store.objects.filter(pk=us_a.pk).update(market=us, service_score=Decimal("4.90"))
    Store.objects.filter(pk=us_b.pk).update(market=us, service_score=Decimal("4.60"))
    Store.objects.filter(pk=kl.pk).update(market=my, service_score=Decimal("4.00"))
    at = now - dt.timedelta(days=3)
    row = SlaBreach.objects.create(agency_id=a.agency.pk, store_id=kl.pk, ticket=make(kl), kind="first_response",
                                   due_at=at, created_at=at)
    ServiceScoreEntry.objects.create(agency_id=a.agency.pk, store_id=kl.pk, breach=row, delta=Decimal("-1.00"),
                                     score_after=Decimal("4.00"), created_at=at)
    points = board(a.owner, now=now)["service_score"]["points"]
    days = [day for day, _score in points]
    us_days = {(now - dt.timedelta(days=7)).astimezone(ZoneInfo("America/Los_Angeles")).date(),
               now.astimezone(ZoneInfo("America/Los_Angeles")).date()}
    kl_days = {(now - dt.timedelta(days=7)).astimezone(ZoneInfo("Asia/Kuala_Lumpur")).date(),
               now.astimezone(ZoneInfo("Asia/Kuala_Lumpur")).date()}
    assert days[0] == min(us_days) and days[-1] == max(kl_days) and len(days) == 9  # both zones' days
    assert days == [days[0] + dt.timedelta(days=i) for i in range(9)]
    average = lambda *scores: (sum(Decimal(s) for s in scores) / 3).quantize(Decimal("0.01"))  # noqa: E731
    assert points[0][1] == average("4.90", "4.60", "5.00")  # KL's day has not started: its starting 5.00
    assert points[-1][1] == average("4.90", "4.60", "4.00")  # the US day has ended: its score carried on
    assert {score for _day, score in points} == {average("4.90", "4.60", "5.00"), average("4.90", "4.60", "4.00")}


def test_first_entry_inside_the_window_starts_from_a_full_ledger(tenants):
    a, _b = tenants
    store = a.stores[0]
    breach(make(store), days_ago=2, score="4.50")
    points = dict(board(a.owner, store=store.public_id)["service_score"]["points"])
    assert points[local(store, 6)] == Decimal("5.00") and points[local(store, 0)] == Decimal("4.50")


def test_reason_by_product_table_makes_the_dominant_reason_stand_out(tenants):
    a, _b = tenants
    store = a.stores[0]
    # The seed's story: "组装说明缺失" behind 37 % of one product's returns.
    for i in range(8):
        make(store, product="Shelf", category="home", reason="no_instructions" if i < 3 else f"r{i}",
             text="组装说明缺失" if i < 3 else f"Other {i}")
    for _i in range(4):
        make(store, product="Lamp", category="home", reason="damage", text="物流破损")
    make(store, product="Lamp", category="home", reason="no_instructions", text="组装说明缺失")
    table = board(a.owner)["reason_products"]
    assert [(p["name"], p["requests"]) for p in table["products"]] == [("Shelf", 8), ("Lamp", 5)]
    rows = {r["key"]: r for r in table["rows"]}
    shelf, lamp = rows["no_instructions"]["cells"]
    assert shelf == {"count": 3, "share_pct": 37.5, "standout": True}
    assert lamp == {"count": 1, "share_pct": 20.0, "standout": False}
    assert rows["no_instructions"]["text"] == "组装说明缺失" and rows["no_instructions"]["count"] == 4
    assert rows["damage"]["cells"] == [None, {"count": 4, "share_pct": 80.0, "standout": True}]
    assert [r["key"] for r in table["rows"][:2]] == ["damage", "no_instructions"]  # 4 each: ties by key
    assert len(table["rows"]) <= analytics.MATRIX_REASONS


def test_products_beyond_the_columns_are_left_out(tenants):
    a, _b = tenants
    for i in range(analytics.MATRIX_PRODUCTS + 2):
        for _n in range(i + 1):
            make(a.stores[0], product=f"P{i}")
    products = board(a.owner)["reason_products"]["products"]
    assert len(products) == analytics.MATRIX_PRODUCTS and products[0]["name"] == f"P{analytics.MATRIX_PRODUCTS + 1}"


def test_permissions_are_the_summarys(tenants):
    a, b = tenants
    make(a.stores[0])
    assert board(a.viewer)["requests"] == 1  # analyst: view_analytics on every store
    for kwargs in ({}, {"store": a.stores[0].public_id}):
        with pytest.raises(AppError) as refused:
            board(a.agent, **kwargs)  # after-sales agent: no view_analytics
        assert refused.value.code == "ERR_PERM_005" and refused.value.status == 403
    for user, store in ((a.owner, b.stores[0]), (a.agent, a.stores[2]), (a.owner, "garbage")):
        with pytest.raises(AppError) as missing:
            board(user, store=store)
        assert missing.value.code == "ERR_NOT_FOUND"
    with pytest.raises(AppError) as invalid:
        board(a.owner, days=14)
    assert invalid.value.code == "ERR_VALIDATION" and "days" in invalid.value.fields
    nothing = board(a.outsider)  # sees no store: an empty dashboard, no other store's rows
    assert nothing["requests"] == 0 and nothing["service_score"]["stores"] == []
    assert nothing["service_score"]["points"] == [] and nothing["breaches"]["total"] == 0


def test_no_other_tenants_rows(tenants_with_rows):
    a, b = tenants_with_rows
    for ticket in AfterSalesRequest.objects.unscoped().filter(agency=b.agency):
        breach(ticket, kind="auto_approve", amount="3.00", currency="SGD", score="4.00")
    data = board(a.owner, now=timezone.now())  # the fixture's rows are made now
    assert data["requests"] == 1
    assert data["breaches"]["total"] == 1 and data["breaches"]["by_kind"][0]["kind"] == "platform"
    assert [p["currency"] for p in data["compensation"]["paid"]] == [
        AfterSalesRequest.objects.unscoped().get(agency=a.agency).currency]
    assert {s["name"] for s in data["service_score"]["stores"]} == {s.name for s in a.stores}
    assert all(p["name"] != "" for p in data["reason_products"]["products"])
    assert sum(r["count"] for r in data["reasons"]) == 1


def _volume(tenant, n: int, stores: list) -> None:
    for i in range(n):
        ticket = make(stores[i % len(stores)], reason=f"r{i % 5}", product=f"P{i % 7}")
        breach(ticket, amount="1.00", currency="USD" if i % 2 else "GBP", score="4.50")


def test_query_count_is_constant_for_one_or_many_stores_and_requests(tenants):
    a, _b = tenants
    actor = actor_for_user(a.owner)
    _volume(a, 1, a.stores[:1])
    analytics.dashboard(actor, days=30)  # warm up (content types, policies)

    def cost(**kwargs) -> int:
        with CaptureQueriesContext(connection) as ctx:
            analytics.dashboard(actor, days=30, **kwargs)
        return len(ctx.captured_queries)

    one_store_small, all_small = cost(store=a.stores[0].public_id), cost()
    _volume(a, 40, a.stores)
    for i in range(4):  # more stores
        Store.objects.create(agency=a.agency, market=a.stores[0].market, name=f"extra {i}", shop_id=f"x-{i}")
    one_store_large, all_large = cost(store=a.stores[0].public_id), cost()
    assert all_small == all_large <= 11, all_large
    assert one_store_small == one_store_large <= 12
