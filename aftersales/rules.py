"""自动规则 (auto-rules): conditions on a new request, one action, run as the "rule" actor.

Conditions (all must hold; ``{}`` matches every request):
- ``type_in``: [request types]; ``market_in``: [market codes]
- ``reason_key_contains``: text (case-insensitive); ``reason_key_in``: [reason keys]
- ``refund_total_lte`` / ``refund_total_gte``: {"amount": "50.00", "currency": "USD"} — a request in another
  currency never matches (amounts are never compared across currencies)
- ``category_in``: [categories] — any line item
- ``age_hours_gte``: N — hours since the platform's creation time, else our intake time
- ``buyer_flags``: [flags] — the buyer has every flag listed; ``buyer_not_flags``: [flags] — none of them.
  Flags: ``serial_returner`` (aftersales.buyers' rules, settings.AFTERSALES_SERIAL_RETURNER_RULES). The
  buyer (``buyer_user_id``) is judged on their history in the rule's whole agency — every store, never
  another tenant — as it stands when the rule is evaluated (including the request itself), the same figures
  as the buyer profile an owner sees. A request without a buyer id has no flags.

Actions and params: approve {} (decision by type), reply {"reply_id"}, assign {"user_ids": [...]}
(round-robin per store over a fixed list; a list of one assigns a named person), tag {"tags": [...]},
escalate {"note"?} (a "review_failed" alert with key "escalated"). Assignees must be members of the agency
holding after-sales handling (售后处理) on the store — on some store for an agency-wide rule — checked when
the rule is saved and again for each request (members without it there are skipped).

Order: the request's store rules by position, then agency-wide rules by position; the first active match acts.
Rules run once per request (``apply_rules``, after intake): a "rule_applied" log row marks that they ran, so a
re-run does nothing. They never act on a request a person is handling: one with a successful log row by an
owner or sub-account, or with an assignee (rules run once, so an assignee there was set by someone else).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Case, Count, DecimalField, Exists, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aftersales import events, oplog
from aftersales import services as aftersales_services
from aftersales.buyers import serial_returner_rules, serial_returner_verdict
from aftersales.models import MONEY, ActorKind, AfterSalesRequest, AutoRule, LineItem, OperationLog
from aftersales.oplog import Performer
from aftersales.states import Decision, RequestType, State
from stores import errors
from stores.errors import AppError
from stores.models import Market, Membership, Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import has_store_perm, require_store_perm

LIST_CONDITIONS = ("type_in", "market_in", "reason_key_in", "category_in")
MONEY_CONDITIONS = ("refund_total_lte", "refund_total_gte")
BUYER_CONDITIONS = ("buyer_flags", "buyer_not_flags")
CONDITION_KEYS = (*LIST_CONDITIONS, *MONEY_CONDITIONS, *BUYER_CONDITIONS, "reason_key_contains", "age_hours_gte")
SERIAL_RETURNER = "serial_returner"
BUYER_FLAGS = (SERIAL_RETURNER,)
PARAM_KEYS = {"approve": (), "reply": ("reply_id",), "assign": ("user_ids",), "tag": ("tags",),
              "escalate": ("note",)}
REQUIRED_PARAMS = {"reply": ("reply_id",), "assign": ("user_ids",), "tag": ("tags",)}
APPROVE_DECISION = {RequestType.REFUND_ONLY: Decision.APPROVE_REFUND,
                    RequestType.RETURN_AND_REFUND: Decision.APPROVE_RETURN,
                    RequestType.EXCHANGE: Decision.APPROVE_REPLACEMENT,
                    RequestType.CANCELLATION: Decision.APPROVE_REQUEST_CANCEL}
MAX_LIST = 50
MAX_TAG = 40
MAX_PREVIEW_DAYS = 365
PREVIEW_DAYS = 30
CURSOR = "_cursor"
MARKER = "rule_applied"


# --- validation ----------------------------------------------------------------------------------
def _strings(value) -> list[str] | None:
    if (not isinstance(value, list) or not value or len(value) > MAX_LIST
            or not all(isinstance(v, str) and v.strip() for v in value)):
        return None
    return [v.strip() for v in value]


def _money(value) -> tuple[Decimal, str] | None:
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        return None
    try:
        amount = Decimal(str(value["amount"]))
    except (InvalidOperation, ValueError):
        return None
    currency = value["currency"]
    if not amount.is_finite() or amount < 0 or not isinstance(currency, str) or len(currency) != 3:
        return None
    return amount, currency.upper()


def clean_conditions(conditions) -> dict[str, Any]:
    """Return the conditions normalised, or raise ERR_VALIDATION naming every bad key."""
    if not isinstance(conditions, dict):
        raise AppError(errors.ERR_VALIDATION, fields={"conditions": [_("Must be an object.")]})
    bad: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for key, value in conditions.items():
        if key not in CONDITION_KEYS:
            bad[key] = [_("Unknown condition.")]
        elif key in LIST_CONDITIONS:
            items = _strings(value)
            if items is None:
                bad[key] = [_("A list of 1 to %(n)s texts.") % {"n": MAX_LIST}]
            elif key == "type_in" and not set(items) <= set(RequestType.values):
                bad[key] = [_("Unknown request type.")]
            elif key == "market_in":
                items = [i.upper() for i in items]
                if Market.objects.filter(code__in=items).count() != len(set(items)):
                    bad[key] = [_("Unknown market.")]
            clean[key] = items
        elif key in MONEY_CONDITIONS:
            money = _money(value)
            if money is None:
                bad[key] = [_("An object with an amount (0 or more) and a 3-letter currency.")]
            else:
                clean[key] = {"amount": str(money[0]), "currency": money[1]}
        elif key in BUYER_CONDITIONS:
            flags = _strings(value)
            if flags is None or not set(flags) <= set(BUYER_FLAGS):
                bad[key] = [_("A list of buyer flags from: %(flags)s.") % {"flags": ", ".join(BUYER_FLAGS)}]
            else:
                clean[key] = list(dict.fromkeys(flags))
        elif key == "reason_key_contains":
            if not isinstance(value, str) or not value.strip() or len(value) > 160:
                bad[key] = [_("1 to 160 characters.")]
            else:
                clean[key] = value.strip()
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 24 * 365:
            bad[key] = [_("A whole number of hours.")]
        else:
            clean[key] = value
    both = set(clean.get("buyer_flags", ())) & set(clean.get("buyer_not_flags", ()))
    if both:
        bad["buyer_not_flags"] = [_("Also required in buyer_flags: %(flags)s.") % {"flags": ", ".join(sorted(both))}]
    if bad:
        raise AppError(errors.ERR_VALIDATION, fields=bad)
    return clean


def _member_actor(agency_id: int, user_id) -> Actor | None:
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        return None
    membership = Membership.objects.for_agency(agency_id).filter(user_id=user_id).select_related("user").first()
    if membership is None:
        return None
    return Actor(user_id=user_id, agency_id=agency_id, membership_id=membership.pk, is_owner=membership.is_owner,
                 username=membership.user.get_username())


def _eligible(agency_id: int, user_id, store: Store | None) -> bool:
    """A member of the agency who may handle after-sales on the store (on some store for an agency-wide rule).

    Handling, not just viewing: an assignee who cannot act would leave the request stuck, since rules
    never touch an assigned request again."""
    actor = _member_actor(agency_id, user_id)
    if actor is None:
        return False
    if store is None:
        return actor.is_owner or Store.objects.for_actor(actor, perm=StorePerm.HANDLE_AFTERSALES).exists()
    return has_store_perm(actor, store, StorePerm.HANDLE_AFTERSALES)


def clean_params(action: str, params, *, agency_id: int, store: Store | None) -> dict[str, Any]:
    if action not in AutoRule.Action.values:
        raise AppError(errors.ERR_VALIDATION, fields={"action": [_("Unknown action.")]})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise AppError(errors.ERR_VALIDATION, fields={"params": [_("Must be an object.")]})
    bad: dict[str, list[str]] = {k: [_("Unknown parameter.")] for k in params if k not in PARAM_KEYS[action]}
    bad.update({k: [_("Required.")] for k in REQUIRED_PARAMS.get(action, ()) if k not in params})
    clean: dict[str, Any] = {}
    if action == "reply" and "reply_id" in params:
        from aftersales.models import QuickReply

        scope = QuickReply.objects.for_agency(agency_id)
        scope = scope.filter(Q(store__isnull=True) | Q(store=store)) if store else scope.filter(store__isnull=True)
        try:
            reply = scope.get(public_id=uuid.UUID(str(params["reply_id"])))
            clean["reply_id"] = str(reply.public_id)
        except (QuickReply.DoesNotExist, ValueError, DjangoValidationError):
            bad["reply_id"] = [_("No such quick reply for this rule's scope.")]
    if action == "assign" and "user_ids" in params:
        ids = params["user_ids"]
        if (not isinstance(ids, list) or not ids or len(ids) > MAX_LIST
                or not all(_eligible(agency_id, u, store) for u in ids)):
            bad["user_ids"] = [_("A list of members with after-sales handling on the store.")]
        else:
            clean["user_ids"] = list(dict.fromkeys(ids))
    if action == "tag" and "tags" in params:
        tags = _strings(params["tags"])
        if tags is None or any(len(t) > MAX_TAG for t in tags):
            bad["tags"] = [_("A list of 1 to %(n)s tags, each at most 40 characters.") % {"n": MAX_LIST}]
        else:
            clean["tags"] = list(dict.fromkeys(tags))
    if action == "escalate" and "note" in params:
        if not isinstance(params["note"], str) or len(params["note"]) > 500:
            bad["note"] = [_("At most 500 characters.")]
        else:
            clean["note"] = params["note"].strip()
    if bad:
        raise AppError(errors.ERR_VALIDATION, fields=bad)
    return clean


# --- management (owner, or manage_team on the store) ------------------------------------------------
def _lookup(value) -> dict:
    if isinstance(value, int):
        return {"pk": value}
    try:
        return {"public_id": uuid.UUID(str(value))}
    except ValueError:
        raise AppError(errors.ERR_NOT_FOUND) from None


def _require_manage(actor: Actor, store: Store | None) -> None:
    if store is None:
        if not actor.is_owner:
            raise AppError(errors.ERR_PERM_006)
        return
    try:
        require_store_perm(actor, store, StorePerm.MANAGE_TEAM)
    except AppError:
        raise AppError(errors.ERR_PERM_006) from None


def _visible_store(actor: Actor, store) -> Store:
    ref = store.pk if isinstance(store, Store) else store
    try:
        return Store.objects.for_actor(actor).get(**_lookup(ref))
    except (Store.DoesNotExist, DjangoValidationError):
        raise AppError(errors.ERR_NOT_FOUND) from None


def _clean_name(name) -> str:
    name = str(name or "").strip()
    if not name or len(name) > 100:
        raise AppError(errors.ERR_VALIDATION, fields={"name": [_("1 to 100 characters.")]})
    return name


def _clean_position(position) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise AppError(errors.ERR_VALIDATION, fields={"position": [_("A whole number, 0 or more.")]})
    return position


def create_rule(actor: Actor, *, name: str, action: str, conditions=None, params=None, store=None,
                position: int | None = None, is_active: bool = True) -> AutoRule:
    target = None if store is None else _visible_store(actor, store)
    _require_manage(actor, target)
    name = _clean_name(name)
    conditions = clean_conditions(conditions or {})
    params = clean_params(action, params, agency_id=actor.agency_id, store=target)
    with transaction.atomic():
        scope = AutoRule.objects.for_agency(actor.agency_id)
        scope = scope.filter(store__isnull=True) if target is None else scope.filter(store=target)
        if position is None:
            last = scope.order_by("-position").values_list("position", flat=True).first()
            position = 0 if last is None else last + 1
        return AutoRule.objects.create(agency_id=actor.agency_id, store=target, name=name, action=action,
                                       conditions=conditions, params=params, position=_clean_position(position),
                                       is_active=bool(is_active))


def _locked_rule(actor: Actor, rule_id) -> AutoRule:
    try:
        return (AutoRule.objects.for_actor(actor).select_for_update(of=("self",)).select_related("store")
                .get(**_lookup(rule_id)))
    except (AutoRule.DoesNotExist, DjangoValidationError):
        raise AppError(errors.ERR_NOT_FOUND) from None


def update_rule(actor: Actor, rule_id, *, name: str | None = None, action: str | None = None, conditions=None,
                params=None, position: int | None = None, is_active: bool | None = None) -> AutoRule:
    """Change a rule; new params (or a new action) restart its round-robin."""
    with transaction.atomic():
        rule = _locked_rule(actor, rule_id)
        _require_manage(actor, rule.store)
        if name is not None:
            rule.name = _clean_name(name)
        if conditions is not None:
            rule.conditions = clean_conditions(conditions)
        if action is not None or params is not None:
            rule.action = action if action is not None else rule.action
            current = {k: v for k, v in rule.params.items() if k != CURSOR}
            rule.params = clean_params(rule.action, current if params is None else params,
                                       agency_id=rule.agency_id, store=rule.store)
        if position is not None:
            rule.position = _clean_position(position)
        if is_active is not None:
            rule.is_active = bool(is_active)
        rule.save()
        return rule


def delete_rule(actor: Actor, rule_id) -> None:
    with transaction.atomic():
        rule = _locked_rule(actor, rule_id)
        _require_manage(actor, rule.store)
        rule.delete()


def rules_for_actor(actor: Actor | None):
    return AutoRule.objects.for_actor(actor).order_by("store_id", "position", "id")


# --- evaluation ----------------------------------------------------------------------------------
def _requested_at(ticket: AfterSalesRequest) -> dt.datetime:
    return ticket.platform_created_at or ticket.created_at


def _since(now: dt.datetime, days: int) -> Q:
    return Q(requested_at__gte=now - dt.timedelta(days=days))


def buyer_flags(ticket: AfterSalesRequest, *, now: dt.datetime | None = None) -> set[str]:
    """The buyer's history flags across the request's agency: one grouped query, decided by aftersales.buyers.

    Same figures as ``buyers.buyer_history`` for an owner (every store of the agency, no other tenant), with
    rows grouped by currency only; the verdict is buyers' own function, so the two cannot drift apart."""
    if not ticket.buyer_user_id:
        return set()
    now = now or timezone.now()
    config = serial_returner_rules()
    refunded = Q(refunded_amount__gt=0)
    aggregates: dict[str, Any] = {}
    for i, rule in enumerate(config):
        window = _since(now, rule["days"])
        if rule["metric"] == "requests":
            aggregates[f"rule_{i}"] = Count("pk", filter=window)
        elif rule["metric"] == "refunds":
            aggregates[f"rule_{i}"] = Count("pk", filter=window & refunded)
        else:
            aggregates[f"rule_{i}"] = Sum("refunded_amount", filter=window & refunded)
    if not aggregates:
        return set()
    rows = list(AfterSalesRequest.objects.for_agency(ticket.agency_id).filter(buyer_user_id=ticket.buyer_user_id)
                .annotate(requested_at=Coalesce("platform_created_at", "created_at"))
                .values("currency").annotate(**aggregates).order_by())
    flagged, _text, _key = serial_returner_verdict(config, rows)
    return {SERIAL_RETURNER} if flagged else set()


def matches(conditions: dict, ticket: AfterSalesRequest, *, now: dt.datetime | None = None,
            categories: set[str] | None = None,
            flags: set[str] | Callable[[], set[str]] | None = None) -> bool:
    """Python evaluation on one request (``categories``: its line items' categories, when already loaded;
    ``flags``: its buyer's flags, or a function returning them — called only when a buyer condition is
    reached, which is checked last; ``buyer_flags`` is called when neither is given)."""
    now = now or timezone.now()
    c = conditions
    if "type_in" in c and ticket.type not in c["type_in"]:
        return False
    if "market_in" in c and ticket.store.market.code not in c["market_in"]:
        return False
    if "reason_key_in" in c and ticket.reason_key not in c["reason_key_in"]:
        return False
    if "reason_key_contains" in c and c["reason_key_contains"].lower() not in ticket.reason_key.lower():
        return False
    for key in MONEY_CONDITIONS:
        if key in c:
            amount, currency = Decimal(c[key]["amount"]), c[key]["currency"]
            if ticket.currency != currency:
                return False
            if (key == "refund_total_lte" and ticket.refund_total > amount) or (
                    key == "refund_total_gte" and ticket.refund_total < amount):
                return False
    if "age_hours_gte" in c and now - _requested_at(ticket) < dt.timedelta(hours=c["age_hours_gte"]):
        return False
    if "category_in" in c:
        if categories is None:
            categories = set(ticket.items.values_list("category", flat=True))
        if not categories & set(c["category_in"]):
            return False
    if "buyer_flags" in c or "buyer_not_flags" in c:
        held = flags() if callable(flags) else flags
        if held is None:
            held = buyer_flags(ticket, now=now)
        if not set(c.get("buyer_flags", ())) <= held or set(c.get("buyer_not_flags", ())) & held:
            return False
    return True


def _serial_returner_q(now: dt.datetime) -> Q:
    """The outer request's buyer is a serial returner: for each configured rule an EXISTS over the same
    buyer's requests in the same agency, grouped, with the threshold as HAVING (per currency for amounts)."""
    # Correlated to the outer request by agency and buyer: never another tenant's rows.
    same_buyer = (AfterSalesRequest.objects.unscoped()
                  .filter(agency_id=OuterRef("agency_id"), buyer_user_id=OuterRef("buyer_user_id"))
                  .annotate(requested_at=Coalesce("platform_created_at", "created_at")))
    q = Q(pk__in=[])
    for rule in serial_returner_rules():
        window = same_buyer.filter(_since(now, rule["days"]))
        if rule["metric"] in ("requests", "refunds"):
            if rule["metric"] == "refunds":
                window = window.filter(refunded_amount__gt=0)
            grouped = window.values("buyer_user_id").annotate(n=Count("pk")).filter(n__gte=rule["threshold"])
        else:
            limits = {currency: Decimal(str(limit)) for currency, limit in rule["threshold"].items()}
            if not limits:
                continue
            limit = Case(*(When(currency=currency, then=Value(amount)) for currency, amount in limits.items()),
                         output_field=DecimalField(**MONEY))
            grouped = (window.filter(refunded_amount__gt=0, currency__in=list(limits))
                       .values("currency").annotate(total=Sum("refunded_amount")).filter(total__gte=limit))
        q |= Q(Exists(grouped))
    return ~Q(buyer_user_id="") & q


FLAG_Q = {SERIAL_RETURNER: _serial_returner_q}


def conditions_q(conditions: dict, *, now: dt.datetime | None = None) -> Q:
    """The same conditions as one filter on AfterSalesRequest (annotate ``requested_at`` first)."""
    now = now or timezone.now()
    c = conditions
    q = Q()
    if "type_in" in c:
        q &= Q(type__in=c["type_in"])
    if "market_in" in c:
        q &= Q(store__market__code__in=c["market_in"])
    if "reason_key_in" in c:
        q &= Q(reason_key__in=c["reason_key_in"])
    if "reason_key_contains" in c:
        q &= Q(reason_key__icontains=c["reason_key_contains"])
    if "refund_total_lte" in c:
        q &= Q(currency=c["refund_total_lte"]["currency"], refund_total__lte=Decimal(c["refund_total_lte"]["amount"]))
    if "refund_total_gte" in c:
        q &= Q(currency=c["refund_total_gte"]["currency"], refund_total__gte=Decimal(c["refund_total_gte"]["amount"]))
    if "age_hours_gte" in c:
        q &= Q(requested_at__lte=now - dt.timedelta(hours=c["age_hours_gte"]))
    if "category_in" in c:
        q &= Q(Exists(LineItem.objects.filter(ticket_id=OuterRef("pk"), category__in=c["category_in"])))
    for flag in c.get("buyer_flags", ()):
        q &= FLAG_Q[flag](now)
    for flag in c.get("buyer_not_flags", ()):
        q &= ~FLAG_Q[flag](now)
    return q


def _clean_days(days) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_PREVIEW_DAYS:
        raise AppError(errors.ERR_VALIDATION,
                       fields={"days": [_("A whole number from 1 to %(n)s.") % {"n": MAX_PREVIEW_DAYS}]})
    return days


def _preview(qs: QuerySet, conditions: dict, days: int) -> dict[str, Any]:
    now = timezone.now()
    qs = (qs.annotate(requested_at=Coalesce("platform_created_at", "created_at"))
          .filter(created_at__gte=now - dt.timedelta(days=days))
          .filter(conditions_q(conditions, now=now)))
    return {"would_match": qs.count(),
            "sample": [str(p) for p in qs.order_by("-created_at", "-id").values_list("public_id", flat=True)[:10]]}


def preview_rule(actor: Actor, conditions, *, store=None, days: int = PREVIEW_DAYS) -> dict[str, Any]:
    """Dry run: how many of the actor's visible requests of the last ``days`` days would match (one query).

    Buyer flags are judged on the buyer's history in the whole agency, as the rule itself would."""
    conditions = clean_conditions(conditions or {})
    days = _clean_days(days)
    qs = AfterSalesRequest.objects.for_actor(actor)
    if store is not None:
        qs = qs.filter(store=_visible_store(actor, store))
    return _preview(qs, conditions, days)


def preview_saved_rule(rule: AutoRule, *, days: int = PREVIEW_DAYS) -> dict[str, Any]:
    """System dry run of a stored rule (the back-office admin): its agency's requests, or its store's, over
    the last ``days`` days, the rule alone (earlier rules that might have matched first are not considered)."""
    conditions = clean_conditions(rule.conditions or {})
    qs = AfterSalesRequest.objects.for_agency(rule.agency_id)
    if rule.store_id is not None:
        qs = qs.filter(store_id=rule.store_id)
    return _preview(qs, conditions, _clean_days(days))


# --- running (system code) -----------------------------------------------------------------------
def performer_for(rule: AutoRule) -> Performer:
    return Performer(kind=ActorKind.RULE, label=f"rule:{rule.public_id}")


def _person_handling(ticket: AfterSalesRequest) -> bool:
    if ticket.assignee_id is not None:
        return True
    return OperationLog.objects.filter(ticket_id=ticket.pk, error_code="",
                                       actor_kind__in=(ActorKind.OWNER, ActorKind.SUB_ACCOUNT)).exists()


def candidate_rules(ticket: AfterSalesRequest):
    """Active rules for the request: its store's by position, then agency-wide ones by position."""
    qs = AutoRule.objects.for_agency(ticket.agency_id).filter(
        Q(store_id=ticket.store_id) | Q(store__isnull=True), is_active=True)
    return sorted(qs, key=lambda r: (r.store_id is None, r.position, r.pk))


def _assign(rule: AutoRule, ticket: AfterSalesRequest, performer: Performer) -> dict:
    rule = AutoRule.objects.for_agency(ticket.agency_id).select_for_update().get(pk=rule.pk)  # serialises the cursor
    user_ids = rule.params.get("user_ids", [])
    cursors = dict(rule.params.get(CURSOR, {}))
    start = int(cursors.get(str(ticket.store_id), 0))
    for step in range(len(user_ids)):
        index = (start + step) % len(user_ids)
        if _eligible(ticket.agency_id, user_ids[index], ticket.store):
            break
    else:
        raise AppError(errors.ERR_VALIDATION,
                       fields={"user_ids": [_("No member of the list has after-sales handling on this store.")]})
    cursors[str(ticket.store_id)] = (index + 1) % len(user_ids)
    rule.params = {**rule.params, CURSOR: cursors}
    rule.save(update_fields=["params"])
    ticket.assignee_id = user_ids[index]
    ticket.save(update_fields=["assignee", "updated_at"])
    payload = {"rule_id": str(rule.public_id), "user_id": user_ids[index]}
    oplog.record(ticket, performer=performer, action="assign", before=ticket.state, after=ticket.state,
                 payload=payload)
    return {"user_id": user_ids[index]}


def _execute(rule: AutoRule, ticket: AfterSalesRequest, performer: Performer) -> dict:
    rule_id = str(rule.public_id)
    if rule.action == AutoRule.Action.APPROVE:
        decision = APPROVE_DECISION[ticket.type]
        aftersales_services.approve(performer, ticket.pk, decision)
        return {"decision": decision.value}
    if rule.action == AutoRule.Action.REPLY:
        from aftersales.replies import send_reply

        send_reply(performer, ticket.pk, reply_id=rule.params["reply_id"])
        return {"reply_id": rule.params["reply_id"]}
    if rule.action == AutoRule.Action.ASSIGN:
        return _assign(rule, ticket, performer)
    if rule.action == AutoRule.Action.TAG:
        added = [t for t in rule.params["tags"] if t not in ticket.tags]
        ticket.tags = [*ticket.tags, *added]
        ticket.save(update_fields=["tags", "updated_at"])
        oplog.record(ticket, performer=performer, action="tag", before=ticket.state, after=ticket.state,
                     payload={"rule_id": rule_id, "tags": added})
        return {"tags": added}
    note = rule.params.get("note", "")
    aftersales_services.raise_alert(ticket, "review_failed", key="escalated", message=note or rule.name)
    oplog.record(ticket, performer=performer, action="escalate", before=ticket.state, after=ticket.state,
                 payload={"rule_id": rule_id, "note": note})
    return {}


def apply_rules(ticket_id: int) -> AutoRule | None:
    """Run the first matching rule on an open request pending review; None when no rule acted. Idempotent."""
    with transaction.atomic():
        ticket = (AfterSalesRequest.objects.unscoped().select_for_update(of=("self",))
                  .select_related("store__market").filter(pk=ticket_id).first())
        if ticket is None or ticket.state != State.PENDING_REVIEW:
            return None
        if OperationLog.objects.filter(ticket_id=ticket.pk, actor_kind=ActorKind.RULE, action=MARKER).exists():
            return None
        if _person_handling(ticket):
            return None
        categories = set(ticket.items.values_list("category", flat=True))
        now = timezone.now()
        flags = functools.cache(lambda: buyer_flags(ticket, now=now))  # one query, only if a rule asks
        rule = next((r for r in candidate_rules(ticket) if matches(r.conditions, ticket, now=now,
                                                                    categories=categories, flags=flags)), None)
        if rule is None:
            return None
        performer = performer_for(rule)
        payload: dict[str, Any] = {"rule_id": str(rule.public_id), "rule": rule.name, "action": rule.action}
        error_code = message = ""
        try:  # approve and reply log their own refusals, so no savepoint here (it would undo that row)
            payload.update(_execute(rule, ticket, performer))
        except AppError as exc:
            error_code, message = exc.code, exc.detail or str(exc.error.message)
        ticket.refresh_from_db(fields=["state"])
        oplog.record(ticket, performer=performer, action=MARKER, before=ticket.state, after=ticket.state,
                     error_code=error_code, message=message, payload=payload)
        return rule


# --- hook ------------------------------------------------------------------------------------------
def _on_created(agency_id: int, ticket_ids: list[int], **_data) -> None:
    """Enqueue only when the agency (one per intake batch) has an active rule: most agencies have none, and a
    task per intake would fill the queue (and delay the sweeps behind it) with work that can only do nothing."""
    from aftersales.tasks import apply_rules_task

    if AutoRule.objects.for_agency(agency_id).filter(is_active=True).exists():
        for ticket_id in ticket_ids:
            apply_rules_task.delay(ticket_id)  # events deliver after commit already


def connect() -> None:
    """Subscribe to intake (called from AftersalesConfig.ready): each new request gets its rules run."""
    events.subscribe(events.CREATED, _on_created)
