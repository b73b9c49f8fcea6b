"""售后分析 in a real browser: the dashboard rendering with data (charts drawn, figures and benchmarks shown) in
English and Simplified Chinese, the window and store picked with the keyboard, and the CSV download."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, Compensation, OrderVolume, ServiceScoreEntry, SlaBreach
from stores.models import Store
from tests.conftest import platform_return

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

REASONS = [  # (key, text, product, category, how many)
    ("colour", "色差 / colour difference", "Cotton T-shirt", "apparel", 9),
    ("size", "尺寸不符 / size mismatch", "Cotton T-shirt", "apparel", 7),
    ("no_instructions", "组装说明缺失 / missing assembly instructions", "Bamboo shelf", "home", 6),
    ("damage", "物流破损 / damaged in transit", "Bamboo shelf", "home", 4),
    ("damage", "物流破损 / damaged in transit", "USB-C cable", "3c_accessories", 3),
    ("not_working", "无法充电 / does not charge", "USB-C cable", "3c_accessories", 2),
    ("changed_mind", "不想要了 / changed mind", "Cotton T-shirt", "apparel", 2),
    ("late", "发货太慢 / shipped too late", "Bamboo shelf", "home", 1),
]


def seed(tenant) -> Store:
    """A month of one store's after-sales: reasons per product, volume, handling times, breaches, scores."""
    now = timezone.now()
    store = tenant.stores[0]
    n = 0
    for key, text, product, category, count in REASONS:
        for _i in range(count):
            n += 1
            item = {"return_line_item_id": "L1", "order_line_item_id": "OL1", "sku_id": f"SKU-{product[:3]}",
                    "seller_sku": product[:3].upper(), "product_name": product, "category": category,
                    "refund_amount": {"currency": "USD", "refund_total": "10.00"}}
            ticket, _created = aftersales_services.intake(store, platform_return(
                return_reason=key, return_reason_text=text, return_line_items=[item], buyer_user_id=f"b{n}"))
            created = now - dt.timedelta(days=n % 27 + 1, hours=n)
            fields = {"platform_created_at": created}
            if n % 3:
                fields.update(state="completed", state_changed_at=created + dt.timedelta(hours=20 + n * 2),
                              refunded_amount=Decimal("10"))
            if n % 11 == 0:
                fields["arbitration_status"] = "IN_PROGRESS"
            AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)
            if n in (3, 9, 15, 21):
                at = now - dt.timedelta(days=24 - n)
                breach = SlaBreach.objects.create(agency=tenant.agency, store=store, ticket=ticket,
                                                  kind="first_response", due_at=at, created_at=at)
                Compensation.objects.create(agency=tenant.agency, store=store, ticket=ticket, breach=breach,
                                            amount=Decimal("4.00"), currency=store.market.currency,
                                            status="granted", created_at=at)
                ServiceScoreEntry.objects.create(agency=tenant.agency, store=store, breach=breach,
                                                 delta=Decimal("-0.10"), created_at=at,
                                                 score_after=Decimal("5.00") - n * Decimal("0.02"))
    Store.objects.filter(pk=store.pk).update(service_score=Decimal("4.58"))
    for days_back in range(30):
        day = (now - dt.timedelta(days=days_back)).date()
        OrderVolume.objects.create(agency=tenant.agency, store=store, day=day, category="apparel", units_sold=6)
        OrderVolume.objects.create(agency=tenant.agency, store=store, day=day, category="3c_accessories",
                                   units_sold=2)  # 5 of 60 asked back: above the 5.8 % benchmark
    return store


def test_the_dashboard_rendering_with_data(page, live_server, tenants, login, shot):
    a, _b = tenants
    store = seed(a)
    login(page, live_server, a.owner)
    page.get_by_role("link", name="After-sales analytics").click()
    expect(page).to_have_title("After-sales analytics")
    expect(page.locator("#dashboard")).to_have_attribute("data-days", "7")

    # The keyboard picks the window and the store: radio, select, then the button.
    page.get_by_label("Last 30 days").check()
    page.get_by_label("Store", exact=True).select_option(str(store.public_id))
    page.get_by_label("Store", exact=True).press("Tab")
    expect(page.get_by_role("button", name="Show")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#dashboard")).to_have_attribute("data-days", "30")
    expect(page.locator("#dashboard")).to_have_attribute("data-requests", "34")

    expect(page.locator("#kpi-return_rate")).to_have_attribute("data-state", "bad")
    expect(page.locator("#kpi-return_rate .kpi-bench")).to_contain_text("apparel ≤ 12.4 %")
    expect(page.locator("#kpi-completed_within_72h .kpi-bench")).to_have_text("Benchmark 94.7 %")
    expect(page.locator("#kpi-compensation .kpi-value")).to_contain_text(f"{store.market.currency} 16.00")
    for chart in ("bar-chart", "line-chart", "word-cloud"):
        svg = page.locator(f"svg.{chart}")
        expect(svg).to_be_visible()
        expect(svg).to_have_attribute("role", "img")
    assert page.locator("svg.word-cloud text.word").count() == 7  # every reason key once
    cloud = page.locator("svg.word-cloud text.word").first
    expect(cloud).to_have_text(re.compile(r"^色差 / colour difference色差"))  # the word, then its tooltip
    # The reason that dominates one product stands out in the table.
    standout = page.locator("#reason-products td.standout")
    expect(standout.first).to_be_visible()
    row = page.locator("#reason-products tr", has_text="组装说明缺失")
    expect(row.locator("td.standout")).to_contain_text("54.5 %")  # 6 of the shelf's 11 requests
    # Chinese glyphs in the chart are real text with a width (not missing-glyph boxes of zero size).
    box = cloud.bounding_box()
    assert box is not None and box["width"] > 40
    shot(page, "en")

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    data = Path(download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and "组装说明缺失".encode() in data

    page.get_by_label("Language").select_option(label="简体中文")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.locator("#dashboard")).to_have_attribute("data-days", "30")  # the query survives the switch
    expect(page.locator("svg.line-chart")).to_be_visible()
    expect(page.locator("svg.word-cloud text.word").first).to_have_text(re.compile("色差"))
    shot(page, "zh-hans")


def test_an_empty_window_says_no_data(page, live_server, tenants, login, shot):
    a, _b = tenants
    login(page, live_server, a.viewer)
    page.goto(f"{live_server.url}/analytics/")
    expect(page.locator("#dashboard-empty")).to_contain_text("No after-sales requests in the last 7 days.")
    expect(page.locator("#kpi-proactive_refund_rate .kpi-value")).to_contain_text("—")
    expect(page.locator("svg.word-cloud")).to_have_count(0)
    shot(page, "empty")
