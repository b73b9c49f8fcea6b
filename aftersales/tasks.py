"""Background tasks of the after-sales core. Thin: one service call; the service re-checks every row it claims.

Database hiccups (connection lost, deadlock victim) retry with exponential backoff and jitter. The sweep is
safe to overlap and to re-run after a crash (SKIP LOCKED claims, one savepoint per request, unique constraints).
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from aftersales import sla

DB_RETRY = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 5, "retry_backoff_max": 600,
            "retry_jitter": True, "max_retries": 5, "ignore_result": True}


@shared_task(name="aftersales.sweep_sla", soft_time_limit=240, time_limit=300, **DB_RETRY)
def sweep_sla(batch: int = 500) -> int:
    """Beat, every minute: deadline warnings and missed deadlines (compensation, score, log, alerts)."""
    return sla.sweep(batch=batch)


@shared_task(name="aftersales.apply_rules", acks_late=True, soft_time_limit=50, time_limit=60, **DB_RETRY)
def apply_rules_task(ticket_id: int) -> str | None:
    """After intake: the first matching auto-rule acts on the new request (idempotent; re-checks state)."""
    from aftersales import rules

    rule = rules.apply_rules(ticket_id)
    return None if rule is None else str(rule.public_id)


@shared_task(name="aftersales.notify_alerts", acks_late=True, soft_time_limit=50, time_limit=60,
             autoretry_for=(OperationalError, InterfaceError, OSError), retry_backoff=5, retry_backoff_max=600,
             retry_jitter=True, max_retries=8, ignore_result=True)
def notify_alerts(alert_ids: list[int]) -> int:
    """After a commit that raised alerts: e-mail them (idempotent: each alert is stamped once; SMTP errors,
    which are OSErrors, retry with backoff)."""
    from aftersales import notifications

    return notifications.deliver(alert_ids)
