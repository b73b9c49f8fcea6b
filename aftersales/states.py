"""The after-sales state machine, as data.

``ACTIONS`` is the explicit table: action → request type → states it may start from → state it
leads to. ``TRANSITIONS`` (type, from) → allowed targets is derived from it, so the two can never
disagree. ``PLATFORM_STATUS`` maps every TikTok Shop ``return_status`` (the 14 of the official SDK
and the spelling variants seen in other clients) onto our states.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _


class RequestType(models.TextChoices):
    REFUND_ONLY = "refund_only", _("Refund only (仅退款)")
    RETURN_AND_REFUND = "return_and_refund", _("Return and refund (退货退款)")
    EXCHANGE = "exchange", _("Exchange (换货)")
    CANCELLATION = "cancellation", _("Order cancellation (取消订单)")


class State(models.TextChoices):
    PENDING_REVIEW = "pending_review", _("Pending review")
    AWAITING_BUYER = "awaiting_buyer", _("Awaiting buyer")
    AWAITING_RETURN = "awaiting_return", _("Awaiting buyer's return shipment")
    RETURN_IN_TRANSIT = "return_in_transit", _("Return shipped by buyer")
    REFUND_APPROVED = "refund_approved", _("Refund approved")
    REPLACEMENT_APPROVED = "replacement_approved", _("Replacement approved")
    REPLACEMENT_SHIPPED = "replacement_shipped", _("Replacement shipped")
    REJECTED = "rejected", _("Rejected")
    PACKAGE_REJECTED = "package_rejected", _("Returned package rejected")
    IN_ARBITRATION = "in_arbitration", _("In platform arbitration")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")
    CLOSED = "closed", _("Closed")


OPEN_STATES = frozenset({
    State.PENDING_REVIEW, State.AWAITING_BUYER, State.AWAITING_RETURN, State.RETURN_IN_TRANSIT,
    State.REFUND_APPROVED, State.REPLACEMENT_APPROVED, State.REPLACEMENT_SHIPPED, State.REJECTED,
    State.PACKAGE_REJECTED, State.IN_ARBITRATION,
})
FINAL_STATES = frozenset(set(State) - OPEN_STATES)


class Decision(models.TextChoices):
    """Seller decisions, with the platform's names (ApproveReturn / RejectReturn bodies)."""

    APPROVE_REFUND = "APPROVE_REFUND", _("Approve refund")
    APPROVE_RETURN = "APPROVE_RETURN", _("Approve return")
    APPROVE_RECEIVED_PACKAGE = "APPROVE_RECEIVED_PACKAGE", _("Approve received package")
    APPROVE_REPLACEMENT = "APPROVE_REPLACEMENT", _("Approve replacement")
    ISSUE_REPLACEMENT_REFUND = "ISSUE_REPLACEMENT_REFUND", _("Refund instead of replacement")
    OFFER_PARTIAL_REFUND = "OFFER_PARTIAL_REFUND", _("Offer partial refund (buyer keeps item)")
    DIRECT_REFUND = "DIRECT_REFUND", _("Direct refund (buyer keeps item)")
    REJECT_REFUND = "REJECT_REFUND", _("Reject refund")
    REJECT_RETURN = "REJECT_RETURN", _("Reject return")
    REJECT_RECEIVED_PACKAGE = "REJECT_RECEIVED_PACKAGE", _("Reject received package")
    REJECT_REPLACEMENT = "REJECT_REPLACEMENT", _("Reject replacement")
    # Buyer cancellation requests (names from the platform's decision eligibility, 202601).
    APPROVE_REQUEST_CANCEL = "APPROVE_REQUEST_CANCEL", _("Approve cancellation")
    REJECT_REQUEST_CANCEL = "REJECT_REQUEST_CANCEL", _("Reject cancellation")


class Arbitration(models.TextChoices):
    IN_PROGRESS = "IN_PROGRESS", _("In progress")
    SUPPORT_BUYER = "SUPPORT_BUYER", _("Ruled for the buyer")
    SUPPORT_SELLER = "SUPPORT_SELLER", _("Ruled for the seller")
    CLOSED = "CLOSED", _("Closed")


R, RR, EX = RequestType.REFUND_ONLY, RequestType.RETURN_AND_REFUND, RequestType.EXCHANGE
CX = RequestType.CANCELLATION
# After-sales requests proper; a cancellation (before shipping) has its own, shorter path below.
ALL_TYPES = (R, RR, EX)
S = State


@dataclass(frozen=True)
class Step:
    types: tuple[str, ...]
    sources: frozenset[str]
    target: str


def step(types, sources, target) -> Step:
    return Step(tuple(types), frozenset(sources), target)


# action key → the steps it may take. An action key is "approve:<DECISION>", "reject:<DECISION>" or a verb.
ACTIONS: dict[str, list[Step]] = {
    # --- seller review (审核) ---
    "approve:APPROVE_REFUND": [step([R], [S.PENDING_REVIEW], S.REFUND_APPROVED)],
    "approve:APPROVE_RETURN": [step([RR], [S.PENDING_REVIEW], S.AWAITING_RETURN)],
    "approve:APPROVE_RECEIVED_PACKAGE": [step([RR], [S.RETURN_IN_TRANSIT], S.REFUND_APPROVED)],
    "approve:APPROVE_REPLACEMENT": [step([EX], [S.PENDING_REVIEW], S.REPLACEMENT_APPROVED)],
    "approve:ISSUE_REPLACEMENT_REFUND": [step([EX], [S.PENDING_REVIEW, S.REPLACEMENT_APPROVED], S.REFUND_APPROVED)],
    "approve:OFFER_PARTIAL_REFUND": [step([R, RR], [S.PENDING_REVIEW], S.AWAITING_BUYER)],
    "approve:DIRECT_REFUND": [step([RR], [S.PENDING_REVIEW, S.AWAITING_RETURN, S.RETURN_IN_TRANSIT],
                                   S.REFUND_APPROVED)],
    "reject:REJECT_REFUND": [step([R], [S.PENDING_REVIEW], S.REJECTED)],
    "reject:REJECT_RETURN": [step([RR], [S.PENDING_REVIEW], S.REJECTED)],
    "reject:REJECT_RECEIVED_PACKAGE": [step([RR], [S.RETURN_IN_TRANSIT], S.PACKAGE_REJECTED)],
    "reject:REJECT_REPLACEMENT": [step([EX], [S.PENDING_REVIEW], S.REJECTED)],
    "approve:APPROVE_REQUEST_CANCEL": [step([CX], [S.PENDING_REVIEW], S.REFUND_APPROVED)],
    "reject:REJECT_REQUEST_CANCEL": [step([CX], [S.PENDING_REVIEW], S.REJECTED)],
    "request_evidence": [step(ALL_TYPES, [S.PENDING_REVIEW], S.AWAITING_BUYER)],
    "refund": [step([R, RR, EX], [S.REFUND_APPROVED], S.COMPLETED)],
    "ship_replacement": [step([EX], [S.REPLACEMENT_APPROVED], S.REPLACEMENT_SHIPPED)],
    "close": [step(ALL_TYPES, [S.AWAITING_BUYER, S.REJECTED, S.PACKAGE_REJECTED, S.REPLACEMENT_SHIPPED],
                   S.CLOSED),
              step([CX], [S.REJECTED], S.CLOSED)],
    # --- platform arbitration (平台仲裁) ---
    "arbitration:IN_PROGRESS": [step(ALL_TYPES, [S.PENDING_REVIEW, S.AWAITING_BUYER, S.REJECTED,
                                                 S.PACKAGE_REJECTED, S.RETURN_IN_TRANSIT], S.IN_ARBITRATION)],
    # The ruling resolves by where the request stood; see services.arbitration_target.
    "arbitration:SUPPORT_BUYER": [step([R, RR, EX], [S.IN_ARBITRATION], S.REFUND_APPROVED),
                                  step([RR], [S.IN_ARBITRATION], S.AWAITING_RETURN)],
    "arbitration:SUPPORT_SELLER": [step(ALL_TYPES, [S.IN_ARBITRATION], S.CLOSED)],
    "arbitration:CLOSED": [step(ALL_TYPES, [S.IN_ARBITRATION], S.CLOSED)],
    # --- buyer events ---
    "buyer_shipped": [step([RR], [S.AWAITING_RETURN], S.RETURN_IN_TRANSIT)],
    "buyer_cancelled": [step(ALL_TYPES, [S.PENDING_REVIEW, S.AWAITING_BUYER, S.AWAITING_RETURN, S.REJECTED],
                             S.CANCELLED),
                        step([CX], [S.PENDING_REVIEW], S.CANCELLED)],
    "buyer_responded": [step(ALL_TYPES, [S.AWAITING_BUYER], S.PENDING_REVIEW)],
    "buyer_accepted_offer": [step([R, RR], [S.AWAITING_BUYER], S.REFUND_APPROVED)],
    # --- platform-side completion ---
    "replacement_delivered": [step([EX], [S.REPLACEMENT_SHIPPED], S.COMPLETED)],
}


def targets(action: str, rtype: str, source: str) -> list[str]:
    return [s.target for s in ACTIONS.get(action, []) if rtype in s.types and source in s.sources]


def _derive() -> dict[tuple[str, str], frozenset[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for steps in ACTIONS.values():
        for st in steps:
            for rtype in st.types:
                for source in st.sources:
                    table.setdefault((rtype, source), set()).add(st.target)
    return {k: frozenset(v) for k, v in table.items()}


TRANSITIONS = _derive()


def allowed_actions(rtype: str, source: str) -> list[str]:
    return sorted(a for a in ACTIONS if targets(a, rtype, source))


# --- platform vocabulary ----------------------------------------------------------------------
PLATFORM_TYPE = {"REFUND": R, "RETURN_AND_REFUND": RR, "REPLACEMENT": EX, "CANCELLATION": CX}

PLATFORM_STATUS: dict[str, str] = {
    "RETURN_OR_REFUND_REQUEST_PENDING": S.PENDING_REVIEW,
    # Official word order, the one other SDKs use, and a past-tense variant: all "rejected".
    "REFUND_OR_RETURN_REQUEST_REJECT": S.REJECTED,
    "RETURN_OR_REFUND_REQUEST_REJECT": S.REJECTED,
    "RETURN_OR_REFUND_REQUEST_REJECTED": S.REJECTED,
    "REQUEST_REJECTED": S.REJECTED,
    "AWAITING_BUYER_SHIP": S.AWAITING_RETURN,
    "BUYER_SHIPPED_ITEM": S.RETURN_IN_TRANSIT,
    "REJECT_RECEIVE_PACKAGE": S.PACKAGE_REJECTED,
    "RECEIVE_REJECTED": S.PACKAGE_REJECTED,
    "RETURN_OR_REFUND_REQUEST_SUCCESS": S.REFUND_APPROVED,
    "REQUEST_SUCCESS": S.REFUND_APPROVED,
    "RETURN_OR_REFUND_REQUEST_CANCEL": S.CANCELLED,
    "RETURN_OR_REFUND_CANCEL": S.CANCELLED,
    "RETURN_OR_REFUND_REQUEST_COMPLETE": S.COMPLETED,
    "REPLACEMENT_REQUEST_PENDING": S.PENDING_REVIEW,
    "REPLACEMENT_REQUEST_REJECT": S.REJECTED,
    "REPLACEMENT_REQUEST_REFUND_SUCCESS": S.COMPLETED,
    "REPLACEMENT_REQUEST_CANCEL": S.CANCELLED,
    "REPLACEMENT_REQUEST_COMPLETE": S.COMPLETED,
    "AWAITING_BUYER_RESPONSE": S.AWAITING_BUYER,
    # Cancellations (§1.8). The request filter says CANCEL, the response doc CANCELLED: accept both.
    "CANCELLATION_REQUEST_PENDING": S.PENDING_REVIEW,
    "CANCELLATION_REQUEST_SUCCESS": S.REFUND_APPROVED,
    "CANCELLATION_REQUEST_CANCEL": S.CANCELLED,
    "CANCELLATION_REQUEST_CANCELLED": S.CANCELLED,
    "CANCELLATION_REQUEST_COMPLETE": S.COMPLETED,
}


def normalise_platform_status(raw: str) -> str:
    value = (raw or "").strip().upper().replace("-", "_").replace(" ", "_")
    return value.replace("REPLACMENT_", "REPLACEMENT_")  # a third-party typo seen in the wild


def state_for_platform_status(raw: str) -> str | None:
    """Our state for a platform status, or None when the status is unknown (kept raw, flagged)."""
    return PLATFORM_STATUS.get(normalise_platform_status(raw))


def table_markdown() -> str:
    """docs/STATE_MACHINE.md, generated from the tables above (a test keeps the doc in step)."""
    lines = ["# After-sales state machine", "",
             "Generated by `./dev manage state_machine_markdown > docs/STATE_MACHINE.md` from "
             "`aftersales/states.py`.", "", "## Actions", "",
             "| action | request types | from | to |", "|---|---|---|---|"]
    for action, steps in ACTIONS.items():
        for st in steps:
            lines.append(f"| `{action}` | {', '.join(sorted(st.types))} | {', '.join(sorted(st.sources))} "
                         f"| {st.target} |")
    lines += ["", "## Allowed transitions (type, from → to)", "", "| type | from | to |", "|---|---|---|"]
    for (rtype, source), allowed in sorted(TRANSITIONS.items()):
        lines.append(f"| {rtype} | {source} | {', '.join(sorted(allowed))} |")
    lines += ["", "Final states (nothing leaves them): " + ", ".join(sorted(FINAL_STATES)) + ".", "",
              "## Platform `return_status` → state", "", "| platform status | state |", "|---|---|"]
    for raw, state in PLATFORM_STATUS.items():
        lines.append(f"| `{raw}` | {state} |")
    lines += ["", "Any other status is stored as sent, flagged `platform_status_unknown`, and logged with "
              "`ERR_SYNC_001`; the request keeps its state."]
    return "\n".join(lines) + "\n"
