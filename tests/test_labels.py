"""预付运费退货标签: who gets a label, one per request, a readable 4×6 PDF whose barcode is the number."""

from __future__ import annotations

import io
import random
import re
import time

import pytest
from celery.contrib.testing.worker import start_worker
from pypdf import PdfReader
from pypdf.generic import ContentStream
from reportlab.graphics.barcode.code128 import Code128
from tracking_numbers import get_tracking_number

from aftersales import events, services
from aftersales.models import OperationLog
from aftersales.oplog import Performer
from config.celery import app
from logistics import addresses, label_hooks, label_tasks, labels
from logistics.models import ReturnLabel
from stores import services as store_services
from stores.errors import AppError
from stores.models import Market, MarketPolicy
from tests.conftest import platform_return
from tests.factories import StoreFactory

ADDRESS = {"warehouse": "West Coast Returns", "contact_name": "Dana Lee", "line1": "500 Harbor Blvd",
           "line2": "Dock 4", "city": "Oakland", "region": "CA", "postcode": "94607"}
EXEMPT_ITEMS = [{"sku_id": "SKU9", "product_name": "Custom engraved ring", "category": "custom_made",
                 "refund_amount": {"currency": "USD", "refund_total": "40.00"}}]

# Code 128 symbol widths (bar, space, …) for values 0–106, as the specification (ISO/IEC 15417) lists them.
PATTERNS = re.findall(r"\d+", """
212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 221312 231212 112232 122132 122231 113222
123122 123221 223211 221132 221231 213212 223112 312131 311222 321122 321221 312212 322112 322211 212123 212321
232121 111323 131123 131321 112313 132113 132311 211313 231113 231311 112133 112331 132131 113123 113321 133121
313121 211331 231131 213113 213311 213131 311123 311321 331121 312113 312311 332111 314111 221411 431111 111224
111422 121124 121421 141122 141221 112214 112412 122114 122411 142112 142211 241211 221114 413111 241112 134111
111242 121142 121241 114212 124112 124211 411212 421112 421211 212141 214121 412121 111143 111341 131141 114113
114311 411113 411311 113141 114131 311141 411131 211412 211214 211232 2331112
""")


# --- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def subscribers():
    """connect() registers process-wide; every test leaves the event subscribers as it found them."""
    saved = {event: list(handlers) for event, handlers in events._subscribers.items()}
    yield events._subscribers
    events._subscribers.clear()
    events._subscribers.update(saved)


def market_store(tenant, code: str, *, address: bool = True):
    store = StoreFactory(agency=tenant.agency, market=Market.objects.get(code=code), name=f"{code} label shop")
    store_services.assign_role(actor=None, membership=tenant.membership(tenant.viewer),
                               role=tenant.roles["analyst"], stores=[store])
    if address:
        phone = {"US": "(650) 253-0000", "UK": "020 7946 0958", "ID": "0812-3456-7890"}[code]
        addresses.create_return_address(tenant.actor(tenant.owner), store.pk, phone=phone, **ADDRESS)
    return store


@pytest.fixture
def us(tenants):
    return market_store(tenants[0], "US")


def owner_of(tenant) -> Performer:
    return Performer.of(tenant.actor(tenant.owner))


def approved_return(tenant, store, **overrides):
    """A return-and-refund request the seller approved: awaiting the buyer's parcel."""
    ticket, _ = services.intake(store, platform_return(**{"return_type": "RETURN_AND_REFUND", **overrides}))
    return services.approve(owner_of(tenant), ticket.pk, "APPROVE_RETURN")


def label_rows(ticket):
    return list(OperationLog.objects.filter(ticket=ticket, action="return_label").order_by("id"))


def refuse(code, fn, *args, **kwargs) -> AppError:
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


# --- eligibility ---------------------------------------------------------------------------------------
def test_an_approved_us_return_gets_a_label(tenants, us, media):
    a, _b = tenants
    ticket = approved_return(a, us)
    label = labels.issue_return_label(ticket.pk)
    label.refresh_from_db()
    assert (label.ticket_id, label.agency_id, label.carrier.code) == (ticket.pk, a.agency.pk, "usps")
    assert re.fullmatch(r"labels/\d{4}/\d{2}/[0-9a-f]{32}\.pdf", label.file.name)
    assert (media / label.file.name).read_bytes().startswith(b"%PDF")
    [row] = label_rows(ticket)
    assert row.ok and row.actor_kind == "system" and row.state_before == row.state_after == "awaiting_return"
    assert row.payload["tracking_number"] == label.tracking_number
    assert row.payload["carrier"] == "usps" and row.payload["label_id"] == str(label.public_id)


@pytest.mark.parametrize(("case", "reason"), [
    ("other_market", "market"),
    ("policy_off", "market"),
    ("exempt", "exempt"),
    ("refund_only", "type"),
    ("exchange", "type"),
    ("pending_review", "state"),
    ("buyer_shipped", "state"),
    ("cancelled", "state"),
    ("no_address", "no_return_address"),
])
def test_ineligible_requests_are_refused_with_their_code_and_logged(tenants, us, case, reason):
    a, _b = tenants
    owner = owner_of(a)
    if case == "other_market":
        ticket = approved_return(a, market_store(a, "UK"))
    elif case == "policy_off":
        MarketPolicy.objects.filter(market__code="US").update(prepaid_return_label=False)
        ticket = approved_return(a, us)
    elif case == "exempt":
        ticket = approved_return(a, us, return_reason="ecom_no_longer_needed", return_line_items=EXEMPT_ITEMS)
        assert ticket.exempt_category == "custom_made"
    elif case == "refund_only":
        ticket, _ = services.intake(us, platform_return())
        ticket = services.approve(owner, ticket.pk, "APPROVE_REFUND")
    elif case == "exchange":
        ticket, _ = services.intake(us, platform_return(return_type="REPLACEMENT"))
    elif case == "pending_review":
        ticket, _ = services.intake(us, platform_return(return_type="RETURN_AND_REFUND"))
    elif case == "buyer_shipped":
        ticket = services.buyer_shipped(approved_return(a, us).pk, carrier="usps", tracking_number="X")
    elif case == "cancelled":
        ticket = services.buyer_cancelled(approved_return(a, us).pk)
    else:
        ticket = approved_return(a, market_store(a, "US", address=False))
    code = "ERR_LOG_602" if reason == "no_return_address" else "ERR_LOG_601"
    error = refuse(code, labels.issue_return_label, ticket.public_id)
    assert error.data == {"reason": reason} and error.detail
    assert not ReturnLabel.objects.unscoped().exists()
    [row] = label_rows(ticket)
    assert row.error_code == code and row.message == error.detail and row.actor_kind == "system"
    assert row.payload == {"reason": reason}


def test_the_automatic_path_does_not_log_markets_without_labels(tenants, us):
    a, _b = tenants
    uk_ticket = approved_return(a, market_store(a, "UK"))
    refuse("ERR_LOG_601", labels.issue_return_label, uk_ticket.pk, automatic=True)
    assert label_rows(uk_ticket) == []
    exempt = approved_return(a, us, return_reason="ecom_no_longer_needed", return_line_items=EXEMPT_ITEMS)
    refuse("ERR_LOG_601", labels.issue_return_label, exempt.pk, automatic=True)
    assert [r.error_code for r in label_rows(exempt)] == ["ERR_LOG_601"]  # this one explains something


def test_a_market_that_turns_labels_on_needs_a_carrier_that_serves_it(tenants, settings):
    a, _b = tenants
    MarketPolicy.objects.filter(market__code="UK").update(prepaid_return_label=True)
    ticket = approved_return(a, market_store(a, "UK"))
    error = refuse("ERR_LOG_205", labels.issue_return_label, ticket.pk)  # USPS does not serve the UK
    assert error.data == {"carrier": "usps"}
    settings.RETURN_LABEL_CARRIER = {"UK": "royal-mail"}
    refuse("ERR_LOG_205", labels.issue_return_label, ticket.pk)  # no number generator for it (yet)
    assert [r.error_code for r in label_rows(ticket)] == ["ERR_LOG_205", "ERR_LOG_205"]
    assert not ReturnLabel.objects.unscoped().exists()


def test_unknown_requests_are_not_found(db):
    refuse("ERR_NOT_FOUND", labels.issue_return_label, 10**9)
    refuse("ERR_NOT_FOUND", labels.issue_return_label, "nope")


# --- idempotency ---------------------------------------------------------------------------------------
def test_a_second_call_returns_the_same_label(tenants, us, media):
    a, _b = tenants
    ticket = approved_return(a, us)
    first = labels.issue_return_label(ticket.pk)
    second = labels.issue_return_label(ticket.public_id)
    assert second.pk == first.pk and second.file.name == first.file.name
    services.buyer_shipped(ticket.pk, carrier="usps", tracking_number=first.tracking_number)
    assert labels.issue_return_label(ticket.pk).pk == first.pk  # the state moved on: the label stays
    assert ReturnLabel.objects.unscoped().count() == 1
    assert len(label_rows(ticket)) == 1
    assert len([p for p in media.rglob("*.pdf")]) == 1


def test_nothing_is_left_behind_when_the_write_fails(tenants, us, media, monkeypatch):
    a, _b = tenants
    ticket = approved_return(a, us)

    def broken(*args, **kwargs):
        raise RuntimeError("log unavailable")

    monkeypatch.setattr(labels, "log_logistics", broken)
    with pytest.raises(RuntimeError):
        labels.issue_return_label(ticket.pk)
    assert not ReturnLabel.objects.unscoped().exists()
    assert list(media.rglob("*.pdf")) == []


# --- tracking number -----------------------------------------------------------------------------------
@pytest.mark.parametrize("serial", [0, 1, 42, 987654, 9_999_999_999, 12_345_678_901])
def test_generated_numbers_are_valid_usps_numbers(serial):
    number = labels.usps_tracking_number(serial)
    assert re.fullmatch(r"93\d{20}", number)
    parsed = get_tracking_number(number)
    assert parsed is not None and parsed.valid and parsed.courier.code == "usps"
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert get_tracking_number(wrong) is None or get_tracking_number(wrong).courier.code != "usps"


def test_the_check_digit_agrees_with_the_tracking_numbers_package():
    rng = random.Random(5)
    for _ in range(200):
        body = rng.choice(["92", "93", "94"]) + "".join(rng.choice("0123456789") for _ in range(19))
        digit = labels.usps_check_digit(body)
        valid = [d for d in range(10) if (t := get_tracking_number(f"{body}{d}")) and t.courier.code == "usps"]
        assert valid == [digit], body
    # The carrier registry's format hint shows 9400 1118 9922 3197 4284 90; its valid check digit is 7.
    assert labels.usps_check_digit("940011189922319742849") == 7


def test_mailer_id_and_service_type_come_from_settings(settings):
    settings.RETURN_LABEL_USPS_MAILER_ID = "123456"
    settings.RETURN_LABEL_USPS_SERVICE_TYPE = "612"
    number = labels.usps_tracking_number(77)
    assert number.startswith("93612123456") and get_tracking_number(number).valid
    settings.RETURN_LABEL_USPS_MAILER_ID = "12345"
    with pytest.raises(ValueError, match="6 digits"):
        labels.usps_tracking_number(77)


def test_the_labels_number_is_the_requests_serial(tenants, us):
    a, _b = tenants
    ticket = approved_return(a, us)
    label = labels.issue_return_label(ticket.pk)
    assert label.tracking_number == labels.usps_tracking_number(ticket.pk)
    assert get_tracking_number(label.tracking_number).courier.code == "usps"


# --- the PDF -------------------------------------------------------------------------------------------
def pdf_of(label) -> bytes:
    with label.file.open("rb") as handle:
        return handle.read()


def barcode_bars(data: bytes) -> list[tuple[float, float]]:
    """(x, width) of every filled rectangle the height of the barcode, in drawing order of x."""
    reader = PdfReader(io.BytesIO(data))
    content = ContentStream(reader.pages[0].get_contents(), reader)
    bars = []
    for operands, operator in content.operations:
        if operator == b"re":
            x, _y, w, h = (float(v) for v in operands)
            if abs(h - labels.BAR_HEIGHT) < 0.01:
                bars.append((x, w))
    return sorted(bars)


def element_widths(bars: list[tuple[float, float]]) -> tuple[list[int], float]:
    """Bars and the spaces between them, in modules of the narrowest bar."""
    unit = min(w for _x, w in bars)
    widths = []
    for i, (x, w) in enumerate(bars):
        widths.append(w / unit)
        if i + 1 < len(bars):
            widths.append((bars[i + 1][0] - x - w) / unit)
    rounded = [round(v) for v in widths]
    assert all(abs(v - r) < 0.02 for v, r in zip(widths, rounded, strict=True)), widths
    return rounded, unit


def decode_code128(widths: list[int]) -> str:
    """An independent Code 128 reader: symbols by the table above, checksum, code sets A/B/C."""
    assert "".join(map(str, widths[-7:])) == PATTERNS[106], "stop pattern"
    body = widths[:-7]
    assert len(body) % 6 == 0
    values = [PATTERNS.index("".join(map(str, body[i:i + 6]))) for i in range(0, len(body), 6)]
    assert all(sum(body[i:i + 6]) == 11 for i in range(0, len(body), 6))
    start, *data, check = values
    assert (start + sum(i * v for i, v in enumerate(data, start=1))) % 103 == check, "checksum"
    code = {103: "A", 104: "B", 105: "C"}[start]
    out = []
    for value in data:
        if code == "C" and value < 100:
            out.append(f"{value:02d}")
        elif value == 99:
            code = "C"
        elif value == 100:
            code = "B"
        elif value == 101:
            code = "A"
        elif code == "B":
            out.append(chr(value + 32))
        else:
            out.append(chr(value + 32) if value < 64 else chr(value - 64))
    return "".join(out)


def test_decoder_reads_a_known_symbol():
    assert len(PATTERNS) == 107 and len(set(PATTERNS)) == 107
    # "RL" in code set B: start B (104), R=50, L=44, check (104 + 50 + 2×44) % 103 = 36, stop.
    widths = [int(c) for v in (104, 50, 44, 36, 106) for c in PATTERNS[v]]
    assert decode_code128(widths) == "RL"


def test_the_pdf_is_a_4x6_label_with_everything_a_carrier_needs(tenants, us):
    a, _b = tenants
    ticket = approved_return(a, us, buyer_name="Alex Buyer")
    label = labels.issue_return_label(ticket.pk)
    reader = PdfReader(io.BytesIO(pdf_of(label)))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (288, 432)
    text = reader.pages[0].extract_text()
    flat = re.sub(r"\s+", "", text)
    assert label.tracking_number in flat
    assert " ".join(label.tracking_number[i:i + 4] for i in range(0, 22, 4)) in text
    for expected in ("USPS", "POSTAGE PREPAID", "SHIP TO", "Alex Buyer", ticket.return_id, ticket.order_id,
                     "Dana Lee", "West Coast Returns", "500 Harbor Blvd", "Oakland CA 94607", "UNITED STATES",
                     "+1 650-253-0000", "not stored by the seller"):
        assert expected in text, expected
    assert reader.metadata.title == f"Prepaid return label {label.tracking_number}"


def test_the_barcode_in_the_pdf_encodes_the_tracking_number(tenants, us):
    a, _b = tenants
    label = labels.issue_return_label(approved_return(a, us).pk)
    bars = barcode_bars(pdf_of(label))
    widths, unit = element_widths(bars)
    assert decode_code128(widths) == label.tracking_number
    # 22 digits in code set C: start + 11 pairs + check = 13 symbols of 3 bars, and the stop's 4 bars.
    assert len(bars) == 13 * 3 + 4
    assert unit == pytest.approx(labels.BAR_WIDTH, abs=1e-3)
    assert 13 <= unit / 72 * 1000 <= 21  # USPS X dimension, in mils
    # The same value drawn by reportlab on its own gives the same pattern.
    reference = Code128(label.tracking_number, barWidth=labels.BAR_WIDTH)
    reference._calculate()
    expected = [ord(c.lower()) - 96 for c in reference.decomposed]
    assert widths == expected


def test_the_buyer_without_a_name_is_shown_generically(tenants, us):
    a, _b = tenants
    label = labels.issue_return_label(approved_return(a, us, buyer_name="").pk)
    assert "TikTok Shop buyer" in PdfReader(io.BytesIO(pdf_of(label))).pages[0].extract_text()


def text_positions(data: bytes) -> list[tuple[float, str]]:
    """(baseline y on the page, text) of every text fragment."""
    found: list[tuple[float, str]] = []

    def visit(text, cm, tm, _font, _size):
        if text.strip():
            found.append((tm[5] * cm[3] + cm[5], text.strip()))

    PdfReader(io.BytesIO(data)).pages[0].extract_text(visitor_text=visit)
    return found


def test_long_and_foreign_text_never_runs_into_the_barcode(tenants):
    a, _b = tenants
    store = market_store(a, "US", address=False)
    addresses.create_return_address(
        a.actor(a.owner), store.pk, phone="(650) 253-0000", warehouse="W" * 100, contact_name="Nguyễn Đức Anh " * 6,
        line1="1234 Extraordinarily Long Industrial Parkway Name " * 4, line2="Building " * 22, city="C" * 100,
        region="R" * 100, postcode="9" * 20)
    ticket = approved_return(a, store, buyer_name="张三")
    label = labels.issue_return_label(ticket.pk)
    data = pdf_of(label)
    text = PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert "■" not in text and "Nguyen Duc Anh" in text and "TikTok Shop buyer" in text and "…" in text
    bottom = labels.MARGIN + 34
    caption_top = bottom + labels.BAR_HEIGHT + 8 + 8
    above = [(y, t) for y, t in text_positions(data) if y > bottom - 1]
    assert all(y >= caption_top + 4 for y, t in above if "TRACKING" not in t), above
    assert all(0 < y < 432 for y, _t in text_positions(data))
    widths, _unit = element_widths(barcode_bars(data))
    assert decode_code128(widths) == label.tracking_number


@pytest.mark.parametrize(("raw", "shown"), [
    ("Nguyễn Văn Đức", "Nguyen Van Duc"), ("José Müller-Øre", "Jose Muller-Ore"), ("張三", "??"), ("", ""),
    ("Straße — 5", "Strasse — 5"),
])
def test_printable_folds_to_what_the_label_fonts_can_show(raw, shown):
    assert labels.printable(raw) == shown


def test_the_label_is_rendered_in_english_whatever_the_active_language(tenants, us):
    from django.utils import translation

    a, _b = tenants
    ticket = approved_return(a, us)
    with translation.override("zh-hans"):
        label = labels.issue_return_label(ticket.pk)
    assert "POSTAGE PREPAID" in PdfReader(io.BytesIO(pdf_of(label))).pages[0].extract_text()


# --- downloads -----------------------------------------------------------------------------------------
def test_label_for_actor_is_scoped(tenants, us):
    a, b = tenants
    ticket = approved_return(a, us)
    label = labels.issue_return_label(ticket.pk)
    for user in (a.owner, a.viewer):
        assert labels.label_for_actor(a.actor(user), ticket.public_id) == label
    assert labels.label_for_actor(a.actor(a.owner), ticket.pk) == label
    for actor in (a.actor(a.outsider), a.actor(a.agent), b.actor(b.owner)):
        refuse("ERR_NOT_FOUND", labels.label_for_actor, actor, ticket.public_id)
    refuse("ERR_NOT_FOUND", labels.label_for_actor, a.actor(a.owner), "nope")
    without, _ = services.intake(us, platform_return())
    refuse("ERR_LOG_601", labels.label_for_actor, a.actor(a.owner), without.public_id)


# --- hook and task -------------------------------------------------------------------------------------
def test_connect_is_idempotent(subscribers):
    label_hooks.connect()
    label_hooks.connect()
    assert subscribers[events.STATE_CHANGED].count(label_hooks.on_state_changed) == 1


def test_an_approved_return_enqueues_the_task_after_commit(tenants, us, subscribers, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    a, _b = tenants
    queued: list = []
    monkeypatch.setattr(label_tasks.issue_return_label_task, "delay", queued.append)
    label_hooks.connect()
    refund_only, _ = services.intake(us, platform_return())
    rr, _ = services.intake(us, platform_return(return_type="RETURN_AND_REFUND"))
    with django_capture_on_commit_callbacks(execute=True):
        services.approve(owner_of(a), refund_only.pk, "APPROVE_REFUND")
        assert queued == []  # nothing before the commit
        services.approve(owner_of(a), rr.pk, "APPROVE_RETURN")
        assert queued == []
    assert queued == [rr.pk]


def test_the_task_swallows_only_err_log_601(tenants, us):
    a, _b = tenants
    ticket = approved_return(a, us)
    label_id = label_tasks.issue_return_label_task.apply(args=(ticket.pk,)).get()
    assert label_id == str(ReturnLabel.objects.unscoped().get(ticket=ticket).public_id)
    assert label_tasks.issue_return_label_task.apply(args=(ticket.pk,)).get() == label_id  # idempotent
    uk = approved_return(a, market_store(a, "UK"))
    assert label_tasks.issue_return_label_task.apply(args=(uk.pk,)).get() is None
    result = label_tasks.issue_return_label_task.apply(args=(10**9,))
    assert result.failed() and "ERR_NOT_FOUND" in str(result.result)  # anything else surfaces


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_hook_to_label_through_a_real_worker(subscribers, media):
    from tests.conftest import make_tenant

    with app.connection() as connection:
        connection.ensure_connection(max_retries=3)
    app.control.purge()  # messages left by an interrupted run would only slow this test down
    tenant = make_tenant("label-worker", n_stores=1)
    us_store = market_store(tenant, "US")
    uk_ticket, _ = services.intake(market_store(tenant, "UK"), platform_return(return_type="RETURN_AND_REFUND"))
    us_ticket, _ = services.intake(us_store, platform_return(return_type="RETURN_AND_REFUND"))
    label_hooks.connect()
    owner = owner_of(tenant)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        services.approve(owner, uk_ticket.pk, "APPROVE_RETURN")  # queued first, handled first
        services.approve(owner, us_ticket.pk, "APPROVE_RETURN")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ReturnLabel.objects.unscoped().filter(ticket=us_ticket).exists():
            time.sleep(0.2)
    label = ReturnLabel.objects.unscoped().get(ticket=us_ticket)
    assert get_tracking_number(label.tracking_number).courier.code == "usps"
    assert (media / label.file.name).is_file()
    [row] = label_rows(us_ticket)
    assert row.ok and row.request_id.startswith("task-")
    assert not ReturnLabel.objects.unscoped().filter(ticket=uk_ticket).exists()
    assert label_rows(uk_ticket) == []
