"""Imports & exports (导入导出) in the portal: the person's background jobs with their progress, a CSV export of the
queue as filtered, the return-reason import (批量导入退货原因: a dry-run check first, then the job), one job's page
(progress bar, per-item results or report, its file) and the small status document its page polls.

Thin adapters over ``aftersales.jobs`` and ``aftersales.imports``: who sees which job is ``jobs.jobs_for_actor``
(the owner every job of the agency, a sub-account their own; anything else is "not found"), the export is
``jobs.start_export`` over the queue's filters (``portal.batch_scope``), the import is ``imports.read_file`` →
``imports.dry_run`` → ``imports.start``. Each starting form acts once per form key (``portal.request.run_once``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.base import ContentFile
from django.http import FileResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_POST

from aftersales import imports, jobs
from aftersales.models import Job
from aftersales.oplog import Performer
from portal import batch_scope
from portal.batch_items import bulk_outcome, import_rows, item_error
from portal.request import ACTION_LABELS, KEY_FIELD, ShownError, done_message, new_key, run_once
from portal.views import no_agency, stores_in_view
from stores import errors
from stores.errors import AppError
from stores.services import actor_for_user

LISTED_JOBS = 50  # the newest jobs on the list page
# The rows of a checked file (dry run), until its import starts: a JSON file in the storage the jobs' files use
# (shared by every web and worker process), named by the user's id and a random token; the page's start form
# carries the token. Not the session (loaded on every request: thousands of rows would ride along each page) and
# not the cache (no CACHES configured: local memory, per process, so another worker would not find them).
CHECKED_DIR = "jobs/checked"
CHECKED_SECONDS = 30 * 60
EXPIRED = gettext_lazy("The checked file expired: check it again.")
POLL_MS = 1000


def performer(actor) -> Performer:
    return Performer.of(actor)


def progress_text(job: Job) -> str:
    """"n of m" (plural-aware); while the total is not known yet (an export counting its rows), just n."""
    if not job.total:
        return ngettext("%(done)s item done", "%(done)s items done", job.done) % {"done": job.done}
    return ngettext("%(done)s of %(total)s done", "%(done)s of %(total)s done", job.total) % {
        "done": job.done, "total": job.total}


def percent(job: Job) -> int:
    if job.status == Job.Status.SUCCEEDED:
        return 100
    return min(100, int(job.done * 100 / job.total)) if job.total else 0


def job_error(job: Job) -> ShownError | None:
    return item_error(job.error_code) if job.error_code else None


def describe(job: Job) -> str:
    """What the job does, in a few words (the batch action, the imported file's name)."""
    params = job.params if isinstance(job.params, dict) else {}
    if job.kind == Job.Kind.BULK_ACTION:
        return str(ACTION_LABELS.get(params.get("action", ""), params.get("action", "")))
    if job.kind == Job.Kind.IMPORT_REASONS:
        return str(params.get("filename") or "")
    return ""


def _actor_or_none(request):
    return actor_for_user(request.user)


def _scope(request, actor):
    _stores, current, scope = stores_in_view(request, actor)
    return scope, current


def _storage():
    return Job._meta.get_field("result_file").storage


def _checked_name(user_id: int, token: str) -> str:
    return f"{CHECKED_DIR}/{int(user_id)}-{token}.json"


def _purge_checked(now: float) -> None:
    """Checked files nobody started within the time allowed (of anyone: a few files per half hour)."""
    storage = _storage()
    try:
        names = storage.listdir(CHECKED_DIR)[1]
    except FileNotFoundError:
        return
    for name in names:
        path = f"{CHECKED_DIR}/{name}"
        try:
            if storage.get_modified_time(path).timestamp() < now - CHECKED_SECONDS:
                storage.delete(path)
        except FileNotFoundError:
            continue  # another process purged it first


def keep_checked(user_id: int, filename: str, records: list[dict]) -> str:
    """Keep a checked file's rows for its import; returns the token the start form carries."""
    now = time.time()
    _purge_checked(now)
    token = uuid.uuid4().hex
    body = json.dumps({"at": now, "filename": filename[:200], "records": records}, ensure_ascii=False)
    _storage().save(_checked_name(user_id, token), ContentFile(body.encode("utf-8")))
    return token


def checked(user_id: int, token: str) -> tuple[str, dict]:
    """``(its storage name, {filename, records})`` of this user's checked file; gone, expired or someone else's →
    ERR_VALIDATION (check the file again)."""
    expired = AppError(errors.ERR_VALIDATION, fields={"file": [str(EXPIRED)]})
    try:
        name = _checked_name(user_id, uuid.UUID(str(token or "")).hex)
    except ValueError:
        raise expired from None
    try:
        with _storage().open(name, "rb") as handle:
            kept = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        raise expired from None
    if kept.get("at", 0) < time.time() - CHECKED_SECONDS:
        raise expired
    return name, kept


# --- the list -----------------------------------------------------------------------------------------------
def _render_jobs(request, actor, *, export_error=None, import_error=None, report=None, status: int = 200):
    scope, current = _scope(request, actor)
    raw = request.POST.get("filters", "") if request.method == "POST" else request.GET.get("export", "")
    form = batch_scope.queue_filters(raw, scope)
    listed = list(jobs.jobs_for_actor(actor)[:LISTED_JOBS])
    for job in listed:
        job.progress_text = progress_text(job)
        job.what = describe(job)
        job.error = job_error(job)
    return render(request, "portal/jobs.html", {
        "jobs": listed,
        "listed_max": LISTED_JOBS,
        "filters": raw,
        "filters_shown": batch_scope.described(form),
        "current": current,
        "export_key": new_key(),
        "import_key": new_key(),
        "key_field": KEY_FIELD,
        "export_error": export_error,
        "import_error": import_error,
        "report": report,
        "expected_columns": imports.EXPECTED_COLUMNS,
        "max_rows": imports.max_rows(),
    }, status=status)


@login_required
@require_GET
def jobs_page(request):
    actor = _actor_or_none(request)
    if actor is None:
        return no_agency(request)
    return _render_jobs(request, actor)


def _started(request, outcome, what: str):
    """After a starting form: to the job's page (a second submit of the same form lands on the same job)."""
    if outcome.replayed:
        messages.info(request, done_message(replace(outcome, message=what)))
    else:
        messages.success(request, what)
    return redirect("portal:job", job_id=json.loads(outcome.message)["job"])


@login_required
@require_POST
def export(request):
    """A CSV export of the queue with the filters given (and the store switcher's store) as a job."""
    actor = _actor_or_none(request)
    if actor is None:
        return no_agency(request)
    scope, current = _scope(request, actor)
    form = batch_scope.queue_filters(request.POST.get("filters", ""), scope)

    def act() -> str:
        query = batch_scope.filter_query(form, current)
        return json.dumps({"job": str(jobs.start_export(actor, query, bom=True).public_id)})

    outcome = run_once(request, act)
    if not outcome.ok:
        error = ShownError.of(outcome.error)
        return _render_jobs(request, actor, export_error=error, status=error.status)
    return _started(request, outcome, _("The export was started."))


@login_required
@require_POST
def import_reasons(request):
    """``intent=check``: read and check the file (nothing is written) and show each row's result; the rows are
    kept (``keep_checked``) for 30 minutes. ``intent=start``: the import job over the rows of that check."""
    actor = _actor_or_none(request)
    if actor is None:
        return no_agency(request)
    if request.POST.get("intent") == "start":
        return _start_import(request, actor)
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise AppError(errors.ERR_VALIDATION, fields={"file": [_("Choose a .xlsx or .csv file.")]})
        records = imports.read_file(upload)
    except AppError as exc:
        error = ShownError.of(exc)
        return _render_jobs(request, actor, import_error=error, status=error.status)
    checked = imports.dry_run(actor, records)
    token = keep_checked(request.user.pk, upload.name or "", records)
    rows, _ok, _failed = import_rows(checked["rows"])
    report = {"filename": upload.name, "total": checked["total"], "valid": checked["valid"],
              "invalid": checked["invalid"], "rows": rows, "token": token,
              "hidden": max(0, checked["total"] - len(rows))}
    return _render_jobs(request, actor, report=report)


def _start_import(request, actor):
    used = []

    def act() -> str:
        name, pending = checked(request.user.pk, request.POST.get("token", ""))
        job = imports.start(actor, list(pending.get("records") or []), filename=str(pending.get("filename") or ""))
        used.append(name)
        return json.dumps({"job": str(job.public_id)})

    outcome = run_once(request, act)
    if not outcome.ok:
        error = ShownError.of(outcome.error)
        return _render_jobs(request, actor, import_error=error, status=error.status)
    for name in used:  # the job holds the rows now (a replayed form used nothing)
        _storage().delete(name)
    return _started(request, outcome, _("The import was started."))


# --- one job ------------------------------------------------------------------------------------------------
def _job_or_missing(request, actor, job_id):
    try:
        return jobs.job_for_actor(actor, job_id), None
    except AppError as exc:
        return None, render(request, "portal/batch_refused.html", {
            "error": ShownError.of(exc), "back": reverse("portal:jobs")}, status=exc.status)


@login_required
@require_GET
def job_page(request, job_id):
    actor = _actor_or_none(request)
    if actor is None:
        return no_agency(request)
    job, missing = _job_or_missing(request, actor, job_id)
    if missing is not None:
        return missing
    report = job.report if isinstance(job.report, dict) else {}
    context = {"job": job, "what": describe(job), "progress_text": progress_text(job), "percent": percent(job),
               "error": job_error(job), "poll_ms": POLL_MS, "outcome": None, "rows": None}
    if job.kind == Job.Kind.BULK_ACTION:
        context["outcome"] = bulk_outcome(actor, list(report.get("results") or []))
    elif job.kind == Job.Kind.IMPORT_REASONS:
        rows, succeeded, failed = import_rows(list(report.get("rows") or []))
        context.update(rows=rows, succeeded=succeeded, failed=failed,
                       hidden=max(0, len(report.get("rows") or []) - len(rows)))
    return render(request, "portal/jobs_detail.html", context)


@login_required
@require_GET
def job_status(request, job_id):
    """The job's progress for the page's poller: status, done of total, and whether it is finished."""
    actor = _actor_or_none(request)
    if actor is None:
        return JsonResponse({"error": {"code": errors.ERR_AUTH_004.code}}, status=403)
    try:
        job = jobs.job_for_actor(actor, job_id)
    except AppError as exc:
        return JsonResponse({"error": {"code": exc.code, "message": str(exc.error.message)}}, status=exc.status)
    response = JsonResponse({
        "status": job.status, "status_label": job.get_status_display(), "done": job.done, "total": job.total,
        "percent": percent(job), "text": progress_text(job), "finished": job.finished,
    })
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def job_file(request, job_id):
    """The export's CSV, to whoever may see the job (its creator, the agency owner)."""
    actor = _actor_or_none(request)
    if actor is None:
        return no_agency(request)
    job, missing = _job_or_missing(request, actor, job_id)
    if missing is not None:
        return missing
    if job.status != Job.Status.SUCCEEDED or not job.result_file:
        return render(request, "portal/batch_refused.html", {
            "error": ShownError.of(AppError(errors.ERR_JOB_001)),
            "back": reverse("portal:job", kwargs={"job_id": job.public_id})}, status=errors.ERR_JOB_001.status)
    response = FileResponse(job.result_file.open("rb"), content_type="text/csv; charset=utf-8", as_attachment=True,
                            filename=f"aftersales-export-{job.public_id}.csv")
    response["Cache-Control"] = "private, no-store"
    return response


urlpatterns = [
    path("jobs/", jobs_page, name="jobs"),
    path("jobs/export/", export, name="jobs_export"),
    path("jobs/import/", import_reasons, name="jobs_import"),
    path("jobs/<uuid:job_id>/", job_page, name="job"),
    path("jobs/<uuid:job_id>/status.json", job_status, name="job_status"),
    path("jobs/<uuid:job_id>/file/", job_file, name="job_file"),
]
