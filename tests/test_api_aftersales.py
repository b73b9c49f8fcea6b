"""/api/v1/aftersales/…: the queue, one request, its log, the actions and batch review, over HTTP.

Every write test also asks the tenancy questions: another agency's request and an ungranted store's request
are 404 with nothing written, a visible store without the permission is a coded 403.
"""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from aftersales import evidence, oplog, services
from aftersales.models import AfterSalesRequest, OperationLog
from aftersales.oplog import Performer
from logistics.models import Carrier, Interception, ReturnShipment
from stores.errors import AppError
from stores.services import actor_for_user
from tests.conftest import platform_return

URL = "/api/v1/aftersales/"
SHIPPED_REASON = "ecom_order_shipped_refund_reason_not_arrive_on_time"
REASON = "reverse_reject_request_reason_1"
PENDING = "RETURN_OR_REFUND_REQUEST_PENDING"
APPROVED = "RETURN_OR_REFUND_REQUEST_SUCCESS"
COMPLETE = "RETURN_OR_REFUND_REQUEST_COMPLETE"
AWAITING_BUYER = "AWAITING_BUYER_RESPONSE"


def make(store, **overrides) -> AfterSalesRequest:
    ticket, _created = services.intake(store, platform_return(**overrides))
    return ticket


def rows(ticket) -> int:
    return OperationLog.objects.filter(ticket_id=ticket.pk).count()


def state(ticket) -> str:
    return AfterSalesRequest.objects.unscoped().values_list("state", flat=True).get(pk=ticket.pk)


def update(ticket, **fields) -> None:
    AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)


def png(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def walk(client, url) -> list[str]:
    seen: list[str] = []
    while url:
        page = client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    return seen


# --- the list ------------------------------------------------------------------------------------------
def test_unauthenticated_is_401(tenants, api):
    response = api().get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "ERR_AUTH_001"


@pytest.mark.parametrize(("who", "visible"), [("owner", {0, 1, 2}), ("agent", {0, 1}), ("viewer", {0, 1, 2}),
                                               ("outsider", set())])
def test_list_is_scoped_to_the_callers_stores(tenants, api, who, visible):
    a, b = tenants
    mine = [make(store) for store in a.stores]
    make(b.stores[0])
    got = set(ids(api(getattr(a, who)).get(URL)))
    assert got == {str(mine[i].public_id) for i in visible}


def test_list_row_shape(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], refund_amount={"currency": "GBP", "refund_total": "12.5"})
    row = api(a.owner).get(URL).json()["results"][0]
    assert row["id"] == str(ticket.public_id)
    assert re.fullmatch(r"[0-9a-f-]{36}", row["store"]["id"])
    assert row["store"]["market"]["code"] == a.stores[0].market.code
    assert row["type"] == "refund_only" and row["status"] == "pending_review"
    assert row["refund_total"] == {"amount": "12.50", "currency": "GBP"}
    assert row["refunded"] == {"amount": "0.00", "currency": "GBP"}
    assert row["buyer"] == {"id": "buyer-1", "name": "Alex Buyer"}
    deadline = row["deadline"]
    assert set(deadline) == {"due_at", "due_kind", "breached_at", "seconds_left"}
    assert deadline["due_at"].endswith("+00:00")
    assert dt.datetime.fromisoformat(deadline["due_at"]) == ticket.due_at
    assert 0 < deadline["seconds_left"] <= 48 * 3600
    assert row["created_at"].endswith("+00:00")
    assert row["tracking_number"] is None and row["assigned_to"] is None
    assert "pk" not in row and not any(isinstance(v, int) and k == "id" for k, v in row.items())


def test_filter_store_market_type_status(tenants, api):
    a, _b = tenants
    refund = make(a.stores[0])
    ret = make(a.stores[1], return_type="RETURN_AND_REFUND")
    swap = make(a.stores[2], return_type="REPLACEMENT", return_status="REPLACEMENT_REQUEST_PENDING")
    approved = make(a.stores[0], return_status=APPROVED)
    client = api(a.owner)
    assert set(ids(client.get(f"{URL}?store={a.stores[0].public_id}"))) == {str(refund.public_id),
                                                                           str(approved.public_id)}
    code = a.stores[1].market.code
    assert ids(client.get(f"{URL}?market={code.lower()}")) == [str(ret.public_id)]
    assert ids(client.get(f"{URL}?type=exchange")) == [str(swap.public_id)]
    assert set(ids(client.get(f"{URL}?type=exchange,return_and_refund"))) == {str(swap.public_id), str(ret.public_id)}
    assert ids(client.get(f"{URL}?status=refund_approved")) == [str(approved.public_id)]
    assert len(ids(client.get(f"{URL}?status=pending_review,refund_approved"))) == 4


def test_filter_due_before_breached_stalled(tenants, api):
    a, _b = tenants
    soon, later, breached, stalled = (make(a.stores[0]) for _ in range(4))
    now = timezone.now()
    update(soon, due_at=now + dt.timedelta(hours=1))
    update(later, due_at=now + dt.timedelta(days=3))
    update(breached, due_at=None, breached_at=now)
    update(stalled, due_at=None, stalled_at=now)
    client = api(a.owner)
    cutoff = (now + dt.timedelta(hours=2)).isoformat()
    assert ids(client.get(URL, {"due_before": cutoff})) == [str(soon.public_id)]
    assert ids(client.get(URL, {"breached": "true"})) == [str(breached.public_id)]
    assert str(breached.public_id) not in ids(client.get(URL, {"breached": "false"}))
    assert ids(client.get(URL, {"stalled": "true"})) == [str(stalled.public_id)]
    assert len(ids(client.get(URL, {"stalled": "false"}))) == 3


def test_filter_assigned_to(tenants, api):
    a, _b = tenants
    mine, theirs, nobody = (make(a.stores[0]) for _ in range(3))
    update(mine, assignee=a.agent)
    update(theirs, assignee=a.owner)
    client = api(a.agent)
    assert ids(client.get(URL, {"assigned_to": "me"})) == [str(mine.public_id)]
    assert ids(client.get(URL, {"assigned_to": "none"})) == [str(nobody.public_id)]
    assert ids(client.get(URL, {"assigned_to": a.owner.username})) == [str(theirs.public_id)]
    row = client.get(URL, {"assigned_to": "me"}).json()["results"][0]
    assert row["assigned_to"] == a.agent.username


def test_filter_q(tenants, api):
    a, b = tenants
    target = make(a.stores[0], buyer_name="Zoë Quinn", buyer_user_id="buyer-zq")
    parcel = make(a.stores[0], return_type="RETURN_AND_REFUND")
    other = make(a.stores[1])
    make(b.stores[0], order_id=target.order_id)  # the same order id in another tenant never shows
    ReturnShipment.objects.create(agency=a.agency, ticket=parcel, carrier=Carrier.objects.get(code="other"),
                                  tracking_number="1Z999AA10123456784", format_check="unverified",
                                  registered_at=timezone.now())
    client = api(a.owner)
    assert ids(client.get(URL, {"q": target.order_id})) == [str(target.public_id)]
    assert ids(client.get(URL, {"q": target.return_id})) == [str(target.public_id)]
    assert ids(client.get(URL, {"q": "zoë"})) == [str(target.public_id)]
    assert ids(client.get(URL, {"q": "buyer-zq"})) == [str(target.public_id)]
    assert ids(client.get(URL, {"q": "1z999aa1 0123456784"})) == [str(parcel.public_id)]
    row = client.get(URL, {"q": "1Z999AA10123456784"}).json()["results"][0]
    assert row["tracking_number"] == "1Z999AA10123456784"
    assert str(other.public_id) not in ids(client.get(URL, {"q": target.order_id}))


@pytest.mark.parametrize("query", ["status=bogus", "type=refund", "store=not-a-uuid", "ordering=id",
                                   "breached=maybe", "due_before=tomorrow", "cursor=garbage"])
def test_bad_filter_values_are_coded_400(tenants, api, query):
    a, _b = tenants
    make(a.stores[0])
    response = api(a.owner).get(f"{URL}?{query}")
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "ERR_VALIDATION"
    assert query.split("=")[0] in body["fields"]


def _queue(a, n=7):
    """Requests with deadlines at distinct and equal times plus some without one."""
    now = timezone.now().replace(microsecond=0)
    tickets = [make(a.stores[i % 2]) for i in range(n)]
    dues = [now + dt.timedelta(hours=h) for h in (5, 1, 3, 3, 3)] + [None] * (n - 5)
    for ticket, due in zip(tickets, dues, strict=True):
        update(ticket, due_at=due)
    return AfterSalesRequest.objects.unscoped().filter(pk__in=[t.pk for t in tickets])


def test_default_ordering_is_soonest_deadline_first_nulls_last(tenants, api):
    a, _b = tenants
    queue = _queue(a)
    expected = [str(t.public_id) for t in sorted(
        queue, key=lambda t: (t.due_at is None, t.due_at or timezone.now(), t.pk))]
    assert ids(api(a.owner).get(URL)) == expected


@pytest.mark.parametrize("ordering", ["due_at", "-due_at", "created_at", "-created_at", "-updated_at"])
def test_cursor_pages_walk_every_request_once_in_order(tenants, api, ordering):
    a, _b = tenants
    queue = list(_queue(a, n=9))
    client = api(a.owner)
    full = ids(client.get(URL, {"ordering": ordering, "page_size": 200}))
    assert len(full) == 9
    if ordering.lstrip("-") == "due_at":
        desc = ordering.startswith("-")
        dated = sorted((t for t in queue if t.due_at), key=lambda t: (t.due_at, t.pk), reverse=desc)
        undated = sorted((t for t in queue if not t.due_at), key=lambda t: t.pk, reverse=desc)
        assert full == [str(t.public_id) for t in dated + undated]
    for size in (1, 2, 4):
        forward = walk(client, f"{URL}?ordering={ordering}&page_size={size}")
        assert forward == full
        # and back again from the last page through "previous"
        url, pages = f"{URL}?ordering={ordering}&page_size={size}", []
        while url:
            page = client.get(url).json()
            pages.append(page)
            url = page["next"]
        assert pages[0]["previous"] is None
        backward: list[str] = []
        url = pages[-1]["previous"]
        while url:
            page = client.get(url).json()
            backward = [r["id"] for r in page["results"]] + backward
            url = page["previous"]
        assert backward + [r["id"] for r in pages[-1]["results"]] == full


def test_a_cursor_of_another_ordering_is_refused(tenants, api):
    a, _b = tenants
    _queue(a)
    client = api(a.owner)
    nxt = client.get(f"{URL}?page_size=2").json()["next"]
    response = client.get(nxt.replace("page_size=2", "page_size=2&ordering=-created_at"))
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["fields"]


def test_page_size_is_capped_at_200(tenants, api):
    a, _b = tenants
    _queue(a)
    assert api(a.owner).get(f"{URL}?page_size=5000").status_code == 200


def _busy_queue(tenant, n=12):
    """Requests with everything the list shows: shipments, assignees, evidence, breaches, logs."""
    carrier = Carrier.objects.get(code="other")
    for i in range(n):
        ticket = make(tenant.stores[i % 2], return_type="RETURN_AND_REFUND")
        ReturnShipment.objects.create(agency=tenant.agency, ticket=ticket, carrier=carrier,
                                      tracking_number=f"TRK{i:06d}", format_check="unverified",
                                      registered_at=timezone.now())
        update(ticket, assignee=tenant.agent if i % 2 else None, breached_at=timezone.now() if i % 3 else None,
               tags=["vip"])
        evidence.add_buyer_evidence(ticket.pk, videos=[{"url": f"https://video.example.com/{i}.mp4"}])


@pytest.mark.parametrize("who", ["owner", "agent"])
def test_list_query_count_is_constant(tenants, api, who):
    a, _b = tenants
    _busy_queue(a)
    client = api(getattr(a, who))
    client.get(URL)  # warm up: the token's last_used_at is written at most once a minute
    counts: dict[str, int] = {}
    for query in ("", "&breached=true&stalled=false&q=TRK000001&assigned_to=me&status=pending_review"):
        for size in (1, 100):
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(f"{URL}?page_size={size}{query}")
            assert response.status_code == 200
            if not query:
                assert len(response.json()["results"]) == min(size, 12)
            counts[f"{size}{query}"] = len(ctx.captured_queries)
    # token, membership, (a sub-account's granted store ids,) one page (store, market, assignee and shipment
    # joined) — and one more where a page runs past the last request with a deadline into those without (two
    # index ranges)
    grants = 0 if who == "owner" else 1
    assert counts["1"] == 3 + grants, counts
    assert max(counts.values()) == 4 + grants, counts
    assert max(counts.values()) <= 8, [q["sql"] for q in ctx.captured_queries]


# --- one request ---------------------------------------------------------------------------------------
def test_detail_shape(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND",
                  refund_amount={"currency": "USD", "refund_total": "25.00", "refund_subtotal": "22.00",
                                 "refund_shipping_fee": "3.00", "refund_tax": "0"})
    evidence.add_buyer_evidence(ticket.pk, images=[("front.png", png())],
                                videos=[{"url": "https://video.example.com/unboxing.mp4"}])
    ReturnShipment.objects.create(agency=a.agency, ticket=ticket, carrier=Carrier.objects.get(code="other"),
                                  tracking_number="RT123", format_check="unverified", registered_at=timezone.now())
    body = api(a.owner).get(f"{URL}{ticket.public_id}/").json()
    assert body["id"] == str(ticket.public_id)
    assert body["items"][0]["product_name"] == "Cotton T-shirt"
    assert body["items"][0]["refund_amount"] == {"amount": "22.00", "currency": "USD"}
    assert body["amounts"]["refund_shipping_fee"] == {"amount": "3.00", "currency": "USD"}
    assert body["amounts"]["refundable"] == {"amount": "25.00", "currency": "USD"}
    assert body["amounts"]["partial_refund_offer"] is None
    assert body["fees"]["commission_returned"]["currency"] == "USD"
    assert body["fees"]["commission_is_estimate"] is True
    kinds = {e["kind"]: e for e in body["evidence"]}
    assert kinds["video"]["url"] == "https://video.example.com/unboxing.mp4"
    assert kinds["image"]["url"].endswith(f"/files/evidence/{kinds['image']['id']}/")
    assert kinds["image"]["role"] == "buyer"
    assert body["shipment"]["tracking_number"] == "RT123"
    assert body["shipment"]["carrier"]["code"] == "other"
    assert body["reject_reasons"][0]["name"].startswith("reverse_reject_request_reason")
    assert body["deadline"]["due_kind"]
    assert "approve:APPROVE_RETURN" in body["allowed_actions"]


def test_detail_evidence_url_downloads_through_the_portal(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    evidence.add_buyer_evidence(ticket.pk, images=[("front.png", png())])
    client = api(a.owner, token=False)
    url = client.get(f"{URL}{ticket.public_id}/").json()["evidence"][0]["url"]
    download = client.get(url)
    assert download.status_code == 200
    assert download["Content-Type"] == "image/png"


@pytest.mark.parametrize(("who", "expected"), [
    ("owner", ["approve:APPROVE_REFUND", "approve:OFFER_PARTIAL_REFUND", "reject:REJECT_REFUND", "request_evidence",
               "escalate"]),
    ("agent", ["approve:APPROVE_REFUND", "approve:OFFER_PARTIAL_REFUND", "reject:REJECT_REFUND", "request_evidence",
               "escalate"]),
    ("viewer", []),
])
def test_detail_allowed_actions_per_role(tenants, api, who, expected):
    a, _b = tenants
    ticket = make(a.stores[0])
    body = api(getattr(a, who)).get(f"{URL}{ticket.public_id}/").json()
    assert sorted(body["allowed_actions"]) == sorted(expected)


def test_allowed_actions_follow_the_state(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    assert api(a.agent).get(f"{URL}{ticket.public_id}/").json()["allowed_actions"] == ["refund", "escalate"]


def test_detail_query_count(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    evidence.add_buyer_evidence(ticket.pk, videos=[{"url": "https://video.example.com/1.mp4"}] * 3)
    client = api(a.agent)
    client.get(f"{URL}{ticket.public_id}/")
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(f"{URL}{ticket.public_id}/").status_code == 200
    assert len(ctx.captured_queries) <= 9, [q["sql"] for q in ctx.captured_queries]


@pytest.mark.parametrize("path", ["", "logs/"])
def test_foreign_ungranted_and_missing_requests_are_404(tenants, api, path):
    a, b = tenants
    foreign = make(b.stores[0])
    ungranted = make(a.stores[2])
    for client, ticket_id in [(api(a.owner), foreign.public_id), (api(a.agent), ungranted.public_id),
                              (api(a.outsider), ungranted.public_id),
                              (api(a.owner), "00000000-0000-0000-0000-000000000000"),
                              (api(a.owner), "12")]:
        response = client.get(f"{URL}{ticket_id}/{path}")
        assert response.status_code == 404, (ticket_id, response.content)
        assert response.json()["error"]["code"] == "ERR_NOT_FOUND"


# --- the log -------------------------------------------------------------------------------------------
def test_logs_oldest_first_and_paginated(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    owner = Performer.of(actor_for_user(a.owner))
    services.request_evidence(owner, ticket.pk, message="photo please")
    services.buyer_responded(ticket.pk, note="here")
    with pytest.raises(AppError):
        services.reject(owner, ticket.pk, reason="nope")  # refused: logged with its code
    client = api(a.agent)
    body = client.get(f"{URL}{ticket.public_id}/logs/").json()
    actions = [r["action"] for r in body["results"]]
    assert actions[:4] == ["intake", "request_evidence", "buyer_responded", "reject"]
    refusal = body["results"][3]
    assert refusal["ok"] is False and refusal["error_code"] == "ERR_REVIEW_001"
    assert body["results"][1]["actor_kind"] == "owner" and body["results"][1]["actor"] == a.owner.username
    assert body["results"][0]["created_at"].endswith("+00:00")
    assert walk(client, f"{URL}{ticket.public_id}/logs/?page_size=1") == [r["id"] for r in body["results"]]


def test_logs_bad_cursor_is_coded_400(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.agent).get(f"{URL}{ticket.public_id}/logs/?cursor=garbage")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERR_VALIDATION"


def test_logs_query_count_is_constant(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    for i in range(12):
        with pytest.raises(AppError):
            services.buyer_responded(ticket.pk, note=str(i))  # refused (wrong state): one row each
    client = api(a.agent)
    client.get(f"{URL}{ticket.public_id}/logs/")
    counts = []
    for size in (1, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"{URL}{ticket.public_id}/logs/?page_size={size}").status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]


# --- actions -------------------------------------------------------------------------------------------
def _replacement_approved(store):
    ticket = make(store, return_type="REPLACEMENT", return_status="REPLACEMENT_REQUEST_PENDING")
    services.approve(oplog.SYSTEM, ticket.pk, "APPROVE_REPLACEMENT")
    return ticket


# action → (make a request it applies to, body, expected state after, make one in a wrong state, error code)
STATE_ACTIONS = {
    "approve": (lambda s: make(s), {}, "refund_approved", lambda s: make(s, return_status=APPROVED), "ERR_STATE_001"),
    "reject": (lambda s: make(s), {"reason": REASON, "comment": "used"}, "rejected",
               lambda s: make(s, return_status=COMPLETE), "ERR_STATE_001"),
    "refund": (lambda s: make(s, return_status=APPROVED), {}, "completed", lambda s: make(s), "ERR_STATE_001"),
    "request-evidence": (lambda s: make(s), {"message": "a photo of the label"}, "awaiting_buyer",
                         lambda s: make(s, return_status=APPROVED), "ERR_STATE_001"),
    "close": (lambda s: make(s, return_status=AWAITING_BUYER), {"comment": "done"}, "closed", lambda s: make(s),
              "ERR_STATE_001"),
    "ship-replacement": (_replacement_approved, {"carrier": "other", "tracking_number": "sx 123"},
                         "replacement_shipped", lambda s: make(s), "ERR_STATE_002"),
}


@pytest.mark.parametrize("action", list(STATE_ACTIONS))
def test_state_action_happy_path_returns_the_ticket(tenants, api, action):
    a, _b = tenants
    setup, body, after, _wrong, _code = STATE_ACTIONS[action]
    ticket = setup(a.stores[0])
    before_rows = rows(ticket)
    response = api(a.agent).post(f"{URL}{ticket.public_id}/{action}/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == after == state(ticket)
    assert "allowed_actions" in response.json()
    last = OperationLog.objects.filter(ticket_id=ticket.pk).order_by("-id").first()
    assert rows(ticket) == before_rows + 1 and last.error_code == "" and last.actor_label == a.agent.username
    assert last.request_id == response["X-Request-ID"]


@pytest.mark.parametrize("action", list(STATE_ACTIONS))
def test_state_action_in_the_wrong_state_is_409(tenants, api, action):
    a, _b = tenants
    _setup, body, _after, wrong, code = STATE_ACTIONS[action]
    ticket = wrong(a.stores[0])
    before = state(ticket)
    response = api(a.agent).post(f"{URL}{ticket.public_id}/{action}/", body, format="json")
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == code
    assert state(ticket) == before
    assert OperationLog.objects.filter(ticket_id=ticket.pk).order_by("-id").first().error_code == code


# Every write: action → (make a request it applies to, body (JSON or multipart), permission error of a viewer)
def _upload():
    return {"file": SimpleUploadedFile("p.png", png(), content_type="image/png"), "note": "box"}


WRITES = {
    **{name: (spec[0], lambda spec=spec: spec[1], "ERR_PERM_001") for name, spec in STATE_ACTIONS.items()},
    "evidence": (lambda s: make(s), _upload, "ERR_PERM_001"),
    "reply": (lambda s: make(s), lambda: {"text": "We are on it."}, "ERR_PERM_001"),
    "tracking": (lambda s: make(s, return_type="RETURN_AND_REFUND"),
                 lambda: {"carrier": "other", "tracking_number": "AB 123 456"}, "ERR_PERM_003"),
    "intercept": (lambda s: make(s, return_reason=SHIPPED_REASON), lambda: {"tracking_number": "OUT123"},
                  "ERR_PERM_003"),
}


def _post(client, ticket_id, action, body):
    fmt = "multipart" if action == "evidence" else "json"
    return client.post(f"{URL}{ticket_id}/{action}/", body, format=fmt)


@pytest.mark.parametrize("action", list(WRITES))
def test_viewer_gets_a_coded_403_and_nothing_changes(tenants, api, action):
    a, _b = tenants
    setup, body, code = WRITES[action]
    ticket = setup(a.stores[0])
    before = state(ticket)
    response = _post(api(a.viewer), ticket.public_id, action, body())
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["hint"]
    assert state(ticket) == before
    # the refusal itself is on the record, with its code
    assert OperationLog.objects.filter(ticket_id=ticket.pk).order_by("-id").first().error_code == code


@pytest.mark.parametrize("action", list(WRITES))
def test_other_agency_and_ungranted_store_get_404_and_nothing_is_written(tenants, api, action):
    a, b = tenants
    setup, body, _code = WRITES[action]
    foreign = setup(b.stores[0])
    ungranted = setup(a.stores[2])  # the agent holds no role there
    for client, ticket in [(api(a.owner), foreign), (api(a.agent), ungranted), (api(a.outsider), ungranted)]:
        before_rows, before = rows(ticket), state(ticket)
        response = _post(client, ticket.public_id, action, body())
        assert response.status_code == 404, (action, response.content)
        assert response.json()["error"]["code"] == "ERR_NOT_FOUND"
        assert rows(ticket) == before_rows and state(ticket) == before


def test_approve_with_an_explicit_decision_and_a_partial_offer(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.agent).post(f"{URL}{ticket.public_id}/approve/",
                                 {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": {"amount": "5.00",
                                                                                         "currency": "USD"}},
                                 format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "awaiting_buyer"
    assert body["amounts"]["partial_refund_offer"] == {"amount": "5.00", "currency": "USD"}


def test_approve_default_decision_follows_type_and_state(tenants, api):
    a, _b = tenants
    ret = make(a.stores[0], return_type="RETURN_AND_REFUND")
    swap = make(a.stores[0], return_type="REPLACEMENT", return_status="REPLACEMENT_REQUEST_PENDING")
    client = api(a.owner)
    assert client.post(f"{URL}{ret.public_id}/approve/", {}, format="json").json()["status"] == "awaiting_return"
    assert client.post(f"{URL}{swap.public_id}/approve/", {}, format="json").json()["status"] == "replacement_approved"
    services.buyer_shipped(ret.pk)
    assert client.post(f"{URL}{ret.public_id}/approve/", {}, format="json").json()["status"] == "refund_approved"


def test_approve_decision_of_another_type_is_409(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.agent).post(f"{URL}{ticket.public_id}/approve/", {"decision": "APPROVE_REPLACEMENT"},
                                 format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ERR_STATE_002"


def test_reject_with_an_unknown_reason_is_coded(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.agent).post(f"{URL}{ticket.public_id}/reject/", {"reason": "because"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERR_REVIEW_001"
    missing = api(a.agent).post(f"{URL}{ticket.public_id}/reject/", {}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {"reason": [missing.json()["error"]["fields"]["reason"][0]]}


def test_partial_refund(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    client = api(a.agent)
    response = client.post(f"{URL}{ticket.public_id}/refund/", {"amount": "10.00"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["amounts"]["refunded"] == {"amount": "10.00", "currency": "USD"}
    log = OperationLog.objects.filter(ticket_id=ticket.pk, action="refund").get()
    assert log.payload["partial"] is True


@pytest.mark.parametrize(("amount", "code"), [("99.00", "ERR_REFUND_001"), ("-1", "ERR_REFUND_002"),
                                              ({"amount": "1.00", "currency": "GBP"}, "ERR_REFUND_002"),
                                              ("1.001", "ERR_REFUND_002")])
def test_refund_amount_errors_are_coded(tenants, api, amount, code):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    response = api(a.agent).post(f"{URL}{ticket.public_id}/refund/", {"amount": amount}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert state(ticket) == "refund_approved"


@pytest.mark.parametrize("amount", [True, ["1.00"], {"amount": None}, {"amount": "1.00", "currency": 3}])
def test_refund_amount_of_the_wrong_shape_is_a_validation_error(tenants, api, amount):
    a, _b = tenants
    ticket = make(a.stores[0], return_status=APPROVED)
    response = api(a.agent).post(f"{URL}{ticket.public_id}/refund/", {"amount": amount}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ERR_VALIDATION" and "amount" in error["fields"]


def test_refund_needs_the_refund_permission(tenants, api):
    from stores import services as store_services

    a, _b = tenants
    clerk_role = a.roles["logistics-clerk"]
    store_services.set_role_permissions(actor=None, role=clerk_role,
                                        permissions=["view_store", "handle_aftersales"])
    store_services.assign_role(actor=None, membership=a.membership(a.outsider), role=clerk_role,
                               stores=[a.stores[0]])
    ticket = make(a.stores[0], return_status=APPROVED)
    response = api(a.outsider).post(f"{URL}{ticket.public_id}/refund/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ERR_PERM_002"


def test_evidence_upload(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = _post(api(a.agent), ticket.public_id, "evidence", _upload())
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["role"] == "seller" and body["kind"] == "image" and body["content_type"] == "image/png"
    assert body["note"] == "box" and body["url"].endswith(f"/files/evidence/{body['id']}/")
    detail = api(a.agent).get(f"{URL}{ticket.public_id}/").json()
    assert body["id"] in {e["id"] for e in detail["evidence"]}
    # seller evidence can back a rejection
    reject = api(a.agent).post(f"{URL}{ticket.public_id}/reject/", {"reason": REASON, "images": [body["id"]]},
                               format="json")
    assert reject.status_code == 200, reject.content


def test_evidence_upload_refuses_what_is_not_an_image(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    fake = SimpleUploadedFile("p.png", b"%PDF-1.4 not an image", content_type="image/png")
    response = _post(api(a.agent), ticket.public_id, "evidence", {"file": fake})
    assert response.status_code in (400, 415)
    assert response.json()["error"]["code"].startswith("ERR_EVID_")
    as_json = api(a.agent).post(f"{URL}{ticket.public_id}/evidence/", {"note": "x"}, format="json")
    assert as_json.status_code == 415
    assert as_json.json()["error"]["code"] == "ERR_UNSUPPORTED_MEDIA_TYPE"


def test_reply_with_text_quick_reply_and_sensitive_words(tenants, api):
    from aftersales import replies

    a, _b = tenants
    ticket = make(a.stores[0])
    client = api(a.agent)
    ok = client.post(f"{URL}{ticket.public_id}/reply/", {"text": "Refund is on its way."}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json() == {"text": "Refund is on its way.", "sensitive_words": []}
    quick = replies.create_quick_reply(actor_for_user(a.owner), title="Hi", body="Hello {buyer_name}, order {order_id}")
    rendered = client.post(f"{URL}{ticket.public_id}/reply/", {"reply_id": str(quick.public_id)}, format="json")
    assert rendered.json()["text"] == f"Hello Alex Buyer, order {ticket.order_id}"
    refused = client.post(f"{URL}{ticket.public_id}/reply/", {"text": "加我微信 for a discount"}, format="json")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "ERR_REPLY_001"
    assert "微信" in error["fields"]["text"]
    both = client.post(f"{URL}{ticket.public_id}/reply/", {"text": "x", "reply_id": str(quick.public_id)},
                       format="json")
    assert both.status_code == 400 and both.json()["error"]["code"] == "ERR_VALIDATION"


def test_tracking_registers_the_return_parcel(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND")
    response = _post(api(a.agent), ticket.public_id, "tracking", {"carrier": "other", "tracking_number": "ab 123 456"})
    assert response.status_code == 200, response.content
    assert response.json()["tracking_number"] == "AB123456"
    assert response.json()["carrier"]["code"] == "other"
    assert api(a.agent).get(f"{URL}{ticket.public_id}/").json()["shipment"]["tracking_number"] == "AB123456"


@pytest.mark.parametrize(("return_type", "body", "status", "code"), [
    ("REFUND", {"carrier": "other", "tracking_number": "AB123"}, 409, "ERR_LOG_208"),
    ("RETURN_AND_REFUND", {"carrier": "no-such-carrier", "tracking_number": "AB123"}, 400, "ERR_LOG_205"),
    ("RETURN_AND_REFUND", {"carrier": "other"}, 400, "ERR_VALIDATION"),
])
def test_tracking_errors_are_coded(tenants, api, return_type, body, status, code):
    a, _b = tenants
    ticket = make(a.stores[0], return_type=return_type)
    response = _post(api(a.agent), ticket.public_id, "tracking", body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_intercept_opens_one_interception(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_reason=SHIPPED_REASON)
    client = api(a.agent)
    response = _post(client, ticket.public_id, "intercept", {"tracking_number": "out 123", "note": "stop it"})
    assert response.status_code == 201, response.content
    assert response.json()["outcome"] == "requested" and response.json()["tracking_number"] == "OUT123"
    again = _post(client, ticket.public_id, "intercept", {"tracking_number": "OUT123"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "ERR_LOG_401"
    assert Interception.objects.for_agency(a.agency).filter(ticket=ticket).count() == 1


def test_intercept_a_delivered_parcel_is_409(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])  # the default reason says the order was delivered
    response = _post(api(a.agent), ticket.public_id, "intercept", {"tracking_number": "OUT123"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ERR_LOG_401"


def test_malformed_json_is_coded(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.agent).post(f"{URL}{ticket.public_id}/approve/", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERR_VALIDATION_PARSE"


# --- batch review --------------------------------------------------------------------------------------
def test_bulk_partial_failures_do_not_roll_back_the_others(tenants, api):
    a, b = tenants
    good = [make(a.stores[0]), make(a.stores[1])]
    wrong_state = make(a.stores[0], return_status=APPROVED)
    ungranted = make(a.stores[2])
    foreign = make(b.stores[0])
    payload = {"action": "approve", "decision": "APPROVE_REFUND",
               "ids": [str(good[0].public_id), str(wrong_state.public_id), str(ungranted.public_id),
                       str(foreign.public_id), "not-an-id", str(good[1].public_id), str(good[0].public_id)]}
    foreign_rows, ungranted_rows = rows(foreign), rows(ungranted)
    response = api(a.agent).post(f"{URL}bulk/", payload, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    results = {r["id"]: r for r in body["results"]}
    assert len(body["results"]) == 6  # the duplicate acted once
    assert body["succeeded"] == 2 and body["failed"] == 4
    for ticket in good:
        assert results[str(ticket.public_id)] == {"id": str(ticket.public_id), "ok": True, "error": None}
        assert state(ticket) == "refund_approved"
    assert results[str(wrong_state.public_id)]["error"]["code"] == "ERR_STATE_001"
    for bad in (str(ungranted.public_id), str(foreign.public_id), "not-an-id"):
        assert results[bad]["ok"] is False and results[bad]["error"]["code"] == "ERR_NOT_FOUND"
    assert rows(foreign) == foreign_rows and rows(ungranted) == ungranted_rows


def test_bulk_reject_and_request_evidence(tenants, api):
    a, _b = tenants
    t1, t2 = make(a.stores[0]), make(a.stores[0])
    client = api(a.agent)
    r1 = client.post(f"{URL}bulk/", {"action": "reject", "ids": [str(t1.public_id)], "reason": REASON}, format="json")
    r2 = client.post(f"{URL}bulk/", {"action": "request-evidence", "ids": [str(t2.public_id)]}, format="json")
    assert r1.json()["results"][0]["ok"] and r2.json()["results"][0]["ok"]
    assert (state(t1), state(t2)) == ("rejected", "awaiting_buyer")


def test_bulk_viewer_gets_per_item_403_codes(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = api(a.viewer).post(f"{URL}bulk/", {"action": "close", "ids": [str(ticket.public_id)]}, format="json")
    assert response.status_code == 200
    assert response.json()["results"][0]["error"]["code"] == "ERR_PERM_001"


@pytest.mark.parametrize(("payload", "status", "code"), [
    ({"action": "refund", "ids": ["x"]}, 400, "ERR_BULK_002"),
    ({"action": "close", "ids": [f"id-{i}" for i in range(1001)]}, 413, "ERR_BULK_001"),
    ({"action": "approve", "ids": ["x"]}, 400, "ERR_VALIDATION"),
    ({"action": "close", "ids": []}, 400, "ERR_VALIDATION"),
    ({"action": "close"}, 400, "ERR_VALIDATION"),
])
def test_bulk_refusals_are_coded(tenants, api, payload, status, code):
    a, _b = tenants
    response = api(a.agent).post(f"{URL}bulk/", payload, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


# --- browser sessions, the schema ----------------------------------------------------------------------
def test_session_post_without_csrf_token_is_refused(tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(a.agent)
    before = rows(ticket)
    assert client.get(f"{URL}{ticket.public_id}/").status_code == 200  # reads need no token
    for path, body in [(f"{ticket.public_id}/approve/", {}), ("bulk/", {"action": "close",
                                                                         "ids": [str(ticket.public_id)]})]:
        response = client.post(f"{URL}{path}", body, format="json")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "ERR_AUTH_005"
    assert rows(ticket) == before and state(ticket) == "pending_review"


def test_session_post_with_csrf_token_works(tenants):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    a, _b = tenants
    ticket = make(a.stores[0])
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(a.agent)
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    response = client.post(f"{URL}{ticket.public_id}/request-evidence/", {}, format="json",
                           HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret))
    assert response.status_code == 200, response.content


def test_schema_lists_every_endpoint_without_warnings(db, tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    text = target.read_text()
    for path in ["/api/v1/aftersales/:", "/api/v1/aftersales/{ticket_id}/:", "/api/v1/aftersales/{ticket_id}/logs/:",
                 "/api/v1/aftersales/bulk/:"] + [f"/api/v1/aftersales/{{ticket_id}}/{a}/:" for a in WRITES]:
        assert path in text, path
    assert "ERR_STATE_001" in text and "ERR_PERM_003" in text
