"""Adding sub-accounts and creating or renaming roles over the API (owner, or manage-team everywhere)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from stores.models import Membership, Role

STRONG = "a-Long-pass-phrase-2026"


def test_the_owner_adds_a_sub_account_who_sees_nothing_yet(tenants, api):
    a, _b = tenants
    response = api(a.owner).post("/api/v1/team/members/", {"username": "new-clerk", "password": STRONG,
                                                           "email": "clerk@alpha.example"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["username"] == "new-clerk" and body["kind"] == "sub_account" and body["roles"] == []
    user = get_user_model().objects.get(username="new-clerk")
    assert user.check_password(STRONG) and Membership.objects.unscoped().get(user=user).agency_id == a.agency.pk
    assert api(user).get("/api/v1/stores/").json()["results"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"username": "alpha-agent", "password": STRONG}, "username"),  # taken (any agency)
    ({"username": "bad name!", "password": STRONG}, "username"),
    ({"username": "ok-name", "password": "123"}, "password"),
    ({"username": "ok-name", "password": STRONG, "email": "not-an-email"}, "email"),
])
def test_bad_sub_accounts_are_refused_with_the_field(tenants, api, body, field):
    a, _b = tenants
    before = get_user_model().objects.count()
    response = api(a.owner).post("/api/v1/team/members/", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ERR_VALIDATION" and field in error["fields"]
    assert get_user_model().objects.count() == before


def test_a_sub_account_without_team_management_cannot_add_people_or_roles(tenants, api):
    a, _b = tenants
    for path, body in (("/api/v1/team/members/", {"username": "sneaky", "password": STRONG}),
                       ("/api/v1/team/roles/", {"name": "Sneaky", "permissions": []})):
        response = api(a.agent).post(path, body, format="json")
        assert response.status_code == 403 and response.json()["error"]["code"] == "ERR_PERM_006"
    assert not get_user_model().objects.filter(username="sneaky").exists()
    assert not Role.objects.unscoped().filter(name="Sneaky").exists()


def test_roles_are_created_and_renamed_per_agency(tenants, api):
    a, b = tenants
    client = api(a.owner)
    response = client.post("/api/v1/team/roles/", {"name": "Refund desk", "permissions": ["handle_aftersales"]},
                           format="json")
    assert response.status_code == 201, response.json()
    role = response.json()
    assert role["slug"] == "refund-desk" and role["permissions"] == ["handle_aftersales"]
    duplicate = client.post("/api/v1/team/roles/", {"name": "refund desk", "permissions": []}, format="json")
    assert duplicate.status_code == 400 and "name" in duplicate.json()["error"]["fields"]
    # Another agency may use the same name: roles are per agency.
    assert api(b.owner).post("/api/v1/team/roles/", {"name": "Refund desk", "permissions": []},
                             format="json").status_code == 201
    renamed = client.patch(f"/api/v1/team/roles/{role['id']}/", {"name": "Refunds"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Refunds"
    assert renamed.json()["slug"] == "refund-desk"
    # Another agency's role is not there at all.
    assert api(b.owner).patch(f"/api/v1/team/roles/{role['id']}/", {"name": "X"}, format="json").status_code == 404
    empty = client.patch(f"/api/v1/team/roles/{role['id']}/", {}, format="json")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "ERR_VALIDATION"
