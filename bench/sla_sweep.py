"""SLA sweep benchmark (issue 5): 100 k requests breaching at once, an idle sweep, and a bare SQL UPDATE.

    ./dev bench sla_sweep [--requests 100000] [--stores 100] [--batch 500] [--write docs/BENCHMARKS.md]

Loads one agency with stores over the 11 markets and ``--requests`` open requests whose earliest deadline has
just passed (25 h old where the market has a 24 h first-response rule, 49 h old elsewhere: exactly one missed
deadline each), then times the sweep end to end — claiming, breaches, compensation within each store's budget,
the score ledger, log rows, alerts, rescheduling, commits — and checks every effect landed once. Then the idle
sweep (nothing due), and a bare ``UPDATE`` marking the same rows breached, the floor no sweep can beat.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness


def load(n_requests: int, n_stores: int) -> tuple[int, float]:
    from aftersales import sla
    from aftersales.models import AfterSalesRequest
    from stores import services
    from stores.models import Market, MarketPolicy, Store

    agency = services.create_agency(slug="bench", name="Bench agency")
    markets = list(Market.objects.order_by("code"))
    stores = Store.objects.unscoped().bulk_create([
        Store(agency=agency, market=markets[i % len(markets)], name=f"Bench store {i:04d}",
              shop_id=f"bench-{i:04d}") for i in range(n_stores)])
    stores = list(Store.objects.unscoped().filter(agency=agency).select_related("market"))
    policies = {p.market_id: p for p in MarketPolicy.objects.all()}
    now = dt.datetime.now(dt.UTC)
    rng = random.Random(5)  # benchmark data, not secrets

    def rows():
        for i in range(n_requests):
            store = stores[i % len(stores)]
            policy = policies.get(store.market_id)
            hours = 25 if policy and policy.first_response_hours else 49
            created = now - dt.timedelta(hours=hours, minutes=rng.randint(0, 50))
            ticket = AfterSalesRequest(
                agency_id=agency.pk, store=store, type="refund_only", state="pending_review",
                state_changed_at=created, return_id=f"R{i:09d}", order_id=f"O{i:09d}",
                platform_status="RETURN_OR_REFUND_REQUEST_PENDING",
                buyer_user_id=f"B{rng.randint(1, n_requests // 3):08d}", currency=store.market.currency,
                refund_total="19.90", platform_created_at=created, created_at=created, updated_at=created,
                reason_key="ecom_order_delivered_refund_reason_wrong_item")
            sla.set_deadlines(ticket, policy, missed=set())
            yield ticket

    took, _count = harness.timed(lambda: harness.copy_models(AfterSalesRequest, rows()))
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return agency.pk, took


def _probe_sql():
    """The idle sweep's one query, as SQL with its parameter inlined (for EXPLAIN)."""
    from aftersales import sla

    qs = sla._due(sla.timezone.now()).order_by("sla_check_at").values_list("pk", flat=True)[:1]
    sql, params = qs.query.sql_with_params()
    return sql.replace("%s", "now()") if params else sql


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--write", help="append the results to this Markdown file")
    args = parser.parse_args()
    harness.setup_django()
    from django.db import connection
    from django.db.models import Count

    from aftersales import sla
    from aftersales.models import AfterSalesRequest, Alert, Compensation, OperationLog, ServiceScoreEntry, SlaBreach

    agency_id, load_s = load(args.requests, args.stores)
    print(f"· loaded {args.requests:,} requests over {args.stores} stores in {load_s:.1f} s (COPY)", flush=True)
    due = AfterSalesRequest.objects.unscoped().filter(sla_check_at__lte=sla.timezone.now()).count()
    assert due == args.requests, due

    sweep_s, handled = harness.timed(lambda: sla.sweep(batch=args.batch))
    breaches = SlaBreach.objects.unscoped().count()
    per_ticket = SlaBreach.objects.unscoped().values("ticket_id").annotate(n=Count("id")).filter(n__gt=1).count()
    checks = {
        "handled": handled == args.requests,
        "one breach each": breaches == args.requests and per_ticket == 0,
        "score entries": ServiceScoreEntry.objects.unscoped().count() == breaches,
        "log rows": OperationLog.objects.filter(action="sla_breach").count() == breaches,
        "alerts": Alert.objects.unscoped().filter(kind="breached").count() == breaches,
        "compensations": Compensation.objects.unscoped().count()
        == SlaBreach.objects.unscoped().filter(kind="first_response").count(),
        "nothing left due": not sla._due(sla.timezone.now()).exists(),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        print(f"✗ effects missing or doubled: {', '.join(bad)}", file=sys.stderr)
        return 1
    rate = breaches / sweep_s

    # Right after the mass breach the partial index still holds 100 k dead entries (until autovacuum).
    idle_ms = harness.median_ms(lambda: sla.sweep(batch=args.batch), runs=200)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) aftersales_aftersalesrequest")
    idle_vacuumed_ms = harness.median_ms(lambda: sla.sweep(batch=args.batch), runs=200)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + str(_probe_sql()))
        probe_plan = "\n".join(row[0] for row in cursor.fetchall())
    print(probe_plan)

    def bare_update():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE aftersales_aftersalesrequest SET breached_at = now(), sla_check_at = NULL, "
                           "updated_at = now() WHERE agency_id = %s", [agency_id])
            return cursor.rowcount

    update_s, updated = harness.timed(bare_update)
    assert updated == args.requests
    ratio = sweep_s / update_s

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = [
        (f"SLA sweep, {breaches:,} breaches due at once (batch {args.batch})", "≥ 2,000 breaches/s end to end",
         f"{rate:,.0f}/s ({sweep_s:.1f} s)", f"{rate / 2000:.1f}× goal", rate >= 2000),
        ("idle sweep right after it (dead index entries not yet vacuumed), median of 200", "≤ 10 ms",
         f"{idle_ms:.2f} ms", f"{10 / idle_ms:.1f}× under", idle_ms <= 10),
        ("idle sweep after (auto)vacuum, median of 200", "≤ 10 ms", f"{idle_vacuumed_ms:.2f} ms",
         f"{10 / idle_vacuumed_ms:.1f}× under", idle_vacuumed_ms <= 10),
        ("bare SQL UPDATE of the same rows (floor)", "—", f"{update_s:.2f} s",
         f"sweep = {ratio:.1f}× the floor", True),
    ]
    report = (f"\n### SLA sweep — {when}\n\nMachine: {harness.machine()}. Command: `./dev bench sla_sweep "
              f"--requests {args.requests} --stores {args.stores} --batch {args.batch}`. Load: {load_s:.1f} s by "
              f"COPY. Every effect checked after the run: one breach, one score entry, one log row and one alert "
              f"per request, one compensation per first-response breach, nothing left due.\n\n"
              + harness.table(rows) + "\n\nThe idle probe's plan:\n\n```\n" + probe_plan + "\n```\n")
    print(report)
    if args.write:
        with open(args.write, "a", encoding="utf-8") as handle:
            handle.write(report)
    return 0 if all(ok for *_rest, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
