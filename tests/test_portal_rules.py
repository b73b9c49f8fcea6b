"""The auto-rules editor (自动规则) in the portal: the rules in the order they are tried with their conditions in
words, the structured form turned into the service's conditions and parameters, refusals next to their fields
(values kept), the dry-run preview (count and sample, nothing saved), one save per form key, permissions, other
tenants' ids as not found, and a constant number of queries."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aftersales import replies, rules
from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, AutoRule
from stores import errors
from tests.conftest import platform_return

pytestmark = pytest.mark.django_db

KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
LIST, NEW = "/rules/", "/rules/new/"


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


def edit_url(rule) -> str:
    return f"/rules/{rule.public_id}/"


def make_rule(tenant, **fields) -> AutoRule:
    fields = {"name": "Tag it", "action": "tag", "params": {"tags": ["x"]}, **fields}
    return rules.create_rule(tenant.actor(tenant.owner), **fields)


def intake(store, **overrides) -> AfterSalesRequest:
    ticket, _created = aftersales_services.intake(store, platform_return(**overrides))
    return ticket


def form_data(**overrides) -> dict:
    data = {"name": "Small refunds", "scope": "", "position": "", "active": "on", "action": "tag", "tags": "small",
            "min_amount": "", "min_currency": "USD", "max_amount": "", "max_currency": "USD", "days": "30",
            "intent": "save"}
    data.update(overrides)
    return data


# --- the list -------------------------------------------------------------------------------------------
def test_list_shows_rules_in_order_with_conditions_and_action_in_words(tenants, as_user):
    a, b = tenants
    store = a.stores[0]
    reply = replies.create_quick_reply(a.actor(a.owner), title="Refund soon", body="Refund on its way.")
    make_rule(a, name="Second", store=store, position=5, conditions={"type_in": ["exchange"]})
    make_rule(a, name="First", store=store, position=1, action="reply", params={"reply_id": str(reply.public_id)},
              conditions={"refund_total_lte": {"amount": "20", "currency": "USD"}, "buyer_not_flags":
                          ["serial_returner"], "age_hours_gte": 24})
    make_rule(a, name="Everyone", action="assign", params={"user_ids": [a.agent.pk]})
    make_rule(b, name="Bravo rule")
    text = text_of(as_user(a.owner).get(LIST))
    section = text[text.index(f'id="rules-{store.public_id}"'):text.index('id="rules-all"')]
    assert section.index("First") < section.index("Second")
    assert "Refund at most USD 20.00" in section and "Buyer is not: Serial returner" in section
    assert "Waiting at least 24 hours" in section and "Type is Exchange (换货)" in section
    assert "Reply with a quick reply: “Refund soon”" in section
    agency = text[text.index('id="rules-all"'):]
    assert "Everyone" in agency and "Every new request" in agency
    assert f"Assign (round-robin): {a.agent.username}" in agency
    assert "Bravo rule" not in text


def test_list_costs_the_same_queries_for_one_or_many_rules(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    reply = replies.create_quick_reply(a.actor(a.owner), title="R", body="Refund on its way.")

    def cost() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(LIST)
        assert response.status_code == 200
        return len(ctx.captured_queries)

    make_rule(a, name="One", store=a.stores[0])
    few = cost()
    for i in range(6):
        make_rule(a, name=f"Reply {i}", action="reply", params={"reply_id": str(reply.public_id)},
                  store=a.stores[i % 3])
        make_rule(a, name=f"Assign {i}", action="assign", params={"user_ids": [a.agent.pk]},
                  conditions={"category_in": ["apparel"], "market_in": [a.stores[0].market.code]})
    many = cost()
    assert text_of(client.get(LIST)).count('class="rule-row') == 13
    assert few == many <= 12, (few, many)


def test_a_sub_account_without_team_management_reads_the_rules_and_is_told_the_role_setting(tenants, as_user):
    a, _b = tenants
    rule = make_rule(a, name="Store rule", store=a.stores[0])
    client = as_user(a.agent)
    text = text_of(client.get(LIST))
    assert "Store rule" in text and 'id="perm-note"' in text and errors.ERR_PERM_006.code in text
    assert str(errors.ERR_PERM_006.hint) in text and "/rules/new/" not in text
    assert client.get(NEW).status_code == 403
    response = client.get(edit_url(rule))
    assert response.status_code == 403 and 'id="rule-form"' not in text_of(response)


# --- the structured form --------------------------------------------------------------------------------
def test_the_form_offers_a_labelled_field_for_every_condition_key(tenants, as_user):
    a, _b = tenants
    text = text_of(as_user(a.owner).get(NEW))
    names = set(re.findall(r'name="([a-z_]+)"', text))
    for name in ("type_in", "market_in", "reason_key_in", "reason_key_contains", "min_amount", "max_amount",
                 "category_in", "age_hours_gte", "flag_serial_returner", "action", "reply_id", "user_ids", "tags",
                 "note", "days"):
        assert name in names, name
    for field_id in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', text):
        assert f'for="{field_id}"' in text, field_id
    assert "{" not in text[text.index('id="rule-form"'):].split("</form>")[0].replace("{%", "")  # no raw JSON


def test_create_turns_the_fields_into_the_services_conditions_and_params(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    store = a.stores[0]
    data = form_data(scope=str(store.public_id), type_in=["refund_only", "exchange"], market_in=["US"],
                     reason_key_in="wrong_product\ndamaged, late", reason_key_contains=" size ",
                     min_amount="5", min_currency="USD", max_amount="50.5", max_currency="USD",
                     category_in="apparel, beauty", age_hours_gte="12", flag_serial_returner="has_not",
                     action="tag", tags="small, check", note="ignored: not the chosen action")
    data["idempotency_key"] = form_key(client, NEW)
    response = client.post(NEW, data)
    assert response.status_code == 302 and response.url == LIST
    rule = AutoRule.objects.for_agency(a.agency).get()
    assert rule.store_id == store.pk and rule.is_active and rule.action == "tag"
    assert rule.conditions == {
        "type_in": ["refund_only", "exchange"], "market_in": ["US"], "reason_key_in": ["wrong_product", "damaged",
                                                                                         "late"],
        "reason_key_contains": "size", "refund_total_gte": {"amount": "5", "currency": "USD"},
        "refund_total_lte": {"amount": "50.5", "currency": "USD"}, "category_in": ["apparel", "beauty"],
        "age_hours_gte": 12, "buyer_not_flags": ["serial_returner"]}
    assert rule.params == {"tags": ["small", "check"]}
    assert "Auto-rule “Small refunds” saved." in text_of(client.get(LIST))


def test_refusals_show_their_code_next_to_each_field_and_keep_the_values(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    data = form_data(name="Bad", min_amount="lots", age_hours_gte="soon", action="reply", reply_id="",
                     category_in="apparel", idempotency_key=form_key(client, NEW))
    response = client.post(NEW, data)
    assert response.status_code == 400
    text = text_of(response)
    assert 'id="rule-error"' in text and errors.ERR_VALIDATION.code in text
    for field_id, message in (("cond-min-amount", "An object with an amount"),
                              ("cond-age", "A whole number of hours.")):
        after = text[text.index(f'id="{field_id}"'):]
        error = after[after.index('class="field-error"'):][:300]
        assert errors.ERR_VALIDATION.code in error and message in error, field_id
    assert 'value="lots"' in text and 'value="soon"' in text and 'value="apparel"' in text
    assert 'value="Bad"' in text
    assert not AutoRule.objects.for_agency(a.agency).exists()
    # The conditions fixed, the missing reply is next: the action's own field.
    fixed = form_data(name="Bad", action="reply", reply_id="", idempotency_key=KEY.search(
        response.content.decode()).group(1))
    response = client.post(NEW, fixed)
    text = text_of(response)
    after = text[text.index('id="param-reply"'):]
    assert "Required." in after[after.index('class="field-error"'):][:200]


def test_a_double_submit_creates_one_rule(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    data = form_data(idempotency_key=form_key(client, NEW))
    assert client.post(NEW, data).status_code == 302
    assert client.post(NEW, data).status_code == 302
    assert AutoRule.objects.for_agency(a.agency).count() == 1


# --- the dry run ---------------------------------------------------------------------------------------
def test_preview_shows_the_matching_count_and_a_sample_and_saves_nothing(tenants, as_user):
    a, b = tenants
    store = a.stores[0]
    small = [intake(store, refund_amount={"currency": "USD", "refund_total": "9.00"}) for _ in range(3)]
    intake(store, refund_amount={"currency": "USD", "refund_total": "90.00"})
    intake(b.stores[0], refund_amount={"currency": "USD", "refund_total": "1.00"})
    client = as_user(a.owner)
    data = form_data(max_amount="10", max_currency="USD", intent="preview", idempotency_key=form_key(client, NEW))
    response = client.post(NEW, data)
    assert response.status_code == 200
    text = text_of(response)
    result = text[text.index('id="rule-preview-result"'):]
    assert 'data-would-match="3"' in result
    assert "3 requests of the last 30 days would have matched." in result
    assert result.count('class="sample-row"') == 3
    for ticket in small:
        assert ticket.return_id in result
    assert store.name in result and "USD 9.00" in result and "色差 / colour difference" in result
    assert 'value="10"' in text  # the form kept
    assert not AutoRule.objects.for_agency(a.agency).exists()


def test_preview_of_a_store_rule_looks_at_that_store_only_and_costs_the_same_for_more_matches(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    intake(a.stores[1])
    data = form_data(scope=str(a.stores[0].public_id), intent="preview", days="7")

    def run() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as ctx:
            response = client.post(NEW, data)
        assert response.status_code == 200
        return len(ctx.captured_queries), text_of(response)

    intake(a.stores[0])
    few, text = run()
    assert "1 request of the last 7 days would have matched." in text
    for _ in range(6):
        intake(a.stores[0])
    many, text = run()
    assert "7 requests of the last 7 days would have matched." in text
    assert few == many, (few, many)


def test_preview_refusal_is_shown_with_its_code(tenants, as_user):
    a, _b = tenants
    client = as_user(a.owner)
    response = client.post(NEW, form_data(intent="preview", days="0"))
    assert response.status_code == 400
    text = text_of(response)
    after = text[text.index('id="preview-days"'):]
    assert errors.ERR_VALIDATION.code in after[after.index('class="field-error"'):][:200]


# --- edit and delete ------------------------------------------------------------------------------------
def test_edit_is_filled_from_the_rule_and_keeps_the_round_robin_when_only_the_name_changes(tenants, as_user):
    a, _b = tenants
    rule = make_rule(a, name="Assign", action="assign", params={"user_ids": [a.agent.pk]}, store=a.stores[0],
                     conditions={"reason_key_contains": "size", "buyer_flags": ["serial_returner"]})
    AutoRule.objects.filter(pk=rule.pk).update(params={"user_ids": [a.agent.pk], "_cursor": {"1": 0}})
    client = as_user(a.owner)
    text = text_of(client.get(edit_url(rule)))
    assert 'value="Assign"' in text and 'value="size"' in text
    assert f'value="{a.agent.pk}" checked' in text and '<option value="has" selected>' in text
    data = {"idempotency_key": form_key(client, edit_url(rule)), "name": "Assign VIP", "position": "3",
            "active": "", "action": "assign", "user_ids": [str(a.agent.pk)], "reason_key_contains": "size",
            "flag_serial_returner": "has", "days": "30", "intent": "save"}
    response = client.post(edit_url(rule), data)
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.position, rule.is_active) == ("Assign VIP", 3, False)
    assert rule.params == {"user_ids": [a.agent.pk], "_cursor": {"1": 0}}
    assert rule.conditions == {"reason_key_contains": "size", "buyer_flags": ["serial_returner"]}


def test_delete_and_other_tenants_rules(tenants, as_user):
    a, b = tenants
    rule, foreign = make_rule(a), make_rule(b)
    client = as_user(a.owner)
    for url in (edit_url(foreign), f"/rules/{foreign.public_id}/delete/"):
        response = client.post(url, form_data(idempotency_key=form_key(client, NEW)))
        assert response.status_code == 404 and errors.ERR_NOT_FOUND.code in text_of(response)
    assert client.get(edit_url(foreign)).status_code == 404
    assert AutoRule.objects.for_agency(b.agency).count() == 1
    page = client.get(edit_url(rule)).content.decode()
    assert 'data-confirm="Delete the auto-rule “Tag it”?' in page  # editors.js asks before sending it
    key = KEY.findall(page)[1]
    assert client.post(f"/rules/{rule.public_id}/delete/", {"idempotency_key": key}).status_code == 302
    assert client.post(f"/rules/{rule.public_id}/delete/", {"idempotency_key": key}).status_code == 302
    assert not AutoRule.objects.for_agency(a.agency).exists()
    assert "sent twice; it was carried out once. Auto-rule “Tag it” deleted." in text_of(client.get("/rules/"))
