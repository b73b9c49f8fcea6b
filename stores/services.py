"""Writes of the tenancy kernel. Roles become guardian object permissions here, and only here."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from stores import errors
from stores.errors import AppError
from stores.models import (
    Agency,
    ApiToken,
    Market,
    Membership,
    Role,
    RoleAssignment,
    Store,
    StoreUserObjectPermission,
)
from stores.permissions import PERM_ERROR_CODES, ROLE_TEMPLATES, StorePerm
from stores.scoping import Actor, granted_store_ids

User = get_user_model()


# --- actors and permission checks ------------------------------------------------------------
def actor_for_user(user) -> Actor | None:
    """The Actor for an authenticated user, or None when the user belongs to no agency."""
    if user is None or not user.is_authenticated:
        return None
    membership = Membership.objects.unscoped().filter(user_id=user.pk).only("id", "agency_id", "kind").first()
    if membership is None:
        return None
    return Actor(user_id=user.pk, agency_id=membership.agency_id, membership_id=membership.pk,
                 is_owner=membership.is_owner, username=user.get_username())


def has_store_perm(actor: Actor, store: Store, perm: str) -> bool:
    if store.agency_id != actor.agency_id:
        return False
    if actor.is_owner:
        return True
    return granted_store_ids(actor, perm).filter(pk=store.pk).exists()


def require_store_perm(actor: Actor, store: Store, perm: str) -> None:
    """Raise the coded 403 naming the role setting when a visible store lacks ``perm``.

    Callers have already found ``store`` through ``for_actor`` (so it is visible); a store of
    another tenant never reaches here as a 403.
    """
    if not has_store_perm(actor, store, perm):
        raise missing_perm(perm)


def missing_perm(perm: str) -> AppError:
    """The coded 403 for a store permission the actor lacks (its code names the role setting)."""
    return AppError(errors.CATALOGUE[PERM_ERROR_CODES[StorePerm(perm)]])


def store_perms(actor: Actor, store_ids: Iterable[int]) -> dict[int, set[str]]:
    """Every permission the actor holds on each of the given stores (user and group grants), in one query."""
    store_ids = list(store_ids)
    visible = Store.objects.for_agency(actor.agency_id).filter(pk__in=store_ids)
    if actor.is_owner:
        return {pk: {p.value for p in StorePerm} for pk in visible.values_list("pk", flat=True)}
    from stores.models import StoreGroupObjectPermission

    result: dict[int, set[str]] = {}
    user_rows = StoreUserObjectPermission.objects.filter(
        user_id=actor.user_id, content_object__in=visible).values_list("content_object_id", "permission__codename")
    group_rows = StoreGroupObjectPermission.objects.filter(
        group__user=actor.user_id, content_object__in=visible).values_list("content_object_id", "permission__codename")
    for store_id, codename in user_rows.union(group_rows):
        result.setdefault(store_id, set()).add(codename)
    return result


# --- agencies, members, stores -----------------------------------------------------------------
@transaction.atomic
def create_agency(*, slug: str, name: str) -> Agency:
    agency, _created = Agency.objects.get_or_create(slug=slug, defaults={"name": name})
    ensure_role_templates(agency)
    return agency


def ensure_role_templates(agency: Agency) -> None:
    """The template roles, named in English whatever language is active (the portal shows a template role that
    was never renamed in each reader's language: portal_format.role_label)."""
    from django.utils import translation

    with translation.override("en"):
        for slug, (label, perms) in ROLE_TEMPLATES.items():
            Role.objects.get_or_create(
                agency=agency, slug=slug,
                defaults={"name": str(label), "permissions": [str(p) for p in perms], "is_template": True},
            )


@transaction.atomic
def add_member(*, agency: Agency, user, owner: bool = False) -> Membership:
    kind = Membership.Kind.OWNER if owner else Membership.Kind.SUB_ACCOUNT
    membership, created = Membership.objects.get_or_create(user=user, defaults={"agency": agency, "kind": kind})
    if not created and membership.agency_id != agency.pk:
        raise AppError(errors.ERR_PERM_007, detail="user already belongs to another agency")
    return membership


@transaction.atomic
def create_store(*, agency: Agency, market: Market, name: str, shop_id: str, **fields) -> Store:
    store, _created = Store.objects.update_or_create(
        shop_id=shop_id, agency=agency, defaults={"market": market, "name": name, **fields}
    )
    return store


# --- roles → guardian grants ------------------------------------------------------------------
def require_team_manager(actor: Actor | None, agency_id: int, store_ids: Iterable[int]) -> None:
    """The owner, or a sub-account holding manage_team on every store the change touches.

    A change that touches no store (an unassigned role, a member without roles) needs manage_team on
    every store of the agency: "nothing involved" must never mean "nothing to check". Another agency's
    objects answer as missing.
    """
    if actor is None:
        return  # system/back-office code (seed, admin), which is explicit about it
    if actor.agency_id != agency_id:
        raise AppError(errors.ERR_NOT_FOUND)
    if actor.is_owner:
        return
    store_ids = set(store_ids) or set(Store.objects.for_agency(agency_id).values_list("pk", flat=True))
    allowed = set(granted_store_ids(actor, StorePerm.MANAGE_TEAM).filter(pk__in=store_ids).values_list("pk", flat=True))
    if not store_ids or allowed != store_ids:
        raise AppError(errors.ERR_PERM_006)


def _lock(role: Role | None = None, membership: Membership | None = None) -> None:
    """Role first, then membership — the same order everywhere, so concurrent role edits and
    assignments serialise instead of deriving grants from each other's stale reads."""
    if role is not None:
        Role.objects.for_agency(role.agency_id).select_for_update(no_key=True).filter(pk=role.pk).first()
    if membership is not None:
        Membership.objects.for_agency(membership.agency_id).select_for_update(no_key=True).filter(pk=membership.pk).first()


def _sync_grants(membership: Membership, store_ids: Iterable[int]) -> None:
    """Make the user's guardian rows on these stores equal the union of their roles there.

    Any permission implies view_store: a role that may handle after-sales must see the store.
    """
    store_ids = set(store_ids)
    if not store_ids:
        return
    wanted: set[tuple[int, str]] = set()
    for store_id, perms in RoleAssignment.objects.unscoped().filter(
        membership=membership, store_id__in=store_ids
    ).values_list("store_id", "role__permissions"):
        if perms:
            wanted.update((store_id, p) for p in perms)
            wanted.add((store_id, StorePerm.VIEW.value))
    perm_ids = dict(
        Permission.objects.filter(
            content_type__app_label="stores", content_type__model="store",
            codename__in=[p.value for p in StorePerm],
        ).values_list("codename", "pk")
    )
    existing = {
        (row.content_object_id, row.permission.codename): row.pk
        for row in StoreUserObjectPermission.objects.filter(
            user_id=membership.user_id, content_object_id__in=store_ids
        ).select_related("permission")
    }
    stale = [pk for key, pk in existing.items() if key not in wanted]
    if stale:
        StoreUserObjectPermission.objects.filter(pk__in=stale).delete()
    StoreUserObjectPermission.objects.bulk_create(
        [
            StoreUserObjectPermission(user_id=membership.user_id, content_object_id=store_id,
                                      permission_id=perm_ids[codename])
            for store_id, codename in wanted - existing.keys()
        ],
        ignore_conflicts=True,
    )


def _check_assignable(membership: Membership, role: Role, stores: list[Store]) -> None:
    if membership.is_owner or role.agency_id != membership.agency_id or any(
        s.agency_id != membership.agency_id for s in stores
    ):
        raise AppError(errors.ERR_PERM_007)


@transaction.atomic
def assign_role(*, actor: Actor | None, membership: Membership, role: Role, stores: Iterable[Store]) -> None:
    stores = list(stores)
    _check_assignable(membership, role, stores)
    require_team_manager(actor, membership.agency_id, [s.pk for s in stores])
    _lock(role, membership)
    RoleAssignment.objects.bulk_create(
        [RoleAssignment(agency_id=membership.agency_id, membership=membership, role=role, store=s) for s in stores],
        ignore_conflicts=True,
    )
    _sync_grants(membership, [s.pk for s in stores])


@transaction.atomic
def revoke_role(*, actor: Actor | None, membership: Membership, role: Role, stores: Iterable[Store]) -> None:
    store_ids = [s.pk for s in stores]
    if role.agency_id != membership.agency_id:
        raise AppError(errors.ERR_PERM_007)
    require_team_manager(actor, membership.agency_id, store_ids)
    _lock(role, membership)
    RoleAssignment.objects.for_agency(membership.agency_id).filter(
        membership=membership, role=role, store_id__in=store_ids
    ).delete()
    _sync_grants(membership, store_ids)


@transaction.atomic
def set_role_permissions(*, actor: Actor | None, role: Role, permissions: Iterable[str]) -> Role:
    """Change what a role grants; every holder's guardian rows follow at once."""
    perms = sorted({StorePerm(p).value for p in permissions})
    _lock(role)  # before reading the assignments: a concurrent assign waits, then derives from the new set
    role = Role.objects.for_agency(role.agency_id).get(pk=role.pk)
    assignments = RoleAssignment.objects.for_agency(role.agency_id).filter(role=role)
    require_team_manager(actor, role.agency_id, set(assignments.values_list("store_id", flat=True)))
    role.permissions = perms
    role.save(update_fields=["permissions"])
    by_member: dict[int, set[int]] = {}
    for membership_id, store_id in assignments.values_list("membership_id", "store_id"):
        by_member.setdefault(membership_id, set()).add(store_id)
    members = Membership.objects.for_agency(role.agency_id).filter(pk__in=by_member).order_by("pk")
    for membership in members.select_for_update(no_key=True):
        _sync_grants(membership, by_member[membership.pk])
    return role


@transaction.atomic
def remove_member(*, actor: Actor | None, membership: Membership) -> None:
    """Take a sub-account out of the agency: its grants and API tokens go with it, at once.

    The owner cannot be removed this way (an agency always keeps its owner).
    """
    if membership.is_owner:
        raise AppError(errors.ERR_PERM_007, detail="the owner cannot be removed")
    store_ids = list(RoleAssignment.objects.for_agency(membership.agency_id)
                     .filter(membership=membership).values_list("store_id", flat=True))
    require_team_manager(actor, membership.agency_id, store_ids)
    _lock(membership=membership)
    RoleAssignment.objects.for_agency(membership.agency_id).filter(membership=membership).delete()
    StoreUserObjectPermission.objects.filter(user_id=membership.user_id).delete()
    revoke_api_tokens(ApiToken.objects.for_agency(membership.agency_id).filter(user_id=membership.user_id))
    membership.delete()


@transaction.atomic
def create_sub_account(*, actor: Actor | None, agency_id: int, username: str, password: str | None,
                       email: str = "") -> Membership:
    """A new login (子账号) in the agency, with no role yet: it sees nothing until a role is assigned.

    Only the owner, or a sub-account managing the team on every store, may add people. The username is a
    login for the whole installation, so a taken one is refused whichever agency holds it; the password must
    pass the configured validators. Without a password (an invitation) the login gets an unusable one — nobody
    can sign in with it until the person sets theirs through ``invitation_link_parts`` — so an e-mail is needed
    to reach them.
    """
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError as DjangoValidationError
    from django.core.validators import validate_email

    require_team_manager(actor, agency_id, [])
    problems: dict[str, list[str]] = {}
    try:
        User.username_validator(username)
    except DjangoValidationError as exc:
        problems["username"] = list(exc.messages)
    if not problems and User.objects.filter(username__iexact=username).exists():
        problems["username"] = [str(_("This username is taken."))]
    if email:
        try:
            validate_email(email)
        except DjangoValidationError as exc:
            problems["email"] = list(exc.messages)
    elif password is None:
        problems["email"] = [str(_("An invitation needs an e-mail address to be sent to."))]
    if password is not None:
        try:
            validate_password(password, User(username=username, email=email))
        except DjangoValidationError as exc:
            problems["password"] = list(exc.messages)
    if problems:
        raise AppError(errors.ERR_VALIDATION, fields=problems)
    # With password=None, create_user calls set_password(None), which stores what set_unusable_password() does.
    user = User.objects.create_user(username=username, email=email, password=password)
    return add_member(agency=Agency.objects.get(pk=agency_id), user=user)


def invitation_link_parts(user) -> tuple[str, str]:
    """The two parts of the link where an invited person sets their password: Django's password-reset token,
    so it expires after ``PASSWORD_RESET_TIMEOUT`` and stops working once a password is set (no table needed)."""
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    return urlsafe_base64_encode(force_bytes(user.pk)), default_token_generator.make_token(user)


@transaction.atomic
def create_role(*, actor: Actor | None, agency_id: int, name: str, permissions: Iterable[str]) -> Role:
    """A custom role (角色) of the agency; its slug comes from the name and is unique in the agency."""
    from django.utils.text import slugify

    require_team_manager(actor, agency_id, [])
    name = (name or "").strip()
    slug = slugify(name)[:50] or f"role-{uuid.uuid4().hex[:8]}"
    if not name or len(name) > 100:
        raise AppError(errors.ERR_VALIDATION, fields={"name": [str(_("1 to 100 characters."))]})
    if Role.objects.for_agency(agency_id).filter(Q(slug=slug) | Q(name__iexact=name)).exists():
        raise AppError(errors.ERR_VALIDATION, fields={"name": [str(_("The agency already has a role by this name."))]})
    return Role.objects.create(agency_id=agency_id, slug=slug, name=name,
                               permissions=sorted({StorePerm(p).value for p in permissions}))


@transaction.atomic
def rename_role(*, actor: Actor | None, role: Role, name: str) -> Role:
    """A new display name; the slug (what scripts refer to) stays."""
    _lock(role)
    require_team_manager(actor, role.agency_id, [])
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise AppError(errors.ERR_VALIDATION, fields={"name": [str(_("1 to 100 characters."))]})
    if Role.objects.for_agency(role.agency_id).filter(name__iexact=name).exclude(pk=role.pk).exists():
        raise AppError(errors.ERR_VALIDATION, fields={"name": [str(_("The agency already has a role by this name."))]})
    Role.objects.for_agency(role.agency_id).filter(pk=role.pk).update(name=name)
    role.name = name
    return role


# --- API tokens -------------------------------------------------------------------------------
def hash_token(key: str) -> str:
    # Keys are 256-bit random: a fast hash is enough (no dictionary to guess from), and it
    # allows an indexed lookup instead of comparing against every stored token.
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def create_api_token(*, user, name: str = "default") -> tuple[ApiToken, str]:
    membership = Membership.objects.unscoped().filter(user_id=user.pk).first()
    if membership is None:
        raise AppError(errors.ERR_AUTH_004)
    key = "ast_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        agency_id=membership.agency_id, user=user, name=name[:100],
        prefix=key[:12], key_hash=hash_token(key),
    )
    return token, key


def authenticate_token(key: str) -> ApiToken | None:
    token = (
        ApiToken.objects.unscoped()
        .select_related("user")
        .filter(key_hash=hash_token(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # At most one write a minute per token: a busy ERP must not turn every read into a write.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.unscoped().filter(pk=token.pk).update(last_used_at=now)
    return token


def revoke_api_tokens(tokens) -> int:
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- background health --------------------------------------------------------------------------
def record_heartbeat(name: str) -> None:
    from config.middleware import current_request_id
    from stores.models import Heartbeat

    Heartbeat.objects.update_or_create(
        name=name, defaults={"seen_at": timezone.now(), "request_id": current_request_id() or ""}
    )
