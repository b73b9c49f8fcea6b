"""Idempotency-Key on the money-moving writes (refund, approve, bulk): replay, mismatch, scope, expiry, races."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from aftersales import services
from aftersales.models import AfterSalesRequest, OperationLog
from stores import services as store_services
from stores.api import idempotency
from stores.models import IdempotencyKey
from tests.conftest import platform_return

URL = "/api/v1/aftersales/"
APPROVED = "RETURN_OR_REFUND_REQUEST_SUCCESS"


def make(store, **overrides) -> AfterSalesRequest:
    return services.intake(store, platform_return(**overrides))[0]


def refunds(ticket) -> int:
    return OperationLog.objects.filter(ticket_id=ticket.pk, action="refund", error_code="").count()


def refunded(ticket) -> str:
    return str(AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).refunded_amount)


def refund(client, ticket, body=None, key="key-1", **extra):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(f"{URL}{ticket.public_id}/refund/", body or {}, format="json", **headers, **extra)


# --- replay and mismatch ---------------------------------------------------------------------------------
def test_same_key_same_body_replays_the_first_response(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    first = refund(client, ticket, {"amount": "10.00"})
    assert first.status_code == 200, first.content
    assert "Idempotent-Replayed" not in first
    again = refund(client, ticket, {"amount": "10.00"})
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content and again["Content-Type"] == first["Content-Type"]
    assert refunds(ticket) == 1 and refunded(ticket) == "10.00"


def test_key_order_and_spacing_of_the_body_do_not_matter(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    url = f"{URL}{ticket.public_id}/refund/"
    first = client.post(url, '{"amount": {"amount": "5.00", "currency": "USD"}}', content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="k")
    again = client.post(url, '{"amount":{"currency":"USD","amount":"5.00"}}', content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true" and refunds(ticket) == 1


def test_same_key_different_body_is_a_coded_409_and_nothing_runs(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    assert refund(client, ticket, {"amount": "10.00"}).status_code == 200
    response = refund(client, ticket, {"amount": "11.00"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ERR_IDEMPOTENCY_MISMATCH"
    assert refunds(ticket) == 1 and refunded(ticket) == "10.00"


def test_same_key_on_another_endpoint_or_ticket_is_a_mismatch(tenants, api):
    a, _b = tenants
    pending, approved = make(a.stores[0]), make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    assert client.post(f"{URL}{pending.public_id}/approve/", {}, format="json",
                       HTTP_IDEMPOTENCY_KEY="shared").status_code == 200
    response = refund(client, approved, key="shared")
    assert response.status_code == 409 and response.json()["error"]["code"] == "ERR_IDEMPOTENCY_MISMATCH"
    assert refunds(approved) == 0


def test_without_a_key_nothing_changes(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    assert refund(client, ticket, key=None).status_code == 200
    second = refund(client, ticket, key=None)
    assert second.status_code == 409 and second.json()["error"]["code"] == "ERR_STATE_001"
    assert not IdempotencyKey.objects.exists()


# --- scope: per user -------------------------------------------------------------------------------------
def test_keys_are_scoped_per_user(tenants, api):
    a, _b = tenants
    mine, theirs = make(a.stores[0], return_status=APPROVED), make(a.stores[0], return_status=APPROVED)
    assert refund(api(a.agent), mine, key="same").status_code == 200
    response = refund(api(a.owner), theirs, key="same")  # another user's identical key: independent
    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    assert refunds(mine) == refunds(theirs) == 1
    assert IdempotencyKey.objects.filter(key="same").count() == 2


def test_two_tokens_of_one_user_share_the_key_space(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    assert refund(api(a.agent), ticket).status_code == 200
    again = refund(api(a.agent), ticket)  # api() makes a new token each time
    assert again["Idempotent-Replayed"] == "true" and refunds(ticket) == 1


# --- key format ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "tab\there", "naïve"])
def test_a_malformed_key_is_a_coded_400_and_nothing_runs(tenants, api, key):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    response = refund(api(a.agent), ticket, key=key)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "ERR_IDEMPOTENCY_KEY_INVALID"
    assert refunds(ticket) == 0 and not IdempotencyKey.objects.exists()


@pytest.mark.parametrize("key", ["a", "a" * 255, "~!#$%&'*+-.^_`|0123456789", "550e8400-e29b-41d4-a716-446655440000"])
def test_well_formed_keys_are_accepted(tenants, api, key):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    assert refund(api(a.agent), ticket, key=key).status_code == 200
    assert IdempotencyKey.objects.get().key == key


# --- what is stored ----------------------------------------------------------------------------------------
def test_a_refusal_is_stored_and_replayed(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])  # pending review: refund is not possible yet
    client = api(a.agent)
    first = refund(client, ticket, key="early")
    assert first.status_code == 409 and first.json()["error"]["code"] == "ERR_STATE_001"
    AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(state="refund_approved")
    again = refund(client, ticket, key="early")
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true"
    assert again.content == first.content  # the original request id included
    assert refunds(ticket) == 0
    assert refund(client, ticket, key="fresh").status_code == 200  # a new attempt takes a new key


def test_a_validation_error_is_stored_too(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    first = refund(client, ticket, {"amount": True})
    assert first.status_code == 400 and first.json()["error"]["code"] == "ERR_VALIDATION"
    assert refund(client, ticket, {"amount": True})["Idempotent-Replayed"] == "true"


def test_malformed_json_stores_nothing(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    response = api(a.agent).post(f"{URL}{ticket.public_id}/refund/", "{nope", content_type="application/json",
                                 HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_VALIDATION_PARSE"
    assert not IdempotencyKey.objects.exists()


def test_a_5xx_rolls_back_the_effect_and_leaves_the_key_free(tenants, api, monkeypatch):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    real = services.refund

    def refund_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("the process fell over after the refund")

    monkeypatch.setattr(services, "refund", refund_then_crash)
    crashed = refund(client, ticket)
    assert crashed.status_code == 500 and crashed.json()["error"]["code"] == "ERR_INTERNAL"
    assert refunds(ticket) == 0 and refunded(ticket) == "0.00"  # rolled back with the key
    assert not IdempotencyKey.objects.exists()
    monkeypatch.setattr(services, "refund", real)
    retry = refund(client, ticket)
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry
    assert refunds(ticket) == 1


def test_the_stored_row(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    response = refund(api(a.agent), ticket, {"amount": "1.00"}, key="row")
    row = IdempotencyKey.objects.get()
    assert (row.user_id, row.key, row.method, row.path) == (a.agent.pk, "row", "POST",
                                                             f"{URL}{ticket.public_id}/refund/")
    assert row.body_sha256 == idempotency.body_digest({"amount": "1.00"}) and len(row.body_sha256) == 64
    assert row.status == 200 and row.response.encode() == response.content


# --- expiry --------------------------------------------------------------------------------------------
def test_keys_expire_after_24_hours_and_are_purged_lazily(tenants, api):
    a, _b = tenants
    first, other, later = (make(a.stores[0], return_status=APPROVED) for _ in range(3))
    client = api(a.agent)
    assert refund(client, first, {"amount": "1.00"}, key="old").status_code == 200
    assert refund(client, other, {"amount": "1.00"}, key="other").status_code == 200
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(hours=24, seconds=1))
    # An expired key is new again: another ticket and body are no mismatch, and it runs.
    response = refund(client, later, {"amount": "2.00"}, key="old")
    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    assert refunded(later) == "2.00"
    # ... and every keyed request purges expired rows of anyone ("other" is gone).
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["old"]


def test_a_key_younger_than_24_hours_still_replays(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    assert refund(client, ticket, {"amount": "1.00"}).status_code == 200
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(hours=23, minutes=59))
    assert refund(client, ticket, {"amount": "1.00"})["Idempotent-Replayed"] == "true"
    assert refunded(ticket) == "1.00"


def test_purge_expired(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    for key in ("a", "b"):
        refund(api(a.agent), ticket, {"amount": "1.00"}, key=key)
    IdempotencyKey.objects.filter(key="a").update(created_at=timezone.now() - dt.timedelta(days=2))
    assert idempotency.purge_expired() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["b"]


# --- approve and bulk approve ---------------------------------------------------------------------------
@pytest.mark.parametrize("return_type", ["REFUND", "RETURN_AND_REFUND"])
def test_approve_is_idempotent(tenants, api, return_type):
    a, _b = tenants
    ticket = make(a.stores[0], return_type=return_type)
    client = api(a.agent)
    url = f"{URL}{ticket.public_id}/approve/"
    first = client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="approve-1")
    again = client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="approve-1")
    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true" and again.content == first.content
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="approve").count() == 1  # no refused second
    other = client.post(url, {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": "1.00"}, format="json",
                        HTTP_IDEMPOTENCY_KEY="approve-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "ERR_IDEMPOTENCY_MISMATCH"


def test_bulk_approve_is_idempotent(tenants, api):
    a, _b = tenants
    tickets = [make(a.stores[0]), make(a.stores[1])]
    client = api(a.agent)
    payload = {"action": "approve", "decision": "APPROVE_REFUND", "ids": [str(t.public_id) for t in tickets]}
    first = client.post(f"{URL}bulk/", payload, format="json", HTTP_IDEMPOTENCY_KEY="batch-7")
    again = client.post(f"{URL}bulk/", payload, format="json", HTTP_IDEMPOTENCY_KEY="batch-7")
    assert first.status_code == again.status_code == 200
    assert first.json()["succeeded"] == 2
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    for ticket in tickets:
        assert OperationLog.objects.filter(ticket_id=ticket.pk, action="approve").count() == 1
    mismatch = client.post(f"{URL}bulk/", {**payload, "ids": payload["ids"][:1]}, format="json",
                           HTTP_IDEMPOTENCY_KEY="batch-7")
    assert mismatch.status_code == 409 and mismatch.json()["error"]["code"] == "ERR_IDEMPOTENCY_MISMATCH"


def test_the_schema_documents_the_header(db, tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    text = target.read_text()
    assert text.count("name: Idempotency-Key") == 3  # approve, refund, bulk
    assert "ERR_IDEMPOTENCY_MISMATCH" in text and "ERR_IDEMPOTENCY_IN_PROGRESS" in text


# --- concurrency: real threads, real transactions --------------------------------------------------------
def _race_setup(slug):
    from tests.conftest import make_tenant

    a = make_tenant(slug, n_stores=1)
    ticket = make(a.stores[0], return_status=APPROVED)
    keys = [store_services.create_api_token(user=a.agent, name=f"t{i}")[1] for i in range(2)]
    return a, ticket, keys


def _client(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _in_thread(fn, out: list, lock: threading.Lock):
    def run():
        try:
            result = fn()
        finally:
            connections.close_all()
        with lock:
            out.append(result)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_duplicates_execute_once():
    _a, ticket, keys = _race_setup("idem-race")
    n = 8
    barrier = threading.Barrier(n)
    responses: list = []
    lock = threading.Lock()

    def send(i):
        def go():
            client = _client(keys[i % 2])  # both tokens of the same user
            barrier.wait()
            response = refund(client, ticket, {"amount": "3.00"}, key="race")
            return response.status_code, response.content, response.get("Idempotent-Replayed")
        return go

    threads = [_in_thread(send(i), responses, lock) for i in range(n)]
    for t in threads:
        t.join(60)
    assert len(responses) == n
    assert {status for status, _body, _r in responses} == {200}
    assert len({body for _s, body, _r in responses}) == 1  # every caller got the one result, byte for byte
    assert sorted(r for _s, _b, r in responses if r) == ["true"] * (n - 1)
    assert refunds(ticket) == 1 and refunded(ticket) == "3.00"
    assert IdempotencyKey.objects.count() == 1


def _blocking_refund(monkeypatch):
    """services.refund that, on its first call, waits until the test lets it go."""
    entered, release = threading.Event(), threading.Event()
    real = services.refund

    def slow(*args, **kwargs):
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "refund", slow)
    return entered, release


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_concurrent_duplicate_waits_for_the_first_and_replays_it(monkeypatch):
    _a, ticket, keys = _race_setup("idem-wait")
    entered, release = _blocking_refund(monkeypatch)
    out: list = []
    lock = threading.Lock()

    def call():
        response = refund(_client(keys[0]), ticket, key="wait")
        return response.status_code, response.content, response.get("Idempotent-Replayed")

    first = _in_thread(call, out, lock)
    assert entered.wait(10)
    second = _in_thread(call, out, lock)
    time.sleep(0.5)
    assert second.is_alive() and not out  # the duplicate is waiting on the first's key, not executing
    release.set()
    first.join(30)
    second.join(30)
    assert [r[2] for r in out] == [None, "true"]
    assert out[0][1] == out[1][1] and out[0][0] == out[1][0] == 200
    assert refunds(ticket) == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_duplicate_waiting_too_long_gets_in_progress(monkeypatch, settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.3
    _a, ticket, keys = _race_setup("idem-busy")
    entered, release = _blocking_refund(monkeypatch)
    out: list = []
    lock = threading.Lock()
    first = _in_thread(lambda: refund(_client(keys[0]), ticket, key="busy").status_code, out, lock)
    try:
        assert entered.wait(10)
        busy = refund(_client(keys[1]), ticket, key="busy")
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "ERR_IDEMPOTENCY_IN_PROGRESS"
        assert busy["Retry-After"] == "1"
    finally:
        release.set()
        first.join(30)
        connections.close_all()
    assert out == [200]
    later = refund(_client(keys[1]), ticket, key="busy")
    assert later.status_code == 200 and later["Idempotent-Replayed"] == "true"
    assert refunds(ticket) == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_waiting_duplicate_executes_when_the_first_fails_with_a_5xx(monkeypatch):
    _a, ticket, keys = _race_setup("idem-5xx")
    entered, release = threading.Event(), threading.Event()
    real = services.refund

    def first_crashes(*args, **kwargs):
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
            real(*args, **kwargs)
            raise RuntimeError("crash after the refund")
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "refund", first_crashes)
    out: list = []
    lock = threading.Lock()

    def call():
        response = refund(_client(keys[0]), ticket, key="crash")
        return response.status_code, response.get("Idempotent-Replayed")

    first = _in_thread(call, out, lock)
    assert entered.wait(10)
    second = _in_thread(call, out, lock)
    time.sleep(0.3)
    release.set()
    first.join(30)
    second.join(30)
    assert sorted(out, key=lambda r: r[0]) == [(200, None), (500, None)]
    assert refunds(ticket) == 1 and refunded(ticket) == "25.00"
