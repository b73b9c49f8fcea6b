from aftersales import services
from aftersales.oplog import Performer
from aftersales.states import State
from tests.conftest import platform_return


def test_intake_then_approve_and_refund(tenants):
    a, _b = tenants
    ticket, created = services.intake(a.stores[0], platform_return())
    assert created and ticket.state == State.PENDING_REVIEW
    agent = Performer.of(a.actor(a.agent))
    ticket = services.approve(agent, ticket.public_id, "APPROVE_REFUND")
    assert ticket.state == State.REFUND_APPROVED
    ticket = services.refund(agent, ticket.public_id)
    assert ticket.state == State.COMPLETED
    assert [r.action for r in ticket.logs.all()] == ["intake", "approve", "refund"]
