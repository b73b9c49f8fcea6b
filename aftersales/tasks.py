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


@shared_task(name="aftersales.run_job", bind=True, acks_late=True, soft_time_limit=1740, time_limit=1800,
             **DB_RETRY)
def run_job(self, job_id: int) -> str:
    """A background job (export, reason import, batch action) by id. Idempotent: a finished job is left alone,
    one held by a live runner is retried after the lease, an abandoned one is taken over (aftersales.jobs)."""
    from aftersales import jobs

    try:
        return jobs.run(job_id)
    except jobs.Busy:
        raise self.retry(countdown=jobs.LEASE_SECONDS, max_retries=60) from None


@shared_task(name="aftersales.resume_stale_jobs", soft_time_limit=50, time_limit=60, **DB_RETRY)
def resume_stale_jobs() -> int:
    """Beat, every five minutes: hand unfinished jobs nobody has touched for a while to a worker again."""
    from aftersales import jobs

    ids = jobs.stale_job_ids()
    for job_id in ids:
        run_job.delay(job_id)
    return len(ids)


@shared_task(name="aftersales.refresh_all_analytics", soft_time_limit=50, time_limit=60, **DB_RETRY)
def refresh_all_analytics() -> int:
    """Beat, every five minutes: one analytics refresh per agency (each on its own, so one big agency never
    holds up the others, and two workers refresh two agencies at once)."""
    from aftersales import rollups

    ids = rollups.agency_ids()
    for agency_id in ids:
        refresh_analytics.delay(agency_id)
    return len(ids)


@shared_task(name="aftersales.refresh_analytics", soft_time_limit=540, time_limit=600, **DB_RETRY)
def refresh_analytics(agency_id: int) -> int:
    """A new rollup of one agency's 售后分析 figures (one transaction; skipped while another runs for it)."""
    from aftersales import analytics

    return analytics.refresh(agency_id)


# The connector's tasks live with its code; imported so every worker registers them.
from aftersales.tiktok import tasks as tiktok_tasks  # noqa: E402, F401
from aftersales.tiktok import webhooks as tiktok_webhooks  # noqa: E402, F401
