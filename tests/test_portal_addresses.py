"""退货地址管理 and the drop-off finder in the portal: the addresses of the stores in view, add / edit / set default /
delete through ``logistics.addresses`` (phones normalised by the service), refusals with code, message, hint and
field errors next to the form with the values kept, one-time form keys, the role setting named where logistics may
not be managed, tenants kept apart, nearest drop-off points with distance and lead time, constant query counts."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from logistics import addresses, dropoffs
from logistics.models import DropOffPoint, ReturnAddress
from stores.models import Market

URL = "/addresses/"
ID_PHONE = "0812 3456 7890"  # the first tenant's third store is in ID (markets in code order: AE, CA, ID …)


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def page(client, url: str = URL, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.status_code
    return response.content.decode()


def form_html(text: str, form_id: str) -> str:
    start = text.rindex("<form", 0, text.index(f'id="{form_id}"'))
    return text[start:text.index("</form>", start)]


def key_of(text: str, form_id: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', form_html(text, form_id)).group(1)


def row_html(text: str, address: ReturnAddress) -> str:
    start = text.index(f'<tr id="address-{address.public_id}"')
    return text[start:text.index("</tr>", start)]


def row_key(text: str, address: ReturnAddress, action: str) -> str:
    row = row_html(text, address)
    form = re.search(rf'action="/addresses/act/{action}/".*?</form>', row, re.S).group(0)
    return re.search(r'name="idempotency_key" value="([^"]+)"', form).group(1)


def messages_of(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="message [^"]*">(.*?)</li>', text, re.S)]


def error_block(text: str, code: str) -> str:
    found = re.search(rf'<div class="[^"]*\baction-error"[^>]*data-code="{code}">', text)
    assert found, f"no error block with {code}"
    return html.unescape(text[found.start():text.index("</div>", found.start())])


def fields(store, **overrides) -> dict:
    data = {"store": str(store.public_id), "warehouse": "Cikarang DC", "contact_name": "Dewi", "phone": ID_PHONE,
            "line1": "Jl. Industri 5", "line2": "", "city": "Bekasi", "region": "Jawa Barat", "postcode": "17530"}
    return {**data, **overrides}


def create(client, data: dict, key: str | None = None):
    data = {**data, "idempotency_key": key or key_of(page(client), "form-create-address")}
    return client.post("/addresses/act/create/", data)


def address_of(store, **fields) -> ReturnAddress:
    values = {"warehouse": "Main", "contact_name": "Li", "phone": "+6281234567890", "line1": "Jl. Sudirman 1",
              "city": "Jakarta", **fields}
    return ReturnAddress.objects.for_agency(store.agency_id).create(agency_id=store.agency_id, store=store,
                                                                     market=store.market, **values)


def in_store(store) -> list[ReturnAddress]:
    return list(ReturnAddress.objects.for_agency(store.agency_id).filter(store=store).order_by("created_at", "id"))


# --- the list ----------------------------------------------------------------------------------------------
def test_requires_login(client, tenants):
    assert client.get(URL).status_code == 302
    assert client.get("/dropoffs/").status_code == 302
    assert client.post("/addresses/act/create/", {}).status_code == 302


def test_lists_the_addresses_of_the_stores_in_view_and_nothing_foreign(as_user, tenants_with_rows):
    a, b = tenants_with_rows
    [mine] = in_store(a.stores[2])
    [theirs] = in_store(b.stores[2])
    text = page(as_user(a.owner))
    row = row_html(text, mine)
    assert "+6281234567890" in row and "Default" in row and "Jl. Sudirman 1" in row
    assert f"/addresses/{mine.public_id}/edit/" in row
    assert f"/dropoffs/?market=ID&amp;address={mine.public_id}" in row
    assert str(theirs.public_id) not in text and b.stores[2].name not in text
    assert 'id="form-create-address"' in text


def test_the_store_switcher_narrows_the_list(as_user, tenants_with_rows):
    a, _b = tenants_with_rows
    client = as_user(a.owner)
    client.post("/switch-store/", {"current_store": str(a.stores[0].public_id), "next": URL})
    text = page(client)
    assert f'id="store-{a.stores[0].public_id}"' in text and f'id="store-{a.stores[2].public_id}"' not in text
    assert "No return address yet." in text


def test_without_manage_logistics_nothing_is_offered_and_the_role_setting_is_named(as_user, tenants_with_rows):
    a, _b = tenants_with_rows
    [mine] = in_store(a.stores[2])
    client = as_user(a.viewer)  # analyst: sees every store, manages none
    text = page(client)
    assert 'data-code="ERR_PERM_003"' in text
    assert "Team management → Role settings → Manage logistics" in html.unescape(text)
    assert 'id="form-create-address"' not in text and "/addresses/act/" not in text
    assert "+6281234567890" in row_html(text, mine)
    # A crafted POST is refused by the service with the same code, and nothing is written.
    response = client.post("/addresses/act/create/", {**fields(a.stores[2]),
                                                      "idempotency_key": "9a1c5c4e-1c1e-4f7e-9a55-9d3f7f6d2a10"})
    assert response.status_code == 403 and "ERR_PERM_003" in error_block(response.content.decode(), "ERR_PERM_003")
    assert len(in_store(a.stores[2])) == 1


def test_the_list_costs_the_same_queries_for_one_and_many_addresses(as_user, tenants):
    a, _b = tenants
    address_of(a.stores[0], is_default=True)
    client = as_user(a.owner)
    page(client)
    with CaptureQueriesContext(connection) as one:
        page(client)
    for store in a.stores:
        for i in range(5):
            address_of(store, warehouse=f"W{i}")
    with CaptureQueriesContext(connection) as many:
        text = page(client)
    assert text.count('<tr id="address-') == 16
    assert len(many.captured_queries) == len(one.captured_queries)


# --- add, set default, delete ------------------------------------------------------------------------------
def test_add_an_address_with_the_phone_normalised_by_the_service(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    response = create(client, fields(a.stores[2]))
    assert response.status_code == 302 and response["Location"] == URL
    text = page(client)
    [made] = in_store(a.stores[2])
    assert made.phone == "+6281234567890" and made.is_default  # the first one is the default
    assert any("+6281234567890" in m and "default" in m for m in messages_of(text))
    assert "+6281234567890" in row_html(text, made)


def test_a_refused_address_shows_the_code_and_field_and_keeps_the_values(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    response = create(client, fields(a.stores[2], phone="12345", is_default="on"))
    assert response.status_code == 400
    text = response.content.decode()
    block = error_block(text, "ERR_LOG_501")
    assert "The phone number is not valid for this market." in block and "Phone: Not a valid phone number" in block
    assert "How to fix it:" in block
    form = form_html(text, "form-create-address")
    assert 'value="12345"' in form and 'value="Cikarang DC"' in form and 'value="Jawa Barat"' in form
    assert f'<option value="{a.stores[2].public_id}" selected>' in form
    assert re.search(r'name="is_default" checked', form)
    assert in_store(a.stores[2]) == []


def test_a_double_submit_adds_once(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    key = key_of(page(client), "form-create-address")
    assert create(client, fields(a.stores[2]), key=key).status_code == 302
    assert create(client, fields(a.stores[2]), key=key).status_code == 302
    assert len(in_store(a.stores[2])) == 1
    assert any("sent twice" in m for m in messages_of(page(client)))


def test_set_default_and_delete_the_default_promotes_the_oldest(as_user, tenants):
    a, _b = tenants
    store = a.stores[2]
    first = address_of(store, warehouse="First", is_default=True)
    second = address_of(store, warehouse="Second")
    client = as_user(a.owner)
    text = page(client)
    assert "/addresses/act/set-default/" not in row_html(text, first)
    response = client.post("/addresses/act/set-default/", {"address": str(second.public_id),
                                                          "idempotency_key": row_key(text, second, "set-default")})
    assert response.status_code == 302
    assert [(x.warehouse, x.is_default) for x in in_store(store)] == [("First", False), ("Second", True)]
    text = page(client)
    assert any("“Second” is now the default" in m for m in messages_of(text))
    response = client.post("/addresses/act/delete/", {"address": str(second.public_id),
                                                     "idempotency_key": row_key(text, second, "delete")})
    assert response.status_code == 302
    assert [(x.warehouse, x.is_default) for x in in_store(store)] == [("First", True)]
    assert any("“First” is the default now." in m for m in messages_of(page(client)))


def test_foreign_and_unknown_ids_are_not_found_and_change_nothing(as_user, tenants_with_rows):
    a, b = tenants_with_rows
    [theirs] = in_store(b.stores[2])
    client = as_user(a.owner)
    for action in ("set-default", "delete"):
        for target in (str(theirs.public_id), "garbage"):
            response = client.post(f"/addresses/act/{action}/", {
                "address": target, "idempotency_key": key_of(page(client), "form-create-address")})
            assert response.status_code == 404
            text = response.content.decode()
            assert "ERR_NOT_FOUND" in error_block(text, "ERR_NOT_FOUND") and theirs.warehouse + "," not in text
    response = create(client, fields(b.stores[2]))
    assert response.status_code == 404 and b.stores[2].name not in response.content.decode()
    assert in_store(b.stores[2]) == [theirs]
    assert client.get(f"/addresses/{theirs.public_id}/edit/").status_code == 404
    response = client.post(f"/addresses/{theirs.public_id}/edit/", {"city": "X"})
    assert response.status_code == 404
    assert in_store(b.stores[2])[0].city == theirs.city
    assert client.post("/addresses/act/nope/", {}).status_code == 404


# --- edit ----------------------------------------------------------------------------------------------------
def test_edit_an_address(as_user, tenants):
    a, _b = tenants
    address = address_of(a.stores[2], is_default=True)
    client = as_user(a.owner)
    url = f"/addresses/{address.public_id}/edit/"
    text = page(client, url)
    form = form_html(text, "form-edit-address")
    assert 'value="Jl. Sudirman 1"' in form and 'for="edit-phone"' in form
    data = {"warehouse": "Main", "contact_name": "Li", "phone": "0813 9876 5432", "line1": "Jl. Sudirman 1",
            "line2": "Lt. 3", "city": "Jakarta Selatan", "region": "", "postcode": "12190",
            "idempotency_key": key_of(text, "form-edit-address")}
    response = client.post(url, data)
    assert response.status_code == 302 and response["Location"] == URL
    address.refresh_from_db()
    assert (address.phone, address.city, address.line2) == ("+6281398765432", "Jakarta Selatan", "Lt. 3")
    assert any("+6281398765432" in m for m in messages_of(page(client)))


def test_a_refused_edit_keeps_the_values_next_to_the_form(as_user, tenants):
    a, _b = tenants
    address = address_of(a.stores[2], is_default=True)
    client = as_user(a.owner)
    url = f"/addresses/{address.public_id}/edit/"
    data = {"warehouse": "", "contact_name": "Li", "phone": "+1 650 253 0000", "line1": "Jl. Sudirman 1",
            "city": "Bandung", "idempotency_key": key_of(page(client, url), "form-edit-address")}
    response = client.post(url, data)
    assert response.status_code == 400
    text = response.content.decode()
    block = error_block(text, "ERR_VALIDATION")
    assert "Warehouse: Required." in block and "Phone: Use a number of ID" in block
    form = form_html(text, "form-edit-address")
    assert 'value="Bandung"' in form and 'value="+1 650 253 0000"' in form
    address.refresh_from_db()
    assert address.city == "Jakarta"


def test_the_edit_page_without_manage_logistics_shows_the_note_not_the_form(as_user, tenants):
    a, _b = tenants
    address = address_of(a.stores[2], is_default=True)
    text = page(as_user(a.viewer), f"/addresses/{address.public_id}/edit/")
    assert 'data-code="ERR_PERM_003"' in text and 'id="form-edit-address"' not in text


# --- the drop-off finder -------------------------------------------------------------------------------------
def points(coords, code="ID", **extra) -> list[DropOffPoint]:
    market = Market.objects.get(code=code)
    start = DropOffPoint.objects.count()
    return DropOffPoint.objects.bulk_create([
        DropOffPoint(market=market, partner="J&T", code=f"JT-{start + i}", name=f"Point {start + i}",
                     latitude=lat, longitude=lon, pickup_lead_hours=12 + i, address=f"Street {i}", **extra)
        for i, (lat, lon) in enumerate(coords)])


def result_rows(text: str) -> list[tuple[str, str, str]]:
    """(code, distance, lead time) of each row of the results table, in order."""
    table = text[text.index('id="dropoff-results"'):]
    table = table[:table.index("</table>")]
    return [(code, html.unescape(dist), html.unescape(lead)) for code, dist, lead in re.findall(
        r'<tr data-code="([^"]+)">.*?<td class="num distance">([^<]+)</td>\s*<td class="num lead">([^<]+)</td>',
        table, re.S)]


def test_the_finder_lists_the_nearest_points_with_distance_and_lead_time(as_user, tenants):
    a, _b = tenants
    near, _far, nearest = points([(-6.21, 106.85), (-6.90, 107.60), (-6.2088, 106.8456)])
    points([(-6.2088, 106.8456)], code="MY")  # another market, same place: never listed
    text = page(as_user(a.owner), "/dropoffs/?market=ID&latitude=-6.2088&longitude=106.8456&count=2")
    rows = result_rows(text)
    assert [r[0] for r in rows] == [nearest.code, near.code]
    assert rows[0][1:] == ("0.00 km", "14 hours") and rows[1][2] == "12 hours"
    assert rows[1][1] == f"{dropoffs.haversine_km(-6.2088, 106.8456, -6.21, 106.85):.2f} km" == "0.50 km"
    assert "2 points in ID, nearest first" in text
    assert 'value="-6.2088"' in text and '<option value="ID" selected>' in text


def test_the_finder_refuses_bad_coordinates_and_counts_with_their_codes(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    response = client.get("/dropoffs/?market=ID&latitude=95&longitude=abc")
    assert response.status_code == 400
    text = response.content.decode()
    block = error_block(text, "ERR_LOG_503")
    assert "Latitude: A number between -90 and 90." in block and "Longitude:" in block
    assert 'value="95"' in text and 'value="abc"' in text and 'id="dropoff-results"' not in text
    response = client.get("/dropoffs/?market=ID&latitude=1&longitude=2&count=0")
    assert response.status_code == 400
    assert "Number of points: A whole number from 1 to 100." in error_block(response.content.decode(),
                                                                              "ERR_VALIDATION")
    response = client.get("/dropoffs/?market=ID&latitude=1&longitude=2&count=two")
    assert response.status_code == 400


def test_the_finder_without_points_says_so_and_without_coordinates_shows_only_the_form(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    text = page(client, "/dropoffs/")
    assert 'id="dropoff-form"' in text and "Nearest points" not in text
    assert "No active drop-off point in ID." in page(client, "/dropoffs/?market=ID&latitude=1&longitude=2")


def test_from_an_address_the_finder_shows_it_and_chooses_its_market(as_user, tenants_with_rows):
    a, b = tenants_with_rows
    [mine] = in_store(a.stores[2])
    [theirs] = in_store(b.stores[2])
    client = as_user(a.owner)
    text = page(client, f"/dropoffs/?market=ID&address={mine.public_id}")
    assert 'id="near-address"' in text and "Jl. Sudirman 1" in text and '<option value="ID" selected>' in text
    assert f'name="address" value="{mine.public_id}"' in text
    text = page(client, f"/dropoffs/?address={theirs.public_id}")
    assert 'id="near-address"' not in text
    assert 'name="address"' not in text and theirs.line1 not in text


def test_the_finder_costs_the_same_queries_for_one_and_many_points(as_user, tenants):
    a, _b = tenants
    points([(-6.2, 106.8)])
    client = as_user(a.owner)
    url = "/dropoffs/?market=ID&latitude=-6.2&longitude=106.8&count=1"
    page(client, url)
    with CaptureQueriesContext(connection) as one:
        page(client, url)
    points([(-6.2 + i / 1000, 106.8) for i in range(30)])
    with CaptureQueriesContext(connection) as many:
        text = page(client, url.replace("count=1", "count=20"))
    assert len(result_rows(text)) == 20
    assert len(many.captured_queries) == len(one.captured_queries)


def test_services_and_page_agree_on_the_default(as_user, tenants):
    """The page shows the service's default: the one the labels use."""
    a, _b = tenants
    address_of(a.stores[2], warehouse="Old", is_default=True)
    client = as_user(a.owner)
    create(client, fields(a.stores[2], warehouse="New", is_default="on"))
    default = addresses.default_return_address(a.stores[2])
    assert default.warehouse == "New"
    text = page(client)
    assert 'class="default-badge"' in row_html(text, default) and "default-badge" not in row_html(
        text, next(x for x in in_store(a.stores[2]) if x.warehouse == "Old"))
