"""What the team, return-address and drop-off pages share: the actor gate, refusals as the page shows them (with
this area's field names in words), and the one-time form flow (``run_once`` → PRG with a message, or the refusal
re-rendered next to its form with the values kept). Presentation only: every decision is a service's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from django.contrib import messages
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy

from portal.request import KEY_FIELD, Failed, ShownError, done_message, run_once
from stores import errors
from stores.errors import AppError

# Field names the team, address and drop-off services use in their refusals, as the forms label them.
FIELD_LABELS = {
    "username": gettext_lazy("Username"),
    "email": gettext_lazy("Email"),
    "password": gettext_lazy("Password"),
    "name": gettext_lazy("Name"),
    "role": gettext_lazy("Role"),
    "stores": gettext_lazy("Stores"),
    "store": gettext_lazy("Store"),
    "member": gettext_lazy("Member"),
    "permissions": gettext_lazy("Permissions"),
    "warehouse": gettext_lazy("Warehouse"),
    "contact_name": gettext_lazy("Contact"),
    "phone": gettext_lazy("Phone"),
    "line1": gettext_lazy("Address line 1"),
    "line2": gettext_lazy("Address line 2"),
    "city": gettext_lazy("City"),
    "region": gettext_lazy("State / province"),
    "postcode": gettext_lazy("Postcode"),
    "market": gettext_lazy("Market"),
    "is_default": gettext_lazy("Default address"),
    "latitude": gettext_lazy("Latitude"),
    "longitude": gettext_lazy("Longitude"),
    "limit": gettext_lazy("Number of points"),
    "address": gettext_lazy("Return address"),
}


def shown(exc: AppError) -> ShownError:
    """``ShownError.of`` with this area's field names in words (the workspace's own labels stay as they are)."""
    error = ShownError.of(exc)
    fields = [(str(FIELD_LABELS.get(name, name)), problems) for name, problems in error.fields]
    return dataclasses.replace(error, fields=fields)


def failed(action: str, exc: AppError, post) -> Failed:
    """A refusal with the values the person typed (never the password, never the tokens)."""
    values: dict = {}
    for name in post:
        if name in (KEY_FIELD, "csrfmiddlewaretoken", "password"):
            continue
        items = post.getlist(name)
        values[name] = items if len(items) > 1 or name in ("stores", "permissions") else items[0]
    return Failed(action, shown(exc), values)


def submit(request, action: str, act: Callable[[], str], target: str, rerender: Callable[[Failed], object]):
    """Run the form's action once per form key; success → message and redirect (PRG), refusal → the page again
    with the code, message, hint and field errors next to the form, in the refusal's HTTP status."""
    outcome = run_once(request, act)
    if outcome.ok:
        messages.success(request, done_message(outcome))
        return redirect(target)
    response = rerender(failed(action, outcome.error, request.POST))
    response.status_code = outcome.error.status
    return response


def invalid(field: str, message: str, error=None) -> AppError:
    """A form that cannot be read (no store chosen, a number that is not one): the catalogue's validation error."""
    return AppError(error or errors.ERR_VALIDATION, fields={field: [message]})
