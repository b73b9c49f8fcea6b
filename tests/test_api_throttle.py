"""Throttling per API token: 429 with Retry-After and ERR_THROTTLED; tokens of one user count apart."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from stores import services
from stores.api.throttling import TokenRateThrottle

URL = "/api/v1/stores/"


@pytest.fixture
def rate(settings):
    cache.clear()
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "3/min"}}
    yield
    cache.clear()


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {services.create_api_token(user=user, name='t')[1]}")
    return client


def test_the_default_throttle_is_per_token():
    from rest_framework.settings import api_settings

    assert list(api_settings.DEFAULT_THROTTLE_CLASSES) == [TokenRateThrottle]


def test_over_the_rate_is_a_coded_429_with_retry_after(tenants, rate):
    a, _b = tenants
    client = token_client(a.agent)
    assert [client.get(URL).status_code for _ in range(3)] == [200, 200, 200]
    response = client.get(URL)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "ERR_THROTTLED" and error["hint"] and error["request_id"]
    assert 1 <= int(response["Retry-After"]) <= 60


def test_two_tokens_of_one_user_are_throttled_independently(tenants, rate):
    a, _b = tenants
    first, second = token_client(a.agent), token_client(a.agent)
    for _ in range(3):
        assert first.get(URL).status_code == 200
    assert first.get(URL).status_code == 429
    assert [second.get(URL).status_code for _ in range(3)] == [200, 200, 200]  # its own budget
    assert second.get(URL).status_code == 429
    assert token_client(a.owner).get(URL).status_code == 200  # and other users are untouched


def test_a_session_counts_per_user(tenants, rate):
    a, _b = tenants
    browser, tab = APIClient(), APIClient()
    browser.force_login(a.agent)
    tab.force_login(a.agent)
    assert [browser.get(URL).status_code for _ in range(2)] == [200, 200]
    assert tab.get(URL).status_code == 200
    response = tab.get(URL)  # the same user's fourth request, whichever session sent it
    assert response.status_code == 429 and "Retry-After" in response
    assert token_client(a.agent).get(URL).status_code == 200  # a token of the same user counts apart


def test_writes_are_throttled_too_before_anything_runs(tenants, rate):
    from aftersales import services as aftersales_services
    from aftersales.models import OperationLog
    from tests.conftest import platform_return

    a, _b = tenants
    ticket, _ = aftersales_services.intake(a.stores[0], platform_return())
    client = token_client(a.agent)
    for _ in range(3):
        client.get(URL)
    before = OperationLog.objects.filter(ticket_id=ticket.pk).count()
    response = client.post(f"/api/v1/aftersales/{ticket.public_id}/approve/", {}, format="json")
    assert response.status_code == 429 and response.json()["error"]["code"] == "ERR_THROTTLED"
    assert OperationLog.objects.filter(ticket_id=ticket.pk).count() == before


def test_the_rate_comes_from_settings(tenants, settings):
    cache.clear()
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "1/hour"}}
    a, _b = tenants
    client = token_client(a.agent)
    assert client.get(URL).status_code == 200
    response = client.get(URL)
    assert response.status_code == 429 and int(response["Retry-After"]) > 60
    cache.clear()
