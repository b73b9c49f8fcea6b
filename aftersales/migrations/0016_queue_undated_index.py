from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("aftersales", "0015_analytics_rollups"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="aftersalesrequest",
            index=models.Index(
                condition=models.Q(("due_at__isnull", True), ("state__in", [
                    "awaiting_buyer", "awaiting_return", "in_arbitration", "package_rejected", "pending_review",
                    "refund_approved", "rejected", "replacement_approved", "replacement_shipped",
                    "return_in_transit"])),
                fields=["agency", "id"], name="request_queue_undated"),
        ),
    ]
