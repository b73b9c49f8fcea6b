"""The additive figures behind 售后分析, computed live or kept as rollups by a beat task (docs/ANALYTICS.md).

``FIGURES_SQL`` is the one place the figures are computed. The refresh runs it per store for both windows and
writes the rows as an immutable rollup (``INSERT … SELECT``: nothing travels through Python); the dashboard runs
it summed over the stores a rollup does not cover, for one window. So a rollup and a live computation can never
disagree. Every figure is additive over stores (a request, breach or ledger entry belongs to one store), so any
set of stores is a grouped SUM over its rows; texts combine by MAX (the database collation is C, Python's order).

A figure row is ``(days, store, kind, key, key2, day, count, units, amount, text)``:

- requests, proactive, intervened, in_time, due: ``count``; finished: ``count`` and the summed handling seconds
  in ``amount``;
- reason (key): requests, greatest text; category (key): requests and units asked back; product (key):
  requests; pair (product, reason): requests, greatest reason text;
- volume (category): orders in ``count``, units sold in ``units``;
- breach (SLA kind): count; compensation (currency, status): count and amount;
- score_start: stores counted and the sum of the scores they start the window from; score (day): the sum of
  the stores' changes that market-local day — a store's score on a day is its start plus its changes so far.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, OuterRef, Subquery, Sum
from django.utils import timezone

from aftersales.models import (
    AfterSalesRequest,
    AnalyticsFigure,
    AnalyticsRollup,
    Compensation,
    LineItem,
    OrderVolume,
    ServiceScoreEntry,
    SlaBreach,
)
from aftersales.sla import MAX_SCORE
from aftersales.states import FINAL_STATES
from stores.models import Agency, Market, Store

WINDOWS = (7, 30)
COMPLETION_HOURS = 72
DEFAULT_MAX_AGE_SECONDS = 900
# Rollups kept per agency: the newest and the one before it, which a dashboard may have pinned while the
# newest was committed (a read takes milliseconds, a refresh comes every few minutes).
KEEP_ROLLUPS = 2
REFRESH_WORK_MEM = "256MB"
# The pair rows are read on their own, for the reason × product table's few columns only.
READ_KINDS = ("requests", "proactive", "intervened", "finished", "in_time", "due", "reason", "category", "product",
              "volume", "breach", "compensation", "score_start", "score")


def _tables() -> dict[str, str]:
    quote = connection.ops.quote_name
    models = {"request": AfterSalesRequest, "item": LineItem, "store": Store, "market": Market,
              "score": ServiceScoreEntry, "volume": OrderVolume, "breach": SlaBreach, "compensation": Compensation,
              "figure": AnalyticsFigure}
    return {name: quote(model._meta.db_table) for name, model in models.items()}


# One statement: the window's requests are read once (``t``) for both windows, their line items once (one pass,
# three grouping sets). ``sid`` is the store when figures are kept per store, NULL when summed over the stores.
FIGURES_SQL = """
WITH w AS (
    SELECT * FROM unnest(%(days)s::int[], %(since)s::timestamptz[], %(since_day)s::date[]) AS w(days, since, since_day)
),
t AS MATERIALIZED (
    SELECT w.days, r.id, CASE WHEN %(per_store)s THEN r.store_id END AS sid, r.reason_key, r.reason_text,
           r.refunded_amount > 0 AND r.arbitration_status = '' AS proactive,
           r.arbitration_status <> '' AS intervened,
           r.state = ANY(%(final)s::text[]) AS finished,
           r.state_changed_at - COALESCE(r.platform_created_at, r.created_at) AS handling,
           r.state_changed_at <= COALESCE(r.platform_created_at, r.created_at) + %(completion)s AS quick,
           COALESCE(r.platform_created_at, r.created_at) <= %(now)s - %(completion)s AS had_time
    FROM {request} r JOIN w ON COALESCE(r.platform_created_at, r.created_at) >= w.since
    WHERE r.agency_id = %(agency)s AND r.store_id = ANY(%(stores)s::bigint[])
),
totals AS (
    SELECT days, sid, count(*) AS requests, count(*) FILTER (WHERE proactive) AS proactive,
           count(*) FILTER (WHERE intervened) AS intervened, count(*) FILTER (WHERE finished) AS finished,
           sum(extract(epoch FROM handling)) FILTER (WHERE finished) AS handling,
           count(*) FILTER (WHERE finished AND quick) AS in_time, count(*) FILTER (WHERE finished OR had_time) AS due
    FROM t GROUP BY days, sid
),
st AS (
    SELECT s.id AS store_id, s.service_score, m.time_zone FROM {store} s JOIN {market} m ON m.id = s.market_id
    WHERE s.agency_id = %(agency)s AND s.id = ANY(%(stores)s::bigint[])
),
score_days AS (
    SELECT DISTINCT ON (w.days, e.store_id, day) w.days, e.store_id,
           (e.created_at AT TIME ZONE st.time_zone)::date AS day, e.score_after
    FROM {score} e JOIN st ON st.store_id = e.store_id
    JOIN w ON e.created_at >= w.since AND e.created_at <= %(now)s
    WHERE e.agency_id = %(agency)s
    ORDER BY w.days, e.store_id, day, e.created_at DESC, e.id DESC
),
score_start AS (
    SELECT w.days, st.store_id, COALESCE(b.score_after, CASE WHEN EXISTS (
               SELECT 1 FROM score_days d WHERE d.days = w.days AND d.store_id = st.store_id)
           THEN %(max_score)s ELSE st.service_score END) AS score
    FROM st CROSS JOIN w
    LEFT JOIN LATERAL (
        SELECT e.score_after FROM {score} e
        WHERE e.store_id = st.store_id AND e.agency_id = %(agency)s AND e.created_at < w.since
        ORDER BY e.created_at DESC, e.id DESC LIMIT 1) b ON true
),
score_change AS (
    SELECT d.days, d.store_id, d.day, d.score_after - COALESCE(
               lag(d.score_after) OVER (PARTITION BY d.days, d.store_id ORDER BY d.day), s.score) AS delta
    FROM score_days d JOIN score_start s ON s.days = d.days AND s.store_id = d.store_id
)
SELECT days, sid, v.kind, '' AS key, '' AS key2, NULL::date AS day, v.n AS count, NULL::bigint AS units,
       v.amount, '' AS text
FROM totals CROSS JOIN LATERAL (VALUES ('requests', requests, NULL::numeric), ('proactive', proactive, NULL),
    ('intervened', intervened, NULL), ('finished', finished, handling), ('in_time', in_time, NULL),
    ('due', due, NULL)) AS v(kind, n, amount)
WHERE v.n > 0
UNION ALL
SELECT days, sid, 'reason', reason_key, '', NULL, count(*), NULL, NULL, max(reason_text)
FROM t GROUP BY days, sid, reason_key
UNION ALL
SELECT t.days, t.sid,
       CASE WHEN GROUPING(i.category) = 0 THEN 'category' WHEN GROUPING(t.reason_key) = 0 THEN 'pair'
            ELSE 'product' END,
       COALESCE(i.category, i.product_name), COALESCE(t.reason_key, ''), NULL, count(DISTINCT t.id),
       CASE WHEN GROUPING(i.category) = 0 THEN sum(i.quantity) END,
       NULL, CASE WHEN GROUPING(t.reason_key) = 0 THEN max(t.reason_text) ELSE '' END
FROM {item} i JOIN t ON t.id = i.ticket_id
GROUP BY t.days, t.sid, GROUPING SETS ((i.category), (i.product_name), (i.product_name, t.reason_key))
UNION ALL
SELECT w.days, CASE WHEN %(per_store)s THEN v.store_id END, 'volume', v.category, '', NULL, sum(v.orders),
       sum(v.units_sold), NULL, ''
FROM {volume} v JOIN w ON v.day >= w.since_day
WHERE v.agency_id = %(agency)s AND v.store_id = ANY(%(stores)s::bigint[])
GROUP BY 1, 2, 4
UNION ALL
SELECT w.days, CASE WHEN %(per_store)s THEN b.store_id END, 'breach', b.kind, '', NULL, count(*), NULL, NULL, ''
FROM {breach} b JOIN w ON b.created_at >= w.since AND b.created_at <= %(now)s
WHERE b.agency_id = %(agency)s AND b.store_id = ANY(%(stores)s::bigint[])
GROUP BY 1, 2, 4
UNION ALL
SELECT w.days, CASE WHEN %(per_store)s THEN c.store_id END, 'compensation', c.currency, c.status, NULL, count(*),
       NULL, sum(c.amount), ''
FROM {compensation} c JOIN w ON c.created_at >= w.since AND c.created_at <= %(now)s
WHERE c.agency_id = %(agency)s AND c.store_id = ANY(%(stores)s::bigint[])
GROUP BY 1, 2, 4, 5
UNION ALL
SELECT days, CASE WHEN %(per_store)s THEN store_id END, 'score_start', '', '', NULL, count(*), NULL, sum(score), ''
FROM score_start GROUP BY 1, 2
UNION ALL
SELECT days, CASE WHEN %(per_store)s THEN store_id END, 'score', '', '', day, count(*), NULL, sum(delta), ''
FROM score_change WHERE delta <> 0 GROUP BY 1, 2, 6
"""

# The refresh: the same figures per store, for both windows, straight into the new rollup.
INSERT_SQL = """
INSERT INTO {figure} (rollup_id, agency_id, store_id, days, kind, key, key2, day, count, units, amount, text)
SELECT %(rollup)s, %(agency)s, f.sid, f.days, f.kind, f.key, f.key2, f.day, f.count, f.units, f.amount, f.text
FROM ({figures}) AS f
"""
# Then the same rows summed over every store (store NULL): what an owner's "all stores" reads.
AGENCY_SQL = """
INSERT INTO {figure} (rollup_id, agency_id, store_id, days, kind, key, key2, day, count, units, amount, text)
SELECT rollup_id, agency_id, NULL, days, kind, key, key2, day, sum(count), sum(units), sum(amount), max(text)
FROM {figure} WHERE rollup_id = %(rollup)s GROUP BY rollup_id, agency_id, days, kind, key, key2, day
"""


def _params(agency_id: int, store_ids: list[int], now: dt.datetime, windows: Iterable[int], *,
            per_store: bool) -> dict:
    sinces = [now - dt.timedelta(days=days) for days in windows]
    return {"agency": agency_id, "stores": list(store_ids), "now": now, "per_store": per_store,
            "days": list(windows), "since": sinces, "since_day": [since.date() for since in sinces],
            "final": [str(s) for s in FINAL_STATES], "completion": dt.timedelta(hours=COMPLETION_HOURS),
            "max_score": MAX_SCORE}


def compute(agency_id: int, store_ids: list[int], now: dt.datetime, days: int) -> list[tuple]:
    """The figures of ``days`` up to ``now``, summed over the stores (one query): the live path."""
    if not store_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(FIGURES_SQL.format(**_tables()), _params(agency_id, store_ids, now, [days], per_store=False))
        return [row[2:] for row in cursor.fetchall()]


class Figures:
    """Figures summed over some stores, by kind and (key, key2, day): [count, units, amount, text]."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[tuple, list]] = {}

    def add(self, rows: Iterable[tuple]) -> Figures:
        """Rows of (kind, key, key2, day, count, units, amount, text): counts and amounts add, texts take MAX."""
        for kind, key, key2, day, count, units, amount, text in rows:
            row = self.kinds.setdefault(kind, {}).setdefault((key, key2, day), [0, None, None, ""])
            row[0] += count or 0
            if units is not None:
                row[1] = (row[1] or 0) + units
            if amount is not None:
                row[2] = (row[2] or Decimal("0")) + amount
            row[3] = max(row[3], text or "")
        return self

    def of(self, kind: str) -> dict[tuple, list]:
        return self.kinds.get(kind, {})

    def count(self, kind: str) -> int:
        return sum(row[0] for row in self.of(kind).values())

    def amount(self, kind: str) -> Decimal | None:
        amounts = [row[2] for row in self.of(kind).values() if row[2] is not None]
        return sum(amounts, Decimal("0")) if amounts else None


# --- rollups ---------------------------------------------------------------------------------------------------
def max_age() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "ANALYTICS_ROLLUP_MAX_AGE_SECONDS", DEFAULT_MAX_AGE_SECONDS))


def latest(agency_id: int, now: dt.datetime) -> AnalyticsRollup | None:
    """The agency's newest rollup no older than the allowed age (none made after ``now``: a past ``now`` is
    computed live)."""
    return (AnalyticsRollup.objects.for_agency(agency_id)
            .filter(computed_at__lte=now, computed_at__gte=now - max_age())
            .order_by("-computed_at", "-id").first())


def read(rollup: AnalyticsRollup, days: int, store_ids: list[int]) -> list[tuple]:
    """The rollup's figures (all but the pairs) summed over the stores: one grouped query."""
    rows = _figures(rollup, days, store_ids).filter(kind__in=READ_KINDS)
    return list(rows.values_list("kind", "key", "key2", "day").annotate(
        n=Sum("count"), u=Sum("units"), a=Sum("amount"), t=Max("text")).order_by())


def read_pairs(rollup: AnalyticsRollup, days: int, store_ids: list[int], products: list[str]) -> list[tuple]:
    """The (product, reason) figures of these products summed over the stores: one grouped query."""
    rows = _figures(rollup, days, store_ids).filter(kind="pair", key__in=products)
    return [("pair", key, key2, None, n, None, None, text) for key, key2, n, text in
            rows.values_list("key", "key2").annotate(n=Sum("count"), t=Max("text")).order_by()]


def _figures(rollup: AnalyticsRollup, days: int, store_ids: list[int]):
    """Exactly the stores the rollup covers (an owner's all): their sum, kept as rows without a store."""
    rows = AnalyticsFigure.objects.for_agency(rollup.agency_id).filter(rollup_id=rollup.pk, days=days)
    if set(store_ids) == set(rollup.store_ids):
        return rows.filter(store__isnull=True)
    return rows.filter(store_id__in=store_ids)


def refresh(agency_id: int | None = None, now: dt.datetime | None = None) -> int:
    """Write a new rollup of every store of the agency (of every agency, stalest first, when None) for both
    windows up to ``now``, and their sum over the agency; returns the figure rows written. Each agency in one
    transaction: readers see the previous rollup until it commits. An agency whose refresh is already running
    is skipped (it will be as fresh)."""
    if agency_id is not None:
        return _refresh(agency_id, now or timezone.now())
    return sum(_refresh(pk, now or timezone.now()) for pk in agency_ids())


def agency_ids() -> list[int]:
    """Every agency, the one refreshed longest ago (or never) first: a run cut short leaves the freshest."""
    last = AnalyticsRollup.objects.filter(agency_id=OuterRef("pk")).order_by("-computed_at").values("computed_at")
    return list(Agency.objects.annotate(last=Subquery(last[:1])).order_by(F("last").asc(nulls_first=True), "pk")
                .values_list("pk", flat=True))


def _refresh(agency_id: int, now: dt.datetime) -> int:
    tables = _tables()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtextextended('aftersales.analytics.refresh', %s))",
                       [agency_id])
        if not cursor.fetchone()[0]:
            return 0
        # The window's requests are sorted and grouped a few ways (a million rows at agency scale): in memory,
        # not in temporary files. For this transaction only.
        cursor.execute(f"SET LOCAL work_mem = '{REFRESH_WORK_MEM}'")
        store_ids = list(Store.objects.for_agency(agency_id).order_by("pk").values_list("pk", flat=True))
        rollup = AnalyticsRollup.objects.create(agency_id=agency_id, computed_at=now, store_ids=store_ids)
        params = {**_params(agency_id, store_ids, now, WINDOWS, per_store=True), "rollup": rollup.pk}
        cursor.execute(INSERT_SQL.format(figures=FIGURES_SQL.format(**tables), **tables), params)
        written = cursor.rowcount
        cursor.execute(AGENCY_SQL.format(**tables), params)
        written += cursor.rowcount
        _prune(agency_id)
    # Statistics that know the new rollup: without them the planner expects one row for its id and reads a
    # sub-account's stores by filtering every row of the rollup instead of through the index (10× slower).
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {tables['figure']}")
    return written


def _prune(agency_id: int) -> None:
    """Drop the agency's rollups older than the newest KEEP_ROLLUPS (their figures first, in one statement)."""
    rollups = AnalyticsRollup.objects.for_agency(agency_id)
    old = list(rollups.order_by("-computed_at", "-id").values_list("pk", flat=True)[KEEP_ROLLUPS:])
    if old:
        AnalyticsFigure.objects.for_agency(agency_id).filter(rollup_id__in=old).delete()
        rollups.filter(pk__in=old).delete()
