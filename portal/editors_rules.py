"""自动规则 in the browser: the rules in the order they are tried, their conditions in words, a structured editor
for ``aftersales.rules.clean_conditions``' keys and ``clean_params``' parameters, and the dry run
(``preview_rule``) over the past N days' requests before saving.

The form only turns fields into the service's shapes (lists, ``{"amount", "currency"}``, whole numbers, as typed);
the service validates them and its field errors come back next to the matching fields. Writes are
``create_rule`` / ``update_rule`` / ``delete_rule``, once per form key (``portal.request.run_once``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from aftersales import rules
from aftersales.models import AfterSalesRequest, AutoRule, QuickReply
from aftersales.states import RequestType
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
from portal.templatetags.portal_format import money
from portal.views import no_agency
from stores import errors
from stores.errors import AppError
from stores.models import Market, Membership
from stores.permissions import StorePerm
from stores.services import actor_for_user

PREVIEW_CHOICES = (7, 30, 90)
ANY, HAS, HAS_NOT = "any", "has", "has_not"

FIELD_LABELS = {
    "name": gettext_lazy("Rule name"),
    "store": gettext_lazy("Applies to"),
    "position": gettext_lazy("Position"),
    "conditions": gettext_lazy("Conditions"),
    "type_in": gettext_lazy("Request types"),
    "market_in": gettext_lazy("Markets"),
    "reason_key_in": gettext_lazy("Reason is one of"),
    "reason_key_contains": gettext_lazy("Reason contains"),
    "refund_total_gte": gettext_lazy("Refund at least"),
    "refund_total_lte": gettext_lazy("Refund at most"),
    "category_in": gettext_lazy("Item categories"),
    "age_hours_gte": gettext_lazy("Waiting at least (hours)"),
    "buyer_flags": gettext_lazy("Buyer"),
    "buyer_not_flags": gettext_lazy("Buyer"),
    "action": gettext_lazy("Action"),
    "params": gettext_lazy("Action settings"),
    "reply_id": gettext_lazy("Quick reply to send"),
    "user_ids": gettext_lazy("Assign to"),
    "tags": gettext_lazy("Tags"),
    "note": gettext_lazy("Escalation note"),
    "days": gettext_lazy("Look back"),
    KEY_FIELD: gettext_lazy("Form key"),
}
FLAG_LABELS = {rules.SERIAL_RETURNER: gettext_lazy("Serial returner")}


def _split(text: str) -> list[str]:
    """A list typed as text: one item per line or comma (either kind of comma)."""
    return [part.strip() for part in re.split(r"[,\n，]", text or "") if part.strip()]


def _whole(text: str):
    """A whole number when it is one; else the text as typed, for the service to refuse with its own message."""
    text = (text or "").strip()
    return int(text) if re.fullmatch(r"-?\d{1,9}", text) else text


@dataclass
class RuleForm:
    """The editor's fields, as posted or as a saved rule fills them."""

    name: str = ""
    scope: str = AGENCY_WIDE
    position: str = ""
    active: bool = True
    action: str = AutoRule.Action.TAG.value
    types: list[str] = field(default_factory=list)
    markets: list[str] = field(default_factory=list)
    reasons: str = ""
    reason_contains: str = ""
    min_amount: str = ""
    min_currency: str = ""
    max_amount: str = ""
    max_currency: str = ""
    categories: str = ""
    age_hours: str = ""
    flags: dict[str, str] = field(default_factory=dict)
    reply_id: str = ""
    user_ids: list[str] = field(default_factory=list)
    tags: str = ""
    note: str = ""
    days: str = str(rules.PREVIEW_DAYS)

    @classmethod
    def from_post(cls, post) -> RuleForm:
        text = lambda name: str(post.get(name, "") or "")  # noqa: E731 - a local shorthand
        return cls(
            name=text("name"), scope=text("scope"), position=text("position").strip(),
            active=post.get("active") == "on", action=text("action"),
            types=post.getlist("type_in"), markets=post.getlist("market_in"),
            reasons=text("reason_key_in"), reason_contains=text("reason_key_contains"),
            min_amount=text("min_amount").strip(), min_currency=text("min_currency"),
            max_amount=text("max_amount").strip(), max_currency=text("max_currency"),
            categories=text("category_in"), age_hours=text("age_hours_gte").strip(),
            flags={flag: text(f"flag_{flag}") or ANY for flag in rules.BUYER_FLAGS},
            reply_id=text("reply_id"), user_ids=post.getlist("user_ids"), tags=text("tags"), note=text("note"),
            days=text("days") or str(rules.PREVIEW_DAYS),
        )

    @classmethod
    def from_rule(cls, rule: AutoRule) -> RuleForm:
        c, p = rule.conditions or {}, rule.params or {}
        low, high = c.get("refund_total_gte") or {}, c.get("refund_total_lte") or {}
        flags = {flag: HAS if flag in c.get("buyer_flags", ()) else HAS_NOT if flag in c.get("buyer_not_flags", ())
                 else ANY for flag in rules.BUYER_FLAGS}
        return cls(
            name=rule.name, scope=scope_value(rule.store), position=str(rule.position), active=rule.is_active,
            action=rule.action, types=list(c.get("type_in", [])), markets=list(c.get("market_in", [])),
            reasons="\n".join(c.get("reason_key_in", [])), reason_contains=c.get("reason_key_contains", ""),
            min_amount=low.get("amount", ""), min_currency=low.get("currency", ""),
            max_amount=high.get("amount", ""), max_currency=high.get("currency", ""),
            categories=", ".join(c.get("category_in", [])),
            age_hours="" if "age_hours_gte" not in c else str(c["age_hours_gte"]), flags=flags,
            reply_id=str(p.get("reply_id", "")), user_ids=[str(u) for u in p.get("user_ids", [])],
            tags=", ".join(p.get("tags", [])), note=p.get("note", ""),
        )

    def conditions(self) -> dict[str, Any]:
        """The service's condition object; an empty field is no condition."""
        c: dict[str, Any] = {}
        if self.types:
            c["type_in"] = self.types
        if self.markets:
            c["market_in"] = self.markets
        if _split(self.reasons):
            c["reason_key_in"] = _split(self.reasons)
        if self.reason_contains.strip():
            c["reason_key_contains"] = self.reason_contains
        if self.min_amount:
            c["refund_total_gte"] = {"amount": self.min_amount, "currency": self.min_currency}
        if self.max_amount:
            c["refund_total_lte"] = {"amount": self.max_amount, "currency": self.max_currency}
        if _split(self.categories):
            c["category_in"] = _split(self.categories)
        if self.age_hours:
            c["age_hours_gte"] = _whole(self.age_hours)
        has = [flag for flag, want in self.flags.items() if want == HAS]
        has_not = [flag for flag, want in self.flags.items() if want == HAS_NOT]
        if has:
            c["buyer_flags"] = has
        if has_not:
            c["buyer_not_flags"] = has_not
        return c

    def params(self) -> dict[str, Any]:
        """The chosen action's parameters only (the other actions' fields are ignored, as the page says)."""
        if self.action == AutoRule.Action.REPLY:
            return {"reply_id": self.reply_id} if self.reply_id else {}
        if self.action == AutoRule.Action.ASSIGN:
            return {"user_ids": [_whole(u) for u in self.user_ids]} if self.user_ids else {}
        if self.action == AutoRule.Action.TAG:
            return {"tags": _split(self.tags)} if _split(self.tags) else {}
        if self.action == AutoRule.Action.ESCALATE:
            return {"note": self.note} if self.note.strip() else {}
        return {}

    def position_value(self):
        return None if self.position == "" else _whole(self.position)

    def days_value(self):
        return _whole(self.days)


# --- conditions and actions in words ---------------------------------------------------------------
def _choice(choices, value: str) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def _money(value: dict) -> str:
    return money(value.get("amount"), value.get("currency", ""))


def describe_conditions(conditions: dict) -> list[str]:
    """Each condition as a sentence a user reads; no condition at all is said as such."""
    c = conditions or {}
    said = []
    if "type_in" in c:
        said.append(_("Type is %(types)s") % {"types": _(" or ").join(_choice(RequestType, t) for t in c["type_in"])})
    if "market_in" in c:
        said.append(_("Market is %(markets)s") % {"markets": ", ".join(c["market_in"])})
    if "reason_key_in" in c:
        said.append(_("Reason is one of %(reasons)s") % {"reasons": ", ".join(c["reason_key_in"])})
    if "reason_key_contains" in c:
        said.append(_("Reason contains “%(text)s”") % {"text": c["reason_key_contains"]})
    if "refund_total_gte" in c:
        said.append(_("Refund at least %(amount)s") % {"amount": _money(c["refund_total_gte"])})
    if "refund_total_lte" in c:
        said.append(_("Refund at most %(amount)s") % {"amount": _money(c["refund_total_lte"])})
    if "category_in" in c:
        said.append(_("An item in category %(categories)s") % {"categories": ", ".join(c["category_in"])})
    if "age_hours_gte" in c:
        n = c["age_hours_gte"]
        said.append(ngettext("Waiting at least %(n)s hour", "Waiting at least %(n)s hours", n) % {"n": n})
    for flag in c.get("buyer_flags", ()):
        said.append(_("Buyer is: %(flag)s") % {"flag": FLAG_LABELS.get(flag, flag)})
    for flag in c.get("buyer_not_flags", ()):
        said.append(_("Buyer is not: %(flag)s") % {"flag": FLAG_LABELS.get(flag, flag)})
    return said or [_("Every new request")]


def describe_action(rule: AutoRule, reply_titles: dict[str, str], usernames: dict[int, str]) -> str:
    p = rule.params or {}
    label = _choice(AutoRule.Action, rule.action)
    if rule.action == AutoRule.Action.REPLY:
        title = reply_titles.get(str(p.get("reply_id")), _("a deleted reply"))
        return _("%(action)s: “%(title)s”") % {"action": label, "title": title}
    if rule.action == AutoRule.Action.ASSIGN:
        names = ", ".join(usernames.get(u, str(u)) for u in p.get("user_ids", []))
        return _("%(action)s: %(names)s") % {"action": label, "names": names}
    if rule.action == AutoRule.Action.TAG:
        return _("%(action)s: %(tags)s") % {"action": label, "tags": ", ".join(p.get("tags", []))}
    if rule.action == AutoRule.Action.ESCALATE and p.get("note"):
        return _("%(action)s: %(note)s") % {"action": label, "note": p["note"]}
    return label


# --- shared reads --------------------------------------------------------------------------------------
ANCHOR = "rules"  # the list's anchors: rules-all, rules-<store id>


@dataclass(frozen=True)
class Row:
    rule: AutoRule
    conditions: list[str]
    action: str


def _context(request, actor):
    return editor_scope(request, actor, StorePerm.MANAGE_TEAM)


def _members(actor) -> list[Membership]:
    return list(Membership.objects.for_actor(actor).select_related("user").order_by("user__username"))


def _replies(actor) -> list[QuickReply]:
    return list(QuickReply.objects.for_actor(actor).select_related("store").order_by("store_id", "position", "id"))


@login_required
def rules_page(request):
    """The rules in the order they are tried: a request's store rules by position, then the agency-wide ones."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores, managed = _context(request, actor)
    titles = {str(r.public_id): r.title for r in _replies(actor)}
    usernames = {m.user_id: m.user.get_username() for m in _members(actor)}
    sections = [Section(s, s.pk in managed, ANCHOR) for s in stores] + [Section(None, actor.is_owner, ANCHOR)]
    by_store = {None if s.store is None else s.store.pk: s for s in sections}
    for rule in rules.rules_for_actor(actor):
        section = by_store.get(rule.store_id)
        if section is not None:
            section.rows.append(Row(rule, describe_conditions(rule.conditions), describe_action(rule, titles,
                                                                                                   usernames)))
    shown = [s for s in sections if s.rows or s.can_manage]
    return render(request, "portal/rules.html", {
        "actor": actor,
        "sections": shown,
        "perm_note": perm_note(actor, managed, errors.ERR_PERM_006),
        "can_add": actor.is_owner or bool(managed),
    })


@dataclass(frozen=True)
class SampleRow:
    ticket: AfterSalesRequest
    tz: str


@dataclass(frozen=True)
class Preview:
    would_match: int
    days: int
    rows: list[SampleRow]


def _preview(actor, form: RuleForm, scope: str) -> Preview:
    """The service's dry run, then the sample's requests in one read for what the table shows."""
    days = form.days_value()
    result = rules.preview_rule(actor, form.conditions(), store=scope or None, days=days)
    ids = result["sample"]
    found = {str(t.public_id): t for t in AfterSalesRequest.objects.for_actor(actor).filter(public_id__in=ids)
             .select_related("store__market")}
    rows = [SampleRow(found[i], found[i].store.market.time_zone) for i in ids if i in found]
    return Preview(result["would_match"], days, rows)


def _render_form(request, actor, *, rule: AutoRule | None, stores, managed, form: RuleForm,
                 error: FormError | None = None, preview: Preview | None = None, status: int = 200):
    offered = scopes(actor, stores, managed)
    markets = list(Market.objects.order_by("code"))
    currencies = sorted({m.currency for m in markets})
    by_field = error.by_field if error else {}
    return render(request, "portal/rules_form.html", {
        "actor": actor,
        "rule": rule,
        "form": form,
        "scopes": offered,
        "can_manage": can_manage(actor, rule, managed) if rule is not None else bool(offered),
        "perm_error": errors.ERR_PERM_006,
        "error": error,
        "errs": {key: "; ".join(by_field[key]) for key in by_field},
        "buyer_error": "; ".join(by_field.get("buyer_flags", []) + by_field.get("buyer_not_flags", [])),
        "preview": preview,
        "types": [(t.value, t.label) for t in RequestType],
        "markets": markets,
        "currencies": currencies,
        "flags": [(flag, FLAG_LABELS.get(flag, flag), form.flags.get(flag, ANY)) for flag in rules.BUYER_FLAGS],
        "actions": [(a.value, a.label) for a in AutoRule.Action],
        "quick_replies": _replies(actor),
        "members": _members(actor),
        "day_choices": PREVIEW_CHOICES,
        "max_days": rules.MAX_PREVIEW_DAYS,
        "form_key": new_key(),
        "delete_key": new_key(),
        "key_field": KEY_FIELD,
        "ANY": ANY, "HAS": HAS, "HAS_NOT": HAS_NOT,
    }, status=status)


def _submit(request, actor, *, rule: AutoRule | None, stores, managed, save):
    form = RuleForm.from_post(request.POST)
    if rule is not None:
        form.scope = scope_value(rule.store)
    if request.POST.get("intent") == "preview":
        try:
            preview = _preview(actor, form, form.scope)
        except AppError as exc:
            error = FormError.of(exc, FIELD_LABELS)
            return _render_form(request, actor, rule=rule, stores=stores, managed=managed, form=form, error=error,
                                status=error.status)
        return _render_form(request, actor, rule=rule, stores=stores, managed=managed, form=form, preview=preview)
    return save_once(request, lambda: save(form), list_url=reverse("portal:rules"), labels=FIELD_LABELS,
                     refused=lambda error: _render_form(request, actor, rule=rule, stores=stores, managed=managed,
                                                        form=form, error=error, status=error.status))


@login_required
def rule_new(request):
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores, managed = _context(request, actor)
    if request.method == "POST":
        def save(form: RuleForm) -> str:
            created = rules.create_rule(actor, name=form.name, action=form.action, conditions=form.conditions(),
                                        params=form.params(), store=form.scope or None,
                                        position=form.position_value(), is_active=form.active)
            return _("Auto-rule “%(name)s” saved.") % {"name": created.name}

        return _submit(request, actor, rule=None, stores=stores, managed=managed, save=save)
    offered = [value for value, _label in scopes(actor, stores, managed)]
    wanted = request.GET.get("scope", "")
    form = RuleForm(scope=wanted if wanted in offered else (offered[0] if offered else AGENCY_WIDE))
    # The amounts' currency starts as the chosen store's (USD for agency-wide); the user can change it.
    store = next((s for s in stores if str(s.public_id) == form.scope), None)
    form.min_currency = form.max_currency = store.market.currency if store is not None else "USD"
    return _render_form(request, actor, rule=None, stores=stores, managed=managed, form=form,
                        status=200 if offered else 403)


def _rule_for(actor, rule_id) -> AutoRule | None:
    return AutoRule.objects.for_actor(actor).by_id(str(rule_id)).select_related("store__market").first()


@login_required
def rule_edit(request, rule_id):
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    rule = _rule_for(actor, rule_id)
    if rule is None:
        return missing(request, reverse("portal:rules"), _("Back to the auto-rules"))
    stores, managed = _context(request, actor)
    if request.method == "POST":
        def save(form: RuleForm) -> str:
            # The action and its parameters are passed only when they changed: new ones restart an assign rule's
            # round-robin (aftersales.rules.update_rule).
            current = {k: v for k, v in rule.params.items() if k != rules.CURSOR}
            changed = form.action != rule.action or form.params() != current
            saved = rules.update_rule(actor, str(rule.public_id), name=form.name, conditions=form.conditions(),
                                      action=form.action if changed else None,
                                      params=form.params() if changed else None,
                                      position=form.position_value(), is_active=form.active)
            return _("Auto-rule “%(name)s” saved.") % {"name": saved.name}

        return _submit(request, actor, rule=rule, stores=stores, managed=managed, save=save)
    return _render_form(request, actor, rule=rule, stores=stores, managed=managed, form=RuleForm.from_rule(rule),
                        status=200 if can_manage(actor, rule, managed) else 403)


def _delete(actor, rule: AutoRule) -> str:
    rules.delete_rule(actor, str(rule.public_id))
    return _("Auto-rule “%(name)s” deleted.") % {"name": rule.name}


def _delete_refused(request, actor, rule: AutoRule, error: FormError):
    stores, managed = _context(request, actor)
    return _render_form(request, actor, rule=rule, stores=stores, managed=managed, form=RuleForm.from_rule(rule),
                        error=error, status=error.status)


DELETION = Deletion(find=_rule_for, delete=_delete, list_name="portal:rules",
                    back_label=lambda: _("Back to the auto-rules"), labels=FIELD_LABELS, refused=_delete_refused)


@login_required
@require_POST
def rule_delete(request, rule_id):
    return delete_view(request, rule_id, DELETION)
