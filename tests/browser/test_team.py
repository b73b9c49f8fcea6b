"""Team & roles, return addresses and the drop-off finder in a real browser: the owner adds a sub-account and grants
it a role on one store (the matrix shows it), the sub-account signs in and sees that store only; a sub-account
without "Manage team" gets the permission message naming the role setting; an address added (phone normalised),
refused, made default; the nearest drop-off points with their distance. The keyboard drives the forms."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from logistics.models import DropOffPoint, ReturnAddress
from stores.models import Market, Membership, RoleAssignment

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

NEW_PASSWORD = "teal-harbour-81"


def matrix_cell(page, member: str, store_index: int):
    return page.locator(f"table.matrix tr[data-member='{member}'] td").nth(store_index)


def messages(page):
    return page.locator("ul.messages li.message")


def test_owner_adds_a_sub_account_grants_one_store_and_the_sub_account_sees_only_it(page, live_server, tenants,
                                                                                     login, shot):
    a, _b = tenants
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/team/")
    expect(page).to_have_title("Team & roles")
    expect(page.locator("table.members tbody tr")).to_have_count(4)
    shot(page, "team-en")

    # Add the sub-account with the keyboard: labelled fields, Tab between them, Enter sends.
    page.get_by_label("Username").fill("alpha-lin")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Email", exact=True)).to_be_focused()
    page.keyboard.type("lin@example.com")
    page.keyboard.press("Tab")
    expect(page.locator("#setup-invite")).to_be_focused()  # the default: an invitation; the password field hidden
    expect(page.locator("#new-password")).to_be_hidden()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#setup-password")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.locator("#new-password")).to_be_focused()
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Enter")
    expect(messages(page)).to_contain_text("Sub-account alpha-lin was created")
    expect(page.locator("tr#member-alpha-lin")).to_contain_text("No role yet")
    expect(page.locator("table.matrix tr[data-member='alpha-lin'] .no-access")).to_have_count(len(a.stores))

    # Grant "Logistics clerk" on the second store only.
    grant = page.locator("form#form-grant")
    grant.get_by_label("Member").select_option("alpha-lin")
    grant.get_by_label("Role").select_option(label="Logistics clerk")
    grant.get_by_role("checkbox", name=re.compile(re.escape(a.stores[1].name))).check()
    grant.get_by_role("button", name="Grant role").click()
    expect(messages(page)).to_contain_text(f"Logistics clerk granted to alpha-lin on {a.stores[1].name}")
    expect(page.locator("tr#member-alpha-lin .held-role")).to_contain_text("Logistics clerk")
    expect(matrix_cell(page, "alpha-lin", 1).locator("li.perm")).to_have_text(["View store", "Manage logistics"])
    expect(matrix_cell(page, "alpha-lin", 0)).to_have_text("No access")
    expect(matrix_cell(page, "alpha-lin", 2)).to_have_text("No access")
    page.locator("#matrix").scroll_into_view_if_needed()
    shot(page, "granted")
    member = Membership.objects.for_agency(a.agency).get(user__username="alpha-lin")
    assert list(RoleAssignment.objects.for_agency(a.agency).filter(membership=member)
                .values_list("store_id", flat=True)) == [a.stores[1].pk]

    # The sub-account signs in with the password the owner set and sees that one store only.
    page.context.clear_cookies()
    login(page, live_server, member.user, password=NEW_PASSWORD)
    expect(page.locator("table.stores tbody tr td:first-child")).to_have_text([a.stores[1].name])
    shot(page, "sub-account-home")


def test_a_refused_form_shows_the_code_next_to_it_and_keeps_the_values(page, live_server, tenants, login, shot):
    a, b = tenants
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/team/")
    page.get_by_label("Username").fill(b.agent.username)  # taken, in another agency: refused, nothing revealed
    page.get_by_label("Email", exact=True).fill("x@example.com")
    page.get_by_label("Set a password now").check()
    page.locator("#new-password").fill("short")
    page.get_by_role("button", name="Add sub-account").click()
    error = page.locator("form#form-create-member .action-error")
    expect(error).to_have_attribute("data-code", "ERR_VALIDATION")
    expect(error).to_contain_text("Username: This username is taken.")
    expect(error).to_contain_text("Password:")
    expect(page.get_by_label("Username")).to_have_value(b.agent.username)
    expect(page.get_by_label("Username")).to_be_focused()
    expect(page.get_by_label("Email", exact=True)).to_have_value("x@example.com")
    expect(page.get_by_label("Set a password now")).to_be_checked()
    expect(page.locator("#new-password")).to_have_value("")
    page.locator("#add-member").scroll_into_view_if_needed()
    shot(page, "refused")


def test_owner_invites_a_sub_account_who_sets_a_password_and_signs_in(page, live_server, tenants, login, shot,
                                                                     browser):
    a, _b = tenants
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/team/")
    page.get_by_label("Username").fill("alpha-mei")
    page.get_by_label("Email", exact=True).fill("mei@example.com")
    expect(page.get_by_label("Send an invitation (they choose their own password)")).to_be_checked()
    page.get_by_role("button", name="Add sub-account").click()
    shown = messages(page).filter(has_text="Invitation sent to mei@example.com")
    expect(shown).to_have_count(1)
    link = re.search(r"https?://\S+/invite/\S+/\S+/", shown.inner_text()).group(0)
    expect(page.locator("tr#member-alpha-mei")).to_contain_text("Invitation pending")
    expect(page.locator("tr#member-alpha-mei").get_by_role(
        "button", name="Send the invitation to alpha-mei again")).to_be_visible()
    shot(page, "invited")

    # The invited person, not signed in, in a browser of their own.
    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        guest = other.new_page()
        guest.goto(link)
        expect(guest).to_have_title("Set your password")
        expect(guest.locator("#invite-rules")).not_to_be_empty()
        guest.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        guest.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
        shot(guest, "invite")
        guest.get_by_role("button", name="Set password").click()
        expect(guest.locator("#invite-done")).to_contain_text("Your password is set.")
        guest.get_by_role("link", name="Sign in").click()
        guest.locator("input[name=username]").fill("alpha-mei")
        guest.locator("input[name=password]").fill(NEW_PASSWORD)
        guest.get_by_role("button", name="Sign in").click()
        expect(guest.locator(".who")).to_have_text("alpha-mei")
        guest.goto(link)
        expect(guest.locator(".invalid-link")).to_be_visible()
        shot(guest, "invite-used")
    finally:
        other.close()


def test_a_sub_account_without_manage_team_sees_the_permission_message(page, live_server, tenants, login, shot):
    a, _b = tenants
    login(page, live_server, a.agent)
    page.get_by_role("link", name="Team & roles").click()
    alert = page.locator("#team-denied [role=alert]")
    expect(alert).to_have_attribute("data-code", "ERR_PERM_006")
    expect(alert).to_contain_text("Only the agency owner or a role with team management may manage the team.")
    expect(alert).to_contain_text("Team management → Role settings → Manage team")
    expect(page.locator("form#form-create-member")).to_have_count(0)
    expect(page.locator("table.mine tbody tr")).to_have_count(2)
    shot(page, "denied")


def test_the_owner_edits_a_role_and_the_team_page_in_chinese(page, live_server, tenants, login, shot):
    a, _b = tenants
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/team/")
    role = a.roles["analyst"]
    form = page.locator(f"form#role-{role.public_id}")
    form.get_by_label("Role name").fill("Analyst + refunds")
    form.get_by_role("checkbox", name="Refund").check()
    form.get_by_role("button", name="Save role").click()
    expect(messages(page)).to_contain_text("Role Analyst + refunds was saved")
    expect(matrix_cell(page, a.viewer.username, 0).locator("li[data-perm=refund]")).to_have_count(1)

    page.get_by_label("Language").select_option(label="简体中文")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.locator("table.matrix")).to_be_visible()
    shot(page, "team-zh-hans")


def test_addresses_add_refuse_and_set_default(page, live_server, tenants, login, shot):
    a, _b = tenants
    store = a.stores[2]  # in ID
    ReturnAddress.objects.for_agency(a.agency).create(
        agency=a.agency, store=store, market=store.market, warehouse="Jakarta DC", contact_name="Li",
        phone="+6281234567890", line1="Jl. Sudirman 1", city="Jakarta", is_default=True)
    login(page, live_server, a.owner)
    page.get_by_role("link", name="Return addresses").click()
    expect(page).to_have_title("Return addresses")
    form = page.locator("form#form-create-address")
    form.get_by_label("Store", exact=True).select_option(label=f"{store.name} · ID")
    form.get_by_label("Warehouse").fill("Cikarang DC")
    form.get_by_label("Contact").fill("Dewi")
    form.get_by_label("Phone").fill("12345")
    form.get_by_label("Address line 1").fill("Jl. Industri 5")
    form.get_by_label("City").fill("Bekasi")
    form.get_by_role("button", name="Add return address").click()
    error = page.locator("form#form-create-address .action-error")
    expect(error).to_have_attribute("data-code", "ERR_LOG_501")
    expect(error).to_contain_text("Phone: Not a valid phone number for ID.")
    expect(form.get_by_label("Warehouse")).to_have_value("Cikarang DC")
    page.locator("#add-address").scroll_into_view_if_needed()
    shot(page, "address-refused")

    form.get_by_label("Phone").fill("0812 3456 7891")
    form.get_by_role("button", name="Add return address").click()
    expect(messages(page)).to_contain_text("the phone is saved as +6281234567891")
    added = ReturnAddress.objects.for_agency(a.agency).get(warehouse="Cikarang DC")
    row = page.locator(f"tr#address-{added.public_id}")
    expect(row.locator(".phone")).to_have_text("+6281234567891")
    expect(row.locator(".default-badge")).to_have_count(0)

    row.get_by_role("button", name="Make Cikarang DC the default").click()
    expect(messages(page)).to_contain_text("“Cikarang DC” is now the default return address")
    expect(page.locator(f"tr#address-{added.public_id} .default-badge")).to_have_text("Default")
    expect(page.locator("tr.is-default")).to_have_count(1)
    shot(page, "addresses")
    assert ReturnAddress.objects.for_agency(a.agency).get(is_default=True, store=store).pk == added.pk

    # From the address to the finder: its market chosen, its text beside the form.
    near = page.locator(f"tr#address-{added.public_id}").get_by_role(
        "link", name="Find drop-off points near Cikarang DC")
    near.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#near-address")).to_contain_text("Jl. Industri 5")
    expect(page.get_by_label("Market")).to_have_value("ID")


def test_dropoff_finder_shows_the_nearest_points_with_distance_and_lead_time(page, live_server, tenants, login,
                                                                              shot):
    a, _b = tenants
    market = Market.objects.get(code="ID")
    DropOffPoint.objects.bulk_create([
        DropOffPoint(market=market, partner="J&T", code="JT-1", name="J&T Sudirman", address="Jl. Sudirman 5",
                     latitude=-6.2100, longitude=106.8200, pickup_lead_hours=12, opening_hours="08:00–20:00"),
        DropOffPoint(market=market, partner="SiCepat", code="SC-7", name="SiCepat Menteng",
                     address="Jl. Menteng 2", latitude=-6.1950, longitude=106.8320, pickup_lead_hours=24),
        DropOffPoint(market=market, partner="J&T", code="JT-9", name="J&T Bandung", latitude=-6.9175,
                     longitude=107.6191, pickup_lead_hours=48),
    ])
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/dropoffs/")
    page.get_by_label("Market").select_option("ID")
    page.get_by_label("Latitude").fill("-6.2088")
    page.get_by_label("Longitude").fill("106.8456")
    page.get_by_label("How many").fill("2")
    page.get_by_label("How many").press("Enter")
    rows = page.locator("#dropoff-results tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-code", "SC-7")
    expect(rows.nth(0).locator(".distance")).to_have_text(re.compile(r"^\d+\.\d\d km$"))
    expect(rows.nth(0).locator(".lead")).to_have_text("24 hours")
    expect(rows.nth(1)).to_have_attribute("data-code", "JT-1")
    expect(rows.nth(1).locator(".lead")).to_have_text("12 hours")
    expect(page.locator("#dropoff-results caption")).to_have_text("2 points in ID, nearest first")
    shot(page, "dropoffs")

    page.get_by_label("Latitude").fill("95")
    page.get_by_label("Latitude").press("Enter")
    error = page.locator("#dropoff-form .action-error")
    expect(error).to_have_attribute("data-code", "ERR_LOG_503")
    expect(error).to_contain_text("Latitude: A number between -90 and 90.")
    expect(page.get_by_label("Latitude")).to_have_value("95")
    shot(page, "dropoffs-refused")
