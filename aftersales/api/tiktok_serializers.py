"""Output shapes of the TikTok Shop connector's API: store connections with their sync report, and sync runs."""

from __future__ import annotations

from rest_framework import serializers

from aftersales.api.serializers import IsoDateTimeField, MarketRefSerializer


class ConnectedStoreSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    shop_id = serializers.CharField()
    market = MarketRefSerializer()


class LastRunSerializer(serializers.Serializer):
    status = serializers.CharField(source="last_status")
    trigger = serializers.CharField(source="last_trigger")
    started_at = IsoDateTimeField(source="last_started_at")
    finished_at = IsoDateTimeField(source="last_finished_at", allow_null=True)
    counts = serializers.DictField(source="last_counts", child=serializers.IntegerField())
    error_code = serializers.CharField(source="last_error_code")
    platform_code = serializers.IntegerField(source="last_platform_code", allow_null=True)
    message = serializers.CharField(source="last_message")


class ConnectionSerializer(serializers.Serializer):
    store = ConnectedStoreSerializer()
    seller = serializers.CharField(source="authorization.seller_name")
    authorization_status = serializers.CharField(source="authorization.status", help_text=(
        "active; needs_reauth (the platform refused the refresh token: connect the seller again); revoked."))
    access_token_expires_at = IsoDateTimeField(source="authorization.access_expires_at", allow_null=True)
    sync_enabled = serializers.BooleanField()
    returns_read_up_to = IsoDateTimeField(source="returns_watermark", allow_null=True)
    cancellations_read_up_to = IsoDateTimeField(source="cancellations_watermark", allow_null=True)
    last_success_at = IsoDateTimeField(allow_null=True)
    last_run = serializers.SerializerMethodField()

    def get_last_run(self, link) -> dict | None:
        return LastRunSerializer(link).data if link.last_status else None


class SyncRunSerializer(serializers.Serializer):
    store_id = serializers.UUIDField(source="store.public_id")
    trigger = serializers.CharField()
    status = serializers.CharField()
    started_at = IsoDateTimeField()
    finished_at = IsoDateTimeField(allow_null=True)
    counts = serializers.DictField(child=serializers.IntegerField(), help_text=(
        "created, updated, unchanged, unknown_status (kept raw and flagged), records, pages, resumed, errors "
        "(objects the platform sent malformed: skipped and logged)."))
    unknown_fields = serializers.ListField(child=serializers.CharField(), help_text=(
        "Fields the platform sent that this version does not read: kept in each request's raw payload."))
    error_code = serializers.CharField()
    platform_code = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()
