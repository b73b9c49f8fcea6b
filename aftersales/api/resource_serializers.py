"""Input and output shapes of the after-sales resources: quick replies, buyer history, the analytics summary.

Same conventions as ``aftersales.api.serializers``: public ids only, times ISO 8601 with offset, money as
``{"amount", "currency"}``. Inputs are parsed for shape only; the services decide.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from aftersales.api.serializers import IsoDateTimeField, MoneySerializer, money
from aftersales.replies import MAX_BODY, MAX_TITLE, VARIABLES


# --- quick replies ----------------------------------------------------------------------------------
class ReplyStoreSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()


class QuickReplySerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    title = serializers.CharField()
    body = serializers.CharField(help_text=("The text with {variables}: " + ", ".join(VARIABLES) + "."))
    store = ReplyStoreSerializer(allow_null=True, help_text=("Null for an agency-wide reply (every store)."))
    position = serializers.IntegerField()
    created_at = IsoDateTimeField()
    updated_at = IsoDateTimeField()


class QuickReplyCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=MAX_TITLE)
    body = serializers.CharField(max_length=MAX_BODY, help_text=(
        "Checked against the sensitive-word list (the store's market, or every market for an agency-wide "
        "reply): a hit is refused with ERR_REPLY_001 and the words in error.fields.body."))
    store = serializers.UUIDField(required=False, allow_null=True, help_text=(
        "A store's id; leave out for an agency-wide reply (owner only)."))


class QuickReplyUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=MAX_TITLE, required=False)
    body = serializers.CharField(max_length=MAX_BODY, required=False)
    position = serializers.IntegerField(min_value=0, max_value=32767, required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": [_("Send title, body or position.")]})
        return attrs


class ReplyListQuerySerializer(serializers.Serializer):
    store = serializers.UUIDField(required=False, help_text=(
        "Also list this store's replies (agency-wide ones are always listed)."))


class TextCheckInputSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_BODY, trim_whitespace=True)
    store = serializers.UUIDField(required=False, help_text=("Check with this store's market's words."))
    market = serializers.CharField(required=False, max_length=2, help_text=(
        "Or a market code. Neither: every market's words (as for an agency-wide reply)."))

    def validate(self, attrs):
        if "store" in attrs and attrs.get("market"):
            raise serializers.ValidationError({"market": [_("Send store or market, not both.")]})
        return attrs


class TextCheckResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text=("True when no sensitive word was found."))
    words = serializers.ListField(child=serializers.CharField(), help_text=(
        "The refused parts of the text, in order of appearance."))
    market = serializers.CharField(allow_null=True, help_text=("The market checked; null: every market."))


# --- buyer history ------------------------------------------------------------------------------------
class BuyerHistoryQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, default=90, min_value=1, max_value=3650,
                                    help_text=("The recent window in days (default 90)."))


def _money_list(amounts: dict) -> list[dict]:
    return [money(amount, currency) for currency, amount in sorted(amounts.items())]


class BuyerHistorySerializer(serializers.Serializer):
    buyer_id = serializers.CharField(source="buyer_user_id")
    days = serializers.IntegerField()
    requests_total = serializers.IntegerField()
    requests_recent = serializers.IntegerField(help_text=("Requests within the last `days`."))
    refunds_total = serializers.IntegerField()
    refunds_recent = serializers.IntegerField()
    refunded = serializers.SerializerMethodField(help_text=("Refunded, one amount per currency (never added "
                                                            "across currencies)."))
    refunded_recent = serializers.SerializerMethodField()
    decided = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejection_rate = serializers.FloatField(allow_null=True, help_text=("rejected ÷ decided; null when nothing "
                                                                        "was decided."))
    types = serializers.DictField(child=serializers.IntegerField())
    last_request_at = IsoDateTimeField(allow_null=True)
    serial_returner = serializers.BooleanField()
    rule = serializers.CharField(allow_null=True, help_text=("The serial-returner rule that holds, in words."))
    rule_key = serializers.CharField(allow_null=True)

    @extend_schema_field(MoneySerializer(many=True))
    def get_refunded(self, data) -> list[dict]:
        return _money_list(data["refunded"])

    @extend_schema_field(MoneySerializer(many=True))
    def get_refunded_recent(self, data) -> list[dict]:
        return _money_list(data["refunded_recent"])


# --- analytics ----------------------------------------------------------------------------------------
class SummaryQuerySerializer(serializers.Serializer):
    days = serializers.ChoiceField(choices=[(7, "7"), (30, "30")], required=False, default=7,
                                   help_text=("The window: 7 or 30 days."))
    store = serializers.UUIDField(required=False, help_text=("One store; default every store you may view "
                                                             "analytics of."))

    def validate_days(self, value):
        return int(value)


class CategoryReturnsSerializer(serializers.Serializer):
    category = serializers.CharField()
    requests = serializers.IntegerField()
    units = serializers.IntegerField(help_text=("Units asked back."))
    units_sold = serializers.IntegerField(allow_null=True, help_text="From the order volume sent; null: none.")
    rate_pct = serializers.FloatField(allow_null=True, help_text=("units ÷ units_sold × 100; null without order "
                                                                  "volume for the category."))
    benchmark_max_pct = serializers.DecimalField(max_digits=5, decimal_places=1, allow_null=True)


class BenchmarkSerializer(serializers.Serializer):
    category = serializers.CharField()
    max_pct = serializers.DecimalField(max_digits=5, decimal_places=1)


class ReturnRateSerializer(serializers.Serializer):
    rate_pct = serializers.FloatField(allow_null=True, help_text=(
        "Units asked back ÷ units sold, over the categories with order volume (POST "
        "/api/v1/analytics/order-volumes/); null when none was sent."))
    orders = serializers.IntegerField(allow_null=True)
    units_sold = serializers.IntegerField(allow_null=True)
    by_category = CategoryReturnsSerializer(many=True)
    benchmarks = BenchmarkSerializer(many=True)


class RateSerializer(serializers.Serializer):
    pct = serializers.FloatField(allow_null=True, help_text=("count ÷ of × 100; null when of is 0."))
    count = serializers.IntegerField()
    of = serializers.IntegerField()


class HandlingSerializer(serializers.Serializer):
    hours = serializers.FloatField(allow_null=True)
    finished = serializers.IntegerField(help_text=("Finished requests the mean is over."))
    benchmark_platform_integrated = serializers.DecimalField(max_digits=6, decimal_places=1)
    benchmark_industry = serializers.DecimalField(max_digits=6, decimal_places=1)


class CompletionSerializer(RateSerializer):
    benchmark_pct = serializers.DecimalField(max_digits=5, decimal_places=1)


class ReasonCountSerializer(serializers.Serializer):
    key = serializers.CharField()
    text = serializers.CharField()
    count = serializers.IntegerField()
    share_pct = serializers.FloatField(allow_null=True)


class SummarySerializer(serializers.Serializer):
    days = serializers.IntegerField()
    since = IsoDateTimeField()
    until = IsoDateTimeField()
    store_ids = serializers.ListField(child=serializers.UUIDField(), help_text=("The stores counted."))
    requests = serializers.IntegerField(help_text=("Requests raised in the window."))
    return_rate = ReturnRateSerializer()
    proactive_refund_rate = RateSerializer(help_text=("主动退款率: refunded without platform intervention."))
    platform_intervention_rate = RateSerializer(help_text=("平台介入率: reached platform arbitration."))
    avg_handling_hours = HandlingSerializer()
    completed_within_72h = CompletionSerializer()
    top_reasons = ReasonCountSerializer(many=True)


class VolumeRowSerializer(serializers.Serializer):
    date = serializers.DateField(help_text="The market-local day.")
    category = serializers.CharField(max_length=32, required=False, allow_blank=True, default="",
                                     help_text="A line-item category (e.g. apparel); empty: the store's total.")
    units_sold = serializers.IntegerField(min_value=0, max_value=1_000_000_000)
    orders = serializers.IntegerField(min_value=0, max_value=1_000_000_000, required=False, default=0)


class OrderVolumeInputSerializer(serializers.Serializer):
    store = serializers.UUIDField(help_text="A store's id.")
    rows = VolumeRowSerializer(many=True, allow_empty=False, max_length=1000)


class OrderVolumeResultSerializer(serializers.Serializer):
    saved = serializers.IntegerField()
