"""Shared set-up for connector tests: an emulator and a tenant store linked to one of its shops."""

from __future__ import annotations

from dataclasses import dataclass

from aftersales.tiktok import session
from aftersales.tiktok.models import PartnerApp, SellerAuthorization, StoreLink
from stores.models import Store
from tests.emulators.tiktok import TikTokEmulator


@dataclass
class Linked:
    emulator: TikTokEmulator
    app: PartnerApp
    authorization: SellerAuthorization
    link: StoreLink
    store: Store
    shop_id: str


def link_store(emulator: TikTokEmulator, store: Store, *, shop_index: int = 0) -> Linked:
    """Point ``store`` at the emulator's shop ``shop_index`` through a partner app and an active authorisation
    whose tokens the emulator issued (auth code → token, as the callback does)."""
    shop = emulator.shops[shop_index]
    Store.objects.unscoped().filter(pk=store.pk).update(shop_id=shop["id"], shop_cipher=shop["cipher"])
    store.refresh_from_db()
    app = PartnerApp.objects.create(agency_id=store.agency_id, name="Emulator", app_key=emulator.app_key,
                                    app_secret=emulator.app_secret, service_id="emu-service",
                                    api_base_url=emulator.url, auth_base_url=emulator.url,
                                    authorize_url=f"{emulator.url}/open/authorize")
    data = session.token_request(app, session.TOKEN_GET, {"auth_code": emulator.issue_auth_code(),
                                                          "grant_type": "authorized_code"})
    authorization = SellerAuthorization(agency_id=store.agency_id, app=app, open_id=str(data["open_id"]),
                                        seller_name=str(data.get("seller_name") or ""))
    session.store_tokens(authorization, data)
    authorization.save()
    link = StoreLink.objects.create(agency_id=store.agency_id, store=store, authorization=authorization)
    return Linked(emulator, app, authorization, link, store, shop["id"])
