"""The 48-hour scan watch (物流断链): due parcels stall exactly once, scans clear the watch, sweeps may race.

Time moves forward by putting registered_at / scan_due_at in the past; nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import pytest
from django.db import connection, transaction

from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, OperationLog
from config.celery import app
from logistics import selectors, services, tasks
from logistics.models import ReturnShipment
from tests.test_tracking import at, logs, owner, registered, return_ticket, store_in

UTC = dt.UTC


def overdue(shipment, hours: float = 1) -> None:
    """Pretend the watch window ended ``hours`` ago."""
    now = dt.datetime.now(UTC)
    ReturnShipment.objects.unscoped().filter(pk=shipment.pk).update(
        registered_at=now - dt.timedelta(hours=48 + hours), scan_due_at=now - dt.timedelta(hours=hours))


def stall_rows(ticket) -> list[OperationLog]:
    return [r for r in logs(ticket, "scan_watch") if r.error_code == "ERR_LOG_301"]


def scan(shipment, when: str = "2026-03-01T10:00:00+00:00"):
    return services.apply_tracking_update(shipment.pk, source="aftership", events=[
        {"occurred_at": at(when), "status": "in_transit", "raw_status": "InTransit_002", "message": "Picked up"}])


def test_an_overdue_parcel_stalls_its_request_once_with_an_alert(tenants, caplog):
    a, _b = tenants
    ticket, shipment = registered(a)
    overdue(shipment)
    with caplog.at_level(logging.WARNING, logger="logistics.services"):
        assert services.sweep_scan_watch() == 1
    shipment.refresh_from_db()
    ticket.refresh_from_db()
    assert shipment.stalled_at is not None and ticket.stalled_at is not None
    [row] = stall_rows(ticket)
    assert row.actor_kind == "system" and row.state_before == row.state_after == ticket.state
    assert row.payload["tracking_number"] == shipment.tracking_number and row.payload["carrier"] == "ups"
    from aftersales.models import Alert

    [alert] = Alert.objects.for_agency(a.agency).filter(ticket=ticket)
    assert (alert.kind, alert.key, alert.error_code) == ("stalled", shipment.tracking_number, "ERR_LOG_301")
    assert any(str(ticket.public_id) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert services.sweep_scan_watch() == 0
    assert len(stall_rows(ticket)) == 1
    assert list(selectors.stalled_for_actor(a.actor(a.owner))) == [shipment]


def test_a_parcel_within_its_window_is_left_alone(tenants):
    a, _b = tenants
    ticket, shipment = registered(a)
    ReturnShipment.objects.unscoped().filter(pk=shipment.pk).update(
        scan_due_at=dt.datetime.now(UTC) + dt.timedelta(minutes=1))
    assert services.sweep_scan_watch() == 0
    assert not stall_rows(ticket)


def test_an_idle_sweep_is_one_query(tenants, django_assert_num_queries):
    a, _b = tenants
    registered(a)  # registered a moment ago: not due for 48 hours
    with django_assert_num_queries(1):
        assert services.sweep_scan_watch() == 0


def test_a_scan_just_before_the_deadline_ends_the_watch(tenants):
    a, _b = tenants
    ticket, shipment = registered(a)
    ReturnShipment.objects.unscoped().filter(pk=shipment.pk).update(
        scan_due_at=dt.datetime.now(UTC) + dt.timedelta(seconds=30))
    assert scan(shipment).first_scan
    shipment.refresh_from_db()
    assert shipment.scan_due_at is None and shipment.first_scan_at == at("2026-03-01T10:00:00+00:00")
    ReturnShipment.objects.unscoped().filter(pk=shipment.pk).update(
        registered_at=dt.datetime.now(UTC) - dt.timedelta(hours=72))  # long past the window now
    assert services.sweep_scan_watch() == 0
    assert not stall_rows(ticket) and AfterSalesRequest.objects.unscoped().get(pk=ticket.pk).stalled_at is None


def test_a_scan_after_stalling_clears_the_request(tenants):
    a, _b = tenants
    ticket, shipment = registered(a)
    overdue(shipment)
    services.sweep_scan_watch()
    result = scan(shipment)
    assert result.first_scan
    ticket.refresh_from_db()
    shipment.refresh_from_db()
    assert ticket.stalled_at is None and shipment.stalled_at is None and shipment.first_scan_at is not None
    cleared = logs(ticket, "scan_watch_cleared")[-1]
    assert cleared.payload["reason"] == "first_scan" and cleared.payload["tracking_number"] == shipment.tracking_number
    assert not selectors.stalled_for_actor(a.actor(a.owner)).exists()
    assert services.sweep_scan_watch() == 0


def test_a_new_number_for_a_stalled_parcel_starts_a_new_window(tenants):
    a, _b = tenants
    ticket, shipment = registered(a)
    overdue(shipment)
    services.sweep_scan_watch()
    services.register_tracking(owner(a), ticket.pk, carrier_code="usps", tracking_number="03071790000523483741")
    shipment.refresh_from_db()
    ticket.refresh_from_db()
    assert ticket.stalled_at is None and shipment.stalled_at is None and shipment.scan_due_at > dt.datetime.now(UTC)
    overdue(shipment)
    assert services.sweep_scan_watch() == 1
    assert len(stall_rows(ticket)) == 2  # one per number that was never scanned


def test_the_sweep_works_through_batches(tenants):
    a, _b = tenants
    tickets = []
    for _ in range(5):
        ticket, shipment = registered(a)
        overdue(shipment)
        tickets.append(ticket)
    assert services.sweep_scan_watch(batch=2) == 5
    assert all(len(stall_rows(t)) == 1 for t in tickets)


def test_a_closed_request_ends_the_watch_without_stalling(tenants):
    a, _b = tenants
    ticket = return_ticket(store_in(a, "US"))
    shipment = services.register_tracking(owner(a), ticket.pk, carrier_code="ups",
                                          tracking_number="1Z5R89390357567127")
    aftersales_services.buyer_cancelled(ticket.pk)
    overdue(shipment)
    assert services.sweep_scan_watch() == 1
    shipment.refresh_from_db()
    assert shipment.scan_due_at is None and shipment.stalled_at is None and not stall_rows(ticket)


def test_the_beat_runs_the_sweep_every_minute(tenants):
    entry = app.conf.beat_schedule["logistics-scan-watch"]
    assert entry["task"] == "logistics.sweep_scan_watch" and entry["schedule"] == 60.0
    a, _b = tenants
    _t, shipment = registered(a)
    overdue(shipment)
    assert tasks.sweep_scan_watch.apply().get() == 1
    assert tasks.sweep_scan_watch.apply().get() == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_sweeps_racing_stall_each_parcel_exactly_once(tenants):
    a, _b = tenants
    tickets = []
    for _ in range(24):
        ticket, shipment = registered(a)
        overdue(shipment)
        tickets.append(ticket)
    start = threading.Barrier(2)
    handled: list[int] = []
    failures: list[BaseException] = []

    def sweep():
        try:
            start.wait()
            handled.append(services.sweep_scan_watch(batch=3))
        except BaseException as exc:  # surfaced below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures and sum(handled) == 24
    counts = [len(stall_rows(t)) for t in tickets]
    assert counts == [1] * 24
    assert ReturnShipment.objects.for_agency(a.agency).filter(stalled_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_sweep_skips_a_request_someone_is_working_on(tenants):
    a, _b = tenants
    ticket, shipment = registered(a)
    overdue(shipment)
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                AfterSalesRequest.objects.unscoped().select_for_update().get(pk=ticket.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        began = time.monotonic()
        assert services.sweep_scan_watch() == 0  # skipped, not waited for
        assert time.monotonic() - began < 5
    finally:
        release.set()
        holder.join(30)
    assert services.sweep_scan_watch() == 1
    assert len(stall_rows(ticket)) == 1
