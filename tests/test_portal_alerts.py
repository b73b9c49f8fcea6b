"""Alerts in the portal (the header's live count, the alerts page, acknowledging) and the JSON answer a form kept
offline gets when live.js sends it: scoping to the stores granted, constant queries, exactly-once."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aftersales import alerts as alert_service
from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, Alert, OperationLog
from stores.models import IdempotencyKey
from tests.conftest import platform_return
from tests.test_portal_request import act_url, key_of, page


def ticket_in(store, n: int = 0) -> AfterSalesRequest:
    ticket, _ = aftersales_services.intake(store, platform_return(return_id=f"RA{store.pk}{n:04d}",
                                                                  order_id=f"OA{store.pk}{n:04d}"))
    return ticket


def alert(ticket, kind: str = "buyer_message", key: str = "", **fields) -> Alert:
    assert aftersales_services.raise_alert(ticket, kind, key=key, message=f"{kind} on {ticket.return_id}")
    row = Alert.objects.unscoped().get(ticket=ticket, kind=kind, key=key)
    if fields:
        Alert.objects.unscoped().filter(pk=row.pk).update(**fields)
        row.refresh_from_db()
    return row


def summary(client) -> dict:
    response = client.get("/alerts/summary.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response.json()


@pytest.fixture
def scene(tenants):
    """Agency a: alerts on store 0 (agent may see), store 2 (agent may not); agency b: one of its own."""
    a, b = tenants
    mine = [alert(ticket_in(a.stores[0], i)) for i in range(3)]
    hidden = alert(ticket_in(a.stores[2]), "stalled", key="SF123")
    alert(ticket_in(b.stores[0]), "breached", key="first_response")
    return a, b, mine, hidden


def test_the_header_count_is_scoped_to_the_stores_granted(client, scene):
    a, _b, mine, hidden = scene
    client.force_login(a.owner)
    data = summary(client)
    assert data["count"] == 4 and data["text"] == "4 unread alerts"
    assert {item["id"] for item in data["latest"]} == {str(x.public_id) for x in [*mine, hidden]}
    client.force_login(a.agent)
    data = summary(client)
    assert data["count"] == 3 and {item["id"] for item in data["latest"]} == {str(x.public_id) for x in mine}
    first = data["latest"][0]
    assert first["url"] == f"/requests/{mine[-1].ticket.public_id}/" and first["label"] == "New buyer message"
    assert first["store"] == f"{a.stores[0].name} · {a.stores[0].market.code}"
    client.force_login(a.outsider)  # member without a role: nothing
    assert summary(client)["count"] == 0


def test_read_and_resolved_alerts_are_not_counted(client, scene):
    a, _b, mine, _hidden = scene
    Alert.objects.unscoped().filter(pk=mine[0].pk).update(read_at=mine[0].created_at)
    Alert.objects.unscoped().filter(pk=mine[1].pk).update(resolved_at=mine[1].created_at)
    client.force_login(a.agent)
    data = summary(client)
    assert data["count"] == 1 and data["text"] == "1 unread alert"
    assert data["by_kind"] == {"New buyer message": 1}


def test_the_header_count_costs_the_same_queries_for_one_or_many(client, tenants):
    a, _b = tenants
    client.force_login(a.agent)
    alert(ticket_in(a.stores[0], 0))
    summary(client)  # warm the session and content types
    with CaptureQueriesContext(connection) as one:
        summary(client)
    for i in range(1, 12):
        alert(ticket_in(a.stores[i % 2], i), "breach_soon")
    with CaptureQueriesContext(connection) as many:
        data = summary(client)
    assert data["count"] == 12 and len(data["latest"]) == alert_service.LATEST
    assert len(many) == len(one) <= 6


def test_the_summary_needs_a_login_and_a_member(client, tenants):
    response = client.get("/alerts/summary.json")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_alerts_page_lists_filters_and_pages(client, tenants, monkeypatch):
    a, b, = tenants
    monkeypatch.setattr(alert_service, "PAGE_SIZE", 4)
    rows = [alert(ticket_in(a.stores[i % 2], i), "breach_soon" if i % 3 else "stalled", key=str(i)) for i in range(9)]
    foreign = alert(ticket_in(b.stores[0]), "stalled")
    client.force_login(a.agent)
    text = client.get("/alerts/").content.decode()
    assert rows[-1].ticket.return_id in text and foreign.ticket.return_id not in text
    assert "4 open alerts on this page, newest first" in text
    shown = set()
    url = "/alerts/"
    while url:
        with CaptureQueriesContext(connection) as queries:
            text = client.get(url).content.decode()
        assert len(queries) <= 8
        shown |= set(re.findall(r'name="alert" value="([^"]+)"', text))
        more = re.search(r'<a href="\?([^"]+)" rel="next">', text)
        url = f"/alerts/?{more.group(1).replace('&amp;', '&')}" if more else ""
    assert shown == {str(r.public_id) for r in rows}
    stalled = client.get("/alerts/?kind=stalled").content.decode()
    assert set(re.findall(r'name="alert" value="([^"]+)"', stalled)) == {
        str(r.public_id) for r in rows if r.kind == "stalled"}
    one_store = client.get(f"/alerts/?store={a.stores[1].public_id}").content.decode()
    assert set(re.findall(r'name="alert" value="([^"]+)"', one_store)) == {
        str(r.public_id) for r in rows if r.ticket.store_id == a.stores[1].pk}
    assert client.get("/alerts/?before=garbage&kind=nonsense").status_code == 200  # first page, every kind


def test_the_alerts_page_queries_do_not_grow_with_rows(client, tenants):
    a, _b = tenants
    client.force_login(a.owner)
    alert(ticket_in(a.stores[0], 0))
    client.get("/alerts/")
    with CaptureQueriesContext(connection) as one:
        client.get("/alerts/")
    for i in range(1, 20):
        alert(ticket_in(a.stores[i % 3], i), "stalled")
    with CaptureQueriesContext(connection) as many:
        text = client.get("/alerts/").content.decode()
    assert text.count('class="alert-row') == 20
    assert len(many) == len(one)


def test_marking_read_touches_only_what_the_user_may_see(client, scene):
    a, b, mine, hidden = scene
    foreign = Alert.objects.unscoped().get(agency=b.agency)
    client.force_login(a.agent)
    response = client.post("/alerts/read/", {"alert": [str(mine[0].public_id), str(hidden.public_id),
                                                        str(foreign.public_id), "not-a-uuid"]})
    assert response.status_code == 302 and response["Location"] == "/alerts/"
    read = set(Alert.objects.unscoped().filter(read_at__isnull=False).values_list("pk", flat=True))
    assert read == {mine[0].pk}
    assert "1 alert marked as read." in client.get("/alerts/").content.decode()
    first_read = Alert.objects.unscoped().get(pk=mine[0].pk).read_at
    client.post("/alerts/read/", {"all": "1", "next": "https://evil.example/"})
    read = Alert.objects.unscoped().filter(read_at__isnull=False)
    assert set(read.values_list("pk", flat=True)) == {m.pk for m in mine}  # not the other store's, not b's
    assert Alert.objects.unscoped().get(pk=mine[0].pk).read_at == first_read  # the first reader's time stays
    assert summary(client)["count"] == 0


def test_marking_nothing_says_so(client, scene):
    a, *_ = scene
    client.force_login(a.agent)
    response = client.post("/alerts/read/", {"next": "/alerts/?kind=stalled"}, follow=True)
    assert response.redirect_chain[-1][0] == "/alerts/?kind=stalled"
    assert "Tick the alerts to mark as read first." in response.content.decode()
    assert not Alert.objects.unscoped().filter(read_at__isnull=False).exists()


def test_the_header_badge_costs_pages_no_query(client, tenants):
    """The count is fetched by live.js: the page itself only carries the link and the endpoint."""
    a, _b = tenants
    client.force_login(a.agent)
    text = client.get("/").content.decode()
    assert 'id="alerts-link"' in text and 'data-summary="/alerts/summary.json"' in text
    assert 'id="alerts-count" class="count" hidden></span>' in text
    assert "portal/live.js" in text and 'id="offline-panel"' in text


# --- a form kept offline, sent by live.js ----------------------------------------------------------------------
REPLAY = {"HTTP_X_PORTAL_REPLAY": "1", "HTTP_ACCEPT": "application/json"}


def test_a_kept_form_is_answered_in_json_and_acts_once(client, tenants):
    a, _b = tenants
    ticket = ticket_in(a.stores[0])
    client.force_login(a.agent)
    key = key_of(page(client, ticket), "form-escalate")
    data = {"note": "sent after the network came back", "idempotency_key": key}
    first = client.post(act_url(ticket, "escalate"), data, **REPLAY)
    second = client.post(act_url(ticket, "escalate"), data, **REPLAY)
    assert first.status_code == second.status_code == 200
    assert first.json()["ok"] is True and first.json()["replayed"] is False and first.json()["message"]
    assert second.json() == {**first.json(), "replayed": True}
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="escalate").count() == 1
    assert IdempotencyKey.objects.filter(user=a.agent, key=f"portal:{key}").count() == 1


def test_a_kept_form_the_server_refuses_gets_the_code_and_hint(client, tenants):
    a, _b = tenants
    ticket = ticket_in(a.stores[0])
    client.force_login(a.agent)
    key = key_of(page(client, ticket), "form-reject")
    response = client.post(act_url(ticket, "reject"), {"reason": "nope", "idempotency_key": key}, **REPLAY)
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False and body["error"]["code"] == "ERR_REVIEW_001" and body["error"]["hint"]
    again = client.post(act_url(ticket, "reject"), {"reason": "nope", "idempotency_key": key}, **REPLAY)
    assert again.json()["error"]["code"] == "ERR_REVIEW_001" and again.json()["replayed"] is True
    assert [r.error_code for r in OperationLog.objects.filter(ticket_id=ticket.pk, action="reject")] == [
        "ERR_REVIEW_001"]


def test_a_kept_form_for_a_request_out_of_reach_is_not_found(client, tenants):
    a, b = tenants
    foreign = ticket_in(b.stores[0])
    ungranted = ticket_in(a.stores[2])
    client.force_login(a.agent)
    for ticket in (foreign, ungranted):
        response = client.post(act_url(ticket, "escalate"), {"idempotency_key": "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"},
                               **REPLAY)
        assert response.status_code == 404 and json.loads(response.content)["error"]["code"] == "ERR_NOT_FOUND"
    assert not OperationLog.objects.filter(action="escalate").exists()


def test_mark_all_marks_what_the_filtered_list_shows(client, tenants):
    a, _b = tenants
    stalled = alert(ticket_in(a.stores[0], 0), "stalled", key="SF1")
    message = alert(ticket_in(a.stores[0], 1))
    other_store = alert(ticket_in(a.stores[1], 2), "stalled", key="SF2")
    client.force_login(a.agent)
    text = client.get(f"/alerts/?store={a.stores[0].public_id}&kind=stalled").content.decode()
    assert "Mark all these alerts as read" in text
    client.post("/alerts/read/", {"all": "1", "store": str(a.stores[0].public_id), "kind": "stalled"})
    read = set(Alert.objects.unscoped().filter(read_at__isnull=False).values_list("pk", flat=True))
    assert read == {stalled.pk}
    assert {message.pk, other_store.pk}.isdisjoint(read)


def test_an_alert_with_a_code_reads_in_the_catalogue_words_with_its_hint(client, tenants):
    from stores import errors

    a, _b = tenants
    ticket = ticket_in(a.stores[0])
    aftersales_services.raise_alert(ticket, "stalled", key="SF9", error_code="ERR_LOG_301",
                                    message=str(errors.ERR_LOG_301.message))
    client.force_login(a.agent)
    text = client.get("/alerts/").content.decode()
    assert "<code>ERR_LOG_301</code>" in text and str(errors.ERR_LOG_301.hint) in html_unescape(text)
    client.cookies["django_language"] = "zh-hans"
    text = client.get("/alerts/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    from django.utils import translation

    with translation.override("zh-hans"):
        zh_message = str(errors.ERR_LOG_301.message)
    with translation.override("en"):
        assert zh_message != str(errors.ERR_LOG_301.message)
    assert zh_message in html_unescape(text)


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)
