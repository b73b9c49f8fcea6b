"""Every list of the API costs the same queries at page size 1 and page size 100 (no N+1), and at most 8.

The lists come from the URLconf through the matrix's route table, so a new list is covered the day it is
added; each gets one row per store of the owner's agency built by the table's own builder."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api_matrix_routes import ROUTES, api_routes
from tests.test_api_matrix import content, send

MAX_QUERIES = 8
# The queue pages in two index ranges (requests with a deadline, then those without; aftersales/api/pagination.py):
# a page that runs past the first range costs one query more, whatever its size.
SEGMENTED = {"aftersales-list": 1}


def list_routes() -> list[str]:
    walked = api_routes()
    return sorted(name for name, spec in ROUTES.items()
                  if spec.kind == "collection" and name in walked and "get" in spec.calls)


def test_there_are_lists_to_check():
    assert len(list_routes()) >= 8, list_routes()


@pytest.mark.parametrize("name", list_routes())
def test_a_list_costs_the_same_queries_at_page_size_1_and_100(tenants, api, name):
    a, _b = tenants
    spec = ROUTES[name]
    for store in a.stores:
        spec.build(a, store)
    spec.build(a, a.stores[0])  # two on one store as well
    client = api(a.owner)
    counts, sizes = [], []
    for size in (1, 100):
        send(client, name, "get", kwargs={}, query={"page_size": size})  # warm: token and caches
        with CaptureQueriesContext(connection) as ctx:
            response = send(client, name, "get", kwargs={}, query={"page_size": size})
        assert response.status_code == 200, (name, response.status_code, content(response)[:300])
        counts.append(len(ctx.captured_queries))
        body = response.json() if not response.streaming else {}
        sizes.append(len(body.get("results", [])) if isinstance(body, dict) else len(body))
    assert counts[0] <= counts[1] <= counts[0] + SEGMENTED.get(name, 0), (
        name, counts, [q["sql"][:120] for q in ctx.captured_queries])
    assert counts[1] <= MAX_QUERIES, (name, counts)
    if sizes[1] > 1:  # a page of one really was one row, and a page of 100 held several
        assert sizes[0] == 1, (name, sizes)
