"""Schemathesis against our own OpenAPI document, in process (WSGI), on a seeded database.

Every operation of /api/schema/ gets a bounded number of generated requests (valid and invalid, derandomized
so a run is repeatable), sent with an API token of the first agency's owner. Path ids are mostly swapped for
ids of real seeded rows, so the operations reach their views' real work, not only the 404. Each response
must not be a 5xx, must have a status code the schema documents for the operation, and must match the
documented body schema.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from stores import services as store_services
from tests.conftest import add_tenant_rows, make_tenant, platform_return

MAX_EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Real ids per path parameter name, filled by the seed of each test (the generated value stays possible).
KNOWN: dict[str, list[str]] = {}
# Real values per query parameter name, the same way (a store filter that names a real store, a real market).
KNOWN_QUERY: dict[str, list[str]] = {}


def _seed() -> str:
    """Both agencies with one row of every tenant model, plus requests in several states; the token of
    alpha's owner (who sees all of alpha)."""
    from aftersales import oplog
    from aftersales import services as aftersales
    from aftersales.models import AfterSalesRequest, QuickReply
    from logistics.models import ReturnAddress, ReturnShipment

    a, b = tenants = make_tenant("alpha"), make_tenant("bravo")
    for tenant in tenants:
        add_tenant_rows(tenant)
    for store in a.stores[:2]:
        aftersales.intake(store, platform_return())
        aftersales.intake(store, platform_return(return_type="RETURN_AND_REFUND"))
        aftersales.intake(store, platform_return(return_status="RETURN_OR_REFUND_REQUEST_SUCCESS"))
        aftersales.intake(store, platform_return(return_status="AWAITING_BUYER_RESPONSE"))
        swap, _ = aftersales.intake(store, platform_return(return_type="REPLACEMENT",
                                                           return_status="REPLACEMENT_REQUEST_PENDING"))
        aftersales.approve(oplog.SYSTEM, swap.pk, "APPROVE_REPLACEMENT")
    aftersales.intake(b.stores[0], platform_return())  # a foreign one in the mix
    from django.http import QueryDict

    from aftersales import jobs
    from aftersales.models import Job
    from stores.models import Role

    owner = store_services.actor_for_user(a.owner)
    jobs.start_bulk(owner, "close", [str(t.public_id) for t in AfterSalesRequest.objects.for_agency(a.agency)], {})
    jobs.run(jobs.start_export(owner, QueryDict(""), bom=True).pk)
    ids = {
        "ticket_id": AfterSalesRequest.objects.unscoped().values_list("public_id", flat=True),
        "reply_id": QuickReply.objects.unscoped().values_list("public_id", flat=True),
        "address_id": ReturnAddress.objects.unscoped().values_list("public_id", flat=True),
        "shipment_id": ReturnShipment.objects.unscoped().values_list("public_id", flat=True),
        "buyer_id": AfterSalesRequest.objects.unscoped().values_list("buyer_user_id", flat=True),
        "job_id": Job.objects.unscoped().values_list("public_id", flat=True),
        "role_id": Role.objects.unscoped().values_list("public_id", flat=True),
        "username": [u.username for t in tenants for u in (t.owner, t.agent, t.viewer, t.outsider)],
    }
    KNOWN.clear()
    KNOWN.update({name: sorted({str(v) for v in values}) for name, values in ids.items()})
    from stores.models import Market, Store

    KNOWN_QUERY.clear()
    KNOWN_QUERY.update({"store": sorted(str(s.public_id) for s in Store.objects.unscoped()),
                        "market": sorted(Market.objects.values_list("code", flat=True)),
                        "ticket": KNOWN["ticket_id"], "days": ["7", "30"]})
    _token, key = store_services.create_api_token(user=a.owner, name="schemathesis")
    return key


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """The seed, once for the module, inside a transaction rolled back at its end (each test's own `db`
    transaction nests as a savepoint in it). Django's WSGI handler is made safe inside it: like Django's test
    client, request_started/finished must not close the connection that holds the transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield _seed()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)


@pytest.fixture
def token(seeded, db):
    cache.clear()  # the user throttle counts per operation, not across the run
    return seeded


# Loaded at collection (the schema view needs no database); the plugin makes one test per operation.
# (schemathesis.pytest.from_fixture would build it per test, but its lazy loader sets pytest's private
# Function._nodeid, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Mostly a real seeded id (reaching the view's real work), sometimes the generated value (the 404)."""
    if not path_parameters:
        return st.just(path_parameters)
    choices = [st.just(path_parameters)]
    for name, values in KNOWN.items():
        if name in path_parameters and values:
            choices.append(st.sampled_from(values).map(lambda v, n=name: {**path_parameters, n: v}))
    return st.one_of(*choices)


@schema.hook
def flatmap_query(context, query):
    """Now and then a real store, market or request in the query (filters that match something)."""
    if not query:
        return st.just(query)
    choices = [st.just(query)]
    for name, values in KNOWN_QUERY.items():
        if name in query and values:
            choices.append(st.sampled_from(values).map(lambda v, n=name: {**query, n: v}))
    return st.one_of(*choices)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, token):
    response = case.call(headers={"Authorization": f"Token {token}"})
    case.validate_response(response, checks=CHECKS)


# --- 32-bit integers ---------------------------------------------------------------------------------------
# Random integers rarely land just past a database column's range, so every integer the schema leaves unbounded
# above (a JSON body property or a query parameter) is also sent once as 2**31, on every seeded id of the path.
INT32_MAX = 2**31 - 1


def _resolve(node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = schema.raw_schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _unbounded(node: dict) -> bool:
    node = _resolve(node)
    return node.get("type") == "integer" and node.get("maximum", INT32_MAX + 1) > INT32_MAX


def _integer_probes() -> list:
    probes = []
    for path, item in schema.raw_schema["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for param in op.get("parameters", []):
                if param.get("in") == "query" and _unbounded(param.get("schema", {})):
                    probes.append(pytest.param(method, path, "query", param["name"],
                                               id=f"{method.upper()} {path} ?{param['name']}"))
            body = _resolve(op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}))
            for name, prop in (body.get("properties") or {}).items():
                if _unbounded(prop):
                    probes.append(pytest.param(method, path, "body", name, id=f"{method.upper()} {path} {name}"))
    return probes


@pytest.mark.parametrize(("method", "path", "where", "name"), _integer_probes())
def test_integers_past_int32_are_not_a_server_error(token, method, path, where, name):
    operation = next(r.ok() for r in schema.get_all_operations()
                     if r.ok().path == path and r.ok().method.lower() == method)
    params = [p for p in KNOWN if "{" + p + "}" in path]
    choices = [{}] if not params else [{params[0]: value} for value in KNOWN[params[0]]]
    for path_parameters in choices:
        case = operation.Case(path_parameters=path_parameters, query={name: 2**31} if where == "query" else None,
                              body={name: 2**31} if where == "body" else NOT_SET,
                              media_type="application/json" if where == "body" else None)
        response = case.call(headers={"Authorization": f"Token {token}"})
        case.validate_response(response, checks=[not_a_server_error])


# --- NUL in free-text path parameters ----------------------------------------------------------------------
# PostgreSQL text cannot hold NUL; query strings and bodies are checked before the database, so every free-text
# path parameter (a string without a format, e.g. a username or a buyer id) gets one too.
def _text_path_probes() -> list:
    probes = []
    for path, item in schema.raw_schema["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for param in op.get("parameters", []) + item.get("parameters", []):
                node = _resolve(param.get("schema", {}))
                if param.get("in") == "path" and node.get("type") == "string" and "format" not in node:
                    probes.append(pytest.param(method, path, param["name"], id=f"{method.upper()} {path}"))
    return probes


def _shape(node: dict):
    """A value of the right shape for a schema node (the body must pass validation to reach the lookup)."""
    node = _resolve(node)
    kind = node.get("type")
    if node.get("enum"):
        return node["enum"][0]
    if kind == "array":
        return [_shape(node.get("items", {}))]
    if kind == "object":
        return {name: _shape(prop) for name, prop in (node.get("properties") or {}).items()
                if name in node.get("required", [])}
    return {"integer": 1, "number": 1, "boolean": False}.get(
        kind, "00000000-0000-4000-8000-000000000000" if node.get("format") == "uuid" else "x")


@pytest.mark.parametrize(("method", "path", "name"), _text_path_probes())
def test_nul_in_a_text_path_parameter_is_not_a_server_error(token, method, path, name):
    operation = next(r.ok() for r in schema.get_all_operations()
                     if r.ok().path == path and r.ok().method.lower() == method)
    content = schema.raw_schema["paths"][path][method].get("requestBody", {}).get("content", {})
    body = _shape(content["application/json"]["schema"]) if "application/json" in content else NOT_SET
    case = operation.Case(path_parameters={name: "a\x00b"}, body=body,
                          media_type="application/json" if body is not NOT_SET else None)
    response = case.call(headers={"Authorization": f"Token {token}"})
    case.validate_response(response, checks=[not_a_server_error])


# --- date-times at the edges ------------------------------------------------------------------------------
# ISO 8601 allows what PostgreSQL's timestamptz does not: offsets past ±15:59 and instants past year 9999 in UTC.
# Every date-time query parameter (by format, or by name where the schema says only "string") gets each.
EDGE_DATETIMES = ("2026-01-01T00:00:00-19:36", "2026-01-01T00:00:00+23:59", "9999-12-31T23:59:59-12:00",
                  "0001-01-01T00:00:00+14:00")


def _datetime_probes() -> list:
    probes = []
    for path, item in schema.raw_schema["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for param in op.get("parameters", []):
                node = _resolve(param.get("schema", {}))
                named = re.search(r"_(before|after|since|until)$", param["name"]) and node.get("type") == "string"
                if param.get("in") == "query" and (node.get("format") == "date-time" or named):
                    probes += [pytest.param(method, path, param["name"], value,
                                            id=f"{method.upper()} {path} ?{param['name']}={value}")
                               for value in EDGE_DATETIMES]
    return probes


@pytest.mark.parametrize(("method", "path", "name", "value"), _datetime_probes())
def test_edge_datetimes_in_a_query_are_not_a_server_error(token, method, path, name, value):
    operation = next(r.ok() for r in schema.get_all_operations()
                     if r.ok().path == path and r.ok().method.lower() == method)
    case = operation.Case(query={name: value})
    response = case.call(headers={"Authorization": f"Token {token}"})
    case.validate_response(response, checks=[not_a_server_error])
