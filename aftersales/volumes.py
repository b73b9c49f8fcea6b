"""Order volume (units sold per store, day and category): the denominator of the return rate (退货率).

Written by ERPs through the API today (the platform's order data is not synced); a push replaces the rows it
names and leaves the others. Who may push: whoever may view the store's analytics — the figures feed only
them, and agencies' data analysts are the ones who hold the sales numbers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales.models import OrderVolume
from stores import errors
from stores.errors import AppError
from stores.models import Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

MAX_ROWS = 1000
MAX_UNITS = 1_000_000_000
OLDEST_DAYS = 400


def record(actor: Actor, store_id, rows: list[dict[str, Any]]) -> int:
    """Replace the named (day, category) rows of one store; the whole push or nothing. Returns the count."""
    store = Store.objects.for_actor(actor).by_id(str(store_id)).first()
    if store is None:
        raise AppError(errors.ERR_NOT_FOUND, fields={"store": [str(errors.ERR_NOT_FOUND.message)]})
    require_store_perm(actor, store, StorePerm.VIEW_ANALYTICS)
    clean = _clean(rows)
    now = timezone.now()
    with transaction.atomic():
        OrderVolume.objects.bulk_create(
            [OrderVolume(agency_id=store.agency_id, store=store, day=day, category=category, units_sold=units,
                         orders=orders, updated_at=now) for (day, category), (units, orders) in clean.items()],
            update_conflicts=True, unique_fields=["store", "day", "category"],
            update_fields=["units_sold", "orders", "updated_at"])
    return len(clean)


def _clean(rows: list[dict[str, Any]]) -> dict[tuple[dt.date, str], tuple[int, int]]:
    if not isinstance(rows, list) or not rows or len(rows) > MAX_ROWS:
        raise AppError(errors.ERR_VALIDATION, fields={"rows": [_("1 to %(max)d rows.") % {"max": MAX_ROWS}]})
    today = timezone.now().date()
    clean: dict[tuple[dt.date, str], tuple[int, int]] = {}
    problems: dict[str, list[str]] = {}
    for i, row in enumerate(rows):
        day, category = row.get("date"), (row.get("category") or "").strip()
        units, orders = row.get("units_sold"), row.get("orders", 0)
        if not isinstance(day, dt.date) or not (today - dt.timedelta(days=OLDEST_DAYS) <= day
                                                <= today + dt.timedelta(days=1)):
            problems[f"rows.{i}.date"] = [_("A date within the last %(days)d days.") % {"days": OLDEST_DAYS}]
        elif len(category) > 32:
            problems[f"rows.{i}.category"] = [_("At most 32 characters.")]
        elif (not isinstance(units, int) or not isinstance(orders, int) or not 0 <= units <= MAX_UNITS
              or not 0 <= orders <= MAX_UNITS):
            problems[f"rows.{i}.units_sold"] = [_("Whole numbers from 0 to %(max)d.") % {"max": MAX_UNITS}]
        elif (day, category) in clean:
            problems[f"rows.{i}"] = [_("This day and category appear twice.")]
        else:
            clean[(day, category)] = (units, orders)
    if problems:
        raise AppError(errors.ERR_VALIDATION, fields=problems)
    return clean
