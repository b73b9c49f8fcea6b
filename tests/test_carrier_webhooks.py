"""Carrier webhooks (AfterShip, 17TRACK): signatures on the raw body, per-agency endpoints, replays, mapping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid

import pytest
from django.test import Client

from logistics import aggregator, selectors, services
from logistics.models import ReturnShipment, ShipmentStatus, TrackingEvent, WebhookEndpoint, WebhookReceipt
from tests.test_scan_watch import overdue
from tests.test_tracking import logs, registered

S = ShipmentStatus
NUMBER = "1Z5R89390357567127"


@pytest.fixture
def hooks(tenants):
    """Each agency's AfterShip and 17TRACK endpoint (secrets differ per agency)."""
    made = {}
    for tenant in tenants:
        slug = tenant.agency.slug
        made[slug] = {
            "aftership": WebhookEndpoint.objects.create(agency=tenant.agency, provider="aftership",
                                                        secret=f"{slug}-aftership-secret"),
            "17track": WebhookEndpoint.objects.create(agency=tenant.agency, provider="17track",
                                                      secret=f"{slug}-17track-key"),
        }
    return made


def aftership_body(number=NUMBER, *, event_id=None, tag="InTransit", subtag="InTransit_002",
                   checkpoints=None, event="tracking_update") -> dict:
    if checkpoints is None:
        checkpoints = [{"checkpoint_time": "2026-03-01T10:00:00+00:00", "tag": tag, "subtag": subtag,
                        "message": "Picked up", "location": "Los Angeles, CA"}]
    return {"ts": 1772359200, "event": event, "event_id": event_id or str(uuid.uuid4()), "is_tracking_first_tag": True,
            "msg": {"tracking_number": number, "slug": "ups", "tag": tag, "subtag": subtag,
                    "checkpoints": checkpoints}}


def seventeen_body(number=NUMBER, *, status="InTransit", sub="InTransit_PickedUp", time_utc="2026-03-01T10:00:00Z",
                   events=None, event="TRACKING_UPDATED") -> dict:
    if events is None:
        events = [{"time_iso": "2026-03-01T02:00:00-08:00", "time_utc": time_utc, "description": "Picked up",
                   "location": "Los Angeles, CA", "stage": "PickedUp", "sub_status": sub}]
    return {"event": event, "data": {"number": number, "carrier": 100002, "param": None, "tag": None, "track_info": {
        "latest_status": {"status": status, "sub_status": sub},
        "latest_event": {"time_iso": "2026-03-01T02:00:00-08:00", "time_utc": time_utc,
                         "description": "Picked up", "location": "Los Angeles, CA"},
        "tracking": {"providers": [{"provider": {"key": 100002, "name": "UPS"}, "events": events}]}}}}


def raw(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def post(provider: str, endpoint, body, *, secret: str | None = None, signature: str | None = None,
         client: Client | None = None):
    """POST like the provider does: signature over the exact bytes sent."""
    data = raw(body)
    if signature is None and secret is not None:
        signature = (aggregator.sign_aftership(secret, data) if provider == "aftership"
                     else aggregator.sign_17track(secret, data))
    header = "aftership-hmac-sha256" if provider == "aftership" else "sign"
    endpoint_id = endpoint.public_id if isinstance(endpoint, WebhookEndpoint) else endpoint
    return (client or Client()).post(f"/webhooks/{provider}/?endpoint={endpoint_id}", data=data,
                                     content_type="application/json",
                                     headers={header: signature} if signature is not None else {})


def send(provider, endpoint: WebhookEndpoint, body):
    return post(provider, endpoint, body, secret=endpoint.secret)


# --- signatures ------------------------------------------------------------------------------------------
def test_signing_schemes_match_the_reference():
    body = b'{"a":1}'
    assert aggregator.sign_aftership("s", body) == base64.b64encode(
        hmac.new(b"s", body, hashlib.sha256).digest()).decode()
    assert aggregator.sign_17track("k", body) == hashlib.sha256(b'{"a":1}/k').hexdigest()
    assert aggregator.signature_ok("17track", "k", body, aggregator.sign_17track("k", body).upper())
    assert not aggregator.signature_ok("aftership", "", body, aggregator.sign_aftership("", body))
    assert not aggregator.signature_ok("aftership", "s", body, "")


@pytest.mark.parametrize("provider", ["aftership", "17track"])
def test_a_signed_update_is_applied(tenants, hooks, provider):
    a, _b = tenants
    ticket, shipment = registered(a)
    body = aftership_body() if provider == "aftership" else seventeen_body()
    response = send(provider, hooks["alpha"][provider], body)
    assert response.status_code == 200 and response.json() == {"ok": True, "outcome": "applied"}
    shipment.refresh_from_db()
    assert shipment.status == S.IN_TRANSIT and shipment.first_scan_at is not None and shipment.scan_due_at is None
    event = TrackingEvent.objects.get(shipment=shipment)
    assert (event.source, event.message, event.location) == (provider, "Picked up", "Los Angeles, CA")
    receipt = WebhookReceipt.objects.get(provider=provider)
    assert (receipt.outcome, receipt.agency_id, receipt.tracking_number) == ("applied", a.agency.pk, NUMBER)
    assert logs(ticket, "tracking_update")[-1].payload["source"] == provider


@pytest.mark.parametrize("provider", ["aftership", "17track"])
@pytest.mark.parametrize("how", ["wrong-secret", "tampered", "missing"])
def test_a_forged_webhook_is_refused_recorded_and_changes_nothing(tenants, hooks, provider, how, caplog):
    a, _b = tenants
    ticket, shipment = registered(a)
    endpoint = hooks["alpha"][provider]
    body = raw(aftership_body() if provider == "aftership" else seventeen_body())
    if how == "wrong-secret":
        response = post(provider, endpoint, body, secret="guessed")
    elif how == "tampered":
        good = (aggregator.sign_aftership(endpoint.secret, body) if provider == "aftership"
                else aggregator.sign_17track(endpoint.secret, body))
        response = post(provider, endpoint, body.replace(b"InTransit", b"Delivered"), signature=good)
    else:
        response = post(provider, endpoint, body)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "ERR_HOOK_001" and error["message"] and "request_id" in error
    shipment.refresh_from_db()
    assert shipment.status == S.REGISTERED and not TrackingEvent.objects.exists()
    receipt = WebhookReceipt.objects.get()
    assert (receipt.outcome, receipt.event_id, receipt.agency_id) == ("forged", "", a.agency.pk)
    assert not logs(ticket, "tracking_update")
    assert any("refused" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("endpoint", ["", "not-a-uuid", str(uuid.uuid4()), "inactive", "other-provider"])
def test_unknown_or_inactive_endpoints_are_refused(tenants, hooks, endpoint):
    a, _b = tenants
    registered(a)
    own = hooks["alpha"]["aftership"]
    if endpoint == "inactive":
        WebhookEndpoint.objects.for_agency(a.agency).filter(pk=own.pk).update(is_active=False)
        endpoint = own.public_id
    elif endpoint == "other-provider":
        endpoint = hooks["alpha"]["17track"].public_id  # a 17TRACK endpoint on the AfterShip path
    response = post("aftership", endpoint, aftership_body(), secret=own.secret)
    assert response.status_code == 401 and response.json()["error"]["code"] == "ERR_HOOK_001"
    assert WebhookReceipt.objects.get().outcome == "forged"
    assert not TrackingEvent.objects.exists()


# --- replays and numbers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["aftership", "17track"])
def test_a_replay_has_no_second_effect(tenants, hooks, provider):
    a, _b = tenants
    ticket, shipment = registered(a)
    body = aftership_body() if provider == "aftership" else seventeen_body()
    first = send(provider, hooks["alpha"][provider], body)
    again = send(provider, hooks["alpha"][provider], body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["outcome"], again.json()["outcome"]) == ("applied", "duplicate")
    assert WebhookReceipt.objects.count() == 1
    assert TrackingEvent.objects.filter(shipment=shipment).count() == 1
    assert len(logs(ticket, "tracking_update")) == 1


def test_aftership_events_with_new_ids_are_applied_but_deduplicated_by_content(tenants, hooks):
    a, _b = tenants
    _t, shipment = registered(a)
    endpoint = hooks["alpha"]["aftership"]
    send("aftership", endpoint, aftership_body())
    later = aftership_body(tag="Delivered", subtag="Delivered_001", checkpoints=[
        {"checkpoint_time": "2026-03-01T10:00:00+00:00", "tag": "InTransit", "subtag": "InTransit_002",
         "message": "Picked up", "location": "Los Angeles, CA"},
        {"checkpoint_time": "2026-03-03T09:00:00+00:00", "tag": "Delivered", "subtag": "Delivered_001",
         "message": "Delivered", "location": "Warehouse"}])
    assert send("aftership", endpoint, later).json()["outcome"] == "applied"
    shipment.refresh_from_db()
    assert shipment.status == S.DELIVERED and TrackingEvent.objects.filter(shipment=shipment).count() == 2


def test_17track_event_ids_are_derived_per_endpoint(tenants, hooks):
    a, b = tenants
    _ta, mine = registered(a)
    _tb, theirs = registered(b)
    body = seventeen_body()
    assert send("17track", hooks["alpha"]["17track"], body).json()["outcome"] == "applied"
    assert send("17track", hooks["bravo"]["17track"], body).json()["outcome"] == "applied"
    ids = set(WebhookReceipt.objects.values_list("event_id", flat=True))
    assert len(ids) == 2 and all(i.startswith("17t:") for i in ids)
    for shipment in (mine, theirs):
        shipment.refresh_from_db()
        assert shipment.status == S.IN_TRANSIT
    newer = seventeen_body(status="Delivered", sub="Delivered_Other", time_utc="2026-03-02T10:00:00Z")
    assert send("17track", hooks["alpha"]["17track"], newer).json()["outcome"] == "applied"


def test_an_unknown_number_is_recorded_not_an_error(tenants, hooks):
    a, _b = tenants
    _t, shipment = registered(a)
    response = send("aftership", hooks["alpha"]["aftership"], aftership_body("1Z879E930346834440"))
    assert response.status_code == 200 and response.json()["outcome"] == "unknown_number"
    receipt = WebhookReceipt.objects.get()
    assert (receipt.outcome, receipt.tracking_number) == ("unknown_number", "1Z879E930346834440")
    shipment.refresh_from_db()
    assert shipment.status == S.REGISTERED


def test_another_agencys_endpoint_cannot_touch_this_agencys_parcel(tenants, hooks):
    a, _b = tenants
    ticket, shipment = registered(a)
    # Bravo's endpoint, correctly signed by bravo, naming alpha's number: not bravo's parcel.
    assert send("aftership", hooks["bravo"]["aftership"], aftership_body()).json()["outcome"] == "unknown_number"
    # Alpha's endpoint signed with bravo's secret: forged.
    response = post("aftership", hooks["alpha"]["aftership"], aftership_body(),
                    secret=hooks["bravo"]["aftership"].secret)
    assert response.status_code == 401
    shipment.refresh_from_db()
    assert shipment.status == S.REGISTERED and not TrackingEvent.objects.exists()
    assert not logs(ticket, "tracking_update")


def test_the_number_is_matched_as_normalised(tenants, hooks):
    a, _b = tenants
    _t, shipment = registered(a)
    assert send("aftership", hooks["alpha"]["aftership"],
                aftership_body(" 1z5r 8939 0357 5671 27")).json()["outcome"] == "applied"
    shipment.refresh_from_db()
    assert shipment.status == S.IN_TRANSIT


def test_one_parcel_for_two_requests_updates_both(tenants, hooks):
    a, _b = tenants
    _t1, first = registered(a)
    _t2, second = registered(a)
    response = send("17track", hooks["alpha"]["17track"], seventeen_body())
    assert response.json()["outcome"] == "applied"
    assert WebhookReceipt.objects.get().detail == "2 shipment(s)"
    assert set(ReturnShipment.objects.for_agency(a.agency).values_list("status", flat=True)) == {S.IN_TRANSIT}
    assert {first.pk, second.pk} == set(TrackingEvent.objects.values_list("shipment_id", flat=True))


def test_event_types_without_tracking_news_are_ignored(tenants, hooks):
    a, _b = tenants
    _t, shipment = registered(a)
    assert send("aftership", hooks["alpha"]["aftership"],
                aftership_body(event="edd_revise")).json()["outcome"] == "ignored"
    stopped = {"event": "TRACKING_STOPPED", "data": {"number": NUMBER, "carrier": 100002}}
    assert send("17track", hooks["alpha"]["17track"], stopped).json()["outcome"] == "ignored"
    shipment.refresh_from_db()
    assert shipment.status == S.REGISTERED and WebhookReceipt.objects.filter(outcome="ignored").count() == 2


def test_a_first_scan_webhook_clears_a_stalled_request(tenants, hooks):
    a, _b = tenants
    ticket, shipment = registered(a)
    overdue(shipment)
    assert services.sweep_scan_watch() == 1
    ticket.refresh_from_db()
    assert ticket.stalled_at is not None
    assert send("aftership", hooks["alpha"]["aftership"], aftership_body()).json()["outcome"] == "applied"
    ticket.refresh_from_db()
    assert ticket.stalled_at is None
    assert logs(ticket, "scan_watch_cleared")[-1].payload["source"] == "aftership"
    assert not selectors.stalled_for_actor(a.actor(a.owner)).exists()


# --- unreadable bodies and methods --------------------------------------------------------------------------
@pytest.mark.parametrize(("provider", "body"), [
    ("aftership", b"not json"), ("aftership", b"[1, 2]"), ("aftership", {"event": "tracking_update", "msg": {}}),
    ("aftership", {"event_id": "e1", "msg": {"tag": "InTransit"}}), ("aftership", b"\xff\xfe"),
    ("17track", b"{"), ("17track", {"event": "TRACKING_UPDATED", "data": {"carrier": 1}}),
    ("17track", {"event": "TRACKING_UPDATED"}),
])
def test_an_unreadable_body_is_400_and_records_nothing(tenants, hooks, provider, body):
    a, _b = tenants
    registered(a)
    response = send(provider, hooks["alpha"][provider], body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_HOOK_002"
    assert not WebhookReceipt.objects.exists() and not TrackingEvent.objects.exists()


def test_only_post_is_allowed(db):
    response = Client().get("/webhooks/aftership/")
    assert response.status_code == 405 and response.json()["error"]["code"] == "ERR_METHOD_NOT_ALLOWED"
    assert response["Allow"] == "POST"


def test_webhooks_need_no_csrf_token(tenants, hooks):
    a, _b = tenants
    registered(a)
    response = post("aftership", hooks["alpha"]["aftership"], aftership_body(),
                    secret=hooks["alpha"]["aftership"].secret, client=Client(enforce_csrf_checks=True))
    assert response.status_code == 200


# --- status mapping ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tag", "subtag", "expected"), [
    ("Pending", "Pending_001", S.REGISTERED), ("InfoReceived", "InfoReceived_001", S.INFO_RECEIVED),
    ("InTransit", "InTransit_007", S.IN_TRANSIT), ("OutForDelivery", "OutForDelivery_001", S.OUT_FOR_DELIVERY),
    ("AttemptFail", "AttemptFail_001", S.FAILED_ATTEMPT), ("Delivered", "Delivered_001", S.DELIVERED),
    ("AvailableForPickup", "AvailableForPickup_001", S.AVAILABLE_FOR_PICKUP),
    ("Exception", "Exception_001", S.EXCEPTION), ("Exception", "Exception_003", S.EXCEPTION),
    ("Exception", "Exception_010", S.RETURNED_TO_SENDER), ("Exception", "Exception_011", S.RETURNED_TO_SENDER),
    ("Expired", "Expired_001", S.EXPIRED), ("intransit", "", S.IN_TRANSIT), ("", "Delivered_003", S.DELIVERED),
    ("Teleported", "Teleported_001", S.UNKNOWN), ("", "", S.UNKNOWN),
])
def test_aftership_tags_map_onto_our_statuses(tag, subtag, expected):
    assert aggregator.status_from_aftership(tag, subtag) == expected


@pytest.mark.parametrize(("status", "sub", "expected"), [
    ("NotFound", "NotFound_Other", S.REGISTERED), ("InfoReceived", "InfoReceived", S.INFO_RECEIVED),
    ("InTransit", "InTransit_PickedUp", S.IN_TRANSIT), ("InTransit", "InTransit_CustomsProcessing", S.IN_TRANSIT),
    ("Expired", "Expired_Other", S.EXPIRED), ("AvailableForPickup", "AvailableForPickup_Other",
                                              S.AVAILABLE_FOR_PICKUP),
    ("OutForDelivery", "OutForDelivery_Other", S.OUT_FOR_DELIVERY),
    ("DeliveryFailure", "DeliveryFailure_Rejected", S.FAILED_ATTEMPT), ("Delivered", "Delivered_Other", S.DELIVERED),
    ("Exception", "Exception_Lost", S.EXCEPTION), ("Exception", "Exception_Returning", S.RETURNED_TO_SENDER),
    ("Exception", "Exception_Returned", S.RETURNED_TO_SENDER), ("", "Exception_Returned", S.RETURNED_TO_SENDER),
    ("Abducted", "Abducted_Other", S.UNKNOWN),
])
def test_17track_statuses_map_onto_our_statuses(status, sub, expected):
    assert aggregator.status_from_17track(status, sub) == expected


def test_returned_to_sender_arrives_through_a_webhook_with_its_raw_status(tenants, hooks):
    a, _b = tenants
    _t, shipment = registered(a)
    send("17track", hooks["alpha"]["17track"], seventeen_body(status="Exception", sub="Exception_Returned"))
    shipment.refresh_from_db()
    assert shipment.status == S.RETURNED_TO_SENDER
    assert TrackingEvent.objects.get(shipment=shipment).raw_status == "Exception_Returned"


def test_an_unknown_status_is_stored_as_unknown_with_the_raw_value(tenants, hooks):
    a, _b = tenants
    _t, shipment = registered(a)
    send("aftership", hooks["alpha"]["aftership"], aftership_body(tag="Teleported", subtag="Teleported_001"))
    shipment.refresh_from_db()
    event = TrackingEvent.objects.get(shipment=shipment)
    assert (shipment.status, event.status, event.raw_status) == (S.UNKNOWN, S.UNKNOWN, "Teleported_001")


def test_one_agencys_event_id_never_shadows_anothers(tenants, hooks):
    a, b = tenants
    _ta, shipment_a = registered(a)
    _tb, _shipment_b = registered(b)
    event_id = str(uuid.uuid4())
    # B's account sends an event id first (validly signed on B's endpoint); A's real event with the same id
    # must still be applied.
    assert send("aftership", hooks["bravo"]["aftership"], aftership_body(event_id=event_id)).status_code == 200
    response = send("aftership", hooks["alpha"]["aftership"], aftership_body(event_id=event_id))
    assert response.json()["outcome"] == "applied"
    shipment_a.refresh_from_db()
    assert shipment_a.first_scan_at is not None
