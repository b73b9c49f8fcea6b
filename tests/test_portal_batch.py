"""Batch review (批量审核) and imports & exports in the portal: the queue's selection, the confirmation page, per-item
results (named by return id, failures first, code + message + hint), acting once per form, large batches as jobs,
the jobs list and a job's page with its progress, the status document, the CSV export and the reason import —
scoping, permissions, constant query counts and both languages."""

from __future__ import annotations

import html
import io
import os
import re
import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aftersales import jobs
from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, Job, OperationLog
from portal import batch as portal_batch
from portal import batch_jobs as portal_batch_jobs
from stores import errors
from tests.conftest import platform_return
from tests.factories import UserFactory

ITEM = re.compile(r'<tr class="item (ok|failed)" data-return-id="([^"]*)"(?: data-code="([^"]+)")?')
LOCATION_KEY = re.compile(r"/batch/results/([0-9a-f-]{36})/$")


def make(store, **fields) -> AfterSalesRequest:
    ticket, created = aftersales_services.intake(store, platform_return())
    assert created
    if fields:
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def state_of(ticket) -> str:
    return AfterSalesRequest.objects.unscoped().values_list("state", flat=True).get(pk=ticket.pk)


def items(text: str) -> list[tuple[str, str, str]]:
    return ITEM.findall(text)


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def act(client, tickets_or_ids, action="approve", key=None, **fields):
    ids = [str(getattr(t, "public_id", t)) for t in tickets_or_ids]
    data = {"action": action, "ids": ids, "idempotency_key": key or str(uuid.uuid4()), "back": "/queue/?type=x",
            **fields}
    return client.post("/batch/", data)


def approve(client, tickets, **kw):
    return act(client, tickets, "approve", decision="APPROVE_REFUND", **kw)


# --- the queue's selection ------------------------------------------------------------------------------------
def test_queue_rows_carry_checkboxes_and_the_batch_bar(as_user, tenants):
    a, _b = tenants
    t0, t1 = make(a.stores[0]), make(a.stores[1])
    text = as_user(a.owner).get("/queue/").content.decode()
    bar = text[text.index('<form method="get" action="/batch/" id="batch-form"'):]
    bar = bar[:bar.index("</form>")]
    for value in ("approve", "reject", "request_evidence", "close"):
        assert f'<option value="{value}">' in bar
    assert '<label for="batch-action">' in bar and 'name="filters"' in bar and 'name="back"' in bar
    for ticket in (t0, t1):  # rows of two stores, each with a labelled checkbox in the batch form
        assert (f'name="ids" value="{ticket.public_id}" form="batch-form"' in text
                and f'aria-label="Select {ticket.return_id}"' in text)
    assert 'id="pick-all"' in text and "portal/batch.css" in text
    assert text.index('id="queue-filters"') < text.index('id="batch-form"') < text.index('id="queue"')


def test_no_selection_is_a_coded_validation_error(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    for response in (client.get("/batch/", {"action": "approve"}), act(client, [], decision="APPROVE_REFUND")):
        assert response.status_code == 400
        text = response.content.decode()
        assert 'data-code="ERR_VALIDATION"' in text and "Select at least one request on the queue." in text
    assert not OperationLog.objects.filter(action__startswith="approve").exists()


def test_an_unknown_action_is_refused_with_its_code(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = as_user(a.owner).get("/batch/", {"action": "refund", "ids": [str(ticket.public_id)]})
    assert response.status_code == 400 and 'data-code="ERR_BULK_002"' in response.content.decode()


def test_confirmation_names_the_selection_and_offers_the_selected_requests_reasons(as_user, tenants):
    a, b = tenants
    mine = [make(a.stores[0]), make(a.stores[1])]
    AfterSalesRequest.objects.unscoped().filter(pk=mine[1].pk).update(reject_reasons=[
        {"name": "reverse_reject_request_reason_1", "text": "Buyer's return reason is not valid"},
        {"name": "shop_special", "text": "Special reason of this shop"}])
    foreign = make(b.stores[0])
    ids = [str(t.public_id) for t in mine] + [str(foreign.public_id), "garbage"]
    response = as_user(a.owner).get("/batch/", {"action": "reject", "ids": ids, "back": "/queue/?type=refund_only"})
    text = response.content.decode()
    assert response.status_code == 200
    assert "4 requests selected" in text and "from 2 stores" in text
    for ticket in mine:
        assert f'data-return-id="{ticket.return_id}"' in text and a.stores[mine.index(ticket)].name in text
    assert foreign.return_id not in text and b.stores[0].name not in text  # never confirmed
    assert "2 selected ids are not requests you can see" in text
    reasons = re.findall(r'<option value="([^"]+)"', text[text.index('id="batch-reason"'):])
    assert reasons[0] == "reverse_reject_request_reason_1"  # offered by both, first
    assert "shop_special" in reasons and "offered on 1 of 2" in text and "offered on 2 of 2" in text
    form = text[text.index('id="batch-act"'):text.index("</form>", text.index('id="batch-act"'))]
    assert form.count('name="ids"') == 4 and 'name="idempotency_key"' in form
    assert 'value="/queue/?type=refund_only"' in form and 'href="/queue/?type=refund_only"' in text


def test_back_link_stays_on_this_site(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    text = as_user(a.owner).get("/batch/", {"action": "close", "ids": [str(ticket.public_id)],
                                            "back": "https://evil.example/"}).content.decode()
    assert 'href="https://evil' not in text and 'name="back" value="https://evil' not in text
    assert 'href="/queue/"' in text and 'name="back" value="/queue/"' in text


# --- acting at once: per-item results --------------------------------------------------------------------------
def test_a_batch_with_one_refusal_shows_each_result_failures_first(as_user, tenants):
    a, _b = tenants
    ok0, ok1 = make(a.stores[0]), make(a.stores[1])
    refused = make(a.stores[0], state="refund_approved")
    client = as_user(a.agent)
    response = approve(client, [ok0, refused, ok1])
    assert response.status_code == 302
    assert LOCATION_KEY.search(response["Location"])
    text = client.get(response["Location"]).content.decode()
    assert items(text) == [("failed", refused.return_id, "ERR_STATE_001"),
                           ("ok", ok0.return_id, ""), ("ok", ok1.return_id, "")]
    assert "2 requests done" in text and "1 failed" in text
    assert "This action is not possible in the request&#x27;s current state." in text
    assert "How to fix it:" in text and "Reload the request" in text  # the catalogue hint
    for ticket in (ok0, ok1, refused):
        assert str(ticket.public_id) not in re.sub(r'href="[^"]*"', "", text)  # named by return id, not uuid
    assert a.stores[1].name in text and 'href="/queue/?type=x"' in text
    assert state_of(ok0) == state_of(ok1) == "refund_approved"


def test_ids_the_user_cannot_see_fail_as_not_found(as_user, tenants):
    a, b = tenants
    mine, ungranted, foreign = make(a.stores[0]), make(a.stores[2]), make(b.stores[0])
    client = as_user(a.agent)  # granted stores 0 and 1 only
    response = approve(client, [mine, ungranted, foreign])
    text = client.get(response["Location"]).content.decode()
    assert [(r, c) for r, _id, c in items(text)] == [("failed", "ERR_NOT_FOUND"), ("failed", "ERR_NOT_FOUND"),
                                                    ("ok", "")]
    assert ungranted.return_id not in text and foreign.return_id not in text
    assert a.stores[2].name not in text and b.stores[0].name not in text
    assert text.count("Unknown request") == 2
    assert state_of(ungranted) == state_of(foreign) == "pending_review"


def test_a_sub_account_without_handling_permission_gets_err_perm_001_per_item(as_user, tenants):
    a, _b = tenants
    tickets = [make(a.stores[0]), make(a.stores[2])]
    client = as_user(a.viewer)  # analyst: sees every store, may not handle
    confirm = client.get("/batch/", {"action": "approve", "ids": [str(t.public_id) for t in tickets]})
    text = confirm.content.decode()
    assert 'id="batch-act"' not in text  # the action is not offered
    assert "You cannot act on any of the selected requests." in text and "ERR_PERM_001" in text
    # Reached anyway (a crafted POST): each item refused with the code and the hint naming the role setting.
    response = approve(client, tickets)
    text = client.get(response["Location"]).content.decode()
    assert [c for _r, _id, c in items(text)] == ["ERR_PERM_001", "ERR_PERM_001"]
    assert "After-sales handling" in text and "Role settings" in text
    assert {state_of(t) for t in tickets} == {"pending_review"}


def test_the_confirmation_marks_requests_of_stores_the_person_may_not_handle(as_user, tenants):
    a, _b = tenants
    from stores import services as store_services

    membership = a.membership(a.viewer)
    store_services.assign_role(actor=None, membership=membership, role=a.roles["aftersales-agent"],
                               stores=[a.stores[0]])
    handled, not_handled = make(a.stores[0]), make(a.stores[2])
    text = as_user(a.viewer).get("/batch/", {"action": "close", "ids": [str(handled.public_id),
                                                                        str(not_handled.public_id)]}).content.decode()
    assert 'id="batch-act"' in text
    assert "1 selected request is in a store where your role does not allow after-sales handling" in text
    row = text[text.index(f'data-return-id="{not_handled.return_id}"'):]
    assert row.startswith(f'data-return-id="{not_handled.return_id}" class="refused" data-code="ERR_PERM_001"')


def test_a_double_submit_acts_once(as_user, tenants):
    a, _b = tenants
    tickets = [make(a.stores[0]), make(a.stores[1])]
    client = as_user(a.owner)
    key = str(uuid.uuid4())
    first = approve(client, tickets, key=key)
    second = approve(client, tickets, key=key)
    assert first.status_code == second.status_code == 302 and first["Location"] == second["Location"]
    assert OperationLog.objects.filter(action__startswith="approve", error_code="").count() == 2
    text = client.get(second["Location"]).content.decode()
    assert "This form was sent twice; it was carried out once." in text
    assert [r for r, _i, _c in items(text)] == ["ok", "ok"]  # the first run's results, not two refusals
    other = approve(client, tickets[:1], key=key)  # the same key with another selection
    assert other.status_code == 409 and 'data-code="ERR_IDEMPOTENCY_MISMATCH"' in other.content.decode()


def test_missing_decision_or_reason_re_renders_the_form_with_the_code(as_user, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = as_user(a.owner)
    response = act(client, [ticket], "approve", decision="REJECT_REFUND")
    text = response.content.decode()
    assert response.status_code == 400 and 'data-code="ERR_VALIDATION"' in text and "Choose how to approve." in text
    assert 'id="batch-act"' in text and 'aria-describedby="batch-error"' in text
    response = act(client, [ticket], "reject", comment="kept")
    text = response.content.decode()
    assert response.status_code == 400 and "Choose a reject reason." in text and ">kept</textarea>" in text
    assert state_of(ticket) == "pending_review"


def test_reject_request_evidence_and_close_in_batch(as_user, tenants):
    a, _b = tenants
    t = [make(a.stores[0]), make(a.stores[0]), make(a.stores[0], state="rejected")]
    client = as_user(a.owner)
    response = act(client, [t[0]], "reject", reason="reverse_reject_request_reason_4", comment="on schedule")
    assert response.status_code == 302 and state_of(t[0]) == "rejected"
    act(client, [t[1]], "request_evidence", message="Please send a photo")
    assert state_of(t[1]) == "awaiting_buyer"
    act(client, [t[2]], "close", comment="done")
    assert state_of(t[2]) == "closed"


def test_the_result_page_is_the_sessions_own(as_user, tenants, client):
    a, _b = tenants
    response = approve(as_user(a.owner), [make(a.stores[0])])
    location = response["Location"]
    client.force_login(a.agent)  # another person (another session) does not get it
    missing = client.get(location)
    assert missing.status_code == 404 and 'data-code="ERR_NOT_FOUND"' in missing.content.decode()


def test_result_page_in_chinese(as_user, tenants, settings):
    a, _b = tenants
    ok, refused = make(a.stores[0]), make(a.stores[0], state="refund_approved")
    client = as_user(a.owner)
    response = approve(client, [ok, refused])
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    text = client.get(response["Location"]).content.decode()
    assert '<html lang="zh-hans">' in text and "批量审核" in text
    assert "ERR_STATE_001" in text, text[text.index("<main>"):]
    assert "售后单当前状态下不能执行此操作。" in text and "修改建议：" in text and "✗ 失败" in text
    assert "How to fix it" not in text and "not possible in the request" not in text


# --- larger batches run as a job -------------------------------------------------------------------------------
def test_a_larger_batch_runs_as_a_job_and_its_page_shows_the_results(as_user, tenants, monkeypatch):
    a, _b = tenants
    monkeypatch.setattr(portal_batch, "SYNC_MAX", 2)
    tickets = [make(a.stores[i % 2]) for i in range(3)]
    refused = make(a.stores[0], state="refund_approved")
    client = as_user(a.agent)
    confirm = client.get("/batch/", {"action": "approve", "ids": [str(t.public_id) for t in [*tickets, refused]]})
    assert "the batch runs as a background job" in confirm.content.decode()
    response = approve(client, [*tickets, refused])
    job = Job.objects.unscoped().get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.public_id}/"
    assert job.kind == "bulk_action" and job.total == 4 and job.created_by == a.agent

    text = client.get(response["Location"]).content.decode()
    assert 'id="job-progress"' in text and "0 of 4 done" in text and 'data-finished="0"' in text
    assert "portal/batch.js" in text and f'data-status-url="/jobs/{job.public_id}/status.json"' in text
    status = client.get(f"/jobs/{job.public_id}/status.json").json()
    assert status == {"status": "queued", "status_label": "Queued", "done": 0, "total": 4, "percent": 0,
                      "text": "0 of 4 done", "finished": False}

    assert jobs.run(job.pk) == "succeeded"
    status = client.get(f"/jobs/{job.public_id}/status.json").json()
    assert (status["status"], status["done"], status["percent"], status["finished"]) == ("succeeded", 4, 100, True)
    text = client.get(response["Location"]).content.decode()
    assert 'data-finished="1"' in text and "4 of 4 done" in text
    assert items(text)[0] == ("failed", refused.return_id, "ERR_STATE_001")
    assert sorted(i[1] for i in items(text)[1:]) == sorted(t.return_id for t in tickets)


def test_every_request_matching_the_filters(as_user, tenants, monkeypatch):
    a, _b = tenants
    monkeypatch.setattr(portal_batch, "SYNC_MAX", 1)
    in_store0 = [make(a.stores[0]), make(a.stores[0])]
    make(a.stores[1])
    make(a.stores[0], state="closed")  # not open: not in the queue
    client = as_user(a.owner)
    filters = f"store={a.stores[0].public_id}&cursor=abc"
    text = client.get("/batch/", {"action": "close", "scope": "matching", "filters": filters}).content.decode()
    assert "2 requests selected" in text and a.stores[0].name in text
    response = client.post("/batch/", confirmed(text))
    job = Job.objects.unscoped().get()
    assert response["Location"] == f"/jobs/{job.public_id}/"
    assert sorted(job.params["ids"]) == sorted(str(t.public_id) for t in in_store0)
    bad = client.get("/batch/", {"action": "close", "scope": "matching", "filters": "breached=maybe"})
    assert bad.status_code == 400 and 'data-code="ERR_VALIDATION"' in bad.content.decode()


def confirmed(text: str) -> dict:
    """The confirmation page's form as the browser would send it."""
    form = re.search(r'<form method="post" action="/batch/" id="batch-act".*?</form>', text, re.S).group(0)
    data = {name: html.unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', form)}
    data.pop("csrfmiddlewaretoken", None)
    return data


def test_matching_requests_that_changed_since_the_confirmation_are_not_acted_on(as_user, tenants):
    a, _b = tenants
    shown = [make(a.stores[0]), make(a.stores[0])]
    client = as_user(a.owner)
    filters = f"store={a.stores[0].public_id}"
    page = client.get("/batch/", {"action": "close", "scope": "matching", "filters": filters}).content.decode()
    form = confirmed(page)
    assert form["confirmed_count"] == "2" and len(form["confirmed"]) == 64
    arrived = make(a.stores[0])  # a new request matches the filters between the confirmation and the POST

    response = client.post("/batch/", form)
    text = html.unescape(response.content.decode())
    assert response.status_code == 400 and 'data-code="ERR_VALIDATION"' in text
    assert "The requests matching the filters changed since you confirmed: review them again." in text
    assert {state_of(t) for t in [*shown, arrived]} == {"pending_review"} and not Job.objects.unscoped().exists()
    assert "3 requests selected" in text and arrived.return_id in text  # the page shows the new selection
    again = confirmed(text)
    assert again["confirmed_count"] == "3" and again["confirmed"] != form["confirmed"]

    # one leaves the selection (closed elsewhere): refused as well
    AfterSalesRequest.objects.unscoped().filter(pk=shown[0].pk).update(state="closed")
    response = client.post("/batch/", again)
    assert response.status_code == 400 and "changed since you confirmed" in response.content.decode()
    assert state_of(arrived) == "pending_review"
    unconfirmed = {k: v for k, v in confirmed(response.content.decode()).items() if not k.startswith("confirmed")}
    response = client.post("/batch/", unconfirmed)  # a form without the fingerprint acts on nothing either
    assert response.status_code == 400 and state_of(arrived) == "pending_review"

    response = client.post("/batch/", confirmed(response.content.decode()))
    assert response.status_code == 302  # confirmed as it is now: acted on exactly those two
    assert sorted(i[1] for i in items(client.get(response["Location"]).content.decode())) == sorted(
        [shown[1].return_id, arrived.return_id])


def test_a_selection_over_the_batch_limit_is_err_job_003_and_nothing_is_done(as_user, tenants, settings):
    a, _b = tenants
    settings.BULK_JOB_MAX_IDS = 2
    assert jobs.bulk_job_max_ids() == 2
    tickets = [make(a.stores[0]) for _ in range(3)]
    client = as_user(a.owner)
    ids = [str(t.public_id) for t in tickets]
    filters = f"store={a.stores[0].public_id}"
    for response in (
        client.get("/batch/", {"action": "close", "ids": ids}),
        act(client, tickets, "close"),
        client.get("/batch/", {"action": "close", "scope": "matching", "filters": filters}),
        client.post("/batch/", {"action": "close", "scope": "matching", "filters": filters,
                                "idempotency_key": str(uuid.uuid4())}),
    ):
        text = response.content.decode()
        assert response.status_code == errors.ERR_JOB_003.status, text[:300]
        assert 'id="batch-refused"' in text and 'data-code="ERR_JOB_003"' in text and ">ERR_JOB_003<" in text
        assert "At most 2 requests per batch; this selection has more." in text
    assert {state_of(t) for t in tickets} == {"pending_review"} and not Job.objects.unscoped().exists()
    assert client.get("/batch/", {"action": "close", "ids": ids[:2]}).status_code == 200  # at the limit: fine


# --- jobs: list, page, status, scoping, cost -------------------------------------------------------------------
def job_for(user, agency, kind="bulk_action", **fields) -> Job:
    return Job.objects.create(agency=agency, created_by=user, kind=kind, **fields)


def test_jobs_page_lists_the_persons_jobs(as_user, tenants):
    a, b = tenants
    own = job_for(a.agent, a.agency, params={"action": "close", "ids": []}, total=10, done=4, status="running")
    owners = job_for(a.owner, a.agency, kind="export")
    foreign = job_for(b.owner, b.agency, kind="export")
    text = as_user(a.agent).get("/jobs/").content.decode()
    assert f'data-job="{own.public_id}"' in text and "4 of 10 done" in text
    assert '<progress max="10" value="4" aria-label="Progress: 4 of 10 done">' in text
    assert str(owners.public_id) not in text and str(foreign.public_id) not in text
    text = as_user(a.owner).get("/jobs/").content.decode()
    assert str(own.public_id) in text and str(owners.public_id) in text and str(foreign.public_id) not in text
    assert 'id="export-form"' in text and 'id="import-check"' in text and 'enctype="multipart/form-data"' in text
    assert '<label for="import-file">' in text


def test_a_job_of_someone_else_is_not_found(as_user, tenants):
    a, b = tenants
    owners = job_for(a.owner, a.agency)
    foreign = job_for(b.owner, b.agency)
    client = as_user(a.agent)
    for job in (owners, foreign):
        for url in (f"/jobs/{job.public_id}/", f"/jobs/{job.public_id}/file/"):
            response = client.get(url)
            assert response.status_code == 404 and 'data-code="ERR_NOT_FOUND"' in response.content.decode()
        response = client.get(f"/jobs/{job.public_id}/status.json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "ERR_NOT_FOUND"


def test_pages_need_an_agency(client, db):
    client.force_login(UserFactory(username="drifter"))
    for url in ("/jobs/", "/batch/?action=close&ids=x"):
        response = client.get(url)
        assert response.status_code == 403 and "ERR_AUTH_004" in response.content.decode()


def cost(client, url) -> int:
    client.get(url)  # warm up
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_jobs_list_query_count_is_constant(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    job_for(a.owner, a.agency)
    one = cost(client, "/jobs/")
    for i in range(12):
        job_for(a.agent if i % 2 else a.owner, a.agency, kind=["export", "bulk_action", "import_reasons"][i % 3],
                error_code="ERR_JOB_002" if i % 4 else "", params={"filename": f"f{i}.csv"})
    assert cost(client, "/jobs/") == one <= 8, one


def test_job_page_query_count_is_constant_in_items(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    small = [make(a.stores[0])]
    large = [make(a.stores[i % 3]) for i in range(25)]

    def bulk_job(tickets):
        results = [{"id": str(t.public_id), "ok": i % 2 == 0,
                    "error": None if i % 2 == 0 else {"code": "ERR_STATE_001", "message": "x"}}
                   for i, t in enumerate(tickets)]
        return job_for(a.owner, a.agency, status="succeeded", total=len(tickets), done=len(tickets),
                       report={"results": results})

    one = cost(client, f"/jobs/{bulk_job(small).public_id}/")
    many_job = bulk_job(large)
    assert cost(client, f"/jobs/{many_job.public_id}/") == one <= 8, one
    text = client.get(f"/jobs/{many_job.public_id}/").content.decode()
    assert len(items(text)) == 25 and items(text)[0][0] == "failed"


def test_batch_confirmation_query_count_is_constant(as_user, tenants):
    a, _b = tenants
    client = as_user(a.agent)
    few = [make(a.stores[0])]
    many = [make(a.stores[i % 2]) for i in range(30)]

    def url(tickets):
        return "/batch/?action=reject&" + "&".join(f"ids={t.public_id}" for t in tickets)

    assert cost(client, url(few)) == cost(client, url(many))


# --- export ----------------------------------------------------------------------------------------------------
def test_export_of_the_queue_filters_as_a_job_then_its_file(as_user, tenants, settings):
    a, b = tenants
    wanted = make(a.stores[0])
    make(a.stores[1])
    make(a.stores[0], state="closed")
    make(b.stores[0])
    client = as_user(a.owner)
    filters = f"store={a.stores[0].public_id}"
    shown = client.get("/jobs/", {"export": filters}).content.decode()
    assert f'name="filters" value="{filters}"' in shown and a.stores[0].name in shown
    response = client.post("/jobs/export/", {"filters": filters, "idempotency_key": str(uuid.uuid4())})
    job = Job.objects.unscoped().get(kind="export")
    assert response["Location"] == f"/jobs/{job.public_id}/"
    assert job.params["query"]["store"] == [str(a.stores[0].public_id)]
    assert jobs.run(job.pk) == "succeeded"
    text = client.get(response["Location"]).content.decode()
    assert f'href="/jobs/{job.public_id}/file/"' in text and "1 request" in text
    download = client.get(f"/jobs/{job.public_id}/file/")
    body = b"".join(download.streaming_content).decode("utf-8-sig")
    assert download["Content-Disposition"].startswith("attachment")
    assert wanted.return_id in body and body.count("\n") == 2  # header + the one open request of store 0


def test_export_with_bad_filters_is_refused_with_the_code(as_user, tenants):
    a, _b = tenants
    response = as_user(a.owner).post("/jobs/export/", {"filters": "breached=maybe",
                                                       "idempotency_key": str(uuid.uuid4())})
    assert response.status_code == 400 and 'id="export-error"' in response.content.decode()
    assert not Job.objects.unscoped().exists()


def test_file_of_an_unfinished_job_is_refused(as_user, tenants):
    a, _b = tenants
    job = job_for(a.owner, a.agency, kind="export")
    response = as_user(a.owner).get(f"/jobs/{job.public_id}/file/")
    assert response.status_code == 409 and 'data-code="ERR_JOB_001"' in response.content.decode()


# --- reason import ---------------------------------------------------------------------------------------------
def upload(text: str, name: str = "reasons.csv"):
    handle = io.BytesIO(text.encode("utf-8"))
    handle.name = name
    return handle


def test_reason_import_checks_first_then_runs_as_a_job(as_user, tenants):
    a, b = tenants
    mine, foreign = make(a.stores[0]), make(b.stores[0])
    client = as_user(a.owner)
    csv_text = ("return_id,reason_code,reason_text,note\n"
                f"{mine.return_id},damaged,破损,box crushed\n"
                f"{foreign.return_id},x,y,\n"
                "RET-NONE,,,\n")
    response = client.post("/jobs/import/", {"intent": "check", "file": upload(csv_text)})
    text = response.content.decode()
    assert response.status_code == 200 and 'id="dry-run"' in text
    assert "3 rows" in text and "1 valid" in text and "2 invalid" in text
    codes = re.findall(r'data-row="(\d+)"(?: data-code="([^"]+)")?', text)
    assert codes == [("3", "ERR_IMPORT_101"), ("4", "ERR_IMPORT_102"), ("2", "")]
    assert AfterSalesRequest.objects.unscoped().get(pk=mine.pk).reason_key != "damaged"  # nothing written yet
    token = re.search(r'name="token" value="([^"]+)"', text).group(1)
    key = re.search(r'id="import-start">.*?name="idempotency_key" value="([^"]+)"', text, re.S).group(1)
    assert mine.return_id not in str(dict(client.session.items()))  # the rows are not in the session
    kept = checked_files()
    assert len(kept) == 1 and token in kept[0]
    started = client.post("/jobs/import/", {"intent": "start", "token": token, "idempotency_key": key})
    job = Job.objects.unscoped().get(kind="import_reasons")
    assert started["Location"] == f"/jobs/{job.public_id}/"
    assert job.params["filename"] == "reasons.csv" and [r["row"] for r in job.params["rows"]] == [2, 3, 4]
    assert checked_files() == []  # the job holds the rows now
    again = client.post("/jobs/import/", {"intent": "start", "token": token, "idempotency_key": key})
    assert again["Location"] == started["Location"] and Job.objects.unscoped().count() == 1
    assert jobs.run(job.pk) == "succeeded"
    assert AfterSalesRequest.objects.unscoped().get(pk=mine.pk).reason_key == "damaged"
    text = client.get(started["Location"]).content.decode()
    assert "reasons.csv" in text and 'id="job-rows"' in text and "ERR_IMPORT_101" in text


def test_a_file_refused_as_a_whole_shows_its_code(as_user, tenants):
    a, _b = tenants
    client = as_user(a.owner)
    response = client.post("/jobs/import/", {"intent": "check", "file": upload("a,b\n1,2\n")})
    text = response.content.decode()
    assert response.status_code == 400 and 'id="import-error"' in text and 'data-code="ERR_IMPORT_002"' in text
    response = client.post("/jobs/import/", {"intent": "check"})
    assert response.status_code == 400 and 'data-code="ERR_VALIDATION"' in response.content.decode()
    stale = client.post("/jobs/import/", {"intent": "start", "token": "nope", "idempotency_key": str(uuid.uuid4())})
    assert stale.status_code == 400 and "The checked file expired: check it again." in html.unescape(
        stale.content.decode())
    assert not Job.objects.unscoped().exists()


def checked_files() -> list[str]:
    storage = Job._meta.get_field("result_file").storage
    try:
        return storage.listdir(portal_batch_jobs.CHECKED_DIR)[1]
    except FileNotFoundError:
        return []


def test_a_checked_file_expires_and_is_only_its_checkers(as_user, tenants, monkeypatch):
    a, _b = tenants
    mine = make(a.stores[0])
    client = as_user(a.owner)
    csv_text = f"return_id,reason_code,reason_text,note\n{mine.return_id},damaged,破损,\n"
    text = client.post("/jobs/import/", {"intent": "check", "file": upload(csv_text)}).content.decode()
    token = re.search(r'name="token" value="([^"]+)"', text).group(1)

    other = as_user(a.agent)  # the same agency's other member: not their file
    response = other.post("/jobs/import/", {"intent": "start", "token": token, "idempotency_key": str(uuid.uuid4())})
    assert response.status_code == 400 and 'data-code="ERR_VALIDATION"' in response.content.decode()
    assert "The checked file expired: check it again." in html.unescape(response.content.decode())

    client = as_user(a.owner)
    now = time.time()
    monkeypatch.setattr(portal_batch_jobs.time, "time", lambda: now + portal_batch_jobs.CHECKED_SECONDS + 1)
    response = client.post("/jobs/import/", {"intent": "start", "token": token,
                                             "idempotency_key": str(uuid.uuid4())})
    assert response.status_code == 400 and 'id="import-error"' in response.content.decode()
    assert "The checked file expired: check it again." in html.unescape(response.content.decode())
    assert not Job.objects.unscoped().exists()

    # Expired files are removed by the next check (anyone's); the new one is kept.
    storage = Job._meta.get_field("result_file").storage
    old = f"{portal_batch_jobs.CHECKED_DIR}/{checked_files()[0]}"
    os.utime(storage.path(old), (now - portal_batch_jobs.CHECKED_SECONDS - 5,) * 2)
    monkeypatch.setattr(portal_batch_jobs.time, "time", lambda: now)
    text = client.post("/jobs/import/", {"intent": "check", "file": upload(csv_text)}).content.decode()
    fresh = re.search(r'name="token" value="([^"]+)"', text).group(1)
    assert [fresh in name for name in checked_files()] == [True]
