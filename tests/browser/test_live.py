"""The live parts of every page in a real browser: a new alert shows in the header without reloading, and an action
taken while the network is down is kept in the browser, shown pending, sent once when the network returns — and
never carried out twice, even when the browser sends it again."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, OperationLog
from tests.conftest import platform_return

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)



def store_key(user) -> str:
    return f"portal.offline.v1.{user.pk}"


def make(store, n: int = 0) -> AfterSalesRequest:
    ticket, created = aftersales_services.intake(store, platform_return(return_id=f"RL{store.pk}{n:03d}",
                                                                        order_id=f"OL{store.pk}{n:03d}"))
    assert created
    return ticket


def test_a_new_alert_shows_in_the_header_without_reloading(page, live_server, tenants, login, shot, settings):
    settings.PORTAL_ALERTS_POLL_SECONDS = 1
    a, b = tenants
    ticket = make(a.stores[0])
    login(page, live_server, a.agent)
    page.goto(f"{live_server.url}/queue/")
    badge = page.locator("#alerts-count")
    expect(page.locator("#alerts-link[data-polls]")).to_have_count(1)  # the first answer: nothing new yet
    expect(badge).to_be_hidden()
    loads = []
    page.on("load", lambda _page: loads.append(1))

    aftersales_services.raise_alert(ticket, "buyer_message", key="m1", message="Where is my refund?")
    aftersales_services.raise_alert(make(a.stores[2], 1), "breach_soon", key="x")  # a store not granted
    aftersales_services.raise_alert(make(b.stores[0], 2), "breach_soon", key="x")  # another agency
    expect(badge).to_have_text("1", timeout=10_000)
    expect(page.locator("#alerts-link")).to_have_attribute("title", "1 unread alert")
    toast = page.locator("#alerts-toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text(f"New buyer message · {ticket.return_id}")
    shot(page, "queue-with-new-alert")
    assert loads == []  # no reload happened

    page.locator("#alerts-link").click()
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    expect(page.locator("tr.alert-row")).to_have_count(1)
    expect(page.locator("tr.alert-row")).to_contain_text("Where is my refund?")
    shot(page, "alerts-page")
    page.get_by_role("button", name="Mark all open alerts as read").click()
    expect(page.locator(".messages")).to_contain_text("1 alert marked as read.")
    expect(badge).to_be_hidden(timeout=10_000)


def test_an_action_taken_offline_is_sent_once_when_the_network_returns(page, live_server, tenants, login, shot,
                                                                        context):
    a, _b = tenants
    ticket = make(a.stores[0])
    login(page, live_server, a.agent)
    page.goto(f"{live_server.url}/requests/{ticket.public_id}/")
    panel = page.locator("#offline-panel")
    expect(panel).to_be_hidden()

    context.set_offline(True)
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("You are offline.")
    page.locator("form#form-approve-APPROVE_REFUND button[type=submit]").click()
    kept = panel.locator("li.kept")
    expect(kept).to_have_count(1)
    expect(kept).to_contain_text("Waiting for the network")
    expect(kept.locator("a")).to_have_text(f"Approve refund · Request {ticket.return_id}")
    expect(page.locator("form#form-approve-APPROVE_REFUND button[type=submit]")).to_be_disabled()
    shot(page, "offline-action-pending")
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "pending_review"
    STORE = store_key(a.agent)
    stored = json.loads(page.evaluate(f"window.localStorage.getItem('{STORE}')"))
    assert len(stored) == 1 and dict(stored[0]["fields"])["idempotency_key"] == stored[0]["key"]

    context.set_offline(False)
    expect(kept).to_contain_text("Done", timeout=10_000)
    shot(page, "offline-action-done")
    ticket.refresh_from_db()
    assert ticket.state != "pending_review"
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="approve").count() == 1
    state_after = ticket.state

    # The browser sends the same kept form again (as a second tab, or a lost answer, would): carried out once.
    stored[0]["state"] = "pending"
    page.evaluate(f"window.localStorage.setItem('{STORE}', {json.dumps(json.dumps(stored))})")
    page.reload()
    expect(kept).to_have_count(1)
    expect(kept).to_contain_text("Done", timeout=10_000)
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="approve").count() == 1
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == state_after

    kept.get_by_role("button", name="Dismiss").click()
    expect(panel).to_be_hidden()
    assert json.loads(page.evaluate(f"window.localStorage.getItem('{STORE}')")) == []


def test_an_offline_action_the_server_refuses_shows_the_code(page, live_server, tenants, login, shot, context):
    a, _b = tenants
    ticket = make(a.stores[0])
    login(page, live_server, a.agent)
    page.goto(f"{live_server.url}/requests/{ticket.public_id}/")
    context.set_offline(True)
    page.locator("#form-escalate button[type=submit]").click()
    expect(page.locator("#offline-panel li.kept")).to_contain_text("Waiting for the network")
    # Meanwhile someone else closes the request: escalating it is no longer possible.
    AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(state="closed")
    context.set_offline(False)
    kept = page.locator("#offline-panel li.kept")
    expect(kept).to_contain_text("Failed", timeout=10_000)
    expect(kept).to_contain_text("ERR_STATE_001")
    shot(page, "offline-action-failed")
    assert not OperationLog.objects.filter(ticket_id=ticket.pk, action="escalate", error_code="").exists()


def test_kept_actions_belong_to_the_person_who_kept_them(page, live_server, tenants, login, context):
    """Another person's kept form is never sent with this session; signing out drops one's own kept forms."""
    a, _b = tenants
    ticket = make(a.stores[0])
    login(page, live_server, a.agent)
    page.goto(f"{live_server.url}/requests/{ticket.public_id}/")
    context.set_offline(True)
    page.locator("form#form-escalate button[type=submit]").click()
    expect(page.locator("#offline-panel li.kept")).to_have_count(1)
    kept = page.evaluate(f"window.localStorage.getItem('{store_key(a.agent)}')")
    # The same browser, someone else signed in later: the agent's kept form must not run as them.
    page.evaluate(f"window.localStorage.setItem('{store_key(a.owner)}', '[]')")
    page.evaluate(f"window.localStorage.setItem('{store_key(a.viewer)}', {json.dumps(kept)})")
    page.evaluate(f"window.localStorage.removeItem('{store_key(a.agent)}')")
    context.set_offline(False)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("form.logout button").click()
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/requests/{ticket.public_id}/")
    expect(page.locator("#offline-panel")).to_be_hidden()
    page.wait_for_timeout(500)
    assert not OperationLog.objects.filter(ticket_id=ticket.pk, action="escalate").exists()
    assert page.evaluate(f"window.localStorage.getItem('{store_key(a.viewer)}')") == kept  # untouched

    # Checking a reply for sensitive words is not kept offline (it sends nothing): the browser's own error shows.
    context.set_offline(True)
    page.locator("#form-reply textarea").fill("hello")
    page.locator("#form-reply button[value=check]").click(no_wait_after=True)
    page.wait_for_timeout(500)
    context.set_offline(False)
    page.goto(f"{live_server.url}/requests/{ticket.public_id}/")
    assert json.loads(page.evaluate(f"window.localStorage.getItem('{store_key(a.owner)}') || '[]'")) == []
    expect(page.locator("#offline-panel")).to_be_hidden()
