"""买家售后行为画像: one buyer's after-sales history across the stores an actor may see.

The figures come from one grouped query (by type and currency), whatever the history's length, so the
profile can sit next to every request in a queue. Amounts are never added across currencies.

Definitions
- A request's time is the platform's creation time (when the buyer asked), else our intake time.
- A refund is a request with refunded_amount > 0.
- Decision: the last state-entering log row (no error code) into a decision state. Approvals are
  refund_approved, awaiting_return, return_in_transit, replacement_approved, replacement_shipped and
  completed; rejections are rejected and package_rejected. A rejection later closed, or upheld by
  arbitration, stays a rejection; one overturned by arbitration becomes an approval.
- Rejection rate = rejected / decided, over all time; None when nothing was decided yet.
- Serial returner: the first rule (settings.AFTERSALES_SERIAL_RETURNER_RULES, in order) that holds.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from aftersales.models import AfterSalesRequest, OperationLog
from aftersales.states import State
from stores import errors
from stores.errors import AppError
from stores.scoping import Actor

APPROVED_STATES = (State.REFUND_APPROVED, State.AWAITING_RETURN, State.RETURN_IN_TRANSIT,
                   State.REPLACEMENT_APPROVED, State.REPLACEMENT_SHIPPED, State.COMPLETED)
REJECTED_STATES = (State.REJECTED, State.PACKAGE_REJECTED)
MAX_DAYS = 3650

# Rules as data: metric is "requests", "refunds" (counts) or "refunded_amount" (threshold per currency,
# roughly 200 USD each; a currency not listed is never flagged by that rule).
DEFAULT_SERIAL_RETURNER_RULES = (
    {"key": "requests", "metric": "requests", "days": 90, "threshold": 5},
    {"key": "refunds", "metric": "refunds", "days": 30, "threshold": 3},
    {"key": "refunded_amount", "metric": "refunded_amount", "days": 90, "threshold": {
        "USD": "200", "GBP": "160", "CAD": "275", "MYR": "900", "THB": "7000", "VND": "5000000", "PHP": "11500",
        "SGD": "260", "IDR": "3200000", "SAR": "750", "AED": "735",
    }},
)
METRICS = ("requests", "refunds", "refunded_amount")


def serial_returner_rules() -> list[dict]:
    """The configured rules, checked once per call so a typo in settings fails loudly, not silently."""
    rules = list(getattr(settings, "AFTERSALES_SERIAL_RETURNER_RULES", DEFAULT_SERIAL_RETURNER_RULES))
    for rule in rules:
        if (not isinstance(rule, dict) or rule.get("metric") not in METRICS or not isinstance(rule.get("days"), int)
                or rule["days"] < 1 or "threshold" not in rule):
            raise ImproperlyConfigured(f"AFTERSALES_SERIAL_RETURNER_RULES: bad rule {rule!r}")
        threshold = rule["threshold"]
        try:
            if rule["metric"] == "refunded_amount":
                if not isinstance(threshold, dict) or any(Decimal(str(v)) <= 0 for v in threshold.values()):
                    raise TypeError
            elif not isinstance(threshold, int) or threshold < 1:
                raise TypeError
        except (TypeError, InvalidOperation):
            raise ImproperlyConfigured(f"AFTERSALES_SERIAL_RETURNER_RULES: bad threshold in {rule!r}") from None
    return rules


def _last_decision() -> Subquery:
    return Subquery(
        OperationLog.objects.filter(ticket=OuterRef("pk"), error_code="",
                                    state_after__in=APPROVED_STATES + REJECTED_STATES)
        .order_by("-id").values("state_after")[:1]
    )


def buyer_history(actor: Actor | None, buyer_user_id: str, *, days: int = 90) -> dict:
    """The buyer's history in the actor's agency, limited to the stores the actor may see."""
    buyer_user_id = str(buyer_user_id or "").strip()
    if not buyer_user_id:
        raise AppError(errors.ERR_VALIDATION, fields={"buyer_user_id": [_("Required.")]})
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise AppError(errors.ERR_VALIDATION, fields={"days": [_("A whole number from 1 to %(n)s.") % {"n": MAX_DAYS}]})
    rules = serial_returner_rules()
    now = timezone.now()

    def since(n: int) -> dt.datetime:
        return now - dt.timedelta(days=n)

    refunded = Q(refunded_amount__gt=0)
    recent = Q(requested_at__gte=since(days))
    aggregates = {
        "n": Count("pk"),
        "recent": Count("pk", filter=recent),
        "refunds": Count("pk", filter=refunded),
        "refunds_recent": Count("pk", filter=refunded & recent),
        "refunded": Sum("refunded_amount", filter=refunded),
        "refunded_recent": Sum("refunded_amount", filter=refunded & recent),
        "decided": Count("pk", filter=Q(last_decision__isnull=False)),
        "rejected": Count("pk", filter=Q(last_decision__in=REJECTED_STATES)),
        "last": Max("requested_at"),
    }
    for i, rule in enumerate(rules):
        window = Q(requested_at__gte=since(rule["days"]))
        if rule["metric"] == "requests":
            aggregates[f"rule_{i}"] = Count("pk", filter=window)
        elif rule["metric"] == "refunds":
            aggregates[f"rule_{i}"] = Count("pk", filter=window & refunded)
        else:
            aggregates[f"rule_{i}"] = Sum("refunded_amount", filter=window & refunded)

    rows = list(
        AfterSalesRequest.objects.for_actor(actor)
        .filter(buyer_user_id=buyer_user_id)
        .annotate(requested_at=Coalesce("platform_created_at", "created_at"), last_decision=_last_decision())
        .values("type", "currency").annotate(**aggregates).order_by()
    )

    total = sum(r["n"] for r in rows)
    decided = sum(r["decided"] for r in rows)
    rejected = sum(r["rejected"] for r in rows)
    types: dict[str, int] = {}
    by_currency: dict[str, Decimal] = {}
    by_currency_recent: dict[str, Decimal] = {}
    for r in rows:
        types[r["type"]] = types.get(r["type"], 0) + r["n"]
        for target, value in ((by_currency, r["refunded"]), (by_currency_recent, r["refunded_recent"])):
            if value:
                target[r["currency"]] = target.get(r["currency"], Decimal("0")) + value
    flagged, rule_text, rule_key = serial_returner_verdict(rules, rows)
    return {
        "buyer_user_id": buyer_user_id,
        "days": days,
        "requests_total": total,
        "requests_recent": sum(r["recent"] for r in rows),
        "refunds_total": sum(r["refunds"] for r in rows),
        "refunds_recent": sum(r["refunds_recent"] for r in rows),
        "refunded": dict(sorted(by_currency.items())),
        "refunded_recent": dict(sorted(by_currency_recent.items())),
        "decided": decided,
        "rejected": rejected,
        "rejection_rate": round(rejected / decided, 4) if decided else None,
        "types": dict(sorted(types.items())),
        "last_request_at": max((r["last"] for r in rows if r["last"]), default=None),
        "serial_returner": flagged,
        "rule": rule_text,
        "rule_key": rule_key,
    }


def serial_returner_verdict(rules: list[dict], rows: list[dict]) -> tuple[bool, str | None, str | None]:
    """The first rule that holds over the grouped rows (also used by auto-rules, so the two never drift)."""
    for i, rule in enumerate(rules):
        key = rule.get("key") or rule["metric"]
        if rule["metric"] == "refunded_amount":
            sums: dict[str, Decimal] = {}
            for r in rows:
                if r[f"rule_{i}"]:
                    sums[r["currency"]] = sums.get(r["currency"], Decimal("0")) + r[f"rule_{i}"]
            for currency, amount in sorted(sums.items()):
                limit = rule["threshold"].get(currency)
                if limit is not None and amount >= Decimal(str(limit)):
                    return True, _("≥ %(limit)s %(currency)s refunded in %(days)s days (found %(found)s)") % {
                        "limit": limit, "currency": currency, "days": rule["days"], "found": amount}, key
            continue
        found = sum(r[f"rule_{i}"] for r in rows)
        if found >= rule["threshold"]:
            if rule["metric"] == "requests":
                text = _("≥ %(n)s requests in %(days)s days (found %(found)s)")
            else:
                text = _("≥ %(n)s refunds in %(days)s days (found %(found)s)")
            return True, text % {"n": rule["threshold"], "days": rule["days"], "found": found}, key
    return False, None, None
