"""Order volume pushed by ERPs makes the return rate (退货率) of the analytics summary real."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from aftersales import services
from aftersales.models import OrderVolume
from tests.conftest import platform_return

VOLUMES = "/api/v1/analytics/order-volumes/"
SUMMARY = "/api/v1/analytics/summary/"


def push(client, store, rows):
    return client.post(VOLUMES, {"store": str(store.public_id), "rows": rows}, format="json")


def today(offset: int = 0) -> str:
    return (timezone.now().date() - dt.timedelta(days=offset)).isoformat()


def test_units_sold_turn_units_asked_back_into_a_return_rate(tenants, api):
    a, _b = tenants
    store = a.stores[0]
    for _ in range(3):  # 3 apparel units asked back (one line item each)
        services.intake(store, platform_return())
    client = api(a.owner)
    response = push(client, store, [{"date": today(1), "category": "apparel", "units_sold": 40, "orders": 30},
                                    {"date": today(0), "category": "apparel", "units_sold": 10, "orders": 9},
                                    {"date": today(40), "category": "apparel", "units_sold": 999}])  # outside 30 d
    assert response.status_code == 200 and response.json() == {"saved": 3}
    rate = client.get(SUMMARY, {"days": 30, "store": str(store.public_id)}).json()["return_rate"]
    assert rate["units_sold"] == 50 and rate["orders"] == 39
    assert rate["rate_pct"] == 6.0  # 3 ÷ 50
    [apparel] = rate["by_category"]
    assert apparel["units_sold"] == 50 and apparel["rate_pct"] == 6.0 and apparel["benchmark_max_pct"] == "12.4"
    # A second push replaces the day it names and leaves the others.
    assert push(client, store, [{"date": today(0), "category": "apparel", "units_sold": 100}]).status_code == 200
    assert OrderVolume.objects.for_agency(a.agency).count() == 3
    rate = client.get(SUMMARY, {"days": 30, "store": str(store.public_id)}).json()["return_rate"]
    assert rate["units_sold"] == 140 and rate["rate_pct"] == round(300 / 140, 2)


def test_store_totals_count_every_unit(tenants, api):
    a, _b = tenants
    store = a.stores[0]
    services.intake(store, platform_return())
    client = api(a.owner)
    assert push(client, store, [{"date": today(0), "units_sold": 20}]).status_code == 200
    rate = client.get(SUMMARY, {"days": 7, "store": str(store.public_id)}).json()["return_rate"]
    assert rate["rate_pct"] == 5.0 and rate["by_category"][0]["rate_pct"] is None


def test_pushing_needs_view_analytics_and_a_visible_store(tenants, api):
    a, b = tenants
    row = [{"date": today(0), "category": "apparel", "units_sold": 1}]
    refused = push(api(a.agent), a.stores[0], row)  # after-sales agent: no analytics
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ERR_PERM_005"
    assert push(api(a.viewer), a.stores[0], row).status_code == 200  # the analyst may
    hidden = push(api(a.owner), b.stores[0], row)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "ERR_NOT_FOUND"
    assert push(api(a.agent), a.stores[2], row).status_code == 404  # ungranted store
    assert OrderVolume.objects.unscoped().count() == 1


@pytest.mark.parametrize(("rows", "field"), [
    ([], "rows"),
    ([{"date": "2026-13-01", "units_sold": 1}], "rows"),
    ([{"date": today(0), "units_sold": -1}], "rows"),
    ([{"date": today(0), "units_sold": 2**31}], "rows"),
    ([{"date": today(0), "units_sold": 1, "category": "x" * 33}], "rows"),
    ([{"date": "2020-01-01", "units_sold": 1}], "rows.0.date"),
    ([{"date": today(0), "units_sold": 1}, {"date": today(0), "units_sold": 2}], "rows.1"),
])
def test_bad_rows_are_refused_whole_with_the_field(tenants, api, rows, field):
    a, _b = tenants
    response = push(api(a.owner), a.stores[0], rows)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ERR_VALIDATION" and any(k.startswith(field) for k in error["fields"]), error
    assert not OrderVolume.objects.unscoped().exists()
