from rest_framework import serializers

from stores.models import Market, Store


class MarketSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="display_name")

    class Meta:
        model = Market
        fields = ["code", "name", "currency", "time_zone", "languages"]


class EligibilitySerializer(serializers.Serializer):
    state = serializers.CharField()
    missing = serializers.ListField(child=serializers.CharField())


class StoreSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    market = MarketSerializer()
    currency = serializers.CharField(source="market.currency")
    time_zone = serializers.CharField(source="market.time_zone")
    service_score = serializers.DecimalField(max_digits=3, decimal_places=2)
    eligibility = serializers.SerializerMethodField()

    class Meta:
        model = Store
        fields = ["id", "name", "shop_id", "market", "currency", "time_zone", "service_score", "eligibility"]

    def get_eligibility(self, store) -> dict:
        missing = store.missing_checks()
        return {"state": "incomplete" if missing else "eligible", "missing": missing}


class ErrorCodeSerializer(serializers.Serializer):
    code = serializers.CharField()
    http_status = serializers.IntegerField()
    message = serializers.DictField(child=serializers.CharField())
    hint = serializers.DictField(child=serializers.CharField())
