"""批量导入退货原因: return reasons from an Excel (.xlsx) or CSV file, checked row by row, applied as a job.

The file is read here (``read_file``: format, encoding, headers, formulas, size — whole-file refusals, each with
its code); every row is then checked against the caller's visible stores (``check_rows``); a dry run stops
there. Applying runs as a job (``aftersales.jobs``) that re-checks each row and writes it with ``apply_checked``:
the request is locked, its ``reason_key`` / ``reason_text`` set, and a ``reason_imported`` operation-log row
written (the note in its payload) in one transaction. A bad row changes nothing.

A row naming a request of another agency or of a store the caller is not granted is reported exactly like an
unknown id (``ERR_IMPORT_101``): the report never confirms that a foreign request exists.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from aftersales import oplog, services
from aftersales.models import AfterSalesRequest, OperationLog
from aftersales.oplog import Performer
from stores import errors
from stores.errors import AppError, ErrorCode
from stores.permissions import PERM_ERROR_CODES, StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm, store_perms

ACTION = "reason_imported"
ID_COLUMNS = ("return_id", "order_id")
REQUIRED_COLUMNS = ("reason_code", "reason_text")
OPTIONAL_COLUMNS = ("note",)
EXPECTED_COLUMNS = [*ID_COLUMNS, *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
MAX_LENGTHS = {"reason_code": 160, "reason_text": 500, "note": 500, "return_id": 64, "order_id": 64}
MAX_COLUMNS = 30
MAX_FORMULAS_LISTED = 20
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_ROWS = 5000
MAX_UNZIPPED_FACTOR = 20  # an .xlsx may expand to at most 20× the byte limit (zip bombs)
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls
EXACT_FLOAT_LIMIT = 2**53  # Excel stores numbers as doubles: longer ids have lost digits


def max_bytes() -> int:
    return int(getattr(settings, "REASON_IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def max_rows() -> int:
    return int(getattr(settings, "REASON_IMPORT_MAX_ROWS", DEFAULT_MAX_ROWS))


def _file_error(error: ErrorCode, message: str, **data) -> AppError:
    return AppError(error, fields={"file": [message]}, data=data)


# --- reading the file --------------------------------------------------------------------------------------
def read_file(upload) -> list[dict[str, Any]]:
    """The data rows of an uploaded file as records (``row`` = its row number in the sheet, header = 1).

    Refuses the whole file with ERR_IMPORT_001 (not .xlsx/.csv or unreadable), 002 (headers), 003 (too large:
    bytes or rows), 004 (formulas) or 005 (encoding)."""
    name = (getattr(upload, "name", "") or "").lower()
    limit = max_bytes()
    size = getattr(upload, "size", None)
    if size is not None and size > limit:
        raise _file_error(errors.ERR_IMPORT_003, _("At most %(n)s bytes per file.") % {"n": limit}, max_bytes=limit)
    if hasattr(upload, "seek"):
        upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise _file_error(errors.ERR_IMPORT_003, _("At most %(n)s bytes per file.") % {"n": limit}, max_bytes=limit)
    if name.endswith(".xlsx"):
        table = _xlsx_table(data)
    elif name.endswith(".csv"):
        table = _csv_table(data)
    else:
        raise _file_error(errors.ERR_IMPORT_001, _("Upload a .xlsx or .csv file."))
    return _records(table)


def _xlsx_table(data: bytes) -> list[tuple[int, list]]:
    import openpyxl
    from openpyxl.utils import get_column_letter

    if not data.startswith(ZIP_MAGIC):
        raise _file_error(errors.ERR_IMPORT_001, _("This is not an Excel workbook (.xlsx)."))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _file_error(errors.ERR_IMPORT_001, _("This is not an Excel workbook (.xlsx).")) from None
    if unzipped > max_bytes() * MAX_UNZIPPED_FACTOR:
        raise _file_error(errors.ERR_IMPORT_003, _("The workbook expands to too much data."), max_bytes=max_bytes())
    try:
        # data_only=False: formulas are read as formulas (refused below), not as their cached values.
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:  # any failure to parse an untrusted workbook is the same refusal
        raise _file_error(errors.ERR_IMPORT_001, _("This is not an Excel workbook (.xlsx).")) from None
    table: list[tuple[int, list]] = []
    formulas: list[str] = []
    try:
        if not book.worksheets:
            raise _file_error(errors.ERR_IMPORT_001, _("The workbook has no sheet."))
        sheet = book.worksheets[0]
        for number, cells in enumerate(sheet.iter_rows(max_col=MAX_COLUMNS), start=1):
            values = []
            for col, cell in enumerate(cells, start=1):
                if getattr(cell, "data_type", None) == "f":
                    formulas.append(f"{get_column_letter(col)}{number}")
                values.append(cell.value)
            if any(v not in (None, "") for v in values):
                table.append((number, values))
                if len(table) > max_rows() + 1:  # header + max_rows data rows
                    raise _too_many_rows()
    except AppError:
        raise
    except Exception:
        raise _file_error(errors.ERR_IMPORT_001, _("This is not an Excel workbook (.xlsx).")) from None
    finally:
        book.close()
    if formulas:
        raise _formulas(formulas)
    return table


def _too_many_rows() -> AppError:
    n = max_rows()
    return _file_error(errors.ERR_IMPORT_003, _("At most %(n)s rows per file.") % {"n": n}, max_rows=n)


def _formulas(cells: list[str]) -> AppError:
    listed = ", ".join(cells[:MAX_FORMULAS_LISTED]) + (" …" if len(cells) > MAX_FORMULAS_LISTED else "")
    return AppError(errors.ERR_IMPORT_004, fields={"file": [_("Formulas in cells: %(cells)s") % {"cells": listed}]},
                    data={"cells": cells[:MAX_FORMULAS_LISTED]})


def _is_chinese_text(ch: str) -> bool:
    """Characters a GB18030 file of return reasons plausibly holds besides ASCII: Chinese and its punctuation."""
    code = ord(ch)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x3000 <= code <= 0x303F
            or 0xFF00 <= code <= 0xFFEF or 0x2000 <= code <= 0x206F or code == 0xB7)


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM); else GB18030 when the bytes decode strictly and every non-ASCII character is
    Chinese or CJK / full-width punctuation (a Latin-1 or Shift-JIS file does not pass); else ERR_IMPORT_005."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _file_error(errors.ERR_IMPORT_005, _("UTF-16 text is not accepted; save the file as CSV UTF-8."))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030").removeprefix("\ufeff")  # GB18030 has a BOM too (84 31 95 33)
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ord(ch) < 0x80 or _is_chinese_text(ch) for ch in text):
        return text
    raise _file_error(errors.ERR_IMPORT_005, _("The file is neither UTF-8 nor GB18030 Chinese text."))


def _csv_table(data: bytes) -> list[tuple[int, list]]:
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    if data.startswith((ZIP_MAGIC, OLE_MAGIC)) or (b"\x00" in data and not utf16):
        raise _file_error(errors.ERR_IMPORT_001, _("This is not a CSV text file."))
    text = decode_text(data)
    first_line = text.split("\n", 1)[0]
    delimiter = ","
    if "," not in first_line:
        delimiter = "\t" if "\t" in first_line else ";" if ";" in first_line else ","
    table: list[tuple[int, list]] = []
    formulas: list[str] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for number, values in enumerate(reader, start=1):  # record number = the row a spreadsheet shows
            for col, value in enumerate(values, start=1):
                if value.lstrip().startswith("="):
                    formulas.append(f"{_column_letter(col)}{number}")
            if any(v.strip() for v in values):
                table.append((number, values[:MAX_COLUMNS]))
                if len(table) > max_rows() + 1:
                    raise _too_many_rows()
    except csv.Error:
        raise _file_error(errors.ERR_IMPORT_001, _("The CSV file is malformed.")) from None
    if formulas:
        raise _formulas(formulas)
    return table


def _column_letter(col: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(col)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value).strip()


def _id_text(value) -> str | None:
    """An id cell as text; None when Excel turned it into a number that lost digits (or a fraction)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer() or abs(value) >= EXACT_FLOAT_LIMIT:
            return None
        return str(int(value))
    return _text(value)


def _records(table: list[tuple[int, list]]) -> list[dict[str, Any]]:
    if not table or table[0][0] != 1:
        raise _headers_error(_("The first row must be the header row."))
    _number, header_cells = table[0]
    columns: dict[int, str] = {}
    unknown: list[str] = []
    for index, cell in enumerate(header_cells):
        name = _text(cell).lstrip("\ufeff").strip().lower()
        if not name:
            continue
        if name not in EXPECTED_COLUMNS:
            unknown.append(name)
        elif name in columns.values():
            raise _headers_error(_("The column %(name)s appears twice.") % {"name": name})
        else:
            columns[index] = name
    missing = [c for c in REQUIRED_COLUMNS if c not in columns.values()]
    if not any(c in columns.values() for c in ID_COLUMNS):
        missing.insert(0, "return_id | order_id")
    if unknown or missing:
        parts = []
        if missing:
            parts.append(_("missing: %(names)s") % {"names": ", ".join(missing)})
        if unknown:
            parts.append(_("unexpected: %(names)s") % {"names": ", ".join(unknown)})
        raise _headers_error("; ".join(parts))
    records = []
    for number, cells in table[1:]:
        record: dict[str, Any] = {"row": number, **{c: "" for c in EXPECTED_COLUMNS}, "bad_id": False}
        for index, name in columns.items():
            value = cells[index] if index < len(cells) else None
            if name in ID_COLUMNS:
                text = _id_text(value)
                record["bad_id"] = record["bad_id"] or text is None
                record[name] = text or ""
            else:
                record[name] = _text(value)
        records.append(record)
    if len(records) > max_rows():
        raise _too_many_rows()
    return records


def _headers_error(message: str) -> AppError:
    return AppError(errors.ERR_IMPORT_002, fields={"file": [message], "expected": EXPECTED_COLUMNS},
                    data={"expected": EXPECTED_COLUMNS})


# --- checking rows ------------------------------------------------------------------------------------------
def _row_error(record: dict, error: ErrorCode, *, fields: list[str] | None = None) -> dict[str, Any]:
    return {"row": record["row"], "ok": False, "code": error.code, "message": str(error.message),
            "fields": fields or [], "return_id": record.get("return_id", ""), "order_id": record.get("order_id", ""),
            "ticket": None}


def _row_ok(record: dict, public_id) -> dict[str, Any]:
    return {"row": record["row"], "ok": True, "code": None, "message": None, "fields": [],
            "return_id": record.get("return_id", ""), "order_id": record.get("order_id", ""),
            "ticket": str(public_id)}


def check_rows(actor: Actor, records: list[dict]) -> tuple[list[dict], list[int | None]]:
    """One result per record (as a dry run reports it) and the request's database id for the valid ones.

    Constant queries whatever the number of rows: one lookup of the caller's visible requests by the ids
    named, one of the caller's permissions on their stores."""
    results: list[dict | None] = [None] * len(records)
    for i, record in enumerate(records):
        if record.get("bad_id") or not (record["return_id"] or record["order_id"]):
            results[i] = _row_error(record, errors.ERR_IMPORT_104)
        elif not (record["reason_code"] or record["reason_text"]):
            results[i] = _row_error(record, errors.ERR_IMPORT_102, fields=["reason_code", "reason_text"])
        else:
            long = [name for name, n in MAX_LENGTHS.items() if len(record.get(name) or "") > n]
            if long:
                results[i] = _row_error(record, errors.ERR_IMPORT_103, fields=long)

    pending = [i for i, r in enumerate(results) if r is None]
    return_ids = {records[i]["return_id"] for i in pending if records[i]["return_id"]}
    order_ids = {records[i]["order_id"] for i in pending if not records[i]["return_id"]}
    by_return: dict[str, list[dict]] = {}
    by_order: dict[str, list[dict]] = {}
    if return_ids or order_ids:
        found = (AfterSalesRequest.objects.for_actor(actor)
                 .filter(Q(return_id__in=return_ids) | Q(order_id__in=order_ids))
                 .values("pk", "public_id", "return_id", "order_id", "store_id"))
        for row in found:
            if row["return_id"] in return_ids:
                by_return.setdefault(row["return_id"], []).append(row)
            if row["order_id"] in order_ids:
                by_order.setdefault(row["order_id"], []).append(row)
    perms = store_perms(actor, {r["store_id"] for rows in (*by_return.values(), *by_order.values()) for r in rows})
    perm_error = errors.CATALOGUE[PERM_ERROR_CODES[StorePerm.HANDLE_AFTERSALES]]

    pks: list[int | None] = [None] * len(records)
    seen: dict[int, int] = {}
    for i in pending:
        record = records[i]
        matches = by_return.get(record["return_id"], []) if record["return_id"] else by_order.get(
            record["order_id"], [])
        if not matches:
            results[i] = _row_error(record, errors.ERR_IMPORT_101)
        elif len(matches) > 1:
            results[i] = _row_error(record, errors.ERR_IMPORT_105)
        elif StorePerm.HANDLE_AFTERSALES.value not in perms.get(matches[0]["store_id"], set()):
            results[i] = _row_error(record, perm_error)
        elif matches[0]["pk"] in seen:
            results[i] = _row_error(record, errors.ERR_IMPORT_106)
            results[i]["first_row"] = seen[matches[0]["pk"]]
        else:
            seen[matches[0]["pk"]] = record["row"]
            results[i] = _row_ok(record, matches[0]["public_id"])
            pks[i] = matches[0]["pk"]
    return results, pks  # type: ignore[return-value]  (every slot is filled above)


def dry_run(actor: Actor, records: list[dict]) -> dict[str, Any]:
    results, _pks = check_rows(actor, records)
    ok = sum(1 for r in results if r["ok"])
    return {"dry_run": True, "total": len(results), "valid": ok, "invalid": len(results) - ok, "rows": results}


def start(actor: Actor, records: list[dict], *, filename: str = ""):
    """Apply as a job (``aftersales.jobs``); the rows are kept in the job's input, the file is not stored."""
    from aftersales import jobs
    from aftersales.models import Job

    return jobs.create(actor, Job.Kind.IMPORT_REASONS, {"rows": records, "filename": filename[:200]},
                       total=len(records))


# --- applying one row ---------------------------------------------------------------------------------------
def apply_checked(performer: Performer, record: dict, checked: dict, pk: int | None, *, job_key: str) -> dict:
    """Apply one row that passed ``check_rows`` (a failed check is returned as it is)."""
    if not checked["ok"] or pk is None:
        return checked
    try:
        apply_row(performer, pk, record, job_key=job_key)
    except AppError as exc:
        error = errors.ERR_IMPORT_101 if exc.code == errors.ERR_NOT_FOUND.code else exc.error
        return _row_error(record, error)
    return checked


def apply_row(performer: Performer, ticket_pk: int, record: dict, *, job_key: str) -> bool:
    """Set the request's reason under its row lock and log it, in one transaction. Once per (job, row): a
    resumed job finds its own log row and changes nothing. Returns whether it wrote."""
    with transaction.atomic():
        ticket = services.lock_ticket(performer, ticket_pk)  # through the gate: a lost grant is "not found"
        require_store_perm(performer.actor, ticket.store, StorePerm.HANDLE_AFTERSALES)
        if OperationLog.objects.filter(ticket_id=ticket.pk, action=ACTION, payload__job=job_key,
                                       payload__row=record["row"]).exists():
            return False
        before = {"reason_key": ticket.reason_key, "reason_text": ticket.reason_text}
        if record["reason_code"]:
            ticket.reason_key = record["reason_code"]
        if record["reason_text"]:
            ticket.reason_text = record["reason_text"]
        ticket.save(update_fields=["reason_key", "reason_text", "updated_at"])
        oplog.record(ticket, performer=performer, action=ACTION, before=ticket.state, after=ticket.state,
                     payload={"job": job_key, "row": record["row"], "note": record.get("note", ""),
                              "before": before,
                              "after": {"reason_key": ticket.reason_key, "reason_text": ticket.reason_text}})
        return True
