"""Auto-rules: conditions, order, actions as the "rule" actor, hands off handled requests, round-robin, preview."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from aftersales import events, replies, rules
from aftersales import services as aftersales_services
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
def test_preview_equals_python_evaluation(tenants):
    a, b = tenants
    now = int(time.time())
    for i in range(24):
        store = a.stores[i % 3]
        intake(store, return_type=("REFUND", "RETURN_AND_REFUND", "REPLACEMENT")[i % 3],
               return_status="REPLACEMENT_REQUEST_PENDING" if i % 3 == 2 else "RETURN_OR_REFUND_REQUEST_PENDING",
               refund_amount={"currency": ("USD", "GBP")[i % 2], "refund_total": f"{5 * i}.00"},
               create_time=now - i * 3 * 3600,
               return_reason=("reason_wrong_product", "reason_damaged", "no_longer_needed")[i % 3],
               return_line_items=[{"sku_id": "S", "product_name": "P", "category": ("apparel", "toys")[i % 4 // 3]}])
    intake(b.stores[0])
    old = intake(a.stores[0])
    AfterSalesRequest.objects.unscoped().filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=40))
    samples = [
        {},
        {"type_in": ["refund_only", "exchange"], "refund_total_gte": {"amount": "20", "currency": "USD"}},
        {"reason_key_contains": "WRONG", "age_hours_gte": 12},
        {"category_in": ["toys"], "refund_total_lte": {"amount": "60", "currency": "GBP"}},
        {"market_in": [a.stores[1].market.code], "reason_key_in": ["reason_damaged", "no_longer_needed"]},
    ]
    for actor in (owner(a), a.actor(a.agent)):
        visible = list(AfterSalesRequest.objects.for_actor(actor).select_related("store__market")
                       .filter(created_at__gte=timezone.now() - dt.timedelta(days=30)))
        for conditions in samples:
            cleaned = rules.clean_conditions(conditions)
            expected = {str(t.public_id) for t in visible if rules.matches(cleaned, t)}
            result = rules.preview_rule(actor, conditions)
            assert result["would_match"] == len(expected), conditions
            assert set(result["sample"]) <= expected and len(result["sample"]) == min(10, len(expected))
    assert rules.preview_rule(owner(a), {})["would_match"] == 24
    assert rules.preview_rule(owner(a), {}, store=a.stores[0], days=60)["would_match"] == 9
    with pytest.raises(AppError) as exc:
        rules.preview_rule(a.actor(a.agent), {}, store=a.stores[2])
    assert exc.value.code == "ERR_NOT_FOUND"
    with pytest.raises(AppError) as exc:
        rules.preview_rule(owner(a), {"nope": 1}, days=0)
    assert exc.value.code == "ERR_VALIDATION"
