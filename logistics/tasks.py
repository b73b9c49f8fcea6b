"""Background tasks of return logistics. Thin: ids in, one service call; the service re-checks the state.

Database hiccups (connection lost, deadlock victim) retry with exponential backoff and jitter; the
carrier check also retries the aggregator's transient failures with its own backoff (see services).
"""

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from logistics import services
from stores.errors import AppError

DB_RETRY = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 5, "retry_backoff_max": 600,
            "retry_jitter": True, "max_retries": 5, "ignore_result": True}


@shared_task(bind=True, name="logistics.check_tracking_number", **DB_RETRY)
def check_tracking_number(self, shipment_id: int, tracking_number: str) -> str:
    """Carrier check of one registered number (every attempt is recorded as a CarrierCheckAttempt)."""
    limit = settings.TRACKING_CHECK_MAX_RETRIES
    result = services.check_tracking_number(shipment_id, tracking_number, attempt=self.request.retries + 1,
                                            last_attempt=self.request.retries >= limit)
    if result.outcome == "retry":
        raise self.retry(countdown=services.retry_countdown(self.request.retries), max_retries=limit)
    return result.outcome


@shared_task(name="logistics.register_reported_tracking", **DB_RETRY)
def register_reported_tracking(ticket_id: int, tracking_number: str, carrier_hint: str = "",
                               source: str = "buyer") -> str:
    """Register a number the buyer gave. A refusal (e.g. ERR_LOG_204) is already on the request's log and
    would be refused again, so it is not retried."""
    try:
        services.register_reported_tracking(ticket_id, tracking_number=tracking_number, carrier_hint=carrier_hint,
                                            source=source)
    except AppError as exc:
        return exc.code
    return "registered"


@shared_task(name="logistics.sweep_scan_watch", **DB_RETRY)
def sweep_scan_watch(batch: int = 500) -> int:
    """Beat, every minute: stall return parcels without a first scan in time (safe to overlap)."""
    return services.sweep_scan_watch(batch=batch)
