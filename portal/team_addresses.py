"""退货地址管理 and the drop-off finder (本地仓退货优先) in the browser.

Return addresses: the addresses of the stores in view (the store switcher's, else every store the person may see),
default first, with add / edit / set default / delete where the person holds "Manage logistics" on the store —
elsewhere the forms are not offered and a note names the role setting (ERR_PERM_003). Every change is the
``logistics.addresses`` service the API calls (which normalises the phone to E.164 for the store's market and
keeps exactly one default per store and market), run once per form key.

Drop-off finder: market + coordinates (+ how many) → ``logistics.dropoffs.nearest_dropoffs``, nearest first with
distance and pickup lead time. Addresses carry no coordinates, so an address links here with its market chosen and
its text shown beside the form, for the person to type the coordinates of the place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from logistics import addresses, dropoffs
from logistics.models import ReturnAddress
from portal.request import Failed, new_key
from portal.team_forms import invalid, shown, submit
from portal.views import no_agency, not_found, stores_in_view
from stores import errors, services
from stores.errors import AppError
from stores.models import Market
from stores.permissions import StorePerm
from stores.scoping import Actor

FORM_FIELDS = addresses.EDITABLE  # warehouse, contact, address lines, city, region, postcode, phone
DEFAULT_COUNT = 5


# --- return addresses ---------------------------------------------------------------------------------------
@dataclass
class AddressRow:
    address: ReturnAddress
    default_key: str = field(default_factory=new_key)
    delete_key: str = field(default_factory=new_key)


@dataclass
class StoreSection:
    store: object
    can_manage: bool
    rows: list[AddressRow]


def addresses_context(request, actor: Actor, failed: Failed | None = None) -> dict:
    stores, current, scope = stores_in_view(request, actor)
    held = services.store_perms(actor, [s.pk for s in scope])
    manageable = [s for s in scope if StorePerm.MANAGE_LOGISTICS in held.get(s.pk, ())]
    found = addresses.return_addresses_for_actor(actor).filter(store_id__in=[s.pk for s in scope])
    by_store: dict[int, list[AddressRow]] = {}
    for address in found:
        by_store.setdefault(address.store_id, []).append(AddressRow(address))
    manage_ids = {s.pk for s in manageable}
    sections = [StoreSection(s, s.pk in manage_ids, by_store.get(s.pk, [])) for s in scope]
    values = failed.values if failed is not None and failed.action == "create" else {}
    chosen = values.get("store") or (str(current.public_id) if current is not None else "")
    error_at = ""
    if failed is not None:
        error_at = "create" if failed.action == "create" and manageable else "top"
        target = str(failed.values.get("address", ""))
        if failed.action in ("set-default", "delete") and any(
                str(r.address.public_id) == target for rows in by_store.values() for r in rows):
            error_at = "address"
    here = request.GET.copy()
    return {
        "actor": actor,
        "stores": stores,
        "current": current,
        "sections": sections,
        "manageable": manageable,
        "chosen_store": chosen,
        "values": values,
        "create_key": new_key(),
        "failed": failed,
        "error_at": error_at,
        "error_address": str(failed.values.get("address", "")) if error_at == "address" else "",
        "perm_note": None if manageable else errors.ERR_PERM_003,
        "switch_next": f"{request.path}?{here.urlencode()}" if here else request.path,
    }


def render_addresses(request, actor: Actor, failed: Failed | None = None):
    return render(request, "portal/addresses.html", addresses_context(request, actor, failed))


@login_required
def addresses_page(request):
    actor = services.actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    return render_addresses(request, actor)


def _fields(post) -> dict:
    return {name: str(post.get(name, "")) for name in FORM_FIELDS if name in post}


def act_create(actor: Actor, post) -> str:
    store = str(post.get("store", "") or "").strip()
    if not store:
        raise invalid("store", _("Choose a store."))
    address = addresses.create_return_address(actor, store, is_default=post.get("is_default") == "on",
                                              **_fields(post))
    text = _("Return address “%(warehouse)s” added for %(store)s; the phone is saved as %(phone)s.") % {
        "warehouse": address.warehouse, "store": address.store.name, "phone": address.phone}
    if address.is_default:
        text += " " + _("It is the store’s default return address.")
    return text


def act_set_default(actor: Actor, post) -> str:
    address = addresses.set_default_return_address(actor, str(post.get("address", "")))
    return _("“%(warehouse)s” is now the default return address of %(store)s.") % {
        "warehouse": address.warehouse, "store": address.store.name}


def act_delete(actor: Actor, post) -> str:
    target = str(post.get("address", ""))
    gone = addresses.return_addresses_for_actor(actor).by_id(target).values_list("warehouse", flat=True).first()
    successor = addresses.delete_return_address(actor, target)
    text = _("Return address “%(warehouse)s” was deleted.") % {"warehouse": gone}
    if successor is not None:
        text += " " + _("“%(warehouse)s” is the default now.") % {"warehouse": successor.warehouse}
    return text


HANDLERS = {"create": act_create, "set-default": act_set_default, "delete": act_delete}


@login_required
@require_POST
def addresses_act(request, action):
    actor = services.actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    if action not in HANDLERS:
        return address_missing(request)
    handler = HANDLERS[action]
    return submit(request, action, lambda: handler(actor, request.POST), reverse("portal:addresses"),
                  lambda failed: render_addresses(request, actor, failed))


def address_missing(request):
    """Unknown, another agency's or a store not granted: one page, nothing about the address confirmed."""
    return not_found(request, reverse("portal:addresses"), _("Back to the return addresses"))


def render_edit(request, actor: Actor, address: ReturnAddress, failed: Failed | None = None, status: int = 200):
    held = services.store_perms(actor, [address.store_id]).get(address.store_id, set())
    can_manage = StorePerm.MANAGE_LOGISTICS in held
    values = failed.values if failed is not None else {name: getattr(address, name) for name in FORM_FIELDS}
    return render(request, "portal/addresses_edit.html", {
        "address": address, "can_manage": can_manage, "values": values, "key": new_key(), "failed": failed,
        "perm_note": None if can_manage else errors.ERR_PERM_003,
    }, status=status)


@login_required
def address_edit(request, address_id):
    """One address's form (GET), and its change (POST, once per form key) — back to the list with a message."""
    actor = services.actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    address = addresses.return_addresses_for_actor(actor).by_id(str(address_id)).first()
    if address is None:
        return address_missing(request)
    if request.method != "POST":
        return render_edit(request, actor, address)

    def act() -> str:
        saved = addresses.update_return_address(actor, str(address_id), **_fields(request.POST))
        return _("Return address “%(warehouse)s” saved; the phone is saved as %(phone)s.") % {
            "warehouse": saved.warehouse, "phone": saved.phone}

    return submit(request, "update", act, reverse("portal:addresses"),
                  lambda failed: render_edit(request, actor, address, failed))


# --- the drop-off finder ------------------------------------------------------------------------------------
def _count(raw: str):
    """The number asked for; anything that is not a whole number goes to the service as it is, to be refused."""
    raw = raw.strip()
    if not raw:
        return DEFAULT_COUNT
    return int(raw) if raw.isdigit() else raw


@login_required
def dropoffs_page(request):
    actor = services.actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores, current, _scope = stores_in_view(request, actor)
    markets = list(Market.objects.order_by("code"))
    near = None
    if request.GET.get("address"):
        near = addresses.return_addresses_for_actor(actor).by_id(request.GET["address"]).first()
    default_market = (near.market.code if near else current.market.code if current
                      else stores[0].market.code if stores else "ID")
    market = str(request.GET.get("market") or default_market).strip().upper()
    values = {"market": market, "latitude": request.GET.get("latitude", ""),
              "longitude": request.GET.get("longitude", ""), "count": request.GET.get("count", "")}
    searched = any(values[k] != "" for k in ("latitude", "longitude"))
    results, error, status = [], None, 200
    if searched:
        try:
            results = dropoffs.nearest_dropoffs(market, values["latitude"], values["longitude"],
                                                limit=_count(values["count"]))
        except AppError as exc:
            error, status = shown(exc), exc.status
    return render(request, "portal/dropoffs.html", {
        "markets": markets, "values": values, "near": near, "searched": searched, "results": results,
        "error": error, "default_count": DEFAULT_COUNT, "max_count": dropoffs.MAX_LIMIT,
    }, status=status)


urlpatterns: list = [
    path("addresses/", addresses_page, name="addresses"),
    path("addresses/act/<slug:action>/", addresses_act, name="addresses_act"),
    path("addresses/<uuid:address_id>/edit/", address_edit, name="address_edit"),
    path("dropoffs/", dropoffs_page, name="dropoffs"),
]
