"""Every allowed and every forbidden transition, through the services, with their log rows."""

import pytest

from aftersales import services
from aftersales.models import AfterSalesRequest, OperationLog
from aftersales.oplog import Performer
from aftersales.states import ACTIONS, FINAL_STATES, TRANSITIONS, RequestType, State, targets
from stores.errors import AppError
from tests.conftest import platform_return

PLATFORM_TYPE = {RequestType.REFUND_ONLY: "REFUND", RequestType.RETURN_AND_REFUND: "RETURN_AND_REFUND",
                 RequestType.EXCHANGE: "REPLACEMENT", RequestType.CANCELLATION: "CANCELLATION"}


def run(action: str, ticket: AfterSalesRequest, owner: Performer):
    pid = ticket.public_id
    if action.startswith("approve:"):
        return services.approve(owner, pid, action.split(":")[1], partial_refund="5.00")
    if action.startswith("reject:"):
        reason = services.reject_reasons(ticket)[0]["name"]  # returns and cancellations have their own lists
        return services.reject(owner, pid, reason=reason, decision=action.split(":")[1])
    if action.startswith("arbitration:"):
        return services.record_arbitration(owner, pid, action.split(":")[1])
    calls = {
        "request_evidence": lambda: services.request_evidence(owner, pid, message="clearer photo please"),
        "refund": lambda: services.refund(owner, pid),
        "ship_replacement": lambda: services.ship_replacement(owner, pid, carrier="UPS",
                                                              tracking_number="1Z999AA10123456784"),
        "close": lambda: services.close(owner, pid),
        "buyer_shipped": lambda: services.buyer_shipped(pid, tracking_number="9400111899223197428490"),
        "buyer_cancelled": lambda: services.buyer_cancelled(pid),
        "buyer_responded": lambda: services.buyer_responded(pid, note="new photos"),
        "buyer_accepted_offer": lambda: services.buyer_accepted_offer(pid),
        "replacement_delivered": lambda: services.replacement_delivered(pid),
    }
    return calls[action]()


@pytest.mark.parametrize("rtype", list(RequestType), ids=str)
@pytest.mark.parametrize("state", list(State), ids=str)
def test_every_action_from_every_state(tenants, rtype, state):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    ticket, _ = services.intake(a.stores[0], platform_return(return_type=PLATFORM_TYPE[rtype]))
    for action in ACTIONS:
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(
            state=state, refunded_amount=0, partial_refund_offer="5.00", pre_arbitration_state="")
        logs_before = OperationLog.objects.filter(ticket=ticket).count()
        expected = targets(action, rtype, state)
        if expected:
            result = run(action, ticket, owner)
            assert result.state in expected, (action, state)
            row = OperationLog.objects.filter(ticket=ticket).order_by("-id").first()
            assert (row.state_before, row.state_after, row.error_code) == (state, result.state, ""), action
        else:
            with pytest.raises(AppError) as info:
                run(action, ticket, owner)
            assert info.value.status == 409, (action, state, info.value.code)
            assert info.value.code in {"ERR_STATE_001", "ERR_STATE_002"}
            ticket.refresh_from_db()
            assert ticket.state == state, action
            row = OperationLog.objects.filter(ticket=ticket).order_by("-id").first()
            assert row.error_code == info.value.code and row.state_before == row.state_after == state
        assert OperationLog.objects.filter(ticket=ticket).count() == logs_before + 1, action


def test_final_states_allow_nothing():
    for (rtype, source), allowed in TRANSITIONS.items():
        assert source not in FINAL_STATES, (rtype, source, allowed)


def test_transition_table_is_derived_from_actions():
    for action, steps in ACTIONS.items():
        for step in steps:
            for rtype in step.types:
                for source in step.sources:
                    assert step.target in TRANSITIONS[(rtype, source)], action


def test_arbitration_for_buyer_resolves_by_where_the_request_stood(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    ticket, _ = services.intake(a.stores[0], platform_return(return_type="RETURN_AND_REFUND"))
    services.reject(owner, ticket.public_id, reason="reverse_reject_request_reason_4", comment="on schedule")
    services.record_arbitration(owner, ticket.public_id, "IN_PROGRESS")
    ticket = services.record_arbitration(owner, ticket.public_id, "SUPPORT_BUYER")
    assert ticket.state == State.AWAITING_RETURN and ticket.arbitration_status == "SUPPORT_BUYER"

    other, _ = services.intake(a.stores[0], platform_return(return_type="RETURN_AND_REFUND"))
    services.approve(owner, other.public_id, "APPROVE_RETURN")
    services.buyer_shipped(other.public_id, tracking_number="9400111899223197428490")
    services.reject(owner, other.public_id, reason="reverse_reject_request_reason_3")
    services.record_arbitration(owner, other.public_id, "IN_PROGRESS")
    assert services.record_arbitration(owner, other.public_id, "SUPPORT_BUYER").state == State.REFUND_APPROVED


def test_returnless_refund_variant(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    ticket, _ = services.intake(a.stores[0], platform_return(return_type="RETURN_AND_REFUND"))
    ticket = services.approve(owner, ticket.public_id, "APPROVE_RETURN", buyer_keep_item=True)
    assert ticket.state == State.REFUND_APPROVED and ticket.can_buyer_keep_item
    assert ticket.logs.last().payload["decision"] == "DIRECT_REFUND"


def test_docs_state_machine_md_is_generated_from_the_tables():
    from pathlib import Path

    from aftersales.states import table_markdown

    docs = Path(__file__).resolve().parent.parent / "docs" / "STATE_MACHINE.md"
    assert docs.read_text() == table_markdown(), "run ./dev manage state_machine_markdown > docs/STATE_MACHINE.md"
