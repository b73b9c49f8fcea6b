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

from django.db.models import F, Q, QuerySet
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.utils.urls import replace_query_param

from config.api import INVALID_CURSOR, CursorPagination


@dataclass(frozen=True)
class Ordering:
    field: str  # a datetime column (nullable or not); ties are broken by the primary key
    descending: bool = False

    def forward(self) -> list:
        value = F(self.field).desc(nulls_last=True) if self.descending else F(self.field).asc(nulls_last=True)
        return [value, "-pk" if self.descending else "pk"]

    def backward(self) -> list:
        value = F(self.field).asc(nulls_first=True) if self.descending else F(self.field).desc(nulls_first=True)
        return [value, "pk" if self.descending else "-pk"]

    def after(self, value, pk) -> Q:
        """Rows strictly after ``(value, pk)`` in forward order (NULL values come last)."""
        cmp = "lt" if self.descending else "gt"
        if value is None:
            return Q(**{f"{self.field}__isnull": True, f"pk__{cmp}": pk})
        return (Q(**{f"{self.field}__{cmp}": value}) | Q(**{self.field: value, f"pk__{cmp}": pk})
                | Q(**{f"{self.field}__isnull": True}))

    def before(self, value, pk) -> Q:
        """Rows strictly before ``(value, pk)`` in forward order."""
        cmp = "gt" if self.descending else "lt"
        if value is None:
            return Q(**{f"{self.field}__isnull": False}) | Q(**{f"{self.field}__isnull": True, f"pk__{cmp}": pk})
        return Q(**{f"{self.field}__{cmp}": value}) | Q(**{self.field: value, f"pk__{cmp}": pk})





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

        if position is None:
            rows = list(queryset.order_by(*order.forward())[: self.page_size + 1])
            self.has_next, self.has_previous = len(rows) > self.page_size, False
            rows = rows[: self.page_size]
        elif not reverse:
            rows = list(queryset.filter(order.after(*position)).order_by(*order.forward())[: self.page_size + 1])
            self.has_next, self.has_previous = len(rows) > self.page_size, True
            rows = rows[: self.page_size]
        else:
            rows = list(queryset.filter(order.before(*position)).order_by(*order.backward())[: self.page_size + 1])
            self.has_previous, self.has_next = len(rows) > self.page_size, True
            rows = list(reversed(rows[: self.page_size]))
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
