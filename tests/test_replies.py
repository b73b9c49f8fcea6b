"""售后话术库 and 敏感词: variables, the seeded word list, checks on save and on send, scoping and the log."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from aftersales import oplog, replies, services
from aftersales.models import OperationLog, QuickReply, SensitiveWord
from aftersales.oplog import Performer
from stores.errors import AppError
from stores.models import Market
from tests.conftest import platform_return

CLEAN_ZH = "已为您安排极速退款，预计2小时内到账"


def raises(code, fn, *args, **kwargs) -> AppError:
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def reply_rows(ticket):
    return list(OperationLog.objects.filter(ticket=ticket, action="reply"))


@pytest.fixture
def ticket(tenants):
    a, _b = tenants
    created, _ = services.intake(a.stores[0], platform_return(
        buyer_name="Alex Buyer", order_id="576461413038785752", return_id="4035123456789012345"))
    return created


@pytest.fixture
def agent(tenants):
    a, _b = tenants
    return a.actor(a.agent)


# --- the seeded list (migration 0003) ------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("有问题请拨打13812345678", ["13812345678"]),
    ("call me on +1 415-555-0134 today", ["+1 415-555-0134"]),
    ("电话 138 1234 5678", ["138 1234 5678"]),
    ("my wechat: alex_88", ["wechat"]),
    ("加vx：alex88", ["vx"]),
    ("see https://evil.example/deal，谢谢", ["https://evil.example/deal"]),
    ("or www.cheap-deals.cn", ["www.cheap-deals.cn"]),
    ("write to alex@mail.example.com", ["alex@mail.example.com"]),
    ("好评返现5元", ["好评返现"]),
    ("给个五星好评吧", ["五星好评"]),
    ("WhatsApp me", ["WhatsApp"]),
    ("Line ID: alex", ["Line ID"]),
    ("telegram @alex", ["telegram"]),
    ("QQ 12345678", ["QQ"]),
    ("we can do a bank transfer instead", ["bank transfer"]),
    ("Cash back for review!", ["Cash back for review"]),
    ("加我私下交易", ["加我", "私下交易"]),
])
def test_seeded_list_catches_contact_details_and_off_platform_wording(db, text, expected):
    assert replies.check_text(text, "US") == expected


@pytest.mark.parametrize("text", [
    CLEAN_ZH,
    "您好，您的退款 25.00 USD 已原路退回，请注意查收。",
    "Your refund of 1500000.00 IDR will arrive within 2 hours.",
    "预计 2026-11-05 12:00 前到账",
    "订单 576461413038785752 已退款",
    "Please return the item online before the deadline: Friday.",
    "We will handle it quickly, thank you for your patience.",
])
def test_ordinary_replies_pass(db, text):
    assert replies.check_text(text, "US") == []


def test_evasions_by_full_width_and_zero_width_characters_are_caught(db):
    assert replies.check_text("ＷｅＣｈａｔ：ａｌｅｘ", "US") == ["WeChat"]
    assert replies.check_text("微\u200b信号 alex", "US") == ["微信"]
    assert replies.check_text("１３８１２３４５６７８", "US") == ["13812345678"]


def test_a_match_inside_a_longer_one_is_reported_once(db):
    assert replies.check_text("好评返现，返现10元", "US") == ["好评返现", "返现"]
    assert replies.check_text("好评返现", "US") == ["好评返现"]


def test_market_words_apply_only_in_their_market(db):
    uk = Market.objects.get(code="UK")
    SensitiveWord.objects.create(market=uk, kind=SensitiveWord.Kind.WORD, value="Quid Deal")
    assert replies.check_text("a quid deal for you", "UK") == ["quid deal"]
    assert replies.check_text("a quid deal for you", "US") == []
    assert replies.check_text("a quid deal for you", None) == []
    assert replies.check_text("a quid deal for you", None, all_markets=True) == ["quid deal"]


def test_inactive_rows_are_ignored(db):
    SensitiveWord.objects.filter(value="返现").update(is_active=False)
    assert replies.check_text("返现", "US") == []


def test_a_broken_pattern_is_skipped_with_a_warning(db, caplog):
    SensitiveWord.objects.create(kind=SensitiveWord.Kind.PATTERN, value="(unclosed[", label="broken")
    with caplog.at_level(logging.WARNING, logger="aftersales.replies"):
        assert replies.check_text("加我微信", "US") == ["加我", "微信"]
    assert "(unclosed[" in caplog.text


# --- templates -------------------------------------------------------------------------------------------
def test_unknown_variable_is_named(db):
    error = raises("ERR_REPLY_002", replies.parse_template, "Hi {buyer}, order {order_id} {coupon}")
    assert error.fields == {"body": ["{buyer}", "{coupon}"]}
    assert error.data["variables"] == ["{buyer}", "{coupon}"]
    assert "{buyer}" in error.detail and "{coupon}" in error.detail


@pytest.mark.parametrize("body", ["Hi {buyer_name", "Hi buyer_name}", "{}", "{buyer_name.__class__}",
                                  "{order_id!r}", "{refund_amount:>20}", "{ buyer_name }", "{{buyer_name}"])
def test_malformed_or_format_tricks_are_refused(db, body):
    raises("ERR_REPLY_002", replies.parse_template, body)


def test_doubled_braces_are_literal(tenants, ticket):
    reply = QuickReply(body="{{order_id}} is {order_id}")
    assert replies.render_reply(reply, ticket) == "{order_id} is 576461413038785752"


def test_render_fills_every_variable(settings, tenants, ticket):
    a, _b = tenants
    body = "{buyer_name}|{order_id}|{return_id}|{refund_amount}|{refund_eta}|{store_name}"
    reply = QuickReply(body=body)
    assert replies.render_reply(reply, ticket) == (
        f"Alex Buyer|576461413038785752|4035123456789012345|25.00 USD|2 hours|{a.stores[0].name}")
    settings.QUICK_REPLY_REFUND_ETA = "24 小时"
    assert replies.render_reply(QuickReply(body="{refund_eta}"), ticket) == "24 小时"


def test_refund_amount_follows_the_money(tenants, ticket):
    a, _b = tenants
    agent = Performer.of(a.actor(a.agent))
    body = QuickReply(body="{refund_amount}")
    services.approve(agent, ticket.pk, "OFFER_PARTIAL_REFUND", partial_refund="10.5", currency="USD")
    ticket.refresh_from_db()
    assert replies.render_reply(body, ticket) == "10.50 USD"
    services.buyer_accepted_offer(ticket.pk)
    services.refund(agent, ticket.pk)
    ticket.refresh_from_db()
    assert ticket.refunded_amount == Decimal("10.50")
    assert replies.render_reply(body, ticket) == "10.50 USD"


# --- maintaining the library ------------------------------------------------------------------------------
def test_agent_creates_store_replies_in_order(tenants, agent):
    a, _b = tenants
    first = replies.create_quick_reply(agent, title=" 极速退款 ", body=CLEAN_ZH, store=a.stores[0])
    second = replies.create_quick_reply(agent, title="Thanks", body="Thank you, {buyer_name}!", store=a.stores[0].pk)
    third = replies.create_quick_reply(agent, title="Eta", body="{refund_eta}", store=str(a.stores[0].public_id))
    assert (first.title, first.store_id, first.agency_id) == ("极速退款", a.stores[0].pk, a.agency.pk)
    assert [first.position, second.position, third.position] == [0, 1, 2]


def test_save_is_refused_with_the_words_in_fields(tenants, agent):
    a, _b = tenants
    error = raises("ERR_REPLY_001", replies.create_quick_reply, agent, title="bad",
                   body="加我微信 alex88，好评返现", store=a.stores[0])
    assert error.fields == {"body": ["加我", "微信", "好评返现"]}
    assert not QuickReply.objects.for_agency(a.agency).exists()


def test_save_uses_the_stores_market_and_agency_wide_uses_every_market(tenants, agent):
    a, _b = tenants
    market = a.stores[0].market
    SensitiveWord.objects.create(market=market, kind=SensitiveWord.Kind.WORD, value="local slang")
    raises("ERR_REPLY_001", replies.create_quick_reply, agent, title="t", body="local slang", store=a.stores[0])
    assert a.stores[1].market != market
    replies.create_quick_reply(agent, title="t", body="local slang", store=a.stores[1])
    owner = a.actor(a.owner)
    error = raises("ERR_REPLY_001", replies.create_quick_reply, owner, title="t", body="local slang")
    assert error.fields == {"body": ["local slang"]}


@pytest.mark.parametrize(("title", "body", "field"), [
    ("x" * 101, "ok", "title"), ("ok", "x" * 2001, "body"), ("  ", "ok", "title"), ("ok", "", "body")])
def test_length_caps(tenants, agent, title, body, field):
    a, _b = tenants
    error = raises("ERR_VALIDATION", replies.create_quick_reply, agent, title=title, body=body, store=a.stores[0])
    assert list(error.fields) == [field]


def test_length_caps_are_inclusive(tenants, agent):
    a, _b = tenants
    replies.create_quick_reply(agent, title="x" * 100, body="好" * 2000, store=a.stores[0])


def test_unknown_variable_on_save(tenants, agent):
    a, _b = tenants
    error = raises("ERR_REPLY_002", replies.create_quick_reply, agent, title="t", body="Hi {name}", store=a.stores[0])
    assert error.fields == {"body": ["{name}"]}


def test_permissions_for_maintenance(tenants, agent):
    a, b = tenants
    raises("ERR_PERM_004", replies.create_quick_reply, a.actor(a.viewer), title="t", body="ok", store=a.stores[0])
    raises("ERR_PERM_004", replies.create_quick_reply, agent, title="t", body="ok")  # agency-wide: owner only
    raises("ERR_NOT_FOUND", replies.create_quick_reply, agent, title="t", body="ok", store=a.stores[2])
    raises("ERR_NOT_FOUND", replies.create_quick_reply, a.actor(a.outsider), title="t", body="ok", store=a.stores[0])
    raises("ERR_NOT_FOUND", replies.create_quick_reply, b.actor(b.owner), title="t", body="ok", store=a.stores[0])
    raises("ERR_NOT_FOUND", replies.create_quick_reply, agent, title="t", body="ok", store="junk")
    wide = replies.create_quick_reply(a.actor(a.owner), title="t", body="ok")
    assert wide.store_id is None


def test_up_to_fifty_per_scope_by_default(tenants, agent):
    a, _b = tenants
    assert replies.max_per_scope() == 50
    QuickReply.objects.bulk_create([QuickReply(agency=a.agency, store=a.stores[0], title=f"r{i}", body="ok",
                                               position=i) for i in range(49)])
    fiftieth = replies.create_quick_reply(agent, title="50", body="ok", store=a.stores[0])
    assert fiftieth.position == 49
    error = raises("ERR_VALIDATION", replies.create_quick_reply, agent, title="51", body="ok", store=a.stores[0])
    assert error.data == {"max": 50}


def test_the_cap_counts_each_scope_separately(settings, tenants, agent):
    a, _b = tenants
    settings.QUICK_REPLY_MAX_PER_SCOPE = 1
    owner = a.actor(a.owner)
    replies.create_quick_reply(agent, title="s0", body="ok", store=a.stores[0])
    replies.create_quick_reply(agent, title="s1", body="ok", store=a.stores[1])
    replies.create_quick_reply(owner, title="wide", body="ok")
    raises("ERR_VALIDATION", replies.create_quick_reply, agent, title="again", body="ok", store=a.stores[0])
    raises("ERR_VALIDATION", replies.create_quick_reply, owner, title="again", body="ok")


def test_update_rechecks_the_text(tenants, agent):
    a, _b = tenants
    reply = replies.create_quick_reply(agent, title="t", body="ok", store=a.stores[0])
    updated = replies.update_quick_reply(agent, reply.public_id, title="New", body=CLEAN_ZH, position=7)
    assert (updated.title, updated.body, updated.position) == ("New", CLEAN_ZH, 7)
    error = raises("ERR_REPLY_001", replies.update_quick_reply, agent, reply.pk, body="see www.x.cn")
    assert error.fields == {"body": ["www.x.cn"]}
    raises("ERR_REPLY_002", replies.update_quick_reply, agent, reply.pk, body="{nope}")
    raises("ERR_VALIDATION", replies.update_quick_reply, agent, reply.pk, title="")
    raises("ERR_VALIDATION", replies.update_quick_reply, agent, reply.pk, position=-1)
    reply.refresh_from_db()
    assert (reply.title, reply.body, reply.position) == ("New", CLEAN_ZH, 7)


def test_update_and_delete_permissions(tenants, agent):
    a, b = tenants
    owner = a.actor(a.owner)
    store_reply = replies.create_quick_reply(agent, title="t", body="ok", store=a.stores[0])
    wide = replies.create_quick_reply(owner, title="w", body="ok")
    raises("ERR_PERM_004", replies.update_quick_reply, a.actor(a.viewer), store_reply.pk, title="x")
    raises("ERR_PERM_004", replies.delete_quick_reply, a.actor(a.viewer), store_reply.pk)
    raises("ERR_PERM_004", replies.update_quick_reply, agent, wide.pk, title="x")
    raises("ERR_PERM_004", replies.delete_quick_reply, agent, wide.pk)
    for other in (b.actor(b.owner), b.actor(b.agent)):
        raises("ERR_NOT_FOUND", replies.update_quick_reply, other, store_reply.public_id, title="x")
        raises("ERR_NOT_FOUND", replies.delete_quick_reply, other, wide.public_id)
    raises("ERR_NOT_FOUND", replies.update_quick_reply, agent, "not-a-uuid", title="x")
    replies.delete_quick_reply(agent, store_reply.public_id)
    replies.update_quick_reply(owner, wide.pk, title="Wide")
    replies.delete_quick_reply(owner, wide.pk)
    assert not QuickReply.objects.for_agency(a.agency).exists()


def test_the_selector_offers_agency_wide_and_the_stores_own(tenants, agent):
    a, b = tenants
    owner = a.actor(a.owner)
    wide = replies.create_quick_reply(owner, title="wide", body="ok")
    s0 = replies.create_quick_reply(agent, title="s0", body="ok", store=a.stores[0])
    s2 = replies.create_quick_reply(owner, title="s2", body="ok", store=a.stores[2])
    replies.create_quick_reply(b.actor(b.owner), title="theirs", body="ok")
    assert list(replies.quick_replies_for_actor(agent, a.stores[0])) == [wide, s0]
    assert list(replies.quick_replies_for_actor(agent, str(a.stores[0].public_id))) == [wide, s0]
    assert list(replies.quick_replies_for_actor(agent, a.stores[2])) == [wide]  # not granted: its replies stay hidden
    assert list(replies.quick_replies_for_actor(owner, a.stores[2].pk)) == [wide, s2]
    assert list(replies.quick_replies_for_actor(agent)) == [wide]
    assert list(replies.quick_replies_for_actor(a.actor(a.outsider), a.stores[0])) == [wide]
    assert [r.title for r in replies.quick_replies_for_actor(b.actor(b.owner), a.stores[0])] == ["theirs"]
    assert not replies.quick_replies_for_actor(None).exists()


# --- sending ---------------------------------------------------------------------------------------------
def test_send_renders_logs_one_row_and_keeps_the_state(tenants, ticket, agent):
    a, _b = tenants
    reply = replies.create_quick_reply(agent, title="t", body="{buyer_name}，订单{order_id}：" + CLEAN_ZH,
                                       store=a.stores[0])
    sent = replies.send_reply(Performer.of(agent), ticket.public_id, reply_id=reply.public_id)
    assert sent == "Alex Buyer，订单576461413038785752：" + CLEAN_ZH
    [row] = reply_rows(ticket)
    assert row.ok and row.actor_user_id == a.agent.pk
    assert row.payload == {"reply_id": str(reply.public_id), "text": sent}
    assert row.state_before == row.state_after == ticket.state == "pending_review"
    ticket.refresh_from_db()
    assert ticket.state == "pending_review"


def test_send_free_text_and_agency_wide_reply(tenants, ticket, agent):
    a, _b = tenants
    wide = replies.create_quick_reply(a.actor(a.owner), title="w", body="{refund_amount} → {store_name}")
    performer = Performer.of(agent)
    assert replies.send_reply(performer, ticket.pk, reply_id=wide.pk) == f"25.00 USD → {a.stores[0].name}"
    # A hand-typed order id is the platform's own number, not a phone number.
    assert replies.send_reply(performer, ticket.pk, text=" 订单 576461413038785752 已退款 ") == (
        "订单 576461413038785752 已退款")
    assert [r.ok for r in reply_rows(ticket)] == [True, True]


def test_platform_ids_are_not_taken_for_phone_numbers(tenants, agent):
    a, _b = tenants
    # A 10-digit order id looks exactly like a phone number to the seeded pattern.
    target, _ = services.intake(a.stores[0], platform_return(order_id="4155550134", return_id="4155550135"))
    assert replies.check_text("4155550134", "US") == ["4155550134"]
    reply = replies.create_quick_reply(agent, title="t", body="订单 {order_id} / {return_id} 已退款", store=a.stores[0])
    performer = Performer.of(agent)
    assert replies.send_reply(performer, target.pk, reply_id=reply.pk) == "订单 4155550134 / 4155550135 已退款"
    assert replies.send_reply(performer, target.pk, text="订单 4155550134 已退款") == "订单 4155550134 已退款"
    # Any other number of that shape is still refused.
    raises("ERR_REPLY_001", replies.send_reply, performer, target.pk, text="call 4155550199")
    assert [r.error_code for r in reply_rows(target)] == ["", "", "ERR_REPLY_001"]


def test_send_is_refused_when_a_variable_brings_in_a_hit(tenants, agent):
    a, _b = tenants
    target, _ = services.intake(a.stores[0], platform_return(buyer_name="Alex https://evil.example/shop"))
    reply = replies.create_quick_reply(agent, title="t", body="您好 {buyer_name}，" + CLEAN_ZH, store=a.stores[0])
    error = raises("ERR_REPLY_001", replies.send_reply, Performer.of(agent), target.pk, reply_id=reply.pk)
    assert error.fields == {"text": ["https://evil.example/shop"]}
    [row] = reply_rows(target)
    assert row.error_code == "ERR_REPLY_001"
    assert row.payload["words"] == ["https://evil.example/shop"]
    assert "Alex https://evil.example/shop" in row.payload["text"]


def test_send_is_refused_for_free_text_and_for_words_added_after_saving(tenants, ticket, agent):
    a, _b = tenants
    performer = Performer.of(agent)
    error = raises("ERR_REPLY_001", replies.send_reply, performer, ticket.pk, text="加我 vx alex88")
    assert error.fields == {"text": ["加我", "vx"]}
    reply = replies.create_quick_reply(agent, title="t", body="special bonus for you", store=a.stores[0])
    SensitiveWord.objects.create(market=a.stores[0].market, kind=SensitiveWord.Kind.WORD, value="special bonus")
    raises("ERR_REPLY_001", replies.send_reply, performer, ticket.pk, reply_id=reply.pk)
    assert [r.error_code for r in reply_rows(ticket)] == ["ERR_REPLY_001", "ERR_REPLY_001"]


@pytest.mark.parametrize(("kwargs", "code"), [
    ({}, "ERR_VALIDATION"),
    ({"reply_id": 1, "text": "both"}, "ERR_VALIDATION"),
    ({"text": "   "}, "ERR_VALIDATION"),
    ({"text": "x" * 2001}, "ERR_VALIDATION"),
    ({"reply_id": "00000000-0000-0000-0000-000000000000"}, "ERR_NOT_FOUND"),
])
def test_send_input_errors_write_one_failure_row(ticket, agent, kwargs, code):
    raises(code, replies.send_reply, Performer.of(agent), ticket.pk, **kwargs)
    assert [r.error_code for r in reply_rows(ticket)] == [code]


def test_send_needs_handle_aftersales(tenants, ticket):
    a, _b = tenants
    raises("ERR_PERM_001", replies.send_reply, Performer.of(a.actor(a.viewer)), ticket.pk, text=CLEAN_ZH)
    [row] = reply_rows(ticket)
    assert row.error_code == "ERR_PERM_001" and row.actor_user_id == a.viewer.pk


def test_other_tenants_and_other_stores(tenants, ticket, agent):
    a, b = tenants
    theirs = replies.create_quick_reply(b.actor(b.owner), title="t", body="ok")
    other_store = replies.create_quick_reply(agent, title="t", body="ok", store=a.stores[1])
    performer = Performer.of(agent)
    # Their reply on our request, and a reply of another store: not found, logged on our request.
    raises("ERR_NOT_FOUND", replies.send_reply, performer, ticket.pk, reply_id=theirs.public_id)
    raises("ERR_NOT_FOUND", replies.send_reply, performer, ticket.pk, reply_id=other_store.pk)
    assert [r.error_code for r in reply_rows(ticket)] == ["ERR_NOT_FOUND", "ERR_NOT_FOUND"]
    # Our request for them: not found, and nothing logged.
    raises("ERR_NOT_FOUND", replies.send_reply, Performer.of(b.actor(b.owner)), ticket.pk, text=CLEAN_ZH)
    assert len(reply_rows(ticket)) == 2
    assert not replies.quick_replies_for_actor(agent).filter(pk=theirs.pk).exists()


def test_a_system_performer_may_send_an_agency_reply(tenants, ticket):
    a, b = tenants
    wide = replies.create_quick_reply(a.actor(a.owner), title="w", body=CLEAN_ZH)
    theirs = replies.create_quick_reply(b.actor(b.owner), title="t", body="ok")
    assert replies.send_reply(oplog.SYSTEM, ticket.pk, reply_id=wide.pk) == CLEAN_ZH
    raises("ERR_NOT_FOUND", replies.send_reply, oplog.SYSTEM, ticket.pk, reply_id=theirs.pk)
    assert [(r.actor_kind, r.error_code) for r in reply_rows(ticket)] == [("system", ""), ("system", "ERR_NOT_FOUND")]
