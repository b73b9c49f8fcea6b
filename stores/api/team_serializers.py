"""Input and output shapes of team management (团队管理): members, roles, role assignments."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from stores.permissions import StorePerm


class OffsetDateTimeField(serializers.DateTimeField):
    """ISO 8601 with +00:00, like the rest of the API (stores may not import aftersales' field)."""

    def to_representation(self, value):
        return value.astimezone(dt.UTC).isoformat() if value is not None else None


class RoleRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    slug = serializers.CharField()
    name = serializers.CharField()


class StoreNameSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()


class MemberRoleSerializer(serializers.Serializer):
    role = RoleRefSerializer()
    stores = StoreNameSerializer(many=True)


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username", help_text=("The member's id in paths."))
    name = serializers.SerializerMethodField()
    email = serializers.CharField(source="user.email", help_text=("May be empty."))
    kind = serializers.CharField(help_text=("owner or sub_account (子账号)."))
    is_active = serializers.BooleanField(source="user.is_active")
    joined_at = OffsetDateTimeField(source="created_at")
    roles = serializers.SerializerMethodField(help_text=(
        "The roles held, each with the stores it is held on (owners hold every permission without roles)."))

    def get_name(self, membership) -> str:
        return membership.user.get_full_name()

    @staticmethod
    def _grouped(membership) -> list[dict]:
        by_role: dict[int, dict] = {}
        for assignment in membership.assignments.all():  # prefetched with role and store
            entry = by_role.setdefault(assignment.role_id, {"role": assignment.role, "stores": []})
            entry["stores"].append(assignment.store)
        for entry in by_role.values():
            entry["stores"].sort(key=lambda s: (s.name, s.pk))
        return sorted(by_role.values(), key=lambda e: (e["role"].name, e["role"].pk))

    def get_roles(self, membership) -> list[dict]:
        return MemberRoleSerializer(self._grouped(membership), many=True).data


class RoleSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    slug = serializers.CharField()
    name = serializers.CharField()
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=StorePerm.choices))
    is_template = serializers.BooleanField(help_text=("Created from a template (store manager, after-sales agent, "
                                                      "logistics clerk, analyst)."))


class RolePermissionsInputSerializer(serializers.Serializer):
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=StorePerm.choices), required=False,
                                        help_text=("The permissions the role grants from now on; every holder's "
                                                   "grants follow at once."))
    name = serializers.CharField(required=False, max_length=100, help_text="A new display name (the slug stays).")

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"permissions": [_("Send permissions, name or both.")]})
        return attrs


class RoleCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=StorePerm.choices), allow_empty=True)


class MemberCreateInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, help_text="The login; unique in the whole installation.")
    password = serializers.CharField(max_length=128, write_only=True, style={"input_type": "password"},
                                     help_text="Checked by the password validators; never shown again.")
    email = serializers.CharField(max_length=254, required=False, allow_blank=True, default="")


class AssignmentInputSerializer(serializers.Serializer):
    role = serializers.UUIDField(help_text=("A role's id."))
    stores = serializers.ListField(child=serializers.UUIDField(), allow_empty=False, max_length=500,
                                   help_text=("Stores' ids."))
