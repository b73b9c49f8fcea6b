"""TikTok Shop request signing and webhook verification (reference §2.1, §2.4), checked against an
independent computation written from the reference's steps, one by one."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersales.tiktok import signing

SECRET, KEY = "s3cr3t-app-secret", "6abc123app"
PATH = "/return_refund/202309/returns/search"


def by_the_steps(secret: str, path: str, query: dict, body: bytes) -> str:
    """Reference §2.1, literally: 1 drop sign/access_token and sort; 2 concatenate key+value; 3 prepend the
    path; 4 append the body; 5 wrap in the secret; 6 hex HMAC-SHA256 keyed with the secret."""
    kept = sorted((k, v) for k, v in query.items() if k not in ("sign", "access_token"))
    s = "".join(f"{k}{','.join(v) if isinstance(v, list) else v}" for k, v in kept)
    s = path + s
    s = s.encode() + body
    wrapped = secret.encode() + s + secret.encode()
    return hmac.new(secret.encode(), wrapped, hashlib.sha256).hexdigest()


def test_a_search_call_is_signed_over_path_sorted_query_and_the_exact_body():
    body = json.dumps({"return_status": ["RETURN_OR_REFUND_REQUEST_PENDING"]}, separators=(",", ":")).encode()
    query = {"timestamp": 1732600000, "app_key": KEY, "shop_cipher": "ROW_abc", "page_size": 50,
             "sort_field": "update_time", "access_token": "never-signed", "sign": "ignored"}
    assert signing.string_to_sign(PATH, query, body) == (
        PATH.encode() + b"app_key" + KEY.encode() + b"page_size50shop_cipherROW_abc"
        b"sort_fieldupdate_timetimestamp1732600000" + body)
    result = signing.sign(SECRET, PATH, query, body)
    assert result == by_the_steps(SECRET, PATH, query, body)
    assert len(result) == 64 and result == result.lower()


def test_the_body_bytes_count_exactly_and_multipart_bodies_not_at_all():
    compact, spaced = b'{"a":1}', b'{"a": 1}'
    query = {"app_key": KEY, "timestamp": 1}
    assert signing.sign(SECRET, PATH, query, compact) != signing.sign(SECRET, PATH, query, spaced)
    assert signing.sign(SECRET, PATH, query, compact, multipart=True) == signing.sign(SECRET, PATH, query)


def test_list_values_are_comma_joined_and_the_path_must_be_bare():
    assert b"idsa,b,c" in signing.string_to_sign(PATH, {"ids": ["a", "b", "c"]})
    with pytest.raises(ValueError):
        signing.sign(SECRET, PATH + "?x=1", {})


@given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
                       st.text(min_size=0, max_size=20), max_size=8), st.binary(max_size=200))
def test_any_query_and_body_sign_as_the_steps_say(query, body):
    assert signing.sign(SECRET, PATH, query, body) == by_the_steps(SECRET, PATH, query, body)


def test_webhooks_verify_on_the_raw_bytes_in_constant_time():
    raw = b'{"type":12,"tts_notification_id":"7327","shop_id":"7494","timestamp":1664095733,"data":{}}'
    good = hmac.new(SECRET.encode(), KEY.encode() + raw, hashlib.sha256).hexdigest()
    assert signing.webhook_signature(KEY, SECRET, raw) == good
    assert signing.verify_webhook(KEY, SECRET, raw, good)
    assert signing.verify_webhook(KEY, SECRET, raw, good.upper())  # hex is hex
    assert not signing.verify_webhook(KEY, SECRET, raw + b" ", good)  # re-serialised bodies do not pass
    assert not signing.verify_webhook(KEY, SECRET, raw, None)
    assert not signing.verify_webhook(KEY, "other-secret", raw, good)
