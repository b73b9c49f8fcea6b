"""售后分析 from rollups (aftersales.rollups): after a refresh the dashboard and the summary are exactly the live
figures for any set of stores and both windows, without reading a raw table; stores the rollup lacks are computed
live, stale rollups are ignored, a refresh is atomic and repeatable, and the cost stays a constant few queries."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from aftersales import analytics, rollups, tasks
from aftersales.models import AnalyticsFigure, AnalyticsRollup, OrderVolume
from config.celery import app
from stores import services
from stores.models import Market, Store
from stores.services import actor_for_user
from tests.conftest import make_tenant
from tests.factories import UserFactory
from tests.test_analytics_dashboard import NOW, breach, make

CATEGORIES = ["apparel", "3c_accessories", "home"]
RAW_TABLES = ("aftersales_aftersalesrequest", "aftersales_lineitem", "aftersales_slabreach",
              "aftersales_compensation", "aftersales_servicescoreentry", "aftersales_ordervolume")


def build(tenant, n: int = 70, *, offset: int = 0) -> None:
    """Requests over the stores, categories, 7 reasons (texts varying per store), 9 products, ages from hours to
    34 days, finished fast or slow, refunded, arbitrated; breaches with compensation in two currencies (granted
    and capped) and ledger entries inside and before the windows; order volume for some stores."""
    stores = tenant.stores
    for i in range(offset, offset + n):
        store = stores[i % len(stores)]
        days_ago = (i * 0.53) % 34 + 0.1
        fields = {}
        if i % 3 == 0:
            requested = NOW - dt.timedelta(days=days_ago)
            fields.update(state="completed", state_changed_at=requested + dt.timedelta(hours=10 + 7 * (i % 13)))
        if i % 5 == 1:
            fields["arbitration_status"] = "IN_PROGRESS"
        if i % 4 == 2:
            fields["refunded_amount"] = Decimal("5.00")
        ticket = make(store, reason=f"r{i % 7}", text=f"理由 {i % 7}" + "!" * (i % len(stores) % 2),
                      product=f"P{i % 9}", category=CATEGORIES[i % 3], days_ago=days_ago, **fields)
        if i % 4 == 0:
            breach(ticket, kind="first_response" if i % 8 else "platform", days_ago=(i * 0.77) % 40,
                   amount=f"{1 + i % 5}.25", currency="GBP" if i % 3 else "USD",
                   status="granted" if i % 12 else "capped", score=f"{4 + (i % 10) / 10:.2f}")
    for k, store in enumerate(stores[:3]):
        for day in range(0, 35, 3):
            OrderVolume.objects.update_or_create(
                agency=tenant.agency, store=store, day=(NOW - dt.timedelta(days=day)).date(),
                category=CATEGORIES[(k + day) % 3], defaults={"units_sold": 20 + day + k, "orders": 10 + k})


@pytest.fixture
def agency(db):
    """Five stores in five markets (far-apart time zones), an analyst on two of them, and a second agency."""
    a = make_tenant("roll", n_stores=5)
    other = make_tenant("other")
    markets = {m.code: m for m in Market.objects.all()}
    for store, code in zip(a.stores, ["US", "MY", "UK", "ID", "US"], strict=True):
        Store.objects.filter(pk=store.pk).update(market=markets[code], service_score=Decimal("4.70"))
        store.refresh_from_db()
    a.some = UserFactory(username="roll-some")
    membership = services.add_member(agency=a.agency, user=a.some)
    services.assign_role(actor=None, membership=membership, role=a.roles["analyst"], stores=a.stores[1:3])
    build(a)
    build(other, n=12)
    return a


def live(fn, user, **kwargs):
    """The figures computed from the raw tables: with every rollup gone (in a savepoint rolled back after)."""
    with transaction.atomic():
        AnalyticsRollup.objects.unscoped().delete()
        result = fn(actor_for_user(user), now=NOW, **kwargs)
        transaction.set_rollback(True)
    return result


def scopes(a):
    return [(a.owner, {}), (a.owner, {"store": a.stores[1].public_id}), (a.some, {}),
            (a.some, {"store": a.stores[2].public_id}), (a.viewer, {})]


def reads_raw_tables(ctx) -> bool:
    return any(table in q["sql"] for q in ctx.captured_queries for table in RAW_TABLES)


def test_after_a_refresh_every_scope_and_window_equals_the_live_figures(agency):
    a = agency
    cases = [(user, kwargs, days, fn) for user, kwargs in scopes(a) for days in (7, 30)
             for fn in (analytics.dashboard, analytics.summary)]
    expected = [live(fn, user, days=days, **kwargs) for user, kwargs, days, fn in cases]
    written = analytics.refresh(now=NOW)  # every agency
    assert written == AnalyticsFigure.objects.unscoped().count() > 0
    assert AnalyticsRollup.objects.unscoped().count() == 2
    for (user, kwargs, days, fn), want in zip(cases, expected, strict=True):
        with CaptureQueriesContext(connection) as ctx:
            got = fn(actor_for_user(user), days=days, now=NOW, **kwargs)
        assert got == want, (fn.__name__, user.username, kwargs, days)
        assert not reads_raw_tables(ctx), (fn.__name__, user.username, kwargs, days)  # all from the rollup
    board = expected[cases.index((a.owner, {}, 30, analytics.dashboard))]
    assert board["as_of"] == board["until"] == NOW
    # The data is rich enough to mean something: every kind of figure is there.
    assert board["requests"] > 40 and board["breaches"]["total"] and board["compensation"]["capped"]
    assert board["return_rate"]["units_sold"] and board["avg_handling_hours"]["hours"]
    assert board["completed_within_72h"]["of"] and board["platform_intervention_rate"]["count"]
    assert len({p for _d, p in board["service_score"]["points"]}) > 2 and board["reason_products"]["rows"]
    assert len(board["top_reasons"]) == 3 and len(board["reasons"]) == 7
    assert {r["text"] for r in board["reasons"]} >= {"理由 1!"}  # the greatest text over the stores


def test_figures_are_as_of_the_refresh_and_a_store_added_since_is_computed_live(agency):
    a = agency
    analytics.refresh(a.agency.pk, now=NOW)
    later = NOW + dt.timedelta(minutes=3)
    before = analytics.dashboard(actor_for_user(a.owner), days=30, now=later)
    assert before["as_of"] == before["until"] == NOW  # the window ends at the refresh, not three minutes later
    new = Store.objects.create(agency=a.agency, market=a.stores[1].market, name="roll store new", shop_id="roll-new",
                               service_score=Decimal("4.20"))
    ticket = make(new, reason="r_new", text="新店理由", product="P_new", days_ago=2)
    breach(ticket, days_ago=1, amount="9.00", currency="GBP", score="4.20")
    with CaptureQueriesContext(connection) as ctx:
        after = analytics.dashboard(actor_for_user(a.owner), days=30, now=later)
    assert reads_raw_tables(ctx)  # the new store, live
    assert after["requests"] == before["requests"] + 1 and "r_new" in {r["key"] for r in after["reasons"]}
    assert after["breaches"]["total"] == before["breaches"]["total"] + 1
    assert str(new.public_id) in after["store_ids"] and len(after["service_score"]["stores"]) == 6
    assert after == live(analytics.dashboard, a.owner, days=30)  # exactly the raw tables' figures as of NOW
    some = analytics.dashboard(actor_for_user(a.some), days=7, now=later)  # not granted the new store
    assert some == live(analytics.dashboard, a.some, days=7) and str(new.public_id) not in some["store_ids"]


def test_a_stale_rollup_is_not_used(agency, settings):
    a = agency
    analytics.refresh(a.agency.pk, now=NOW - dt.timedelta(minutes=16))
    make(a.stores[0], reason="r_fresh", days_ago=0.001)
    settings.ANALYTICS_ROLLUP_MAX_AGE_SECONDS = 900
    board = analytics.dashboard(actor_for_user(a.owner), days=7, now=NOW)
    assert board["as_of"] == NOW and "r_fresh" in {r["key"] for r in board["reasons"]}
    assert board == live(analytics.dashboard, a.owner, days=7)
    settings.ANALYTICS_ROLLUP_MAX_AGE_SECONDS = 3600  # the same rollup, now young enough
    board = analytics.dashboard(actor_for_user(a.owner), days=7, now=NOW)
    assert board["as_of"] == NOW - dt.timedelta(minutes=16) and "r_fresh" not in {r["key"] for r in board["reasons"]}
    # A rollup made after the moment asked for is never used for it.
    analytics.refresh(a.agency.pk, now=NOW + dt.timedelta(minutes=1))
    assert analytics.summary(actor_for_user(a.owner), days=7, now=NOW)["as_of"] == NOW - dt.timedelta(minutes=16)


def figure_rows(rollup) -> list[tuple]:
    return sorted(AnalyticsFigure.objects.unscoped().filter(rollup=rollup).values_list(
        "store_id", "days", "kind", "key", "key2", "day", "count", "units", "amount", "text"),
        key=lambda r: tuple("" if v is None else str(v) for v in r))


def test_refresh_is_repeatable_keeps_two_rollups_and_is_all_or_nothing(agency, monkeypatch):
    a = agency
    first_written = analytics.refresh(a.agency.pk, now=NOW)
    first = AnalyticsRollup.objects.for_agency(a.agency).get()
    pinned = rollups.read(first, 30, first.store_ids)
    assert analytics.refresh(a.agency.pk, now=NOW) == first_written
    second = AnalyticsRollup.objects.for_agency(a.agency).latest("id")
    assert figure_rows(first) == figure_rows(second) and len(figure_rows(first)) == first_written
    assert first.store_ids == second.store_ids == sorted(s.pk for s in a.stores)
    # A reader that pinned the previous rollup still finds it: it is dropped one refresh later.
    assert rollups.read(first, 30, first.store_ids) == pinned
    analytics.refresh(a.agency.pk, now=NOW)
    assert not AnalyticsRollup.objects.unscoped().filter(pk=first.pk).exists()
    assert not AnalyticsFigure.objects.unscoped().filter(rollup_id=first.pk).exists()
    assert AnalyticsRollup.objects.for_agency(a.agency).count() == rollups.KEEP_ROLLUPS
    kept = set(AnalyticsRollup.objects.for_agency(a.agency).values_list("pk", flat=True))
    figures = AnalyticsFigure.objects.unscoped().count()

    def crash(agency_id):
        raise RuntimeError("worker lost mid-refresh")

    monkeypatch.setattr(rollups, "_prune", crash)  # after the figures were written, before the commit
    with pytest.raises(RuntimeError):
        analytics.refresh(a.agency.pk, now=NOW + dt.timedelta(minutes=5))
    assert set(AnalyticsRollup.objects.for_agency(a.agency).values_list("pk", flat=True)) == kept
    assert AnalyticsFigure.objects.unscoped().count() == figures
    assert analytics.summary(actor_for_user(a.owner), days=7, now=NOW + dt.timedelta(minutes=6))["as_of"] == NOW


def test_a_rollup_dropped_while_it_is_read_falls_back_to_live(agency, monkeypatch):
    a = agency
    analytics.refresh(a.agency.pk, now=NOW)
    picked = AnalyticsRollup.objects.for_agency(a.agency).get()
    AnalyticsRollup.objects.for_agency(a.agency).delete()  # as if two refreshes committed meanwhile
    monkeypatch.setattr(rollups, "latest", lambda agency_id, now: picked)
    assert analytics.dashboard(actor_for_user(a.some), days=30, now=NOW) == live(analytics.dashboard, a.some,
                                                                                    days=30)


def test_query_count_with_a_rollup_is_the_same_for_one_store_or_many(agency):
    a = agency
    owner = actor_for_user(a.owner)
    analytics.refresh(a.agency.pk, now=NOW)
    analytics.dashboard(owner, days=30, now=NOW)  # warm up (content types, policies)

    def cost(fn=analytics.dashboard, actor=owner, **kwargs) -> int:
        with CaptureQueriesContext(connection) as ctx:
            fn(actor, days=30, now=NOW, **kwargs)
        assert not reads_raw_tables(ctx)
        return len(ctx.captured_queries)

    # The stores, the rollup, its figures, the reason × product cells (the summary needs no cells).
    assert cost() == 4 and cost(analytics.summary) == 3
    assert cost(actor=actor_for_user(a.some)) == 4
    one_store = cost(store=a.stores[0].public_id)
    for i in range(20):
        Store.objects.create(agency=a.agency, market=a.stores[0].market, name=f"roll extra {i}", shop_id=f"rx-{i}")
    a.stores = list(Store.objects.for_agency(a.agency))
    build(a, n=60, offset=70)
    analytics.refresh(a.agency.pk, now=NOW)
    assert cost() == 4 and cost(store=a.stores[0].public_id) == one_store <= 6
    Store.objects.create(agency=a.agency, market=a.stores[0].market, name="roll after", shop_id="rx-after")
    with CaptureQueriesContext(connection) as ctx:  # a store the rollup lacks: one more query, for it alone
        analytics.dashboard(owner, days=30, now=NOW)
    assert len(ctx.captured_queries) == 5


def test_beat_runs_the_refresh_task(agency):
    entry = app.conf.beat_schedule["aftersales-analytics-rollups"]
    assert entry["task"] == tasks.refresh_all_analytics.name == "aftersales.refresh_all_analytics"
    assert entry["schedule"] <= 300
    assert tasks.refresh_analytics.name in app.tasks
    written = tasks.refresh_analytics(agency.agency.pk)
    assert written == AnalyticsFigure.objects.for_agency(agency.agency).count() > 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_refreshes_every_agency():
    with app.connection() as conn:
        conn.ensure_connection(max_retries=3)
    a, b = make_tenant("wa"), make_tenant("wb")
    make(a.stores[0]), make(b.stores[1])
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        tasks.refresh_all_analytics.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and AnalyticsRollup.objects.unscoped().count() < 2:
            time.sleep(0.2)
    assert set(AnalyticsRollup.objects.unscoped().values_list("agency_id", flat=True)) == {a.agency.pk, b.agency.pk}
    board = analytics.summary(actor_for_user(a.owner), days=7)
    assert board["requests"] == 1 and board["as_of"] == AnalyticsRollup.objects.for_agency(a.agency).get().computed_at
