"""stores.bulk: insert_rows and update_rows write exactly the rows the ORM would, in one statement."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from aftersales.models import AfterSalesRequest, Compensation, OperationLog, SlaBreach
from stores.bulk import insert_rows
from tests.conftest import platform_return


def test_rows_match_the_orm_and_come_back_with_their_keys(tenants, django_assert_num_queries):
    from aftersales import services

    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return())
    when = dt.datetime(2026, 11, 26, 8, 30, tzinfo=dt.UTC)
    breaches = [SlaBreach(agency_id=ticket.agency_id, store_id=ticket.store_id, ticket=ticket, kind=kind,
                          due_at=when, created_at=when) for kind in ("first_response", "auto_approve")]
    with django_assert_num_queries(1):
        rows = insert_rows(SlaBreach, breaches, returning=("id", "ticket", "kind"))
    assert sorted((t, k) for _pk, t, k in rows) == [(ticket.pk, "auto_approve"), (ticket.pk, "first_response")]
    by_kind = {k: pk for pk, _t, k in rows}
    comp = Compensation(agency_id=ticket.agency_id, store_id=ticket.store_id, ticket=ticket,
                        breach_id=by_kind["first_response"], amount=Decimal("12.5"), currency="GBP",
                        status="granted", created_at=when)
    insert_rows(Compensation, [comp])
    stored = Compensation.objects.get(breach_id=by_kind["first_response"])
    assert stored.amount == Decimal("12.50") and stored.currency == "GBP" and stored.created_at == when
    log = OperationLog(ticket_id=ticket.pk, agency_id=ticket.agency_id, store_id=ticket.store_id,
                       order_id=ticket.order_id, created_at=when, actor_kind="system", action="x",
                       payload={"中文": ["ok", 1, None]})
    insert_rows(OperationLog, [log])
    assert OperationLog.objects.get(action="x").payload == {"中文": ["ok", 1, None]}


def test_nothing_to_insert_costs_nothing(django_assert_num_queries, db):
    with django_assert_num_queries(0):
        assert insert_rows(SlaBreach, []) == []


def test_array_columns_are_refused(tenants):
    a, _b = tenants
    with pytest.raises(TypeError, match="array"):
        insert_rows(AfterSalesRequest, [AfterSalesRequest(agency_id=a.agency.pk, store=a.stores[0])])


def test_update_rows_writes_what_save_would(tenants, django_assert_num_queries):
    """Each row its own values, of the named columns only (JSON, money, NULL, choices); auto_now set to now."""
    from aftersales import services
    from aftersales.states import State
    from stores.bulk import update_rows

    a, _b = tenants
    first, second = (services.intake(a.stores[0], platform_return())[0] for _ in range(2))
    stamp = first.updated_at
    first.state, first.partial_refund_offer, first.platform_eligibility = State.REFUND_APPROVED, Decimal("3.5"), {
        "APPROVE_REFUND": {"eligible": False, "reason": "已发货"}}
    second.state, second.partial_refund_offer, second.due_at = State.CLOSED, None, None
    second.buyer_name = "not written: not named"
    with django_assert_num_queries(1):
        update_rows(AfterSalesRequest, [first, second],
                    ("state", "partial_refund_offer", "platform_eligibility", "due_at", "updated_at"))
    first_db, second_db = (AfterSalesRequest.objects.unscoped().get(pk=t.pk) for t in (first, second))
    assert (first_db.state, first_db.partial_refund_offer) == ("refund_approved", Decimal("3.50"))
    assert first_db.platform_eligibility == {"APPROVE_REFUND": {"eligible": False, "reason": "已发货"}}
    assert (second_db.state, second_db.partial_refund_offer, second_db.due_at) == ("closed", None, None)
    assert second_db.buyer_name == "Alex Buyer"
    assert first_db.updated_at > stamp and first_db.updated_at == first.updated_at
    with django_assert_num_queries(0):
        update_rows(AfterSalesRequest, [], ("state",))
    with pytest.raises(TypeError, match="array"):
        update_rows(AfterSalesRequest, [first], ("tags",))
