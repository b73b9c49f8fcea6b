"""Roles are guardian object grants on Store; tenant users never hold global permissions."""

import pytest
from django.contrib.auth.models import Permission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stores import services
from stores.errors import AppError
from stores.models import RoleAssignment, StoreUserObjectPermission
from stores.permissions import StorePerm


def grants(user, store):
    return set(StoreUserObjectPermission.objects.filter(user=user, content_object=store)
               .values_list("permission__codename", flat=True))


def assert_no_global_perms(*users):
    for user in users:
        user.refresh_from_db()
        assert not user.user_permissions.exists()
        assert not Permission.objects.filter(group__user=user).exists()
        assert not user.is_superuser and not user.is_staff
        assert user.get_all_permissions() == set()  # ModelBackend: nothing model-level


def test_role_grants_become_object_permissions(tenants):
    a, _b = tenants
    expected = {"view_store", "handle_aftersales", "refund", "manage_logistics", "manage_quick_replies"}
    assert grants(a.agent, a.stores[0]) == expected
    assert grants(a.agent, a.stores[2]) == set()
    assert a.agent.has_perm("stores.handle_aftersales", a.stores[0])  # guardian agrees
    assert not a.agent.has_perm("stores.handle_aftersales", a.stores[2])
    assert not a.agent.has_perm("stores.handle_aftersales")  # and nothing global


def test_role_permission_change_follows_at_once(tenants):
    a, _b = tenants
    services.set_role_permissions(actor=None, role=a.roles["aftersales-agent"], permissions=["view_store"])
    assert grants(a.agent, a.stores[0]) == {"view_store"}
    assert_no_global_perms(a.agent, a.viewer)


def test_two_roles_on_one_store_union(tenants):
    a, _b = tenants
    m = a.membership(a.agent)
    services.assign_role(actor=None, membership=m, role=a.roles["analyst"], stores=[a.stores[0]])
    assert "view_analytics" in grants(a.agent, a.stores[0])
    services.revoke_role(actor=None, membership=m, role=a.roles["aftersales-agent"], stores=[a.stores[0]])
    assert grants(a.agent, a.stores[0]) == {"view_store", "view_analytics"}


def test_require_store_perm_names_the_role_setting(tenants):
    a, _b = tenants
    with pytest.raises(AppError) as info:
        services.require_store_perm(a.actor(a.viewer), a.stores[0], StorePerm.HANDLE_AFTERSALES)
    assert info.value.code == "ERR_PERM_001"
    assert info.value.status == 403
    assert "角色设置" in str(info.value.error.hint)
    services.require_store_perm(a.actor(a.agent), a.stores[0], StorePerm.HANDLE_AFTERSALES)
    services.require_store_perm(a.actor(a.owner), a.stores[2], StorePerm.MANAGE_TEAM)


def test_foreign_store_is_never_permitted(tenants):
    a, b = tenants
    assert not services.has_store_perm(a.actor(a.owner), b.stores[0], StorePerm.VIEW)


def test_cannot_assign_owner_or_foreign_store(tenants):
    a, b = tenants
    with pytest.raises(AppError) as info:
        services.assign_role(actor=None, membership=a.membership(a.owner), role=a.roles["analyst"],
                             stores=[a.stores[0]])
    assert info.value.code == "ERR_PERM_007"
    with pytest.raises(AppError):
        services.assign_role(actor=None, membership=a.membership(a.agent), role=a.roles["analyst"],
                             stores=[b.stores[0]])
    assert not RoleAssignment.objects.for_agency(b.agency).filter(membership__agency=a.agency).exists()


def test_team_management_needs_the_permission_on_every_store(tenants):
    a, _b = tenants
    with pytest.raises(AppError) as info:
        services.assign_role(actor=a.actor(a.agent), membership=a.membership(a.outsider),
                             role=a.roles["analyst"], stores=[a.stores[0]])
    assert info.value.code == "ERR_PERM_006"
    services.assign_role(actor=None, membership=a.membership(a.agent), role=a.roles["store-manager"],
                         stores=[a.stores[0]])
    services.assign_role(actor=a.actor(a.agent), membership=a.membership(a.outsider),
                         role=a.roles["analyst"], stores=[a.stores[0]])
    assert grants(a.outsider, a.stores[0]) == {"view_store", "view_analytics"}
    with pytest.raises(AppError):
        services.assign_role(actor=a.actor(a.agent), membership=a.membership(a.outsider),
                             role=a.roles["analyst"], stores=[a.stores[0], a.stores[2]])


role_ops = st.lists(
    st.tuples(
        st.sampled_from(["assign", "revoke", "perms"]),
        st.sampled_from(["agent", "viewer", "outsider"]),
        st.sampled_from(["aftersales-agent", "analyst", "logistics-clerk", "store-manager"]),
        st.sets(st.integers(0, 2), min_size=1),
        st.sets(st.sampled_from([p.value for p in StorePerm])),
    ),
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=role_ops)
def test_any_sequence_of_role_changes_keeps_grants_exact_and_never_global(tenants, ops):
    a, _b = tenants
    for op, who, role_slug, store_idx, perms in ops:
        user = getattr(a, who)
        membership, role = a.membership(user), a.roles[role_slug]
        stores = [a.stores[i] for i in sorted(store_idx)]
        if op == "assign":
            services.assign_role(actor=None, membership=membership, role=role, stores=stores)
        elif op == "revoke":
            services.revoke_role(actor=None, membership=membership, role=role, stores=stores)
        else:
            services.set_role_permissions(actor=None, role=role, permissions=perms)
            role.refresh_from_db()
    for who in ("agent", "viewer", "outsider"):
        user = getattr(a, who)
        for store in a.stores:
            wanted = set()
            for perms in RoleAssignment.objects.for_agency(a.agency).filter(
                membership__user=user, store=store
            ).values_list("role__permissions", flat=True):
                if perms:
                    wanted |= set(perms) | {"view_store"}
            assert grants(user, store) == wanted
    assert_no_global_perms(a.owner, a.agent, a.viewer, a.outsider)


# --- team management cannot be done by someone who lacks it (review finding) ---------------------
def test_nothing_involved_is_not_nothing_to_check(tenants):
    a, _b = tenants
    outsider = a.actor(a.outsider)  # a sub-account without any role
    lonely = services.add_member(agency=a.agency, user=__import__("tests.factories", fromlist=["x"]).UserFactory(
        username="alpha-new"))
    unassigned = a.roles["logistics-clerk"]
    with pytest.raises(AppError) as info:
        services.remove_member(actor=outsider, membership=lonely)  # no roles → still needs manage_team
    assert info.value.code == "ERR_PERM_006"
    with pytest.raises(AppError) as info:
        services.set_role_permissions(actor=outsider, role=unassigned, permissions=["view_store", "refund"])
    assert info.value.code == "ERR_PERM_006"
    unassigned.refresh_from_db()
    assert "refund" not in unassigned.permissions


def test_the_owner_cannot_be_removed_and_foreign_objects_look_missing(tenants):
    a, b = tenants
    with pytest.raises(AppError) as info:
        services.remove_member(actor=a.actor(a.owner), membership=a.membership(a.owner))
    assert info.value.code == "ERR_PERM_007"
    with pytest.raises(AppError) as info:
        services.set_role_permissions(actor=a.actor(a.owner), role=b.roles["analyst"], permissions=["view_store"])
    assert info.value.code == "ERR_NOT_FOUND"
    with pytest.raises(AppError) as info:
        services.remove_member(actor=a.actor(a.owner), membership=b.membership(b.viewer))
    assert info.value.code == "ERR_NOT_FOUND"


def test_removed_member_tokens_stop_working(tenants):
    a, _b = tenants
    _token, key = services.create_api_token(user=a.viewer)
    services.remove_member(actor=a.actor(a.owner), membership=a.membership(a.viewer))
    assert services.authenticate_token(key) is None


def test_store_perms_count_group_grants(tenants):
    from django.contrib.auth.models import Group

    from stores.models import StoreGroupObjectPermission

    a, b = tenants
    group = Group.objects.create(name="refunders")
    group.user_set.add(a.outsider)
    StoreGroupObjectPermission.objects.create(group=group, content_object=a.stores[2],
                                              permission=Permission.objects.get(codename="refund"))
    StoreGroupObjectPermission.objects.create(group=group, content_object=b.stores[0],
                                              permission=Permission.objects.get(codename="refund"))
    perms = services.store_perms(a.actor(a.outsider), [a.stores[2].pk, b.stores[0].pk])
    assert perms == {a.stores[2].pk: {"refund"}}  # the other agency's store never counts


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_role_edit_and_assignment_racing_leave_exact_grants():
    import threading

    from django.db import connections

    from tests.conftest import make_tenant

    for _round in range(5):
        a = make_tenant(f"race{_round}", n_stores=1)
        role = a.roles["aftersales-agent"]
        member = a.membership(a.outsider)
        barrier = threading.Barrier(2)

        def edit(role=role, barrier=barrier):
            barrier.wait()
            try:
                services.set_role_permissions(actor=None, role=role, permissions=["view_store"])
            finally:
                connections.close_all()

        def assign(role=role, member=member, store=a.stores[0], barrier=barrier):
            barrier.wait()
            try:
                services.assign_role(actor=None, membership=member, role=role, stores=[store])
            finally:
                connections.close_all()

        threads = [threading.Thread(target=edit), threading.Thread(target=assign)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert grants(a.outsider, a.stores[0]) == {"view_store"}, _round
