"""Seller decisions sent to TikTok Shop: written with the decision, sent after commit, never lost or doubled.

``enqueue`` runs inside the decision's own transaction (``services.perform``), so a decision and its outbox row
commit together or not at all; the row carries an idempotency key made once, which every send of that decision
repeats — a retry after a timeout, a redelivered task or a manual "send again" can never apply a decision twice
(ApproveReturn/RejectReturn/…Cancellation take ``idempotency_key``, reference §1.1, §5.5).

Outcomes: ``confirmed``; transient failures (rate limit, platform 5xx, network) are retried by the task with
backoff and jitter while the row stays ``sending``; a refusal (any other platform code) or running out of retries
marks it ``failed`` with our code and the platform's, logs it on the request's operation log and raises an alert —
the user sees it on the request and can send it again. A beat task re-sends rows left ``sending`` by a lost task.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.db import transaction
from django.utils import timezone

from aftersales import oplog
from aftersales.models import AfterSalesRequest, Alert, Evidence
from aftersales.states import Decision, RequestType
from aftersales.tiktok import session
from aftersales.tiktok.models import PlatformDecision, StoreLink
from stores import errors
from stores.bulk import insert_rows
from stores.errors import AppError

log = logging.getLogger(__name__)

PATHS = {
    "approve": "/return_refund/202309/returns/{id}/approve",
    "reject": "/return_refund/202309/returns/{id}/reject",
    "approve_cancel": "/return_refund/202309/cancellations/{id}/approve",
    "reject_cancel": "/return_refund/202309/cancellations/{id}/reject",
}
IMAGE_UPLOAD = "/product/202309/images/upload"
STALE_AFTER = dt.timedelta(minutes=10)  # a row still "sending" this long after its last attempt was lost


def body_for(ticket: AfterSalesRequest, operation: str, payload: dict) -> tuple[str, str, dict]:
    """(operation, decision, body) as the platform's approve/reject endpoints take them (reference §1.5)."""
    decision = str(payload.get("decision") or "")
    if ticket.type == RequestType.CANCELLATION:
        if operation == "approve":
            return "approve_cancel", Decision.APPROVE_REQUEST_CANCEL.value, {}
        return "reject_cancel", Decision.REJECT_REQUEST_CANCEL.value, {
            "reject_reason": payload.get("reason", ""), "comment": payload.get("comment", "")}
    if operation == "approve":
        body: dict = {"decision": decision}
        if decision == Decision.OFFER_PARTIAL_REFUND and payload.get("partial_refund"):
            body["partial_refund"] = payload["partial_refund"]
        return "approve", decision, body
    body = {"decision": decision, "reject_reason": payload.get("reason", ""), "comment": payload.get("comment", "")}
    if payload.get("images"):
        # Seller evidence to upload first (its image ids go into ``images``); "_" keys are never sent.
        body["_evidence"] = [str(i) for i in payload["images"]]
    return "reject", decision, body


def enqueue(ticket: AfterSalesRequest, operation: str, payload: dict) -> PlatformDecision:
    """Inside the decision's transaction: the outbox row, and its send after commit."""
    op, decision, body = body_for(ticket, operation, payload)
    row = PlatformDecision.objects.create(agency_id=ticket.agency_id, ticket=ticket, operation=op,
                                          decision=decision, body=body, idempotency_key=str(uuid.uuid4()))
    _send_after_commit([row.pk])
    return row


def enqueue_many(items: list[tuple[AfterSalesRequest, dict]], operation: str) -> int:
    """``enqueue`` for a batch of decisions (services.perform_many): one INSERT, each row its own key and send."""
    rows = []
    for ticket, payload in items:
        op, decision, body = body_for(ticket, operation, payload)
        rows.append(PlatformDecision(agency_id=ticket.agency_id, ticket=ticket, operation=op, decision=decision,
                                     body=body, idempotency_key=str(uuid.uuid4())))
    ids = [pk for (pk,) in insert_rows(PlatformDecision, rows, returning=("id",))]
    _send_after_commit(ids)
    return len(ids)


def _send_after_commit(ids: list[int]) -> None:
    from aftersales.tiktok.tasks import push_decision

    for pk in ids:
        transaction.on_commit(lambda pk=pk: push_decision.delay(pk))


def send(decision_id: int, *, final_attempt: bool = True) -> str:
    """One attempt to send a decision. Returns the row's status.

    Raises the TikTokError of a transient failure when ``final_attempt`` is False (the task retries it later);
    on the final attempt, or for a refusal, the row is marked failed instead.
    """
    with transaction.atomic():
        row = (PlatformDecision.objects.unscoped().select_for_update(skip_locked=True, of=("self",))
               .select_related("ticket").filter(pk=decision_id).first())
        if row is None:  # gone, or another worker is sending it right now
            return "busy"
        if row.status != PlatformDecision.Status.SENDING:
            return row.status
        row.attempts += 1
        row.last_attempt_at = timezone.now()
        row.save(update_fields=["attempts", "last_attempt_at"])
    ticket = row.ticket
    try:
        link = (StoreLink.objects.unscoped().select_related("store__market", "authorization__app")
                .filter(store_id=ticket.store_id).first())
        if link is None:
            raise AppError(errors.ERR_TTS_006)
        client = session.client_for(link)
        body = _with_uploaded_images(row, client)
        client.call("POST", PATHS[row.operation].format(id=ticket.return_id),
                    query={"idempotency_key": row.idempotency_key},
                    body={k: v for k, v in body.items() if not k.startswith("_")})
    except AppError as exc:
        transient = exc.code in (errors.ERR_TTS_002.code, errors.ERR_TTS_004.code)
        if transient and not final_attempt:
            PlatformDecision.objects.unscoped().filter(pk=row.pk, status=PlatformDecision.Status.SENDING).update(
                error_code=exc.code, platform_code=getattr(exc, "platform_code", None),
                message=(getattr(exc, "platform_message", "") or str(exc.error.message))[:500])
            raise
        return _failed(row, exc)
    return _confirmed(row)


def _with_uploaded_images(row: PlatformDecision, client) -> dict:
    """Upload the rejection's seller evidence once (product image upload → ``image_id``) and keep the ids on the row,
    so every later send of this decision carries exactly the same body (the platform compares it per key)."""
    body = dict(row.body)
    wanted = body.get("_evidence") or []
    if not wanted or body.get("images"):
        return body
    images = []
    for item in Evidence.objects.for_agency(row.agency_id).filter(
            ticket_id=row.ticket_id, public_id__in=wanted, kind=Evidence.Kind.IMAGE).exclude(file="").order_by("id"):
        with item.file.open("rb") as handle:
            data = handle.read()
        answer = client.call("POST", IMAGE_UPLOAD, body={"use_case": "ATTRIBUTE_IMAGE"},
                             files={"data": (item.file.name.rsplit("/", 1)[-1], data,
                                             item.content_type or "image/jpeg")})
        images.append({"image_id": str(answer.get("uri") or ""), "mime_type": item.content_type or "image/jpeg",
                       "width": item.width or 0, "height": item.height or 0})
    body["images"] = images
    PlatformDecision.objects.unscoped().filter(pk=row.pk).update(body=body)
    return body


def _confirmed(row: PlatformDecision) -> str:
    with transaction.atomic():
        updated = PlatformDecision.objects.unscoped().filter(pk=row.pk, status=PlatformDecision.Status.SENDING).update(
            status=PlatformDecision.Status.CONFIRMED, confirmed_at=timezone.now(), error_code="",
            platform_code=None, message="")
        if updated:
            ticket = AfterSalesRequest.objects.unscoped().get(pk=row.ticket_id)
            oplog.record(ticket, performer=oplog.PLATFORM, action="platform_confirmed", before=ticket.state,
                         after=ticket.state, payload={"decision": row.decision, "idempotency_key": row.idempotency_key})
    return PlatformDecision.Status.CONFIRMED


def _failed(row: PlatformDecision, exc: AppError) -> str:
    platform_code = getattr(exc, "platform_code", None)
    message = (getattr(exc, "platform_message", "") or exc.detail or str(exc.error.message))[:500]
    with transaction.atomic():
        updated = PlatformDecision.objects.unscoped().filter(pk=row.pk, status=PlatformDecision.Status.SENDING).update(
            status=PlatformDecision.Status.FAILED, error_code=exc.code, platform_code=platform_code, message=message)
        if updated:
            ticket = AfterSalesRequest.objects.unscoped().select_for_update().get(pk=row.ticket_id)
            # Our state moved with the decision, the platform's did not: forget the platform version we hold, so
            # the re-read queued below brings the platform's status back in (apply_platform_status would skip
            # the same version as already applied).
            AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(platform_updated_at=None)
            _refetch_after_commit(ticket)
            oplog.record(ticket, performer=oplog.PLATFORM, action="platform_failed", before=ticket.state,
                         after=ticket.state, error_code=errors.ERR_TTS_011.code,
                         message=str(errors.ERR_TTS_011.message),
                         payload={"decision": row.decision, "cause": exc.code, "platform_code": platform_code,
                                  "platform_message": message})
            from aftersales import services
            from aftersales.tasks import notify_alerts

            if services.raise_alert(ticket, Alert.Kind.PLATFORM_FAILED, key=str(row.public_id),
                                    error_code=errors.ERR_TTS_011.code,
                                    message=f"{row.decision}: {exc.code} {platform_code or ''} {message}"[:500]):
                alert_ids = list(Alert.objects.for_agency(ticket.agency_id).filter(
                    ticket=ticket, kind=Alert.Kind.PLATFORM_FAILED, key=str(row.public_id))
                    .values_list("pk", flat=True))
                notify_alerts.delay_on_commit(alert_ids)
    log.warning("TikTok Shop decision %s for request %s failed: %s (platform %s)", row.decision, row.ticket_id,
                exc.code, platform_code)
    return PlatformDecision.Status.FAILED


def _refetch_after_commit(ticket: AfterSalesRequest) -> None:
    from aftersales.tiktok.tasks import refresh_request

    kind = "cancellations" if ticket.type == RequestType.CANCELLATION else "returns"
    transaction.on_commit(lambda: refresh_request.delay(ticket.store_id, kind, ticket.return_id))


def resend(ids: list[int]) -> int:
    """Send failed decisions again, with their own idempotency key (the platform applies each once)."""
    with transaction.atomic():
        rows = list(PlatformDecision.objects.unscoped().filter(pk__in=ids, status=PlatformDecision.Status.FAILED)
                    .values_list("pk", flat=True))
        PlatformDecision.objects.unscoped().filter(pk__in=rows).update(status=PlatformDecision.Status.SENDING)
        _send_after_commit(rows)
    return len(rows)


def stale_ids(now: dt.datetime | None = None) -> list[int]:
    """Rows still ``sending`` whose task was lost (no attempt for a while, or never attempted)."""
    cutoff = (now or timezone.now()) - STALE_AFTER
    qs = PlatformDecision.objects.unscoped().filter(status=PlatformDecision.Status.SENDING)
    return list(qs.filter(last_attempt_at__lt=cutoff).values_list("pk", flat=True)[:500]) + list(
        qs.filter(last_attempt_at__isnull=True, created_at__lt=cutoff).values_list("pk", flat=True)[:500])


def latest_for(ticket_ids: list[int]) -> dict[int, PlatformDecision]:
    """The newest outbox row per request (one query), for showing "sending / confirmed / failed (code)"."""
    rows = (PlatformDecision.objects.unscoped().filter(ticket_id__in=ticket_ids)
            .order_by("ticket_id", "-created_at", "-id").distinct("ticket_id"))
    return {row.ticket_id: row for row in rows}
