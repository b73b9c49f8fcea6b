"""Escalation by a person (升级): POST /api/v1/aftersales/{id}/escalate/ and services.escalate."""

from __future__ import annotations

import pytest
from django.utils import timezone

from aftersales import oplog, selectors, services
from aftersales.models import AfterSalesRequest, Alert, OperationLog
from aftersales.oplog import Performer
from stores.errors import AppError
from stores.models import Market
from tests.conftest import platform_return
from tests.factories import StoreFactory

URL = "/api/v1/aftersales/"


def make(store, **overrides) -> AfterSalesRequest:
    return services.intake(store, platform_return(**overrides))[0]


def fresh(ticket) -> AfterSalesRequest:
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def escalations(ticket):
    return Alert.objects.for_agency(ticket.agency_id).filter(ticket=ticket, kind="review_failed", key="escalated")


def last_log(ticket) -> OperationLog:
    return OperationLog.objects.filter(ticket_id=ticket.pk).order_by("-id").first()


def test_escalate_raises_the_review_alert_and_logs_without_changing_state(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.agent).post(f"{URL}{ticket.public_id}/escalate/", {"note": "photos look edited"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "pending_review" == fresh(ticket).state
    assert "escalate" in body["allowed_actions"]
    alert = escalations(ticket).get()
    assert alert.message == "photos look edited" and alert.resolved_at is None
    row = last_log(ticket)
    assert (row.action, row.state_before, row.state_after, row.error_code) == (
        "escalate", "pending_review", "pending_review", "")
    assert row.actor_label == a.agent.username and row.payload["note"] == "photos look edited"
    assert row.request_id == response["X-Request-ID"]


def test_escalate_without_a_note_names_the_person(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    assert api(a.owner).post(f"{URL}{ticket.public_id}/escalate/", {}, format="json").status_code == 200
    assert a.owner.username in escalations(ticket).get().message


def test_escalating_again_keeps_one_alert_and_reopens_a_resolved_one(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = api(a.agent)
    for _ in range(2):
        assert client.post(f"{URL}{ticket.public_id}/escalate/", {}, format="json").status_code == 200
    assert escalations(ticket).count() == 1
    escalations(ticket).update(resolved_at=timezone.now())
    assert client.post(f"{URL}{ticket.public_id}/escalate/", {}, format="json").status_code == 200
    assert escalations(ticket).get().resolved_at is None
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="escalate", error_code="").count() == 3


def test_escalation_is_the_first_human_response(tenants):
    a, _b = tenants
    uk = StoreFactory(agency=a.agency, market=Market.objects.get(code="UK"), name="uk store")
    ticket = make(uk)
    assert ticket.due_kind == "first_response" and ticket.first_human_response_at is None
    services.escalate(Performer.of(a.actor(a.owner)), ticket.pk, note="check")
    after = fresh(ticket)
    assert after.first_human_response_at is not None
    assert after.due_kind != "first_response"  # that deadline no longer applies
    stamped = after.first_human_response_at
    services.escalate(Performer.of(a.actor(a.owner)), ticket.pk)
    assert fresh(ticket).first_human_response_at == stamped  # only the first counts


def test_a_system_escalation_is_not_a_human_response(tenants):
    a, _b = tenants
    uk = StoreFactory(agency=a.agency, market=Market.objects.get(code="UK"), name="uk store")
    ticket = make(uk)
    services.escalate(oplog.SYSTEM, ticket.pk, note="by a job")
    assert fresh(ticket).first_human_response_at is None
    assert escalations(ticket).count() == 1


def test_viewer_gets_a_coded_403_and_the_refusal_is_logged(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.viewer).post(f"{URL}{ticket.public_id}/escalate/", {}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "ERR_PERM_001"
    assert not escalations(ticket).exists()
    row = last_log(ticket)
    assert (row.action, row.error_code) == ("escalate", "ERR_PERM_001")


def test_other_agency_and_ungranted_store_are_404_with_nothing_written(tenants, api):
    a, b = tenants
    foreign, ungranted = make(b.stores[0]), make(a.stores[2])
    for client, ticket in [(api(a.owner), foreign), (api(a.agent), ungranted), (api(a.outsider), ungranted)]:
        before = OperationLog.objects.filter(ticket_id=ticket.pk).count()
        response = client.post(f"{URL}{ticket.public_id}/escalate/", {}, format="json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "ERR_NOT_FOUND"
        assert OperationLog.objects.filter(ticket_id=ticket.pk).count() == before
        assert not escalations(ticket).exists()


def test_a_finished_request_cannot_be_escalated(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status="RETURN_OR_REFUND_REQUEST_COMPLETE")
    response = api(a.agent).post(f"{URL}{ticket.public_id}/escalate/", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "ERR_STATE_001"
    assert not escalations(ticket).exists()
    assert last_log(ticket).error_code == "ERR_STATE_001"


def test_a_too_long_note_is_a_validation_error(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.agent).post(f"{URL}{ticket.public_id}/escalate/", {"note": "x" * 501}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_VALIDATION"
    assert not escalations(ticket).exists()


@pytest.mark.parametrize(("who", "status", "offered"), [
    ("owner", "RETURN_OR_REFUND_REQUEST_PENDING", True),
    ("agent", "RETURN_OR_REFUND_REQUEST_PENDING", True),
    ("agent", "RETURN_OR_REFUND_REQUEST_SUCCESS", True),
    ("viewer", "RETURN_OR_REFUND_REQUEST_PENDING", False),
    ("agent", "RETURN_OR_REFUND_REQUEST_COMPLETE", False),
])
def test_allowed_actions_offer_escalate_when_the_caller_may(tenants, api, who, status, offered):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=status)
    actions = api(getattr(a, who)).get(f"{URL}{ticket.public_id}/").json()["allowed_actions"]
    assert ("escalate" in actions) is offered
    assert ("escalate" in selectors.allowed_actions(a.actor(getattr(a, who)), fresh(ticket))) is offered


def test_service_refusal_raises_the_coded_error(tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    with pytest.raises(AppError) as exc:
        services.escalate(Performer.of(a.actor(a.viewer)), ticket.pk)
    assert exc.value.code == "ERR_PERM_001"


def test_the_schema_documents_escalate(db, tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    assert "/api/v1/aftersales/{ticket_id}/escalate/:" in target.read_text()
