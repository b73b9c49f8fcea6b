# Built concurrently (no lock on writes while a large requests table is indexed), the new index before the old
# one goes, so the deadline filter always has one.
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('aftersales', '0013_tiktok_connector'),
        ('stores', '0011_idempotency_key'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='aftersalesrequest',
            index=models.Index(condition=models.Q(('due_at__isnull', False)), fields=['agency', 'due_at', 'id'],
                               name='request_queue_due'),
        ),
        RemoveIndexConcurrently(
            model_name='aftersalesrequest',
            name='request_sla_due',
        ),
    ]
