"""The plans the benchmark's figures rest on (docs/BENCHMARKS.md), asserted so a later change to a query or an
index cannot silently lose them: the queue's page at any depth is an index range on ``request_queue_due`` from
the cursor, and the SLA sweep's probe and claim walk the partial ``request_sla_check`` index.

The data is the benchmark generator's at a small size, analysed, so the planner chooses with real statistics."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aftersales import sla
from aftersales.states import OPEN_STATES
from bench import agency_data

pytestmark = pytest.mark.django_db

QUEUE = "/api/v1/aftersales/"


@pytest.fixture
def agency():
    data = agency_data.load(30_000, 50, 2, 10, progress=lambda _line: None)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return data


def nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def explain(sql: str, params=()) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        raw = cursor.fetchone()[0]
    root = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return list(nodes(root))


def page_sql(client, url: str) -> str:
    """The SQL of the one query of a list request that reads the requests table."""
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content
    pages = [q["sql"] for q in ctx.captured_queries if 'FROM "aftersales_aftersalesrequest"' in q["sql"]
             and "LIMIT" in q["sql"]]
    assert len(pages) == 1, pages  # the page filled from the first index range
    return pages[0]


def test_the_queue_reads_a_deep_page_as_an_index_range_from_the_cursor(agency, api):
    client = api(agency["agent"])  # the sub-account: a fifth of the stores
    url = f"{QUEUE}?status={','.join(sorted(OPEN_STATES))}&page_size=50"
    first = client.get(url).json()
    assert len(first["results"]) == 50
    deep = page_sql(client, first["next"])
    scans = [n for n in explain(deep) if n.get("Index Name") == "request_queue_due"]
    assert scans, "the queue page does not use request_queue_due"
    cond = scans[0].get("Index Cond", "")
    # the cursor is the start of the range (not a filter over every row before it) and the agency leads
    assert "ROW(" in cond and ">" in cond and "agency_id" in cond, cond
    # and the index alone can give the page's order: with explicit sorts priced out (as they are at scale, where
    # the range from the cursor holds many rows), the plan is a walk of the index, not a sort of the range
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")
    walked = explain(deep)
    assert "Sort" not in {n["Node Type"] for n in walked}
    assert any(n.get("Index Name") == "request_queue_due" and "ROW(" in n.get("Index Cond", "") for n in walked)


def test_the_sla_sweep_probe_and_claim_walk_the_partial_index(agency):
    now = timezone.now()
    probe = sla._due(now).order_by("sla_check_at").values_list("pk", flat=True)[:1]
    claim = sla._due(now + dt.timedelta(hours=1)).only(*sla.CLAIM_FIELDS).order_by("sla_check_at", "pk")[:500]
    for queryset in (probe, claim):
        sql, params = queryset.query.sql_with_params()
        found = {n.get("Index Name") for n in explain(sql, params)}
        assert "request_sla_check" in found, (sql, found)


def test_the_models_and_their_migrations_agree():
    """The queue's partial indexes name the open states: a state added to OPEN_STATES without a migration would
    leave the index behind the model (and the open queue's last page off it). makemigrations must find nothing."""
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
