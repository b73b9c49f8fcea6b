"""Seller decisions pushed to the TikTok Shop emulator: outbox row with the decision, one stable idempotency key,
sending → confirmed / failed (code), retries that never apply a decision twice, nothing for unlinked stores."""

from __future__ import annotations

import time

import pytest

from aftersales import services
from aftersales.models import Alert, OperationLog
from aftersales.oplog import Performer
from aftersales.tiktok import outbox, sync
from aftersales.tiktok.client import TikTokError
from aftersales.tiktok.models import PlatformDecision
from stores import errors
from tests.emulators.tiktok import RATE_LIMIT, Fault, TikTokEmulator
from tests.tiktok_support import link_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def emulator():
    emu = TikTokEmulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def linked(emulator, tenants):
    # The platform's data is stamped a few seconds in the past, as it is when a sync reads it: a change made in
    # the test then never shares the second in which a window closes.
    emulator.clock = lambda: time.time() - 5
    return link_store(emulator, tenants[0].stores[0])


def synced(linked, **overrides):
    obj = linked.emulator.add_return(linked.shop_id, **overrides)
    sync.refresh_objects(linked.store.pk, "returns", [obj["return_id"]], trigger="manual")
    from aftersales.models import AfterSalesRequest

    return obj, AfterSalesRequest.objects.unscoped().get(store=linked.store, return_id=obj["return_id"])


def status_of(emu: TikTokEmulator, object_id: str) -> str:
    """The platform's status of a return or cancellation, as its search would answer it."""
    for row in emu.returns:
        if row["return_id"] == object_id:
            return row["return_status"]
    return next(row["cancel_status"] for row in emu.cancellations if row["cancel_id"] == object_id)


def owner(tenants) -> Performer:
    return Performer.of(tenants[0].actor(tenants[0].owner))


def test_an_approval_writes_one_outbox_row_with_the_decision_and_sends_it_after_commit(
        linked, tenants, django_capture_on_commit_callbacks):
    obj, ticket = synced(linked, return_type="REFUND")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    assert (row.operation, row.decision, row.status) == ("approve", "APPROVE_REFUND", "sending")
    assert row.body == {"decision": "APPROVE_REFUND"} and len(row.idempotency_key) == 36
    assert len(callbacks) >= 1  # the send is queued only once the decision committed

    assert outbox.send(row.pk) == PlatformDecision.Status.CONFIRMED
    applied = [d for d in linked.emulator.decisions if d["id"] == obj["return_id"]]
    assert len(applied) == 1 and applied[0]["key"] == row.idempotency_key
    assert status_of(linked.emulator, obj["return_id"]) == "RETURN_OR_REFUND_REQUEST_SUCCESS"
    row.refresh_from_db()
    assert row.status == "confirmed" and row.confirmed_at is not None and row.attempts == 1
    assert OperationLog.objects.filter(ticket=ticket, action="platform_confirmed").count() == 1
    assert outbox.send(row.pk) == "confirmed"  # a redelivered task: nothing sent again
    assert len([d for d in linked.emulator.decisions if d["id"] == obj["return_id"]]) == 1


def test_a_repeated_send_with_the_same_key_is_applied_once_by_the_platform(linked, tenants):
    obj, ticket = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    # The first answer is lost (timeout after the platform applied it): the row is still "sending".
    outbox.send(row.pk)
    PlatformDecision.objects.unscoped().filter(pk=row.pk).update(status="sending")
    assert outbox.send(row.pk) == "confirmed"
    assert len([d for d in linked.emulator.decisions if d["id"] == obj["return_id"]]) == 1


def test_a_rejection_carries_reason_and_comment(linked, tenants):
    obj, ticket = synced(linked, return_type="REFUND")
    reason = ticket.reject_reasons[0]["name"]
    services.reject(owner(tenants), ticket.public_id, reason=reason, comment="Photo shows a different item")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    assert row.body == {"decision": "REJECT_REFUND", "reject_reason": reason,
                        "comment": "Photo shows a different item"}
    assert outbox.send(row.pk) == "confirmed"
    assert status_of(linked.emulator, obj["return_id"]) == "REFUND_OR_RETURN_REQUEST_REJECT"


def test_a_partial_refund_offer_carries_amount_and_currency(linked, tenants):
    obj, ticket = synced(linked, return_type="RETURN_AND_REFUND")
    services.approve(owner(tenants), ticket.public_id, "OFFER_PARTIAL_REFUND", partial_refund="5.00")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    assert row.body["partial_refund"] == {"amount": "5.00", "currency": ticket.currency}
    assert outbox.send(row.pk) == "confirmed"
    assert status_of(linked.emulator, obj["return_id"]) == "AWAITING_BUYER_RESPONSE"


def test_cancellation_decisions_go_to_the_cancellation_endpoints(linked, tenants):
    emu = linked.emulator
    c = emu.add_cancellation(linked.shop_id)
    sync.refresh_objects(linked.store.pk, "cancellations", [c["cancel_id"]], trigger="manual")
    from aftersales.models import AfterSalesRequest

    ticket = AfterSalesRequest.objects.unscoped().get(store=linked.store, return_id=c["cancel_id"])
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REQUEST_CANCEL")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    assert (row.operation, row.body) == ("approve_cancel", {})
    assert outbox.send(row.pk) == "confirmed"
    assert status_of(emu, c["cancel_id"]) == "CANCELLATION_REQUEST_SUCCESS"


def test_a_refusal_marks_failed_with_both_codes_logs_it_and_raises_an_alert(linked, tenants):
    obj, ticket = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    linked.emulator.set_status(obj["return_id"], "RETURN_OR_REFUND_REQUEST_CANCEL")  # the buyer withdrew meanwhile
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    assert outbox.send(row.pk) == "failed"
    row.refresh_from_db()
    assert (row.status, row.error_code, row.platform_code) == ("failed", errors.ERR_TTS_003.code, 48001001)
    failure = OperationLog.objects.get(ticket=ticket, action="platform_failed")
    assert failure.error_code == errors.ERR_TTS_011.code and failure.payload["platform_code"] == 48001001
    assert Alert.objects.unscoped().filter(ticket=ticket, kind=Alert.Kind.PLATFORM_FAILED).count() == 1

    # "Send again" reuses the decision's key; the platform still refuses → failed again, no second alert.
    assert outbox.resend([row.pk]) == 1
    assert outbox.send(row.pk) == "failed"
    assert Alert.objects.unscoped().filter(ticket=ticket, kind=Alert.Kind.PLATFORM_FAILED).count() == 1


def test_transient_failures_leave_it_sending_for_a_retry_then_it_is_confirmed(linked, tenants):
    obj, ticket = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    approve_path = f"/return_refund/202309/returns/{obj['return_id']}/approve"
    linked.emulator.faults.extend([Fault(RATE_LIMIT.code, 429, "Too many requests", path=approve_path)] * 4)
    with pytest.raises(TikTokError):
        outbox.send(row.pk, final_attempt=False)
    row.refresh_from_db()
    assert (row.status, row.platform_code) == ("sending", 36009002)
    assert outbox.send(row.pk) == "confirmed"
    keys = {s["query"]["idempotency_key"] for s in linked.emulator.seen if s["path"] == approve_path}
    assert keys == {row.idempotency_key}  # every attempt sent the same key


def test_out_of_retries_a_transient_failure_is_surfaced_as_failed(linked, tenants):
    obj, ticket = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    approve_path = f"/return_refund/202309/returns/{obj['return_id']}/approve"
    linked.emulator.faults.extend([Fault(RATE_LIMIT.code, 429, "Too many requests", path=approve_path)] * 4)
    assert outbox.send(row.pk, final_attempt=True) == "failed"
    row.refresh_from_db()
    assert (row.error_code, row.platform_code) == (errors.ERR_TTS_002.code, 36009002)


def test_unlinked_stores_and_platform_events_write_no_outbox_rows(tenants):
    from tests.test_tracking import return_ticket

    ticket = return_ticket(tenants[0].stores[1], "REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    assert not PlatformDecision.objects.unscoped().exists()


def test_a_decision_refused_by_our_rules_writes_no_outbox_row(linked, tenants):
    _obj, ticket = synced(linked, return_type="REFUND")
    with pytest.raises(Exception):  # noqa: B017 - any refusal: the point is that nothing was queued
        services.reject(owner(tenants), ticket.public_id, reason="not-a-listed-reason")
    assert not PlatformDecision.objects.unscoped().exists()


def test_stale_sending_rows_are_found_for_resending(linked, tenants):
    import datetime as dt

    from django.utils import timezone

    _obj, ticket = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    assert outbox.stale_ids() == []
    PlatformDecision.objects.unscoped().filter(pk=row.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    assert outbox.stale_ids() == [row.pk]
    outbox.send(row.pk)
    assert outbox.stale_ids() == []


def test_latest_decision_per_request_in_one_query(linked, tenants, django_assert_num_queries):
    _o1, t1 = synced(linked, return_type="REFUND")
    _o2, t2 = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), t1.public_id, "APPROVE_REFUND")
    services.approve(owner(tenants), t2.public_id, "APPROVE_REFUND")
    with django_assert_num_queries(1):
        latest = outbox.latest_for([t1.pk, t2.pk])
    assert set(latest) == {t1.pk, t2.pk} and all(r.status == "sending" for r in latest.values())


def test_after_a_refusal_the_request_is_read_again_and_takes_the_platforms_status(
        linked, tenants, django_capture_on_commit_callbacks):
    from aftersales.models import AfterSalesRequest

    obj, ticket = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).state == "refund_approved"  # ours moved on
    linked.emulator.set_status(obj["return_id"], "RETURN_OR_REFUND_REQUEST_CANCEL")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert outbox.send(row.pk) == "failed"
    assert callbacks  # the re-read (and the alert mail) are queued after the failure commits
    assert AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).platform_updated_at is None
    sync.refresh_objects(linked.store.pk, "returns", [obj["return_id"]], trigger="manual")  # what the task does
    ticket = AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)
    assert ticket.state == "cancelled" and ticket.platform_status == "RETURN_OR_REFUND_REQUEST_CANCEL"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_send_never_waits_on_a_request_someone_is_working_on(linked, tenants):
    """The outbox row is locked alone (``of=self``): a person holding the request's row lock does not make the
    send skip it."""
    import threading

    from django.db import connection, transaction

    from aftersales.models import AfterSalesRequest

    _obj, ticket = synced(linked, return_type="REFUND")
    services.approve(owner(tenants), ticket.public_id, "APPROVE_REFUND")
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    locked, release, result = threading.Event(), threading.Event(), {}

    def hold_the_request():
        try:
            with transaction.atomic():
                AfterSalesRequest.objects.unscoped().select_for_update().get(pk=ticket.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_request)
    holder.start()
    assert locked.wait(10), "the other session could not lock the request"
    try:
        result["status"] = outbox.send(row.pk)
    finally:
        release.set()
        holder.join()
    assert result["status"] == "confirmed"


def test_a_rejection_with_seller_photos_uploads_them_once_and_sends_their_image_ids(linked, tenants):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    from aftersales import evidence

    obj, ticket = synced(linked, return_type="REFUND")
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG")
    photo = evidence.upload_evidence(owner(tenants), ticket.public_id,
                                     SimpleUploadedFile("label.jpg", buf.getvalue(), content_type="image/jpeg"))
    reason = ticket.reject_reasons[0]["name"]
    services.reject(owner(tenants), ticket.public_id, reason=reason, comment="See the label",
                    images=[str(photo.public_id)])
    row = PlatformDecision.objects.unscoped().get(ticket=ticket)
    # The first attempt's answer is lost after the upload: the retry must send the very same body.
    decide = f"/return_refund/202309/returns/{obj['return_id']}/reject"
    linked.emulator.faults.extend([Fault(36009003, 500, "Internal error", path=decide)] * 4)
    with pytest.raises(TikTokError):
        outbox.send(row.pk, final_attempt=False)
    assert outbox.send(row.pk) == "confirmed"
    row.refresh_from_db()
    uploads = [s for s in linked.emulator.seen if s["path"] == "/product/202309/images/upload"]
    assert len(uploads) == 1 and "shop_cipher" not in uploads[0]["query"]  # uploads never carry a cipher
    [image] = row.body["images"]
    assert image["image_id"] in linked.emulator.uploaded_images and image["mime_type"] == "image/jpeg"
    assert (image["width"], image["height"]) == (64, 48)
    [decision] = [d for d in linked.emulator.decisions if d["id"] == obj["return_id"]]
    assert decision["body"]["images"] == [image] and "_evidence" not in decision["body"]
