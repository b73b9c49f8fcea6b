"""Background jobs (exports, return-reason imports, batch actions): who sees them, how they run.

A job is created in the request that starts it and handed to the ``aftersales.run_job`` task with
``delay_on_commit`` (a rolled-back request starts nothing). The task takes the job's id and re-reads it:

- **Claim**: under the job's row lock a queued job becomes running with a fresh ``runner`` token. A finished job
  is left alone (a redelivered message does nothing). A running job whose runner reported within
  ``LEASE_SECONDS`` is someone else's: the task retries later. A silent runner (its worker died; acks_late
  redelivers the message) is taken over. After ``MAX_ATTEMPTS`` claims the job fails with ``ERR_JOB_002``.
- **Progress**: ``done`` / ``total`` (and the report so far) are written every batch, conditionally on the
  runner token: a runner that lost its claim stops at its next write.
- **Resume**: batch actions and imports continue after the last saved batch (items of an interrupted batch run
  again: the state machine refuses a second approval, an import row is applied once per job — its log row
  carries the job id and row number). An export restarts from the first row: the file is written to a
  temporary file and stored only when complete, so a half export is never visible.

- **Lost messages and runners**: beat runs ``aftersales.resume_stale_jobs`` every five minutes; it enqueues
  again every unfinished job nobody has touched for ``STALE_AFTER`` (a queued job whose message was lost, a
  running one whose worker died and whose message will not come back soon — Redis redelivers an unacked
  message only after its visibility timeout). The claim above makes a duplicate harmless.

Visibility (``jobs_for_actor``): the agency owner sees every job of the agency; a sub-account sees the jobs
they started. Anyone else — another agency, another sub-account — gets 404.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Func, Q, QuerySet, TextField
from django.http import QueryDict
from django.utils import timezone
from rest_framework import exceptions

from aftersales import services
from aftersales.models import AfterSalesRequest, Job
from aftersales.oplog import Performer
from stores import errors
from stores.errors import AppError
from stores.scoping import Actor
from stores.services import actor_for_user

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
MAX_ATTEMPTS = 5
BULK_PROGRESS_EVERY = 200  # ids per progress write (one services.bulk call each)
IMPORT_PROGRESS_EVERY = 200
EXPORT_PROGRESS_EVERY = 2000
EXPORT_CHUNK_SIZE = 2000  # rows per fetch from the server-side cursor
STREAM_BLOCK_ROWS = 200  # rows per chunk of the streamed response
DEFAULT_EXPORT_SYNC_MAX_ROWS = 50_000
DEFAULT_BULK_JOB_MAX_IDS = 10_000


def export_sync_max_rows() -> int:
    """Above this many rows ``export.csv`` answers 202 with an export job instead of streaming."""
    return int(getattr(settings, "EXPORT_SYNC_MAX_ROWS", DEFAULT_EXPORT_SYNC_MAX_ROWS))


def bulk_job_max_ids() -> int:
    return int(getattr(settings, "BULK_JOB_MAX_IDS", DEFAULT_BULK_JOB_MAX_IDS))


class Busy(Exception):
    """Another runner holds the job and reported recently: try again after the lease."""


class LostClaim(Exception):
    """This runner's claim was taken over; it stops without writing anything more."""


# --- visibility ----------------------------------------------------------------------------------------------
def jobs_for_actor(actor: Actor | None) -> QuerySet[Job]:
    """Owners: every job of their agency. Sub-accounts: the jobs they started."""
    qs = Job.objects.for_actor(actor).select_related("created_by")
    if actor is not None and not actor.is_owner:
        qs = qs.filter(created_by_id=actor.user_id)
    return qs


def job_for_actor(actor: Actor, job_id) -> Job:
    job = jobs_for_actor(actor).by_id(str(job_id)).first()
    if job is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return job


def create(actor: Actor, kind: str, params: dict[str, Any], *, total: int = 0) -> Job:
    """A queued job for the caller; the task is enqueued when the surrounding transaction commits."""
    from aftersales.tasks import run_job

    with transaction.atomic():
        job = Job.objects.create(agency_id=actor.agency_id, created_by_id=actor.user_id, kind=kind, params=params,
                                 total=total)
        run_job.delay_on_commit(job.pk)
    return job


# --- starting jobs -------------------------------------------------------------------------------------------
def start_bulk(actor: Actor, action: str, ids: Iterable, params: dict[str, Any]) -> Job:
    """批量审核 as a job: every id through ``services.bulk`` in batches, one result per id in the report."""
    if action not in services.BULK_ACTIONS:
        raise AppError(errors.ERR_BULK_002)
    unique = list(dict.fromkeys(str(i) for i in ids))
    limit = bulk_job_max_ids()
    if len(unique) > limit:
        raise AppError(errors.ERR_JOB_003, data={"limit": limit},
                       fields={"ids": [f"at most {limit} ids per job, got {len(unique)}"]})
    return create(actor, Job.Kind.BULK_ACTION, {"action": action, "ids": unique, "params": params},
                  total=len(unique))


def start_export(actor: Actor, query: QueryDict, *, bom: bool) -> Job:
    return create(actor, Job.Kind.EXPORT, {"query": {k: v for k, v in query.lists()}, "bom": bom})


# --- the CSV export ------------------------------------------------------------------------------------------
def _iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value is not None else ""


def _money(value) -> str:
    return "" if value is None else str(Decimal(value).quantize(Decimal("0.01")))


def _flag(value) -> str:
    return "true" if value else "false"


# SQL of each formatter, written so Postgres produces exactly what the Python one does: the export runs as one
# ``COPY … TO STDOUT`` (no row becomes a Python object), and ``export_rows`` (small callers, tests) agrees with it.
_TEXT = "%(expressions)s::text"
_ISO = ("replace(to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', '') "
        "|| '+00:00'")
_FLAG = "CASE WHEN %(expressions)s IS NULL THEN 'false' ELSE 'true' END"
_TAGS = "array_to_string(%(expressions)s, ';')"
# A free-text cell in SQL: formula-safe like ``safe_cell``, then quoted like csv.writer's QUOTE_MINIMAL (only when
# it holds a comma, a quote or a line break; quotes doubled). Plain string functions, no regular expressions:
# 12 free-text cells and 7 times per row make this the export's main cost (docs/BENCHMARKS.md).
_SAFE = ("(CASE WHEN left({v}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) THEN '''' || {v} ELSE {v} END)")
_CELL = ("(CASE WHEN strpos({v}, ',') > 0 OR strpos({v}, '\"') > 0 OR strpos({v}, chr(10)) > 0 "
         "OR strpos({v}, chr(13)) > 0 THEN '\"' || replace({safe}, '\"', '\"\"') || '\"' ELSE {safe} END)")
# Columns whose formatted values never need either (every other column is treated as free text).
GENERATED = {"id", "store_id", "type", "status", "refund_total", "refunded", "created_at", "updated_at",
             "platform_created_at", "state_changed_at", "due_at", "breached_at", "stalled", "stalled_at"}


def _tags(tags) -> str:
    return ";".join(tags or [])


# (column, source field, formatter, its SQL) — the documented columns of export.csv, in order
# (docs/ARCHITECTURE.md).
EXPORT_COLUMNS: list[tuple[str, str, Any, str]] = [
    ("id", "public_id", str, _TEXT),
    ("store_id", "store__public_id", str, _TEXT),
    ("store", "store__name", str, _TEXT),
    ("market", "store__market__code", str, _TEXT),
    ("return_id", "return_id", str, _TEXT),
    ("order_id", "order_id", str, _TEXT),
    ("type", "type", str, _TEXT),
    ("status", "state", str, _TEXT),
    ("platform_status", "platform_status", str, _TEXT),
    ("reason_key", "reason_key", str, _TEXT),
    ("reason_text", "reason_text", str, _TEXT),
    ("refund_total", "refund_total", _money, _TEXT),
    ("refunded", "refunded_amount", _money, _TEXT),
    ("currency", "currency", str, _TEXT),
    ("created_at", "created_at", _iso, _ISO),
    ("updated_at", "updated_at", _iso, _ISO),
    ("platform_created_at", "platform_created_at", _iso, _ISO),
    ("state_changed_at", "state_changed_at", _iso, _ISO),
    ("due_at", "due_at", _iso, _ISO),
    ("due_kind", "due_kind", str, _TEXT),
    ("breached_at", "breached_at", _iso, _ISO),
    ("stalled", "stalled_at", _flag, _FLAG),
    ("stalled_at", "stalled_at", _iso, _ISO),
    ("assignee", "export_assignee", str, _TEXT),
    ("tags", "tags", _tags, _TAGS),
    ("tracking_number", "export_tracking_number", str, _TEXT),
]
EXPORT_HEADER = [name for name, _source, _fmt, _sql in EXPORT_COLUMNS]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """CSV injection: a cell a spreadsheet would run as a formula is prefixed with an apostrophe."""
    return "'" + value if value.startswith(FORMULA_START) else value


def export_queryset(actor: Actor | None, query, *, user=None) -> QuerySet:
    """The list's filters (``TicketFilter``) and order (``?ordering=``) on the caller's queue, as plain values.

    ``query`` is the request's query dict (or the stored ``{name: [values]}`` of a job); invalid filters raise
    the same validation error as the list."""
    from aftersales.api.filters import ORDERINGS, TicketFilter
    from aftersales.api.pagination import Ordering

    if not isinstance(query, QueryDict):
        data = QueryDict(mutable=True)
        for key, values in (query or {}).items():
            data.setlist(key, list(values))
        query = data
    base = AfterSalesRequest.objects.for_actor(actor, stores_first=True)
    request = SimpleNamespace(user=user or SimpleNamespace(pk=getattr(actor, "user_id", None)))
    filterset = TicketFilter(data=query, queryset=base, request=request)
    if not filterset.is_valid():
        raise exceptions.ValidationError(filterset.errors)
    name = query.get("ordering") or "due_at"
    if name not in ORDERINGS:
        raise exceptions.ValidationError({"ordering": ["Unknown ordering."]})
    order = Ordering(name.lstrip("-"), descending=name.startswith("-"))
    return (filterset.qs
            .annotate(export_assignee=F("assignee__username"),
                      export_tracking_number=F("return_shipment__tracking_number"))
            .order_by(*order.forward())
            .values(*[source for _name, source, _fmt, _sql in EXPORT_COLUMNS if source != "stalled_at"],
                    "stalled_at"))


def export_rows(qs: QuerySet) -> Iterator[list[str]]:
    """One list of cells per row, read from a server-side cursor (``iterator``: a named cursor on Postgres)."""
    for row in qs.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        yield [safe_cell(fmt(row[source]) if row[source] is not None or fmt is _flag else "")
               for _n, source, fmt, _sql in EXPORT_COLUMNS]


def line_expression() -> Func:
    """The whole CSV line of a row as one SQL expression (``export_rows`` + ``csv.writer``, in Postgres): the
    server formats every cell and the client only moves finished lines — 1 M rows at the speed of the query
    (docs/BENCHMARKS.md) instead of 26 M conversions in Python."""
    cells = []
    for i, (name, _source, _fmt, sql) in enumerate(EXPORT_COLUMNS):
        value = sql.replace("%(expressions)s", f"%(expressions_{i})s")
        if name in GENERATED:
            cells.append(f"COALESCE({value}, '')")
        else:
            text = f"COALESCE({value}, '')"  # a column reference: using it several times costs nothing
            cells.append(_CELL.format(v=text, safe=_SAFE.format(v=text)))
    return _Line([F(source) for _name, source, _fmt, _sql in EXPORT_COLUMNS], " || ',' || ".join(cells))


class _Line(Func):
    """A template over many source columns, each named ``%(expressions_<i>)s`` (Func joins them into one)."""

    output_field = TextField()

    def __init__(self, sources: list, template: str):
        super().__init__(*sources)
        self.template = template

    def as_sql(self, compiler, connection, function=None, template=None, arg_joiner=None, **extra_context):
        parts, params = [], []
        for arg in self.source_expressions:
            sql, arg_params = compiler.compile(arg)
            parts.append(sql)
            params.extend(arg_params)
        if params:  # columns only: a parameter would be needed once per use in the template
            raise ValueError("export line sources must be plain columns")
        return self.template % {f"expressions_{i}": part for i, part in enumerate(parts)}, params


def export_lines(qs: QuerySet) -> Iterator[str]:
    """The CSV lines (``\\r\\n``-terminated, as csv.writer writes them), read from a server-side cursor."""
    lines = qs.annotate(export_line=line_expression()).values_list("export_line", flat=True)
    for line in lines.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        yield line + "\r\n"


def header(*, bom: bool) -> bytes:
    return (codecs.BOM_UTF8 if bom else b"") + (",".join(EXPORT_HEADER) + "\r\n").encode("utf-8")


def stream_csv(qs: QuerySet, *, bom: bool) -> Iterator[bytes]:
    """The streamed body: header (after the BOM), then blocks of lines; constant memory whatever the size."""
    yield header(bom=bom)
    block: list[str] = []
    for line in export_lines(qs):
        block.append(line)
        if len(block) >= STREAM_BLOCK_ROWS:
            yield "".join(block).encode("utf-8")
            block = []
    if block:
        yield "".join(block).encode("utf-8")


# --- running -------------------------------------------------------------------------------------------------
def _now() -> dt.datetime:
    return timezone.now()


STALE_AFTER = dt.timedelta(minutes=5)


def stale_job_ids(limit: int = 100) -> list[int]:
    """Unfinished jobs with no sign of life for ``STALE_AFTER`` (on the partial index of unfinished jobs)."""
    quiet = _now() - STALE_AFTER
    return list(Job.objects.unscoped().filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING],
                                              updated_at__lt=quiet)
                .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=quiet))
                .order_by("updated_at").values_list("pk", flat=True)[:limit])


def claim(job_id: int) -> tuple[Job, str] | None:
    """Take the job for this run (see the module doc); None when there is nothing to do."""
    now = _now()
    with transaction.atomic():
        job = Job.objects.unscoped().select_for_update().filter(pk=job_id).first()
        if job is None or job.finished:
            return None
        if (job.status == Job.Status.RUNNING and job.heartbeat_at is not None
                and now - job.heartbeat_at < dt.timedelta(seconds=LEASE_SECONDS)):
            raise Busy(job_id)
        if job.attempts >= MAX_ATTEMPTS:
            Job.objects.unscoped().filter(pk=job.pk).update(
                status=Job.Status.FAILED, error_code=errors.ERR_JOB_002.code, finished_at=now, heartbeat_at=None,
                updated_at=now)
            return None
        token = uuid.uuid4().hex
        job.status, job.runner, job.heartbeat_at = Job.Status.RUNNING, token, now
        job.attempts += 1
        job.started_at = job.started_at or now
        job.save(update_fields=["status", "runner", "heartbeat_at", "attempts", "started_at", "updated_at"])
    return job, token


def _progress(job: Job, token: str, **fields) -> None:
    now = _now()
    changed = Job.objects.unscoped().filter(pk=job.pk, runner=token, status=Job.Status.RUNNING).update(
        heartbeat_at=now, updated_at=now, **fields)
    if not changed:
        raise LostClaim(job.pk)


def _finish(job: Job, token: str, status: str, *, error_code: str = "", **fields) -> None:
    now = _now()
    Job.objects.unscoped().filter(pk=job.pk, runner=token, status=Job.Status.RUNNING).update(
        status=status, error_code=error_code, finished_at=now, heartbeat_at=None, updated_at=now, **fields)


def _actor(job: Job) -> Actor:
    """The job runs as the member who started it, with their permissions as they are now."""
    actor = actor_for_user(job.created_by) if job.created_by_id else None
    if actor is None or actor.agency_id != job.agency_id:
        raise AppError(errors.ERR_AUTH_004)
    return actor


def run(job_id: int) -> str:
    """Run (or resume) one job; returns its status (or "skipped" / "lost")."""
    claimed = claim(job_id)
    if claimed is None:
        return "skipped"
    job, token = claimed
    try:
        RUNNERS[job.kind](job, token, _actor(job))
    except LostClaim:
        return "lost"
    except AppError as exc:
        _finish(job, token, Job.Status.FAILED, error_code=exc.code)
        return Job.Status.FAILED
    except exceptions.ValidationError:  # stored filters that no longer validate
        _finish(job, token, Job.Status.FAILED, error_code=errors.ERR_VALIDATION.code)
        return Job.Status.FAILED
    except SoftTimeLimitExceeded:
        _finish(job, token, Job.Status.FAILED, error_code=errors.ERR_JOB_002.code)
        return Job.Status.FAILED
    except (OperationalError, InterfaceError):
        # The task retries (DB_RETRY); let the retry take over at once instead of waiting for the lease.
        try:
            Job.objects.unscoped().filter(pk=job.pk, runner=token).update(heartbeat_at=None)
        except (OperationalError, InterfaceError):
            log.warning("job %s: could not release the claim; the lease will expire", job.pk)
        raise
    except Exception:
        log.exception("job %s failed", job.pk)
        _finish(job, token, Job.Status.FAILED, error_code=errors.ERR_INTERNAL.code)
        return Job.Status.FAILED
    return Job.Status.SUCCEEDED


def _summary(results: list[dict]) -> dict:
    ok = sum(1 for r in results if r["ok"])
    return {"succeeded": ok, "failed": len(results) - ok}


def _run_bulk(job: Job, token: str, actor: Actor) -> None:
    ids, action, params = job.params["ids"], job.params["action"], job.params.get("params") or {}
    results: list[dict] = list(job.report.get("results") or [])[: job.done]  # resume after the last batch
    performer = Performer.of(actor)
    for start in range(len(results), len(ids), BULK_PROGRESS_EVERY):
        results += services.bulk(performer, action, ids[start:start + BULK_PROGRESS_EVERY], params)
        _progress(job, token, done=len(results), report={"results": results, **_summary(results)})
    _finish(job, token, Job.Status.SUCCEEDED, done=len(results), total=len(ids),
            report={"results": results, **_summary(results)})


def _run_import(job: Job, token: str, actor: Actor) -> None:
    from aftersales import imports

    records = job.params["rows"]
    results: list[dict] = list(job.report.get("rows") or [])[: job.done]
    checked, pks = imports.check_rows(actor, records)  # re-checked now: visibility and permissions may have moved
    performer = Performer.of(actor)
    for start in range(len(results), len(records), IMPORT_PROGRESS_EVERY):
        end = min(start + IMPORT_PROGRESS_EVERY, len(records))
        for i in range(start, end):
            results.append(imports.apply_checked(performer, records[i], checked[i], pks[i], job_key=str(job.public_id)))
        _progress(job, token, done=len(results), report={"rows": results, **_summary(results)})
    _finish(job, token, Job.Status.SUCCEEDED, done=len(results), total=len(records),
            report={"rows": results, **_summary(results)})


def _run_export(job: Job, token: str, actor: Actor) -> None:
    qs = export_queryset(actor, job.params.get("query") or {})
    total = qs.order_by().count()
    _progress(job, token, total=total, done=0)  # an export restarts from its first row
    written = 0
    with tempfile.TemporaryFile() as raw:
        raw.write(header(bom=job.params.get("bom", True)))
        block: list[str] = []
        for line in export_lines(qs):
            block.append(line)
            written += 1
            if written % EXPORT_PROGRESS_EVERY == 0:
                raw.write("".join(block).encode("utf-8"))
                block = []
                _progress(job, token, done=written)
        raw.write("".join(block).encode("utf-8"))
        raw.seek(0)
        storage = Job._meta.get_field("result_file").storage
        stamp = _now().strftime("%Y/%m")
        name = storage.save(f"jobs/{stamp}/export-{job.public_id}.csv", File(raw))
    _finish(job, token, Job.Status.SUCCEEDED, done=written, total=max(total, written), result_file=name,
            report={"rows": written, "columns": EXPORT_HEADER})


RUNNERS = {Job.Kind.BULK_ACTION: _run_bulk, Job.Kind.IMPORT_REASONS: _run_import, Job.Kind.EXPORT: _run_export}
