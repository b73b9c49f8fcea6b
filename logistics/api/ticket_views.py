"""物流单号 and 物流拦截 on one request: thin adapters over logistics services (same conventions as
aftersales.api.views: scoped 404, coded 403/409, one envelope)."""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.response import Response

from aftersales.api.serializers import CarrierRefSerializer, IsoDateTimeField, ShipmentSerializer
from aftersales.api.views import action_schema, parse, performer
from logistics.interceptions import request_interception
from logistics.models import Interception
from logistics.services import register_tracking
from stores.api.base import TenantAPIView


class TrackingInputSerializer(serializers.Serializer):
    carrier = serializers.CharField(max_length=32, help_text=("Carrier code (GET /api/v1/carriers/?market=…)."))
    tracking_number = serializers.CharField(max_length=80, help_text=(
        "Spaces and scanner prefixes are removed; checked against the carrier's format."))


class InterceptInputSerializer(serializers.Serializer):
    tracking_number = serializers.CharField(max_length=80, help_text=("The outgoing parcel to stop."))
    carrier = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class InterceptionSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    tracking_number = serializers.CharField()
    carrier = CarrierRefSerializer(allow_null=True)
    outcome = serializers.ChoiceField(choices=Interception.Outcome.choices)
    requested_at = IsoDateTimeField()
    decided_at = IsoDateTimeField(allow_null=True)
    note = serializers.CharField()


class TrackingView(TenantAPIView):
    @action_schema("Register the return tracking number",
                   "同步更新物流单号: register or replace the buyer's return parcel number (the old one is kept "
                   "in the history); restarts the 48 h scan watch and the carrier check. The same number again "
                   "changes nothing.",
                   TrackingInputSerializer, ShipmentSerializer,
                   ("ERR_VALIDATION", "ERR_LOG_204", "ERR_LOG_205", "ERR_LOG_208", "ERR_PERM_003"))
    def post(self, request, ticket_id):
        data = parse(TrackingInputSerializer, request)
        shipment = register_tracking(performer(request), str(ticket_id), carrier_code=data["carrier"],
                                     tracking_number=data["tracking_number"], source="api")
        return Response(ShipmentSerializer(shipment).data)


class InterceptView(TenantAPIView):
    @action_schema("Intercept the outgoing parcel",
                   "物流拦截: ask the carrier to stop the parcel on its way to the buyer. Refused while one is "
                   "open or when the parcel is known to be delivered (ERR_LOG_401).",
                   InterceptInputSerializer, InterceptionSerializer,
                   ("ERR_VALIDATION", "ERR_LOG_204", "ERR_LOG_205", "ERR_LOG_401", "ERR_PERM_003"), ok=201)
    def post(self, request, ticket_id):
        data = parse(InterceptInputSerializer, request)
        interception = request_interception(performer(request), str(ticket_id),
                                             tracking_number=data["tracking_number"],
                                             carrier_code=data["carrier"] or None, note=data["note"])
        return Response(InterceptionSerializer(interception).data, status=status.HTTP_201_CREATED)
