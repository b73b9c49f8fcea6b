"""The isolation and permission matrix of the whole REST API, generated from the URLconf.

Every route under /api/v1/ is walked (``django.urls.get_resolver()``), with the methods its view handles,
and looked up in the route table (tests/api_matrix_routes.py). For every (route, method) cell:

- an object route: another agency's object, an ungranted store's object (the agent holds stores[:2]) and
  any object for a member without a role are 404 ``ERR_NOT_FOUND`` with nothing written (OperationLog and
  the route's models counted before/after) and the foreign object is in no list; a visible store without
  the needed permission is 403 ``ERR_PERM_…``; an unsafe method over a session without a CSRF token is 403
  ``ERR_AUTH_005``; the rightful caller succeeds (so the 404s are not a wrong URL or body);
- a list: the other agency's rows and the ungranted store's rows are absent;
- a batch write: foreign and ungranted ids are per-item ``ERR_NOT_FOUND`` with nothing written;
- everywhere: no credentials → 401 ``ERR_AUTH_001``, a bad token → 401 ``ERR_AUTH_002``.

The guard test fails when the URLconf has a route (or a method) the table lacks, or the table names a route
(or method) that is gone.
"""

from __future__ import annotations

import uuid

import pytest
from django.apps import apps
from django.urls import reverse
from rest_framework.test import APIClient

from aftersales.models import OperationLog
from tests.api_matrix_routes import (
    API_PREFIX,
    EXCLUDED_PREFIXES,
    IGNORED_METHODS,
    ROUTES,
    STORE_HIDDEN,
    all_routes,
    api_routes,
    random_kwargs,
)

UNSAFE = {"post", "put", "patch", "delete"}


def is_object_cell(spec, method: str) -> bool:
    """Object routes, and the writes of a list route (the body names the store: it is the object)."""
    return spec.kind == "object" or (spec.kind == "collection" and method != "get")


def cells(kind: str) -> list:
    """(route, method) pairs present in both the URLconf and the table (the guard reports the rest)."""
    walked = api_routes()
    out = []
    for name, spec in ROUTES.items():
        if name not in walked:
            continue
        for method in walked[name].methods:
            if method not in spec.calls:
                continue
            if kind == "object" and not is_object_cell(spec, method):
                continue
            if kind != "object" and (spec.kind != kind or is_object_cell(spec, method)):
                continue
            out.append(pytest.param(name, method, id=f"{method.upper()} {name}"))
    return out


# --- the guard -------------------------------------------------------------------------------------------
def test_every_api_route_and_method_is_in_the_table():
    walked = api_routes()
    missing = [f"{r.path} ({r.name}): {', '.join(m for m in r.methods if m not in IGNORED_METHODS)}"
               for name, r in sorted(walked.items()) if name not in ROUTES]
    stale = sorted(name for name in ROUTES if name not in walked)
    missing_methods, stale_methods = [], []
    for name, spec in ROUTES.items():
        if name not in walked:
            continue
        handled = {m for m in walked[name].methods if m not in IGNORED_METHODS}
        missing_methods += [f"{m.upper()} {walked[name].path} ({name})" for m in sorted(handled - set(spec.calls))]
        stale_methods += [f"{m.upper()} {name}" for m in sorted(set(spec.calls) - handled)]
    problems = []
    if missing:
        problems.append("routes in the URLconf but not in tests/api_matrix_routes.py ROUTES:\n  "
                        + "\n  ".join(missing))
    if missing_methods:
        problems.append("methods the views handle but the table lacks:\n  " + "\n  ".join(missing_methods))
    if stale:
        problems.append("ROUTES names routes the URLconf no longer has:\n  " + "\n  ".join(stale))
    if stale_methods:
        problems.append("ROUTES names methods the views no longer handle:\n  " + "\n  ".join(stale_methods))
    assert not problems, "\n".join(problems)


def test_routes_outside_the_matrix_are_only_the_excluded_ones():
    for route in all_routes():
        if route.path.startswith("api/") and not route.path.startswith(API_PREFIX):
            assert any(route.path.startswith(p) for p in EXCLUDED_PREFIXES), route.path
    assert any(r.path.startswith("webhooks/") for r in all_routes())  # still there, still excluded


def test_the_matrix_is_not_empty():
    assert len(cells("object")) >= 10 and cells("collection") and cells("bulk")


# --- helpers ---------------------------------------------------------------------------------------------
def counts(spec) -> dict[str, int]:
    out = {"aftersales.OperationLog": OperationLog.objects.count()}
    for label in spec.counted:
        out[label] = apps.get_model(label)._base_manager.count()
    return out


def without_log(snapshot: dict) -> dict:
    return {k: v for k, v in snapshot.items() if k != "aftersales.OperationLog"}


def target(spec, method: str):
    """(builder, kwargs) of a cell: a list route's write names its store in the body."""
    if spec.kind == "collection" and method != "get":
        return (lambda tenant, store: store), (lambda store: {})
    return spec.build, spec.kwargs


def send(client, name: str, method: str, obj=None, *, kwargs=None, query=None):
    spec = ROUTES[name]
    call = spec.calls[method]
    if kwargs is None:
        kwargs = target(spec, method)[1](obj)
    url = reverse(name, kwargs=kwargs)
    if method == "get":
        params = dict(call.query(obj)) if (call.query and obj is not None) else {}
        return client.get(url, {**params, **(query or {})})
    data = call.body(obj) if call.body else None
    return getattr(client, method)(url, data, format=call.format)


def error(response) -> str:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"<no envelope: {response.status_code} {response.content[:200]!r}>"


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def session_client(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def clients(tenants, api):
    """One token client per fixture user of both agencies (tokens are made once per test)."""
    made: dict[tuple[int, str], APIClient] = {}

    def client(tenant, who: str) -> APIClient:
        key = (tenant.agency.pk, who)
        if key not in made:
            made[key] = api(getattr(tenant, who))
        return made[key]

    return client


def list_contents(client) -> bytes:
    """Everything every list route shows this caller (page_size 200: the fixtures fit in one page). A list the
    caller may not read at all (403) shows nothing."""
    walked = api_routes()
    body = b""
    for name, spec in ROUTES.items():
        if spec.kind == "collection" and name in walked and "get" in spec.calls:
            response = send(client, name, "get", kwargs={}, query={"page_size": 200})
            assert response.status_code in (200, 403), (name, response.content)
            body += content(response) if response.status_code == 200 else b""
    return body


# --- object routes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "method"), cells("object"))
def test_object_route(tenants, clients, name, method):
    a, b = tenants
    spec, call = ROUTES[name], ROUTES[name].calls[method]
    build, kwargs_of = target(spec, method)
    objects = {"foreign": build(b, b.stores[0]), "ungranted": build(a, a.stores[2]),  # the agent holds stores[:2]
               "own": build(a, a.stores[0])}  # the agent and the viewer hold it; the outsider holds nothing
    own = objects["own"]
    before = counts(spec)

    # (a) another agency, (b) an ungranted store / a member without a role: hidden (404), nothing written
    hidden = spec.write_hidden if (is_object_cell(spec, method) and spec.kind == "collection"
                                   and spec.write_hidden is not None) else spec.hidden
    for tenant, who, which in hidden:
        response = send(clients({"a": a, "b": b}[tenant], who), name, method, objects[which])
        assert spec.hidden_ok(response), (f"{tenant}.{who} on the {which} object", response.status_code,
                                          response.content)
    ids = {k: v for k, v in kwargs_of(own).items() if isinstance(v, uuid.UUID)}
    if ids:  # and the same answer as an id that does not exist at all
        missing = send(clients(a, "owner"), name, method, own,
                       kwargs={**kwargs_of(own), **{k: uuid.uuid4() for k in ids}})
        assert spec.hidden_ok(missing), missing.content
    assert counts(spec) == before, "a refused cross-tenant call wrote something"

    # … and the foreign object is in no list of the other agency, the ungranted one in none of the agent's
    row_id = spec.row_id if spec.kind == "object" else (lambda store: str(store.public_id))
    foreign_id, ungranted_id = row_id(objects["foreign"]).encode(), row_id(objects["ungranted"]).encode()
    for who in ("owner", "agent"):  # the whole agency, and a sub-account's grant-filtered view
        assert foreign_id not in list_contents(clients(a, who)), who
    if ("a", "agent", "ungranted") in hidden:
        assert ungranted_id not in list_contents(clients(a, "agent"))

    # (c) a visible store without the needed permission: a coded 403 (the refusal may be logged, nothing else)
    if call.perm:
        response = send(clients(a, call.denied), name, method, own)
        assert response.status_code == 403, (call.denied, response.content)
        assert error(response) == call.perm, response.content
        assert response.json()["error"]["hint"]
        after = counts(spec)
        assert without_log(after) == without_log(before)
        assert after["aftersales.OperationLog"] - before["aftersales.OperationLog"] <= 1
        before = after

    # an unsafe method over a session without a CSRF token: 403 ERR_AUTH_005, nothing written
    if method in UNSAFE:
        response = send(session_client(getattr(a, call.rightful)), name, method, own)
        assert response.status_code == 403, response.content
        assert error(response) == "ERR_AUTH_005"
        assert counts(spec) == before

    # the control: the rightful caller, same URL, same body, succeeds
    response = send(clients(a, call.rightful), name, method, own)
    assert response.status_code == call.ok, (call.rightful, response.content)


# --- lists -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "method"), cells("collection"))
def test_collection_route(tenants, clients, name, method):
    a, b = tenants
    spec = ROUTES[name]
    rows = {"foreign": spec.build(b, b.stores[0]), "ungranted": spec.build(a, a.stores[2]),
            "own": spec.build(a, a.stores[0])}
    row_ids = {k: spec.row_id(v) for k, v in rows.items()}

    def shown(tenant, who, row=None, query=None) -> tuple[int, str]:
        params = {"page_size": 200, **(spec.list_query(rows[row]) if (spec.list_query and row) else {}),
                  **(query or {})}
        response = send(clients(tenant, who), name, method, kwargs={}, query=params)
        if response.status_code == 403:
            return 403, error(response)
        assert response.status_code in (200, 400, 404), (who, params, response.content)
        return response.status_code, content(response).decode() if response.status_code == 200 else ""

    for who, expected in spec.visibility.items():
        for row, row_id in row_ids.items():
            status, body = shown(a, who, row)
            if isinstance(expected, str):  # may not read the list at all
                assert (status, body) == (403, expected), (who, row, status, body[:300])
                continue
            visible = row in expected
            assert (row_id in body) == visible, (f"a.{who}", row, "should see it" if visible else "leaks", body[:500])
    for row, row_id in row_ids.items():
        _status, body = shown(b, "owner", row)
        assert (row_id in body) == (row == "foreign"), ("b.owner", row, body[:500])
    # naming a foreign or ungranted store in a filter never lets its rows through
    for who, store, row in [("owner", b.stores[0], "foreign"), ("agent", a.stores[2], "ungranted")]:
        if isinstance(spec.visibility.get(who), str) or row in spec.visibility.get(who, ()):
            continue
        for param in ("store", "store_id", "market"):
            value = store.market.code if param == "market" else str(store.public_id)
            _status, body = shown(a, who, query={param: value})
            assert row_ids[row] not in body, (who, param)


# --- batch writes ----------------------------------------------------------------------------------------
def bulk_items(name: str, response) -> list[dict]:
    """The per-item results of a batch route, normalised to {"ok", "code"}. A job is run here, synchronously."""
    from aftersales import jobs
    from aftersales.models import Job

    assert response.status_code in (200, 202), response.content
    body = response.json()
    if response.status_code == 202:
        job = Job.objects.unscoped().get(public_id=body["id"])
        jobs.run(job.pk)
        job.refresh_from_db()
        body = job.report
    items = body.get("results", body.get("rows"))
    return [{"ok": r["ok"], "code": (r.get("error") or {}).get("code") if "error" in r else r.get("code")}
            for r in items]


@pytest.mark.parametrize(("name", "method"), cells("bulk"))
def test_bulk_route(tenants, clients, name, method):
    a, b = tenants
    spec, call = ROUTES[name], ROUTES[name].calls[method]
    objects = {"foreign": spec.build(b, b.stores[0]), "ungranted": spec.build(a, a.stores[2]),
               "own": spec.build(a, a.stores[0])}
    not_found = {"ERR_NOT_FOUND", "ERR_IMPORT_101"}  # the import reports an unknown id with its own row code
    before = counts(spec)

    for tenant, who, which in STORE_HIDDEN:
        items = bulk_items(name, send(clients({"a": a, "b": b}[tenant], who), name, method, objects[which]))
        assert [i["ok"] for i in items] == [False] and items[0]["code"] in not_found, (tenant, who, which, items)
    assert without_log(counts(spec)) == without_log(before), "a refused cross-tenant batch wrote something"
    assert counts(spec)["aftersales.OperationLog"] == before["aftersales.OperationLog"]

    items = bulk_items(name, send(clients(a, call.denied), name, method, objects["own"]))
    assert [i["ok"] for i in items] == [False] and items[0]["code"] == call.perm, items
    after = counts(spec)
    assert after["aftersales.OperationLog"] - before["aftersales.OperationLog"] <= 1

    response = send(session_client(getattr(a, call.rightful)), name, method, objects["own"])
    assert response.status_code == 403 and error(response) == "ERR_AUTH_005", response.content

    response = send(clients(a, call.rightful), name, method, objects["own"])
    assert response.status_code == call.ok, response.content
    assert [i["ok"] for i in bulk_items(name, response)] == [True]


# --- authentication, everywhere --------------------------------------------------------------------------
def test_unauthenticated_is_401_everywhere(tenants):
    anonymous, forged = APIClient(), APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Token ast_not-a-real-token")
    failures, checked = [], 0
    for name, route in sorted(api_routes().items()):
        public = name in ROUTES and ROUTES[name].kind == "public"
        url = reverse(name, kwargs=random_kwargs(route))
        for method in route.methods:
            for client, code in ((anonymous, "ERR_AUTH_001"), (forged, "ERR_AUTH_002")):
                if method in UNSAFE:
                    response = getattr(client, method)(url, {}, format="json")
                else:
                    response = getattr(client, method)(url)
                checked += 1
                if public:
                    if response.status_code != 200 and client is anonymous:
                        failures.append(f"{method.upper()} {url}: public route answered {response.status_code}")
                elif response.status_code != 401 or error(response) != code:
                    how = "no credentials" if client is anonymous else "bad token"
                    failures.append(f"{method.upper()} {url} ({how}): {response.status_code} {error(response)}")
    assert checked > 20
    assert not failures, "\n".join(failures)


def test_a_member_of_no_agency_is_refused_everywhere(tenants, db):
    """A valid session of a user who belongs to no agency (e.g. back-office staff) sees no tenant data."""
    from tests.factories import UserFactory

    client = APIClient()
    client.force_login(UserFactory(username="no-agency"))
    failures = []
    for name, route in sorted(api_routes().items()):
        if name in ROUTES and ROUTES[name].kind == "public":
            continue
        url = reverse(name, kwargs=random_kwargs(route))
        for method in route.methods:
            if method in UNSAFE or method in IGNORED_METHODS:
                continue
            response = getattr(client, method)(url)
            if response.status_code not in (401, 403, 404):
                failures.append(f"{method.upper()} {url}: {response.status_code}")
    assert not failures, "\n".join(failures)
