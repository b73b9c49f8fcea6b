"""The request workspace (售后单工作台): one after-sales request with everything an agent decides on, and the
actions on it — "where agency staff spend their day". Presentation and parsing only.

Nothing here decides anything:

* the request comes through the scoping gate (``aftersales.api.selectors.ticket_for_actor``: a foreign, ungranted or
  unknown id is the same 404) with the reads the API detail renders (``render_ticket``): ``selectors.allowed_actions``
  (state × role), ``selectors.fees``, ``selectors.timeline``, ``evidence.evidence_for_actor``,
  ``services.reject_reasons``, ``outbox.latest_for``; plus the buyer profile (``buyers.buyer_history``), the market's
  deadlines (``sla.deadlines``) and the store's TikTok Shop connection (``tiktok.reports``);
* every action is the API's one service call with ``Performer.of(actor)`` (``HANDLERS``); a refusal comes back as
  an ``AppError`` with its catalogue code — ``ERR_PERM_…`` naming the role setting, ``ERR_STATE_…``, ``ERR_LOG_204``
  — and is shown next to its form;
* a double submit acts once: every form carries a one-time key, claimed in ``stores.IdempotencyKey`` in the same
  transaction as the action (``run_once``, the API's ``Idempotency-Key`` machinery from ``stores.api.idempotency``).

The page's cost does not grow with the request: one query per kind of thing shown (log rows, evidence, items …).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from aftersales import buyers, replies, selectors, services, sla
from aftersales import evidence as evidence_service
from aftersales.api.selectors import default_approval, ticket_for_actor, ticket_queue, ticket_ref
from aftersales.models import ActorKind, AfterSalesRequest, Evidence, OperationLog, QuickReply, SlaKind
from aftersales.oplog import Performer
from aftersales.states import OPEN_STATES, Decision, RequestType, State
from aftersales.tiktok import outbox, reports
from aftersales.tiktok.models import PlatformDecision
from logistics.interceptions import delivered_evidence, interceptions_for_actor, request_interception
from logistics.models import Carrier
from logistics.services import RETURN_TYPES, register_tracking
from portal.queue import ORDER, countdown_labels, decode_cursor, encode_cursor, sla_badge
from stores import errors
from stores.api.idempotency import PURGE_BATCH, _claim, body_digest, purge_expired
from stores.errors import CATALOGUE, AppError
from stores.models import IdempotencyKey, Store
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import store_perms

KEY_FIELD = "idempotency_key"
KEY_PREFIX = "portal:"  # keeps the portal's keys apart from the keys a user's API scripts send
AFTER_PARAM = "after"
HISTORY_DAYS = 90
# States in which the request waits for the buyer's return parcel: the tracking field takes the focus there,
# so a barcode scanner can type into it at once (elsewhere the focus stays free for the keyboard shortcuts).
PARCEL_AWAITED = frozenset({State.AWAITING_RETURN, State.RETURN_IN_TRANSIT})


# --- errors as the page shows them ---------------------------------------------------------------------
FIELD_LABELS = {
    "decision": gettext_lazy("Decision"),
    "partial_refund": gettext_lazy("Partial refund"),
    "amount": gettext_lazy("Amount"),
    "currency": gettext_lazy("Currency"),
    "reason": gettext_lazy("Reject reason"),
    "comment": gettext_lazy("Comment"),
    "images": gettext_lazy("Seller evidence"),
    "message": gettext_lazy("Message to the buyer"),
    "note": gettext_lazy("Note"),
    "file": gettext_lazy("Image file"),
    "text": gettext_lazy("Reply text"),
    "reply_id": gettext_lazy("Quick reply"),
    "carrier": gettext_lazy("Carrier"),
    "carrier_code": gettext_lazy("Carrier"),
    "tracking_number": gettext_lazy("Tracking number"),
    KEY_FIELD: gettext_lazy("Form key"),
}


@dataclass(frozen=True)
class ShownError:
    """A catalogue error as the page shows it: code, message and hint, plus what the service added."""

    code: str
    message: str
    hint: str
    detail: str
    fields: list[tuple[str, list[str]]]
    words: list[str]
    status: int

    @classmethod
    def of(cls, exc: AppError) -> ShownError:
        message = str(exc.error.message)
        detail = exc.detail if exc.detail and exc.detail != message else ""
        words = [str(w) for w in exc.data.get("words") or []]
        shown = []
        for name, value in exc.fields.items():
            if words and name in ("text", "body"):
                continue  # the sensitive words have their own line
            values = value if isinstance(value, list | tuple) else [value]
            shown.append((str(FIELD_LABELS.get(name, name)), [str(v) for v in values]))
        return cls(exc.code, message, str(exc.error.hint), detail, shown, words, exc.status)

    @classmethod
    def from_code(cls, code: str, message: str = "") -> ShownError | None:
        """A code written in the operation log: the catalogue's message and hint in today's language."""
        entry = CATALOGUE.get(code)
        if entry is None:
            return cls(code, message, "", "", [], [], 0) if code else None
        text = str(entry.message)
        return cls(code, text, str(entry.hint), message if message and message != text else "", [], [], entry.status)


@dataclass(frozen=True)
class Failed:
    """An action the service refused (or a form that could not be read), shown next to its form."""

    action: str
    error: ShownError
    values: dict[str, str] = field(default_factory=dict)


# --- actions: parse the form, call the one service, say what happened ----------------------------------
@dataclass(frozen=True)
class Submission:
    actor: Actor
    ticket_id: str
    post: Any  # QueryDict
    files: Any  # MultiValueDict

    @property
    def who(self) -> Performer:
        return Performer.of(self.actor)

    def text(self, name: str) -> str:
        return str(self.post.get(name, "") or "")

    def optional(self, name: str) -> str | None:
        return self.text(name).strip() or None


def _decision_label(value: str) -> str:
    try:
        return str(Decision(value).label)
    except ValueError:
        return value


def act_approve(s: Submission) -> str:
    # As the API: the decision the form names, else the plain approval for the request's type and state.
    decision = s.optional("decision") or default_approval(ticket_ref(s.actor, s.ticket_id))
    services.approve(s.who, s.ticket_id, decision, partial_refund=s.optional("partial_refund"))
    return _("Approved: %(decision)s.") % {"decision": _decision_label(decision)}


def act_reject(s: Submission) -> str:
    services.reject(s.who, s.ticket_id, reason=s.text("reason"), comment=s.text("comment"),
                    images=s.post.getlist("images"))
    return _("Rejected.")


def act_refund(s: Submission) -> str:
    ticket = services.refund(s.who, s.ticket_id, amount=s.optional("amount"))
    return _("Refunded: %(currency)s %(amount)s in total.") % {"currency": ticket.currency,
                                                             "amount": ticket.refunded_amount}


def act_request_evidence(s: Submission) -> str:
    services.request_evidence(s.who, s.ticket_id, message=s.text("message"))
    return _("More evidence was requested from the buyer.")


def act_close(s: Submission) -> str:
    services.close(s.who, s.ticket_id, comment=s.text("comment"))
    return _("Closed.")


def act_escalate(s: Submission) -> str:
    services.escalate(s.who, s.ticket_id, note=s.text("note"))
    return _("Escalated for a senior's review.")


def act_ship_replacement(s: Submission) -> str:
    services.ship_replacement(s.who, s.ticket_id, carrier=s.text("carrier"), tracking_number=s.text("tracking_number"))
    return _("The replacement was marked as shipped.")


def act_upload_evidence(s: Submission) -> str:
    evidence_service.upload_evidence(s.who, s.ticket_id, s.files.get("file"), note=s.text("note"))
    return _("Seller evidence uploaded.")


def act_reply(s: Submission) -> str:
    reply_id = s.optional("reply_id")
    replies.send_reply(s.who, s.ticket_id, reply_id=reply_id, text=None if reply_id else s.text("text"))
    return _("Reply sent to the buyer.")


def act_tracking(s: Submission) -> str:
    shipment = register_tracking(s.who, s.ticket_id, carrier_code=s.text("carrier"),
                                 tracking_number=s.text("tracking_number"), source="portal")
    return _("Return tracking number %(number)s saved.") % {"number": shipment.tracking_number}


def act_intercept(s: Submission) -> str:
    interception = request_interception(s.who, s.ticket_id, tracking_number=s.text("tracking_number"),
                                        carrier_code=s.optional("carrier"), note=s.text("note"))
    return _("Interception of parcel %(number)s requested.") % {"number": interception.tracking_number}


def act_resend_decision(s: Submission) -> str:
    reports.resend_decision(s.actor, s.ticket_id)
    return _("The decision is being sent to TikTok Shop again.")


# URL slug → handler. The field that takes the focus when the form comes back with an error is the second item.
HANDLERS: dict[str, tuple[Callable[[Submission], str], str]] = {
    "approve": (act_approve, "partial-refund"),
    "reject": (act_reject, "reject-reason"),
    "refund": (act_refund, "refund-amount"),
    "request-evidence": (act_request_evidence, "evidence-message"),
    "close": (act_close, "close-comment"),
    "escalate": (act_escalate, "escalate-note"),
    "ship-replacement": (act_ship_replacement, "replacement-number"),
    "evidence": (act_upload_evidence, "evidence-file"),
    "reply": (act_reply, "reply-text"),
    "tracking": (act_tracking, "tracking-number"),
    "intercept": (act_intercept, "intercept-number"),
    "resend-decision": (act_resend_decision, ""),
}


# --- one action per form key ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str = ""
    error: AppError | None = None
    replayed: bool = False


def _digest(request) -> str:
    """The form as sent, without its tokens; an uploaded file by name and size."""
    post = {k: v for k, v in request.POST.lists() if k not in (KEY_FIELD, "csrfmiddlewaretoken")}
    files = sorted([name, f.name, f.size] for name in request.FILES for f in request.FILES.getlist(name))
    return body_digest({"post": post, "files": files})


def _record(outcome: Outcome) -> str:
    if outcome.ok:
        return json.dumps({"ok": True, "message": outcome.message})
    exc = outcome.error
    assert exc is not None
    return json.dumps({"ok": False, "code": exc.code, "detail": exc.detail, "fields": exc.fields,
                       "data": exc.data}, default=str)


def _replayed(row: IdempotencyKey, path: str, digest: str) -> Outcome:
    if (row.method, row.path, row.body_sha256) != ("POST", path, digest):
        raise AppError(errors.ERR_IDEMPOTENCY_MISMATCH,
                       detail=_("This form was already sent with other values. Use the form as shown now."))
    data = json.loads(row.response or "{}")
    if data.get("ok"):
        return Outcome(True, message=str(data.get("message") or ""), replayed=True)
    error = CATALOGUE.get(str(data.get("code")), errors.ERR_INTERNAL)
    return Outcome(False, error=AppError(error, detail=data.get("detail"), fields=data.get("fields") or {},
                                         data=data.get("data") or {}), replayed=True)


def run_once(request, act: Callable[[], str]) -> Outcome:
    """Run ``act`` once per form key (the hidden ``idempotency_key`` the page made when it rendered the form).

    As ``stores.api.idempotency.idempotent`` does for the API: the key's row (``stores.IdempotencyKey``, per user,
    the same table and helpers) is inserted in the transaction that acts, and the result is stored in it before
    the commit, so the effect and its record commit — or roll back — together. A second submit of the same form
    (a double click, a resent POST) waits for the first, then gets its result instead of acting again; the same key
    with other values is ``ERR_IDEMPOTENCY_MISMATCH``. Refusals (4xx) are kept like successes; a 5xx rolls back and
    frees the key. Keys are prefixed so they never meet the keys of the user's API scripts.
    """
    raw = str(request.POST.get(KEY_FIELD, "")).strip()
    try:
        key = str(uuid.UUID(raw))
    except ValueError:
        return Outcome(False, error=AppError(errors.ERR_IDEMPOTENCY_KEY_INVALID, fields={KEY_FIELD: [
            _("The form's one-time key is missing or malformed: reload the page and send the form again.")]}))
    path, digest, user_id = request.path[:512], _digest(request), request.user.pk
    try:
        with transaction.atomic():
            row = _claim(user_id, KEY_PREFIX + key, "POST", path, digest)
            if row is not None:
                return _replayed(row, path, digest)
            purge_expired(PURGE_BATCH)
            try:
                outcome = Outcome(True, message=act())
                status = 302
            except AppError as exc:
                outcome, status = Outcome(False, error=exc), exc.status
            if status >= 500:
                transaction.set_rollback(True)  # the effect and the key go: the key stays free for a retry
                return outcome
            IdempotencyKey.objects.filter(user_id=user_id, key=KEY_PREFIX + key).update(
                status=status, response=_record(outcome))
            return outcome
    except AppError as exc:  # mismatch, or the first submit still running after the wait
        return Outcome(False, error=exc)


def done_message(outcome: Outcome) -> str:
    """What a successful form says; a repeat of the same form key says it was carried out once."""
    if outcome.replayed:
        return _("This form was sent twice; it was carried out once. %(message)s") % {"message": outcome.message}
    return outcome.message


def valid_uuids(values, limit: int | None = None) -> list[str]:
    """The values that are UUIDs (public ids), as text; anything else is dropped, never an error."""
    found = []
    for value in list(values)[:limit]:
        try:
            found.append(str(uuid.UUID(str(value))))
        except ValueError:
            continue
    return found


def position_token(request_get, ticket: AfterSalesRequest | dict) -> str:
    """Where the request stood in the queue when the agent opened it (kept through its actions, see next_in_queue)."""
    given = request_get.get(AFTER_PARAM, "")
    if given and decode_cursor(given) is not None:
        return given
    due_at, pk = (ticket["due_at"], ticket["pk"]) if isinstance(ticket, dict) else (ticket.due_at, ticket.pk)
    return encode_cursor(False, (due_at, pk))


def ticket_position(actor: Actor, ticket_id) -> dict | None:
    """Id and deadline of a request through the gate (None when absent, foreign or ungranted)."""
    return AfterSalesRequest.objects.for_actor(actor).by_id(str(ticket_id)).values("pk", "due_at").first()


# --- the page ------------------------------------------------------------------------------------------
ACTION_LABELS = {
    "intake": gettext_lazy("Request received"),
    "approve": gettext_lazy("Approve"),
    "reject": gettext_lazy("Reject"),
    "request_evidence": gettext_lazy("Request evidence"),
    "refund": gettext_lazy("Refund"),
    "close": gettext_lazy("Close"),
    "escalate": gettext_lazy("Escalate"),
    "ship_replacement": gettext_lazy("Ship the replacement"),
    "arbitration": gettext_lazy("Platform arbitration (平台仲裁)"),
    "buyer_shipped": gettext_lazy("Buyer shipped the return"),
    "buyer_cancelled": gettext_lazy("Buyer cancelled"),
    "buyer_responded": gettext_lazy("Buyer responded"),
    "buyer_accepted_offer": gettext_lazy("Buyer accepted the offer"),
    "replacement_delivered": gettext_lazy("Replacement delivered"),
    "platform_status": gettext_lazy("Platform status"),
    "platform_evidence": gettext_lazy("Evidence from the platform"),
    "platform_confirmed": gettext_lazy("TikTok Shop confirmed the decision"),
    "platform_failed": gettext_lazy("TikTok Shop did not take the decision"),
    "upload_evidence": gettext_lazy("Upload evidence"),
    "reply": gettext_lazy("Reply to the buyer"),
    "tracking_number": gettext_lazy("Return tracking number"),
    "tracking_update": gettext_lazy("Carrier update"),
    "carrier_check": gettext_lazy("Carrier check"),
    "scan_watch": gettext_lazy("No carrier scan (物流断链)"),
    "scan_watch_cleared": gettext_lazy("First carrier scan"),
    "interception_requested": gettext_lazy("Interception requested (物流拦截)"),
    "interception_outcome": gettext_lazy("Interception outcome"),
    "return_label": gettext_lazy("Prepaid return label"),
    "policy_check": gettext_lazy("Policy check"),
    "rule_applied": gettext_lazy("Auto-rules"),
    "assign": gettext_lazy("Assigned"),
    "tag": gettext_lazy("Tagged"),
    "reason_imported": gettext_lazy("Reason imported"),
    "sla_breach": gettext_lazy("Deadline missed"),
    "sla_compensation": gettext_lazy("Automatic compensation (自动赔付)"),
}

# Payload keys worth a line in the timeline, in this order.
DETAIL_LABELS = {
    "decision": gettext_lazy("Decision"),
    "reason": gettext_lazy("Reason"),
    "comment": gettext_lazy("Comment"),
    "message": gettext_lazy("Message"),
    "note": gettext_lazy("Note"),
    "text": gettext_lazy("Text"),
    "words": gettext_lazy("Sensitive words"),
    "amount": gettext_lazy("Amount"),
    "partial_refund": gettext_lazy("Partial refund"),
    "carrier": gettext_lazy("Carrier"),
    "tracking_number": gettext_lazy("Tracking number"),
    "filename": gettext_lazy("File"),
    "raw_status": gettext_lazy("Platform status"),
    "arbitration_status": gettext_lazy("Arbitration"),
    "outcome": gettext_lazy("Outcome"),
    "cause": gettext_lazy("Cause"),
    "platform_code": gettext_lazy("Platform code"),
    "platform_message": gettext_lazy("Platform message"),
}
MAX_DETAIL = 300


def _state_label(value: str) -> str:
    try:
        return str(State(value).label)
    except ValueError:
        return value


def _choice_label(choices, value: str) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def _detail_value(key: str, value, payload: dict, reason_texts: dict[str, str]) -> str:
    if key == "reason" and isinstance(value, str) and reason_texts.get(value):
        return reason_texts[value]  # the words the buyer or the agent saw, not the platform's key
    if isinstance(value, dict):
        if {"amount", "currency"} <= value.keys():
            return f"{value['currency']} {value['amount']}"
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if key == "amount" and payload.get("currency"):
        return f"{payload['currency']} {value}"
    if key == "decision":
        return _decision_label(str(value))
    return str(value)


@dataclass(frozen=True)
class LogRow:
    at: dt.datetime
    who: str
    who_kind: str
    action: str
    before: str
    after: str
    changed: bool
    error: ShownError | None
    details: list[tuple[str, str]]


def log_row(entry: OperationLog, reason_texts: dict[str, str] | None = None) -> LogRow:
    """One timeline line; ``reason_texts`` turns reason keys (the request's, the reject list's) into their words."""
    payload = entry.payload if isinstance(entry.payload, dict) else {}
    details = []
    for key, label in DETAIL_LABELS.items():
        value = payload.get(key)
        if value in (None, "", [], {}):
            continue
        details.append((str(label), _detail_value(key, value, payload, reason_texts or {})[:MAX_DETAIL]))
    who = entry.actor_label or (entry.actor_user.get_username() if entry.actor_user else "")
    return LogRow(at=entry.created_at, who=who, who_kind=_choice_label(ActorKind, entry.actor_kind),
                  action=str(ACTION_LABELS.get(entry.action, entry.action)), before=_state_label(entry.state_before),
                  after=_state_label(entry.state_after), changed=entry.state_before != entry.state_after,
                  error=ShownError.from_code(entry.error_code, entry.message), details=details)


@dataclass(frozen=True)
class PlatformRecord:
    at: dt.datetime | None
    role: str
    description: str
    reason: str
    note: str


def platform_records(ticket: AfterSalesRequest) -> list[PlatformRecord]:
    """The platform's own timeline of the request (Get Return Records), oldest first, times as instants."""
    rows = []
    for record in ticket.platform_records or []:
        if not isinstance(record, dict):
            continue
        try:
            at = dt.datetime.fromtimestamp(int(record.get("create_time")), tz=dt.UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            at = None
        rows.append(PlatformRecord(at, str(record.get("role") or ""), str(record.get("description") or ""),
                                   str(record.get("reason_text") or ""), str(record.get("note") or "")))
    return sorted(rows, key=lambda r: (r.at is None, r.at or dt.datetime.min.replace(tzinfo=dt.UTC)))


@dataclass(frozen=True)
class Deadline:
    kind: str
    at: dt.datetime
    badge: Any
    watched: bool


def deadlines(ticket: AfterSalesRequest, policy, now: dt.datetime, labels: dict) -> list[Deadline]:
    """Every deadline the market's policy and the platform set on the request (earliest first), each with the
    queue's countdown badge; the one the SLA sweep watches is marked."""
    found = []
    for at, kind in sla.deadlines(ticket, policy):
        badge = sla_badge(SimpleNamespace(due_at=at, breached_at=None), now, labels)
        found.append(Deadline(_choice_label(SlaKind, kind), at, badge, (at, kind) == (ticket.due_at, ticket.due_kind)))
    return found


@dataclass(frozen=True)
class Approval:
    decision: str
    label: str
    default: bool
    amount: bool
    key: str


@dataclass
class Actions:
    """The forms this person gets on this request now: what ``allowed_actions`` offers (state × role), and the
    evidence, reply and logistics forms their store permissions allow."""

    approvals: list[Approval] = field(default_factory=list)
    reject: bool = False
    reject_label: str = ""
    reject_reasons: list[dict] = field(default_factory=list)
    refund: bool = False
    request_evidence: bool = False
    close: bool = False
    ship_replacement: bool = False
    escalate: bool = False
    upload: bool = False
    reply: bool = False
    quick_replies: list[QuickReply] = field(default_factory=list)
    tracking: bool = False
    intercept: bool = False
    intercept_number: str = ""
    resend: bool = False
    carriers: list[Carrier] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.approvals or self.reject or self.refund or self.request_evidence or self.close
                    or self.ship_replacement or self.escalate or self.upload or self.reply or self.tracking
                    or self.intercept or self.resend)

    @property
    def offered(self) -> set[str]:
        slugs = {"approve": bool(self.approvals), "reject": self.reject, "refund": self.refund,
                 "request-evidence": self.request_evidence, "close": self.close,
                 "ship-replacement": self.ship_replacement, "escalate": self.escalate, "evidence": self.upload,
                 "reply": self.reply, "tracking": self.tracking, "intercept": self.intercept,
                 "resend-decision": self.resend}
        return {slug for slug, on in slugs.items() if on}


def new_key() -> str:
    return str(uuid.uuid4())


def actions_for(actor: Actor, ticket: AfterSalesRequest, perms: set[str], allowed: list[str],
                decision: PlatformDecision | None, open_interception: bool) -> Actions:
    offered = Actions(keys={slug.replace("-", "_"): new_key() for slug in HANDLERS})
    default = default_approval(ticket)
    for action in allowed:
        verb, _sep, value = action.partition(":")
        if verb == "approve":
            offered.approvals.append(Approval(value, _decision_label(value), value == default,
                                              value == Decision.OFFER_PARTIAL_REFUND, new_key()))
        elif verb == "reject" and not offered.reject:
            offered.reject, offered.reject_label = True, _decision_label(value)
    offered.approvals.sort(key=lambda a: not a.default)  # the plain approval first (shortcut a)
    if offered.reject:
        offered.reject_reasons = [r for r in services.reject_reasons(ticket) if isinstance(r, dict)]
    offered.refund = "refund" in allowed
    offered.request_evidence = "request_evidence" in allowed
    offered.close = "close" in allowed
    offered.ship_replacement = "ship_replacement" in allowed
    offered.escalate = "escalate" in allowed
    handles = StorePerm.HANDLE_AFTERSALES in perms
    offered.upload = offered.reply = handles
    if handles:
        offered.quick_replies = list(replies.quick_replies_for_actor(actor, ticket.store_id))
    offered.resend = handles and decision is not None and decision.status == PlatformDecision.Status.FAILED
    logistics = StorePerm.MANAGE_LOGISTICS in perms
    offered.tracking = logistics and ticket.type in RETURN_TYPES
    if logistics and ticket.state in OPEN_STATES and not open_interception:
        # 物流拦截 is offered unless the logistics service would refuse it as delivered (its own rule, asked here).
        offered.intercept_number = ticket.replacement_tracking_number or ""
        offered.intercept = delivered_evidence(ticket, offered.intercept_number) is None
    if offered.tracking or offered.intercept or offered.ship_replacement:
        offered.carriers = list(Carrier.objects.filter(is_active=True, markets__contains=[ticket.store.market.code])
                                .order_by("name"))
    return offered


@dataclass(frozen=True)
class ReplyCheck:
    """The sensitive-word check of a reply before it is sent: what the buyer would read and the words found."""

    text: str
    words: list[str]
    reply_id: str
    free_text: str


def check_reply(ticket: AfterSalesRequest, quick_replies: list[QuickReply], post) -> ReplyCheck:
    """The check ``replies.send_reply`` runs, without sending: the quick reply filled for this request (or the free
    text), with the platform's own ids and amounts masked exactly as the send masks them."""
    reply_id = str(post.get("reply_id", "") or "").strip()
    free_text = str(post.get("text", "") or "").strip()
    if reply_id:
        reply = next((r for r in quick_replies if str(r.public_id) == reply_id), None)
        if reply is None:
            raise AppError(errors.ERR_NOT_FOUND, fields={"reply_id": [_("No such reply for this store.")]})
        parts = replies.parse_template(reply.body)
        values = replies.variables_for(ticket)
        shown = replies._fill(parts, values)
        checked = replies._fill(parts, {**values, **{k: "{" + k + "}" for k in replies.PLATFORM_VARIABLES}})
    else:
        if not free_text or len(free_text) > replies.MAX_BODY:
            raise AppError(errors.ERR_VALIDATION, fields={"text": [
                _("1 to %(n)s characters.") % {"n": replies.MAX_BODY}]})
        shown, checked = free_text, replies._mask_platform_ids(free_text, ticket)
    return ReplyCheck(shown, replies.check_text(checked, ticket.store.market.code), reply_id, free_text)


def next_in_queue(actor: Actor, scope: Store | None, ticket: AfterSalesRequest, token: str) -> dict | None:
    """The next open request in the queue's order (soonest deadline first, none last, then id) after the position
    the request had when the agent opened it — an action that moves it (its deadline ends) does not make ``n``
    skip the requests that were behind it. Among the stores in view (the store switcher's, else all visible)."""
    decoded = decode_cursor(token) if token else None
    due_at, pk = decoded[1] if decoded else (ticket.due_at, ticket.pk)
    queryset = ticket_queue(actor).filter(state__in=OPEN_STATES).exclude(pk=ticket.pk)
    if scope is not None:
        queryset = queryset.filter(store_id=scope.pk)
    rows = ORDER.rows(queryset.values("public_id", "return_id"), (due_at, pk), limit=1)
    return rows[0] if rows else None


def workspace(request, actor: Actor, ticket_id, *, scope: Store | None, failed: Failed | None = None,
              reply_post=None) -> dict:
    """Everything the page shows, for this person. ERR_NOT_FOUND when the request is not theirs to see."""
    ticket = ticket_for_actor(actor, ticket_id)
    now = timezone.now()
    labels = countdown_labels()
    perms = store_perms(actor, [ticket.store_id]).get(ticket.store_id, set())
    allowed = selectors.allowed_actions(actor, ticket, perms)
    policy = sla.policy_for(ticket.store.market_id)
    items = list(ticket.items.all())
    evidence_items = list(evidence_service.evidence_for_actor(actor, ticket).select_related("uploaded_by"))
    for item in evidence_items:
        # Platform links are data from outside: only http(s) ever becomes a link.
        item.link = item.url if item.url.lower().startswith(("https://", "http://")) else ""
        item.seconds = round(item.duration_millis / 1000) if item.duration_millis else None
    by_role = {role: [e for e in evidence_items if e.role == role] for role in Evidence.Role.values}
    reason_texts = {str(r.get("name")): str(r.get("text") or "") for r in services.reject_reasons(ticket)
                    if isinstance(r, dict)}
    if ticket.reason_key and ticket.reason_text:
        reason_texts[ticket.reason_key] = ticket.reason_text
    timeline = [log_row(entry, reason_texts) for entry in selectors.timeline(ticket)]
    decision = outbox.latest_for([ticket.pk]).get(ticket.pk)
    connection = reports.connections_for_actor(actor).filter(store_id=ticket.store_id).first()
    interceptions = list(interceptions_for_actor(actor, ticket.pk))
    open_interception = any(i.outcome == "requested" for i in interceptions)
    history = None
    if ticket.buyer_user_id:
        history = buyers.buyer_history(actor, ticket.buyer_user_id, days=HISTORY_DAYS)
        history["type_labels"] = [(_choice_label(RequestType, k), n) for k, n in history["types"].items()]
        history["rejection_pct"] = (None if history["rejection_rate"] is None
                                    else round(history["rejection_rate"] * 100, 1))
    actions = actions_for(actor, ticket, perms, allowed, decision, open_interception)
    reply_check = reply_error = None
    if reply_post is not None:
        try:
            reply_check = check_reply(ticket, actions.quick_replies, reply_post)
        except AppError as exc:
            failed = Failed("reply", ShownError.of(exc), {k: str(v) for k, v in reply_post.items()})
            reply_error = exc
    token = position_token(request.GET, ticket)
    following = next_in_queue(actor, scope, ticket, token)
    autofocus = ""
    if failed is not None and failed.action in actions.offered:
        autofocus = HANDLERS[failed.action][1]
        if failed.action == "approve":
            autofocus = "partial-refund" if failed.values.get("decision") == Decision.OFFER_PARTIAL_REFUND else ""
    elif reply_check is not None:
        autofocus = "reply-send"
    elif actions.tracking and ticket.state in PARCEL_AWAITED:
        autofocus = "tracking-number"
    shipment = getattr(ticket, "return_shipment", None)
    fees = selectors.fees(ticket, policy)
    return {
        "actor": actor,
        "ticket": ticket,
        "store": ticket.store,
        "tz": ticket.store.market.time_zone,
        "now": now,
        "labels": labels,
        "badge": sla_badge(ticket, now, labels),
        "deadlines": deadlines(ticket, policy, now, labels),
        "items": items,
        "fees": fees,
        "commission_pct": (fees["commission_rate"] * 100).quantize(Decimal("0.01")),
        "evidence": by_role,
        "evidence_count": len(evidence_items),
        "seller_images": [e for e in by_role[Evidence.Role.SELLER] if e.kind == Evidence.Kind.IMAGE],
        "timeline": timeline,
        "platform_records": platform_records(ticket),
        "decision": decision,
        "decision_error": ShownError.from_code(decision.error_code, decision.message) if decision else None,
        "connection": connection,
        "shipment": shipment,
        "interceptions": interceptions,
        "history": history,
        "actions": actions,
        "allowed": allowed,
        "failed": failed,
        "failed_inline": failed is not None and failed.action in actions.offered,
        "reply_check": reply_check,
        "reply_error": reply_error,
        "autofocus": autofocus,
        "position": token,
        "next_ticket": following,
        "scope": scope,
        "unknown_status": errors.ERR_SYNC_001 if ticket.platform_status_unknown else None,
        "exempt": errors.ERR_POLICY_001 if ticket.exempt_category else None,
        "stalled": errors.ERR_LOG_301 if ticket.stalled_at else None,
        "default_approval": next((a for a in actions.approvals if a.default), None),
        # A sub-account who may only look is told which role setting would let them act (no error: a note).
        # Not when the refusal just shown (a crafted POST) already says the same, hint included.
        "perm_note": None if StorePerm.HANDLE_AFTERSALES in perms or (
            failed is not None and failed.error.code == errors.ERR_PERM_001.code) else errors.ERR_PERM_001,
        "reply_refused": errors.ERR_REPLY_001,
    }
