"""售后话术库 in the browser: quick replies per scope (agency-wide or one store), their editor with the variables
``aftersales.replies.parse_template`` knows, and the sensitive-word check (敏感词检测) before saving.

Every write is the service's call (``create_quick_reply`` / ``update_quick_reply`` / ``delete_quick_reply``), once
per form key (``portal.request.run_once``); the check runs the same two steps the save runs (``parse_template`` and
``check_text`` with the scope's market, every market for an agency-wide reply) and saves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from aftersales import replies
from aftersales.models import QuickReply
from portal.editors_common import (
    AGENCY_WIDE,
    Deletion,
    FormError,
    Section,
    can_manage,
    delete_view,
    editor_scope,
    missing,
    perm_note,
    save_once,
    scope_value,
    scopes,
)
from portal.request import KEY_FIELD, new_key
from portal.views import no_agency
from stores import errors
from stores.errors import AppError
from stores.permissions import StorePerm
from stores.services import actor_for_user

SCOPE_PARAM = "scope"

FIELD_LABELS = {
    "title": gettext_lazy("Title"),
    "body": gettext_lazy("Reply text"),
    "store": gettext_lazy("Where it is offered"),
    "position": gettext_lazy("Position"),
    KEY_FIELD: gettext_lazy("Form key"),
}

# What each variable of parse_template becomes when the reply is sent (replies.variables_for).
VARIABLE_HELP = {
    "buyer_name": gettext_lazy("the buyer's name (or “customer”)"),
    "order_id": gettext_lazy("the TikTok order id"),
    "return_id": gettext_lazy("the after-sales request id"),
    "refund_amount": gettext_lazy("the refund, with its currency"),
    "refund_eta": gettext_lazy("when the refund arrives (e.g. 2 hours)"),
    "store_name": gettext_lazy("the store's name"),
}


@dataclass(frozen=True)
class Check:
    """The sensitive-word check's answer for the text in the form (nothing saved)."""

    words: list[str]
    markets: str


ANCHOR = "scope"  # the list's anchors: scope-all, scope-<store id>


def _context(request, actor):
    return editor_scope(request, actor, StorePerm.MANAGE_QUICK_REPLIES)


@login_required
def replies_page(request):
    """The list: agency-wide replies, then each store's, in the order they are offered; filter by scope."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores, managed = _context(request, actor)
    sections = [Section(None, actor.is_owner, ANCHOR)] + [Section(s, s.pk in managed, ANCHOR) for s in stores]
    by_store = {None if s.store is None else s.store.pk: s for s in sections}
    for reply in QuickReply.objects.for_actor(actor).order_by("position", "id"):
        section = by_store.get(reply.store_id)
        if section is not None:
            section.rows.append(reply)
    chosen = request.GET.get(SCOPE_PARAM)
    shown = [s for s in sections if chosen is None or chosen == "*" or s.value == chosen] or sections
    return render(request, "portal/replies.html", {
        "actor": actor,
        "sections": shown,
        "all_sections": sections,
        "chosen": chosen if chosen is not None else "*",
        "cap": replies.max_per_scope(),
        "perm_note": perm_note(actor, managed, errors.ERR_PERM_004),
        "scope_param": SCOPE_PARAM,
    })


def _check(body: str, market_code: str | None) -> Check:
    """What the save would refuse, without saving: the variables first (ERR_REPLY_002 raises), then the words."""
    replies.parse_template(body)
    words = replies.check_text(body, market_code, all_markets=market_code is None)
    return Check(words, market_code or _("every market"))


def _render_form(request, actor, *, reply: QuickReply | None, stores, managed, values: dict,
                 error: FormError | None = None, check: Check | None = None, status: int = 200):
    offered = scopes(actor, stores, managed)
    allowed = can_manage(actor, reply, managed) if reply is not None else bool(offered)
    return render(request, "portal/replies_form.html", {
        "actor": actor,
        "reply": reply,
        "scopes": offered,
        "can_manage": allowed,
        "perm_error": None if allowed else errors.ERR_PERM_004,
        "values": values,
        "error": error,
        "check": check,
        "refused": errors.ERR_REPLY_001,
        "variables": [(name, VARIABLE_HELP.get(name, "")) for name in replies.VARIABLES],
        "brace_note": _("Write {{ or }} for a literal brace. Any other name in braces is refused."),
        "max_title": replies.MAX_TITLE,
        "max_body": replies.MAX_BODY,
        "form_key": new_key(),
        "delete_key": new_key(),
        "key_field": KEY_FIELD,
    }, status=status)


def _market_of(scope: str, stores) -> str | None:
    """The market whose words apply: the store's; None (every market) for agency-wide or an unknown scope, which the
    service refuses on save anyway."""
    store = next((s for s in stores if str(s.public_id) == scope), None)
    return None if store is None else store.market.code


def _posted(request) -> dict:
    return {"title": request.POST.get("title", ""), "body": request.POST.get("body", ""),
            "scope": request.POST.get("scope", AGENCY_WIDE)}


def _submit(request, actor, *, reply: QuickReply | None, stores, managed, save):
    """check → the words inline, nothing saved; save → the service once per form key, PRG to the list."""
    values = _posted(request)
    if reply is not None:
        values["scope"] = scope_value(reply.store)
    if request.POST.get("intent") == "check":
        try:
            check = _check(values["body"].strip(), _market_of(values["scope"], stores))
        except AppError as exc:
            error = FormError.of(exc, FIELD_LABELS)
            return _render_form(request, actor, reply=reply, stores=stores, managed=managed, values=values,
                                error=error, status=error.status)
        return _render_form(request, actor, reply=reply, stores=stores, managed=managed, values=values, check=check)
    return save_once(request, lambda: save(values), list_url=reverse("portal:replies"), labels=FIELD_LABELS,
                     refused=lambda error: _render_form(request, actor, reply=reply, stores=stores, managed=managed,
                                                        values=values, error=error, status=error.status))


@login_required
def reply_new(request):
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores, managed = _context(request, actor)
    if request.method == "POST":
        def save(values):
            store = values["scope"] or None
            created = replies.create_quick_reply(actor, title=values["title"], body=values["body"], store=store)
            return _("Quick reply “%(title)s” saved.") % {"title": created.title}

        return _submit(request, actor, reply=None, stores=stores, managed=managed, save=save)
    offered = [value for value, _label in scopes(actor, stores, managed)]
    wanted = request.GET.get(SCOPE_PARAM, "")
    values = {"title": "", "body": "", "scope": wanted if wanted in offered else (offered[0] if offered else "")}
    status = 200 if offered else 403
    return _render_form(request, actor, reply=None, stores=stores, managed=managed, values=values, status=status)


def _reply_for(actor, reply_id) -> QuickReply | None:
    return QuickReply.objects.for_actor(actor).by_id(str(reply_id)).select_related("store__market").first()


@login_required
def reply_edit(request, reply_id):
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    reply = _reply_for(actor, reply_id)
    if reply is None:
        return missing(request, reverse("portal:replies"), _("Back to the quick replies"))
    stores, managed = _context(request, actor)
    if request.method == "POST":
        def save(values):
            saved = replies.update_quick_reply(actor, str(reply.public_id), title=values["title"],
                                               body=values["body"])
            return _("Quick reply “%(title)s” saved.") % {"title": saved.title}

        return _submit(request, actor, reply=reply, stores=stores, managed=managed, save=save)
    values = {"title": reply.title, "body": reply.body, "scope": scope_value(reply.store)}
    return _render_form(request, actor, reply=reply, stores=stores, managed=managed, values=values,
                        status=200 if can_manage(actor, reply, managed) else 403)


def _delete(actor, reply: QuickReply) -> str:
    replies.delete_quick_reply(actor, str(reply.public_id))
    return _("Quick reply “%(title)s” deleted.") % {"title": reply.title}


def _delete_refused(request, actor, reply: QuickReply, error: FormError):
    stores, managed = _context(request, actor)
    values = {"title": reply.title, "body": reply.body, "scope": scope_value(reply.store)}
    return _render_form(request, actor, reply=reply, stores=stores, managed=managed, values=values, error=error,
                        status=error.status)


DELETION = Deletion(find=_reply_for, delete=_delete, list_name="portal:replies",
                    back_label=lambda: _("Back to the quick replies"), labels=FIELD_LABELS, refused=_delete_refused)


@login_required
@require_POST
def reply_delete(request, reply_id):
    return delete_view(request, reply_id, DELETION)
