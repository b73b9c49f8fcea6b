"""团队管理 in the portal: who may open it, the members with their roles per store, the "who can do what" matrix (what
each person really holds), the forms (add a sub-account, grant, revoke, remove, create and edit roles) through the
services, refusals with code, message, hint and field errors next to their form, one-time form keys, tenants kept
apart and a constant number of queries."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from stores import services
from stores.errors import AppError
from stores.models import IdempotencyKey, Membership, Role, RoleAssignment, StoreUserObjectPermission
from stores.permissions import StorePerm
from tests.conftest import make_tenant
from tests.factories import StoreFactory, UserFactory

URL = "/team/"


def act_url(action: str) -> str:
    return f"/team/act/{action}/"


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def page(client, status: int = 200) -> str:
    response = client.get(URL)
    assert response.status_code == status, response.status_code
    return response.content.decode()


def form_html(text: str, form_id: str) -> str:
    start = text.rindex("<form", 0, text.index(f'id="{form_id}"'))
    return text[start:text.index("</form>", start)]


def key_of(text: str, form_id: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', form_html(text, form_id)).group(1)


def row_html(text: str, member: str) -> str:
    start = text.index(f'<tr id="member-{member}"')
    return text[start:text.index("</tr>", start)]


def matrix_row(text: str, member: str) -> list[set[str]]:
    """The permission codes in each store column of a member's row of the matrix."""
    table = text[text.index('<table class="team-table matrix">'):]
    table = table[:table.index("</table>")]
    start = table.index(f'<tr data-member="{member}">')
    row = table[start:table.index("</tr>", start)]
    return [set(re.findall(r'data-perm="([a-z_]+)"', cell)) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]


def post(client, action: str, data: dict, *, form_id: str | None = None, key: str | None = None):
    data = dict(data)
    data["idempotency_key"] = key or key_of(page(client), form_id or f"form-{action}")
    return client.post(act_url(action), data)


def error_block(text: str, code: str) -> str:
    found = re.search(rf'<div class="[^"]*\baction-error"[^>]*id="([a-z-]+)" data-code="{code}">', text)
    assert found, f"no error block with {code}"
    return html.unescape(text[found.start():text.index("</div>", found.start())])


def messages_of(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="message [^"]*">(.*?)</li>', text, re.S)]


def follow(client, response) -> str:
    assert response.status_code == 302, response.status_code
    assert response["Location"] == URL
    return page(client)


# --- who may open it ---------------------------------------------------------------------------------------
def test_requires_login(client, tenants):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.post(act_url("create-member"), {"username": "x", "password": "pw-long-enough-1"}).status_code == 302


def test_a_user_of_no_agency_gets_the_no_agency_page(as_user, tenants):
    client = as_user(UserFactory(username="lonely"))
    response = client.get(URL)
    assert response.status_code == 403 and "ERR_AUTH_004" in response.content.decode()


def test_a_sub_account_without_manage_team_gets_the_permission_error_naming_the_role_setting(as_user, tenants):
    a, _b = tenants
    text = page(as_user(a.agent), status=403)
    assert 'data-code="ERR_PERM_006"' in text
    assert "Team management → Role settings → Manage team" in html.unescape(text)
    assert 'id="form-create-member"' not in text and a.viewer.username not in text
    # What they may do now: their own permissions on the stores they see (a store without a role stays unseen).
    assert "After-sales handling" in text and a.stores[1].name in text and a.stores[2].name not in text


def test_a_crafted_post_from_a_non_manager_changes_nothing(as_user, tenants):
    a, _b = tenants
    client = as_user(a.agent)
    response = client.post(act_url("create-member"), {"username": "sneaky", "password": "pw-long-enough-1",
                                                      "idempotency_key": "3f1c5c4e-1c1e-4f7e-9a55-9d3f7f6d2a10"})
    assert response.status_code == 403 and 'data-code="ERR_PERM_006"' in response.content.decode()
    assert not Membership.objects.for_agency(a.agency).filter(user__username="sneaky").exists()
    response = client.post(act_url("remove"), {"member": a.viewer.username,
                                               "idempotency_key": "3f1c5c4e-1c1e-4f7e-9a55-9d3f7f6d2a11"})
    assert response.status_code == 403
    assert Membership.objects.for_agency(a.agency).filter(user=a.viewer).exists()


def test_a_sub_account_managing_the_team_on_every_store_may_open_it(as_user, tenants):
    a, _b = tenants
    services.assign_role(actor=None, membership=a.membership(a.outsider), role=a.roles["store-manager"],
                         stores=a.stores)
    text = page(as_user(a.outsider))
    assert 'id="form-create-member"' in text


def test_manage_team_on_some_stores_only_is_not_enough(as_user, tenants):
    a, _b = tenants
    services.assign_role(actor=None, membership=a.membership(a.outsider), role=a.roles["store-manager"],
                         stores=a.stores[:1])
    assert 'data-code="ERR_PERM_006"' in page(as_user(a.outsider), status=403)


def test_an_unknown_action_is_not_found(as_user, tenants):
    a, _b = tenants
    response = as_user(a.owner).post(act_url("promote"), {})
    assert response.status_code == 404 and "ERR_NOT_FOUND" in response.content.decode()


# --- what the page shows -----------------------------------------------------------------------------------
def test_members_roles_per_store_and_nothing_of_the_other_agency(as_user, tenants):
    a, b = tenants
    text = page(as_user(a.owner))
    for user in (a.owner, a.agent, a.viewer, a.outsider):
        assert f'id="member-{user.username}"' in text
    for name in (b.owner.username, b.agent.username, *(s.name for s in b.stores)):
        assert name not in text
    agent = row_html(text, a.agent.username)
    assert "After-sales agent" in agent
    assert a.stores[0].name in agent and a.stores[1].name in agent and a.stores[2].name not in agent
    assert agent.count('action="/team/act/revoke/"') == 2 and 'action="/team/act/remove/"' in agent
    owner = row_html(text, a.owner.username)
    assert "Every permission on every store" in owner and 'action="/team/act/remove/"' not in owner
    assert "No role yet" in row_html(text, a.outsider.username)
    for role in a.roles.values():
        assert f'id="role-{role.public_id}"' in text


def test_the_matrix_shows_what_each_person_really_holds(as_user, tenants):
    a, _b = tenants
    text = page(as_user(a.owner))
    every = {p.value for p in StorePerm}
    agent_role = set(a.roles["aftersales-agent"].permissions) | {"view_store"}
    assert matrix_row(text, a.owner.username) == [every] * 3
    assert matrix_row(text, a.agent.username) == [agent_role, agent_role, set()]
    assert matrix_row(text, a.viewer.username) == [{"view_store", "view_analytics"}] * 3
    assert matrix_row(text, a.outsider.username) == [set()] * 3
    assert "No access" in text
    # A direct grant outside any role still shows: the matrix reads the grants every check reads.
    perm = Permission.objects.get(codename="refund", content_type__app_label="stores")
    StoreUserObjectPermission.objects.create(user=a.outsider, content_object=a.stores[2], permission=perm)
    assert matrix_row(page(as_user(a.owner)), a.outsider.username)[2] == {"refund"}


def test_the_page_costs_the_same_queries_for_a_small_and_a_large_team(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    page(client)  # warm: session, content types
    with CaptureQueriesContext(connection) as small:
        page(client)
    for i in range(6):
        store = StoreFactory(agency=a.agency, name=f"extra store {i}")
        a.stores.append(store)
    for i in range(8):
        member = services.add_member(agency=a.agency, user=UserFactory(username=f"alpha-extra-{i}"))
        services.assign_role(actor=None, membership=member, role=a.roles["analyst"], stores=a.stores[i % 4:])
    for i in range(4):
        services.create_role(actor=None, agency_id=a.agency.pk, name=f"Extra {i}", permissions=["refund"])
    for i in range(3):  # invited, no password yet: "pending" is read from the user row already loaded
        services.create_sub_account(actor=None, agency_id=a.agency.pk, username=f"alpha-invited-{i}", password=None,
                                    email=f"inv{i}@example.com")
    with CaptureQueriesContext(connection) as large:
        text = page(client)
    assert "alpha-extra-7" in text and "Extra 3" in text
    assert text.count("Invitation pending") == 3
    assert len(large.captured_queries) == len(small.captured_queries), [q["sql"] for q in large.captured_queries]


# --- add a sub-account -------------------------------------------------------------------------------------
def test_the_owner_adds_a_sub_account_that_logs_in_and_sees_no_store(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    response = post(client, "create-member", {"username": "alpha-new", "email": "new@example.com",
                                              "setup": "password", "password": "a-long-pass-42"})
    text = follow(client, response)
    assert any("alpha-new" in m and "grant it a role" in m for m in messages_of(text))
    member = Membership.objects.for_agency(a.agency).get(user__username="alpha-new")
    assert not member.is_owner and member.user.email == "new@example.com"
    assert member.user.check_password("a-long-pass-42")
    assert matrix_row(text, "alpha-new") == [set()] * 3


def test_a_double_submit_adds_the_sub_account_once(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    key = key_of(page(client), "form-create-member")
    data = {"username": "alpha-twice", "setup": "password", "password": "a-long-pass-42", "email": ""}
    first = post(client, "create-member", data, key=key)
    second = post(client, "create-member", data, key=key)
    assert first.status_code == second.status_code == 302
    assert Membership.objects.for_agency(a.agency).filter(user__username="alpha-twice").count() == 1
    assert any("sent twice" in m for m in messages_of(page(client)))
    assert IdempotencyKey.objects.filter(user=a.owner, key=f"portal:{key}").count() == 1


def test_a_refused_sub_account_shows_code_fields_and_keeps_the_values_but_not_the_password(as_user, tenants):
    a, b = tenants
    client = as_user(a.owner)
    response = post(client, "create-member", {"username": b.agent.username, "email": "not-an-email",
                                              "setup": "password", "password": "secret-typed-99"})
    assert response.status_code == 400
    text = response.content.decode()
    block = error_block(text, "ERR_VALIDATION")
    assert "Some fields are invalid." in block
    assert "Username: This username is taken." in block and "Email:" in block
    form = form_html(text, "form-create-member")
    assert f'value="{b.agent.username}"' in form and 'value="not-an-email"' in form
    assert "secret-typed-99" not in text
    assert "autofocus" in form
    assert 'id="setup-password" name="setup" value="password" checked' in form  # the choice made is kept


def test_a_missing_form_key_is_refused_with_its_code(as_user, tenants):
    a, _b = tenants
    response = as_user(a.owner).post(act_url("create-member"), {"username": "nokey", "password": "a-long-pass-42"})
    assert response.status_code == 400
    assert "ERR_IDEMPOTENCY_KEY_INVALID" in response.content.decode()
    assert not Membership.objects.for_agency(a.agency).filter(user__username="nokey").exists()


# --- grant, revoke, remove ---------------------------------------------------------------------------------
def test_grant_a_role_on_one_store_and_the_matrix_follows(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    role = a.roles["logistics-clerk"]
    response = post(client, "grant", {"member": a.outsider.username, "role": str(role.public_id),
                                      "stores": [str(a.stores[1].public_id)]})
    text = follow(client, response)
    assert any("Logistics clerk granted to alpha-outsider" in m for m in messages_of(text))
    assert matrix_row(text, a.outsider.username) == [set(), {"view_store", "manage_logistics"}, set()]
    assert RoleAssignment.objects.for_agency(a.agency).filter(membership__user=a.outsider).count() == 1


def test_a_grant_on_many_stores_costs_the_queries_of_a_grant_on_one(as_user, tenants):
    """The success message names each store with its market: read with the stores, not one query per store."""
    a, _b = tenants
    for i in range(5):
        a.stores.append(StoreFactory(agency=a.agency, name=f"extra store {i}"))
    client = as_user(a.owner)
    costs = {}
    for member, role, stores in ((a.outsider, a.roles["logistics-clerk"], a.stores[:1]),
                                 (a.viewer, a.roles["logistics-clerk"], a.stores)):
        data = {"member": member.username, "role": str(role.public_id), "stores": [str(s.public_id) for s in stores],
                "idempotency_key": key_of(page(client), "form-grant")}
        with CaptureQueriesContext(connection) as queries:
            response = client.post(act_url("grant"), data)
        assert response.status_code == 302
        costs[len(stores)] = len(queries.captured_queries)
        text = follow(client, response)
        assert any(f"{s.name} · {s.market.code}" in m for m in messages_of(text) for s in stores)
    assert costs[8] == costs[1], costs


def test_grant_without_a_store_is_refused_next_to_its_form_with_the_values_kept(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    role = a.roles["analyst"]
    response = post(client, "grant", {"member": a.outsider.username, "role": str(role.public_id)})
    assert response.status_code == 400
    text = response.content.decode()
    assert "Stores: Choose at least one store." in error_block(text, "ERR_VALIDATION")
    form = form_html(text, "form-grant")
    assert 'id="grant-error"' in form
    assert f'<option value="{a.outsider.username}" selected>' in form
    assert f'<option value="{role.public_id}" selected>' in form


def test_foreign_ids_are_not_found_and_reveal_nothing(as_user, tenants):
    a, b = tenants
    client = as_user(a.owner)
    role = a.roles["analyst"]
    response = post(client, "grant", {"member": a.outsider.username, "role": str(role.public_id),
                                      "stores": [str(b.stores[0].public_id)]})
    assert response.status_code == 404
    text = response.content.decode()
    assert "ERR_NOT_FOUND" in text and b.stores[0].name not in text
    response = post(client, "grant", {"member": b.agent.username, "role": str(role.public_id),
                                      "stores": [str(a.stores[0].public_id)]}, form_id="form-grant")
    assert response.status_code == 404
    response = post(client, "grant", {"member": a.outsider.username, "role": str(b.roles["analyst"].public_id),
                                      "stores": [str(a.stores[0].public_id)]})
    assert response.status_code == 404 and "ERR_NOT_FOUND" in response.content.decode()
    response = post(client, "remove", {"member": b.viewer.username}, form_id="form-create-member")
    assert response.status_code == 404
    assert Membership.objects.for_agency(b.agency).filter(user=b.viewer).exists()
    assert not RoleAssignment.objects.for_agency(a.agency).filter(membership__user=a.outsider).exists()
    response = post(client, "grant", {"member": a.outsider.username, "role": str(role.public_id),
                                      "stores": ["not-a-uuid"]})
    assert response.status_code == 404


def test_revoke_one_store_of_a_role(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    text = page(client)
    row = row_html(text, a.agent.username)
    forms = re.findall(r'<form method="post" action="/team/act/revoke/".*?</form>', row, re.S)
    target = next(f for f in forms if str(a.stores[0].public_id) in f)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', target).group(1)
    role = a.roles["aftersales-agent"]
    response = post(client, "revoke", {"member": a.agent.username, "role": str(role.public_id),
                                       "store": str(a.stores[0].public_id)}, key=key)
    text = follow(client, response)
    assert matrix_row(text, a.agent.username)[0] == set()
    assert matrix_row(text, a.agent.username)[1] >= {"handle_aftersales"}


def test_remove_a_member_and_the_owner_cannot_be_removed(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    text = follow(client, post(client, "remove", {"member": a.viewer.username}, form_id="form-create-member"))
    assert f'id="member-{a.viewer.username}"' not in text
    assert not StoreUserObjectPermission.objects.filter(user=a.viewer).exists()
    response = post(client, "remove", {"member": a.owner.username}, form_id="form-create-member")
    assert response.status_code == 400
    text = response.content.decode()
    assert "ERR_PERM_007" in error_block(text, "ERR_PERM_007")
    assert 'id="member-error"' in row_html(text, a.owner.username)  # next to the member's row
    assert Membership.objects.for_agency(a.agency).filter(user=a.owner).exists()


# --- roles -------------------------------------------------------------------------------------------------
def test_create_a_role_and_a_duplicate_name_is_refused_with_its_values(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    text = follow(client, post(client, "create-role", {"name": "Refunder", "permissions": ["view_store", "refund"]}))
    role = Role.objects.for_agency(a.agency).get(name="Refunder")
    assert role.permissions == ["refund", "view_store"]
    assert f'id="role-{role.public_id}"' in text
    response = post(client, "create-role", {"name": "refunder", "permissions": ["refund"]})
    assert response.status_code == 400
    form = form_html(response.content.decode(), "form-create-role")
    assert "The agency already has a role by this name." in html.unescape(form)
    assert 'value="refunder"' in form and re.search(r'value="refund" checked', form)
    assert not re.search(r'value="view_store" checked', form)
    response = post(client, "create-role", {"name": "Odd", "permissions": ["fly"]})
    assert response.status_code == 400 and "Permissions: Unknown permission." in error_block(
        response.content.decode(), "ERR_VALIDATION")


def test_edit_a_role_renames_it_and_every_holder_follows(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    role = a.roles["aftersales-agent"]
    response = post(client, "edit-role", {"role": str(role.public_id), "name": "Agent (refunds)",
                                          "permissions": ["view_store", "refund"]}, form_id=f"role-{role.public_id}")
    text = follow(client, response)
    role.refresh_from_db()
    assert (role.name, role.slug, role.permissions) == ("Agent (refunds)", "aftersales-agent", ["refund", "view_store"])
    assert matrix_row(text, a.agent.username)[:2] == [{"view_store", "refund"}] * 2


def test_a_refused_role_edit_is_shown_in_that_roles_form(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    role = a.roles["analyst"]
    response = post(client, "edit-role", {"role": str(role.public_id), "name": "Store manager",
                                          "permissions": ["view_store"]}, form_id=f"role-{role.public_id}")
    assert response.status_code == 400
    form = form_html(response.content.decode(), f"role-{role.public_id}")
    assert 'id="role-error"' in form and 'value="Store manager"' in form
    assert re.search(r'value="view_store" checked', form) and not re.search(r'value="view_analytics" checked', form)
    role.refresh_from_db()
    assert role.name == "Analyst (view only)" and "view_analytics" in role.permissions


def test_each_tenant_sees_its_own_team(as_user, tenants):
    a, b = tenants
    other = make_tenant("charlie", n_stores=1)
    text = page(as_user(other.owner))
    assert other.stores[0].name in text
    assert a.agent.username not in text and b.agent.username not in text


def test_template_roles_read_in_the_users_language_unless_renamed(as_user, tenants, settings):
    from stores.models import Role

    a, _b = tenants
    client = as_user(a.owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    text = client.get("/team/").content.decode()
    assert "<strong>售后客服</strong>" in text and "<strong>After-sales agent</strong>" not in text
    Role.objects.for_agency(a.agency).filter(slug="aftersales-agent").update(name="Night shift")
    text = client.get("/team/").content.decode()
    assert "<strong>Night shift</strong>" in text and "<strong>售后客服</strong>" not in text


# --- invite a sub-account (they choose their own password) -------------------------------------------------
INVITE_LINK = re.compile(r"https?://[^/\s]+(/invite/[^/\s]+/[^/\s]+/)")


def can_log_in(username: str, password: str) -> bool:
    """Through the real sign-in page (axes sits in front of the backends), in a client of its own."""
    response = Client().post("/login/", {"username": username, "password": password})
    return response.status_code == 302


def invite(client, username: str, email: str = "") -> str:
    response = post(client, "create-member", {"username": username, "email": email or f"{username}@example.com",
                                              "setup": "invite"})
    return follow(client, response)


def link_in(text: str) -> str:
    """The path of the one invitation link in a text (e-mail body or page message)."""
    found = INVITE_LINK.findall(text)
    assert len(found) == 1, found
    return found[0]


def set_password(path: str, password: str = "fresh-harbour-73"):
    anonymous = Client()
    form = anonymous.get(path, follow=True)  # Django moves the token into the session, then shows the form
    assert form.status_code == 200 and 'id="invite-form"' in form.content.decode()
    return anonymous.post(form.redirect_chain[-1][0], {"new_password1": password, "new_password2": password})


def test_an_invitation_creates_a_login_that_cannot_sign_in_and_mails_the_link(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    text = invite(client, "alpha-invited", "inv@example.com")
    user = get_user_model().objects.get(username="alpha-invited")
    assert not user.has_usable_password() and user.email == "inv@example.com"
    assert Membership.objects.for_agency(a.agency).filter(user=user, kind=Membership.Kind.SUB_ACCOUNT).exists()
    assert not can_log_in("alpha-invited", "")
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["inv@example.com"] and a.owner.username in sent.subject and a.agency.name in sent.subject
    path = link_in(sent.body)
    assert "http://testserver" + path in sent.body  # absolute, to open from a mail client
    # Shown once on the page too (to pass on by chat), and the member is marked pending with a resend action.
    shown = [m for m in messages_of(text) if "inv@example.com" in m]
    assert len(shown) == 1 and link_in(shown[0]) == path
    row = row_html(text, "alpha-invited")
    assert "Invitation pending" in row and 'action="/team/act/resend/"' in row
    assert not messages_of(page(client))  # the link is shown once, not on the next visit


def test_the_invited_person_sets_a_password_signs_in_and_the_link_then_stops_working(as_user, tenants, client):
    a, _b = tenants
    text = invite(as_user(a.owner), "alpha-joins")
    path = link_in(mail.outbox[0].body)
    assert link_in(" ".join(messages_of(text))) == path
    response = set_password(path)
    assert response.status_code == 302 and response["Location"] == "/invite/done/"
    done = Client().get("/invite/done/").content.decode()
    assert "Your password is set" in done and 'href="/login/"' in done
    assert can_log_in("alpha-joins", "fresh-harbour-73")
    assert "Invitation pending" not in row_html(page(as_user(a.owner)), "alpha-joins")
    again = Client().get(path, follow=True)
    text = again.content.decode()
    assert again.status_code == 200 and 'id="invite-form"' not in text
    assert "This invitation link no longer works" in text and "send the invitation again" in text


def test_the_invite_page_shows_labelled_fields_and_the_password_rules_and_refuses_a_weak_one(tenants, as_user):
    a, _b = tenants
    invite(as_user(a.owner), "alpha-rules")
    anonymous = Client()
    form = anonymous.get(link_in(mail.outbox[0].body), follow=True)
    text = form.content.decode()
    assert 'for="id_new_password1"' in text and 'for="id_new_password2"' in text and "alpha-rules" in text
    assert "at least" in text  # the configured validators' rules, from the form field's help text
    response = anonymous.post(form.redirect_chain[-1][0], {"new_password1": "short", "new_password2": "short"})
    assert response.status_code == 200 and 'role="alert"' in response.content.decode()
    assert not get_user_model().objects.get(username="alpha-rules").has_usable_password()


def test_an_altered_link_shows_what_to_do(client, tenants):
    response = client.get("/invite/MQ/not-a-token/", follow=True)
    text = response.content.decode()
    assert response.status_code == 200 and "This invitation link no longer works" in text
    assert "send the invitation again" in text and 'id="invite-form"' not in text


def test_send_the_invitation_again_gives_a_working_link(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    invite(client, "alpha-again")
    text = follow(client, post(client, "resend", {"member": "alpha-again"}, form_id="form-create-member"))
    assert len(mail.outbox) == 2 and mail.outbox[1].to == ["alpha-again@example.com"]
    fresh = link_in(mail.outbox[1].body)
    assert any("alpha-again" in m and fresh in m for m in messages_of(text))
    assert set_password(fresh).status_code == 302
    assert can_log_in("alpha-again", "fresh-harbour-73")
    # Once the password is set there is nothing to resend: the action is gone, and a crafted one is refused.
    text = page(client)
    assert 'action="/team/act/resend/"' not in row_html(text, "alpha-again")
    response = post(client, "resend", {"member": "alpha-again"}, form_id="form-create-member")
    assert response.status_code == 400
    assert "already set a password" in error_block(response.content.decode(), "ERR_VALIDATION")


def test_a_member_of_another_agency_cannot_be_invited_again(as_user, tenants):
    a, b = tenants
    services.create_sub_account(actor=None, agency_id=b.agency.pk, username="beta-invited", password=None,
                                email="beta@example.com")
    client = as_user(a.owner)
    response = post(client, "resend", {"member": "beta-invited"}, form_id="form-create-member")
    assert response.status_code == 404 and "ERR_NOT_FOUND" in response.content.decode()
    assert "beta-invited" not in response.content.decode()
    assert mail.outbox == []


def test_an_invitation_without_an_email_is_refused_on_the_email_field(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    response = post(client, "create-member", {"username": "alpha-nomail", "email": "", "setup": "invite"})
    assert response.status_code == 400
    block = error_block(response.content.decode(), "ERR_VALIDATION")
    assert "Email: An invitation needs an e-mail address" in block
    assert not get_user_model().objects.filter(username="alpha-nomail").exists() and mail.outbox == []


def test_a_failed_email_keeps_the_account_and_shows_the_link_with_a_warning(as_user, tenants, monkeypatch):
    a, _b = tenants

    def broken(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr("portal.team.send_mail", broken)
    text = invite(as_user(a.owner), "alpha-nomailserver")
    user = get_user_model().objects.get(username="alpha-nomailserver")
    assert not user.has_usable_password()
    warning = re.findall(r'<li class="message warning">(.*?)</li>', text, re.S)
    assert len(warning) == 1 and "could not be sent" in html.unescape(warning[0])
    assert set_password(link_in(html.unescape(warning[0]))).status_code == 302


def test_the_invitation_email_is_written_in_the_senders_language(as_user, tenants, monkeypatch):
    """Built while the sender's language is active (the .po files get the texts' Chinese when merged)."""
    a, _b = tenants
    client = as_user(a.owner)
    client.cookies["django_language"] = "zh-hans"
    written_in = []
    monkeypatch.setattr("portal.team.send_mail",
                        lambda *args, **kwargs: written_in.append(translation.get_language()) or 1)
    client.post(act_url("create-member"), {"username": "alpha-zh", "email": "zh@example.com", "setup": "invite",
                                           "idempotency_key": key_of(page(client), "form-create-member")})
    assert written_in == ["zh-hans"]


def test_the_api_still_needs_a_password(tenants):
    a, _b = tenants
    with pytest.raises(AppError) as refused:
        services.create_sub_account(actor=None, agency_id=a.agency.pk, username="x-short", password="", email="")
    assert "password" in refused.value.fields
