"""The signed TikTok Shop client against the local emulator, which checks every request as the platform does."""

from __future__ import annotations

import time

import pytest

from aftersales.tiktok.client import Client, TikTokError
from tests.emulators.tiktok import INTERNAL, NOT_JSON, RATE_LIMIT, Fault, TikTokEmulator

SEARCH = "/return_refund/202309/returns/search"


@pytest.fixture
def emulator():
    emu = TikTokEmulator().start()
    yield emu
    emu.stop()


def client(emu, **overrides) -> Client:
    fields = {"base_url": emu.url, "app_key": emu.app_key, "app_secret": emu.app_secret, "access_token": "token-1",
              "shop_cipher": emu.shop_cipher, "sleep": lambda _s: None}
    return Client(**{**fields, **overrides})


def a_return(n: int, updated: int) -> dict:
    return {"return_id": f"R{n:04d}", "order_id": f"O{n:04d}", "return_status": "RETURN_OR_REFUND_REQUEST_PENDING",
            "update_time": updated}


def test_a_search_is_signed_accepted_and_paged(emulator):
    emulator.returns = [a_return(n, 1_700_000_000 + n) for n in range(25)]
    c = client(emulator)
    first = c.call("POST", SEARCH, query={"page_size": 10, "sort_field": "update_time"},
                   body={"update_time_ge": 1_700_000_005})
    assert [r["return_id"] for r in first["return_orders"]] == [f"R{n:04d}" for n in range(5, 15)]
    assert first["total_count"] == 20 and first["next_page_token"] == "10"
    rest = c.call("POST", SEARCH, query={"page_size": 10, "page_token": first["next_page_token"]},
                  body={"update_time_ge": 1_700_000_005})
    assert len(rest["return_orders"]) == 10
    sent = emulator.seen[-1]
    assert sent["query"]["shop_cipher"] == emulator.shop_cipher and sent["token"] == "token-1"
    assert "access_token" not in sent["query"] and sent["body"] == b'{"update_time_ge":1700000005}'


def test_shop_cipher_is_never_sent_to_authorization(emulator):
    shops = client(emulator).call("GET", "/authorization/202309/shops")["shops"]
    assert shops[0]["cipher"] == emulator.shop_cipher and "shop_cipher" not in emulator.seen[-1]["query"]


@pytest.mark.parametrize(("overrides", "platform_code"), [
    ({"app_secret": "not-the-secret"}, 106001),  # forged or mis-signed
    ({"clock": lambda: time.time() - 600}, 36009004),  # a timestamp 10 minutes old
    ({"clock": lambda: time.time() + 120}, 36009004),  # from the future
    ({"access_token": "stolen"}, 36009004),
    ({"shop_cipher": ""}, 106013),
])
def test_the_platform_refusals_keep_their_code(emulator, overrides, platform_code):
    with pytest.raises(TikTokError) as refused:
        client(emulator, **overrides).call("POST", SEARCH, query={"page_size": 10}, body={})
    assert refused.value.code == "ERR_TTS_003" and refused.value.platform_code == platform_code
    assert len(emulator.seen) == 1  # a refusal is not retried


def test_rate_limits_and_internal_errors_are_retried_with_backoff(emulator):
    waits = []
    emulator.faults = [RATE_LIMIT, INTERNAL]
    data = client(emulator, sleep=waits.append).call("POST", SEARCH, query={"page_size": 10}, body={})
    assert data["total_count"] == 0 and len(emulator.seen) == 3
    assert len(waits) == 2 and all(0 <= w <= 0.5 * 2 ** i for i, w in enumerate(waits))


def test_retries_end_and_keep_the_last_code(emulator):
    emulator.faults = [RATE_LIMIT] * 4
    with pytest.raises(TikTokError) as failed:
        client(emulator).call("POST", SEARCH, query={"page_size": 10}, body={})
    assert failed.value.code == "ERR_TTS_002" and failed.value.platform_code == 36009002
    assert len(emulator.seen) == 4


def test_a_body_that_is_not_the_envelope_is_err_tts_004(emulator):
    emulator.faults = [NOT_JSON] * 4
    with pytest.raises(TikTokError) as failed:
        client(emulator).call("POST", SEARCH, query={"page_size": 10}, body={})
    assert failed.value.code == "ERR_TTS_004"


def test_an_expired_token_is_refreshed_once_and_the_call_repeated(emulator):
    emulator.expired_tokens, emulator.tokens = {"token-1"}, {"token-2"}
    refreshed = []

    def refresh() -> str:
        refreshed.append(True)
        return "token-2"

    data = client(emulator, on_token_expired=refresh).call("POST", SEARCH, query={"page_size": 10}, body={})
    assert data["total_count"] == 0 and refreshed == [True]
    assert [s["token"] for s in emulator.seen] == ["token-1", "token-2"]
    emulator.tokens = set()
    emulator.expired_tokens = {"token-2"}
    with pytest.raises(TikTokError) as still:  # refreshed once per call, not in a loop
        client(emulator, access_token="token-2", on_token_expired=lambda: "token-2").call(
            "POST", SEARCH, query={"page_size": 10}, body={})
    assert still.value.code == "ERR_TTS_001" and still.value.platform_code == 105002


def test_an_unreachable_platform_is_err_tts_004_after_retries():
    c = Client(base_url="http://127.0.0.1:9", app_key="k", app_secret="s", access_token="t", sleep=lambda _s: None,
               timeout=0.5)
    with pytest.raises(TikTokError) as failed:
        c.call("GET", "/authorization/202309/shops")
    assert failed.value.code == "ERR_TTS_004"
    assert "app_secret" not in repr(c) and "access_token" not in repr(c)  # secrets never printed


def test_other_codes_are_err_tts_003(emulator):
    emulator.faults = [Fault(105005, 200, "Access denied: scope not granted")]
    with pytest.raises(TikTokError) as denied:
        client(emulator).call("POST", SEARCH, query={"page_size": 10}, body={})
    assert denied.value.code == "ERR_TTS_003" and denied.value.platform_code == 105005
    assert "105005" in denied.value.fields["platform"][0]
