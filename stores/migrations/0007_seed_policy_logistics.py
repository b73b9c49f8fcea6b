"""Logistics policy per market: 48 h first-scan window everywhere; US exemptions and prepaid labels (seed)."""

from django.db import migrations

US_EXEMPT = ["custom_made", "intimate_apparel", "digital"]  # US Return Policy §4.2 (seed)


def seed(apps, schema_editor):
    MarketPolicy = apps.get_model("stores", "MarketPolicy")
    for policy in MarketPolicy.objects.select_related("market"):
        policy.scan_watch_hours = 48
        if policy.market.code == "US":
            policy.no_reason_exempt_categories = US_EXEMPT
            policy.prepaid_return_label = True
        policy.save()


class Migration(migrations.Migration):
    dependencies = [("stores", "0006_policy_logistics_fields")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
