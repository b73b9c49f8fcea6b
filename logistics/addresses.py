"""退货地址管理: where a store's returns go — per store, market and warehouse, one default per store and market.

Decisions:
- The market is the store's own market. A store (小店) sells in exactly one market and its returns are
  shipped within that market (local-warehouse-first in ID), so an address in another market could never be
  used; ``market`` is accepted only to say so explicitly and must match.
- Phones are stored in E.164, parsed with the market's country as the default region. A number must be
  valid and carry the market's country calling code: carriers call a local number. Regions sharing a
  calling code (US/CA, UK/Jersey) are accepted for each other, because the numbering plan cannot tell
  a reachable number from a wrong one there.
- Every write locks the store row first, so writes for one store queue: "exactly one default" holds
  without retries. The partial unique constraint ``return_address_one_default`` backs it up for writers
  that do not lock (admin, scripts). The first address of a (store, market) becomes the default; deleting
  the default promotes the oldest remaining one.
"""

from __future__ import annotations

import uuid

import phonenumbers
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from logistics.models import ReturnAddress
from stores import errors
from stores.errors import AppError
from stores.models import Market, Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

TEXT_FIELDS = ("warehouse", "contact_name", "line1", "line2", "city", "region", "postcode")
REQUIRED = ("warehouse", "contact_name", "line1", "city")
EDITABLE = (*TEXT_FIELDS, "phone")
MAX_PHONE_INPUT = 40


# --- validation --------------------------------------------------------------------------------------
def normalise_phone(raw, country: str) -> str:
    """E.164 for a number typed the local way or with its country code; ERR_LOG_501 when it is not valid."""
    text = str(raw or "").strip()
    if not text:
        raise AppError(errors.ERR_LOG_501, fields={"phone": [_("Required.")]})
    if len(text) > MAX_PHONE_INPUT:
        raise AppError(errors.ERR_LOG_501, fields={"phone": [_("Too long.")]})
    try:
        number = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise AppError(errors.ERR_LOG_501, fields={"phone": [
            _("Not a valid phone number for %(country)s.") % {"country": country}]})
    if number.country_code != phonenumbers.country_code_for_region(country):
        raise AppError(errors.ERR_LOG_501, fields={"phone": [
            _("Use a number of %(country)s (+%(code)s): carriers call a local number.")
            % {"country": country, "code": phonenumbers.country_code_for_region(country)}]})
    if number.extension:
        raise AppError(errors.ERR_LOG_501, fields={"phone": [_("Extensions are not supported.")]})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _clean(values: dict, *, partial: bool) -> dict:
    """Trimmed text within the model's limits; required fields present (on create)."""
    bad: dict[str, list[str]] = {}
    clean: dict[str, str] = {}
    for name in TEXT_FIELDS:
        if name not in values:
            if not partial and name in REQUIRED:
                bad[name] = [_("Required.")]
            continue
        value = str(values[name] if values[name] is not None else "").strip()
        limit = ReturnAddress._meta.get_field(name).max_length
        if name in REQUIRED and not value:
            bad[name] = [_("Required.")]
        elif len(value) > limit:
            bad[name] = [_("At most %(n)s characters.") % {"n": limit}]
        else:
            clean[name] = value
    if bad:
        raise AppError(errors.ERR_VALIDATION, fields=bad)
    return clean


def _clean_all(values: dict, country: str, *, partial: bool) -> dict:
    """Collect every field's problem at once; a phone-only problem keeps its own code (ERR_LOG_501)."""
    bad: dict[str, list[str]] = {}
    clean: dict = {}
    try:
        clean.update(_clean(values, partial=partial))
    except AppError as exc:
        bad.update(exc.fields)
    if "phone" in values or not partial:
        try:
            clean["phone"] = normalise_phone(values.get("phone"), country)
        except AppError as exc:
            if not bad:
                raise
            bad.update(exc.fields)
    if bad:
        raise AppError(errors.ERR_VALIDATION, fields=bad)
    return clean


# --- lookups -----------------------------------------------------------------------------------------

def _lock_store(actor: Actor, store) -> Store:
    """The store row is the lock that serialises its address writes."""
    store_id = store.pk if isinstance(store, Store) else store
    found = (Store.objects.for_actor(actor).by_id(store_id).select_for_update(of=("self",), no_key=True)
             .select_related("market").first())
    if found is None:
        raise AppError(errors.ERR_NOT_FOUND)
    require_store_perm(actor, found, StorePerm.MANAGE_LOGISTICS)
    return found


def _lock_address(actor: Actor, address_id) -> tuple[Store, ReturnAddress]:
    store_id = ReturnAddress.objects.for_actor(actor).by_id(address_id).values_list("store_id", flat=True).first()
    if store_id is None:
        raise AppError(errors.ERR_NOT_FOUND)
    store = _lock_store(actor, store_id)
    address = (ReturnAddress.objects.for_agency(store.agency_id).filter(store=store).by_id(address_id)
               .select_for_update().first())
    if address is None:  # deleted while we waited for the lock
        raise AppError(errors.ERR_NOT_FOUND)
    return store, address


def _siblings(address_or_store, market_id) -> QuerySet:
    store_id = address_or_store.store_id if isinstance(address_or_store, ReturnAddress) else address_or_store.pk
    agency_id = address_or_store.agency_id
    return ReturnAddress.objects.for_agency(agency_id).filter(store_id=store_id, market_id=market_id)


def _market_for(store: Store, market) -> Market:
    if market in (None, ""):
        return store.market
    code = market.code if isinstance(market, Market) else str(market).strip().upper()
    if code != store.market.code:
        raise AppError(errors.ERR_VALIDATION, fields={"market": [
            _("A store's return addresses are in its own market (%(market)s).") % {"market": store.market.code}]})
    return store.market


def _save(address: ReturnAddress, **kwargs) -> None:
    try:
        with transaction.atomic():
            address.save(**kwargs)
    except IntegrityError:  # only a writer that skipped the store lock can get here
        raise AppError(errors.ERR_VALIDATION, fields={"is_default": [
            _("Another default was set at the same time; reload and try again.")]}) from None


# --- services ----------------------------------------------------------------------------------------
def create_return_address(actor: Actor, store, *, market=None, is_default: bool = False,
                          **values) -> ReturnAddress:
    """Add an address; the first one of its (store, market) — or one asked to be — becomes the default."""
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise AppError(errors.ERR_VALIDATION, fields={k: [_("Unknown field.")] for k in unknown})
    with transaction.atomic():
        locked = _lock_store(actor, store)
        chosen = _market_for(locked, market)
        clean = _clean_all(values, chosen.country, partial=False)
        siblings = _siblings(locked, chosen.pk)
        has_default = siblings.filter(is_default=True).exists()
        if is_default and has_default:
            siblings.filter(is_default=True).update(is_default=False)
        address = ReturnAddress(agency_id=locked.agency_id, store=locked, market=chosen,
                                is_default=bool(is_default or not has_default), **clean)
        _save(address, force_insert=True)
        return address


def update_return_address(actor: Actor, address_id, **changes) -> ReturnAddress:
    """Change text fields or the phone (re-validated); the default is changed with set_default only."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise AppError(errors.ERR_VALIDATION, fields={k: [_("Unknown field.")] for k in unknown})
    with transaction.atomic():
        _store, address = _lock_address(actor, address_id)
        clean = _clean_all(changes, address.market.country, partial=True)
        for name, value in clean.items():
            setattr(address, name, value)
        if clean:
            _save(address, update_fields=list(clean))
        return address


def set_default_return_address(actor: Actor, address_id) -> ReturnAddress:
    """Make this the default of its (store, market); the old default is unset in the same transaction."""
    with transaction.atomic():
        _store, address = _lock_address(actor, address_id)
        if not address.is_default:
            _siblings(address, address.market_id).filter(is_default=True).update(is_default=False)
            address.is_default = True
            _save(address, update_fields=["is_default"])
        return address


def delete_return_address(actor: Actor, address_id) -> ReturnAddress | None:
    """Remove an address; when it was the default, the oldest remaining one becomes it (returned)."""
    with transaction.atomic():
        _store, address = _lock_address(actor, address_id)
        was_default, market_id = address.is_default, address.market_id
        address.delete()
        if not was_default:
            return None
        successor = _siblings(address, market_id).order_by("created_at", "id").first()
        if successor is not None:
            successor.is_default = True
            _save(successor, update_fields=["is_default"])
        return successor


# --- selectors ---------------------------------------------------------------------------------------
def return_addresses_for_actor(actor: Actor, store=None) -> QuerySet:
    """The addresses a person may see (default first); optionally of one store (instance, pk or public id)."""
    qs = ReturnAddress.objects.for_actor(actor).select_related("store", "market")
    if store is None:
        return qs
    if isinstance(store, Store):
        return qs.filter(store_id=store.pk)
    if isinstance(store, int):
        return qs.filter(store_id=store)
    try:
        return qs.filter(store__public_id=uuid.UUID(str(store)))
    except ValueError:
        return qs.none()


def default_return_address(store: Store, market=None) -> ReturnAddress | None:
    """System code (labels): the default address of the store in its market, or None."""
    market_id = store.market_id if market is None else getattr(market, "pk", market)
    return _siblings(store, market_id).filter(is_default=True).select_related("market").first()
