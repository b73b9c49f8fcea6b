"""POST /api/v1/aftersales/imports/reasons/ (批量导入退货原因): files, encodings, per-row checks, the apply job.

Workbooks are built here with openpyxl; no binary fixture is checked in.
"""

from __future__ import annotations

import codecs
import io

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from aftersales import jobs, services
from aftersales.models import AfterSalesRequest, Job, OperationLog
from tests.conftest import platform_return

URL = "/api/v1/aftersales/imports/reasons/"
HEADER = "return_id,reason_code,reason_text,note\n"


def make(store, **overrides) -> AfterSalesRequest:
    ticket, _created = services.intake(store, platform_return(**overrides))
    return ticket


def fresh(ticket) -> AfterSalesRequest:
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


def upload(client, name: str, data: bytes, query: str = ""):
    return client.post(f"{URL}{query}", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def xlsx(rows: list[list]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def error(response) -> str:
    return response.json()["error"]["code"]


def report(response) -> dict[int, dict]:
    assert response.status_code == 200, response.content
    return {r["row"]: r for r in response.json()["rows"]}


# --- dry run: every row checked, nothing written ---------------------------------------------------------------
def test_a_dry_run_reports_every_row_and_writes_nothing(tenants, api):
    a, b = tenants
    ok = make(a.stores[0])
    by_order = make(a.stores[1])
    ungranted = make(a.stores[2])
    foreign = make(b.stores[0])
    text = (
        "return_id,order_id,reason_code,reason_text,note\n"
        f"{ok.return_id},,wrong_size,尺码不合适,客户来电\n"              # 2 ok
        f",{by_order.order_id},,颜色与描述不符,\n"                        # 3 ok (by order id, text only)
        f"{ungranted.return_id},,x,y,\n"                                    # 4 not granted → unknown
        f"{foreign.return_id},,x,y,\n"                                      # 5 another agency → unknown
        "RET-NOPE,,x,y,\n"                                                  # 6 unknown
        f"{ok.return_id},,x,y,\n"                                           # 7 same request again
        ",,x,y,\n"                                                          # 8 no id
        f"{by_order.return_id},,,,\n"                                       # 9 no reason
        f"{by_order.return_id},,{'k' * 161},y,\n"                           # 10 too long
    )
    client = api(a.agent)
    rows = report(upload(client, "reasons.csv", text.encode("utf-8")))
    assert rows[2]["ok"] and rows[2]["ticket"] == str(ok.public_id) and rows[2]["code"] is None
    assert rows[3]["ok"] and rows[3]["ticket"] == str(by_order.public_id)
    for n in (4, 5, 6):
        assert rows[n]["code"] == "ERR_IMPORT_101" and rows[n]["ticket"] is None
    assert rows[4]["message"] == rows[5]["message"] == rows[6]["message"]  # foreign = ungranted = unknown
    assert rows[7]["code"] == "ERR_IMPORT_106"
    assert rows[8]["code"] == "ERR_IMPORT_104"
    assert rows[9]["code"] == "ERR_IMPORT_102"
    assert rows[10]["code"] == "ERR_IMPORT_103" and rows[10]["fields"] == ["reason_code"]
    body = upload(client, "reasons.csv", text.encode("utf-8")).json()
    assert (body["dry_run"], body["total"], body["valid"], body["invalid"]) == (True, 9, 2, 7)
    assert fresh(ok).reason_key != "wrong_size"
    assert not OperationLog.objects.filter(action="reason_imported").exists()
    assert not Job.objects.for_agency(a.agency).exists()


def test_a_visible_store_without_after_sales_handling_is_a_per_row_403_code(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[2])
    rows = report(upload(api(a.viewer), "r.csv", f"{HEADER}{ticket.return_id},k,t,\n".encode()))
    assert rows[2]["code"] == "ERR_PERM_001" and not rows[2]["ok"]
    rows = report(upload(api(a.outsider), "r.csv", f"{HEADER}{ticket.return_id},k,t,\n".encode()))
    assert rows[2]["code"] == "ERR_IMPORT_101"


def test_the_check_costs_the_same_queries_whatever_the_rows(tenants, api):
    a, _b = tenants
    tickets = [make(a.stores[i % 2]) for i in range(12)]
    client = api(a.agent)
    upload(client, "r.csv", HEADER.encode())  # the token's first use
    counts = []
    for n in (2, 12):
        text = HEADER + "".join(f"{t.return_id},k,t,\n" for t in tickets[:n])
        with CaptureQueriesContext(connection) as ctx:
            assert sum(r["ok"] for r in report(upload(client, "r.csv", text.encode())).values()) == n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


# --- files and encodings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("encode", [lambda t: t.encode("utf-8"), lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
                                    lambda t: t.encode("gb18030"), lambda t: ("\ufeff" + t).encode("gb18030")],
                         ids=["utf-8", "utf-8-bom", "gb18030", "gb18030-bom"])
def test_csv_in_utf8_with_or_without_bom_or_gb18030(tenants, api, encode):
    a, _b = tenants
    ticket = make(a.stores[0])
    text = f"{HEADER}{ticket.return_id},quality,质量问题：衣服起球，“色差”严重,备注\r\n"
    rows = report(upload(api(a.owner), "退货原因.csv", encode(text)))
    assert rows[2]["ok"], rows


@pytest.mark.parametrize(("data", "code"), [
    ("return_id,reason_code,reason_text,note\nR1,k,café crème,\n".encode("latin-1"), "ERR_IMPORT_005"),
    ("return_id,reason_code,reason_text\nR1,k,品質\n".encode("utf-16"), "ERR_IMPORT_005"),
    (b"return_id,reason_code,reason_text\nR1,k,\x80\xff\xfe\n", "ERR_IMPORT_005"),
    (b"return_id,reason_code\x00,reason_text\n", "ERR_IMPORT_001"),
], ids=["latin-1", "utf-16", "garbage", "binary"])
def test_undecodable_csv_is_refused_with_a_code(tenants, api, data, code):
    a, _b = tenants
    response = upload(api(a.owner), "r.csv", data)
    assert response.status_code == 400 and error(response) == code, response.content


def test_an_xlsx_workbook_is_read(tenants, api):
    a, _b = tenants
    first, second = make(a.stores[0]), make(a.stores[1], order_id="1234567")
    data = xlsx([["Return_ID", "order_id", "reason_code", "reason_text", "note"],
                 [first.return_id, None, "wrong_item", "发错货", "仓库确认"],
                 [None, None, None, None, None],
                 [None, 1234567, None, "破损", None],
                 [None, 577123456789012345, None, "x", None]])
    rows = report(upload(api(a.owner), "reasons.xlsx", data))
    assert rows[2]["ok"] and rows[4]["ok"] and rows[4]["ticket"] == str(second.public_id)
    assert 3 not in rows  # blank rows are skipped, numbering follows the sheet
    assert rows[5]["code"] == "ERR_IMPORT_104"  # an 18-digit number Excel has rounded


def test_formulas_are_refused_in_xlsx_and_csv(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    data = xlsx([["return_id", "reason_code", "reason_text"], ["R1", "k", "=HYPERLINK(\"http://x\")"],
                 ["R2", "=1+1", "t"]])
    response = upload(client, "r.xlsx", data)
    assert response.status_code == 400 and error(response) == "ERR_IMPORT_004"
    listed = response.json()["error"]["fields"]["file"][0]
    assert "C2" in listed and "B3" in listed
    response = upload(client, "r.csv", f"{HEADER}R1,k, =cmd|' /C calc'!A0,\n".encode())
    assert response.status_code == 400 and error(response) == "ERR_IMPORT_004"


@pytest.mark.parametrize(("name", "data"), [
    ("reasons.txt", HEADER.encode()),
    ("reasons.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64),
    ("reasons.xlsx", HEADER.encode()),
    ("reasons.xlsx", b"PK\x03\x04 not really a zip"),
    ("reasons.csv", b"PK\x03\x04 a zip named csv"),
], ids=["txt", "xls", "csv-named-xlsx", "broken-zip", "zip-named-csv"])
def test_anything_but_xlsx_or_csv_is_err_import_001(tenants, api, name, data):
    a, _b = tenants
    response = upload(api(a.owner), name, data)
    assert response.status_code == 400 and error(response) == "ERR_IMPORT_001"


def test_a_zip_that_is_not_a_workbook_is_err_import_001(tenants, api):
    import zipfile

    a, _b = tenants
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("word/document.xml", "<xml/>")
    response = upload(api(a.owner), "r.xlsx", buf.getvalue())
    assert response.status_code == 400 and error(response) == "ERR_IMPORT_001"


@pytest.mark.parametrize(("header", "hint"), [
    ("reason_code,reason_text,note", "return_id | order_id"),
    ("return_id,reason_txt,reason_text", "reason_txt"),
    ("return_id,reason_code,reason_text,reason_text", "reason_text"),
    ("", "header"),
])
def test_wrong_headers_are_err_import_002_listing_the_expected_ones(tenants, api, header, hint):
    a, _b = tenants
    response = upload(api(a.owner), "r.csv", f"{header}\nR1,k,t\n".encode() if header else b"\nR1,k,t\n")
    assert response.status_code == 400 and error(response) == "ERR_IMPORT_002"
    fields = response.json()["error"]["fields"]
    assert fields["expected"] == ["return_id", "order_id", "reason_code", "reason_text", "note"]
    assert hint in fields["file"][0]


def test_too_large_files_are_413(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    with override_settings(REASON_IMPORT_MAX_BYTES=100):
        response = upload(client, "r.csv", (HEADER + "R1,k,t,\n" * 20).encode())
    assert response.status_code == 413 and error(response) == "ERR_IMPORT_003"
    with override_settings(REASON_IMPORT_MAX_ROWS=3):
        response = upload(client, "r.csv", (HEADER + "R1,k,t,\n" * 4).encode())
        assert response.status_code == 413 and error(response) == "ERR_IMPORT_003"
        response = upload(client, "r.xlsx", xlsx([["return_id", "reason_code", "reason_text"]] + [["R", "k", "t"]] * 4))
        assert response.status_code == 413 and error(response) == "ERR_IMPORT_003"
        assert upload(client, "r.csv", (HEADER + "R1,k,t,\n" * 3).encode()).status_code == 200


def test_the_request_needs_a_file_and_multipart(tenants, api):
    a, _b = tenants
    client = api(a.owner)
    response = client.post(URL, {}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    response = client.post(URL, {"file": "x"}, format="json")
    assert response.status_code == 415
    response = upload(client, "r.csv", HEADER.encode(), "?dry_run=perhaps")
    assert response.status_code == 400 and error(response) == "ERR_VALIDATION"
    assert api().post(URL, {}, format="multipart").status_code == 401


# --- applying: a job, row by row ------------------------------------------------------------------------------
def test_applying_runs_as_a_job_writes_valid_rows_and_logs_them(tenants, api, django_capture_on_commit_callbacks):
    a, b = tenants
    first, second = make(a.stores[0]), make(a.stores[1])
    ungranted, foreign = make(a.stores[2]), make(b.stores[0])
    before = (fresh(ungranted).reason_key, fresh(foreign).reason_key)
    text = (f"{HEADER}{first.return_id},wrong_size,尺码不合适,客户来电确认\n"
            f"{second.return_id},,只改文字,\n"
            f"{ungranted.return_id},k,t,\n{foreign.return_id},k,t,\n{second.return_id},,,\n")
    client = api(a.agent)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(client, "reasons.csv", text.encode("utf-8"), "?dry_run=0")
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    data = response.json()
    assert data["kind"] == "import_reasons" and data["total"] == 5 and response["Location"] == data["url"]
    assert fresh(first).reason_key != "wrong_size"  # nothing before the job runs

    assert jobs.run(Job.objects.unscoped().get(public_id=data["id"]).pk) == "succeeded"
    shown = client.get(data["url"]).json()
    assert shown["status"] == "succeeded" and shown["done"] == 5 and shown["progress"] == 1.0
    rows = {r["row"]: r for r in shown["report"]["rows"]}
    assert rows[2]["ok"] and rows[3]["ok"]
    assert rows[4]["code"] == rows[5]["code"] == "ERR_IMPORT_101" and rows[6]["code"] == "ERR_IMPORT_102"
    assert (shown["report"]["succeeded"], shown["report"]["failed"]) == (2, 3)

    assert (fresh(first).reason_key, fresh(first).reason_text) == ("wrong_size", "尺码不合适")
    original_key = second.reason_key
    assert (fresh(second).reason_key, fresh(second).reason_text) == (original_key, "只改文字")
    assert (fresh(ungranted).reason_key, fresh(foreign).reason_key) == before
    [log] = OperationLog.objects.filter(ticket_id=first.pk, action="reason_imported")
    assert log.payload["note"] == "客户来电确认" and log.payload["job"] == data["id"] and log.payload["row"] == 2
    assert log.payload["after"] == {"reason_key": "wrong_size", "reason_text": "尺码不合适"}
    assert log.actor_label == a.agent.username and log.state_before == log.state_after
    assert not OperationLog.objects.filter(ticket_id__in=[ungranted.pk, foreign.pk], action="reason_imported")
    assert fresh(first).first_human_response_at is None  # an import is not a response to the buyer


def test_a_resumed_import_applies_each_row_once(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = api(a.owner)
    data = upload(client, "r.csv", f"{HEADER}{ticket.return_id},k,t,n\n".encode(), "?dry_run=0").json()
    job = Job.objects.unscoped().get(public_id=data["id"])
    assert jobs.run(job.pk) == "succeeded"
    # As if the worker had died after the row's commit but before the progress write: run it again.
    Job.objects.unscoped().filter(pk=job.pk).update(status="running", done=0, report={}, heartbeat_at=None)
    assert jobs.run(job.pk) == "succeeded"
    assert OperationLog.objects.filter(ticket_id=ticket.pk, action="reason_imported").count() == 1
    assert Job.objects.unscoped().get(pk=job.pk).report["succeeded"] == 1


def test_a_permission_lost_before_the_job_runs_fails_that_row(tenants, api):
    a, _b = tenants
    ticket = make(a.stores[0])
    client = api(a.agent)
    data = upload(client, "r.csv", f"{HEADER}{ticket.return_id},k,t,\n".encode(), "?dry_run=0").json()
    from stores import services as store_services

    # The agent keeps seeing the store (analyst) but loses after-sales handling on it.
    membership = a.membership(a.agent)
    store_services.assign_role(actor=None, membership=membership, role=a.roles["analyst"], stores=a.stores[:1])
    store_services.revoke_role(actor=None, membership=membership, role=a.roles["aftersales-agent"],
                               stores=a.stores[:1])
    assert jobs.run(Job.objects.unscoped().get(public_id=data["id"]).pk) == "succeeded"
    [row] = client.get(data["url"]).json()["report"]["rows"]
    assert not row["ok"] and row["code"] == "ERR_PERM_001"
    assert not OperationLog.objects.filter(ticket_id=ticket.pk, action="reason_imported").exists()
