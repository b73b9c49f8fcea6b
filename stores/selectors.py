"""Reads of the tenancy kernel, always through the scoping gate."""

from __future__ import annotations

from django.db.models import QuerySet

from stores.models import Store
from stores.scoping import Actor


def stores_for_actor(actor: Actor | None) -> QuerySet[Store]:
    return Store.objects.for_actor(actor).select_related("market").order_by("name", "id")
