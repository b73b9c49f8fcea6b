"""Pull sync from the TikTok Shop emulator into after-sales requests: end to end, idempotent, resumable, per-store
lock, every error class of the platform, unknown statuses kept, eligibility respected."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import override_settings

from aftersales import selectors, services
from aftersales.models import AfterSalesRequest, Evidence, OperationLog
from aftersales.oplog import Performer
from aftersales.states import RequestType, State
from aftersales.tiktok import sync
from aftersales.tiktok.models import SellerAuthorization, StoreLink, SyncRun
from stores import errors
from stores.errors import AppError
from tests.emulators.tiktok import INTERNAL, RATE_LIMIT, Fault, TikTokEmulator
from tests.tiktok_support import link_store

pytestmark = pytest.mark.django_db

SEARCH = "/return_refund/202309/returns/search"


@pytest.fixture
def emulator():
    emu = TikTokEmulator(opaque_page_tokens=True).start()
    yield emu
    emu.stop()


@pytest.fixture
def linked(emulator, tenants):
    # The platform's data is stamped a few seconds in the past, as it is when a sync reads it: a change made in
    # the test then never shares the second in which a window closes.
    emulator.clock = lambda: time.time() - 5
    return link_store(emulator, tenants[0].stores[0])


def requests_of(store):
    return AfterSalesRequest.objects.unscoped().filter(store=store)


def intake_rows(store) -> Counter:
    return Counter(OperationLog.objects.filter(store_id=store.pk, action="intake").values_list("ticket_id", flat=True))


def searches(emulator) -> list[dict]:
    return [s for s in emulator.seen if s["path"].endswith("/search")]


def test_end_to_end_pull_creates_requests_with_logs_evidence_reasons_and_eligibility(linked):
    emu = linked.emulator
    returns = [emu.add_return(linked.shop_id) for _ in range(120)]
    cancellations = [emu.add_cancellation(linked.shop_id) for _ in range(5)]

    run = sync.sync_store(linked.store.pk)

    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_code, run.message)
    assert run.counts["created"] == 125 and run.counts["pages"] >= 4, run.counts
    ids = set(requests_of(linked.store).values_list("return_id", flat=True))
    assert ids == {r["return_id"] for r in returns} | {c["cancel_id"] for c in cancellations}
    assert set(intake_rows(linked.store).values()) == {1}  # one intake row each
    cancel = requests_of(linked.store).get(return_id=cancellations[0]["cancel_id"])
    assert cancel.type == RequestType.CANCELLATION and cancel.state == State.PENDING_REVIEW
    assert cancel.due_at is not None  # deadlines apply to synced requests like to any other
    first = requests_of(linked.store).get(return_id=returns[0]["return_id"])
    assert first.platform_records and first.reject_reasons and first.platform_eligibility
    assert Evidence.objects.unscoped().filter(ticket=first, role=Evidence.Role.BUYER).exists()
    link = StoreLink.objects.unscoped().get(pk=linked.link.pk)
    assert link.returns_watermark and link.cancellations_watermark and link.progress == {}
    assert link.lease_owner == "" and link.last_success_at is not None
    # Every call the sync made was signed with this shop's cipher where the reference says so.
    assert all(s["query"].get("shop_cipher") == linked.store.shop_cipher for s in searches(emu))


def test_a_second_run_changes_nothing_and_a_status_change_is_applied_once(linked):
    emu = linked.emulator
    returns = [emu.add_return(linked.shop_id, return_type="REFUND") for _ in range(12)]
    sync.sync_store(linked.store.pk)
    logs_before = OperationLog.objects.filter(store_id=linked.store.pk).count()
    evidence_before = Evidence.objects.unscoped().filter(ticket__store=linked.store).count()

    again = sync.sync_store(linked.store.pk)  # the overlap re-reads everything: all unchanged
    assert again.counts.get("created", 0) == 0 and again.counts.get("updated", 0) == 0
    assert again.counts["unchanged"] == 12
    assert OperationLog.objects.filter(store_id=linked.store.pk).count() == logs_before
    assert Evidence.objects.unscoped().filter(ticket__store=linked.store).count() == evidence_before

    emu.set_status(returns[3]["return_id"], "RETURN_OR_REFUND_REQUEST_SUCCESS")
    third = sync.sync_store(linked.store.pk)
    assert third.counts["updated"] == 1
    ticket = requests_of(linked.store).get(return_id=returns[3]["return_id"])
    assert ticket.state == State.REFUND_APPROVED
    assert OperationLog.objects.filter(ticket=ticket, action="platform_status").count() == 1
    sync.sync_store(linked.store.pk)
    assert OperationLog.objects.filter(ticket=ticket, action="platform_status").count() == 1


def test_the_window_overlaps_the_watermark(linked, settings):
    emu = linked.emulator
    sync.sync_store(linked.store.pk)
    link = StoreLink.objects.unscoped().get(pk=linked.link.pk)
    # Stamped 100 s before the watermark (committed late on the platform): the overlap still reads it.
    stamp = int(link.returns_watermark.timestamp()) - 100
    late = emu.add_return(linked.shop_id, update_time=stamp, create_time=stamp)
    run = sync.sync_store(linked.store.pk)
    assert run.counts["created"] == 1
    assert requests_of(linked.store).filter(return_id=late["return_id"]).exists()


def test_unknown_statuses_are_kept_raw_and_flagged_and_bad_objects_do_not_stop_the_sync(linked):
    emu = linked.emulator
    odd = emu.add_return(linked.shop_id, return_status="RETURN_OR_REFUND_NEW_FANCY_STATUS", new_field={"x": 1})
    bad = emu.add_return(linked.shop_id, return_type="TELEPORT")
    good = emu.add_return(linked.shop_id)
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.counts["errors"] == 1 and run.counts["unknown_status"] == 1
    ticket = requests_of(linked.store).get(return_id=odd["return_id"])
    assert ticket.platform_status_unknown and ticket.platform_status == "RETURN_OR_REFUND_NEW_FANCY_STATUS"
    assert ticket.raw["new_field"] == {"x": 1}  # unknown fields kept as sent
    assert OperationLog.objects.filter(ticket=ticket, error_code="ERR_SYNC_001").exists()
    assert not requests_of(linked.store).filter(return_id=bad["return_id"]).exists()
    assert requests_of(linked.store).filter(return_id=good["return_id"]).exists()


def test_one_run_per_store_at_a_time(linked):
    assert sync.claim(linked.store.pk, "someone-else")
    assert sync.sync_store(linked.store.pk) is None  # held: returns at once, nothing written
    assert not SyncRun.objects.unscoped().filter(store=linked.store).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_runs_on_one_store_only_one_runs(emulator, tenants):
    linked = link_store(emulator, tenants[0].stores[0])
    for _ in range(30):
        emulator.add_return(linked.shop_id)
    emulator.faults.extend([Fault(0, delay=0.3, path=SEARCH)] * 2)
    results: list = []

    def run():
        try:
            results.append(sync.sync_store(linked.store.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran = [r for r in results if r is not None]
    assert len(ran) == 1 and ran[0].status == SyncRun.Status.SUCCEEDED
    assert set(intake_rows(linked.store).values()) == {1} and len(intake_rows(linked.store)) == 30


def test_a_crashed_run_is_resumed_from_its_page_without_loss_or_duplicates(linked, monkeypatch):
    emu = linked.emulator
    base = int(time.time()) - 1000
    returns = [emu.add_return(linked.shop_id, create_time=base + i, update_time=base + i) for i in range(130)]
    real = sync.apply_object
    seen = {"n": 0}

    def crash_after_70(*args, **kwargs):
        seen["n"] += 1
        if seen["n"] == 71:
            raise SystemExit("worker died")  # not an AppError: nothing catches it on the way out
        return real(*args, **kwargs)

    monkeypatch.setattr(sync, "apply_object", crash_after_70)
    with pytest.raises(SystemExit):
        sync.sync_store(linked.store.pk)
    link = StoreLink.objects.unscoped().get(pk=linked.link.pk)
    first_since = min(r["update_time"] for r in returns) - 10
    assert link.progress["kind"] == "returns" and link.progress["since"] > first_since  # page 2 in flight
    assert link.returns_watermark is None
    assert 50 < requests_of(linked.store).count() < 130  # died inside page 2 (its first row re-read: inclusive)
    monkeypatch.setattr(sync, "apply_object", real)

    calls_before = len(searches(emu))
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.SUCCEEDED and run.counts["resumed"] == 1
    resumed = searches(emu)[calls_before]
    assert json.loads(resumed["body"])["update_time_ge"] == link.progress["since"]  # where the crash left off
    assert set(requests_of(linked.store).values_list("return_id", flat=True)) == {r["return_id"] for r in returns}
    assert set(intake_rows(linked.store).values()) == {1}
    assert not requests_of(linked.store).values("return_id").annotate(n=Count("id")).filter(n__gt=1).exists()


def test_a_refused_saved_page_token_restarts_the_window(linked):
    emu = linked.emulator
    for _ in range(60):
        emu.add_return(linked.shop_id)
    link = StoreLink.objects.unscoped().get(pk=linked.link.pk)
    now = int(linked.store.created_at.timestamp()) + 10**8
    link.progress = {"kind": "returns", "since": 0, "until": now, "page_token": "tampered-token"}
    link.save(update_fields=["progress"])
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.SUCCEEDED
    assert requests_of(linked.store).count() == 60


@pytest.mark.parametrize("fault", [RATE_LIMIT, INTERNAL])
def test_transient_platform_errors_are_retried(linked, fault):
    linked.emulator.add_return(linked.shop_id)
    linked.emulator.faults.append(Fault(fault.code, fault.http_status, fault.message, path=SEARCH))
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.SUCCEEDED and run.counts["created"] == 1


def test_a_platform_that_keeps_failing_fails_the_run_with_its_code_and_keeps_the_watermark(linked):
    linked.emulator.add_return(linked.shop_id)
    linked.emulator.faults.extend([Fault(INTERNAL.code, 500, "Internal error", path=SEARCH)] * 4)
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.FAILED
    assert (run.error_code, run.platform_code) == (errors.ERR_TTS_002.code, 36009003)
    link = StoreLink.objects.unscoped().get(pk=linked.link.pk)
    assert link.returns_watermark is None and link.lease_owner == "" and link.last_success_at is None
    assert sync.sync_store(linked.store.pk).status == SyncRun.Status.SUCCEEDED  # the next run catches up


def test_an_expired_access_token_is_refreshed_once_and_the_run_succeeds(linked):
    emu = linked.emulator
    emu.add_return(linked.shop_id)
    old = linked.authorization.access_token.reveal()
    emu.expire_token(old)
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.SUCCEEDED
    auth = SellerAuthorization.objects.unscoped().get(pk=linked.authorization.pk)
    assert auth.access_token.reveal() != old
    assert len([s for s in emu.seen if s["path"].endswith("/token/refresh")]) == 1


def test_a_refused_refresh_marks_the_authorisation_and_stops_the_store(linked):
    emu = linked.emulator
    emu.add_return(linked.shop_id)
    emu.expire_token(linked.authorization.access_token.reveal())
    auth = SellerAuthorization.objects.unscoped().get(pk=linked.authorization.pk)
    auth.refresh_token = "revoked-refresh-token"
    auth.save()
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.FAILED and run.error_code == errors.ERR_TTS_001.code
    auth.refresh_from_db()
    assert auth.status == SellerAuthorization.Status.NEEDS_REAUTH
    again = sync.sync_store(linked.store.pk)
    assert again.error_code == errors.ERR_TTS_006.code


def test_a_wrong_app_secret_is_refused_with_the_platform_code(linked):
    linked.app.app_secret = "not-the-secret"
    linked.app.save()
    run = sync.sync_store(linked.store.pk)
    assert (run.status, run.error_code, run.platform_code) == (SyncRun.Status.FAILED, errors.ERR_TTS_003.code,
                                                               106001)


@override_settings(TTS_HTTP_TIMEOUT_SECONDS=1)
def test_a_platform_that_answers_too_slowly_fails_the_run_as_unreachable(linked):
    linked.emulator.faults.extend([Fault(0, delay=1.6, path=SEARCH)] * 4)
    run = sync.sync_store(linked.store.pk)
    assert (run.status, run.error_code) == (SyncRun.Status.FAILED, errors.ERR_TTS_004.code)


def test_refresh_objects_refetches_named_returns(linked):
    emu = linked.emulator
    r = emu.add_return(linked.shop_id)
    counts = sync.refresh_objects(linked.store.pk, "returns", [r["return_id"]], trigger="webhook")
    assert counts["created"] == 1
    assert searches(emu)[-1]["body"]  # filtered by return_ids, not a window
    emu.set_status(r["return_id"], "RETURN_OR_REFUND_REQUEST_CANCEL")
    sync.refresh_objects(linked.store.pk, "returns", [r["return_id"]], trigger="webhook")
    assert requests_of(linked.store).get(return_id=r["return_id"]).state == State.CANCELLED


def test_refresh_objects_for_an_unlinked_store_is_refused(tenants):
    with pytest.raises(AppError) as exc:
        sync.refresh_objects(tenants[0].stores[1].pk, "returns", ["1"], trigger="webhook")
    assert exc.value.code == errors.ERR_TTS_006.code


def test_decisions_the_platform_marks_ineligible_are_not_offered_and_refused(linked, tenants):
    emu = linked.emulator
    r = emu.add_return(linked.shop_id, return_type="REFUND")
    emu.set_eligibility(r["return_id"], {"APPROVE_REFUND": (False, "E1", "Buyer already refunded offline")})
    sync.sync_store(linked.store.pk)
    ticket = requests_of(linked.store).get(return_id=r["return_id"])
    actor = tenants[0].actor(tenants[0].owner)
    offered = selectors.allowed_actions(actor, ticket)
    assert "approve:APPROVE_REFUND" not in offered and "reject:REJECT_REFUND" in offered
    with pytest.raises(AppError) as exc:
        services.approve(Performer.of(actor), ticket.public_id, "APPROVE_REFUND")
    assert exc.value.code == errors.ERR_TTS_009.code
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == State.PENDING_REVIEW


def test_only_linked_active_stores_are_scheduled(linked, tenants):
    assert sync.linked_store_ids() == [linked.store.pk]
    StoreLink.objects.unscoped().filter(pk=linked.link.pk).update(sync_enabled=False)
    assert sync.linked_store_ids() == []


# --- what review found: paging under change, details after a stop, signed links, hosts ----------------------
def test_an_object_updated_while_its_window_is_read_does_not_push_another_out_of_it(linked, monkeypatch):
    emu = linked.emulator
    base = int(time.time()) - 2000
    returns = [emu.add_return(linked.shop_id, create_time=base + i, update_time=base + i) for i in range(120)]
    real = sync.apply_object
    seen = {"n": 0}

    def apply_and_meanwhile_the_buyer_cancels(*args, **kwargs):
        seen["n"] += 1
        if seen["n"] == 10:  # an object of page 1 changes on the platform while page 1 is being applied
            emu.set_status(returns[3]["return_id"], "RETURN_OR_REFUND_REQUEST_CANCEL")
        return real(*args, **kwargs)

    monkeypatch.setattr(sync, "apply_object", apply_and_meanwhile_the_buyer_cancels)
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.SUCCEEDED
    # With offset paging the row after page 1 would have shifted into page 1's slot and been skipped for good.
    assert set(requests_of(linked.store).values_list("return_id", flat=True)) == {r["return_id"] for r in returns}


def test_details_are_fetched_again_when_a_run_stopped_between_the_upsert_and_them(linked, monkeypatch):
    emu = linked.emulator
    r = emu.add_return(linked.shop_id, return_type="REFUND")
    real = sync.details
    monkeypatch.setattr(sync, "details", lambda *a, **k: (_ for _ in ()).throw(SystemExit("died")))
    with pytest.raises(SystemExit):
        sync.sync_store(linked.store.pk)
    ticket = requests_of(linked.store).get(return_id=r["return_id"])
    assert ticket.platform_details_at is None and not ticket.platform_eligibility
    monkeypatch.setattr(sync, "details", real)
    StoreLink.objects.unscoped().filter(pk=linked.link.pk).update(lease_until=None)  # the lease lapsed
    run = sync.sync_store(linked.store.pk)
    assert run.counts["unchanged"] == 1  # same platform version …
    ticket.refresh_from_db()
    assert ticket.platform_details_at == ticket.platform_updated_at  # … yet its details were fetched now
    assert ticket.platform_eligibility and ticket.platform_records
    assert Evidence.objects.unscoped().filter(ticket=ticket).exists()


def test_a_request_the_platform_refuses_details_for_does_not_stop_the_store(linked):
    emu = linked.emulator
    bad = emu.add_return(linked.shop_id)
    good = emu.add_return(linked.shop_id)
    emu.faults.append(Fault(36009004, 200, "Invalid param", path=f"/return_refund/202309/returns/{bad['return_id']}"))
    run = sync.sync_store(linked.store.pk)
    assert run.status == SyncRun.Status.SUCCEEDED and run.counts["errors"] == 1
    assert requests_of(linked.store).get(return_id=good["return_id"]).platform_details_at is not None
    assert requests_of(linked.store).get(return_id=bad["return_id"]).platform_details_at is None


def test_evidence_behind_a_re_signed_link_is_stored_once(linked):
    emu = linked.emulator
    r = emu.add_return(linked.shop_id, return_type="REFUND")
    emu.add_records(r["return_id"], [{"event": "ORDER_RETURN", "role": "BUYER", "description": "more",
                                      "images": [{"url": f"{emu.url}/media/signed-1.jpg?x-expires=1&sig=aa"}],
                                      "videos": [], "create_time": 1_700_000_000}])
    sync.sync_store(linked.store.pk)
    ticket = requests_of(linked.store).get(return_id=r["return_id"])
    stored = Evidence.objects.unscoped().filter(ticket=ticket)
    count = stored.count()
    assert stored.exclude(file="").count() == count == 2  # both images downloaded, checked, stored as files
    emu.records[r["return_id"]][1]["images"][0]["url"] = f"{emu.url}/media/signed-1.jpg?x-expires=2&sig=bb"
    emu.set_status(r["return_id"], "RETURN_OR_REFUND_REQUEST_SUCCESS")
    sync.sync_store(linked.store.pk)
    assert Evidence.objects.unscoped().filter(ticket=ticket).count() == count


def test_media_is_fetched_only_from_the_platforms_hosts_or_the_apps_own(settings, monkeypatch):
    settings.TTS_MEDIA_HOST_SUFFIXES = [".tiktokcdn.com"]
    assert sync.media_allowed("http://127.0.0.1:9100/media/a.jpg", "127.0.0.1")  # the app's API host
    assert not sync.media_allowed("http://127.0.0.1:9100/media/a.jpg", "open-api.tiktokglobalshop.com")
    assert not sync.media_allowed("http://169.254.169.254/latest/meta-data", "open-api.tiktokglobalshop.com")
    assert not sync.media_allowed("ftp://p16.tiktokcdn.com/a.jpg", "")
    assert not sync.media_allowed("https://evil.example/a.jpg", "")
    assert not sync.media_allowed("https://tiktokcdn.com.evil.example/a.jpg", "")

    # A platform-looking name that resolves to a private address (DNS rebinding, a poisoned resolver) is refused.
    def resolves_to(address):
        return lambda *args, **kwargs: [(2, 1, 6, "", (address, 443))]

    monkeypatch.setattr(sync.socket, "getaddrinfo", resolves_to("10.0.0.7"))
    assert not sync.media_allowed("https://p16-sign.tiktokcdn.com/a.jpg", "")
    monkeypatch.setattr(sync.socket, "getaddrinfo", resolves_to("23.45.67.89"))
    assert sync.media_allowed("https://p16-sign.tiktokcdn.com/a.jpg", "")


def test_secrets_go_only_to_allowed_hosts(linked, settings):
    from django.core.exceptions import ValidationError

    linked.app.api_base_url = "http://collector.example:8080"
    with pytest.raises(ValidationError) as exc:
        linked.app.full_clean()
    assert "api_base_url" in exc.value.message_dict
    linked.app.save()
    run = sync.sync_store(linked.store.pk)
    assert (run.status, run.error_code) == (SyncRun.Status.FAILED, errors.ERR_TTS_014.code)
    assert not [s for s in linked.emulator.seen if s["path"].endswith("/search")]


def test_a_run_left_running_by_a_dead_worker_is_marked_in_the_report(linked):
    import datetime as dt

    from django.utils import timezone

    dead = SyncRun.objects.create(agency_id=linked.store.agency_id, store=linked.store, trigger="schedule")
    SyncRun.objects.unscoped().filter(pk=dead.pk).update(started_at=timezone.now() - dt.timedelta(hours=1))
    sync.sync_store(linked.store.pk)
    dead.refresh_from_db()
    assert dead.status == SyncRun.Status.FAILED and "abandoned" in dead.message


def test_a_struggling_token_host_does_not_end_the_authorisation(linked):
    emu = linked.emulator
    emu.add_return(linked.shop_id)
    emu.expire_token(linked.authorization.access_token.reveal())
    emu.faults.append(Fault(36009003, 500, "Internal error", path="/api/v2/token/refresh"))
    run = sync.sync_store(linked.store.pk)
    assert (run.status, run.error_code) == (SyncRun.Status.FAILED, errors.ERR_TTS_002.code)
    auth = SellerAuthorization.objects.unscoped().get(pk=linked.authorization.pk)
    assert auth.status == SellerAuthorization.Status.ACTIVE
    assert sync.sync_store(linked.store.pk).status == SyncRun.Status.SUCCEEDED  # the next run refreshes


def test_fields_the_platform_adds_are_kept_raw_and_named_in_the_report(linked):
    r = linked.emulator.add_return(linked.shop_id, brand_new_field={"a": 1}, another_one="x")
    run = sync.sync_store(linked.store.pk)
    assert run.unknown_fields == ["another_one", "brand_new_field"] and run.counts["unknown_fields"] == 1
    ticket = requests_of(linked.store).get(return_id=r["return_id"])
    assert ticket.raw["brand_new_field"] == {"a": 1} and ticket.raw["another_one"] == "x"


def test_a_signed_webhook_from_the_platform_brings_the_request_in_through_a_re_fetch(linked):
    from aftersales.tiktok import webhooks
    from aftersales.tiktok.models import WebhookDelivery

    emu = linked.emulator
    r = emu.add_return(linked.shop_id, return_type="REFUND")
    body = emu.webhook_body(12, linked.shop_id, {"order_id": r["order_id"], "return_id": r["return_id"],
                                                 "return_role": "BUYER", "return_type": "REFUND",
                                                 "return_status": "RETURN_OR_REFUND_REQUEST_PENDING",
                                                 "create_time": r["create_time"], "update_time": r["update_time"]})
    assert webhooks.receive(linked.app.public_id, authorization=emu.webhook_signature(body), body=body) == "received"
    assert webhooks.receive(linked.app.public_id, authorization=emu.webhook_signature(body), body=body) == "duplicate"
    delivery = WebhookDelivery.objects.unscoped().get()
    assert webhooks.process(delivery.pk) == "processed"
    ticket = requests_of(linked.store).get(return_id=r["return_id"])
    assert set(intake_rows(linked.store).values()) == {1} and ticket.platform_details_at is not None
    assert SyncRun.objects.unscoped().get(store=linked.store).trigger == "webhook"
    # The payload said "pending"; the platform now says cancelled: the re-fetch, not the payload, decides.
    emu.set_status(r["return_id"], "RETURN_OR_REFUND_REQUEST_CANCEL")
    second = emu.webhook_body(12, linked.shop_id, {"return_id": r["return_id"], "return_status": "stale"})
    webhooks.receive(linked.app.public_id, authorization=emu.webhook_signature(second), body=second)
    webhooks.process(WebhookDelivery.objects.unscoped().latest("id").pk)
    assert requests_of(linked.store).get(return_id=r["return_id"]).state == State.CANCELLED
