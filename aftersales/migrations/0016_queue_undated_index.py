# Built concurrently: no lock on writes while a large requests table is indexed.
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("aftersales", "0015_analytics_rollups"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="aftersalesrequest",
            index=models.Index(
                condition=models.Q(("due_at__isnull", True), ("state__in", [
                    "awaiting_buyer", "awaiting_return", "in_arbitration", "package_rejected", "pending_review",
                    "refund_approved", "rejected", "replacement_approved", "replacement_shipped",
                    "return_in_transit"])),
                fields=["agency", "id"], name="request_queue_undated"),
        ),
    ]
