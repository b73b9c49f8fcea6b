"""Team management (团队管理): members, roles and role assignments, through ``stores.services`` only.

Who may: the owner, or a sub-account holding “Manage team” on every store involved (the services' rule,
``stores.services.require_team_manager``); anyone else in the agency gets 403 ``ERR_PERM_006``. Reads
(the member and role lists) involve every store, so they need what a change touching every store needs.
Members are named by username in paths (a membership has no public id and never shows its database id).

The schema helpers repeat the shape of ``aftersales.api.views.errors_doc`` / ``error_responses``: ``stores``
may not import ``aftersales`` (tests/test_architecture.py), so the envelope is referenced by its component
name instead of its serializer class.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response

from config.api import CursorPagination
from stores import errors, services
from stores.api import team_serializers as ts
from stores.api.base import TenantAPIView, get_actor
from stores.api.schema import AUTH, WRITE_AUTH, error_responses, errors_doc
from stores.errors import AppError
from stores.models import Membership, Role, RoleAssignment, Store
from stores.scoping import Actor

TAG = "team"
def team_schema(summary: str, description: str, codes: tuple[str, ...], *, request=None, response=None,
                ok: int = 200, write: bool = False):
    codes = (*(WRITE_AUTH if write else AUTH), *codes)
    return extend_schema(tags=[TAG], summary=summary, description=description + errors_doc(*codes),
                         request=request, responses={ok: response, **error_responses(*codes)})


def parse(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- reads ----------------------------------------------------------------------------------------
def require_team_manager(actor: Actor) -> None:
    """The services' rule for a change that involves every store of the agency."""
    services.require_team_manager(actor, actor.agency_id, [])


def members_for_actor(actor: Actor | None):
    assignments = RoleAssignment.objects.for_actor(actor).select_related("role", "store")
    return (Membership.objects.for_actor(actor).select_related("user")
            .prefetch_related(Prefetch("assignments", queryset=assignments)))


def member_for_actor(actor: Actor, username: str) -> Membership:
    member = members_for_actor(actor).filter(user__username=username).first()
    if member is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return member


def role_for_actor(actor: Actor, role_id, *, field: str | None = None) -> Role:
    """A role of the caller's agency; 404 otherwise (``field`` names the body field that sent its id)."""
    role = Role.objects.for_actor(actor).by_id(str(role_id)).first()
    if role is None:
        raise AppError(errors.ERR_NOT_FOUND, fields={field: [str(errors.ERR_NOT_FOUND.message)]} if field else None)
    return role


def stores_for(actor: Actor, store_ids) -> list[Store]:
    """Every named store, visible to the caller; one that is not → 404 (never confirm another's store)."""
    wanted = {str(s) for s in store_ids}
    found = list(Store.objects.for_actor(actor).filter(public_id__in=wanted).select_related("market"))
    if len(found) != len(wanted):
        raise AppError(errors.ERR_NOT_FOUND, fields={"stores": [str(errors.ERR_NOT_FOUND.message)]})
    return found


class TeamPagination(CursorPagination):
    ordering = "id"


@extend_schema_view(get=team_schema(
    "Team members", "Owner and sub-accounts (子账号) with the roles they hold per store. Cursor-paginated.",
    ("ERR_VALIDATION", "ERR_PERM_006"), response=ts.MemberSerializer(many=True)))
class MemberListView(TenantAPIView, generics.ListAPIView):
    serializer_class = ts.MemberSerializer
    pagination_class = TeamPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.for_actor(None)
        actor = get_actor(self.request)
        require_team_manager(actor)
        return members_for_actor(actor)

    @team_schema("Add a sub-account", "Creates a login (子账号) in the caller's agency with no role: it sees nothing "
                                      "until a role is assigned on stores. Owner, or manage-team on every store.",
                 ("ERR_VALIDATION", "ERR_PERM_006"), request=ts.MemberCreateInputSerializer,
                 response=ts.MemberSerializer, ok=201, write=True)
    def post(self, request):
        actor = get_actor(request)
        data = parse(ts.MemberCreateInputSerializer, request)
        member = services.create_sub_account(actor=actor, agency_id=actor.agency_id,
                                             username=data["username"], password=data["password"],
                                             email=data["email"])
        return Response(ts.MemberSerializer(member_for_actor(actor, member.user.username)).data,
                        status=status.HTTP_201_CREATED)


class MemberDetailView(TenantAPIView):
    @team_schema("One team member", "The member and the roles held per store.",
                 ("ERR_NOT_FOUND", "ERR_PERM_006"), response=ts.MemberSerializer)
    def get(self, request, username):
        actor = get_actor(request)
        require_team_manager(actor)
        return Response(ts.MemberSerializer(member_for_actor(actor, username)).data)

    @team_schema("Remove a member", "Takes a sub-account out of the agency: its roles, grants and API tokens go at "
                                    "once. The owner cannot be removed (ERR_PERM_007).",
                 ("ERR_NOT_FOUND", "ERR_PERM_006", "ERR_PERM_007"), ok=204, write=True)
    def delete(self, request, username):
        actor = get_actor(request)
        services.remove_member(actor=actor, membership=member_for_actor(actor, username))
        return Response(status=status.HTTP_204_NO_CONTENT)


ASSIGN_CODES = ("ERR_VALIDATION", "ERR_NOT_FOUND", "ERR_PERM_006", "ERR_PERM_007")


class MemberRolesView(TenantAPIView):
    @team_schema("Assign a role on stores", "The sub-account holds the role on these stores from now on; its "
                                            "permissions there are derived at once. Assigning again changes nothing.",
                 ASSIGN_CODES, request=ts.AssignmentInputSerializer, response=ts.MemberSerializer, write=True)
    def post(self, request, username):
        actor = get_actor(request)
        data = parse(ts.AssignmentInputSerializer, request)
        member = member_for_actor(actor, username)
        role = role_for_actor(actor, data["role"], field="role")
        services.assign_role(actor=actor, membership=member, role=role, stores=stores_for(actor, data["stores"]))
        return Response(ts.MemberSerializer(member_for_actor(actor, username)).data)


class MemberRolesRevokeView(TenantAPIView):
    @team_schema("Revoke a role on stores", "The sub-account no longer holds the role on these stores; "
                                            "permissions other roles grant there stay.",
                 ASSIGN_CODES, request=ts.AssignmentInputSerializer, response=ts.MemberSerializer, write=True)
    def post(self, request, username):
        actor = get_actor(request)
        data = parse(ts.AssignmentInputSerializer, request)
        member = member_for_actor(actor, username)
        role = role_for_actor(actor, data["role"], field="role")
        services.revoke_role(actor=actor, membership=member, role=role, stores=stores_for(actor, data["stores"]))
        return Response(ts.MemberSerializer(member_for_actor(actor, username)).data)


# --- roles ------------------------------------------------------------------------------------------
@extend_schema_view(get=team_schema(
    "Roles", "The agency's roles (角色) and the store permissions each grants. Cursor-paginated.",
    ("ERR_VALIDATION", "ERR_PERM_006"), response=ts.RoleSerializer(many=True)))
class RoleListView(TenantAPIView, generics.ListAPIView):
    serializer_class = ts.RoleSerializer
    pagination_class = TeamPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Role.objects.for_actor(None)
        actor = get_actor(self.request)
        require_team_manager(actor)
        return Role.objects.for_actor(actor)

    @team_schema("Create a role", "A custom role (角色) of the agency with the store permissions it grants; assign "
                                  "it to members per store. Owner, or manage-team on every store.",
                 ("ERR_VALIDATION", "ERR_PERM_006"), request=ts.RoleCreateInputSerializer,
                 response=ts.RoleSerializer, ok=201, write=True)
    def post(self, request):
        actor = get_actor(request)
        data = parse(ts.RoleCreateInputSerializer, request)
        role = services.create_role(actor=actor, agency_id=actor.agency_id, name=data["name"],
                                    permissions=data["permissions"])
        return Response(ts.RoleSerializer(role).data, status=status.HTTP_201_CREATED)


class RoleDetailView(TenantAPIView):
    @team_schema("Change a role", "Replaces the role's permissions (every holder's grants follow in the same "
                                  "transaction) and/or renames it (the slug stays).",
                 ("ERR_VALIDATION", "ERR_NOT_FOUND", "ERR_PERM_006"), request=ts.RolePermissionsInputSerializer,
                 response=ts.RoleSerializer, write=True)
    def patch(self, request, role_id):
        actor = get_actor(request)
        data = parse(ts.RolePermissionsInputSerializer, request)
        role = role_for_actor(actor, role_id)
        with transaction.atomic():
            if "name" in data:
                role = services.rename_role(actor=actor, role=role, name=data["name"])
            if "permissions" in data:
                role = services.set_role_permissions(actor=actor, role=role, permissions=data["permissions"])
        return Response(ts.RoleSerializer(role).data)
