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

import contextlib
import datetime as dt
import logging
import random
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache as memo
from zoneinfo import ZoneInfo

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from aftersales import oplog
from aftersales.models import AfterSalesRequest, Alert, Compensation, ServiceScoreEntry, SlaBreach, SlaKind
from aftersales.states import FINAL_STATES, RequestType, State
from stores import bulk, errors
from stores.bulk import insert_rows
from stores.calendars import CalendarError
from stores.models import MarketPolicy, Store

log = logging.getLogger(__name__)

ERR_SLA_BREACHED = errors.ERR_SLA_001.code
ERR_SLA_CAPPED = errors.ERR_SLA_002.code
MAX_SCORE = Decimal("5.00")
# The down-weighting floor for a market without a policy row (MarketPolicy.score_floor_for_traffic).
DEFAULT_SCORE_FLOOR = Decimal("4.80")
# Which missed deadlines owe the buyer automatic compensation (Seller Policy v3.2 §7.1: the first human response).
COMPENSATING_KINDS = frozenset({SlaKind.FIRST_RESPONSE})
# Ties are broken by this order, so the deadline that compensates is the one named.
KIND_ORDER = [SlaKind.FIRST_RESPONSE, SlaKind.PLATFORM, SlaKind.REPLACEMENT_RESPONSE, SlaKind.AUTO_APPROVE]
SLA_FIELDS = ["due_at", "due_kind", "sla_check_at", "first_human_response_at", "breached_at"]
# What the sweep reads of a claimed request (not the platform payload: a batch is 500 of them).
CLAIM_FIELDS = ["public_id", "agency_id", "store_id", "type", "state", "return_id", "order_id", "platform_deadline",
                "platform_created_at", "created_at", "updated_at", *SLA_FIELDS]

BREACH_MESSAGE = _("Deadline missed: %(kind)s.")
CAPPED_MESSAGE = _("Automatic compensation not granted: the store's monthly compensation budget is used up.")
WARNING_MESSAGE = _("%(kind)s due in %(minutes)d minutes.")


@memo
def _label_in(kind: str, language: str) -> str:
    return str(SlaKind(kind).label)


def _label(kind: str) -> str:
    """A deadline kind's name in the active language (looked up once per kind and language, not per row)."""
    return _label_in(kind, translation.get_language() or "")


def _capped_message() -> str:
    return str(CAPPED_MESSAGE)


# --- deadlines ---------------------------------------------------------------------------------------------
# Set by ``policies_cached`` for one batch of actions (services.bulk): each market's policy is read once.
_batch_policies: ContextVar[dict[int, MarketPolicy | None] | None] = ContextVar("sla_batch_policies", default=None)


@contextlib.contextmanager
def policies_cached():
    """Within the block, ``policy_for`` reads each market's policy once (a batch of 1,000 approvals spared
    1,000 lookups of rows that do not change during it)."""
    token = _batch_policies.set({}) if _batch_policies.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _batch_policies.reset(token)


def policy_for(market_id: int, cache: dict[int, MarketPolicy | None] | None = None) -> MarketPolicy | None:
    if cache is None:
        cache = _batch_policies.get()
    if cache is not None and market_id in cache:
        return cache[market_id]
    # The calendar comes along: counting business hours then costs no query per request.
    policy = MarketPolicy.objects.select_related("market__business_calendar").filter(market_id=market_id).first()
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
            found.append((_after(policy, start, policy.first_response_hours, SlaKind.FIRST_RESPONSE),
                          SlaKind.FIRST_RESPONSE))
        if ticket.state == State.PENDING_REVIEW:
            if ticket.type == RequestType.EXCHANGE:
                found.append((_after(policy, start, policy.replacement_response_hours, SlaKind.REPLACEMENT_RESPONSE),
                              SlaKind.REPLACEMENT_RESPONSE))
            else:
                found.append((_after(policy, start, policy.auto_approve_hours, SlaKind.AUTO_APPROVE),
                              SlaKind.AUTO_APPROVE))
    if ticket.platform_deadline is not None and ticket.state == State.PENDING_REVIEW:
        found.append((ticket.platform_deadline, SlaKind.PLATFORM))
    found = [(at, kind) for at, kind in found if kind not in exclude]
    return sorted(found, key=lambda d: (d[0], KIND_ORDER.index(d[1])))


def _after(policy: MarketPolicy, start: dt.datetime, hours: float, kind: str) -> dt.datetime:
    """The deadline ``hours`` after ``start``: in the market's business hours where its policy says so.

    A calendar that cannot place the deadline (ERR_SLA_004: no working time within three years) must not
    leave a request unwatched or fail its intake: the wall clock is used, and the fault is logged loudly."""
    try:
        return policy.deadline_after(start, hours, kind)
    except CalendarError:
        log.exception("SLA: the business calendar of market %s cannot place a %s deadline; using wall-clock hours",
                      policy.market_id, kind)
        return start + dt.timedelta(hours=hours)


def _offsets(policy: MarketPolicy | None) -> list[int]:
    return sorted({int(m) for m in (policy.warning_offsets_minutes if policy else []) if m and m > 0}, reverse=True)


def _next_check(due: dt.datetime, policy: MarketPolicy | None, now: dt.datetime) -> dt.datetime:
    """The next warning still ahead, else the deadline itself."""
    ahead = [due - dt.timedelta(minutes=m) for m in _offsets(policy) if due - dt.timedelta(minutes=m) > now]
    return min([*ahead, due])


def _first_check(due: dt.datetime, policy: MarketPolicy | None) -> dt.datetime:
    """For a new deadline: the earliest warning even when it has passed, so the sweep raises the one due now."""
    return min([due - dt.timedelta(minutes=m) for m in _offsets(policy)] + [due])


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


def note_action(ticket: AfterSalesRequest, performer: oplog.Performer, state_before: str, *,
                missed: set[str] | None = None) -> None:
    """Inside ``perform``, before it saves: a person's first successful action is the first human response
    (首次人工处理); that or a state change re-decides which deadlines still apply. ``missed``: the kinds already
    breached, when the caller read them for a whole batch (``breached_kinds_of``)."""
    person = performer.is_person and ticket.first_human_response_at is None
    if person:
        ticket.first_human_response_at = timezone.now()
    if person or ticket.state != state_before:
        set_deadlines(ticket, missed=missed)


# --- the sweep -----------------------------------------------------------------------------------------------
def _due(now: dt.datetime) -> QuerySet[AfterSalesRequest]:
    # Exactly the partial index request_sla_check: an idle sweep is one index probe.
    return AfterSalesRequest.objects.unscoped().filter(sla_check_at__lte=now)


def sweep(batch: int = 500) -> int:
    """Warn about close deadlines and handle missed ones — each once, even with sweeps racing.

    Rows are claimed ``FOR UPDATE SKIP LOCKED`` (never waiting for a person or another sweep) and a batch is
    handled with a fixed number of set-based statements whatever its size (see ``apply``), in a savepoint. If
    the batch fails, it is redone one request per savepoint, so a bad request rolls back only its own effects:
    it stays due and is retried by the next sweep, and the others commit. Stores are locked in id order, so
    concurrent sweeps never deadlock on the score. Returns the number of requests looked at.
    """
    handled, failed = 0, set()
    cache = Cache()
    while True:
        now = timezone.now()
        due = _due(now).exclude(pk__in=failed) if failed else _due(now)
        # The idle path: one probe of the partial index, no transaction. Ordered on the indexed column, so
        # the planner walks the index even when stale statistics say many rows are due.
        if not due.order_by("sla_check_at").values_list("pk", flat=True)[:1]:
            return handled
        with transaction.atomic():
            claimed = list(due.only(*CLAIM_FIELDS).order_by("sla_check_at", "pk")
                           .select_for_update(skip_locked=True)[:batch])
            try:
                with transaction.atomic():
                    apply(claimed, now, cache)
            except SoftTimeLimitExceeded:  # the task's time is up: roll this batch back, the next sweep goes on
                raise
            except Exception:
                log.warning("SLA sweep: a batch of %d failed; redoing it one request at a time", len(claimed),
                            exc_info=True)
                for ticket in claimed:
                    try:
                        with transaction.atomic():
                            apply([_reloaded(ticket)], now, cache)
                    except SoftTimeLimitExceeded:
                        raise
                    except Exception:  # one bad request must not stop the others; it stays due
                        log.exception("SLA sweep: request %s (return %s) failed; retried on the next sweep",
                                      ticket.public_id, ticket.return_id)
                        failed.add(ticket.pk)
        handled += len(claimed)
        if len(claimed) < batch:
            return handled


def _reloaded(ticket: AfterSalesRequest) -> AfterSalesRequest:
    """A failed batch may have changed the instances in memory before rolling back: start from the row."""
    return AfterSalesRequest.objects.unscoped().only(*CLAIM_FIELDS).get(pk=ticket.pk)


@dataclass(frozen=True)
class MarketInfo:
    id: int
    time_zone: str
    currency: str


@dataclass
class Cache:
    """What a sweep looks up once: each market's policy and each store's market (neither changes mid-sweep)."""

    policies: dict[int, MarketPolicy | None] = field(default_factory=dict)
    markets: dict[int, MarketInfo] = field(default_factory=dict)

    def market_of(self, store_ids: set[int]) -> dict[int, MarketInfo]:
        missing = store_ids - self.markets.keys()
        if missing:
            for pk, market_id, tz, currency in Store.objects.unscoped().filter(pk__in=missing).values_list(
                    "pk", "market_id", "market__time_zone", "market__currency"):
                self.markets[pk] = MarketInfo(market_id, tz, currency)
        return self.markets


@dataclass
class Plan:
    """What one claimed request needs: the deadlines it has now missed, in order, and a warning to raise."""

    ticket: AfterSalesRequest
    policy: MarketPolicy | None
    market: MarketInfo
    missed: list[tuple[str, dt.datetime]]
    warning: tuple[str, int] | None


def plan(ticket: AfterSalesRequest, now: dt.datetime, policy: MarketPolicy | None, market: MarketInfo,
         already: set[str]) -> Plan:
    """Decide, in memory, which deadlines have passed, which warning is due and the next check time."""
    missed: list[tuple[str, dt.datetime]] = []
    exclude = set(already)
    while True:
        found = deadlines(ticket, policy, exclude=exclude)
        if not found or found[0][0] > now:
            break
        due, kind = found[0]
        missed.append((kind, due))
        exclude.add(kind)
    warning = None
    if not found:
        ticket.due_at, ticket.due_kind, ticket.sla_check_at = None, "", None
    else:
        due, kind = found[0]
        ticket.due_at, ticket.due_kind = due, kind
        passed = [m for m in _offsets(policy) if due - dt.timedelta(minutes=m) <= now]
        if passed:  # the most urgent warning whose time has come (once per kind and offset)
            warning = (kind, min(passed))
        ticket.sla_check_at = _next_check(due, policy, now)
    if missed and ticket.breached_at is None:
        ticket.breached_at = now
    ticket.updated_at = now
    return Plan(ticket, policy, market, missed, warning)


def apply(tickets: list[AfterSalesRequest], now: dt.datetime, cache: Cache) -> None:
    """Check locked requests and write every effect set-based: one query per table, whatever the batch size.

    Per batch: the kinds already missed (1), and only when something is missed: the stores locked in id order
    (1), their ledger sums and this month's granted compensation (2), then the breaches, compensations, score
    entries, the stores' scores, the log rows and the alerts (one statement each), and the requests (1).
    """
    if not tickets:
        return
    already = breached_kinds_of([t for t in tickets if t.breached_at is not None])
    markets = cache.market_of({t.store_id for t in tickets})
    plans = [plan(t, now, policy_for(markets[t.store_id].id, cache.policies), markets[t.store_id],
                  already.get(t.pk, set())) for t in tickets]
    missed = [(p, kind, due) for p in sorted(plans, key=lambda p: (p.ticket.store_id, p.ticket.pk))
              for kind, due in p.missed]
    alerts: list[tuple[AfterSalesRequest, str, str, str, str]] = []
    log_rows: list[tuple[AfterSalesRequest, dict]] = []
    if missed:
        _record_breaches(missed, now, alerts, log_rows)
    warning_text = str(WARNING_MESSAGE)
    for p in plans:
        if p.warning is not None:
            kind, minutes = p.warning
            alerts.append((p.ticket, "breach_soon", f"{kind}:{minutes}", "",
                           warning_text % {"kind": _label(kind), "minutes": minutes}))
    oplog.record_many(log_rows)
    raised = _insert_alerts(alerts, now)
    _save_schedule([p.ticket for p in plans])
    if raised:
        from aftersales.tasks import notify_alerts

        notify_alerts.delay_on_commit(raised)


def breached_kinds_of(tickets: list[AfterSalesRequest]) -> dict[int, set[str]]:
    if not tickets:  # nothing missed yet in this batch: spare the query
        return {}
    found: dict[int, set[str]] = {}
    for ticket_id, kind in SlaBreach.objects.unscoped().filter(
            ticket_id__in=[t.pk for t in tickets]).values_list("ticket_id", "kind"):
        found.setdefault(ticket_id, set()).add(kind)
    return found


def _breached_kinds(ticket: AfterSalesRequest) -> set[str]:
    return breached_kinds_of([ticket] if ticket.breached_at is not None else []).get(ticket.pk, set())


def _record_breaches(missed: list[tuple[Plan, str, dt.datetime]], now: dt.datetime,
                     alerts: list, log_rows: list) -> None:
    """Breaches with their compensation, score deduction, log rows and alerts, in (store, request) order."""
    store_ids = sorted({p.ticket.store_id for p, _kind, _due in missed})
    # Serialises budget and score; no-key, so inserts that merely reference the store are not blocked.
    list(Store.objects.unscoped().select_for_update(no_key=True).filter(pk__in=store_ids).order_by("pk")
         .values_list("pk", flat=True))
    totals = dict(ServiceScoreEntry.objects.unscoped().filter(store_id__in=store_ids).values("store_id")
                  .annotate(total=Sum("delta")).values_list("store_id", "total"))
    spent = _granted_this_month(missed, now)
    # Rows as dicts (keyed by attribute name), not model instances: a batch writes thousands of them.
    breaches = [{"agency_id": p.ticket.agency_id, "store_id": p.ticket.store_id, "ticket_id": p.ticket.pk,
                 "kind": kind, "due_at": due, "created_at": now} for p, kind, due in missed]
    ids = {(ticket_id, kind): pk for pk, ticket_id, kind in
           insert_rows(SlaBreach, breaches, returning=("id", "ticket", "kind"))}
    for row in breaches:
        row["id"] = ids[(row["ticket_id"], row["kind"])]
    compensations = compensations_for([(p, row) for (p, kind, _due), row in zip(missed, breaches, strict=True)
                                       if kind in COMPENSATING_KINDS], spent, now)
    insert_rows(Compensation, [c for c in compensations.values() if c is not None])
    entries, scores = [], {}
    breach_text = str(BREACH_MESSAGE)  # translated once per batch, not once per breach (a lazy string's % is)
    for (p, kind, due), row in zip(missed, breaches, strict=True):
        ticket, policy = p.ticket, p.policy
        penalty = policy.score_penalty if policy else Decimal("0.50")
        totals[ticket.store_id] = (totals.get(ticket.store_id) or Decimal("0")) - penalty
        score = min(MAX_SCORE, max(Decimal("0"), MAX_SCORE + totals[ticket.store_id]))
        scores[ticket.store_id] = score
        entries.append({"agency_id": ticket.agency_id, "store_id": ticket.store_id, "breach_id": row["id"],
                        "delta": -penalty, "score_after": score, "created_at": now})
        message = breach_text % {"kind": _label(kind)}
        weight = traffic(score, policy)
        compensation = compensations.get(row["id"])
        log_rows.append((ticket, {
            "performer": oplog.SYSTEM, "action": "sla_breach", "before": ticket.state, "after": ticket.state,
            "error_code": ERR_SLA_BREACHED, "message": message,
            "payload": {"kind": kind, "due_at": due.isoformat(), "score_after": str(score),
                        "down_weighted": weight.down_weighted, "exposure_loss_pct": str(weight.exposure_loss_pct),
                        "compensation": None if compensation is None else {
                            "amount": str(compensation["amount"]), "currency": compensation["currency"],
                            "status": compensation["status"]}}}))
        if compensation is not None:
            capped = compensation["status"] == Compensation.Status.CAPPED
            log_rows.append((ticket, {
                "performer": oplog.SYSTEM, "action": "sla_compensation", "before": ticket.state,
                "after": ticket.state, "error_code": compensation["error_code"],
                "message": _capped_message() if capped else "",
                "payload": {"amount": str(compensation["amount"]), "currency": compensation["currency"],
                            "status": compensation["status"], "kind": kind}}))
        alerts.append((ticket, "breached", kind, ERR_SLA_BREACHED, message))
    insert_rows(ServiceScoreEntry, entries)
    bulk.execute(f"""UPDATE {Store._meta.db_table} AS s SET service_score = v.score
                     FROM unnest(%b::bigint[], %b::numeric[]) AS v(id, score) WHERE s.id = v.id""",  # noqa: S608
                 [list(scores), list(scores.values())])
    log.warning("SLA: %d deadline(s) missed over %d store(s); scores now %s", len(missed), len(scores),
                ", ".join(f"store {pk}: {score}" for pk, score in sorted(scores.items())[:20]))


def _granted_this_month(missed: list[tuple[Plan, str, dt.datetime]], now: dt.datetime) -> dict[int, Decimal]:
    """Each store's granted compensation since its market's month began (one grouped query)."""
    by_start: dict[dt.datetime, set[int]] = {}
    for p, kind, _due in missed:
        if kind in COMPENSATING_KINDS:
            by_start.setdefault(month_start(now, p.market.time_zone), set()).add(p.ticket.store_id)
    if not by_start:
        return {}
    window = Q()
    for since, stores in by_start.items():
        window |= Q(store_id__in=sorted(stores), created_at__gte=since)
    return dict(Compensation.objects.unscoped().filter(window, status=Compensation.Status.GRANTED)
                .values("store_id").annotate(total=Sum("amount")).values_list("store_id", "total"))


def compensations_for(owed: list[tuple[Plan, dict]], spent: dict[int, Decimal],
                      now: dt.datetime) -> dict[int, dict | None]:
    """自动赔付 once per breach (rows keyed by breach id); granted within the store's monthly budget, else capped."""
    made: dict[int, dict | None] = {}
    for p, row in owed:
        ticket, policy = p.ticket, p.policy
        amount = policy.compensation_amount if policy else Decimal("0")
        if amount <= 0:
            made[row["id"]] = None
            continue
        used = spent.get(ticket.store_id) or Decimal("0")
        over = used + amount > policy.compensation_monthly_budget
        if not over:
            spent[ticket.store_id] = used + amount
        made[row["id"]] = {
            "agency_id": ticket.agency_id, "store_id": ticket.store_id, "ticket_id": ticket.pk,
            "breach_id": row["id"], "amount": amount, "currency": p.market.currency,
            "status": Compensation.Status.CAPPED if over else Compensation.Status.GRANTED,
            "error_code": ERR_SLA_CAPPED if over else "", "created_at": now}
    return made


def _insert_alerts(alerts: list[tuple[AfterSalesRequest, str, str, str, str]], now: dt.datetime) -> list[int]:
    """Raise each alert once per (request, kind, key) in one statement; returns the ids of the new ones."""
    if not alerts:
        return []
    rows = bulk.execute(
        f"""INSERT INTO {Alert._meta.db_table} (public_id, agency_id, ticket_id, kind, key, error_code, message,
                                                 created_at)
            SELECT gen_random_uuid(), a, t, k, y, e, m, %b
            FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[])
                 AS v(a, t, k, y, e, m)
            ON CONFLICT ON CONSTRAINT alert_once DO NOTHING RETURNING id""",  # noqa: S608 - table name only
        [now, [t.agency_id for t, *_ in alerts], [t.pk for t, *_ in alerts], [a[1] for a in alerts],
         [a[2][:100] for a in alerts], [a[3] for a in alerts], [a[4][:500] for a in alerts]], fetch=True)
    return [row[0] for row in rows]


def _save_schedule(tickets: list[AfterSalesRequest]) -> None:
    """The requests' new watch (due, kind, next check, breached) in one UPDATE … FROM unnest."""
    bulk.execute(
        f"""UPDATE {AfterSalesRequest._meta.db_table} AS r
            SET due_at = v.due_at, due_kind = v.due_kind, sla_check_at = v.check_at, breached_at = v.breached_at,
                updated_at = v.updated_at
            FROM unnest(%b::bigint[], %b::timestamptz[], %b::text[], %b::timestamptz[], %b::timestamptz[],
                        %b::timestamptz[]) AS v(id, due_at, due_kind, check_at, breached_at, updated_at)
            WHERE r.id = v.id""",  # noqa: S608 - table name only
        [[t.pk for t in tickets], [t.due_at for t in tickets], [t.due_kind for t in tickets],
         [t.sla_check_at for t in tickets], [t.breached_at for t in tickets], [t.updated_at for t in tickets]])


@dataclass(frozen=True)
class Traffic:
    score: Decimal
    down_weighted: bool
    exposure_loss_pct: Decimal


def traffic(score: Decimal, policy: MarketPolicy | None) -> Traffic:
    """流量降权: below the floor, ≈ exposure_loss_per_tenth % of natural exposure per 0.1 points."""
    floor = policy.score_floor_for_traffic if policy else DEFAULT_SCORE_FLOOR
    per_tenth = policy.exposure_loss_per_tenth if policy else Decimal("3.20")
    if score >= floor:
        return Traffic(score, False, Decimal("0.0"))
    return Traffic(score, True, ((floor - score) / Decimal("0.1") * per_tenth).quantize(Decimal("0.1")))


def month_start(now: dt.datetime, time_zone: str) -> dt.datetime:
    """The calendar month's first instant in the market's time zone (the budget's period)."""
    local = now.astimezone(ZoneInfo(time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# --- selectors -------------------------------------------------------------------------------------------------
def filter_breached(qs: QuerySet[AfterSalesRequest], breached: bool = True) -> QuerySet[AfterSalesRequest]:
    """The API's and portal's ``breached`` filter: requests that missed a deadline (or not)."""
    return qs.filter(breached_at__isnull=not breached)


def filter_due_within(qs: QuerySet[AfterSalesRequest], delta: dt.timedelta,
                      now: dt.datetime | None = None) -> QuerySet[AfterSalesRequest]:
    """Watched requests whose next deadline falls within ``delta`` (on request_queue_due)."""
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
