"""Which requests "the queue as filtered" means, for the CSV export and for "every request matching the filters".

The queue page's own filter form (``portal.queue.QueueFilterForm``) reads the query string, turns it into the
API's filter parameters (``TicketFilter``), and the queue's implicit limits are added: open requests only (unless a
status is chosen) and the store the switcher holds. ``aftersales.jobs.export_queryset`` then does the filtering,
through the scoping gate, exactly as the export job will.
"""

from __future__ import annotations

import hashlib

from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales import jobs
from aftersales.states import OPEN_STATES
from portal.queue import CURSOR_PARAM, QueueFilterForm
from stores import errors
from stores.errors import AppError
from stores.models import Store
from stores.scoping import Actor

OPEN_STATUS = ",".join(sorted(OPEN_STATES))


def queue_filters(raw: str, scope: list[Store]) -> QueueFilterForm:
    data = QueryDict(raw or "", mutable=True)
    data.pop(CURSOR_PARAM, None)
    return QueueFilterForm(data, stores=scope)


def filter_query(form: QueueFilterForm, current: Store | None) -> QueryDict:
    """The API filter parameters of a valid queue filter form, with the queue's open-only and switcher limits."""
    if not form.is_valid():
        raise AppError(errors.ERR_VALIDATION, fields={
            name: [str(e) for e in problems] for name, problems in form.errors.items()})
    params = form.filter_params(timezone.now())
    params.setdefault("status", OPEN_STATUS)
    query = QueryDict(mutable=True)
    for name, value in params.items():
        query[name] = value
    if current is not None:
        if query.get("store") and query["store"] != str(current.public_id):
            query["store"] = "00000000-0000-0000-0000-000000000000"  # as the queue: nothing outside the switcher
        else:
            query["store"] = str(current.public_id)
    return query


def described(form: QueueFilterForm) -> list[tuple[str, str]]:
    """The filters set, as ``(label, shown value)`` pairs (what an export or a batch will cover)."""
    if not form.is_valid():
        return []
    shown = []
    for name, field in form.fields.items():
        value = form.cleaned_data.get(name)
        if value in (None, ""):
            continue
        choices = dict((str(k), v) for k, v in getattr(field, "choices", None) or
                       getattr(field.widget, "choices", None) or [])
        shown.append((str(field.label), str(choices.get(str(value), value))))
    return shown


def matching_ids(actor: Actor, query: QueryDict, limit: int) -> list[str]:
    """Public ids of the requests the filters match, in queue order; at most ``limit + 1`` (so "too many" shows)."""
    qs = jobs.export_queryset(actor, query)
    return [str(pk) for pk in qs.values_list("public_id", flat=True)[: limit + 1]]


def too_many(limit: int) -> AppError:
    """ERR_JOB_003: the selection is larger than one batch may be (``aftersales.jobs.bulk_job_max_ids``)."""
    return AppError(errors.ERR_JOB_003, data={"limit": limit},
                    fields={"ids": [_("At most %(limit)s requests per batch; this selection has more.")
                                    % {"limit": limit}]})


def fingerprint(ids: list[str]) -> str:
    """What "every request matching the filters" was when the person confirmed it: a digest of the sorted ids.
    The POST re-runs the filters; a different digest means requests arrived or left in between."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
