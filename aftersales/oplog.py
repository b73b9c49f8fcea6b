"""The only writer of the operation log (操作日志). Rows are appended, never changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from aftersales.models import ActorKind, AfterSalesRequest, OperationLog
from config.middleware import current_request_id
from stores.bulk import insert_rows
from stores.scoping import Actor


@dataclass(frozen=True)
class Performer:
    """Who did it: a person (with their Actor for permission checks), the buyer, the platform, the system."""

    kind: str
    label: str = ""
    user_id: int | None = None
    actor: Actor | None = None

    @classmethod
    def of(cls, actor: Actor) -> Performer:
        kind = ActorKind.OWNER if actor.is_owner else ActorKind.SUB_ACCOUNT
        return cls(kind=kind, label=actor.username, user_id=actor.user_id, actor=actor)

    @property
    def is_person(self) -> bool:
        return self.kind in (ActorKind.OWNER, ActorKind.SUB_ACCOUNT)


BUYER = Performer(ActorKind.BUYER, "buyer")
PLATFORM = Performer(ActorKind.PLATFORM, "TikTok Shop")
SYSTEM = Performer(ActorKind.SYSTEM, "system")


def _row(ticket: AfterSalesRequest, *, performer: Performer, action: str, before: str, after: str,
         error_code: str = "", message: str = "", payload: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "ticket_id": ticket.pk, "agency_id": ticket.agency_id, "store_id": ticket.store_id,
        "order_id": ticket.order_id, "created_at": timezone.now(), "actor_kind": performer.kind,
        "actor_user_id": performer.user_id, "actor_label": performer.label[:150], "action": action,
        "state_before": before, "state_after": after, "error_code": error_code, "message": message,
        "payload": payload or {}, "request_id": current_request_id() or "",
    }


def record(ticket: AfterSalesRequest, **fields) -> OperationLog:
    """Append a row inside the caller's transaction (the change and its log commit together)."""
    row = OperationLog(**_row(ticket, **fields))
    row.save(force_insert=True)
    return row


def record_many(rows: list[tuple[AfterSalesRequest, dict]]) -> int:
    """Append many rows in one statement (see stores.bulk); returns how many."""
    insert_rows(OperationLog, [_row(ticket, **fields) for ticket, fields in rows])
    return len(rows)


def record_failure(ticket_pk: int, *, performer: Performer, action: str, error_code: str, message: str,
                   payload: dict[str, Any] | None = None) -> OperationLog | None:
    """Log a refused action after its rollback, in a short transaction of its own."""
    with transaction.atomic():
        ticket = AfterSalesRequest.objects.unscoped().filter(pk=ticket_pk).only(
            "pk", "agency_id", "store_id", "order_id", "state").first()
        if ticket is None:
            return None
        return record(ticket, performer=performer, action=action, before=ticket.state, after=ticket.state,
                      error_code=error_code, message=message, payload=payload)
