"""The portal's queue (售后单队列): scoping, the store switcher, filters, keyset pages, SLA badges, market time
zones, money with its currency, a constant number of queries, and both languages."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest
from stores.models import Market
from tests.conftest import platform_return
from tests.factories import StoreFactory, UserFactory

ROW = re.compile(r'<tr class="ticket" data-return-id="([^"]+)"')
NEXT = re.compile(r'<a rel="next" href="([^"]+)"')
PREV = re.compile(r'<a rel="prev" href="([^"]+)"')


def make(store, **fields) -> AfterSalesRequest:
    """A request through intake (as the platform sync creates them), then fields set as a test needs."""
    overrides = {k: fields.pop(k) for k in ("return_id", "order_id", "buyer_name", "buyer_user_id") if k in fields}
    ticket, created = aftersales_services.intake(store, platform_return(**overrides))
    assert created
    if fields:
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def add_tracking(ticket, number: str) -> None:
    from logistics.models import Carrier, ReturnShipment

    ReturnShipment.objects.create(agency_id=ticket.agency_id, ticket=ticket, carrier=Carrier.objects.get(code="other"),
                                  tracking_number=number, format_check="unverified", registered_at=timezone.now())


def page(client, query: str = "", **extra) -> str:
    response = client.get(f"/queue/{query}", **extra)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def rows(text: str) -> list[str]:
    return ROW.findall(text)


def row_html(text: str, return_id: str) -> str:
    start = text.index(f'data-return-id="{return_id}"')
    return text[start:text.index("</tr>", start)]


def badge(text: str, return_id: str) -> str | None:
    found = re.search(r'class="sla-badge (\w+)"', row_html(text, return_id))
    return found.group(1) if found else None


def link(pattern: re.Pattern, text: str) -> str | None:
    found = pattern.search(text)
    return html.unescape(found.group(1)) if found else None


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def in_hours(hours: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(hours=hours)


# --- access ------------------------------------------------------------------------------------------
def test_queue_requires_login(client, db):
    response = client.get("/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_member_of_no_agency_sees_the_coded_error(client, db):
    client.force_login(UserFactory(username="drifter"))
    response = client.get("/queue/")
    assert response.status_code == 403 and "ERR_AUTH_004" in response.content.decode()


def test_home_links_to_the_queue(as_user, tenants):
    a, _b = tenants
    assert 'href="/queue/"' in as_user(a.owner).get("/").content.decode()


def test_page_hooks_and_accessibility(as_user, tenants):
    a, _b = tenants
    make(a.stores[0], due_at=in_hours(2))
    text = page(as_user(a.owner))
    form = text[text.index('<form method="get" id="queue-filters"'):]
    form = form[:form.index("</form>")]
    for name in ("store", "market", "type", "status", "breached", "stalled", "assigned_to", "due_within", "q"):
        assert f'name="{name}"' in form, name
        assert f'<label for="id_{name}"' in form, name  # every field is labelled
    # The filter form comes before the table, the switcher and the saved filters.
    assert text.index('id="queue-filters"') < text.index('id="store-switcher"') < text.index('id="queue"')
    assert text.index("<main>") < text.index('id="queue-filters"')
    main = text[text.index("<main>"):]
    assert re.search(r"<(a|button|input|select)\b", main).start() > main.index('id="queue-filters"')
    assert '<table id="queue"' in text and text.count('<th scope="col"') == 10
    assert "portal/queue.js" in text and 'id="saved-filters"' in text
    assert f'data-storage-key="tower.queue.savedFilters.{a.owner.pk}"' in text
    assert ":focus-visible" in as_user(a.owner).get("/static/portal/portal.css").getvalue().decode()


# --- order and scope ---------------------------------------------------------------------------------
def test_soonest_deadline_first_and_no_deadline_last(as_user, tenants):
    a, _b = tenants
    store = a.stores[0]
    none1 = make(store, due_at=None)
    late = make(store, due_at=in_hours(5))
    tie = in_hours(1)
    tie1 = make(store, due_at=tie)
    past = make(store, due_at=in_hours(-1))
    tie2 = make(store, due_at=tie)
    none2 = make(store, due_at=None)
    make(store, due_at=in_hours(0.5), state="closed")  # finished requests are not in the queue
    make(store, due_at=in_hours(0.5), state="completed")
    got = rows(page(as_user(a.owner)))
    assert got == [t.return_id for t in (past, tie1, tie2, late, none1, none2)]


def test_only_visible_stores(as_user, tenants):
    a, b = tenants
    mine = [make(s) for s in a.stores]
    theirs = [make(s) for s in b.stores]
    agent_rows = rows(page(as_user(a.agent)))
    assert sorted(agent_rows) == sorted(t.return_id for t in mine[:2])  # store 2 is not granted
    owner_rows = rows(page(as_user(a.owner)))
    assert sorted(owner_rows) == sorted(t.return_id for t in mine)
    assert not set(owner_rows) & {t.return_id for t in theirs}
    assert not rows(page(as_user(a.outsider)))  # a member without any role sees nothing
    other = page(as_user(b.viewer))
    assert sorted(rows(other)) == sorted(t.return_id for t in theirs)
    assert not any(s.name in other for s in a.stores)


def test_store_switcher_narrows_the_queue_and_survives_navigation(as_user, tenants):
    a, b = tenants
    t0, t1 = make(a.stores[0]), make(a.stores[1])
    client = as_user(a.owner)
    client.get(f"/?store={a.stores[1].public_id}")  # chosen on home
    text = page(client)
    assert rows(text) == [t1.return_id]
    assert f"{a.stores[1].name} · {a.stores[1].market.code}</strong>" in text
    assert f'value="{a.stores[1].public_id}" selected' in text
    # The store filter offers only the stores in view.
    filter_form = text[text.index('id="queue-filters"'):text.index("</form>")]
    assert a.stores[0].name not in filter_form
    # Switching from the queue: back to the queue, filters kept, cursor dropped.
    response = client.post("/switch-store/", {"current_store": "", "next": "/queue/?q=x"})
    assert response.status_code == 302 and response["Location"] == "/queue/?q=x"
    text = page(client)
    assert sorted(rows(text)) == sorted([t0.return_id, t1.return_id])
    assert "<strong>All stores</strong>" in text
    assert f'value="{a.stores[1].public_id}" selected' not in client.get("/").content.decode()  # home agrees
    # Another agency's store is never remembered, and the way back never leaves the site.
    response = client.post("/switch-store/", {"current_store": str(b.stores[0].public_id),
                                              "next": "https://evil.example.com/"})
    assert response["Location"] == "/"
    assert sorted(rows(page(client))) == sorted([t0.return_id, t1.return_id])
    assert client.get("/switch-store/").status_code == 405


def test_switcher_store_no_longer_visible_means_all_stores(as_user, tenants):
    a, _b = tenants
    t0 = make(a.stores[0])
    client = as_user(a.agent)
    session = client.session
    session["portal.current_store"] = str(a.stores[2].public_id)  # not granted to the agent
    session.save()
    text = page(client)
    assert rows(text) == [t0.return_id] and a.stores[2].name not in text


# --- filters -----------------------------------------------------------------------------------------
@pytest.fixture
def mix(tenants):
    """Three requests, one per store (markets AE, CA, ID), each matching different filters."""
    a, b = tenants
    s0, s1, s2 = a.stores
    first = make(s0, return_id="RET-A", order_id="ORD-A", buyer_name="Zhang Wei", type="refund_only",
                 state="pending_review", due_at=in_hours(0.5))
    second = make(s1, return_id="RET-B", order_id="ORD-B", type="return_and_refund", state="awaiting_return",
                  due_at=in_hours(3), breached_at=in_hours(-2), stalled_at=in_hours(-1), assignee=a.owner)
    add_tracking(second, "1Z999AA10123456784")
    third = make(s2, return_id="RET-C", order_id="ORD-C", type="exchange", state="in_arbitration",
                 due_at=in_hours(30), assignee=a.agent)
    make(b.stores[0], return_id="RET-A", order_id="ORD-A", buyer_name="Zhang Wei")  # the other agency's twin
    return a, {"A": first, "B": second, "C": third}


@pytest.mark.parametrize("query,expected", [
    ("", "ABC"),
    ("?breached=true", "B"),
    ("?breached=false", "AC"),
    ("?stalled=true", "B"),
    ("?stalled=false", "AC"),
    ("?assigned_to=me", "B"),
    ("?assigned_to=none", "A"),
    ("?due_within=1h", "A"),
    ("?due_within=4h", "AB"),
    ("?due_within=24h", "AB"),
    ("?q=ORD-A", "A"),
    ("?q=RET-B", "B"),
    ("?q=1z999aa10123456784", "B"),  # tracking numbers are matched normalised
    ("?q=zhang", "A"),  # buyer name, contains
    ("?q=buyer-1", "ABC"),  # buyer id
    ("?type=exchange", "C"),
    ("?type=refund_only", "A"),
    ("?status=awaiting_return", "B"),
    ("?status=in_arbitration", "C"),
    ("?market=ca", "B"),
    ("?market=ID", "C"),
    ("?due_within=4h&breached=false", "A"),
    ("?q=&store=&market=&type=&status=&due_within=&breached=&stalled=&assigned_to=", "ABC"),  # an empty form
])
def test_each_filter_narrows(as_user, mix, query, expected):
    a, tickets = mix
    text = page(as_user(a.owner), query)
    assert rows(text) == [tickets[k].return_id for k in expected]
    assert "ERR_VALIDATION" not in text


def test_store_filter(as_user, mix):
    a, _tickets = mix
    assert rows(page(as_user(a.owner), f"?store={a.stores[1].public_id}")) == ["RET-B"]


def test_assigned_to_me_is_the_signed_in_user(as_user, mix):
    a, _tickets = mix
    assert rows(page(as_user(a.agent), "?assigned_to=me")) == []  # the agent's request is in an ungranted store
    assert rows(page(as_user(a.agent), "?assigned_to=none")) == ["RET-A"]


@pytest.mark.parametrize("who", ["owner", "agent"])
def test_store_the_user_cannot_see_shows_nothing_of_it(as_user, mix, tenants, who):
    a, b = tenants
    hidden = b.stores[0] if who == "owner" else a.stores[2]
    text = page(as_user(getattr(a, who)), f"?store={hidden.public_id}")
    assert rows(text) == []
    assert hidden.name not in text and "RET-C" not in text
    assert "ERR_VALIDATION" not in text  # no error: exactly what a store id that does not exist gives
    unknown = page(as_user(getattr(a, who)), "?store=00000000-0000-4000-8000-000000000000")
    assert rows(unknown) == [] and "ERR_VALIDATION" not in unknown


@pytest.mark.parametrize("query,field", [
    ("?store=not-a-uuid", "store"),
    ("?type=bogus", "type"),
    ("?status=closed", "status"),  # only open states are offered
    ("?status=pending_review,awaiting_buyer", "status"),
    ("?breached=maybe", "breached"),
    ("?stalled=2", "stalled"),
    ("?due_within=2h", "due_within"),
    ("?market=ZZ", "market"),
    ("?assigned_to=someone", "assigned_to"),
    ("?q=" + "x" * 201, "q"),
    ("?q=%00", "q"),
    ("?store=%00", "store"),
])
def test_bad_values_show_the_form_error_and_no_rows(as_user, mix, query, field):
    a, _tickets = mix
    text = page(as_user(a.owner), query)
    assert "ERR_VALIDATION" in text and 'role="alert"' in text
    assert f'id="id_{field}_error"' in text  # the message sits at the field (and is announced with it)
    assert rows(text) == []
    assert not NEXT.search(text) and not PREV.search(text)


# --- keyset pages ------------------------------------------------------------------------------------
def test_keyset_pages_return_each_request_once_in_order(as_user, tenants):
    a, _b = tenants
    base = timezone.now() + dt.timedelta(hours=1)
    made = []
    for i in range(120):
        # Ties on due_at (three per minute) and 20 without a deadline: the id breaks ties across pages.
        due = base + dt.timedelta(minutes=i // 3) if i < 100 else None
        made.append(make(a.stores[i % 2], due_at=due))
    expected = [t.return_id for t in sorted(made, key=lambda t: (t.due_at is None, t.due_at or base, t.pk))]
    client = as_user(a.owner)

    seen, pages, url = [], [], "/queue/"
    while url:
        text = client.get(url if url.startswith("/") else f"/queue/{url}").content.decode()
        pages.append(text)
        seen += rows(text)
        url = link(NEXT, text)
    assert [len(rows(p)) for p in pages] == [50, 50, 20]
    assert seen == expected and len(set(seen)) == 120
    assert link(PREV, pages[0]) is None
    # Previous from the last page is exactly the second page; from the second, the first.
    back = page(client, link(PREV, pages[2]))
    assert rows(back) == rows(pages[1])
    first = page(client, link(PREV, back))
    assert rows(first) == rows(pages[0]) and link(PREV, first) is None
    assert link(NEXT, first) is not None
    # Filters travel with the cursor.
    text = page(client, f"?store={a.stores[0].public_id}")
    following = page(client, link(NEXT, text))
    assert f"store={a.stores[0].public_id}" in link(NEXT, text)
    assert set(rows(text) + rows(following)) == {t.return_id for t in made if t.store_id == a.stores[0].pk}


def cursor(data) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    "garbage", "%%%", "e30", cursor({"r": 0}), cursor({"r": 0, "p": ["not a time", 1]}),
    cursor({"r": 0, "p": ["2026-01-01T00:00:00", 1]}),  # no offset
    cursor({"r": 0, "p": [None, 10**30]}), cursor({"r": 0, "p": [None, True]}), cursor({"r": 5, "p": [None, 1]}),
    cursor({"r": 0, "p": ["0001-01-01T00:00:00+05:00", 1]}), cursor([1, 2]), "4pyT",
])
def test_malformed_cursor_gives_the_first_page(as_user, tenants, token):
    a, _b = tenants
    made = [make(a.stores[0], due_at=in_hours(i + 1)) for i in range(3)]
    text = page(as_user(a.owner), f"?cursor={token}")
    assert rows(text) == [t.return_id for t in made]
    assert "no longer valid" in text


# --- badges, time zones, money -----------------------------------------------------------------------
def test_sla_badges(as_user, tenants):
    a, _b = tenants
    store = a.stores[0]
    overdue = make(store, due_at=timezone.now() - dt.timedelta(minutes=12, seconds=30))
    missed = make(store, due_at=in_hours(6), breached_at=in_hours(-1))  # a deadline was missed: stays red
    missed_no_due = make(store, due_at=None, breached_at=in_hours(-1))
    soon = make(store, due_at=in_hours(0.5))
    hours = make(store, due_at=timezone.now() + dt.timedelta(hours=2, seconds=30))
    later = make(store, due_at=in_hours(10))
    none = make(store, due_at=None)
    text = page(as_user(a.owner))
    assert badge(text, overdue.return_id) == "breached"
    assert badge(text, missed.return_id) == "breached"
    assert badge(text, missed_no_due.return_id) == "breached"
    assert badge(text, soon.return_id) == "lt1h"
    assert badge(text, hours.return_id) == "lt4h"
    assert badge(text, later.return_id) == "ok"
    assert badge(text, none.return_id) is None and "No deadline" in row_html(text, none.return_id)
    assert "overdue 12 min" in row_html(text, overdue.return_id)
    assert "2 h 01 min left" in row_html(text, hours.return_id)
    assert "deadline missed" in row_html(text, missed_no_due.return_id)
    assert f'data-due="{hours.due_at.isoformat()}"' in row_html(text, hours.return_id)
    assert 'data-breached="1"' in row_html(text, missed.return_id)
    # queue.js reads its words from the table, translated server-side.
    for attr in ("data-unit-hour", "data-unit-minute", "data-label-left", "data-label-overdue", "data-server-now"):
        assert attr in text


@pytest.fixture
def uk_th(tenants):
    a, _b = tenants
    uk = StoreFactory(agency=a.agency, market=Market.objects.get(code="UK"), name="alpha uk")
    th = StoreFactory(agency=a.agency, market=Market.objects.get(code="TH"), name="alpha th")
    return a, uk, th


def test_times_shown_in_the_market_time_zone(as_user, uk_th):
    a, uk, th = uk_th
    when = dt.datetime(2026, 7, 15, 12, 0, tzinfo=dt.UTC)  # 13:00 in London (BST), 19:00 in Bangkok
    made = dt.datetime(2026, 7, 14, 23, 30, tzinfo=dt.UTC)  # 00:30 next day in London, 06:30 in Bangkok
    t_uk = make(uk, due_at=when, platform_created_at=made)
    t_th = make(th, due_at=when, platform_created_at=made)
    text = page(as_user(a.owner))
    uk_row, th_row = row_html(text, t_uk.return_id), row_html(text, t_th.return_id)
    assert ">2026-07-15 13:00<" in uk_row and ">2026-07-15 00:30<" in uk_row
    assert ">2026-07-15 19:00<" in th_row and ">2026-07-15 06:30<" in th_row
    assert "12:00<" not in uk_row + th_row
    assert 'datetime="2026-07-15T13:00:00+01:00"' in uk_row and 'title="Europe/London"' in uk_row
    assert 'datetime="2026-07-15T19:00:00+07:00"' in th_row and 'title="Asia/Bangkok"' in th_row


def test_money_with_its_currency(as_user, uk_th):
    a, uk, th = uk_th
    t_uk = make(uk, currency="GBP", refund_total=Decimal("25"))
    t_th = make(th, currency="THB", refund_total=Decimal("1234.5"))
    text = page(as_user(a.owner))
    assert "GBP 25.00" in row_html(text, t_uk.return_id)
    assert "THB 1,234.50" in row_html(text, t_th.return_id)


def test_row_shows_what_the_agent_needs(as_user, mix):
    a, _tickets = mix
    row = row_html(page(as_user(a.owner)), "RET-B")
    for text in (a.stores[1].name, a.stores[1].market.code, "Return and refund", "Awaiting buyer&#x27;s return",
                 "colour difference", "Alex Buyer", a.owner.username, "Stalled", "ORD-B"):
        assert text in row, text


# --- cost and languages -------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["owner", "agent"])
def test_query_count_is_constant(as_user, tenants, who):
    a, _b = tenants
    client = as_user(getattr(a, who))
    first = make(a.stores[0], assignee=a.owner, due_at=in_hours(1))
    add_tracking(first, "TRACK0")
    page(client)  # warm up (content types, translations)

    def cost() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as ctx:
            text = page(client)
        return len(ctx.captured_queries), len(rows(text))

    small, n_small = cost()
    for i in range(60):
        t = make(a.stores[i % 2], assignee=a.agent if i % 2 else a.owner, due_at=in_hours(i + 2),
                 stalled_at=in_hours(-1) if i % 3 else None)
        add_tracking(t, f"TRACK{i + 1}")
    large, n_large = cost()
    assert (n_small, n_large) == (1, 50)
    # The short page also looked among requests without a deadline (the second index range); the full one
    # did not need to. Neither grows with the rows shown.
    assert small == large + 1 <= 11, (small, large)
    with CaptureQueriesContext(connection) as ctx:
        page(client, "?q=TRACK5&breached=false&due_within=24h&assigned_to=me&status=pending_review")
    assert len(ctx.captured_queries) <= small


def test_page_renders_in_chinese(as_user, mix, settings):
    a, _tickets = mix
    client = as_user(a.owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    text = page(client)
    assert '<html lang="zh-hans">' in text and rows(text) == ["RET-A", "RET-B", "RET-C"]
    text = page(client, "?breached=maybe")
    assert "ERR_VALIDATION" in text


def test_page_renders_with_chinese_as_the_default(as_user, mix, settings):
    a, _tickets = mix
    settings.LANGUAGE_CODE = "zh-hans"
    text = page(as_user(a.owner), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert '<html lang="zh-hans">' in text and len(rows(text)) == 3
