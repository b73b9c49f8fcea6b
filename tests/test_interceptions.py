"""物流拦截: one open interception per request, never for a delivered parcel, every outcome logged."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connections

from aftersales import oplog, services
from aftersales.models import OperationLog
from aftersales.oplog import Performer
from logistics import interceptions
from logistics.models import Interception
from stores.errors import AppError
from tests.conftest import platform_return

IN_TRANSIT_REASON = "ecom_order_shipped_refund_reason_not_arrive_on_time"


def in_transit_return(**overrides) -> dict:
    """A refund-only request raised while the parcel is still on its way: the interception case."""
    return platform_return(**{"return_reason": IN_TRANSIT_REASON, **overrides})


@pytest.fixture
def ticket(tenants):
    a, _b = tenants
    created, _ = services.intake(a.stores[0], in_transit_return())
    return created


@pytest.fixture
def agent(tenants):
    a, _b = tenants
    return Performer.of(a.actor(a.agent))


def rows(ticket, action):
    return list(OperationLog.objects.filter(ticket=ticket, action=action).order_by("id"))


def refuse(code, fn, *args, **kwargs) -> AppError:
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def intercept(performer, ticket, number="JD0123456789", **kwargs):
    return interceptions.request_interception(performer, ticket.public_id, tracking_number=number, **kwargs)


# --- requesting ----------------------------------------------------------------------------------------
def test_request_creates_an_open_interception_and_logs_it(tenants, ticket, agent):
    a, _b = tenants
    item = intercept(agent, ticket, " jd 0123 4567 89 ", carrier_code="DHL", note="  buyer cancelled  ")
    item.refresh_from_db()
    assert (item.tracking_number, item.carrier.code, item.note) == ("JD0123456789", "dhl", "buyer cancelled")
    assert item.outcome == "requested" and item.decided_at is None and item.requested_at is not None
    assert (item.agency_id, item.ticket_id, item.requested_by_id) == (a.agency.pk, ticket.pk, a.agent.pk)
    [row] = rows(ticket, "interception_requested")
    assert row.ok and row.actor_user_id == a.agent.pk and row.state_before == row.state_after == ticket.state
    assert row.payload == {"tracking_number": "JD0123456789", "carrier": "dhl",
                           "interception_id": str(item.public_id), "note": "buyer cancelled"}


def test_the_carrier_is_optional_and_system_code_needs_no_role(ticket):
    item = interceptions.request_interception(oplog.SYSTEM, ticket.pk, tracking_number="X1")
    assert item.carrier is None and item.requested_by_id is None
    assert rows(ticket, "interception_requested")[0].actor_kind == "system"


@pytest.mark.parametrize(("number", "carrier", "note", "code"), [
    ("", None, "", "ERR_LOG_204"),
    ("   ", None, "", "ERR_LOG_204"),
    ("9" * 65, None, "", "ERR_LOG_204"),
    ("JD0123456789", "no-such-carrier", "", "ERR_LOG_205"),
    ("JD0123456789", "usps", "", "ERR_LOG_205"),  # USPS does not serve the store's market (AE)
    ("JD0123456789", None, "x" * 501, "ERR_VALIDATION"),
])
def test_bad_input_is_refused_logged_and_nothing_is_written(ticket, agent, number, carrier, note, code):
    refuse(code, intercept, agent, ticket, number, carrier_code=carrier, note=note)
    [row] = rows(ticket, "interception_requested")
    assert row.error_code == code
    assert not Interception.objects.unscoped().exists()


def test_a_second_open_interception_is_refused(ticket, agent):
    first = intercept(agent, ticket)
    error = refuse("ERR_LOG_401", intercept, agent, ticket, "JD999")
    assert error.data == {"reason": "open", "interception_id": str(first.public_id)}
    assert Interception.objects.unscoped().count() == 1
    assert [r.error_code for r in rows(ticket, "interception_requested")] == ["", "ERR_LOG_401"]


def test_after_an_outcome_a_new_interception_may_be_requested(ticket, agent):
    first = intercept(agent, ticket)
    interceptions.record_interception_outcome(agent, first.public_id, "failed")
    second = intercept(agent, ticket, "JD0000000002")
    assert second.pk != first.pk
    assert Interception.objects.unscoped().filter(outcome="requested").count() == 1


def test_the_constraint_turns_a_missed_duplicate_into_err_log_401(ticket, agent, monkeypatch):
    intercept(agent, ticket)
    # A writer that skipped the lock: our own check does not see the open row, the database does.
    monkeypatch.setattr(interceptions, "_open_interception", lambda _ticket: None)
    error = refuse("ERR_LOG_401", intercept, agent, ticket, "JD2")
    assert error.data == {"reason": "open"}
    assert Interception.objects.unscoped().count() == 1
    assert rows(ticket, "interception_requested")[-1].error_code == "ERR_LOG_401"


# --- delivered parcels ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "evidence"), [
    ({"return_type": "RETURN_AND_REFUND"}, "return_after_delivery"),
    ({"order_status": "DELIVERED"}, "order_status"),
    ({"order_status": "completed"}, "order_status"),
    ({"return_reason": "ecom_order_delivered_refund_and_return_reason_wrong_product_seller"},
     "reason_after_delivery"),
    ({"return_type": "REPLACEMENT"}, "exchange_after_delivery"),
])
def test_a_parcel_known_delivered_cannot_be_intercepted(tenants, agent, overrides, evidence):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], in_transit_return(**overrides))
    error = refuse("ERR_LOG_401", intercept, agent, ticket)
    assert error.data == {"reason": "delivered", "evidence": evidence}
    [row] = rows(ticket, "interception_requested")
    assert row.error_code == "ERR_LOG_401" and row.message == error.detail
    assert not Interception.objects.unscoped().exists()


def test_an_in_transit_refund_may_be_intercepted_in_any_state(tenants, agent):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], in_transit_return())
    owner = Performer.of(a.actor(a.owner))
    services.approve(owner, ticket.pk, "APPROVE_REFUND")
    services.refund(owner, ticket.pk)
    assert intercept(agent, ticket).outcome == "requested"


def test_the_replacement_parcel_can_be_intercepted_until_it_is_delivered(tenants, agent):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    ticket, _ = services.intake(a.stores[0], in_transit_return(return_type="REPLACEMENT"))
    services.approve(owner, ticket.pk, "APPROVE_REPLACEMENT")
    services.ship_replacement(owner, ticket.pk, carrier="dhl", tracking_number="1234567890")
    item = intercept(agent, ticket, "1234567890")
    interceptions.record_interception_outcome(agent, item.pk, "failed")
    services.replacement_delivered(ticket.pk)
    error = refuse("ERR_LOG_401", intercept, agent, ticket, "1234567890")
    assert error.data["evidence"] == "replacement_delivered"


def test_delivered_evidence_is_none_for_an_in_transit_refund(ticket):
    assert interceptions.delivered_evidence(ticket, "X") is None


# --- who may -------------------------------------------------------------------------------------------
def test_a_viewer_gets_err_perm_003_and_a_failure_row(tenants, ticket):
    a, _b = tenants
    viewer = Performer.of(a.actor(a.viewer))
    refuse("ERR_PERM_003", intercept, viewer, ticket)
    [row] = rows(ticket, "interception_requested")
    assert row.error_code == "ERR_PERM_003" and row.actor_user_id == a.viewer.pk
    assert not Interception.objects.unscoped().exists()


@pytest.mark.parametrize("who", ["outsider", "other_tenant", "agent_elsewhere"])
def test_invisible_requests_are_not_found_and_not_logged(tenants, who):
    a, b = tenants
    ticket, _ = services.intake(a.stores[2], in_transit_return())  # the agent has no role on store 2
    performer = {"outsider": Performer.of(a.actor(a.outsider)), "other_tenant": Performer.of(b.actor(b.owner)),
                 "agent_elsewhere": Performer.of(a.actor(a.agent))}[who]
    refuse("ERR_NOT_FOUND", intercept, performer, ticket)
    assert rows(ticket, "interception_requested") == []


def test_unknown_ids_are_not_found(agent):
    for bad in (uuid.uuid4(), "not-a-uuid", 10**9):
        refuse("ERR_NOT_FOUND", interceptions.request_interception, agent, bad, tracking_number="X")
        refuse("ERR_NOT_FOUND", interceptions.record_interception_outcome, agent, bad, "failed")


# --- outcomes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", ["succeeded", "failed", "too_late"])
def test_an_outcome_closes_the_interception_and_is_logged(tenants, ticket, agent, outcome):
    a, _b = tenants
    item = intercept(agent, ticket)
    decided = interceptions.record_interception_outcome(agent, str(item.public_id), outcome)
    decided.refresh_from_db()
    assert decided.outcome == outcome and decided.decided_at is not None
    assert decided.decided_at >= decided.requested_at
    [row] = rows(ticket, "interception_outcome")
    assert row.ok and row.actor_user_id == a.agent.pk
    assert row.payload == {"interception_id": str(item.public_id), "outcome": outcome,
                           "tracking_number": "JD0123456789"}


@pytest.mark.parametrize("first", ["succeeded", "failed", "too_late"])
@pytest.mark.parametrize("second", ["succeeded", "failed", "too_late"])
def test_a_decided_interception_cannot_be_decided_again(ticket, agent, first, second):
    item = intercept(agent, ticket)
    interceptions.record_interception_outcome(agent, item.pk, first)
    error = refuse("ERR_LOG_401", interceptions.record_interception_outcome, agent, item.pk, second)
    assert error.data == {"reason": "decided", "outcome": first}
    item.refresh_from_db()
    assert item.outcome == first
    assert [r.error_code for r in rows(ticket, "interception_outcome")] == ["", "ERR_LOG_401"]


@pytest.mark.parametrize("outcome", ["requested", "delivered", ""])
def test_an_unknown_outcome_is_refused_and_logged(ticket, agent, outcome):
    item = intercept(agent, ticket)
    refuse("ERR_VALIDATION", interceptions.record_interception_outcome, agent, item.pk, outcome)
    item.refresh_from_db()
    assert item.outcome == "requested" and item.decided_at is None
    assert rows(ticket, "interception_outcome")[0].error_code == "ERR_VALIDATION"


def test_outcome_permissions_and_tenancy(tenants, ticket, agent):
    a, b = tenants
    item = intercept(agent, ticket)
    refuse("ERR_PERM_003", interceptions.record_interception_outcome, Performer.of(a.actor(a.viewer)), item.pk,
           "failed")
    assert rows(ticket, "interception_outcome")[0].error_code == "ERR_PERM_003"
    refuse("ERR_NOT_FOUND", interceptions.record_interception_outcome, Performer.of(b.actor(b.owner)),
           item.public_id, "failed")
    refuse("ERR_NOT_FOUND", interceptions.record_interception_outcome, Performer.of(a.actor(a.outsider)),
           item.public_id, "failed")
    assert len(rows(ticket, "interception_outcome")) == 1
    item.refresh_from_db()
    assert item.outcome == "requested"
    assert interceptions.record_interception_outcome(oplog.PLATFORM, item.pk, "succeeded").outcome == "succeeded"


def test_the_selector_is_scoped(tenants, ticket, agent):
    a, b = tenants
    item = intercept(agent, ticket)
    assert list(interceptions.interceptions_for_actor(a.actor(a.agent))) == [item]
    assert list(interceptions.interceptions_for_actor(a.actor(a.agent), ticket.public_id)) == [item]
    assert list(interceptions.interceptions_for_actor(a.actor(a.agent), ticket.pk)) == [item]
    assert list(interceptions.interceptions_for_actor(a.actor(a.agent), "nope")) == []
    assert list(interceptions.interceptions_for_actor(b.actor(b.owner))) == []
    assert list(interceptions.interceptions_for_actor(a.actor(a.outsider))) == []


# --- concurrency ---------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_requests_at_once_make_one_interception():
    from tests.conftest import make_tenant

    a = make_tenant("intercept-race", n_stores=1)
    ticket, _ = services.intake(a.stores[0], in_transit_return())
    owner = Performer.of(a.actor(a.owner))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(number):
        try:
            barrier.wait()
            interceptions.request_interception(owner, ticket.public_id, tracking_number=number)
            result = "ok"
        except AppError as exc:
            result = exc.code
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(f"JD{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["ERR_LOG_401", "ok"]
    assert Interception.objects.for_agency(a.agency).count() == 1
    assert sorted(r.error_code for r in rows(ticket, "interception_requested")) == ["", "ERR_LOG_401"]
