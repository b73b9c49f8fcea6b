"""Drop-off points (本地仓退货优先, ID first): the back-office CSV import and the nearest-points lookup.

Drop-off points are reference data shared by every tenant (not tenant rows), so these are system
functions: the admin or a management command calls them, people never write them.

Import: the whole file is validated before anything is written; one bad row means nothing is imported
and every problem is reported with its row number (the header is row 1, as in a spreadsheet) and column.
A good file is upserted by (partner, code) in one transaction with ``INSERT … ON CONFLICT``, so two
imports at once cannot duplicate a point. Points missing from a file are left as they are.

Nearest: a bounding box on (market, latitude, longitude) — the ``dropoff_bbox`` index — narrows the
candidates, then the great-circle (haversine) distance ranks them. The box starts small and widens
four-fold until ``limit`` points lie inside the searched radius (only then is the ranking exact) or the
radius reaches ``max_km`` or half the globe. The box follows the exact bounds of a spherical cap, wraps
across the antimeridian (two longitude ranges) and spans every longitude when it reaches a pole.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from logistics.models import DropOffPoint
from stores import errors
from stores.errors import AppError
from stores.models import Market

COLUMNS = ("partner", "code", "name", "address", "latitude", "longitude", "opening_hours", "pickup_lead_hours",
           "market")
REQUIRED_COLUMNS = ("partner", "code", "name", "latitude", "longitude")
UPDATED_FIELDS = ("market", "name", "address", "latitude", "longitude", "opening_hours", "pickup_lead_hours",
                  "is_active")
DEFAULT_LEAD_HOURS = 24
MAX_LEAD_HOURS = 24 * 30
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_ROWS = 20_000
MAX_REPORTED_ERRORS = 200

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
HALF_GLOBE_KM = math.pi * EARTH_RADIUS_KM
FIRST_RADIUS_KM = 5.0
WIDEN = 4.0
MAX_LIMIT = 100
BOX_SLACK_DEG = 1e-9  # float rounding must never drop a point lying exactly on the box edge


def max_bytes() -> int:
    return int(getattr(settings, "DROPOFF_IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def max_rows() -> int:
    return int(getattr(settings, "DROPOFF_IMPORT_MAX_ROWS", DEFAULT_MAX_ROWS))


# --- reading the file --------------------------------------------------------------------------------
def _too_large(message: str, data: dict) -> AppError:
    return AppError(errors.ERR_TOO_LARGE, fields={"file": [message]}, data=data)


def _file_error(message: str) -> AppError:
    return AppError(errors.ERR_LOG_502, fields={"file": [message]})


def read_text(source) -> str:
    """Text from a str, bytes or a (text or binary) file object: UTF-8 with or without BOM, size-capped."""
    limit = max_bytes()
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        source = source.read(limit + 1)
    if isinstance(source, str):
        if len(source.encode("utf-8")) > limit:
            raise _too_large(_("At most %(n)s bytes per file.") % {"n": limit}, {"max_bytes": limit})
        text = source
    elif isinstance(source, bytes | bytearray):
        if len(source) > limit:
            raise _too_large(_("At most %(n)s bytes per file.") % {"n": limit}, {"max_bytes": limit})
        try:
            text = bytes(source).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _file_error(_("The file is not UTF-8 text. Save it as “CSV UTF-8”.")) from None
    else:
        raise AppError(errors.ERR_VALIDATION, fields={"file": [_("A CSV file or text is required.")]})
    return text.removeprefix("\ufeff")


def _delimiter(text: str) -> str:
    """Comma by default; semicolon or tab when the header uses them (Excel in decimal-comma locales)."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


# --- validating rows ---------------------------------------------------------------------------------
@dataclass
class RowError:
    row: int
    column: str
    message: str
    code: str = errors.ERR_LOG_502.code

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "message": self.message, "code": self.code}


def _number(text: str, delimiter: str) -> float | None:
    value = text.strip()
    if delimiter != "," and value.count(",") == 1 and "." not in value:
        value = value.replace(",", ".")  # decimal comma, only where the comma cannot be the delimiter
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _coordinate_error(row: int, column: str, detail: str) -> RowError:
    return RowError(row, column, f"{errors.ERR_LOG_503.message} {detail}", errors.ERR_LOG_503.code)


def _parse_row(number: int, raw: dict[str, str], *, delimiter: str, default_market: str | None,
               markets: dict[str, int]) -> tuple[dict | None, list[RowError]]:
    found: list[RowError] = []
    values: dict = {}
    for name in ("partner", "code", "name", "address", "opening_hours"):
        value = (raw.get(name) or "").strip()
        limit = DropOffPoint._meta.get_field(name).max_length
        if name in REQUIRED_COLUMNS and not value:
            found.append(RowError(number, name, _("Required.")))
        elif len(value) > limit:
            found.append(RowError(number, name, _("At most %(n)s characters.") % {"n": limit}))
        values[name] = value
    for name, low, high in (("latitude", -90, 90), ("longitude", -180, 180)):
        text = (raw.get(name) or "").strip()
        parsed = _number(text, delimiter) if text else None
        if not text:
            found.append(RowError(number, name, _("Required.")))
        elif parsed is None or not low <= parsed <= high:
            found.append(_coordinate_error(number, name, _("%(column)s must be a number between %(low)s and "
                                                           "%(high)s, not “%(value)s”.")
                                           % {"column": name, "low": low, "high": high, "value": text[:40]}))
        values[name] = parsed
    lead = (raw.get("pickup_lead_hours") or "").strip()
    if not lead:
        values["pickup_lead_hours"] = DEFAULT_LEAD_HOURS
    elif not lead.isdigit() or int(lead) > MAX_LEAD_HOURS:
        found.append(RowError(number, "pickup_lead_hours", _("A whole number of hours from 0 to %(max)s, not "
                                                             "“%(value)s”.") % {"max": MAX_LEAD_HOURS,
                                                                                 "value": lead[:40]}))
    else:
        values["pickup_lead_hours"] = int(lead)
    market = (raw.get("market") or "").strip().upper()
    if market and default_market and market != default_market:
        found.append(RowError(number, "market", _("Market %(row)s differs from the import's market %(file)s.")
                              % {"row": market, "file": default_market}))
    market = market or default_market or ""
    if not market:
        found.append(RowError(number, "market", _("Required (or choose the market for the whole file).")))
    elif market not in markets:
        found.append(RowError(number, "market", _("Unknown market “%(value)s”.") % {"value": market[:40]}))
    else:
        values["market_id"] = markets[market]
        values["market_code"] = market
    return (None if found else values), found


def validate_csv(source, *, market_code: str | None = None) -> list[dict]:
    """Every row checked; the clean rows, or ERR_LOG_502 listing each problem (nothing is written here)."""
    text = read_text(source)
    delimiter = _delimiter(text)
    markets = dict(Market.objects.values_list("code", "pk"))
    default_market = (market_code or "").strip().upper() or None
    if default_market and default_market not in markets:
        raise AppError(errors.ERR_VALIDATION, fields={"market_code": [_("Unknown market.")]})
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    problems: list[RowError] = []
    rows: list[dict] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if not default_market and "market" not in header:
            missing.append("market")
        if missing:
            raise _file_error(_("Missing columns: %(columns)s. Expected: %(expected)s.")
                              % {"columns": ", ".join(missing), "expected": ", ".join(COLUMNS)})
        limit, count = max_rows(), 0
        for index, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue  # blank lines (often at the end) are not rows
            count += 1
            if count > limit:
                raise _too_large(_("At most %(n)s rows per file.") % {"n": limit}, {"max_rows": limit})
            if len(record) > len(header):
                problems.append(RowError(index, "", _("%(found)s cells, the header has %(expected)s.")
                                         % {"found": len(record), "expected": len(header)}))
                continue
            raw = dict(zip(header, record, strict=False))
            values, found = _parse_row(index, raw, delimiter=delimiter, default_market=default_market,
                                       markets=markets)
            key = ((raw.get("partner") or "").strip(), (raw.get("code") or "").strip())
            if all(key) and key in seen:
                found.append(RowError(index, "code", _("Duplicate of row %(row)s (same partner and code).")
                                      % {"row": seen[key]}))
                values = None
            elif all(key):
                seen[key] = index
            problems += found
            if values is not None:
                rows.append(values)
    except csv.Error as exc:
        raise _file_error(_("The CSV cannot be read near row %(row)s: %(error)s")
                          % {"row": reader.line_num, "error": exc}) from None
    if problems:
        raise _rows_error(problems, total=count)
    return rows


def _rows_error(problems: list[RowError], *, total: int) -> AppError:
    shown = problems[:MAX_REPORTED_ERRORS]
    fields: dict[str, list[str]] = {}
    for p in shown:
        fields.setdefault(_("row %(n)s") % {"n": p.row}, []).append(f"{p.column}: {p.message}" if p.column
                                                                     else p.message)
    return AppError(errors.ERR_LOG_502, fields=fields, data={
        "errors": [p.as_dict() for p in shown], "error_count": len(problems),
        "bad_rows": len({p.row for p in problems}), "rows": total})


# --- writing -----------------------------------------------------------------------------------------
def _point(values: dict) -> DropOffPoint:
    return DropOffPoint(market_id=values["market_id"], partner=values["partner"], code=values["code"],
                        name=values["name"], address=values.get("address", ""), latitude=values["latitude"],
                        longitude=values["longitude"], opening_hours=values.get("opening_hours", ""),
                        pickup_lead_hours=values["pickup_lead_hours"], is_active=True)


def _state(point: DropOffPoint) -> tuple:
    return tuple(getattr(point, "market_id" if f == "market" else f) for f in UPDATED_FIELDS)


def upsert(rows: Iterable[dict], *, dry_run: bool = False) -> dict:
    """Insert or update points by (partner, code) in one transaction; the counts say what changed."""
    points = [_point(values) for values in rows]
    keys = {(p.partner, p.code) for p in points}
    partners = {p.partner for p in points}
    codes = {p.code for p in points}
    report = {"rows": len(points), "created": 0, "updated": 0, "unchanged": 0, "dry_run": dry_run,
              "markets": {}}
    with transaction.atomic():
        current = DropOffPoint.objects.filter(partner__in=partners, code__in=codes)
        if not dry_run:
            current = current.select_for_update()
        existing = {(p.partner, p.code): _state(p) for p in current if (p.partner, p.code) in keys}
        for point in points:
            before = existing.get((point.partner, point.code))
            outcome = "created" if before is None else ("unchanged" if before == _state(point) else "updated")
            report[outcome] += 1
        if not dry_run and points:
            DropOffPoint.objects.bulk_create(points, batch_size=1000, update_conflicts=True,
                                             unique_fields=["partner", "code"], update_fields=list(UPDATED_FIELDS))
    codes_by_id = {pk: code for code, pk in Market.objects.values_list("code", "pk")}
    for point in points:
        code = codes_by_id[point.market_id]
        report["markets"][code] = report["markets"].get(code, 0) + 1
    return report


def import_dropoffs_csv(source, *, market_code: str | None = None, dry_run: bool = False) -> dict:
    """Back office: validate the whole file, then upsert it — or raise ERR_LOG_502 and write nothing."""
    return upsert(validate_csv(source, market_code=market_code), dry_run=dry_run)


# --- nearest points ----------------------------------------------------------------------------------
def _coordinates(latitude, longitude) -> tuple[float, float]:
    bad: dict[str, list[str]] = {}
    parsed = {}
    for name, value, low, high in (("latitude", latitude, -90, 90), ("longitude", longitude, -180, 180)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or not low <= number <= high:
            bad[name] = [_("A number between %(low)s and %(high)s.") % {"low": low, "high": high}]
        parsed[name] = number
    if bad:
        raise AppError(errors.ERR_LOG_503, fields=bad)
    return parsed["latitude"], parsed["longitude"]


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean-radius sphere (good to ~0.5 % against the ellipsoid)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(latitude: float, longitude: float, radius_km: float
                 ) -> tuple[float, float, list[tuple[float, float]]]:
    """(lat_min, lat_max, longitude ranges) enclosing every point within radius_km.

    The exact bounds of a spherical cap (J. P. Matuschek, "Finding Points Within a Distance of a
    Latitude/Longitude Using Bounding Coordinates"): latitude ± r, longitude ± asin(sin r / cos φ).
    """
    r = radius_km / EARTH_RADIUS_KM
    phi = math.radians(latitude)
    lat_min, lat_max = phi - r, phi + r
    if lat_min <= -math.pi / 2 or lat_max >= math.pi / 2 or r >= math.pi / 2:
        # A pole lies inside the circle: every longitude is in reach.
        return (max(math.degrees(lat_min), -90.0), min(math.degrees(lat_max), 90.0), [(-180.0, 180.0)])
    delta = math.degrees(math.asin(min(1.0, math.sin(r) / math.cos(phi))))
    low, high = longitude - delta - BOX_SLACK_DEG, longitude + delta + BOX_SLACK_DEG
    if high - low >= 360:
        ranges = [(-180.0, 180.0)]
    elif low < -180:
        ranges = [(low + 360, 180.0), (-180.0, high)]
    elif high > 180:
        ranges = [(low, 180.0), (-180.0, high - 360)]
    else:
        ranges = [(low, high)]
    return (math.degrees(lat_min) - BOX_SLACK_DEG, math.degrees(lat_max) + BOX_SLACK_DEG, ranges)


def points_in_box(market_id: int, latitude: float, longitude: float, radius_km: float) -> QuerySet:
    """Active points of one market inside the box: the shape the partial ``dropoff_bbox`` index serves."""
    lat_min, lat_max, ranges = bounding_box(latitude, longitude, radius_km)
    across = Q()
    for low, high in ranges:
        across |= Q(longitude__gte=low, longitude__lte=high)
    # No ordering: the ranking happens in Python, and the model's default order would join Market.
    return DropOffPoint.objects.filter(across, market_id=market_id, is_active=True,
                                       latitude__gte=lat_min, latitude__lte=lat_max).order_by()


def nearest_dropoffs(market_code: str, latitude, longitude, *, limit: int = 5,
                     max_km: float | None = None) -> list[dict]:
    """The ``limit`` nearest active points of a market: [{point, distance_km, pickup_lead_hours}]."""
    lat, lon = _coordinates(latitude, longitude)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise AppError(errors.ERR_VALIDATION, fields={"limit": [_("A whole number from 1 to %(n)s.")
                                                                 % {"n": MAX_LIMIT}]})
    if max_km is not None:
        try:
            max_km = float(max_km)
        except (TypeError, ValueError):
            max_km = math.nan
        if not math.isfinite(max_km) or max_km <= 0:
            raise AppError(errors.ERR_VALIDATION, fields={"max_km": [_("A positive number of kilometres.")]})
    market_id = Market.objects.filter(code=str(market_code or "").strip().upper()).values_list("pk", flat=True).first()
    if market_id is None:
        raise AppError(errors.ERR_VALIDATION, fields={"market": [_("Unknown market.")]})
    cap = min(max_km, HALF_GLOBE_KM) if max_km is not None else HALF_GLOBE_KM
    radius = min(FIRST_RADIUS_KM, cap)
    while True:
        found = []
        for point in points_in_box(market_id, lat, lon, radius):
            distance = haversine_km(lat, lon, point.latitude, point.longitude)
            if distance <= radius:
                found.append((distance, point.pk, point))
        if len(found) >= limit or radius >= cap:
            break
        radius = min(radius * WIDEN, cap)
    found.sort(key=lambda item: (item[0], item[1]))
    return [{"point": point, "distance_km": round(distance, 3), "pickup_lead_hours": point.pickup_lead_hours}
            for distance, _pk, point in found[:limit]]
