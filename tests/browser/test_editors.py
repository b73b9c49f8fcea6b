"""The quick replies (售后话术库) and auto-rules (自动规则) editors in a real browser: a reply checked for sensitive
words inline, refused on save with its code next to the text, fixed and saved (keyboard only); a rule built from
fields, its dry run (count and sample) before saving; a sub-account without the permission told which role setting
grants it (English and 简体中文)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aftersales import replies, rules
from aftersales import services as aftersales_services
from aftersales.models import AutoRule, QuickReply
from stores import errors
from tests.conftest import platform_return

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def intake(store, **overrides):
    ticket, _created = aftersales_services.intake(store, platform_return(**overrides))
    return ticket


def test_owner_writes_a_reply_the_check_shows_the_word_save_is_refused_then_the_fix_saves(
        page, live_server, tenants, login, shot):
    a, _b = tenants
    store = a.stores[0]
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/replies/")
    expect(page.locator("#scope-all .empty")).to_be_visible()
    page.locator(f"#scope-{store.public_id}").get_by_role("link", name="Add a reply").click()
    expect(page.get_by_label("Where it is offered")).to_have_value(str(store.public_id))

    page.get_by_label("Title", exact=True).fill("Refund arranged")
    body = page.get_by_label("Reply text")
    body.fill("已为您安排极速退款 好评返现 ")
    # The variables beside the text: Insert puts {buyer_name} at the caret (the button is reached by keyboard).
    insert = page.locator("button.insert-variable[data-insert='{buyer_name}']")
    insert.focus()
    page.keyboard.press("Enter")
    expect(body).to_have_value("已为您安排极速退款 好评返现 {buyer_name}")
    expect(body).to_be_focused()

    page.get_by_role("button", name="Check for sensitive words").click()
    check = page.locator("#reply-check")
    expect(check).to_have_class(re.compile(r"\bbad\b"))
    expect(check.locator("mark")).to_have_text(["好评返现"])
    expect(check).to_contain_text(errors.ERR_REPLY_001.code)
    expect(body).to_have_value("已为您安排极速退款 好评返现 {buyer_name}")  # kept, nothing saved
    assert not QuickReply.objects.for_agency(a.agency).exists()
    shot(page, "checked")

    page.get_by_role("button", name="Save", exact=True).click()
    field_error = page.locator("#reply-body-error")
    expect(field_error).to_contain_text(errors.ERR_REPLY_001.code)
    expect(field_error.locator("mark")).to_have_text(["好评返现"])
    expect(page.locator("#reply-error .error-hint")).to_be_visible()
    expect(page.get_by_label("Title", exact=True)).to_have_value("Refund arranged")
    expect(body).to_be_focused()  # the field to fix takes the focus
    assert not QuickReply.objects.for_agency(a.agency).exists()
    shot(page, "refused")

    body.fill("已为您安排极速退款，{buyer_name}，预计{refund_eta}内到账")
    page.keyboard.press("Tab")  # → the check button
    expect(page.get_by_role("button", name="Check for sensitive words")).to_be_focused()
    page.keyboard.press("Tab")  # → save
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/replies/")
    expect(page.locator("ul.messages li.message.success")).to_have_text("Quick reply “Refund arranged” saved.")
    row = page.locator(f"#scope-{store.public_id} tr.reply-row")
    expect(row.locator(".reply-title")).to_have_text("Refund arranged")
    reply = QuickReply.objects.for_agency(a.agency).get()
    assert (reply.store_id, reply.body) == (store.pk, "已为您安排极速退款，{buyer_name}，预计{refund_eta}内到账")
    shot(page, "saved")


def test_owner_builds_a_rule_previews_its_matches_then_saves(page, live_server, tenants, login, shot):
    a, _b = tenants
    store = a.stores[0]
    small = [intake(store, refund_amount={"currency": "USD", "refund_total": f"{n}.00"}) for n in (5, 8, 12)]
    intake(store, refund_amount={"currency": "USD", "refund_total": "80.00"})
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/rules/")
    page.locator(f"#rules-{store.public_id}").get_by_role("link", name="Add a rule here").click()
    expect(page.get_by_label("Applies to")).to_have_value(str(store.public_id))

    page.get_by_label("Rule name").fill("Small refunds: tag")
    page.get_by_label("Refund only (仅退款)").check()
    page.get_by_label("Maximum amount").fill("20")
    page.get_by_label("Currency of the maximum").select_option("USD")
    page.get_by_label("Action", exact=True).select_option("tag")
    expect(page.get_by_label("Quick reply to send")).to_be_hidden()  # only the chosen action's settings
    page.get_by_label("Tags").fill("small, fast-track")
    page.get_by_role("button", name="Preview matches").click()

    result = page.locator("#rule-preview-result")
    expect(result).to_have_attribute("data-would-match", "3")
    expect(result.locator(".preview-count strong")).to_have_text("3 requests of the last 30 days would have matched.")
    expect(result.locator("tr.sample-row .return-id")).to_have_text([t.return_id for t in reversed(small)])
    expect(result.locator("tr.sample-row").first).to_contain_text(store.name)
    expect(result.locator("tr.sample-row").first).to_contain_text("USD 12.00")
    expect(page.get_by_label("Tags")).to_have_value("small, fast-track")  # the form is kept
    assert not AutoRule.objects.for_agency(a.agency).exists()
    shot(page, "preview")

    page.get_by_role("button", name="Save rule").click()
    expect(page).to_have_url(f"{live_server.url}/rules/")
    expect(page.locator("ul.messages li.message.success")).to_have_text("Auto-rule “Small refunds: tag” saved.")
    row = page.locator(f"#rules-{store.public_id} tr.rule-row")
    expect(row.locator(".rule-conditions li")).to_have_text(["Type is Refund only (仅退款)",
                                                             "Refund at most USD 20.00"])
    expect(row.locator(".rule-action")).to_have_text("Tag: small, fast-track")
    rule = AutoRule.objects.for_agency(a.agency).get()
    assert rule.conditions == {"type_in": ["refund_only"], "refund_total_lte": {"amount": "20", "currency": "USD"}}
    shot(page, "saved")


def test_a_sub_account_without_the_permission_is_told_the_role_setting(page, live_server, tenants, login, shot):
    a, _b = tenants
    login(page, live_server, a.viewer)  # analyst: view only
    page.goto(f"{live_server.url}/replies/")
    note = page.locator("#perm-note")
    expect(note).to_contain_text(errors.ERR_PERM_004.code)
    expect(note).to_contain_text(str(errors.ERR_PERM_004.hint))
    expect(page.get_by_role("link", name="Add a reply")).to_have_count(0)
    shot(page, "replies")
    page.goto(f"{live_server.url}/replies/new/")
    expect(page.locator("#perm-error")).to_contain_text(errors.ERR_PERM_004.code)
    expect(page.locator("#reply-form")).to_have_count(0)

    page.get_by_label("Language").select_option(label="简体中文")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.goto(f"{live_server.url}/rules/")
    expect(page.locator("#perm-note")).to_contain_text(errors.ERR_PERM_006.code)
    shot(page, "rules-zh")


def test_rule_form_with_preview_in_simplified_chinese(page, live_server, tenants, login, shot):
    a, _b = tenants
    store = a.stores[0]
    intake(store)
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/rules/new/?scope={store.public_id}")
    page.get_by_label("Language").select_option(label="简体中文")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.locator("#rule-name").fill("色差退款")
    page.locator("#cond-reason-contains").fill("wrong_product")
    page.locator("#rule-preview").click()
    expect(page.locator("#rule-preview-result")).to_have_attribute("data-would-match", "1")
    shot(page, "rule-preview-zh")
    page.goto(f"{live_server.url}/replies/new/")
    shot(page, "reply-form-zh")


def test_deleting_a_reply_or_a_rule_asks_first(page, live_server, tenants, login, shot):
    """Delete is one click away from the save button: it asks, as the team and addresses pages do. Dismissed,
    nothing is sent and the reply stays; accepted, it is deleted (the keyboard's Enter asks the same)."""
    a, _b = tenants
    owner = a.actor(a.owner)
    reply = replies.create_quick_reply(owner, title="Photo please", body="Please send a photo of the label.")
    rule = rules.create_rule(owner, name="Tag it", action="tag", params={"tags": ["x"]}, store=a.stores[0])
    login(page, live_server, a.owner)
    asked: list[str] = []

    def answer(accept: bool):
        def handle(dialog):
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()
        return handle

    for url, button, model, obj, name, done in (
            (f"/replies/{reply.public_id}/", "#reply-delete", QuickReply, reply, "Photo please",
             "Quick reply “Photo please” deleted."),
            (f"/rules/{rule.public_id}/", "#rule-delete", AutoRule, rule, "Tag it", "Auto-rule “Tag it” deleted.")):
        page.goto(f"{live_server.url}{url}")
        page.once("dialog", answer(False))
        page.locator(button).click()
        expect(page).to_have_url(f"{live_server.url}{url}")  # dismissed: still on the form, nothing sent
        assert asked[-1].startswith("Delete the") and f"“{name}”" in asked[-1]
        assert model.objects.for_agency(a.agency).filter(pk=obj.pk).exists()
        shot(page, f"kept-{model.__name__.lower()}")
        page.once("dialog", answer(True))
        page.locator(button).focus()
        page.keyboard.press("Enter")
        expect(page.locator("ul.messages li.message.success")).to_have_text(done)
        assert not model.objects.for_agency(a.agency).filter(pk=obj.pk).exists()
    assert len(asked) == 4
