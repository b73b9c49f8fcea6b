"""Demo drop-off points for seed_demo: a few hundred plausible partner points, mostly in Indonesia.

Each point is drawn from its own seeded generator (keyed by its index), so a run is repeatable, a
larger count extends a smaller one without moving the first points, and a re-run only updates in place
(the same upsert by partner and code that the CSV import uses).
"""

from __future__ import annotations

import random

from logistics.dropoffs import upsert
from stores.models import Market

# city key → (market, city, centre latitude, centre longitude, spread in degrees, weight, districts)
CITIES = {
    "JKT": ("ID", "Jakarta", -6.2088, 106.8456, 0.09, 34,
            ["Kemang", "Menteng", "Kebayoran Baru", "Tebet", "Cempaka Putih", "Kelapa Gading", "Grogol",
             "Cengkareng", "Pluit", "Senen", "Tanah Abang", "Pasar Minggu", "Cilandak", "Duren Sawit"]),
    "SUB": ("ID", "Surabaya", -7.2575, 112.7521, 0.06, 15,
            ["Gubeng", "Wonokromo", "Tegalsari", "Rungkut", "Sukolilo", "Genteng", "Tambaksari", "Mulyorejo"]),
    "BDG": ("ID", "Bandung", -6.9175, 107.6191, 0.05, 13,
            ["Dago", "Cicendo", "Coblong", "Sukajadi", "Buah Batu", "Antapani", "Lengkong", "Arcamanik"]),
    "MDN": ("ID", "Medan", 3.5952, 98.6722, 0.06, 13,
            ["Medan Baru", "Medan Petisah", "Medan Sunggal", "Medan Johor", "Medan Helvetia", "Medan Kota"]),
    "KUL": ("MY", "Kuala Lumpur", 3.1390, 101.6869, 0.07, 5,
            ["Bukit Bintang", "Cheras", "Kepong", "Bangsar", "Setapak", "Mont Kiara"]),
    "BKK": ("TH", "Bangkok", 13.7563, 100.5018, 0.08, 5,
            ["Sukhumvit", "Silom", "Chatuchak", "Bang Kapi", "Lat Phrao", "Thon Buri"]),
    "MNL": ("PH", "Manila", 14.5995, 120.9842, 0.06, 5,
            ["Makati", "Quezon City", "Pasig", "Taguig", "Mandaluyong", "Sampaloc"]),
    "SGN": ("VN", "Ho Chi Minh City", 10.8231, 106.6297, 0.07, 5,
            ["Quận 1", "Quận 3", "Bình Thạnh", "Phú Nhuận", "Tân Bình", "Gò Vấp"]),
    "SIN": ("SG", "Singapore", 1.3521, 103.8198, 0.05, 5,
            ["Tampines", "Jurong East", "Woodlands", "Ang Mo Kio", "Bedok", "Toa Payoh"]),
}

# partner → code prefix; Indonesia has its own partners, the other markets the regional networks.
PARTNERS = {
    "ID": [("J&T Drop Point", "JNT"), ("SiCepat Hub", "SCP"), ("JNE Agen", "JNE"), ("Pos Indonesia", "POS"),
           ("Ninja Point", "NJV")],
    "other": [("J&T Drop Point", "JNT"), ("Ninja Point", "NJV")],
}
STREETS = {
    "ID": ["Jl. Sudirman", "Jl. Gatot Subroto", "Jl. Diponegoro", "Jl. Ahmad Yani", "Jl. Merdeka", "Jl. Pahlawan",
           "Jl. Veteran", "Jl. Kartini", "Jl. Gajah Mada", "Jl. Hayam Wuruk"],
    "MY": ["Jalan Ampang", "Jalan Tun Razak", "Jalan Ipoh"],
    "TH": ["Sukhumvit Road", "Rama IV Road", "Phahonyothin Road"],
    "PH": ["Ayala Avenue", "EDSA", "Shaw Boulevard"],
    "VN": ["Đường Nguyễn Huệ", "Đường Lê Lợi", "Đường Hai Bà Trưng"],
    "SG": ["Orchard Road", "Tampines Avenue 4", "Jurong Gateway Road"],
}
HOURS = ["Mon–Sat 08:00–20:00", "Daily 09:00–21:00", "Mon–Fri 08:00–17:00, Sat 08:00–12:00", "24 hours"]
LEAD_HOURS = [4, 6, 12, 24, 48]
LEAD_WEIGHTS = [2, 4, 6, 6, 2]


def dropoff_rows(count: int = 300) -> list[dict]:
    """The demo points as import rows (market code instead of id), identical on every call."""
    keys = list(CITIES)
    weights = [CITIES[k][5] for k in keys]
    rows = []
    for index in range(count):
        rng = random.Random(f"dropoff-{index}")
        key = rng.choices(keys, weights)[0]
        market, city, lat, lon, spread, _weight, districts = CITIES[key]
        partner, prefix = rng.choice(PARTNERS["ID" if market == "ID" else "other"])
        district = rng.choice(districts)
        street = rng.choice(STREETS[market])
        rows.append({
            "market_code": market, "partner": partner, "code": f"{prefix}-{key}-{index:04d}",
            "name": f"{partner} {district}",
            "address": f"{street} No. {rng.randint(1, 250)}, {district}, {city}",
            "latitude": round(min(90.0, max(-90.0, lat + rng.gauss(0, spread))), 6),
            "longitude": round(lon + rng.gauss(0, spread), 6),
            "opening_hours": rng.choice(HOURS),
            "pickup_lead_hours": rng.choices(LEAD_HOURS, LEAD_WEIGHTS)[0],
        })
    return rows


def seed_dropoffs(count: int = 300) -> dict:
    """Create or refresh the demo points; returns the upsert report (created / updated / unchanged)."""
    market_ids = dict(Market.objects.values_list("code", "pk"))
    rows = [{**row, "market_id": market_ids[row["market_code"]]} for row in dropoff_rows(count)]
    return upsert(rows)


# --- demo return addresses and return parcels ------------------------------------------------------------
DEMO_PHONES = {
    "US": "+1 650 253 0000", "UK": "+44 20 7031 3000", "CA": "+1 416 555 0100", "MY": "+60 3-2141 1234",
    "TH": "+66 2 123 4567", "VN": "+84 28 3822 1234", "PH": "+63 2 8123 4567", "SG": "+65 6123 4567",
    "ID": "+62 21 5150 1234", "SA": "+966 11 123 4567", "AE": "+971 4 331 2345",
}
WAREHOUSE_CITY = {
    "US": "Ontario, CA", "UK": "Northampton", "CA": "Mississauga", "MY": "Shah Alam", "TH": "Bang Phli",
    "VN": "Thủ Đức", "PH": "Parañaque", "SG": "Jurong", "ID": "Cikarang", "SA": "Riyadh", "AE": "Dubai",
}


def seed_return_addresses(agency_id: int) -> int:
    """A default return warehouse for every store of the agency that has none (through the service)."""
    from logistics.addresses import create_return_address, default_return_address
    from stores.models import Membership, Store
    from stores.services import actor_for_user

    owner = Membership.objects.for_agency(agency_id).filter(kind=Membership.Kind.OWNER).select_related("user").first()
    actor = actor_for_user(owner.user)
    made = 0
    for store in Store.objects.for_agency(agency_id).select_related("market"):
        if default_return_address(store) is not None:
            continue
        code = store.market.code
        create_return_address(actor, store, warehouse=f"{WAREHOUSE_CITY[code]} returns hub",
                              contact_name="Returns desk", phone=DEMO_PHONES[code], line1="Unit 5, Logistics Park",
                              city=WAREHOUSE_CITY[code])
        made += 1
    return made


def seed_return_parcels(agency_id: int, *, seed: str = "2026") -> dict:
    """Track the demo's shipped returns: some already scanned, some overdue so the 48 h watch fires.

    Registration goes through the same service the buyer-shipped hook uses. Overdue parcels are the
    demo's one shortcut: their registration time is moved back, so the scan-watch sweep stalls them
    within a minute of ``./dev run`` (the sweep itself is untouched).
    """
    import datetime as dt

    from django.utils import timezone

    from aftersales.models import AfterSalesRequest
    from aftersales.states import State
    from logistics.models import ReturnShipment, ShipmentStatus
    from logistics.services import apply_tracking_update, register_reported_tracking
    from stores.models import Agency

    # Keyed by the slug (not the id), so a given demo agency always gets the same parcels.
    rng = random.Random(f"{seed}:parcels:{Agency.objects.get(pk=agency_id).slug}")
    shipped = (AfterSalesRequest.objects.for_agency(agency_id).filter(state=State.RETURN_IN_TRANSIT)
               .exclude(return_shipment__isnull=False).order_by("id"))
    counts = {"registered": 0, "scanned": 0, "overdue": 0}
    for ticket in shipped:
        number = next((r.payload.get("tracking_number") for r in ticket.logs.filter(action="buyer_shipped")), "")
        shipment = register_reported_tracking(ticket.pk, tracking_number=number or f"DEMO{ticket.pk:010d}",
                                              source="buyer_shipped")
        counts["registered"] += 1
        roll = rng.random()
        if roll < 0.45:
            when = timezone.now() - dt.timedelta(hours=rng.randint(2, 30))
            apply_tracking_update(shipment.pk, source="manual", latest_status=ShipmentStatus.IN_TRANSIT, events=[
                {"occurred_at": when.isoformat(), "status": ShipmentStatus.IN_TRANSIT, "raw_status": "InTransit",
                 "message": "Parcel received at the sorting centre", "location": "Sorting centre"}])
            counts["scanned"] += 1
        elif roll < 0.75:
            past = timezone.now() - dt.timedelta(hours=rng.randint(49, 90))
            ReturnShipment.objects.for_agency(agency_id).filter(pk=shipment.pk).update(
                registered_at=past, scan_due_at=past + dt.timedelta(hours=48))
            counts["overdue"] += 1
    return counts
