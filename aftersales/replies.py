"""售后话术库 and 敏感词: quick replies with {variables}, checked against sensitive words on save and on send.

The platform refuses (and penalises) messages with contact details, off-platform payment or
review-for-reward wording. We check twice: when a reply is saved (the template as written) and when it
is sent (after the variables are filled, because a buyer's name or a store name can carry a URL or a
phone number too).
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils.translation import gettext as _

from aftersales import oplog
from aftersales.models import AfterSalesRequest, QuickReply, SensitiveWord
from aftersales.oplog import Performer
from aftersales.services import lock_ticket
from stores import errors
from stores.errors import AppError
from stores.models import Agency, Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

logger = logging.getLogger(__name__)

ACTION = "reply"
VARIABLES = ("buyer_name", "order_id", "return_id", "refund_amount", "refund_eta", "store_name")
# Values that come from the platform's own records: they are masked before the send-time check, so an
# 18-digit order id is not mistaken for a phone number.
PLATFORM_VARIABLES = frozenset({"order_id", "return_id", "refund_amount"})
MAX_TITLE = 100
MAX_BODY = 2000
DEFAULT_MAX_PER_SCOPE = 50


# --- templates ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Var:
    name: str


# "{{" and "}}" are literal braces (as in str.format); "{name}" is a variable; any other brace is an error.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def parse_template(body: str) -> list[str | Var]:
    """Split a reply into text and variables, refusing unknown variables and stray braces.

    Hand-written rather than str.format: format fields allow attribute and index access
    ("{buyer_name.__class__}"), which has no place in text written by users.
    """
    parts: list[str | Var] = []
    unknown: list[str] = []
    stray: list[int] = []
    pos = 0
    for match in _TOKEN.finditer(body):
        if match.start() > pos:
            parts.append(body[pos:match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif match.group(1) is not None:
            if match.group(1) in VARIABLES:
                parts.append(Var(match.group(1)))
            elif token not in unknown:
                unknown.append(token)
        else:
            stray.append(match.start())
        pos = match.end()
    if pos < len(body):
        parts.append(body[pos:])
    if unknown:
        raise AppError(errors.ERR_REPLY_002, detail=_("Unknown variable: %(names)s") % {"names": ", ".join(unknown)},
                       fields={"body": unknown}, data={"variables": unknown})
    if stray:
        message = _("Unmatched brace at position %(pos)s; write {{ or }} for a literal brace.") % {"pos": stray[0]}
        raise AppError(errors.ERR_REPLY_002, detail=message, fields={"body": [message]}, data={"positions": stray})
    return parts


def _fill(parts: list[str | Var], values: dict[str, str]) -> str:
    return "".join(values[p.name] if isinstance(p, Var) else p for p in parts)


def variables_for(ticket: AfterSalesRequest) -> dict[str, str]:
    """The values of every variable for one request.

    refund_amount is what the buyer gets or got: the amount refunded once money moved, else a pending
    partial offer, else the requested total.
    """
    if ticket.refunded_amount > 0:
        amount = ticket.refunded_amount
    elif ticket.partial_refund_offer is not None:
        amount = ticket.partial_refund_offer
    else:
        amount = ticket.refund_total
    eta = getattr(settings, "QUICK_REPLY_REFUND_ETA", None) or _("2 hours")
    return {
        "buyer_name": ticket.buyer_name or _("customer"),
        "order_id": ticket.order_id,
        "return_id": ticket.return_id,
        "refund_amount": f"{Decimal(amount).quantize(Decimal('0.01'))} {ticket.currency}",
        "refund_eta": str(eta),
        "store_name": ticket.store.name,
    }


def render_reply(reply: QuickReply, ticket: AfterSalesRequest) -> str:
    return _fill(parse_template(reply.body), variables_for(ticket))


# --- sensitive words ------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """NFKC folds full-width letters and digits (ｗｅｃｈａｔ, １３８…) and dropping format characters
    removes zero-width spaces: both are common ways around a word filter."""
    text = unicodedata.normalize("NFKC", text or "")
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def _compiled(market_code: str | None, all_markets: bool) -> list[re.Pattern]:
    rows = SensitiveWord.objects.filter(is_active=True)
    if not all_markets:
        scope = Q(market__isnull=True)
        if market_code:
            scope |= Q(market__code=market_code)
        rows = rows.filter(scope)
    compiled = []
    for pk, kind, value in rows.values_list("pk", "kind", "value"):
        if kind == SensitiveWord.Kind.WORD:
            word = normalise(value).strip()
            if word:
                compiled.append(re.compile(re.escape(word), re.IGNORECASE))
            continue
        try:
            compiled.append(re.compile(value, re.IGNORECASE))
        except (re.error, OverflowError, RecursionError) as exc:
            # One bad row (edited in admin) must not stop every reply; it is skipped and reported.
            logger.warning("sensitive word %s: invalid pattern %r skipped: %s", pk, value, exc)
    return compiled


def check_text(text: str, market_code: str | None, *, all_markets: bool = False) -> list[str]:
    """The parts of ``text`` the sensitive-word list refuses, in order of appearance.

    Uses the active market-less rows plus those of ``market_code`` (every market's with all_markets).
    Words match as case-insensitive substrings, patterns as case-insensitive regular expressions.
    A match inside a longer match is reported once, as the longer one.
    """
    text = normalise(text)
    if not text:
        return []
    spans: set[tuple[int, int]] = set()
    for pattern in _compiled(market_code, all_markets):
        for match in pattern.finditer(text):
            if match.end() > match.start():
                spans.add((match.start(), match.end()))
    found: list[str] = []
    last_end = -1
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if end <= last_end:
            continue  # inside the previous, longer match
        last_end = max(last_end, end)
        word = text[start:end]
        if word not in found:
            found.append(word)
    return found


# --- quick replies: maintenance -------------------------------------------------------------------
def max_per_scope() -> int:
    return int(getattr(settings, "QUICK_REPLY_MAX_PER_SCOPE", DEFAULT_MAX_PER_SCOPE))


def _lookup(value) -> dict:
    if isinstance(value, int):
        return {"pk": value}
    try:
        return {"public_id": uuid.UUID(str(value))}
    except ValueError:
        raise AppError(errors.ERR_NOT_FOUND) from None


def _visible_store(actor: Actor, store) -> Store:
    ref = store.pk if isinstance(store, Store) else store
    try:
        return Store.objects.for_actor(actor).select_related("market").get(**_lookup(ref))
    except (Store.DoesNotExist, DjangoValidationError):
        raise AppError(errors.ERR_NOT_FOUND) from None


def _require_manage(actor: Actor, store: Store | None) -> None:
    """Per-store replies need manage_quick_replies there; agency-wide ones reach every store: owner only."""
    if store is None:
        if not actor.is_owner:
            raise AppError(errors.ERR_PERM_004, detail=_("Only the agency owner may manage agency-wide replies."))
        return
    require_store_perm(actor, store, StorePerm.MANAGE_QUICK_REPLIES)


def _clean(title: str | None, body: str | None) -> tuple[str | None, str | None]:
    bad: dict[str, list[str]] = {}
    for key, value, cap in (("title", title, MAX_TITLE), ("body", body, MAX_BODY)):
        if value is None:
            continue
        value = str(value).strip()
        if not value:
            bad[key] = [_("Required.")]
        elif len(value) > cap:
            bad[key] = [_("At most %(n)s characters.") % {"n": cap}]
    if bad:
        raise AppError(errors.ERR_VALIDATION, fields=bad)
    return (None if title is None else str(title).strip()), (None if body is None else str(body).strip())


def _check_body(body: str, store: Store | None) -> None:
    parse_template(body)
    # An agency-wide reply may be sent in any market, so every market's words apply to it.
    hits = check_text(body, None, all_markets=True) if store is None else check_text(body, store.market.code)
    if hits:
        raise AppError(errors.ERR_REPLY_001, fields={"body": hits}, data={"words": hits})


def _scope(agency_id: int, store: Store | None) -> QuerySet[QuickReply]:
    qs = QuickReply.objects.for_agency(agency_id)
    return qs.filter(store__isnull=True) if store is None else qs.filter(store=store)


def create_quick_reply(actor: Actor, *, title: str, body: str, store=None) -> QuickReply:
    """Add a reply to a store's list, or (owner) to the agency-wide list; appended at the end."""
    target = None if store is None else _visible_store(actor, store)
    _require_manage(actor, target)
    title, body = _clean(title or "", body or "")
    _check_body(body, target)
    with transaction.atomic():
        # Lock the scope's owner row so two concurrent creates cannot both pass the cap.
        if target is None:
            Agency.objects.select_for_update(no_key=True).get(pk=actor.agency_id)
        else:
            Store.objects.for_agency(actor.agency_id).select_for_update(no_key=True).get(pk=target.pk)
        scope = _scope(actor.agency_id, target)
        cap = max_per_scope()
        if scope.count() >= cap:
            message = _("At most %(n)s quick replies here.") % {"n": cap}
            raise AppError(errors.ERR_VALIDATION, fields={"store": [message]}, data={"max": cap})
        last = scope.aggregate(last=Max("position"))["last"]
        return QuickReply.objects.create(agency_id=actor.agency_id, store=target, title=title, body=body,
                                         position=0 if last is None else last + 1)


def _locked_reply(actor: Actor, reply_id) -> QuickReply:
    try:
        return (QuickReply.objects.for_actor(actor).select_for_update(of=("self",))
                .select_related("store__market").get(**_lookup(reply_id)))
    except (QuickReply.DoesNotExist, DjangoValidationError):
        raise AppError(errors.ERR_NOT_FOUND) from None


def update_quick_reply(actor: Actor, reply_id, *, title: str | None = None, body: str | None = None,
                       position: int | None = None) -> QuickReply:
    """Change title, text or position; the text is checked again against its store's market."""
    with transaction.atomic():
        reply = _locked_reply(actor, reply_id)
        _require_manage(actor, reply.store)
        title, body = _clean(title, body)
        if body is not None:
            _check_body(body, reply.store)
            reply.body = body
        if title is not None:
            reply.title = title
        if position is not None:
            if isinstance(position, bool) or not isinstance(position, int) or position < 0:
                raise AppError(errors.ERR_VALIDATION, fields={"position": [_("A whole number, 0 or more.")]})
            reply.position = position
        reply.save()
        return reply


def delete_quick_reply(actor: Actor, reply_id) -> None:
    with transaction.atomic():
        reply = _locked_reply(actor, reply_id)
        _require_manage(actor, reply.store)
        reply.delete()


def quick_replies_for_actor(actor: Actor | None, store=None) -> QuerySet[QuickReply]:
    """The replies to offer: agency-wide ones, plus the given store's (only if the actor sees that store)."""
    qs = QuickReply.objects.for_actor(actor)
    if store is None:
        return qs.filter(store__isnull=True)
    store_id = store.pk if isinstance(store, Store) else store
    if isinstance(store_id, int):
        return qs.filter(Q(store__isnull=True) | Q(store_id=store_id))
    try:
        return qs.filter(Q(store__isnull=True) | Q(store__public_id=uuid.UUID(str(store_id))))
    except ValueError:
        return qs.filter(store__isnull=True)


# --- sending --------------------------------------------------------------------------------------
def _reply_for(performer: Performer, ticket: AfterSalesRequest, reply_id) -> QuickReply:
    qs = QuickReply.objects
    qs = qs.for_actor(performer.actor) if performer.actor is not None else qs.for_agency(ticket.agency_id)
    try:
        return qs.filter(Q(store__isnull=True) | Q(store_id=ticket.store_id)).get(**_lookup(reply_id))
    except (QuickReply.DoesNotExist, DjangoValidationError):
        raise AppError(errors.ERR_NOT_FOUND, fields={"reply_id": [_("No such reply for this store.")]}) from None


def _mask_platform_ids(text: str, ticket: AfterSalesRequest) -> str:
    for name in ("order_id", "return_id"):
        value = getattr(ticket, name)
        if value and len(value) >= 6:
            text = text.replace(value, "{" + name + "}")
    return text


def send_reply(performer: Performer, ticket_id, *, reply_id=None, text: str | None = None) -> str:
    """Send a quick reply (rendered for this request) or free text to the buyer; returns the text sent.

    Free text is sent as written (no variables). The send-time check sees what the buyer would see,
    except the platform's own ids and amounts, which are masked so they are not taken for phone numbers.
    Nothing changes state; the sent text is in the log row.
    """
    payload: dict = {"reply_id": None if reply_id is None else str(reply_id)}
    locked_pk: int | None = None
    try:
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)
            locked_pk = ticket.pk
            if performer.actor is not None:
                require_store_perm(performer.actor, ticket.store, StorePerm.HANDLE_AFTERSALES)
            if (reply_id is None) == (text is None):
                raise AppError(errors.ERR_VALIDATION, fields={"text": [_("Send either a quick reply or a text.")]})
            if reply_id is not None:
                reply = _reply_for(performer, ticket, reply_id)
                payload["reply_id"] = str(reply.public_id)
                parts = parse_template(reply.body)
                values = variables_for(ticket)
                rendered = _fill(parts, values)
                checked = _fill(parts, {**values, **{k: "{" + k + "}" for k in PLATFORM_VARIABLES}})
            else:
                rendered = str(text).strip()
                if not rendered or len(rendered) > MAX_BODY:
                    raise AppError(errors.ERR_VALIDATION,
                                   fields={"text": [_("1 to %(n)s characters.") % {"n": MAX_BODY}]})
                checked = _mask_platform_ids(rendered, ticket)
            payload["text"] = rendered
            hits = check_text(checked, ticket.store.market.code)
            if hits:
                payload["words"] = hits
                raise AppError(errors.ERR_REPLY_001, fields={"text": hits}, data={"words": hits})
            oplog.record(ticket, performer=performer, action=ACTION, before=ticket.state, after=ticket.state,
                         payload=payload)
            return rendered
    except AppError as exc:
        if locked_pk is not None:
            oplog.record_failure(locked_pk, performer=performer, action=ACTION, error_code=exc.code,
                                 message=exc.detail or str(exc.error.message), payload=payload)
        raise
