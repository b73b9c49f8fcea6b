"""Seed one policy per market from DOMAIN's markets table (who pays return shipping, commission)."""

from decimal import Decimal

from django.db import migrations

SOURCE = "DOMAIN.md markets table (seed): fees; commission 5–12 %, default 8 %"
PLATFORM_FIRST_LEG = {"US", "UK", "CA"}  # platform pays the buyer's first leg; seller the leg back


def seed(apps, schema_editor):
    Market = apps.get_model("stores", "Market")
    MarketPolicy = apps.get_model("stores", "MarketPolicy")
    for market in Market.objects.all():
        MarketPolicy.objects.update_or_create(
            market=market,
            defaults={
                "commission_rate": Decimal("0.0800"),
                "return_shipping_payer": "platform_first_leg" if market.code in PLATFORM_FIRST_LEG else "seller",
                "source": SOURCE,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("stores", "0004_market_policy")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
