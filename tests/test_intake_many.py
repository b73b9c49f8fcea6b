"""intake_many: a page of platform objects in one set-based batch, per object exactly what intake does.

Equivalence with one-by-one intake (rows, deadlines, items, log rows, events), a malformed object failing alone,
a return twice in one batch, a known return in the batch, concurrent batches sharing returns, and a batch's
query count that does not grow with its size."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from aftersales import events, services
from aftersales.models import AfterSalesRequest, LineItem, OperationLog
from aftersales.states import State
from stores.models import Market
from tests.conftest import platform_return
from tests.factories import StoreFactory

SKIPPED = {"id", "public_id", "store", "created_at", "updated_at", "state_changed_at"}


def request_row(ticket) -> dict:
    ticket = AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)
    return {f.attname: getattr(ticket, f.attname) for f in AfterSalesRequest._meta.concrete_fields
            if f.name not in SKIPPED and f.attname != "store_id"}


def item_rows(ticket) -> list[tuple]:
    return list(LineItem.objects.filter(ticket_id=ticket.pk).order_by("id").values_list(
        "line_item_id", "order_line_item_id", "sku_id", "seller_sku", "sku_name", "product_name", "category",
        "quantity", "refund_amount"))


def log_rows(ticket) -> list[tuple]:
    return list(OperationLog.objects.filter(ticket_id=ticket.pk).order_by("id").values_list(
        "actor_kind", "actor_label", "action", "state_before", "state_after", "error_code", "message", "payload"))


def us_store(tenant, name: str):
    return StoreFactory(agency=tenant.agency, market=Market.objects.get(code="US"), name=name)


@pytest.fixture
def created_events():
    """What CREATED delivers after commit, one list of ids per publish."""
    seen: list[list[int]] = []

    def handler(ticket_ids, **_data):
        seen.append(list(ticket_ids))

    events.subscribe(events.CREATED, handler)
    yield seen
    events._subscribers[events.CREATED].remove(handler)


def variety() -> list[dict]:
    """One of each kind of new object intake treats specially, stamped so deadlines do not depend on the clock."""
    now = int(time.time())
    exempt_items = [{"return_line_item_id": "LX", "sku_id": "SKU9", "product_name": "Custom engraved ring",
                     "category": "custom_made", "quantity": 2,
                     "refund_amount": {"currency": "USD", "refund_total": "40.00"}}]
    return [
        platform_return(create_time=now - 7200),
        platform_return(return_type="RETURN_AND_REFUND", create_time=now - 600,
                        return_tracking_number="1Z5R89390357567127", return_provider_name="UPS",
                        reject_reasons=[{"name": "reverse_reject_request_reason_1", "text": "Not valid"}]),
        platform_return(return_status="SOMETHING_NEW_2027", create_time=now - 60),  # unknown status
        platform_return(return_status="REFUND_OR_RETURN_REQUEST_REJECT", role="SYSTEM"),  # 审核失败 at birth
        platform_return(return_type="RETURN_AND_REFUND", return_reason="ecom_no_longer_needed",
                        return_line_items=exempt_items),  # 无理由退货豁免
        platform_return(return_type="REPLACEMENT", return_status="REPLACEMENT_REQUEST_PENDING",
                        seller_next_action_response=[]),
        platform_return(return_status="RETURN_OR_REFUND_REQUEST_COMPLETE", create_time=None),  # final: no deadline
    ]


# --- the same rows as one by one --------------------------------------------------------------------------
def test_a_batch_writes_what_intake_writes_one_by_one(tenants, django_capture_on_commit_callbacks, created_events):
    a, _b = tenants
    one_by_one, batched = us_store(a, "singles"), us_store(a, "batch")
    payloads = variety()
    with django_capture_on_commit_callbacks(execute=True):
        singles = [services.intake(one_by_one, data) for data in payloads]
    single_events = list(created_events)
    created_events.clear()
    with django_capture_on_commit_callbacks(execute=True):
        results = services.intake_many(batched, payloads)

    assert [r.created for r in results] == [True] * len(payloads) and all(r.error is None for r in results)
    for (single, created), result in zip(singles, results, strict=True):
        assert created
        assert request_row(result.ticket) == request_row(single)  # state, amounts, deadlines, exemption, raw …
        assert result.ticket.store_id == batched.pk and result.ticket.due_at == single.due_at
        assert item_rows(result.ticket) == item_rows(single)
        assert log_rows(result.ticket) == log_rows(single)
    # Events: one per request one by one, one listing them all for the batch.
    assert single_events == [[t.pk] for t, _ in singles]
    assert created_events == [sorted(r.ticket.pk for r in results)]
    # And what those rows are, so equal cannot mean equally wrong.
    by_kind = [r.ticket for r in results]
    assert by_kind[0].state == State.PENDING_REVIEW and by_kind[0].due_at is not None
    assert by_kind[1].reject_reasons == [{"name": "reverse_reject_request_reason_1", "text": "Not valid"}]
    assert [r[2] for r in log_rows(by_kind[2])] == ["intake", "platform_status"]
    assert log_rows(by_kind[2])[1][5] == "ERR_SYNC_001" and by_kind[2].platform_status_unknown
    assert by_kind[3].state == State.REJECTED and log_rows(by_kind[3])[0][5] == "ERR_REVIEW_002"
    assert by_kind[4].exempt_category == "custom_made" and log_rows(by_kind[4])[1][2:6] == (
        "policy_check", "pending_review", "pending_review", "ERR_POLICY_001")
    assert item_rows(by_kind[4])[0][7] == 2
    assert by_kind[6].due_at is None and by_kind[6].sla_check_at is None
    assert all(log_rows(t)[0][:3] == ("platform", "TikTok Shop", "intake") for t in by_kind)


def test_the_tracking_and_rules_subscribers_get_the_whole_batch(tenants, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    from aftersales import rules, tasks
    from logistics import tasks as logistics_tasks
    from logistics import tracking_hooks

    a, b = tenants
    rule_calls, parcels = [], []
    monkeypatch.setattr(tasks.apply_rules_task, "delay", rule_calls.append)
    monkeypatch.setattr(logistics_tasks.register_reported_tracking, "delay", lambda *args: parcels.append(args))
    assert tracking_hooks.on_created in events._subscribers[events.CREATED]
    rules.create_rule(a.actor(a.owner), name="tag", action="tag", params={"tags": ["auto"]})
    payloads = [platform_return(), platform_return(return_type="RETURN_AND_REFUND",
                                                   return_tracking_number="1Z5R89390357567127",
                                                   return_provider_name="UPS"),
                platform_return(return_tracking_number="1Z5R89390357567127")]  # refund only: no parcel
    with django_capture_on_commit_callbacks(execute=True):
        ours = services.intake_many(a.stores[0], payloads)
        services.intake_many(b.stores[0], [platform_return()])  # bravo has no rules
    assert rule_calls == sorted(r.ticket.pk for r in ours)
    assert parcels == [(ours[1].ticket.pk, "1Z5R89390357567127", "UPS", "platform_return")]


# --- one bad object, copies, known returns ----------------------------------------------------------------
def test_a_malformed_object_fails_alone_with_its_code(tenants):
    a, _b = tenants
    store = a.stores[0]
    good = [platform_return() for _ in range(3)]
    bad_items = [{"sku_id": "S", "product_name": "P", "quantity": "a few"}]
    payloads = [good[0], platform_return(return_type="TELEPORT"), "not an object", good[1],
                platform_return(return_line_items=bad_items),
                platform_return(refund_amount={"currency": "USD", "refund_total": "1e20"}),  # the column refuses it
                platform_return(return_status=7), good[2],
                platform_return(return_line_items=[{"sku_id": "S", "product_name": "P", "quantity": float("inf")}])]
    results = services.intake_many(store, payloads)

    assert [r.error.code if r.error else "ok" for r in results] == [
        "ok", "ERR_SYNC_002", "ERR_SYNC_002", "ok", "ERR_SYNC_002", "ERR_SYNC_002", "ERR_SYNC_002", "ok",
        "ERR_SYNC_002"]
    assert results[1].error.fields == {"return_type": ["unknown 'TELEPORT'"]}
    assert all(r.ticket is None and not r.created for r in results if r.error)
    stored = AfterSalesRequest.objects.unscoped().filter(store=store)
    assert set(stored.values_list("return_id", flat=True)) == {g["return_id"] for g in good}
    # Nothing half-written: items and log rows only for the stored ones.
    assert LineItem.objects.filter(ticket__store=store).count() == 3
    assert OperationLog.objects.filter(store_id=store.pk).count() == 3
    # The single form raises the same coded error.
    with pytest.raises(services.AppError) as info:
        services.intake(store, payloads[5])
    assert info.value.code == "ERR_SYNC_002"


def test_a_return_twice_in_one_batch_is_created_then_updated(tenants):
    a, _b = tenants
    data = platform_return()
    newer = {**data, "return_status": "RETURN_OR_REFUND_REQUEST_SUCCESS", "update_time": data["update_time"] + 30}
    results = services.intake_many(a.stores[0], [data, dict(data), newer, platform_return(return_type="X")])

    assert [(r.created, r.error) for r in results[:3]] == [(True, None), (False, None), (False, None)]
    assert results[0].ticket.pk == results[1].ticket.pk == results[2].ticket.pk
    ticket = AfterSalesRequest.objects.unscoped().get(store=a.stores[0], return_id=data["return_id"])
    assert ticket.state == State.REFUND_APPROVED and results[2].ticket.state == State.REFUND_APPROVED
    # The exact copy changed nothing (no log row); the newer one was applied once.
    assert [r[2] for r in log_rows(ticket)] == ["intake", "platform_status"]


def test_a_copy_after_a_refused_first_copy_is_created(tenants):
    a, _b = tenants
    data = platform_return()
    refused = {**data, "refund_amount": {"currency": "USD", "refund_total": "1e20"}}  # parses; the column refuses
    results = services.intake_many(a.stores[0], [refused, platform_return(), data])
    assert results[0].error.code == "ERR_SYNC_002" and results[1].created and results[2].created
    assert results[2].ticket.return_id == data["return_id"] and results[2].ticket.refund_total == 25


def test_a_known_return_in_the_batch_gets_the_platform_status(tenants):
    a, _b = tenants
    data = platform_return()
    known, _ = services.intake(a.stores[0], data)
    update = {**data, "return_status": "RETURN_OR_REFUND_REQUEST_SUCCESS", "update_time": data["update_time"] + 30}
    results = services.intake_many(a.stores[0], [platform_return(), update, platform_return()])

    assert [r.created for r in results] == [True, False, True]
    assert results[1].ticket.pk == known.pk and results[1].ticket.state == State.REFUND_APPROVED
    assert [r[2:5] for r in log_rows(known)] == [("intake", "", "pending_review"),
                                                  ("platform_status", "pending_review", "refund_approved")]
    # Replayed as is: nothing changes, nothing is logged.
    again = services.intake_many(a.stores[0], [update])
    assert not again[0].created and len(log_rows(known)) == 2


# --- query count ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 50])
def test_a_batch_of_new_requests_is_a_fixed_number_of_queries(tenants, size, django_assert_num_queries,
                                                              django_capture_on_commit_callbacks):
    from aftersales import rules

    a, _b = tenants
    store = a.stores[0]
    rules.create_rule(a.actor(a.owner), name="tag", action="tag", params={"tags": ["auto"]})
    _ = store.market  # the caller's store comes with its market (the sync loads it with select_related)
    payloads = [platform_return(return_type="RETURN_AND_REFUND", return_reason="ecom_no_longer_needed")
                for _ in range(size)]
    # Known returns, the market policy, savepoint, requests, line items, log rows, release; after commit one
    # read per subscriber (auto-rules, reported tracking numbers).
    with django_assert_num_queries(9), django_capture_on_commit_callbacks(execute=True) as callbacks:
        results = services.intake_many(store, payloads)
    assert all(r.created for r in results) and len(callbacks) >= 2
    assert LineItem.objects.filter(ticket__store=store).count() == size


# --- concurrency ------------------------------------------------------------------------------------------
def race(store, batches: list[list[dict]]) -> tuple[list[list], list[BaseException]]:
    """Each batch in its own thread (own connection), started together."""
    barrier = threading.Barrier(len(batches))
    outcomes: list[list] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(payloads):
        try:
            barrier.wait()
            results = services.intake_many(store, payloads)
            with lock:
                outcomes.append(results)
        except BaseException as exc:  # reported by the caller's assertion
            with lock:
                failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes, failures


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_batches_sharing_returns_store_each_once_without_an_error():
    from tests.conftest import make_tenant

    a = make_tenant("intake-many-race", n_stores=1)
    store = a.stores[0]
    for _round in range(3):
        shared = [platform_return() for _ in range(30)]
        batches = [shared + [platform_return() for _ in range(10)],
                   list(reversed(shared)) + [platform_return() for _ in range(10)]]
        outcomes, failures = race(store, batches)
        assert not failures and len(outcomes) == 2
        assert all(r.error is None and r.ticket is not None for results in outcomes for r in results)
        created = [r.ticket.return_id for results in outcomes for r in results if r.created]
        assert sorted(created) == sorted({p["return_id"] for b in batches for p in b})  # each created once
    intake_rows = OperationLog.objects.filter(store_id=store.pk, action="intake")
    assert intake_rows.count() == AfterSalesRequest.objects.unscoped().filter(store=store).count() == 3 * 50
    assert LineItem.objects.filter(ticket__store=store).count() == 3 * 50


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_return_inserted_meanwhile_by_another_intake_is_applied_to_its_row():
    """The other intake has inserted the return but not committed when this batch looks it up: the INSERT waits
    for it (ON CONFLICT), skips the row, and the object is applied to the winner's request — no error."""
    from django.db import connection, transaction

    from tests.conftest import make_tenant

    a = make_tenant("intake-many-loser", n_stores=1)
    store = a.stores[0]
    data = platform_return()
    newer = {**data, "return_status": "RETURN_OR_REFUND_REQUEST_SUCCESS", "update_time": data["update_time"] + 30}
    other = platform_return()
    inserted, waiting = threading.Event(), threading.Event()
    winner: list = []
    outcome: list = []

    def first():
        try:
            with transaction.atomic():
                winner.extend(services.intake_many(store, [data]))
                inserted.set()
                waiting.wait(20)  # until the batch below waits on the row's unique index entry
        finally:
            connections.close_all()

    def second():
        try:
            inserted.wait(20)
            outcome.extend(services.intake_many(store, [other, newer]))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    blocked = False
    for _ in range(200):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND query LIKE 'INSERT INTO \"aftersales_aftersalesrequest\"%%'")
            blocked = cursor.fetchone()[0] > 0
        if blocked:
            break
        time.sleep(0.05)
    waiting.set()
    for t in threads:
        t.join(60)
    connections.close_all()
    assert blocked  # the batch really met the uncommitted row
    assert winner[0].created and [r.error for r in outcome] == [None, None]
    assert outcome[0].created and not outcome[1].created and outcome[1].changed
    assert outcome[1].ticket.pk == winner[0].ticket.pk and outcome[1].ticket.state == State.REFUND_APPROVED
    assert AfterSalesRequest.objects.unscoped().filter(store=store, return_id=data["return_id"]).count() == 1
    assert [r[2] for r in log_rows(winner[0].ticket)] == ["intake", "platform_status"]
