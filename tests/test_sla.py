"""SLA timers (issue 5): deadlines from market policy, warnings, the breach sweep, compensation and score.

Time moves forward by moving a request's platform creation time (or deadline) into the past; nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from aftersales import oplog, services, sla, tasks
from aftersales.models import (
    AfterSalesRequest,
    Alert,
    Compensation,
    OperationLog,
    ServiceScoreEntry,
    SlaBreach,
)
from config.celery import app
from stores.models import MarketPolicy, Store
from tests.conftest import platform_return
from tests.test_tracking import owner, store_in

UTC = dt.UTC
H = dt.timedelta(hours=1)


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def ticket_in(store, rtype: str = "REFUND", *, platform_in: dt.timedelta | None = None) -> AfterSalesRequest:
    """A new request raised an hour ago; the platform deadline ``platform_in`` from now (None: no deadline)."""
    actions = [] if platform_in is None else [
        {"action": "SELLER_RESPOND_REFUND", "deadline": int((now() + platform_in).timestamp())}]
    ticket, _ = services.intake(store, platform_return(return_type=rtype, seller_next_action_response=actions))
    return ticket


def age(ticket, hours: float) -> AfterSalesRequest:
    """Pretend the buyer raised the request ``hours`` ago and reschedule its watch (as a fresh intake would)."""
    row = AfterSalesRequest.objects.unscoped().select_related("store__market").get(pk=ticket.pk)
    row.platform_created_at = now() - dt.timedelta(hours=hours)
    row.sla_check_at = None
    sla.set_deadlines(row)
    row.save()
    return row


def reload(ticket) -> AfterSalesRequest:
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def breach_logs(ticket) -> list[OperationLog]:
    return list(OperationLog.objects.filter(ticket_id=ticket.pk, action="sla_breach").order_by("id"))


def close_to(a: dt.datetime, b: dt.datetime, seconds: float = 5) -> bool:
    return abs((a - b).total_seconds()) < seconds


# --- policy data -------------------------------------------------------------------------------------------
def test_policies_are_seeded_per_market(db):
    policies = {p.market.code: p for p in MarketPolicy.objects.select_related("market")}
    assert {c for c, p in policies.items() if p.first_response_hours == 24} == {"UK", "MY", "TH", "VN", "PH"}
    assert all(p.first_response_hours is None for c, p in policies.items() if c not in {"UK", "MY", "TH", "VN", "PH"})
    for p in policies.values():
        assert (p.auto_approve_hours, p.replacement_response_hours, p.warning_offsets_minutes) == (48, 24, [240, 60])
        assert (p.score_penalty, p.score_floor_for_traffic, p.exposure_loss_per_tenth) == (
            Decimal("0.50"), Decimal("4.80"), Decimal("3.20"))
        assert p.compensation_amount > 0 and p.compensation_monthly_budget == p.compensation_amount * 100
    assert policies["UK"].compensation_amount == Decimal("5.00")


# --- deadlines ---------------------------------------------------------------------------------------------
def test_uk_requests_get_the_24_hour_first_response_deadline(tenants):
    a, _b = tenants
    ticket = ticket_in(store_in(a, "UK"), platform_in=30 * H)
    raised = ticket.platform_created_at
    assert ticket.due_kind == "first_response" and ticket.due_at == raised + 24 * H
    assert ticket.sla_check_at == ticket.due_at - 4 * H  # the first warning is the first check
    assert ticket.first_human_response_at is None and ticket.breached_at is None


def test_us_requests_have_no_first_response_deadline(tenants):
    a, _b = tenants
    refund = ticket_in(store_in(a, "US"))
    assert refund.due_kind == "auto_approve" and refund.due_at == refund.platform_created_at + 48 * H
    exchange = ticket_in(store_in(a, "US"), "REPLACEMENT")
    assert exchange.due_kind == "replacement_response" and exchange.due_at == exchange.platform_created_at + 24 * H
    deadlines = sla.deadlines(refund, MarketPolicy.objects.get(market__code="US"))
    assert [kind for _at, kind in deadlines] == ["auto_approve"]


@pytest.mark.parametrize("market", ["UK", "US"])
def test_the_platform_deadline_wins_when_earlier(tenants, market):
    a, _b = tenants
    ticket = ticket_in(store_in(a, market), platform_in=2 * H)
    assert ticket.due_kind == "platform" and ticket.due_at == ticket.platform_deadline
    later = ticket_in(store_in(a, market), platform_in=60 * H)
    assert later.due_kind == ("first_response" if market == "UK" else "auto_approve")


def test_a_request_in_a_final_state_is_not_watched(tenants):
    a, _b = tenants
    ticket = ticket_in(store_in(a, "UK"))
    services.buyer_cancelled(ticket.pk)
    ticket = reload(ticket)
    assert (ticket.due_at, ticket.due_kind, ticket.sla_check_at) == (None, "", None)


def test_a_platform_sync_to_a_final_state_ends_the_watch_at_once(tenants):
    a, _b = tenants
    ticket = age(ticket_in(store_in(a, "UK")), 30)
    assert reload(ticket).sla_check_at is not None
    services.apply_platform_status(ticket.pk, "RETURN_OR_REFUND_REQUEST_CANCEL")
    assert reload(ticket).state == "cancelled"
    assert sla.sweep() == 0  # nothing left to look at: the status change itself stopped the watch
    ticket = reload(ticket)
    assert ticket.sla_check_at is None and ticket.breached_at is None and not SlaBreach.objects.exists()


# --- first human response --------------------------------------------------------------------------------
def test_system_buyer_and_platform_actions_are_not_a_human_response(tenants):
    a, _b = tenants
    ticket = ticket_in(store_in(a, "UK"))
    services.perform(oplog.SYSTEM, ticket.pk, "request_evidence", None)
    services.buyer_responded(ticket.pk, note="photo sent")
    ticket = reload(ticket)
    assert ticket.state == "pending_review" and ticket.first_human_response_at is None
    assert ticket.due_kind == "first_response"


def test_a_persons_first_action_clears_the_first_response_deadline(tenants):
    a, _b = tenants
    ticket = ticket_in(store_in(a, "UK"))
    services.request_evidence(owner(a), ticket.pk, message="Please send a photo")
    ticket = reload(ticket)
    assert ticket.first_human_response_at is not None and close_to(ticket.first_human_response_at, now())
    assert ticket.due_at is None  # awaiting the buyer: no seller deadline is left
    services.buyer_responded(ticket.pk)
    ticket = reload(ticket)
    # Back in review: the seller's review deadlines apply again, the first response stays answered.
    assert ticket.due_kind == "auto_approve" and ticket.due_at == ticket.platform_created_at + 48 * H
    first = ticket.first_human_response_at
    services.approve(owner(a), ticket.pk, "APPROVE_REFUND")
    assert reload(ticket).first_human_response_at == first  # the first one counts


def test_a_refused_action_is_not_a_response(tenants):
    a, _b = tenants
    ticket = ticket_in(store_in(a, "UK"))
    from stores.errors import AppError

    with pytest.raises(AppError):
        services.perform(owner(a), ticket.pk, "buyer_responded", None)  # wrong state: refused
    assert reload(ticket).first_human_response_at is None


# --- warnings --------------------------------------------------------------------------------------------
def test_warnings_are_raised_once_each(tenants):
    a, _b = tenants
    ticket = age(ticket_in(store_in(a, "UK")), 21)  # first response due in 3 h: the 4 h warning is due
    assert sla.sweep() == 1
    assert sla.sweep() == 0  # next check is the 1 h warning
    keys = list(Alert.objects.filter(ticket=ticket, kind="breach_soon").values_list("key", flat=True))
    assert keys == ["first_response:240"]
    ticket = reload(ticket)
    assert ticket.sla_check_at == ticket.due_at - 1 * H
    ticket = age(ticket, 23.5)  # 30 min left
    assert sla.sweep() == 1 and sla.sweep() == 0
    keys = sorted(Alert.objects.filter(ticket=ticket, kind="breach_soon").values_list("key", flat=True))
    assert keys == ["first_response:240", "first_response:60"]
    ticket = reload(ticket)
    assert ticket.sla_check_at == ticket.due_at and ticket.breached_at is None


def test_a_deadline_first_seen_late_raises_only_the_most_urgent_warning(tenants):
    a, _b = tenants
    ticket = ticket_in(store_in(a, "US"), platform_in=dt.timedelta(minutes=20))
    sla.sweep()
    assert list(Alert.objects.filter(ticket=ticket).values_list("kind", "key")) == [("breach_soon", "platform:60")]


# --- breaches ------------------------------------------------------------------------------------------------
def test_a_missed_first_response_compensates_deducts_and_logs_once(tenants):
    a, _b = tenants
    store = store_in(a, "UK")
    ticket = age(ticket_in(store, platform_in=30 * H), 25)
    assert sla.sweep() == 1
    [breach] = SlaBreach.objects.for_agency(a.agency).filter(ticket=ticket)
    assert breach.kind == "first_response" and breach.due_at == ticket.platform_created_at + 24 * H
    comp = Compensation.objects.for_agency(a.agency).get(breach=breach)
    assert (comp.amount, comp.currency, comp.status, comp.error_code) == (Decimal("5.00"), "GBP", "granted", "")
    entry = ServiceScoreEntry.objects.for_agency(a.agency).get(breach=breach)
    assert (entry.delta, entry.score_after) == (Decimal("-0.50"), Decimal("4.50"))
    store.refresh_from_db()
    assert store.service_score == Decimal("4.50")
    weight = sla.store_traffic(store)
    assert weight.down_weighted and weight.exposure_loss_pct == Decimal("9.6")  # (4.8 − 4.5) / 0.1 × 3.2 %
    assert list(sla.filter_down_weighted(Store.objects.for_agency(a.agency))) == [store]
    [row] = breach_logs(ticket)
    assert (row.actor_kind, row.error_code, row.state_before, row.state_after) == (
        "system", "ERR_SLA_001", "pending_review", "pending_review")
    assert row.payload["kind"] == "first_response" and row.payload["score_after"] == "4.50"
    assert row.payload["due_at"] == breach.due_at.isoformat() and row.payload["down_weighted"] is True
    assert row.payload["compensation"] == {"amount": "5.00", "currency": "GBP", "status": "granted"}
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="sla_compensation", error_code="").count() == 1
    alert = Alert.objects.get(ticket=ticket, kind="breached")
    assert (alert.key, alert.error_code) == ("first_response", "ERR_SLA_001")
    ticket = reload(ticket)
    assert ticket.breached_at is not None and ticket.due_kind == "auto_approve"  # still watched: 48 h ahead
    assert sla.time_left(ticket) > 22 * H
    assert list(sla.filter_breached(AfterSalesRequest.objects.for_agency(a.agency))) == [ticket]
    # Again: nothing new.
    assert sla.sweep() == 0
    assert SlaBreach.objects.count() == Compensation.objects.count() == ServiceScoreEntry.objects.count() == 1


def test_other_missed_deadlines_deduct_without_compensation(tenants):
    a, _b = tenants
    store = store_in(a, "US")
    ticket = ticket_in(store, platform_in=-dt.timedelta(minutes=5))
    sla.sweep()
    [breach] = SlaBreach.objects.filter(ticket=ticket)
    assert breach.kind == "platform" and not Compensation.objects.exists()
    assert breach_logs(ticket)[0].payload["compensation"] is None
    store.refresh_from_db()
    assert store.service_score == Decimal("4.50")
    ticket = age(ticket, 49)  # the auto-approval deadline passes too: its own breach, once
    sla.sweep()
    sla.sweep()
    assert sorted(SlaBreach.objects.filter(ticket=ticket).values_list("kind", flat=True)) == [
        "auto_approve", "platform"]
    store.refresh_from_db()
    assert store.service_score == Decimal("4.00") and reload(ticket).due_at is None


def test_several_passed_deadlines_are_missed_in_one_visit(tenants):
    a, _b = tenants
    ticket = age(ticket_in(store_in(a, "MY")), 50)
    assert sla.sweep() == 1
    assert sorted(SlaBreach.objects.filter(ticket=ticket).values_list("kind", flat=True)) == [
        "auto_approve", "first_response"]
    assert Compensation.objects.filter(ticket=ticket).get().currency == "MYR"
    assert reload(ticket).sla_check_at is None


def test_compensation_over_the_monthly_budget_is_recorded_as_capped(tenants):
    a, _b = tenants
    MarketPolicy.objects.filter(market__code="UK").update(compensation_monthly_budget=Decimal("7.50"))
    store = store_in(a, "UK")
    tickets = [age(ticket_in(store), 25) for _ in range(3)]
    assert sla.sweep() == 3
    statuses = [Compensation.objects.get(ticket=t).status for t in tickets]
    assert statuses == ["granted", "capped", "capped"]
    capped = Compensation.objects.get(ticket=tickets[1])
    assert capped.error_code == "ERR_SLA_002" and capped.amount == Decimal("5.00")
    row = OperationLog.objects.get(ticket_id=tickets[1].pk, action="sla_compensation")
    assert row.error_code == "ERR_SLA_002" and row.payload["status"] == "capped"
    # The capped ones still cost the score.
    store.refresh_from_db()
    assert store.service_score == Decimal("3.50")


def test_the_budget_counts_the_current_month_in_market_time(tenants):
    a, _b = tenants
    MarketPolicy.objects.filter(market__code="UK").update(compensation_monthly_budget=Decimal("5.00"))
    store = store_in(a, "UK")
    first = age(ticket_in(store), 25)
    sla.sweep()
    last_month = sla.month_start(now(), "Europe/London") - dt.timedelta(minutes=1)
    Compensation.objects.filter(ticket=first).update(created_at=last_month)
    second = age(ticket_in(store), 25)
    sla.sweep()
    assert Compensation.objects.get(ticket=second).status == "granted"


def test_the_score_never_goes_below_zero(tenants):
    a, _b = tenants
    store = store_in(a, "UK")
    for _ in range(11):
        age(ticket_in(store), 25)
    sla.sweep()
    store.refresh_from_db()
    assert store.service_score == Decimal("0.00")
    scores = list(ServiceScoreEntry.objects.filter(store=store).order_by("id").values_list("score_after", flat=True))
    assert scores[:2] == [Decimal("4.50"), Decimal("4.00")] and scores[-2:] == [Decimal("0.00")] * 2
    assert sla.store_traffic(store).exposure_loss_pct == Decimal("153.6")


def test_the_sweep_works_through_batches(tenants):
    a, _b = tenants
    tickets = [age(ticket_in(store_in(a, "TH")), 25) for _ in range(5)]
    assert sla.sweep(batch=2) == 5
    assert [SlaBreach.objects.filter(ticket=t).count() for t in tickets] == [1] * 5


def test_a_market_counting_business_hours_moves_the_deadline_past_the_weekend(tenants):
    a, _b = tenants
    policy = MarketPolicy.objects.select_related("market__business_calendar").get(market__code="UK")
    policy.business_hours_kinds = ["first_response"]
    policy.save()
    ticket = ticket_in(store_in(a, "UK"))
    # Friday 27 Nov 2026, 17:00 in London (GMT): 1 h on Friday, 9 + 9 on Monday and Tuesday, 5 on Wednesday.
    ticket.platform_created_at = dt.datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    found = dict((kind, at) for at, kind in sla.deadlines(ticket, sla.policy_for(policy.market_id)))
    assert found["first_response"] == dt.datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    assert found["auto_approve"] == dt.datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # still wall-clock


def test_a_calendar_that_cannot_place_a_deadline_falls_back_to_the_wall_clock(tenants, caplog):
    from stores.models import BusinessCalendar

    a, _b = tenants
    MarketPolicy.objects.filter(market__code="UK").update(business_hours_kinds=["first_response"])
    start = dt.datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    mondays = [(start + dt.timedelta(days=3 + 7 * w)).date().isoformat() for w in range(4 * 53)]
    # Saved around clean() (which refuses it): open on Mondays only, and every Monday a holiday.
    BusinessCalendar.objects.filter(market__code="UK").update(working_hours={"mon": [["09:00", "10:00"]]},
                                                              holidays=mondays)
    ticket = ticket_in(store_in(a, "UK"))
    ticket.platform_created_at = start
    found = dict((kind, at) for at, kind in sla.deadlines(ticket, sla.policy_for(ticket.store.market_id)))
    assert found["first_response"] == start + 24 * H
    assert "cannot place" in caplog.text


def test_an_idle_sweep_is_one_query(tenants, django_assert_num_queries):
    a, _b = tenants
    ticket_in(store_in(a, "UK"))
    ticket_in(store_in(a, "US"), platform_in=5 * H)  # its 4 h warning is an hour away
    with django_assert_num_queries(1):
        assert sla.sweep() == 0


def test_a_batch_costs_the_same_queries_whatever_its_size(tenants):
    """Set-based effects: 4 breaches or 24 (with warnings alongside) take the same statements."""
    from django.test.utils import CaptureQueriesContext

    a, _b = tenants
    uk, my = store_in(a, "UK"), store_in(a, "MY")
    counts = []
    for n in (2, 12):
        for store in (uk, my):
            for _ in range(n):
                age(ticket_in(store), 25)
            age(ticket_in(store), 23.5)  # its 1 h warning is due
        with CaptureQueriesContext(connection) as ctx:
            assert sla.sweep() == 2 * n + 2
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 20, counts
    assert SlaBreach.objects.count() == Compensation.objects.count() == 28
    assert Alert.objects.filter(kind="breach_soon").count() == 4
    uk.refresh_from_db()
    assert uk.service_score == Decimal("0.00")  # 14 deductions of 0.5, clamped at zero
    assert sum(ServiceScoreEntry.objects.filter(store=uk).values_list("delta", flat=True)) == Decimal("-7.00")


def test_the_budget_runs_out_mid_batch(tenants):
    """Within one batch, granted compensation is counted as it is granted: the cap falls on the right one."""
    a, _b = tenants
    store = store_in(a, "UK")
    policy = MarketPolicy.objects.get(market__code="UK")
    policy.compensation_monthly_budget = policy.compensation_amount * 3
    policy.save()
    tickets = [age(ticket_in(store), 25) for _ in range(5)]
    assert sla.sweep() == 5
    statuses = [Compensation.objects.get(ticket=t).status for t in tickets]
    assert statuses == ["granted"] * 3 + ["capped"] * 2
    assert Compensation.objects.filter(status="capped", error_code="ERR_SLA_002").count() == 2


# --- notifications ---------------------------------------------------------------------------------------------
def with_email(user, address):
    user.email = address
    user.save(update_fields=["email"])
    return user


def test_breach_alerts_reach_the_owner_in_one_digest_once(tenants, mailoutbox):
    from aftersales import notifications

    a, _b = tenants
    with_email(a.owner, "owner@alpha.example")
    store = store_in(a, "UK")
    tickets = [age(ticket_in(store), 25) for _ in range(3)]
    sla.sweep()
    ids = list(Alert.objects.filter(ticket__in=tickets).values_list("pk", flat=True))
    assert len(ids) == 3
    assert notifications.deliver(ids) == 3
    [mail] = mailoutbox
    assert mail.to == ["owner@alpha.example"] and "3" in mail.subject
    assert all(t.return_id in mail.body for t in tickets) and "ERR_SLA_001" in mail.body
    assert notifications.deliver(ids) == 0 and len(mailoutbox) == 1  # stamped: never twice
    assert not Alert.objects.filter(pk__in=ids, notified_at__isnull=True).exists()


def test_a_digest_costs_the_same_queries_for_3_alerts_or_12(tenants, mailoutbox):
    """Who may see what is looked up per (assignee, store), not per alert."""
    from django.test.utils import CaptureQueriesContext

    from aftersales import notifications

    a, _b = tenants
    with_email(a.owner, "owner@alpha.example")
    with_email(a.agent, "agent@alpha.example")
    counts = []
    for n in (3, 12):
        tickets = [age(ticket_in(a.stores[0]), 49) for _ in range(n)]
        AfterSalesRequest.objects.unscoped().filter(pk__in=[t.pk for t in tickets]).update(assignee=a.agent)
        sla.sweep()
        ids = list(Alert.objects.filter(ticket__in=tickets).values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as ctx:
            assert notifications.deliver(ids) == len(ids) >= n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    assert [m.to for m in mailoutbox] == [["agent@alpha.example"]] * 2


def test_an_assignee_who_may_see_the_store_hears_instead_of_the_owners(tenants, mailoutbox):
    from aftersales import notifications

    a, b = tenants
    with_email(a.owner, "owner@alpha.example")
    with_email(a.agent, "agent@alpha.example")
    granted, ungranted = a.stores[0], a.stores[2]  # the agent holds the first two stores only
    mine, lost = age(ticket_in(granted), 49), age(ticket_in(ungranted), 49)  # past auto-approval anywhere
    AfterSalesRequest.objects.unscoped().filter(pk__in=[mine.pk, lost.pk]).update(assignee=a.agent)
    other = age(ticket_in(store_in(b, "UK")), 25)  # another agency's breach: its owner has no address
    sla.sweep()
    assert notifications.deliver(list(Alert.objects.values_list("pk", flat=True))) == 3
    by_to = {tuple(m.to): m.body for m in mailoutbox}
    assert set(by_to) == {("agent@alpha.example",), ("owner@alpha.example",)}
    assert mine.return_id in by_to[("agent@alpha.example",)] and lost.return_id not in by_to[("agent@alpha.example",)]
    assert lost.return_id in by_to[("owner@alpha.example",)] and mine.return_id not in by_to[("owner@alpha.example",)]
    assert other.return_id not in "".join(by_to.values())


def test_the_sweep_probe_and_claim_walk_the_partial_index(tenants):
    """Kept as a test so a later change cannot silently lose the plan: 5,000 requests, most no longer watched
    (statistics fresh), and both the idle probe and the claim read the request_sla_check index."""
    a, _b = tenants
    store = store_in(a, "UK")
    created = now() - 30 * H
    AfterSalesRequest.objects.unscoped().bulk_create([
        AfterSalesRequest(agency_id=a.agency.pk, store=store, type="refund_only", state="completed",
                          state_changed_at=created, return_id=f"P{i}", order_id=f"O{i}", buyer_user_id="b",
                          currency="GBP", platform_created_at=created) for i in range(5000)], batch_size=1000)
    for _ in range(3):
        age(ticket_in(store), 25)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE aftersales_aftersalesrequest")
    probe = sla._due(now()).order_by("sla_check_at").values_list("pk", flat=True)[:1]
    claim = sla._due(now()).only(*sla.CLAIM_FIELDS).order_by("sla_check_at", "pk").select_for_update(
        skip_locked=True)[:500]
    for qs in (probe, claim):
        plan = qs.explain()
        assert "request_sla_check" in plan, plan
    assert sla.sweep() == 3


# --- crashes and races ----------------------------------------------------------------------------------------
def test_a_failing_request_rolls_back_alone_and_the_rerun_completes_it(tenants, monkeypatch):
    a, _b = tenants
    store = store_in(a, "UK")
    tickets = [age(ticket_in(store), 25) for _ in range(3)]
    real = sla.compensations_for

    def broken(owed, *args, **kwargs):
        if any(p.ticket.pk == tickets[1].pk for p, _row in owed):
            raise RuntimeError("compensation service down")
        return real(owed, *args, **kwargs)

    monkeypatch.setattr(sla, "compensations_for", broken)
    assert sla.sweep() == 3  # the batch fails, is redone one by one; no endless retry inside one sweep
    assert [SlaBreach.objects.filter(ticket=t).count() for t in tickets] == [1, 0, 1]
    assert not breach_logs(tickets[1]) and reload(tickets[1]).breached_at is None
    assert not Alert.objects.filter(ticket=tickets[1], kind="breached").exists()
    store.refresh_from_db()
    assert store.service_score == Decimal("4.00")
    monkeypatch.setattr(sla, "compensations_for", real)
    assert sla.sweep() == 1
    for t in tickets:
        assert SlaBreach.objects.filter(ticket=t).count() == Compensation.objects.filter(ticket=t).count() == 1
        assert len(breach_logs(t)) == 1
    assert ServiceScoreEntry.objects.filter(store=store).count() == 3
    store.refresh_from_db()
    assert store.service_score == Decimal("3.50")


class Crash(BaseException):
    """Stands in for the process dying mid-sweep (not an Exception: nothing catches it)."""


def test_a_sweep_that_dies_halfway_loses_and_duplicates_nothing(tenants, monkeypatch):
    a, _b = tenants
    store = store_in(a, "UK")
    tickets = [age(ticket_in(store), 25) for _ in range(4)]
    real = sla._insert_alerts

    def dying(*args, **kwargs):  # after the breaches, compensations, score and log rows were written
        raise Crash

    monkeypatch.setattr(sla, "_insert_alerts", dying)
    with pytest.raises(Crash):
        sla.sweep(batch=2)
    # The batch's transaction never committed: as if the sweep had not run.
    assert not SlaBreach.objects.exists() and not OperationLog.objects.filter(action="sla_breach").exists()
    monkeypatch.setattr(sla, "_insert_alerts", real)
    assert sla.sweep() == 4
    assert [SlaBreach.objects.filter(ticket=t).count() for t in tickets] == [1] * 4
    assert Compensation.objects.count() == ServiceScoreEntry.objects.count() == 4
    store.refresh_from_db()
    assert store.service_score == Decimal("3.00")


def test_a_sweep_out_of_time_stops_and_leaves_the_batch_for_the_next(tenants, monkeypatch):
    """SoftTimeLimitExceeded is an Exception: it must end the sweep, not be redone request by request."""
    from celery.exceptions import SoftTimeLimitExceeded

    a, _b = tenants
    tickets = [age(ticket_in(store_in(a, "UK")), 25) for _ in range(4)]
    calls = []
    real = sla.apply

    def slow(batch, *args, **kwargs):
        calls.append(len(batch))
        if len(calls) == 2:
            raise SoftTimeLimitExceeded
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(sla, "apply", slow)
    with pytest.raises(SoftTimeLimitExceeded):
        sla.sweep(batch=2)
    assert calls == [2, 2]  # no one-by-one retry after the time ran out
    assert SlaBreach.objects.count() == 2  # the first batch committed, the second rolled back
    monkeypatch.setattr(sla, "apply", real)
    assert sla.sweep() == 2
    assert [SlaBreach.objects.filter(ticket=t).count() for t in tickets] == [1] * 4


def test_a_breach_is_unique_per_request_and_kind(tenants):
    a, _b = tenants
    ticket = age(ticket_in(store_in(a, "UK")), 25)
    sla.sweep()
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        SlaBreach.objects.create(agency=a.agency, store_id=ticket.store_id, ticket=ticket, kind="first_response",
                                 due_at=now(), created_at=now())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_sweeps_racing_handle_each_breach_exactly_once(tenants):
    a, _b = tenants
    uk, my = store_in(a, "UK"), store_in(a, "MY")
    tickets = [age(ticket_in(store), 25) for store in (uk, my) for _ in range(12)]
    start = threading.Barrier(4)
    handled: list[int] = []
    failures: list[BaseException] = []

    def sweep():
        try:
            start.wait()
            handled.append(sla.sweep(batch=3))
        except BaseException as exc:  # surfaced below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures and sum(handled) == 24
    for t in tickets:
        assert SlaBreach.objects.filter(ticket=t).count() == 1
        assert Compensation.objects.filter(ticket=t).count() == 1
        assert ServiceScoreEntry.objects.filter(breach__ticket=t).count() == 1
        assert len(breach_logs(t)) == 1
    for store in (uk, my):
        store.refresh_from_db()
        scores = sorted(ServiceScoreEntry.objects.filter(store=store).values_list("score_after", flat=True))
        # Serialised on the store row: every deduction saw the one before it.
        assert scores == sorted([max(Decimal("0"), Decimal("5") - Decimal("0.5") * n) for n in range(1, 13)])
        assert store.service_score == Decimal("0.00")


# --- Celery ------------------------------------------------------------------------------------------------------
def test_the_beat_runs_the_sla_sweep_every_minute(tenants):
    entry = app.conf.beat_schedule["aftersales-sla-sweep"]
    assert entry["task"] == "aftersales.sweep_sla" and entry["schedule"] == 60.0
    a, _b = tenants
    age(ticket_in(store_in(a, "VN")), 25)
    assert tasks.sweep_sla.apply().get() == 1
    assert tasks.sweep_sla.apply().get() == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_handles_a_breach_end_to_end(tenants, mailoutbox):
    a, _b = tenants
    with_email(a.owner, "owner@alpha.example")
    store = store_in(a, "PH")
    ticket = age(ticket_in(store), 25)
    with app.connection() as conn:
        conn.ensure_connection(max_retries=3)
        conn.default_channel.queue_purge(app.conf.task_default_queue)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        tasks.sweep_sla.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not OperationLog.objects.filter(
                ticket_id=ticket.pk, action="sla_breach").exists():
            time.sleep(0.2)
        # The sweep's commit enqueued the notification; the same worker sends it.
        while time.monotonic() < deadline and not Alert.objects.filter(ticket_id=ticket.pk,
                                                                       notified_at__isnull=False).exists():
            time.sleep(0.2)
    [row] = breach_logs(ticket)
    assert row.error_code == "ERR_SLA_001" and row.request_id.startswith("task-")
    assert [m.to for m in mailoutbox] == [["owner@alpha.example"]] and ticket.return_id in mailoutbox[0].body
    assert Compensation.objects.get(ticket=ticket).currency == "PHP"
    store.refresh_from_db()
    assert store.service_score == Decimal("4.50")


# --- demo ----------------------------------------------------------------------------------------------------------
def test_seed_sla_demo_leaves_some_overdue_and_some_due_within_minutes(tenants):
    a, _b = tenants
    stores = [store_in(a, "UK"), store_in(a, "US")]
    old = [age(ticket_in(s), 24 * 30) for s in stores for _ in range(2)]  # a month old, still in review
    fresh = [ticket_in(s) for s in stores for _ in range(4)]
    counts = sla.seed_sla_demo(a.agency.pk, overdue=2, soon=2)
    assert (counts["overdue"], counts["soon"]) == (4, 4)
    watched = AfterSalesRequest.objects.for_agency(a.agency).filter(pk__in=[t.pk for t in old + fresh])
    overdue = [t for t in watched if t.due_at <= now()]
    soon = [t for t in watched if now() < t.due_at <= now() + dt.timedelta(minutes=10)]
    assert len(overdue) == 4 and len(soon) == 4
    sla.sweep()
    assert SlaBreach.objects.filter(ticket__in=overdue).values("ticket").distinct().count() == 4
    assert not SlaBreach.objects.exclude(ticket__in=overdue).exists()  # the month-old rest did not breach
    assert Alert.objects.filter(ticket__in=soon, kind="breach_soon").count() == 4
