"""The route table of the isolation and permission matrix (tests/test_api_matrix.py).

Every route under ``api/v1/`` in the URLconf must have an entry here, keyed by its URL name; a guard test
fails on a route that is missing and on an entry whose route is gone. An entry says how to build the
object a route acts on (for one tenant, on one store), which URL kwargs point at it, a minimal valid body
per method, the status the rightful caller gets, and the permission check a visible-store caller without
the permission meets (its ``ERR_PERM_…`` code and which fixture user that is).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

API_PREFIX = "api/v1/"

# Routes outside api/v1/ that the walk meets and that the matrix deliberately leaves out.
EXCLUDED_PREFIXES = {
    "webhooks/": "signature-protected, no user or session: tests/test_carrier_webhooks.py covers forged and "
                 "replayed deliveries",
    "api/schema/": "the public OpenAPI document (tests/test_api_schema_fuzz.py drives it)",
    "api/docs/": "Swagger UI over the public schema",
}
# Methods every DRF view answers without touching tenant data.
IGNORED_METHODS = {
    "options": "DRF metadata: the same answer for any id, existing or not (never confirms an object); "
               "still 401 without credentials, checked with the other methods",
    "head": "answered by the GET handler",
}


# --- the walk --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WalkedRoute:
    name: str
    path: str
    view: type | None
    methods: tuple[str, ...]


def _methods(callback) -> tuple[str, ...]:
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is None:  # a plain function view: allowed methods are not introspectable
        return ("?",)
    return tuple(m for m in cls.http_method_names if hasattr(cls, m) and m not in ("head", "trace"))


def _walk(resolver, prefix: str = "", namespace: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            path = prefix + str(entry.pattern)
            name = f"{namespace}{entry.name}" if entry.name else f"<unnamed {path}>"
            callback = entry.callback
            yield WalkedRoute(name, path, getattr(callback, "cls", None) or getattr(callback, "view_class", None),
                              _methods(callback))


def api_routes() -> dict[str, WalkedRoute]:
    """Every route under api/v1/ in the URLconf, by name (built fresh: the URLconf is the truth)."""
    routes: dict[str, WalkedRoute] = {}
    for route in _walk(get_resolver()):
        if route.path.startswith(API_PREFIX):
            routes.setdefault(route.name, route)
    return routes


def all_routes() -> list[WalkedRoute]:
    return list(_walk(get_resolver()))


# --- builders: one object of a route, for one tenant, on one store ------------------------------------------
SHIPPED_REASON = "ecom_order_shipped_refund_reason_not_arrive_on_time"
REJECT_REASON = "reverse_reject_request_reason_1"


def ticket(store, **overrides):
    from aftersales import services
    from tests.conftest import platform_return

    obj, _created = services.intake(store, platform_return(**overrides))
    return obj


def approved_ticket(store):
    return ticket(store, return_status="RETURN_OR_REFUND_REQUEST_SUCCESS")


def awaiting_buyer_ticket(store):
    return ticket(store, return_status="AWAITING_BUYER_RESPONSE")


def return_ticket(store):
    return ticket(store, return_type="RETURN_AND_REFUND")


def shipped_ticket(store):
    return ticket(store, return_reason=SHIPPED_REASON)


def replacement_approved(store):
    from aftersales import oplog, services

    obj = ticket(store, return_type="REPLACEMENT", return_status="REPLACEMENT_REQUEST_PENDING")
    services.approve(oplog.SYSTEM, obj.pk, "APPROVE_REPLACEMENT")
    return obj


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def upload(_obj) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return {"file": SimpleUploadedFile("p.png", png(), content_type="image/png"), "note": "box"}


def ticket_kwargs(obj) -> dict:
    return {"ticket_id": obj.public_id}


# Builders for the newer resources; each takes (tenant, store) and returns the object the URL or body names.
def member_of(tenant, who: str):
    return getattr(tenant, who)


def owner_actor(tenant):
    from stores.services import actor_for_user

    return actor_for_user(tenant.owner)


def quick_reply(tenant, store):
    from aftersales import replies

    return replies.create_quick_reply(owner_actor(tenant), title="Label", body="Please send a photo.", store=store)


def return_address(tenant, store):
    from logistics import addresses

    return addresses.create_return_address(owner_actor(tenant), str(store.public_id), warehouse="Main",
                                           contact_name="Li", phone=phone_for(store),
                                           line1="1 Main St", city="City")


def phone_for(store) -> str:
    """A valid number of the store's market's country (phonenumbers' own example)."""
    import phonenumbers

    example = phonenumbers.example_number_for_type(store.market.country, phonenumbers.PhoneNumberType.MOBILE)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def shipment(tenant, store):
    from django.utils import timezone

    from logistics.models import Carrier, ReturnShipment

    obj = return_ticket(store)
    return ReturnShipment.objects.create(agency=store.agency, ticket=obj, carrier=Carrier.objects.get(code="other"),
                                         tracking_number=f"T{obj.pk:08d}", format_check="unverified",
                                         registered_at=timezone.now())


def job(tenant, store):
    """A bulk job the agent started (a sub-account sees only its own jobs, the owner every job)."""
    from aftersales import jobs
    from stores.services import actor_for_user

    return jobs.start_bulk(actor_for_user(tenant.agent), "close", [str(ticket(store).public_id)], {})


def store_link(tenant, store):
    """The store linked to a TikTok Shop seller authorisation of its agency, with one finished sync run."""
    from aftersales.tiktok.models import PartnerApp, SellerAuthorization, StoreLink, SyncRun

    app, _ = PartnerApp.objects.for_agency(tenant.agency).get_or_create(
        agency=tenant.agency, app_key=f"{tenant.agency.slug}-matrix", defaults={"name": "M", "app_secret": "s"})
    auth, _ = SellerAuthorization.objects.for_agency(tenant.agency).get_or_create(
        agency=tenant.agency, app=app, open_id="matrix", defaults={"access_token": "a", "refresh_token": "r"})
    link, _ = StoreLink.objects.for_agency(tenant.agency).get_or_create(
        store=store, defaults={"agency": tenant.agency, "authorization": auth})
    SyncRun.objects.create(agency=tenant.agency, store=store, trigger="manual", status="succeeded")
    return link


def sync_run(tenant, store):
    from aftersales.tiktok.models import SyncRun

    store_link(tenant, store)
    return SyncRun.objects.for_agency(tenant.agency).filter(store=store).latest("id")


def failed_decision_ticket(tenant, store):
    """A request on a linked store whose decision TikTok Shop refused."""
    from aftersales.tiktok.models import PlatformDecision

    store_link(tenant, store)
    obj = ticket(store)
    PlatformDecision.objects.create(agency=tenant.agency, ticket=obj, operation="approve", decision="APPROVE_REFUND",
                                    idempotency_key=str(uuid.uuid4()), status="failed", error_code="ERR_TTS_003",
                                    platform_code=48001001)
    return obj


def finished_export(tenant, store):
    """An export job the agent started, run to the end (it has its CSV)."""
    from django.http import QueryDict

    from aftersales import jobs
    from stores.services import actor_for_user

    ticket(store)
    made = jobs.start_export(actor_for_user(tenant.agent), QueryDict(""), bom=True)
    jobs.run(made.pk)
    return made


def reasons_csv(obj) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = f"return_id,reason_code,reason_text,note\n{obj.return_id},wrong_size,Wrong size,matrix\n"
    return {"file": SimpleUploadedFile("reasons.csv", text.encode(), content_type="text/csv")}


def _on_store(fn):
    return lambda tenant, store: fn(store)


# --- the table -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One method of a route: a minimal valid body, what the rightful caller gets, and the permission."""

    body: Callable[[Any], Any] | None = None  # obj → body (None: no body)
    query: Callable[[Any], dict] | None = None  # obj → query string (GET)
    format: str = "json"
    ok: int = 200
    perm: str | None = None  # ERR_PERM_… a visible-store caller without the permission gets (None: view is enough)
    denied: str = "viewer"  # the fixture user who sees the store but lacks `perm`
    rightful: str = "agent"  # the fixture user who may do it (on stores[0])


# Who must not see what (tenant "a" = alpha, the caller's agency; "b" = bravo), as (tenant, user, object):
# "own" is built on alpha's stores[0] (agent and viewer hold it), "ungranted" on alpha's stores[2] (the agent
# does not hold it), "foreign" on bravo's stores[0].
STORE_HIDDEN = (("a", "owner", "foreign"), ("a", "agent", "foreign"), ("b", "owner", "own"),
                ("a", "agent", "ungranted"), ("a", "outsider", "own"), ("a", "outsider", "ungranted"))
AGENCY_HIDDEN = (("a", "owner", "foreign"), ("b", "owner", "own"))
# A sub-account sees only the jobs it started (the owner all of the agency's).
JOB_HIDDEN = (("a", "owner", "foreign"), ("a", "agent", "foreign"), ("b", "owner", "own"), ("a", "viewer", "own"),
              ("a", "outsider", "own"))
# Who sees which rows of a list: user → rows ("own", "ungranted"), or the ERR_PERM_ code they get instead.
STORE_LIST = {"owner": {"own", "ungranted"}, "agent": {"own"}, "viewer": {"own", "ungranted"}, "outsider": set()}
TEAM_LIST = {"owner": {"own", "ungranted"}, "agent": "ERR_PERM_006", "viewer": "ERR_PERM_006",
             "outsider": "ERR_PERM_006"}
JOB_LIST = {"owner": {"own", "ungranted"}, "agent": {"own", "ungranted"}, "viewer": set(), "outsider": set()}


def _not_found(response) -> bool:
    try:
        return response.status_code == 404 and response.json()["error"]["code"] == "ERR_NOT_FOUND"
    except (ValueError, KeyError, TypeError):
        return False


def _no_history(response) -> bool:
    """The buyer-history answer for a buyer the caller has no visible request of: empty, not an error."""
    return response.status_code == 200 and response.json()["requests_total"] == 0


@dataclass(frozen=True)
class Route:
    """kind: "object" (the URL or body names one tenant object → hidden when foreign/ungranted),
    "collection" (a list: foreign rows are absent), "bulk" (a collection-level write naming objects in the body:
    per-item ERR_NOT_FOUND), "global" (authenticated, not tenant data), "public" (no tenant data, no auth)."""

    kind: str
    build: Callable[[Any, Any], Any] | None = None  # (tenant, store) → object (collections: one row on that store)
    kwargs: Callable[[Any], dict] = ticket_kwargs
    calls: dict[str, Call] = field(default_factory=dict)
    counted: tuple[str, ...] = ("aftersales.AfterSalesRequest",)  # models whose rows must not change
    row_id: Callable[[Any], str] = lambda obj: str(obj.public_id)  # how a list shows the row
    hidden: tuple = STORE_HIDDEN  # object routes: who must get `hidden_ok` instead of the object
    hidden_ok: Callable[[Any], bool] = _not_found
    list_query: Callable[[Any], dict] | None = None  # collections: the query that lists a row of this object
    visibility: dict = field(default_factory=lambda: STORE_LIST)  # collections: who sees which rows
    write_hidden: tuple | None = None  # a list route's writes: who must get 404 (None: as `hidden`)
    note: str = ""


def _reject(_obj):
    return {"reason": REJECT_REASON, "comment": "used"}


def _store_kwargs(_store):
    return {}


def _today() -> str:
    from django.utils import timezone

    return timezone.now().date().isoformat()


def _address_body(store) -> dict:
    return {"store": str(store.public_id), "warehouse": "Second", "contact_name": "Wu",
            "phone": phone_for(store), "line1": "2 Side St", "city": "Town"}


def _assignment(obj) -> dict:
    """Give the member (the tenant's agent) the analyst role on stores[0] of their agency."""
    from stores.models import Membership, Role, Store

    agency = Membership.objects.unscoped().get(user=obj).agency
    role = Role.objects.for_agency(agency).get(slug="analyst")
    store = Store.objects.for_agency(agency).order_by("id").first()
    return {"role": str(role.public_id), "stores": [str(store.public_id)]}


TICKET = _on_store(ticket)
ROUTES: dict[str, Route] = {
    # --- stores, the error catalogue
    "store-list": Route("collection", build=lambda t, store: store, calls={"get": Call()}, counted=("stores.Store",)),
    "error-code-list": Route("public", calls={"get": Call()}, note="the catalogue: no tenant data, AllowAny"),
    # --- team management (团队管理): agency-level, owner or manage_team on every store; others a 403 that is the
    # same for an existing and a missing member, so it confirms nothing
    # creating a member or a role names nothing of another tenant: the checks are the 403, CSRF and the control
    "team-member-list": Route("collection", build=lambda t, s: t.agent if s == t.stores[0] else t.viewer,
                              row_id=lambda user: f'"{user.username}"', visibility=TEAM_LIST, write_hidden=(),
                              counted=("stores.Membership",),
                              calls={"get": Call(),
                                     "post": Call(lambda _s: {"username": f"new-{uuid.uuid4().hex[:12]}",
                                                              "password": "Zq8!matrix-Pass-2026"},
                                                  ok=201, perm="ERR_PERM_006", denied="agent", rightful="owner")}),
    "team-member-detail": Route(
        "object", build=lambda t, s: t.agent, kwargs=lambda user: {"username": user.username},
        row_id=lambda user: f'"{user.username}"', hidden=AGENCY_HIDDEN,
        counted=("stores.Membership", "stores.RoleAssignment"),
        calls={"get": Call(perm="ERR_PERM_006", denied="agent", rightful="owner"),
               "delete": Call(ok=204, perm="ERR_PERM_006", denied="agent", rightful="owner")}),
    "team-member-roles": Route(
        "object", build=lambda t, s: t.agent, kwargs=lambda user: {"username": user.username},
        row_id=lambda user: f'"{user.username}"', hidden=AGENCY_HIDDEN,
        counted=("stores.Membership", "stores.RoleAssignment"),
        calls={"post": Call(_assignment, perm="ERR_PERM_006", denied="agent", rightful="owner")}),
    "team-member-roles-revoke": Route(
        "object", build=lambda t, s: t.viewer, kwargs=lambda user: {"username": user.username},
        row_id=lambda user: f'"{user.username}"', hidden=AGENCY_HIDDEN,
        counted=("stores.Membership", "stores.RoleAssignment"),
        calls={"post": Call(_assignment, perm="ERR_PERM_006", denied="agent", rightful="owner")}),
    "team-role-list": Route("collection",
                            build=lambda t, s: t.roles["analyst" if s == t.stores[0] else "store-manager"],
                            visibility=TEAM_LIST, write_hidden=(), counted=("stores.Role",),
                            calls={"get": Call(),
                                   "post": Call(lambda _s: {"name": "Matrix role", "permissions": ["view_store"]},
                                                ok=201, perm="ERR_PERM_006", denied="agent", rightful="owner")}),
    "team-role-detail": Route(
        "object", build=lambda t, s: t.roles["analyst"], kwargs=lambda role: {"role_id": role.public_id},
        hidden=AGENCY_HIDDEN, counted=("stores.Role",),
        calls={"patch": Call(lambda role: {"permissions": ["view_store", "view_analytics"]}, perm="ERR_PERM_006",
                             denied="agent", rightful="owner")}),
    # --- after-sales: the queue, one request, its log
    "aftersales-list": Route("collection", build=TICKET, calls={"get": Call()}),
    "aftersales-detail": Route("object", build=TICKET, calls={"get": Call()}),
    "aftersales-logs": Route("object", build=TICKET, calls={"get": Call()}),
    # --- actions
    "aftersales-approve": Route("object", build=TICKET, calls={"post": Call(lambda o: {}, perm="ERR_PERM_001")}),
    "aftersales-reject": Route("object", build=TICKET, calls={"post": Call(_reject, perm="ERR_PERM_001")}),
    "aftersales-refund": Route("object", build=_on_store(approved_ticket),
                               calls={"post": Call(lambda o: {}, perm="ERR_PERM_001")}),
    "aftersales-request-evidence": Route("object", build=TICKET, calls={
        "post": Call(lambda o: {"message": "a photo of the label"}, perm="ERR_PERM_001")}),
    "aftersales-evidence": Route("object", build=TICKET,
                                 counted=("aftersales.AfterSalesRequest", "aftersales.Evidence"),
                                 calls={"post": Call(upload, format="multipart", ok=201, perm="ERR_PERM_001")}),
    "aftersales-close": Route("object", build=_on_store(awaiting_buyer_ticket),
                              calls={"post": Call(lambda o: {"comment": "done"}, perm="ERR_PERM_001")}),
    "aftersales-escalate": Route("object", build=TICKET, counted=("aftersales.AfterSalesRequest", "aftersales.Alert"),
                                 calls={"post": Call(lambda o: {"note": "needs a senior"}, perm="ERR_PERM_001")}),
    "aftersales-reply": Route("object", build=TICKET,
                              calls={"post": Call(lambda o: {"text": "We are on it."}, perm="ERR_PERM_001")}),
    "aftersales-ship-replacement": Route("object", build=_on_store(replacement_approved), calls={
        "post": Call(lambda o: {"carrier": "other", "tracking_number": "SX123"}, perm="ERR_PERM_001")}),
    "aftersales-tracking": Route("object", build=_on_store(return_ticket),
                                 counted=("aftersales.AfterSalesRequest", "logistics.ReturnShipment"),
                                 calls={"post": Call(lambda o: {"carrier": "other", "tracking_number": "AB123456"},
                                                     perm="ERR_PERM_003")}),
    "aftersales-intercept": Route("object", build=_on_store(shipped_ticket),
                                  counted=("aftersales.AfterSalesRequest", "logistics.Interception"),
                                  calls={"post": Call(lambda o: {"tracking_number": "OUT123"}, ok=201,
                                                      perm="ERR_PERM_003")}),
    # batch review: ids in the body; a foreign or ungranted id is a per-item ERR_NOT_FOUND, the viewer's a
    # per-item ERR_PERM_001 (partial failures never fail the batch, shared/API.md)
    "aftersales-bulk": Route("bulk", build=TICKET, kwargs=lambda obj: {}, calls={
        "post": Call(lambda o: {"action": "approve", "decision": "APPROVE_REFUND", "ids": [str(o.public_id)]},
                     perm="ERR_PERM_001")}),
    # --- ERP exchange
    "aftersales-export": Route("collection", build=TICKET, calls={"get": Call()}),
    "aftersales-bulk-jobs": Route("bulk", build=TICKET, kwargs=lambda obj: {}, counted=(), calls={
        "post": Call(lambda o: {"action": "approve", "decision": "APPROVE_REFUND", "ids": [str(o.public_id)]}, ok=202,
                     perm="ERR_PERM_001")},
        note="202 with a job; the job's report holds the per-item results (run in the test)"),
    "aftersales-import-reasons": Route("bulk", build=TICKET, kwargs=lambda obj: {}, calls={
        "post": Call(reasons_csv, format="multipart", perm="ERR_PERM_001")},
        note="dry run (the default): a per-row report; a foreign or ungranted return id is ERR_IMPORT_101"),
    "jobs-list": Route("collection", build=job, visibility=JOB_LIST, calls={"get": Call()},
                       counted=("aftersales.Job",)),
    "jobs-detail": Route("object", build=job, kwargs=lambda j: {"job_id": j.public_id}, hidden=JOB_HIDDEN,
                         counted=("aftersales.Job",), calls={"get": Call()}),
    "jobs-file": Route("object", build=finished_export, kwargs=lambda j: {"job_id": j.public_id}, hidden=JOB_HIDDEN,
                       counted=("aftersales.Job",), calls={"get": Call()}),
    # --- TikTok Shop connector
    "tiktok-connections": Route("collection", build=store_link, row_id=lambda link: str(link.store.public_id),
                                counted=("aftersales.StoreLink",), calls={"get": Call()}),
    "tiktok-sync-runs": Route("collection", build=sync_run, row_id=lambda run: str(run.store.public_id),
                              list_query=lambda run: {"store": str(run.store.public_id)},
                              counted=("aftersales.SyncRun",), calls={"get": Call()}),
    "tiktok-store-sync": Route("object", build=store_link, kwargs=lambda link: {"store_id": link.store.public_id},
                               row_id=lambda link: str(link.store.public_id), counted=("aftersales.SyncRun",),
                               calls={"post": Call(ok=202, perm="ERR_PERM_001")}),
    "aftersales-platform-resend": Route("object", build=failed_decision_ticket,
                                        counted=("aftersales.PlatformDecision",),
                                        calls={"post": Call(ok=202, perm="ERR_PERM_001")}),
    # --- quick replies, sensitive words, buyers, analytics
    "reply-list": Route("collection", build=quick_reply, list_query=lambda r: {"store": str(r.store.public_id)},
                        counted=("aftersales.QuickReply",),
                        calls={"get": Call(),
                               "post": Call(lambda store: {"title": "New", "body": "Hello {buyer_name}",
                                                           "store": str(store.public_id)},
                                            ok=201, perm="ERR_PERM_004")}),
    "reply-check": Route("object", build=lambda t, store: store, kwargs=_store_kwargs, counted=(),
                         calls={"post": Call(lambda store: {"text": "hello", "store": str(store.public_id)})}),
    "reply-detail": Route("object", build=quick_reply, kwargs=lambda r: {"reply_id": r.public_id},
                          counted=("aftersales.QuickReply",),
                          calls={"get": Call(),
                                 "patch": Call(lambda r: {"title": "Renamed"}, perm="ERR_PERM_004"),
                                 "delete": Call(ok=204, perm="ERR_PERM_004")}),
    "buyer-history": Route("object", build=lambda t, store: ticket(store, buyer_user_id=f"buyer-{store.pk}"),
                           kwargs=lambda o: {"buyer_id": o.buyer_user_id}, row_id=lambda o: o.buyer_user_id,
                           hidden_ok=_no_history, counted=(), calls={"get": Call()},
                           note="a buyer id is the platform's, not ours: an unseen buyer is an empty history"),
    "analytics-summary": Route("object", build=lambda t, store: store, kwargs=_store_kwargs, counted=(),
                               calls={"get": Call(query=lambda store: {"store": str(store.public_id), "days": 7},
                                                  perm="ERR_PERM_005", denied="agent", rightful="viewer")}),
    "analytics-order-volumes": Route(
        "object", build=lambda t, store: store, kwargs=_store_kwargs, counted=("aftersales.OrderVolume",),
        calls={"post": Call(lambda store: {"store": str(store.public_id),
                                           "rows": [{"date": _today(), "category": "apparel", "units_sold": 10}]},
                            perm="ERR_PERM_005", denied="agent", rightful="viewer")}),
    # --- logistics
    "carrier-list": Route("global", calls={"get": Call()}, note="carriers are shared reference data"),
    "dropoff-nearest": Route("global", calls={"get": Call()}, note="partner drop-off points are shared data"),
    "shipment-list": Route("collection", build=shipment, calls={"get": Call()}),
    "shipment-detail": Route("object", build=shipment, kwargs=lambda o: {"shipment_id": o.public_id},
                             calls={"get": Call()}),
    "return-address-list": Route("collection", build=return_address, counted=("logistics.ReturnAddress",),
                                 calls={"get": Call(),
                                        "post": Call(_address_body, ok=201, perm="ERR_PERM_003")}),
    "return-address-detail": Route("object", build=return_address, kwargs=lambda o: {"address_id": o.public_id},
                                   counted=("logistics.ReturnAddress",),
                                   calls={"get": Call(),
                                          "patch": Call(lambda o: {"warehouse": "Renamed"}, perm="ERR_PERM_003"),
                                          "delete": Call(ok=204, perm="ERR_PERM_003")}),
    "return-address-set-default": Route("object", build=return_address,
                                        kwargs=lambda o: {"address_id": o.public_id},
                                        counted=("logistics.ReturnAddress",),
                                        calls={"post": Call(perm="ERR_PERM_003")}),
}


def random_kwargs(route: WalkedRoute) -> dict:
    """Kwargs of the right converters for a route, pointing at nothing (for the 401 walk)."""
    import re

    kwargs: dict[str, Any] = {}
    for converter, name in re.findall(r"<(?:(\w+):)?(\w+)>", route.path):
        kwargs[name] = {"int": 1, "slug": "x", "path": "x"}.get(converter or "str", uuid.uuid4())
    return kwargs
