"""The portal's request workspace (售后单工作台): scoping, what the page shows, the actions through their forms (the
same services as the API), refusals with code, message and hint, the one-time form keys, the keyboard hooks, the
next request in queue order, market time zones and a constant number of queries."""

from __future__ import annotations

import datetime as dt
import html
import io
import itertools
import re
import zoneinfo
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from aftersales import evidence, oplog, replies
from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, Alert, Evidence, OperationLog
from aftersales.oplog import Performer
from stores import errors
from stores.models import IdempotencyKey, Market
from tests.conftest import platform_return
from tests.factories import StoreFactory, UserFactory

NEXT = re.compile(r'<a rel="next" href="([^"]+)"')
ACT_FORM = re.compile(r'<form data-offline method="post" action="/requests/[^"]+/act/([a-z-]+)/')


def make(store, **fields) -> AfterSalesRequest:
    """A request through intake (as the platform sync creates them), then fields set as a test needs."""
    overrides = {k: fields.pop(k) for k in list(fields) if k in {
        "return_id", "order_id", "buyer_name", "buyer_user_id", "return_type", "return_status", "return_reason",
        "return_line_items", "refund_amount"}}
    ticket, created = aftersales_services.intake(store, platform_return(**overrides))
    assert created
    if fields:
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def url(ticket) -> str:
    return f"/requests/{ticket.public_id}/"


def act_url(ticket, action: str) -> str:
    return f"/requests/{ticket.public_id}/act/{action}/"


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def page(client, ticket, status: int = 200, **extra) -> str:
    response = client.get(url(ticket), **extra)
    assert response.status_code == status, response.status_code
    return response.content.decode()


def form_html(text: str, form_id: str) -> str:
    start = text.index(f'id="{form_id}"')
    start = text.rindex("<form", 0, start)
    return text[start:text.index("</form>", start)]


def key_of(text: str, form_id: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', form_html(text, form_id)).group(1)


def post(client, ticket, action: str, data: dict | None = None, *, form_id: str | None = None, key: str | None = None):
    """Submit a form as the page renders it: with its one-time key (read from the page unless given)."""
    data = dict(data or {})
    if key is None:
        key = key_of(page(client, ticket), form_id or f"form-{action}")
    data["idempotency_key"] = key
    return client.post(act_url(ticket, action), data)


def error_block(text: str, code: str, kind: str = "action-error") -> str:
    """The error shown next to a form (kind "action-error") or in the timeline ("log-error")."""
    found = re.search(rf'<div class="[^"]*\b{kind}"[^>]*data-code="{code}">', text)
    assert found, f"no {kind} block with {code}"
    return html.unescape(text[found.start():text.index("</div>", found.start())])


def log_rows(ticket, action: str | None = None) -> list[OperationLog]:
    rows = OperationLog.objects.filter(ticket_id=ticket.pk).order_by("id")
    return list(rows.filter(action=action) if action else rows)


def png(color=(200, 30, 30), size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def in_hours(hours: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(hours=hours)


# --- access ------------------------------------------------------------------------------------------
def test_requires_login(client, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = client.get(url(ticket))
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.post(act_url(ticket, "approve")).status_code == 302
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "pending_review"


def test_member_of_no_agency_sees_the_coded_error(client, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client.force_login(UserFactory(username="drifter"))
    response = client.get(url(ticket))
    assert response.status_code == 403 and "ERR_AUTH_004" in response.content.decode()


@pytest.mark.parametrize("who", ["owner", "agent"])
def test_page_renders_for_a_granted_store(as_user, tenants, who):
    a, _b = tenants
    ticket = make(a.stores[1], buyer_name="Zhang Wei")
    text = page(as_user(getattr(a, who)), ticket)
    for shown in (ticket.return_id, ticket.order_id, "Zhang Wei", "colour difference", "Refund only",
                  "Pending review", "RETURN_OR_REFUND_REQUEST_PENDING", "Cotton T-shirt", "TSHIRT-RED-M",
                  "Operation log", "Buyer's evidence", "Seller's evidence", "Deadlines (store time)",
                  "Buyer's after-sales history", a.stores[1].name):
        assert shown in html.unescape(text), shown
    forms = set(ACT_FORM.findall(text))
    assert {"approve", "reject", "request-evidence", "escalate", "evidence", "reply"} <= forms
    assert "refund" not in forms and "close" not in forms  # the state does not allow them (pending review)
    assert "tracking" not in forms  # a refund-only request has no return parcel


@pytest.mark.parametrize("who", ["owner", "agent"])
def test_foreign_ungranted_and_unknown_requests_are_the_same_404(as_user, tenants, who):
    a, b = tenants
    foreign = make(b.stores[0])
    ungranted = make(a.stores[2])  # the agent has no role on store 2
    client = as_user(getattr(a, who))
    hidden = [foreign] + ([ungranted] if who == "agent" else [])
    for ticket in hidden:
        response = client.get(url(ticket))
        assert response.status_code == 404
        text = response.content.decode()
        assert "ERR_NOT_FOUND" in text and ticket.return_id not in text and ticket.store.name not in text
        # Acting on it is the same 404, and nothing happens.
        response = client.post(act_url(ticket, "approve"), {"idempotency_key": "0b9e7a52-3d4f-4a1e-9a57-6f1c2d3e4f50"})
        assert response.status_code == 404
        assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "pending_review"
        assert [r.action for r in log_rows(ticket)] == ["intake"]
    unknown = client.get("/requests/00000000-0000-4000-8000-000000000000/")
    assert unknown.status_code == 404 and "ERR_NOT_FOUND" in unknown.content.decode()
    assert "<h1>Request not found</h1>" in unknown.content.decode()
    assert 'href="/queue/">Back to the after-sales queue<' in unknown.content.decode()
    assert client.get("/requests/not-a-uuid/").status_code == 404


def test_unknown_action_is_404(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = as_user(a.owner).post(act_url(ticket, "delete"), {"idempotency_key": "x"})
    assert response.status_code == 404
    assert as_user(a.owner).get(act_url(ticket, "approve")).status_code == 405


# --- the viewer: nothing offered, a crafted POST is told which role setting grants it -----------------------
def test_viewer_sees_no_action_form(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND")
    text = page(as_user(a.viewer), ticket)
    assert ACT_FORM.findall(text) == []
    assert "No action is open to you on this request now." in text
    # The page says which role setting would let them act, without an error.
    assert "ERR_PERM_001" in text and "Team management → Role settings → After-sales handling" in text
    assert 'data-shortcut="approve"' not in text and 'id="reject-reason"' not in text


@pytest.mark.parametrize("action,data,code,hint", [
    ("approve", {}, "ERR_PERM_001", "After-sales handling"),
    ("reject", {"reason": "reverse_reject_request_reason_1"}, "ERR_PERM_001", "After-sales handling"),
    ("escalate", {"note": "x"}, "ERR_PERM_001", "After-sales handling"),
    ("tracking", {"carrier": "dhl", "tracking_number": "1234567890"}, "ERR_PERM_003", "Manage logistics"),
])
def test_crafted_post_by_a_viewer_gets_the_permission_code_and_hint(as_user, tenants, action, data, code, hint):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND")
    client = as_user(a.viewer)
    response = client.post(act_url(ticket, action), {**data, "idempotency_key": "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"})
    assert response.status_code == 403
    text = response.content.decode()
    block = error_block(text, code)
    assert str(errors.CATALOGUE[code].message) in block and str(errors.CATALOGUE[code].hint) in block
    assert f"Team management → Role settings → {hint}" in block
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "pending_review"
    # The refusal is in the operation log too, with its code, and the timeline shows it with the hint.
    assert log_rows(ticket)[-1].error_code == code
    assert text.count(f'data-code="{code}"') == 2
    assert text.count(str(errors.CATALOGUE[code].hint)) == 2  # next to the form and in the timeline, not thrice


# --- actions through the forms -----------------------------------------------------------------------------
def follow(client, response) -> str:
    if response.status_code != 302:
        text = response.content.decode()
        found = re.search(r'<div class="form-error action-error".*?</div>', text, re.S)
        raise AssertionError(f"{response.status_code}: {found.group(0) if found else text[:500]}")
    assert response["Location"].startswith("/requests/")
    return client.get(response["Location"]).content.decode()


def test_approve_the_plain_default(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    text = page(client, ticket)
    default = form_html(text, "form-approve-APPROVE_REFUND")
    assert 'data-shortcut="approve"' in default and 'aria-keyshortcuts="a"' in default
    after = follow(client, post(client, ticket, "approve", {"decision": "APPROVE_REFUND"},
                                form_id="form-approve-APPROVE_REFUND"))
    assert "Approved: Approve refund." in after
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "refund_approved"
    [row] = log_rows(ticket, "approve")
    assert (row.state_before, row.state_after, row.payload["decision"], row.actor_label) == (
        "pending_review", "refund_approved", "APPROVE_REFUND", a.agent.username)
    # Now refund is offered (the agent's role has it), approve is not.
    assert "refund" in ACT_FORM.findall(after) and "approve" not in ACT_FORM.findall(after)


def test_approve_without_a_decision_takes_the_default(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND")
    client = as_user(a.owner)
    text = page(client, ticket)
    assert 'id="form-approve-APPROVE_RETURN" data-shortcut="approve"' in text
    assert 'id="form-approve-DIRECT_REFUND"' in text and 'id="form-approve-OFFER_PARTIAL_REFUND"' in text
    follow(client, post(client, ticket, "approve", {}, key=key_of(text, "form-approve-APPROVE_RETURN")))
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "awaiting_return"


def test_each_approval_variant_is_its_own_form(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND")
    client = as_user(a.owner)
    follow(client, post(client, ticket, "approve", {"decision": "DIRECT_REFUND"}, form_id="form-approve-DIRECT_REFUND"))
    ticket.refresh_from_db()
    assert ticket.state == "refund_approved" and ticket.can_buyer_keep_item


def test_partial_refund_offer_with_an_amount(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    form = form_html(page(client, ticket), "form-approve-OFFER_PARTIAL_REFUND")
    assert '<label for="partial-refund">Amount offered (USD)</label>' in form and "at most USD 25.00" in form
    follow(client, post(client, ticket, "approve", {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": "5.50"},
                        form_id="form-approve-OFFER_PARTIAL_REFUND"))
    ticket.refresh_from_db()
    assert ticket.state == "awaiting_buyer" and ticket.partial_refund_offer == Decimal("5.50")
    [row] = log_rows(ticket, "approve")
    assert row.payload["partial_refund"] == {"amount": "5.50", "currency": "USD"}


def test_partial_refund_above_the_refundable_is_refused_next_to_its_form(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    response = post(client, ticket, "approve", {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": "99.00"},
                    form_id="form-approve-OFFER_PARTIAL_REFUND")
    assert response.status_code == 400
    text = response.content.decode()
    block = error_block(text, "ERR_REFUND_001")
    assert str(errors.ERR_REFUND_001.message) in block and str(errors.ERR_REFUND_001.hint) in block
    # Next to the approve forms, the amount kept and the field focused for a correction.
    assert text.index('id="approve-error"') < text.index('id="form-approve-OFFER_PARTIAL_REFUND"')
    assert re.search(r'id="partial-refund"[^>]*autofocus[^>]*value="99.00"', text)
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "pending_review"


def test_reject_with_a_reason_and_a_comment(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    text = page(client, ticket)
    form = form_html(text, "form-reject")
    assert '<label for="reject-reason">' in form and 'aria-keyshortcuts="r"' in form
    assert 'value="reverse_reject_request_reason_3"' in form  # the request's reject reasons are offered
    follow(client, post(client, ticket, "reject", {"reason": "reverse_reject_request_reason_3",
                                                   "comment": "The label shows it was used."}))
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "rejected"
    [row] = log_rows(ticket, "reject")
    assert row.payload["reason"] == "reverse_reject_request_reason_3"
    assert row.payload["comment"] == "The label shows it was used."


def test_reject_offers_the_requests_own_reasons(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], reject_reasons=[{"name": "seller_reason_x", "text": "Item was used"}])
    form = form_html(page(as_user(a.owner), ticket), "form-reject")
    assert '<option value="seller_reason_x">Item was used</option>' in form
    assert "reverse_reject_request_reason_1" not in form


def test_reject_with_a_reason_not_in_the_list_shows_the_code_message_and_hint(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    response = post(client, ticket, "reject", {"reason": "made_up", "comment": "keep me"})
    assert response.status_code == 400
    text = response.content.decode()
    block = error_block(text, "ERR_REVIEW_001")
    assert str(errors.ERR_REVIEW_001.message) in block and str(errors.ERR_REVIEW_001.hint) in block
    assert "reverse_reject_request_reason_1" in block  # the reasons that are offered
    assert text.index('id="reject-error"') > text.index('id="form-reject"')  # inside its form
    assert ">keep me</textarea>" in text  # what was typed is kept
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "pending_review"
    assert log_rows(ticket)[-1].error_code == "ERR_REVIEW_001"


def test_approve_in_a_state_that_does_not_allow_it(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], state="completed")
    client = as_user(a.owner)
    text = page(client, ticket)
    assert "approve" not in ACT_FORM.findall(text)  # not offered …
    response = client.post(act_url(ticket, "approve"), {"idempotency_key": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"})
    assert response.status_code == 409  # … and refused when posted anyway
    text = response.content.decode()
    block = error_block(text, "ERR_STATE_001")
    assert str(errors.ERR_STATE_001.message) in block and str(errors.ERR_STATE_001.hint) in block
    assert 'id="action-error"' in text  # shown at the top of the actions (no approve form to put it next to)
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "completed"


def test_request_evidence(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    follow(client, post(client, ticket, "request-evidence", {"message": "Please send a photo of the label."}))
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "awaiting_buyer"
    assert log_rows(ticket, "request_evidence")[0].payload["message"] == "Please send a photo of the label."


def test_escalate(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    text = follow(client, post(client, ticket, "escalate", {"note": "Looks like fraud"}))
    assert "Escalated for a senior" in text
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "pending_review"
    assert log_rows(ticket, "escalate")[0].payload["note"] == "Looks like fraud"
    assert Alert.objects.unscoped().filter(ticket=ticket, kind="review_failed", key="escalated").exists()


def test_refund_after_approval(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], state="refund_approved")
    client = as_user(a.agent)
    form = form_html(page(client, ticket), "form-refund")
    assert "Amount (USD), optional" in form and "USD 25.00" in form
    text = follow(client, post(client, ticket, "refund", {"amount": "10.00"}))
    assert "Refunded: USD 10.00 in total." in text
    ticket.refresh_from_db()
    assert ticket.state == "completed" and ticket.refunded_amount == Decimal("10.00")
    [row] = log_rows(ticket, "refund")
    assert row.payload["amount"] == "10.00" and row.payload["partial"] is True


def test_close(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], state="rejected")
    client = as_user(a.owner)
    follow(client, post(client, ticket, "close", {"comment": "Buyer agreed"}))
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "closed"


# --- evidence ------------------------------------------------------------------------------------------------
def test_upload_seller_evidence_and_see_it_beside_the_buyers(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    evidence.add_buyer_evidence(ticket.pk, images=[("buyer.png", png((10, 200, 10)))],
                                videos=[{"url": "https://video.example.com/unboxing.mp4", "duration_millis": 12000}])
    client = as_user(a.agent)
    form = form_html(page(client, ticket), "form-evidence")
    assert 'enctype="multipart/form-data"' in form and 'accept="image/jpeg,image/png,image/webp"' in form
    response = post(client, ticket, "evidence", {"file": SimpleUploadedFile("label.png", png(), "image/png"),
                                                 "note": "Label photo"})
    text = follow(client, response)
    assert "Seller evidence uploaded." in text
    seller = Evidence.objects.unscoped().get(ticket=ticket, role="seller")
    buyer = Evidence.objects.unscoped().get(ticket=ticket, role="buyer", kind="image")
    columns = text[text.index('class="evidence-columns"'):text.index('id="items-title"')]
    buyer_side = columns[columns.index("evidence-buyer"):columns.index("evidence-seller")]
    seller_side = columns[columns.index("evidence-seller"):]
    # Thumbnails open the full image (through the scoping gate), in a new tab or the lightbox.
    assert f'href="/files/evidence/{buyer.public_id}/" target="_blank"' in buyer_side
    assert f'<img src="/files/evidence/{buyer.public_id}/"' in buyer_side
    assert 'href="https://video.example.com/unboxing.mp4"' in buyer_side and "12 s" in buyer_side
    assert f'href="/files/evidence/{seller.public_id}/"' in seller_side and "Label photo" in seller_side
    assert a.agent.username in seller_side
    assert client.get(f"/files/evidence/{seller.public_id}/").status_code == 200
    assert 'id="lightbox"' in text
    # Seller images can be attached to a rejection.
    assert f'name="images" value="{seller.public_id}"' in form_html(text, "form-reject")
    assert log_rows(ticket, "upload_evidence")[-1].actor_label == a.agent.username


def test_a_non_image_upload_shows_err_evid_003(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    response = post(client, ticket, "evidence", {"file": SimpleUploadedFile("label.png", b"%PDF-1.4 not an image",
                                                                            "image/png")})
    assert response.status_code == 415
    block = error_block(response.content.decode(), "ERR_EVID_003")
    assert str(errors.ERR_EVID_003.message) in block and str(errors.ERR_EVID_003.hint) in block
    assert "Only JPEG, PNG and WebP images are accepted." in block
    assert not Evidence.objects.unscoped().filter(ticket=ticket).exists()


def test_rejection_with_seller_evidence_attached(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    agent = a.actor(a.agent)
    item = evidence.upload_evidence(Performer.of(agent), ticket.pk, SimpleUploadedFile("x.png", png()))
    client = as_user(a.agent)
    follow(client, post(client, ticket, "reject", {"reason": "reverse_reject_request_reason_3",
                                                   "images": [str(item.public_id)]}))
    assert log_rows(ticket, "reject")[0].payload["images"] == [str(item.public_id)]


# --- quick replies and the sensitive-word check --------------------------------------------------------------
def test_reply_check_shows_the_sensitive_words_and_sends_nothing(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    text = page(client, ticket)
    response = client.post(act_url(ticket, "reply"), {"text": "加我 vx alex88", "intent": "check",
                                                      "idempotency_key": key_of(text, "form-reply")})
    assert response.status_code == 200
    text = response.content.decode()
    check = text[text.index('id="reply-check"'):]
    check = html.unescape(check[:check.index("</div>")])
    assert "ERR_REPLY_001" in check and "<mark>加我</mark>" in check and "<mark>vx</mark>" in check
    assert str(errors.ERR_REPLY_001.hint) in check and "Nothing was sent." in check
    assert ">加我 vx alex88</textarea>" in text  # the text stays for the correction
    assert log_rows(ticket, "reply") == []  # a check is not a send: nothing sent, nothing logged
    # Sending it anyway is refused by the send's own check, with the words.
    response = post(client, ticket, "reply", {"text": "加我 vx alex88", "intent": "send"})
    assert response.status_code == 400
    block = error_block(response.content.decode(), "ERR_REPLY_001")
    assert "<mark>加我</mark>" in block and "<mark>vx</mark>" in block
    assert [r.error_code for r in log_rows(ticket, "reply")] == ["ERR_REPLY_001"]  # refused, not sent


def test_quick_reply_check_sees_the_filled_variables(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], buyer_name="Alex https://evil.example/shop")
    reply = replies.create_quick_reply(a.actor(a.agent), title="Hello", body="您好 {buyer_name}，已为您安排极速退款",
                                       store=a.stores[0])
    client = as_user(a.agent)
    text = page(client, ticket)
    assert f'<option value="{reply.public_id}" title="您好 {{buyer_name}}，已为您安排极速退款">Hello' in html.unescape(
        form_html(text, "form-reply"))
    response = client.post(act_url(ticket, "reply"), {"reply_id": str(reply.public_id), "intent": "check",
                                                      "idempotency_key": key_of(text, "form-reply")})
    text = response.content.decode()
    assert "<mark>https://evil.example/shop</mark>" in text
    assert f'<option value="{reply.public_id}" title="' in text and re.search(
        rf'value="{reply.public_id}"[^>]*selected', text)
    assert log_rows(ticket, "reply") == []


def test_a_clean_reply_is_previewed_then_sent(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], order_id="576461413038785752")
    reply = replies.create_quick_reply(a.actor(a.owner), title="Refund", body="订单 {order_id} 已为您安排极速退款")
    client = as_user(a.agent)
    text = page(client, ticket)
    response = client.post(act_url(ticket, "reply"), {"reply_id": str(reply.public_id), "intent": "check",
                                                      "idempotency_key": key_of(text, "form-reply")})
    text = response.content.decode()
    assert "No sensitive words found. The buyer will read:" in text
    assert "订单 576461413038785752 已为您安排极速退款" in text  # the order id is not taken for a phone number
    assert re.search(r'id="reply-send"[^>]*autofocus', text)
    text = follow(client, post(client, ticket, "reply", {"reply_id": str(reply.public_id), "intent": "send"}))
    assert "Reply sent to the buyer." in text
    [row] = log_rows(ticket, "reply")
    assert row.error_code == "" and row.payload["text"] == "订单 576461413038785752 已为您安排极速退款"


# --- logistics -----------------------------------------------------------------------------------------------
def test_tracking_entry_for_a_scanner(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND", state="awaiting_return")
    client = as_user(a.agent)
    form = form_html(page(client, ticket), "form-tracking")
    # One field the scanner types into, focused on arrival; Enter submits the form (its only text field).
    assert re.search(r'<input id="tracking-number" name="tracking_number"[^>]*autofocus', form)
    assert '<label for="tracking-number">' in form and '<label for="tracking-carrier">' in form
    assert form.count('type="text"') + len(re.findall(r"<input id=", form)) == 1
    assert '<option value="dhl">DHL Express</option>' in form  # the carriers of the store's market (AE)
    scanned = {"carrier": "jt-express", "tracking_number": " jt0012345678 "}
    text = follow(client, post(client, ticket, "tracking", scanned))
    assert "Return tracking number JT0012345678 saved." in text
    assert "<code>JT0012345678</code>" in text
    assert log_rows(ticket, "tracking_number")[-1].payload["tracking_number"] == "JT0012345678"
    # The parcel's carrier is preselected for the next number.
    assert '<option value="jt-express" selected>' in form_html(text, "form-tracking")


def test_an_invalid_tracking_number_shows_err_log_204_and_its_hint(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND", state="awaiting_return")
    client = as_user(a.agent)
    response = post(client, ticket, "tracking", {"carrier": "dhl", "tracking_number": "12AB"})
    assert response.status_code == 400
    assert response.status_code == 400
    text = response.content.decode()
    block = error_block(text, "ERR_LOG_204")
    assert str(errors.ERR_LOG_204.message) in block and str(errors.ERR_LOG_204.hint) in block
    assert "Expected for DHL Express: 10 digits (DHL Express waybill)" in block
    # Ready for the next scan: the field focused, the carrier kept.
    assert re.search(r'id="tracking-number"[^>]*autofocus[^>]*value="12AB"', text)
    assert '<option value="dhl" selected>' in form_html(text, "form-tracking")
    assert log_rows(ticket)[-1].error_code == "ERR_LOG_204"


def test_tracking_is_not_offered_without_a_return_parcel_and_the_focus_stays_free(as_user, tenants):
    a, _b = tenants
    pending = make(a.stores[0], return_type="RETURN_AND_REFUND")
    text = page(as_user(a.agent), pending)
    assert 'id="form-tracking"' in text and "autofocus" not in text  # no parcel awaited yet: shortcuts work
    refund_only = make(a.stores[0])
    assert 'id="form-tracking"' not in page(as_user(a.agent), refund_only)


def test_interception_where_offered(as_user, tenants):
    a, _b = tenants
    in_transit = make(a.stores[0], return_reason="ecom_order_shipped_refund_reason_no_longer_needed")
    client = as_user(a.agent)
    text = follow(client, post(client, in_transit, "intercept", {"tracking_number": "JT0012345678", "note": "stop"}))
    assert "Interception of parcel JT0012345678 requested." in text
    assert 'id="form-intercept"' not in text  # one open interception at a time
    assert "JT0012345678" in text
    delivered = make(a.stores[0], return_type="RETURN_AND_REFUND")  # returns follow delivery: nothing to stop
    assert 'id="form-intercept"' not in page(client, delivered)


# --- one action per form key ---------------------------------------------------------------------------------
def test_a_double_submit_acts_once(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    key = key_of(page(client, ticket), "form-escalate")
    first = client.post(act_url(ticket, "escalate"), {"note": "twice", "idempotency_key": key})
    second = client.post(act_url(ticket, "escalate"), {"note": "twice", "idempotency_key": key})
    assert first.status_code == second.status_code == 302
    assert len(log_rows(ticket, "escalate")) == 1
    assert "This form was sent twice; it was carried out once." in client.get(second["Location"]).content.decode()
    assert IdempotencyKey.objects.filter(user=a.agent, key=f"portal:{key}").count() == 1


def test_a_double_submit_of_an_approval_moves_no_money_twice(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], state="refund_approved")
    client = as_user(a.agent)
    key = key_of(page(client, ticket), "form-refund")
    for _ in range(2):
        assert client.post(act_url(ticket, "refund"), {"amount": "5.00", "idempotency_key": key}).status_code == 302
    ticket.refresh_from_db()
    assert ticket.refunded_amount == Decimal("5.00") and len(log_rows(ticket, "refund")) == 1


def test_a_refused_double_submit_answers_the_same_refusal_once(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    key = key_of(page(client, ticket), "form-reject")
    for _ in range(2):
        response = client.post(act_url(ticket, "reject"), {"reason": "nope", "idempotency_key": key})
        assert response.status_code == 400 and "ERR_REVIEW_001" in response.content.decode()
    assert [r.error_code for r in log_rows(ticket, "reject")] == ["ERR_REVIEW_001"]


def test_the_same_key_with_other_values_is_refused(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    key = key_of(page(client, ticket), "form-escalate")
    assert client.post(act_url(ticket, "escalate"), {"note": "one", "idempotency_key": key}).status_code == 302
    response = client.post(act_url(ticket, "escalate"), {"note": "two", "idempotency_key": key})
    assert response.status_code == 409 and "ERR_IDEMPOTENCY_MISMATCH" in response.content.decode()
    assert len(log_rows(ticket, "escalate")) == 1


@pytest.mark.parametrize("key", [None, "", "not-a-uuid"])
def test_a_form_without_its_key_does_nothing(as_user, tenants, key):
    a, _b = tenants
    ticket = make(a.stores[0])
    data = {"note": "x"} if key is None else {"note": "x", "idempotency_key": key}
    response = as_user(a.agent).post(act_url(ticket, "escalate"), data)
    assert response.status_code == 400
    assert "ERR_IDEMPOTENCY_KEY_INVALID" in response.content.decode()
    assert log_rows(ticket, "escalate") == []


def test_each_form_gets_its_own_key_each_time_the_page_renders(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    first, second = page(client, ticket), page(client, ticket)
    keys = re.findall(r'name="idempotency_key" value="([^"]+)"', first)
    assert len(keys) == len(set(keys)) == first.count("<form data-offline method=\"post\" action=\"/requests/")
    assert not set(keys) & set(re.findall(r'name="idempotency_key" value="([^"]+)"', second))


# --- keyboard and the next request ---------------------------------------------------------------------------
def test_keyboard_hooks_and_labels(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    make(a.stores[0], due_at=in_hours(48))
    text = page(as_user(a.agent), ticket)
    assert "portal/request.js" in text and "portal/queue.js" in text
    assert text.count('data-shortcut="approve"') == 1
    assert 'id="reject-reason"' in text and 'aria-keyshortcuts="n"' in text
    assert "<kbd>a</kbd>" in text and "<kbd>r</kbd>" in text and "<kbd>n</kbd>" in text
    # Every field is labelled.
    for field_id in re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', text):
        assert f'<label for="{field_id}"' in text or f'for="{field_id}"' in text, field_id
    # The countdown is the queue's: its badge partial and queue.js's data attributes.
    assert 'class="sla-badge' in text and 'id="queue"' in text and "data-label-left" in text
    assert ":focus-visible" in as_user(a.agent).get("/static/portal/portal.css").getvalue().decode()
    js = as_user(a.agent).get("/static/portal/request.js").getvalue().decode()
    assert 'data-shortcut="approve"' in js and '"reject-reason"' in js and 'rel="next"' in js


def next_link(text: str) -> str | None:
    found = NEXT.search(text)
    return html.unescape(found.group(1)) if found else None


def test_next_is_the_next_open_request_in_queue_order(as_user, tenants):
    a, b = tenants
    s0, s1, s2 = a.stores
    first = make(s0, due_at=in_hours(1))
    tie_a = make(s1, due_at=in_hours(2))
    tie_b = make(s0, due_at=tie_a.due_at)  # same deadline: the id decides
    make(s0, due_at=in_hours(2.5), state="closed")  # finished requests are not in the queue
    owner_only = make(s2, due_at=in_hours(2.7))  # not granted to the agent
    make(b.stores[0], due_at=in_hours(2.8))  # another agency
    later = make(s1, due_at=in_hours(3))
    no_deadline = make(s0, due_at=None)
    client = as_user(a.agent)
    chain = [first, tie_a, tie_b, later, no_deadline]
    for current, expected in itertools.pairwise(chain):
        assert next_link(page(client, current)) == url(expected), current.return_id
    last = page(client, no_deadline)
    assert next_link(last) is None and "No further open request in the queue." in last
    # The owner sees store 2 too.
    assert next_link(page(as_user(a.owner), tie_b)) == url(owner_only)


def test_next_follows_the_store_switcher(as_user, tenants):
    a, _b = tenants
    first = make(a.stores[0], due_at=in_hours(1))
    make(a.stores[1], due_at=in_hours(2))
    third = make(a.stores[0], due_at=in_hours(3))
    client = as_user(a.owner)
    client.post("/switch-store/", {"current_store": str(a.stores[0].public_id), "next": "/queue/"})
    assert next_link(page(client, first)) == url(third)


def test_next_after_an_action_is_still_the_request_that_was_behind(as_user, tenants):
    a, _b = tenants
    first = make(a.stores[0], due_at=in_hours(1))
    second = make(a.stores[0], due_at=in_hours(2))
    make(a.stores[0], due_at=None)
    client = as_user(a.agent)
    # Approving ends the request's review deadline (it moves to the end of the queue) …
    text = follow(client, post(client, first, "approve", {"decision": "APPROVE_REFUND"},
                               form_id="form-approve-APPROVE_REFUND"))
    assert AfterSalesRequest.objects.unscoped().get(pk=first.pk).state == "refund_approved"
    # … but n still leads to the one that was next when the agent opened it.
    assert next_link(text) == url(second)


def test_queue_rows_link_to_the_workspace(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    text = as_user(a.owner).get("/queue/").content.decode()
    assert f'<a class="return-id" href="{url(ticket)}">{ticket.return_id}</a>' in text


# --- what the page shows -------------------------------------------------------------------------------------
@pytest.fixture
def uk(tenants):
    a, _b = tenants
    return a, StoreFactory(agency=a.agency, market=Market.objects.get(code="UK"), name="alpha uk")


def test_times_are_in_the_markets_time_zone(as_user, uk):
    a, store = uk
    made = dt.datetime(2026, 7, 14, 23, 30, tzinfo=dt.UTC)  # 00:30 next day in London (BST)
    deadline = dt.datetime(2026, 7, 15, 12, 0, tzinfo=dt.UTC)  # 13:00 in London
    ticket = make(store, platform_created_at=made, platform_deadline=deadline,
                  platform_records=[{"role": "BUYER", "description": "Buyer asked for a refund",
                                     "create_time": int(made.timestamp())}])
    text = page(as_user(a.owner), ticket)
    assert '<time datetime="2026-07-15T00:30:00+01:00" title="Europe/London">2026-07-15 00:30</time>' in text
    assert '<time datetime="2026-07-15T13:00:00+01:00" title="Europe/London">2026-07-15 13:00</time>' in text
    assert '<time datetime="2026-07-15T00:30:00+01:00">2026-07-15 00:30:00</time>' in text  # platform timeline
    logged = log_rows(ticket)[0].created_at.astimezone(zoneinfo.ZoneInfo("Europe/London"))
    assert f'{logged:%Y-%m-%d %H:%M:%S}</time>' in text
    visible = re.sub(r"<[^>]+>", " ", text)  # attributes may carry UTC (data-due for the countdown script)
    assert "Europe/London" in text and "23:30" not in visible and "12:00" not in visible


def test_money_with_its_currency_fees_and_buyer_history(as_user, uk):
    a, store = uk
    items = [{"return_line_item_id": "L1", "sku_id": "S1", "product_name": "Scarf", "category": "apparel",
              "refund_amount": {"currency": "GBP", "refund_total": "1234.50"}}]
    earlier = make(store, buyer_user_id="buyer-77", refund_amount={"currency": "GBP", "refund_total": "20.00"},
                   state="completed", refunded_amount=Decimal("20.00"))
    assert earlier.currency == "GBP"
    ticket = make(store, buyer_user_id="buyer-77", return_line_items=items,
                  refund_amount={"currency": "GBP", "refund_total": "1234.50", "refund_subtotal": "1234.50"})
    text = page(as_user(a.owner), ticket)
    assert "GBP 1,234.50" in text and "Refund total" in text and "Still refundable" in text
    assert "Commission returned (佣金)" in text and "Return shipping paid by" in text
    history = text[text.index('id="buyer-history"'):]
    history = html.unescape(history[:history.index("</section>")])
    assert "2 in all, 2 in 90 days" in history  # requests
    assert "1 in all, 1 in 90 days" in history  # refunds
    assert "GBP 20.00" in history
    assert "/queue/?q=buyer-77" in history


def test_a_serial_returner_is_flagged_by_the_history_rules(as_user, tenants):
    a, b = tenants
    tickets = [make(a.stores[i % 3], buyer_user_id="buyer-serial") for i in range(5)]
    make(b.stores[0], buyer_user_id="buyer-serial")  # another agency's requests never count
    text = html.unescape(page(as_user(a.owner), tickets[0]))
    assert '<a class="tag serial" href="#buyer-history">Serial returner</a>' in text
    assert "≥ 5 requests in 90 days (found 5)" in text
    # The agent sees the history of the stores they may see only: 4 of the 5, not flagged.
    text = html.unescape(page(as_user(a.agent), tickets[0]))
    assert "Serial returner" not in text and "4 in all, 4 in 90 days" in text


def test_operation_log_rows_show_who_what_and_refusals_with_hints(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    aftersales_services.request_evidence(Performer.of(a.actor(a.agent)), ticket.pk, message="photo please")
    text = page(as_user(a.owner), ticket)
    timeline = html.unescape(text[text.index('id="timeline"'):text.index("</ol>", text.index('id="timeline"'))])
    assert "Request received" in timeline and "TikTok Shop" in timeline
    assert "Request evidence" in timeline and a.agent.username in timeline and "Sub-account" in timeline
    assert "Pending review → Awaiting buyer" in timeline and "photo please" in timeline
    # A refused action: its code with the catalogue's message and hint.
    page(as_user(a.owner), ticket)
    as_user(a.owner).post(act_url(ticket, "refund"), {"idempotency_key": "0b9e7a52-3d4f-4a1e-9a57-6f1c2d3e4f51"})
    text = page(as_user(a.owner), ticket)
    block = error_block(text, "ERR_STATE_001", kind="log-error")
    assert str(errors.ERR_STATE_001.message) in block and str(errors.ERR_STATE_001.hint) in block


def test_unknown_platform_status_is_flagged(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_status="SOMETHING_NEW")
    text = html.unescape(page(as_user(a.owner), ticket))
    assert "SOMETHING_NEW" in text and "Unknown platform status" in text
    assert "ERR_SYNC_001" in text and str(errors.ERR_SYNC_001.hint) in text


def test_platform_decision_status_for_a_connected_store(as_user, tenants):
    from aftersales.tiktok.models import PartnerApp, PlatformDecision, SellerAuthorization, StoreLink

    a, _b = tenants
    store = a.stores[0]
    ticket = make(store, platform_records=[{"role": "SELLER", "description": "Seller rejected", "create_time": 1}])
    app = PartnerApp.objects.create(agency=a.agency, name="App", app_key="k", app_secret="s")
    auth = SellerAuthorization.objects.create(agency=a.agency, app=app, open_id="o", access_token="t",
                                              refresh_token="r")
    StoreLink.objects.create(agency=a.agency, store=store, authorization=auth, sync_enabled=False)
    PlatformDecision.objects.create(agency=a.agency, ticket=ticket, operation="reject", decision="REJECT_REFUND",
                                    idempotency_key="d-1", status="failed", error_code="ERR_TTS_003",
                                    platform_code=48001001, message="reason not allowed", attempts=1)
    client = as_user(a.agent)
    text = page(client, ticket)
    decision = html.unescape(text[text.index('id="platform-decision"'):text.index('id="platform-decision"') + 3000])
    assert "This store is connected to TikTok Shop." in text
    assert "Failed" in decision and "REJECT_REFUND" in decision and "48001001" in decision
    assert "ERR_TTS_003" in decision and str(errors.ERR_TTS_003.hint) in decision and "reason not allowed" in decision
    assert "Seller rejected" in text  # the platform's own timeline
    assert "resend-decision" in ACT_FORM.findall(text)


def test_page_renders_in_chinese(as_user, tenants, settings):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    text = page(client, ticket)
    assert '<html lang="zh-hans">' in text and ticket.return_id in text


# --- cost ---------------------------------------------------------------------------------------------------
def grow(ticket, owner_actor, *, log_rows_total: int, images: int, videos: int, seller: int) -> None:
    """More log rows and evidence on one request (buyer images and videos from the platform, seller uploads)."""
    pngs = [(f"b{i}.png", png((i * 20 % 255, 40, 90))) for i in range(images)]
    vids = [{"url": f"https://video.example.com/{ticket.pk}-{i}.mp4"} for i in range(videos)]
    if pngs or vids:
        evidence.add_buyer_evidence(ticket.pk, images=pngs, videos=vids)
    for i in range(seller):
        evidence.upload_evidence(Performer.of(owner_actor), ticket.pk,
                                 SimpleUploadedFile(f"s{i}.png", png((90, i * 30 % 255, 10))))
    for i in range(log_rows_total - len(log_rows(ticket))):
        oplog.record(ticket, performer=oplog.SYSTEM, action="tag", before=ticket.state, after=ticket.state,
                     error_code="ERR_LOG_301" if i % 3 == 0 else "", payload={"note": f"row {i}"})


@pytest.mark.parametrize("who", ["owner", "agent"])
def test_query_count_is_constant(as_user, tenants, who):
    a, _b = tenants
    owner_actor = a.actor(a.owner)
    small = make(a.stores[0], due_at=in_hours(1))
    # One evidence item written directly, so the request keeps its single log row (intake).
    Evidence.objects.create(agency=a.agency, ticket=small, role="buyer", kind="video",
                            url="https://video.example.com/one.mp4")
    items = [{"return_line_item_id": f"L{i}", "sku_id": f"S{i}", "product_name": f"P{i}",
              "refund_amount": {"currency": "USD", "refund_total": "1.00"}} for i in range(5)]
    large = make(a.stores[0], due_at=in_hours(2), return_line_items=items)
    grow(large, owner_actor, log_rows_total=30, images=3, videos=1, seller=2)  # 6 evidence items
    make(a.stores[0], due_at=in_hours(3))  # behind both, so "next in queue" is found the same way for each
    replies.create_quick_reply(owner_actor, title="Hi", body="Hello {buyer_name}")
    assert len(log_rows(small)) == 1 and len(log_rows(large)) == 30
    assert Evidence.objects.unscoped().filter(ticket=small).count() == 1
    assert Evidence.objects.unscoped().filter(ticket=large).count() == 6
    client = as_user(getattr(a, who))
    page(client, small)  # warm up (content types, translations)

    def cost(ticket) -> int:
        with CaptureQueriesContext(connection) as ctx:
            text = page(client, ticket)
        assert text.count('class="log-row') == len(log_rows(ticket))
        return len(ctx.captured_queries)

    few, many = cost(small), cost(large)
    assert few == many <= 20, (few, many)


def test_the_timeline_names_reasons_in_words_not_keys(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.agent)
    text = page(client, ticket)
    name, words = re.search(r'<select id="reject-reason"[^>]*>\s*<option value="">[^<]*</option>\s*'
                            r'<option value="([^"]+)">([^<]+)</option>', text).groups()
    assert post(client, ticket, "reject", {"reason": name}).status_code == 302
    details = re.findall(r"<dt>Reason</dt><dd>([^<]*)</dd>", page(client, ticket))
    assert html.unescape(words) in [html.unescape(d) for d in details]
    assert name not in details and ticket.reason_key not in details
    assert ticket.reason_text in [html.unescape(d) for d in details]  # the intake row: the buyer's reason
