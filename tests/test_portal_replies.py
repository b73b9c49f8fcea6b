"""The quick replies editor (售后话术库) in the portal: the list by scope, the sensitive-word check without saving,
refusals with their code next to the field (values kept), one save per form key, permissions with the role setting
named, other tenants' ids as not found, and a constant number of queries."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aftersales import replies
from aftersales.models import QuickReply
from stores import errors

pytestmark = pytest.mark.django_db

KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
LIST, NEW = "/replies/", "/replies/new/"


def edit_url(reply) -> str:
    return f"/replies/{reply.public_id}/"


def delete_url(reply) -> str:
    return f"/replies/{reply.public_id}/delete/"


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def text_of(response) -> str:
    return html.unescape(response.content.decode())


def form_key(client, url: str) -> str:
    return KEY.search(client.get(url).content.decode()).group(1)


def owner_reply(tenant, title="Refund on its way", body="已为您安排极速退款，预计2小时内到账", store=None):
    return replies.create_quick_reply(tenant.actor(tenant.owner), title=title, body=body, store=store)


# --- the list -------------------------------------------------------------------------------------------
def test_list_shows_every_scope_with_its_replies_and_nothing_of_the_other_tenant(tenants, as_user):
    a, b = tenants
    owner_reply(a, title="Agency hello")
    owner_reply(a, title="Store photo", body="Please send a photo, {buyer_name}.", store=a.stores[1])
    owner_reply(b, title="Bravo secret")
    client = as_user(a.owner)
    text = text_of(client.get(LIST))
    assert 'id="scope-all"' in text and "Agency hello" in text
    store_section = text[text.index(f'id="scope-{a.stores[1].public_id}"'):]
    assert "Store photo" in store_section and "Please send a photo, {buyer_name}." in store_section
    assert "Bravo secret" not in text and "bravo store" not in text
    assert text.count('class="reply-row"') == 2
    assert f'href="/replies/new/?scope={a.stores[0].public_id}"' in text  # the owner may add anywhere
    assert 'href="/replies/new/?scope="' in text  # … and agency-wide


def test_list_filters_by_scope(tenants, as_user):
    a, _b = tenants
    owner_reply(a, title="Agency hello")
    owner_reply(a, title="Store photo", body="Photo please.", store=a.stores[1])
    client = as_user(a.owner)
    text = text_of(client.get(LIST, {"scope": str(a.stores[1].public_id)}))
    assert "Store photo" in text and "Agency hello" not in text
    text = text_of(client.get(LIST, {"scope": ""}))
    assert "Agency hello" in text and "Store photo" not in text


def test_list_costs_the_same_queries_for_one_or_many_replies_and_stores(tenants, as_user):
    a, _b = tenants
    client = as_user(a.agent)

    def cost() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(LIST)
        assert response.status_code == 200
        return len(ctx.captured_queries)

    owner_reply(a, title="One", store=a.stores[0])
    few = cost()
    for i in range(8):
        owner_reply(a, title=f"Agency {i}")
        owner_reply(a, title=f"Store {i}", store=a.stores[i % 2])
    many = cost()
    assert text_of(client.get(LIST)).count('class="reply-row"') == 17
    assert few == many <= 12, (few, many)


def test_a_sub_account_without_the_permission_reads_the_list_and_is_told_the_role_setting(tenants, as_user):
    a, _b = tenants
    owner_reply(a, title="Agency hello")
    client = as_user(a.viewer)  # analyst: view only
    text = text_of(client.get(LIST))
    assert "Agency hello" in text
    assert 'id="perm-note"' in text and errors.ERR_PERM_004.code in text
    assert str(errors.ERR_PERM_004.hint) in text
    assert "/replies/new/" not in text and not re.search(r'href="/replies/[0-9a-f-]{36}/"', text)
    response = client.get(NEW)
    assert response.status_code == 403
    assert errors.ERR_PERM_004.code in text_of(response) and 'id="reply-form"' not in text_of(response)


def test_an_agent_may_add_only_to_the_stores_their_role_covers(tenants, as_user):
    a, _b = tenants
    client = as_user(a.agent)  # manage_quick_replies on stores 0 and 1 only
    text = text_of(client.get(NEW))
    select = text[text.index('id="reply-scope"'):]
    options = re.findall(r'<option value="([^"]*)"', select[:select.index("</select>")])
    assert options == [str(a.stores[0].public_id), str(a.stores[1].public_id)]  # no agency-wide, no store 2
    # A crafted agency-wide scope: the service's refusal, with the role setting named.
    response = client.post(NEW, {"idempotency_key": form_key(client, NEW), "scope": "", "title": "T", "body": "B",
                                 "intent": "save"})
    assert response.status_code == 403
    assert errors.ERR_PERM_004.code in text_of(response)
    assert not QuickReply.objects.for_agency(a.agency).exists()


# --- the check and the save ---------------------------------------------------------------------------
def test_check_shows_the_sensitive_words_inline_and_saves_nothing(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    response = client.post(NEW, {"idempotency_key": form_key(client, NEW), "scope": str(a.stores[0].public_id),
                                 "title": "Contact", "body": "加我微信 abc123, {buyer_name}", "intent": "check"})
    assert response.status_code == 200
    text = text_of(response)
    check = text[text.index('id="reply-check"'):]
    assert errors.ERR_REPLY_001.code in check
    assert "<mark>加我</mark>" in check and "<mark>微信</mark>" in check
    assert "加我微信 abc123, {buyer_name}</textarea>" in text and 'value="Contact"' in text  # values kept
    assert not QuickReply.objects.for_agency(a.agency).exists()

    clean = client.post(NEW, {"scope": str(a.stores[0].public_id), "title": "Fine", "body": "Thanks, {buyer_name}!",
                              "intent": "check"})
    assert 'class="reply-check ok"' in text_of(clean)
    assert not QuickReply.objects.for_agency(a.agency).exists()


def test_check_of_an_unknown_variable_shows_its_code_next_to_the_text(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    response = client.post(NEW, {"scope": "", "title": "Hi", "body": "Hi {buyer}", "intent": "check"})
    assert response.status_code == 400
    text = text_of(response)
    body_error = text[text.index('id="reply-body-error"'):]
    assert errors.ERR_REPLY_002.code in body_error[:400] and "{buyer}" in body_error[:400]


def test_save_with_a_sensitive_word_is_refused_with_its_code_next_to_the_field_then_the_fix_saves(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    store = a.stores[0]
    data = {"idempotency_key": form_key(client, NEW), "scope": str(store.public_id), "title": "Refund",
            "body": "好评返现 for {buyer_name}", "intent": "save"}
    response = client.post(NEW, data)
    assert response.status_code == 400
    text = text_of(response)
    field = text[text.index('id="reply-body-error"'):]
    field = field[:field.index("</div>")]
    assert errors.ERR_REPLY_001.code in field and "<mark>好评返现</mark>" in field
    assert 'id="reply-error"' in text and str(errors.ERR_REPLY_001.hint) in text  # the block with the hint
    assert "好评返现 for {buyer_name}</textarea>" in text and 'value="Refund"' in text
    assert f'<option value="{store.public_id}" selected>' in text
    assert not QuickReply.objects.for_agency(a.agency).exists()

    fixed = {**data, "idempotency_key": KEY.search(response.content.decode()).group(1),
             "body": "已为您安排极速退款, {buyer_name}"}
    response = client.post(NEW, fixed)
    assert response.status_code == 302 and response.url == LIST
    reply = QuickReply.objects.for_agency(a.agency).get()
    assert (reply.store_id, reply.title, reply.body) == (store.pk, "Refund", "已为您安排极速退款, {buyer_name}")
    assert "Quick reply “Refund” saved." in text_of(client.get(LIST))


def test_a_double_submit_saves_once(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    data = {"idempotency_key": form_key(client, NEW), "scope": "", "title": "Once", "body": "Only once.",
            "intent": "save"}
    assert client.post(NEW, data).status_code == 302
    second = client.post(NEW, data)
    assert second.status_code == 302
    assert QuickReply.objects.for_agency(a.agency).count() == 1
    assert "sent twice; it was carried out once" in text_of(client.get(LIST))


def test_a_blank_title_is_refused_next_to_the_title(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    response = client.post(NEW, {"idempotency_key": form_key(client, NEW), "scope": "", "title": " ",
                                 "body": "Hello", "intent": "save"})
    assert response.status_code == 400
    text = text_of(response)
    assert errors.ERR_VALIDATION.code in text[text.index('id="reply-title-error"'):][:200]
    assert "Hello</textarea>" in text


def test_the_variables_of_parse_template_are_listed_beside_the_text(tenants, as_user):
    a, _b = tenants
    text = text_of(as_user(a.owner).get(NEW))
    aside = text[text.index('class="variables"'):]
    for name in replies.VARIABLES:
        assert "<code>{" + name + "}</code>" in aside
    assert 'for="reply-title"' in text and 'for="reply-body"' in text and 'for="reply-scope"' in text


# --- edit and delete ------------------------------------------------------------------------------------
def test_edit_keeps_the_scope_checks_the_store_market_and_saves(tenants, as_user):
    a, _b = tenants
    reply = owner_reply(a, title="Old", body="Old text", store=a.stores[0])
    client = as_user(a.agent)
    url = edit_url(reply)
    text = text_of(client.get(url))
    assert 'value="Old"' in text and "Old text</textarea>" in text and 'id="reply-scope"' not in text
    refused = client.post(url, {"idempotency_key": form_key(client, url), "title": "New",
                                "body": "write to me at a@b.com", "intent": "save"})
    assert refused.status_code == 400 and "<mark>a@b.com</mark>" in text_of(refused)
    assert QuickReply.objects.for_agency(a.agency).get().body == "Old text"
    done = client.post(url, {"idempotency_key": form_key(client, url), "title": "New", "body": "New text",
                             "intent": "save"})
    assert done.status_code == 302
    reply.refresh_from_db()
    assert (reply.title, reply.body, reply.store_id) == ("New", "New text", a.stores[0].pk)


def test_an_agency_wide_reply_is_read_only_for_an_agent(tenants, as_user):
    a, _b = tenants
    reply = owner_reply(a)
    client = as_user(a.agent)
    response = client.get(edit_url(reply))
    assert response.status_code == 403
    text = text_of(response)
    assert errors.ERR_PERM_004.code in text and 'id="reply-form"' not in text and reply.body in text


def test_delete_once_per_form_key(tenants, as_user):
    a, _b = tenants
    reply = owner_reply(a)
    client = as_user(a.owner)
    key = KEY.findall(client.get(edit_url(reply)).content.decode())[1]  # the delete form's key
    first = client.post(delete_url(reply), {"idempotency_key": key})
    assert first.status_code == 302 and first.url == LIST
    second = client.post(delete_url(reply), {"idempotency_key": key})
    assert second.status_code == 302  # the first answer again, not a 404
    assert not QuickReply.objects.for_agency(a.agency).exists()
    text = text_of(client.get(LIST))
    assert "sent twice; it was carried out once. Quick reply “Refund on its way” deleted." in text


def test_another_tenants_reply_is_not_found(tenants, as_user):
    a, b = tenants
    foreign = owner_reply(b)
    client = as_user(a.owner)
    assert client.get(edit_url(foreign)).status_code == 404
    response = client.post(edit_url(foreign), {"idempotency_key": form_key(client, NEW), "title": "x",
                                                "body": "y", "intent": "save"})
    assert response.status_code == 404 and errors.ERR_NOT_FOUND.code in text_of(response)
    response = client.post(delete_url(foreign), {"idempotency_key": form_key(client, NEW)})
    assert response.status_code == 404
    assert QuickReply.objects.for_agency(b.agency).get().title == foreign.title
    # A crafted scope of the other tenant's store: not found, nothing saved.
    response = client.post(NEW, {"idempotency_key": form_key(client, NEW), "scope": str(b.stores[0].public_id),
                                 "title": "x", "body": "y", "intent": "save"})
    assert response.status_code == 404
    assert not QuickReply.objects.for_agency(a.agency).exists()
