"""The TikTok Shop emulator itself: tokens, shops, searches, evidence, decisions, faults and webhooks (no database)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from PIL import Image

from aftersales.tiktok.client import Client, TikTokError
from aftersales.tiktok.signing import verify_webhook
from tests.emulators.tiktok import (
    BUSINESS_REFUSAL,
    CANCEL_REJECT_REASONS,
    RATE_LIMIT,
    RETURN_REJECT_REASONS,
    Fault,
    TikTokEmulator,
    slow,
)

RETURNS = "/return_refund/202309/returns/search"
CANCELLATIONS = "/return_refund/202309/cancellations/search"
SHOPS = "/authorization/202309/shops"
T0 = 1_780_000_000


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emu(clock):
    emulator = TikTokEmulator(clock=clock, opaque_page_tokens=True).start()
    yield emulator
    emulator.stop()


def client(emu: TikTokEmulator, token: str = "token-1", cipher: str | None = None, **overrides) -> Client:
    fields = {"base_url": emu.url, "app_key": emu.app_key, "app_secret": emu.app_secret, "access_token": token,
              "shop_cipher": emu.shop_cipher if cipher is None else cipher, "sleep": lambda _s: None, "attempts": 1}
    return Client(**{**fields, **overrides})


def refusal(call, *args, **kwargs) -> TikTokError:
    with pytest.raises(TikTokError) as refused:
        call(*args, **kwargs)
    return refused.value


def auth(emu: TikTokEmulator, path: str, **params) -> dict:
    with urllib.request.urlopen(f"{emu.url}{path}?{urlencode(params)}", timeout=5) as response:
        return json.loads(response.read())


def get_token(emu: TikTokEmulator, code: str, **overrides) -> dict:
    params = {"app_key": emu.app_key, "app_secret": emu.app_secret, "auth_code": code,
              "grant_type": "authorized_code", **overrides}
    return auth(emu, "/api/v2/token/get", **params)


def refresh(emu: TikTokEmulator, refresh_token: str) -> dict:
    return auth(emu, "/api/v2/token/refresh", app_key=emu.app_key, app_secret=emu.app_secret,
                refresh_token=refresh_token, grant_type="refresh_token")


# --- tokens and shops -------------------------------------------------------------------------------------
def test_an_auth_code_gives_tokens_once(emu, clock):
    code = emu.issue_auth_code()
    answer = get_token(emu, code)
    assert answer["code"] == 0 and answer["request_id"]
    data = answer["data"]
    assert data["access_token_expire_in"] == T0 + 7 * 86_400
    assert data["refresh_token_expire_in"] == T0 + 365 * 86_400
    assert data["open_id"] and data["seller_name"] == "Emu UK" and data["seller_base_region"] == "GB"
    assert data["user_type"] == 0 and "seller.return_refund.basic" in data["granted_scopes"]
    assert get_token(emu, code)["code"] == 36004004  # single use
    assert get_token(emu, "never-issued")["code"] == 36004004
    other = emu.issue_auth_code()
    wrong = get_token(emu, other, app_secret="not-the-secret")
    assert (wrong["code"], wrong["message"]) == (36009004, "Invalid app_key")
    assert get_token(emu, other, app_key="another-app")["code"] == 36009004
    assert get_token(emu, other)["code"] == 0  # a refused attempt did not use the code
    shops = client(emu, data["access_token"]).call("GET", SHOPS)["shops"]
    assert [s["id"] for s in shops] == [emu.shops[0]["id"]]


def test_a_refresh_rotates_both_tokens(emu):
    first = get_token(emu, emu.issue_auth_code())["data"]
    second = refresh(emu, first["refresh_token"])
    assert second["code"] == 0
    new = second["data"]
    assert new["access_token"] != first["access_token"] and new["refresh_token"] != first["refresh_token"]
    assert client(emu, new["access_token"]).call("POST", RETURNS, body={})["total_count"] == 0
    old = refusal(client(emu, first["access_token"]).call, "POST", RETURNS, body={})
    assert old.code == "ERR_TTS_001" and old.platform_code == 105002
    assert refresh(emu, first["refresh_token"])["code"] == 36004004  # the old refresh token is spent
    assert refresh(emu, "made-up")["code"] == 36004004
    assert refresh(emu, new["refresh_token"])["code"] == 0


def test_an_access_token_expires_after_seven_days_of_the_emulators_clock(emu, clock):
    token = get_token(emu, emu.issue_auth_code())["data"]["access_token"]
    clock.now = T0 + 7 * 86_400 - 1
    assert client(emu, token).call("GET", SHOPS)["shops"]
    clock.now = T0 + 7 * 86_400
    assert refusal(client(emu, token).call, "GET", SHOPS).platform_code == 105002
    emu.expire_token("token-1")
    assert refusal(client(emu).call, "GET", SHOPS).platform_code == 105002


def test_each_token_sees_only_its_shops_and_their_ciphers(emu):
    malaysia, thailand = emu.add_shop("MY", "LOCAL"), emu.add_shop("TH", "CROSS_BORDER")
    assert len({s["cipher"] for s in emu.shops}) == 3 and malaysia["id"] != thailand["id"]
    token = get_token(emu, emu.issue_auth_code([malaysia["id"], thailand["id"]]))["data"]["access_token"]
    assert {s["id"] for s in client(emu, token).call("GET", SHOPS)["shops"]} == {malaysia["id"], thailand["id"]}
    assert len(client(emu).call("GET", SHOPS)["shops"]) == 3  # token-1 covers every shop
    assert client(emu, token, malaysia["cipher"]).call("POST", RETURNS, body={})["total_count"] == 0
    foreign = refusal(client(emu, token, emu.shop_cipher).call, "POST", RETURNS, body={})
    assert (foreign.platform_code, foreign.platform_message) == (36009004, "Invalid shop_cipher")
    assert refusal(client(emu, cipher="ROW_made_up").call, "POST", RETURNS, body={}).platform_code == 36009004
    with pytest.raises(ValueError):
        emu.issue_auth_code(["no-such-shop"])


def test_the_browser_authorization_redirects_with_a_fresh_code_and_the_state(emu):
    def authorize(service_id: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(urlsplit(emu.url).netloc, timeout=5)
        connection.request("GET", f"/open/authorize?{urlencode({'service_id': service_id, 'state': 'st 1'})}")
        return connection.getresponse()

    assert authorize(emu.service_id).status == 400  # no redirect URI registered
    emu.redirect_uri = "http://127.0.0.1:8000/connect/tiktok/callback"
    assert authorize("another-service").status == 400
    answer = authorize(emu.service_id)
    assert answer.status == 302
    location = urlsplit(answer.getheader("Location"))
    assert f"{location.scheme}://{location.netloc}{location.path}" == emu.redirect_uri
    params = parse_qs(location.query)
    assert params["state"] == ["st 1"]
    assert get_token(emu, params["code"][0])["code"] == 0


# --- searches ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page_size", [10, 13, 50])
def test_paging_returns_every_row_exactly_once_in_order(emu, page_size):
    rows = [emu.add_return(create_time=T0 - 1000 + n // 2) for n in range(35)]  # ties are broken by id
    other = emu.add_shop("MY")
    emu.add_return(other["id"])
    expected = [r["return_id"] for r in sorted(rows, key=lambda r: (r["create_time"], r["return_id"]))]
    c, seen, token = client(emu), [], ""
    while True:
        query = {"page_size": page_size, **({"page_token": token} if token else {})}
        data = c.call("POST", RETURNS, query=query, body={})
        assert data["total_count"] == 35 and len(data["return_orders"]) <= page_size
        seen += [r["return_id"] for r in data["return_orders"]]
        token = data["next_page_token"]
        if not token:
            break
        assert not token.isdigit()  # opaque
    assert seen == expected
    assert "shop_id" not in data["return_orders"][-1]


def test_returns_are_realistic(emu):
    row = client(emu).call("POST", RETURNS, query={"page_size": 10},
                           body={"return_ids": [emu.add_return(return_type="REFUND")["return_id"]]})["return_orders"][0]
    assert row["return_id"].isdigit() and row["order_id"].isdigit() and row["buyer_user_id"].isdigit()
    assert row["return_status"] == "RETURN_OR_REFUND_REQUEST_PENDING" and row["role"] == "BUYER"
    assert row["return_reason"] and row["return_reason_text"]
    assert row["refund_amount"]["currency"] == "GBP" and isinstance(row["refund_amount"]["refund_total"], str)
    assert [a["action"] for a in row["seller_next_action_response"]] == ["SELLER_RESPOND_REFUND"]
    assert row["seller_next_action_response"][0]["deadline"] == T0 + 2 * 86_400
    item = row["return_line_items"][0]
    assert {"product_name", "sku_id", "seller_sku", "refund_amount"} <= set(item)
    assert item["product_image"]["url"].startswith(emu.url + "/media/")
    assert row["shipment_type"] in ("PLATFORM", "BUYER_ARRANGE") and row["handover_method"] in ("DROP_OFF", "PICKUP")
    assert row["create_time"] == row["update_time"] == T0
    assert len({emu.add_return()["return_id"] for _ in range(20)}) == 20
    odd = emu.add_return(return_type="TELEPORT", return_status="SOMETHING_NEW", new_field={"x": 1})  # for tolerance
    assert (emu.status_of(odd["return_id"]), odd["new_field"]) == ("SOMETHING_NEW", {"x": 1})
    with pytest.raises(KeyError):
        emu.status_of("404")


def test_descending_update_time_and_the_filters(emu):
    rows = [emu.add_return(return_type="REFUND" if n % 2 else "RETURN_AND_REFUND", create_time=T0 - 100 + n)
            for n in range(12)]
    c = client(emu)
    data = c.call("POST", RETURNS, query={"page_size": 50, "sort_field": "update_time", "sort_order": "DESC"},
                  body={"return_types": ["REFUND"]})
    assert [r["return_id"] for r in data["return_orders"]] == [r["return_id"] for r in rows[::-1] if
                                                              r["return_type"] == "REFUND"]
    assert c.call("POST", RETURNS, body={"order_ids": [rows[3]["order_id"]]})["total_count"] == 1
    assert c.call("POST", RETURNS, body={"create_time_ge": T0 - 95, "create_time_lt": T0 - 90})["total_count"] == 5
    for query, body in [({"sort_field": "id"}, {}), ({"sort_order": "asc"}, {}), ({}, {"return_statuses": []}),
                        ({}, {"return_ids": "1"}), ({}, {"update_time_ge": "soon"})]:
        assert refusal(c.call, "POST", RETURNS, query=query, body=body).platform_code == 36009004


def test_a_tampered_or_foreign_page_token_is_refused(emu):
    for n in range(25):
        emu.add_return(create_time=T0 - n)
    c = client(emu)
    token = c.call("POST", RETURNS, query={"page_size": 10}, body={})["next_page_token"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (tampered, "10", "garbage"):
        refused = refusal(c.call, "POST", RETURNS, query={"page_size": 10, "page_token": bad}, body={})
        assert (refused.platform_code, refused.platform_message) == (36009004, "Invalid param: page_token")
    other_filters = refusal(c.call, "POST", RETURNS, query={"page_size": 10, "page_token": token},
                            body={"return_types": ["REFUND"]})
    assert other_filters.platform_code == 36009004
    assert len(c.call("POST", RETURNS, query={"page_size": 10, "page_token": token}, body={})["return_orders"]) == 10


def test_legacy_offset_tokens_are_accepted_only_when_issued():
    with TikTokEmulator() as emu:
        c = client(emu)
        assert refusal(c.call, "POST", RETURNS, query={"page_size": 10, "page_token": "10"},
                       body={}).platform_code == 36009004
        for _ in range(11):
            emu.add_return()
        assert c.call("POST", RETURNS, query={"page_size": 10}, body={})["next_page_token"] == "10"
        assert c.call("POST", RETURNS, query={"page_size": 10, "page_token": "10"}, body={})["total_count"] == 11


@pytest.mark.parametrize(("path", "size", "accepted"), [
    (RETURNS, 9, False), (RETURNS, 10, True), (RETURNS, 50, True), (RETURNS, 51, False),
    (CANCELLATIONS, 0, False), (CANCELLATIONS, 1, True), (CANCELLATIONS, 50, True), (CANCELLATIONS, 51, False)])
def test_page_size_limits(emu, path, size, accepted):
    c = client(emu)
    if accepted:
        assert c.call("POST", path, query={"page_size": size}, body={})["total_count"] == 0
    else:
        refused = refusal(c.call, "POST", path, query={"page_size": size}, body={})
        assert refused.platform_code == 36009004 and "page_size" in refused.platform_message


def test_update_time_filters_and_the_default_upper_bound(emu, clock):
    old, middle, new = (emu.add_return(create_time=T0 - d) for d in (300, 200, 100))
    c = client(emu)

    def ids(body):
        data = c.call("POST", RETURNS, query={"page_size": 50, "sort_field": "update_time"}, body=body)
        return [r["return_id"] for r in data["return_orders"]]

    assert ids({"update_time_ge": T0 - 200}) == [middle["return_id"], new["return_id"]]
    assert ids({"update_time_ge": T0 - 300, "update_time_lt": T0 - 100}) == [old["return_id"], middle["return_id"]]
    emu.set_status(old["return_id"], "RETURN_OR_REFUND_REQUEST_CANCEL")  # update_time = now = T0
    assert emu.returns[0]["update_time"] == T0
    emu.set_status(old["return_id"], "RETURN_OR_REFUND_REQUEST_COMPLETE")  # same second: still moves forward
    assert emu.returns[0]["update_time"] == T0 + 1
    assert ids({"update_time_ge": T0 - 150}) == [new["return_id"]]  # _lt defaults to now: T0 + 1 is the future
    assert ids({"update_time_ge": T0 - 150, "update_time_lt": T0 + 5}) == [new["return_id"], old["return_id"]]
    clock.now = T0 + 2
    assert ids({"update_time_ge": T0 - 150}) == [new["return_id"], old["return_id"]]
    assert ids({"update_time_lt": T0}) == [middle["return_id"], new["return_id"]]


def test_cancellations_search_by_shop_status_and_page_size_one(emu):
    pending = [emu.add_cancellation(create_time=T0 - n) for n in range(3)]
    emu.set_status(pending[0]["cancel_id"], "CANCELLATION_REQUEST_CANCEL")
    emu.add_cancellation(emu.add_shop("TH")["id"])
    c = client(emu)
    first = c.call("POST", CANCELLATIONS, query={"page_size": 1}, body={})
    assert first["total_count"] == 3 and len(first["cancellations"]) == 1 and first["next_page_token"]
    row = first["cancellations"][0]
    assert row["cancel_type"] == "BUYER_CANCEL" and row["role"] == "BUYER" and row["cancel_reason_text"]
    assert row["seller_next_action_response"][0]["action"] == "SELLER_RESPOND_CANCEL"
    assert row["cancel_line_items"][0]["product_name"] and row["refund_amount"]["currency"] == "GBP"
    for status in ("CANCELLATION_REQUEST_CANCEL", "CANCELLATION_REQUEST_CANCELLED"):  # §1.4 caveat 3
        data = c.call("POST", CANCELLATIONS, body={"cancel_status": [status]})
        assert [r["cancel_id"] for r in data["cancellations"]] == [pending[0]["cancel_id"]]
    assert c.call("POST", CANCELLATIONS, body={"cancel_types": ["CANCEL"]})["total_count"] == 0


# --- evidence, reasons, eligibility -------------------------------------------------------------------------
def test_records_carry_evidence_that_the_emulator_serves(emu):
    shipped = emu.add_return(return_type="RETURN_AND_REFUND")
    refund = emu.add_return(return_type="REFUND")
    c = client(emu)
    records = c.call("GET", f"/return_refund/202309/returns/{shipped['return_id']}/records")["records"]
    assert len(records) == 1 and records[0]["role"] == "BUYER" and records[0]["event"] == "ORDER_RETURN"
    image, video = records[0]["images"][0], records[0]["videos"][0]
    assert image["url"].startswith(emu.url) and video["cover"].startswith(emu.url) and video["duration_millis"]
    with urllib.request.urlopen(image["url"], timeout=5) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(response.read()))
        picture.load()
    assert picture.format == "JPEG" and picture.size == (image["width"], image["height"])
    with urllib.request.urlopen(video["url"], timeout=5) as response:
        assert response.headers["Content-Type"] == "video/mp4" and response.read()[4:8] == b"ftyp"
    assert c.call("GET", f"/return_refund/202309/returns/{refund['return_id']}/records")["records"][0]["videos"] == []
    emu.add_records(refund["return_id"], [{"event": "ORDER_RETURN", "role": "SELLER", "description": "Seller note",
                                           "images": [], "videos": [], "create_time": T0 + 5}])
    timeline = c.call("GET", f"/return_refund/202309/returns/{refund['return_id']}/records")["records"]
    assert [r["role"] for r in timeline] == ["BUYER", "SELLER"]
    assert refusal(c.call, "GET", "/return_refund/202309/returns/999/records").platform_code == 36009004


def test_reject_reasons_per_request(emu):
    a_return, a_cancellation = emu.add_return(), emu.add_cancellation()
    c = client(emu)

    def reasons(object_id):
        return c.call("GET", "/return_refund/202309/reject_reasons", query={"return_or_cancel_id": object_id})

    assert reasons(a_return["return_id"])["reasons"] == RETURN_REJECT_REASONS
    assert [r["name"] for r in RETURN_REJECT_REASONS] == [f"reverse_reject_request_reason_{n}" for n in (1, 3, 4, 5)]
    assert reasons(a_cancellation["cancel_id"])["reasons"] == CANCEL_REJECT_REASONS
    emu.set_reject_reasons(a_return["return_id"], [{"name": "seller_reject_apply_item_is_correct", "text": "Correct"}])
    assert [r["name"] for r in reasons(a_return["return_id"])["reasons"]] == ["seller_reject_apply_item_is_correct"]
    elsewhere = emu.add_return(emu.add_shop("MY")["id"])
    for unknown in ("404", elsewhere["return_id"]):
        assert refusal(reasons, unknown).platform_code == 36009004
    assert refusal(c.call, "GET", "/return_refund/202309/reject_reasons").platform_code == 36009004


def eligibility(emu, object_id, *decisions) -> dict[str, dict]:
    data = client(emu).call("GET", "/return_refund/202601/decision_eligibility",
                            query={"return_or_cancel_id": object_id, "check_decisions": ",".join(decisions)})
    return {d["decision"]: d for d in data["decisions"]}


def test_decision_eligibility_follows_status_and_type(emu):
    refund = emu.add_return(return_type="REFUND")
    answers = eligibility(emu, refund["return_id"], "APPROVE_REFUND", "REJECT_REFUND", "APPROVE_RECEIVED_PACKAGE",
                          "APPROVE_REQUEST_CANCEL")
    assert answers["APPROVE_REFUND"]["eligible"] and answers["APPROVE_REFUND"]["available_reject_reasons"] == []
    assert answers["REJECT_REFUND"]["available_reject_reasons"] == RETURN_REJECT_REASONS
    package = answers["APPROVE_RECEIVED_PACKAGE"]
    assert not package["eligible"] and package["ineligible_code"] == BUSINESS_REFUSAL and package["ineligible_reason"]
    assert not answers["APPROVE_REQUEST_CANCEL"]["eligible"]
    shipped = emu.add_return(return_type="RETURN_AND_REFUND", return_status="BUYER_SHIPPED_ITEM")
    answers = eligibility(emu, shipped["return_id"], "APPROVE_RECEIVED_PACKAGE", "APPROVE_RETURN")
    assert answers["APPROVE_RECEIVED_PACKAGE"]["eligible"] and not answers["APPROVE_RETURN"]["eligible"]
    cancel = emu.add_cancellation()
    answers = eligibility(emu, cancel["cancel_id"], "APPROVE_REQUEST_CANCEL", "REJECT_REQUEST_CANCEL", "APPROVE_REFUND")
    assert answers["APPROVE_REQUEST_CANCEL"]["eligible"] and answers["REJECT_REQUEST_CANCEL"]["eligible"]
    assert answers["REJECT_REQUEST_CANCEL"]["available_reject_reasons"] == CANCEL_REJECT_REASONS
    assert not answers["APPROVE_REFUND"]["eligible"]
    assert len(eligibility(emu, cancel["cancel_id"])) == 12  # no check_decisions: every decision
    assert refusal(eligibility, emu, refund["return_id"], "APPROVE_EVERYTHING").platform_code == 36009004
    emu.set_eligibility(refund["return_id"], {"APPROVE_REFUND": (False, 48001002, "Order is under review")})
    overridden = eligibility(emu, refund["return_id"], "APPROVE_REFUND")["APPROVE_REFUND"]
    assert (overridden["eligible"], overridden["ineligible_code"]) == (False, 48001002)
    refused = refusal(decide, emu, "returns", refund["return_id"], "approve", {"decision": "APPROVE_REFUND"})
    assert refused.platform_code == BUSINESS_REFUSAL and "under review" in refused.platform_message


# --- decisions ----------------------------------------------------------------------------------------------
def decide(emu, kind: str, object_id: str, action: str, body: dict | None, key: str | None = "key-1", **kwargs):
    query = {"idempotency_key": key} if key is not None else {}
    return client(emu, **kwargs).call("POST", f"/return_refund/202309/{kind}/{object_id}/{action}", query=query,
                                      body=body)


REASON = "reverse_reject_request_reason_1"


@pytest.mark.parametrize(("return_type", "status", "action", "body", "after"), [
    ("REFUND", None, "approve", {"decision": "APPROVE_REFUND"}, "RETURN_OR_REFUND_REQUEST_SUCCESS"),
    ("RETURN_AND_REFUND", None, "approve", {"decision": "APPROVE_RETURN"}, "AWAITING_BUYER_SHIP"),
    ("RETURN_AND_REFUND", None, "approve", {"decision": "APPROVE_RETURN", "buyer_keep_item": True},
     "RETURN_OR_REFUND_REQUEST_SUCCESS"),
    ("RETURN_AND_REFUND", "BUYER_SHIPPED_ITEM", "approve", {"decision": "APPROVE_RECEIVED_PACKAGE"},
     "RETURN_OR_REFUND_REQUEST_SUCCESS"),
    ("RETURN_AND_REFUND", None, "approve", {"decision": "DIRECT_REFUND"}, "RETURN_OR_REFUND_REQUEST_SUCCESS"),
    ("REPLACEMENT", None, "approve", {"decision": "APPROVE_REPLACEMENT"}, "REPLACEMENT_REQUEST_COMPLETE"),
    ("REPLACEMENT", None, "approve", {"decision": "ISSUE_REPLACEMENT_REFUND"}, "REPLACEMENT_REQUEST_REFUND_SUCCESS"),
    ("REFUND", None, "reject", {"decision": "REJECT_REFUND", "reject_reason": REASON, "comment": "Delivered",
                                "images": [{"image_id": "tos-maliva-i-o3syd03w52-us/abc", "mime_type": "image/jpeg",
                                            "width": 800, "height": 600}]}, "REFUND_OR_RETURN_REQUEST_REJECT"),
    ("RETURN_AND_REFUND", None, "reject", {"decision": "REJECT_RETURN", "reject_reason": REASON},
     "REFUND_OR_RETURN_REQUEST_REJECT"),
    ("RETURN_AND_REFUND", "BUYER_SHIPPED_ITEM", "reject", {"decision": "REJECT_RECEIVED_PACKAGE",
                                                           "reject_reason": REASON}, "REJECT_RECEIVE_PACKAGE"),
    ("REPLACEMENT", None, "reject", {"decision": "REJECT_REPLACEMENT", "reject_reason": REASON},
     "REPLACEMENT_REQUEST_REJECT"),
])
def test_return_decisions_and_their_effects(emu, clock, return_type, status, action, body, after):
    emu.uploaded_images["tos-maliva-i-o3syd03w52-us/abc"] = 1234  # as if uploaded first (see the upload test)
    row = emu.add_return(return_type=return_type, **({"return_status": status} if status else {}))
    clock.now = T0 + 60
    assert decide(emu, "returns", row["return_id"], action, body) == {}
    stored = emu.returns[-1]
    assert stored["return_status"] == after and stored["update_time"] == T0 + 60
    assert emu.decisions == [{"key": "key-1", "kind": "return", "id": row["return_id"], "action": body["decision"],
                              "body": body, "status_before": row["return_status"], "status_after": after}]


def test_a_partial_refund_offer_waits_for_the_buyer(emu):
    row = emu.add_return(return_type="REFUND")
    total = row["refund_amount"]["refund_total"]
    offer = {"decision": "OFFER_PARTIAL_REFUND", "partial_refund": {"amount": "1.00", "currency": "GBP"}}
    for bad in ({"amount": "1.00", "currency": "USD"}, {"amount": 1, "currency": "GBP"},
                {"amount": f"{total}1", "currency": "GBP"}, {"amount": "NaN", "currency": "GBP"}, None):
        assert refusal(decide, emu, "returns", row["return_id"], "approve",
                       {**offer, "partial_refund": bad}, key=f"bad-{bad}").platform_code == 36009004
    assert emu.decisions == []
    decide(emu, "returns", row["return_id"], "approve", offer)
    stored = emu.returns[-1]
    assert stored["return_status"] == "AWAITING_BUYER_RESPONSE"
    assert stored["seller_proposed_return_type"] == "PARTIAL_REFUND" and stored["partial_refund"]["amount"] == "1.00"
    found = client(emu).call("POST", RETURNS, body={"seller_proposed_return_type": ["PARTIAL_REFUND"]})
    assert [r["return_id"] for r in found["return_orders"]] == [row["return_id"]]


def test_a_decision_is_idempotent_per_key(emu, clock):
    row, other = emu.add_return(return_type="REFUND"), emu.add_return(return_type="REFUND")
    body = {"decision": "APPROVE_REFUND"}
    first = decide(emu, "returns", row["return_id"], "approve", body, key="k-42")
    updated = emu.returns[0]["update_time"]
    assert updated == T0 + 1  # created in the same second: update_time still moves forward
    clock.now = T0 + 30
    again = decide(emu, "returns", row["return_id"], "approve", body, key="k-42")
    assert again == first and len(emu.decisions) == 1 and emu.returns[0]["update_time"] == updated
    for other_id, other_body in ((other["return_id"], body), (row["return_id"], {"decision": "DIRECT_REFUND"})):
        assert refusal(decide, emu, "returns", other_id, "approve", other_body,
                       key="k-42").platform_code == 36009004
    for key in (None, "", "k" * 256):
        missing = refusal(decide, emu, "returns", other["return_id"], "approve", body, key=key)
        assert (missing.platform_code, missing.platform_message) == (36009004, "Invalid param: idempotency_key")
    assert decide(emu, "returns", other["return_id"], "approve", body, key="k" * 255) == {}
    wrong_state = refusal(decide, emu, "returns", row["return_id"], "reject",
                          {"decision": "REJECT_REFUND", "reject_reason": REASON}, key="k-43")
    assert wrong_state.platform_code == BUSINESS_REFUSAL and "RETURN_OR_REFUND_REQUEST_SUCCESS" in (
        wrong_state.platform_message)
    assert len(emu.decisions) == 2


def test_concurrent_retries_of_one_decision_take_effect_once(emu):
    rows = [emu.add_return(return_type="REFUND") for _ in range(4)]
    answers, errors = [], []

    def approve(row, key):
        try:
            answers.append(decide(emu, "returns", row["return_id"], "approve", {"decision": "APPROVE_REFUND"},
                                  key=key))
        except TikTokError as exc:
            errors.append(exc.platform_code)

    threads = [threading.Thread(target=approve, args=(row, f"same-{n}")) for n, row in enumerate(rows)
               for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == [] and answers == [{}] * 20
    assert sorted(d["id"] for d in emu.decisions) == sorted(r["return_id"] for r in rows)


def test_malformed_or_refused_decisions(emu):
    row = emu.add_return(return_type="REFUND")
    checks = [
        ("approve", {"decision": "REJECT_REFUND"}, 36009004),  # a reject decision on approve
        ("approve", {}, 36009004),
        ("reject", {"decision": "REJECT_REFUND"}, 36009004),  # no reason
        ("reject", {"decision": "REJECT_REFUND", "reject_reason": "made_up"}, BUSINESS_REFUSAL),
        ("reject", {"decision": "REJECT_REFUND", "reject_reason": REASON, "images": ["x"]}, 36009004),
        ("approve", {"decision": "APPROVE_RETURN"}, BUSINESS_REFUSAL),  # a REFUND has no return
    ]
    for n, (action, body, code) in enumerate(checks):
        assert refusal(decide, emu, "returns", row["return_id"], action, body, key=f"m{n}").platform_code == code
    unknown = refusal(decide, emu, "returns", "404", "approve", {"decision": "APPROVE_REFUND"})
    assert unknown.platform_message == "Invalid param: return_id"
    elsewhere = emu.add_return(emu.add_shop("MY")["id"], return_type="REFUND")
    assert refusal(decide, emu, "returns", elsewhere["return_id"], "approve",
                   {"decision": "APPROVE_REFUND"}).platform_code == 36009004
    assert emu.decisions == [] and emu.returns[0]["return_status"] == "RETURN_OR_REFUND_REQUEST_PENDING"


def test_cancellation_decisions(emu):
    approved, rejected = emu.add_cancellation(), emu.add_cancellation()
    assert decide(emu, "cancellations", approved["cancel_id"], "approve", None, key="c1") == {}
    assert emu.cancellations[0]["cancel_status"] == "CANCELLATION_REQUEST_SUCCESS"
    assert emu.cancellations[0]["seller_next_action_response"] == []
    assert decide(emu, "cancellations", approved["cancel_id"], "approve", None, key="c1") == {}  # replay
    assert refusal(decide, emu, "cancellations", approved["cancel_id"], "approve", {},
                   key="c2").platform_code == BUSINESS_REFUSAL  # no longer pending
    reason = CANCEL_REJECT_REASONS[1]["name"]
    assert refusal(decide, emu, "cancellations", rejected["cancel_id"], "reject",
                   {"reject_reason": REASON}, key="c3").platform_code == BUSINESS_REFUSAL  # a return's reason
    decide(emu, "cancellations", rejected["cancel_id"], "reject",
           {"reject_reason": reason, "comment": "Already shipped", "images": []}, key="c4")
    assert emu.cancellations[1]["cancel_status"] == "CANCELLATION_REQUEST_CANCEL"
    assert [(d["kind"], d["action"], d["status_after"]) for d in emu.decisions] == [
        ("cancellation", "APPROVE_REQUEST_CANCEL", "CANCELLATION_REQUEST_SUCCESS"),
        ("cancellation", "REJECT_REQUEST_CANCEL", "CANCELLATION_REQUEST_CANCEL")]
    unknown = refusal(decide, emu, "cancellations", "404", "approve", None, key="c5")
    assert unknown.platform_message == "Invalid param: cancel_id"
    assert refusal(decide, emu, "returns", rejected["cancel_id"], "approve", {"decision": "APPROVE_REFUND"},
                   key="c6").platform_message == "Invalid param: return_id"


def test_set_status_validates_and_moves_time_forward(emu, clock):
    row = emu.add_return(return_type="RETURN_AND_REFUND")
    with pytest.raises(ValueError):
        emu.set_status(row["return_id"], "RETURN_OR_REFUND_REQUEST_REJECTED")
    with pytest.raises(KeyError):
        emu.set_status("404", "AWAITING_BUYER_SHIP")
    clock.now = T0 + 100
    shipped = emu.set_status(row["return_id"], "BUYER_SHIPPED_ITEM")
    assert shipped["update_time"] == T0 + 100 and shipped["return_tracking_number"][-2:] == "GB"
    assert shipped["seller_next_action_response"] == [{"action": "SELLER_RESPOND_RECEIVE_PACKAGE",
                                                       "deadline": T0 + 100 + 2 * 86_400}]


# --- faults ---------------------------------------------------------------------------------------------------
def test_faults_fire_only_on_their_path_in_order(emu):
    emu.faults = [Fault(36009003, 500, "Internal error", path="/authorization/"), RATE_LIMIT,
                  Fault(105005, 200, "Access denied", path="/authorization/")]
    c = client(emu)
    assert refusal(c.call, "POST", RETURNS, body={}).platform_code == 36009002  # the first matching one
    assert c.call("POST", RETURNS, body={})["total_count"] == 0
    assert refusal(c.call, "GET", SHOPS).platform_code == 36009003
    assert refusal(c.call, "GET", SHOPS).platform_code == 105005
    assert c.call("GET", SHOPS)["shops"] and emu.faults == []


def test_slow_answers_are_slow_and_then_normal(emu):
    c = client(emu)
    emu.faults = [slow(0.3, path=SHOPS)]
    started = time.monotonic()
    assert c.call("POST", RETURNS, body={})["total_count"] == 0
    assert time.monotonic() - started < 0.3 and emu.faults  # not this path
    started = time.monotonic()
    assert c.call("GET", SHOPS)["shops"]
    assert time.monotonic() - started >= 0.3 and emu.faults == []
    emu.faults = [Fault(36009007, 200, "Request timeout", delay=0.3)]
    started = time.monotonic()
    assert refusal(c.call, "GET", SHOPS).platform_code == 36009007
    assert time.monotonic() - started >= 0.3
    emu.faults = [slow(1.0)]
    assert refusal(client(emu, timeout=0.3).call, "GET", SHOPS).code == "ERR_TTS_004"  # the client gives up


# --- webhooks ---------------------------------------------------------------------------------------------------
class Receiver:
    """A tiny webhook endpoint that keeps the raw bytes and headers of what it receives."""

    def __init__(self, status: int = 200):
        self.status, self.received = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                answer = b'{"ok":true}' if receiver.status < 400 else b'{"error":"bad signature"}'
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/tiktok"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_the_webhook_signature_is_the_platforms(emu):
    body = emu.webhook_body(12, emu.shops[0]["id"], {"return_id": "1"}, notification_id="n-1")
    expected = hmac.new(emu.app_secret.encode(), emu.app_key.encode() + body, hashlib.sha256).hexdigest()
    assert emu.webhook_signature(body) == expected and expected == expected.lower()
    assert verify_webhook(emu.app_key, emu.app_secret, body, expected)  # the product's check agrees
    payload = json.loads(body)
    assert payload == {"type": 12, "tts_notification_id": "n-1", "shop_id": emu.shops[0]["id"], "timestamp": T0,
                       "data": {"return_id": "1"}}


def test_emit_webhook_reaches_a_receiver_with_the_raw_body(emu, receiver):
    status, answer = emu.emit_webhook(receiver.url, 11, emu.shops[0]["id"], {"cancel_id": "7", "note": "ünïcode"})
    assert (status, answer) == (200, b'{"ok":true}')
    got = receiver.received[0]
    sent = emu.webhooks_sent[0]
    assert got["body"] == sent["body"] and got["headers"]["Authorization"] == emu.webhook_signature(got["body"])
    assert got["headers"]["Content-Type"] == "application/json" and got["path"] == "/webhooks/tiktok"
    assert sent["status"] == 200 and json.loads(got["body"])["tts_notification_id"].isdigit()
    receiver.status = 401
    status, answer = emu.emit_webhook(receiver.url, 12, emu.shops[0]["id"], {}, signature="forged")
    assert (status, answer) == (401, b'{"error":"bad signature"}')
    assert receiver.received[1]["headers"]["Authorization"] == "forged"


def test_status_changes_and_decisions_post_webhooks(emu, receiver, clock):
    emu.webhook_url = receiver.url
    row, cancel = emu.add_return(return_type="RETURN_AND_REFUND"), emu.add_cancellation()
    clock.now = T0 + 10
    emu.set_status(row["return_id"], "AWAITING_BUYER_SHIP")
    event = json.loads(receiver.received[0]["body"])
    assert event["type"] == 12 and event["shop_id"] == emu.shops[0]["id"]
    assert event["data"] == {"order_id": row["order_id"], "return_id": row["return_id"], "return_role": "BUYER",
                             "return_type": "RETURN_AND_REFUND", "return_status": "AWAITING_BUYER_SHIP",
                             "create_time": T0, "update_time": T0 + 10}
    decide(emu, "cancellations", cancel["cancel_id"], "approve", None)  # posted from a background thread
    deadline = time.monotonic() + 5
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    event = json.loads(receiver.received[1]["body"])
    assert event["type"] == 11 and event["data"] == {
        "order_id": cancel["order_id"], "cancel_id": cancel["cancel_id"], "cancellations_role": "BUYER",
        "cancel_status": "CANCELLATION_REQUEST_SUCCESS", "update_time": T0 + 10}
    assert all(verify_webhook(emu.app_key, emu.app_secret, r["body"], r["headers"]["Authorization"])
               for r in receiver.received)


def test_the_demo_seed_has_several_shops_and_a_mix_of_states(clock):
    emu = TikTokEmulator(clock=clock)
    emu.seed_demo(shops=3, returns=40)
    assert [s["region"] for s in emu.shops] == ["GB", "MY", "TH"]
    assert {s["seller_type"] for s in emu.shops} == {"CROSS_BORDER", "LOCAL"}
    assert len(emu.returns) == 40 and len(emu.cancellations) == 10
    assert len({r["return_status"] for r in emu.returns}) >= 5 and len({r["shop_id"] for r in emu.returns}) == 3
    assert all(r["create_time"] <= r["update_time"] <= T0 for r in emu.returns + emu.cancellations)


def test_the_demo_runs_from_the_command_line():
    demo = subprocess.Popen([sys.executable, "-m", "tests.emulators.tiktok", "--port", "0", "--shops", "2",
                             "--returns", "12"], cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
                            text=True)
    try:
        lines = [demo.stdout.readline() for _ in range(8)]
        while lines[-1] and not lines[-1].startswith("Ctrl-C"):  # everything printed: the demo is in its wait loop now
            lines.append(demo.stdout.readline())
        url = lines[0].split()[-1]
        code = next(line.split()[2] for line in lines if line.strip().startswith("auth code"))
        params = {"app_key": "emu-app-key", "app_secret": "emu-app-secret", "auth_code": code,
                  "grant_type": "authorized_code"}
        with urllib.request.urlopen(f"{url}/api/v2/token/get?{urlencode(params)}", timeout=5) as response:
            token = json.loads(response.read())["data"]["access_token"]
        demo_client = Client(base_url=url, app_key="emu-app-key", app_secret="emu-app-secret", access_token=token,
                             attempts=1)
        shops = demo_client.call("GET", SHOPS)["shops"]
        assert [s["region"] for s in shops] == ["GB", "MY"]
        demo_client.shop_cipher = shops[1]["cipher"]
        assert demo_client.call("POST", RETURNS, query={"page_size": 50}, body={})["total_count"] == 6
    finally:
        # SIGTERM, not SIGINT: a suite started in the background by a shell without job control ignores SIGINT,
        # and so would the demo it starts (this test then waited in vain).
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0  # generous: a machine running two suites side by side is slow to exit
        assert demo.stdout.read().strip() == "stopped"


def test_images_are_uploaded_as_multipart_unsigned_over_the_body_and_only_their_uris_may_be_sent(emu):
    import io

    from PIL import Image

    from aftersales.tiktok.client import Client

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    client = Client(base_url=emu.url, app_key=emu.app_key, app_secret=emu.app_secret, access_token="token-1",
                    shop_cipher=emu.shop_cipher, sleep=lambda _s: None)
    answer = client.call("POST", "/product/202309/images/upload", body={"use_case": "ATTRIBUTE_IMAGE"},
                         files={"data": ("a.png", buf.getvalue(), "image/png")})
    assert answer["uri"] in emu.uploaded_images
    not_an_image = refusal(client.call, "POST", "/product/202309/images/upload", body={},
                           files={"data": ("a.txt", b"hello", "text/plain")})
    assert not_an_image.platform_code == 36009004
    row = emu.add_return(return_type="REFUND")
    bad = {"decision": "REJECT_REFUND", "reject_reason": REASON,
           "images": [{"image_id": "tos-maliva-i-o3syd03w52-us/never-uploaded", "mime_type": "image/png"}]}
    assert refusal(decide, emu, "returns", row["return_id"], "reject", bad).platform_code == 36009004
    good = {**bad, "images": [{"image_id": answer["uri"], "mime_type": "image/png", "width": 8, "height": 8}]}
    assert decide(emu, "returns", row["return_id"], "reject", good, key="key-2") == {}
