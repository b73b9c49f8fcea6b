"""Tokens and signed clients for a seller authorisation (reference §2.2).

``client_for(link)`` is how every call for a store starts: it refreshes the access token ahead of its expiry
(``TTS_TOKEN_REFRESH_MARGIN_SECONDS``) and hands the client a callback that refreshes on ``105002``. A refresh
takes a row lock on the authorisation, so two workers never spend the same refresh token twice (the platform
rotates it); the second one finds the new token already there and uses it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from aftersales.tiktok.client import MAX_BODY, TOKEN_EXPIRED, Client, TikTokError
from aftersales.tiktok.models import PartnerApp, SellerAuthorization, StoreLink
from stores import errors

log = logging.getLogger(__name__)

TOKEN_GET = "/api/v2/token/get"
# Rate limited, internal error, request timeout (reference §2.3): not a verdict on the grant.
TRANSIENT_CODES = frozenset({36009002, 36009003, 36009007})
TOKEN_REFRESH = "/api/v2/token/refresh"


def check_host(url: str) -> None:
    """The app's secret and tokens only ever go to an allowed host (settings.TTS_ALLOWED_HOSTS), over http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in {
            h.lower() for h in settings.TTS_ALLOWED_HOSTS}:
        raise TikTokError(errors.ERR_TTS_014, platform_message=parts.hostname or "")


def token_request(app: PartnerApp, path: str, params: dict[str, str], *, timeout: float = 10.0) -> dict:
    """GET the token host (not signed: the app secret is a parameter there) and return ``data``."""
    check_host(app.auth_base_url)
    query = urllib.parse.urlencode({"app_key": app.app_key, "app_secret": app.app_secret.reveal(), **params})
    url = f"{app.auth_base_url.rstrip('/')}{path}?{query}"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise TikTokError(errors.ERR_TTS_004)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked
            payload = response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        payload = exc.read(MAX_BODY)
        exc.close()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        # The URL carries the secret: never log or return it, only the reason.
        raise TikTokError(errors.ERR_TTS_004, platform_message=type(exc).__name__) from None
    try:
        envelope = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise TikTokError(errors.ERR_TTS_004, platform_message="token host: no envelope") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
        raise TikTokError(errors.ERR_TTS_004, platform_message="token host: no envelope")
    code, message = envelope["code"], str(envelope.get("message") or "")
    if code != 0:
        if code in TRANSIENT_CODES:  # the token host is struggling, the grant is fine: try again later
            error = errors.ERR_TTS_002
        else:
            error = errors.ERR_TTS_001 if path == TOKEN_REFRESH else errors.ERR_TTS_003
        raise TikTokError(error, platform_code=code, platform_message=message,
                          request_id=str(envelope.get("request_id") or ""))
    data = envelope.get("data")
    if not isinstance(data, dict) or not data.get("access_token"):
        raise TikTokError(errors.ERR_TTS_004, platform_message="token host: no access_token")
    return data


def _at(value) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value), tz=dt.UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def store_tokens(authorization: SellerAuthorization, data: dict) -> None:
    """Copy a token answer onto the authorisation (caller saves). Expiries are absolute unix times."""
    authorization.access_token = str(data["access_token"])
    authorization.access_expires_at = _at(data.get("access_token_expire_in"))
    if data.get("refresh_token"):
        authorization.refresh_token = str(data["refresh_token"])
        authorization.refresh_expires_at = _at(data.get("refresh_token_expire_in"))
    if isinstance(data.get("granted_scopes"), list):
        authorization.granted_scopes = [str(s)[:80] for s in data["granted_scopes"]][:100]
    authorization.status = SellerAuthorization.Status.ACTIVE


def refresh(authorization_id: int, *, stale_token: str | None = None) -> str:
    """A fresh access token for the authorisation; refreshes at most once for a given stale token.

    ``stale_token`` is the token the caller saw refused (or about to expire): if another worker already replaced
    it, that new token is returned without calling the platform.
    """
    refused: TikTokError | None = None
    with transaction.atomic():
        auth = (SellerAuthorization.objects.unscoped().select_for_update(of=("self",)).select_related("app")
                .get(pk=authorization_id))
        current = auth.access_token.reveal()
        if stale_token is not None and current and current != stale_token and not _expiring(auth):
            return current
        try:
            data = token_request(auth.app, TOKEN_REFRESH, {"refresh_token": auth.refresh_token.reveal(),
                                                           "grant_type": "refresh_token"})
        except TikTokError as exc:
            if exc.code != errors.ERR_TTS_001.code:  # not reached, or struggling: try again later
                raise
            refused = exc  # refused: the seller must authorise again (marked below, committed)
        else:
            store_tokens(auth, data)
            auth.save()
            return auth.access_token.reveal()
    SellerAuthorization.objects.unscoped().filter(pk=authorization_id).update(
        status=SellerAuthorization.Status.NEEDS_REAUTH)
    log.warning("TikTok Shop token refresh refused for authorisation %s: platform %s", authorization_id,
                refused.platform_code)
    raise refused


def _expiring(auth: SellerAuthorization) -> bool:
    margin = dt.timedelta(seconds=settings.TTS_TOKEN_REFRESH_MARGIN_SECONDS)
    return auth.access_expires_at is not None and auth.access_expires_at - margin <= timezone.now()


def client_for(link: StoreLink, **options) -> Client:
    """A signed client for the linked store; ERR_TTS_006 when the store's authorisation cannot be used."""
    auth = link.authorization
    app = auth.app
    check_host(app.api_base_url)
    if auth.status != SellerAuthorization.Status.ACTIVE or not app.is_active or not link.store.shop_cipher:
        raise TikTokError(errors.ERR_TTS_006)
    token = auth.access_token.reveal()
    if _expiring(auth):
        token = refresh(auth.pk, stale_token=token)
    holder: dict[str, str] = {"token": token}

    def on_expired() -> str:
        holder["token"] = refresh(auth.pk, stale_token=holder["token"])
        return holder["token"]

    options.setdefault("timeout", settings.TTS_HTTP_TIMEOUT_SECONDS)
    return Client(base_url=app.api_base_url, app_key=app.app_key, app_secret=app.app_secret.reveal(),
                  access_token=token, shop_cipher=link.store.shop_cipher, on_token_expired=on_expired, **options)


__all__ = ["TOKEN_EXPIRED", "TOKEN_GET", "TOKEN_REFRESH", "client_for", "refresh", "store_tokens", "token_request"]
