"""GET /api/v1/stores/, authentication, the error envelope, the catalogue and the schema."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from stores.models import ApiToken


def test_unauthenticated_gets_coded_401(tenants, api):
    response = api().get("/api/v1/stores/")
    assert response.status_code == 401
    body = response.json()["error"]
    assert body["code"] == "ERR_AUTH_001"
    assert body["hint"] and body["message"]
    assert body["request_id"] == response["X-Request-ID"]


def test_bad_token_gets_coded_401(tenants, api):
    client = api()
    client.credentials(HTTP_AUTHORIZATION="Token ast_not-a-real-key")
    response = client.get("/api/v1/stores/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "ERR_AUTH_002"


def test_revoked_token_is_refused(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    ApiToken.objects.for_agency(a.agency).filter(user=a.owner).update(revoked_at="2026-01-01T00:00:00Z")
    assert client.get("/api/v1/stores/").json()["error"]["code"] == "ERR_AUTH_002"


def test_tokens_are_stored_hashed(tenants):
    from stores import services

    a, _b = tenants
    token, key = services.create_api_token(user=a.owner)
    stored = ApiToken.objects.for_agency(a.agency).get(pk=token.pk)
    assert key not in (stored.key_hash, stored.prefix)
    assert stored.key_hash == services.hash_token(key)


@pytest.mark.parametrize(("who", "count"), [("owner", 3), ("agent", 2), ("viewer", 3), ("outsider", 0)])
def test_store_list_is_scoped(tenants, api, who, count):
    a, b = tenants
    results = api(getattr(a, who)).get("/api/v1/stores/").json()["results"]
    assert len(results) == count
    assert not {r["id"] for r in results} & {str(s.public_id) for s in b.stores}


def test_store_shape(tenants, api):
    a, _b = tenants
    row = api(a.agent).get("/api/v1/stores/").json()["results"][0]
    assert set(row) == {"id", "name", "shop_id", "market", "currency", "time_zone", "service_score", "eligibility"}
    assert re.fullmatch(r"[0-9a-f-]{36}", row["id"])
    assert row["service_score"] == "5.00"
    assert row["eligibility"] == {"state": "eligible", "missing": []}


def test_session_auth_works_for_the_portal(tenants, api):
    a, _b = tenants
    assert len(api(a.owner, token=False).get("/api/v1/stores/").json()["results"]) == 3


def test_market_filter(tenants, api):
    a, _b = tenants
    code = a.stores[1].market.code
    results = api(a.owner).get(f"/api/v1/stores/?market={code.lower()}").json()["results"]
    assert [r["market"]["code"] for r in results] == [code]


def test_cursor_pagination_walks_every_store(tenants, api):
    a, _b = tenants
    client, seen, url = api(a.owner), [], "/api/v1/stores/?page_size=1"
    while url:
        page = client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(str(s.public_id) for s in a.stores)


def test_page_size_capped(tenants, api):
    a, _b = tenants
    assert api(a.owner).get("/api/v1/stores/?page_size=5000").status_code == 200


@pytest.mark.parametrize("page_size", [1, 100])
def test_query_count_is_constant(tenants, api, page_size):
    from tests.factories import StoreFactory

    a, _b = tenants
    for i in range(5):
        StoreFactory(agency=a.agency, name=f"extra {i}")
    client = api(a.viewer)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/api/v1/stores/?page_size={page_size}")
    assert response.status_code == 200
    # token lookup, membership, page of stores (+ markets joined); a throttle reads no table.
    assert len(ctx.captured_queries) <= 4, [q["sql"] for q in ctx.captured_queries]


def test_user_without_agency_gets_coded_403(db, api):
    from tests.factories import UserFactory

    response = api(UserFactory(username="lonely"), token=False).get("/api/v1/stores/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ERR_AUTH_004"


def test_unknown_api_path_is_enveloped_404(tenants, api):
    a, _b = tenants
    response = api(a.owner).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ERR_NOT_FOUND"


def test_method_not_allowed_is_enveloped(tenants, api):
    a, _b = tenants
    response = api(a.owner).post("/api/v1/stores/", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "ERR_METHOD_NOT_ALLOWED"


def test_error_code_catalogue(db, api):
    rows = api().get("/api/v1/error-codes/").json()
    by_code = {r["code"]: r for r in rows}
    assert {"ERR_VALIDATION", "ERR_INTERNAL", "ERR_PERM_001", "ERR_AUTH_001"} <= set(by_code)
    perm = by_code["ERR_PERM_001"]
    assert perm["http_status"] == 403
    assert "售后" in perm["message"]["zh-hans"] and "after-sales" in perm["message"]["en"]
    assert perm["hint"]["zh-hans"] != perm["hint"]["en"]


def test_localised_error_message(tenants, api):
    response = api().get("/api/v1/stores/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.json()["error"]["message"] == "需要登录认证。"


def test_schema_and_offline_docs(db, api):
    schema = api().get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/stores/" in schema.content
    docs = api().get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
    assert "/static/drf_spectacular_sidecar/" in html


def test_docs_errors_md_is_generated_from_the_catalogue():
    from pathlib import Path

    from stores.errors import catalogue_markdown

    docs = Path(__file__).resolve().parent.parent / "docs" / "ERRORS.md"
    assert docs.read_text() == catalogue_markdown(), "run ./dev manage error_codes_markdown > docs/ERRORS.md"


def test_csrf_failure_has_its_own_code(tenants):
    from rest_framework.test import APIClient

    a, _b = tenants
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(a.owner)
    response = client.post("/api/v1/stores/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ERR_AUTH_005"
