"""Keyset (seek) pagination for the ticket queue: ``(field NULLS LAST, id)``, cursors that are positions.

DRF's CursorPagination keys on the first ordering field alone and breaks ties with an offset, and it
cannot order by a nullable column with NULLS LAST. The queue's default order is the soonest deadline first
(``due_at`` ascending, requests without a deadline last), and most closed requests have no deadline, so an
offset over the ties would grow with the queue. Here the cursor is the last row's ``(value, id)`` and the
next page is a plain ``WHERE (value, id) > (…)`` on the index: every page costs the same.

The response shape is the one of ``config.api.CursorPagination`` (``next``, ``previous``, ``results``;
``page_size`` up to 200).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass

from django.db.models import BigIntegerField, DateTimeField, F, Field, Func, Q, QuerySet, Value
from django.db.models.lookups import GreaterThan, LessThan
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.utils.urls import replace_query_param

from config.api import INVALID_CURSOR, CursorPagination


class Row(Func):
    """``ROW(a, b)``: compared with another row, Postgres walks a ``(a, b)`` index from that position."""

    function = "ROW"
    output_field = Field()


@dataclass(frozen=True)
class Ordering:
    """A queue order: ``field`` (a datetime column, nullable or not), rows without a value last, ties by id.

    Pages are fetched by position in two segments — rows with a value, ordered by ``(field, id)``, then rows
    without one, ordered by id — each with a plain row comparison (``(due_at, id) > (v, n)``) that is an index
    range, so a page deep in the queue costs what the first one does. (One ``OR field IS NULL`` query for both
    would defeat the index: Postgres would read every row before the cursor.) The second segment is only
    queried when the first runs out within the page."""

    field: str
    descending: bool = False

    def forward(self) -> list:
        """The whole order, for a query that is not paged (exports)."""
        value = F(self.field).desc(nulls_last=True) if self.descending else F(self.field).asc(nulls_last=True)
        return [value, "-pk" if self.descending else "pk"]

    def rows(self, queryset: QuerySet, position: tuple | None = None, *, reverse: bool = False,
             limit: int) -> list:
        """Up to ``limit`` rows strictly after ``position`` (``(value, pk)``; before it when ``reverse``, in
        backward order), or from the start when ``position`` is None."""
        nullable = queryset.model._meta.get_field(self.field).null
        segments = [False, True] if nullable else [False]  # False: rows with a value; True: rows without
        if reverse:
            segments.reverse()
        if position is not None:  # segments before the position's own, in this direction, have nothing to offer
            segments = segments[segments.index(position[0] is None and nullable):]
        rows: list = []
        for index, null in enumerate(segments):
            qs = queryset.filter(**{f"{self.field}__isnull": True}) if null else (
                queryset.filter(**{f"{self.field}__isnull": False}) if nullable else queryset)
            if position is not None and index == 0:
                qs = qs.filter(self._beyond(position, reverse=reverse, null=null))
            up = self.descending == reverse  # this segment read in ascending order
            order = ["pk" if up else "-pk"] if null else [F(self.field).asc() if up else F(self.field).desc(),
                                                          "pk" if up else "-pk"]
            rows += list(qs.order_by(*order)[: limit - len(rows)])
            if len(rows) >= limit:
                break
        return rows

    def _beyond(self, position: tuple, *, reverse: bool, null: bool):
        value, pk = position
        up = self.descending == reverse
        if null:
            return Q(pk__gt=pk) if up else Q(pk__lt=pk)
        here = Row(F(self.field), F("pk"))
        there = Row(Value(value, output_field=DateTimeField()), Value(pk, output_field=BigIntegerField()))
        return GreaterThan(here, there) if up else LessThan(here, there)


class KeysetPagination(CursorPagination):
    """Pages through a queryset in one of ``orderings`` (chosen with ``?ordering=``), by position."""

    orderings: dict[str, Ordering] = {}
    default_ordering: str = ""
    ordering_query_param = "ordering"

    def paginate_queryset(self, queryset: QuerySet, request, view=None):
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering_name = request.query_params.get(self.ordering_query_param) or self.default_ordering
        order = self.orderings.get(self.ordering_name)
        if order is None:  # the filterset validates ?ordering= first; this is the backstop
            raise exceptions.ValidationError({self.ordering_query_param: [_("Unknown ordering.")]})
        self.order = order
        reverse, position = self._decode(request)

        rows = order.rows(queryset, position, reverse=reverse, limit=self.page_size + 1)
        more, rows = len(rows) > self.page_size, rows[: self.page_size]
        if reverse:
            rows.reverse()
            self.has_previous, self.has_next = more, True
        else:
            self.has_next, self.has_previous = more, position is not None
        self.first_position = self._position(rows[0]) if rows else position
        self.last_position = self._position(rows[-1]) if rows else position
        return rows

    # --- cursors ---------------------------------------------------------------------------------
    def _position(self, row) -> tuple:
        return getattr(row, self.order.field), row.pk

    def _encode(self, reverse: bool, position: tuple) -> str:
        value, pk = position
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        raw = json.dumps({"o": self.ordering_name, "r": int(reverse), "p": [value, pk]}, separators=(",", ":"))
        token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def _decode(self, request) -> tuple[bool, tuple | None]:
        token = request.query_params.get(self.cursor_query_param)
        if not token:
            return False, None
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            value, pk = data["p"]
            if data["o"] != self.ordering_name or not isinstance(pk, int) or isinstance(pk, bool):
                raise ValueError("cursor of another ordering")
            if value is not None:
                value = parse_datetime(value)
                if value is None or value.tzinfo is None:
                    raise ValueError("not an aware time")
            return bool(data["r"]), (value, pk)
        except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError, AttributeError):
            raise exceptions.ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from None

    def get_next_link(self):
        if not self.has_next or self.last_position is None:
            return None
        return self._encode(False, self.last_position)

    def get_previous_link(self):
        if not self.has_previous or self.first_position is None:
            return None
        return self._encode(True, self.first_position)
