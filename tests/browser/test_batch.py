"""Batch review (批量审核) and background jobs in a real browser: three requests of three stores selected on the
queue, one refused → the per-item result list (2 done, 1 failed with its code and hint), in English and Chinese;
a larger batch run by a real Celery worker, its page following the progress bar; the imports & exports page."""

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect

from aftersales import jobs
from aftersales import services as aftersales_services
from aftersales.models import AfterSalesRequest, Job
from portal import batch as portal_batch
from tests.conftest import platform_return

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def make(store, **fields) -> AfterSalesRequest:
    ticket, created = aftersales_services.intake(store, platform_return())
    assert created
    if fields:
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(**fields)
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def state_of(ticket) -> str:
    return AfterSalesRequest.objects.unscoped().values_list("state", flat=True).get(pk=ticket.pk)


def result_rows(page):
    return page.locator("#batch-results tbody tr.item")


def test_batch_review_with_one_failure_in_the_batch(page, live_server, tenants, login, shot):
    a, _b = tenants
    first, refused, third = make(a.stores[0]), make(a.stores[1], state="refund_approved"), make(a.stores[2])
    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/queue/")  # all stores: rows of three stores
    expect(page.locator("#queue tr.ticket")).to_have_count(3)
    count = page.locator("#batch-count")
    expect(count).to_have_text("Selected: 0")

    # Nothing selected: refused with the code, nothing done, and the way back to the queue.
    page.get_by_role("button", name="Continue…").click()
    error = page.locator("#batch-error")
    expect(error).to_have_attribute("data-code", "ERR_VALIDATION")
    expect(error).to_contain_text("Select at least one request on the queue.")
    page.get_by_role("link", name="← Back").click()
    expect(page).to_have_url(f"{live_server.url}/queue/")

    # Select with the mouse and with the keyboard (Space on a focused checkbox).
    page.get_by_label(f"Select {first.return_id}").check()
    page.get_by_label(f"Select {refused.return_id}").check()
    page.get_by_label(f"Select {third.return_id}").focus()
    page.keyboard.press("Space")
    expect(count).to_have_text("Selected: 3")
    expect(page.get_by_label("Select all on this page")).to_be_checked()
    expect(page.locator("#queue tr.ticket.picked")).to_have_count(3)
    page.locator("#batch-action").select_option("approve")
    shot(page, "queue-with-selection")

    page.get_by_role("button", name="Continue…").click()
    expect(page).to_have_url(re.compile(r"/batch/\?"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Batch review (批量审核): Approve")
    expect(page.locator("#batch-selected tbody tr")).to_have_count(3)
    expect(page.get_by_label("Decision")).to_have_value("APPROVE_REFUND")
    shot(page, "confirm")
    page.get_by_role("button", name="Approve: 3 requests").click()

    expect(page).to_have_url(re.compile(r"/batch/results/[0-9a-f-]{36}/$"))
    expect(page.locator(".batch-summary")).to_contain_text("2 requests done, 1 failed.")
    rows = result_rows(page)
    expect(rows).to_have_count(3)
    failed = rows.nth(0)  # failures first
    expect(failed).to_have_attribute("data-return-id", refused.return_id)
    expect(failed).to_have_attribute("data-code", "ERR_STATE_001")
    expect(failed.locator(".result-badge")).to_have_text("✗ Failed")
    expect(failed.locator(".error-hint")).to_contain_text("Reload the request")
    expect(failed).to_contain_text(a.stores[1].name)
    expect(rows.locator(".result-badge.ok")).to_have_count(2)
    expect(rows.nth(1).locator("a.return-id")).to_have_text(re.compile(rf"^({first.return_id}|{third.return_id})$"))
    shot(page, "batch-result")
    assert state_of(first) == state_of(third) == "refund_approved" and state_of(refused) == "refund_approved"

    page.locator("header select[name=language]").select_option("zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(result_rows(page).nth(0).locator(".error-message")).to_have_text("售后单当前状态下不能执行此操作。")
    expect(result_rows(page).nth(0).locator(".result-badge")).to_have_text("✗ 失败")
    shot(page, "batch-result-zh")


def test_a_large_batch_runs_as_a_job_and_its_page_follows_the_progress(page, live_server, tenants, login, shot,
                                                                       monkeypatch):
    """A real worker runs the job. It is held after its second progress write until the test lets it go, so the
    page is seen mid-way (2 of 4) without relying on timing; every wait is an explicit expectation."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    a, _b = tenants
    monkeypatch.setattr(portal_batch, "SYNC_MAX", 2)  # the live server runs in this process
    monkeypatch.setattr(jobs, "BULK_PROGRESS_EVERY", 1)
    gate, paused = threading.Event(), threading.Event()
    write_progress = jobs._progress

    def held_progress(job, token, **fields):
        write_progress(job, token, **fields)
        if fields.get("done") == 2:
            paused.set()
            assert gate.wait(60), "the test never released the worker"

    monkeypatch.setattr(jobs, "_progress", held_progress)
    tickets = [make(a.stores[i % 2]) for i in range(3)]
    refused = make(a.stores[0], state="refund_approved")
    with app.connection() as conn:
        conn.ensure_connection(max_retries=3)
        conn.default_channel.queue_purge(app.conf.task_default_queue)

    login(page, live_server, a.owner)
    page.goto(f"{live_server.url}/queue/")
    expect(page.locator("#queue tr.ticket")).to_have_count(4)
    page.get_by_label("Select all on this page").check()
    expect(page.locator("#batch-count")).to_have_text("Selected: 4")
    page.get_by_role("button", name="Continue…").click()
    expect(page.locator(".job-notice")).to_contain_text("the batch runs as a background job")
    page.get_by_role("button", name="Approve: 4 requests").click()

    job = Job.objects.unscoped().get()
    expect(page).to_have_url(f"{live_server.url}/jobs/{job.public_id}/")
    bar = page.get_by_label("Progress")
    expect(bar).to_have_attribute("max", "4")
    expect(bar).to_have_attribute("value", "0")
    expect(page.locator("#job-progress-text")).to_have_text("0 of 4 done")
    expect(page.locator("#job-status")).to_have_text("Queued")

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        try:
            assert paused.wait(30), "the worker did not reach the second item"
            expect(page.locator("#job-progress-text")).to_have_text("2 of 4 done", timeout=10_000)
            expect(bar).to_have_attribute("value", "2")
            expect(page.locator("#job-status")).to_have_text("Running")
            expect(page.locator("#job-waiting")).to_be_visible()
            shot(page, "job-progress")
        finally:
            gate.set()
        expect(page.locator("#job-progress-text")).to_have_text("4 of 4 done", timeout=30_000)
        expect(page.locator("#job-status")).to_have_text("Succeeded")
        rows = result_rows(page)
        expect(rows).to_have_count(4, timeout=10_000)
    expect(page.locator("#job-waiting")).to_have_count(0)
    expect(rows.nth(0)).to_have_attribute("data-code", "ERR_STATE_001")
    expect(rows.nth(0)).to_have_attribute("data-return-id", refused.return_id)
    expect(rows.locator(".result-badge.ok")).to_have_count(3)
    shot(page, "job-finished")
    assert {state_of(t) for t in tickets} == {"refund_approved"}

    page.get_by_role("link", name="Imports & exports").first.click()
    expect(page).to_have_url(f"{live_server.url}/jobs/")
    row = page.locator(f'#jobs tr[data-job="{job.public_id}"]')
    expect(row.locator(".job-status")).to_have_text("Succeeded")
    expect(row.locator(".progress-text")).to_have_text("4 of 4 done")
    expect(page.get_by_label("File (.xlsx or .csv)")).to_be_visible()
    shot(page, "jobs-page")


HIDE = """hidden => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_hidden_tab_does_not_poll_the_job_and_polls_at_once_when_shown(page, live_server, tenants, login):
    """The page's timers run on Playwright's clock, so "no poll while hidden" covers many poll periods without
    waiting, and "at once when shown" is a request made before the clock moves at all."""
    a, _b = tenants
    job = Job.objects.create(agency=a.agency, created_by=a.owner, kind=Job.Kind.BULK_ACTION, total=4,
                             params={"action": "close", "ids": []})  # queued, no worker: it stays unfinished
    polls = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/status.json") else None)
    login(page, live_server, a.owner)
    page.clock.install()
    page.goto(f"{live_server.url}/jobs/{job.public_id}/")
    expect(page.locator("#job-progress-text")).to_have_text("0 of 4 done")
    with page.expect_request(re.compile(r"/status\.json$")):
        page.clock.run_for(1_100)  # visible: the first poll after one period
    page.wait_for_load_state("networkidle")
    seen = len(polls)

    page.evaluate(HIDE, True)
    page.clock.run_for(30_000)  # thirty periods hidden
    page.wait_for_timeout(300)  # (real time) a request started now would have been seen
    assert len(polls) == seen

    with page.expect_request(re.compile(r"/status\.json$"), timeout=3_000):
        page.evaluate(HIDE, False)  # shown again: a poll at once, the clock not moved
    assert len(polls) == seen + 1
    with page.expect_request(re.compile(r"/status\.json$")):
        page.clock.run_for(1_100)  # and polling goes on
