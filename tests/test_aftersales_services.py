"""Services: log rows on success and failure, money rules, permissions, intake, batch review, fees."""

import re
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, connections, transaction

from aftersales import selectors, services
from aftersales.models import AfterSalesRequest, OperationLog
from aftersales.oplog import Performer
from aftersales.states import PLATFORM_STATUS, State, normalise_platform_status, state_for_platform_status
from stores.errors import CATALOGUE, AppError
from tests.conftest import platform_return

ROOT = Path(__file__).resolve().parent.parent


def logs(ticket):
    return list(OperationLog.objects.filter(ticket_id=ticket.pk).order_by("id")
                .values_list("action", "error_code", "state_before", "state_after"))


# --- platform vocabulary ---------------------------------------------------------------------
OFFICIAL_14 = [
    "RETURN_OR_REFUND_REQUEST_PENDING", "REFUND_OR_RETURN_REQUEST_REJECT", "AWAITING_BUYER_SHIP",
    "BUYER_SHIPPED_ITEM", "REJECT_RECEIVE_PACKAGE", "RETURN_OR_REFUND_REQUEST_SUCCESS",
    "RETURN_OR_REFUND_REQUEST_CANCEL", "RETURN_OR_REFUND_REQUEST_COMPLETE", "REPLACEMENT_REQUEST_PENDING",
    "REPLACEMENT_REQUEST_REJECT", "REPLACEMENT_REQUEST_REFUND_SUCCESS", "REPLACEMENT_REQUEST_CANCEL",
    "REPLACEMENT_REQUEST_COMPLETE", "AWAITING_BUYER_RESPONSE",
]


@pytest.mark.parametrize("status", OFFICIAL_14)
def test_every_official_status_maps(status):
    assert state_for_platform_status(status) in set(State)


@pytest.mark.parametrize("variant", ["RETURN_OR_REFUND_REQUEST_REJECT", "RETURN_OR_REFUND_REQUEST_REJECTED",
                                     "refund_or_return_request_reject", " REQUEST_REJECTED "])
def test_reject_spelling_variants(variant):
    assert state_for_platform_status(variant) == State.REJECTED


def test_replacement_typo_is_accepted():
    assert normalise_platform_status("REPLACMENT_REQUEST_PENDING") == "REPLACEMENT_REQUEST_PENDING"
    assert set(PLATFORM_STATUS.values()) <= set(State)


def test_unknown_status_is_kept_flagged_and_logged(tenants):
    a, _b = tenants
    ticket, created = services.intake(a.stores[0], platform_return(return_status="SOMETHING_NEW_2027"))
    assert created and ticket.platform_status == "SOMETHING_NEW_2027" and ticket.platform_status_unknown
    assert ticket.state == State.PENDING_REVIEW
    assert logs(ticket)[-1][:2] == ("platform_status", "ERR_SYNC_001")
    # A later known status clears the flag.
    ticket = services.apply_platform_status(ticket.pk, "AWAITING_BUYER_SHIP")
    assert not ticket.platform_status_unknown and ticket.state == State.AWAITING_RETURN


# --- intake -------------------------------------------------------------------------------------
def test_intake_keeps_what_the_platform_sends(tenants):
    a, _b = tenants
    data = platform_return(return_type="RETURN_AND_REFUND", arbitration_status="IN_PROGRESS")
    ticket, _ = services.intake(a.stores[0], data)
    assert ticket.refund_total == Decimal("25.00") and ticket.currency == "USD"
    assert ticket.platform_deadline is not None and ticket.seller_next_actions[0]["action"] == "SELLER_RESPOND_REFUND"
    item = ticket.items.get()
    assert (item.sku_id, item.category, item.refund_amount) == ("SKU1", "apparel", Decimal("22.00"))
    assert ticket.raw["return_id"] == data["return_id"]


def test_intake_is_idempotent_and_applies_newer_status(tenants):
    a, _b = tenants
    data = platform_return()
    first, created = services.intake(a.stores[0], data)
    again, created_again = services.intake(a.stores[0], {**data, "return_status": "RETURN_OR_REFUND_REQUEST_SUCCESS"})
    assert created and not created_again and first.pk == again.pk
    assert again.state == State.REFUND_APPROVED
    assert AfterSalesRequest.objects.for_agency(a.agency).filter(return_id=data["return_id"]).count() == 1


@pytest.mark.parametrize(("field", "value"), [("return_id", ""), ("return_type", "SWAP"),
                                              ("refund_amount", {"currency": "USD", "refund_total": "abc"}),
                                              ("refund_amount", {"currency": "USD", "refund_total": "-1"}),
                                              ("create_time", "yesterday")])
def test_malformed_payload_is_refused_and_nothing_written(tenants, field, value):
    a, _b = tenants
    with pytest.raises(AppError) as info:
        services.intake(a.stores[0], platform_return(**{field: value}))
    assert info.value.code == "ERR_SYNC_002"
    assert not AfterSalesRequest.objects.for_agency(a.agency).exists()


# --- money ----------------------------------------------------------------------------------------
def approved(a, **overrides):
    owner = Performer.of(a.actor(a.owner))
    ticket, _ = services.intake(a.stores[0], platform_return(**overrides))
    return owner, services.approve(owner, ticket.public_id, "APPROVE_REFUND")


def test_partial_refund_then_nothing_more(tenants):
    a, _b = tenants
    owner, ticket = approved(a)
    ticket = services.refund(owner, ticket.public_id, amount="10.00", currency="USD")
    assert ticket.state == State.COMPLETED and ticket.refunded_amount == Decimal("10.00")
    assert ticket.logs.last().payload["partial"] is True


@pytest.mark.parametrize(("amount", "code"), [("25.01", "ERR_REFUND_001"), ("0", "ERR_REFUND_002"),
                                              ("-3", "ERR_REFUND_002"), ("abc", "ERR_REFUND_002"),
                                              ("1.005", "ERR_REFUND_002"), ("NaN", "ERR_REFUND_002")])
def test_refund_never_above_refundable(tenants, amount, code):
    a, _b = tenants
    owner, ticket = approved(a)
    with pytest.raises(AppError) as info:
        services.refund(owner, ticket.public_id, amount=amount)
    assert info.value.code == code
    ticket.refresh_from_db()
    assert ticket.state == State.REFUND_APPROVED and ticket.refunded_amount == 0
    assert logs(ticket)[-1][:2] == ("refund", code)


def test_refund_in_wrong_currency(tenants):
    a, _b = tenants
    owner, ticket = approved(a)
    with pytest.raises(AppError) as info:
        services.refund(owner, ticket.public_id, amount="5.00", currency="GBP")
    assert info.value.code == "ERR_REFUND_002"


def test_partial_offer_above_refundable_is_refused(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    ticket, _ = services.intake(a.stores[0], platform_return())
    with pytest.raises(AppError) as info:
        services.approve(owner, ticket.public_id, "OFFER_PARTIAL_REFUND", partial_refund="30.00")
    assert info.value.code == "ERR_REFUND_001"


def test_fees_follow_market_policy(tenants):
    a, _b = tenants
    owner, ticket = approved(a)
    ticket = services.refund(owner, ticket.public_id, amount="20.00")
    result = selectors.fees(ticket)
    assert result["commission_returned"] == Decimal("1.60")  # 8 % of 20.00
    assert not result["commission_is_estimate"]
    market = ticket.store.market.code
    assert result["return_shipping_payer"] == ("platform_first_leg" if market in {"US", "UK", "CA"} else "seller")


# --- review -----------------------------------------------------------------------------------------
def test_reject_needs_a_reason_from_the_request_list(tenants):
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    reasons = [{"name": "seller_reject_apply_item_is_correct", "text": "Item is correct"}]
    ticket, _ = services.intake(a.stores[0], platform_return(reject_reasons=reasons))
    with pytest.raises(AppError) as info:
        services.reject(owner, ticket.public_id, reason="reverse_reject_request_reason_1")
    assert info.value.code == "ERR_REVIEW_001"
    assert info.value.fields["reason"] == ["seller_reject_apply_item_is_correct"]
    ticket = services.reject(owner, ticket.public_id, reason="seller_reject_apply_item_is_correct", comment="ok")
    assert ticket.state == State.REJECTED and ticket.logs.last().payload["decision"] == "REJECT_REFUND"


def test_permission_mismatch_is_coded_and_logged(tenants):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return())
    viewer = Performer.of(a.actor(a.viewer))
    with pytest.raises(AppError) as info:
        services.approve(viewer, ticket.public_id, "APPROVE_REFUND")
    assert info.value.code == "ERR_PERM_001" and info.value.status == 403
    assert logs(ticket)[-1] == ("approve", "ERR_PERM_001", "pending_review", "pending_review")


def test_other_tenant_and_ungranted_store_look_missing(tenants):
    a, b = tenants
    foreign, _ = services.intake(b.stores[0], platform_return())
    ungranted, _ = services.intake(a.stores[2], platform_return())
    agent = Performer.of(a.actor(a.agent))
    for ticket in (foreign, ungranted):
        with pytest.raises(AppError) as info:
            services.approve(agent, ticket.public_id, "APPROVE_REFUND")
        assert info.value.code == "ERR_NOT_FOUND"
        assert logs(ticket) == [("intake", "", "", "pending_review")]  # nothing logged on invisible rows


def test_allowed_actions_follow_state_and_role(tenants):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return())
    ticket = AfterSalesRequest.objects.for_actor(a.actor(a.agent)).get(pk=ticket.pk)
    assert "approve:APPROVE_REFUND" in selectors.allowed_actions(a.actor(a.agent), ticket)
    assert selectors.allowed_actions(a.actor(a.viewer), ticket) == []


# --- batch review (批量审核) ------------------------------------------------------------------------
def test_bulk_items_succeed_or_fail_on_their_own(tenants):
    a, b = tenants
    agent = Performer.of(a.actor(a.agent))
    ok1, _ = services.intake(a.stores[0], platform_return())
    ok2, _ = services.intake(a.stores[1], platform_return())
    done, _ = services.intake(a.stores[0], platform_return(return_status="RETURN_OR_REFUND_REQUEST_COMPLETE"))
    ungranted, _ = services.intake(a.stores[2], platform_return())
    foreign, _ = services.intake(b.stores[0], platform_return())
    ids = [str(t.public_id) for t in (ok1, done, ungranted, ok2, foreign)] + ["not-a-uuid"]
    results = services.bulk(agent, "approve", ids, {"decision": "APPROVE_REFUND"})
    by_id = {r["id"]: r for r in results}
    assert [r["ok"] for r in results] == [True, False, False, True, False, False]
    assert by_id[str(done.public_id)]["error"]["code"] == "ERR_STATE_001"
    assert by_id[str(ungranted.public_id)]["error"]["code"] == "ERR_NOT_FOUND"
    assert by_id["not-a-uuid"]["error"]["code"] == "ERR_NOT_FOUND"
    for t in (ok1, ok2):
        t.refresh_from_db()
        assert t.state == State.REFUND_APPROVED


def test_bulk_reads_each_market_policy_once(tenants):
    """The deadlines of every approved request need its market's policy: read once per market in a batch, not
    once per request (the batch's cost is otherwise a query per item more)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    tickets = [services.intake(a.stores[0], platform_return())[0] for _ in range(6)]
    approve = {"decision": "APPROVE_REFUND"}
    with CaptureQueriesContext(connection) as ctx:
        results = services.bulk(owner, "approve", [str(t.public_id) for t in tickets[:4]], approve)
    assert all(r["ok"] for r in results)
    assert sum('FROM "stores_marketpolicy"' in q["sql"] for q in ctx.captured_queries) == 1
    with CaptureQueriesContext(connection) as ctx:  # nothing is kept from one batch to the next
        assert services.bulk(owner, "approve", [str(tickets[4].public_id)], approve)[0]["ok"]
        assert services.bulk(owner, "approve", [str(tickets[5].public_id)], approve)[0]["ok"]
    assert sum('FROM "stores_marketpolicy"' in q["sql"] for q in ctx.captured_queries) == 2


def test_bulk_limits(tenants):
    a, _b = tenants
    agent = Performer.of(a.actor(a.agent))
    with pytest.raises(AppError) as info:
        services.bulk(agent, "refund", [], {})
    assert info.value.code == "ERR_BULK_002"
    with pytest.raises(AppError) as info:
        services.bulk(agent, "approve", [str(i) for i in range(services.BULK_LIMIT + 1)], {})
    assert info.value.code == "ERR_BULK_001"


# --- concurrency: exactly one wins ------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_twenty_concurrent_approvals_one_wins(django_db_blocker):
    from tests.conftest import make_tenant

    a = make_tenant("race", n_stores=1)
    ticket, _ = services.intake(a.stores[0], platform_return())
    owner = Performer.of(a.actor(a.owner))
    n = 24
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker():
        try:
            barrier.wait()
            services.approve(owner, ticket.public_id, "APPROVE_REFUND")
            result = "ok"
        except AppError as exc:
            result = f"{exc.code}:{exc.status}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes.count("ok") == 1, outcomes
    assert outcomes.count("ERR_STATE_001:409") == n - 1, outcomes
    rows = logs(ticket)
    assert [r for r in rows if r[0] == "approve" and not r[1]] == [("approve", "", "pending_review", "refund_approved")]
    assert len([r for r in rows if r[1] == "ERR_STATE_001"]) == n - 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_intake_of_one_return_creates_it_once():
    from tests.conftest import make_tenant

    a = make_tenant("intake-race", n_stores=1)
    data = platform_return()
    barrier = threading.Barrier(12)
    created: list[bool] = []

    def worker():
        barrier.wait()
        try:
            created.append(services.intake(a.stores[0], data)[1])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(created) == [False] * 11 + [True]
    assert AfterSalesRequest.objects.for_agency(a.agency).count() == 1


# --- the log is append-only in the database itself ------------------------------------------------
@pytest.mark.parametrize("sql", ["UPDATE aftersales_operationlog SET message = 'x'",
                                 "DELETE FROM aftersales_operationlog",
                                 "TRUNCATE aftersales_operationlog CASCADE"])
# Committed rows: TRUNCATE refuses a table with pending FK checks in the same transaction.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_database_refuses_changes_to_the_log(sql):
    from tests.conftest import make_tenant

    a = make_tenant("append-only", n_stores=1)
    ticket, _ = services.intake(a.stores[0], platform_return())
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL aftersales.allow_log_truncate = 'off'")
        cursor.execute(sql)
    assert OperationLog.objects.filter(ticket=ticket).count() == 1


# --- the catalogue holds every code the code raises ------------------------------------------------
def test_every_raised_code_is_in_the_catalogue():
    used: set[str] = set()
    for app in ("stores", "aftersales", "logistics", "portal", "config"):
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            used |= set(re.findall(r"errors\.(ERR_[A-Z0-9_]+)", text))
            used |= {m for m in re.findall(r"[\"'](ERR_[A-Z0-9_]+)[\"']", text)}
    import stores.errors as errors_module

    declared_attrs = {name for name in dir(errors_module) if name.startswith("ERR_")}
    codes = set(CATALOGUE)
    missing = {u for u in used if u not in codes and u not in declared_attrs}
    assert not missing, f"codes used but not declared: {sorted(missing)}"
    for name in declared_attrs:
        assert getattr(errors_module, name).code in codes


@pytest.mark.parametrize("extra_rows", [2, 40])
def test_timeline_is_one_query(tenants, django_assert_num_queries, extra_rows):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return())
    owner = Performer.of(a.actor(a.owner))
    for _ in range(extra_rows // 2):
        with pytest.raises(AppError):
            services.refund(owner, ticket.public_id)  # refused: adds a failure row
        services.apply_platform_status(ticket.pk, "RETURN_OR_REFUND_REQUEST_PENDING")
    with django_assert_num_queries(1):
        rows = [(r.action, r.error_code, r.actor_user and r.actor_user.username) for r in selectors.timeline(ticket)]
    assert len(rows) == extra_rows + 1


def test_platform_auto_rejection_is_flagged_for_manual_review(tenants):
    a, _b = tenants
    data = platform_return()
    ticket, _ = services.intake(a.stores[0], data)
    ticket, _ = services.intake(a.stores[0], {**data, "role": "SYSTEM",
                                              "return_status": "REFUND_OR_RETURN_REQUEST_REJECT"})
    assert ticket.state == State.REJECTED
    assert logs(ticket)[-1][:2] == ("platform_status", "ERR_REVIEW_002")
    # A seller's own rejection is not a review failure.
    other, _ = services.intake(a.stores[0], platform_return())
    services.reject(Performer.of(a.actor(a.owner)), other.public_id, reason="reverse_reject_request_reason_1")
    assert logs(other)[-1][:2] == ("reject", "")
    born_rejected, _ = services.intake(a.stores[0], platform_return(
        role="SYSTEM", return_status="RETURN_OR_REFUND_REQUEST_REJECTED"))
    assert logs(born_rejected)[0][:2] == ("intake", "ERR_REVIEW_002")


def test_us_no_reason_return_of_exempt_category_is_flagged_with_the_rule(tenants):
    from stores.models import Market

    a, _b = tenants
    us_store = a.stores[0]
    us_store.market = Market.objects.get(code="US")
    us_store.save()
    items = [{"sku_id": "SKU9", "product_name": "Custom engraved ring", "category": "custom_made",
              "refund_amount": {"currency": "USD", "refund_total": "40.00"}}]
    ticket, _ = services.intake(us_store, platform_return(return_type="RETURN_AND_REFUND",
                                                          return_reason="ecom_no_longer_needed",
                                                          return_line_items=items))
    assert ticket.exempt_category == "custom_made"
    row = OperationLog.objects.filter(ticket=ticket, action="policy_check").get()
    assert row.error_code == "ERR_POLICY_001" and row.payload["rule"] == "no_reason_exempt_categories"
    # A quality complaint about the same item is not a no-reason return; nor is any item elsewhere exempt.
    quality, _ = services.intake(us_store, platform_return(return_type="RETURN_AND_REFUND",
                                                           return_reason="quality_issue", return_line_items=items))
    assert quality.exempt_category == ""
    other_market, _ = services.intake(a.stores[1], platform_return(return_reason="ecom_no_longer_needed",
                                                                   return_line_items=items))
    assert a.stores[1].market.code != "US" and other_market.exempt_category == ""


def test_stalled_flag_is_set_once_and_cleared(tenants):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return(return_type="RETURN_AND_REFUND"))
    assert services.mark_stalled(ticket.pk, detail={"tracking_number": "X1"}) is True
    assert services.mark_stalled(ticket.pk, detail={"tracking_number": "X1"}) is False
    assert [r[:2] for r in logs(ticket)].count(("scan_watch", "ERR_LOG_301")) == 1
    assert services.clear_stalled(ticket.pk, detail={}) is True
    ticket.refresh_from_db()
    assert ticket.stalled_at is None and logs(ticket)[-1][0] == "scan_watch_cleared"


def test_events_are_delivered_after_commit_only(tenants, django_capture_on_commit_callbacks):
    from aftersales import events

    a, _b = tenants
    seen = []

    def handler(**data):
        seen.append(data)

    events.subscribe(events.STATE_CHANGED, handler)
    try:
        ticket, _ = services.intake(a.stores[0], platform_return())
        with django_capture_on_commit_callbacks(execute=True):
            services.approve(Performer.of(a.actor(a.owner)), ticket.public_id, "APPROVE_REFUND")
        assert [(d["before"], d["after"]) for d in seen] == [("pending_review", "refund_approved")]
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(AppError):
            services.approve(Performer.of(a.actor(a.owner)), ticket.public_id, "APPROVE_REFUND")
        assert len(seen) == 1  # a refused action publishes nothing
    finally:
        events._subscribers[events.STATE_CHANGED].remove(handler)


def test_stalling_raises_one_alert(tenants):
    from aftersales.models import Alert

    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return(return_type="RETURN_AND_REFUND"))
    services.mark_stalled(ticket.pk, detail={"tracking_number": "X1"})
    services.mark_stalled(ticket.pk, detail={"tracking_number": "X1"})  # already stalled: nothing new
    alert = Alert.objects.for_actor(a.actor(a.owner)).get()
    assert (alert.kind, alert.error_code, alert.key, alert.resolved_at) == ("stalled", "ERR_LOG_301", "X1", None)
    services.clear_stalled(ticket.pk, detail={})  # the first scan resolves it
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    services.mark_stalled(ticket.pk, detail={"tracking_number": "X1"})  # stalls again: the same alert reopens
    alert.refresh_from_db()
    assert alert.resolved_at is None and Alert.objects.for_agency(a.agency).count() == 1


def test_an_older_platform_update_never_moves_a_request_back(tenants):
    a, _b = tenants
    data = platform_return(update_time=1_800_000_000)
    services.intake(a.stores[0], data)
    done, _ = services.intake(a.stores[0], {**data, "return_status": "RETURN_OR_REFUND_REQUEST_COMPLETE",
                                            "update_time": 1_800_000_600})
    assert done.state == State.COMPLETED
    replay, _ = services.intake(a.stores[0], {**data, "return_status": "RETURN_OR_REFUND_REQUEST_PENDING",
                                              "update_time": 1_800_000_300})
    assert replay.state == State.COMPLETED
    assert logs(replay)[-1][:4] == ("platform_status", "ERR_SYNC_003", "completed", "completed")


def test_reject_with_a_malformed_image_id_is_a_coded_refusal(tenants):
    a, _b = tenants
    ticket, _ = services.intake(a.stores[0], platform_return())
    with pytest.raises(AppError) as info:
        services.reject(Performer.of(a.actor(a.owner)), ticket.public_id, reason="reverse_reject_request_reason_1",
                        images=["not-a-uuid"])
    assert info.value.code == "ERR_VALIDATION"
    assert logs(ticket)[-1][:2] == ("reject", "ERR_VALIDATION")
