"""The 售后分析 page and its CSV: figures with units and benchmarks, the honest "no data" state, coded refusals,
well-formed escaped SVG charts, a word cloud without overlaps, a CSV of what is shown (BOM, formula guard,
currencies kept apart), a constant number of queries, and Chinese."""

from __future__ import annotations

import csv
import io
import itertools
import re
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aftersales.models import OrderVolume
from portal import charts
from portal.views import SESSION_STORE_KEY
from stores.models import Store
from tests.conftest import make_tenant
from tests.factories import UserFactory
from tests.test_analytics_dashboard import NOW, breach, make

SVG = re.compile(r"<svg\b.*?</svg>", re.S)
NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def get(client, query: str = "", status: int = 200) -> str:
    response = client.get(f"/analytics/{query}")
    assert response.status_code == status, response.content.decode()[:2000]
    return response.content.decode()


def kpi(text: str, slug: str) -> str:
    start = text.index(f'id="kpi-{slug}"')
    return text[text.rindex("<div", 0, start):text.index("</div>", start)]


def svgs(text: str) -> dict[str, ET.Element]:
    """Every inline chart, parsed as XML (so a stray '<' or '&' from data fails here), by its class."""
    found = {}
    for raw in SVG.findall(text):
        root = ET.fromstring(raw)
        found[root.get("class").split()[1]] = root
    return found


def week(tenant):
    """Store 0: apparel returns above the 12.4 % benchmark, a missed deadline with compensation in GBP and MYR."""
    store = tenant.stores[0]
    tickets = [make(store, reason="colour", text="色差") for _i in range(3)]
    tickets.append(make(store, reason="formula", text='=HYPERLINK("http://x") <b>&</b>', product="Lamp"))
    OrderVolume.objects.create(agency=tenant.agency, store=store, day=NOW.date(), category="apparel",
                               units_sold=20)
    breach(tickets[0], amount="5.00", currency="GBP", score="4.50")
    breach(tickets[1], amount="20.00", currency="MYR", score="4.00")
    Store.objects.filter(pk=store.pk).update(service_score=Decimal("4.00"))  # as the SLA sweep leaves it
    return tickets


# --- access ------------------------------------------------------------------------------------------------
def test_requires_login_and_an_agency(client, db):
    response = client.get("/analytics/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    client.force_login(UserFactory(username="drifter"))
    assert "ERR_AUTH_004" in get(client, status=403)
    response = client.get("/analytics/export.csv")
    assert response.status_code == 403


def test_nav_links_to_the_dashboard(as_user, tenants):
    a, _b = tenants
    assert 'href="/analytics/"' in as_user(a.owner).get("/").content.decode()


def test_agent_without_view_analytics_gets_the_coded_refusal_with_its_hint(as_user, tenants):
    a, _b = tenants
    text = get(as_user(a.agent), status=403)
    assert 'data-code="ERR_PERM_005"' in text and "View analytics" in text  # the role setting to tick
    assert 'id="dashboard-csv"' not in text and "<svg" not in text
    assert text.count("<option") == 1 + 2  # "All stores" only (+ the language select's two)
    text = get(as_user(a.agent), f"?store={a.stores[0].public_id}", status=403)
    assert 'data-code="ERR_PERM_005"' in text


@pytest.mark.parametrize(("query", "status", "error"), [
    ("?days=14", 400, "ERR_VALIDATION"), ("?days=week", 400, "ERR_VALIDATION"),
    ("?store=not-a-store", 404, "ERR_NOT_FOUND")])
def test_bad_parameters_are_coded(as_user, tenants, query, status, error):
    a, _b = tenants
    assert f'data-code="{error}"' in get(as_user(a.owner), query, status=status)
    assert as_user(a.owner).get(f"/analytics/export.csv{query}").status_code == status


def test_other_agencys_store_is_not_found(as_user, tenants):
    a, b = tenants
    text = get(as_user(a.owner), f"?store={b.stores[0].public_id}", status=404)
    assert 'data-code="ERR_NOT_FOUND"' in text and b.stores[0].name not in text


def test_select_offers_only_stores_with_view_analytics(as_user, tenants):
    a, b = tenants
    text = get(as_user(a.viewer))
    for store in a.stores:
        assert f'value="{store.public_id}"' in text
    assert str(b.stores[0].public_id) not in text


def test_the_switchers_store_is_the_default(as_user, tenants):
    a, _b = tenants
    week(a)
    make(a.stores[1], reason="damage", text="物流破损")
    client = as_user(a.owner)
    session = client.session
    session[SESSION_STORE_KEY] = str(a.stores[1].public_id)
    session.save()
    text = get(client)
    assert f'<option value="{a.stores[1].public_id}" selected>' in text
    assert 'class="kpi-value">1<' in kpi(text, "requests") and "物流破损" in text and "色差" not in text
    text = get(client, "?store=&days=30")  # the select's "all stores" wins over the switcher
    assert 'class="kpi-value">5<' in kpi(text, "requests")


# --- the page ------------------------------------------------------------------------------------------
def test_figures_with_units_benchmarks_and_red_when_worse(as_user, tenants):
    a, _b = tenants
    week(a)
    text = get(as_user(a.owner), f"?days=7&store={a.stores[0].public_id}")
    rate = kpi(text, "return_rate")
    assert "20.0 %" in rate and 'data-state="bad"' in rate and "12.4 %" in rate  # 4 of 20, benchmark ≤ 12.4
    assert "above the benchmark: Apparel" in rate  # which category is worse
    assert "No data" not in text and 'id="dashboard-empty"' not in text
    hours = kpi(text, "avg_handling_hours")
    assert 'data-state="none"' in hours and "—" in hours and "28.6 h" in hours and "52.3 h" in hours
    assert "Benchmark 94.7 %" in kpi(text, "completed_within_72h")
    assert '<tr class="worse"><th scope="row">Apparel</th>' in text
    compensation = kpi(text, "compensation")
    assert "GBP 5.00" in compensation and "MYR 20.00" in compensation  # never added together
    assert 'class="kpi-value">2 ' in kpi(text, "breaches") and 'data-state="bad"' in kpi(text, "breaches")
    assert "worse than the benchmark" not in kpi(text, "breaches") + compensation  # no benchmark for these
    # The score fell below the 4.8 line: the store's row says so.
    assert "below the line" in text


def test_counts_agree_with_their_number(as_user, db):
    """One of everything: "1 unit sold", "1 finished request", "Average of 1 store" — never "1 stores"."""
    solo = make_tenant("solo", n_stores=1)
    store = solo.stores[0]
    ticket = make(store, state="completed", state_changed_at=NOW)
    OrderVolume.objects.create(agency=solo.agency, store=store, day=NOW.date(), category="apparel", units_sold=1)
    breach(ticket, amount="5.00", currency="GBP", score="4.50")
    text = get(as_user(solo.owner))
    assert "1 unit sold" in kpi(text, "return_rate")
    assert "0 of 1 request<" in kpi(text, "platform_intervention_rate")
    assert "1 of 1 request<" in kpi(text, "completed_within_72h")
    assert "1 finished request<" in kpi(text, "avg_handling_hours")
    assert "1 payment in GBP" in kpi(text, "compensation")
    assert "Average of 1 store:" in text
    assert not re.search(r"\b1 (units|stores|requests|finished requests|payments)\b", text)
    make(store)
    text = get(as_user(solo.owner))
    assert "0 of 2 requests<" in kpi(text, "platform_intervention_rate")


def test_charts_are_well_formed_labelled_escaped_svg(as_user, tenants):
    a, _b = tenants
    week(a)
    text = get(as_user(a.owner), f"?store={a.stores[0].public_id}")
    found = svgs(text)
    assert set(found) == {"bar-chart", "line-chart", "word-cloud"}
    for root in found.values():
        assert root.get("role") == "img" and root.get("aria-label")
        assert root.find(f"{NS}title").text == root.get("aria-label")
        assert "WenQuanYi Micro Hei" in root.get("font-family") and "Microsoft YaHei" in root.get("font-family")
    bar = found["bar-chart"]
    [worse] = [r for r in bar.iter(f"{NS}rect") if "worse" in r.get("class")]
    assert worse.get("fill") == charts.BAD
    assert bar.findall(f".//{NS}line[@class='benchmark']")
    line = found["line-chart"]
    assert any("4.80" in (t.text or "") for t in line.iter(f"{NS}text"))
    assert line.findall(f".//{NS}line[@class='threshold']")
    words = {t.text: t.find(f"{NS}title").text for t in found["word-cloud"].iter(f"{NS}text")}
    assert words["色差"] == "色差: 3 (75.0 %)"
    # A long reason is cut in the cloud, its tooltip holds it whole; escaped, it parses back intact.
    assert words['=HYPERLINK("http://x") …'] == '=HYPERLINK("http://x") <b>&</b>: 1 (25.0 %)'
    assert "<b>&</b>" not in text  # the reason never reaches the page unescaped


def test_reason_by_product_table_marks_the_dominant_reason(as_user, tenants):
    a, _b = tenants
    for i in range(8):
        make(a.stores[0], product="Shelf", reason="no_instructions" if i < 3 else f"r{i}",
             text="组装说明缺失" if i < 3 else f"Other {i}")
    text = get(as_user(a.owner))
    table = text[text.index('id="reason-products"'):]
    row = table[table.index("组装说明缺失"):]
    row = row[:row.index("</tr>")]
    assert "standout" in row and "37.5 %" in row and ">3<" in row


def test_no_data_is_not_a_quiet_week(as_user, tenants):
    a, _b = tenants
    text = get(as_user(a.owner))
    assert 'id="dashboard-empty"' in text and "No after-sales requests in the last 7 days." in text
    for slug in ("return_rate", "proactive_refund_rate", "platform_intervention_rate", "avg_handling_hours",
                 "completed_within_72h"):
        block = kpi(text, slug)
        assert 'data-state="none"' in block and "0.0 %" not in block and "—" in block
    assert "word-cloud" not in text and "bar-chart" not in text
    assert "line-chart" in text  # the scores exist without requests
    text = get(as_user(a.outsider))  # no store shared: said, no figures invented
    assert "No store is shared with you yet." in text and "line-chart" not in text


def test_page_renders_in_chinese(as_user, tenants, settings):
    a, _b = tenants
    week(a)
    client = as_user(a.owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    text = get(client, "?days=30")
    assert '<html lang="zh-hans">' in text and "色差" in text and len(svgs(text)) == 3


# --- the CSV -------------------------------------------------------------------------------------------
def read_csv(client, query: str = "") -> tuple[bytes, list[list[str]]]:
    response = client.get(f"/analytics/export.csv{query}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="aftersales-analytics-')
    raw = response.content
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def section(rows: list[list[str]], title: str) -> list[list[str]]:
    start = rows.index([title]) + 2
    end = next((i for i in range(start, len(rows)) if rows[i] == []), len(rows))
    return rows[start:end]


def test_csv_holds_what_the_page_shows(as_user, tenants):
    a, _b = tenants
    week(a)
    client = as_user(a.owner)
    query = f"?days=7&store={a.stores[0].public_id}"
    raw, rows = read_csv(client, query)
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens the Chinese correctly
    text = get(client, query)
    figures = {row[0]: row for row in section(rows, "Headline figures")}
    assert figures["Return rate (退货率)"][1:4] == ["20.0 %", kpi(text, "return_rate").split(
        'class="kpi-bench">')[1].split("<")[0], "yes"]
    assert figures["Compensation paid (自动赔付)"][1] == "GBP 5.00 · MYR 20.00"
    assert figures["Average handling time"][3] == ""  # no data: neither worse nor better
    assert section(rows, "Return rate by category")[0] == ["Apparel", "4", "4", "20", "20.0", "12.4", "yes"]
    assert section(rows, "Compensation (自动赔付)") == [["Paid", "GBP", "5.00", "1"], ["Paid", "MYR", "20.00", "1"]]
    reasons = section(rows, "Return reasons")
    assert reasons[0] == ["colour", "色差", "3", "75.0"]
    assert reasons[1][1] == "'" + '=HYPERLINK("http://x") <b>&</b>'  # formula guard
    trend = section(rows, "Service score per day (store time)")
    assert len(trend) == 8 and trend[-1][1] == "4.00"
    products = section(rows, "Reasons by product")
    assert ["色差", "Cotton T-shirt", "3", "100.0", "yes"] in products


def test_csv_in_chinese(as_user, tenants, settings):
    a, _b = tenants
    week(a)
    client = as_user(a.owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    _raw, rows = read_csv(client)
    assert ["colour", "色差", "3", "75.0"] in rows


# --- cost --------------------------------------------------------------------------------------------
def test_page_and_csv_cost_a_constant_number_of_queries(as_user, tenants):
    a, _b = tenants
    client = as_user(a.viewer)
    week(a)
    get(client)  # warm up (session, content types, translations)

    def cost(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    small = cost("/analytics/?days=30"), cost("/analytics/export.csv?days=30")
    for i in range(30):
        ticket = make(a.stores[i % 3], reason=f"r{i % 9}", text=f"理由 {i % 9}", product=f"P{i % 8}")
        breach(ticket, amount="2.00", currency="USD" if i % 2 else "SGD", score="4.60")
    for i in range(5):
        Store.objects.create(agency=a.agency, market=a.stores[1].market, name=f"more {i}", shop_id=f"more-{i}")
    large = cost("/analytics/?days=30"), cost("/analytics/export.csv?days=30")
    assert small == large and large[0] <= 16, (small, large)


# --- the word cloud layout --------------------------------------------------------------------------------
WORDS = [charts.Word(text, count) for text, count in [
    ("色差", 40), ("尺寸不符", 31), ("物流破损", 22), ("组装说明缺失", 18), ("Size mismatch", 15),
    ("Colour difference", 12), ("Damaged in transit", 10), ("Wrong item sent", 9), ("不想要了", 8),
    ("Missing parts / 缺少配件", 7), ("质量问题", 6), ("Late delivery", 5), ("描述不符", 5), ("A", 4),
    ("Quality not as expected by the buyer at all", 4), ("假货", 3), ("Not as described", 3), ("少件", 2),
    ("Changed mind", 2), ("包装破损", 2), ("Wrong colour", 1), ("Fit too small", 1), ("发错货", 1),
    ("Broken zipper", 1), ("Stained", 1), ("气味难闻", 1), ("No invoice", 1), ("Too late", 1), ("掉色", 1),
    ("Other", 1)]]


def test_word_cloud_layout_never_overlaps_and_stays_inside():
    placed = charts.layout_cloud(WORDS, width=620, height=280)
    assert len(placed) >= 25
    for item in placed:
        assert item.x >= 0 and item.y >= 0 and item.x + item.w <= 620 and item.y + item.h <= 280
        assert item.w >= charts.text_width(item.word.text, item.size)
    for one, two in itertools.combinations(placed, 2):
        assert not one.overlaps(two, gap=0), (one.word.text, two.word.text)
    assert placed[0].word.text == "色差" and placed[0].size == max(p.size for p in placed)
    assert placed[0].size > placed[-1].size


def test_word_cloud_is_deterministic_and_escaped():
    assert charts.layout_cloud(WORDS) == charts.layout_cloud(list(reversed(WORDS)))
    svg = charts.word_cloud([charts.Word("<script>&", 3, 'a "quoted" <title>')], label="Reasons & <co>")
    root = ET.fromstring(str(svg))
    assert root.get("aria-label") == "Reasons & <co>"
    word = root.find(f"{NS}text")
    assert word.text == "<script>&" and word.find(f"{NS}title").text == 'a "quoted" <title>'
    assert charts.layout_cloud([]) == []


def test_bar_and_line_charts_parse_with_hostile_text_and_no_values():
    bars = [charts.Bar("<Apparel & co>", 20.0, "20.0 %", 12.4, "≤ 12.4 %", worse=True),
            charts.Bar("Home", None, "no units sold sent")]
    root = ET.fromstring(str(charts.bar_chart(bars, label="x < y")))
    assert [r.get("class") for r in root.iter(f"{NS}rect")] == ["bar worse"]
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "<Apparel & co>" in texts and "no units sold sent" in texts
    line = ET.fromstring(str(charts.line_chart([("05-01", 5.0)], label="s", series_label="<a>",
                                               thresholds=[charts.Threshold(4.8, "4.80 & down")])))
    assert len(line.findall(f"{NS}circle")) == 1
    assert Decimal("4.8") == Decimal(str(charts.Threshold(4.8, "").value))
