"""One business calendar per market; no market counts business hours as seeded.

Our sources (DOMAIN.md, shared/seed/) state the SLA clocks in hours — first human response 24 h (Seller Policy
v3.2 §7.1), auto-approval 48 h, replacement response 24 h — and never business hours: the platform's clocks are
wall-clock. So every policy keeps ``business_hours_kinds = []`` and these calendars are ready-made defaults for
an operator who switches a deadline kind on in admin (see docs/ARCHITECTURE.md "Business hours").

Defaults (ours, not from the seed): 09:00–18:00 local on the market's working week — Monday to Friday, except
Saudi Arabia, whose weekend is Friday and Saturday (Sunday to Thursday there). Holidays: only fixed-date national
holidays of 2026 that fall on a working day, with the observed day where the law moves one off a weekend.
Movable holidays (lunar new year, Eid, Easter, Songkran changes, …) are not seeded; operators add them per year.
"""

from django.db import migrations

OFFICE = [["09:00", "18:00"]]
MON_FRI = ("mon", "tue", "wed", "thu", "fri")
SUN_THU = ("sun", "mon", "tue", "wed", "thu")
WORKING_WEEK = {"SA": SUN_THU}

HOLIDAYS_2026 = {
    "US": [("2026-01-01", "New Year's Day"), ("2026-07-03", "Independence Day (observed)"),
           ("2026-12-25", "Christmas Day")],
    "UK": [("2026-01-01", "New Year's Day"), ("2026-12-25", "Christmas Day"),
           ("2026-12-28", "Boxing Day (substitute day)")],
    "CA": [("2026-01-01", "New Year's Day"), ("2026-07-01", "Canada Day"), ("2026-12-25", "Christmas Day")],
    "MY": [("2026-05-01", "Labour Day"), ("2026-08-31", "National Day (Hari Merdeka)"),
           ("2026-09-16", "Malaysia Day")],
    "TH": [("2026-01-01", "New Year's Day"), ("2026-04-13", "Songkran"), ("2026-04-14", "Songkran"),
           ("2026-04-15", "Songkran"), ("2026-12-10", "Constitution Day"), ("2026-12-31", "New Year's Eve")],
    "VN": [("2026-01-01", "New Year's Day"), ("2026-04-30", "Reunification Day"),
           ("2026-05-01", "International Labour Day"), ("2026-09-02", "National Day")],
    "PH": [("2026-01-01", "New Year's Day"), ("2026-05-01", "Labor Day"), ("2026-06-12", "Independence Day"),
           ("2026-12-25", "Christmas Day"), ("2026-12-30", "Rizal Day")],
    "SG": [("2026-01-01", "New Year's Day"), ("2026-05-01", "Labour Day"),
           ("2026-08-10", "National Day (observed)"), ("2026-12-25", "Christmas Day")],
    "ID": [("2026-01-01", "New Year's Day"), ("2026-05-01", "Labour Day"), ("2026-06-01", "Pancasila Day"),
           ("2026-08-17", "Independence Day"), ("2026-12-25", "Christmas Day")],
    "SA": [("2026-02-22", "Founding Day"), ("2026-09-23", "National Day")],
    "AE": [("2026-01-01", "New Year's Day"), ("2026-12-02", "National Day")],
}
SOURCE = "Our default (not from the seed): office hours and fixed-date national holidays 2026"


def seed(apps, schema_editor):
    Market = apps.get_model("stores", "Market")
    BusinessCalendar = apps.get_model("stores", "BusinessCalendar")
    for market in Market.objects.order_by("code"):
        days = WORKING_WEEK.get(market.code, MON_FRI)
        BusinessCalendar.objects.get_or_create(market=market, defaults={
            "time_zone": market.time_zone,
            "working_hours": {day: OFFICE for day in days},
            "holidays": [{"date": day, "name": name} for day, name in HOLIDAYS_2026.get(market.code, [])],
            "source": SOURCE,
        })


def unseed(apps, schema_editor):
    apps.get_model("stores", "BusinessCalendar").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("stores", "0009_business_calendar"),
    ]

    operations = [
        migrations.RunPython(seed, unseed),
    ]
