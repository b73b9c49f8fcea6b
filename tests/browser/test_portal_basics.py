"""The portal in a real browser: sign-in, store switcher, language switch, sub-accounts, keyboard, the queue."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest
from tests.browser.conftest import PASSWORD
from tests.conftest import platform_return

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def store_rows(page):
    return page.locator("table.stores tbody tr td:first-child")


def switcher(page):
    return page.locator("form.switcher select[name=store]")


def signed_in_as(page, user):
    expect(page.locator("header .who")).to_have_text(user.get_username())
    expect(page.locator("form.logout button")).to_be_visible()


def test_login_form_refuses_a_wrong_password_then_lands_on_the_users_stores(page, live_server, tenants, shot):
    a, b = tenants
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page).to_have_title("Sign in")
    shot(page, "login")

    page.get_by_label("Username").fill("alpha-owner")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Your username and password did not match. Please try again.")
    expect(page.get_by_label("Username")).to_have_value("alpha-owner")  # kept; the password is not
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.locator("header .who")).to_have_count(0)
    shot(page, "wrong-password")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page).to_have_title("Stores")
    signed_in_as(page, a.owner)
    expect(store_rows(page)).to_have_text([s.name for s in a.stores])
    for store in b.stores:
        expect(page.get_by_text(store.name)).to_have_count(0)
    expect(switcher(page).locator("option").first).to_have_text(f"All stores ({len(a.stores)})")
    shot(page, "home")


def test_store_switch_keeps_the_session_and_survives_navigation(page, live_server, tenants, login, shot):
    a, _b = tenants
    chosen = a.stores[1]
    login(page, live_server, a.owner)
    expect(store_rows(page)).to_have_count(len(a.stores))

    with page.expect_request(lambda request: "?store=" in request.url):
        switcher(page).select_option(str(chosen.public_id))  # onchange submits the form
    expect(store_rows(page)).to_have_count(1)
    expect(page).to_have_url(f"{live_server.url}/")  # ?store=… redirects home: no re-login
    expect(switcher(page)).to_have_value(str(chosen.public_id))
    expect(store_rows(page)).to_have_text([chosen.name])
    signed_in_as(page, a.owner)
    shot(page, "switched")

    page.reload()
    expect(switcher(page)).to_have_value(str(chosen.public_id))
    expect(store_rows(page)).to_have_text([chosen.name])

    page.goto(f"{live_server.url}/connect/tiktok/")
    expect(page.get_by_role("heading", name="TikTok Shop connections")).to_be_visible()
    signed_in_as(page, a.owner)
    page.goto(f"{live_server.url}/queue/")  # the queue reads the same choice
    expect(page.locator("#current-store")).to_have_value(str(chosen.public_id))
    signed_in_as(page, a.owner)
    page.go_back()
    page.get_by_role("navigation").get_by_role("link", name="Stores", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/")
    expect(switcher(page)).to_have_value(str(chosen.public_id))
    expect(store_rows(page)).to_have_text([chosen.name])
    signed_in_as(page, a.owner)

    with page.expect_request(lambda request: "?store=" in request.url):
        switcher(page).select_option("")  # back to all stores
    expect(store_rows(page)).to_have_text([s.name for s in a.stores])
    shot(page, "all-stores-again")


def test_language_switch_to_simplified_chinese_and_back(page, live_server, tenants, login, shot):
    a, _b = tenants
    page.goto(f"{live_server.url}/login/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    language = page.get_by_label("Language")
    language.select_option(label="简体中文")  # onchange posts to set_language, which comes back here
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page).to_have_title("登录")
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    expect(page.get_by_label("用户名")).to_be_visible()
    expect(page.get_by_label("密码")).to_be_visible()
    expect(page.locator("header strong")).to_have_text("售后控制台")
    shot(page, "login-zh")

    login(page, live_server, a.owner)  # the choice sticks across sign-in (cookie)
    expect(page).to_have_title("店铺")
    expect(page.locator("form.logout button")).to_have_text("退出登录")
    expect(switcher(page).locator("option").first).to_have_text(f"全部店铺 ({len(a.stores)})")
    shot(page, "home-zh")

    page.get_by_label("语言").select_option(label="English")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_title("Stores")
    expect(page.locator("form.logout button")).to_have_text("Log out")
    signed_in_as(page, a.owner)
    shot(page, "home-en")


def test_a_sub_account_sees_only_its_granted_stores(page, live_server, tenants, login, shot):
    a, b = tenants
    granted, other = a.stores[:2], a.stores[2:]
    login(page, live_server, a.agent)
    signed_in_as(page, a.agent)
    expect(store_rows(page)).to_have_text([s.name for s in granted])
    options = switcher(page).locator("option")
    expect(options).to_have_text([f"All stores ({len(granted)})", *[re.compile(re.escape(s.name)) for s in granted]])
    for store in [*other, *b.stores]:
        expect(page.get_by_text(store.name)).to_have_count(0)
    shot(page, "agent")

    # A store the agent was not granted, asked for by id: ignored, never shown.
    page.goto(f"{live_server.url}/?store={other[0].public_id}")
    expect(page).to_have_url(f"{live_server.url}/")
    expect(switcher(page)).to_have_value("")
    expect(store_rows(page)).to_have_text([s.name for s in granted])
    expect(page.get_by_text(other[0].name)).to_have_count(0)

    page.locator("form.logout button").click()
    login(page, live_server, a.outsider)  # a member with no role on any store
    signed_in_as(page, a.outsider)
    expect(page.get_by_text("No store is visible to you yet.")).to_be_visible()
    expect(store_rows(page)).to_have_count(0)
    expect(switcher(page)).to_have_count(0)  # no "All stores (0)" to choose from
    shot(page, "no-role")


def focus_ring(page) -> dict:
    return page.evaluate("""() => {
        const el = document.activeElement, style = getComputedStyle(el);
        return {name: el.name || el.textContent.trim(), focusVisible: el.matches(':focus-visible'),
                style: style.outlineStyle, width: parseFloat(style.outlineWidth) || 0};
    }""")


def assert_visible_focus(page, name):
    ring = focus_ring(page)
    assert ring["name"] == name
    assert ring["focusVisible"] and ring["style"] != "none" and ring["width"] > 0, ring


def test_login_form_works_with_the_keyboard_and_shows_focus(page, live_server, tenants, shot):
    a, _b = tenants
    page.goto(f"{live_server.url}/login/")
    expect(page.locator("input[name=username]")).to_be_focused()  # autofocus (applied after load)
    assert_visible_focus(page, "username")
    page.keyboard.press("Shift+Tab")  # back to the language switch in the dark header
    assert_visible_focus(page, "language")
    shot(page, "focus-on-language")
    page.keyboard.press("Tab")
    assert_visible_focus(page, "username")
    page.keyboard.type(a.agent.get_username())
    page.keyboard.press("Tab")
    assert_visible_focus(page, "password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert_visible_focus(page, "Sign in")
    shot(page, "focus-on-submit")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")
    signed_in_as(page, a.agent)
    expect(store_rows(page)).to_have_text([s.name for s in a.stores[:2]])

    # Out with the keyboard, and in again with Enter pressed in the password field.
    page.locator("form.logout button").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.goto(f"{live_server.url}/login/")
    expect(page.locator("input[name=username]")).to_be_focused()
    page.keyboard.type(a.agent.get_username())
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")
    signed_in_as(page, a.agent)


# --- the queue (售后单队列) ----------------------------------------------------------------------------
def make(store, **fields) -> AfterSalesRequest:
    """A request through intake (as the platform sync makes them), then the fields a test needs."""
    ticket, created = aftersales_services.intake(store, platform_return())
    assert created
    AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def queue_ids(page) -> list[str]:
    return page.locator("#queue tr.ticket[data-return-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.returnId)")


def badge_of(page, ticket):
    return page.locator(f'#queue tr.ticket[data-return-id="{ticket.return_id}"] .sla-badge')


def test_agent_works_the_queue_filters_it_and_watches_the_countdown(page, live_server, tenants, login, shot):
    a, b = tenants
    now = timezone.now()
    later = make(a.stores[0], due_at=now + dt.timedelta(hours=26))
    in_3h = make(a.stores[1], due_at=now + dt.timedelta(hours=3))
    in_30m = make(a.stores[0], due_at=now + dt.timedelta(minutes=30))
    missed = make(a.stores[1], due_at=now - dt.timedelta(minutes=20), breached_at=now - dt.timedelta(minutes=20))
    # Sooner than all of the above, but on a store the agent was not granted and in another agency.
    ungranted = make(a.stores[2], due_at=now + dt.timedelta(minutes=5))
    foreign = make(b.stores[0], due_at=now + dt.timedelta(minutes=1))
    visible = [missed, in_30m, in_3h, later]  # soonest deadline first

    login(page, live_server, a.agent)
    page.get_by_role("link", name="After-sales queue", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/queue/")
    expect(page.get_by_role("heading", name="After-sales queue")).to_be_visible()
    expect(page.locator("#queue tr.ticket")).to_have_count(len(visible))
    assert queue_ids(page) == [t.return_id for t in visible]
    for hidden in (ungranted, foreign):
        expect(page.get_by_text(hidden.return_id)).to_have_count(0)
    filters = page.locator("form#queue-filters")
    store_options = filters.locator("select[name=store] option")
    expect(store_options).to_have_text(["All stores", *[re.compile(re.escape(s.name)) for s in a.stores[:2]]])
    expect(page.locator("#queue .sla-badge")).to_have_count(len(visible))
    for ticket, css in zip(visible, ("breached", "lt1h", "lt4h", "ok"), strict=True):
        expect(badge_of(page, ticket)).to_have_class(re.compile(rf"\bsla-badge {css}\b"))
    expect(badge_of(page, in_30m)).to_have_text(re.compile(r"^\d+ min left$"))
    shot(page, "queue")

    filters.locator("select[name=breached]").select_option("true")
    filters.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"[?&]breached=true(&|$)"))
    expect(page.locator("#queue tr.ticket")).to_have_count(1)
    assert queue_ids(page) == [missed.return_id]
    expect(filters.locator("select[name=breached]")).to_have_value("true")  # the form keeps what was applied
    shot(page, "breached")

    filters.locator("select[name=breached]").select_option("")
    filters.locator("input[name=q]").fill(in_3h.order_id)
    filters.locator("input[name=q]").press("Enter")
    expect(page).to_have_url(re.compile(rf"[?&]q={in_3h.order_id}(&|$)"))
    expect(page.locator("#queue tr.ticket")).to_have_count(1)
    assert queue_ids(page) == [in_3h.return_id]
    shot(page, "search")
    filters.locator("input[name=q]").fill(ungranted.order_id)  # exists, but not for this agent
    filters.locator("input[name=q]").press("Enter")
    expect(page.locator("#queue caption")).to_have_text("No open request matches.")
    expect(page.locator("#queue tr.ticket")).to_have_count(0)

    # The countdown ticks in the page, without a reload. It counts whole minutes, so the page's clock
    # (Playwright's, flowing in real time) is moved to about a second before the badge's next minute;
    # the page's own 1-second timer must then change the text by itself.
    page.clock.install()
    page.goto(f"{live_server.url}/queue/")
    badge = badge_of(page, in_30m)
    expect(badge).to_have_text(re.compile(r"^\d+ min left$"))
    to_next_minute = page.evaluate("""due => { const ms = (Date.parse(due) - Date.now()) % 60000;
                                               return ms > 0 ? ms : ms + 60000; }""", in_30m.due_at.isoformat())
    page.clock.fast_forward(max(0, int(to_next_minute) - 1000))
    before = badge.text_content()
    minutes = int(before.split()[0])
    page.evaluate("() => { window.__queueNotReloaded = true; }")
    expect(badge).to_have_text(f"{minutes - 1} min left", timeout=2500)
    assert page.evaluate("() => window.__queueNotReloaded === true")
    shot(page, "countdown")
