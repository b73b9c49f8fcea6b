"""Celery task for prepaid return labels. Thin: an id in, one service call; safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from logistics.labels import issue_return_label
from stores import errors
from stores.errors import AppError


@shared_task(name="logistics.issue_return_label", ignore_result=True, acks_late=True,
             autoretry_for=(OperationalError, InterfaceError, OSError), retry_backoff=True, retry_backoff_max=600,
             retry_jitter=True, max_retries=5)
def issue_return_label_task(ticket_id: int) -> str | None:
    """Issue the label of an approved return. Not eligible (ERR_LOG_601) and no return address
    (ERR_LOG_602) are outcomes, already logged on the request; retrying would not change them. Any other
    failure surfaces (database and storage hiccups retry)."""
    try:
        label = issue_return_label(ticket_id, automatic=True)
    except AppError as exc:
        if exc.code in {errors.ERR_LOG_601.code, errors.ERR_LOG_602.code}:
            return None
        raise
    return str(label.public_id)
