"""/api/v1/replies/, /buyers/{id}/history/, /analytics/summary/: quick replies and the sensitive-word check,
buyer history and the analytics summary over HTTP — scoped 404s with nothing written, coded 403s and 400s,
constant query counts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aftersales import replies, services
from aftersales.models import AfterSalesRequest, QuickReply
from stores.services import actor_for_user
from tests.conftest import platform_return

REPLIES = "/api/v1/replies/"
CHECK = "/api/v1/replies/check/"
SUMMARY = "/api/v1/analytics/summary/"


def make(store, **overrides) -> AfterSalesRequest:
    ticket, _created = services.intake(store, platform_return(**overrides))
    return ticket


def update(ticket, **fields) -> None:
    AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)


def code(response) -> str:
    return response.json()["error"]["code"]


def reply(tenant, store=None, title="Hello", body="Thanks for your patience, {buyer_name}."):
    return replies.create_quick_reply(actor_for_user(tenant.owner), title=title, body=body, store=store)


def count_replies(tenant) -> int:
    return QuickReply.objects.for_agency(tenant.agency).count()


# --- quick replies -------------------------------------------------------------------------------------
def test_list_shows_agency_wide_and_the_visible_stores_replies(tenants, api):
    a, b = tenants
    wide = reply(a)
    granted = reply(a, store=a.stores[0])
    reply(a, store=a.stores[2])  # the agent is not granted this store
    reply(b)
    client = api(a.agent)
    body = client.get(REPLIES).json()
    assert [r["id"] for r in body["results"]] == [str(wide.public_id)]
    assert body["results"][0]["store"] is None
    assert body["results"][0]["created_at"].endswith("+00:00")
    got = {r["id"] for r in client.get(REPLIES, {"store": str(a.stores[0].public_id)}).json()["results"]}
    assert got == {str(wide.public_id), str(granted.public_id)}
    ungranted = client.get(REPLIES, {"store": str(a.stores[2].public_id)}).json()["results"]
    assert [r["id"] for r in ungranted] == [str(wide.public_id)]
    foreign = client.get(REPLIES, {"store": str(b.stores[0].public_id)}).json()["results"]
    assert [r["id"] for r in foreign] == [str(wide.public_id)]


def test_list_bad_store_is_a_validation_error(tenants, api):
    a, _b = tenants
    response = api(a.agent).get(REPLIES, {"store": "nope"})
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert "store" in response.json()["error"]["fields"]


def test_create_update_delete(tenants, api):
    a, _b = tenants
    client = api(a.agent)
    response = client.post(REPLIES, {"title": "Label", "body": "Please send a photo of the label.",
                                     "store": str(a.stores[0].public_id)}, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["store"]["id"] == str(a.stores[0].public_id) and created["position"] == 0
    response = client.patch(f"{REPLIES}{created['id']}/", {"title": "Label photo", "position": 3}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["title"] == "Label photo" and response.json()["position"] == 3
    assert client.get(f"{REPLIES}{created['id']}/").json()["title"] == "Label photo"
    assert client.delete(f"{REPLIES}{created['id']}/").status_code == 204
    assert not QuickReply.objects.for_agency(a.agency).filter(public_id=created["id"]).exists()


def test_sensitive_words_are_refused_with_the_words(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    response = client.post(REPLIES, {"title": "t", "body": "my wechat: alex_88"}, format="json")
    assert response.status_code == 400
    assert code(response) == "ERR_REPLY_001"
    assert response.json()["error"]["fields"]["body"] == ["wechat"]
    assert count_replies(a) == 0
    existing = reply(a)
    response = client.patch(f"{REPLIES}{existing.public_id}/", {"body": "add me on wechat"}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_REPLY_001"
    existing.refresh_from_db()
    assert "wechat" not in existing.body


def test_unknown_variable_and_bad_shapes_are_coded(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    response = client.post(REPLIES, {"title": "t", "body": "Hi {nickname}"}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_REPLY_002"
    response = client.post(REPLIES, {"body": "x" * 2001}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert set(response.json()["error"]["fields"]) == {"title", "body"}
    existing = reply(a)
    response = client.patch(f"{REPLIES}{existing.public_id}/", {}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert count_replies(a) == 1


def test_permissions_are_coded_403_and_nothing_is_written(tenants, api):
    a, _b = tenants
    wide = reply(a)
    # The viewer sees the store but may not manage its replies; the agent may not manage agency-wide ones.
    response = api(a.viewer).post(REPLIES, {"title": "t", "body": "b", "store": str(a.stores[0].public_id)},
                                  format="json")
    assert response.status_code == 403 and code(response) == "ERR_PERM_004"
    response = api(a.agent).post(REPLIES, {"title": "t", "body": "b"}, format="json")
    assert response.status_code == 403 and code(response) == "ERR_PERM_004"
    response = api(a.agent).patch(f"{REPLIES}{wide.public_id}/", {"title": "mine"}, format="json")
    assert response.status_code == 403 and code(response) == "ERR_PERM_004"
    response = api(a.agent).delete(f"{REPLIES}{wide.public_id}/")
    assert response.status_code == 403 and code(response) == "ERR_PERM_004"
    assert count_replies(a) == 1
    wide.refresh_from_db()
    assert wide.title == "Hello"


def test_foreign_and_ungranted_replies_and_stores_are_404_and_nothing_is_written(tenants, api):
    a, b = tenants
    foreign = reply(b)
    ungranted = reply(a, store=a.stores[2])
    for client, reply_id in [(api(a.owner), foreign.public_id), (api(a.agent), ungranted.public_id),
                             (api(a.owner), "00000000-0000-0000-0000-000000000000")]:
        assert client.get(f"{REPLIES}{reply_id}/").status_code == 404
        response = client.patch(f"{REPLIES}{reply_id}/", {"title": "x"}, format="json")
        assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
        assert client.delete(f"{REPLIES}{reply_id}/").status_code == 404
    for client, store in [(api(a.owner), b.stores[0]), (api(a.agent), a.stores[2])]:
        response = client.post(REPLIES, {"title": "t", "body": "b", "store": str(store.public_id)}, format="json")
        assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
    assert QuickReply.objects.for_agency(b.agency).get().title == "Hello"
    assert count_replies(a) == 1 and QuickReply.objects.for_agency(a.agency).get().title == "Hello"


def test_check_reports_words_without_saving(tenants, api):
    a, b = tenants
    client = api(a.agent)
    response = client.post(CHECK, {"text": "my wechat: alex_88"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"ok": False, "words": ["wechat"], "market": None}
    response = client.post(CHECK, {"text": "Your refund is on its way", "store": str(a.stores[0].public_id)},
                           format="json")
    assert response.json() == {"ok": True, "words": [], "market": a.stores[0].market.code}
    assert client.post(CHECK, {"text": "hi", "market": "us"}, format="json").json()["market"] == "US"
    assert count_replies(a) == 0
    response = client.post(CHECK, {"text": "hi", "store": str(b.stores[0].public_id)}, format="json")
    assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
    response = client.post(CHECK, {"text": "hi", "market": "ZZ"}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    response = client.post(CHECK, {}, format="json")
    assert response.status_code == 400 and "text" in response.json()["error"]["fields"]


def test_reply_list_query_count_is_constant(tenants, api):
    a, _b = tenants
    for i in range(12):
        reply(a, store=a.stores[i % 2], title=f"r{i}")
    client = api(a.agent)
    client.get(REPLIES)
    counts = []
    for size in (1, 100):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(REPLIES, {"page_size": size, "store": str(a.stores[0].public_id)})
        assert response.status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]


def test_reply_list_pages_walk_every_reply_once(tenants, api):
    a, _b = tenants
    made = [reply(a, title=f"r{i}") for i in range(5)]
    client = api(a.owner)
    seen, url = [], f"{REPLIES}?page_size=2"
    while url:
        page = client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert seen == [str(r.public_id) for r in made]
    assert client.get(REPLIES, {"cursor": "garbage"}).status_code == 400


# --- buyer history ---------------------------------------------------------------------------------------
def test_buyer_history_counts_only_visible_stores(tenants, api):
    a, b = tenants
    refunded = make(a.stores[0], buyer_user_id="b-42", refund_amount={"currency": "USD", "refund_total": "30.00"})
    update(refunded, refunded_amount=Decimal("30.00"))
    make(a.stores[2], buyer_user_id="b-42")  # ungranted for the agent
    make(b.stores[0], buyer_user_id="b-42")  # another agency: never counted
    owner = api(a.owner).get("/api/v1/buyers/b-42/history/").json()
    assert owner["buyer_id"] == "b-42" and owner["requests_total"] == 2
    assert owner["refunds_total"] == 1
    assert owner["refunded"] == [{"amount": "30.00", "currency": "USD"}]
    assert owner["serial_returner"] is False and owner["rejection_rate"] is None
    agent = api(a.agent).get("/api/v1/buyers/b-42/history/?days=30").json()
    assert agent["requests_total"] == 1 and agent["days"] == 30
    assert api(a.outsider).get("/api/v1/buyers/b-42/history/").json()["requests_total"] == 0
    assert api(a.owner).get("/api/v1/buyers/nobody/history/").json()["requests_total"] == 0


def test_buyer_history_bad_days_is_coded(tenants, api):
    a, _b = tenants
    response = api(a.owner).get("/api/v1/buyers/b-1/history/?days=0")
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert "days" in response.json()["error"]["fields"]


def test_buyer_history_query_count(tenants, api):
    a, _b = tenants
    for i in range(6):
        make(a.stores[i % 2], buyer_user_id="b-9")
    client = api(a.agent)
    client.get("/api/v1/buyers/b-9/history/")
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/api/v1/buyers/b-9/history/").status_code == 200
    assert len(ctx.captured_queries) <= 4, [q["sql"] for q in ctx.captured_queries]


# --- analytics -------------------------------------------------------------------------------------------
def _week(tenant):
    """Four requests in the last week on store 0, one old one, and one on store 1."""
    now = timezone.now()
    store = tenant.stores[0]
    fast = make(store, buyer_user_id="x1", return_reason="size", return_reason_text="Size mismatch")
    slow = make(store, buyer_user_id="x2", return_reason="size", return_reason_text="Size mismatch")
    arbitrated = make(store, buyer_user_id="x3", return_reason="colour", return_reason_text="Colour difference")
    young = make(store, buyer_user_id="x4", return_reason="damage", return_reason_text="Damaged")
    old = make(store, buyer_user_id="x5")
    make(tenant.stores[1], buyer_user_id="x6")
    update(fast, platform_created_at=now - dt.timedelta(days=5), state="completed",
           state_changed_at=now - dt.timedelta(days=5) + dt.timedelta(hours=10), refunded_amount=Decimal("5"))
    update(slow, platform_created_at=now - dt.timedelta(days=6), state="closed",
           state_changed_at=now - dt.timedelta(days=6) + dt.timedelta(hours=100))
    update(arbitrated, platform_created_at=now - dt.timedelta(days=4), arbitration_status="IN_PROGRESS",
           state="in_arbitration", refunded_amount=Decimal("5"))
    update(young, platform_created_at=now - dt.timedelta(hours=5))
    update(old, platform_created_at=now - dt.timedelta(days=20))


def test_summary_figures(tenants, api):
    a, _b = tenants
    _week(a)
    response = api(a.owner).get(SUMMARY, {"days": 7, "store": str(a.stores[0].public_id)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["days"] == 7 and body["store_ids"] == [str(a.stores[0].public_id)]
    assert body["since"].endswith("+00:00")
    assert body["requests"] == 4
    assert body["proactive_refund_rate"] == {"pct": 25.0, "count": 1, "of": 4}  # the arbitrated one is not
    assert body["platform_intervention_rate"] == {"pct": 25.0, "count": 1, "of": 4}
    assert body["avg_handling_hours"]["hours"] == 55.0 and body["avg_handling_hours"]["finished"] == 2
    # fast (in 10 h) counts; slow (100 h) and the arbitrated one (open, 4 days old) do not; the young one waits
    assert body["completed_within_72h"]["count"] == 1 and body["completed_within_72h"]["of"] == 3
    assert body["completed_within_72h"]["benchmark_pct"] == "94.7"
    assert [r["key"] for r in body["top_reasons"]] == ["size", "colour", "damage"]
    assert body["top_reasons"][0] == {"key": "size", "text": "Size mismatch", "count": 2, "share_pct": 50.0}
    rate = body["return_rate"]
    assert rate["rate_pct"] is None and rate["orders"] is None
    assert {"category": "apparel", "max_pct": "12.4"} in rate["benchmarks"]
    assert rate["by_category"] == [{"category": "apparel", "requests": 4, "units": 4, "units_sold": None,
                                    "rate_pct": None, "benchmark_max_pct": "12.4"}]
    month = api(a.owner).get(SUMMARY, {"days": 30}).json()
    assert month["requests"] == 6 and len(month["store_ids"]) == 3


def test_summary_needs_view_analytics(tenants, api):
    a, _b = tenants
    _week(a)
    # The viewer holds view_analytics everywhere; the agent nowhere; the outsider sees no store.
    assert api(a.viewer).get(SUMMARY).json()["requests"] == 5
    response = api(a.agent).get(SUMMARY, {"store": str(a.stores[0].public_id)})
    assert response.status_code == 403 and code(response) == "ERR_PERM_005"
    response = api(a.agent).get(SUMMARY)
    assert response.status_code == 403 and code(response) == "ERR_PERM_005"
    assert api(a.outsider).get(SUMMARY).json()["requests"] == 0


def test_summary_other_agency_and_ungranted_store_are_404(tenants, api):
    a, b = tenants
    for client, store in [(api(a.owner), b.stores[0]), (api(a.agent), a.stores[2]), (api(a.outsider), a.stores[0])]:
        response = client.get(SUMMARY, {"store": str(store.public_id)})
        assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"


@pytest.mark.parametrize("query", [{"days": 14}, {"days": "week"}, {"store": "nope"}])
def test_summary_bad_parameters_are_coded(tenants, api, query):
    a, _b = tenants
    response = api(a.owner).get(SUMMARY, query)
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert set(response.json()["error"]["fields"]) == set(query)


def test_summary_query_count_does_not_grow_with_volume(tenants, api):
    a, _b = tenants
    client = api(a.viewer)
    client.get(SUMMARY)
    counts = []
    for _round in range(2):
        _week(a)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(SUMMARY, {"days": 30}).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]


def test_unauthenticated_is_401(tenants, api):
    for url in (REPLIES, SUMMARY, "/api/v1/buyers/b/history/"):
        response = api().get(url)
        assert response.status_code == 401 and code(response) == "ERR_AUTH_001"
