"""Celery tasks of the TikTok Shop connector (registered through aftersales.tasks). Thin: one service call each."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from aftersales.tiktok import outbox, sync
from aftersales.tiktok.client import TikTokError
from aftersales.tiktok.models import SyncRun

DB_RETRY = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 5, "retry_backoff_max": 600,
            "retry_jitter": True, "max_retries": 5, "ignore_result": True}
PUSH_RETRIES = 8


@shared_task(name="aftersales.tiktok.sync_store", acks_late=True, soft_time_limit=840, time_limit=900, **DB_RETRY)
def sync_store(store_id: int, trigger: str = SyncRun.Trigger.SCHEDULE) -> str:
    """One store's pull. Safe to enqueue twice: the second finds the lease held and returns at once."""
    run = sync.sync_store(store_id, trigger=trigger)
    return "busy" if run is None else run.status


@shared_task(name="aftersales.tiktok.sync_all", soft_time_limit=50, time_limit=60, **DB_RETRY)
def sync_all() -> int:
    """Beat: one pull per linked store (each runs on its own, so one slow store never holds up the others)."""
    ids = sync.linked_store_ids()
    for store_id in ids:
        sync_store.delay(store_id, SyncRun.Trigger.SCHEDULE)
    return len(ids)


@shared_task(name="aftersales.tiktok.refresh_request", bind=True, acks_late=True, soft_time_limit=110,
             time_limit=120, ignore_result=True, max_retries=5)
def refresh_request(self, store_id: int, kind: str, object_id: str) -> dict:
    """Re-read one request from the platform (after a decision it refused): its status comes back in."""
    try:
        return sync.refresh_objects(store_id, kind, [object_id], trigger=SyncRun.Trigger.MANUAL)
    except TikTokError as exc:
        if exc.code not in sync.TRANSIENT:
            raise
        raise self.retry(exc=exc, countdown=outbox_backoff(self.request.retries)) from None


@shared_task(name="aftersales.tiktok.push_decision", bind=True, acks_late=True, soft_time_limit=50, time_limit=60,
             ignore_result=True, max_retries=PUSH_RETRIES)
def push_decision(self, decision_id: int) -> str:
    """Send one decision; transient platform failures retry with exponential backoff and jitter."""
    try:
        return outbox.send(decision_id, final_attempt=self.request.retries >= PUSH_RETRIES)
    except (TikTokError, OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=outbox_backoff(self.request.retries)) from None


def outbox_backoff(retries: int) -> float:
    import random

    return random.uniform(1, min(600, 5 * 2 ** retries))  # noqa: S311 - jitter, not secrets


@shared_task(name="aftersales.tiktok.resend_stale_decisions", soft_time_limit=50, time_limit=60, **DB_RETRY)
def resend_stale_decisions() -> int:
    """Beat: decisions left "sending" by a lost task are sent again (same idempotency key)."""
    ids = outbox.stale_ids()
    for pk in ids:
        push_decision.delay(pk)
    return len(ids)


@shared_task(name="aftersales.tiktok.requeue_webhooks", soft_time_limit=50, time_limit=60, **DB_RETRY)
def requeue_webhooks() -> int:
    """Beat: deliveries recorded while the broker was unreachable (still "received" after a while) are queued."""
    from aftersales.tiktok import webhooks

    ids = webhooks.stale_delivery_ids()
    for pk in ids:
        webhooks.process_webhook.delay(pk)
    return len(ids)
