"""Input fields shared by the API's filters."""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 with any offset, turned into UTC before it reaches the database.

    ISO allows offsets PostgreSQL refuses (past ±15:59) and instants that leave the calendar in UTC (year 9999
    late in the day at a negative offset): both would be a server error, so the first is normalised and the
    second refused as invalid input."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise forms.ValidationError(_("The time is outside the supported range."), code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
