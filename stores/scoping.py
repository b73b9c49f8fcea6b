"""The one scoping gate: every tenant-owned read starts from ``Model.objects.for_actor(actor)``.

``for_actor`` filters by the actor's agency and, for sub-accounts, by the stores on which they
hold the required permission (guardian rows on Store, user or group). A foreign object and an
ungranted one look the same: absent (→ 404). System code (beat sweeps, imports) says so by name:
``for_agency(agency)`` or ``unscoped()``.

A model opts in by declaring ``tenant_scope = TenantScope(agency=..., store=...)`` and using
``TenantManager``; the architecture test finds such models through the manager class.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import models
from django.db.models import Exists, OuterRef, Q

from stores.permissions import StorePerm


@dataclass(frozen=True)
class TenantScope:
    agency: str = "agency"  # path from the model to its Agency id ("agency" → agency_id)
    store: str | None = None  # path to its Store, or "self" for Store itself
    store_optional: bool = False  # rows without a store are agency-wide and visible to every member


@dataclass(frozen=True)
class Actor:
    """Who acts: a member of one agency. Built once per request from the user."""

    user_id: int
    agency_id: int
    membership_id: int
    is_owner: bool
    username: str = ""

    @property
    def kind(self) -> str:
        return "owner" if self.is_owner else "sub_account"


def granted_store_ids(actor: Actor, perm: str = StorePerm.VIEW) -> models.QuerySet:
    """Ids of the stores a sub-account holds ``perm`` on (directly or through a group)."""
    from stores.models import Store, StoreGroupObjectPermission, StoreUserObjectPermission

    user_grant = StoreUserObjectPermission.objects.filter(
        content_object_id=OuterRef("pk"), user_id=actor.user_id, permission__codename=perm
    )
    group_grant = StoreGroupObjectPermission.objects.filter(
        content_object_id=OuterRef("pk"), group__user=actor.user_id, permission__codename=perm
    )
    return Store.objects.unscoped().filter(
        Q(Exists(user_grant)) | Q(Exists(group_grant)), agency_id=actor.agency_id
    ).values("pk")


class AnyOf(models.Expression):
    """``column = ANY(%s::type[])``: a list of ids as one array parameter. ``column__in=[…]`` renders one
    placeholder per id and prepares each in Python — ≈ 1.5 ms for a sub-account's 200 stores, twice per queue page
    (docs/BENCHMARKS.md); Postgres plans both the same (an IN list is an ``= ANY`` array to it)."""

    output_field = models.BooleanField()
    conditional = True

    def __init__(self, column: str, values: list[int]):
        super().__init__()
        self.column, self.values = models.F(column), [int(v) for v in values]

    def get_source_expressions(self):
        return [self.column]

    def set_source_expressions(self, exprs):
        (self.column,) = exprs

    def as_sql(self, compiler, connection):
        sql, params = compiler.compile(self.column)
        return f"{sql} = ANY(%s::{self.column.output_field.db_type(connection)}[])", (*params, self.values)


class TenantQuerySet(models.QuerySet):
    def _scope(self) -> TenantScope:
        return self.model.tenant_scope

    def for_agency(self, agency_id) -> TenantQuerySet:
        """System code acting for one whole agency (no per-store grants applied)."""
        agency_id = getattr(agency_id, "pk", agency_id)
        return self.filter(**{f"{self._scope().agency}_id": agency_id})

    def for_actor(self, actor: Actor | None, perm: str = StorePerm.VIEW, *,
                  stores_first: bool = False) -> TenantQuerySet:
        """The rows this person may see. ``stores_first``: read the granted store ids first (one small query)
        and filter by that list, for a scan of a large table in index order (the queue): Postgres then checks
        each row against a hashed array instead of joining the grant tables per row — 5× faster for a page
        deep in a 5 M-request agency (docs/BENCHMARKS.md)."""
        if actor is None:
            return self.none()
        qs = self.for_agency(actor.agency_id)
        store_path = self._scope().store
        if actor.is_owner or store_path is None:
            return qs
        field = "pk" if store_path == "self" else f"{store_path}_id"
        stores = granted_store_ids(actor, perm)
        if stores_first:
            granted = Q(AnyOf(field, stores.values_list("pk", flat=True)))
        else:
            granted = Q(**{f"{field}__in": stores})
        if self._scope().store_optional:
            granted |= Q(**{f"{field}__isnull": True})
        return qs.filter(granted)

    def by_id(self, value) -> TenantQuerySet:
        """One row by its database id (int, from system code) or its public id (UUID, from clients);
        anything else matches nothing — a malformed id is simply not found."""
        if isinstance(value, int):
            return self.filter(pk=value)
        try:
            return self.filter(public_id=uuid.UUID(str(value)))
        except ValueError:
            return self.none()

    def unscoped(self) -> TenantQuerySet:
        """Every tenant's rows. Only for system code whose name says it crosses tenants."""
        return self.all()


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """Marks a model as tenant-owned (the architecture test looks for this manager)."""
