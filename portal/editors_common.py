"""What the quick-reply and auto-rule editors share: the refusal as the page shows it (with each field's problems
kept apart, so they can sit next to their field), the not-found page, who may manage which scope, the list's
sections, and the save and delete flows (once per form key, PRG with a message, or the form again with the refusal).

No rule is decided here: permissions are read with ``stores.services.store_perms`` only to decide which forms to
offer; the services check them again on every write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _

from portal.request import ShownError, done_message, run_once
from portal.views import no_agency, not_found, stores_in_view
from stores import errors
from stores.errors import AppError, ErrorCode
from stores.scoping import Actor
from stores.services import actor_for_user, store_perms

AGENCY_WIDE = ""  # the scope value of agency-wide replies and rules (no store)


@dataclass(frozen=True)
class FormError:
    """A service refusal for an editor form: the block above the form (code, message, hint, detail, words) and
    each field's problems, keyed by the service's field name, for the line next to that field."""

    shown: ShownError
    by_field: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: AppError, labels: dict) -> FormError:
        shown = ShownError.of(exc)
        words = set(shown.words)
        by_field: dict[str, list[str]] = {}
        for name, value in exc.fields.items():
            values = value if isinstance(value, list | tuple) else [value]
            by_field[str(name)] = [str(v) for v in values if str(v) not in words]
        # The block's field lines use the form's labels, not the service's keys.
        relabelled = [(str(labels.get(name, name)), problems) for name, problems in by_field.items() if problems]
        return cls(dataclasses.replace(shown, fields=relabelled), by_field)

    @property
    def status(self) -> int:
        return self.shown.status

    @property
    def code(self) -> str:
        return self.shown.code


def missing(request, back_url: str, back_label: str):
    """Unknown, another agency's or not visible: one page, nothing confirmed about the object."""
    return not_found(request, back_url, back_label)


def managed_store_ids(actor: Actor, stores, perm: str) -> set[int]:
    """The stores (of those given) where the actor holds ``perm``: one query for a sub-account, none beyond the
    store ids for an owner."""
    perms = store_perms(actor, [s.pk for s in stores])
    return {pk for pk, held in perms.items() if perm in held}


def scope_value(store) -> str:
    return AGENCY_WIDE if store is None else str(store.public_id)


def editor_scope(request, actor: Actor, perm: str) -> tuple[list, set[int]]:
    """Every store the person sees (an editor lists them all, whatever the switcher holds) and those among them
    where they hold ``perm``."""
    stores, _current, _in_view = stores_in_view(request, actor)
    return stores, managed_store_ids(actor, stores, perm)


def scopes(actor: Actor, stores, managed: set[int]) -> list[tuple[str, str]]:
    """The scopes this person may add to: agency-wide (owner only, as the services say), then their stores."""
    found = [(AGENCY_WIDE, _("All stores (agency-wide)"))] if actor.is_owner else []
    return found + [(str(s.public_id), f"{s.name} · {s.market.code}") for s in stores if s.pk in managed]


def can_manage(actor: Actor, obj, managed: set[int]) -> bool:
    """An agency-wide reply or rule is the owner's; a store's, whoever holds the permission there."""
    return actor.is_owner if obj.store_id is None else obj.store_id in managed


def perm_note(actor: Actor, managed: set[int], error: ErrorCode) -> ErrorCode | None:
    """A person who may manage no scope is told which role setting would let them (not a silent read-only list)."""
    return None if actor.is_owner or managed else error


@dataclass
class Section:
    """One scope of a list: agency-wide (store None) or one store, its rows in their order. ``prefix`` names the
    page's anchors (``<prefix>-all``, ``<prefix>-<store id>``)."""

    store: object | None
    can_manage: bool
    prefix: str
    rows: list = field(default_factory=list)

    @property
    def value(self) -> str:
        return scope_value(self.store)

    @property
    def anchor(self) -> str:
        return f"{self.prefix}-all" if self.store is None else f"{self.prefix}-{self.store.public_id}"


def save_once(request, save: Callable[[], str], *, list_url: str, labels: dict,
              refused: Callable[[FormError], object]):
    """Run the save once per form key: done → its message (or that a repeat was carried out once) and back to the
    list; refused → ``refused`` renders the form again with the error next to its fields."""
    outcome = run_once(request, save)
    if outcome.ok:
        messages.success(request, done_message(outcome))
        return redirect(list_url)
    return refused(FormError.of(outcome.error, labels))


@dataclass(frozen=True)
class Deletion:
    """How one editor deletes: find the object the actor sees, delete it (the service's call, returning the
    message), the list to go back to, and the form to show a refusal on."""

    find: Callable
    delete: Callable
    list_name: str
    back_label: Callable[[], str]
    labels: dict
    refused: Callable  # (request, actor, obj, FormError) → the form again


def delete_view(request, obj_id, how: Deletion):
    """Delete once per form key: a second submit of the same form gets the first one's answer, not a 404."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    found: list = []

    def delete() -> str:
        obj = how.find(actor, obj_id)
        if obj is None:
            raise AppError(errors.ERR_NOT_FOUND)
        found.append(obj)
        return how.delete(actor, obj)

    outcome = run_once(request, delete)
    if outcome.ok:
        messages.success(request, done_message(outcome))
        return redirect(reverse(how.list_name))
    obj = found[0] if found else how.find(actor, obj_id)
    if outcome.error.error is errors.ERR_NOT_FOUND or obj is None:
        return missing(request, reverse(how.list_name), how.back_label())
    return how.refused(request, actor, obj, FormError.of(outcome.error, how.labels))
