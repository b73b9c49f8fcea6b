"""Seed the 11 markets. Data comes from stores.markets so the seed and the code agree."""

from django.db import migrations


def seed(apps, schema_editor):
    from stores.markets import MARKETS

    Market = apps.get_model("stores", "Market")
    english = {
        "US": "United States", "UK": "United Kingdom", "CA": "Canada", "MY": "Malaysia",
        "TH": "Thailand", "VN": "Vietnam", "PH": "Philippines", "SG": "Singapore",
        "ID": "Indonesia", "SA": "Saudi Arabia", "AE": "United Arab Emirates",
    }
    for code, country, currency, tz, languages, region in MARKETS:
        Market.objects.update_or_create(
            code=code,
            defaults={"country": country, "name": english[code], "currency": currency, "time_zone": tz,
                      "languages": languages, "region": region, "is_open": True},
        )


def unseed(apps, schema_editor):
    apps.get_model("stores", "Market").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("stores", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
