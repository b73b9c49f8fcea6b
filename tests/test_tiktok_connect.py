"""Connecting stores to TikTok Shop: credentials at rest, the authorisation flow against the emulator, the admin,
token refresh, and key rotation."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import urllib.error
import urllib.request
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from django.core import signing
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import Client as WebClient
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from aftersales import services as aftersales_services
from aftersales.tiktok import connect, crypto, session
from aftersales.tiktok.client import TikTokError
from aftersales.tiktok.crypto import MASK, Secret
from aftersales.tiktok.models import PartnerApp, PlatformDecision, SellerAuthorization, StoreLink
from aftersales.tiktok.session import TOKEN_GET, TOKEN_REFRESH
from stores import services
from stores.errors import AppError
from stores.models import Store
from tests.conftest import make_tenant, platform_return
from tests.emulators.tiktok import TikTokEmulator
from tests.factories import UserFactory

CALLBACK = "/connect/tiktok/callback/"
SHOPS = "/authorization/202309/shops"
UK_SHOP = "7494726673780148744"  # the emulator's default shop, region GB


# --- helpers ----------------------------------------------------------------------------------------
@pytest.fixture
def emulator():
    emu = TikTokEmulator(redirect_uri=f"http://testserver{CALLBACK}").start()
    emu.add_shop("MY", name="Emu Malaysia")
    yield emu
    emu.stop()


def make_app(agency, emu: TikTokEmulator, **fields) -> PartnerApp:
    values = {"name": "Main app", "app_key": emu.app_key, "app_secret": emu.app_secret,
              "service_id": emu.service_id, "api_base_url": emu.url, "auth_base_url": emu.url,
              "authorize_url": f"{emu.url}/open/authorize", **fields}
    return PartnerApp.objects.create(agency=agency, **values)


def raw_row(table: str, columns: str, pk: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT {columns} FROM "{table}" WHERE id = %s', [pk])
        return cursor.fetchone()


def web(user) -> WebClient:
    client = WebClient()
    client.force_login(user)
    return client


def follow_to_callback(authorize_url: str) -> dict[str, str]:
    """The browser step: the emulator's authorisation page redirects to the callback with code and state."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(authorize_url, timeout=5)
    assert answer.value.code == 302
    location = answer.value.headers["Location"]
    answer.value.close()
    parts = urlsplit(location)
    assert parts.path == CALLBACK
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


def connect_as(owner, app: PartnerApp, emu: TikTokEmulator, shop_ids=None) -> connect.ConnectResult:
    """The service path: link → (seller approves) → complete."""
    actor = services.actor_for_user(owner)
    state = parse_qs(urlsplit(connect.authorize_link(actor, app)).query)["state"][0]
    return connect.complete(actor, state, emu.issue_auth_code(shop_ids))


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def token_calls(emu: TikTokEmulator, path: str) -> int:
    return sum(1 for seen in emu.seen if seen["path"] == path)


# --- credentials at rest ------------------------------------------------------------------------------------
def test_secrets_are_encrypted_in_the_database_and_masked_in_python(tenants, emulator):
    alpha, _bravo = tenants
    emulator.app_secret = "s3cr3t-app-value"
    app = make_app(alpha.agency, emulator)
    result = connect_as(alpha.owner, app, emulator)
    auth = result.authorization
    access, refresh = auth.access_token.reveal(), auth.refresh_token.reveal()
    assert access in emulator.tokens

    (secret_col,) = raw_row(PartnerApp._meta.db_table, "app_secret", app.pk)
    access_col, refresh_col = raw_row(SellerAuthorization._meta.db_table, "access_token, refresh_token", auth.pk)
    for stored, plain in ((secret_col, "s3cr3t-app-value"), (access_col, access), (refresh_col, refresh)):
        assert stored and plain not in stored and crypto.decrypt(stored) == plain

    fresh = PartnerApp.objects.unscoped().get(pk=app.pk)
    fresh_auth = SellerAuthorization.objects.unscoped().get(pk=auth.pk)
    for value in (fresh.app_secret, fresh_auth.access_token, fresh_auth.refresh_token):
        assert repr(value) == str(value) == f"Secret({MASK})"
        assert f"{value}" == f"Secret({MASK})"
    shown = f"{fresh!r} {fresh} {fresh_auth!r} {fresh_auth} {vars(fresh)} {vars(fresh_auth)}"
    for plain in ("s3cr3t-app-value", access, refresh):
        assert plain not in shown
    assert repr(Secret(plain="")) == "Secret()"


def test_the_admin_never_shows_a_secret_or_a_token(tenants, emulator):
    alpha, _bravo = tenants
    emulator.app_secret = "s3cr3t-app-value"
    app = make_app(alpha.agency, emulator)
    result = connect_as(alpha.owner, app, emulator)
    auth = SellerAuthorization.objects.unscoped().get(pk=result.authorization.pk)
    link = StoreLink.objects.unscoped().filter(authorization=auth).first()
    plain = ["s3cr3t-app-value", auth.access_token.reveal(), auth.refresh_token.reveal()]
    stored = [*raw_row(PartnerApp._meta.db_table, "app_secret", app.pk),
              *raw_row(SellerAuthorization._meta.db_table, "access_token, refresh_token", auth.pk)]
    admin = web(UserFactory(username="root", is_staff=True, is_superuser=True))
    pages = [
        reverse("admin:aftersales_partnerapp_changelist"),
        reverse("admin:aftersales_partnerapp_change", args=[app.pk]),
        reverse("admin:aftersales_partnerapp_add"),
        reverse("admin:aftersales_sellerauthorization_changelist"),
        reverse("admin:aftersales_sellerauthorization_change", args=[auth.pk]),
        reverse("admin:aftersales_storelink_changelist"),
        reverse("admin:aftersales_storelink_change", args=[link.pk]),
        reverse("admin:aftersales_syncrun_changelist"),
        reverse("admin:aftersales_webhookdelivery_changelist"),
        reverse("admin:aftersales_platformdecision_changelist"),
    ]
    for page in pages:
        response = admin.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for value in plain + stored:
            assert value not in html, page
    change = admin.get(reverse("admin:aftersales_partnerapp_change", args=[app.pk])).content.decode()
    assert 'type="password"' in change and "set" in change
    assert reverse("tiktok:tiktok_webhook", args=[app.public_id]) in change
    assert reverse("admin:aftersales_partnerapp_connect", args=[app.pk]) in change


def test_the_admin_secret_is_write_only_an_empty_input_keeps_it(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator, app_secret="first-secret")
    admin = web(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:aftersales_partnerapp_change", args=[app.pk])
    form = {"agency": alpha.agency.pk, "name": "Renamed", "app_key": app.app_key, "app_secret": "",
            "service_id": app.service_id, "api_base_url": app.api_base_url, "auth_base_url": app.auth_base_url,
            "authorize_url": app.authorize_url, "is_active": "on"}
    assert admin.post(url, form).status_code == 302
    app.refresh_from_db()
    assert app.name == "Renamed" and app.app_secret.reveal() == "first-secret"
    assert admin.post(url, {**form, "app_secret": "second-secret"}).status_code == 302
    app.refresh_from_db()
    assert app.app_secret.reveal() == "second-secret"
    listing = admin.get(reverse("admin:aftersales_partnerapp_changelist")).content.decode()
    assert "second-secret" not in listing and ">set<" in listing


def test_a_failing_token_call_logs_and_shows_no_secret(tenants, emulator, caplog):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator, app_secret=emulator.app_secret)
    caplog.set_level(logging.DEBUG)
    # Refused by the platform (a bad code) — through the callback view, as a user would see it.
    owner = web(alpha.owner)
    state = state_of(connect.authorize_link(services.actor_for_user(alpha.owner), app))
    response = owner.get(CALLBACK, {"state": state, "code": "not-a-code"})
    assert response.status_code == 502 and b"ERR_TTS_003" in response.content
    assert emulator.app_secret.encode() not in response.content
    # The token host cannot be reached: the exception and the log name the reason only.
    unreachable = make_app(alpha.agency, emulator, app_key="other-key", auth_base_url="http://127.0.0.1:9")
    with pytest.raises(TikTokError) as failed:
        session.token_request(unreachable, TOKEN_GET, {"auth_code": "x", "grant_type": "authorized_code"})
    assert failed.value.code == "ERR_TTS_004"
    # A refused refresh logs a warning with the platform's code.
    result = connect_as(alpha.owner, app, emulator)
    auth = result.authorization
    SellerAuthorization.objects.unscoped().filter(pk=auth.pk).update(refresh_token=Secret(plain="spent-token"))
    with pytest.raises(TikTokError):
        session.refresh(auth.pk)
    assert "refused" in caplog.text
    for text in (caplog.text, str(failed.value), repr(failed.value.__dict__)):
        assert emulator.app_secret not in text and "spent-token" not in text
        assert auth.access_token.reveal() not in text


# --- the authorisation flow ------------------------------------------------------------------------------------
def test_an_owner_connects_a_seller_end_to_end(tenants, emulator):
    alpha, bravo = tenants
    app = make_app(alpha.agency, emulator)
    owner = web(alpha.owner)
    assert owner.get(reverse("tiktok:connect")).status_code == 200
    forged = WebClient(enforce_csrf_checks=True)
    forged.force_login(alpha.owner)
    assert forged.post(reverse("tiktok:authorize", args=[app.public_id])).status_code == 403  # CSRF

    response = owner.post(reverse("tiktok:authorize", args=[app.public_id]))
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{emulator.url}/open/authorize"
    query = parse_qs(target.query)
    assert query["service_id"] == [emulator.service_id] and query["state"]

    callback = follow_to_callback(response["Location"])
    assert callback["state"] == query["state"][0]
    page = owner.get(CALLBACK, callback)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Emu UK" in html and "Emu Malaysia" in html

    stores = {s.shop_id: s for s in Store.objects.for_agency(alpha.agency).filter(tiktok_link__isnull=False)}
    assert set(stores) == {shop["id"] for shop in emulator.shops}
    by_shop = {shop["id"]: shop for shop in emulator.shops}
    assert stores[UK_SHOP].market.code == "UK"  # TikTok's region GB is our market UK
    for shop_id, store in stores.items():
        assert store.shop_cipher == by_shop[shop_id]["cipher"] and store.name == by_shop[shop_id]["name"]
    assert {s.market.code for s in stores.values()} == {"UK", "MY"}

    auth = SellerAuthorization.objects.for_agency(alpha.agency).get()
    assert auth.status == SellerAuthorization.Status.ACTIVE and auth.app_id == app.pk
    assert auth.authorized_by_id == alpha.owner.pk and auth.seller_name
    assert auth.access_token.reveal() in emulator.tokens
    assert auth.access_expires_at > timezone.now() + dt.timedelta(days=6)
    assert auth.refresh_expires_at > timezone.now() + dt.timedelta(days=300)
    access_col, refresh_col = raw_row(SellerAuthorization._meta.db_table, "access_token, refresh_token", auth.pk)
    assert auth.access_token.reveal() not in access_col and auth.refresh_token.reveal() not in refresh_col
    assert set(StoreLink.objects.for_agency(alpha.agency).values_list("authorization_id", flat=True)) == {auth.pk}
    assert not StoreLink.objects.for_agency(bravo.agency).exists()
    # The shops call carried no shop_cipher and the token just issued.
    shops_call = next(seen for seen in emulator.seen if seen["path"] == SHOPS)
    assert "shop_cipher" not in shops_call["query"] and shops_call["token"] == auth.access_token.reveal()

    listing = owner.get(reverse("tiktok:connect")).content.decode()
    assert "Emu UK" in listing and auth.access_token.reveal() not in listing
    assert auth.refresh_token.reveal() not in listing
    # The owner sees the new stores like any other (no grant needed); the other agency sees nothing.
    assert Store.objects.for_actor(services.actor_for_user(alpha.owner)).filter(shop_id=UK_SHOP).exists()
    assert not Store.objects.for_actor(services.actor_for_user(bravo.owner)).filter(shop_id=UK_SHOP).exists()


def test_an_app_without_service_id_uses_the_older_link(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator, service_id="", authorize_url="https://auth.example.com/oauth/authorize")
    url = connect.authorize_link(services.actor_for_user(alpha.owner), app)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://auth.example.com/oauth/authorize"
    query = parse_qs(parts.query)
    assert query["app_key"] == [emulator.app_key] and query["state"] and "service_id" not in query


def test_reconnecting_updates_the_stores_and_the_one_authorisation(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    first = connect_as(alpha.owner, app, emulator)
    assert len(first.created) == 2 and not first.updated and not first.skipped
    old_token = first.authorization.access_token.reveal()
    emulator.shops[0]["name"] = "Emu UK renamed"
    second = connect_as(alpha.owner, app, emulator)
    assert not second.created and {s.shop_id for s in second.updated} == {s["id"] for s in emulator.shops}
    assert second.authorization.pk == first.authorization.pk
    assert SellerAuthorization.objects.for_agency(alpha.agency).count() == 1
    assert second.authorization.access_token.reveal() != old_token
    assert Store.objects.for_agency(alpha.agency).get(shop_id=UK_SHOP).name == "Emu UK renamed"
    assert StoreLink.objects.for_agency(alpha.agency).count() == 2


def test_a_sub_account_without_manage_team_may_not_connect(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    for user in (alpha.agent, alpha.viewer, alpha.outsider):
        with pytest.raises(AppError) as refused:
            connect.authorize_link(services.actor_for_user(user), app)
        assert refused.value.code == "ERR_PERM_006"
        response = web(user).post(reverse("tiktok:authorize", args=[app.public_id]))
        assert response.status_code == 403 and b"ERR_PERM_006" in response.content
    page = web(alpha.agent).get(reverse("tiktok:connect")).content.decode()
    assert reverse("tiktok:authorize", args=[app.public_id]) not in page
    # With manage team on every store of the agency, a sub-account may.
    services.assign_role(actor=None, membership=alpha.membership(alpha.outsider),
                         role=alpha.roles["store-manager"], stores=alpha.stores)
    assert connect.authorize_link(services.actor_for_user(alpha.outsider), app).startswith(emulator.url)


def test_another_agencys_app_is_not_found(tenants, emulator):
    alpha, bravo = tenants
    bravo_app = make_app(bravo.agency, emulator)
    with pytest.raises(AppError) as refused:
        connect.authorize_link(services.actor_for_user(alpha.owner), bravo_app)
    assert refused.value.code == "ERR_NOT_FOUND"
    response = web(alpha.owner).post(reverse("tiktok:authorize", args=[bravo_app.public_id]))
    assert response.status_code == 404 and b"ERR_NOT_FOUND" in response.content
    assert web(alpha.owner).get(reverse("tiktok:authorize", args=[bravo_app.public_id])).status_code == 405


def test_a_state_works_once(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    owner = web(alpha.owner)
    state = state_of(connect.authorize_link(services.actor_for_user(alpha.owner), app))
    assert owner.get(CALLBACK, {"state": state, "code": emulator.issue_auth_code()}).status_code == 200
    again = owner.get(CALLBACK, {"state": state, "code": emulator.issue_auth_code()})
    assert again.status_code == 400 and b"ERR_TTS_007" in again.content
    with pytest.raises(AppError) as refused:
        connect.complete(services.actor_for_user(alpha.owner), state, emulator.issue_auth_code())
    assert refused.value.code == "ERR_TTS_007"
    assert token_calls(emulator, "/api/v2/token/get") == 1  # the reused state never reached the platform


def test_a_state_is_used_up_even_when_the_platform_refuses_the_code(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    actor = services.actor_for_user(alpha.owner)
    state = state_of(connect.authorize_link(actor, app))
    with pytest.raises(TikTokError):
        connect.complete(actor, state, "wrong-code")
    with pytest.raises(AppError) as refused:
        connect.complete(actor, state, emulator.issue_auth_code())
    assert refused.value.code == "ERR_TTS_007"


def test_a_state_from_another_user_or_agency_is_refused(tenants, emulator):
    alpha, bravo = tenants
    app = make_app(alpha.agency, emulator)
    state = state_of(connect.authorize_link(services.actor_for_user(alpha.owner), app))
    # A manager of the same agency, the other agency's owner, and a user of no agency.
    services.assign_role(actor=None, membership=alpha.membership(alpha.outsider),
                         role=alpha.roles["store-manager"], stores=alpha.stores)
    for user in (alpha.outsider, bravo.owner):
        with pytest.raises(AppError) as refused:
            connect.complete(services.actor_for_user(user), state, emulator.issue_auth_code())
        assert refused.value.code == "ERR_TTS_007"
        response = web(user).get(CALLBACK, {"state": state, "code": emulator.issue_auth_code()})
        assert response.status_code == 400 and b"ERR_TTS_007" in response.content
    loner = web(UserFactory(username="loner"))
    assert loner.get(CALLBACK, {"state": state, "code": "x"}).status_code == 403
    # The rightful user can still use it: the refusals did not spend it.
    result = connect.complete(services.actor_for_user(alpha.owner), state, emulator.issue_auth_code())
    assert len(result.created) == 2
    assert not SellerAuthorization.objects.for_agency(bravo.agency).exists()


def test_a_tampered_expired_or_foreign_state_is_refused(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    actor = services.actor_for_user(alpha.owner)
    good = state_of(connect.authorize_link(actor, app))
    payload = signing.loads(good, salt=connect.STATE_SALT)
    with mock.patch("django.core.signing.time.time", return_value=time.time() - connect.STATE_MAX_AGE - 5):
        expired = state_of(connect.authorize_link(actor, app))
    tampered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    unsalted = signing.dumps(payload)  # right content, wrong purpose
    for state, why in ((expired, "expired"), (tampered, "not valid"), (unsalted, "not valid"), ("", "not valid")):
        with pytest.raises(AppError) as refused:
            connect.complete(actor, state, emulator.issue_auth_code())
        assert refused.value.code == "ERR_TTS_007" and why in refused.value.detail
    # Correctly signed for another agency (a forged payload would need the secret key): the agency differs.
    signed_elsewhere = signing.dumps({**payload, "a": payload["a"] + 1000}, salt=connect.STATE_SALT, compress=True)
    with pytest.raises(AppError) as refused:
        connect.complete(actor, signed_elsewhere, emulator.issue_auth_code())
    assert refused.value.code == "ERR_TTS_007"
    no_code = web(alpha.owner).get(CALLBACK, {"state": good})
    assert no_code.status_code == 400 and b"ERR_TTS_007" in no_code.content
    assert token_calls(emulator, "/api/v2/token/get") == 0


def test_a_shop_of_another_agency_is_skipped_and_nothing_of_it_is_written(tenants, emulator):
    alpha, bravo = tenants
    theirs = bravo.stores[0]
    Store.objects.unscoped().filter(pk=theirs.pk).update(shop_id=UK_SHOP, shop_cipher="bravo-cipher")
    app = make_app(alpha.agency, emulator)
    owner = web(alpha.owner)
    state = state_of(connect.authorize_link(services.actor_for_user(alpha.owner), app))
    page = owner.get(CALLBACK, {"state": state, "code": emulator.issue_auth_code()})
    assert page.status_code == 200
    html = page.content.decode()
    assert "ERR_TTS_008" in html and "the other agency must disconnect it first" in html

    theirs.refresh_from_db()
    assert theirs.agency_id == bravo.agency.pk and theirs.shop_cipher == "bravo-cipher"
    assert theirs.name == "bravo store 0"
    assert not StoreLink.objects.unscoped().filter(store=theirs).exists()
    malaysia = emulator.shops[1]["id"]
    assert list(Store.objects.for_agency(alpha.agency).filter(shop_id__in=[UK_SHOP, malaysia])
                .values_list("shop_id", flat=True)) == [malaysia]
    result = connect_as(alpha.owner, app, emulator)
    assert [(s.shop_id, s.error.code) for s in result.skipped] == [(UK_SHOP, "ERR_TTS_008")]


def test_a_shop_in_a_region_we_do_not_serve_is_skipped(tenants, emulator):
    alpha, _bravo = tenants
    emulator.shops.append({"id": "7000000000000000001", "name": "Emu Japan", "region": "JP",
                           "seller_type": "LOCAL", "cipher": "ROW_jp", "code": "JPEMU"})
    app = make_app(alpha.agency, emulator)
    result = connect_as(alpha.owner, app, emulator)
    assert [(s.shop_id, s.error.code) for s in result.skipped] == [("7000000000000000001", "ERR_TTS_013")]
    assert "JP" in result.skipped[0].detail
    assert not Store.objects.unscoped().filter(shop_id="7000000000000000001").exists()
    assert len(result.created) == 2


def test_disconnect_stops_the_sync_and_keeps_the_requests(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    result = connect_as(alpha.owner, app, emulator)
    store = next(s for s in result.created if s.shop_id == UK_SHOP)
    ticket, _created = aftersales_services.intake(store, platform_return())
    response = web(alpha.agent).post(reverse("tiktok:disconnect", args=[store.public_id]))
    assert response.status_code in (403, 404)  # the agent cannot see the new store, and may not manage it
    response = web(alpha.owner).post(reverse("tiktok:disconnect", args=[store.public_id]))
    assert response.status_code == 302 and response["Location"] == reverse("tiktok:connect")
    assert not StoreLink.objects.unscoped().filter(store=store).exists()
    assert Store.objects.unscoped().filter(pk=store.pk).exists()
    assert ticket.__class__.objects.unscoped().filter(pk=ticket.pk).exists()
    assert SellerAuthorization.objects.unscoped().filter(pk=result.authorization.pk).exists()
    with pytest.raises(AppError) as refused:
        connect.disconnect(services.actor_for_user(alpha.owner), store)
    assert refused.value.code == "ERR_TTS_006"


# --- back office -------------------------------------------------------------------------------------------------
def test_staff_connect_a_seller_from_the_admin(tenants, emulator):
    alpha, bravo = tenants
    app = make_app(alpha.agency, emulator)
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    admin = web(root)
    response = admin.get(reverse("admin:aftersales_partnerapp_connect", args=[app.pk]))
    assert response.status_code == 302 and response["Location"].startswith(f"{emulator.url}/open/authorize?")
    callback = follow_to_callback(response["Location"])
    # Only this staff user may finish it: not another staff user, not the agency's owner.
    other = UserFactory(username="root2", is_staff=True, is_superuser=True)
    for user in (other, alpha.owner):
        refused = web(user).get(CALLBACK, callback)
        assert refused.status_code == 400 and b"ERR_TTS_007" in refused.content
    page = admin.get(CALLBACK, callback)
    assert page.status_code == 200
    auth = SellerAuthorization.objects.for_agency(alpha.agency).get()
    assert auth.authorized_by_id == root.pk
    assert StoreLink.objects.for_agency(alpha.agency).count() == 2
    assert not StoreLink.objects.for_agency(bravo.agency).exists()
    # Staff without the right to change partner apps get no link.
    clerk = UserFactory(username="clerk", is_staff=True)
    assert web(clerk).get(reverse("admin:aftersales_partnerapp_connect", args=[app.pk])).status_code in (302, 403)
    with pytest.raises(AppError):
        connect.staff_authorize_link(clerk, app)


def test_admin_actions_refresh_sync_disconnect_and_resend(tenants, emulator, monkeypatch):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    result = connect_as(alpha.owner, app, emulator)
    auth = result.authorization
    old = auth.access_token.reveal()
    admin = web(UserFactory(username="root", is_staff=True, is_superuser=True))

    response = admin.post(reverse("admin:aftersales_sellerauthorization_changelist"),
                          {"action": "refresh_now", "_selected_action": [auth.pk]}, follow=True)
    assert "1 access token refreshed." in response.content.decode()
    auth.refresh_from_db()
    assert auth.access_token.reveal() != old and token_calls(emulator, TOKEN_REFRESH) == 1

    queued = []
    from aftersales.tiktok import tasks

    monkeypatch.setattr(tasks.sync_store, "delay", lambda *args: queued.append(args))
    links = list(StoreLink.objects.for_agency(alpha.agency).order_by("pk"))
    response = admin.post(reverse("admin:aftersales_storelink_changelist"),
                          {"action": "sync_now", "_selected_action": [links[0].pk]}, follow=True)
    assert queued == [(links[0].store_id, "manual")]
    assert "Sync queued for 1 store." in response.content.decode()

    ticket, _created = aftersales_services.intake(links[0].store, platform_return())
    failed = PlatformDecision.objects.create(agency=alpha.agency, ticket=ticket, operation="approve",
                                             decision="approve_refund", idempotency_key="k-1",
                                             status=PlatformDecision.Status.FAILED, error_code="ERR_TTS_011")
    response = admin.post(reverse("admin:aftersales_platformdecision_changelist"),
                          {"action": "send_again", "_selected_action": [failed.pk]}, follow=True)
    assert "1 decision queued to be sent again." in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == PlatformDecision.Status.SENDING

    response = admin.post(reverse("admin:aftersales_storelink_changelist"),
                          {"action": "disconnect", "_selected_action": [links[1].pk]}, follow=True)
    assert "1 store disconnected." in response.content.decode()
    assert not StoreLink.objects.unscoped().filter(pk=links[1].pk).exists()


# --- tokens ---------------------------------------------------------------------------------------------------------
def test_refresh_rotates_the_tokens_and_the_old_ones_stop_working(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    auth = connect_as(alpha.owner, app, emulator).authorization
    old_access, old_refresh = auth.access_token.reveal(), auth.refresh_token.reveal()
    new_access = session.refresh(auth.pk)
    auth.refresh_from_db()
    assert new_access == auth.access_token.reveal() != old_access
    assert auth.refresh_token.reveal() != old_refresh
    with pytest.raises(TikTokError) as refused:
        session.token_request(app, TOKEN_REFRESH, {"refresh_token": old_refresh, "grant_type": "refresh_token"})
    assert refused.value.code == "ERR_TTS_001" and refused.value.platform_code == 36004004
    link = StoreLink.objects.for_agency(alpha.agency).select_related("store", "authorization__app").first()
    assert session.client_for(link).call("GET", SHOPS)["shops"]
    assert emulator.seen[-1]["token"] == new_access


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_refreshing_at_once_call_the_platform_once():
    emu = TikTokEmulator(redirect_uri=f"http://testserver{CALLBACK}").start()
    try:
        tenant = make_tenant("racer", n_stores=1)
        app = make_app(tenant.agency, emu)
        auth = connect_as(tenant.owner, app, emu).authorization
        stale = auth.access_token.reveal()
        barrier, results, lock = threading.Barrier(2), [], threading.Lock()

        def worker():
            try:
                barrier.wait(10)
                token = session.refresh(auth.pk, stale_token=stale)
                with lock:
                    results.append(token)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 2 and results[0] == results[1] != stale
        assert token_calls(emu, TOKEN_REFRESH) == 1
        auth.refresh_from_db()
        assert auth.access_token.reveal() == results[0]
    finally:
        emu.stop()


def test_client_for_refreshes_ahead_of_expiry(tenants, emulator, settings):
    alpha, _bravo = tenants
    settings.TTS_TOKEN_REFRESH_MARGIN_SECONDS = 3600
    app = make_app(alpha.agency, emulator)
    auth = connect_as(alpha.owner, app, emulator).authorization
    link = StoreLink.objects.for_agency(alpha.agency).select_related("store", "authorization__app").first()
    session.client_for(link)
    assert token_calls(emulator, TOKEN_REFRESH) == 0  # 7 days left: nothing to do

    SellerAuthorization.objects.unscoped().filter(pk=auth.pk).update(
        access_expires_at=timezone.now() + dt.timedelta(minutes=10))
    link = StoreLink.objects.for_agency(alpha.agency).select_related("store", "authorization__app").first()
    client = session.client_for(link)
    assert token_calls(emulator, TOKEN_REFRESH) == 1
    auth.refresh_from_db()
    assert client.access_token == auth.access_token.reveal()
    assert auth.access_expires_at > timezone.now() + dt.timedelta(days=6)
    assert client.call("GET", SHOPS)["shops"]


def test_a_refused_refresh_needs_a_new_authorisation(tenants, emulator):
    alpha, _bravo = tenants
    app = make_app(alpha.agency, emulator)
    auth = connect_as(alpha.owner, app, emulator).authorization
    SellerAuthorization.objects.unscoped().filter(pk=auth.pk).update(
        refresh_token=Secret(plain="revoked-refresh-token"), access_expires_at=timezone.now())
    link = StoreLink.objects.for_agency(alpha.agency).select_related("store", "authorization__app").first()
    with pytest.raises(TikTokError) as refused:
        session.client_for(link)
    assert refused.value.code == "ERR_TTS_001" and refused.value.platform_code == 36004004
    auth.refresh_from_db()
    assert auth.status == SellerAuthorization.Status.NEEDS_REAUTH
    link = StoreLink.objects.for_agency(alpha.agency).select_related("store", "authorization__app").first()
    with pytest.raises(TikTokError) as not_connected:
        session.client_for(link)
    assert not_connected.value.code == "ERR_TTS_006"
    page = web(alpha.owner).get(reverse("tiktok:connect")).content.decode()
    assert "Needs a new authorisation" in page


# --- key rotation ---------------------------------------------------------------------------------------------------
def test_rotate_credentials_re_encrypts_with_the_newest_key(tenants, emulator, capsys):
    alpha, bravo = tenants
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    emulator.app_secret = "rotating-secret"
    with override_settings(CREDENTIALS_KEYS=[old]):
        app = make_app(alpha.agency, emulator)
        empty = make_app(bravo.agency, emulator, app_secret="")
        auth = connect_as(alpha.owner, app, emulator).authorization
        access, refresh = auth.access_token.reveal(), auth.refresh_token.reveal()
    before = raw_row(PartnerApp._meta.db_table, "app_secret", app.pk) + raw_row(
        SellerAuthorization._meta.db_table, "access_token, refresh_token", auth.pk)
    updated_at = SellerAuthorization.objects.unscoped().get(pk=auth.pk).updated_at

    with override_settings(CREDENTIALS_KEYS=[new, old]):
        call_command("rotate_credentials", "--batch-size", "1")
    out = capsys.readouterr().out
    assert "PartnerApp: 1 re-encrypted, 1 empty, 0 failed" in out
    assert "SellerAuthorization: 2 re-encrypted, 0 empty, 0 failed" in out
    after = raw_row(PartnerApp._meta.db_table, "app_secret", app.pk) + raw_row(
        SellerAuthorization._meta.db_table, "access_token, refresh_token", auth.pk)
    assert all(a != b for a, b in zip(after, before, strict=True))
    only_new = Fernet(new.encode())
    assert [only_new.decrypt(v.encode()).decode() for v in after] == ["rotating-secret", access, refresh]
    assert SellerAuthorization.objects.unscoped().get(pk=auth.pk).updated_at == updated_at
    assert raw_row(PartnerApp._meta.db_table, "app_secret", empty.pk) == ("",)

    with override_settings(CREDENTIALS_KEYS=[new]):
        call_command("rotate_credentials", "--check")
        assert "All credentials decrypt." in capsys.readouterr().out
        assert PartnerApp.objects.unscoped().get(pk=app.pk).app_secret.reveal() == "rotating-secret"
    with override_settings(CREDENTIALS_KEYS=[old]):
        with pytest.raises(CommandError) as failed:
            call_command("rotate_credentials", "--check")
        assert failed.value.returncode == 1
        err = capsys.readouterr().err
        assert f"PartnerApp pk={app.pk} app_secret: ERR_TTS_005" in err
        assert f"SellerAuthorization pk={auth.pk} access_token: ERR_TTS_005" in err
        for value in ("rotating-secret", access, refresh, *after):
            assert value not in err and value not in str(failed.value)


def test_add_partner_app_reads_the_secret_from_the_environment(tenants, monkeypatch, capsys):
    alpha, _bravo = tenants
    monkeypatch.setenv("TTS_APP_SECRET", "from-the-env")
    call_command("add_partner_app", "--agency", alpha.agency.slug, "--name", "Demo", "--app-key", "demo-key",
                 "--service-id", "svc-1")
    out = capsys.readouterr().out
    app = PartnerApp.objects.for_agency(alpha.agency).get(app_key="demo-key")
    assert app.app_secret.reveal() == "from-the-env" and "from-the-env" not in out
    assert reverse("tiktok:tiktok_webhook", args=[app.public_id]) in out
    monkeypatch.delenv("TTS_APP_SECRET")
    with mock.patch("sys.stdin.isatty", return_value=False):
        call_command("add_partner_app", "--agency", alpha.agency.slug, "--name", "Demo 2", "--app-key", "demo-key")
    app.refresh_from_db()
    assert app.name == "Demo 2" and app.app_secret.reveal() == "from-the-env"


def test_the_connections_page_shows_each_stores_last_sync_run(tenants, client):
    from aftersales.tiktok.models import PartnerApp, SellerAuthorization, StoreLink, SyncRun

    alpha = tenants[0]
    store = alpha.stores[0]
    app = PartnerApp.objects.create(agency=alpha.agency, name="App", app_key="k", app_secret="s")
    auth = SellerAuthorization.objects.create(agency=alpha.agency, app=app, open_id="o", access_token="a",
                                              refresh_token="r")
    StoreLink.objects.create(agency=alpha.agency, store=store, authorization=auth)
    SyncRun.objects.create(agency=alpha.agency, store=store, trigger="schedule", status="succeeded",
                           counts={"created": 7, "updated": 2})
    SyncRun.objects.create(agency=alpha.agency, store=store, trigger="schedule", status="failed",
                           counts={"created": 1, "errors": 3}, error_code="ERR_TTS_002", platform_code=36009002)
    client.force_login(alpha.owner)
    page = client.get(reverse("tiktok:connect")).content.decode()
    assert "1 new, 0 updated, 3 skipped" in page  # the newest run, not the older one
    assert "ERR_TTS_002" in page and "36009002" in page and "7 new" not in page
