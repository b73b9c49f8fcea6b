"""Batch review written set-based (services.perform_many): the same results, rows, log, outbox and events as the
actions one by one; a constant number of queries; a refusal or a database failure costs only its own request."""

import threading
import time
import uuid

import pytest
from django.db import connection, connections

from aftersales import events, services, sla
from aftersales.models import AfterSalesRequest, OperationLog
from aftersales.oplog import Performer
from aftersales.states import State
from aftersales.tiktok.models import PartnerApp, PlatformDecision, SellerAuthorization, StoreLink
from tests.conftest import make_tenant, platform_return

NOW = int(time.time())
REASON = "reverse_reject_request_reason_1"

# One request of each kind a batch meets, by name; the same payloads in both tenants (return ids are per store).
KINDS = {
    "refund": {},
    "return": {"return_type": "RETURN_AND_REFUND"},
    "replacement": {"return_type": "REPLACEMENT", "return_status": "REPLACEMENT_REQUEST_PENDING"},
    "cancellation": {"return_type": "CANCELLATION"},
    "done": {"return_status": "RETURN_OR_REFUND_REQUEST_COMPLETE"},
    # Its platform deadline passed before the batch: the sweep has recorded the breach (the kind stays missed).
    "breached": {"seller_next_action_response": [{"action": "SELLER_RESPOND_REFUND", "deadline": NOW - 7200}]},
    "ineligible": {},  # the platform said APPROVE_REFUND is not allowed now
    "answered": {},  # a person already acted on it (first human response stamped)
}
# Columns that differ between two tenants' copies or by the clock; everything else must be equal.
UNCOMPARED = {"id", "public_id", "agency", "store", "created_at", "updated_at", "state_changed_at",
              "first_human_response_at"}

STEPS = [
    ("approve", {"decision": "APPROVE_REFUND"}),
    ("approve", {"decision": "APPROVE_RETURN"}),
    ("approve", {"decision": "APPROVE_RETURN", "buyer_keep_item": True}),
    ("approve", {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": "5.00", "currency": "USD"}),
    ("approve", {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": "500.00", "currency": "USD"}),
    ("approve", {"decision": "NOT_A_DECISION"}),
    ("reject", {"reason": REASON, "comment": "不符合退货条件"}),
    ("reject", {"reason": "not-a-reason"}),
    ("request_evidence", {"message": "请提供照片"}),
    ("close", {"comment": "done"}),
]


def _twin(slug: str):
    """A tenant whose first store is linked to TikTok Shop, with one request of each kind in its first store
    and one refund in its third (not granted to the agent)."""
    tenant = make_tenant(slug)
    app = PartnerApp.objects.create(agency=tenant.agency, name="App", app_key=f"{slug}-key",
                                    app_secret=f"{slug}-secret")
    auth = SellerAuthorization.objects.create(agency=tenant.agency, app=app, open_id=f"{slug}-open",
                                              access_token="a", refresh_token="r")
    StoreLink.objects.create(agency=tenant.agency, store=tenant.stores[0], authorization=auth, sync_enabled=False)
    tickets = {}
    for n, (name, overrides) in enumerate(KINDS.items()):
        data = platform_return(return_id=f"TWIN{n}", order_id=f"O{n}", create_time=NOW - 3600,
                               update_time=NOW - 60, **overrides)
        if "seller_next_action_response" not in overrides:
            data["seller_next_action_response"] = [{"action": "SELLER_RESPOND_REFUND", "deadline": NOW + 86400}]
        tickets[name], _ = services.intake(tenant.stores[0], data)
    tickets["ungranted"], _ = services.intake(tenant.stores[2], platform_return(
        return_id="TWINU", order_id="OU", create_time=NOW - 3600, update_time=NOW - 60,
        seller_next_action_response=[{"action": "SELLER_RESPOND_REFUND", "deadline": NOW + 86400}]))
    AfterSalesRequest.objects.unscoped().filter(pk=tickets["ineligible"].pk).update(platform_eligibility={
        "APPROVE_REFUND": {"eligible": False, "code": 12019004, "reason": "order not delivered"}})
    services.request_evidence(Performer.of(tenant.actor(tenant.owner)), tickets["answered"].public_id)
    return tenant, tickets


def _row(ticket) -> dict:
    ticket = AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)
    return {f.attname: getattr(ticket, f.attname) for f in ticket._meta.concrete_fields if f.name not in UNCOMPARED}


def _log(ticket) -> list[tuple]:
    return list(OperationLog.objects.filter(ticket_id=ticket.pk).order_by("id").values_list(
        "action", "actor_kind", "state_before", "state_after", "error_code", "message", "payload"))


def _outbox(ticket) -> list[tuple]:
    return list(PlatformDecision.objects.filter(ticket_id=ticket.pk).order_by("id").values_list(
        "operation", "decision", "body", "status"))


@pytest.fixture
def twins(db):
    first, second = _twin("twin-a"), _twin("twin-b")
    sla.sweep()  # the "breached" request of each misses its platform deadline, identically
    assert all(AfterSalesRequest.objects.unscoped().get(pk=tickets["breached"].pk).breached_at
               for _tenant, tickets in (first, second))
    return first, second


@pytest.mark.parametrize("who", ["owner", "agent", "viewer"])
@pytest.mark.parametrize(("action", "params"), STEPS, ids=[f"{a}:{p.get('decision') or p.get('reason') or ''}"
                                                            for a, p in STEPS])
def test_batch_equals_one_by_one(twins, who, action, params, django_capture_on_commit_callbacks):
    (a, a_tickets), (b, b_tickets) = twins
    names = list(a_tickets)
    seen: dict[str, list] = {"a": [], "b": []}
    side = {"now": "a"}

    def record(**event):
        seen[side["now"]].append((event["ticket_id"], event["action"], event["before"], event["after"],
                                  event["payload"]))

    events.subscribe(events.STATE_CHANGED, record)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            batch = services.bulk(Performer.of(a.actor(getattr(a, who))), action,
                                  [str(a_tickets[n].public_id) for n in names], params)
        side["now"] = "b"
        single = []
        performer = Performer.of(b.actor(getattr(b, who)))
        for n in names:  # what the batch must equal: each request through the one-request path
            with django_capture_on_commit_callbacks(execute=True):
                try:
                    services.BULK_STEPS[action](params).run(performer, b_tickets[n].public_id)
                    single.append((True, None))
                except services.AppError as exc:
                    single.append((False, exc.code))
    finally:
        events._subscribers[events.STATE_CHANGED].remove(record)

    assert [(r["ok"], r["error"] and r["error"]["code"]) for r in batch] == single
    # Each step is done on some request (the viewer may do none), except the three whose input is always refused.
    refused = params in ({"decision": "NOT_A_DECISION"}, {"reason": "not-a-reason"},
                         {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": "500.00", "currency": "USD"})
    assert any(ok for ok, _ in single) == (who != "viewer" and not refused)
    for n in names:
        assert _row(a_tickets[n]) == _row(b_tickets[n]), n
        assert _log(a_tickets[n]) == _log(b_tickets[n]), n
        assert _outbox(a_tickets[n]) == _outbox(b_tickets[n]), n
        if a_tickets[n].first_human_response_at is None:
            got = AfterSalesRequest.objects.unscoped().get(pk=a_tickets[n].pk).first_human_response_at
            twin = AfterSalesRequest.objects.unscoped().get(pk=b_tickets[n].pk).first_human_response_at
            assert (got is None) == (twin is None), n
    by_pk = {t.pk: n for n, t in [*a_tickets.items(), *b_tickets.items()]}
    assert [(by_pk[e[0]], *e[1:]) for e in seen["a"]] == [(by_pk[e[0]], *e[1:]) for e in seen["b"]]


def test_batch_outcomes_in_detail(twins):
    """What the comparison above rests on, spelled out for one batch of the agent's."""
    (a, tickets), _ = twins
    ids = [str(tickets[n].public_id) for n in ("refund", "done", "ungranted", "ineligible", "breached")]
    results = services.bulk(Performer.of(a.actor(a.agent)), "approve", [*ids, "nope", ids[0].upper()],
                            {"decision": "APPROVE_REFUND"})
    assert [(r["id"], r["ok"], r["error"] and r["error"]["code"]) for r in results] == [
        (ids[0], True, None), (ids[1], False, "ERR_STATE_001"), (ids[2], False, "ERR_NOT_FOUND"),
        (ids[3], False, "ERR_TTS_009"), (ids[4], True, None), ("nope", False, "ERR_NOT_FOUND"),
        (ids[0].upper(), True, None)]  # the same request spelled again acts once
    refund = AfterSalesRequest.objects.unscoped().get(pk=tickets["refund"].pk)
    assert refund.state == State.REFUND_APPROVED and refund.first_human_response_at is not None
    assert [r[:5] for r in _log(tickets["refund"])] == [
        ("intake", "platform", "", "pending_review", ""), ("approve", "sub_account", "pending_review",
                                                           "refund_approved", "")]
    assert _log(tickets["done"])[-1][:5] == ("approve", "sub_account", "completed", "completed", "ERR_STATE_001")
    assert _log(tickets["ineligible"])[-1][4] == "ERR_TTS_009"
    assert not OperationLog.objects.filter(ticket_id=tickets["ungranted"].pk, action="approve").exists()
    assert _outbox(tickets["refund"]) == [("approve", "APPROVE_REFUND", {"decision": "APPROVE_REFUND"}, "sending")]
    # Approved: no deadline left to watch; the breached request's missed kind was not watched again.
    assert (refund.due_at, refund.sla_check_at) == (None, None)


@pytest.mark.parametrize("size", [1, 40])
def test_batch_queries_do_not_grow_with_its_size(tenants, size, django_assert_num_queries):
    a, _b = tenants
    agent = Performer.of(a.actor(a.agent))
    tickets = [services.intake(a.stores[0], platform_return())[0] for _ in range(size)]
    ids = [str(t.public_id) for t in tickets] + [str(uuid.uuid4())]
    # Savepoint, the lock, the agent's grants on the stores, the market's policy, one UPDATE, one log INSERT,
    # release.
    with django_assert_num_queries(7):
        results = services.bulk(agent, "approve", ids, {"decision": "APPROVE_REFUND"})
    assert sum(r["ok"] for r in results) == size
    assert OperationLog.objects.filter(ticket__in=tickets, action="approve", error_code="").count() == size


def test_a_database_refusal_costs_only_its_request(tenants):
    """A row the database refuses (here a trigger, standing for any constraint) fails the set-based write: the
    batch is rolled back whole and redone one request per transaction, so only that request fails, coded."""
    a, _b = tenants
    owner = Performer.of(a.actor(a.owner))
    tickets = [services.intake(a.stores[0], platform_return())[0] for _ in range(4)]
    bad = tickets[2]
    with connection.cursor() as cursor:
        cursor.execute(f"""
            CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused'; END $$;
            CREATE TRIGGER refuse_one BEFORE UPDATE ON aftersales_aftersalesrequest
            FOR EACH ROW WHEN (NEW.id = {bad.pk} AND NEW.state <> OLD.state) EXECUTE FUNCTION refuse_one();""")
    results = services.bulk(owner, "approve", [str(t.public_id) for t in tickets], {"decision": "APPROVE_REFUND"})
    assert [(r["ok"], r["error"] and r["error"]["code"]) for r in results] == [
        (True, None), (True, None), (False, "ERR_INTERNAL"), (True, None)]
    states = dict(AfterSalesRequest.objects.unscoped().filter(pk__in=[t.pk for t in tickets])
                  .values_list("pk", "state"))
    assert states == {t.pk: State.PENDING_REVIEW if t is bad else State.REFUND_APPROVED for t in tickets}
    # Nothing of the rolled-back batch is left: one approval row per approved request, none for the refused one.
    approvals = OperationLog.objects.filter(ticket__in=tickets, action="approve", error_code="")
    assert sorted(approvals.values_list("ticket_id", flat=True)) == sorted(t.pk for t in tickets if t is not bad)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_overlapping_batches_and_single_actions_each_win_once():
    """Two batches over the same requests in opposite orders and single approvals racing them: every request is
    approved exactly once, everything else is refused with ERR_STATE_001, no deadlock."""
    a = make_tenant("overlap", n_stores=2)
    owner = Performer.of(a.actor(a.owner))
    tickets = [services.intake(a.stores[i % 2], platform_return())[0] for i in range(60)]
    ids = [str(t.public_id) for t in tickets]
    outcomes: dict[str, list] = {"forward": [], "backward": [], "single": []}
    barrier = threading.Barrier(3)

    def batch(name, order):
        try:
            barrier.wait()
            outcomes[name] = services.bulk(owner, "approve", order, {"decision": "APPROVE_REFUND"})
        finally:
            connections.close_all()

    def singles():
        try:
            barrier.wait()
            for ticket_id in ids[::7]:
                try:
                    services.approve(owner, ticket_id, "APPROVE_REFUND")
                    outcomes["single"].append({"id": ticket_id, "ok": True})
                except services.AppError as exc:
                    assert exc.code == "ERR_STATE_001"
                    outcomes["single"].append({"id": ticket_id, "ok": False})
        finally:
            connections.close_all()

    threads = [threading.Thread(target=batch, args=("forward", ids)),
               threading.Thread(target=batch, args=("backward", ids[::-1])), threading.Thread(target=singles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wins: dict[str, int] = {}
    for results in outcomes.values():
        for r in results:
            wins[r["id"]] = wins.get(r["id"], 0) + r["ok"]
            assert r["ok"] or r.get("error", {"code": "ERR_STATE_001"})["code"] == "ERR_STATE_001"
    assert wins == dict.fromkeys(ids, 1)
    assert len(outcomes["forward"]) == len(outcomes["backward"]) == 60
    approvals = OperationLog.objects.filter(ticket__in=tickets, action="approve")
    assert approvals.filter(error_code="").count() == 60
    assert approvals.filter(error_code="ERR_STATE_001").count() == 60 + len(ids[::7])
