"""Background jobs: /api/v1/jobs/ (scoping), batch actions as jobs, claims, resumes, and a real worker."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.test.utils import override_settings
from django.utils import timezone

from aftersales import jobs, services, tasks
from aftersales.models import AfterSalesRequest, Job, OperationLog
from config.celery import app
from tests.conftest import platform_return

BULK_JOBS = "/api/v1/aftersales/bulk-jobs/"
JOBS = "/api/v1/jobs/"


def make(store, **overrides) -> AfterSalesRequest:
    ticket, _created = services.intake(store, platform_return(**overrides))
    return ticket


def state(ticket) -> str:
    return AfterSalesRequest.objects.unscoped().values_list("state", flat=True).get(pk=ticket.pk)


def approve_body(tickets, *extra_ids) -> dict:
    return {"action": "approve", "decision": "APPROVE_REFUND",
            "ids": [str(t.public_id) for t in tickets] + list(extra_ids)}


def start(client, body) -> dict:
    response = client.post(BULK_JOBS, body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def job_of(data) -> Job:
    return Job.objects.unscoped().get(public_id=data["id"])


# --- batch actions as a job ---------------------------------------------------------------------------------
def test_a_bulk_job_acts_on_each_id_and_reports_each_result(tenants, api, django_capture_on_commit_callbacks):
    a, b = tenants
    mine = [make(a.stores[0]), make(a.stores[1])]
    ungranted, foreign = make(a.stores[2]), make(b.stores[0])
    client = api(a.agent)
    body = approve_body(mine, str(ungranted.public_id), str(foreign.public_id), str(mine[0].public_id), "nope")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        data = start(client, body)
    assert len(callbacks) == 1
    assert data["kind"] == "bulk_action" and data["status"] == "queued"
    assert data["total"] == 5 and data["done"] == 0 and data["progress"] == 0.0  # duplicates act once
    assert data["created_by"] == a.agent.username

    assert jobs.run(job_of(data).pk) == "succeeded"
    done = client.get(data["url"]).json()
    assert done["status"] == "succeeded" and done["done"] == done["total"] == 5 and done["progress"] == 1.0
    assert done["started_at"] and done["finished_at"] and done["error"] is None
    results = {r["id"]: r for r in done["report"]["results"]}
    assert results[str(mine[0].public_id)] == {"id": str(mine[0].public_id), "ok": True, "error": None}
    assert results[str(mine[1].public_id)]["ok"]
    for hidden in (ungranted, foreign):  # never confirmed: the same as a missing id
        assert results[str(hidden.public_id)]["error"]["code"] == "ERR_NOT_FOUND"
    assert results["nope"]["error"]["code"] == "ERR_NOT_FOUND"
    assert (done["report"]["succeeded"], done["report"]["failed"]) == (2, 3)
    assert state(mine[0]) != "pending_review" and state(mine[1]) != "pending_review"
    assert state(ungranted) == state(foreign) == "pending_review"


def test_a_bulk_job_is_refused_up_front_when_the_body_is_wrong(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = api(a.agent)
    response = client.post(BULK_JOBS, {"action": "refund", "ids": [str(ticket.public_id)]}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_BULK_002"
    response = client.post(BULK_JOBS, {"action": "approve", "ids": [str(ticket.public_id)]}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_VALIDATION"
    with override_settings(BULK_JOB_MAX_IDS=2):
        response = client.post(BULK_JOBS, {"action": "close", "ids": ["a", "b", "c"]}, format="json")
    assert response.status_code == 413 and response.json()["error"]["code"] == "ERR_JOB_003"
    assert not Job.objects.for_agency(a.agency).exists()


def test_a_bulk_job_takes_more_ids_than_the_plain_bulk_endpoint(tenants, api):
    a, _b = tenants
    ids = [str(make(a.stores[0]).public_id) for _ in range(3)] + [f"missing-{i}" for i in range(1200)]
    data = start(api(a.owner), {"action": "close", "ids": ids})
    assert data["total"] == 1203
    assert jobs.run(job_of(data).pk) == "succeeded"
    job = job_of(data)
    assert job.done == 1203 and len(job.report["results"]) == 1203


# --- who sees which job --------------------------------------------------------------------------------------
def test_owners_see_the_agencys_jobs_sub_accounts_their_own_and_nobody_another_agencys(tenants, api):
    a, b = tenants
    ticket = make(a.stores[0])
    agents_job = start(api(a.agent), approve_body([ticket]))
    owners_job = start(api(a.owner), approve_body([ticket]))
    foreign_job = start(api(b.owner), approve_body([make(b.stores[0])]))

    def listed(user) -> set[str]:
        response = api(user).get(JOBS)
        assert response.status_code == 200
        page = response.json()
        assert set(page) == {"next", "previous", "results"}
        return {j["id"] for j in page["results"]}

    assert listed(a.owner) == {agents_job["id"], owners_job["id"]}
    assert listed(a.agent) == {agents_job["id"]}
    assert listed(a.viewer) == set()
    assert listed(b.owner) == {foreign_job["id"]}
    assert api(a.owner).get(agents_job["url"]).status_code == 200
    for user, job in ((a.viewer, agents_job), (a.agent, owners_job), (b.owner, agents_job), (a.owner, foreign_job)):
        response = api(user).get(job["url"])
        assert response.status_code == 404 and response.json()["error"]["code"] == "ERR_NOT_FOUND"
    assert api(a.owner).get(f"{JOBS}00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api().get(JOBS).status_code == 401


def test_the_job_list_pages_by_cursor_and_filters(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = api(a.owner)
    made = [start(client, approve_body([ticket]))["id"] for _ in range(3)]
    page = client.get(f"{JOBS}?page_size=2").json()
    assert [j["id"] for j in page["results"]] == made[::-1][:2] and page["next"]
    rest = client.get(page["next"]).json()
    assert [j["id"] for j in rest["results"]] == made[:1] and rest["next"] is None
    assert "report" not in page["results"][0]
    assert len(client.get(f"{JOBS}?kind=bulk_action&status=queued").json()["results"]) == 3
    assert client.get(f"{JOBS}?kind=export").json()["results"] == []
    response = client.get(f"{JOBS}?cursor=bz1hYmM=")
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_VALIDATION"
    response = client.get(f"{JOBS}?status=done")
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_VALIDATION"


# --- claims, re-runs and resumes -----------------------------------------------------------------------------
def test_a_finished_job_run_again_does_nothing(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    data = start(api(a.owner), approve_body([ticket]))
    job = job_of(data)
    assert tasks.run_job.apply(args=[job.pk]).get() == "succeeded"
    logs = OperationLog.objects.filter(ticket_id=ticket.pk).count()
    report = job_of(data).report
    assert tasks.run_job.apply(args=[job.pk]).get() == "skipped"
    assert OperationLog.objects.filter(ticket_id=ticket.pk).count() == logs
    assert job_of(data).report == report and job_of(data).attempts == 1


def test_a_job_held_by_a_live_runner_is_left_to_it(tenants, api):
    a, _b = tenants
    data = start(api(a.owner), approve_body([make(a.stores[0])]))
    Job.objects.unscoped().filter(public_id=data["id"]).update(status="running", runner="other",
                                                               heartbeat_at=timezone.now())
    with pytest.raises(jobs.Busy):
        jobs.run(job_of(data).pk)
    assert job_of(data).runner == "other"


def test_an_abandoned_job_is_taken_over_and_resumes_after_the_last_saved_batch(tenants, api, monkeypatch):
    a, _b = tenants
    tickets = [make(a.stores[0]) for _ in range(4)]
    data = start(api(a.owner), approve_body(tickets))
    # A worker died after saving the first two results (it never acted: here they are only recorded).
    saved = [{"id": str(t.public_id), "ok": True, "error": None} for t in tickets[:2]]
    old = timezone.now() - dt.timedelta(seconds=jobs.LEASE_SECONDS + 5)
    Job.objects.unscoped().filter(public_id=data["id"]).update(
        status="running", runner="dead", heartbeat_at=old, attempts=1, done=2, report={"results": saved})
    monkeypatch.setattr(jobs, "BULK_PROGRESS_EVERY", 1)
    assert jobs.run(job_of(data).pk) == "succeeded"
    job = job_of(data)
    assert job.attempts == 2 and job.done == 4 and job.report["succeeded"] == 4
    assert [state(t) for t in tickets[:2]] == ["pending_review", "pending_review"]  # not redone
    assert all(state(t) != "pending_review" for t in tickets[2:])


def test_a_runner_that_lost_its_claim_stops_writing(tenants, api):
    a, _b = tenants
    data = start(api(a.owner), approve_body([make(a.stores[0])]))
    job, token = jobs.claim(job_of(data).pk)
    Job.objects.unscoped().filter(pk=job.pk).update(runner="someone-else")
    with pytest.raises(jobs.LostClaim):
        jobs._progress(job, token, done=1)
    assert job_of(data).done == 0


def test_a_job_interrupted_too_often_fails_with_err_job_002(tenants, api):
    a, _b = tenants
    data = start(api(a.owner), approve_body([make(a.stores[0])]))
    Job.objects.unscoped().filter(public_id=data["id"]).update(status="running", attempts=jobs.MAX_ATTEMPTS)
    assert jobs.run(job_of(data).pk) == "skipped"
    shown = api(a.owner).get(data["url"]).json()
    assert shown["status"] == "failed" and shown["error"]["code"] == "ERR_JOB_002" and shown["error"]["message"]


def test_a_job_whose_creator_left_the_agency_fails_cleanly(tenants, api):
    a, _b = tenants
    data = start(api(a.agent), approve_body([make(a.stores[0])]))
    a.membership(a.agent).delete()
    assert jobs.run(job_of(data).pk) == "failed"
    job = job_of(data)
    assert job.status == "failed" and job.error_code == "ERR_AUTH_004" and job.finished_at


def test_the_task_is_registered_with_late_acks_and_time_limits():
    task = app.tasks["aftersales.run_job"]
    assert task.acks_late and task.soft_time_limit < task.time_limit
    assert task.time_limit < app.conf.broker_transport_options.get("visibility_timeout", 3600)


# --- a real worker --------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_runs_a_bulk_job_with_progress(tenants, api, monkeypatch):
    a, b = tenants
    tickets = [make(a.stores[i % 2]) for i in range(6)]
    foreign = make(b.stores[0])
    monkeypatch.setattr(jobs, "BULK_PROGRESS_EVERY", 2)
    bulk = services.bulk

    def slow_bulk(*args, **kwargs):  # each batch takes a moment, so the polls see the job mid-way
        time.sleep(0.3)
        return bulk(*args, **kwargs)

    monkeypatch.setattr(services, "bulk", slow_bulk)
    client = api(a.agent)
    with app.connection() as conn:
        conn.ensure_connection(max_retries=3)
        conn.default_channel.queue_purge(app.conf.task_default_queue)
    seen: list[tuple[str, int, float]] = []
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        data = start(client, approve_body(tickets, str(foreign.public_id)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = client.get(data["url"]).json()
            seen.append((shown["status"], shown["done"], shown["progress"]))
            if shown["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
    assert shown["status"] == "succeeded", seen
    assert shown["done"] == shown["total"] == 7 and shown["progress"] == 1.0
    dones = [done for _status, done, _p in seen]
    assert dones == sorted(dones), seen  # progress only moves forward
    assert all(0.0 <= p <= 1.0 for _s, _d, p in seen)
    assert any(status == "running" and 0 < done < 7 and 0 < p < 1 for status, done, p in seen), seen
    assert shown["report"]["succeeded"] == 6 and shown["report"]["failed"] == 1
    assert all(state(t) != "pending_review" for t in tickets) and state(foreign) == "pending_review"
    rows = OperationLog.objects.filter(ticket_id__in=[t.pk for t in tickets], action="approve", error_code="")
    assert rows.count() == 6 and all(r.request_id for r in rows)


def test_unfinished_jobs_nobody_touches_are_handed_to_a_worker_again(tenants):
    """A lost message (queued for ever) or a dead runner (running, silent): the beat sweep enqueues them again."""
    import datetime as dt

    from django.utils import timezone

    from aftersales import jobs as job_service
    from aftersales import tasks
    from aftersales.models import Job

    a, _b = tenants
    long_ago = timezone.now() - dt.timedelta(minutes=10)
    lost = Job.objects.create(agency=a.agency, created_by=a.owner, kind="export")
    dead = Job.objects.create(agency=a.agency, created_by=a.owner, kind="export", status="running",
                              heartbeat_at=long_ago)
    alive = Job.objects.create(agency=a.agency, created_by=a.owner, kind="export", status="running",
                               heartbeat_at=timezone.now())
    fresh = Job.objects.create(agency=a.agency, created_by=a.owner, kind="export")
    done = Job.objects.create(agency=a.agency, created_by=a.owner, kind="export", status="succeeded")
    Job.objects.unscoped().filter(pk__in=[lost.pk, dead.pk, alive.pk, done.pk]).update(updated_at=long_ago)
    assert sorted(job_service.stale_job_ids()) == sorted([lost.pk, dead.pk])
    assert fresh.pk not in job_service.stale_job_ids() and done.pk not in job_service.stale_job_ids()
    from config.celery import app

    assert app.conf.beat_schedule["aftersales-resume-stale-jobs"]["task"] == tasks.resume_stale_jobs.name
