"""The queue page (售后单队列): its filter form, keyset pages and SLA badges. Presentation only.

Nothing here decides what a request is or who may see it:

* the rows come from ``aftersales.api.selectors.ticket_queue`` (the scoping gate, store and market joined,
  assignee and tracking number as columns: one query per page);
* the filtering is the API's own ``TicketFilter`` (the same ``store``, ``market``, ``type``, ``status``,
  ``breached``, ``stalled``, ``assigned_to``, ``q`` as ``GET /api/v1/aftersales/``); the form below only
  offers its values as labelled choices and turns "due within 1 h / 4 h / 24 h" into ``due_before``;
* the order is the API's keyset ``Ordering`` on ``due_at`` (soonest deadline first, none last, then id), so a
  page costs the same wherever it is in the queue.

The SLA badge thresholds (under 1 h, under 4 h) are display colours, not policy: the deadlines themselves
come from market policy through ``aftersales.sla``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from dataclasses import dataclass, field

from django import forms
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext

from aftersales import sla
from aftersales.api.filters import MAX_Q, TicketFilter
from aftersales.api.pagination import Ordering
from aftersales.api.selectors import ticket_queue
from aftersales.models import AfterSalesRequest
from aftersales.states import OPEN_STATES, RequestType, State
from stores.models import Store
from stores.scoping import Actor

PAGE_SIZE = 50
ORDER = Ordering("due_at")  # the API's default ordering: due_at ascending NULLS LAST, then id
CURSOR_PARAM = "cursor"
MAX_PK = 2**63 - 1

DUE_WITHIN = {"1h": dt.timedelta(hours=1), "4h": dt.timedelta(hours=4), "24h": dt.timedelta(hours=24)}
DUE_WITHIN_CHOICES = [("", _("Any time")), ("1h", _("Within 1 h")), ("4h", _("Within 4 h")),
                      ("24h", _("Within 24 h"))]
YES_NO = [("", _("Any")), ("true", _("Yes")), ("false", _("No"))]
ASSIGNED_CHOICES = [("", _("Anyone")), ("me", _("Me")), ("none", _("Nobody"))]

# Colour thresholds of the countdown badge (queue.js uses the same ones, read from the table's data-*).
LT1H = dt.timedelta(hours=1)
LT4H = dt.timedelta(hours=4)


# --- the filter form ---------------------------------------------------------------------------------
class MarketChoiceField(forms.ChoiceField):
    """Market codes, case-insensitive like the API's ``market`` filter."""

    def to_python(self, value):
        return super().to_python(value).strip().upper()


class QueueFilterForm(forms.Form):
    """The filters as a person picks them. Names are the API's query parameters (plus ``due_within``), so a
    saved filter is a plain query string and the API's ``TicketFilter`` does the filtering."""

    q = forms.CharField(label=_("Search"), required=False, max_length=MAX_Q,
                        help_text=_("Order id, return id, tracking number or buyer"),
                        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}))
    # A well-formed id the select does not offer (a store outside the selection, another agency's) is not an
    # error: it narrows the scoped queue to nothing, exactly like the API, and says nothing about that store.
    store = forms.UUIDField(label=_("Store"), required=False, widget=forms.Select)
    market = MarketChoiceField(label=_("Market"), required=False)
    type = forms.ChoiceField(label=_("Type"), required=False,
                             choices=[("", _("All types")), *RequestType.choices])
    status = forms.ChoiceField(label=_("Status"), required=False,
                               choices=[("", _("All open")), *((s.value, s.label) for s in State
                                                               if s in OPEN_STATES)])
    due_within = forms.ChoiceField(label=_("Due"), required=False, choices=DUE_WITHIN_CHOICES)
    breached = forms.ChoiceField(label=_("Deadline missed"), required=False, choices=YES_NO)
    stalled = forms.ChoiceField(label=_("Stalled parcel (物流断链)"), required=False, choices=YES_NO)
    assigned_to = forms.ChoiceField(label=_("Assigned to"), required=False, choices=ASSIGNED_CHOICES)

    def __init__(self, data, *, stores: list[Store], **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(data, **kwargs)
        self.store_ids = {str(s.public_id) for s in stores}
        self.fields["store"].widget.choices = [("", _("All stores")),
                                               *((str(s.public_id), f"{s.name} · {s.market.code}") for s in stores)]
        markets = sorted({s.market.code for s in stores})
        self.fields["market"].choices = [("", _("All markets")), *((code, code) for code in markets)]

    @property
    def store_outside_selection(self) -> bool:
        """A valid store id that is not one of the stores in view (so the list is empty)."""
        store = self.is_bound and not self.errors and self.cleaned_data.get("store")
        return bool(store) and str(store) not in self.store_ids

    def filter_params(self, now: dt.datetime) -> dict[str, str]:
        """The API filter parameters for the cleaned form (only the ones set)."""
        params = {name: str(value) for name, value in self.cleaned_data.items()
                  if name != "due_within" and value not in (None, "")}
        within = self.cleaned_data.get("due_within")
        if within:
            params["due_before"] = (now + DUE_WITHIN[within]).isoformat()
        return params

    def merge_errors(self, errors: dict) -> None:
        """Errors of the API filter (should the two ever disagree) shown on the matching field."""
        names = {"due_before": "due_within"}
        for name, messages in errors.items():
            target = names.get(name, name)
            self.add_error(target if target in self.fields else None, list(messages))


# --- keyset pages ------------------------------------------------------------------------------------
def encode_cursor(reverse: bool, position: tuple) -> str:
    value, pk = position
    raw = json.dumps({"r": int(reverse), "p": [value.isoformat() if value else None, pk]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[bool, tuple] | None:
    """``(reverse, (due_at, pk))``, or None for anything that is not a cursor this page made."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        value, pk = data["p"]
        reverse = data["r"]
        if (not isinstance(pk, int) or isinstance(pk, bool) or not 0 < pk <= MAX_PK
                or reverse not in (0, 1)):
            return None
        if value is not None:
            value = parse_datetime(value)
            if value is None or value.tzinfo is None:
                return None
            value = value.astimezone(dt.UTC)
        return bool(reverse), (value, pk)
    except (ValueError, TypeError, KeyError, OverflowError, binascii.Error, UnicodeDecodeError, AttributeError):
        return None


@dataclass
class Page:
    rows: list[AfterSalesRequest] = field(default_factory=list)
    next_cursor: str = ""
    prev_cursor: str = ""
    cursor_reset: bool = False  # a malformed cursor was dropped: this is the first page


def keyset_page(queryset: QuerySet[AfterSalesRequest], token: str, size: int = PAGE_SIZE) -> Page:
    """One page after (or before) the cursor's position: ``size + 1`` rows fetched (``Ordering.rows``)."""
    decoded = decode_cursor(token) if token else None
    page = Page(cursor_reset=bool(token) and decoded is None)
    reverse, position = decoded or (False, None)
    rows = ORDER.rows(queryset, position, reverse=reverse, limit=size + 1)
    more, rows = len(rows) > size, rows[:size]
    if reverse:
        rows.reverse()
        has_prev, has_next = more, True
    else:
        has_next, has_prev = more, position is not None
    page.rows = rows
    if rows:
        if has_next:
            page.next_cursor = encode_cursor(False, (rows[-1].due_at, rows[-1].pk))
        if has_prev:
            page.prev_cursor = encode_cursor(True, (rows[0].due_at, rows[0].pk))
    elif decoded is not None:
        # Nothing left on that side (requests resolved since the link was made): offer the way back.
        reverse, position = decoded
        if reverse:
            page.next_cursor = encode_cursor(False, position)
        else:
            page.prev_cursor = encode_cursor(True, position)
    return page


def page_query(params: QueryDict, cursor: str) -> str:
    """The current query string with another cursor (the filters are kept)."""
    query = params.copy()
    query.pop(CURSOR_PARAM, None)
    if cursor:
        query[CURSOR_PARAM] = cursor
    return query.urlencode()


# --- SLA countdown -----------------------------------------------------------------------------------
def countdown_labels() -> dict[str, str]:
    """The words of the countdown, translated here and handed to queue.js through data attributes."""
    return {
        "day": pgettext("duration unit", "d"),
        "hour": pgettext("duration unit", "h"),
        "minute": pgettext("duration unit", "min"),
        "left": pgettext("SLA countdown", "%(time)s left"),
        "overdue": pgettext("SLA countdown", "overdue %(time)s"),
        "missed": pgettext("SLA countdown", "deadline missed"),
    }


def format_duration(seconds: float, labels: dict[str, str]) -> str:
    """``3 d 04 h``, ``2 h 05 min``, ``12 min`` — the same as queue.js's ``formatDuration``."""
    minutes = math.ceil(seconds / 60) if seconds > 0 else math.floor(-seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} {labels['day']} {hours:02d} {labels['hour']}"
    if hours:
        return f"{hours} {labels['hour']} {mins:02d} {labels['minute']}"
    return f"{mins} {labels['minute']}"


@dataclass(frozen=True)
class Badge:
    css: str  # breached | lt1h | lt4h | ok
    text: str
    due_iso: str  # empty when a deadline was missed and none is watched now
    breached: bool


def sla_badge(ticket: AfterSalesRequest, now: dt.datetime, labels: dict[str, str]) -> Badge | None:
    left = sla.time_left(ticket, now)
    missed = ticket.breached_at is not None
    if left is None:
        return Badge("breached", labels["missed"], "", True) if missed else None
    seconds = left.total_seconds()
    if missed or seconds <= 0:
        css = "breached"
    elif left < LT1H:
        css = "lt1h"
    elif left < LT4H:
        css = "lt4h"
    else:
        css = "ok"
    template = labels["left"] if seconds > 0 else labels["overdue"]
    text = template % {"time": format_duration(seconds, labels)}
    return Badge(css, text, ticket.due_at.isoformat(), missed)


# --- the page ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    ticket: AfterSalesRequest
    badge: Badge | None
    created_at: dt.datetime


@dataclass
class QueuePage:
    form: QueueFilterForm
    rows: list[Row]
    page: Page
    labels: dict[str, str]
    now: dt.datetime


def queue_page(request, actor: Actor, scope: list[Store], current: Store | None) -> QueuePage:
    """The open requests of the stores in view (one store when the switcher holds one), filtered, one page."""
    now = timezone.now()
    labels = countdown_labels()
    form = QueueFilterForm(request.GET, stores=scope)
    page = Page()
    if form.is_valid():
        queryset = ticket_queue(actor, stores_first=True).filter(state__in=OPEN_STATES)
        if current is not None:
            queryset = queryset.filter(store_id=current.pk)
        filterset = TicketFilter(data=form.filter_params(now), queryset=queryset, request=request)
        if filterset.is_valid():
            page = keyset_page(filterset.qs, request.GET.get(CURSOR_PARAM, ""))
        else:
            form.merge_errors(filterset.errors)
    rows = [Row(t, sla_badge(t, now, labels), t.platform_created_at or t.created_at) for t in page.rows]
    return QueuePage(form=form, rows=rows, page=page, labels=labels, now=now)
