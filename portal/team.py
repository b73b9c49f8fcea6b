"""团队管理 in the browser: members (the owner and 子账号) with their roles per store, the "who can do what" matrix
(people × stores, the permissions each really holds), and the forms that change them — add a sub-account, grant
a role on stores, revoke it, remove a member, create a role, rename it and set its permissions.

Nothing is decided here: the page is for whoever the services would let change the whole team (the owner, or a
sub-account holding "Manage team" on every store — ``stores.services.require_team_manager``, as the team API's
reads); anyone else gets ``ERR_PERM_006`` with the hint naming the role setting. Every change is the service call
the team API makes (``stores.services``), run once per form key. The page costs the same number of queries
whatever the size of the team: members, their assignments, roles, stores and the grants each in one query.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.mail import send_mail
from django.db import transaction
from django.shortcuts import render
from django.urls import path, reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from portal import team_addresses
from portal.request import Failed, new_key
from portal.team_forms import invalid, submit
from portal.views import no_agency, not_found
from stores import errors, services
from stores.api.team_views import member_for_actor, members_for_actor, role_for_actor, stores_for
from stores.errors import AppError
from stores.models import Membership, Role, StoreGroupObjectPermission, StoreUserObjectPermission
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.selectors import stores_for_actor

ALL_PERMS = list(StorePerm)
SET_PASSWORD = "password"  # the add form's other choice; anything else is an invitation (the default)

logger = logging.getLogger(__name__)


# --- reads --------------------------------------------------------------------------------------------------
def is_team_manager(actor: Actor) -> bool:
    try:
        services.require_team_manager(actor, actor.agency_id, [])
    except AppError:
        return False
    return True


def held_permissions(actor: Actor, user_ids: list[int]) -> dict[tuple[int, int], set[str]]:
    """What each member holds on each store of the agency — the guardian rows every check reads (direct and through
    a group), not what their roles should give: the matrix shows the truth. One query."""
    direct = StoreUserObjectPermission.objects.filter(
        user_id__in=user_ids, content_object__agency_id=actor.agency_id,
    ).values_list("user_id", "content_object_id", "permission__codename")
    grouped = StoreGroupObjectPermission.objects.filter(
        group__user__in=user_ids, content_object__agency_id=actor.agency_id,
    ).values_list("group__user", "content_object_id", "permission__codename")
    held: dict[tuple[int, int], set[str]] = {}
    for user_id, store_id, codename in direct.union(grouped):
        held.setdefault((user_id, store_id), set()).add(codename)
    return held


@dataclass
class Grant:
    store: object
    key: str


@dataclass
class HeldRole:
    role: Role
    grants: list[Grant]


@dataclass
class MemberRow:
    membership: Membership
    username: str
    email: str
    is_owner: bool
    kind: str
    roles: list[HeldRole]
    cells: list[list[StorePerm]]  # one per store, in the stores' order
    remove_key: str = ""
    pending: bool = False  # invited, no password set yet
    resend_key: str = ""


@dataclass
class RoleRow:
    role: Role
    perms: set[str]
    key: str
    holders: int = 0
    name: str = ""
    error: bool = False


@dataclass
class Keys:
    create_member: str = field(default_factory=new_key)
    grant: str = field(default_factory=new_key)
    create_role: str = field(default_factory=new_key)


def member_rows(actor: Actor, stores: list) -> list[MemberRow]:
    members = list(members_for_actor(actor).order_by("kind", "user__username"))
    held = held_permissions(actor, [m.user_id for m in members])
    by_pk = {s.pk: s for s in stores}  # with their market, already read
    rows = []
    for member in members:
        by_role: dict[int, HeldRole] = {}
        for assignment in member.assignments.all():  # prefetched with role and store
            entry = by_role.setdefault(assignment.role_id, HeldRole(assignment.role, []))
            entry.grants.append(Grant(by_pk.get(assignment.store_id, assignment.store), new_key()))
        for entry in by_role.values():
            entry.grants.sort(key=lambda g: (g.store.name, g.store.pk))
        if member.is_owner:
            cells = [ALL_PERMS for _store in stores]
        else:
            cells = [[p for p in ALL_PERMS if p.value in held.get((member.user_id, s.pk), ())] for s in stores]
        # The user row is already read (select_related): an unusable password costs no query to see.
        pending = not member.is_owner and not member.user.has_usable_password()
        rows.append(MemberRow(
            membership=member, username=member.user.username, email=member.user.email, is_owner=member.is_owner,
            kind=member.get_kind_display(), roles=sorted(by_role.values(), key=lambda e: (e.role.name, e.role.pk)),
            cells=cells, remove_key="" if member.is_owner else new_key(), pending=pending,
            resend_key=new_key() if pending else ""))
    return rows


def role_rows(actor: Actor, members: list[MemberRow], failed: Failed | None) -> list[RoleRow]:
    holders: dict[int, set[int]] = {}
    for row in members:
        for entry in row.roles:
            holders.setdefault(entry.role.pk, set()).add(row.membership.pk)
    rows = []
    for role in Role.objects.for_actor(actor).order_by("name", "pk"):
        row = RoleRow(role, set(role.permissions), new_key(), len(holders.get(role.pk, ())), role.name)
        if failed is not None and failed.action == "edit-role" and failed.values.get("role") == str(role.public_id):
            row.name, row.error = str(failed.values.get("name", role.name)), True
            row.perms = set(_as_list(failed.values.get("permissions")))
        rows.append(row)
    return rows


def _as_list(value) -> list[str]:
    if value in (None, ""):
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def error_place(failed: Failed | None, members: list[MemberRow], roles: list[RoleRow]) -> str:
    """Where the refusal is shown: next to the form that was sent, or at the top when that form is gone."""
    if failed is None:
        return ""
    if failed.action in ("create-member", "grant", "create-role"):
        return failed.action
    if failed.action in ("revoke", "remove", "resend"):
        name = failed.values.get("member")
        if any(row.username == name for row in members):
            return f"member:{name}"
    if failed.action == "edit-role" and any(r.error for r in roles):
        return "role:" + str(failed.values.get("role"))
    return "top"


def team_context(request, actor: Actor, failed: Failed | None = None) -> dict:
    stores = list(stores_for_actor(actor))
    members = member_rows(actor, stores)
    roles = role_rows(actor, members, failed)
    values = failed.values if failed is not None else {}
    action = failed.action if failed is not None else ""
    return {
        "actor": actor,
        "stores": stores,
        "members": members,
        "sub_accounts": [m for m in members if not m.is_owner],
        "roles": roles,
        "perms": ALL_PERMS,
        "keys": Keys(),
        "failed": failed,
        "error_at": error_place(failed, members, roles),
        # The values typed into the refused form, for that form only (the password is never sent back).
        "v_member": values if action == "create-member" else {},
        "set_password": action == "create-member" and values.get("setup") == SET_PASSWORD,
        "v_grant": values if action == "grant" else {},
        "v_role": values if action == "create-role" else {},
        "chosen_stores": _as_list(values.get("stores")) if action == "grant" else [],
        "chosen_perms": _as_list(values.get("permissions")) if action == "create-role" else [],
    }


def denied(request, actor: Actor):
    """Not a team manager: the coded refusal with the role setting to ask for, and what this person holds."""
    stores = list(stores_for_actor(actor))
    held = services.store_perms(actor, [s.pk for s in stores])
    mine = [(s, [p for p in ALL_PERMS if p.value in held.get(s.pk, ())]) for s in stores]
    return render(request, "portal/team_denied.html", {"error": errors.ERR_PERM_006, "mine": mine}, status=403)


def render_team(request, actor: Actor, failed: Failed | None = None):
    if not is_team_manager(actor):
        return denied(request, actor)
    return render(request, "portal/team.html", team_context(request, actor, failed))


@login_required
def team(request):
    actor = services.actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    return render_team(request, actor)


# --- changes: parse the form, call the one service, say what happened ---------------------------------------
def _text(post, name: str) -> str:
    return str(post.get(name, "") or "").strip()


def _permissions(post) -> list[str]:
    chosen = post.getlist("permissions")
    if any(p not in StorePerm.values for p in chosen):
        raise invalid("permissions", _("Unknown permission."))
    return chosen


def _stores(actor: Actor, post, *, one: bool = False) -> list:
    ids = [str(v) for v in post.getlist("stores" if not one else "store")]
    if not ids:
        raise invalid("stores", _("Choose at least one store."))
    try:
        [uuid.UUID(v) for v in ids]
    except ValueError:
        raise AppError(errors.ERR_NOT_FOUND, fields={"stores": [str(errors.ERR_NOT_FOUND.message)]}) from None
    return stores_for(actor, ids)


def _names(stores) -> str:
    return ", ".join(f"{s.name} · {s.market.code}" for s in sorted(stores, key=lambda s: (s.name, s.pk)))


def invitation_link(request, user) -> str:
    uidb64, token = services.invitation_link_parts(user)
    return request.build_absolute_uri(reverse("portal:invite", args=[uidb64, token]))


def send_invitation(request, member: Membership, link: str) -> bool:
    """The invitation e-mail, in the sender's language (the one active for this request). False when it could not
    be sent: the caller still shows the link, so a mail server being down never loses the invited account."""
    days = max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)
    names = {"name": member.user.username, "agency": member.agency.name, "inviter": request.user.get_username(),
             "link": link, "days": days}
    subject = _("%(inviter)s invites you to %(agency)s on the after-sales control tower") % names
    body = "\n\n".join([
        _("%(inviter)s has added you as a sub-account (子账号) of %(agency)s. Your username is %(name)s.") % names,
        _("Choose your password here, then sign in:") + "\n" + link,
        ngettext("The link works once and expires in %(days)s day. If it no longer works, ask %(inviter)s to "
                 "send the invitation again.",
                 "The link works once and expires in %(days)s days. If it no longer works, ask %(inviter)s to "
                 "send the invitation again.", days) % names,
    ])
    try:
        send_mail(subject, body, None, [member.user.email])
    except Exception:  # SMTP, DNS, a refused address: whatever the backend raises, the account stays
        logger.exception("invitation e-mail to member %s not sent", member.pk)
        return False
    return True


def invite(request, member: Membership) -> str:
    """A fresh link, sent by e-mail when there is an address, and shown to the sender either way."""
    link = invitation_link(request, member.user)
    names = {"name": member.user.username, "email": member.user.email, "link": link}
    if not member.user.email:
        messages.warning(request, _("%(name)s has no e-mail address: pass on this link yourself: %(link)s") % names)
        return _("A new invitation link for %(name)s is ready.") % names
    if not send_invitation(request, member, link):
        messages.warning(request, _("The invitation e-mail to %(email)s could not be sent. The sub-account is kept: "
                                    "pass on this link yourself (chat, message): %(link)s") % names)
        return _("Invitation for %(name)s is ready; only the e-mail failed.") % names
    return _("Invitation sent to %(email)s for %(name)s. You can also pass on this link (chat, message); it is "
             "shown only now: %(link)s") % names


def act_create_member(actor: Actor, post, request) -> str:
    """Invite (the default: the person chooses their password from the e-mailed link) or set a password now."""
    with_password = _text(post, "setup") == SET_PASSWORD
    member = services.create_sub_account(actor=actor, agency_id=actor.agency_id, username=_text(post, "username"),
                                         password=str(post.get("password", "")) if with_password else None,
                                         email=_text(post, "email"))
    if with_password:
        return _("Sub-account %(name)s was created. It sees no store until you grant it a role.") % {
            "name": member.user.username}
    return " ".join([_("Sub-account %(name)s was created and invited. It sees no store until you grant it a role.")
                     % {"name": member.user.username}, invite(request, member)])


def act_resend(actor: Actor, post, request) -> str:
    """A new link for a member who has not set a password yet (an older link keeps working until it expires)."""
    member = member_for_actor(actor, _text(post, "member"))
    if member.is_owner or member.user.has_usable_password():
        raise invalid("member", _("%(name)s has already set a password: there is no invitation to send.") % {
            "name": member.user.username})
    return invite(request, member)


def act_grant(actor: Actor, post) -> str:
    member = member_for_actor(actor, _text(post, "member"))
    role = role_for_actor(actor, _text(post, "role"), field="role")
    stores = _stores(actor, post)
    services.assign_role(actor=actor, membership=member, role=role, stores=stores)
    return _("%(role)s granted to %(name)s on %(stores)s.") % {
        "role": role.name, "name": member.user.username, "stores": _names(stores)}


def act_revoke(actor: Actor, post) -> str:
    member = member_for_actor(actor, _text(post, "member"))
    role = role_for_actor(actor, _text(post, "role"), field="role")
    stores = _stores(actor, post, one=True)
    services.revoke_role(actor=actor, membership=member, role=role, stores=stores)
    return _("%(role)s revoked from %(name)s on %(stores)s.") % {
        "role": role.name, "name": member.user.username, "stores": _names(stores)}


def act_remove(actor: Actor, post) -> str:
    member = member_for_actor(actor, _text(post, "member"))
    services.remove_member(actor=actor, membership=member)
    return _("%(name)s was removed from the team: their roles, permissions and API tokens are gone.") % {
        "name": member.user.username}


def act_create_role(actor: Actor, post) -> str:
    role = services.create_role(actor=actor, agency_id=actor.agency_id, name=_text(post, "name"),
                                permissions=_permissions(post))
    return _("Role %(name)s was created. Grant it to members on stores.") % {"name": role.name}


def act_edit_role(actor: Actor, post) -> str:
    """As the API's PATCH: rename and set the permissions in one transaction (holders' grants follow at once)."""
    role = role_for_actor(actor, _text(post, "role"), field="role")
    permissions = _permissions(post)
    with transaction.atomic():
        name = _text(post, "name")
        if name != role.name:
            role = services.rename_role(actor=actor, role=role, name=name)
        role = services.set_role_permissions(actor=actor, role=role, permissions=permissions)
    return _("Role %(name)s was saved; everyone holding it has its permissions now.") % {"name": role.name}


HANDLERS = {
    "create-member": act_create_member,
    "resend": act_resend,
    "grant": act_grant,
    "revoke": act_revoke,
    "remove": act_remove,
    "create-role": act_create_role,
    "edit-role": act_edit_role,
}


@login_required
@require_POST
def team_act(request, action):
    actor = services.actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    if action not in HANDLERS:
        return not_found(request, reverse("portal:team"), _("Back to team & roles"))
    if not is_team_manager(actor):
        return denied(request, actor)
    handler = HANDLERS[action]
    # The invitation handlers build the absolute link and speak to the sender: they need the request itself.
    with_request = handler in (act_create_member, act_resend)
    return submit(request, action,
                  lambda: handler(actor, request.POST, request) if with_request else handler(actor, request.POST),
                  reverse("portal:team"),
                  lambda failed: render_team(request, actor, failed))


# --- the invited person's side: no login, Django's password-reset confirmation on our pages -------------------
class InviteView(auth_views.PasswordResetConfirmView):
    """The link from the invitation: set a password, then sign in. A used, expired or altered link shows why and
    what to do (``validlink`` False); the token is Django's, so setting the password makes the link invalid."""

    template_name = "portal/invite.html"
    success_url = reverse_lazy("portal:invite_done")
    post_reset_login = False


class InviteDoneView(auth_views.PasswordResetCompleteView):
    template_name = "portal/invite_done.html"


urlpatterns: list = [
    path("team/", team, name="team"),
    path("team/act/<slug:action>/", team_act, name="team_act"),
    path("invite/done/", InviteDoneView.as_view(), name="invite_done"),
    path("invite/<uidb64>/<token>/", InviteView.as_view(), name="invite"),
    *team_addresses.urlpatterns,
]
