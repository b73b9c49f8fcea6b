"""TikTok Shop webhooks: signature on the raw body, one row per notification (also under a race), tenant
isolation of shop ids, limits, and the task that re-fetches what a delivery names (dispatch only: the sync's
own calls are replaced here; end-to-end runs against the emulator live with the sync's tests)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import threading
import uuid

import pytest
from django.db import connections
from django.test import Client, RequestFactory
from django.urls import reverse

from aftersales.tiktok import sync, webhooks
from aftersales.tiktok.client import TikTokError
from aftersales.tiktok.crypto import Secret
from aftersales.tiktok.models import PartnerApp, SellerAuthorization, StoreLink, WebhookDelivery
from aftersales.tiktok.webhook_views import receive as receive_view
from stores import errors
from stores.errors import AppError
from tests.emulators.tiktok import TikTokEmulator

Delivery = WebhookDelivery.objects.unscoped


# --- fixtures and helpers ----------------------------------------------------------------------------------
class Connected:
    """One agency's partner app, its seller authorisation and the store linked through it."""

    def __init__(self, tenant):
        slug = tenant.agency.slug
        self.tenant = tenant
        self.app_key, self.app_secret = f"{slug}-app-key", f"{slug}-app-secret"
        self.app = PartnerApp.objects.create(agency=tenant.agency, name=f"{slug} app", app_key=self.app_key,
                                             app_secret=self.app_secret)
        self.authorization = SellerAuthorization.objects.create(
            agency=tenant.agency, app=self.app, open_id=f"{slug}-seller", access_token="access", refresh_token="r")
        self.store = tenant.stores[0]
        self.link = StoreLink.objects.create(agency=tenant.agency, store=self.store, authorization=self.authorization)

    @property
    def shop_id(self) -> str:
        return self.store.shop_id


@pytest.fixture
def connected(tenants):
    return {t.agency.slug: Connected(t) for t in tenants}


@pytest.fixture
def queued(monkeypatch):
    """process_webhook.delay, recorded instead of sent to the broker."""
    calls: list[int] = []
    lock = threading.Lock()

    def delay(delivery_id):
        with lock:
            calls.append(delivery_id)

    monkeypatch.setattr(webhooks.process_webhook, "delay", delay)
    return calls


@pytest.fixture
def synced(monkeypatch):
    """The sync's two entry points, recorded (the platform is never called from these tests)."""
    calls: list[tuple] = []

    def refresh_objects(store_id, kind, ids, *, trigger):
        calls.append(("refresh", store_id, kind, list(ids), trigger))
        return {"updated": 1}

    def request_sync(store_id, *, trigger):
        calls.append(("sync", store_id, trigger))

    monkeypatch.setattr(sync, "refresh_objects", refresh_objects)
    monkeypatch.setattr(sync, "request_sync", request_sync)
    return calls


def signature(app_key: str, app_secret: str, body: bytes) -> str:
    """The platform's signature, from the emulator's own implementation of §2.4 (not the product's)."""
    return TikTokEmulator(app_key=app_key, app_secret=app_secret).webhook_signature(body)


def notification(shop_id: str, *, kind: int = 12, notification_id: str | None = "7340000000000000001",
                 data: dict | None = None, timestamp: int = 1772359200, **extra) -> dict:
    body = {"type": kind, "shop_id": shop_id, "timestamp": timestamp,
            "data": data if data is not None else {
                "order_id": "576684019603311365", "return_id": "4035309823432233180", "return_role": "BUYER",
                "return_type": "REFUND", "return_status": "RETURN_OR_REFUND_REQUEST_PENDING",
                "create_time": 1772359100, "update_time": 1772359150}}
    if notification_id is not None:
        body["tts_notification_id"] = notification_id
    body.update(extra)
    return body


def raw(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()


def url(app) -> str:
    return reverse("tiktok:tiktok_webhook", kwargs={"app_id": getattr(app, "public_id", app)})


def post(app, body, *, sign_with: tuple[str, str] | None = None, authorization: str | None = None,
         client: Client | None = None):
    """POST like the platform does: the signature is over the exact bytes sent."""
    data = raw(body)
    if authorization is None and sign_with is not None:
        authorization = signature(*sign_with, data)
    headers = {"Authorization": authorization} if authorization is not None else {}
    return (client or Client()).post(url(app), data=data, content_type="application/json", headers=headers)


def send(c: Connected, body, **kwargs):
    return post(c.app, body, sign_with=(c.app_key, c.app_secret), **kwargs)


def error_code(response) -> str:
    return response.json()["error"]["code"]


# --- a genuine delivery ------------------------------------------------------------------------------------
def test_a_signed_return_update_is_recorded_and_queued_after_commit(
        connected, queued, synced, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]
    body = notification(alpha.shop_id)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = send(alpha, body)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "outcome": "received"}
    delivery = Delivery().get()
    assert (delivery.agency_id, delivery.app_id, delivery.store_id) == (alpha.tenant.agency.pk, alpha.app.pk,
                                                                        alpha.store.pk)
    assert (delivery.notification_id, delivery.type, delivery.shop_id) == ("7340000000000000001", 12, alpha.shop_id)
    assert (delivery.outcome, delivery.processed_at) == ("received", None)
    assert delivery.payload == body
    assert len(callbacks) == 1 and queued == [delivery.pk]
    assert synced == []  # nothing is fetched in the request: the task does it


def test_the_signature_is_the_reference_scheme(connected):
    """§2.4 written out once more: lowercase hex HMAC-SHA256(key = app secret, message = app key + raw body);
    an upper-case hex digest is the same signature."""
    alpha = connected["alpha"]
    data = raw(notification(alpha.shop_id))
    by_hand = hmac.new(alpha.app_secret.encode(), alpha.app_key.encode() + data, hashlib.sha256).hexdigest()
    assert signature(alpha.app_key, alpha.app_secret, data) == by_hand
    response = post(alpha.app, data, authorization=by_hand.upper())
    assert response.status_code == 200 and response.json()["outcome"] == "received"


def test_the_emulators_webhook_body_is_received(connected, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]
    emulator = TikTokEmulator(app_key=alpha.app_key, app_secret=alpha.app_secret)
    body = emulator.webhook_body(11, alpha.shop_id, {"order_id": "576684019603311365", "cancel_id": "C1",
                                                     "cancellations_role": "BUYER",
                                                     "cancel_status": "CANCELLATION_REQUEST_PENDING",
                                                     "update_time": 1772359150})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(alpha.app, body, authorization=emulator.webhook_signature(body))
    assert response.json() == {"ok": True, "outcome": "received"} and len(callbacks) == 1
    delivery = Delivery().get()
    assert (delivery.type, delivery.notification_id) == (11, json.loads(body)["tts_notification_id"])


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_emulator_delivers_over_http(connected, queued, live_server):
    """The platform's side for real: the emulator POSTs to the running server; a forged one is refused."""
    alpha = connected["alpha"]
    emulator = TikTokEmulator(app_key=alpha.app_key, app_secret=alpha.app_secret)
    endpoint = live_server.url + url(alpha.app)
    data = {"order_id": "576684019603311365", "return_id": "R1", "return_status": "AWAITING_BUYER_SHIP",
            "update_time": 1772359150}
    status, answer = emulator.emit_webhook(endpoint, 12, alpha.shop_id, data, notification_id="n-http")
    assert (status, json.loads(answer)) == (200, {"ok": True, "outcome": "received"})
    status, answer = emulator.emit_webhook(endpoint, 12, alpha.shop_id, data, notification_id="n-http")
    assert (status, json.loads(answer)) == (200, {"ok": True, "outcome": "duplicate"})
    status, answer = emulator.emit_webhook(endpoint, 12, alpha.shop_id, data, notification_id="n-forged",
                                           signature="0" * 64)
    assert status == 401 and json.loads(answer)["error"]["code"] == "ERR_HOOK_001"
    assert list(Delivery().values_list("notification_id", flat=True)) == ["n-http"]
    assert queued == [Delivery().get().pk]


@pytest.mark.parametrize("kind", [11, 12, 64, 65, 67])
def test_every_after_sales_type_of_a_linked_store_is_received(connected, kind, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = send(alpha, notification(alpha.shop_id, kind=kind))
    assert response.json() == {"ok": True, "outcome": "received"}
    assert len(callbacks) == 1


@pytest.mark.parametrize("kind", [1, 2, 4, 6, 7, 13, 66])
def test_other_types_are_kept_but_ignored(connected, kind, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]
    body = notification(alpha.shop_id, kind=kind, data={"order_id": "576684019603311365",
                                                        "order_status": "AWAITING_SHIPMENT", "update_time": 1664095610})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = send(alpha, body)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    delivery = Delivery().get()
    assert (delivery.outcome, delivery.type, delivery.store_id) == ("ignored", kind, alpha.store.pk)
    assert callbacks == []


# --- forged, unknown, inactive -----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["wrong-secret", "other-agency-app", "reserialised", "tampered", "empty",
                                 "bearer", "missing", "no-app-key"])
def test_a_forged_webhook_is_refused_and_writes_nothing(connected, how, caplog, django_capture_on_commit_callbacks):
    alpha, bravo = connected["alpha"], connected["bravo"]
    body = notification(alpha.shop_id)
    data = raw(body)
    good = signature(alpha.app_key, alpha.app_secret, data)
    authorization = {
        "wrong-secret": signature(alpha.app_key, "guessed-secret", data),
        "other-agency-app": signature(bravo.app_key, bravo.app_secret, data),
        # Same JSON, other bytes (the mistake of hashing a re-encoded body): not the bytes received.
        "reserialised": signature(alpha.app_key, alpha.app_secret, json.dumps(body, indent=1).encode()),
        "tampered": good,
        "empty": "",
        "bearer": f"Bearer {good}",
        "missing": None,
        "no-app-key": hmac.new(alpha.app_secret.encode(), data, hashlib.sha256).hexdigest(),
    }[how]
    if how == "tampered":
        data = data.replace(b"RETURN_OR_REFUND_REQUEST_PENDING", b"RETURN_OR_REFUND_REQUEST_SUCCESS")
    caplog.set_level(logging.INFO, logger="aftersales.tiktok.webhooks")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(alpha.app, data, authorization=authorization)
    assert response.status_code == 401 and error_code(response) == "ERR_HOOK_001"
    assert Delivery().count() == 0 and callbacks == []
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name == "aftersales.tiktok.webhooks"]
    assert len(warnings) == 1 and str(alpha.app.public_id) in warnings[0]
    assert not any(alpha.shop_id in m or "7340000000000000001" in m or "RETURN_OR" in m for m in caplog.messages)


def test_an_unknown_app_is_refused_without_reading_the_body(connected, caplog):
    alpha = connected["alpha"]
    unknown = uuid.uuid4()
    caplog.set_level(logging.WARNING, logger="aftersales.tiktok.webhooks")
    response = post(unknown, notification(alpha.shop_id), sign_with=(alpha.app_key, alpha.app_secret))
    assert response.status_code == 401 and error_code(response) == "ERR_HOOK_001"
    assert Delivery().count() == 0
    ours = [r.getMessage() for r in caplog.records if r.name == "aftersales.tiktok.webhooks"]
    assert len(ours) == 1 and str(unknown) in ours[0]
    assert not any(alpha.shop_id in m for m in caplog.messages)


def test_an_inactive_app_is_refused(connected):
    alpha = connected["alpha"]
    PartnerApp.objects.unscoped().filter(pk=alpha.app.pk).update(is_active=False)
    response = send(alpha, notification(alpha.shop_id))
    assert response.status_code == 401 and error_code(response) == "ERR_HOOK_001"
    assert Delivery().count() == 0


def test_an_app_without_a_secret_accepts_nothing(connected):
    """HMAC under the empty key is computable by anyone: an app whose secret is not set must refuse all."""
    alpha = connected["alpha"]
    app = PartnerApp.objects.create(agency=alpha.tenant.agency, name="no secret", app_key="bare-key", app_secret="")
    response = post(app, notification(alpha.shop_id), sign_with=("bare-key", ""))
    assert response.status_code == 401 and error_code(response) == "ERR_HOOK_001"
    assert Delivery().count() == 0


def test_an_app_secret_that_cannot_be_decrypted_is_a_server_error_not_an_acceptance(connected, caplog):
    alpha = connected["alpha"]
    PartnerApp.objects.unscoped().filter(pk=alpha.app.pk).update(app_secret=Secret(ciphertext="not-a-fernet-token"))
    response = send(alpha, notification(alpha.shop_id))
    assert response.status_code == 500 and error_code(response) == "ERR_TTS_005"
    assert Delivery().count() == 0
    assert any("cannot be decrypted" in m for m in caplog.messages)


@pytest.mark.parametrize("app_id", ["not-a-uuid", "", "1"])
def test_the_service_treats_a_malformed_app_id_as_unknown(connected, app_id):
    alpha = connected["alpha"]
    data = raw(notification(alpha.shop_id))
    with pytest.raises(AppError) as info:
        webhooks.receive(app_id, authorization=signature(alpha.app_key, alpha.app_secret, data), body=data)
    assert info.value.error is errors.ERR_HOOK_001


# --- replays and races -------------------------------------------------------------------------------------
def test_a_replay_answers_duplicate_with_no_second_effect(connected, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = send(alpha, notification(alpha.shop_id))
        again = send(alpha, notification(alpha.shop_id))
        # A redelivery with a new envelope timestamp is still the same notification.
        later = send(alpha, notification(alpha.shop_id, timestamp=1772362800))
    assert [r.status_code for r in (first, again, later)] == [200, 200, 200]
    assert [r.json()["outcome"] for r in (first, again, later)] == ["received", "duplicate", "duplicate"]
    assert Delivery().count() == 1 and len(callbacks) == 1


def test_notification_ids_are_per_app(connected, django_capture_on_commit_callbacks):
    """Another agency's app using the same notification id is its own delivery, not a replay of ours."""
    alpha, bravo = connected["alpha"], connected["bravo"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        a = send(alpha, notification(alpha.shop_id))
        b = send(bravo, notification(bravo.shop_id))
    assert [a.json()["outcome"], b.json()["outcome"]] == ["received", "received"]
    assert sorted(Delivery().values_list("agency_id", "store_id")) == sorted(
        [(alpha.tenant.agency.pk, alpha.store.pk), (bravo.tenant.agency.pk, bravo.store.pk)])
    assert len(callbacks) == 2


def test_without_a_notification_id_the_change_itself_is_the_key(connected, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]

    def change(status, timestamp=1772359200, update_time=1772359150):
        return notification(alpha.shop_id, notification_id=None, timestamp=timestamp, data={
            "order_id": "576684019603311365", "return_id": "4035309823432233180", "return_status": status,
            "update_time": update_time})

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        outcomes = [send(alpha, body).json()["outcome"] for body in (
            change("RETURN_OR_REFUND_REQUEST_PENDING"),
            change("RETURN_OR_REFUND_REQUEST_PENDING", timestamp=1772360000),  # redelivered
            change("AWAITING_BUYER_SHIP", update_time=1772359999),  # a new change of the same return
        )]
    assert outcomes == ["received", "duplicate", "received"]
    keys = list(Delivery().values_list("notification_id", flat=True))
    assert len(keys) == 2 and all(k.startswith(webhooks.DERIVED_PREFIX) and len(k) <= 128 for k in keys)
    assert len(callbacks) == 2


def test_a_platform_id_can_never_pass_for_a_derived_key(connected):
    alpha = connected["alpha"]
    derived = webhooks.derived_key(alpha.shop_id, 12, notification(alpha.shop_id)["data"])
    response = send(alpha, notification(alpha.shop_id, notification_id=derived))
    assert response.status_code == 400 and error_code(response) == "ERR_HOOK_002"
    assert Delivery().count() == 0


def test_a_numeric_notification_id_is_kept_as_text(connected):
    alpha = connected["alpha"]
    send(alpha, notification(alpha.shop_id, notification_id=None, tts_notification_id=7340000000000000002))
    assert Delivery().get().notification_id == "7340000000000000002"
    assert send(alpha, notification(alpha.shop_id, notification_id="7340000000000000002")).json()["outcome"] == (
        "duplicate")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_eight_simultaneous_deliveries_of_one_notification_make_one_row(connected, queued):
    alpha = connected["alpha"]
    body = raw(notification(alpha.shop_id))
    n = 8
    barrier = threading.Barrier(n)
    results: list = []
    lock = threading.Lock()

    def deliver():
        try:
            client = Client()
            barrier.wait()
            response = post(alpha.app, body, sign_with=(alpha.app_key, alpha.app_secret), client=client)
            result = (response.status_code, response.json().get("outcome"))
        finally:
            connections.close_all()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=deliver) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [(200, "duplicate")] * (n - 1) + [(200, "received")]
    delivery = Delivery().get()
    assert queued == [delivery.pk]


# --- whose shop --------------------------------------------------------------------------------------------
def test_another_agencys_shop_is_never_matched(connected, synced, django_capture_on_commit_callbacks):
    alpha, bravo = connected["alpha"], connected["bravo"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = send(alpha, notification(bravo.shop_id))
    assert response.status_code == 200 and response.json()["outcome"] == "unknown_shop"
    delivery = Delivery().get()
    assert (delivery.agency_id, delivery.store_id, delivery.shop_id) == (alpha.tenant.agency.pk, None, bravo.shop_id)
    assert callbacks == []
    # Even if a worker were handed it, nothing would be fetched for the other agency.
    assert webhooks.process(delivery.pk) == "unknown_shop" and synced == []


def test_an_unlinked_store_of_the_agency_is_unknown_too(connected, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = send(alpha, notification(alpha.tenant.stores[1].shop_id))
    assert response.json()["outcome"] == "unknown_shop" and Delivery().get().store_id is None
    assert callbacks == []


def test_a_shop_of_nobody_is_kept_for_the_record(connected):
    alpha = connected["alpha"]
    response = send(alpha, notification("7494726673780148744"))
    assert response.json()["outcome"] == "unknown_shop"
    assert Delivery().get().detail


# --- limits and malformed bodies ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_only_post_is_allowed(connected, method):
    response = getattr(Client(), method)(url(connected["alpha"].app))
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert error_code(response) == "ERR_METHOD_NOT_ALLOWED"


def _padded(shop_id: str, size: int) -> bytes:
    """A valid notification of exactly ``size`` bytes."""
    body = notification(shop_id, data={"return_id": "4035309823432233180", "pad": ""})
    short = len(raw(body))
    body["data"]["pad"] = "x" * (size - short)
    data = raw(body)
    assert len(data) == size
    return data


def test_a_body_over_the_limit_is_refused(connected, settings):
    settings.TTS_WEBHOOK_MAX_BYTES = 2048
    alpha = connected["alpha"]
    response = send(alpha, _padded(alpha.shop_id, 2049))
    assert response.status_code == 413 and error_code(response) == "ERR_TOO_LARGE"
    assert Delivery().count() == 0
    at_limit = send(alpha, _padded(alpha.shop_id, 2048))
    assert at_limit.status_code == 200 and at_limit.json()["outcome"] == "received"


def test_the_limit_holds_when_the_length_header_understates_the_body(connected, settings):
    settings.TTS_WEBHOOK_MAX_BYTES = 2048
    alpha = connected["alpha"]
    data = _padded(alpha.shop_id, 4096)
    request = RequestFactory().post(url(alpha.app), data=data, content_type="application/json",
                                    headers={"Authorization": signature(alpha.app_key, alpha.app_secret, data)})
    request.META["CONTENT_LENGTH"] = "100"
    request._stream = io.BytesIO(data)
    response = receive_view(request, app_id=alpha.app.public_id)
    assert response.status_code == 413 and json.loads(response.content)["error"]["code"] == "ERR_TOO_LARGE"
    assert Delivery().count() == 0


def _deep(depth: int) -> bytes:
    return (b'{"type":12,"shop_id":"s","timestamp":1,"data":{"a":' + b"[" * depth + b"]" * depth + b"}}")


MALFORMED = {
    "not-json": b"type=12&shop_id=1",
    "empty": b"",
    "array": b'[{"type":12}]',
    "string": b'"hello"',
    "not-utf8": b'{"type":12,"shop_id":"\xff\xfe","timestamp":1,"data":{}}',
    "missing-type": {"shop_id": "s", "timestamp": 1, "data": {}},
    "type-as-text": {"type": "12", "shop_id": "s", "timestamp": 1, "data": {}},
    "type-bool": {"type": True, "shop_id": "s", "timestamp": 1, "data": {}},
    "type-negative": {"type": -1, "shop_id": "s", "timestamp": 1, "data": {}},
    "type-huge": {"type": 2**40, "shop_id": "s", "timestamp": 1, "data": {}},
    "shop-id-number": {"type": 12, "shop_id": 7494726673780148744, "timestamp": 1, "data": {}},
    "shop-id-empty": {"type": 12, "shop_id": "", "timestamp": 1, "data": {}},
    "shop-id-too-long": {"type": 12, "shop_id": "7" * 65, "timestamp": 1, "data": {}},
    "shop-id-nul": {"type": 12, "shop_id": "74947\u000026", "timestamp": 1, "data": {}},
    "data-list": {"type": 12, "shop_id": "s", "timestamp": 1, "data": []},
    "data-missing": {"type": 12, "shop_id": "s", "timestamp": 1},
    "timestamp-missing": {"type": 12, "shop_id": "s", "data": {}},
    "timestamp-text": {"type": 12, "shop_id": "s", "timestamp": "1772359200", "data": {}},
    "timestamp-float": {"type": 12, "shop_id": "s", "timestamp": 1772359200.5, "data": {}},
    "notification-id-object": {"type": 12, "shop_id": "s", "timestamp": 1, "data": {}, "tts_notification_id": {}},
    "notification-id-too-long": {"type": 12, "shop_id": "s", "timestamp": 1, "data": {},
                                 "tts_notification_id": "9" * 129},
    "nul-in-data": {"type": 12, "shop_id": "s", "timestamp": 1, "data": {"return_id": "R\u00001"},
                    "tts_notification_id": "n-nul"},
    "too-deep": _deep(50_000),
    "shop-id-lone-surrogate": {"type": 12, "shop_id": "74\ud80026", "timestamp": 1, "data": {}},
    "lone-surrogate-in-data": {"type": 12, "shop_id": "s", "timestamp": 1, "data": {"return_id": "R\udc001"},
                               "tts_notification_id": "n-surrogate"},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_signed_but_unreadable_body_is_refused(connected, case, django_capture_on_commit_callbacks):
    alpha = connected["alpha"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = send(alpha, MALFORMED[case])
    assert response.status_code == 400 and error_code(response) == "ERR_HOOK_002"
    assert Delivery().count() == 0 and callbacks == []


def test_an_unsigned_unreadable_body_is_refused_as_forged_first(connected):
    """The signature is checked before the body is read: garbage without a signature is a 401, not a 400."""
    response = post(connected["alpha"].app, b"not json", authorization="0" * 64)
    assert response.status_code == 401 and error_code(response) == "ERR_HOOK_001"


# --- processing: re-fetch what the delivery names -----------------------------------------------------------
def _received(c: Connected, **kwargs) -> WebhookDelivery:
    response = send(c, notification(c.shop_id, **kwargs))
    assert response.json()["outcome"] == "received", response.json()
    return Delivery().get(notification_id=kwargs.get("notification_id", "7340000000000000001"))


@pytest.mark.parametrize(("kind", "data", "expected"), [
    (12, {"return_id": "RET1", "return_status": "AWAITING_BUYER_SHIP"}, ("refresh", "returns", ["RET1"])),
    (11, {"cancel_id": "CAN1", "cancel_status": "CANCELLATION_REQUEST_PENDING"},
     ("refresh", "cancellations", ["CAN1"])),
    (64, {"return_id": 4035309823432233180}, ("refresh", "returns", ["4035309823432233180"])),
    (65, {"return_id": "RET3", "rma_status": "X"}, ("refresh", "returns", ["RET3"])),
    (67, {"return_id": "RET4", "order_id": "ORD4"}, ("refresh", "returns", ["RET4"])),
    (64, {"cancel_id": "CAN2"}, ("refresh", "cancellations", ["CAN2"])),
    (67, {"order_id": "ORD5", "refund_status": "SUCCESS"}, ("sync",)),
    (65, {}, ("sync",)),
    (12, {"order_id": "ORD6"}, ("sync",)),
    (11, {"order_id": "ORD7", "return_id": "RET7"}, ("sync",)),
    (12, {"return_id": {"nested": 1}}, ("sync",)),
])
def test_processing_re_fetches_what_the_delivery_names(connected, synced, kind, data, expected):
    alpha = connected["alpha"]
    delivery = _received(alpha, kind=kind, data=data)
    assert webhooks.process(delivery.pk) == "processed"
    if expected[0] == "refresh":
        assert synced == [("refresh", alpha.store.pk, expected[1], expected[2], "webhook")]
    else:
        assert synced == [("sync", alpha.store.pk, "webhook")]
    delivery.refresh_from_db()
    assert delivery.outcome == "processed" and delivery.processed_at is not None and delivery.detail
    # Idempotent: a second run (a redelivered task) does nothing.
    assert webhooks.process(delivery.pk) == "processed" and len(synced) == 1


def test_the_task_is_registered_under_its_name_and_acks_late():
    from config.celery import app

    assert app.tasks["aftersales.tiktok.process_webhook"] is webhooks.process_webhook._get_current_object()
    task = webhooks.process_webhook
    assert task.acks_late is True and task.max_retries == 5
    from django.db import OperationalError

    assert OperationalError in task.autoretry_for


def test_the_task_processes_a_received_delivery(connected, synced):
    alpha = connected["alpha"]
    delivery = _received(alpha)
    webhooks.process_webhook.apply(args=[delivery.pk])
    assert synced == [("refresh", alpha.store.pk, "returns", ["4035309823432233180"], "webhook")]
    delivery.refresh_from_db()
    assert delivery.outcome == "processed"


def test_a_refused_platform_call_fails_the_delivery_with_its_code_and_is_not_retried(connected, monkeypatch):
    alpha = connected["alpha"]
    delivery = _received(alpha)
    calls = []

    def refused(*args, **kwargs):
        calls.append(args)
        raise TikTokError(errors.ERR_TTS_003, platform_code=105005, platform_message="Access denied")

    monkeypatch.setattr(sync, "refresh_objects", refused)
    result = webhooks.process_webhook.apply(args=[delivery.pk])
    assert result.get() == "failed" and len(calls) == 1
    delivery.refresh_from_db()
    assert delivery.outcome == "failed" and delivery.processed_at is not None
    assert delivery.detail.startswith("ERR_TTS_003 (platform 105005)")
    webhooks.process_webhook.apply(args=[delivery.pk])
    assert len(calls) == 1  # finished: left alone


def test_a_transient_failure_is_retried_then_processed(connected, monkeypatch):
    alpha = connected["alpha"]
    delivery = _received(alpha)
    calls = []

    def flaky(store_id, kind, ids, *, trigger):
        calls.append(ids)
        if len(calls) < 3:
            raise TikTokError(errors.ERR_TTS_002, platform_code=36009002, platform_message="Too many requests")
        return {"updated": 1}

    monkeypatch.setattr(sync, "refresh_objects", flaky)
    webhooks.process_webhook.apply(args=[delivery.pk])  # eager: Celery runs the retries at once
    assert len(calls) == 3
    delivery.refresh_from_db()
    assert delivery.outcome == "processed" and delivery.processed_at is not None


def test_a_failure_that_stays_transient_gives_up_after_five_retries(connected, monkeypatch):
    alpha = connected["alpha"]
    delivery = _received(alpha)
    calls = []

    def down(*args, **kwargs):
        calls.append(args)
        raise TikTokError(errors.ERR_TTS_004)

    monkeypatch.setattr(sync, "refresh_objects", down)
    webhooks.process_webhook.apply(args=[delivery.pk])
    assert len(calls) == 1 + webhooks.MAX_RETRIES
    delivery.refresh_from_db()
    assert delivery.outcome == "failed" and delivery.processed_at is not None
    assert delivery.detail.startswith("ERR_TTS_004") and "retrying" not in delivery.detail


def test_between_retries_the_delivery_stays_open(connected, monkeypatch):
    alpha = connected["alpha"]
    delivery = _received(alpha)
    monkeypatch.setattr(sync, "refresh_objects", lambda *a, **k: (_ for _ in ()).throw(TikTokError(errors.ERR_TTS_002)))
    with pytest.raises(TikTokError):
        webhooks.process(delivery.pk, may_retry=True)
    delivery.refresh_from_db()
    assert (delivery.outcome, delivery.processed_at) == ("failed", None) and "retrying" in delivery.detail


def test_a_delivery_whose_store_was_deleted_fails_without_a_call(connected, synced):
    alpha = connected["alpha"]
    delivery = _received(alpha)
    Delivery().filter(pk=delivery.pk).update(store=None)
    with pytest.raises(AppError):
        webhooks.process(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.outcome == "failed" and delivery.detail.startswith("ERR_TTS_006") and synced == []


def test_ignored_and_missing_deliveries_are_not_processed(connected, synced):
    alpha = connected["alpha"]
    send(alpha, notification(alpha.shop_id, kind=1, data={"order_id": "1"}))
    ignored = Delivery().get()
    assert webhooks.process(ignored.pk) == "ignored"
    assert webhooks.process(ignored.pk + 1000) == "missing"
    assert synced == []


def test_a_broker_outage_after_commit_still_answers_received(connected, monkeypatch, caplog,
                                                            django_capture_on_commit_callbacks):
    """The delivery is recorded; a 500 here would only make the platform's retry a "duplicate"."""
    alpha = connected["alpha"]

    def broker_down(delivery_id):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(webhooks.process_webhook, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = send(alpha, notification(alpha.shop_id))
    assert response.status_code == 200 and response.json()["outcome"] == "received"
    delivery = Delivery().get()
    assert (delivery.outcome, delivery.processed_at) == ("received", None)
    assert any("not queued" in m for m in caplog.messages)


def test_deliveries_left_unfinished_are_found_for_requeueing(connected):
    import datetime as dt

    from django.utils import timezone

    from aftersales.tiktok import webhooks

    alpha = connected["alpha"]
    send(alpha, notification(alpha.store.shop_id, notification_id="n-old"))
    send(alpha, notification(alpha.store.shop_id, notification_id="n-new"))
    send(alpha, notification(alpha.store.shop_id, notification_id="n-retrying"))
    rows = {d.notification_id: d for d in Delivery()}
    now = timezone.now()
    WebhookDelivery.objects.unscoped().filter(pk=rows["n-old"].pk).update(received_at=now - dt.timedelta(minutes=30))
    WebhookDelivery.objects.unscoped().filter(pk=rows["n-retrying"].pk).update(
        outcome="failed", detail="ERR_TTS_002; retrying", received_at=now - dt.timedelta(hours=2))
    assert sorted(webhooks.stale_delivery_ids()) == sorted([rows["n-old"].pk, rows["n-retrying"].pk])
