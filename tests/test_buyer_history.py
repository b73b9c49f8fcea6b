"""买家售后行为画像: figures on a mixed history, the serial-returner rules, scoping, constant queries."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from aftersales import services
from aftersales.buyers import buyer_history
from aftersales.oplog import Performer
from stores.errors import AppError
from tests.conftest import platform_return

REASON = "reverse_reject_request_reason_1"
DAY = 86400


def make(store, buyer: str, *, kind: str = "REFUND", currency: str = "USD", total: str = "25.00",
         days_ago: float = 0, status: str | None = None):
    payload = platform_return(buyer_user_id=buyer, return_type=kind, create_time=int(time.time() - days_ago * DAY),
                              refund_amount={"currency": currency, "refund_total": total})
    if status:
        payload["return_status"] = status
    ticket, _ = services.intake(store, payload)
    return ticket


def refunded(performer, store, buyer, amount=None, **kwargs):
    ticket = make(store, buyer, **kwargs)
    services.approve(performer, ticket.pk, "APPROVE_REFUND")
    services.refund(performer, ticket.pk, amount=amount)
    return ticket


def rejected(performer, store, buyer, **kwargs):
    ticket = make(store, buyer, **kwargs)
    services.reject(performer, ticket.pk, reason=REASON)
    return ticket


@pytest.fixture
def history(tenants):
    """One buyer across three stores of agency a (the agent is granted the first two) and one of b."""
    a, b = tenants
    owner = Performer.of(a.actor(a.owner))
    s0, s1, s2 = a.stores
    tickets = {
        "refunded": refunded(owner, s0, "buyer-x", days_ago=2.5),
        "rejected": rejected(owner, s0, "buyer-x", days_ago=1.5),
        "pending": make(s0, "buyer-x", kind="RETURN_AND_REFUND", days_ago=0.5),
        "rejected_then_closed": rejected(owner, s0, "buyer-x", days_ago=10),
        "partial_gbp": refunded(owner, s1, "buyer-x", amount="10.00", currency="GBP", total="40.00", days_ago=5.5),
        "ungranted_store": refunded(owner, s2, "buyer-x", total="30.00", days_ago=3.5),
        "old_exchange": make(s0, "buyer-x", kind="REPLACEMENT", days_ago=200),
    }
    services.close(owner, tickets["rejected_then_closed"].pk)
    # The same buyer id in another agency, and another buyer in ours: neither may count.
    refunded(Performer.of(b.actor(b.owner)), b.stores[0], "buyer-x", total="999.00")
    refunded(owner, s0, "buyer-y", total="500.00")
    return tickets


def test_owner_sees_the_whole_agency_history(tenants, history):
    a, _b = tenants
    h = buyer_history(a.actor(a.owner), "buyer-x")
    assert h["buyer_user_id"] == "buyer-x" and h["days"] == 90
    assert (h["requests_total"], h["requests_recent"]) == (7, 6)
    assert (h["refunds_total"], h["refunds_recent"]) == (3, 3)
    assert h["refunded"] == {"GBP": Decimal("10.00"), "USD": Decimal("55.00")}
    assert h["refunded_recent"] == h["refunded"]
    # Decided: refunded, rejected, rejected-then-closed, partial, ungranted-store; rejected: two of them.
    assert (h["decided"], h["rejected"], h["rejection_rate"]) == (5, 2, 0.4)
    assert h["types"] == {"exchange": 1, "refund_only": 5, "return_and_refund": 1}
    newest = history["pending"].platform_created_at
    assert h["last_request_at"] == newest
    assert h["serial_returner"] is True and h["rule_key"] == "requests"
    assert h["rule"] == "≥ 5 requests in 90 days (found 6)"


def test_a_sub_account_counts_only_its_granted_stores(tenants, history):
    a, _b = tenants
    h = buyer_history(a.actor(a.agent), "buyer-x")
    assert (h["requests_total"], h["requests_recent"], h["refunds_total"]) == (6, 5, 2)
    assert h["refunded"] == {"GBP": Decimal("10.00"), "USD": Decimal("25.00")}
    assert (h["decided"], h["rejected"], h["rejection_rate"]) == (4, 2, 0.5)
    assert h["serial_returner"] is True and h["rule"] == "≥ 5 requests in 90 days (found 5)"


def test_members_without_store_access_see_nothing(tenants, history):
    a, _b = tenants
    h = buyer_history(a.actor(a.outsider), "buyer-x")
    assert h["requests_total"] == 0 and h["refunded"] == {} and h["types"] == {}
    assert h["rejection_rate"] is None and h["last_request_at"] is None
    assert (h["serial_returner"], h["rule"], h["rule_key"]) == (False, None, None)


def test_another_agency_never_counts(tenants, history):
    a, b = tenants
    h = buyer_history(b.actor(b.owner), "buyer-x")
    assert h["requests_total"] == 1 and h["refunded"] == {"USD": Decimal("999.00")}
    assert buyer_history(a.actor(a.owner), "buyer-x")["refunded"]["USD"] == Decimal("55.00")
    assert buyer_history(b.actor(b.owner), "buyer-y")["requests_total"] == 0


def test_the_window_is_a_parameter(tenants, history):
    a, _b = tenants
    h = buyer_history(a.actor(a.owner), "buyer-x", days=4)
    assert (h["requests_recent"], h["refunds_recent"]) == (4, 2)  # half a day to three and a half days ago
    assert h["refunded_recent"] == {"USD": Decimal("55.00")}
    assert h["requests_total"] == 7


@pytest.mark.parametrize("actor_user", ["owner", "agent"])
def test_query_count_is_constant(tenants, history, django_assert_num_queries, actor_user):
    a, _b = tenants
    actor = a.actor(getattr(a, actor_user))
    with django_assert_num_queries(1):
        small = buyer_history(actor, "buyer-x")
    owner = Performer.of(a.actor(a.owner))
    for i in range(6):
        refunded(owner, a.stores[i % 2], "buyer-x", currency=("USD", "GBP", "CAD")[i % 3], days_ago=i * 20)
    with django_assert_num_queries(1):
        big = buyer_history(actor, "buyer-x")
    assert big["requests_total"] == small["requests_total"] + 6


# --- rejection rate --------------------------------------------------------------------------------------
def test_a_rejection_overturned_by_arbitration_counts_as_approved(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    overturned = rejected(owner, a.stores[0], "buyer-z")
    services.record_arbitration(owner, overturned.pk, "IN_PROGRESS")
    services.record_arbitration(owner, overturned.pk, "SUPPORT_BUYER")
    upheld = rejected(owner, a.stores[0], "buyer-z")
    services.record_arbitration(owner, upheld.pk, "IN_PROGRESS")
    services.record_arbitration(owner, upheld.pk, "SUPPORT_SELLER")
    h = buyer_history(a.actor(a.owner), "buyer-z")
    assert (h["decided"], h["rejected"], h["rejection_rate"]) == (2, 1, 0.5)


def test_platform_side_outcomes_count_and_waiting_does_not(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    make(a.stores[0], "buyer-p", status="RETURN_OR_REFUND_REQUEST_REJECT")
    make(a.stores[0], "buyer-p", status="RETURN_OR_REFUND_REQUEST_SUCCESS")
    waiting = make(a.stores[0], "buyer-p")
    services.request_evidence(owner, waiting.pk)
    cancelled = make(a.stores[0], "buyer-p")
    services.buyer_cancelled(cancelled.pk)
    h = buyer_history(a.actor(a.owner), "buyer-p")
    assert (h["requests_total"], h["decided"], h["rejected"]) == (4, 2, 1)


def test_refunds_only_count_money_that_moved(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    approved = make(a.stores[0], "buyer-q")
    services.approve(owner, approved.pk, "APPROVE_REFUND")  # approved, not yet paid
    h = buyer_history(a.actor(a.owner), "buyer-q")
    assert (h["refunds_total"], h["refunded"], h["decided"]) == (0, {}, 1)


# --- serial-returner rules -------------------------------------------------------------------------------
def test_requests_rule_threshold(tenants):
    a, _b = tenants
    for _ in range(4):
        make(a.stores[0], "buyer-r")
    make(a.stores[0], "buyer-r", days_ago=95)  # outside the 90-day window
    assert buyer_history(a.actor(a.owner), "buyer-r")["serial_returner"] is False
    make(a.stores[1], "buyer-r")
    h = buyer_history(a.actor(a.owner), "buyer-r")
    assert (h["serial_returner"], h["rule_key"]) == (True, "requests")


def test_refunds_rule_uses_its_own_30_day_window(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    refunded(owner, a.stores[0], "buyer-s", days_ago=1)
    refunded(owner, a.stores[0], "buyer-s", days_ago=29)
    refunded(owner, a.stores[0], "buyer-s", days_ago=40)
    h = buyer_history(a.actor(a.owner), "buyer-s")
    assert h["refunds_recent"] == 3 and h["serial_returner"] is False
    refunded(owner, a.stores[1], "buyer-s", days_ago=2)
    h = buyer_history(a.actor(a.owner), "buyer-s")
    assert (h["serial_returner"], h["rule_key"]) == (True, "refunds")
    assert h["rule"] == "≥ 3 refunds in 30 days (found 3)"


def test_amount_rule_is_per_currency(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    # Outside the refunds rule's 30 days, so only the amount rule can fire.
    refunded(owner, a.stores[0], "buyer-t", total="150.00", days_ago=40)
    refunded(owner, a.stores[0], "buyer-t", currency="GBP", total="150.00", days_ago=40)
    assert buyer_history(a.actor(a.owner), "buyer-t")["serial_returner"] is False  # 150 USD + 150 GBP: no sum
    refunded(owner, a.stores[0], "buyer-t", total="50.00", days_ago=45)
    h = buyer_history(a.actor(a.owner), "buyer-t")
    assert (h["serial_returner"], h["rule_key"]) == (True, "refunded_amount")
    assert h["rule"] == "≥ 200 USD refunded in 90 days (found 200.00)"


def test_rules_come_from_settings(settings, tenants, history):
    a, _b = tenants
    settings.AFTERSALES_SERIAL_RETURNER_RULES = [
        {"key": "gbp", "metric": "refunded_amount", "days": 7, "threshold": {"GBP": "10"}},
        {"key": "many", "metric": "requests", "days": 365, "threshold": 7},
    ]
    h = buyer_history(a.actor(a.owner), "buyer-x")
    assert (h["rule_key"], h["rule"]) == ("gbp", "≥ 10 GBP refunded in 7 days (found 10.00)")
    settings.AFTERSALES_SERIAL_RETURNER_RULES = [{"key": "many", "metric": "requests", "days": 365, "threshold": 7}]
    assert buyer_history(a.actor(a.owner), "buyer-x")["rule_key"] == "many"
    assert buyer_history(a.actor(a.agent), "buyer-x")["serial_returner"] is False  # the agent sees only 6
    settings.AFTERSALES_SERIAL_RETURNER_RULES = []
    assert buyer_history(a.actor(a.owner), "buyer-x")["serial_returner"] is False


@pytest.mark.parametrize("rule", [
    {"metric": "visits", "days": 30, "threshold": 1},
    {"metric": "requests", "days": 0, "threshold": 1},
    {"metric": "requests", "days": 30, "threshold": "5"},
    {"metric": "refunded_amount", "days": 30, "threshold": 100},
    {"metric": "refunded_amount", "days": 30, "threshold": {"USD": "lots"}},
    {"metric": "requests", "days": 30},
])
def test_a_broken_rule_fails_loudly(settings, tenants, rule):
    a, _b = tenants
    settings.AFTERSALES_SERIAL_RETURNER_RULES = [rule]
    with pytest.raises(ImproperlyConfigured):
        buyer_history(a.actor(a.owner), "buyer-x")


@pytest.mark.parametrize(("buyer", "days"), [("", 90), ("  ", 90), ("buyer-x", 0), ("buyer-x", 4000),
                                             ("buyer-x", "90"), ("buyer-x", True)])
def test_input_validation(tenants, buyer, days):
    a, _b = tenants
    with pytest.raises(AppError) as info:
        buyer_history(a.actor(a.owner), buyer, days=days)
    assert info.value.code == "ERR_VALIDATION"


def test_request_time_falls_back_to_intake_time(tenants):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return(buyer_user_id="buyer-u", create_time=None))
    assert ticket.platform_created_at is None
    h = buyer_history(a.actor(a.owner), "buyer-u", days=1)
    assert h["requests_recent"] == 1
    assert abs(h["last_request_at"] - ticket.created_at) < dt.timedelta(seconds=1)
