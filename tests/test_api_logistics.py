"""/api/v1/carriers/, /shipments/, /return-addresses/, /dropoffs/nearest/ over HTTP: scoped 404s with nothing
written, coded 403s and 400s, constant query counts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aftersales import services
from logistics import addresses
from logistics.models import Carrier, DropOffPoint, ReturnAddress, ReturnShipment, TrackingEvent, TrackingNumberChange
from stores.models import Market
from stores.services import actor_for_user
from tests.conftest import platform_return

SHIPMENTS = "/api/v1/shipments/"
ADDRESSES = "/api/v1/return-addresses/"
NEAREST = "/api/v1/dropoffs/nearest/"
# make_tenant's stores follow the markets in code order: AE, CA, ID.
PHONES = {"AE": "050 123 4567", "CA": "+1 416 555 0123", "ID": "0812 3456 7890"}
VALID = {"warehouse": "Main", "contact_name": "Li Wei", "line1": "1 Harbour Road", "city": "Metro"}


def code(response) -> str:
    return response.json()["error"]["code"]


def shipment(tenant, store, number="RT1", status="registered", **fields) -> ReturnShipment:
    ticket, _ = services.intake(store, platform_return(return_type="RETURN_AND_REFUND"))
    return ReturnShipment.objects.create(agency=tenant.agency, ticket=ticket, carrier=Carrier.objects.get(code="other"),
                                         tracking_number=number, format_check="unverified", status=status,
                                         registered_at=timezone.now(), **fields)


def address(tenant, store, **fields) -> ReturnAddress:
    return addresses.create_return_address(actor_for_user(tenant.owner), store.pk,
                                           phone=PHONES[store.market.code], **{**VALID, **fields})


# --- carriers ------------------------------------------------------------------------------------------
def test_carriers_by_market(tenants, api):
    a, _b = tenants
    client = api(a.viewer)
    body = client.get("/api/v1/carriers/", {"market": "us", "page_size": 200}).json()
    codes = [c["code"] for c in body["results"]]
    assert "ups" in codes and codes == sorted(codes)
    assert all("US" in c["markets"] for c in body["results"])
    ups = next(c for c in body["results"] if c["code"] == "ups")
    assert ups["format_check"] in {"package", "s10", "pattern", "none"} and ups["format"]
    assert set(ups) == {"code", "name", "markets", "format_check", "pattern", "format", "strip_prefixes"}
    every = client.get("/api/v1/carriers/", {"page_size": 200}).json()["results"]
    assert len(every) == Carrier.objects.filter(is_active=True).count()


def test_carriers_unknown_market_is_coded(tenants, api):
    a, _b = tenants
    response = api(a.owner).get("/api/v1/carriers/", {"market": "ZZ"})
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert "market" in response.json()["error"]["fields"]


def test_carriers_query_count_is_constant(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    client.get("/api/v1/carriers/")
    counts = []
    for size in (1, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/v1/carriers/", {"page_size": size, "market": "US"}).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]


# --- shipments -----------------------------------------------------------------------------------------
def test_shipments_are_scoped_through_the_tickets_store(tenants, api):
    a, b = tenants
    mine = [shipment(a, store, number=f"RT{i}") for i, store in enumerate(a.stores)]
    shipment(b, b.stores[0], number="FOREIGN1")
    ids = {r["id"] for r in api(a.owner).get(SHIPMENTS).json()["results"]}
    assert ids == {str(s.public_id) for s in mine}
    ids = {r["id"] for r in api(a.agent).get(SHIPMENTS).json()["results"]}
    assert ids == {str(s.public_id) for s in mine[:2]}
    assert api(a.outsider).get(SHIPMENTS).json()["results"] == []


def test_shipment_filters_and_row_shape(tenants, api):
    a, _b = tenants
    first = shipment(a, a.stores[0], number="RT100", status="in_transit")
    second = shipment(a, a.stores[1], number="RT200")
    client = api(a.owner)
    rows = client.get(SHIPMENTS, {"ticket": str(first.ticket.public_id)}).json()["results"]
    assert [r["id"] for r in rows] == [str(first.public_id)]
    row = rows[0]
    assert row["ticket"]["id"] == str(first.ticket.public_id) and row["ticket"]["type"] == "return_and_refund"
    assert row["store"]["id"] == str(a.stores[0].public_id)
    assert row["carrier"] == {"code": "other", "name": Carrier.objects.get(code="other").name}
    assert row["registered_at"].endswith("+00:00")
    rows = client.get(SHIPMENTS, {"store": str(a.stores[1].public_id)}).json()["results"]
    assert [r["id"] for r in rows] == [str(second.public_id)]
    rows = client.get(SHIPMENTS, {"status": "in_transit,delivered"}).json()["results"]
    assert [r["id"] for r in rows] == [str(first.public_id)]
    response = client.get(SHIPMENTS, {"status": "lost"})
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"


def test_shipment_detail_with_events_oldest_first(tenants, api):
    a, _b = tenants
    parcel = shipment(a, a.stores[0])
    now = timezone.now()
    late = TrackingEvent.objects.create(shipment=parcel, source="aftership", occurred_at=now, status="in_transit",
                                        message="Departed")
    early = TrackingEvent.objects.create(shipment=parcel, source="aftership", occurred_at=now - dt.timedelta(hours=5),
                                         status="info_received", message="Label created", location="Dubai")
    TrackingNumberChange.objects.create(shipment=parcel, tracking_number="OLD1", replaced_at=now)
    body = api(a.agent).get(f"{SHIPMENTS}{parcel.public_id}/").json()
    assert [e["message"] for e in body["events"]] == [early.message, late.message]
    assert body["events"][0]["location"] == "Dubai" and body["events"][0]["occurred_at"].endswith("+00:00")
    assert body["number_history"][0]["tracking_number"] == "OLD1"
    assert body["tracking_number"] == "RT1"


def test_shipment_detail_of_another_agency_or_ungranted_store_is_404(tenants, api):
    a, b = tenants
    foreign = shipment(b, b.stores[0])
    ungranted = shipment(a, a.stores[2])
    for client, shipment_id in [(api(a.owner), foreign.public_id), (api(a.agent), ungranted.public_id),
                                (api(a.owner), "00000000-0000-0000-0000-000000000000")]:
        response = client.get(f"{SHIPMENTS}{shipment_id}/")
        assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"


def test_shipment_queries_are_constant(tenants, api):
    a, _b = tenants
    parcels = [shipment(a, a.stores[i % 2], number=f"RT{i}") for i in range(12)]
    for parcel in parcels[:3]:
        for h in range(4):
            TrackingEvent.objects.create(shipment=parcel, source="manual", status="in_transit",
                                         occurred_at=timezone.now() - dt.timedelta(hours=h))
    client = api(a.agent)
    client.get(SHIPMENTS)
    counts = []
    for size in (1, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(SHIPMENTS, {"page_size": size, "status": "registered"}).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(f"{SHIPMENTS}{parcels[0].public_id}/").status_code == 200
    assert len(ctx.captured_queries) <= 8, [q["sql"] for q in ctx.captured_queries]


# --- return addresses ------------------------------------------------------------------------------------
def test_create_list_update_default_delete(tenants, api):
    a, _b = tenants
    store = a.stores[0]  # AE
    client = api(a.agent)
    response = client.post(ADDRESSES, {**VALID, "store": str(store.public_id), "phone": "050 123 4567"},
                           format="json")
    assert response.status_code == 201, response.content
    first = response.json()
    assert first["phone"] == "+971501234567" and first["is_default"] is True and first["market"] == "AE"
    response = client.post(ADDRESSES, {**VALID, "warehouse": "Second", "store": str(store.public_id),
                                       "phone": "+971 50 123 4568"}, format="json")
    second = response.json()
    assert second["is_default"] is False
    listed = client.get(ADDRESSES, {"store": str(store.public_id)}).json()["results"]
    assert {r["id"] for r in listed} == {first["id"], second["id"]}
    response = client.patch(f"{ADDRESSES}{second['id']}/", {"city": " Dubai "}, format="json")
    assert response.status_code == 200 and response.json()["city"] == "Dubai"
    response = client.post(f"{ADDRESSES}{second['id']}/set-default/")
    assert response.status_code == 200 and response.json()["is_default"] is True
    assert client.get(f"{ADDRESSES}{first['id']}/").json()["is_default"] is False
    assert client.delete(f"{ADDRESSES}{second['id']}/").status_code == 204
    assert client.get(f"{ADDRESSES}{first['id']}/").json()["is_default"] is True  # promoted


def test_address_validation_is_coded(tenants, api):
    a, _b = tenants
    store = a.stores[0]
    client = api(a.owner)
    response = client.post(ADDRESSES, {**VALID, "store": str(store.public_id), "phone": "+62 812 3456 7890"},
                           format="json")
    assert response.status_code == 400 and code(response) == "ERR_LOG_501"
    assert "phone" in response.json()["error"]["fields"]
    response = client.post(ADDRESSES, {"store": str(store.public_id), "phone": "050 123 4567"}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert {"warehouse", "contact_name", "line1", "city"} <= set(response.json()["error"]["fields"])
    response = client.post(ADDRESSES, {**VALID, "store": str(store.public_id), "phone": "050 123 4567",
                                       "market": "US"}, format="json")
    assert response.status_code == 400 and "market" in response.json()["error"]["fields"]
    response = client.post(ADDRESSES, {**VALID, "store": "nope"}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert not ReturnAddress.objects.for_agency(a.agency).exists()


def test_address_writes_need_manage_logistics(tenants, api):
    a, _b = tenants
    existing = address(a, a.stores[0])
    client = api(a.viewer)  # sees every store, may not manage logistics
    assert client.get(f"{ADDRESSES}{existing.public_id}/").status_code == 200
    response = client.post(ADDRESSES, {**VALID, "store": str(a.stores[0].public_id), "phone": "050 123 4567"},
                           format="json")
    assert response.status_code == 403 and code(response) == "ERR_PERM_003"
    for method, url in [("patch", f"{ADDRESSES}{existing.public_id}/"), ("delete", f"{ADDRESSES}{existing.public_id}/"),
                        ("post", f"{ADDRESSES}{existing.public_id}/set-default/")]:
        response = getattr(client, method)(url, {"city": "Elsewhere"}, format="json")
        assert response.status_code == 403 and code(response) == "ERR_PERM_003", (method, url)
    existing.refresh_from_db()
    assert existing.city == "Metro"
    assert ReturnAddress.objects.for_agency(a.agency).count() == 1


def test_foreign_and_ungranted_addresses_are_404_and_nothing_is_written(tenants, api):
    a, b = tenants
    foreign = address(b, b.stores[0])
    ungranted = address(a, a.stores[2])
    for client, target in [(api(a.owner), foreign), (api(a.agent), ungranted), (api(a.outsider), ungranted)]:
        url = f"{ADDRESSES}{target.public_id}/"
        assert client.get(url).status_code == 404
        response = client.patch(url, {"city": "Hacked"}, format="json")
        assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
        assert client.delete(url).status_code == 404
        assert client.post(f"{url}set-default/").status_code == 404
    for client, store in [(api(a.owner), b.stores[0]), (api(a.agent), a.stores[2])]:
        response = client.post(ADDRESSES, {**VALID, "store": str(store.public_id),
                                           "phone": PHONES.get(store.market.code, "050 123 4567")}, format="json")
        assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
    for target in (foreign, ungranted):
        target.refresh_from_db()
        assert target.city == "Metro"
    assert ReturnAddress.objects.for_agency(b.agency).count() == 1
    assert ReturnAddress.objects.for_agency(a.agency).count() == 1
    ids = {r["id"] for r in api(a.agent).get(ADDRESSES).json()["results"]}
    assert ids == set()


def test_address_list_query_count_is_constant(tenants, api):
    a, _b = tenants
    for i in range(6):
        address(a, a.stores[i % 2], warehouse=f"W{i}")
    client = api(a.agent)
    client.get(ADDRESSES)
    counts = []
    for size in (1, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(ADDRESSES, {"page_size": size}).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]


# --- drop-off points -------------------------------------------------------------------------------------
@pytest.fixture
def points(db):
    market = Market.objects.get(code="ID")
    DropOffPoint.objects.bulk_create([
        DropOffPoint(market=market, partner="JNE", code="near", name="Near", latitude=-6.2000, longitude=106.8166,
                     pickup_lead_hours=6),
        DropOffPoint(market=market, partner="JNE", code="mid", name="Mid", latitude=-6.3000, longitude=106.9000,
                     pickup_lead_hours=12),
        DropOffPoint(market=market, partner="JNE", code="far", name="Far", latitude=-7.2500, longitude=112.7500),
    ])


def test_nearest_dropoffs(tenants, api, points):
    a, _b = tenants
    body = api(a.viewer).get(NEAREST, {"lat": -6.2, "lng": 106.8166, "market": "id", "limit": 2}).json()
    assert [p["code"] for p in body["results"]] == ["near", "mid"]
    assert body["results"][0]["distance_km"] == 0 and body["results"][0]["pickup_lead_hours"] == 6
    assert body["results"][1]["distance_km"] > 0
    assert api(a.viewer).get(NEAREST, {"lat": 0, "lng": 0, "market": "ID", "max_km": 10}).json()["results"] == []


@pytest.mark.parametrize(("query", "fields"), [
    ({"lat": 91, "lng": 0, "market": "ID"}, {"lat"}),
    ({"lat": 0, "lng": -180.5, "market": "ID"}, {"lng"}),
    ({"lat": "north", "lng": "east", "market": "ID"}, {"lat", "lng"}),
    ({"market": "ID"}, {"lat", "lng"}),
    ({"lat": 0, "lng": 0, "market": "ID", "limit": 0}, {"limit"}),
    ({"lat": 0, "lng": 0, "market": "ZZ"}, {"market"}),
    ({"lat": 0, "lng": 0}, {"market"}),
])
def test_nearest_bad_parameters_are_coded(tenants, api, query, fields):
    a, _b = tenants
    response = api(a.owner).get(NEAREST, query)
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    assert set(response.json()["error"]["fields"]) == fields


def test_unauthenticated_is_401(tenants, api):
    for url in ("/api/v1/carriers/", SHIPMENTS, ADDRESSES, NEAREST):
        response = api().get(url)
        assert response.status_code == 401 and code(response) == "ERR_AUTH_001"
