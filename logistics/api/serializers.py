"""Input and output shapes of the logistics API: carriers, return shipments with their tracking events,
return addresses and drop-off points. Inputs are parsed for shape; the services decide."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from aftersales.api.serializers import CarrierRefSerializer, IsoDateTimeField, ShipmentSerializer, StoreRefSerializer
from logistics import tracking
from logistics.models import Carrier, ShipmentStatus, TrackingEvent


# --- carriers ----------------------------------------------------------------------------------------
class CarrierSerializer(serializers.Serializer):
    code = serializers.CharField(help_text=("Send it as `carrier` with a tracking number."))
    name = serializers.CharField()
    markets = serializers.ListField(child=serializers.CharField(), help_text=("Market codes it serves."))
    format_check = serializers.ChoiceField(choices=Carrier.FormatKind.choices, help_text=(
        "How numbers are checked: package (check digits of the tracking-numbers package), s10 (UPU S10 check "
        "digit), pattern (a full-match regular expression), none (accepted as format unverified)."))
    pattern = serializers.CharField(help_text=("The full-match regular expression (pattern, or an extra accepted "
                                               "form for s10/package); empty when none."))
    format = serializers.SerializerMethodField(help_text=("The expected format in words (as ERR_LOG_204 names it)."))
    strip_prefixes = serializers.ListField(child=serializers.CharField(), help_text=(
        "Prefixes scanners add, removed on entry."))

    def get_format(self, carrier) -> str:
        return str(tracking.expected_format(carrier))


# --- shipments -----------------------------------------------------------------------------------------
class TicketRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    return_id = serializers.CharField()
    order_id = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField(source="state")


class ShipmentListSerializer(ShipmentSerializer):
    ticket = TicketRefSerializer()
    store = StoreRefSerializer(source="ticket.store")


class TrackingEventSerializer(serializers.Serializer):
    occurred_at = IsoDateTimeField()
    status = serializers.CharField(help_text=("Normalised: " + ", ".join(ShipmentStatus.values) + "."))
    raw_status = serializers.CharField(help_text=("The carrier's own status."))
    message = serializers.CharField()
    location = serializers.CharField()
    source = serializers.ChoiceField(choices=TrackingEvent.Source.choices)
    received_at = IsoDateTimeField()


class NumberChangeSerializer(serializers.Serializer):
    tracking_number = serializers.CharField()
    carrier = CarrierRefSerializer(allow_null=True)
    replaced_at = IsoDateTimeField()


class ShipmentDetailSerializer(ShipmentListSerializer):
    events = TrackingEventSerializer(many=True, help_text=("Carrier checkpoints, oldest first."))
    number_history = NumberChangeSerializer(many=True, help_text=("Numbers this parcel had before, oldest first."))


# --- return addresses ----------------------------------------------------------------------------------
class AddressStoreSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()


class ReturnAddressSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    store = AddressStoreSerializer()
    market = serializers.CharField(source="market.code")
    warehouse = serializers.CharField()
    contact_name = serializers.CharField()
    phone = serializers.CharField(help_text=("E.164."))
    line1 = serializers.CharField()
    line2 = serializers.CharField()
    city = serializers.CharField()
    region = serializers.CharField()
    postcode = serializers.CharField()
    is_default = serializers.BooleanField(help_text=("The default of its store and market (exactly one)."))
    created_at = IsoDateTimeField()


TEXT = {"required": False, "allow_blank": True, "trim_whitespace": False, "max_length": 400}


class ReturnAddressUpdateSerializer(serializers.Serializer):
    """The editable fields; the service trims, checks required fields and lengths, and the phone."""

    warehouse = serializers.CharField(**TEXT)
    contact_name = serializers.CharField(**TEXT)
    phone = serializers.CharField(**TEXT, help_text=("Local or international; stored as E.164 of the market's "
                                                     "country (ERR_LOG_501 otherwise)."))
    line1 = serializers.CharField(**TEXT)
    line2 = serializers.CharField(**TEXT)
    city = serializers.CharField(**TEXT)
    region = serializers.CharField(**TEXT)
    postcode = serializers.CharField(**TEXT)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": [_("Send at least one field.")]})
        return attrs


class ReturnAddressCreateSerializer(ReturnAddressUpdateSerializer):
    store = serializers.UUIDField(help_text=("The store's id."))
    market = serializers.CharField(required=False, allow_blank=True, max_length=2, help_text=(
        "Optional: must be the store's own market."))
    is_default = serializers.BooleanField(required=False, default=False, help_text=(
        "Make it the default (the first address of a store is the default anyway)."))


class AddressListQuerySerializer(serializers.Serializer):
    store = serializers.UUIDField(required=False, help_text=("Only this store's addresses."))


# --- drop-off points -------------------------------------------------------------------------------------
class NearestQuerySerializer(serializers.Serializer):
    lat = serializers.FloatField(min_value=-90, max_value=90, help_text=("Latitude, -90 to 90."))
    lng = serializers.FloatField(min_value=-180, max_value=180, help_text=("Longitude, -180 to 180."))
    market = serializers.CharField(max_length=2, help_text=("Market code, e.g. ID."))
    limit = serializers.IntegerField(required=False, default=5, min_value=1, max_value=100)
    max_km = serializers.FloatField(required=False, min_value=0.001, help_text=("Search no farther than this."))


class DropOffSerializer(serializers.Serializer):
    partner = serializers.CharField(source="point.partner")
    code = serializers.CharField(source="point.code")
    name = serializers.CharField(source="point.name")
    address = serializers.CharField(source="point.address")
    latitude = serializers.FloatField(source="point.latitude")
    longitude = serializers.FloatField(source="point.longitude")
    opening_hours = serializers.CharField(source="point.opening_hours")
    distance_km = serializers.FloatField(help_text=("Great-circle distance."))
    pickup_lead_hours = serializers.IntegerField(help_text=("Pickup lead time in hours."))


class NearestResultSerializer(serializers.Serializer):
    results = DropOffSerializer(many=True, help_text=("Nearest first, at most `limit`."))
