"""Connecting TikTok Shop stores: the seller authorisation flow (reference §2.2) and its read side.

1. ``authorize_link(actor, app)`` — an owner, or a member holding *manage team* on every store of the agency,
   gets the platform's authorisation page for the agency's partner app with a signed ``state``.
2. The seller approves on TikTok Shop, which redirects to the app's redirect URL (set in Partner Center to
   ``/connect/tiktok/callback/``) with ``code`` and ``state``.
3. ``complete(actor, state, code)`` — checks the state (signature, 10 minutes, same user and agency, once),
   exchanges the code for tokens, reads the authorised shops, and in one transaction upserts the seller
   authorisation, the stores and their links. A shop run by another agency is skipped (ERR_TTS_008).

Back-office staff may start the flow from the admin for any agency's app (``staff_authorize_link``): the state
then names the app's agency and the staff user, and ``complete`` accepts exactly that staff user.

**Once, durably.** The state's random nonce is claimed in ``stores.IdempotencyKey`` (unique per user + key) in
its own committed transaction before any call to the platform, so a second use is refused in every process —
also when the first use failed later (the platform's authorisation code is single-use too; the user starts
again). Rows are purged with the other idempotency keys after ``IDEMPOTENCY_TTL`` (24 h), long after the state
itself expired.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field

from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales.tiktok.client import Client, TikTokError
from aftersales.tiktok.models import PartnerApp, SellerAuthorization, StoreLink
from aftersales.tiktok.session import TOKEN_GET, store_tokens, token_request
from stores import errors
from stores.api.idempotency import ttl as idempotency_ttl
from stores.errors import AppError, ErrorCode
from stores.models import IdempotencyKey, Market, Store
from stores.scoping import Actor
from stores.services import require_team_manager

log = logging.getLogger(__name__)

STATE_SALT = "aftersales.tiktok.connect.state"
STATE_MAX_AGE = 600  # seconds: the link is valid 10 minutes (and once)
NONCE_KEY = "tiktok-connect:{nonce}"
CALLBACK_PATH = "/connect/tiktok/callback/"
SHOPS_PATH = "/authorization/202309/shops"


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkippedShop:
    shop_id: str
    name: str
    region: str
    error: ErrorCode
    detail: str = ""


@dataclass
class ConnectResult:
    authorization: SellerAuthorization
    created: list[Store] = field(default_factory=list)
    updated: list[Store] = field(default_factory=list)
    skipped: list[SkippedShop] = field(default_factory=list)


@dataclass(frozen=True)
class State:
    agency_id: int
    app_public_id: str
    user_id: int
    nonce: str
    staff: bool


# --- step 1: the authorisation link ------------------------------------------------------------------
def can_connect(actor: Actor | None, agency_id: int) -> bool:
    """Whether the actor may connect stores for the agency (owner, or manage team on every store)."""
    try:
        _require_connector(actor, agency_id)
    except AppError:
        return False
    return True


def _require_connector(actor: Actor | None, agency_id: int) -> None:
    if actor is None:
        raise AppError(errors.ERR_AUTH_004)
    require_team_manager(actor, agency_id, [])  # foreign agency → ERR_NOT_FOUND, else ERR_PERM_006


def authorize_link(actor: Actor | None, app: PartnerApp) -> str:
    """The platform's authorisation page for ``app`` with a signed, single-use state for this member."""
    if actor is None or app.agency_id != actor.agency_id or not app.is_active:
        raise AppError(errors.ERR_NOT_FOUND)
    _require_connector(actor, app.agency_id)
    return _link(app, _state(app, user_id=actor.user_id, staff=False))


def is_connecting_staff(user) -> bool:
    """Back-office staff allowed to connect a seller for any agency from the admin."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff
                and user.has_perm("aftersales.change_partnerapp"))


def staff_authorize_link(user, app: PartnerApp) -> str:
    """The same link, started from the admin by a staff user who need not be a member of the app's agency."""
    if not is_connecting_staff(user):
        raise AppError(errors.ERR_PERM_000)
    if not app.is_active:
        raise AppError(errors.ERR_NOT_FOUND)
    return _link(app, _state(app, user_id=user.pk, staff=True))


def _state(app: PartnerApp, *, user_id: int, staff: bool) -> str:
    payload = {"a": app.agency_id, "p": str(app.public_id), "u": user_id, "n": secrets.token_urlsafe(18),
               "s": int(staff)}
    return signing.dumps(payload, salt=STATE_SALT, compress=True)


def _link(app: PartnerApp, state: str) -> str:
    from urllib.parse import urlencode

    base = app.authorize_url.rstrip("?")
    params = {"service_id": app.service_id} if app.service_id else {"app_key": app.app_key}
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode({**params, 'state': state})}"


def max_state_age() -> int:
    """10 minutes, or less if the idempotency keys holding the used nonces were configured to live shorter."""
    return int(min(STATE_MAX_AGE, idempotency_ttl().total_seconds()))


def read_state(state: str) -> State:
    """The state's content; ERR_TTS_007 when it is not ours, altered or older than 10 minutes."""
    try:
        data = signing.loads(state or "", salt=STATE_SALT, max_age=max_state_age())
        parsed = State(agency_id=int(data["a"]), app_public_id=str(data["p"]), user_id=int(data["u"]),
                       nonce=str(data["n"]), staff=bool(data["s"]))
    except signing.SignatureExpired:
        raise AppError(errors.ERR_TTS_007, detail=_("The link has expired.")) from None
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise AppError(errors.ERR_TTS_007, detail=_("The link is not valid.")) from None
    if not parsed.nonce:
        raise AppError(errors.ERR_TTS_007, detail=_("The link is not valid."))
    return parsed


# --- step 3: the callback ----------------------------------------------------------------------------
def complete(actor: Actor | None, state: str, code: str, *, staff_user=None) -> ConnectResult:
    """Finish a connection for the user who started it. ``staff_user``: the logged-in user when it is staff
    (accepted only for a state started from the admin by that very user)."""
    parsed = read_state(state)
    user_id = _check_caller(parsed, actor, staff_user)
    app = (PartnerApp.objects.for_agency(parsed.agency_id).filter(public_id=parsed.app_public_id, is_active=True)
           .first())
    if app is None:
        raise AppError(errors.ERR_TTS_007, detail=_("The partner app of this link is gone or inactive."))
    if not code:
        raise AppError(errors.ERR_TTS_007, detail=_("TikTok Shop sent no authorisation code."))
    _claim_nonce(user_id, parsed.nonce, state)

    # The platform calls, outside any transaction.
    tokens = token_request(app, TOKEN_GET, {"auth_code": code, "grant_type": "authorized_code"})
    open_id = str(tokens.get("open_id") or "")
    if not open_id:
        raise TikTokError(errors.ERR_TTS_004, platform_message="token answer without open_id")
    client = Client(base_url=app.api_base_url, app_key=app.app_key, app_secret=app.app_secret.reveal(),
                    access_token=str(tokens["access_token"]))
    shops = client.call("GET", SHOPS_PATH).get("shops") or []
    if not isinstance(shops, list):
        raise TikTokError(errors.ERR_TTS_004, platform_message="shops is not a list")

    result = _save(app, user_id, open_id, tokens, shops)
    log.info("TikTok Shop seller %s connected to agency %s by user %s: %d created, %d updated, %d skipped",
             result.authorization.pk, app.agency_id, user_id, len(result.created), len(result.updated),
             len(result.skipped))
    return result


def _check_caller(parsed: State, actor: Actor | None, staff_user) -> int:
    if parsed.staff:
        if staff_user is None or staff_user.pk != parsed.user_id or not is_connecting_staff(staff_user):
            raise AppError(errors.ERR_TTS_007, detail=_("The link was started by another user."))
        return staff_user.pk
    if actor is None or actor.user_id != parsed.user_id or actor.agency_id != parsed.agency_id:
        raise AppError(errors.ERR_TTS_007, detail=_("The link was started by another user."))
    _require_connector(actor, parsed.agency_id)  # the right may have been taken away in the meantime
    return actor.user_id


def _claim_nonce(user_id: int, nonce: str, state: str) -> None:
    """Record the nonce as used (committed at once); ERR_TTS_007 if it already was."""
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                user_id=user_id, key=NONCE_KEY.format(nonce=nonce), method="GET", path=CALLBACK_PATH,
                body_sha256=hashlib.sha256(state.encode()).hexdigest(), status=200, response="",
                created_at=timezone.now())
    except IntegrityError:
        raise AppError(errors.ERR_TTS_007, detail=_("The link was already used.")) from None


def _save(app: PartnerApp, user_id: int, open_id: str, tokens: dict, shops: list) -> ConnectResult:
    markets = list(Market.objects.all())
    with transaction.atomic():
        auth, _created = (SellerAuthorization.objects.for_agency(app.agency_id).select_for_update()
                          .get_or_create(app=app, open_id=open_id, defaults={"agency_id": app.agency_id}))
        store_tokens(auth, tokens)
        auth.seller_name = str(tokens.get("seller_name") or auth.seller_name)[:200]
        auth.seller_base_region = str(tokens.get("seller_base_region") or auth.seller_base_region)[:8]
        auth.authorized_by_id = user_id
        auth.save()
        result = ConnectResult(authorization=auth)
        for shop in shops:
            _save_shop(app, auth, shop if isinstance(shop, dict) else {}, markets, result)
    return result


def _market_for(region: str, markets: list[Market]) -> Market | None:
    """TikTok's region is the ISO country (GB); our market codes differ in places (UK): match either."""
    region = region.upper()
    return next((m for m in markets if m.country == region), None) or next(
        (m for m in markets if m.code == region), None)


def _save_shop(app: PartnerApp, auth: SellerAuthorization, shop: dict, markets: list[Market],
               result: ConnectResult) -> None:
    shop_id, name = str(shop.get("id") or ""), str(shop.get("name") or "")[:200]
    region, cipher = str(shop.get("region") or ""), str(shop.get("cipher") or "")

    def skip(error: ErrorCode, detail: str = "") -> None:
        result.skipped.append(SkippedShop(shop_id=shop_id, name=name, region=region, error=error, detail=detail))

    if not shop_id or not cipher or len(shop_id) > 64 or len(cipher) > 128:
        skip(errors.ERR_TTS_004, _("The shop came without a usable id or cipher."))
        return
    existing = Store.objects.unscoped().select_for_update().filter(shop_id=shop_id).first()
    if existing is not None and existing.agency_id != app.agency_id:
        skip(errors.ERR_TTS_008)
        return
    if existing is not None:
        # The market stays: the store's requests carry its currency and time zone.
        existing.name, existing.shop_cipher = name or existing.name, cipher
        existing.save(update_fields=["name", "shop_cipher"])
        store = existing
        result.updated.append(store)
    else:
        market = _market_for(region, markets)
        if market is None:
            skip(errors.ERR_TTS_013, _("The shop's region “%(region)s” is not one of the markets served here.")
                 % {"region": region})
            return
        try:
            with transaction.atomic():  # a savepoint: another agency may have taken the shop id meanwhile
                store = Store.objects.unscoped().create(agency_id=app.agency_id, market=market,
                                                        name=name or shop_id, shop_id=shop_id, shop_cipher=cipher)
        except IntegrityError:
            skip(errors.ERR_TTS_008)
            return
        result.created.append(store)
    StoreLink.objects.for_agency(app.agency_id).update_or_create(
        store=store, defaults={"agency_id": app.agency_id, "authorization": auth})


# --- partner apps (back office) ------------------------------------------------------------------------
def save_partner_app(*, agency, name: str, app_key: str, app_secret: str = "", **fields) -> tuple[PartnerApp, bool]:
    """Create or update the agency's app with this key; an empty ``app_secret`` keeps the stored one."""
    if not name or not app_key:
        raise AppError(errors.ERR_VALIDATION, detail=_("A name and an app key are required."))
    with transaction.atomic():
        app = (PartnerApp.objects.for_agency(agency).select_for_update().filter(app_key=app_key).first()
               or PartnerApp(agency=agency, app_key=app_key))
        created = app.pk is None
        app.name = name
        for key, value in fields.items():
            setattr(app, key, value)
        if app_secret:
            app.app_secret = app_secret
        try:
            app.full_clean()
        except ValidationError as exc:
            raise AppError(errors.ERR_VALIDATION, fields=exc.message_dict) from None
        app.save()
    return app, created


# --- disconnecting -----------------------------------------------------------------------------------
def disconnect(actor: Actor | None, store: Store) -> None:
    """Remove the store's link (its sync stops). Its requests, the store and the seller authorisation stay.
    ``actor`` None is back-office code (the admin), which says so explicitly."""
    if actor is not None:
        require_team_manager(actor, store.agency_id, [store.pk])
    with transaction.atomic():
        deleted, _rows = StoreLink.objects.for_agency(store.agency_id).filter(store=store).delete()
    if not deleted:
        raise AppError(errors.ERR_TTS_006)
    log.info("TikTok Shop store %s disconnected", store.pk)


# --- read side (selectors for the connection page) -------------------------------------------------
def partner_apps_for(actor: Actor):
    return PartnerApp.objects.for_actor(actor).filter(is_active=True).order_by("name", "pk")


def app_for(actor: Actor, public_id) -> PartnerApp:
    app = PartnerApp.objects.for_actor(actor).by_id(public_id).first()
    if app is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return app


def links_for(actor: Actor):
    """The actor's visible connected stores with their authorisation (tokens are never read here) and their last
    sync run's report as ``last_<field>`` (one query)."""
    from aftersales.tiktok.reports import with_last_run

    return with_last_run(
        StoreLink.objects.for_actor(actor).select_related("store__market", "authorization__app")
        .defer("authorization__access_token", "authorization__refresh_token", "authorization__app__app_secret")
        .order_by("store__name", "pk"))


def store_for(actor: Actor, public_id) -> Store:
    store = Store.objects.for_actor(actor).by_id(public_id).filter(tiktok_link__isnull=False).first()
    if store is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return store
