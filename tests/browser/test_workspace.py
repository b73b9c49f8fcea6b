"""The request workspace (售后单工作台) in a real browser: approve, reject, a refused tracking number, a view-only
sub-account's crafted POST, and the keyboard (n → next request in queue order, a → approve)."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, OperationLog
from stores import errors
from tests.conftest import platform_return

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PLATFORM_FIELDS = {"return_type", "return_status"}


def make(store, **fields) -> AfterSalesRequest:
    """A request through intake (as the platform sync makes them), then the fields a test needs."""
    overrides = {k: fields.pop(k) for k in list(fields) if k in PLATFORM_FIELDS}
    ticket, created = aftersales_services.intake(store, platform_return(**overrides))
    assert created
    if fields:
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def state_of(ticket) -> str:
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state


def open_request(page, live_server, ticket) -> None:
    page.goto(f"{live_server.url}/requests/{ticket.public_id}/")
    expect(page.locator("#workspace")).to_have_attribute("data-return-id", ticket.return_id)


def state_badge(page):
    return page.locator(".ws-head .state")


def log_rows(page):
    return page.locator("#timeline ol.timeline > li.log-row")


def test_agent_approves_a_pending_refund_with_the_approve_form(page, live_server, tenants, login, shot):
    a, _b = tenants
    ticket = make(a.stores[0])
    login(page, live_server, a.agent)
    open_request(page, live_server, ticket)
    expect(state_badge(page)).to_have_text("Pending review")
    rows_before = log_rows(page).count()
    expect(log_rows(page).locator(".log-action", has_text=re.compile(r"^Approve$"))).to_have_count(0)
    form = page.locator("form#form-approve-APPROVE_REFUND")
    expect(form).to_have_attribute("data-shortcut", "approve")
    shot(page, "pending")

    form.get_by_role("button", name=re.compile(r"^Approve refund")).click()
    expect(page).to_have_url(re.compile(rf"/requests/{ticket.public_id}/\?after="))  # PRG back to the page
    expect(page.locator("ul.messages li.message.success")).to_have_text("Approved: Approve refund.")
    expect(state_badge(page)).to_have_text("Refund approved")
    expect(log_rows(page)).to_have_count(rows_before + 1)
    row = log_rows(page).last
    expect(row.locator(".log-action")).to_have_text("Approve")
    expect(row.locator(".log-who")).to_contain_text(a.agent.get_username())
    expect(row.locator(".log-states")).to_have_text("Pending review → Refund approved")
    expect(row.locator(".log-details")).to_contain_text("Approve refund")
    expect(page.locator("form[id^=form-approve-]")).to_have_count(0)  # approve is no longer offered
    expect(page.locator("form#form-refund")).to_be_visible()  # refund now is
    shot(page, "approved")
    assert state_of(ticket) == "refund_approved"
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="approve").count() == 1


def test_agent_rejects_with_a_reason_and_a_comment(page, live_server, tenants, login, shot):
    a, _b = tenants
    ticket = make(a.stores[0])
    reason = "reverse_reject_request_reason_3"
    comment = "The label shows it was used."
    login(page, live_server, a.agent)
    open_request(page, live_server, ticket)
    form = page.locator("form#form-reject")
    select = form.get_by_label(re.compile(r"^Reject reason"))
    expect(select).to_have_attribute("id", "reject-reason")
    expect(select.locator(f'option[value="{reason}"]')).to_have_count(1)
    select.select_option(reason)
    form.get_by_label("Comment to the buyer (optional)").fill(comment)
    chosen = select.locator("option:checked").text_content()
    shot(page, "filled")

    form.locator("button[type=submit]").click()
    expect(page.locator("ul.messages li.message.success")).to_have_text("Rejected.")
    expect(state_badge(page)).to_have_text("Rejected")
    row = log_rows(page).last
    expect(row.locator(".log-action")).to_have_text("Reject")
    expect(row.locator(".log-states")).to_have_text("Pending review → Rejected")
    expect(row.locator(".log-details")).to_contain_text(chosen.strip())  # the reason in words
    expect(row.locator(".log-details")).to_contain_text(comment)
    expect(page.locator("form#form-reject")).to_have_count(0)
    shot(page, "rejected")
    assert chosen
    assert state_of(ticket) == "rejected"
    [logged] = OperationLog.objects.filter(ticket_id=ticket.pk, action="reject")
    assert (logged.payload["reason"], logged.payload["comment"]) == (reason, comment)


def test_an_invalid_tracking_number_typed_and_entered_shows_err_log_204(page, live_server, tenants, login, shot):
    a, _b = tenants
    # The agent's role ("aftersales-agent") grants Manage logistics, so the agent gets the tracking form.
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND", return_status="AWAITING_BUYER_SHIP")
    assert ticket.state == "awaiting_return"
    login(page, live_server, a.agent)
    open_request(page, live_server, ticket)
    number = page.locator("form#form-tracking input#tracking-number")
    expect(number).to_be_focused()  # autofocus: a scanner can type at once
    # The carrier is chosen once; the page remembers it per market, so the next visit needs only the number.
    page.locator("form#form-tracking select#tracking-carrier").select_option("dhl")
    page.reload()
    expect(page.locator("select#tracking-carrier")).to_have_value("dhl")
    expect(number).to_be_focused()
    shot(page, "ready-to-scan")

    page.keyboard.type("12AB")
    page.keyboard.press("Enter")
    error = page.locator("form#form-tracking #tracking-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-code", "ERR_LOG_204")
    expect(error.locator(".error-code")).to_have_text("ERR_LOG_204")
    expect(error.locator(".error-message")).to_have_text(str(errors.ERR_LOG_204.message))
    expect(error.locator(".error-hint")).to_contain_text(str(errors.ERR_LOG_204.hint))
    expect(error).to_contain_text("Expected for DHL Express: 10 digits")
    # Ready for the next scan: the number kept and focused, the carrier kept.
    expect(number).to_have_value("12AB")
    expect(number).to_be_focused()
    expect(page.locator("select#tracking-carrier")).to_have_value("dhl")
    expect(log_rows(page).last.locator(".log-error")).to_have_attribute("data-code", "ERR_LOG_204")
    shot(page, "err-log-204")
    assert state_of(ticket) == "awaiting_return"


def test_a_view_only_sub_account_gets_no_form_and_a_crafted_post_is_refused(page, live_server, tenants, login,
                                                                            shot):
    a, _b = tenants
    ticket = make(a.stores[0])
    login(page, live_server, a.viewer)
    open_request(page, live_server, ticket)
    expect(page.locator("form.action")).to_have_count(0)
    expect(page.locator("form[action*='/act/']")).to_have_count(0)
    expect(page.locator("#actions .empty")).to_have_text("No action is open to you on this request now.")
    role_setting = "Team management → Role settings → After-sales handling"
    expect(page.locator("#actions .perm-note")).to_contain_text(role_setting)
    expect(page.locator("#reject-reason")).to_have_count(0)
    rows_before = log_rows(page).count()
    shot(page, "view-only")

    # A form built in the page (the CSRF token from the page's own forms), posted as a browser would.
    token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    assert token
    with page.expect_navigation():
        page.evaluate("""([action, token, key]) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            for (const [name, value] of [['csrfmiddlewaretoken', token], ['idempotency_key', key],
                                          ['decision', 'APPROVE_REFUND']]) {
                const input = document.createElement('input');
                input.type = 'hidden'; input.name = name; input.value = value;
                form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        }""", [f"/requests/{ticket.public_id}/act/approve/", token, str(uuid.uuid4())])
    error = page.locator("#actions #action-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-code", "ERR_PERM_001")
    expect(error.locator(".error-code")).to_have_text("ERR_PERM_001")
    expect(error.locator(".error-message")).to_have_text(str(errors.ERR_PERM_001.message))
    expect(error.locator(".error-hint")).to_contain_text(role_setting)
    expect(state_badge(page)).to_have_text("Pending review")
    expect(page.locator("form.action")).to_have_count(0)  # still nothing offered
    expect(log_rows(page)).to_have_count(rows_before + 1)  # the refusal is logged, with its code
    expect(log_rows(page).last.locator(".log-error")).to_have_attribute("data-code", "ERR_PERM_001")
    shot(page, "crafted-post-refused")
    assert state_of(ticket) == "pending_review"
    assert not OperationLog.objects.filter(ticket_id=ticket.pk, action="approve", error_code="").exists()


def test_keyboard_n_opens_the_next_request_and_a_approves(page, live_server, tenants, login, shot):
    a, _b = tenants
    now = timezone.now()
    first = make(a.stores[0])
    second = make(a.stores[1])
    later = make(a.stores[0])
    for ticket, hours in ((first, 1), (second, 2), (later, 5)):
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(due_at=now + dt.timedelta(hours=hours))
    login(page, live_server, a.agent)
    open_request(page, live_server, first)
    expect(page.locator("a#next-request")).to_have_attribute("href", f"/requests/{second.public_id}/")
    expect(page.locator("a#next-request")).to_contain_text(second.return_id)
    assert page.evaluate("() => document.activeElement === document.body")  # no field takes the keys
    shot(page, "first")

    page.keyboard.press("n")
    expect(page).to_have_url(f"{live_server.url}/requests/{second.public_id}/")
    expect(page.locator("#workspace")).to_have_attribute("data-return-id", second.return_id)
    expect(state_badge(page)).to_have_text("Pending review")
    expect(page.locator("a#next-request")).to_have_attribute("href", f"/requests/{later.public_id}/")
    shot(page, "second")

    page.keyboard.press("a")
    expect(page.locator("ul.messages li.message.success")).to_have_text("Approved: Approve refund.")
    expect(page).to_have_url(re.compile(rf"/requests/{second.public_id}/\?after="))
    expect(state_badge(page)).to_have_text("Refund approved")
    expect(log_rows(page).last.locator(".log-action")).to_have_text("Approve")
    # The position in the queue is kept: n still goes on to the request that was behind this one.
    expect(page.locator("a#next-request")).to_have_attribute("href", f"/requests/{later.public_id}/")
    shot(page, "second-approved")
    assert state_of(second) == "refund_approved"
    assert state_of(first) == "pending_review" and state_of(later) == "pending_review"
