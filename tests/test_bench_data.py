"""A tiny-size smoke of the agency-scale generator (bench/agency_data.py): the rows it makes are rows the app
reads — scoped, in the documented mix — and the indexes and keys it drops for loading all come back."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection

from aftersales.models import AfterSalesRequest, LineItem, OperationLog, SlaBreach
from aftersales.selectors import tickets_for_actor
from aftersales.states import OPEN_STATES
from bench import agency_data
from logistics.models import ReturnShipment, TrackingEvent
from stores.services import actor_for_user

pytestmark = pytest.mark.django_db


def schema() -> set[tuple[str, str]]:
    """Keys by definition, indexes by name (a partial index re-created from its own definition reads back with
    its casts spelled differently)."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid::regclass::text = ANY(%s)
            UNION ALL
            SELECT tablename, indexname FROM pg_indexes WHERE tablename = ANY(%s)""",
                       [agency_data.BULK_TABLES, agency_data.BULK_TABLES])
        return set(cursor.fetchall())


def test_the_generator_loads_a_small_agency_the_app_can_read():
    before = schema()
    data = agency_data.load(1000, 22, 4, 5, progress=lambda _line: None)
    assert schema() == before  # every index and key dropped for the load is back, as it was

    agency = data["agency"]
    tickets = AfterSalesRequest.objects.for_agency(agency)
    assert tickets.count() == 1000
    assert OperationLog.objects.filter(agency_id=agency.pk).count() == 4000
    assert LineItem.objects.filter(ticket__agency=agency).count() == 1000
    states = Counter(tickets.values_list("state", flat=True))
    assert sum(n for state, n in states.items() if state in OPEN_STATES) == 90  # 9 in 100
    assert abs(states["completed"] - 680) <= 15 and abs(states["cancelled"] - 100) <= 15  # 68 and 10 of 91
    # ids follow time, and the open requests are the newest ones (where a sweep or a batch review finds them)
    by_id = list(tickets.order_by("pk").values_list("created_at", flat=True))
    assert by_id == sorted(by_id)
    newest = set(tickets.order_by("-pk").values_list("pk", flat=True)[:120])
    assert set(tickets.filter(state__in=[str(s) for s in OPEN_STATES]).values_list("pk", flat=True)) <= newest
    assert set(tickets.values_list("store_id", flat=True)) == {s.pk for s in data["stores"]}
    assert len({s.market_id for s in data["stores"]}) == 11
    open_ = tickets.filter(state__in=[str(s) for s in OPEN_STATES])
    assert not open_.filter(due_at__isnull=True).exists()
    assert open_.filter(breached_at__isnull=False).exists() and open_.filter(sla_check_at__isnull=False).exists()
    assert tickets.values("public_id").distinct().count() == 1000

    breached = tickets.filter(breached_at__isnull=False)
    assert breached.filter(state__in=[str(s) for s in OPEN_STATES]).exists() and breached.exclude(
        state__in=[str(s) for s in OPEN_STATES]).exists()
    assert SlaBreach.objects.filter(agency_id=agency.pk).count() == breached.count()

    shipments = ReturnShipment.objects.for_agency(agency)
    assert shipments.exists()
    assert TrackingEvent.objects.filter(shipment__in=shipments).count() == 3 * shipments.filter(
        first_scan_at__isnull=False).count()

    agent = actor_for_user(data["agent"])
    granted = {s.pk for s in data["granted"]}
    assert len(granted) == 5
    assert tickets_for_actor(agent).count() == tickets.filter(store_id__in=granted).count() > 0
    owner = actor_for_user(data["owner"])
    assert tickets_for_actor(owner).count() == 1000
