"""Auto-rules: conditions, order, actions as the "rule" actor, hands off handled requests, round-robin, preview."""

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aftersales import events, replies, rules
from aftersales import services as aftersales_services
from aftersales.buyers import buyer_history, serial_returner_rules
from aftersales.models import ActorKind, AfterSalesRequest, Alert, OperationLog
from aftersales.oplog import Performer
from aftersales.states import State
from stores import services as store_services
from stores.errors import AppError
from tests.conftest import platform_return


def intake(store, **overrides):
    ticket, _created = aftersales_services.intake(store, platform_return(**overrides))
    return AfterSalesRequest.objects.unscoped().select_related("store__market").get(pk=ticket.pk)


def owner(tenant):
    return tenant.actor(tenant.owner)


def rule_rows(ticket, action=None):
    qs = OperationLog.objects.filter(ticket_id=ticket.pk, actor_kind=ActorKind.RULE)
    return list(qs.filter(action=action) if action else qs)


def refreshed(ticket):
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


# --- conditions -------------------------------------------------------------------------------------
def test_each_condition_kind_matches_and_misses(tenants):
    a, _b = tenants
    store = a.stores[0]
    old = int(time.time()) - 50 * 3600
    ticket = intake(store, return_type="RETURN_AND_REFUND", create_time=old,
                    return_reason="ecom_order_delivered_refund_and_return_reason_wrong_product_seller")
    market = store.market.code
    cases = [
        ({"type_in": ["return_and_refund"]}, {"type_in": ["refund_only", "exchange"]}),
        ({"market_in": [market]}, {"market_in": [m for m in ("US", "GB") if m != market][:1]}),
        ({"reason_key_contains": "WRONG_PRODUCT"}, {"reason_key_contains": "damaged"}),
        ({"reason_key_in": [ticket.reason_key]}, {"reason_key_in": ["other"]}),
        ({"refund_total_lte": {"amount": "25.00", "currency": "USD"}},
         {"refund_total_lte": {"amount": "24.99", "currency": "USD"}}),
        ({"refund_total_gte": {"amount": "25", "currency": "USD"}},
         {"refund_total_gte": {"amount": "10", "currency": "GBP"}}),  # another currency never matches
        ({"category_in": ["shoes", "apparel"]}, {"category_in": ["electronics"]}),
        ({"age_hours_gte": 48}, {"age_hours_gte": 51}),
        ({}, {"type_in": ["return_and_refund"], "category_in": ["electronics"]}),
    ]
    for hit, miss in cases:
        assert rules.matches(rules.clean_conditions(hit), ticket), hit
        assert not rules.matches(rules.clean_conditions(miss), ticket), miss


def test_age_falls_back_to_intake_time(tenants):
    a, _b = tenants
    ticket = intake(a.stores[0])
    ticket.platform_created_at = None
    assert not rules.matches({"age_hours_gte": 1}, ticket)
    assert rules.matches({"age_hours_gte": 1}, ticket, now=timezone.now() + dt.timedelta(hours=2))


# --- validation and permissions ------------------------------------------------------------------
def test_validation_lists_every_bad_key(tenants):
    a, _b = tenants
    with pytest.raises(AppError) as exc:
        rules.create_rule(owner(a), name="x", action="tag", params={"tags": ["vip"]}, conditions={
            "type_in": ["nope"], "colour": "red", "refund_total_lte": {"amount": "-1", "currency": "USD"},
            "age_hours_gte": "3", "market_in": ["ZZ"],
        })
    assert exc.value.code == "ERR_VALIDATION"
    assert set(exc.value.fields) == {"type_in", "colour", "refund_total_lte", "age_hours_gte", "market_in"}
    with pytest.raises(AppError) as exc:
        rules.create_rule(owner(a), name="x", action="assign", params={"user_ids": [a.outsider.pk], "extra": 1})
    assert exc.value.code == "ERR_VALIDATION" and set(exc.value.fields) == {"user_ids", "extra"}
    with pytest.raises(AppError) as exc:
        rules.create_rule(owner(a), name="x", action="reply", params={})
    assert set(exc.value.fields) == {"reply_id"}
    with pytest.raises(AppError) as exc:
        rules.create_rule(owner(a), name="", action="launch")
    assert exc.value.code == "ERR_VALIDATION"


def test_permissions(tenants):
    a, b = tenants
    store = a.stores[0]
    for user in (a.viewer, a.agent):
        with pytest.raises(AppError) as exc:
            rules.create_rule(a.actor(user), name="x", action="escalate", store=store)
        assert exc.value.code == "ERR_PERM_006"
    # A store manager (manage_team) may manage that store's rules, but not agency-wide ones.
    store_services.assign_role(actor=None, membership=a.membership(a.outsider), role=a.roles["store-manager"],
                               stores=[store])
    manager = a.actor(a.outsider)
    rule = rules.create_rule(manager, name="x", action="escalate", store=store)
    with pytest.raises(AppError) as exc:
        rules.create_rule(manager, name="y", action="escalate")
    assert exc.value.code == "ERR_PERM_006"
    # The other tenant's rule (and store) does not exist for them.
    for call in (lambda: rules.update_rule(owner(b), rule.public_id, name="mine"),
                 lambda: rules.delete_rule(owner(b), rule.public_id),
                 lambda: rules.create_rule(owner(b), name="x", action="escalate", store=store.public_id)):
        with pytest.raises(AppError) as exc:
            call()
        assert exc.value.code == "ERR_NOT_FOUND"
    assert rules.rules_for_actor(owner(b)).count() == 0
    updated = rules.update_rule(manager, rule.public_id, name="renamed", position=3)
    assert (updated.name, updated.position) == ("renamed", 3)


# --- order --------------------------------------------------------------------------------------------
def test_first_match_wins_by_position(tenants):
    a, _b = tenants
    store = a.stores[0]
    rules.create_rule(owner(a), name="second", action="tag", params={"tags": ["second"]}, store=store, position=2)
    rules.create_rule(owner(a), name="first", action="tag", params={"tags": ["first"]}, store=store, position=1,
                      conditions={"type_in": ["refund_only"]})
    rules.create_rule(owner(a), name="off", action="tag", params={"tags": ["off"]}, store=store, position=0,
                      is_active=False)
    refund = intake(store)
    exchange = intake(store, return_type="REPLACEMENT", return_status="REPLACEMENT_REQUEST_PENDING")
    assert rules.apply_rules(refund.pk).name == "first"
    assert rules.apply_rules(exchange.pk).name == "second"
    assert refreshed(refund).tags == ["first"] and refreshed(exchange).tags == ["second"]


def test_store_rules_before_agency_wide(tenants):
    a, _b = tenants
    rules.create_rule(owner(a), name="agency", action="tag", params={"tags": ["agency"]}, position=0)
    rules.create_rule(owner(a), name="store", action="tag", params={"tags": ["store"]}, store=a.stores[0],
                      position=9)
    assert rules.apply_rules(intake(a.stores[0]).pk).name == "store"
    assert rules.apply_rules(intake(a.stores[1]).pk).name == "agency"


def test_no_match_and_other_tenant_rules_ignored(tenants):
    a, b = tenants
    rules.create_rule(owner(b), name="bravo", action="tag", params={"tags": ["b"]})
    rules.create_rule(owner(a), name="never", action="tag", params={"tags": ["x"]},
                      conditions={"type_in": ["exchange"]})
    ticket = intake(a.stores[0])
    assert rules.apply_rules(ticket.pk) is None and rule_rows(ticket) == []


# --- actions ------------------------------------------------------------------------------------------
def marker(ticket, rule):
    rows = rule_rows(ticket, "rule_applied")
    assert len(rows) == 1
    row = rows[0]
    assert row.payload["rule_id"] == str(rule.public_id) and row.actor_label == f"rule:{rule.public_id}"
    return row


@pytest.mark.parametrize(("return_type", "status", "state"), [
    ("REFUND", "RETURN_OR_REFUND_REQUEST_PENDING", State.REFUND_APPROVED),
    ("RETURN_AND_REFUND", "RETURN_OR_REFUND_REQUEST_PENDING", State.AWAITING_RETURN),
    ("REPLACEMENT", "REPLACEMENT_REQUEST_PENDING", State.REPLACEMENT_APPROVED),
])
def test_approve_through_services(tenants, return_type, status, state):
    a, _b = tenants
    rule = rules.create_rule(owner(a), name="auto-approve", action="approve",
                             conditions={"refund_total_lte": {"amount": "30", "currency": "USD"}})
    ticket = intake(a.stores[0], return_type=return_type, return_status=status)
    assert rules.apply_rules(ticket.pk) == rule
    assert refreshed(ticket).state == state
    (approve,) = rule_rows(ticket, "approve")
    assert approve.ok and approve.actor_label == f"rule:{rule.public_id}" and approve.actor_user_id is None
    assert marker(ticket, rule).ok
    assert refreshed(ticket).first_human_response_at is None  # a rule is not a person


def test_reply_through_services(tenants):
    a, _b = tenants
    reply = replies.create_quick_reply(owner(a), title="Hi", body="We are on it.")
    rule = rules.create_rule(owner(a), name="ack", action="reply", params={"reply_id": str(reply.public_id)})
    ticket = intake(a.stores[0])
    rules.apply_rules(ticket.pk)
    (sent,) = rule_rows(ticket, "reply")
    assert sent.ok and sent.payload["text"] == "We are on it."
    assert marker(ticket, rule).payload["reply_id"] == str(reply.public_id)
    assert refreshed(ticket).state == State.PENDING_REVIEW


def test_tag_and_escalate(tenants):
    a, _b = tenants
    tag = rules.create_rule(owner(a), name="tag", action="tag", params={"tags": ["big", "check"]},
                            conditions={"refund_total_gte": {"amount": "100", "currency": "USD"}})
    esc = rules.create_rule(owner(a), name="esc", action="escalate", params={"note": "Check this one"})
    big = intake(a.stores[0], refund_amount={"currency": "USD", "refund_total": "150.00"})
    small = intake(a.stores[0])
    rules.apply_rules(big.pk)
    rules.apply_rules(small.pk)
    assert refreshed(big).tags == ["big", "check"] and refreshed(small).tags == []
    assert rule_rows(big, "tag")[0].payload == {"rule_id": str(tag.public_id), "tags": ["big", "check"]}
    assert rule_rows(small, "escalate")[0].payload["rule_id"] == str(esc.public_id)
    alert = Alert.objects.for_agency(a.agency).get(ticket_id=small.pk)
    assert (alert.kind, alert.key, alert.message) == ("review_failed", "escalated", "Check this one")
    marker(big, tag), marker(small, esc)


def test_failed_action_is_logged_with_its_code_and_not_retried(tenants):
    a, _b = tenants
    reply = replies.create_quick_reply(owner(a), title="Hi", body="Hello")
    rule = rules.create_rule(owner(a), name="ack", action="reply", params={"reply_id": str(reply.public_id)})
    replies.delete_quick_reply(owner(a), reply.public_id)  # gone by the time the rule runs
    ticket = intake(a.stores[0])
    rules.apply_rules(ticket.pk)
    (refused,) = rule_rows(ticket, "reply")
    assert refused.error_code == "ERR_NOT_FOUND"
    assert marker(ticket, rule).error_code == "ERR_NOT_FOUND"
    assert rules.apply_rules(ticket.pk) is None and len(rule_rows(ticket, "reply")) == 1


def test_assign_round_robin_per_store(tenants):
    a, _b = tenants
    ids = [a.owner.pk, a.agent.pk]
    rule = rules.create_rule(owner(a), name="rr", action="assign", params={"user_ids": ids})
    first = [refreshed(t).assignee_id for t in (intake(a.stores[0]) for _ in range(3)) if rules.apply_rules(t.pk)]
    assert first == [a.owner.pk, a.agent.pk, a.owner.pk]
    # Each store has its own cursor; the agent cannot see store 2, so it is skipped there.
    assert [refreshed(t).assignee_id for t in (intake(a.stores[1]),) if rules.apply_rules(t.pk)] == [a.owner.pk]
    third = [refreshed(t).assignee_id for t in (intake(a.stores[2]) for _ in range(2)) if rules.apply_rules(t.pk)]
    assert third == [a.owner.pk, a.owner.pk]
    ticket = intake(a.stores[0])
    rules.apply_rules(ticket.pk)
    (row,) = rule_rows(ticket, "assign")
    assert row.payload == {"rule_id": str(rule.public_id), "user_id": a.agent.pk}
    with pytest.raises(AppError):  # the rule's own state is not a user parameter
        rules.update_rule(owner(a), rule.public_id, params={"user_ids": ids, "_cursor": {}})


# --- people and idempotence -----------------------------------------------------------------------
def test_never_acts_on_a_request_a_person_handles(tenants):
    a, _b = tenants
    reply = replies.create_quick_reply(owner(a), title="Hi", body="Hello")
    rules.create_rule(owner(a), name="tag", action="tag", params={"tags": ["auto"]})
    handled = intake(a.stores[0])
    replies.send_reply(Performer.of(a.actor(a.agent)), handled.pk, reply_id=reply.public_id)
    assigned = intake(a.stores[0])
    AfterSalesRequest.objects.unscoped().filter(pk=assigned.pk).update(assignee=a.agent)
    moved = intake(a.stores[0], return_status="AWAITING_BUYER_SHIP")
    for ticket in (handled, assigned, moved):
        assert rules.apply_rules(ticket.pk) is None and rule_rows(ticket) == []
    # A refused attempt by a person is not handling it.
    tried = intake(a.stores[0])
    with pytest.raises(AppError):
        replies.send_reply(Performer.of(a.actor(a.agent)), tried.pk, text="")
    assert rules.apply_rules(tried.pk) is not None


def test_idempotent(tenants):
    a, _b = tenants
    rules.create_rule(owner(a), name="tag", action="tag", params={"tags": ["auto"]})
    ticket = intake(a.stores[0])
    assert rules.apply_rules(ticket.pk) is not None
    assert rules.apply_rules(ticket.pk) is None
    assert len(rule_rows(ticket, "tag")) == 1 and refreshed(ticket).tags == ["auto"]
    assert rules.apply_rules(10**9) is None


def test_intake_enqueues_after_commit_only_where_rules_exist(tenants, monkeypatch, django_capture_on_commit_callbacks):
    from aftersales import tasks

    a, b = tenants
    calls = []
    monkeypatch.setattr(tasks.apply_rules_task, "delay", calls.append)
    rules.create_rule(owner(a), name="tag", action="tag", params={"tags": ["auto"]})
    assert rules._on_created in events._subscribers[events.CREATED]  # connected by AftersalesConfig.ready
    with django_capture_on_commit_callbacks(execute=True):
        ticket = intake(a.stores[0])
        intake(b.stores[0])  # bravo has no rules: nothing to enqueue
    assert calls == [ticket.pk]
    assert tasks.apply_rules_task.run(ticket.pk) is not None and refreshed(ticket).tags == ["auto"]


# --- preview --------------------------------------------------------------------------------------
# Buyers of the preview test, by request index: who is a serial returner in agency a, and by which rule.
PREVIEW_BUYERS = {
    **dict.fromkeys(range(5), "many"),  # 5 requests in 90 days: flagged ("requests")
    **dict.fromkeys(range(5, 9), "four"),  # 4 here (+1 in agency b, which must not count): not flagged
    **dict.fromkeys(range(9, 12), "refunder"),  # 3 small refunds in 30 days: flagged ("refunds")
    12: "usd", 14: "usd",  # 120 + 90 USD refunded: flagged ("refunded_amount")
    13: "gbp", 15: "gbp",  # 80 + 85 GBP: flagged (GBP threshold 160)
    16: "split", 17: "split",  # 150 USD and 150 GBP: never added across currencies, not flagged
    18: "near", 20: "near",  # 199.99 USD: not flagged
    19: "hidden",  # + 4 older requests in a store the agent cannot see: flagged, also in the agent's preview
    21: "stale",  # + 4 requests older than 90 days: not flagged
    22: "",  # no buyer id: no flags
    23: "solo",
}
PREVIEW_REFUNDS = {9: "1.00", 10: "1.00", 11: "2.00", 12: "120.00", 14: "90.00", 13: "80.00", 15: "85.00",
                   16: "150.00", 17: "150.00", 18: "100.00", 20: "99.99"}


def test_preview_equals_python_evaluation(tenants):
    a, b = tenants
    now = int(time.time())
    tickets = {}
    for i in range(24):
        store = a.stores[i % 3]
        tickets[i] = intake(
            store, return_type=("REFUND", "RETURN_AND_REFUND", "REPLACEMENT")[i % 3],
            return_status="REPLACEMENT_REQUEST_PENDING" if i % 3 == 2 else "RETURN_OR_REFUND_REQUEST_PENDING",
            refund_amount={"currency": ("USD", "GBP")[i % 2], "refund_total": f"{5 * i}.00"},
            create_time=now - i * 3 * 3600, buyer_user_id=PREVIEW_BUYERS[i],
            return_reason=("reason_wrong_product", "reason_damaged", "no_longer_needed")[i % 3],
            return_line_items=[{"sku_id": "S", "product_name": "P", "category": ("apparel", "toys")[i % 4 // 3]}])
    for i, amount in PREVIEW_REFUNDS.items():
        AfterSalesRequest.objects.unscoped().filter(pk=tickets[i].pk).update(refunded_amount=Decimal(amount))
    # History outside the preview's 30 days (by intake time) that still counts for the buyer flags, or not.
    for buyer, store, days_ago in (("hidden", a.stores[2], 80), ("stale", a.stores[1], 100)):
        for _ in range(4):
            past = intake(store, buyer_user_id=buyer, create_time=now - days_ago * 86400)
            AfterSalesRequest.objects.unscoped().filter(pk=past.pk).update(
                created_at=timezone.now() - dt.timedelta(days=days_ago))
    intake(b.stores[0])
    intake(b.stores[1], buyer_user_id="four")
    old = intake(a.stores[0])
    AfterSalesRequest.objects.unscoped().filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=40))

    # The oracle for buyer flags is the buyer profile itself, as the agency's owner sees it (every store).
    profiles = {buyer: buyer_history(owner(a), buyer) for buyer in set(PREVIEW_BUYERS.values()) if buyer}
    flagged = {buyer for buyer, profile in profiles.items() if profile["serial_returner"]}
    assert flagged == {"many", "refunder", "usd", "gbp", "hidden"}
    assert {profiles[b]["rule_key"] for b in flagged} == {"requests", "refunds", "refunded_amount"}
    assert buyer_history(owner(b), "four")["requests_total"] == 1  # b's request exists, and stays b's

    samples = [
        {},
        {"type_in": ["refund_only", "exchange"], "refund_total_gte": {"amount": "20", "currency": "USD"}},
        {"reason_key_contains": "WRONG", "age_hours_gte": 12},
        {"category_in": ["toys"], "refund_total_lte": {"amount": "60", "currency": "GBP"}},
        {"market_in": [a.stores[1].market.code], "reason_key_in": ["reason_damaged", "no_longer_needed"]},
        {"buyer_flags": ["serial_returner"]},
        {"buyer_not_flags": ["serial_returner"]},
        {"buyer_flags": ["serial_returner"], "refund_total_gte": {"amount": "40", "currency": "USD"}},
        {"buyer_not_flags": ["serial_returner"], "type_in": ["refund_only"], "age_hours_gte": 6},
    ]
    def oracle(buyer: str) -> set[str]:
        return {"serial_returner"} if buyer in flagged else set()

    hits = {}
    for actor in (owner(a), a.actor(a.agent)):
        visible = list(AfterSalesRequest.objects.for_actor(actor).select_related("store__market")
                       .filter(created_at__gte=timezone.now() - dt.timedelta(days=30)))
        for conditions in samples:
            cleaned = rules.clean_conditions(conditions)
            expected = {str(t.public_id) for t in visible
                        if rules.matches(cleaned, t, flags=oracle(t.buyer_user_id))}
            # The rule path's own Python evaluation (one grouped query per request) agrees with the oracle.
            assert expected == {str(t.public_id) for t in visible if rules.matches(cleaned, t)}, conditions
            result = rules.preview_rule(actor, conditions)
            assert result["would_match"] == len(expected), conditions
            assert set(result["sample"]) <= expected and len(result["sample"]) == min(10, len(expected))
            hits[actor.user_id, str(conditions)] = len(expected)
    assert hits[a.owner.pk, str(samples[5])] == 5 + 3 + 2 + 2 + 1  # many, refunder, usd, gbp, hidden
    assert hits[a.owner.pk, str(samples[6])] == 24 - 13
    assert 0 < hits[a.agent.pk, str(samples[5])] < 13  # only its two stores, but hidden's history counts
    assert hits[a.agent.pk, str(samples[5])] == sum(
        1 for i, buyer in PREVIEW_BUYERS.items() if buyer in flagged and i % 3 != 2)
    assert rules.preview_rule(owner(a), {})["would_match"] == 24
    assert rules.preview_rule(owner(a), {}, store=a.stores[0], days=60)["would_match"] == 9
    with pytest.raises(AppError) as exc:
        rules.preview_rule(a.actor(a.agent), {}, store=a.stores[2])
    assert exc.value.code == "ERR_NOT_FOUND"
    with pytest.raises(AppError) as exc:
        rules.preview_rule(owner(a), {"nope": 1}, days=0)
    assert exc.value.code == "ERR_VALIDATION"


def test_preview_stays_one_query_with_buyer_flags(tenants):
    a, _b = tenants
    for _ in range(3):
        intake(a.stores[0], buyer_user_id="again")

    actor = owner(a)

    def queries(conditions) -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            rules.preview_rule(actor, conditions)
        return [q["sql"] for q in ctx.captured_queries]

    plain = queries({"type_in": ["refund_only"]})
    flagged = queries({"type_in": ["refund_only"], "buyer_flags": ["serial_returner"]})
    assert len(flagged) == len(plain) == 2  # the count and its sample: each one statement
    # One correlated EXISTS … HAVING per configured serial-returner rule, inside the same statement.
    assert flagged[0].count("EXISTS") == len(serial_returner_rules()) == 3 and "HAVING" in flagged[0]


# --- buyer history flags -------------------------------------------------------------------------
def test_buyer_flag_conditions_are_validated(tenants):
    a, _b = tenants
    assert rules.clean_conditions({"buyer_flags": [" serial_returner ", "serial_returner"]}) == {
        "buyer_flags": ["serial_returner"]}
    with pytest.raises(AppError) as exc:
        rules.create_rule(owner(a), name="x", action="tag", params={"tags": ["x"]},
                          conditions={"buyer_flags": ["vip"], "buyer_not_flags": "serial_returner"})
    assert exc.value.code == "ERR_VALIDATION" and set(exc.value.fields) == {"buyer_flags", "buyer_not_flags"}
    with pytest.raises(AppError) as exc:
        rules.create_rule(owner(a), name="x", action="tag", params={"tags": ["x"]},
                          conditions={"buyer_flags": ["serial_returner"], "buyer_not_flags": ["serial_returner"]})
    assert exc.value.code == "ERR_VALIDATION" and set(exc.value.fields) == {"buyer_not_flags"}
    with pytest.raises(AppError) as exc:
        rules.preview_rule(owner(a), {"buyer_flags": []})
    assert set(exc.value.fields) == {"buyer_flags"}


def test_buyer_flags_in_apply_rules_count_the_rules_agency_only(tenants, django_assert_num_queries):
    a, b = tenants
    flagged = rules.create_rule(owner(a), name="serial", action="tag", params={"tags": ["serial"]},
                                conditions={"buyer_flags": ["serial_returner"]}, position=0)
    clean = rules.create_rule(owner(a), name="clean", action="tag", params={"tags": ["clean"]},
                              conditions={"buyer_not_flags": ["serial_returner"]}, position=1)
    for _ in range(4):  # agency b's history of the same buyer id never counts in a
        intake(b.stores[0], buyer_user_id="repeat")
    first = [intake(a.stores[i % 3], buyer_user_id="repeat") for i in range(4)]
    fifth = intake(a.stores[2], buyer_user_id="repeat")  # 5 in 90 days across a's stores: a serial returner
    nobody = intake(a.stores[0], buyer_user_id="")
    assert rules.buyer_flags(first[0]) == {"serial_returner"}
    assert buyer_history(owner(a), "repeat")["serial_returner"] is True
    assert buyer_history(owner(b), "repeat")["serial_returner"] is False  # b has 4
    assert rules.buyer_flags(intake(b.stores[1], buyer_user_id="other")) == set()
    assert rules.buyer_flags(nobody) == set()

    # Lock, ran-already, person-handling, categories, rules, the buyer's flags (one grouped query), the tag's
    # update and log row, the state re-read and the marker row: 10 statements in a savepoint.
    with django_assert_num_queries(12):
        assert rules.apply_rules(fifth.pk) == flagged
    assert rules.apply_rules(nobody.pk) == clean
    AfterSalesRequest.objects.unscoped().filter(pk__in=[t.pk for t in first]).update(
        platform_created_at=timezone.now() - dt.timedelta(days=91))  # out of the 90-day window
    later = intake(a.stores[0], buyer_user_id="repeat")
    assert rules.apply_rules(later.pk) == clean  # 2 recent requests now
    assert [refreshed(t).tags for t in (fifth, nobody, later)] == [["serial"], ["clean"], ["clean"]]


def test_buyer_flags_are_looked_up_only_when_a_rule_reaches_them(tenants):
    a, _b = tenants
    rules.create_rule(owner(a), name="plain", action="tag", params={"tags": ["plain"]}, position=0)
    plain = intake(a.stores[0], buyer_user_id="p")
    with CaptureQueriesContext(connection) as base:
        rules.apply_rules(plain.pk)
    rules.update_rule(owner(a), rules.rules_for_actor(owner(a)).get().public_id, is_active=False)
    for position, conditions in enumerate([
        {"type_in": ["exchange"], "buyer_flags": ["serial_returner"]},  # fails before the buyer check: no query
        {"buyer_flags": ["serial_returner"]},  # asks: one query
        {"buyer_not_flags": ["serial_returner"]},  # asks again: answered from the first lookup
    ], start=1):
        rules.create_rule(owner(a), name=f"r{position}", action="tag", params={"tags": [f"r{position}"]},
                          conditions=conditions, position=position)
    ticket = intake(a.stores[0], buyer_user_id="q")
    with CaptureQueriesContext(connection) as ctx:
        assert rules.apply_rules(ticket.pk).name == "r3"
    assert len(ctx.captured_queries) == len(base.captured_queries) + 1


# --- assignment to a person or a list, and who may be assigned -------------------------------------------
def test_assign_to_a_named_person(tenants):
    a, _b = tenants
    rule = rules.create_rule(owner(a), name="to the agent", action="assign", params={"user_ids": [a.agent.pk]},
                             conditions={"buyer_flags": ["serial_returner"]})
    tickets = [intake(a.stores[i % 2], buyer_user_id="serial") for i in range(6)]
    assert rules.buyer_flags(tickets[0]) == {"serial_returner"}
    for ticket in tickets:
        assert rules.apply_rules(ticket.pk) == rule
    assert {refreshed(t).assignee_id for t in tickets} == {a.agent.pk}
    # Store 3 is not the agent's: the rule's refusal is logged with its code and nobody is assigned.
    elsewhere = intake(a.stores[2], buyer_user_id="serial")
    assert rules.apply_rules(elsewhere.pk) == rule
    assert refreshed(elsewhere).assignee_id is None and rule_rows(elsewhere, "assign") == []
    refused = marker(elsewhere, rule)
    assert refused.error_code == "ERR_VALIDATION" and refused.actor_kind == ActorKind.RULE


def test_only_members_who_handle_the_store_may_be_assignees(tenants):
    a, b = tenants
    store = a.stores[0]
    for user_ids in ([a.viewer.pk], [a.outsider.pk], [b.agent.pk], [b.owner.pk], [str(a.agent.pk)], [True], [],
                     [a.agent.pk, a.viewer.pk]):
        for scope in (store, None):
            with pytest.raises(AppError) as exc:
                rules.create_rule(owner(a), name="x", action="assign", params={"user_ids": user_ids}, store=scope)
            assert exc.value.code == "ERR_VALIDATION" and set(exc.value.fields) == {"user_ids"}, user_ids
    with pytest.raises(AppError):  # the agent handles stores 1 and 2 only
        rules.create_rule(owner(a), name="x", action="assign", params={"user_ids": [a.agent.pk]}, store=a.stores[2])
    agency_wide = rules.create_rule(owner(a), name="x", action="assign",
                                    params={"user_ids": [a.agent.pk, a.agent.pk, a.owner.pk]})
    assert agency_wide.params["user_ids"] == [a.agent.pk, a.owner.pk]
    # Who may be assigned is checked again per request: a member who lost the role is skipped.
    store_services.revoke_role(actor=None, membership=a.membership(a.agent), role=a.roles["aftersales-agent"],
                               stores=[store])
    ticket = intake(store)
    rules.apply_rules(ticket.pk)
    assert refreshed(ticket).assignee_id == a.owner.pk


@pytest.mark.parametrize("action", ["approve", "reply", "assign", "tag", "escalate"])
def test_every_rule_action_is_logged_as_the_rule_with_its_id(tenants, action):
    a, _b = tenants
    params = {"reply": lambda: {"reply_id": str(replies.create_quick_reply(owner(a), title="Hi", body="Hi").public_id)},
              "assign": lambda: {"user_ids": [a.agent.pk]}, "tag": lambda: {"tags": ["t"]},
              "escalate": lambda: {"note": "look"}}.get(action, dict)()
    rule = rules.create_rule(owner(a), name=action, action=action, params=params)
    ticket = intake(a.stores[0])
    assert rules.apply_rules(ticket.pk) == rule
    rows = rule_rows(ticket)
    assert [r.action for r in rows] == [action, "rule_applied"]
    for row in rows:
        assert row.ok and row.actor_kind == ActorKind.RULE and row.actor_user_id is None
        assert row.actor_label == f"rule:{rule.public_id}"
    assert marker(ticket, rule).payload["action"] == action
    # Nothing else happened in the rule's name, and no person "handled" the request.
    assert OperationLog.objects.filter(ticket_id=ticket.pk).exclude(actor_kind=ActorKind.RULE).count() == 1
    assert refreshed(ticket).first_human_response_at is None
