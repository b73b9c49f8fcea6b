"""After-commit notifications from the after-sales core to the apps built on it (logistics today).

The dependency runs logistics → aftersales, so aftersales cannot call logistics. Instead a service
publishes a named event; subscribers (registered in their AppConfig.ready) run after the transaction
commits, so they never see a change that was rolled back. Subscribers must be quick and idempotent —
typically they enqueue a Celery task with ids.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from django.db import transaction

log = logging.getLogger(__name__)

CREATED = "created"  # agency_id, ticket_ids: the requests one intake batch created, so subscribers read them at once
STATE_CHANGED = "state_changed"  # ticket_id, action, before, after, payload

_subscribers: dict[str, list[Callable[..., None]]] = defaultdict(list)


def subscribe(event: str, handler: Callable[..., None]) -> None:
    if handler not in _subscribers[event]:
        _subscribers[event].append(handler)


def publish(event: str, **data) -> None:
    for handler in list(_subscribers[event]):
        transaction.on_commit(lambda handler=handler: _deliver(handler, event, data))


def _deliver(handler, event: str, data: dict) -> None:
    try:
        handler(**data)
    except Exception:  # a subscriber's failure must not undo or hide the committed change
        log.exception("after-sales event %s: subscriber %r failed", event, handler)
