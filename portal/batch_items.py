"""Per-item results of batch review (批量审核) and of background jobs, as the pages show them. Presentation only.

The results come from ``aftersales.services.bulk`` (``{id, ok, error: {code, message}}``) — directly, or from a
batch job's report — and from a reason import's report (``{row, ok, code, message, return_id, order_id}``). Here
they get what a person reads: the request's return id and store (one query for the whole list, through the
scoping gate, so an id the user cannot see stays unnamed), the catalogue's message and fix-it hint in today's
language, and the failures first.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse
from django.utils.translation import override

from aftersales.models import AfterSalesRequest
from portal.request import ShownError, valid_uuids
from stores.errors import CATALOGUE
from stores.scoping import Actor

MAX_SHOWN = 500  # result rows rendered on one page (failures first); a larger report is summed up above them


def item_error(code: str, message: str = "") -> ShownError:
    """A stored per-item error in today's language. The stored message was written in the language of whoever
    ran the batch (a worker writes English), so it is shown as extra detail only when it is not simply the
    catalogue's message in one of the site's languages."""
    entry = CATALOGUE.get(code)
    if entry is None:
        return ShownError(code, message, "", "", [], [], 0)
    known = set()
    for language, _name in settings.LANGUAGES:
        with override(language):
            known.add(str(entry.message))
    detail = message if message and message not in known else ""
    return ShownError(code, str(entry.message), str(entry.hint), detail, [], [], entry.status)


@dataclass(frozen=True)
class Item:
    """One request of a batch: named by its return id (the id the user sent only when it names nothing they
    may see), its store, and what happened to it."""

    ok: bool
    return_id: str
    sent_id: str
    store: str
    market: str
    url: str
    error: ShownError | None


@dataclass(frozen=True)
class Outcome:
    items: list[Item]
    succeeded: int
    failed: int
    total: int

    @property
    def hidden(self) -> int:
        return self.total - len(self.items)


def named(actor: Actor, ids) -> dict[str, dict]:
    """``public_id → {return_id, store, market}`` for the ids this person may see: one query."""
    rows = (AfterSalesRequest.objects.for_actor(actor).filter(public_id__in=valid_uuids(ids))
            .values("public_id", "return_id", "store__name", "store__market__code"))
    return {str(r["public_id"]): r for r in rows}


def bulk_outcome(actor: Actor, results: list[dict], *, limit: int = MAX_SHOWN) -> Outcome:
    """The results of ``services.bulk`` (or a batch job's report), failures first, each named by its return id."""
    ordered = [r for r in results if not r.get("ok")] + [r for r in results if r.get("ok")]
    shown = ordered[:limit]
    names = named(actor, [r.get("id") for r in shown])
    items = []
    for result in shown:
        sent = str(result.get("id") or "")
        row = names.get(sent)
        error = result.get("error") or {}
        shown_error = None if result.get("ok") else item_error(str(error.get("code") or ""),
                                                                str(error.get("message") or ""))
        items.append(Item(
            ok=bool(result.get("ok")),
            return_id=row["return_id"] if row else "",
            sent_id="" if row else sent,
            store=row["store__name"] if row else "",
            market=row["store__market__code"] if row else "",
            url=reverse("portal:request", kwargs={"ticket_id": sent}) if row else "",
            error=shown_error,
        ))
    succeeded = sum(1 for r in results if r.get("ok"))
    return Outcome(items, succeeded, len(results) - succeeded, len(results))


@dataclass(frozen=True)
class ImportRow:
    row: int
    ok: bool
    return_id: str
    order_id: str
    url: str
    error: ShownError | None
    columns: str


def import_rows(rows: list[dict], *, limit: int = MAX_SHOWN) -> tuple[list[ImportRow], int, int]:
    """A reason import's rows (dry run or job report), failures first: ``(rows shown, succeeded, failed)``.
    A row names its request by the return / order id written in the file; no query."""
    ordered = [r for r in rows if not r.get("ok")] + [r for r in rows if r.get("ok")]
    shown = []
    for row in ordered[:limit]:
        ticket = row.get("ticket")
        shown.append(ImportRow(
            row=int(row.get("row") or 0), ok=bool(row.get("ok")),
            return_id=str(row.get("return_id") or ""), order_id=str(row.get("order_id") or ""),
            url=reverse("portal:request", kwargs={"ticket_id": ticket}) if ticket else "",
            error=None if row.get("ok") else item_error(str(row.get("code") or ""), str(row.get("message") or "")),
            columns=", ".join(str(f) for f in row.get("fields") or []),
        ))
    succeeded = sum(1 for r in rows if r.get("ok"))
    return shown, succeeded, len(rows) - succeeded
