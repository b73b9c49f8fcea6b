"""Query filters of ``GET /api/v1/aftersales/`` (django-filter). Every one narrows the scoped queue."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from aftersales import sla
from aftersales.models import AfterSalesRequest
from aftersales.states import RequestType, State
from stores.api.fields import UtcIsoDateTimeFilter

# ?ordering= values; the paginator (aftersales.api.pagination) pages by position in each of them.
ORDERINGS = {
    "due_at": "soonest deadline first, requests without a deadline last (default)",
    "-due_at": "latest deadline first, requests without a deadline last",
    "created_at": "oldest first",
    "-created_at": "newest first",
    "updated_at": "least recently changed first",
    "-updated_at": "most recently changed first",
}
MAX_Q = 200


class StrictBooleanField(forms.NullBooleanField):
    """true/false (also 1/0, yes/no); anything else is a validation error, not silently ignored."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise forms.ValidationError(_("Send true or false."), code="invalid")

    def validate(self, value):
        pass


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)  # the default select widget turns "maybe" into "unset"
        super().__init__(*args, **kwargs)


class ChoiceInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """``?status=pending_review,awaiting_buyer``: one or more values, comma-separated."""


class TicketFilter(django_filters.FilterSet):
    store = django_filters.UUIDFilter(field_name="store__public_id", help_text=("A store's public id."))
    market = django_filters.CharFilter(field_name="store__market__code", lookup_expr="iexact",
                                       help_text=("Market code, e.g. UK, US, ID."))
    type = ChoiceInFilter(field_name="type", choices=RequestType.choices,
                          help_text=("refund_only, return_and_refund or exchange; several comma-separated."))
    status = ChoiceInFilter(field_name="state", choices=State.choices,
                            help_text=("Normalised status; several comma-separated."))
    due_before = UtcIsoDateTimeFilter(field_name="due_at", lookup_expr="lte",
                                                  help_text=("Watched deadline at or before this time "
                                                              "(ISO 8601 with offset)."))
    breached = StrictBooleanFilter(method="filter_breached",
                                            help_text=("true: a deadline was missed; false: none was."))
    stalled = StrictBooleanFilter(method="filter_stalled",
                                           help_text=("true: the return parcel was not scanned in time "
                                                       "(物流断链)."))
    assigned_to = django_filters.CharFilter(method="filter_assigned_to",
                                            help_text=("“me”, “none” (unassigned) or a member's username."))
    q = django_filters.CharFilter(method="filter_q", max_length=MAX_Q,
                                  help_text=("Order id, return id, tracking number (exact), or buyer id or "
                                              "name (buyer name: contains)."))
    ordering = django_filters.ChoiceFilter(method="filter_ordering", choices=list(ORDERINGS.items()),
                                           help_text=("Sort order; the default is due_at."))

    class Meta:
        model = AfterSalesRequest
        fields: list[str] = []

    def filter_breached(self, queryset, name, value):
        return sla.filter_breached(queryset, breached=value)

    def filter_stalled(self, queryset, name, value):
        return queryset.filter(stalled_at__isnull=not value)

    def filter_assigned_to(self, queryset, name, value):
        value = value.strip()
        if value.lower() == "me":
            user = getattr(self.request, "user", None)
            return queryset.filter(assignee_id=getattr(user, "pk", None))
        if value.lower() == "none":
            return queryset.filter(assignee__isnull=True)
        return queryset.filter(assignee__username=value)

    def filter_q(self, queryset, name, value):
        text = value.strip()
        if not text:
            return queryset
        number = "".join(text.split()).upper()  # tracking numbers are stored normalised
        return queryset.filter(
            Q(order_id=text) | Q(return_id=text) | Q(buyer_user_id=text)
            | Q(return_shipment__tracking_number=number) | Q(replacement_tracking_number=number)
            | Q(buyer_name__icontains=text)
        )

    def filter_ordering(self, queryset, name, value):
        return queryset  # validated here (and shown in the schema); applied by the keyset paginator
