"""SLA timers (issue 5): deadlines from market policy, warnings, the breach sweep, the service-score ledger.

Design (DESIGN rule 8: far-future checks are indexed due columns swept by beat, never broker countdowns):

- Every request carries its earliest watched deadline (``due_at`` / ``due_kind``) and ``sla_check_at``, the
  next moment the sweep must look at it: the next warning time or the deadline, whichever is first. One column
  for both keeps an idle sweep at one probe of one partial index. Both are NULL when nothing is left to watch
  (final state, every deadline met or already missed), so the partial indexes hold watched requests only.
- Which deadlines apply: *first human response* (markets whose policy has ``first_response_hours``) until a
  person acts; *auto-approval* (refund / return) and *replacement response* (exchange) and the platform's own
  ``seller_next_action_response`` deadline while the request still awaits the seller's review. All count from
  when the buyer raised the request on the platform.
- The sweep re-checks each claimed request (state may have moved on through a platform sync) and misses each
  kind at most once: ``SlaBreach`` is unique per (request, kind), compensation and score entries are one-to-one
  with a breach. Every missed deadline is a late response (−score_penalty); only the first-human-response breach
  owes automatic compensation (自动赔付, Seller Policy v3.2 §7.1), capped by the store's monthly budget.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aftersales import oplog
from aftersales.models import AfterSalesRequest, Compensation, ServiceScoreEntry, SlaBreach, SlaKind
from aftersales.states import FINAL_STATES, RequestType, State
from stores import errors
from stores.models import MarketPolicy, Store

log = logging.getLogger(__name__)

ERR_SLA_BREACHED = errors.ERR_SLA_001.code
ERR_SLA_CAPPED = errors.ERR_SLA_002.code
MAX_SCORE = Decimal("5.00")
# Which missed deadlines owe the buyer automatic compensation (Seller Policy v3.2 §7.1: the first human response).
COMPENSATING_KINDS = frozenset({SlaKind.FIRST_RESPONSE})
# Ties are broken by this order, so the deadline that compensates is the one named.
KIND_ORDER = [SlaKind.FIRST_RESPONSE, SlaKind.PLATFORM, SlaKind.REPLACEMENT_RESPONSE, SlaKind.AUTO_APPROVE]
SLA_FIELDS = ["due_at", "due_kind", "sla_check_at", "first_human_response_at", "breached_at"]

BREACH_MESSAGE = _("Deadline missed: %(kind)s.")
CAPPED_MESSAGE = _("Automatic compensation not granted: the store's monthly compensation budget is used up.")
WARNING_MESSAGE = _("%(kind)s due in %(minutes)d minutes.")


# --- deadlines ---------------------------------------------------------------------------------------------
def policy_for(market_id: int, cache: dict[int, MarketPolicy | None] | None = None) -> MarketPolicy | None:
    if cache is not None and market_id in cache:
        return cache[market_id]
    policy = MarketPolicy.objects.filter(market_id=market_id).first()
    if cache is not None:
        cache[market_id] = policy
    return policy


def deadlines(ticket: AfterSalesRequest, policy: MarketPolicy | None,
              exclude: set[str] | frozenset[str] = frozenset()) -> list[tuple[dt.datetime, str]]:
    """Every deadline that still applies to the request, earliest first (already-missed kinds excluded)."""
    if ticket.state in FINAL_STATES:
        return []
    start = ticket.platform_created_at or ticket.created_at or timezone.now()
    found: list[tuple[dt.datetime, str]] = []
    if policy is not None:
        if policy.first_response_hours and ticket.first_human_response_at is None:
            found.append((start + dt.timedelta(hours=policy.first_response_hours), SlaKind.FIRST_RESPONSE))
        if ticket.state == State.PENDING_REVIEW:
            if ticket.type == RequestType.EXCHANGE:
                found.append((start + dt.timedelta(hours=policy.replacement_response_hours),
                              SlaKind.REPLACEMENT_RESPONSE))
            else:
                found.append((start + dt.timedelta(hours=policy.auto_approve_hours), SlaKind.AUTO_APPROVE))
    if ticket.platform_deadline is not None and ticket.state == State.PENDING_REVIEW:
        found.append((ticket.platform_deadline, SlaKind.PLATFORM))
    found = [(at, kind) for at, kind in found if kind not in exclude]
    return sorted(found, key=lambda d: (d[0], KIND_ORDER.index(d[1])))


def _offsets(policy: MarketPolicy | None) -> list[int]:
    return sorted({int(m) for m in (policy.warning_offsets_minutes if policy else []) if m and m > 0}, reverse=True)


def _next_check(due: dt.datetime, policy: MarketPolicy | None, now: dt.datetime) -> dt.datetime:
    """The next warning still ahead, else the deadline itself."""
    ahead = [due - dt.timedelta(minutes=m) for m in _offsets(policy) if due - dt.timedelta(minutes=m) > now]
    return min([*ahead, due])


def _first_check(due: dt.datetime, policy: MarketPolicy | None) -> dt.datetime:
    """For a new deadline: the earliest warning even when it has passed, so the sweep raises the one due now."""
    return min([due - dt.timedelta(minutes=m) for m in _offsets(policy)] + [due])


def _breached_kinds(ticket: AfterSalesRequest) -> set[str]:
    if ticket.breached_at is None:  # no breach yet: spare the query
        return set()
    return set(SlaBreach.objects.for_agency(ticket.agency_id).filter(ticket=ticket).values_list("kind", flat=True))


def set_deadlines(ticket: AfterSalesRequest, policy: MarketPolicy | None = None, *,
                  missed: set[str] | None = None) -> None:
    """Recompute the watched deadline in memory (the caller saves). Keeps the check time for the same deadline."""
    if policy is None:
        policy = policy_for(ticket.store.market_id)
    missed = _breached_kinds(ticket) if missed is None else missed
    found = deadlines(ticket, policy, exclude=missed)
    if not found:
        ticket.due_at, ticket.due_kind, ticket.sla_check_at = None, "", None
        return
    due, kind = found[0]
    if (due, kind) == (ticket.due_at, ticket.due_kind) and ticket.sla_check_at is not None:
        return
    ticket.due_at, ticket.due_kind, ticket.sla_check_at = due, kind, _first_check(due, policy)


def start(ticket: AfterSalesRequest) -> None:
    """On intake: the new request's deadlines (called inside the intake transaction)."""
    set_deadlines(ticket, missed=set())
    ticket.save(update_fields=["due_at", "due_kind", "sla_check_at"])


def note_action(ticket: AfterSalesRequest, performer: oplog.Performer, state_before: str) -> None:
    """Inside ``perform``, before it saves: a person's first successful action is the first human response
    (首次人工处理); that or a state change re-decides which deadlines still apply."""
    person = performer.is_person and ticket.first_human_response_at is None
    if person:
        ticket.first_human_response_at = timezone.now()
    if person or ticket.state != state_before:
        set_deadlines(ticket)


# --- the sweep -----------------------------------------------------------------------------------------------
def _due(now: dt.datetime) -> QuerySet[AfterSalesRequest]:
    # Exactly the partial index request_sla_check: an idle sweep is one index probe.
    return AfterSalesRequest.objects.unscoped().filter(sla_check_at__lte=now)


def sweep(batch: int = 500) -> int:
    """Warn about close deadlines and handle missed ones — each once, even with sweeps racing.

    Rows are claimed ``FOR UPDATE SKIP LOCKED`` (never waiting for a person or another sweep); each request is
    handled in its own savepoint, so a failure in one rolls back only its own effects: it stays due and is
    retried by the next sweep, and the others commit. Stores are locked in id order, so concurrent sweeps never
    deadlock on the score. Returns the number of requests looked at.
    """
    handled, failed = 0, set()
    policies: dict[int, MarketPolicy | None] = {}
    while True:
        now = timezone.now()
        due = _due(now).exclude(pk__in=failed) if failed else _due(now)
        if not due.exists():  # the idle path: one query, no transaction
            return handled
        with transaction.atomic():
            claimed = list(due.select_related("store__market").order_by("sla_check_at", "pk")
                           .select_for_update(skip_locked=True, of=("self",))[:batch])
            for ticket in sorted(claimed, key=lambda t: (t.store_id, t.pk)):
                try:
                    with transaction.atomic():
                        check(ticket, now, policy_for(ticket.store.market_id, policies))
                except Exception:  # one bad request must not stop the others; it stays due
                    log.exception("SLA sweep: request %s (return %s) failed; retried on the next sweep",
                                  ticket.public_id, ticket.return_id)
                    failed.add(ticket.pk)
        handled += len(claimed)
        if len(claimed) < batch:
            return handled


def check(ticket: AfterSalesRequest, now: dt.datetime, policy: MarketPolicy | None) -> None:
    """One locked request: miss every deadline that has passed, warn about the next, reschedule."""
    missed = _breached_kinds(ticket)
    while True:
        found = deadlines(ticket, policy, exclude=missed)
        if not found or found[0][0] > now:
            break
        due, kind = found[0]
        breach(ticket, kind, due, now, policy)
        missed.add(kind)
    if not found:
        ticket.due_at, ticket.due_kind, ticket.sla_check_at = None, "", None
    else:
        due, kind = found[0]
        ticket.due_at, ticket.due_kind = due, kind
        _warn(ticket, kind, due, now, policy)
        ticket.sla_check_at = _next_check(due, policy, now)
    ticket.save(update_fields=[*SLA_FIELDS, "updated_at"])


def _warn(ticket: AfterSalesRequest, kind: str, due: dt.datetime, now: dt.datetime,
          policy: MarketPolicy | None) -> None:
    """Raise the most urgent warning whose time has come (once per deadline kind and offset)."""
    from aftersales.services import raise_alert

    passed = [m for m in _offsets(policy) if due - dt.timedelta(minutes=m) <= now]
    if passed:
        minutes = min(passed)
        raise_alert(ticket, "breach_soon", key=f"{kind}:{minutes}",
                    message=str(WARNING_MESSAGE % {"kind": SlaKind(kind).label, "minutes": minutes}))


@dataclass(frozen=True)
class Traffic:
    score: Decimal
    down_weighted: bool
    exposure_loss_pct: Decimal


def traffic(score: Decimal, policy: MarketPolicy | None) -> Traffic:
    """流量降权: below the floor, ≈ exposure_loss_per_tenth % of natural exposure per 0.1 points."""
    floor = policy.score_floor_for_traffic if policy else Decimal("4.80")
    per_tenth = policy.exposure_loss_per_tenth if policy else Decimal("3.20")
    if score >= floor:
        return Traffic(score, False, Decimal("0.0"))
    return Traffic(score, True, ((floor - score) / Decimal("0.1") * per_tenth).quantize(Decimal("0.1")))


def breach(ticket: AfterSalesRequest, kind: str, due: dt.datetime, now: dt.datetime,
           policy: MarketPolicy | None) -> SlaBreach:
    """Record one missed deadline with all its effects (the caller's transaction holds them together)."""
    from aftersales.services import raise_alert

    # Serialises budget and score; no-key, so inserts that merely reference the store are not blocked.
    store = Store.objects.unscoped().select_for_update(no_key=True).get(pk=ticket.store_id)
    row = SlaBreach.objects.create(agency_id=ticket.agency_id, store_id=ticket.store_id, ticket=ticket, kind=kind,
                                   due_at=due, created_at=now)
    compensation = _compensate(ticket, row, store, policy, now) if kind in COMPENSATING_KINDS else None
    penalty = policy.score_penalty if policy else Decimal("0.50")
    total = ServiceScoreEntry.objects.for_agency(ticket.agency_id).filter(store=store).aggregate(
        total=Sum("delta"))["total"] or Decimal("0")
    score = min(MAX_SCORE, max(Decimal("0"), MAX_SCORE + total - penalty))
    ServiceScoreEntry.objects.create(agency_id=ticket.agency_id, store=store, breach=row, delta=-penalty,
                                     score_after=score, created_at=now)
    Store.objects.unscoped().filter(pk=store.pk).update(service_score=score)
    weight = traffic(score, policy)
    if ticket.breached_at is None:
        ticket.breached_at = now
    label = SlaKind(kind).label
    payload = {"kind": kind, "due_at": due.isoformat(), "score_after": str(score),
               "down_weighted": weight.down_weighted, "exposure_loss_pct": str(weight.exposure_loss_pct),
               "compensation": None if compensation is None else {
                   "amount": str(compensation.amount), "currency": compensation.currency,
                   "status": compensation.status}}
    rows = [(ticket, {"performer": oplog.SYSTEM, "action": "sla_breach", "before": ticket.state,
                      "after": ticket.state, "error_code": ERR_SLA_BREACHED,
                      "message": str(BREACH_MESSAGE % {"kind": label}), "payload": payload})]
    if compensation is not None:
        capped = compensation.status == Compensation.Status.CAPPED
        rows.append((ticket, {"performer": oplog.SYSTEM, "action": "sla_compensation", "before": ticket.state,
                              "after": ticket.state, "error_code": compensation.error_code,
                              "message": str(CAPPED_MESSAGE) if capped else "",
                              "payload": {"amount": str(compensation.amount), "currency": compensation.currency,
                                          "status": compensation.status, "kind": kind}}))
    oplog.record_many(rows)
    raise_alert(ticket, "breached", key=kind, error_code=ERR_SLA_BREACHED,
                message=str(BREACH_MESSAGE % {"kind": label}))
    log.warning("SLA: request %s (return %s) missed its %s deadline (%s); store %s score now %s",
                ticket.public_id, ticket.return_id, kind, due.isoformat(), store.pk, score)
    return row


def month_start(now: dt.datetime, time_zone: str) -> dt.datetime:
    """The calendar month's first instant in the market's time zone (the budget's period)."""
    local = now.astimezone(ZoneInfo(time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _compensate(ticket: AfterSalesRequest, row: SlaBreach, store: Store, policy: MarketPolicy | None,
                now: dt.datetime) -> Compensation | None:
    """自动赔付 once per breach; granted within the store's monthly budget, else recorded as capped."""
    amount = policy.compensation_amount if policy else Decimal("0")
    if amount <= 0:
        return None
    spent = Compensation.objects.for_agency(ticket.agency_id).filter(
        store=store, status=Compensation.Status.GRANTED,
        created_at__gte=month_start(now, ticket.store.market.time_zone)).aggregate(total=Sum("amount"))["total"]
    over = (spent or Decimal("0")) + amount > policy.compensation_monthly_budget
    return Compensation.objects.create(
        agency_id=ticket.agency_id, store=store, ticket=ticket, breach=row, amount=amount,
        currency=ticket.store.market.currency,
        status=Compensation.Status.CAPPED if over else Compensation.Status.GRANTED,
        error_code=ERR_SLA_CAPPED if over else "", created_at=now)


# --- selectors -------------------------------------------------------------------------------------------------
def filter_breached(qs: QuerySet[AfterSalesRequest], breached: bool = True) -> QuerySet[AfterSalesRequest]:
    """The API's and portal's ``breached`` filter: requests that missed a deadline (or not)."""
    return qs.filter(breached_at__isnull=not breached)


def filter_due_within(qs: QuerySet[AfterSalesRequest], delta: dt.timedelta,
                      now: dt.datetime | None = None) -> QuerySet[AfterSalesRequest]:
    """Watched requests whose next deadline falls within ``delta`` (on the request_sla_due index)."""
    return qs.filter(due_at__isnull=False, due_at__lte=(now or timezone.now()) + delta)


def time_left(ticket: AfterSalesRequest, now: dt.datetime | None = None) -> dt.timedelta | None:
    """Time until the watched deadline (negative once passed); None when nothing is watched."""
    if ticket.due_at is None:
        return None
    return ticket.due_at - (now or timezone.now())


def store_traffic(store: Store) -> Traffic:
    """The store's service score and whether it is down-weighted, with the estimated exposure loss."""
    return traffic(store.service_score, policy_for(store.market_id))


def filter_down_weighted(qs: QuerySet[Store]) -> QuerySet[Store]:
    """Stores whose score is below their market's down-weighting threshold."""
    return qs.filter(service_score__lt=F("market__policy__score_floor_for_traffic"))


# --- demo ----------------------------------------------------------------------------------------------------------
def seed_sla_demo(agency_id: int, *, overdue: int = 2, soon: int = 2, seed: str = "2026") -> dict[str, int]:
    """Make a fresh demo show the sweep at work within a minute or two.

    Demo requests are created up to 45 days back; the platform would have auto-approved any still awaiting
    review long ago, so open requests whose deadlines have passed get a recent creation time instead (nothing
    breaches by accident). Then, per store, ``overdue`` requests awaiting review are put past their earliest
    deadline and ``soon`` are made due within a few minutes (their warnings fire first).
    """
    from stores.models import Agency

    # Keyed by the slug (not the id), so a given demo agency always gets the same picks.
    rng = random.Random(f"{seed}:{Agency.objects.get(pk=agency_id).slug}")  # noqa: S311 - demo data, not secrets
    now = timezone.now()
    counts = {"overdue": 0, "soon": 0, "refreshed": 0}
    policies: dict[int, MarketPolicy | None] = {}
    with transaction.atomic():
        tickets = list(AfterSalesRequest.objects.for_agency(agency_id).filter(due_at__isnull=False)
                       .select_related("store__market").select_for_update(of=("self",)).order_by("store_id", "pk"))
        picked: dict[int, int] = {}
        for ticket in tickets:
            policy = policy_for(ticket.store.market_id, policies)
            n = picked.get(ticket.store_id, 0)
            if ticket.state == State.PENDING_REVIEW and n < overdue + soon:
                picked[ticket.store_id] = n + 1
                _demo_deadline(ticket, policy, now, rng, past=n < overdue)
                counts["overdue" if n < overdue else "soon"] += 1
            elif ticket.due_at <= now + dt.timedelta(minutes=30):
                _demo_recent(ticket, policy, now, rng)
                counts["refreshed"] += 1
            else:
                continue
            ticket.sla_check_at = None  # force a fresh schedule
            set_deadlines(ticket, policy, missed=set())
            ticket.save(update_fields=["platform_created_at", "platform_deadline", *SLA_FIELDS])
    return counts


def _demo_recent(ticket: AfterSalesRequest, policy: MarketPolicy | None, now: dt.datetime,
                 rng: random.Random) -> None:
    created = now - dt.timedelta(hours=rng.uniform(1, 18))
    ticket.platform_created_at = created
    if ticket.platform_deadline is not None:
        ticket.platform_deadline = created + dt.timedelta(hours=48)


def _demo_deadline(ticket: AfterSalesRequest, policy: MarketPolicy | None, now: dt.datetime,
                   rng: random.Random, *, past: bool) -> None:
    """Put the request's earliest deadline a little in the past (or a few minutes ahead)."""
    target = now + (dt.timedelta(minutes=-rng.randint(5, 90)) if past else dt.timedelta(minutes=rng.randint(3, 8)))
    hours = (policy.first_response_hours if policy else None) or (
        policy.replacement_response_hours if policy and ticket.type == RequestType.EXCHANGE
        else policy.auto_approve_hours if policy else 48)
    ticket.platform_created_at = target - dt.timedelta(hours=hours)
    ticket.platform_deadline = None if ticket.platform_deadline is None else target + dt.timedelta(hours=24)
