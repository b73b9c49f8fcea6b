"""/api/v1/team/…: members, roles and role assignments over HTTP, through stores.services only.

The owner manages the team; a sub-account gets the services' 403 ERR_PERM_006 unless it holds “Manage team” on
every store involved. Another agency's members, roles and stores are 404 with nothing written.
"""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from stores.models import ApiToken, Membership, Role, RoleAssignment
from stores.permissions import StorePerm
from stores.services import actor_for_user, assign_role, has_store_perm

MEMBERS = "/api/v1/team/members/"
ROLES = "/api/v1/team/roles/"


def code(response) -> str:
    return response.json()["error"]["code"]


def assignments(tenant) -> set[tuple[str, str, int]]:
    return set(RoleAssignment.objects.for_agency(tenant.agency)
               .values_list("membership__user__username", "role__slug", "store_id"))


def can(tenant, user, store, perm) -> bool:
    return has_store_perm(actor_for_user(user), store, perm)


# --- reads ------------------------------------------------------------------------------------------------
def test_owner_lists_members_with_their_roles(tenants, api):
    a, _b = tenants
    body = api(a.owner).get(MEMBERS).json()
    rows = {r["username"]: r for r in body["results"]}
    assert set(rows) == {"alpha-owner", "alpha-agent", "alpha-viewer", "alpha-outsider"}
    assert rows["alpha-owner"]["kind"] == "owner" and rows["alpha-owner"]["roles"] == []
    agent_roles = rows["alpha-agent"]["roles"]
    assert [r["role"]["slug"] for r in agent_roles] == ["aftersales-agent"]
    assert {s["id"] for s in agent_roles[0]["stores"]} == {str(s.public_id) for s in a.stores[:2]}
    assert len(rows["alpha-viewer"]["roles"][0]["stores"]) == 3
    assert rows["alpha-outsider"]["roles"] == []
    assert rows["alpha-agent"]["joined_at"].endswith("+00:00")
    detail = api(a.owner).get(f"{MEMBERS}alpha-agent/").json()
    assert detail == rows["alpha-agent"]


def test_owner_lists_the_agencys_roles(tenants, api):
    a, _b = tenants
    body = api(a.owner).get(ROLES).json()
    assert {r["id"] for r in body["results"]} == {str(r.public_id) for r in a.roles.values()}
    analyst = next(r for r in body["results"] if r["slug"] == "analyst")
    assert set(analyst["permissions"]) == {"view_store", "view_analytics"} and analyst["is_template"] is True


def test_sub_accounts_get_the_services_403(tenants, api):
    a, _b = tenants
    for user in (a.agent, a.viewer, a.outsider):
        for url in (MEMBERS, ROLES, f"{MEMBERS}alpha-agent/"):
            response = api(user).get(url)
            assert response.status_code == 403 and code(response) == "ERR_PERM_006", (user, url)


def test_a_sub_account_managing_the_team_on_every_store_may(tenants, api):
    a, _b = tenants
    assign_role(actor=None, membership=a.membership(a.outsider), role=a.roles["store-manager"], stores=a.stores)
    assert api(a.outsider).get(MEMBERS).status_code == 200
    assert api(a.outsider).get(ROLES).status_code == 200


def test_foreign_member_is_404(tenants, api):
    a, _b = tenants
    for url in (f"{MEMBERS}bravo-agent/", f"{MEMBERS}nobody/"):
        response = api(a.owner).get(url)
        assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"


def test_member_list_query_count_is_constant(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    client.get(MEMBERS)
    counts = []
    for size in (1, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(MEMBERS, {"page_size": size}).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]
    counts = []
    for size in (1, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(ROLES, {"page_size": size}).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 8, [q["sql"] for q in ctx.captured_queries]


def test_member_list_pages(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    seen, url = [], f"{MEMBERS}?page_size=1"
    while url:
        page = client.get(url).json()
        seen += [r["username"] for r in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(["alpha-owner", "alpha-agent", "alpha-viewer", "alpha-outsider"])
    assert client.get(MEMBERS, {"cursor": "garbage"}).status_code == 400


# --- role permissions ---------------------------------------------------------------------------------------
def test_owner_changes_what_a_role_grants(tenants, api):
    a, _b = tenants
    analyst = a.roles["analyst"]
    assert can(a, a.viewer, a.stores[0], StorePerm.VIEW_ANALYTICS)
    response = api(a.owner).patch(f"{ROLES}{analyst.public_id}/", {"permissions": ["view_store", "refund"]},
                                  format="json")
    assert response.status_code == 200, response.content
    assert response.json()["permissions"] == ["refund", "view_store"]
    assert not can(a, a.viewer, a.stores[0], StorePerm.VIEW_ANALYTICS)
    assert can(a, a.viewer, a.stores[0], StorePerm.REFUND)


def test_role_change_refusals(tenants, api):
    a, b = tenants
    analyst = a.roles["analyst"]
    response = api(a.agent).patch(f"{ROLES}{analyst.public_id}/", {"permissions": []}, format="json")
    assert response.status_code == 403 and code(response) == "ERR_PERM_006"
    response = api(a.owner).patch(f"{ROLES}{analyst.public_id}/", {"permissions": ["fly"]}, format="json")
    assert response.status_code == 400 and code(response) == "ERR_VALIDATION"
    response = api(a.owner).patch(f"{ROLES}{b.roles['analyst'].public_id}/", {"permissions": []}, format="json")
    assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
    assert set(Role.objects.for_agency(a.agency).get(pk=analyst.pk).permissions) == {"view_store", "view_analytics"}
    assert set(Role.objects.for_agency(b.agency).get(slug="analyst").permissions) == {"view_store", "view_analytics"}


# --- assignments -------------------------------------------------------------------------------------------
def test_assign_and_revoke_a_role(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    clerk = a.roles["logistics-clerk"]
    body = {"role": str(clerk.public_id), "stores": [str(a.stores[0].public_id), str(a.stores[1].public_id)]}
    response = client.post(f"{MEMBERS}alpha-outsider/roles/", body, format="json")
    assert response.status_code == 200, response.content
    roles = response.json()["roles"]
    assert [r["role"]["slug"] for r in roles] == ["logistics-clerk"] and len(roles[0]["stores"]) == 2
    assert can(a, a.outsider, a.stores[0], StorePerm.MANAGE_LOGISTICS)
    assert client.post(f"{MEMBERS}alpha-outsider/roles/", body, format="json").status_code == 200  # idempotent
    body["stores"] = [str(a.stores[0].public_id)]
    response = client.post(f"{MEMBERS}alpha-outsider/roles/revoke/", body, format="json")
    assert response.status_code == 200
    assert [s["id"] for s in response.json()["roles"][0]["stores"]] == [str(a.stores[1].public_id)]
    assert not can(a, a.outsider, a.stores[0], StorePerm.VIEW)


def test_assign_refusals_write_nothing(tenants, api):
    a, b = tenants
    before_a, before_b = assignments(a), assignments(b)
    clerk = str(a.roles["logistics-clerk"].public_id)
    mine = [str(a.stores[0].public_id)]
    cases = [
        (api(a.agent), "alpha-outsider", {"role": clerk, "stores": mine}, 403, "ERR_PERM_006"),
        (api(a.viewer), "alpha-outsider", {"role": clerk, "stores": mine}, 403, "ERR_PERM_006"),
        (api(a.owner), "alpha-owner", {"role": clerk, "stores": mine}, 400, "ERR_PERM_007"),
        (api(a.owner), "bravo-outsider", {"role": clerk, "stores": mine}, 404, "ERR_NOT_FOUND"),
        (api(a.owner), "alpha-outsider", {"role": str(b.roles["logistics-clerk"].public_id), "stores": mine},
         404, "ERR_NOT_FOUND"),
        (api(a.owner), "alpha-outsider", {"role": clerk, "stores": [*mine, str(b.stores[0].public_id)]},
         404, "ERR_NOT_FOUND"),
        (api(a.owner), "alpha-outsider", {"role": clerk, "stores": []}, 400, "ERR_VALIDATION"),
        (api(a.owner), "alpha-outsider", {"role": "nope", "stores": mine}, 400, "ERR_VALIDATION"),
    ]
    for client, username, body, status_code, error in cases:
        # Revoking on the owner has nothing to take away (owners hold no roles): only assigning is refused.
        for suffix in ("roles/",) if username == "alpha-owner" else ("roles/", "roles/revoke/"):
            response = client.post(f"{MEMBERS}{username}/{suffix}", body, format="json")
            assert (response.status_code, code(response)) == (status_code, error), (username, body, suffix)
    assert assignments(a) == before_a and assignments(b) == before_b


def test_a_team_manager_cannot_reach_a_store_it_does_not_see(tenants, api):
    a, _b = tenants
    # Manage team on the first two stores only: store 2 is not visible to it, so it is absent (404).
    assign_role(actor=None, membership=a.membership(a.outsider), role=a.roles["store-manager"], stores=a.stores[:2])
    before = assignments(a)
    body = {"role": str(a.roles["analyst"].public_id), "stores": [str(a.stores[2].public_id)]}
    response = api(a.outsider).post(f"{MEMBERS}alpha-agent/roles/", body, format="json")
    assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
    body["stores"] = [str(a.stores[0].public_id)]
    assert api(a.outsider).post(f"{MEMBERS}alpha-agent/roles/", body, format="json").status_code == 200
    assert assignments(a) == before | {("alpha-agent", "analyst", a.stores[0].pk)}


# --- removing members ----------------------------------------------------------------------------------------
def test_owner_removes_a_member_and_its_tokens_go(tenants, api):
    a, _b = tenants
    agent = a.agent
    response = api(a.owner).delete(f"{MEMBERS}alpha-agent/")
    assert response.status_code == 204
    assert not Membership.objects.for_agency(a.agency).filter(user=agent).exists()
    assert not ApiToken.objects.for_agency(a.agency).filter(user=agent, revoked_at__isnull=True).exists()
    assert not any(username == "alpha-agent" for username, _r, _s in assignments(a))


def test_remove_refusals(tenants, api):
    a, b = tenants
    response = api(a.owner).delete(f"{MEMBERS}alpha-owner/")
    assert response.status_code == 400 and code(response) == "ERR_PERM_007"
    response = api(a.agent).delete(f"{MEMBERS}alpha-viewer/")
    assert response.status_code == 403 and code(response) == "ERR_PERM_006"
    response = api(a.owner).delete(f"{MEMBERS}bravo-agent/")
    assert response.status_code == 404 and code(response) == "ERR_NOT_FOUND"
    assert Membership.objects.for_agency(a.agency).count() == 4
    assert Membership.objects.for_agency(b.agency).count() == 4


def test_unauthenticated_is_401(tenants, api):
    for url in (MEMBERS, ROLES):
        response = api().get(url)
        assert response.status_code == 401 and code(response) == "ERR_AUTH_001"
