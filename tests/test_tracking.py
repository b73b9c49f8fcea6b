"""Return tracking: number formats, registering a number, carrier updates, the carrier check (emulated
aggregator, real worker on the real broker), and the hooks that register the buyer's number."""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest
from celery.contrib.testing.worker import start_worker

from aftersales import events
from aftersales import services as aftersales_services
from aftersales.models import OperationLog
from aftersales.oplog import Performer
from config.celery import app
from logistics import selectors, services, tasks, tracking, tracking_hooks
from logistics.models import (
    Carrier,
    CarrierCheckAttempt,
    ReturnShipment,
    ShipmentStatus,
    TrackingEvent,
    TrackingNumberChange,
)
from stores.errors import AppError
from stores.models import Market, MarketPolicy
from tests.conftest import platform_return
from tests.emulators.aggregator import (
    NOT_FOUND,
    NOT_JSON,
    UNAVAILABLE,
    AggregatorEmulator,
    checkpoint,
    found,
    slow,
)
from tests.factories import StoreFactory

UTC = dt.UTC


# --- helpers shared with the scan-watch and webhook tests ---------------------------------------------
def store_in(tenant, code: str):
    market = Market.objects.get(code=code)
    existing = [s for s in tenant.stores if s.market_id == market.pk]
    return existing[0] if existing else StoreFactory(agency=tenant.agency, market=market)


def return_ticket(store, rtype: str = "RETURN_AND_REFUND", **overrides):
    ticket, _ = aftersales_services.intake(store, platform_return(return_type=rtype, **overrides))
    return ticket


def owner(tenant) -> Performer:
    return Performer.of(tenant.actor(tenant.owner))


def logs(ticket, action: str | None = None) -> list[OperationLog]:
    qs = OperationLog.objects.filter(ticket_id=ticket.pk).order_by("id")
    return list(qs.filter(action=action) if action else qs)


def registered(tenant, *, market: str = "US", carrier: str = "ups", number: str = "1Z5R89390357567127"):
    ticket = return_ticket(store_in(tenant, market))
    return ticket, services.register_tracking(owner(tenant), ticket.pk, carrier_code=carrier, tracking_number=number)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def carrier(code: str) -> Carrier:
    return Carrier.objects.get(code=code)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def emulator(settings):
    with AggregatorEmulator() as emu:
        settings.TRACKING_AGGREGATOR_URL = emu.url
        settings.TRACKING_AGGREGATOR_KEY = emu.api_key
        settings.TRACKING_AGGREGATOR_TIMEOUT_S = 1
        settings.TRACKING_CHECK_MAX_RETRIES = 2
        settings.TRACKING_CHECK_BACKOFF_S = 1
        settings.TRACKING_CHECK_BACKOFF_MAX_S = 1
        yield emu


@pytest.fixture
def worker():
    """A real Celery worker on the configured broker; stale messages of earlier runs are purged first."""
    with app.connection() as connection:
        connection.ensure_connection(max_retries=3)
        connection.default_channel.queue_purge(app.conf.task_default_queue)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        yield


@pytest.fixture
def hooks():
    """tracking_hooks connected for one test (LogisticsConfig.ready connects them in the running product)."""
    before = {e: list(events._subscribers[e]) for e in (events.CREATED, events.STATE_CHANGED)}
    tracking_hooks.connect()
    yield
    for event, handlers in before.items():
        events._subscribers[event][:] = handlers


# --- number formats -----------------------------------------------------------------------------------
VALID = [
    ("royal-mail", "RB123456785GB"),
    ("ups", "1Z5R89390357567127"), ("ups", "1Z879E930346834440"), ("ups", "1Z410E7W0392751591"),
    ("usps", "03071790000523483741"), ("usps", "9400111899223197428497"),
    ("usps", "EA123456785US"),  # an S10 item issued by USPS
    ("fedex", "986578788855"), ("fedex", "477179081230"), ("fedex", "9611020987654312345672"),
    # FedEx SmartPost; also a valid USPS 91 number, which get_tracking_number returns first.
    ("fedex", "9261292700768711948021"),
    ("dhl", "3318810025"), ("dhl", "8487135506"),
    ("canada-post", "1234567890123456"), ("canada-post", "RB123456785GB"),
    ("thailand-post", "EE123456785TH"),
    ("jt-express", "JT0123456789"), ("jt-express", "630012345678"),
    ("ninja-van", "NVSGABC1234567890"), ("sicepat", "001234567890"), ("flash", "TH0112345678901"),
    ("spx", "SPXID012345678901"), ("kerry", "KERDO123456789"), ("jne", "CGK123456789012"),
    ("aramex", "1234567890"),
]
INVALID = [
    ("royal-mail", "RB123456784GB"), ("royal-mail", "RB12345678GB"), ("royal-mail", "1Z5R89390357567127"),
    ("ups", "1Z5R89390357567128"), ("ups", "1Z5R89390357567137"), ("ups", "1Z879E930346834441"),
    ("ups", "1Z410E7W0392751592"), ("ups", "03071790000523483741"),
    ("usps", "03071790000523483742"),
    ("usps", "9400111899223197428490"),  # the example in the seeded USPS hint: its check digit is wrong
    ("usps", "RB123456785GB"),  # an S10 item of Royal Mail, not of USPS
    ("usps", "1Z5R89390357567127"),
    ("fedex", "986578788856"), ("dhl", "3318810026"), ("dhl", "1Z5R89390357567127"),
    ("canada-post", "123456789012345"),
    ("jt-express", "JT12345"), ("ninja-van", "NV1234567890"), ("sicepat", "00123456789"), ("spx", "SPX123"),
    ("aramex", "12345"),
]


@pytest.mark.parametrize(("code", "number"), VALID)
def test_valid_numbers_are_verified(db, code, number):
    verdict = tracking.validate(number, carrier(code))
    assert verdict.format_check == ReturnShipment.FormatCheck.VERIFIED and verdict.hint


@pytest.mark.parametrize(("code", "number"), INVALID)
def test_invalid_numbers_are_refused_with_the_expected_format(db, code, number):
    c = carrier(code)
    with pytest.raises(AppError) as info:
        tracking.validate(number, c)
    assert info.value.code == "ERR_LOG_204"
    hint = info.value.fields["tracking_number"][0]
    assert c.name in hint and c.format_hint in hint


def test_s10_check_digit_rules():
    assert tracking.s10_check_digit("12345678") == 5
    assert tracking.is_s10("RB123456785GB") and not tracking.is_s10("RB123456784GB")
    # The two special remainders (weights 8,6,4,2,3,5,9,7): 0 → 5, and 1 → 0 (8·7 = 56 ≡ 1 mod 11).
    assert tracking.s10_check_digit("00000000") == 5
    assert tracking.s10_check_digit("00000008") == 0
    assert tracking.s10_check_digit("00000003") == 1  # 3·7 = 21 ≡ 10 → 11 − 10
    for serial in (f"{n:08d}" for n in range(0, 10**8, 7919)):
        r = sum(int(d) * w for d, w in zip(serial, tracking.S10_WEIGHTS, strict=True)) % 11
        assert tracking.s10_check_digit(serial) == (0 if r == 1 else 5 if r == 0 else 11 - r)


def test_single_flipped_check_digit_is_always_caught(db):
    ups = carrier("ups")
    for number in ("1Z5R89390357567127", "1Z879E930346834440", "1Z410E7W0392751591"):
        for digit in "0123456789":
            flipped = number[:-1] + digit
            if flipped != number:
                with pytest.raises(AppError):
                    tracking.validate(flipped, ups)


def test_carrier_without_format_accepts_any_plausible_number_unverified(db):
    other = carrier("other")
    assert tracking.validate("LOCAL123456", other).format_check == ReturnShipment.FormatCheck.UNVERIFIED
    for bad in ("AB1", "X" * 41, "ABC-123-XYZ", ""):
        with pytest.raises(AppError) as info:
            tracking.validate(bad, other)
        assert info.value.code == "ERR_LOG_204" and info.value.fields["tracking_number"]


def test_pattern_carrier_without_pattern_and_broken_patterns(db):
    loose = Carrier.objects.create(code="loose", name="Loose", markets=["US"], format_check="pattern")
    assert tracking.validate("ABC123456", loose).format_check == ReturnShipment.FormatCheck.UNVERIFIED
    broken = Carrier.objects.create(code="broken", name="Broken", markets=["US"], format_check="pattern",
                                    pattern="([A-Z", format_hint="whatever")
    with pytest.raises(AppError):
        tracking.validate("ABC123456", broken)


def test_package_carrier_listing_s10_accepts_any_s10_item(db):
    post = Carrier.objects.create(code="post", name="Post", markets=["US"], format_check="package",
                                  package_couriers=["s10"])
    assert tracking.validate("RB123456785GB", post).format_check == ReturnShipment.FormatCheck.VERIFIED
    with pytest.raises(AppError):
        tracking.validate("RB123456784GB", post)


@pytest.mark.parametrize(("raw", "expected"), [
    (" rb 1234 5678 5gb ", "RB123456785GB"),
    ("]C1RB123456785GB", "RB123456785GB"),
    ('"1Z5R89390357567127"', "1Z5R89390357567127"),
    ("“RB123456785GB”", "RB123456785GB"),
    ("TRK:1z5r89390357567127", "1Z5R89390357567127"),
    ("tracking: RB123456785GB", "RB123456785GB"),
    ("#RB123456785GB", "RB123456785GB"),
    ("ＲＢ１２３４５６７８５ＧＢ", "RB123456785GB"),  # full-width input (Chinese IME)
    ("RB123\u200b456785GB\r\n", "RB123456785GB"),
    ("]C1\"TRK:RB123456785GB\"", "RB123456785GB"),
    ("RB\x1d123456785GB\t", "RB123456785GB"),  # GS1 group separator from a scanner
])
def test_normalise_removes_scanner_and_typing_noise(db, raw, expected):
    assert tracking.normalise(raw, carrier("royal-mail")) == expected


def test_normalise_without_carrier_keeps_prefix_like_text(db):
    assert tracking.normalise(" #abc 123 ") == "#ABC123"


# --- registering a number ----------------------------------------------------------------------------
def test_register_creates_the_shipment_and_logs_it(tenants, django_capture_on_commit_callbacks):
    a, _b = tenants
    ticket = return_ticket(store_in(a, "US"))
    with django_capture_on_commit_callbacks() as callbacks:
        shipment = services.register_tracking(owner(a), ticket.public_id, carrier_code="UPS",
                                              tracking_number=" 1z5r 8939 0357 5671 27 ")
    assert len(callbacks) == 1  # the carrier check, enqueued only after commit
    assert shipment.tracking_number == "1Z5R89390357567127" and shipment.carrier.code == "ups"
    assert shipment.format_check == "verified" and shipment.status == ShipmentStatus.REGISTERED
    assert shipment.validation == "pending" and shipment.agency_id == a.agency.pk
    assert shipment.scan_due_at - shipment.registered_at == dt.timedelta(hours=48)
    row = logs(ticket, "tracking_number")[-1]
    assert row.error_code == "" and row.actor_kind == "owner"
    assert row.payload["tracking_number"] == "1Z5R89390357567127" and row.payload["carrier"] == "ups"
    assert row.payload["format_check"] == "verified" and "previous" not in row.payload


def test_scan_watch_hours_come_from_the_market_policy(tenants):
    a, _b = tenants
    store = store_in(a, "US")
    MarketPolicy.objects.filter(market=store.market).update(scan_watch_hours=24)
    _t, shipment = registered(a)
    assert shipment.scan_due_at - shipment.registered_at == dt.timedelta(hours=24)
    MarketPolicy.objects.filter(market=store.market).delete()
    _t, shipment = registered(a)
    assert shipment.scan_due_at - shipment.registered_at == dt.timedelta(hours=48)


def test_exchange_requests_carry_a_return_parcel_too(tenants):
    a, _b = tenants
    ticket = return_ticket(store_in(a, "US"), rtype="REPLACEMENT")
    shipment = services.register_tracking(owner(a), ticket.pk, carrier_code="usps",
                                          tracking_number="03071790000523483741")
    assert shipment.ticket_id == ticket.pk


def test_refund_only_request_has_no_parcel(tenants, django_capture_on_commit_callbacks):
    a, _b = tenants
    ticket = return_ticket(store_in(a, "US"), rtype="REFUND")
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(AppError) as info:
        services.register_tracking(owner(a), ticket.pk, carrier_code="ups", tracking_number="1Z5R89390357567127")
    assert info.value.code == "ERR_LOG_208" and not callbacks
    assert not ReturnShipment.objects.for_agency(a.agency).exists()
    assert logs(ticket, "tracking_number")[-1].error_code == "ERR_LOG_208"


@pytest.mark.parametrize("code", ["usps", "nope", "", "inactive"])
def test_carrier_must_exist_be_active_and_serve_the_market(tenants, code):
    a, _b = tenants
    Carrier.objects.filter(code="dhl").update(is_active=False)
    ticket = return_ticket(a.stores[0])  # an AE store: USPS does not serve it
    with pytest.raises(AppError) as info:
        services.register_tracking(owner(a), ticket.pk, carrier_code="dhl" if code == "inactive" else code,
                                   tracking_number="3318810025")
    assert info.value.code == "ERR_LOG_205" and info.value.fields["carrier"]
    assert logs(ticket, "tracking_number")[-1].error_code == "ERR_LOG_205"


def test_invalid_number_is_refused_and_logged_with_its_code(tenants):
    a, _b = tenants
    ticket = return_ticket(store_in(a, "US"))
    with pytest.raises(AppError) as info:
        services.register_tracking(owner(a), ticket.pk, carrier_code="ups", tracking_number="1z5r89390357567128")
    assert info.value.code == "ERR_LOG_204"
    assert "1Z followed by 16 letters and digits" in info.value.fields["tracking_number"][0]
    row = logs(ticket, "tracking_number")[-1]
    assert (row.error_code, row.payload["tracking_number"], row.payload["carrier"]) == (
        "ERR_LOG_204", "1Z5R89390357567128", "ups")
    assert not ReturnShipment.objects.for_agency(a.agency).exists()


def test_same_number_again_is_a_no_op(tenants, django_capture_on_commit_callbacks):
    a, _b = tenants
    ticket, first = registered(a)
    before = len(logs(ticket))
    with django_capture_on_commit_callbacks() as callbacks:
        again = services.register_tracking(owner(a), ticket.pk, carrier_code="ups",
                                           tracking_number="1Z5R 8939 0357 5671 27")
    assert again.pk == first.pk and again.registered_at == first.registered_at
    assert len(logs(ticket)) == before and not callbacks
    assert not TrackingNumberChange.objects.exists()


def test_new_number_keeps_the_old_one_and_restarts_watch_and_check(tenants, django_capture_on_commit_callbacks):
    a, _b = tenants
    ticket, first = registered(a)
    ReturnShipment.objects.for_agency(a.agency).filter(pk=first.pk).update(
        first_scan_at=dt.datetime(2026, 1, 1, tzinfo=UTC), scan_due_at=None, status=ShipmentStatus.IN_TRANSIT,
        status_at=dt.datetime(2026, 1, 1, tzinfo=UTC), validation="invalid", validation_attempts=3)
    with django_capture_on_commit_callbacks() as callbacks:
        shipment = services.register_tracking(owner(a), ticket.pk, carrier_code="usps",
                                              tracking_number="03071790000523483741")
    assert len(callbacks) == 1
    assert ReturnShipment.objects.for_agency(a.agency).count() == 1 and shipment.pk == first.pk
    change = TrackingNumberChange.objects.get(shipment=shipment)
    assert (change.tracking_number, change.carrier.code, change.replaced_by_id) == ("1Z5R89390357567127", "ups",
                                                                                    a.owner.pk)
    shipment.refresh_from_db()
    assert (shipment.tracking_number, shipment.carrier.code, shipment.status) == (
        "03071790000523483741", "usps", ShipmentStatus.REGISTERED)
    assert shipment.first_scan_at is None and shipment.status_at is None and shipment.scan_due_at is not None
    assert (shipment.validation, shipment.validation_attempts) == ("pending", 0)
    row = logs(ticket, "tracking_number")[-1]
    assert row.payload["previous"] == {"carrier": "ups", "tracking_number": "1Z5R89390357567127"}
    assert row.payload["tracking_number"] == "03071790000523483741"


def test_same_number_with_another_carrier_is_a_change(tenants):
    a, _b = tenants
    ticket, _s = registered(a, market="MY", carrier="other", number="630012345678")
    shipment = services.register_tracking(owner(a), ticket.pk, carrier_code="jt-express",
                                          tracking_number="630012345678")
    assert shipment.carrier.code == "jt-express" and shipment.format_check == "verified"
    assert TrackingNumberChange.objects.get(shipment=shipment).carrier.code == "other"


def test_new_number_clears_a_stalled_request(tenants):
    a, _b = tenants
    ticket, _s = registered(a)
    aftersales_services.mark_stalled(ticket.pk, detail={"test": True})
    services.register_tracking(owner(a), ticket.pk, carrier_code="usps", tracking_number="03071790000523483741")
    ticket.refresh_from_db()
    assert ticket.stalled_at is None
    assert [r.action for r in logs(ticket)][-2:] == ["scan_watch_cleared", "tracking_number"]


def test_people_need_manage_logistics_on_a_store_they_can_see(tenants):
    a, b = tenants
    ticket = return_ticket(a.stores[0])  # AE: the agent holds the after-sales role here
    with pytest.raises(AppError) as info:
        services.register_tracking(Performer.of(a.actor(a.viewer)), ticket.pk, carrier_code="aramex",
                                   tracking_number="1234567890")
    assert info.value.code == "ERR_PERM_003"
    assert logs(ticket, "tracking_number")[-1].error_code == "ERR_PERM_003"
    for user, tenant in ((a.outsider, a), (b.owner, b), (b.agent, b)):
        with pytest.raises(AppError) as info:
            services.register_tracking(Performer.of(tenant.actor(user)), ticket.public_id, carrier_code="aramex",
                                       tracking_number="1234567890")
        assert info.value.code == "ERR_NOT_FOUND"
    shipment = services.register_tracking(Performer.of(a.actor(a.agent)), ticket.public_id, carrier_code="aramex",
                                          tracking_number="1234567890")
    assert shipment.carrier.code == "aramex"
    hidden = return_ticket(a.stores[2])  # the agent has no role on this store
    with pytest.raises(AppError) as info:
        services.register_tracking(Performer.of(a.actor(a.agent)), hidden.pk, carrier_code="jne",
                                   tracking_number="123456789012")
    assert info.value.code == "ERR_NOT_FOUND"


@pytest.mark.parametrize(("hint", "market", "code"), [
    ("UPS", "US", "ups"), ("usps", "US", "usps"), ("J&T Express", "MY", "jt-express"),
    ("Ninja Van", "SG", "ninja-van"), ("ninjavan", "SG", "ninja-van"), ("jt-express", "ID", "jt-express"),
    ("USPS", "MY", "other"), ("", "US", "other"), ("Some Local Courier", "US", "other"),
])
def test_provider_names_map_to_carriers(db, hint, market, code):
    assert services.resolve_carrier_code(hint, market) == code


# --- carrier updates ------------------------------------------------------------------------------------
def ev(when: str, status: str, raw: str = "", message: str = "", location: str = "") -> dict:
    return {"occurred_at": at(when), "status": status, "raw_status": raw or status, "message": message or status,
            "location": location}


def test_update_records_events_once_and_logs_status_changes_only(tenants):
    a, _b = tenants
    ticket, shipment = registered(a)
    batch = [ev("2026-03-01T08:00:00+00:00", "info_received"), ev("2026-03-01T15:00:00+00:00", "in_transit")]
    first = services.apply_tracking_update(shipment.pk, source="aftership", events=batch)
    again = services.apply_tracking_update(shipment.pk, source="aftership", events=batch)
    assert (first.new_events, first.status_changed, first.first_scan) == (2, True, True)
    assert (again.new_events, again.status_changed, again.first_scan) == (0, False, False)
    assert TrackingEvent.objects.filter(shipment=shipment).count() == 2
    shipment.refresh_from_db()
    assert shipment.status == "in_transit" and shipment.status_at == at("2026-03-01T15:00:00+00:00")
    assert shipment.first_scan_at == at("2026-03-01T15:00:00+00:00") and shipment.scan_due_at is None
    rows = logs(ticket, "tracking_update")
    assert len(rows) == 1 and rows[0].actor_label == "AfterShip"
    assert (rows[0].payload["from"], rows[0].payload["to"]) == ("registered", "in_transit")


def test_an_older_update_adds_events_but_never_moves_the_status_back(tenants):
    a, _b = tenants
    ticket, shipment = registered(a)
    services.apply_tracking_update(shipment.pk, source="17track", events=[
        ev("2026-03-03T10:00:00+00:00", "delivered")])
    late = services.apply_tracking_update(shipment.pk, source="17track", events=[
        ev("2026-03-02T10:00:00+00:00", "in_transit")])
    shipment.refresh_from_db()
    assert late.new_events == 1 and not late.status_changed and shipment.status == "delivered"
    assert shipment.first_scan_at == at("2026-03-03T10:00:00+00:00")  # set once, by the first scan we heard of
    assert len(logs(ticket, "tracking_update")) == 1


def test_info_received_is_not_a_scan(tenants):
    a, _b = tenants
    _t, shipment = registered(a)
    result = services.apply_tracking_update(shipment.pk, source="aftership", events=[
        ev("2026-03-01T08:00:00+00:00", "info_received")])
    shipment.refresh_from_db()
    assert not result.first_scan and shipment.first_scan_at is None and shipment.scan_due_at is not None


def test_unknown_statuses_are_kept_raw(tenants):
    a, _b = tenants
    _t, shipment = registered(a)
    services.apply_tracking_update(shipment.pk, source="manual", events=[
        ev("2026-03-01T08:00:00+00:00", "teleported", raw="Teleported_001")])
    stored = TrackingEvent.objects.get(shipment=shipment)
    assert (stored.status, stored.raw_status, stored.source) == ("unknown", "Teleported_001", "manual")


def test_a_scanned_latest_status_without_checkpoints_counts_as_first_scan(tenants):
    a, _b = tenants
    _t, shipment = registered(a)
    result = services.apply_tracking_update(shipment.pk, source="aftership", events=[], latest_status="in_transit",
                                            latest_raw_status="InTransit")
    shipment.refresh_from_db()
    assert result.first_scan and shipment.first_scan_at is not None and shipment.status == "in_transit"


def test_update_of_a_missing_shipment_is_not_found(db):
    with pytest.raises(AppError) as info:
        services.apply_tracking_update(10**9, source="aftership", events=[])
    assert info.value.code == "ERR_NOT_FOUND"


# --- the carrier check, task function applied in-process -------------------------------------------------
def attempts(shipment) -> list[tuple[int, str, str]]:
    return list(CarrierCheckAttempt.objects.filter(shipment=shipment).order_by("id")
                .values_list("attempt", "outcome", "error_code"))


def test_check_without_aggregator_is_skipped_and_stays_pending(tenants, settings):
    settings.TRACKING_AGGREGATOR_URL = ""
    a, _b = tenants
    _t, shipment = registered(a)
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number)).get() == "skipped"
    shipment.refresh_from_db()
    assert shipment.validation == "pending" and attempts(shipment) == [(1, "skipped", "")]


def test_check_skips_a_number_that_changed_meanwhile(tenants, emulator):
    a, _b = tenants
    ticket, shipment = registered(a)
    services.register_tracking(owner(a), ticket.pk, carrier_code="usps", tracking_number="03071790000523483741")
    assert tasks.check_tracking_number.apply(args=(shipment.pk, "1Z5R89390357567127")).get() == "skipped"
    assert attempts(shipment) == [(1, "skipped", "")]
    assert emulator.calls("1Z5R89390357567127") == 0


def test_check_found_applies_the_checkpoints(tenants, emulator):
    a, _b = tenants
    ticket, shipment = registered(a)
    emulator.script(shipment.tracking_number, found(shipment.tracking_number, slug="ups"))
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number)).get() == "valid"
    shipment.refresh_from_db()
    assert (shipment.validation, shipment.validation_attempts, shipment.status) == ("valid", 1, "in_transit")
    assert shipment.first_scan_at == at("2026-03-01T15:30:00+00:00") and shipment.scan_due_at is None
    assert TrackingEvent.objects.filter(shipment=shipment, source="carrier_check").count() == 2
    assert attempts(shipment) == [(1, "valid", "")]
    seen = emulator.requests[-1]
    assert (seen.slug, seen.number, seen.api_key) == ("ups", shipment.tracking_number, emulator.api_key)
    assert logs(ticket, "tracking_update")[-1].actor_label == "Carrier check"
    # Redelivered (acks_late) after it succeeded: decided already, nothing asked again.
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number)).get() == "skipped"
    assert emulator.calls(shipment.tracking_number) == 1


def test_check_of_a_carrier_without_slug_searches_by_number(tenants, emulator):
    a, _b = tenants
    _t, shipment = registered(a, carrier="other", number="LOCAL123456")
    emulator.script("LOCAL123456", found("LOCAL123456"))
    assert tasks.check_tracking_number.apply(args=(shipment.pk, "LOCAL123456")).get() == "valid"
    assert emulator.requests[-1].path.startswith("/trackings?tracking_numbers=LOCAL123456")


def test_check_not_found_is_permanent(tenants, emulator):
    a, _b = tenants
    ticket, shipment = registered(a)
    emulator.script(shipment.tracking_number, NOT_FOUND)
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number)).get() == "invalid"
    shipment.refresh_from_db()
    assert shipment.validation == "invalid" and attempts(shipment) == [(1, "invalid", "ERR_LOG_206")]
    assert emulator.calls(shipment.tracking_number) == 1
    assert logs(ticket, "carrier_check")[-1].error_code == "ERR_LOG_206"


def test_check_retries_transient_failures_then_fails(tenants, emulator):
    a, _b = tenants
    ticket, shipment = registered(a)
    emulator.script(shipment.tracking_number, UNAVAILABLE)
    # In-process apply() runs the retries at once (countdowns are a worker's business).
    tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number))
    shipment.refresh_from_db()
    assert attempts(shipment) == [(1, "retry", "ERR_LOG_207"), (2, "retry", "ERR_LOG_207"),
                                  (3, "failed", "ERR_LOG_207")]
    assert (shipment.validation, shipment.validation_attempts) == ("failed", 3)
    assert emulator.calls(shipment.tracking_number) == 3
    assert [r.error_code for r in logs(ticket, "carrier_check")] == ["ERR_LOG_207"]  # once, at the end


def test_check_on_its_last_attempt_fails_instead_of_retrying(tenants, emulator):
    a, _b = tenants
    _t, shipment = registered(a)
    emulator.script(shipment.tracking_number, UNAVAILABLE)
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number), retries=2).get() == "failed"
    assert attempts(shipment) == [(3, "failed", "ERR_LOG_207")]


@pytest.mark.parametrize("reply", [slow(2.5), NOT_JSON], ids=["timeout", "not-json"])
def test_timeouts_and_garbage_are_transient(tenants, emulator, settings, reply):
    settings.TRACKING_CHECK_MAX_RETRIES = 1
    a, _b = tenants
    _t, shipment = registered(a)
    emulator.script(shipment.tracking_number, reply, found(shipment.tracking_number))
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number)).get() == "valid"
    assert [o for _n, o, _c in attempts(shipment)] == ["retry", "valid"]


def test_unreachable_aggregator_is_transient(tenants, settings):
    settings.TRACKING_AGGREGATOR_URL = "http://127.0.0.1:9"  # discard port: connection refused
    settings.TRACKING_CHECK_MAX_RETRIES = 0
    a, _b = tenants
    _t, shipment = registered(a)
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number)).get() == "failed"
    assert attempts(shipment)[0][1] == "failed"
    assert "unreachable" in CarrierCheckAttempt.objects.get(shipment=shipment).detail


def test_a_refused_api_key_fails_without_retrying(tenants, emulator, settings):
    settings.TRACKING_AGGREGATOR_KEY = "wrong"
    a, _b = tenants
    _t, shipment = registered(a)
    emulator.script(shipment.tracking_number, found(shipment.tracking_number))
    assert tasks.check_tracking_number.apply(args=(shipment.pk, shipment.tracking_number)).get() == "failed"
    assert attempts(shipment) == [(1, "failed", "ERR_LOG_207")]
    assert CarrierCheckAttempt.objects.get(shipment=shipment).detail == "HTTP 401"


def test_retry_countdown_grows_exponentially_with_jitter_and_a_cap(settings):
    settings.TRACKING_CHECK_BACKOFF_S = 30
    settings.TRACKING_CHECK_BACKOFF_MAX_S = 3600
    rng = random.Random(7)
    for retries in range(10):
        ceiling = min(3600, 30 * 2 ** retries)
        samples = [services.retry_countdown(retries, rng=rng) for _ in range(200)]
        assert all(1 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8 and len(set(samples)) > 150  # spread over the window: jitter
    assert services.retry_countdown(50, rng=rng) <= 3600


# --- the carrier check through a real worker on the real broker ------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_worker_checks_a_registered_number_found(tenants, emulator, worker):
    a, _b = tenants
    number = "1Z5R89390357567127"
    emulator.script(number, found(number, slug="ups", tag="Delivered", checkpoints=[
        checkpoint("2026-03-01T15:30:00Z", "InTransit", message="Picked up"),
        checkpoint("2026-03-02T09:00:00Z", "Delivered", message="Delivered to sender's warehouse")]))
    _t, shipment = registered(a, number=number)
    assert wait_for(lambda: CarrierCheckAttempt.objects.filter(shipment=shipment).exists())
    shipment.refresh_from_db()
    assert attempts(shipment) == [(1, "valid", "")]
    assert (shipment.validation, shipment.status) == ("valid", "delivered")
    assert shipment.first_scan_at == at("2026-03-01T15:30:00+00:00")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_worker_marks_an_unknown_number_invalid(tenants, emulator, worker):
    a, _b = tenants
    ticket, shipment = registered(a)
    assert wait_for(lambda: CarrierCheckAttempt.objects.filter(shipment=shipment).exists())
    shipment.refresh_from_db()
    assert shipment.validation == "invalid" and attempts(shipment) == [(1, "invalid", "ERR_LOG_206")]
    assert logs(ticket, "carrier_check")[-1].error_code == "ERR_LOG_206"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_worker_retries_after_503_then_finds_it(tenants, emulator, worker):
    a, _b = tenants
    number = "03071790000523483741"
    emulator.script(number, UNAVAILABLE, found(number, slug="usps"))
    _t, shipment = registered(a, carrier="usps", number=number)
    assert wait_for(lambda: CarrierCheckAttempt.objects.filter(shipment=shipment, outcome="valid").exists())
    assert attempts(shipment) == [(1, "retry", "ERR_LOG_207"), (2, "valid", "")]
    assert emulator.calls(number) == 2


# --- hooks: the buyer's number becomes a tracked parcel ------------------------------------------------------
def test_connect_is_idempotent(hooks):
    tracking_hooks.connect()
    tracking_hooks.connect()
    assert events._subscribers[events.STATE_CHANGED].count(tracking_hooks.on_state_changed) == 1
    assert events._subscribers[events.CREATED].count(tracking_hooks.on_created) == 1


def test_handlers_enqueue_only_what_carries_a_parcel(tenants, django_capture_on_commit_callbacks):
    a, _b = tenants
    store = store_in(a, "US")
    # Made first: intake publishes its own after-commit events, which are not what this test counts.
    without_number = return_ticket(store)
    refund_with_number = return_ticket(store, rtype="REFUND", return_tracking_number="1Z5R89390357567127",
                                       return_provider_name="UPS")
    with_number = return_ticket(store, return_tracking_number="1Z5R89390357567127", return_provider_name="UPS")
    with django_capture_on_commit_callbacks() as callbacks:
        tracking_hooks.on_state_changed(1, action="approve", payload={"tracking_number": "X"})
        tracking_hooks.on_state_changed(1, action="buyer_shipped", payload={"tracking_number": " "})
        tracking_hooks.on_created([without_number.pk])  # no number in the platform payload
        tracking_hooks.on_created([refund_with_number.pk])
    assert callbacks == []
    with django_capture_on_commit_callbacks() as callbacks:
        tracking_hooks.on_state_changed(1, action="buyer_shipped", payload={"tracking_number": "LOCAL123456"})
        tracking_hooks.on_created([with_number.pk])
    assert len(callbacks) == 2


def test_reported_number_registers_with_the_named_or_fallback_carrier(tenants):
    a, _b = tenants
    store = store_in(a, "US")
    ticket = return_ticket(store)
    shipment = services.register_reported_tracking(ticket.pk, tracking_number="local 123456", carrier_hint="Bob's Van",
                                                   source="buyer_shipped")
    assert (shipment.carrier.code, shipment.format_check) == ("other", "unverified")
    row = logs(ticket, "tracking_number")[-1]
    assert (row.actor_kind, row.payload["source"]) == ("buyer", "buyer_shipped")
    assert tasks.register_reported_tracking.apply(args=(ticket.pk, "1Z5R89390357567128", "UPS")).get() == "ERR_LOG_204"
    assert tasks.register_reported_tracking.apply(args=(10**9, "1Z5R89390357567127", "UPS")).get() == "ERR_NOT_FOUND"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_buyer_shipped_and_platform_numbers_are_registered_by_the_worker(tenants, hooks, worker, settings):
    settings.TRACKING_AGGREGATOR_URL = ""
    a, _b = tenants
    store = store_in(a, "US")
    shipped = return_ticket(store)
    aftersales_services.approve(owner(a), shipped.public_id, "APPROVE_RETURN")
    aftersales_services.buyer_shipped(shipped.pk, carrier="UPS", tracking_number="1z5r89390357567127")
    platform = return_ticket(store, return_status="BUYER_SHIPPED_ITEM", return_tracking_number="9400111899223197428497",
                             return_provider_name="usps")
    local = return_ticket(store, return_tracking_number="LOCAL123456", return_provider_name="Bob's Van")
    mistyped = return_ticket(store, return_tracking_number="1Z5R89390357567128", return_provider_name="UPS")

    def shipments():
        return {s.ticket_id: s for s in ReturnShipment.objects.for_agency(a.agency).select_related("carrier")}

    assert wait_for(lambda: len(shipments()) == 3 and logs(mistyped, "tracking_number"))
    found_ = shipments()
    assert (found_[shipped.pk].carrier.code, found_[shipped.pk].tracking_number) == ("ups", "1Z5R89390357567127")
    assert found_[platform.pk].carrier.code == "usps" and found_[platform.pk].format_check == "verified"
    assert (found_[local.pk].carrier.code, found_[local.pk].format_check) == ("other", "unverified")
    assert logs(mistyped, "tracking_number")[-1].error_code == "ERR_LOG_204"
    assert logs(shipped, "tracking_number")[-1].actor_kind == "buyer"
    assert logs(platform, "tracking_number")[-1].payload["source"] == "platform_return"
    # Each registration queued its carrier check; with no aggregator configured it is recorded as skipped.
    assert wait_for(lambda: CarrierCheckAttempt.objects.filter(outcome="skipped").count() == 3)


# --- the stalled queue selector -----------------------------------------------------------------------------
def test_stalled_queue_follows_the_scoping_gate(tenants):
    a, b = tenants
    mine = registered(a, market="AE", carrier="aramex", number="1234567890")[1]
    hidden = registered(a, market="ID", carrier="jne", number="123456789012")[1]
    theirs = registered(b, market="AE", carrier="aramex", number="1234567890")[1]
    now = dt.datetime.now(UTC)
    for s in (mine, hidden, theirs):
        ReturnShipment.objects.unscoped().filter(pk=s.pk).update(stalled_at=now)
    assert set(selectors.stalled_for_actor(a.actor(a.owner))) == {mine, hidden}
    assert list(selectors.stalled_for_actor(a.actor(a.agent))) == [mine]
    assert list(selectors.stalled_for_actor(a.actor(a.outsider))) == []
    assert list(selectors.stalled_for_actor(b.actor(b.owner))) == [theirs]
