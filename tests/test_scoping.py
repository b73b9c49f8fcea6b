"""The one scoping gate: tenants never see each other; sub-accounts see only granted stores."""

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission

from stores import services
from stores.models import ApiToken, Membership, Role, RoleAssignment, Store, StoreGroupObjectPermission
from stores.scoping import TenantManager


def tenant_models():
    return [m for m in apps.get_models() if isinstance(m._default_manager, TenantManager)]


def test_tenant_models_are_discovered():
    names = {m.__name__ for m in tenant_models()}
    assert {"Store", "Membership", "Role", "RoleAssignment", "ApiToken", "AfterSalesRequest", "Evidence",
            "QuickReply"} <= names


def test_store_bound_rows_follow_grants(tenants_with_rows):
    from aftersales.models import AfterSalesRequest, Evidence, QuickReply

    a, _b = tenants_with_rows
    agent, viewer = a.actor(a.agent), a.actor(a.viewer)
    # The fixture's request, evidence and per-store reply sit on stores[-1], which the agent lacks.
    for model in (AfterSalesRequest, Evidence):
        assert not model.objects.for_actor(agent).exists()
        assert model.objects.for_actor(viewer).exists()
    assert list(QuickReply.objects.for_actor(agent).values_list("store", flat=True)) == [None]
    assert QuickReply.objects.for_actor(viewer).count() == 2


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m.__name__)
def test_owner_sees_only_own_agency_rows(tenants_with_rows, model):
    a, b = tenants_with_rows
    for tenant, other in ((a, b), (b, a)):
        visible = model.objects.for_actor(tenant.actor(tenant.owner))
        scope = model.tenant_scope.agency
        assert visible.exists(), f"fixture has no {model.__name__} rows for {tenant.agency.slug}"
        assert not visible.filter(**{f"{scope}_id": other.agency.pk}).exists()
        assert visible.count() == model.objects.for_agency(tenant.agency).count()


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m.__name__)
def test_sub_account_never_sees_other_tenant(tenants_with_rows, model):
    a, b = tenants_with_rows
    visible = model.objects.for_actor(a.actor(a.viewer))
    assert not visible.filter(**{f"{model.tenant_scope.agency}_id": b.agency.pk}).exists()


def test_sub_account_sees_only_granted_stores(tenants):
    a, _b = tenants
    assert set(Store.objects.for_actor(a.actor(a.agent))) == set(a.stores[:2])
    assert set(Store.objects.for_actor(a.actor(a.viewer))) == set(a.stores)
    assert list(Store.objects.for_actor(a.actor(a.outsider))) == []
    assert set(Store.objects.for_actor(a.actor(a.owner))) == set(a.stores)


def test_store_scoped_rows_follow_store_grants(tenants):
    a, _b = tenants
    rows = RoleAssignment.objects.for_actor(a.actor(a.agent))
    assert {r.store_id for r in rows} <= {s.pk for s in a.stores[:2]}


def test_permission_filtered_scope(tenants):
    a, _b = tenants
    viewer = a.actor(a.viewer)
    assert not Store.objects.for_actor(viewer, "handle_aftersales").exists()
    assert Store.objects.for_actor(a.actor(a.agent), "handle_aftersales").count() == 2


def test_group_grants_count(tenants):
    a, _b = tenants
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="night shift")
    group.user_set.add(a.outsider)
    perm = Permission.objects.get(codename="view_store")
    StoreGroupObjectPermission.objects.create(group=group, permission=perm, content_object=a.stores[2])
    assert list(Store.objects.for_actor(a.actor(a.outsider))) == [a.stores[2]]


def test_no_actor_sees_nothing(tenants):
    assert not Store.objects.for_actor(None).exists()


def test_revoked_grant_applies_on_next_request(tenants, api):
    a, _b = tenants
    client = api(a.agent)
    assert len(client.get("/api/v1/stores/").json()["results"]) == 2
    services.revoke_role(actor=None, membership=a.membership(a.agent), role=a.roles["aftersales-agent"],
                         stores=[a.stores[0]])
    names = [s["name"] for s in client.get("/api/v1/stores/").json()["results"]]
    assert names == [a.stores[1].name]


def test_removed_member_loses_everything(tenants, api):
    a, _b = tenants
    token_client, session_client = api(a.viewer), api(a.viewer, token=False)
    services.remove_member(actor=None, membership=a.membership(a.viewer))
    assert token_client.get("/api/v1/stores/").json()["error"]["code"] == "ERR_AUTH_002"  # token revoked
    response = session_client.get("/api/v1/stores/")  # a live session: no agency any more
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ERR_AUTH_004"


def test_token_belongs_to_its_agency(tenants):
    a, b = tenants
    assert ApiToken.objects.for_actor(a.actor(a.owner)).filter(agency=b.agency).count() == 0
    assert Membership.objects.for_actor(a.actor(a.agent)).count() == 4
    assert Role.objects.for_actor(b.actor(b.agent)).count() == 4


def test_stores_first_is_the_same_gate_with_one_array_parameter(tenants):
    """``for_actor(stores_first=True)`` (the queue, the export) reads the granted ids first and passes them as one
    array: the same rows as the subquery form for every kind of actor, a grantless one included."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from aftersales import services as aftersales_services
    from aftersales.models import AfterSalesRequest
    from tests.conftest import platform_return

    a, b = tenants
    for tenant in (a, b):
        for store in tenant.stores:
            aftersales_services.intake(store, platform_return())
    for user in (a.owner, a.agent, a.viewer, a.outsider, b.agent):
        actor = a.actor(user)
        expected = set(AfterSalesRequest.objects.for_actor(actor).values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as ctx:
            got = set(AfterSalesRequest.objects.for_actor(actor, stores_first=True).values_list("pk", flat=True))
        assert got == expected, user
        if not actor.is_owner:
            assert "= ANY(" in ctx.captured_queries[-1]["sql"] and " IN (" not in ctx.captured_queries[-1]["sql"]
    assert len(set(AfterSalesRequest.objects.for_actor(a.actor(a.agent), stores_first=True)
                   .values_list("store_id", flat=True))) == 2
    assert not AfterSalesRequest.objects.for_actor(a.actor(a.outsider), stores_first=True).exists()
    # The store table itself (its own primary key is the column compared).
    agent = a.actor(a.agent)
    assert (set(Store.objects.for_actor(agent, stores_first=True)) == set(Store.objects.for_actor(agent))
            == set(a.stores[:2]))
