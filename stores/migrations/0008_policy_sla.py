"""SLA policy per market (issue 5): fields, then their seed values.

Sources: DOMAIN.md markets table (seed) — 24 h first human response in UK, MY, TH, VN, PH (Seller Policy v3.2
§7.1); −0.5 per late response, down-weighting below 4.8, ≈ 3.2 % exposure per 0.1 (Seller Score Handbook 2024).
The seed names automatic compensation (自动赔付) but no amount: the amounts below are our defaults (about
5 USD in each currency) and the monthly budget per store is 100 of them; admins adjust both.
"""

import django.contrib.postgres.fields
import django.core.validators
import stores.models
from decimal import Decimal
from django.db import migrations, models


FIRST_RESPONSE_MARKETS = {"UK", "MY", "TH", "VN", "PH"}  # Seller Policy v3.2 §7.1 (seed), since 2024-06
COMPENSATION = {"USD": "5.00", "GBP": "5.00", "CAD": "7.00", "MYR": "20.00", "THB": "150.00", "VND": "100000.00",
                "PHP": "250.00", "SGD": "7.00", "IDR": "75000.00", "SAR": "20.00", "AED": "20.00"}


def seed(apps, schema_editor):
    MarketPolicy = apps.get_model("stores", "MarketPolicy")
    for policy in MarketPolicy.objects.select_related("market"):
        amount = Decimal(COMPENSATION.get(policy.market.currency, "5.00"))
        policy.first_response_hours = 24 if policy.market.code in FIRST_RESPONSE_MARKETS else None
        policy.auto_approve_hours = 48
        policy.replacement_response_hours = 24
        policy.warning_offsets_minutes = [240, 60]
        policy.compensation_amount = amount
        policy.compensation_monthly_budget = amount * 100
        policy.score_penalty = Decimal("0.50")
        policy.score_floor_for_traffic = Decimal("4.80")
        policy.exposure_loss_per_tenth = Decimal("3.20")
        policy.save()


class Migration(migrations.Migration):

    dependencies = [
        ('stores', '0007_seed_policy_logistics'),
    ]

    operations = [
        migrations.AddField(
            model_name='marketpolicy',
            name='auto_approve_hours',
            field=models.PositiveIntegerField(default=48, help_text='Refund and return requests still awaiting review are approved by the platform after this long (issue 5, seed default 48 h).', verbose_name='platform auto-approval after (hours)'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='compensation_amount',
            field=models.DecimalField(decimal_places=2, default=Decimal('0'), help_text='自动赔付 in the market currency when the first human response is late. The seed names the rule but no amount: the seeded values are our defaults (about 5 USD), to be adjusted.', max_digits=14, validators=[django.core.validators.MinValueValidator(Decimal('0'))], verbose_name='automatic compensation per request'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='compensation_monthly_budget',
            field=models.DecimalField(decimal_places=2, default=Decimal('0'), help_text='Compensations beyond this total in a calendar month (market time) are recorded as capped (ERR_SLA_002) instead of granted. Seeded as 100 × the per-request amount (our default).', max_digits=14, validators=[django.core.validators.MinValueValidator(Decimal('0'))], verbose_name='compensation budget per store and month'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='exposure_loss_per_tenth',
            field=models.DecimalField(decimal_places=2, default=Decimal('3.20'), help_text='Each 0.1 below the threshold costs about this share of natural exposure (DOMAIN seed: 3.2 %).', max_digits=5, verbose_name='exposure lost per 0.1 below (percent)'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='first_response_hours',
            field=models.PositiveIntegerField(blank=True, help_text='首次人工处理: 24 h in UK, MY, TH, VN, PH (Seller Policy v3.2 §7.1, DOMAIN seed); empty where the market has no such rule. Missing it triggers automatic compensation.', null=True, verbose_name='first human response within (hours)'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='replacement_response_hours',
            field=models.PositiveIntegerField(default=24, help_text='Exchange requests must be reviewed within this long (issue 5, seed default 24 h).', verbose_name='replacement response within (hours)'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='score_floor_for_traffic',
            field=models.DecimalField(decimal_places=2, default=Decimal('4.80'), help_text='流量降权 below this service score (Seller Score Handbook 2024, DOMAIN seed).', max_digits=3, verbose_name='traffic down-weighting below score'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='score_penalty',
            field=models.DecimalField(decimal_places=2, default=Decimal('0.50'), help_text='服务分: each late response −0.5 points (Seller Score Handbook 2024, DOMAIN seed).', max_digits=4, validators=[django.core.validators.MinValueValidator(Decimal('0'))], verbose_name='service score deduction per missed deadline'),
        ),
        migrations.AddField(
            model_name='marketpolicy',
            name='warning_offsets_minutes',
            field=django.contrib.postgres.fields.ArrayField(base_field=models.PositiveIntegerField(), blank=True, default=stores.models.default_warning_offsets, help_text='An alert is raised this many minutes before each deadline (default 4 h and 1 h).', verbose_name='warn before a deadline (minutes)'),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
