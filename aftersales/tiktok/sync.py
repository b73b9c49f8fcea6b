"""Pull sync: a store's returns and cancellations from TikTok Shop into after-sales requests.

Per store and object kind, a run reads the window ``[watermark − overlap, start of run)`` with Search Returns /
Search Cancellations sorted by ``update_time`` (reference §1.2: "poll with update_time_ge and
sort_field=update_time per shop"), page by page. A page enters through ``aftersales.services.intake_many`` — the
intake path the demo uses, a page at a time — so deadlines, auto-rules, logs and alerts apply unchanged, and it is
idempotent: an object already applied (same update time and status) changes nothing. For each object that changed,
the timeline and evidence (Get Return Records), the reject reasons and the decision eligibility are fetched too.

One run per store at a time: a lease on the store's ``StoreLink`` (claimed with one conditional UPDATE, renewed
after every page). The window and the page token in flight are saved with the lease after every page, so a run
that crashed is resumed by the next one (once the lease lapses) from the page it was reading — redoing at most
that page, which the idempotent upsert makes harmless. The watermark moves only when a window is read to its end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import socket
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aftersales import evidence, oplog, services
from aftersales.evidence import InspectedImage
from aftersales.models import AfterSalesRequest, Evidence
from aftersales.states import FINAL_STATES, Decision, RequestType
from aftersales.tiktok import session
from aftersales.tiktok.client import Client, TikTokError
from aftersales.tiktok.models import StoreLink, SyncRun
from stores import errors
from stores.errors import AppError

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # the largest page both searches accept (returns 10–50, cancellations 1–50)
INITIAL_DAYS = 30  # a store's first run reads this far back
RECORDS_PATH = "/return_refund/202309/returns/{id}/records"
REASONS_PATH = "/return_refund/202309/reject_reasons"
ELIGIBILITY_PATH = "/return_refund/202601/decision_eligibility"
# The decisions decision eligibility (202601) can check: OFFER_PARTIAL_REFUND is not among them (reference §1.1).
RETURN_DECISIONS = ["APPROVE_REFUND", "APPROVE_RETURN", "APPROVE_RECEIVED_PACKAGE", "APPROVE_REPLACEMENT",
                    "ISSUE_REPLACEMENT_REFUND", "DIRECT_REFUND", "REJECT_REFUND", "REJECT_RETURN",
                    "REJECT_RECEIVED_PACKAGE", "REJECT_REPLACEMENT"]
CANCEL_DECISIONS = [Decision.APPROVE_REQUEST_CANCEL.value, Decision.REJECT_REQUEST_CANCEL.value]


# Every field of a return (§1.3) and a cancellation (§1.8) the reference lists, read or not: anything else the
# platform sends is new to us — kept in the raw payload and named in the run's report.
KNOWN_FIELDS = {
    "returns": frozenset({
        "return_id", "order_id", "return_type", "return_status", "arbitration_status", "role", "return_reason",
        "return_reason_text", "seller_next_action_response", "shipment_type", "handover_method", "return_method",
        "return_tracking_number", "return_provider_id", "return_provider_name", "return_shipping_document_type",
        "return_warehouse_address", "can_buyer_keep_item", "is_quick_refund", "is_combined_return",
        "combined_return_id", "pre_return_id", "next_return_id", "seller_proposed_return_type", "partial_refund",
        "buyer_rejected_partial_refund", "refund_amount", "discount_amount", "shipping_fee_amount",
        "return_line_items", "return_sub_line_items", "create_time", "update_time", "buyer_user_id", "buyer_name",
        "reject_reasons"}),
    "cancellations": frozenset({
        "cancel_id", "order_id", "cancel_type", "cancel_status", "role", "cancel_reason", "cancel_reason_text",
        "seller_next_action_response", "refund_amount", "cancel_line_items", "cancel_sub_line_items",
        "should_replenish_stock", "create_time", "update_time", "buyer_user_id", "buyer_name"}),
}


@dataclass(frozen=True)
class Kind:
    name: str
    search: str
    list_key: str
    id_key: str
    ids_filter: str
    watermark: str


KINDS = {
    "returns": Kind("returns", "/return_refund/202309/returns/search", "return_orders", "return_id", "return_ids",
                    "returns_watermark"),
    "cancellations": Kind("cancellations", "/return_refund/202309/cancellations/search", "cancellations",
                          "cancel_id", "cancel_ids", "cancellations_watermark"),
}


TRANSIENT = frozenset({errors.ERR_TTS_002.code, errors.ERR_TTS_004.code})


class LeaseLost(Exception):
    """Another run took the store over (this one was silent longer than the lease): stop without writing."""


# --- the shape of a cancellation, as a request -------------------------------------------------------------
def as_request(kind: str, obj: dict) -> dict:
    """A platform object in the shape ``services.parse_return`` reads (a cancellation is renamed field by field)."""
    if kind == "returns":
        return obj
    items = [{**item, "return_line_item_id": item.get("cancel_line_item_id")}
             for item in obj.get("cancel_line_items") or [] if isinstance(item, dict)]
    return {**obj, "return_id": obj.get("cancel_id"), "return_type": "CANCELLATION",
            "return_status": obj.get("cancel_status") or "CANCELLATION_REQUEST_PENDING",
            "return_reason": obj.get("cancel_reason"), "return_reason_text": obj.get("cancel_reason_text"),
            "return_line_items": items}


# --- a page of objects ------------------------------------------------------------------------------------
def upsert_page(link: StoreLink, kind: str, objs: list, counts: Counter) -> list[AfterSalesRequest | None]:
    """Upsert a page in one batch (``services.intake_many``); per object its request, or None when refused.

    Refusals (no id, a malformed object) are counted and logged; the others go on."""
    id_key = KINDS[kind].id_key
    wanted: list[tuple[int, dict]] = []
    for index, obj in enumerate(objs):
        if not isinstance(obj, dict) or not obj.get(id_key):
            counts["errors"] += 1
            log.warning("TikTok Shop %s sync of store %s: an object without %s was skipped", kind, link.store_id,
                        id_key)
            continue
        unknown = sorted(set(obj) - KNOWN_FIELDS[kind])
        if unknown:
            counts["unknown_fields"] += 1
            for name in unknown[:20]:
                counts[f"field:{name[:60]}"] = 1  # collected into the run's unknown_fields
        wanted.append((index, as_request(kind, obj)))
    found: list[AfterSalesRequest | None] = [None] * len(objs)
    for (index, data), result in zip(wanted, services.intake_many(link.store, [d for _, d in wanted]), strict=True):
        if result.error is not None:  # a malformed object must not stop the store's sync; counted and logged
            counts["errors"] += 1
            log.warning("TikTok Shop %s %s of store %s refused: %s %s", kind, data.get("return_id"),
                        link.store_id, result.error.code, result.error.fields)
            continue
        ticket = result.ticket
        assert ticket is not None
        if ticket.platform_status_unknown:
            counts["unknown_status"] += 1
        counts["created" if result.created else "updated" if result.changed else "unchanged"] += 1
        found[index] = ticket
    return found


def apply_object(link: StoreLink, client: Client, kind: str, ticket: AfterSalesRequest | None,
                 counts: Counter) -> None:
    """After the page's upsert, one object: its timeline, reject reasons and eligibility when this version of
    the request has not had them yet (nothing for an object the upsert refused)."""
    if ticket is None:
        return
    if ticket.platform_details_at is not None and ticket.platform_details_at == ticket.platform_updated_at:
        return  # timeline, reasons and eligibility already fetched for this version of the request
    try:
        details(link, client, ticket, kind, counts)
    except TikTokError as exc:
        if exc.code in TRANSIENT:
            raise  # the platform is struggling: stop; the next run fetches the details again
        counts["errors"] += 1  # refused for this request only: the others go on; retried on its next change
        log.warning("TikTok Shop details of %s %s (store %s) refused: %s (platform %s)", kind, ticket.return_id,
                    link.store_id, exc.code, exc.platform_code)


def details(link: StoreLink, client: Client, ticket: AfterSalesRequest, kind: str, counts: Counter) -> None:
    """Timeline + evidence (returns), reject reasons and decision eligibility (open requests) for one request."""
    records: list[dict] | None = None
    if kind == "returns":
        data = client.call("GET", RECORDS_PATH.format(id=ticket.return_id), query={"locale": "en-US"})
        records = [r for r in data.get("records") or [] if isinstance(r, dict)]
        counts["records"] += len(records)
    reasons = eligibility = None
    downloads = fetch_images(ticket, records or [], api_host=urllib.parse.urlsplit(client.base_url).hostname or "")
    if ticket.state not in FINAL_STATES:
        data = client.call("GET", REASONS_PATH, query={"return_or_cancel_id": ticket.return_id, "locale": "en-US"})
        reasons = [{"name": str(r["name"])[:160], "text": str(r.get("text") or "")[:300]}
                   for r in data.get("reasons") or [] if isinstance(r, dict) and r.get("name")]
        decisions = CANCEL_DECISIONS if ticket.type == RequestType.CANCELLATION else RETURN_DECISIONS
        data = client.call("GET", ELIGIBILITY_PATH, query={"return_or_cancel_id": ticket.return_id,
                                                           "check_decisions": decisions, "locale": "en-US"})
        eligibility = {
            str(d["decision"]): {"eligible": bool(d.get("eligible")), "code": str(d.get("ineligible_code") or ""),
                                 "reason": str(d.get("ineligible_reason") or "")[:300]}
            for d in data.get("decisions") or [] if isinstance(d, dict) and d.get("decision")}
    save_details(ticket.pk, records=records, reasons=reasons, eligibility=eligibility, downloads=downloads,
                 version=ticket.platform_updated_at)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a redirect is an error here: it could lead anywhere


# No proxies from the environment, no redirects: a link from the platform is fetched where it says, or not at all.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def media_allowed(url: str, api_host: str) -> bool:
    """Only the platform's media hosts (settings.TTS_MEDIA_HOST_SUFFIXES) on a public address, or the partner
    app's own API host (an allowed host: the emulator serves its images there)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == api_host:
        return True
    if not any(host.endswith(suffix.lower()) for suffix in settings.TTS_MEDIA_HOST_SUFFIXES):
        return False
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 443)}
    except OSError:
        return False
    return all(ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses)


def fetch_images(ticket: AfterSalesRequest, records: list[dict], api_host: str = "") -> dict[str, InspectedImage]:
    """Download the record images not stored yet (the platform's links are signed and expire: reference §1.6).

    Each is read with the evidence size cap and checked like an upload; one that cannot be fetched or is not a
    valid image is kept as its link only (logged), never blocking the sync."""
    wanted = {_evidence_ref(r, str(i["url"])): str(i["url"]) for r in records for i in r.get("images") or []
              if isinstance(i, dict) and i.get("url")}
    if not wanted:
        return {}
    known = set(Evidence.objects.unscoped().filter(ticket_id=ticket.pk, platform_ref__in=list(wanted))
                .values_list("platform_ref", flat=True))
    found: dict[str, InspectedImage] = {}
    for ref, url in wanted.items():
        if ref in known or not media_allowed(url, api_host):
            continue
        try:
            with _OPENER.open(url, timeout=settings.TTS_HTTP_TIMEOUT_SECONDS) as response:
                data = response.read(evidence.max_bytes() + 1)
            if len(data) > evidence.max_bytes():
                raise AppError(errors.ERR_EVID_001)
            found[ref] = evidence.inspect_image(data)
        except (OSError, AppError) as exc:
            log.warning("TikTok Shop evidence image of request %s kept as a link only: %s", ticket.pk,
                        getattr(exc, "code", type(exc).__name__))
    return found


def _evidence_ref(record: dict, url: str) -> str:
    """Stable across syncs: the platform's media links are signed and expire (reference §1.6), so the query string
    (signature, expiry) changes from one read to the next while the object's path does not."""
    parts = urllib.parse.urlsplit(url)
    key = f"{record.get('role')}|{record.get('create_time')}|{parts.netloc}{parts.path}"
    return hashlib.sha256(key.encode()).hexdigest()


def save_details(ticket_id: int, *, records: list[dict] | None, reasons: list[dict] | None,
                 eligibility: dict | None, downloads: dict[str, InspectedImage] | None = None,
                 version: dt.datetime | None = None) -> int:
    """Store what was fetched on the request (locked); evidence items once each (images with their downloaded
    file where there is one). Returns the new evidence count."""
    downloads = downloads or {}
    roles = {"BUYER": Evidence.Role.BUYER, "SELLER": Evidence.Role.SELLER}
    with transaction.atomic():
        ticket = AfterSalesRequest.objects.unscoped().select_for_update().get(pk=ticket_id)
        fields = []
        if records is not None:
            ticket.platform_records = records[:200]
            fields.append("platform_records")
        if reasons:  # an empty list keeps the one held (the platform lists none only for requests done with)
            ticket.reject_reasons = reasons
            fields.append("reject_reasons")
        if eligibility is not None:
            ticket.platform_eligibility = eligibility
            fields.append("platform_eligibility")
        if version is not None and ticket.platform_updated_at == version:
            ticket.platform_details_at = version
            fields.append("platform_details_at")
        if fields:
            ticket.save(update_fields=[*fields, "updated_at"])
        rows = []
        for record in records or []:
            role = roles.get(str(record.get("role") or "").upper(), Evidence.Role.PLATFORM)
            for image in record.get("images") or []:
                if isinstance(image, dict) and image.get("url"):
                    rows.append(Evidence(agency_id=ticket.agency_id, ticket=ticket, role=role,
                                         kind=Evidence.Kind.IMAGE, url=str(image["url"])[:1000],
                                         width=_int(image.get("width")), height=_int(image.get("height")),
                                         note=str(record.get("description") or "")[:500],
                                         platform_ref=_evidence_ref(record, str(image["url"]))))
            for video in record.get("videos") or []:
                if isinstance(video, dict) and video.get("url"):
                    rows.append(Evidence(agency_id=ticket.agency_id, ticket=ticket, role=role,
                                         kind=Evidence.Kind.VIDEO, url=str(video["url"])[:1000],
                                         cover_url=str(video.get("cover") or "")[:1000],
                                         duration_millis=_int(video.get("duration_millis")),
                                         width=_int(video.get("width")), height=_int(video.get("height")),
                                         note=str(record.get("description") or "")[:500],
                                         platform_ref=_evidence_ref(record, str(video["url"]))))
        known = set(Evidence.objects.unscoped().filter(ticket_id=ticket.pk, platform_ref__in=[r.platform_ref
                                                                                             for r in rows])
                    .values_list("platform_ref", flat=True))
        rows = list({r.platform_ref: r for r in rows if r.platform_ref not in known}.values())
        if not rows:
            return 0
        written = []
        try:
            for row in rows:
                image = downloads.get(row.platform_ref)
                if image is not None:
                    row.content_type, row.size, row.sha256 = image.content_type, image.size, image.sha256
                    row.width, row.height = image.width, image.height
                    row.file.save(f"{uuid.uuid4().hex}.{image.extension}", ContentFile(image.data), save=False)
                    written.append(row)
            Evidence.objects.bulk_create(rows)
            oplog.record(ticket, performer=oplog.PLATFORM, action="platform_evidence", before=ticket.state,
                         after=ticket.state, payload={"added": len(rows), "files": len(written)})
        except BaseException:
            for row in written:  # files are not transactional
                row.file.storage.delete(row.file.name)
            raise
        return len(rows)


def _int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**31 else None


# --- the lease -------------------------------------------------------------------------------------------
def _links():
    return StoreLink.objects.unscoped()


def claim(store_id: int, owner: str) -> bool:
    now = timezone.now()
    until = now + dt.timedelta(seconds=settings.TTS_SYNC_LEASE_SECONDS)
    return bool(_links().filter(store_id=store_id, sync_enabled=True)
                .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
                .update(lease_owner=owner, lease_until=until, last_run_at=now))


def renew(store_id: int, owner: str, **changes) -> None:
    """Extend the lease (and save ``changes`` with it); LeaseLost when another run has taken the store."""
    until = timezone.now() + dt.timedelta(seconds=settings.TTS_SYNC_LEASE_SECONDS)
    if not _links().filter(store_id=store_id, lease_owner=owner).update(lease_until=until, **changes):
        raise LeaseLost(store_id)


def release(store_id: int, owner: str, **changes) -> None:
    _links().filter(store_id=store_id, lease_owner=owner).update(lease_owner="", lease_until=None, **changes)


# --- a run ----------------------------------------------------------------------------------------------
def _ts(value: dt.datetime) -> int:
    return int(value.timestamp())


def pull(link: StoreLink, client: Client, kind_name: str, owner: str, counts: Counter) -> None:
    """Read one kind's window to its end, resuming the window saved by a run that did not finish."""
    kind = KINDS[kind_name]
    progress = dict(link.progress or {})
    if progress.get("kind") != kind_name:
        watermark = getattr(link, kind.watermark)
        now = timezone.now()
        since = (watermark - dt.timedelta(seconds=settings.TTS_SYNC_OVERLAP_SECONDS) if watermark
                 else now - dt.timedelta(days=INITIAL_DAYS))
        # Up to and including the current second; the next window's overlap re-reads anything stamped in it later.
        progress = {"kind": kind_name, "since": _ts(since), "until": _ts(now) + 1, "page_token": ""}
        renew(link.store_id, owner, progress=progress)
    else:
        counts["resumed"] += 1
    while True:
        query: dict[str, Any] = {"page_size": PAGE_SIZE, "sort_field": "update_time", "sort_order": "ASC"}
        if progress["page_token"]:
            query["page_token"] = progress["page_token"]
        body = {"update_time_ge": progress["since"], "update_time_lt": progress["until"]}
        try:
            data = client.call("POST", kind.search, query=query, body=body)
        except TikTokError as exc:
            if not progress["page_token"] or exc.code != errors.ERR_TTS_003.code:
                raise
            # A saved page token the platform no longer accepts: read the window again from its start (the
            # upsert is idempotent, so re-reading costs calls, never duplicates).
            log.warning("TikTok Shop %s sync of store %s: saved page token refused (%s); window restarted",
                        kind_name, link.store_id, exc.platform_code)
            progress["page_token"] = ""
            renew(link.store_id, owner, progress=progress)
            continue
        counts["pages"] += 1
        rows = list(data.get(kind.list_key) or [])
        for ticket in upsert_page(link, kind_name, rows, counts):
            apply_object(link, client, kind_name, ticket, counts)
            renew(link.store_id, owner)  # a slow page (details, downloads) never outlives the lease
        token = str(data.get("next_page_token") or "")
        if not token:
            break
        # Keyset, not offset: the next read starts at the last update time seen (inclusive). An object updated
        # while the window is read leaves it (its new time is past ``until``), and with offset paging every row
        # after it would shift one place up and one would be skipped. Rows sharing that second are read again
        # (idempotent). Only when a whole page shares one second does the platform's page token carry on.
        last = max((_int(o.get("update_time")) or 0 for o in rows if isinstance(o, dict)), default=0)
        if last > progress["since"]:
            progress["since"], progress["page_token"] = last, ""
        else:
            progress["page_token"] = token
        renew(link.store_id, owner, progress=progress)
    finished = dt.datetime.fromtimestamp(progress["until"], tz=dt.UTC)
    renew(link.store_id, owner, progress={}, **{kind.watermark: finished})
    setattr(link, kind.watermark, finished)
    link.progress = {}


def sync_store(store_id: int, *, trigger: str = SyncRun.Trigger.SCHEDULE) -> SyncRun | None:
    """One run for one store; None when another run holds the store (it covers the same changes)."""
    owner = str(uuid.uuid4())
    if not claim(store_id, owner):
        return None
    link = (_links().select_related("store__market", "authorization__app").get(store_id=store_id))
    # Holding the lease, a run of this store still "running" and older than a lease died with its worker (a
    # webhook re-fetch beside us is younger): say so in the report.
    stale = timezone.now() - dt.timedelta(seconds=settings.TTS_SYNC_LEASE_SECONDS)
    SyncRun.objects.unscoped().filter(store_id=store_id, status=SyncRun.Status.RUNNING,
                                      started_at__lt=stale).update(
        status=SyncRun.Status.FAILED, finished_at=timezone.now(), error_code=errors.ERR_INTERNAL.code,
        message="abandoned: the worker stopped during the run; the next run resumed it")
    run = SyncRun.objects.create(agency_id=link.agency_id, store_id=store_id, trigger=trigger)
    counts: Counter = Counter()
    ok = False
    try:
        client = session.client_for(link)
        # Resume first the kind a crashed run left unfinished, then the others.
        order = sorted(KINDS, key=lambda k: k != (link.progress or {}).get("kind"))
        for kind_name in order:
            pull(link, client, kind_name, owner, counts)
        run.status = SyncRun.Status.SUCCEEDED
        ok = True
    except LeaseLost:
        run.status, run.error_code = SyncRun.Status.FAILED, errors.ERR_TTS_010.code
        run.message = str(errors.ERR_TTS_010.message)
    except AppError as exc:
        _failed(run, exc)
        log.warning("TikTok Shop sync of store %s failed: %s (platform %s)", store_id, exc.code, run.platform_code)
    finally:
        _finish(run, counts)
        release(store_id, owner, **({"last_success_at": run.finished_at} if ok else {}))
    return run


def _failed(run: SyncRun, exc: AppError) -> None:
    run.status, run.error_code = SyncRun.Status.FAILED, exc.code
    run.platform_code = getattr(exc, "platform_code", None)
    run.message = (getattr(exc, "platform_message", "") or exc.detail or str(exc.error.message))[:500]


def _finish(run: SyncRun, counts: Counter) -> None:
    """Write the run's report; a run still "running" here is leaving on an unexpected exception."""
    run.finished_at = timezone.now()
    run.counts, run.unknown_fields = _report(counts)
    if run.status == SyncRun.Status.RUNNING:
        run.status, run.error_code = SyncRun.Status.FAILED, errors.ERR_INTERNAL.code
    run.save()


def _report(counts: Counter) -> tuple[dict[str, int], list[str]]:
    fields = sorted(k.removeprefix("field:") for k in counts if k.startswith("field:"))
    if fields:
        log.warning("TikTok Shop sent fields this version does not read (kept raw): %s", ", ".join(fields[:20]))
    return {k: v for k, v in counts.items() if not k.startswith("field:")}, fields[:100]


def refresh_objects(store_id: int, kind: str, ids: list[str], *, trigger: str = SyncRun.Trigger.WEBHOOK) -> dict:
    """Re-fetch named objects (a webhook said they changed) and apply them like the pull does.

    Does not take the store's lease: it touches only these objects, each through the locked, idempotent intake,
    so it may run beside a pull. Returns the counts."""
    if kind not in KINDS:
        raise AppError(errors.ERR_VALIDATION, fields={"kind": [f"one of {sorted(KINDS)}"]})
    link = _links().select_related("store__market", "authorization__app").filter(store_id=store_id).first()
    if link is None:
        raise AppError(errors.ERR_TTS_006)
    client = session.client_for(link)
    counts: Counter = Counter()
    wanted = [str(i) for i in ids if i][:50]
    run = SyncRun.objects.create(agency_id=link.agency_id, store_id=store_id, trigger=trigger)
    try:
        if wanted:
            data = client.call("POST", KINDS[kind].search,
                               query={"page_size": PAGE_SIZE},
                               body={KINDS[kind].ids_filter: wanted})
            for ticket in upsert_page(link, kind, list(data.get(KINDS[kind].list_key) or []), counts):
                apply_object(link, client, kind, ticket, counts)
        run.status = SyncRun.Status.SUCCEEDED
    except AppError as exc:
        _failed(run, exc)
        raise
    finally:
        _finish(run, counts)
    return dict(counts)


def request_sync(store_id: int, *, trigger: str = SyncRun.Trigger.MANUAL) -> None:
    """Start a pull for the store after the current transaction commits."""
    from aftersales.tiktok.tasks import sync_store as task

    transaction.on_commit(lambda: task.delay(store_id, trigger))


def linked_store_ids() -> list[int]:
    """Stores the schedule pulls: linked, sync on, authorisation usable."""
    return list(_links().filter(sync_enabled=True, authorization__status="active", authorization__app__is_active=True)
                .order_by("store_id").values_list("store_id", flat=True))
