"""Drop-off points: the nearest-N lookup agrees with brute force; the CSV import is all-or-nothing."""

from __future__ import annotations

import io
import math
import random

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from logistics import demo, dropoffs
from logistics.models import DropOffPoint
from stores.errors import AppError
from stores.models import Market

R = 6371.0088


def brute_distance(lat1, lon1, lat2, lon2) -> float:
    """Spherical law of cosines: a different formula from the one under test, same sphere."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    cos = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return R * math.acos(max(-1.0, min(1.0, cos)))


def brute_nearest(points, lat, lon, limit, max_km=None):
    ranked = sorted((brute_distance(lat, lon, p.latitude, p.longitude), p.pk) for p in points)
    if max_km is not None:
        ranked = [r for r in ranked if r[0] <= max_km]
    return ranked[:limit]


def refuse(code, fn, *args, **kwargs) -> AppError:
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def market(code="ID") -> Market:
    return Market.objects.get(code=code)


def make_points(coords, code="ID", **fields) -> list[DropOffPoint]:
    m = market(code)
    start = DropOffPoint.objects.count()
    return DropOffPoint.objects.bulk_create([
        DropOffPoint(market=m, partner="Test", code=f"{code}-{start + i}", name=f"P{i}", latitude=lat,
                     longitude=lon, pickup_lead_hours=6, **fields)
        for i, (lat, lon) in enumerate(coords)])


# --- nearest: against brute force ---------------------------------------------------------------------
@pytest.fixture
def scattered(db):
    """400 points: clustered around Indonesian cities plus a thin spread over the archipelago."""
    rng = random.Random(7)
    centres = [(-6.2088, 106.8456), (-7.2575, 112.7521), (-6.9175, 107.6191), (3.5952, 98.6722)]
    coords = []
    for i in range(400):
        if i % 4 == 3:
            coords.append((rng.uniform(-11, 6), rng.uniform(95, 141)))
        else:
            lat, lon = centres[i % 4 if i % 4 < 3 else 0]
            coords.append((lat + rng.gauss(0, 0.15), lon + rng.gauss(0, 0.15)))
    make_points(coords)
    return list(DropOffPoint.objects.all())


def test_nearest_matches_brute_force_at_random_places(scattered):
    rng = random.Random(11)
    queries = [(-6.2, 106.8), (-7.25, 112.75), (3.6, 98.7), (0.0, 120.0), (-10.5, 140.0)]
    queries += [(rng.uniform(-12, 7), rng.uniform(94, 142)) for _ in range(15)]
    for lat, lon in queries:
        for limit in (1, 5, 17, 60):
            got = dropoffs.nearest_dropoffs("ID", lat, lon, limit=limit)
            expected = brute_nearest(scattered, lat, lon, limit)
            assert [r["point"].pk for r in got] == [pk for _d, pk in expected], (lat, lon, limit)
            for row, (distance, _pk) in zip(got, expected, strict=True):
                assert row["distance_km"] == pytest.approx(distance, abs=0.002)
                assert row["pickup_lead_hours"] == 6
            assert [r["distance_km"] for r in got] == sorted(r["distance_km"] for r in got)


def test_max_km_limits_the_search_and_matches_brute_force(scattered):
    for lat, lon, max_km in [(-6.2, 106.8, 3), (-6.2, 106.8, 25), (0.0, 120.0, 300), (0.0, 120.0, 1)]:
        got = dropoffs.nearest_dropoffs("ID", lat, lon, limit=100, max_km=max_km)
        expected = brute_nearest(scattered, lat, lon, 100, max_km)
        assert [r["point"].pk for r in got] == [pk for _d, pk in expected]
        assert all(r["distance_km"] <= max_km for r in got)


def test_no_points_gives_an_empty_list(db):
    assert dropoffs.nearest_dropoffs("ID", -6.2, 106.8) == []
    assert dropoffs.nearest_dropoffs("ID", -6.2, 106.8, max_km=10) == []


def test_a_limit_above_the_number_of_points_returns_them_all_sorted(db):
    make_points([(-6.3, 106.9), (-6.2, 106.8), (3.6, 98.7)])
    got = dropoffs.nearest_dropoffs("id", "-6.2", "106.8", limit=50)
    assert [r["point"].name for r in got] == ["P1", "P0", "P2"]
    assert got[0]["distance_km"] == 0.0
    assert got[2]["distance_km"] == pytest.approx(brute_distance(-6.2, 106.8, 3.6, 98.7), abs=0.002)


def test_only_active_points_of_the_market_count(db):
    make_points([(-6.2, 106.8)], code="ID", is_active=False)
    make_points([(-6.2, 106.8)], code="MY")
    near = make_points([(-6.25, 106.85)], code="ID")
    assert [r["point"] for r in dropoffs.nearest_dropoffs("ID", -6.2, 106.8)] == near


def test_far_points_are_found_in_few_widening_steps(db, django_assert_max_num_queries):
    make_points([(5.0, 95.0)])  # ~1,700 km from Jakarta
    with django_assert_max_num_queries(9):
        got = dropoffs.nearest_dropoffs("ID", -6.2, 106.8)
    assert len(got) == 1 and got[0]["distance_km"] > 1500


def test_across_the_antimeridian(db):
    make_points([(-17.0, 179.95), (-17.0, -179.95), (-17.0, 178.0), (-17.0, -178.5)], code="SG")
    got = dropoffs.nearest_dropoffs("SG", -17.0, 179.99, limit=4)
    assert [r["point"].name for r in got] == ["P0", "P1", "P3", "P2"]
    assert got[1]["distance_km"] == pytest.approx(brute_distance(-17.0, 179.99, -17.0, -179.95), abs=0.002)
    got = dropoffs.nearest_dropoffs("SG", -17.0, -179.99, limit=2)
    assert [r["point"].name for r in got] == ["P1", "P0"]


def test_near_the_poles(db):
    make_points([(89.9, 0.0), (89.9, 180.0), (89.0, -90.0), (-89.95, 45.0)], code="SG")
    got = dropoffs.nearest_dropoffs("SG", 89.95, 90.0, limit=3)
    expected = brute_nearest(list(DropOffPoint.objects.all()), 89.95, 90.0, 3)
    assert [r["point"].pk for r in got] == [pk for _d, pk in expected]
    assert dropoffs.nearest_dropoffs("SG", -90, 0, limit=1)[0]["point"].latitude == -89.95


@pytest.mark.parametrize(("lat", "lon", "fields"), [
    (91, 0, {"latitude"}), (-90.5, 0, {"latitude"}), (0, 180.01, {"longitude"}), (0, -181, {"longitude"}),
    ("abc", 0, {"latitude"}), (None, None, {"latitude", "longitude"}), (float("nan"), 0, {"latitude"}),
    (0, float("inf"), {"longitude"}),
])
def test_bad_coordinates_are_err_log_503(db, lat, lon, fields):
    assert set(refuse("ERR_LOG_503", dropoffs.nearest_dropoffs, "ID", lat, lon).fields) == fields


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": True}, "limit"), ({"limit": "5"}, "limit"),
    ({"max_km": 0}, "max_km"), ({"max_km": -3}, "max_km"), ({"max_km": "far"}, "max_km"),
    ({"max_km": float("nan")}, "max_km"),
])
def test_bad_limits_are_refused(db, kwargs, field):
    assert list(refuse("ERR_VALIDATION", dropoffs.nearest_dropoffs, "ID", 0, 0, **kwargs).fields) == [field]


def test_an_unknown_market_is_refused(db):
    assert list(refuse("ERR_VALIDATION", dropoffs.nearest_dropoffs, "XX", 0, 0).fields) == ["market"]


def destination(lat, lon, bearing_deg, km):
    p1, l1, b, d = math.radians(lat), math.radians(lon), math.radians(bearing_deg), km / R
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


@settings(max_examples=400, deadline=None)
@given(lat=st.floats(-89.9, 89.9), lon=st.floats(-180, 180), radius=st.floats(0.01, 15000),
       bearing=st.floats(0, 360), share=st.floats(0, 1))
def test_the_box_holds_every_point_within_the_radius(lat, lon, radius, bearing, share):
    plat, plon = destination(lat, lon, bearing, radius * share * 0.999999)
    lat_min, lat_max, ranges = dropoffs.bounding_box(lat, lon, radius)
    assert lat_min <= plat <= lat_max
    assert any(low <= plon <= high for low, high in ranges)


def test_the_bbox_query_uses_the_partial_index(db):
    rng = random.Random(3)
    make_points([(rng.uniform(-11, 6), rng.uniform(95, 141)) for _ in range(3000)])
    qs = dropoffs.points_in_box(market().pk, -6.2, 106.8, 5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE logistics_dropoffpoint")
    plan = qs.explain()
    assert "dropoff_bbox" in plan, plan
    wrapped = dropoffs.points_in_box(market().pk, 0, 179.99, 50)
    assert "dropoff_bbox" in wrapped.explain()


# --- CSV import ---------------------------------------------------------------------------------------
HEADER = "partner,code,name,address,latitude,longitude,opening_hours,pickup_lead_hours,market\n"
GOOD = (HEADER
        + "J&T Drop Point,JNT-1,J&T Kemang,\"Jl. Kemang Raya 5, Jakarta\",-6.2607,106.8137,Daily 09:00–21:00,6,ID\n"
        + "SiCepat Hub,SCP-1,SiCepat Gubeng,,-7.2655,112.7500,,12,id\n"
        + "Ninja Point,NJV-1,Ninja Bangsar,,3.1300,101.6700,Mon–Sat,,MY\n")


def test_a_good_file_is_imported(db):
    report = dropoffs.import_dropoffs_csv(GOOD)
    assert report == {"rows": 3, "created": 3, "updated": 0, "unchanged": 0, "dry_run": False,
                      "markets": {"ID": 2, "MY": 1}}
    kemang = DropOffPoint.objects.get(partner="J&T Drop Point", code="JNT-1")
    assert (kemang.name, kemang.address, kemang.opening_hours) == ("J&T Kemang", "Jl. Kemang Raya 5, Jakarta",
                                                                  "Daily 09:00–21:00")
    assert (kemang.latitude, kemang.longitude, kemang.pickup_lead_hours, kemang.market.code) == (
        -6.2607, 106.8137, 6, "ID")
    assert DropOffPoint.objects.get(code="NJV-1").pickup_lead_hours == dropoffs.DEFAULT_LEAD_HOURS
    assert DropOffPoint.objects.get(code="SCP-1").market.code == "ID"


@pytest.mark.parametrize("wrap", [
    lambda t: t,
    lambda t: "\ufeff" + t,
    lambda t: t.encode("utf-8"),
    lambda t: t.encode("utf-8-sig"),
    lambda t: io.BytesIO(t.encode("utf-8-sig")),
    lambda t: io.StringIO(t),
    lambda t: SimpleUploadedFile("points.csv", t.encode("utf-8-sig"), content_type="text/csv"),
    lambda t: t.replace("\n", "\r\n").encode("utf-8-sig"),
], ids=["str", "str-bom", "bytes", "bytes-bom", "binary-file", "text-file", "upload", "crlf"])
def test_every_source_shape_and_the_bom_are_accepted(db, wrap):
    assert dropoffs.import_dropoffs_csv(wrap(GOOD))["created"] == 3
    assert set(DropOffPoint.objects.values_list("code", flat=True)) == {"JNT-1", "SCP-1", "NJV-1"}


def test_the_market_can_come_from_the_argument(db):
    text = "partner,code,name,latitude,longitude\nJNE Agen,JNE-9,JNE Dago,-6.89,107.61\n"
    assert dropoffs.import_dropoffs_csv(text, market_code="id")["markets"] == {"ID": 1}
    refuse("ERR_LOG_502", dropoffs.import_dropoffs_csv, text)  # no market at all
    refuse("ERR_VALIDATION", dropoffs.import_dropoffs_csv, text, market_code="XX")


def test_semicolons_and_decimal_commas_from_excel(db):
    text = "partner;code;name;latitude;longitude;market\nPos Indonesia;POS-1;Pos Medan;3,5952;98,6722;ID\n"
    dropoffs.import_dropoffs_csv(text.encode("utf-8-sig"))
    point = DropOffPoint.objects.get(code="POS-1")
    assert (point.latitude, point.longitude) == (3.5952, 98.6722)


def test_blank_lines_and_header_spacing_are_tolerated(db):
    text = " Partner , CODE ,name,latitude,longitude,market\n\nA,1,N,1,2,ID\n,,,,,\n\n"
    assert dropoffs.import_dropoffs_csv(text)["rows"] == 1


def test_bad_rows_are_reported_with_row_numbers_and_nothing_is_written(db):
    text = (HEADER
            + "J&T Drop Point,JNT-1,Fine row,,-6.2,106.8,,6,ID\n"  # row 2: good
            + "J&T Drop Point,JNT-2,Bad latitude,,-96.5,106.8,,6,ID\n"  # row 3
            + "J&T Drop Point,JNT-3,,,-6.2,abc,,6,ID\n"  # row 4: no name, bad longitude
            + "J&T Drop Point,JNT-4,Bad lead,,-6.2,106.8,,6.5,ID\n"  # row 5
            + "J&T Drop Point,JNT-5,Bad market,,-6.2,106.8,,6,XX\n"  # row 6
            + "J&T Drop Point,JNT-1,Duplicate,,-6.2,106.8,,6,ID\n"  # row 7
            + ",,Nameless,,,,,,ID\n")  # row 8
    error = refuse("ERR_LOG_502", dropoffs.import_dropoffs_csv, text)
    assert not DropOffPoint.objects.exists()
    assert sorted(error.fields, key=lambda k: int(k.split()[1])) == [f"row {n}" for n in (3, 4, 5, 6, 7, 8)]
    by_row = {}
    for item in error.data["errors"]:
        by_row.setdefault(item["row"], []).append((item["column"], item["code"]))
    assert by_row[3] == [("latitude", "ERR_LOG_503")]
    assert by_row[4] == [("name", "ERR_LOG_502"), ("longitude", "ERR_LOG_503")]
    assert by_row[5] == [("pickup_lead_hours", "ERR_LOG_502")]
    assert by_row[6] == [("market", "ERR_LOG_502")]
    assert by_row[7] == [("code", "ERR_LOG_502")]
    assert {c for c, _code in by_row[8]} == {"partner", "code", "latitude", "longitude"}
    assert "row 2" in error.fields["row 7"][0]
    assert error.fields["row 3"][0].startswith("latitude: The coordinates are not valid.")
    assert (error.data["rows"], error.data["bad_rows"], error.data["error_count"]) == (7, 6, 10)


def test_dry_run_and_bad_files_write_nothing(db):
    assert dropoffs.import_dropoffs_csv(GOOD, dry_run=True)["created"] == 3
    assert not DropOffPoint.objects.exists()
    for bad in ("name,latitude\nx,1\n", "", b"\xff\xfe\x00bad", "partner,code,name,latitude,longitude,market\n"
                "A,1,N,1,2,ID,extra\n", 'partner,code,name,latitude,longitude,market\nA,"1,N,1,2,ID\n'):
        refuse("ERR_LOG_502", dropoffs.import_dropoffs_csv, bad)
    assert not DropOffPoint.objects.exists()


def test_a_row_market_must_agree_with_the_argument(db):
    error = refuse("ERR_LOG_502", dropoffs.import_dropoffs_csv, GOOD, market_code="ID")
    assert list(error.fields) == ["row 4"]


def test_reimport_upserts_by_partner_and_code(db):
    dropoffs.import_dropoffs_csv(GOOD)
    DropOffPoint.objects.filter(code="NJV-1").update(is_active=False)
    changed = GOOD.replace("J&T Kemang", "J&T Kemang Raya").replace("SiCepat Hub,SCP-1", "SiCepat Hub,SCP-2")
    report = dropoffs.import_dropoffs_csv(changed)
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 2, 0)
    assert DropOffPoint.objects.count() == 4
    assert DropOffPoint.objects.get(code="JNT-1").name == "J&T Kemang Raya"
    assert DropOffPoint.objects.get(code="NJV-1").is_active  # re-imported: active again
    again = dropoffs.import_dropoffs_csv(changed)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    # The same code under another partner is another point.
    dropoffs.import_dropoffs_csv(HEADER + "JNE Agen,JNT-1,JNE Kemang,,-6.26,106.81,,6,ID\n")
    assert DropOffPoint.objects.filter(code="JNT-1").count() == 2


def test_size_and_row_caps(db, settings):
    settings.DROPOFF_IMPORT_MAX_ROWS = 2
    error = refuse("ERR_TOO_LARGE", dropoffs.import_dropoffs_csv, GOOD)
    assert error.data == {"max_rows": 2} and error.fields["file"]
    settings.DROPOFF_IMPORT_MAX_ROWS = 3
    assert dropoffs.import_dropoffs_csv(GOOD, dry_run=True)["rows"] == 3
    settings.DROPOFF_IMPORT_MAX_BYTES = 100
    for source in (GOOD, GOOD.encode(), io.BytesIO(GOOD.encode())):
        assert refuse("ERR_TOO_LARGE", dropoffs.import_dropoffs_csv, source).data == {"max_bytes": 100}
    assert not DropOffPoint.objects.exists()


def test_not_a_file_is_a_validation_error(db):
    refuse("ERR_VALIDATION", dropoffs.import_dropoffs_csv, 42)


# --- demo points --------------------------------------------------------------------------------------
def test_demo_points_are_repeatable_and_realistic(db):
    rows = demo.dropoff_rows(300)
    assert rows == demo.dropoff_rows(300)
    assert demo.dropoff_rows(40) == rows[:40]
    markets = [r["market_code"] for r in rows]
    assert markets.count("ID") > 0.6 * len(rows)
    assert {"MY", "TH", "PH", "VN", "SG"} <= set(markets)
    assert {"J&T Drop Point", "SiCepat Hub", "JNE Agen", "Pos Indonesia", "Ninja Point"} <= {
        r["partner"] for r in rows}
    assert len({(r["partner"], r["code"]) for r in rows}) == 300
    assert all(-90 <= r["latitude"] <= 90 and -180 <= r["longitude"] <= 180 for r in rows)


def test_seed_dropoffs_is_idempotent_and_searchable(db):
    first = demo.seed_dropoffs(300)
    assert (first["created"], first["updated"]) == (300, 0)
    second = demo.seed_dropoffs(300)
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 300)
    assert DropOffPoint.objects.count() == 300
    near = dropoffs.nearest_dropoffs("ID", -6.2088, 106.8456, limit=5)
    assert len(near) == 5 and near[-1]["distance_km"] < 20
    assert all(r["point"].market.code == "ID" for r in near)
    assert dropoffs.nearest_dropoffs("SG", 1.3521, 103.8198, limit=1)[0]["distance_km"] < 20
