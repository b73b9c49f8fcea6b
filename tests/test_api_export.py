"""GET /api/v1/aftersales/export.csv: the list's filters and scoping, streamed as CSV, or a job when large."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext, override_settings

from aftersales import jobs, services
from aftersales.models import AfterSalesRequest, Job
from tests.conftest import platform_return

URL = "/api/v1/aftersales/export.csv"


def make(store, **overrides) -> AfterSalesRequest:
    ticket, _created = services.intake(store, platform_return(**overrides))
    return ticket


def body(response) -> bytes:
    assert response.status_code == 200, getattr(response, "content", b"")
    return b"".join(response.streaming_content)


def table(raw: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def exported_ids(response) -> set[str]:
    return {row["id"] for row in table(body(response))}


def test_the_export_streams_utf8_with_a_bom_and_the_documented_columns(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_reason_text="色差 / colour difference",
                  refund_amount={"currency": "GBP", "refund_total": "12.5"})
    response = api(a.owner).get(URL)
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="aftersales-')
    raw = body(response)
    assert raw.startswith(codecs.BOM_UTF8)
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
    header = next(reader)
    assert header == jobs.EXPORT_HEADER
    assert header[:6] == ["id", "store_id", "store", "market", "return_id", "order_id"]
    [row] = table(raw)
    assert row["id"] == str(ticket.public_id)
    assert row["store_id"] == str(a.stores[0].public_id) and row["store"] == a.stores[0].name
    assert row["market"] == a.stores[0].market.code
    assert row["return_id"] == ticket.return_id and row["order_id"] == ticket.order_id
    assert row["type"] == "refund_only" and row["status"] == "pending_review"
    assert row["platform_status"] == "RETURN_OR_REFUND_REQUEST_PENDING"
    assert row["reason_text"] == "色差 / colour difference"
    assert (row["refund_total"], row["refunded"], row["currency"]) == ("12.50", "0.00", "GBP")
    assert row["created_at"].endswith("+00:00")
    assert dt.datetime.fromisoformat(row["due_at"]) == ticket.due_at
    assert row["due_kind"] and row["breached_at"] == "" and row["stalled"] == "false"
    assert row["assignee"] == "" and row["tags"] == "" and row["tracking_number"] == ""


def test_bom_can_be_dropped_and_a_bad_flag_is_a_coded_400(tenants, api):
    a, _b = tenants
    make(a.stores[0], return_reason_text="尺码不合适")
    client = api(a.owner)
    raw = body(client.get(f"{URL}?bom=0"))
    assert not raw.startswith(codecs.BOM_UTF8)
    assert raw.startswith(b"id,store_id,")
    assert "尺码不合适" in raw.decode("utf-8")
    response = client.get(f"{URL}?bom=maybe")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERR_VALIDATION" and "bom" in response.json()["error"]["fields"]


def test_an_accept_header_for_csv_is_not_refused(tenants, api):
    a, _b = tenants
    make(a.stores[0])
    response = api(a.owner).get(URL, HTTP_ACCEPT="text/csv")
    assert len(table(body(response))) == 1


def test_the_list_filters_apply(tenants, api):
    a, _b = tenants
    first = make(a.stores[0])
    second = make(a.stores[1], return_type="RETURN_AND_REFUND")
    approved = make(a.stores[0], return_status="RETURN_OR_REFUND_REQUEST_SUCCESS")
    client = api(a.owner)
    assert exported_ids(client.get(f"{URL}?store={a.stores[0].public_id}")) == {str(first.public_id),
                                                                                 str(approved.public_id)}
    assert exported_ids(client.get(f"{URL}?type=return_and_refund")) == {str(second.public_id)}
    assert exported_ids(client.get(f"{URL}?status=pending_review&store={a.stores[0].public_id}")) == {
        str(first.public_id)}
    assert exported_ids(client.get(f"{URL}?q={second.order_id}")) == {str(second.public_id)}
    response = client.get(f"{URL}?status=nonsense")
    assert response.status_code == 400 and response.json()["error"]["code"] == "ERR_VALIDATION"


def test_the_order_follows_the_ordering_parameter(tenants, api):
    a, _b = tenants
    made = [make(a.stores[0]) for _ in range(3)]
    client = api(a.owner)
    rows = table(body(client.get(f"{URL}?ordering=-created_at")))
    assert [r["id"] for r in rows] == [str(t.public_id) for t in reversed(made)]
    assert client.get(f"{URL}?ordering=buyer").status_code == 400


@pytest.mark.parametrize(("who", "visible"), [("owner", {0, 1, 2}), ("agent", {0, 1}), ("viewer", {0, 1, 2}),
                                               ("outsider", set())])
def test_foreign_and_ungranted_rows_are_never_exported(tenants, api, who, visible):
    a, b = tenants
    mine = [make(store) for store in a.stores]
    foreign = [make(store) for store in b.stores]
    response = api(getattr(a, who)).get(URL)
    raw = body(response)
    assert {r["id"] for r in table(raw)} == {str(mine[i].public_id) for i in visible}
    for ticket in foreign:
        assert ticket.return_id.encode() not in raw and str(ticket.public_id).encode() not in raw


def test_unauthenticated_is_401(tenants, api):
    response = api().get(URL)
    assert response.status_code == 401 and response.json()["error"]["code"] == "ERR_AUTH_001"


def test_cells_a_spreadsheet_would_run_are_defused(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0], return_reason_text='=HYPERLINK("http://evil.example","click")',
                  return_reason="+cmd|' /C calc'!A0")
    AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(tags=["-2+3", "vip"],
                                                                     assignee=a.agent)
    [row] = table(body(api(a.owner).get(URL)))
    assert row["reason_text"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"
    assert row["reason_key"] == "'+cmd|' /C calc'!A0"
    assert row["tags"] == "'-2+3;vip"
    assert row["assignee"] == a.agent.username
    assert jobs.safe_cell("@x") == "'@x" and jobs.safe_cell("\tx") == "'\tx" and jobs.safe_cell("12.50") == "12.50"


def test_the_query_count_does_not_grow_with_the_rows(tenants, api):
    a, _b = tenants
    client = api(a.agent)
    body(client.get(URL))  # the token's first use stamps last_used_at (once a minute): not a per-export cost
    counts = []
    for n in (2, 30):
        while AfterSalesRequest.objects.for_agency(a.agency).count() < n:
            make(a.stores[0])
        with CaptureQueriesContext(connection) as ctx:
            rows = table(body(client.get(URL)))
        assert len(rows) == n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 6, [q["sql"] for q in ctx.captured_queries]


def test_rows_come_from_a_server_side_cursor(tenants, api, monkeypatch):
    a, _b = tenants
    for _ in range(3):
        make(a.stores[0])
    monkeypatch.setattr(jobs, "STREAM_BLOCK_ROWS", 1)
    stream = iter(api(a.owner).get(URL).streaming_content)
    next(stream)  # header
    next(stream)  # first row: the cursor is open, the rest not fetched
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_cursors")
        names = [r[0] for r in cursor.fetchall()]
    assert any(name.startswith("_django_curs_") for name in names), names
    assert len(list(stream)) == 2


@override_settings(EXPORT_SYNC_MAX_ROWS=2)
def test_over_the_threshold_the_export_becomes_a_job(tenants, api, django_capture_on_commit_callbacks):
    a, b = tenants
    made = [make(a.stores[0], return_reason_text="质量问题") for _ in range(3)]
    make(b.stores[0])
    client = api(a.agent)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.get(f"{URL}?store={a.stores[0].public_id}&bom=0")
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1  # the task is enqueued once the job is committed
    data = response.json()
    assert data["kind"] == "export" and data["status"] == "queued" and data["file_url"] is None
    assert response["Location"] == data["url"] and data["url"].endswith(f"/api/v1/jobs/{data['id']}/")
    job = Job.objects.for_agency(a.agency).get(public_id=data["id"])
    assert job.params == {"query": {"store": [str(a.stores[0].public_id)]}, "bom": False}

    assert jobs.run(job.pk) == "succeeded"
    done = client.get(data["url"]).json()
    assert done["status"] == "succeeded" and done["total"] == 3 and done["done"] == 3 and done["progress"] == 1.0
    assert done["report"]["rows"] == 3 and done["report"]["columns"] == jobs.EXPORT_HEADER
    download = client.get(done["file_url"])
    assert download.status_code == 200 and download["Content-Type"] == "text/csv; charset=utf-8"
    raw = b"".join(download.streaming_content)
    assert not raw.startswith(codecs.BOM_UTF8) and "质量问题" in raw.decode("utf-8")
    assert {r["id"] for r in table(raw)} == {str(t.public_id) for t in made}

    # The file is the creator's (and their owner's): nobody else sees the job or its file.
    assert api(a.owner).get(done["file_url"]).status_code == 200
    for other in (a.viewer, b.owner):
        assert api(other).get(done["file_url"]).status_code == 404
        assert api(other).get(data["url"]).status_code == 404


def test_an_export_job_with_a_bom_and_no_rows(tenants, api):
    a, _b = tenants
    from stores.services import actor_for_user

    job = jobs.start_export(actor_for_user(a.owner), _query({"status": ["closed"]}), bom=True)
    assert jobs.run(job.pk) == "succeeded"
    job.refresh_from_db()
    raw = job.result_file.open("rb").read()
    assert raw.startswith(codecs.BOM_UTF8) and table(raw) == []
    assert raw.decode("utf-8-sig").splitlines() == [",".join(jobs.EXPORT_HEADER)]


def test_a_job_without_a_file_answers_err_job_001(tenants, api):
    a, _b = tenants
    from stores.services import actor_for_user

    job = jobs.start_export(actor_for_user(a.owner), _query({}), bom=True)
    response = api(a.owner).get(f"/api/v1/jobs/{job.public_id}/file/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "ERR_JOB_001"


def _query(values: dict):
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    for key, items in values.items():
        query.setlist(key, items)
    return query


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_writes_a_large_export(tenants, api, monkeypatch):
    """The job path end to end: outside a test transaction the cursor is declared WITH HOLD and survives the
    progress writes between its fetches."""
    import time

    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    a, b = tenants
    made = [make(a.stores[i % 3], return_reason_text="少件/漏发") for i in range(7)]
    make(b.stores[0])
    monkeypatch.setattr(jobs, "EXPORT_CHUNK_SIZE", 2)
    monkeypatch.setattr(jobs, "EXPORT_PROGRESS_EVERY", 2)
    client = api(a.owner)
    with app.connection() as conn:
        conn.ensure_connection(max_retries=3)
        conn.default_channel.queue_purge(app.conf.task_default_queue)
    with override_settings(EXPORT_SYNC_MAX_ROWS=5), start_worker(app, pool="solo", perform_ping_check=False,
                                                                  shutdown_timeout=20):
        response = client.get(URL)
        assert response.status_code == 202, response.content
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = client.get(response["Location"]).json()
            if shown["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
    assert shown["status"] == "succeeded", shown
    assert shown["done"] == shown["total"] == 7
    raw = b"".join(client.get(shown["file_url"]).streaming_content)
    assert raw.startswith(codecs.BOM_UTF8) and "少件/漏发" in raw.decode("utf-8-sig")
    assert [r["id"] for r in table(raw)] == [str(t.public_id) for t in sorted(made, key=lambda t: (t.due_at, t.pk))]


def test_lines_made_by_postgres_equal_the_python_formatting_cell_for_cell(tenants):
    """The export's lines are built in SQL (jobs.line_expression); they must be what csv.writer makes of
    export_rows for every awkward value: formula starts, commas, quotes, line breaks, CJK, empty and NULL cells,
    times with and without microseconds, tags."""
    a, _b = tenants
    awkward = ['=HYPERLINK("x")', "+1", "-2", "@sum", "\tx", "a,b", 'say "hi"', "two\nlines", "\r", "色差, 质量",
               "", "plain"]
    now = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
    for i, text in enumerate(awkward):
        ticket = make(a.stores[i % 2], return_reason_text=text, buyer_name=text)
        AfterSalesRequest.objects.unscoped().filter(pk=ticket.pk).update(
            reason_key=text[:160], tags=[text, "vip"] if i % 2 else [], platform_status=text,
            due_at=now + dt.timedelta(microseconds=i * 7) if i % 3 else None,
            stalled_at=now if i % 4 == 0 else None, breached_at=None if i % 2 else now)
    from stores.services import actor_for_user

    qs = jobs.export_queryset(actor_for_user(a.owner), {})
    out = io.StringIO()
    writer = csv.writer(out)
    for cells in jobs.export_rows(qs):
        writer.writerow(cells)
    python = out.getvalue()
    postgres = "".join(jobs.export_lines(qs))
    assert postgres.count("\r\n") >= len(awkward)
    assert postgres == python
